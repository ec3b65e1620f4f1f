//! The node as a member of its own Kubernetes API: pods come from the store, and their status,
//! events and the Node object go back to it.
//!
//! - [`follow_pods`] lists and watches pods, binds unassigned ones to this node (there is no
//!   scheduler) and hands this node's pods to the run loop as [`PodChange`]s.
//! - [`ApiSink`] is the [`PodSink`] that writes pod status (through the same store the API
//!   serves) and records Events; once a deleted pod has stopped, it removes the object.
//! - [`heartbeat`] registers the Node object, keeps its `Ready` condition fresh and renews the
//!   node's Lease in `kube-node-lease`, as the kubelet does.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use podvisor_core::corev1::{Pod, PodStatus};
use podvisor_kubelet::{PodSink, PodView};
use podvisor_lifecycle::{Event, Time};
use podvisor_store::{EventType as WatchKind, ListOptions, ObjectKey, Preconditions, Store, StoreError};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// How often the Node object's heartbeat and its Lease are renewed.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// The node Lease's duration (the kubelet's default `nodeLeaseDurationSeconds`); it is renewed
/// every [`HEARTBEAT`], a quarter of it, as the kubelet renews.
pub const LEASE_DURATION_SECONDS: i64 = 40;

/// How often the Node's status is written when nothing in it changed (the kubelet's
/// `nodeStatusReportFrequency`): with the Lease as the heartbeat, an unchanged status is not
/// rewritten every period.
pub const NODE_STATUS_REPORT: Duration = Duration::from_secs(5 * 60);

/// The namespace of the nodes' heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// A change of a pod assigned to this node.
#[derive(Debug)]
pub enum PodChange {
    /// Run the pod, or pass its new version to its worker.
    Apply(Box<Pod>),
    /// The object is gone from the API (force deletion): stop the pod at once.
    Gone {
        /// The pod's UID.
        uid: String,
    },
}

fn pod_key(pod: &Pod) -> ObjectKey {
    ObjectKey::new(
        "pods",
        pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// Lists and watches every pod; binds pods without `spec.nodeName` to `node_name` and sends
/// this node's pods to `changes`. Runs until `changes` is closed; relists after watch errors.
pub async fn follow_pods(
    store: Arc<dyn Store>,
    node_name: String,
    changes: mpsc::UnboundedSender<PodChange>,
) {
    let mut known: HashSet<String> = HashSet::new();
    loop {
        if changes.is_closed() {
            return;
        }
        let list = match store.list("pods", None, ListOptions::default()).await {
            Ok(list) => list,
            Err(e) => {
                warn!(error = %e, "listing pods failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut present = HashSet::new();
        for item in list.items {
            if let Some(uid) = handle(&*store, &node_name, item.object, &changes).await {
                present.insert(uid);
            }
        }
        for uid in known.difference(&present) {
            let _ = changes.send(PodChange::Gone { uid: uid.clone() });
        }
        known = present;
        let mut watch = match store.watch("pods", None, list.revision).await {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "watching pods failed; relisting");
                continue;
            }
        };
        while let Some(event) = futures_util::StreamExt::next(&mut watch).await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    debug!(error = %e, "pod watch ended; relisting");
                    break;
                }
            };
            match event.kind {
                WatchKind::Deleted => {
                    let uid = event.object["metadata"]["uid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    if known.remove(&uid) {
                        let _ = changes.send(PodChange::Gone { uid });
                    }
                }
                WatchKind::Added | WatchKind::Modified => {
                    if let Some(uid) = handle(&*store, &node_name, event.object, &changes).await {
                        known.insert(uid);
                    }
                }
            }
            if changes.is_closed() {
                return;
            }
        }
    }
}

