//! `metrics.k8s.io/v1beta1` (`kubectl top`): NodeMetrics and PodMetrics computed as
//! metrics-server computes them (`streaming-and-apply.md` rules 6.1-6.6), from counters the
//! nodes read out of their cgroups ([`UsageSource`]).
//!
//! A scraper (`ResourceMetrics::run`) samples every node every [`RESOLUTION`]: the server's
//! own node through its [`UsageSource`] directly, an agent through its kubelet endpoint
//! (`POST /usage`, [`crate::kubelet`]). Each node and running container keeps its last two
//! samples; CPU is the counter's rise between them over their distance in time (nanocores),
//! memory the working set of the last. A pod is shown once every one of its running
//! containers has two samples; a container whose counter went back (a new instance) starts
//! over. Nothing is stored: after a server start, `kubectl top` answers `metrics not available
//! yet` until two scrapes are done.
//!
//! An idle container is read at every other scrape only: one whose last two samples are equal
//! (no CPU used, the same working set) is skipped once, and keeps its samples meanwhile. The
//! kubelet's stats come from cAdvisor, whose dynamic housekeeping (which the kubelet turns on)
//! does the same: a container's interval doubles from 10 s up to 15 s while its stats do not
//! change, and each wait is jittered by up to as much again, so an idle container there is
//! read every 15-30 s. The scrape reads three cgroup files per container; at 1,000 idle pods
//! this halves what it costs.
//!
//! What it is not: no aggregation layer (the group is served by this server itself, with no
//! APIService object), no protobuf, no `/metrics/resource` Prometheus endpoint.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use podvisor_core::usage::{UsageSample, UsageSource};
use podvisor_store::{ListOptions, Store};
use serde_json::{Value, json};

use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;

/// How often every node is sampled: metrics-server's `--metric-resolution` as its shipped
/// manifests set it (rule 6.5). Each scrape reads three cgroup files per running container, so
/// this is most of what an idle node without probes spends.
pub const RESOLUTION: Duration = Duration::from_secs(15);

/// The API group and version.
pub const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

/// At most this many containers are asked of one agent per scrape.
const MAX_CONTAINERS_PER_NODE: usize = 10_000;

/// A sample and when it was taken.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    at: SystemTime,
    sample: UsageSample,
}

/// The last two samples of one node or container.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Pair {
    prev: Option<Point>,
    last: Option<Point>,
    /// The last two samples were equal: the next scrape skips this container (module docs).
    idle: bool,
}

/// Usage over a window, as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    /// CPU in nanocores.
    pub nanocores: u64,
    /// Working set in bytes.
    pub working_set_bytes: u64,
    /// The end of the window.
    pub timestamp: SystemTime,
    /// The window's length.
    pub window: Duration,
}

impl Pair {
    fn push(&mut self, point: Point) {
        // A counter that went back is a new instance: its old sample says nothing.
        let restarted = self
            .last
            .is_some_and(|last| point.sample.cpu_ns < last.sample.cpu_ns || point.at <= last.at);
        self.idle = !restarted && self.last.is_some_and(|last| last.sample == point.sample);
        self.prev = if restarted { None } else { self.last };
        self.last = Some(point);
    }

    fn usage(&self) -> Option<Usage> {
        let (prev, last) = (self.prev?, self.last?);
        let window = last.at.duration_since(prev.at).ok().filter(|w| !w.is_zero())?;
        let used = last.sample.cpu_ns.checked_sub(prev.sample.cpu_ns)?;
        let nanocores = (u128::from(used) * 1_000_000_000 / window.as_nanos().max(1)) as u64;
        Some(Usage {
            nanocores,
            working_set_bytes: last.sample.working_set_bytes,
            timestamp: last.at,
            window,
        })
    }
}

#[derive(Default)]
struct Samples {
    nodes: HashMap<String, Pair>,
    containers: HashMap<String, Pair>,
}

/// What one node reported in one scrape.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeReport {
    /// The node's own counters.
    pub node: Option<Sample>,
    /// Running containers' counters by container ID (without the scheme).
    pub containers: HashMap<String, Sample>,
}

