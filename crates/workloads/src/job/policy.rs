//! The pod failure policy (rule 6.11), the success policy (rule 6.9) and the pod re-creation
//! back-off (rule 6.7).

use std::time::Duration;

use podvisor_core::batchv1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, SuccessPolicy};
use podvisor_core::corev1::{ContainerStatus, Pod};
use podvisor_core::k8s_openapi::jiff::Timestamp;

use super::indexes::Intervals;

/// `DefaultJobPodFailureBackOff` (rule 6.7).
pub const DEFAULT_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// `MaxJobPodFailureBackOff`: 10 minutes in the code (rule 6.7).
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(600);

/// The action of the first `podFailurePolicy` rule a failed pod matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `FailJob`, with the `FailureTarget` message.
    FailJob(String),
    /// `Ignore`: not counted toward the back-off limits.
    Ignore,
    /// `Count`.
    Count,
    /// `FailIndex`.
    FailIndex,
}

impl Action {
    /// Whether the failure counts toward `backoffLimit` / `backoffLimitPerIndex`.
    pub fn counts(&self) -> bool {
        *self != Action::Ignore
    }
}

fn exit_code_matches(code: i32, req: &PodFailurePolicyOnExitCodesRequirement) -> bool {
    match req.operator.as_str() {
        "In" => req.values.contains(&code),
        "NotIn" => !req.values.contains(&code),
        _ => false,
    }
}

fn matching_container<'p>(
    statuses: Option<&'p [ContainerStatus]>,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<(&'p str, i32)> {
    statuses.unwrap_or(&[]).iter().find_map(|cs| {
        let code = cs.state.as_ref()?.terminated.as_ref()?.exit_code;
        let named = req.container_name.as_deref().is_none_or(|n| n == cs.name);
        (named && code != 0 && exit_code_matches(code, req)).then_some((cs.name.as_str(), code))
    })
}

/// `matchPodFailurePolicy` for a failed pod (rule 6.11): the first matching rule's action, or
/// `None` (counted). `onExitCodes` looks at regular containers, then init containers, for a
/// terminated one with a non-zero exit code; `onPodConditions` at the pod's conditions by type
/// and status (`True` when unset).
pub fn match_pod_failure_policy(policy: &PodFailurePolicy, pod: &Pod) -> Option<Action> {
    let status = pod.status.as_ref();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    for (index, rule) in policy.rules.iter().enumerate() {
        let message = if let Some(req) = &rule.on_exit_codes {
            let found = matching_container(status.and_then(|s| s.container_statuses.as_deref()), req)
                .or_else(|| {
                    matching_container(status.and_then(|s| s.init_container_statuses.as_deref()), req)
                });
            let Some((container, code)) = found else { continue };
            format!(
                "Container {container} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                rule.action
            )
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
            let found = conditions.iter().find(|c| {
                patterns
                    .iter()
                    .any(|p| p.type_ == c.type_ && p.status.as_deref().unwrap_or("True") == c.status)
            });
            let Some(cond) = found else { continue };
            format!(
                "Pod {ns}/{name} has condition {} matching {} rule at index {index}",
                cond.type_, rule.action
            )
        } else {
            continue;
        };
        return match rule.action.as_str() {
            "Ignore" => Some(Action::Ignore),
            "Count" => Some(Action::Count),
            "FailIndex" => Some(Action::FailIndex),
            "FailJob" => Some(Action::FailJob(message)),
            // An unknown action matches but does nothing (upstream's switch has no default).
            _ => continue,
        };
    }
    None
}