/// Binds or forwards one pod; returns its UID if it runs here (not in a terminal phase).
async fn handle(
    store: &dyn Store,
    node_name: &str,
    object: Value,
    changes: &mpsc::UnboundedSender<PodChange>,
) -> Option<String> {
    let pod: Pod = match serde_json::from_value(object.clone()) {
        Ok(pod) => pod,
        Err(e) => {
            warn!(error = %e, "undecodable pod in the store");
            return None;
        }
    };
    let assigned = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    match assigned {
        None => {
            // No scheduler: this node takes every unassigned pod. The watch brings it back bound.
            let mut bound = object;
            bound["spec"]["nodeName"] = json!(node_name);
            let rv = pod
                .metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok());
            let pre = Preconditions {
                resource_version: rv,
                uid: pod.metadata.uid.clone(),
            };
            if let Err(e) = store.update(&pod_key(&pod), bound, pre).await {
                debug!(error = %e, "binding a pod failed (it changed meanwhile)");
            }
            None
        }
        Some(name) if name == node_name => {
            let uid = pod.metadata.uid.clone()?;
            // A pod in a terminal phase is done: the kubelet never runs it again, and its status
            // (written when it finished) stays as it is, whatever else changes in the object.
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if !matches!(phase, Some("Succeeded" | "Failed")) {
                let _ = changes.send(PodChange::Apply(Box::new(pod)));
                return Some(uid);
            }
            if pod.metadata.deletion_timestamp.is_some() {
                // Finished and deleted (its removal was interrupted, e.g. by a node restart):
                // nothing runs any more, so the object can go, as the kubelet's status manager
                // removes it.
                let pre = Preconditions {
                    resource_version: None,
                    uid: Some(uid.clone()),
                };
                if let Err(e) = store.delete(&pod_key(&pod), pre).await {
                    debug!(error = %e, "removing a finished deleted pod failed");
                }
            }
            // No worker needs to hear of it again (a finished worker ignores a stop).
            None
        }
        Some(_) => None,
    }
}

enum SinkMsg {
    Status {
        key: ObjectKey,
        uid: String,
        status: Box<PodStatus>,
        remove: bool,
    },
    Event {
        pod: Box<Pod>,
        event: Event,
        at: Time,
    },
}

/// The [`PodSink`] that writes to the store: pod status, Events, and the final removal of a
/// deleted pod once it has stopped. Writes happen on a background task, newest status first
/// wins, so the pod workers never wait for the disk.
pub struct ApiSink {
    tx: mpsc::UnboundedSender<SinkMsg>,
    detached: std::sync::atomic::AtomicBool,
}

