//! Node lifecycle, as kube-controller-manager's node lifecycle and taint-eviction controllers do
//! it (`cluster-semantics.md` §2C, §2D):
//!
//! - A node whose kubelet stops renewing its Lease (and posting status) for the grace period
//!   (50 s; 60 s before its first status) gets every condition `Unknown`, reason
//!   `NodeStatusUnknown`, "Kubelet stopped posting node status." (`kubectl get nodes`:
//!   NotReady) (2.9, 2.10).
//! - When Ready stops being True: a `NodeNotReady` event on the Node, and the `Ready` condition
//!   of its pods set False with a `NodeNotReady` Warning on each, so they leave Service
//!   endpoints (2.11).
//! - Taints follow the conditions: `not-ready` / `unreachable` and `unschedulable` NoSchedule
//!   mirror Ready and the cordon (2.12); `not-ready` or
//!   `unreachable` NoExecute while Ready is False or Unknown, unless no node at all is Ready
//!   (full disruption: nothing is evicted, 2.14) (2.13).
//! - Pods on a node with NoExecute taints are deleted at once when they do not tolerate one,
//!   otherwise when the smallest matching `tolerationSeconds` has passed since the taint was
//!   first seen (the API server's DefaultTolerationSeconds gives every pod 300 s), with
//!   `DisruptionTarget=True` and a `TaintManagerEviction` event; the delete uses the pod's own
//!   grace period, so the pod shows Terminating (2.17, 2.18).
//!
//! Not done: the per-zone eviction rate limit (taints are added at once) and partial
//! disruption (clusters here are one zone); the memory-, disk- and pid-pressure NoSchedule
//! taints (podvisor's kubelet evicts nothing under pressure yet, and a development machine with
//! under 10% free disk would stop all scheduling).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::events::Recorder;
use futures_util::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
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

/// The controller's timing (kube-controller-manager's flags).
#[derive(Clone, Debug)]
pub struct NodeLifecycleConfig {
    /// `--node-monitor-period`: how often nodes are looked at.
    pub monitor_period: Duration,
    /// `--node-monitor-grace-period`: how long a node may go without a heartbeat.
    pub grace: Duration,
    /// `--node-startup-grace-period`: the same before a node's first status.
    pub startup_grace: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            monitor_period: Duration::from_secs(5),
            grace: Duration::from_secs(50),
            startup_grace: Duration::from_secs(60),
        }
    }
}

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint keys this controller owns.
const MANAGED: [&str; 3] = [NOT_READY, UNREACHABLE, "node.kubernetes.io/unschedulable"];

/// What the controller last saw of a node's heartbeat, in its own clock (2.9).
struct Probe {
    at: Instant,
    heartbeat: Option<k8s_openapi::jiff::Timestamp>,
    renew: Option<k8s_openapi::jiff::Timestamp>,
    ready: Option<String>,
    /// The node's Ready went from True to something else and its pods are still to be marked
    /// not ready (retried each pass until every patch went through).
    mark_pods: bool,
}

/// Watches nodes, their Leases and pods until dropped, on a watch of pods of its own.
pub async fn run(client: Client, config: NodeLifecycleConfig) {
    let (pods, watch) = shared(Api::<Pod>::all(client.clone()), watcher::Config::default());
    tokio::select! {
        () = watch => {}
        () = run_shared(client, config, pods.clone()) => {}
    }
}

