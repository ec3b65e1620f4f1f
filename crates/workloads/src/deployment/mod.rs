//! The Deployment controller's decisions (`controller-semantics.md` section 3): the new
//! ReplicaSet and its `pod-template-hash`, revisions, rolling update and Recreate, proportional
//! scaling, pause, history cleanup, and the status with its `Available` and `Progressing`
//! conditions.
//!
//! One call of [`plan`] is one sync. It makes at most one step of the rollout (create the new
//! ReplicaSet, or scale some ReplicaSets, or clean up history) and returns the status that
//! step leaves; the loop around it syncs again when the ReplicaSets it wrote change, as the
//! upstream controller does through its informers. Arithmetic (surge, unavailability,
//! proportions) is in `rollout.rs`; [`resolve_fenceposts`], [`max_surge`] and [`max_unavailable`]
//! are its public part.

mod rollout;
mod status;

use std::collections::BTreeMap;
use std::time::Duration;

use podvisor_core::appsv1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use podvisor_core::corev1::{Pod, PodTemplateSpec};
use podvisor_core::k8s_openapi::jiff::Timestamp;
use podvisor_core::metav1::{LabelSelector, ObjectMeta};
use serde_json::Value;

use crate::event::Event;
use crate::owner::Owner;
use crate::{hash, owner, pods, selector};

pub use rollout::{max_surge, max_unavailable, resolve_fenceposts};

/// The label that tells a Deployment's ReplicaSets (and their pods) apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The revision of a ReplicaSet, and of its Deployment.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The revisions a ReplicaSet had before (rollbacks).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// kubectl's template annotation for `rollout restart`.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
const HISTORY_MAX_LEN: usize = 2000;
/// `progressDeadlineSeconds` that means "no deadline".
const NO_DEADLINE: i32 = i32::MAX;

/// The API version and kind a Deployment's ReplicaSets name as their controller.
pub const API_VERSION: &str = "apps/v1";
/// The kind.
pub const KIND: &str = "Deployment";

/// What one sync of a Deployment does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeploymentPlan {
    /// The new ReplicaSet to create.
    pub create: Option<ReplicaSet>,
    /// ReplicaSets to write: their `spec.replicas`, `minReadySeconds` and annotations as given.
    pub update: Vec<ReplicaSet>,
    /// Old ReplicaSets to delete (history beyond `revisionHistoryLimit`): name and UID.
    pub delete: Vec<(String, String)>,
    /// The Deployment's annotations when they change (its revision), written with the status.
    pub annotations: Option<BTreeMap<String, String>>,
    /// The status, when it changes.
    pub status: Option<DeploymentStatus>,
    /// Events on the Deployment.
    pub events: Vec<Event>,
    /// When to sync again though nothing changes (the progress deadline).
    pub requeue_after: Option<Duration>,
}

/// The ReplicaSets of a Deployment during one sync: what is stored and what this sync wants
/// written.
struct Sets {
    all: Vec<ReplicaSet>,
    /// Index of the new ReplicaSet in `all`.
    new: Option<usize>,
    /// Indices written by this sync.
    touched: Vec<usize>,
    created: bool,
}

impl Sets {
    fn new_rs(&self) -> Option<&ReplicaSet> {
        self.new.map(|i| &self.all[i])
    }

    fn old(&self) -> impl Iterator<Item = (usize, &ReplicaSet)> {
        self.all
            .iter()
            .enumerate()
            .filter(move |(i, _)| Some(*i) != self.new)
    }

    fn touch(&mut self, i: usize) {
        let fresh = self.created && Some(i) == self.new;
        if !fresh && !self.touched.contains(&i) {
            self.touched.push(i);
        }
    }
}

/// `spec.replicas`, 1 when unset.
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub(crate) fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn set_rs_replicas(rs: &mut ReplicaSet, n: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The revision of a ReplicaSet (0 when it has none that parses).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused) == Some(true)
}

/// `spec.template` as JSON without the `pod-template-hash` label, for [`templates_equal`].
/// Empty objects count as absent, as Go's value structs do (`resources: {}` is no resources).
fn without_hash(t: &PodTemplateSpec) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(labels) = v.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    prune_empty(&mut v);
    v
}

