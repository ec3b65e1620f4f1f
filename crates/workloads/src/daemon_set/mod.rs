//! What the DaemonSet controller decides on one sync (rules 5.1–5.10 of
//! `controller-semantics.md`): the daemon pods to create (one per eligible node, pinned to it by
//! node affinity) and delete (extra, failed, succeeded, misplaced), the rolling update within
//! `maxUnavailable`/`maxSurge`, the ControllerRevisions, the status, the events, and when to
//! look again.
//!
//! It is not the loop around it: the caller lists the nodes, the pods and revisions whose
//! controller reference names the DaemonSet (claiming is the caller's, with
//! [`crate::owner::claim`]), keeps the expectations (rule 1.4) and the [`FailedPodBackoff`]
//! between syncs, and carries the plan out. Node eligibility is in [`eligibility`](mod@eligibility), revisions
//! in [`history`].

pub mod eligibility;
pub mod history;

use std::collections::BTreeMap;
use std::time::Duration;

use podvisor_core::appsv1::{ControllerRevision, DaemonSet, DaemonSetSpec, DaemonSetStatus};
use podvisor_core::corev1::{Node, Pod};
use podvisor_core::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_core::k8s_openapi::jiff::Timestamp;

use crate::event::Event;
use crate::owner::Owner;
use crate::pods::{self, PodName};
use crate::selector;
pub use eligibility::eligibility;
use history::{History, PodRelabel, REVISION_HASH, RevisionNumber};

/// The label with the template generation a pod was made from (rule 5.4).
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// The DaemonSet annotation the API server keeps the template generation in (rule 5.4).
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// Most pods created, and most deleted, in one sync (rule 1.5).
pub const BURST: usize = 250;
/// The failed-pod delete back-off: 1 s doubling to 15 min (rule 5.5).
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// The back-off's cap.
pub const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// A pod to delete: its name and UID (a precondition for the delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// The pod's name.
    pub name: String,
    /// Its UID.
    pub uid: String,
}

/// The back-off of rule 5.5 for deleting failed daemon pods of one DaemonSet, per
/// (`status.observedGeneration`, node): upstream's in-memory `flowcontrol.Backoff`, kept by the
/// caller between syncs (one per DaemonSet UID) and replaced by [`DaemonSetPlan::backoff`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedPodBackoff {
    entries: BTreeMap<(i64, String), (Duration, Timestamp)>,
}

impl FailedPodBackoff {
    /// While backing off on `key` at `now`: the rest of the delay.
    fn remaining(&self, key: &(i64, String), now: Timestamp) -> Option<Duration> {
        let (delay, last) = self.entries.get(key)?;
        let since = elapsed(*last, now);
        (since <= 2 * BACKOFF_MAX && since < *delay).then(|| *delay - since)
    }

    /// The current delay on `node` for generation `observed` (for tests and diagnostics).
    pub fn delay(&self, observed: i64, node: &str) -> Option<Duration> {
        self.entries.get(&(observed, node.to_string())).map(|(d, _)| *d)
    }

    /// Records a delete on `key` at `now`: 1 s, or twice the last delay up to 15 min.
    fn next(&mut self, key: (i64, String), now: Timestamp) {
        let delay = match self.entries.get(&key) {
            Some((d, last)) if elapsed(*last, now) <= 2 * BACKOFF_MAX => (*d * 2).min(BACKOFF_MAX),
            _ => BACKOFF_INITIAL,
        };
        self.entries.insert(key, (delay, now));
    }