/// [`UsageSample`] on the wire between an agent and the servers.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Cumulative CPU nanoseconds.
    pub cpu_ns: u64,
    /// Working set bytes.
    pub working_set_bytes: u64,
}

impl From<UsageSample> for Sample {
    fn from(s: UsageSample) -> Sample {
        Sample {
            cpu_ns: s.cpu_ns,
            working_set_bytes: s.working_set_bytes,
        }
    }
}

impl From<Sample> for UsageSample {
    fn from(s: Sample) -> UsageSample {
        UsageSample {
            cpu_ns: s.cpu_ns,
            working_set_bytes: s.working_set_bytes,
        }
    }
}

/// Reads a node's report from `source` for the containers `ids` (blocking: cgroup files).
pub fn report(source: &dyn UsageSource, ids: &[String]) -> NodeReport {
    NodeReport {
        node: source.node_usage().map(Sample::from),
        containers: ids
            .iter()
            .take(MAX_CONTAINERS_PER_NODE)
            .filter_map(|id| source.container_usage(id).map(|s| (id.clone(), Sample::from(s))))
            .collect(),
    }
}

/// The resource metrics of the cluster's nodes and pods.
pub struct ResourceMetrics {
    /// The node this server runs pods on, and its counters.
    local: Option<(String, Arc<dyn UsageSource>)>,
    samples: Mutex<Samples>,
}

impl std::fmt::Debug for ResourceMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceMetrics")
            .field("local", &self.local.as_ref().map(|(n, _)| n))
            .finish_non_exhaustive()
    }
}

/// The running containers of `pod` (status IDs without the scheme), app and init.
fn running_containers(pod: &Value) -> impl Iterator<Item = (&str, &str)> {
    let status = &pod["status"];
    ["containerStatuses", "initContainerStatuses"]
        .into_iter()
        .filter_map(|list| status[list].as_array())
        .flatten()
        .filter(|cs| cs.pointer("/state/running").is_some())
        .filter_map(|cs| {
            let name = cs["name"].as_str()?;
            let id = cs["containerID"].as_str()?;
            Some((name, id.split_once("://").map_or(id, |(_, id)| id)))
        })
}

/// Pods read at a time by the scraper: a node's pods parsed all at once are ~50 KB each while
/// held, and the scrape only keeps their running containers' IDs.
const SCRAPE_PAGE: usize = 100;

/// The IDs of the running containers of every pod, by node.
async fn running_by_node(store: &dyn Store) -> Option<HashMap<String, Vec<String>>> {
    let mut by_node: HashMap<String, Vec<String>> = HashMap::new();
    let mut after = None;
    loop {
        let page = store
            .list(
                "pods",
                None,
                ListOptions {
                    limit: Some(SCRAPE_PAGE),
                    continue_after: after.take(),
                    ..ListOptions::default()
                },
            )
            .await
            .ok()?;
        for pod in &page.items {
            let Some(node) = pod.object.pointer("/spec/nodeName").and_then(Value::as_str) else {
                continue;
            };
            let ids = by_node.entry(node.to_owned()).or_default();
            ids.extend(running_containers(&pod.object).map(|(_, id)| id.to_owned()));
        }
        match page.continue_after {
            Some(next) => after = Some(next),
            None => return Some(by_node),
        }
    }
}