impl ApiSink {
    /// A sink writing to `store` as node `node_name`, and the task that does the writing (spawn it).
    pub fn new(
        store: Arc<dyn Store>,
        node_name: String,
    ) -> (ApiSink, impl std::future::Future<Output = ()> + Send) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            ApiSink {
                tx,
                detached: std::sync::atomic::AtomicBool::new(false),
            },
            write_loop(store, node_name, rx),
        )
    }

    /// Stops writing: what pods report from now on stays out of the API. The node detaches
    /// before it stops its pods at shutdown, so the API keeps them as they were running and a
    /// restarted node runs them again (restart counts continuing) instead of finding them
    /// terminated.
    pub fn detach(&self) {
        self.detached.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn attached(&self) -> bool {
        !self.detached.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl PodSink for ApiSink {
    fn status(&self, view: &PodView) {
        if !self.attached() {
            return;
        }
        let Some(status) = view.pod.status.clone() else {
            return;
        };
        let uid = view.pod.metadata.uid.clone().unwrap_or_default();
        let remove = view.finished && view.pod.metadata.deletion_timestamp.is_some();
        let _ = self.tx.send(SinkMsg::Status {
            key: pod_key(&view.pod),
            uid,
            status: Box::new(status),
            remove,
        });
    }

    fn event(&self, pod: &Pod, event: &Event, at: Time) {
        if !self.attached() {
            return;
        }
        let _ = self.tx.send(SinkMsg::Event {
            pod: Box::new(pod.clone()),
            event: event.clone(),
            at,
        });
    }
}

/// How many distinct events the node aggregates repeats of at once (client-go's LRU size).
const EVENT_AGGREGATION_ENTRIES: usize = 4096;

async fn write_loop(store: Arc<dyn Store>, node_name: String, mut rx: mpsc::UnboundedReceiver<SinkMsg>) {
    // (pod uid, reason, message, field path) → (event name, count), to aggregate repeats.
    let mut seen: HashMap<(String, String, String, String), (String, i64)> = HashMap::new();
    let mut counter: u64 = 0;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        // Only the newest status of each pod matters.
        let mut statuses: HashMap<ObjectKey, (String, Box<PodStatus>, bool)> = HashMap::new();
        for msg in batch {
            match msg {
                SinkMsg::Status {
                    key,
                    uid,
                    status,
                    remove,
                } => {
                    let entry = statuses
                        .entry(key)
                        .or_insert((uid.clone(), status.clone(), false));
                    *entry = (uid, status, entry.2 || remove);
                }
                SinkMsg::Event { pod, event, at } => {
                    counter += 1;
                    record_event(&*store, &node_name, &pod, &event, at, &mut seen, counter).await;
                }
            }
        }
        for (key, (uid, status, remove)) in statuses {
            write_status(&*store, &key, &uid, &status).await;
            if remove {
                // A removed pod's events are never aggregated again.
                seen.retain(|(pod_uid, ..), _| *pod_uid != uid);
                let pre = Preconditions {
                    resource_version: None,
                    uid: Some(uid),
                };
                match store.delete(&key, pre).await {
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => warn!(error = %e, pod = %key.name, "removing a terminated pod failed"),
                }
            }
        }
    }
}

async fn write_status(store: &dyn Store, key: &ObjectKey, uid: &str, status: &PodStatus) {
    let Ok(status) = serde_json::to_value(status) else {
        return;
    };
    for _ in 0..5 {
        let current = match store.get(key).await {
            Ok(current) => current,
            Err(_) => return,
        };
        if current.object["metadata"]["uid"].as_str() != Some(uid) {
            return;
        }
        let mut object = current.object;
        let mut status = status.clone();
        keep_foreign_conditions(&object["status"], &mut status);
        object["status"] = status;
        let pre = Preconditions {
            resource_version: Some(current.revision),
            uid: Some(uid.to_owned()),
        };
        match store.update(key, object, pre).await {
            Ok(_) => return,
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => {
                warn!(error = %e, pod = %key.name, "writing pod status failed");
                return;
            }
        }
    }
}

use podvisor_lifecycle::KUBELET_CONDITIONS;

fn keep_foreign_conditions(stored: &Value, ours: &mut Value) {
    let foreign: Vec<Value> = stored["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c["type"].as_str().unwrap_or_default()))
        .cloned()
        .collect();
    let owned: Vec<Value> = ours["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| KUBELET_CONDITIONS.contains(&c["type"].as_str().unwrap_or_default()))
        .cloned()
        .collect();
    ours["conditions"] = Value::Array(foreign.into_iter().chain(owned).collect());
}

async fn record_event(
    store: &dyn Store,
    node_name: &str,
    pod: &Pod,
    event: &Event,
    at: Time,
    seen: &mut HashMap<(String, String, String, String), (String, i64)>,
    counter: u64,
) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let field_path = event.field_path.clone().unwrap_or_default();
    let when = serde_json::to_value(at.to_k8s()).unwrap_or(Value::Null);
    let id = (
        uid.clone(),
        event.reason.to_owned(),
        event.message.clone(),
        field_path.clone(),
    );
    if let Some((name, count)) = seen.get_mut(&id) {
        let key = ObjectKey::new("events", namespace.clone(), name.clone());
        if let Ok(current) = store.get(&key).await {
            *count += 1;
            let mut object = current.object;
            object["count"] = json!(*count);
            object["lastTimestamp"] = when.clone();
            let pre = Preconditions {
                resource_version: Some(current.revision),
                uid: None,
            };
            if store.update(&key, object, pre).await.is_ok() {
                return;
            }
        }
    }
    let name = format!("{pod_name}.{:x}{:08x}", at.as_millis(), counter);
    let mut involved =
        json!({"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": pod_name, "uid": uid});
    if !field_path.is_empty() {
        involved["fieldPath"] = json!(field_path);
    }
    let object = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace, "uid": podvisor_apiserver::meta::new_uid(),
            "creationTimestamp": when},
        "involvedObject": involved,
        "reason": event.reason,
        "message": event.message,
        "type": event.type_.as_str(),
        "source": {"component": "kubelet", "host": node_name},
        "reportingComponent": "kubelet",
        "reportingInstance": node_name,
        "firstTimestamp": when,
        "lastTimestamp": when,
        "count": 1,
    });
    let key = ObjectKey::new("events", namespace, name.clone());
    match store.create(&key, object).await {
        Ok(_) => {
            // Bounded like client-go's event aggregation cache (4096 entries): when it is full
            // it starts afresh, and a repeat of a forgotten event starts a new Event object.
            if seen.len() >= EVENT_AGGREGATION_ENTRIES {
                seen.clear();
            }
            seen.insert(id, (name, 1));
        }
        Err(e) => debug!(error = %e, "recording an event failed"),
    }
}

