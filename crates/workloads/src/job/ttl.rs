//! The TTL-after-finished controller's decision (rule 6.14): when a finished Job with
//! `ttlSecondsAfterFinished` is to be deleted.

use std::time::Duration;

use podvisor_core::batchv1::Job;
use podvisor_core::k8s_openapi::jiff::Timestamp;

/// What to do about a finished Job's TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Delete it now, with `propagationPolicy: Foreground` and a precondition on its UID (so
    /// its pods go first, and a recreated Job of the same name is not touched). Upstream
    /// re-reads the Job uncached and checks again before deleting.
    DeleteNow,
    /// Look again after this long.
    RequeueAfter(Duration),
}

/// `ttl_expiry` of `job` at `now`: `None` when there is nothing to do (no TTL, not finished,
/// already being deleted, or no finish time recorded). The finish time is the
/// `lastTransitionTime` of the True `Complete` or `Failed` condition; a finish time in the
/// future (clock skew) only delays the deletion.
pub fn ttl_expiry(job: &Job, now: Timestamp) -> Option<Expiry> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished_at = job
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?
        .last_transition_time
        .as_ref()?
        .0;
    let expire_at = finished_at.as_nanosecond() + i128::from(ttl) * 1_000_000_000;
    let left = expire_at - now.as_nanosecond();
    if left <= 0 {
        Some(Expiry::DeleteNow)
    } else {
        Some(Expiry::RequeueAfter(Duration::from_nanos(
            u64::try_from(left).unwrap_or(u64::MAX),
        )))
    }
}