/// `matchSuccessPolicy` (rule 6.9): the `Matched rules at index <n>` message of the first rule
/// the succeeded indexes meet.
pub fn match_success_policy(
    policy: &SuccessPolicy,
    completions: usize,
    succeeded: &Intervals,
) -> Option<String> {
    if succeeded.is_empty() {
        return None;
    }
    policy.rules.iter().enumerate().find_map(|(index, rule)| {
        let count = rule.succeeded_count.and_then(|c| usize::try_from(c).ok());
        let met = match &rule.succeeded_indexes {
            Some(s) => {
                let required = Intervals::parse(s, completions);
                if required.is_empty() {
                    return None;
                }
                let have = succeeded.overlap(&required);
                have == required.total() || count.is_some_and(|c| have >= c)
            }
            None => rule.succeeded_count.is_some() && count.is_some_and(|c| succeeded.total() >= c),
        };
        met.then(|| format!("Matched rules at index {index}"))
    })
}

/// `getFinishedTime` (rule 6.7): the latest `finishedAt` when every container terminated; else
/// the `Ready=False` transition; else `deletionTimestamp − grace`; else the creation time.
pub fn finished_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let containers = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or(&[]);
    let mut latest: Option<Timestamp> = None;
    let mut all = !containers.is_empty();
    for cs in containers {
        match cs
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.finished_at.as_ref())
        {
            Some(t) => latest = Some(latest.map_or(t.0, |l| l.max(t.0))),
            None => all = false,
        }
    }
    if all && let Some(t) = latest {
        return t;
    }
    let ready_false = status
        .and_then(|s| s.conditions.as_deref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.as_ref());
    if let Some(t) = ready_false {
        return t.0;
    }
    if let Some(d) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return Timestamp::from_second(d.0.as_second().saturating_sub(grace)).unwrap_or(d.0);
    }
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

/// The Job controller's in-memory back-off record for one Job (rule 6.7, `backoffRecord`):
/// the consecutive pod failures since the last success and the latest one's finish time. The
/// shell keeps one per Job key, passes it to [`super::plan_with_backoff`] and stores the plan's
/// [`super::JobPlan::backoff`] once the status write succeeded (or when there was none to
/// write); it drops the record when the Job finishes or is deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    /// Failures since the last success.
    pub failures_after_last_success: u32,
    /// When the latest of them finished.
    pub last_failure: Option<Timestamp>,
}

impl Backoff {
    /// `newBackoffRecord`: the record after this sync's newly finished pods. A new success
    /// resets the count to the new failures that finished after it.
    pub fn next(&self, new_succeeded: &[&Pod], new_failed: &[&Pod]) -> Backoff {
        let mut failed: Vec<Timestamp> = new_failed.iter().map(|p| finished_time(p)).collect();
        failed.sort_unstable();
        let last_success = new_succeeded.iter().map(|p| finished_time(p)).max();
        match last_success {
            None if failed.is_empty() => *self,
            None => Backoff {
                failures_after_last_success: self
                    .failures_after_last_success
                    .saturating_add(u32::try_from(failed.len()).unwrap_or(u32::MAX)),
                last_failure: failed.last().copied(),
            },
            Some(s) => {
                let after: Vec<Timestamp> = failed.into_iter().filter(|f| *f > s).collect();
                Backoff {
                    failures_after_last_success: u32::try_from(after.len()).unwrap_or(u32::MAX),
                    last_failure: after.last().copied(),
                }
            }
        }
    }

    /// What is left of the back-off at `now`.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        match self.last_failure {
            Some(last) => remaining(
                usize::try_from(self.failures_after_last_success).unwrap_or(usize::MAX),
                last,
                now,
            ),
            None => Duration::ZERO,
        }
    }
}

/// `10 s × 2^(failures−1)`, capped at 10 minutes; zero without failures.
pub fn backoff_delay(failures: usize) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let mut d = DEFAULT_POD_FAILURE_BACKOFF;
    for _ in 1..failures {
        d *= 2;
        if d >= MAX_POD_FAILURE_BACKOFF {
            return MAX_POD_FAILURE_BACKOFF;
        }
    }
    d
}

/// What is left of the back-off after `failures` consecutive failures, the latest at `last`.
pub(crate) fn remaining(failures: usize, last: Timestamp, now: Timestamp) -> Duration {
    let delay = backoff_delay(failures);
    let elapsed = now.duration_since(last);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    delay.saturating_sub(elapsed)
}