/// Watches nodes, their Leases and pods until dropped, on a pod watch it shares with other
/// loops.
pub(crate) async fn run_shared(client: Client, config: NodeLifecycleConfig, pods: Shared<Pod>) {
    let (tx, mut touched) = mpsc::unbounded_channel();
    let (nodes, a) = follow(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        tx.clone(),
    );
    let leases_api = Api::<Lease>::namespaced(client.clone(), "kube-node-lease");
    let (leases, b) = follow(leases_api, watcher::Config::default(), tx.clone());
    let c = pods.touched(tx);
    let pods_listed = pods.ready();
    let pods = pods.store().clone();
    // The followers end with this task.
    let _followers = [a.boxed(), b.boxed(), c.boxed()].map(|f| AbortOnDropHandle::new(tokio::spawn(f)));
    if !pods_listed.await {
        return;
    }
    for ready in [nodes.wait_until_ready().await, leases.wait_until_ready().await] {
        if ready.is_err() {
            return;
        }
    }
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "node-controller".into(),
            instance: None,
        },
    );
    let mut probes: HashMap<String, Probe> = HashMap::new();
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    let mut every = tokio::time::interval(config.monitor_period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            change = touched.recv() => {
                if change.is_none() {
                    return;
                }
                while touched.try_recv().is_ok() {}
            }
        }
        monitor(&client, &recorder, &config, &nodes, &leases, &pods, &mut probes).await;
        evict(&client, &recorder, &nodes, &pods, &mut first_seen).await;
    }
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// One monitor pass (2.9–2.13).
async fn monitor(
    client: &Client,
    recorder: &Recorder,
    config: &NodeLifecycleConfig,
    nodes: &Store<Node>,
    leases: &Store<Lease>,
    pods: &Store<Pod>,
    probes: &mut HashMap<String, Probe>,
) {
    let nodes = nodes.state();
    probes.retain(|name, _| nodes.iter().any(|n| n.metadata.name.as_deref() == Some(name)));
    let any_ready = nodes
        .iter()
        .any(|n| condition(n, "Ready").is_some_and(|c| c.status == "True"));
    let api = Api::<Node>::all(client.clone());
    for node in nodes.iter() {
        let name = node.name_any();
        let ready = condition(node, "Ready");
        let heartbeat = ready.and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0);
        let renew = leases
            .get(&kube::runtime::reflector::ObjectRef::new(&name).within("kube-node-lease"))
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        let now_i = Instant::now();
        let probe = probes.entry(name.clone()).or_insert_with(|| Probe {
            at: now_i,
            heartbeat,
            renew,
            ready: ready.map(|c| c.status.clone()),
            mark_pods: false,
        });
        if heartbeat != probe.heartbeat {
            probe.heartbeat = heartbeat;
            probe.at = now_i;
        }
        if renew.is_some() && renew > probe.renew {
            probe.renew = renew;
            probe.at = now_i;
        }
        let grace = if ready.is_none() {
            config.startup_grace
        } else {
            config.grace
        };
        let mut current = (**node).clone();
        if now_i.duration_since(probe.at) > grace && mark_unknown(&mut current) {
            match api.replace_status(&name, &PostParams::default(), &current).await {
                Ok(updated) => current = updated,
                Err(e) => {
                    debug!(error = %e, node = %name, "marking the node Unknown failed; next pass");
                    continue;
                }
            }
        }
        let status = condition(&current, "Ready").map(|c| c.status.clone());
        if probe.ready.as_deref() == Some("True") && status.as_deref() != Some("True") {
            let note = format!("Node {name} status is now: NodeNotReady");
            publish(
                recorder,
                &current.object_ref(&()),
                EventType::Normal,
                "NodeNotReady",
                "NodeNotReady",
                note,
            )
            .await;
        }
        // Pods are marked not ready when Ready leaves True (upstream's MarkPodsNotReady), not
        // on every pass, and never for a node that was not Ready yet (no Ready condition).
        if probe.ready.as_deref() == Some("True") && status.as_deref() != Some("True") {
            probe.mark_pods = true;
        }
        probe.ready.clone_from(&status);
        if status.as_deref() == Some("True") {
            probe.mark_pods = false;
        } else if probe.mark_pods {
            let mut all = true;
            for pod in pods
                .state()
                .iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&name))
            {
                all &= mark_pod_not_ready(client, recorder, pod).await;
            }
            probe.mark_pods = !all;
        }
        let wanted = taints(&current, any_ready);
        let have: Vec<Taint> = current
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if let Some(new) = reconcile_taints(&have, &wanted) {
            current.spec.get_or_insert_with(Default::default).taints = Some(new);
            if let Err(e) = api.replace(&name, &PostParams::default(), &current).await {
                debug!(error = %e, node = %name, "updating the node's taints failed; next pass");
            }
        }
    }
}

/// Sets every condition the kubelet posts to Unknown (2.10); returns whether Ready changed.
fn mark_unknown(node: &mut Node) -> bool {
    let created = node.metadata.creation_timestamp.clone();
    let conditions = node
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    let ready_before = conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone());
    for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(now());
            }
            None => conditions.push(NodeCondition {
                type_: type_.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: created.clone(),
                last_transition_time: Some(now()),
            }),
        }
    }
    ready_before.as_deref() != Some("Unknown")
}