    /// Drops entries idle for more than twice the cap (upstream's periodic GC).
    fn gc(&mut self, now: Timestamp) {
        self.entries
            .retain(|_, (_, last)| elapsed(*last, now) <= 2 * BACKOFF_MAX);
    }
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    let ms = to.as_millisecond().saturating_sub(from.as_millisecond()).max(0);
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// What one sync of a DaemonSet does. Carry it out in this order: `revision` (stop if that
/// fails; on `AlreadyExists` for a revision this DaemonSet does not control, raise
/// `status.collisionCount` by one instead), `renumber`, `relabel`, `revisions_delete`, then the
/// pods, then `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSetPlan {
    /// Daemon pods to create (`generateName: <ds>-`), at most 250.
    pub create: Vec<Pod>,
    /// Daemon pods to delete, at most 250.
    pub delete: Vec<PodRef>,
    /// The ControllerRevision of the current template, when none exists yet (rule 5.7).
    pub revision: Option<ControllerRevision>,
    /// The current revision's number raised to the newest.
    pub renumber: Option<RevisionNumber>,
    /// Pods relabelled to the kept revision when duplicate current revisions are merged.
    pub relabel: Vec<PodRelabel>,
    /// ControllerRevisions to delete: merged duplicates and old ones beyond
    /// `revisionHistoryLimit`.
    pub revisions_delete: Vec<String>,
    /// The new status (with `observedGeneration` raised), when it differs from the stored one.
    pub status: Option<DaemonSetStatus>,
    /// The status to write instead when the expectations are not satisfied and only the status
    /// is written (rule 5.10 step 4: `observedGeneration` not raised).
    pub status_unobserved: Option<DaemonSetStatus>,
    /// Events on the DaemonSet (`SuccessfulDelete` assumes the delete succeeds; record
    /// [`successful_create_event`] with each created pod's name).
    pub events: Vec<Event>,
    /// Sync again after this long: a failed pod's back-off, or a ready pod becoming available.
    pub requeue_after: Option<Duration>,
    /// The failed-pod back-off to keep for the next sync.
    pub backoff: FailedPodBackoff,
}

/// Normal `SuccessfulCreate` for a created daemon pod (rule 1.7).
pub fn successful_create_event(pod_name: &str) -> Event {
    Event::normal("SuccessfulCreate", format!("Created pod: {pod_name}"))
}

fn pod_name(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or("")
}

fn pod_ref(p: &Pod) -> PodRef {
    PodRef {
        name: pod_name(p).to_string(),
        uid: p.metadata.uid.clone().unwrap_or_default(),
    }
}

/// `podByCreationTimestampAndPhase`: bound pods first, then oldest, then by name.
fn sort_oldest_first(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        let bound = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        };
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        bound(b)
            .cmp(&bound(a))
            .then_with(|| created(a).cmp(&created(b)))
            .then_with(|| pod_name(a).cmp(pod_name(b)))
    });
}

/// The template generation from the DaemonSet's annotation.
fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

/// Rule 5.8: the pod carries the current hash or the current template generation.
fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let by_hash = !hash.is_empty() && label(REVISION_HASH) == Some(hash);
    let by_gen = generation.is_some_and(|g| label(TEMPLATE_GENERATION_LABEL) == Some(&g.to_string()));
    by_hash || by_gen
}

/// `GetScaledValueFromIntOrPercent(v, total, roundUp = true)`; a malformed percentage is 0.
fn scaled(v: Option<&IntOrString>, total: usize) -> usize {
    let total = i64::try_from(total).unwrap_or(i64::MAX);
    let n = match v {
        None => 0,
        Some(IntOrString::Int(i)) => i64::from(*i),
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(0, |p| (p.saturating_mul(total) + 99).div_euclid(100)),
    };
    usize::try_from(n.max(0)).unwrap_or(0)
}

/// (maxSurge, maxUnavailable) against `desired` (rule 5.6); both 0 with `desired > 0` gives
/// maxUnavailable 1. OnDelete: (0, 0).
fn surge_and_unavailable(spec: &DaemonSetSpec, desired: usize) -> (usize, usize) {
    let strategy = spec.update_strategy.as_ref();
    if strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        != "RollingUpdate"
    {
        return (0, 0);
    }
    let ru = strategy.and_then(|s| s.rolling_update.as_ref());
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), desired);
    let unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), desired);
    if desired > 0 && surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

/// What the sync knows about the nodes and pods.
struct World<'a> {
    ds: &'a DaemonSet,
    spec: &'a DaemonSetSpec,
    /// Nodes by name, with (shouldRun, shouldContinueRunning).
    nodes: BTreeMap<&'a str, (bool, bool)>,
    /// Daemon pods by target node, deleted finished pods left out.
    by_node: BTreeMap<&'a str, Vec<&'a Pod>>,
    hash: String,
    generation: Option<i64>,
    min_ready: i32,
    now: Timestamp,
}

impl World<'_> {
    fn available(&self, p: &Pod) -> bool {
        pods::is_available(p, self.min_ready, self.now)
    }

    fn updated(&self, p: &Pod) -> bool {
        is_updated(p, &self.hash, self.generation)
    }
}

