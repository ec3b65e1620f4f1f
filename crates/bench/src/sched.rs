//! `sched-throughput`: how fast the real scheduler (`podvisor_controllers::scheduler::run`)
//! binds a backlog of pending pods onto three Nodes, over an in-process API server on redb (its
//! client is the server's in-process handler, as in `podvisor server` and `podvisor node`).
//!
//! The Nodes are API objects only (allocatable cpu, memory and pods, Ready, a Lease in
//! `kube-node-lease`), no agents: the pods are bound, not run. The pods (with cpu and memory
//! requests) are all created first; the clock runs from the scheduler's start (its first list
//! included) until a store watch has seen every pod bound. Floor: the same number of
//! `pods/binding` POSTs issued one after the other by the harness through the same kind of
//! client (the API's own cost of binding, on as many pending pods in a cluster set up the same
//! way), so the ratio is the scheduler's overhead: its caches, filters and scores, and the
//! `Scheduled` event it records per pod.
//!
//! Not measured: pods that do not fit (back-off, FailedScheduling events) and scheduling while
//! pods keep arriving.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use podvisor_core::corev1::{Node, Pod};
use podvisor_core::k8s_openapi::api::coordination::v1::Lease;
use podvisor_store::{RedbStore, Store};
use serde_json::{Value, json};

use crate::stats::{Floor, Goal, Percentiles, Row};

/// The Nodes' names.
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// How long the scheduler may take for the whole backlog before the run fails.
const LIMIT: Duration = Duration::from_secs(120);
/// Each pod's requests: cpu in millicores, memory in MiB.
const POD_MILLICPU: usize = 10;
const POD_MEBIBYTES: usize = 16;
/// kube-scheduler's published throughput, the peer figure (pods/s, low end of ~100-300).
const PEER_PODS_PER_S: f64 = 100.0;

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {}})
}

/// A Ready node's status with room for `pods` of the benchmark's pods (by cpu, memory and
/// count), so each placed pod moves the least-allocated score.
fn node_status(pods: usize) -> Value {
    let resources = json!({
        "cpu": format!("{}m", pods * POD_MILLICPU),
        "memory": format!("{}Mi", pods * POD_MEBIBYTES),
        "pods": pods.to_string(),
    });
    json!({"status": {
        "capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "bench node", "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
    }})
}

fn lease(name: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()}})
}

/// Milliseconds since the epoch.
fn now_millis() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn now() -> String {
    podvisor_core::rfc3339::seconds(now_millis())
}

fn now_micro() -> String {
    podvisor_core::rfc3339::micros(now_millis())
}

fn pending_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "main", "image": "host", "command": ["sleep", "3600"],
            "resources": {"requests": {
                "cpu": format!("{POD_MILLICPU}m"), "memory": format!("{POD_MEBIBYTES}Mi")}}}]}})
}

/// Creates `n` pending pods named `<prefix><i>`.
async fn create_pods(pods: &Api<Pod>, prefix: &str, n: usize) -> Result<()> {
    for i in 0..n {
        let pod: Pod = serde_json::from_value(pending_pod(&format!("{prefix}{i}")))?;
        pods.create(&PostParams::default(), &pod)
            .await
            .with_context(|| format!("creating pod {prefix}{i}"))?;
    }
    Ok(())
}

/// An API server on a fresh redb store with the three Nodes and their Leases, and its
/// in-process client.
struct Cluster {
    store: Arc<dyn Store>,
    client: kube::Client,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// A cluster with room for `n` pods and half a node to spare.
    async fn new(n: usize) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("podvisor-bench-sched-")
            .tempdir()
            .context("creating the data directory")?;
        let store: Arc<dyn Store> =
            Arc::new(RedbStore::open(dir.path().join("store.redb")).context("opening the store")?);
        let server = podvisor_apiserver::ApiServer::new(store.clone(), Default::default());
        server.bootstrap().await.context("bootstrapping the API")?;
        let client = kube::Client::new(server.handler(), "default");
        let per_node = n.div_ceil(NODES.len()) + n / 2 + 10;
        let nodes: Api<Node> = Api::all(client.clone());
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        for name in NODES {
            let object: Node = serde_json::from_value(node(name))?;
            nodes
                .create(&PostParams::default(), &object)
                .await
                .context("creating a Node")?;
            nodes
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(node_status(per_node)),
                )
                .await
                .context("writing a Node's status")?;
            let object: Lease = serde_json::from_value(lease(name))?;
            leases
                .create(&PostParams::default(), &object)
                .await
                .context("creating a Lease")?;
        }
        Ok(Cluster {
            store,
            client,
            _dir: dir,
        })
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }
}