/// What the Node object says about the machine.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    /// The node's name.
    pub name: String,
    /// Its address (`InternalIP`).
    pub address: Option<String>,
    /// The pod CIDR.
    pub pod_cidr: String,
    /// The node's data dir: its file system is the one DiskPressure watches, and the runtime
    /// is Ready while it can write there.
    pub data_dir: std::path::PathBuf,
}

/// Each condition's status and when it last changed, so `lastTransitionTime` moves only when
/// the status flips (`cluster-semantics.md` §2.4).
#[derive(Default)]
struct Transitions(HashMap<&'static str, (&'static str, Value)>);

impl Transitions {
    /// The conditions as the Node shows them, heartbeats at `now`.
    fn conditions(&mut self, measured: &[crate::health::Condition], now: &Value) -> Value {
        Value::Array(
            measured
                .iter()
                .map(|c| {
                    let since = match self.0.get(c.type_) {
                        Some((status, since)) if *status == c.status => since.clone(),
                        _ => {
                            self.0.insert(c.type_, (c.status, now.clone()));
                            now.clone()
                        }
                    };
                    json!({"type": c.type_, "status": c.status, "reason": c.reason,
                        "message": c.message, "lastHeartbeatTime": now, "lastTransitionTime": since})
                })
                .collect(),
        )
    }
}

/// Registers the Node object and renews its Lease every [`HEARTBEAT`], until dropped; the
/// Node's status is written when it changed, or every [`NODE_STATUS_REPORT`] otherwise, as the
/// kubelet does.
pub async fn heartbeat(store: Arc<dyn Store>, facts: NodeFacts, clock: podvisor_kubelet::Clock) {
    let key = ObjectKey::new("nodes", "", facts.name.clone());
    let mut transitions = Transitions::default();
    let mut reported: Option<tokio::time::Instant> = None;
    loop {
        let now = serde_json::to_value(clock.now().to_k8s()).unwrap_or(Value::Null);
        // Measured off the async workers: the runtime check syncs a file to disk.
        let data_dir = facts.data_dir.clone();
        let measured = tokio::task::spawn_blocking(move || crate::health::measure(&data_dir))
            .await
            .unwrap_or_else(|e| crate::health::Measured {
                runtime_error: Some(format!("measuring the node failed: {e}")),
                ..Default::default()
            });
        let conditions = transitions.conditions(&crate::health::conditions(&measured), &now);
        let status = node_status(&facts, conditions);
        match store.get(&key).await {
            Ok(current) => {
                if status_report_due(
                    &current.object["status"],
                    &status,
                    reported.map(|at| at.elapsed()),
                ) {
                    let mut object = current.object;
                    object["status"] = status;
                    let pre = Preconditions {
                        resource_version: Some(current.revision),
                        uid: None,
                    };
                    match store.update(&key, object, pre).await {
                        Ok(_) => reported = Some(tokio::time::Instant::now()),
                        Err(e) => debug!(error = %e, "node status update failed; retrying next period"),
                    }
                }
            }
            Err(StoreError::NotFound { .. }) => {
                let object = json!({
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": facts.name,
                        "uid": podvisor_apiserver::meta::new_uid(),
                        "creationTimestamp": now,
                        "labels": {
                            "kubernetes.io/hostname": facts.name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": podvisor_apiserver::discovery::go_arch(),
                            "node-role.kubernetes.io/control-plane": "",
                        },
                    },
                    "spec": {"podCIDR": facts.pod_cidr, "podCIDRs": [facts.pod_cidr]},
                    "status": status,
                });
                match store.create(&key, object).await {
                    Ok(_) => reported = Some(tokio::time::Instant::now()),
                    Err(e) => warn!(error = %e, "registering the node failed"),
                }
            }
            Err(e) => warn!(error = %e, "reading the node failed"),
        }
        renew_lease(&*store, &facts.name, clock.now()).await;
        tokio::time::sleep(HEARTBEAT).await;
    }
}