/// Removes, depth first, every object member that is `null` or an empty object.
fn prune_empty(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for x in m.values_mut() {
                prune_empty(x);
            }
            m.retain(|_, x| !x.is_null() && !x.as_object().is_some_and(serde_json::Map::is_empty));
        }
        Value::Array(a) => a.iter_mut().for_each(prune_empty),
        _ => {}
    }
}

/// `EqualIgnoreHash`: whether two pod templates are equal once the `pod-template-hash` label
/// is removed from both.
pub fn templates_equal(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

fn template_of(d: &Deployment) -> PodTemplateSpec {
    d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
}

/// Rule 3.4: the ReplicaSets sorted oldest first, and the oldest whose template equals the
/// Deployment's.
fn find_new(d: &Deployment, rss: &[ReplicaSet]) -> Sets {
    let mut all = rss.to_vec();
    all.sort_by(|a, b| {
        (a.metadata.creation_timestamp.as_ref(), &a.metadata.name)
            .cmp(&(b.metadata.creation_timestamp.as_ref(), &b.metadata.name))
    });
    let template = template_of(d);
    let new = all.iter().position(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| templates_equal(t, &template))
    });
    Sets {
        all,
        new,
        touched: Vec::new(),
        created: false,
    }
}

/// The annotations a ReplicaSet carries from its Deployment (rule 3.6): the Deployment's own,
/// except the skip list, over what it has.
fn copy_annotations(d: &Deployment, rs: &mut ReplicaSet) {
    let skip = [
        LAST_APPLIED,
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        ROLLBACK_TO,
    ];
    let ours = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if !skip.contains(&k.as_str()) {
            ours.insert(k.clone(), v.clone());
        }
    }
}

/// Raises `rs`'s revision to `to` (never lowers it), keeping its previous one in the history.
fn raise_revision(rs: &mut ReplicaSet, to: i64) -> bool {
    let old = revision(rs);
    if old >= to {
        return false;
    }
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if old > 0 {
        let mut history: Vec<String> = annotations
            .get(REVISION_HISTORY)
            .map(|h| h.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        history.push(old.to_string());
        while history.join(",").len() > HISTORY_MAX_LEN && history.len() > 1 {
            history.remove(0);
        }
        annotations.insert(REVISION_HISTORY.into(), history.join(","));
    }
    annotations.insert(REVISION.into(), to.to_string());
    true
}

/// Writes the replica annotations of rule 3.6 on `rs`; whether they changed.
fn set_replica_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let desired = replicas(d).to_string();
    let max = (replicas(d) + max_surge(d)).to_string();
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let changed =
        annotations.get(DESIRED_REPLICAS) != Some(&desired) || annotations.get(MAX_REPLICAS) != Some(&max);
    annotations.insert(DESIRED_REPLICAS.into(), desired);
    annotations.insert(MAX_REPLICAS.into(), max);
    changed
}

/// Scales `sets.all[i]` to `n`, with its annotations and the `ScalingReplicaSet` event (rule
/// 3.19); whether anything changed. `direction` overrides the word (proportional scaling).
fn scale(
    d: &Deployment,
    sets: &mut Sets,
    i: usize,
    n: i32,
    direction: Option<&str>,
    plan: &mut DeploymentPlan,
) -> bool {
    let rs = &mut sets.all[i];
    let from = rs_replicas(rs);
    let size_changed = from != n;
    set_rs_replicas(rs, n);
    let annotations_changed = set_replica_annotations(d, rs);
    if size_changed {
        let word = direction.unwrap_or(if n > from { "up" } else { "down" });
        let name = rs.metadata.name.clone().unwrap_or_default();
        plan.events.push(Event::normal(
            "ScalingReplicaSet",
            format!("Scaled {word} replica set {name} to {n} from {from}"),
        ));
    }
    if size_changed || annotations_changed {
        sets.touch(i);
    }
    size_changed
}

/// The revision the new ReplicaSet should have: one more than every old one's.
fn next_revision(sets: &Sets) -> i64 {
    sets.old().map(|(_, rs)| revision(rs)).max().unwrap_or(0) + 1
}