/// The taints this controller wants on `node` (2.12, 2.13), without `timeAdded`.
fn taints(node: &Node, any_ready: bool) -> Vec<(String, String)> {
    let status = |type_: &str| condition(node, type_).map(|c| c.status.as_str());
    let mut wanted = Vec::new();
    let mut add = |key: &str, effect: &str| wanted.push((key.to_owned(), effect.to_owned()));
    match status("Ready") {
        Some("False") => add(NOT_READY, "NoSchedule"),
        Some("Unknown") => add(UNREACHABLE, "NoSchedule"),
        _ => {}
    }
    // The pressure conditions are not mirrored (see the module docs).
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        add("node.kubernetes.io/unschedulable", "NoSchedule");
    }
    // Full disruption (no node Ready): nothing is evicted (2.14).
    if any_ready {
        match status("Ready") {
            Some("False") => add(NOT_READY, "NoExecute"),
            Some("Unknown") => add(UNREACHABLE, "NoExecute"),
            _ => {}
        }
    }
    wanted
}

/// `have` with the managed taints replaced by `wanted` (kept ones keep their `timeAdded`), or
/// `None` when nothing changes.
fn reconcile_taints(have: &[Taint], wanted: &[(String, String)]) -> Option<Vec<Taint>> {
    let managed = |t: &Taint| {
        MANAGED.contains(&t.key.as_str()) && (t.effect == "NoSchedule" || t.effect == "NoExecute")
    };
    let mut out: Vec<Taint> = have
        .iter()
        .filter(|t| !managed(t) || wanted.iter().any(|(k, e)| *k == t.key && *e == t.effect))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !out.iter().any(|t| t.key == *key && t.effect == *effect) {
            out.push(Taint {
                key: key.clone(),
                effect: effect.clone(),
                time_added: Some(now()),
                value: None,
            });
        }
    }
    (out.len() != have.len() || out.iter().zip(have).any(|(a, b)| a != b)).then_some(out)
}

/// Sets a pod's Ready condition False (reason and message kept) with a Warning (2.11).
/// Sets the pod's Ready condition False (with a `NodeNotReady` event); whether that is done
/// (or there was nothing to do).
async fn mark_pod_not_ready(client: &Client, recorder: &Recorder, pod: &Pod) -> bool {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    if ready.is_none_or(|c| c.status != "True") || pod.metadata.deletion_timestamp.is_some() {
        return true;
    }
    let ns = podvisor_core::object::namespace_of(&pod.metadata).to_owned();
    let patch = json!({"status": {"conditions": [
        {"type": "Ready", "status": "False", "lastTransitionTime": now()}]}});
    let api = Api::<Pod>::namespaced(client.clone(), &ns);
    match api
        .patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(_) => {
            let reference = pod.object_ref(&());
            publish(
                recorder,
                &reference,
                EventType::Warning,
                "NodeNotReady",
                "NodeNotReady",
                "Node is not ready".into(),
            )
            .await;
            true
        }
        Err(e) => {
            debug!(error = %e, pod = %pod.name_any(), "marking the pod not ready failed; next pass");
            false
        }
    }
}

/// When `pod` must go from a node with `taints` (2.17): `None` never, `Some(ZERO)` now, else
/// after the smallest matching `tolerationSeconds`.
pub fn eviction_delay(pod: &Pod, taints: &[Taint]) -> Option<Duration> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut smallest: Option<i64> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<_> = tolerations
            .iter()
            .filter(|t| crate::scheduler::fit::tolerates(t, taint))
            .collect();
        if matching.is_empty() {
            return Some(Duration::ZERO);
        }
        for seconds in matching.iter().filter_map(|t| t.toleration_seconds) {
            smallest = Some(smallest.map_or(seconds, |s| s.min(seconds)));
        }
    }
    smallest.map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
}

