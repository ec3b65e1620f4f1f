//! What the StatefulSet controller decides in one sync (section 4 of
//! `shared/docs/controller-semantics.md`): the ControllerRevision of the current template and
//! the history to trim (4.4), the pods to create with their stable identity (4.2, 4.5), the
//! pods to delete (finished pods 4.6, scale-down 4.8, rolling update 4.9), identity repairs, the
//! status (4.11, 4.12), events (4.13) and when to look again (`minReadySeconds`).
//!
//! [`plan`] is a pure function of the set, the pods and revisions it controls and the time; the
//! caller carries the plan out in this order: the revision create or bump, then the pod
//! creates, updates and deletes, then the status write, then the revision deletions.
//!
//! What it is not:
//! - No storage: podvisor has no PersistentVolumeClaims, so `volumeClaimTemplates` and
//!   `persistentVolumeClaimRetentionPolicy` are ignored (rules 4.3 and 4.15): no claims are
//!   created, no claim volumes are added to pods, and no claim owner references are kept.
//! - `maxUnavailable` is ignored: the `MaxUnavailableStatefulSet` gate is off by default in
//!   v1.35 from v1.35.4 on (kubernetes/kubernetes#137926, reverting the beta-on default of
//!   v1.35.0–v1.35.3 after the regression #137409), so a rolling update replaces one pod at a
//!   time (rule 4.9, "gate off").
//! - No API calls, no expectations (rule 1.4), no slow start (rule 1.5): the shell does those.
//!   `Parallel` creates are capped at [`MAX_BATCH_SIZE`] per plan; the next sync creates the
//!   rest.
//! - The revision hash is [`crate::hash::hash_bytes`] of our patch bytes: deterministic, in the API's
//!   alphabet, but not equal to the names a real kube-controller-manager would pick.
//!
//! Where upstream fails a sync on bad input, the plan does something defined instead: pods
//! whose name is not `<set>-<ordinal>` in canonical decimal are ignored (upstream parses the
//! ordinal from any name ending in `-<digits>`, then fails to repair the name); a current
//! revision whose data is not a template patch counts as absent, so the update revision is
//! current (upstream's `ApplyRevision` fails every sync); `currentReplicas` does not go below 0
//! when the update deletes a pod of a third revision.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use podvisor_core::appsv1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use podvisor_core::corev1::{Pod, PodTemplateSpec};
use podvisor_core::k8s_openapi::jiff::Timestamp;

mod revision;

pub use revision::{HASH_LABEL, revision_data, revision_template};

use crate::event::Event;
use crate::owner::Owner;
use crate::pods::{self, PodName};

/// The label holding a pod's own name (rule 4.2).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label holding a pod's ordinal (rule 4.2, gate PodIndexLabel, GA).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The label holding the full name of the revision a pod was made from (rule 4.4).
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// Upstream's `MaxBatchSize`: the most pods a `Parallel` set creates in one plan (rule 1.5).
pub const MAX_BATCH_SIZE: usize = 500;

/// `revisionHistoryLimit` when unset (rule 4.1).
const DEFAULT_HISTORY_LIMIT: i32 = 10;
/// What one sync of a StatefulSet asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct StatefulSetPlan {
    /// A ControllerRevision to create for the current template (done first). When the API
    /// server answers AlreadyExists with different data, the caller writes the status with
    /// `collisionCount + 1` and syncs again (upstream's collision handling).
    pub create_revision: Option<ControllerRevision>,
    /// An older revision equal to the current template, to renumber (a rollback).
    pub bump_revision: Option<RevisionBump>,
    /// The name of the current revision this sync worked with: the one pods below the
    /// partition are made from. The status may already advance it (rule 4.11).
    pub current_revision: String,
    /// The name of the revision of the current template.
    pub update_revision: String,
    /// Pods to create, by their exact names (rules 4.2, 4.5–4.7).
    pub create: Vec<Pod>,
    /// Identity labels to set on existing pods (rule 4.2).
    pub update: Vec<PodUpdate>,
    /// Pods to delete, with why (rules 4.6, 4.8, 4.9).
    pub delete: Vec<PodDelete>,
    /// The status to write; `None` when it equals the stored one (rule 4.12).
    pub status: Option<StatefulSetStatus>,
    /// ControllerRevisions to delete, oldest first (history trimming, rule 4.4; done last).
    pub delete_revisions: Vec<String>,
    /// The `Successful<Verb>` events of the pod actions (rule 4.13): one per create, then per
    /// update, then per delete, in the order of those lists. Record each only when its action
    /// succeeded; use [`pod_event`] with the error otherwise.
    pub events: Vec<Event>,
    /// When to sync again: `minReadySeconds` while some replica is not available yet.
    pub requeue_after: Option<Duration>,
}