/// The floor: `n` pending pods bound by the harness itself, round robin, one at a time.
async fn floor(n: usize) -> Result<Duration> {
    let cluster = Cluster::new(n).await?;
    let pods = cluster.pods();
    create_pods(&pods, "floor-", n).await?;
    let started = Instant::now();
    for i in 0..n {
        let name = format!("floor-{i}");
        let target = NODES.get(i % NODES.len()).copied().unwrap_or(NODES[0]);
        let binding = json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": "default"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": target}});
        pods.create_subresource::<_, Value>("binding", &name, &PostParams::default(), &binding)
            .await
            .with_context(|| format!("binding {name}"))?;
    }
    Ok(started.elapsed())
}

/// Runs the benchmark with `n` pods.
pub(crate) async fn run(n: usize) -> Result<Vec<Row>> {
    let floor = floor(n).await?;
    // The scheduler on a backlog of `n` pending pods, in a cluster of its own.
    let cluster = Cluster::new(n).await?;
    create_pods(&cluster.pods(), "sched-", n).await?;
    let store = &cluster.store;
    let from = store.current_revision().await?;
    let mut watch = store.watch("pods", Some("default"), from).await?;
    let started = Instant::now();
    let scheduler = tokio::spawn(podvisor_controllers::scheduler::run(cluster.client.clone()));
    let mut bound: HashMap<String, String> = HashMap::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while bound.len() < n {
        let Ok(next) = tokio::time::timeout_at(deadline, watch.next()).await else {
            scheduler.abort();
            bail!("the scheduler bound {} of {n} pods within {LIMIT:?}", bound.len());
        };
        let Some(event) = next else {
            scheduler.abort();
            bail!("the pod watch ended");
        };
        let object = event?.object;
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        if let (true, Some(node)) = (name.starts_with("sched-"), object["spec"]["nodeName"].as_str()) {
            bound.insert(name.to_owned(), node.to_owned());
        }
    }
    let took = started.elapsed();
    scheduler.abort();
    let _ = scheduler.await;

    let mut spread: BTreeMap<&str, usize> = BTreeMap::new();
    for node in bound.values() {
        if !NODES.contains(&node.as_str()) {
            bail!("the scheduler bound a pod to {node}, which is not a Node");
        }
        *spread.entry(node.as_str()).or_default() += 1;
    }
    let spread: Vec<String> = spread
        .iter()
        .map(|(node, pods)| format!("{node} {pods}"))
        .collect();
    let secs = took.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = n as f64 / secs.max(f64::MIN_POSITIVE);
    #[allow(clippy::cast_precision_loss)]
    let floor_rate = n as f64 / floor.as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(vec![
        Row {
            bench: "sched-throughput".into(),
            metric: format!("{n} pending → all bound, 3 nodes"),
            unit: "ms",
            value: Percentiles::single(secs * 1e3),
            floor: Some(Floor {
                name: format!("{n} pods/binding POSTs by the harness, one at a time"),
                value: Percentiles::single(floor.as_secs_f64() * 1e3),
            }),
            goal: Goal::Ratio {
                p50: Some(3.0),
                p99: None,
            },
            note: Some(format!(
                "the floor is the API's own cost of binding; the scheduler also records a Scheduled event per pod; \
                 pods per node: {}",
                spread.join(", ")
            )),
        },
        Row {
            bench: "sched-throughput".into(),
            metric: "pods bound per second".into(),
            unit: "pods/s",
            value: Percentiles::single(rate),
            floor: None,
            goal: Goal::AtLeast(PEER_PODS_PER_S),
            note: Some(format!(
                "peer: kube-scheduler's published ~100-300 pods/s; the bare bindings ran at {floor_rate:.0}/s"
            )),
        },
    ])
}
