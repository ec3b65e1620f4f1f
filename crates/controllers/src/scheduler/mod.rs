//! The scheduler: binds pending pods to nodes as kube-scheduler's default profile does
//! (`cluster-semantics.md` §1; the filters, scores and messages are [`fit`]).
//!
//! It follows Nodes and non-terminal Pods (1.1) into reflector caches (pods on a watch of its own
//! with a field selector, or on the controller manager's shared pod watch when both run in one
//! process without leader election, passing over the terminal ones). Every change leads to a
//! pass over the pods without a node that name the default scheduler (1.2), highest priority
//! first, then oldest (1.4); a pod is skipped while nothing it could depend on changed since
//! its last failed attempt (the legacy re-queue of 1.9: any change of a node's labels, taints,
//! cordon or allocatable, or of the set of bound pods, retries every unschedulable pod, after
//! its back-off of 1, 2, 4, 8, then 10 s; at the latest after 5 min). A chosen node is bound
//! through `pods/binding` (1.26) and counted at once for the next pod of the pass (1.25), with a
//! `Scheduled` event (1.28). A pod that fits nowhere gets `PodScheduled=False`, reason
//! `Unschedulable` and the aggregate message (1.24), and a `FailedScheduling` Warning event
//! whose note is cut at 1024 bytes.

pub mod fit;

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use crate::events::Recorder;
use futures_util::FutureExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{EventType, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::debug;

use crate::events::{namespace, publish};
use crate::watch::{Shared, follow, shared};
use fit::NodeView;
use podvisor_workloads::pods::is_finished;

/// The scheduler's name: pods ask for it in `spec.schedulerName` (the API's default).
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// `podInitialBackoffSeconds` and `podMaxBackoffSeconds` (1.8).
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(10));
/// How long an unschedulable pod waits for a change before it is tried anyway (1.8).
const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);
/// The longest event note (1.24).
const NOTE_LIMIT: usize = 1024;

/// The last failed attempt at a pod.
struct Attempt {
    /// What the cluster and the pod looked like then.
    seen: (u64, u64),
    /// Failed attempts so far.
    count: u32,
    /// When the attempt was made.
    at: Instant,
}

impl Attempt {
    fn backoff(&self) -> Duration {
        let doubled = BACKOFF
            .0
            .saturating_mul(1 << self.count.saturating_sub(1).min(16));
        doubled.min(BACKOFF.1)
    }
}

/// Schedules pods until dropped, on a watch of non-terminal pods of its own.
pub async fn run(client: Client) {
    let live = watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let (pods, watch) = shared(Api::<Pod>::all(client.clone()), live);
    tokio::select! {
        () = watch => {}
        () = run_shared(client, pods) => {}
    }
}

/// Schedules pods until dropped, on a pod watch it shares with other loops (terminal pods in
/// it are passed over).
pub(crate) async fn run_shared(client: Client, pods: Shared<Pod>) {
    let (tx, mut touched) = mpsc::unbounded_channel();
    let (nodes, a) = follow(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        tx.clone(),
    );
    let b = pods.touched(tx);
    let pods_listed = pods.ready();
    let pods = pods.store().clone();
    // The followers end with this task.
    let _followers = [a.boxed(), b.boxed()].map(|f| AbortOnDropHandle::new(tokio::spawn(f)));
    if nodes.wait_until_ready().await.is_err() || !pods_listed.await {
        return;
    }
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: SCHEDULER_NAME.into(),
            instance: None,
        },
    );
    let mut attempts: HashMap<String, Attempt> = HashMap::new();
    loop {
        let wake = pass(&client, &recorder, &nodes, &pods, &mut attempts).await;
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            change = touched.recv() => {
                if change.is_none() {
                    return;
                }
                // Gather a burst into one pass.
                while touched.try_recv().is_ok() {}
            }
            () = sleep => {}
        }
    }
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// What of the cluster a filter reads: nodes' labels, taints, cordon and allocatable, and
/// which pods are bound where.
fn cluster_key(nodes: &[std::sync::Arc<Node>], pods: &[std::sync::Arc<Pod>]) -> u64 {
    let nodes: Vec<String> = nodes
        .iter()
        .map(|n| {
            let spec = n.spec.as_ref().map(|s| (&s.taints, s.unschedulable));
            let allocatable = n.status.as_ref().map(|s| &s.allocatable);
            serde_json::to_string(&(&n.metadata.name, &n.metadata.labels, spec, allocatable))
                .unwrap_or_default()
        })
        .collect();
    let mut bound: Vec<(&str, &str)> = pods
        .iter()
        .filter_map(|p| Some((p.metadata.uid.as_deref()?, p.spec.as_ref()?.node_name.as_deref()?)))
        .collect();
    bound.sort_unstable();
    hash_of(&(nodes, bound))
}