impl ResourceMetrics {
    /// Metrics with `local` as the counters of node `node` (the one this server runs pods on).
    pub fn new(local: Option<(String, Arc<dyn UsageSource>)>) -> ResourceMetrics {
        ResourceMetrics {
            local,
            samples: Mutex::new(Samples::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Scrapes every [`RESOLUTION`] until the task is dropped.
    pub(crate) async fn run(self: Arc<Self>, store: Arc<dyn Store>, node_key: Option<String>) {
        let mut tick = tokio::time::interval(RESOLUTION);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.scrape(&*store, node_key.as_deref()).await;
        }
    }

    /// Samples every node once. The local node's containers are the ones its source runs
    /// where it can say so; only other nodes' are read from the pods' statuses (parsing every
    /// pod every [`RESOLUTION`] was most of an idle 1,000-pod node's CPU beside the probes).
    pub(crate) async fn scrape(&self, store: &dyn Store, node_key: Option<&str>) {
        let Ok(nodes) = store.list("nodes", None, ListOptions::default()).await else {
            return;
        };
        let mut local_ids = self
            .local
            .as_ref()
            .and_then(|(name, source)| Some((name.as_str(), source.running_containers()?)));
        let local_name = local_ids.as_ref().map(|(name, _)| *name);
        let others = nodes
            .items
            .iter()
            .any(|node| node.object.pointer("/metadata/name").and_then(Value::as_str) != local_name);
        let mut by_node = if others {
            let Some(by_node) = running_by_node(store).await else {
                return;
            };
            by_node
        } else {
            HashMap::new()
        };
        let mut reports = Vec::new();
        // Idle containers this scrape does not read: their samples are kept.
        let mut skipped = HashSet::new();
        for node in &nodes.items {
            let Some(name) = node.object.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            let ids = match local_ids.take_if(|(local, _)| *local == name) {
                Some((_, ids)) => ids,
                None => by_node.remove(name).unwrap_or_default(),
            };
            let ids = self.skip_idle(ids, &mut skipped);
            let report = match &self.local {
                Some((local, source)) if local == name => {
                    let source = source.clone();
                    tokio::task::spawn_blocking(move || report(&*source, &ids))
                        .await
                        .ok()
                }
                _ => match (crate::kubelet::endpoint_of(&node.object), node_key) {
                    (Some(endpoint), Some(key)) => {
                        let token = crate::kubelet::server_token(key, name);
                        match crate::kubelet::usage(endpoint, &token, &ids).await {
                            Ok(r) => Some(r),
                            Err(e) => {
                                tracing::debug!(node = name, error = %e.message, "usage scrape failed");
                                None
                            }
                        }
                    }
                    _ => None,
                },
            };
            if let Some(r) = report {
                reports.push((name.to_owned(), r));
            }
        }
        let at = SystemTime::now();
        self.record(at, reports, &skipped);
    }

    /// The containers of `ids` to read in this scrape; the idle ones (module docs) are moved to
    /// `skipped`, and read at the next scrape.
    fn skip_idle(&self, ids: Vec<String>, skipped: &mut HashSet<String>) -> Vec<String> {
        let mut samples = self.lock();
        ids.into_iter()
            .filter(|id| {
                let idle = samples
                    .containers
                    .get_mut(id)
                    .is_some_and(|pair| std::mem::take(&mut pair.idle));
                if idle {
                    skipped.insert(id.clone());
                }
                !idle
            })
            .collect()
    }

    /// Records one scrape's reports taken at `at`; nodes and containers neither in it nor
    /// `skipped` are dropped.
    fn record(&self, at: SystemTime, reports: Vec<(String, NodeReport)>, skipped: &HashSet<String>) {
        let mut samples = self.lock();
        let mut seen_nodes = HashSet::new();
        let mut seen_containers = HashSet::new();
        for (node, report) in reports {
            if let Some(s) = report.node {
                samples
                    .nodes
                    .entry(node.clone())
                    .or_default()
                    .push(Point { at, sample: s.into() });
                seen_nodes.insert(node);
            }
            for (id, s) in report.containers {
                samples
                    .containers
                    .entry(id.clone())
                    .or_default()
                    .push(Point { at, sample: s.into() });
                seen_containers.insert(id);
            }
        }
        samples.nodes.retain(|n, _| seen_nodes.contains(n));
        samples
            .containers
            .retain(|c, _| seen_containers.contains(c) || skipped.contains(c));
    }

    fn node_usage(&self, name: &str) -> Option<Usage> {
        self.lock().nodes.get(name)?.usage()
    }

    /// The NodeMetrics of `node` (a stored Node), if it has two samples.
    fn node_metrics(&self, node: &Value) -> Option<Value> {
        let name = node.pointer("/metadata/name")?.as_str()?;
        let usage = self.node_usage(name)?;
        Some(json!({
            "kind": "NodeMetrics",
            "apiVersion": GROUP_VERSION,
            "metadata": shown_metadata(node),
            "timestamp": rfc3339(usage.timestamp),
            "window": go_seconds(usage.window),
            "usage": usage_json(&usage),
        }))
    }

    /// The PodMetrics of `pod` (a stored Pod), if every running container has two samples.
    fn pod_metrics(&self, pod: &Value) -> Option<Value> {
        let samples = self.lock();
        let mut containers = Vec::new();
        let mut earliest: Option<Usage> = None;
        for (name, id) in running_containers(pod) {
            let usage = samples.containers.get(id)?.usage()?;
            if earliest.is_none_or(|e| usage.timestamp < e.timestamp) {
                earliest = Some(usage);
            }
            containers.push(json!({"name": name, "usage": usage_json(&usage)}));
        }
        let first = earliest?;
        Some(json!({
            "kind": "PodMetrics",
            "apiVersion": GROUP_VERSION,
            "metadata": shown_metadata(pod),
            "timestamp": rfc3339(first.timestamp),
            "window": go_seconds(first.window),
            "containers": containers,
        }))
    }
}

/// The metadata a metrics object shows of its node or pod.
fn shown_metadata(object: &Value) -> Value {
    let m = &object["metadata"];
    let mut out = json!({"name": m["name"], "creationTimestamp": m["creationTimestamp"]});
    for k in ["namespace", "labels"] {
        if let Some(v) = m.get(k) {
            out[k] = v.clone();
        }
    }
    out
}

fn usage_json(u: &Usage) -> Value {
    let memory = if u.working_set_bytes.is_multiple_of(1024) {
        format!("{}Ki", u.working_set_bytes / 1024)
    } else {
        u.working_set_bytes.to_string()
    };
    json!({"cpu": format!("{}n", u.nanocores), "memory": memory})
}

fn rfc3339(t: SystemTime) -> String {
    let millis = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    podvisor_core::rfc3339::seconds(i64::try_from(millis).unwrap_or(0))
}

/// A window as Go prints a `time.Duration` of this size: `10.012s`, `1m0.5s`.
fn go_seconds(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    let (m, s) = (d.as_secs() / 60, d.as_secs() % 60);
    let frac = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}").trim_end_matches('0').to_owned()
    };
    if m > 0 {
        format!("{m}m{s}{frac}s")
    } else {
        format!("{s}{frac}s")
    }
}