/// One taint-eviction pass (2.17, 2.18).
async fn evict(
    client: &Client,
    recorder: &Recorder,
    nodes: &Store<Node>,
    pods: &Store<Pod>,
    first_seen: &mut HashMap<String, Instant>,
) {
    let tainted: BTreeMap<String, Vec<Taint>> = nodes
        .state()
        .iter()
        .filter_map(|n| {
            let taints: Vec<Taint> = n
                .spec
                .as_ref()?
                .taints
                .iter()
                .flatten()
                .filter(|t| t.effect == "NoExecute")
                .cloned()
                .collect();
            (!taints.is_empty()).then(|| (n.name_any(), taints))
        })
        .collect();
    let mut still = HashMap::new();
    for pod in pods.state().iter() {
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let Some(taints) = tainted.get(&node) else {
            if first_seen.contains_key(&uid) {
                eviction_event(recorder, pod, "Cancelling deletion of").await;
            }
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let seen = *first_seen.get(&uid).unwrap_or(&Instant::now());
        match eviction_delay(pod, taints) {
            Some(delay) if seen.elapsed() >= delay => delete(client, recorder, pod).await,
            Some(_) => {
                still.insert(uid, seen);
            }
            None => {}
        }
    }
    *first_seen = still;
}

/// The taint manager's Normal `TaintManagerEviction` event: `<what> Pod <ns>/<name>` (2.18).
async fn eviction_event(recorder: &Recorder, pod: &Pod, what: &str) {
    let note = format!("{what} Pod {}/{}", namespace(pod), pod.name_any());
    let reason = "TaintManagerEviction";
    publish(
        recorder,
        &pod.object_ref(&()),
        EventType::Normal,
        reason,
        reason,
        note,
    )
    .await;
}

/// `DisruptionTarget=True`, then DELETE with the pod's own grace period (2.18).
async fn delete(client: &Client, recorder: &Recorder, pod: &Pod) {
    let api = Api::<Pod>::namespaced(client.clone(), namespace(pod));
    let name = pod.name_any();
    eviction_event(recorder, pod, "Marking for deletion").await;
    let patch = json!({"status": {"conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint",
        "lastTransitionTime": now(),
    }]}});
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        debug!(error = %e, pod = %name, "marking the pod's disruption failed");
    }
    if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
        debug!(error = %e, pod = %name, "evicting the pod failed; next pass");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
            "tolerations": tolerations, "containers": [{"name": "c"}]}}))
        .unwrap()
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Taint::default()
        }
    }

    #[test]
    fn eviction_waits_for_the_smallest_matching_toleration() {
        let unreachable = [taint(UNREACHABLE, "NoExecute")];
        let defaults = pod(json!([
            {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 20},
        ]));
        assert_eq!(
            eviction_delay(&defaults, &unreachable),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            eviction_delay(&pod(json!([])), &unreachable),
            Some(Duration::ZERO)
        );
        let forever = pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]));
        assert_eq!(eviction_delay(&forever, &unreachable), None);
        assert_eq!(eviction_delay(&pod(json!([])), &[taint("x", "NoSchedule")]), None);
    }

    #[test]
    fn taints_mirror_conditions_and_nothing_is_evicted_in_full_disruption() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}, {"type": "DiskPressure", "status": "True"}]}}))
        .unwrap();
        let keys =
            |v: Vec<(String, String)>| v.into_iter().map(|(k, e)| format!("{k}:{e}")).collect::<Vec<_>>();
        assert_eq!(
            keys(taints(&node, true)),
            [
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unschedulable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute",
            ]
        );
        assert!(
            !keys(taints(&node, false))
                .iter()
                .any(|t| t.ends_with("NoExecute"))
        );
        // Others' taints stay; managed ones that no longer apply go; unchanged means no write.
        let have = [taint("gpu", "NoSchedule"), taint(NOT_READY, "NoExecute")];
        let wanted = vec![(UNREACHABLE.to_owned(), "NoExecute".to_owned())];
        let new = reconcile_taints(&have, &wanted).unwrap();
        let names: Vec<_> = new.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(names, ["gpu", UNREACHABLE]);
        assert_eq!(reconcile_taints(&new, &wanted), None);
    }

    #[test]
    fn a_silent_node_turns_unknown_with_the_kubelets_words() {
        let mut node: Node = serde_json::from_value(json!({"metadata": {"name": "n"},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}))
        .unwrap();
        assert!(mark_unknown(&mut node));
        let ready = condition(&node, "Ready").unwrap();
        assert_eq!(
            (
                ready.status.as_str(),
                ready.reason.as_deref(),
                ready.message.as_deref()
            ),
            (
                "Unknown",
                Some("NodeStatusUnknown"),
                Some("Kubelet stopped posting node status.")
            )
        );
        let memory = condition(&node, "MemoryPressure").unwrap();
        assert_eq!(memory.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert!(!mark_unknown(&mut node), "already Unknown: no second write");
    }
}