/// `getAllReplicaSetsAndSyncRevision` (rules 3.5, 3.6): brings an existing new ReplicaSet's
/// revision and `minReadySeconds` up to date, or creates it when `create` and it is missing.
/// Returns the Deployment's conditions to add (`FoundNewReplicaSet` / `NewReplicaSetCreated`).
fn sync_revision(
    d: &Deployment,
    sets: &mut Sets,
    create_if_missing: bool,
    plan: &mut DeploymentPlan,
    now: Timestamp,
) {
    let next = next_revision(sets);
    let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
    let mut progress: Option<(&str, String)> = None;
    if let Some(i) = sets.new {
        let rs = &mut sets.all[i];
        let mut changed = false;
        if rs.spec.as_ref().and_then(|s| s.min_ready_seconds) != min_ready {
            rs.spec.get_or_insert_with(Default::default).min_ready_seconds = min_ready;
            changed = true;
        }
        let before = rs.metadata.annotations.clone();
        copy_annotations(d, rs);
        changed |= raise_revision(rs, next) || before != rs.metadata.annotations;
        if changed {
            sets.touch(i);
        }
        let name = sets.all[i].metadata.name.clone().unwrap_or_default();
        if status::progressing(d).is_none() {
            progress = Some(("FoundNewReplicaSet", format!("Found new replica set \"{name}\"")));
        }
    } else if create_if_missing {
        let rs = new_replica_set(d, sets, next);
        let name = rs.metadata.name.clone().unwrap_or_default();
        let n = rs_replicas(&rs);
        if n > 0 {
            plan.events.push(Event::normal(
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} to {n}"),
            ));
        }
        progress = Some((
            "NewReplicaSetCreated",
            format!("Created new replica set \"{name}\""),
        ));
        sets.all.push(rs);
        sets.new = Some(sets.all.len() - 1);
        sets.created = true;
    }
    // The Deployment's own revision mirrors its new ReplicaSet's.
    let rev = sets.new_rs().map_or(0, revision);
    if rev > 0 && annotation(&d.metadata, REVISION) != Some(rev.to_string().as_str()) {
        let mut a = d.metadata.annotations.clone().unwrap_or_default();
        a.insert(REVISION.into(), rev.to_string());
        plan.annotations = Some(a);
    }
    if let Some((reason, message)) = progress {
        status::note_progress(d, plan, reason, message, now);
    }
}

/// The new ReplicaSet of rule 3.5: named `<deployment>-<hash>`, the hash label on its template,
/// selector and labels, its replicas per strategy.
fn new_replica_set(d: &Deployment, sets: &Sets, revision: i64) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = hash::compute_hash(&spec.template, collision);
    let mut template = spec.template.clone();
    let tm = template.metadata.get_or_insert_with(Default::default);
    tm.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let labels = tm.labels.clone();
    let mut selector: LabelSelector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let name = d.metadata.name.clone().unwrap_or_default();
    let owner = Owner {
        api_version: API_VERSION,
        kind: KIND,
        meta: &d.metadata,
    };
    let replicas = if is_recreate(d) {
        replicas(d)
    } else {
        rollout::new_rs_replicas(d, sets.all.iter().map(rs_replicas).sum(), 0)
    };
    let mut rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{hash}")),
            namespace: d.metadata.namespace.clone(),
            labels,
            owner_references: Some(vec![owner.controller_ref()]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    };
    copy_annotations(d, &mut rs);
    raise_revision(&mut rs, revision);
    set_replica_annotations(d, &mut rs);
    rs
}

/// Whether any pod of an old ReplicaSet still runs (rule 3.12 step 3).
fn old_pods_running(sets: &Sets, pods: &[&Pod]) -> bool {
    if sets
        .old()
        .any(|(_, rs)| rs.status.as_ref().is_some_and(|s| s.replicas > 0))
    {
        return true;
    }
    let new_uid = sets.new_rs().and_then(|rs| rs.metadata.uid.as_deref());
    let old_uids: Vec<&str> = sets
        .old()
        .filter_map(|(_, rs)| rs.metadata.uid.as_deref())
        .collect();
    pods.iter().any(|p| {
        let owner = owner::controller_of(&p.metadata).map(|r| r.uid.as_str());
        owner.is_some_and(|u| old_uids.contains(&u) && Some(u) != new_uid) && !pods::is_finished(p)
    })
}