/// What a request to the group asks for.
enum Request<'a> {
    Nodes(Option<&'a str>),
    Pods {
        namespace: Option<&'a str>,
        name: Option<&'a str>,
    },
}

fn parse(path: &str) -> Option<Request<'_>> {
    let rest = path
        .strip_prefix("/apis/metrics.k8s.io/v1beta1/")?
        .trim_end_matches('/');
    let segs: Vec<&str> = rest.split('/').collect();
    Some(match segs.as_slice() {
        ["nodes"] => Request::Nodes(None),
        ["nodes", name] => Request::Nodes(Some(name)),
        ["pods"] => Request::Pods {
            namespace: None,
            name: None,
        },
        ["namespaces", ns, "pods"] => Request::Pods {
            namespace: Some(ns),
            name: None,
        },
        ["namespaces", ns, "pods", name] => Request::Pods {
            namespace: Some(ns),
            name: Some(name),
        },
        _ => return None,
    })
}

fn not_found(kind: &str, name: &str) -> ApiError {
    let mut e = ApiError::no_route("");
    e.message = format!("{kind}.metrics.k8s.io \"{name}\" not found");
    e.details = Some(Box::new(("metrics.k8s.io".into(), kind.into(), name.into())));
    e
}

/// Answers a `GET` under `/apis/metrics.k8s.io/v1beta1/`.
pub(crate) async fn answer(
    metrics: &ResourceMetrics,
    store: &dyn Store,
    path: &str,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let request = parse(path).ok_or_else(|| ApiError::no_route(path))?;
    let labels = match query.get("labelSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?),
        None => None,
    };
    let fields = match query.get("fieldSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            FieldSelector::parse(s, &["metadata.name", "metadata.namespace"])
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
        None => None,
    };
    let selected = |o: &Value| {
        labels.as_ref().is_none_or(|l| l.matches(o)) && fields.as_ref().is_none_or(|f| f.matches(o))
    };
    let store_err = |e| ApiError::internal(format!("{e}"));
    let (resource, namespace, name, list_kind) = match request {
        Request::Nodes(name) => ("nodes", None, name, "NodeMetricsList"),
        Request::Pods { namespace, name } => ("pods", namespace, name, "PodMetricsList"),
    };
    let show = |o: &Value| match resource {
        "nodes" => metrics.node_metrics(o),
        _ => metrics.pod_metrics(o),
    };
    let kind = if resource == "nodes" {
        "nodemetrics"
    } else {
        "podmetrics"
    };
    if let Some(name) = name {
        let key = podvisor_store::ObjectKey::new(resource, namespace.unwrap_or_default(), name);
        let object = store.get(&key).await.map_err(|_| not_found(kind, name))?;
        return show(&object.object).ok_or_else(|| not_found(kind, name));
    }
    let listed = store
        .list(resource, namespace, ListOptions::default())
        .await
        .map_err(store_err)?;
    let items: Vec<Value> = listed
        .items
        .iter()
        .filter(|v| selected(&v.object))
        .filter_map(|v| show(&v.object))
        .collect();
    Ok(json!({"kind": list_kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}))
}