/// Set an existing ControllerRevision's `revision` number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionBump {
    /// The revision's name.
    pub name: String,
    /// Its new `revision`: one more than the highest.
    pub revision: i64,
}

/// Labels to merge into an existing pod's labels (an identity repair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUpdate {
    /// The pod's name.
    pub name: String,
    /// The pod's UID (a precondition for the write).
    pub uid: String,
    /// Labels to set; other labels stay.
    pub labels: BTreeMap<String, String>,
}

/// A pod to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDelete {
    /// The pod's name.
    pub name: String,
    /// The pod's UID (a precondition for the delete).
    pub uid: String,
    /// Why the controller deletes it.
    pub reason: DeleteReason,
}

/// Why a StatefulSet deletes one of its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// The pod `Failed` or `Succeeded`; it is recreated once gone (rule 4.6 step 1).
    Finished,
    /// Its ordinal is outside the set's range (rule 4.8).
    ScaleDown,
    /// It is not at the update revision (rule 4.9).
    Update,
}

/// What the controller did to a pod, for [`pod_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `create`.
    Create,
    /// `update`.
    Update,
    /// `delete`.
    Delete,
}

impl Verb {
    fn word(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
        }
    }
}

/// The event of a pod action (rule 4.13): `Successful<Verb>` / `<verb> Pod <pod> in
/// StatefulSet <set> successful`, or with `error` a Warning `Failed<Verb>` / `<verb> Pod <pod>
/// in StatefulSet <set> failed error: <error>`.
pub fn pod_event(verb: Verb, pod: &str, set: &str, error: Option<&str>) -> Event {
    let word = verb.word();
    let title = match verb {
        Verb::Create => "Create",
        Verb::Update => "Update",
        Verb::Delete => "Delete",
    };
    match error {
        None => Event::normal(
            &format!("Successful{title}"),
            format!("{word} Pod {pod} in StatefulSet {set} successful"),
        ),
        Some(e) => Event::warning(
            &format!("Failed{title}"),
            format!("{word} Pod {pod} in StatefulSet {set} failed error: {e}"),
        ),
    }
}

/// The spec with the API's defaults (rule 4.1) and bad values clamped.
struct Params<'a> {
    name: &'a str,
    namespace: &'a str,
    /// `spec.replicas`.
    replicas: i64,
    /// `spec.ordinals.start`.
    start: i64,
    parallel: bool,
    rolling: bool,
    /// `rollingUpdate.partition` when `rollingUpdate` is set.
    partition: Option<i64>,
    min_ready: i32,
    history_limit: usize,
    service_name: &'a str,
    template: &'a PodTemplateSpec,
}

impl<'a> Params<'a> {
    fn of(set: &'a StatefulSet, empty: &'a PodTemplateSpec) -> Self {
        let spec = set.spec.as_ref();
        let strategy = spec.and_then(|s| s.update_strategy.as_ref());
        let rolling = strategy
            .and_then(|s| s.type_.as_deref())
            .is_none_or(|t| t == "RollingUpdate");
        Params {
            name: set.metadata.name.as_deref().unwrap_or(""),
            namespace: set.metadata.namespace.as_deref().unwrap_or(""),
            replicas: i64::from(spec.and_then(|s| s.replicas).unwrap_or(1).max(0)),
            start: i64::from(
                spec.and_then(|s| s.ordinals.as_ref())
                    .and_then(|o| o.start)
                    .unwrap_or(0)
                    .max(0),
            ),
            parallel: spec.and_then(|s| s.pod_management_policy.as_deref()) == Some("Parallel"),
            rolling,
            partition: strategy
                .and_then(|s| s.rolling_update.as_ref())
                .map(|r| i64::from(r.partition.unwrap_or(0).max(0))),
            min_ready: spec.and_then(|s| s.min_ready_seconds).unwrap_or(0).max(0),
            history_limit: usize::try_from(
                spec.and_then(|s| s.revision_history_limit)
                    .unwrap_or(DEFAULT_HISTORY_LIMIT),
            )
            .unwrap_or(0),
            service_name: spec.and_then(|s| s.service_name.as_deref()).unwrap_or(""),
            template: spec.map_or(empty, |s| &s.template),
        }
    }

    /// One past the last ordinal in range.
    fn end(&self) -> i64 {
        self.start + self.replicas
    }
}

