//! A Deployment's status (rule 3.14) and its conditions: `Available`, `Progressing` with the
//! progress deadline (3.15), paused and resumed (3.13), and `ReplicaFailure` copied from its
//! ReplicaSets.

use std::time::Duration;

use podvisor_core::appsv1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use podvisor_core::k8s_openapi::jiff::Timestamp;
use podvisor_core::metav1::Time;

use super::rollout::max_unavailable;
use super::{DeploymentPlan, NO_DEADLINE, Sets, paused, replicas};

const PROGRESSING: &str = "Progressing";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const PAUSED: &str = "DeploymentPaused";

fn deadline(d: &Deployment) -> Option<i32> {
    let pds = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    (pds != NO_DEADLINE).then_some(pds)
}

fn condition<'s>(st: &'s DeploymentStatus, type_: &str) -> Option<&'s DeploymentCondition> {
    st.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// The stored `Progressing` condition.
pub(super) fn progressing(d: &Deployment) -> Option<&DeploymentCondition> {
    condition(d.status.as_ref()?, PROGRESSING)
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// `SetDeploymentCondition`: no change when status and reason are the same; the transition
/// time kept when only the reason changes.
fn set_condition(st: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conditions = st.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conditions.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time.clone_from(&cur.last_transition_time);
        }
    }
    conditions.retain(|x| x.type_ != c.type_);
    conditions.push(c);
}

fn remove_condition(st: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = st.conditions.as_mut() {
        c.retain(|x| x.type_ != type_);
    }
}

fn working<'p>(d: &Deployment, plan: &'p mut DeploymentPlan) -> &'p mut DeploymentStatus {
    plan.status
        .get_or_insert_with(|| d.status.clone().unwrap_or_default())
}

/// Records `Progressing=True` with `reason` (a new ReplicaSet created or found), where the
/// Deployment has a progress deadline.
pub(super) fn note_progress(
    d: &Deployment,
    plan: &mut DeploymentPlan,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    if deadline(d).is_some() {
        set_condition(
            working(d, plan),
            new_condition(PROGRESSING, "True", reason, message, now),
        );
    }
}

/// Rule 3.13: `Progressing=Unknown` when paused or resumed (never over a timed-out rollout).
pub(super) fn note_paused(d: &Deployment, plan: &mut DeploymentPlan, now: Timestamp) {
    if deadline(d).is_none() {
        return;
    }
    let reason = progressing(d).and_then(|c| c.reason.as_deref());
    if reason == Some(TIMED_OUT) {
        return;
    }
    let paused_noted = reason == Some(PAUSED);
    let (why, message) = match (paused(d), paused_noted) {
        (true, false) => (PAUSED, "Deployment is paused"),
        (false, true) => ("DeploymentResumed", "Deployment is resumed"),
        _ => return,
    };
    set_condition(
        working(d, plan),
        new_condition(PROGRESSING, "Unknown", why, message.into(), now),
    );
}

fn sum(sets: &Sets, f: impl Fn(&ReplicaSet) -> i32) -> i32 {
    sets.all.iter().map(f).sum()
}

fn complete(d: &Deployment, st: &DeploymentStatus) -> bool {
    let r = replicas(d);
    st.updated_replicas.unwrap_or(0) == r
        && st.replicas.unwrap_or(0) == r
        && st.available_replicas.unwrap_or(0) == r
        && st.observed_generation >= d.metadata.generation
}

/// Whether the stored status says the rollout is complete (rule 3.10's gate).
pub(super) fn stored_complete(d: &Deployment) -> bool {
    d.status.as_ref().is_some_and(|st| complete(d, st))
}

fn timed_out(d: &Deployment, st: &DeploymentStatus, now: Timestamp) -> bool {
    let (Some(pds), Some(c)) = (deadline(d), condition(st, PROGRESSING)) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + i64::from(pds) < now.as_second()),
    }
}