/// One sync of `ds` (rule 5.10) at `now`, given all nodes, the pods and revisions it controls,
/// and the failed-pod back-off kept since the last sync.
pub fn plan(
    ds: &DaemonSet,
    nodes: &[Node],
    pods: &[Pod],
    revisions: &[ControllerRevision],
    backoff: &FailedPodBackoff,
    now: Timestamp,
) -> DaemonSetPlan {
    let mut out = DaemonSetPlan {
        create: Vec::new(),
        delete: Vec::new(),
        revision: None,
        renumber: None,
        relabel: Vec::new(),
        revisions_delete: Vec::new(),
        status: None,
        status_unobserved: None,
        events: Vec::new(),
        requeue_after: None,
        backoff: backoff.clone(),
    };
    let Some(spec) = ds.spec.as_ref() else {
        return out;
    };
    if selector::is_empty(&spec.selector) {
        out.events.push(Event::warning(
            "SelectingAll",
            "This daemon set is selecting all pods. A non-empty selector is required.",
        ));
        return out;
    }
    if ds.metadata.deletion_timestamp.is_some() {
        return out;
    }
    let stored = ds.status.clone().unwrap_or_default();
    let (hash, old) = match history::construct(ds, revisions, pods) {
        History::Collision => {
            let mut status = stored;
            status.collision_count = Some(status.collision_count.unwrap_or(0).saturating_add(1));
            out.status = Some(status.clone());
            out.status_unobserved = Some(status);
            return out;
        }
        History::Current {
            hash,
            create,
            renumber,
            duplicates,
            relabel,
            old,
        } => {
            out.revision = create.map(|r| *r);
            out.renumber = renumber;
            out.relabel = relabel;
            out.revisions_delete = duplicates;
            (hash, old)
        }
    };

    let template_spec = spec.template.spec.clone().unwrap_or_default();
    let mut world = World {
        ds,
        spec,
        nodes: nodes
            .iter()
            .map(|n| {
                let name = n.metadata.name.as_deref().unwrap_or("");
                (name, eligibility(&template_spec, n))
            })
            .collect(),
        by_node: BTreeMap::new(),
        hash,
        generation: template_generation(ds),
        min_ready: spec.min_ready_seconds.unwrap_or(0),
        now,
    };
    for p in pods {
        if pods::is_finished(p) && p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(node) = eligibility::target_node(p.spec.as_ref()) {
            world.by_node.entry(node).or_default().push(p);
        }
    }
    for list in world.by_node.values_mut() {
        sort_oldest_first(list);
    }

    let mut create_on: Vec<&str> = Vec::new();
    let mut delete: Vec<&Pod> = Vec::new();
    let mut requeue: Option<Duration> = None;
    manage(&world, &mut out, &mut create_on, &mut delete, &mut requeue);
    // Rule 5.10: the rolling update runs when the expectations are satisfied, which they are
    // not after a sync that created or deleted pods.
    if create_on.is_empty() && delete.is_empty() {
        rolling_update(&world, &mut create_on, &mut delete);
    }
    out.backoff.gc(now);

    create_on.truncate(BURST);
    delete.truncate(BURST);
    out.create = create_on.iter().map(|n| new_pod(&world, n)).collect();
    for p in delete {
        out.events.push(Event::normal(
            "SuccessfulDelete",
            format!("Deleted pod: {}", pod_name(p)),
        ));
        out.delete.push(pod_ref(p));
    }

    let limit = spec
        .revision_history_limit
        .unwrap_or(history::DEFAULT_HISTORY_LIMIT);
    out.revisions_delete.extend(history::trim(&old, limit, pods));

    let (observed, unobserved, ready_wait) = status(&world, &stored);
    out.status = observed;
    out.status_unobserved = unobserved;
    out.requeue_after = [requeue, ready_wait].into_iter().flatten().min();
    out
}

/// A daemon pod for `node` (rule 5.4).
fn new_pod(w: &World<'_>, node: &str) -> Pod {
    let mut template = w.spec.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    if let Some(g) = w.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.to_string(), g.to_string());
    }
    labels.insert(REVISION_HASH.to_string(), w.hash.clone());
    let spec = template.spec.get_or_insert_with(Default::default);
    eligibility::add_daemon_tolerations(spec);
    spec.affinity = Some(eligibility::pin_to_node(spec.affinity.take(), node));
    let owner = Owner {
        api_version: "apps/v1",
        kind: "DaemonSet",
        meta: &w.ds.metadata,
    };
    let prefix = pods::generate_name_prefix(w.ds.metadata.name.as_deref().unwrap_or(""));
    let namespace = w.ds.metadata.namespace.as_deref().unwrap_or("");
    pods::pod_from_template(
        &template,
        namespace,
        owner.controller_ref(),
        PodName::Generate(&prefix),
    )
}