fn owner(set: &StatefulSet) -> Owner<'_> {
    Owner {
        api_version: "apps/v1",
        kind: "StatefulSet",
        meta: &set.metadata,
    }
}

/// The ordinal of a pod named `<set>-<ordinal>` (canonical decimal, at most `i32::MAX`).
fn ordinal(set: &str, pod: &Pod) -> Option<i64> {
    let digits = pod
        .metadata
        .name
        .as_deref()?
        .strip_prefix(set)?
        .strip_prefix('-')?;
    let n: i32 = digits.parse().ok()?;
    (n >= 0 && n.to_string() == digits).then_some(i64::from(n))
}

fn revision_of(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map_or("", String::as_str)
}

/// Upstream's `isTerminating`: a deletion timestamp, whatever the phase.
fn deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn running_and_ready(pod: &Pod) -> bool {
    pods::phase(pod) == "Running" && pods::is_ready(pod)
}

/// `isHealthy`: Running, Ready and not being deleted.
fn healthy(pod: &Pod) -> bool {
    running_and_ready(pod) && !deleting(pod)
}

/// The identity labels a pod lacks (rule 4.2), if any.
fn identity_repair(pod: &Pod, ordinal: i64) -> Option<BTreeMap<String, String>> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let want = [
        (POD_NAME_LABEL.to_string(), name),
        (POD_INDEX_LABEL.to_string(), ordinal.to_string()),
    ];
    let labels = pod.metadata.labels.as_ref();
    let missing: BTreeMap<String, String> = want
        .into_iter()
        .filter(|(k, v)| labels.and_then(|l| l.get(k)) != Some(v))
        .collect();
    (!missing.is_empty()).then_some(missing)
}

/// Whether a replica loop step lets the sync go on.
#[derive(PartialEq)]
enum Flow {
    Continue,
    Stop,
}

/// One sync's decisions, collected as the rules run.
struct Sync<'a> {
    p: &'a Params<'a>,
    set: &'a StatefulSet,
    revs: &'a revision::Revisions,
    now: Timestamp,
    create: Vec<Pod>,
    update: Vec<PodUpdate>,
    delete: Vec<PodDelete>,
    deleted: BTreeSet<String>,
}