/// Whether the Node's status must be written: it changed (beyond its heartbeat times), or
/// [`NODE_STATUS_REPORT`] passed since it was last written (`since_last`, `None` if never).
fn status_report_due(stored: &Value, new: &Value, since_last: Option<Duration>) -> bool {
    since_last.is_none_or(|d| d >= NODE_STATUS_REPORT)
        || without_heartbeats(stored) != without_heartbeats(new)
}

/// A Node status without its conditions' `lastHeartbeatTime`s, to tell a change from a renewal.
fn without_heartbeats(status: &Value) -> Value {
    let mut status = status.clone();
    for c in status["conditions"].as_array_mut().into_iter().flatten() {
        if let Some(c) = c.as_object_mut() {
            c.remove("lastHeartbeatTime");
        }
    }
    status
}

/// Creates or renews the node's Lease (`kube-node-lease/<node>`), owned by the Node object.
async fn renew_lease(store: &dyn Store, node: &str, now: Time) {
    let renew = podvisor_apiserver::meta::rfc3339_micro(now.as_millis());
    let key = ObjectKey::new("coordination.k8s.io/leases", NODE_LEASE_NAMESPACE, node);
    match store.get(&key).await {
        Ok(current) => {
            let mut object = current.object;
            object["spec"]["renewTime"] = json!(renew);
            object["spec"]["holderIdentity"] = json!(node);
            let pre = Preconditions {
                resource_version: Some(current.revision),
                uid: None,
            };
            if let Err(e) = store.update(&key, object, pre).await {
                debug!(error = %e, "renewing the node lease failed; retrying next period");
            }
        }
        Err(StoreError::NotFound { .. }) => {
            let namespace = ObjectKey::new("namespaces", "", NODE_LEASE_NAMESPACE);
            if let Err(StoreError::NotFound { .. }) = store.get(&namespace).await {
                let ns = json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": NODE_LEASE_NAMESPACE, "uid": podvisor_apiserver::meta::new_uid(),
                        "creationTimestamp": podvisor_apiserver::meta::rfc3339(now.as_millis()),
                        "labels": {"kubernetes.io/metadata.name": NODE_LEASE_NAMESPACE}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                });
                let _ = store.create(&namespace, ns).await;
            }
            let mut owner = Vec::new();
            if let Ok(n) = store.get(&ObjectKey::new("nodes", "", node)).await {
                owner.push(json!({"apiVersion": "v1", "kind": "Node", "name": node,
                    "uid": n.object["metadata"]["uid"]}));
            }
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": node, "namespace": NODE_LEASE_NAMESPACE,
                    "uid": podvisor_apiserver::meta::new_uid(),
                    "creationTimestamp": podvisor_apiserver::meta::rfc3339(now.as_millis()),
                    "ownerReferences": owner},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                    "renewTime": renew},
            });
            if let Err(e) = store.create(&key, lease).await {
                debug!(error = %e, "creating the node lease failed; retrying next period");
            }
        }
        Err(e) => warn!(error = %e, "reading the node lease failed"),
    }
}