/// Rule 5.5 (`manage` / `podsShouldBeOnNode`), node by node, then unbound pods pinned to nodes
/// that no longer exist.
fn manage<'a>(
    w: &World<'a>,
    out: &mut DaemonSetPlan,
    create_on: &mut Vec<&'a str>,
    delete: &mut Vec<&'a Pod>,
    requeue: &mut Option<Duration>,
) {
    let surge = surge_and_unavailable(w.spec, 1).0 > 0;
    let ns = w.ds.metadata.namespace.as_deref().unwrap_or("");
    let observed =
        w.ds.status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(0);
    for (&node, &(should_run, should_continue)) in &w.nodes {
        let on_node = w.by_node.get(node);
        if should_run && on_node.is_none() {
            create_on.push(node);
        } else if should_continue {
            let mut running: Vec<&Pod> = Vec::new();
            for &p in on_node.into_iter().flatten() {
                if p.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                match pods::phase(p) {
                    "Failed" => {
                        let key = (observed, node.to_string());
                        if let Some(d) = out.backoff.remaining(&key, w.now) {
                            *requeue = Some(requeue.map_or(d, |r| r.min(d)));
                            continue;
                        }
                        out.backoff.next(key, w.now);
                        out.events.push(Event::warning(
                            "FailedDaemonPod",
                            format!(
                                "Found failed daemon pod {ns}/{} on node {node}, will try to kill it",
                                pod_name(p)
                            ),
                        ));
                        delete.push(p);
                    }
                    "Succeeded" => {
                        out.events.push(Event::normal(
                            "SucceededDaemonPod",
                            format!(
                                "Found succeeded daemon pod {ns}/{} on node {node}, will try to \
                                 delete it",
                                pod_name(p)
                            ),
                        ));
                        delete.push(p);
                    }
                    _ => running.push(p),
                }
            }
            // `running` keeps the oldest-first order of `by_node`.
            if !surge {
                delete.extend(running.iter().skip(1));
            } else if running.is_empty() {
                if should_run {
                    create_on.push(node);
                }
            } else if running.len() > 1 {
                let mut oldest_new: Option<&Pod> = None;
                let mut oldest_old: Option<&Pod> = None;
                for &p in &running {
                    let slot = if w.updated(p) {
                        &mut oldest_new
                    } else {
                        &mut oldest_old
                    };
                    if slot.is_none() {
                        *slot = Some(p);
                    } else {
                        delete.push(p);
                    }
                }
                if let (Some(new), Some(old)) = (oldest_new, oldest_old)
                    && (!pods::is_ready(old) || w.available(new))
                {
                    delete.push(old);
                }
            }
        } else if let Some(list) = on_node {
            delete.extend(list.iter().filter(|p| p.metadata.deletion_timestamp.is_none()));
        }
    }
    for (node, list) in &w.by_node {
        if !w.nodes.contains_key(node) {
            let unbound = |p: &&&Pod| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_none_or(str::is_empty)
            };
            delete.extend(list.iter().filter(unbound));
        }
    }
}