/// One pass over the pending pods; returns when the next back-off ends, if one is waiting.
async fn pass(
    client: &Client,
    recorder: &Recorder,
    nodes: &Store<Node>,
    pods: &Store<Pod>,
    attempts: &mut HashMap<String, Attempt>,
) -> Option<Instant> {
    // Terminal pods hold no resources and are not scheduled (1.1).
    let mut pod_list = pods.state();
    pod_list.retain(|p| !is_finished(p));
    // Most passes (every change of any pod: a status write, a readiness flip) find nothing to
    // place; they cost a look at each pod, not a copy of the cluster.
    if !pod_list.iter().any(|p| wants_scheduling(p)) {
        attempts.clear();
        return None;
    }
    let node_list = nodes.state();
    let cluster = cluster_key(&node_list, &pod_list);
    let mut bound = fit::by_node(pod_list.iter().map(|p| p.as_ref()));
    let mut views: Vec<NodeView> = node_list
        .iter()
        .map(|n| {
            let pods = bound
                .remove(n.metadata.name.as_deref().unwrap_or(""))
                .unwrap_or_default();
            NodeView::new((**n).clone(), pods)
        })
        .collect();
    views.sort_by(|a, b| a.node.metadata.name.cmp(&b.node.metadata.name));
    let mut pending: Vec<&Pod> = pod_list
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| wants_scheduling(p))
        .collect();
    pending.sort_by_key(|p| {
        let priority = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        (
            std::cmp::Reverse(priority),
            p.metadata.creation_timestamp.clone(),
            p.name_any(),
        )
    });
    // Forget the attempts of pods no longer pending (a set: a pass may see thousands).
    let uids: std::collections::HashSet<&str> =
        pending.iter().filter_map(|p| p.metadata.uid.as_deref()).collect();
    attempts.retain(|uid, _| uids.contains(uid.as_str()));
    let now = Instant::now();
    let mut wake: Option<Instant> = None;
    for pod in pending {
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        let seen = (
            cluster,
            hash_of(&serde_json::to_string(&pod.spec).unwrap_or_default()),
        );
        if let Some(last) = attempts.get(&uid) {
            let ready_at = last.at + last.backoff();
            let stale = now.duration_since(last.at) >= MAX_UNSCHEDULABLE;
            if last.seen == seen && !stale {
                let flush = last.at + MAX_UNSCHEDULABLE;
                wake = Some(wake.map_or(flush, |w| w.min(flush)));
                continue;
            }
            if now < ready_at {
                wake = Some(wake.map_or(ready_at, |w| w.min(ready_at)));
                continue;
            }
        }
        let failure = match fit::choose(pod, &views) {
            Ok(node) => match bind(client, pod, &node).await {
                Ok(()) => {
                    attempts.remove(&uid);
                    let note = format!(
                        "Successfully assigned {}/{} to {node}",
                        namespace(pod),
                        pod.name_any()
                    );
                    publish(
                        recorder,
                        &pod.object_ref(&()),
                        EventType::Normal,
                        "Scheduled",
                        "Binding",
                        note,
                    )
                    .await;
                    if let Some(view) = views
                        .iter_mut()
                        .find(|v| v.node.metadata.name.as_deref() == Some(&node))
                    {
                        let mut assumed = pod.clone();
                        assumed.spec.get_or_insert_with(Default::default).node_name = Some(node.clone());
                        view.add(assumed);
                    }
                    continue;
                }
                // Bound or deleted meanwhile, or the API failed: tried again after the back-off.
                Err(e) => {
                    debug!(error = %e, pod = %pod.name_any(), "binding failed");
                    None
                }
            },
            Err(message) => Some(message),
        };
        let count = attempts.get(&uid).map_or(0, |a| a.count) + 1;
        let attempt = Attempt { seen, count, at: now };
        let ready_at = now + attempt.backoff();
        wake = Some(wake.map_or(ready_at, |w| w.min(ready_at)));
        attempts.insert(uid, attempt);
        if let Some(message) = failure {
            mark_unschedulable(client, pod, &message).await;
            let note = truncate(&message);
            publish(
                recorder,
                &pod.object_ref(&()),
                EventType::Warning,
                "FailedScheduling",
                "Scheduling",
                note,
            )
            .await;
        }
    }
    wake
}

/// A pod this scheduler must place (1.2, 1.5, 1.11).
fn wants_scheduling(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.node_name.as_deref().unwrap_or("").is_empty()
        && spec.scheduler_name.as_deref().unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME
        && spec.scheduling_gates.as_ref().is_none_or(Vec::is_empty)
        && pod.metadata.deletion_timestamp.is_none()
}

/// The note of an event: at most 1024 bytes, a cut one ending in ` ...` (1.24).
fn truncate(message: &str) -> String {
    if message.len() <= NOTE_LIMIT {
        return message.to_owned();
    }
    let mut end = NOTE_LIMIT - 4;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ...", &message[..end])
}

async fn bind(client: &Client, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name_any()),
            namespace: Some(namespace(pod).to_owned()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_owned()),
            ..Default::default()
        },
    };
    Api::<Pod>::namespaced(client.clone(), namespace(pod))
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &pod.name_any(),
            &PostParams::default(),
            &binding,
        )
        .await
        .map(drop)
}

/// Sets `PodScheduled=False`, reason `Unschedulable`, unless the pod already says so.
async fn mark_unschedulable(client: &Client, pod: &Pod, message: &str) {
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    if current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    }) {
        return;
    }
    let transition = match current {
        Some(c) if c.status == "False" => c.last_transition_time.clone(),
        _ => None,
    }
    .unwrap_or_else(|| {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
    });
    let patch = json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    }]}});
    let api = Api::<Pod>::namespaced(client.clone(), namespace(pod));
    if let Err(e) = api
        .patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        debug!(error = %e, pod = %pod.name_any(), "setting PodScheduled=False failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_one_second_to_ten() {
        let at = Instant::now();
        let waits: Vec<u64> = (1..=6)
            .map(|count| {
                Attempt {
                    seen: (0, 0),
                    count,
                    at,
                }
                .backoff()
                .as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn long_notes_are_cut_at_1024_bytes() {
        let long = "é".repeat(600);
        let note = truncate(&long);
        assert!(
            note.len() <= NOTE_LIMIT && note.ends_with(" ..."),
            "{}",
            note.len()
        );
        assert_eq!(truncate("short"), "short");
    }
}
