//! The ReplicaSet controller's decisions (`controller-semantics.md` section 2): how many pods
//! to create, which to delete, and the status.
//!
//! The loop around it (`podvisor-controllers`) claims the pods (rule 1.3), keeps the
//! expectations (1.4), creates with slow start (1.5) and calls [`status`] with the outcome of
//! the calls, so a failed create or delete shows as the `ReplicaFailure` condition (2.7).

use std::time::Duration;

use podvisor_core::appsv1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use podvisor_core::corev1::Pod;
use podvisor_core::k8s_openapi::jiff::Timestamp;
use podvisor_core::metav1::Time;

use crate::owner::Owner;
use crate::pods::{self, PodName};

/// The most pods one sync creates or deletes (`BurstReplicas`, rule 1.5).
pub const BURST_REPLICAS: usize = 500;

/// The API version and kind ReplicaSets' pods name as their controller.
pub const API_VERSION: &str = "apps/v1";
/// The kind.
pub const KIND: &str = "ReplicaSet";

/// What one sync does to the pods (rule 2.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Manage<'p> {
    /// Pods to create from the template ([`new_pod`]).
    pub create: usize,
    /// Pods to delete, most expendable first (rule 2.4).
    pub delete: Vec<&'p Pod>,
}

/// `spec.replicas`, 1 when unset (rule 2.1).
pub fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn min_ready_seconds(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// `manageReplicas` (rule 2.3): the difference between the active pods it controls (`pods`,
/// every pod it controls) and `spec.replicas`, at most [`BURST_REPLICAS`]. Surplus pods are
/// chosen by rule 2.4, ranked among `related` (the pods of every ReplicaSet of the same
/// Deployment).
pub fn manage<'p>(rs: &ReplicaSet, pods: &[&'p Pod], related: &[&Pod], now: Timestamp) -> Manage<'p> {
    let mut active: Vec<&Pod> = pods.iter().copied().filter(|p| pods::is_active(p)).collect();
    let want = usize::try_from(replicas(rs)).unwrap_or(0);
    if active.len() < want {
        return Manage {
            create: (want - active.len()).min(BURST_REPLICAS),
            delete: Vec::new(),
        };
    }
    let surplus = (active.len() - want).min(BURST_REPLICAS);
    if surplus < active.len() {
        pods::sort_for_deletion(&mut active, related, now);
    }
    active.truncate(surplus);
    Manage {
        create: 0,
        delete: active,
    }
}

/// A pod of `rs` to create (rule 1.6).
pub fn new_pod(rs: &ReplicaSet) -> Pod {
    let owner = Owner {
        api_version: API_VERSION,
        kind: KIND,
        meta: &rs.metadata,
    };
    let name = owner.name().to_string();
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    pods::pod_from_template(
        &template,
        rs.metadata.namespace.as_deref().unwrap_or("default"),
        owner.controller_ref(),
        PodName::Generate(&pods::generate_name_prefix(&name)),
    )
}

/// Why the last sync's pod calls failed, for the `ReplicaFailure` condition (rule 2.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManageFailure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    /// The first error's text.
    pub message: String,
}

/// The status the ReplicaSet should have (rules 2.6, 2.7), `None` when the stored one is
/// already it (rule 2.8). `failure` is the outcome of this sync's calls (`None`: they
/// succeeded or none were made).
pub fn status(
    rs: &ReplicaSet,
    pods: &[&Pod],
    now: Timestamp,
    failure: Option<&ManageFailure>,
) -> Option<ReplicaSetStatus> {
    let stored = rs.status.clone().unwrap_or_default();
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let active: Vec<&Pod> = pods.iter().copied().filter(|p| pods::is_active(p)).collect();
    let count =
        |f: &dyn Fn(&Pod) -> bool| i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX);
    let min_ready = min_ready_seconds(rs);
    let mut conditions = stored.conditions.clone().unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match failure {
        // While present it is not rewritten: it keeps the first error.
        Some(f) if !has_failure => conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(f.reason.into()),
            message: Some(f.message.clone()),
            last_transition_time: Some(Time(now)),
        }),
        Some(_) => {}
        None => conditions.retain(|c| c.type_ != "ReplicaFailure"),
    }
    let next = ReplicaSetStatus {
        replicas: i32::try_from(active.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: Some(count(&|p| {
            let labels = p.metadata.labels.as_ref();
            template_labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })),
        ready_replicas: Some(count(&|p| pods::is_ready(p))),
        available_replicas: Some(count(&|p| pods::is_available(p, min_ready, now))),
        terminating_replicas: Some(
            i32::try_from(pods.iter().filter(|p| pods::is_terminating(p)).count()).unwrap_or(i32::MAX),
        ),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
    };
    let same = |a: Option<i32>, b: Option<i32>| a.unwrap_or(0) == b.unwrap_or(0);
    let unchanged = next.replicas == stored.replicas
        && same(next.fully_labeled_replicas, stored.fully_labeled_replicas)
        && same(next.ready_replicas, stored.ready_replicas)
        && same(next.available_replicas, stored.available_replicas)
        && same(next.terminating_replicas, stored.terminating_replicas)
        && next.observed_generation == stored.observed_generation
        && next.conditions == stored.conditions;
    (!unchanged).then_some(next)
}

/// When to look again so the availability transition is not missed (rule 2.2 step 4): after
/// `minReadySeconds` when every replica is ready but not all are available.
pub fn requeue_after(rs: &ReplicaSet, status: &ReplicaSetStatus) -> Option<Duration> {
    let want = replicas(rs);
    let min_ready = min_ready_seconds(rs);
    (min_ready > 0
        && status.ready_replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) != want)
        .then(|| Duration::from_secs(u64::try_from(min_ready).unwrap_or(0)))
}

#[cfg(test)]
mod tests;