/// The first line of a file that identifies the machine, or empty when it cannot be read
/// (`product_uuid` is root's only).
fn machine_identity(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn node_status(facts: &NodeFacts, conditions: Value) -> Value {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_else(|| "0".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let resources = json!({"cpu": cpus.to_string(), "memory": format!("{memory_kib}Ki"), "pods": "110"});
    let mut addresses = vec![json!({"type": "Hostname", "address": facts.name})];
    if let Some(ip) = &facts.address {
        addresses.insert(0, json!({"type": "InternalIP", "address": ip}));
    }
    json!({
        "capacity": resources,
        "allocatable": resources,
        "addresses": addresses,
        "conditions": conditions,
        "nodeInfo": {
            "architecture": podvisor_apiserver::discovery::go_arch(),
            "bootID": machine_identity("/proc/sys/kernel/random/boot_id"),
            "containerRuntimeVersion": "podvisor://0.1.0",
            "kernelVersion": kernel,
            "kubeProxyVersion": "",
            "kubeletVersion": podvisor_apiserver::discovery::GIT_VERSION,
            "machineID": machine_identity("/etc/machine-id"),
            "operatingSystem": "linux",
            "osImage": "podvisor process node",
            "systemUUID": machine_identity("/sys/class/dmi/id/product_uuid"),
        },
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
    })
}

/// A sink that reports to two others (the API and the node's own output).
pub struct Tee<A, B>(pub Arc<A>, pub Arc<B>);

impl<A: PodSink, B: PodSink> PodSink for Tee<A, B> {
    fn status(&self, view: &PodView) {
        self.0.status(view);
        self.1.status(view);
    }

    fn event(&self, pod: &Pod, event: &Event, at: Time) {
        self.0.event(pod, event, at);
        self.1.event(pod, event, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_node_status_is_written_every_five_minutes_a_changed_one_at_once() {
        let facts = NodeFacts {
            name: "n".into(),
            address: None,
            pod_cidr: "10.88.0.0/16".into(),
            data_dir: "/nowhere".into(),
        };
        let healthy = crate::health::conditions(&crate::health::Measured::default());
        let mut transitions = Transitions::default();
        let mut at = |t: &str| transitions.conditions(&healthy, &json!(t));
        let stored = node_status(&facts, at("2026-01-01T00:00:10Z"));
        let renewed = node_status(&facts, at("2026-01-01T00:00:20Z"));
        let minute = Some(Duration::from_secs(60));
        assert!(
            !status_report_due(&stored, &renewed, minute),
            "only the heartbeat moved"
        );
        assert!(status_report_due(&stored, &renewed, Some(NODE_STATUS_REPORT)));
        assert!(status_report_due(&stored, &renewed, None), "never written");
        let moved = NodeFacts {
            address: Some("192.0.2.1".into()),
            ..facts
        };
        let changed = node_status(&moved, at("2026-01-01T00:00:20Z"));
        assert!(
            status_report_due(&stored, &changed, minute),
            "a changed status is written at once"
        );
    }

    #[test]
    fn a_condition_changes_its_transition_time_only_when_its_status_flips() {
        let mut m = crate::health::Measured::default();
        let mut transitions = Transitions::default();
        let first = transitions.conditions(&crate::health::conditions(&m), &json!("t1"));
        m.runtime_error = Some("disk gone".into());
        let second = transitions.conditions(&crate::health::conditions(&m), &json!("t2"));
        let third = transitions.conditions(&crate::health::conditions(&m), &json!("t3"));
        let times = |v: &Value, i: usize| {
            (
                v[i]["lastTransitionTime"].clone(),
                v[i]["lastHeartbeatTime"].clone(),
            )
        };
        assert_eq!(times(&first, 3), (json!("t1"), json!("t1")));
        assert_eq!(second[3]["status"], "False");
        assert_eq!(
            times(&second, 3),
            (json!("t2"), json!("t2")),
            "Ready flipped at t2"
        );
        assert_eq!(times(&third, 3), (json!("t2"), json!("t3")));
        assert_eq!(
            times(&third, 0),
            (json!("t1"), json!("t3")),
            "MemoryPressure never flipped"
        );
    }
}