/// One sync of `d` (rule 3.3), given the ReplicaSets it controls and their pods, at `now`.
pub fn plan(d: &Deployment, rss: &[ReplicaSet], pods: &[&Pod], now: Timestamp) -> DeploymentPlan {
    let mut plan = DeploymentPlan::default();
    let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    if selector::is_empty(&selector) {
        plan.events.push(Event::warning(
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        ));
        let mut st = d.status.clone().unwrap_or_default();
        if st.observed_generation != d.metadata.generation {
            st.observed_generation = d.metadata.generation;
            plan.status = Some(st);
        }
        return plan;
    }
    let mut sets = find_new(d, rss);
    if d.metadata.deletion_timestamp.is_some() {
        status::finish(d, &sets, &mut plan, now, false);
        return plan;
    }
    status::note_paused(d, &mut plan, now);
    if paused(d) || rollout::is_scaling_event(d, &sets.all) {
        sync_revision(d, &mut sets, false, &mut plan, now);
        rollout::scale_proportionally(d, &mut sets, &mut plan);
        if paused(d) {
            cleanup(d, &sets, &mut plan);
        }
        return finish(d, sets, plan, now, false);
    }
    if is_recreate(d) {
        sync_revision(d, &mut sets, false, &mut plan, now);
        let active_old: Vec<usize> = sets
            .old()
            .filter(|(_, rs)| rs_replicas(rs) > 0)
            .map(|(i, _)| i)
            .collect();
        let mut scaled = false;
        for i in active_old {
            scaled |= scale(d, &mut sets, i, 0, None, &mut plan);
        }
        if scaled || old_pods_running(&sets, pods) {
            return finish(d, sets, plan, now, true);
        }
        if sets.new.is_none() {
            sync_revision(d, &mut sets, true, &mut plan, now);
        } else if let Some(i) = sets.new {
            scale(d, &mut sets, i, replicas(d), None, &mut plan);
        }
        if status::stored_complete(d) {
            cleanup(d, &sets, &mut plan);
        }
        return finish(d, sets, plan, now, true);
    }
    // RollingUpdate.
    sync_revision(d, &mut sets, true, &mut plan, now);
    if sets.created
        || rollout::reconcile_new(d, &mut sets, &mut plan)
        || rollout::reconcile_old(d, &mut sets, &mut plan)
    {
        return finish(d, sets, plan, now, true);
    }
    if status::stored_complete(d) {
        cleanup(d, &sets, &mut plan);
    }
    finish(d, sets, plan, now, true)
}

/// Moves this sync's ReplicaSet writes into the plan and computes the status.
fn finish(
    d: &Deployment,
    sets: Sets,
    mut plan: DeploymentPlan,
    now: Timestamp,
    rollout: bool,
) -> DeploymentPlan {
    status::finish(d, &sets, &mut plan, now, rollout);
    if sets.created
        && let Some(i) = sets.new
    {
        plan.create = Some(sets.all[i].clone());
    }
    let mut touched = sets.touched.clone();
    touched.sort_unstable();
    plan.update = touched.into_iter().map(|i| sets.all[i].clone()).collect();
    plan
}

/// History cleanup (rule 3.10): old ReplicaSets beyond `revisionHistoryLimit`, lowest
/// revision first, only those scaled to zero and observed.
fn cleanup(d: &Deployment, sets: &Sets, plan: &mut DeploymentPlan) {
    let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
        return;
    };
    let mut alive: Vec<&ReplicaSet> = sets
        .old()
        .map(|(_, rs)| rs)
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let diff = alive.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
    alive.sort_by_key(|rs| (revision(rs), rs.metadata.creation_timestamp.clone()));
    for rs in alive.into_iter().take(diff) {
        let st = rs.status.clone().unwrap_or_default();
        if st.replicas != 0
            || rs_replicas(rs) != 0
            || rs.metadata.generation > st.observed_generation
            || sets
                .touched
                .iter()
                .any(|i| sets.all[*i].metadata.uid == rs.metadata.uid)
        {
            continue;
        }
        plan.delete.push((
            rs.metadata.name.clone().unwrap_or_default(),
            rs.metadata.uid.clone().unwrap_or_default(),
        ));
    }
}

#[cfg(test)]
mod tests;