/// Rule 5.6 (`rollingUpdate`), nodes in name order.
fn rolling_update<'a>(w: &World<'a>, create_on: &mut Vec<&'a str>, delete: &mut Vec<&'a Pod>) {
    let rolling = w
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if !rolling {
        return;
    }
    let desired = w.nodes.values().filter(|(run, _)| *run).count();
    let (max_surge, max_unavailable) = surge_and_unavailable(w.spec, desired);
    // Every node with pods, and every node that should run one.
    let mut nodes: BTreeMap<&str, &[&Pod]> = BTreeMap::new();
    for (node, list) in &w.by_node {
        nodes.insert(node, list.as_slice());
    }
    for (node, (run, _)) in &w.nodes {
        if *run {
            nodes.entry(node).or_insert(&[]);
        }
    }
    // (new, old) live pods on a node; None when there are several of either.
    let split = |list: &[&'a Pod]| -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
        let (mut new, mut old) = (None, None);
        for &p in list.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
            let slot = if w.updated(p) { &mut new } else { &mut old };
            if slot.replace(p).is_some() {
                return None;
            }
        }
        Some((new, old))
    };

    if max_surge == 0 {
        let mut unavailable = 0usize;
        let mut replace: Vec<&Pod> = Vec::new();
        let mut candidates: Vec<&Pod> = Vec::new();
        for list in nodes.values() {
            match split(list) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !w.available(new) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if !w.available(old) {
                        replace.push(old);
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = max_unavailable.saturating_sub(unavailable).min(candidates.len());
        delete.extend(replace);
        delete.extend(candidates.into_iter().take(room));
        return;
    }

    let mut surging = 0usize;
    let mut available = 0usize;
    let mut allowed: Vec<&str> = Vec::new();
    let mut candidates: Vec<&str> = Vec::new();
    let mut sunset: Vec<&Pod> = Vec::new();
    for (&node, list) in &nodes {
        let Some((new, old)) = split(list) else {
            surging += 1;
            continue;
        };
        if old.or(new).is_some_and(|p| w.available(p)) {
            available += 1;
        }
        let should_run = w.nodes.get(node).map(|(run, _)| *run);
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                let Some(should_run) = should_run else { continue };
                if !w.available(old) {
                    if should_run {
                        allowed.push(node);
                    } else {
                        delete.push(old);
                    }
                } else if !should_run {
                    sunset.push(old);
                } else if surging < max_surge {
                    candidates.push(node);
                }
            }
            (Some(new), Some(old)) => {
                if w.available(new) {
                    delete.push(old);
                } else {
                    surging += 1;
                }
            }
        }
    }
    // With surge, availability stays at 100 %: pods on nodes that no longer match go only
    // as others become available.
    let deletable = available.saturating_sub(desired).min(sunset.len());
    delete.extend(sunset.into_iter().take(deletable));
    let room = max_surge.saturating_sub(surging).min(candidates.len());
    create_on.extend(allowed);
    create_on.extend(candidates.into_iter().take(room));
}

/// Rule 5.9: the status from the oldest pod on each node, with and without
/// `observedGeneration` raised (each `None` when unchanged), and when a ready pod becomes
/// available.
fn status(
    w: &World<'_>,
    stored: &DaemonSetStatus,
) -> (Option<DaemonSetStatus>, Option<DaemonSetStatus>, Option<Duration>) {
    let (mut desired, mut current, mut misscheduled) = (0i32, 0i32, 0i32);
    let (mut ready, mut available, mut updated) = (0i32, 0i32, 0i32);
    for (node, (should_run, _)) in &w.nodes {
        let oldest = w.by_node.get(node).and_then(|l| l.first().copied());
        match (should_run, oldest) {
            (true, None) => desired += 1,
            (true, Some(p)) => {
                desired += 1;
                current += 1;
                if pods::is_ready(p) {
                    ready += 1;
                    if w.available(p) {
                        available += 1;
                    }
                }
                if w.updated(p) {
                    updated += 1;
                }
            }
            (false, Some(_)) => misscheduled += 1,
            (false, None) => {}
        }
    }
    let mut s = stored.clone();
    s.desired_number_scheduled = desired;
    s.current_number_scheduled = current;
    s.number_misscheduled = misscheduled;
    s.number_ready = ready;
    s.number_available = Some(available);
    s.updated_number_scheduled = Some(updated);
    s.number_unavailable = Some(desired - available);
    let counts = |s: &DaemonSetStatus| {
        (
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.number_misscheduled,
            s.number_ready,
            s.number_available.unwrap_or(0),
            s.updated_number_scheduled.unwrap_or(0),
            s.number_unavailable.unwrap_or(0),
        )
    };
    let same = counts(&s) == counts(stored);
    let generation = w.ds.metadata.generation.unwrap_or(0);
    let observed_ok = stored.observed_generation.unwrap_or(0) >= generation;
    let unobserved = (!same).then(|| s.clone());
    let mut observed = s;
    observed.observed_generation = Some(generation.max(stored.observed_generation.unwrap_or(0)));
    let observed = (!(same && observed_ok)).then_some(observed);

    // A ready pod becomes available `minReadySeconds` after it turned ready.
    let wait = (w.min_ready > 0)
        .then(|| {
            w.by_node
                .values()
                .flatten()
                .filter(|p| pods::is_ready(p) && !w.available(p))
                .filter_map(|p| pods::ready_since(p).flatten())
                .map(|since| {
                    let at = since.as_millisecond() + i64::from(w.min_ready) * 1000;
                    Duration::from_millis(u64::try_from(at - w.now.as_millisecond()).unwrap_or(0))
                })
                .min()
        })
        .flatten();
    (observed, unobserved, wait)
}

#[cfg(test)]
mod tests;