impl Sync<'_> {
    fn delete_pod(&mut self, pod: &Pod, reason: DeleteReason) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.deleted.insert(name.clone());
        self.delete.push(PodDelete {
            name,
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            reason,
        });
    }

    fn planned_delete(&self, pod: &Pod) -> bool {
        pod.metadata
            .name
            .as_ref()
            .is_some_and(|n| self.deleted.contains(n))
    }

    /// `newVersionedStatefulSetPod` (rules 4.2, 4.5): the current revision below the partition
    /// under RollingUpdate (below `start + status.currentReplicas` without `rollingUpdate`),
    /// the update revision otherwise.
    fn create_pod(&mut self, ordinal: i64) {
        let p = self.p;
        let below = match p.partition {
            Some(partition) => ordinal < p.start + partition,
            None => {
                let current = self.set.status.as_ref().and_then(|s| s.current_replicas);
                ordinal < p.start + i64::from(current.unwrap_or(0))
            }
        };
        let (template, revision) = match &self.revs.current_template {
            Some(t) if p.rolling && below => (t, &self.revs.current),
            _ => (p.template, &self.revs.update),
        };
        let name = format!("{}-{ordinal}", p.name);
        let owner = owner(self.set).controller_ref();
        let mut pod = pods::pod_from_template(template, p.namespace, owner, PodName::Exact(&name));
        let labels = pod.metadata.labels.get_or_insert_default();
        labels.insert(POD_NAME_LABEL.to_string(), name.clone());
        labels.insert(POD_INDEX_LABEL.to_string(), ordinal.to_string());
        labels.insert(REVISION_LABEL.to_string(), revision.clone());
        let spec = pod.spec.get_or_insert_default();
        spec.hostname = Some(name);
        spec.subdomain = (!p.service_name.is_empty()).then(|| p.service_name.to_string());
        self.create.push(pod);
    }

    /// Rule 4.6 for an existing replica (steps 1, 4, 5; step 3 is storage, out of scope).
    fn existing_replica(&mut self, pod: &Pod, ordinal: i64, monotonic: bool) -> Flow {
        if pods::is_finished(pod) {
            if !deleting(pod) {
                self.delete_pod(pod, DeleteReason::Finished);
            }
            return if monotonic { Flow::Stop } else { Flow::Continue };
        }
        if monotonic
            && (deleting(pod)
                || !running_and_ready(pod)
                || !pods::is_available(pod, self.p.min_ready, self.now))
        {
            return Flow::Stop;
        }
        if let Some(labels) = identity_repair(pod, ordinal) {
            self.update.push(PodUpdate {
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid: pod.metadata.uid.clone().unwrap_or_default(),
                labels,
            });
        }
        Flow::Continue
    }

    /// Rules 4.6 and 4.7 over the replicas in range; `Stop` when OrderedReady blocked.
    fn replicas(&mut self, replicas: &BTreeMap<i64, &Pod>) -> Flow {
        let (start, end) = (self.p.start, self.p.end());
        if !self.p.parallel {
            // Ascending; the first missing ordinal is created and ends the sync.
            for ordinal in start..end {
                let Some(pod) = replicas.get(&ordinal) else {
                    self.create_pod(ordinal);
                    return Flow::Stop;
                };
                if self.existing_replica(pod, ordinal, true) == Flow::Stop {
                    return Flow::Stop;
                }
            }
            return Flow::Continue;
        }
        let mut ordinal = start;
        while ordinal < end {
            match replicas.get(&ordinal) {
                Some(pod) => {
                    self.existing_replica(pod, ordinal, false);
                    ordinal += 1;
                }
                None if self.create.len() < MAX_BATCH_SIZE => {
                    self.create_pod(ordinal);
                    ordinal += 1;
                }
                // The batch is full: skip to the next existing replica.
                None => match replicas.range(ordinal..end).next() {
                    Some((&next, _)) => ordinal = next,
                    None => break,
                },
            }
        }
        Flow::Continue
    }

    /// Rule 4.8 over the condemned pods, highest ordinal first.
    fn condemned(&mut self, condemned: &[(i64, &Pod)]) -> Flow {
        let monotonic = !self.p.parallel;
        // Every replica is healthy here under OrderedReady, so the first unhealthy pod is the
        // lowest condemned one.
        let first_unhealthy = condemned.iter().rev().find(|(_, p)| !healthy(p)).map(|(o, _)| *o);
        for &(ordinal, pod) in condemned {
            if deleting(pod) {
                if monotonic {
                    return Flow::Stop;
                }
                continue;
            }
            let unavailable = !running_and_ready(pod) || !pods::is_available(pod, self.p.min_ready, self.now);
            if monotonic && unavailable && first_unhealthy != Some(ordinal) {
                return Flow::Stop;
            }
            self.delete_pod(pod, DeleteReason::ScaleDown);
            if monotonic {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Rule 4.9 with `MaxUnavailableStatefulSet` off: from the highest ordinal down to `start +
    /// partition`, delete the first outdated pod; an unhealthy pod on the way waits. Returns
    /// whether a pod was deleted.
    fn rolling_update(&mut self, replicas: &BTreeMap<i64, &Pod>) -> bool {
        let update_min = self.p.start + self.p.partition.unwrap_or(0);
        let mut ordinal = self.p.end() - 1;
        while ordinal >= update_min {
            // A replica not created yet is unhealthy: wait for it.
            let Some(pod) = replicas.get(&ordinal) else {
                return false;
            };
            let going = deleting(pod) || self.planned_delete(pod);
            if revision_of(pod) != self.revs.update && !going {
                self.delete_pod(pod, DeleteReason::Update);
                return true;
            }
            if going || !healthy(pod) {
                return false;
            }
            ordinal -= 1;
        }
        false
    }
}

/// Status counts over the pods with an ordinal (rule 4.12).
fn count_status<'p>(sync: &Sync<'_>, all: impl Iterator<Item = &'p Pod>) -> StatefulSetStatus {
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0i32, 0i32, 0i32, 0i32, 0i32);
    for pod in all {
        let created = !pods::phase(pod).is_empty();
        if created {
            replicas += 1;
        }
        if running_and_ready(pod) {
            ready += 1;
            if pods::is_available(pod, sync.p.min_ready, sync.now) {
                available += 1;
            }
        }
        if created && !deleting(pod) {
            if revision_of(pod) == sync.revs.current {
                current += 1;
            }
            if revision_of(pod) == sync.revs.update {
                updated += 1;
            }
        }
    }
    StatefulSetStatus {
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(sync.revs.current.clone()),
        update_revision: Some(sync.revs.update.clone()),
        collision_count: Some(sync.revs.collision_count),
        observed_generation: sync.set.metadata.generation,
        conditions: sync.set.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

/// Go's `omitempty`: zero and empty are absent.
fn nz(v: Option<i32>) -> Option<i32> {
    v.filter(|v| *v != 0)
}

fn ne(v: Option<&str>) -> Option<&str> {
    v.filter(|v| !v.is_empty())
}

/// Upstream's `inconsistentStatus`: the fields the controller owns, `omitempty` as stored.
fn status_differs(new: &StatefulSetStatus, old: Option<&StatefulSetStatus>) -> bool {
    let Some(old) = old else { return true };
    new.observed_generation.filter(|g| *g != 0) != old.observed_generation.filter(|g| *g != 0)
        || new.replicas != old.replicas
        || nz(new.ready_replicas) != nz(old.ready_replicas)
        || nz(new.available_replicas) != nz(old.available_replicas)
        || nz(new.current_replicas) != nz(old.current_replicas)
        || nz(new.updated_replicas) != nz(old.updated_replicas)
        || ne(new.current_revision.as_deref()) != ne(old.current_revision.as_deref())
        || ne(new.update_revision.as_deref()) != ne(old.update_revision.as_deref())
}

/// One sync of `set` (section 4): `pods` and `revisions` are the ones it controls, terminating
/// and finished pods included.
pub fn plan(
    set: &StatefulSet,
    pods: &[Pod],
    revisions: &[ControllerRevision],
    now: Timestamp,
) -> StatefulSetPlan {
    let empty = PodTemplateSpec::default();
    let p = Params::of(set, &empty);
    let mut sorted: Vec<&ControllerRevision> = revisions.iter().collect();
    sorted.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then(a.metadata.name.cmp(&b.metadata.name))
    });
    let revs = revision::choose_revisions(set, &p, &sorted);

    let mut replicas: BTreeMap<i64, &Pod> = BTreeMap::new();
    let mut condemned: Vec<(i64, &Pod)> = Vec::new();
    for pod in pods {
        match ordinal(p.name, pod) {
            Some(o) if (p.start..p.end()).contains(&o) => {
                replicas.insert(o, pod);
            }
            Some(o) => condemned.push((o, pod)),
            None => {}
        }
    }
    condemned.sort_by_key(|(o, _)| std::cmp::Reverse(*o));

    let mut sync = Sync {
        p: &p,
        set,
        revs: &revs,
        now,
        create: Vec::new(),
        update: Vec::new(),
        delete: Vec::new(),
        deleted: BTreeSet::new(),
    };
    let mut updated_one = false;
    // A set being deleted only gets its status (rule 4.12).
    if set.metadata.deletion_timestamp.is_none()
        && sync.replicas(&replicas) == Flow::Continue
        && sync.condemned(&condemned) == Flow::Continue
        && p.rolling
    {
        updated_one = sync.rolling_update(&replicas);
    }

    let mut status = count_status(
        &sync,
        replicas
            .values()
            .copied()
            .chain(condemned.iter().map(|(_, p)| *p)),
    );
    if updated_one {
        status.current_replicas = status.current_replicas.map(|c| (c - 1).max(0));
    }
    // Rule 4.11.
    let want = i32::try_from(p.replicas).unwrap_or(i32::MAX);
    if p.rolling
        && status.updated_replicas == Some(want)
        && status.ready_replicas == Some(want)
        && status.replicas == want
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }

    let mut live: BTreeSet<&str> = [revs.current.as_str(), revs.update.as_str()].into();
    live.extend(pods.iter().map(revision_of));
    let delete_revisions = revision::trim_history(&p, &sorted, &live);

    let requeue_after = (p.min_ready > 0 && i64::from(status.available_replicas.unwrap_or(0)) != p.replicas)
        .then(|| Duration::from_secs(p.min_ready.unsigned_abs().into()));
    let events = sync
        .create
        .iter()
        .map(|c| (Verb::Create, c.metadata.name.as_deref().unwrap_or("")))
        .chain(sync.update.iter().map(|u| (Verb::Update, u.name.as_str())))
        .chain(sync.delete.iter().map(|d| (Verb::Delete, d.name.as_str())))
        .map(|(verb, pod)| pod_event(verb, pod, p.name, None))
        .collect();
    let status = status_differs(&status, set.status.as_ref()).then_some(status);
    StatefulSetPlan {
        create_revision: revs.create.clone(),
        bump_revision: revs.bump.clone(),
        current_revision: revs.current.clone(),
        update_revision: revs.update.clone(),
        create: sync.create,
        update: sync.update,
        delete: sync.delete,
        status,
        delete_revisions,
        events,
        requeue_after,
    }
}

#[cfg(test)]
mod tests;