/// `/apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": [
        {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
    ]})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scraper reads the pods a page at a time and misses none.
    #[tokio::test]
    async fn every_running_container_is_found_page_by_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = podvisor_store::RedbStore::open(dir.path().join("s.redb")).unwrap();
        let n = SCRAPE_PAGE * 2 + 7;
        for i in 0..n {
            let node = if i % 2 == 0 { "a" } else { "b" };
            let state = if i % 5 == 0 {
                json!({"waiting": {}})
            } else {
                json!({"running": {}})
            };
            let pod = json!({"metadata": {"name": format!("p{i}"), "namespace": "default"},
                "spec": {"nodeName": node},
                "status": {"containerStatuses": [{"name": "c", "containerID": format!("podvisor://id{i}"), "state": state}]}});
            let key = podvisor_store::ObjectKey::new("pods", "default", format!("p{i}"));
            store.create(&key, pod).await.unwrap();
        }
        let by_node = running_by_node(&store).await.unwrap();
        let mut found: Vec<String> = by_node.values().flatten().cloned().collect();
        found.sort();
        let mut expected: Vec<String> = (0..n).filter(|i| i % 5 != 0).map(|i| format!("id{i}")).collect();
        expected.sort();
        assert_eq!(found, expected);
        assert_eq!(by_node["a"].len() + by_node["b"].len(), expected.len());
        assert!(
            by_node["a"]
                .iter()
                .all(|id| id[2..].parse::<usize>().unwrap() % 2 == 0)
        );
    }

    /// Counters for the containers in `counters`, of which it says `running` run here.
    struct Listed {
        counters: &'static [&'static str],
        running: &'static [&'static str],
    }

    impl UsageSource for Listed {
        fn container_usage(&self, id: &str) -> Option<UsageSample> {
            self.counters.contains(&id).then_some(UsageSample {
                cpu_ns: 1,
                working_set_bytes: 2,
            })
        }

        fn node_usage(&self) -> Option<UsageSample> {
            None
        }

        fn running_containers(&self) -> Option<Vec<String>> {
            Some(self.running.iter().map(|id| id.to_string()).collect())
        }
    }

    /// A store in `dir` holding the Node `local`.
    async fn store_with_local_node(dir: &std::path::Path) -> podvisor_store::RedbStore {
        let store = podvisor_store::RedbStore::open(dir.join("s.redb")).unwrap();
        let node = podvisor_store::ObjectKey::new("nodes", "", "local");
        store
            .create(&node, json!({"metadata": {"name": "local"}}))
            .await
            .unwrap();
        store
    }

    /// The local node's containers are the ones its runtime says run, not the pods' statuses
    /// (which the scraper then does not read); a source that cannot say falls back to them.
    #[tokio::test]
    async fn the_local_node_is_sampled_from_what_its_runtime_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_local_node(dir.path()).await;
        // A pod whose status is not written yet, and one whose status names a container the
        // runtime no longer runs.
        for (name, status) in [
            ("new", json!({})),
            (
                "gone",
                json!({"containerStatuses": [
                {"name": "c", "containerID": "podvisor://stale", "state": {"running": {}}}]}),
            ),
        ] {
            let pod = json!({"metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": "local"}, "status": status});
            let key = podvisor_store::ObjectKey::new("pods", "default", name);
            store.create(&key, pod).await.unwrap();
        }
        let source = Arc::new(Listed {
            counters: &["fresh", "stale"],
            running: &["fresh"],
        });
        let m = ResourceMetrics::new(Some(("local".to_string(), source)));
        m.scrape(&store, None).await;
        let sampled = |m: &ResourceMetrics| {
            let mut ids: Vec<String> = m.lock().containers.keys().cloned().collect();
            ids.sort();
            ids
        };
        assert_eq!(sampled(&m), ["fresh"]);

        // Without a list from its source, the local node's containers come from the pods.
        struct Unlisted(Listed);
        impl UsageSource for Unlisted {
            fn container_usage(&self, id: &str) -> Option<UsageSample> {
                self.0.container_usage(id)
            }
            fn node_usage(&self) -> Option<UsageSample> {
                None
            }
        }
        let unlisted = Arc::new(Unlisted(Listed {
            counters: &["fresh", "stale"],
            running: &[],
        }));
        let m = ResourceMetrics::new(Some(("local".to_string(), unlisted)));
        m.scrape(&store, None).await;
        assert_eq!(sampled(&m), ["stale"]);
    }

    /// Containers `idle` (counters that never move) and `busy` (CPU rises at every read),
    /// counting the reads of each.
    #[derive(Default)]
    struct Counting {
        reads: Mutex<HashMap<String, u64>>,
    }

    impl UsageSource for Counting {
        fn container_usage(&self, id: &str) -> Option<UsageSample> {
            let mut reads = self.reads.lock().unwrap();
            let n = reads.entry(id.to_owned()).or_default();
            *n += 1;
            let cpu_ns = if id == "busy" { *n * 1_000_000 } else { 5 };
            Some(UsageSample {
                cpu_ns,
                working_set_bytes: 4096,
            })
        }

        fn node_usage(&self) -> Option<UsageSample> {
            None
        }

        fn running_containers(&self) -> Option<Vec<String>> {
            Some(vec!["idle".to_owned(), "busy".to_owned()])
        }
    }

    /// A container whose last two samples are equal is read at every other scrape, and is
    /// shown (zero CPU) from the samples it keeps; a busy one is read at every scrape.
    #[tokio::test]
    async fn an_idle_container_is_read_at_every_other_scrape() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_local_node(dir.path()).await;
        let source = Arc::new(Counting::default());
        let m = ResourceMetrics::new(Some(("local".to_string(), source.clone())));
        let pod = json!({"metadata": {"name": "p", "namespace": "default"},
            "status": {"containerStatuses": [
                {"name": "i", "containerID": "podvisor://idle", "state": {"running": {}}},
                {"name": "b", "containerID": "podvisor://busy", "state": {"running": {}}}]}});
        let mut shown = Vec::new();
        for _ in 0..6 {
            m.scrape(&store, None).await;
            shown.push(m.pod_metrics(&pod).is_some());
            // Samples a scrape apart are never at the same instant.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let reads = source.reads.lock().unwrap().clone();
        // idle: read at scrapes 1 and 2 (equal), skipped at 3, read at 4 (equal again),
        // skipped at 5, read at 6.
        assert_eq!(reads["idle"], 4, "{reads:?}");
        assert_eq!(reads["busy"], 6, "{reads:?}");
        // Shown from the second scrape on, the skipped scrapes included.
        assert_eq!(shown, [false, true, true, true, true, true]);
        let usage = m.pod_metrics(&pod).unwrap();
        assert_eq!(usage["containers"][0]["usage"]["cpu"], "0n");
    }

    fn point(at_secs: u64, cpu_ns: u64, ws: u64) -> Point {
        Point {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(at_secs),
            sample: UsageSample {
                cpu_ns,
                working_set_bytes: ws,
            },
        }
    }

    #[test]
    fn cpu_is_the_counter_rise_over_the_window_and_memory_the_last_working_set() {
        let mut p = Pair::default();
        p.push(point(100, 1_000_000_000, 10));
        assert_eq!(p.usage(), None, "one sample is no rate");
        // 2.5 CPU-seconds in 10 s: a quarter core.
        p.push(point(110, 3_500_000_000, 4096));
        let u = p.usage().unwrap();
        assert_eq!(u.nanocores, 250_000_000);
        assert_eq!(u.working_set_bytes, 4096);
        assert_eq!(u.window, Duration::from_secs(10));
        assert_eq!(usage_json(&u), json!({"cpu": "250000000n", "memory": "4Ki"}));
        // The counter goes back: a new instance, no rate until its next sample.
        p.push(point(120, 5, 1));
        assert_eq!(p.usage(), None);
        p.push(point(130, 1_000_000_005, 1));
        assert_eq!(p.usage().unwrap().nanocores, 100_000_000);
    }

    #[test]
    fn windows_read_as_go_durations() {
        assert_eq!(go_seconds(Duration::from_millis(10_012)), "10.012s");
        assert_eq!(go_seconds(Duration::from_secs(15)), "15s");
        assert_eq!(go_seconds(Duration::from_millis(60_500)), "1m0.5s");
    }

    #[test]
    fn a_pod_is_shown_once_every_running_container_has_two_samples() {
        let m = ResourceMetrics::new(None);
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "status": {"containerStatuses": [
                {"name": "a", "containerID": "podvisor://ca", "state": {"running": {}}},
                {"name": "b", "containerID": "podvisor://cb", "state": {"running": {}}},
                {"name": "done", "containerID": "podvisor://cd", "state": {"terminated": {}}}]}});
        let report = |a: u64, b: Option<u64>| NodeReport {
            node: Some(Sample {
                cpu_ns: a,
                working_set_bytes: 1 << 20,
            }),
            containers: [("ca".to_string(), Some(a)), ("cb".to_string(), b)]
                .into_iter()
                .filter_map(|(id, v)| {
                    v.map(|v| {
                        (
                            id,
                            Sample {
                                cpu_ns: v,
                                working_set_bytes: 2048,
                            },
                        )
                    })
                })
                .collect(),
        };
        let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let none = HashSet::new();
        m.record(t(100), vec![("n1".into(), report(0, None))], &none);
        m.record(t(110), vec![("n1".into(), report(1_000_000_000, Some(0)))], &none);
        assert_eq!(m.pod_metrics(&pod), None, "b has one sample");
        m.record(
            t(120),
            vec![("n1".into(), report(2_000_000_000, Some(500_000_000)))],
            &none,
        );
        let shown = m.pod_metrics(&pod).unwrap();
        assert_eq!(shown["kind"], "PodMetrics");
        assert_eq!(shown["metadata"]["labels"]["app"], "web");
        assert_eq!(shown["window"], "10s");
        assert_eq!(
            shown["containers"],
            json!([{"name": "a", "usage": {"cpu": "100000000n", "memory": "2Ki"}},
                   {"name": "b", "usage": {"cpu": "50000000n", "memory": "2Ki"}}])
        );
        let node = m.node_metrics(&json!({"metadata": {"name": "n1"}})).unwrap();
        assert_eq!(node["usage"]["memory"], "1024Ki");
        // A node that stops reporting is forgotten.
        m.record(t(130), vec![], &none);
        assert_eq!(m.node_metrics(&json!({"metadata": {"name": "n1"}})), None);
    }
}