/// The status after this sync (rules 3.14, 3.15), written into `plan.status` when it differs
/// from the stored one. `rollout`: the sync ran a strategy, so progress is estimated.
pub(super) fn finish(d: &Deployment, sets: &Sets, plan: &mut DeploymentPlan, now: Timestamp, rollout: bool) {
    let stored = d.status.clone().unwrap_or_default();
    let mut st = plan.status.take().unwrap_or_else(|| stored.clone());
    let rs_status = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let available = sum(sets, |rs| rs_status(rs).available_replicas.unwrap_or(0));
    let total = sum(sets, super::rs_replicas);
    st.replicas = Some(sum(sets, |rs| rs_status(rs).replicas));
    st.updated_replicas = Some(sets.new_rs().map_or(0, |rs| rs_status(rs).replicas));
    st.ready_replicas = Some(sum(sets, |rs| rs_status(rs).ready_replicas.unwrap_or(0)));
    st.available_replicas = Some(available);
    st.unavailable_replicas = Some((total - available).max(0));
    st.terminating_replicas = Some(sum(sets, |rs| rs_status(rs).terminating_replicas.unwrap_or(0)));
    st.observed_generation = d.metadata.generation;
    let r = replicas(d);
    let c = if available >= r - max_unavailable(d) {
        new_condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        new_condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut st, c);
    if rollout {
        progress(d, sets, &stored, &mut st, plan, now);
    }
    if st != stored {
        plan.status = Some(st);
    }
}

/// `syncRolloutStatus` (rule 3.15) on `st`, the status being computed.
fn progress(
    d: &Deployment,
    sets: &Sets,
    stored: &DeploymentStatus,
    st: &mut DeploymentStatus,
    plan: &mut DeploymentPlan,
    now: Timestamp,
) {
    let Some(pds) = deadline(d) else {
        remove_condition(st, PROGRESSING);
        return;
    };
    let current = condition(st, PROGRESSING).cloned();
    let is_complete = complete(d, st);
    let subject = sets.new_rs().map_or_else(
        || format!("Deployment \"{}\"", d.metadata.name.as_deref().unwrap_or("")),
        |rs| format!("ReplicaSet \"{}\"", rs.metadata.name.as_deref().unwrap_or("")),
    );
    let settled = st.replicas == st.updated_replicas
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
    if !settled {
        let old_of = |s: &DeploymentStatus| s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0);
        let advanced = st.updated_replicas.unwrap_or(0) > stored.updated_replicas.unwrap_or(0)
            || old_of(st) < old_of(stored)
            || st.ready_replicas.unwrap_or(0) > stored.ready_replicas.unwrap_or(0)
            || st.available_replicas.unwrap_or(0) > stored.available_replicas.unwrap_or(0);
        if is_complete {
            let message = format!("{subject} has successfully progressed.");
            set_condition(
                st,
                new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, message, now),
            );
        } else if advanced {
            let mut c = new_condition(
                PROGRESSING,
                "True",
                "ReplicaSetUpdated",
                format!("{subject} is progressing."),
                now,
            );
            if let Some(cur) = current.as_ref().filter(|c| c.status == "True") {
                c.last_transition_time.clone_from(&cur.last_transition_time);
            }
            remove_condition(st, PROGRESSING);
            set_condition(st, c);
        } else if timed_out(d, st, now) {
            let message = format!("{subject} has timed out progressing.");
            set_condition(st, new_condition(PROGRESSING, "False", TIMED_OUT, message, now));
        }
    }
    // A ReplicaSet's failure to create or delete pods shows on the Deployment.
    let failure = sets
        .new_rs()
        .into_iter()
        .chain(sets.all.iter())
        .find_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "ReplicaFailure")
        })
        .cloned();
    match failure {
        Some(f) => set_condition(
            st,
            new_condition(
                "ReplicaFailure",
                &f.status,
                f.reason.as_deref().unwrap_or(""),
                f.message.unwrap_or_default(),
                now,
            ),
        ),
        None => remove_condition(st, "ReplicaFailure"),
    }
    // Not finished and not timed out: look again when the deadline passes.
    if !is_complete
        && !timed_out(d, st, now)
        && let Some(c) = condition(st, PROGRESSING)
        && let Some(t) = &c.last_update_time
    {
        let left = t.0.as_second() + i64::from(pds) - now.as_second();
        plan.requeue_after = Some(if left < 1 {
            Duration::ZERO
        } else {
            Duration::from_secs(u64::try_from(left + 1).unwrap_or(u64::MAX))
        });
    }
}
