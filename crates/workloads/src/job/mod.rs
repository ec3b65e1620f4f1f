//! The Job controller's decisions (`controller-semantics.md` section 6) and the
//! TTL-after-finished controller's (rule 6.14), as pure functions.
//!
//! [`plan`] is one `syncJob`: from the Job as stored, the pods it controls (claimed by the
//! shell with [`crate::owner::claim`]; adoption adds [`TRACKING_FINALIZER`], and the pods passed
//! in carry it) and the time, it returns the pods to create and delete, the finalizers to remove,
//! the status to write, the events and when to look again. [`ttl_expiry`] says when a finished
//! Job is to be deleted.
//!
//! The shell carries a [`JobPlan`] out in this order: write `status` (on failure stop, the sync
//! is retried); remove the tracking finalizer from `remove_finalizers`; delete `delete`; create
//! `create` with slow start (rule 1.5); record `events` and the pod-control events
//! ([`created_event`], [`deleted_event`]); keep `backoff`; requeue after `requeue_after`. The
//! one order that matters is the status write before any finalizer removal: a pod's UID must
//! be in `uncountedTerminatedPods` before the finalizer that keeps the pod is gone.
//!
//! Tracking with finalizers (rule 6.10) is done as upstream, split over two syncs: a finished
//! pod that still carries the finalizer is written into `status.uncountedTerminatedPods` and its
//! finalizer removed after that write; the next sync (the pod update brings it) finds its UID
//! uncounted while the pod carries no finalizer any more, or is gone, and moves it into
//! `succeeded`/`failed`. Upstream does the second step in the same sync when every removal
//! succeeded; here it always takes the next one, which is upstream's path after a failed
//! removal. Because the finalizer holds the pod until it is counted, a finished pod deleted
//! before it was counted is not lost. The terminal `Complete`/`Failed` condition waits, as
//! upstream, until nothing is uncounted and nothing terminates.
//!
//! What it is not: no expectations (rule 1.4: the shell calls `plan` only when they are
//! satisfied, and drops finalizer-removal expectations by pod UID itself), no adoption, no API
//! calls. The orphan-pod finalizer worker's decision is [`remove_orphan_finalizer`].
//!
//! The re-creation back-off (rule 6.7) is upstream's in-memory record, kept by the shell:
//! [`plan_with_backoff`] takes the Job's [`Backoff`] and returns the next one in
//! [`JobPlan::backoff`]. Creation waits for the longer of the record's back-off and the one
//! the pods passed in show (failed pods finished after the latest succeeded one), so a shell
//! that lost its record (a restart) still waits for the failures it can see. [`plan`] is
//! [`plan_with_backoff`] with an empty record: a failed pod that was counted and is then gone
//! (a deleted pod under `TerminatingOrFailed`) no longer holds its replacement back.
//!
//! Deviation from upstream: while the back-off holds creation, `status.active` stays the real
//! count (upstream reports 0 for that sync).

mod indexes;
mod manage;
mod policy;
mod ttl;

use std::collections::BTreeSet;
use std::time::Duration;

use podvisor_core::batchv1::{
    Job, JobCondition, JobSpec, JobStatus, PodFailurePolicy, UncountedTerminatedPods,
};
use podvisor_core::corev1::Pod;
use podvisor_core::k8s_openapi::jiff::Timestamp;
use podvisor_core::metav1::Time;

use crate::event::Event;
use crate::pods;

pub use indexes::{COMPLETION_INDEX, Intervals, completion_index};
pub use manage::{COMPLETION_INDEX_ENV, MAX_POD_CREATE_DELETE_PER_SYNC, generate_name_with_index};
pub use policy::{
    Action, Backoff, DEFAULT_POD_FAILURE_BACKOFF, MAX_POD_FAILURE_BACKOFF, backoff_delay, finished_time,
    match_pod_failure_policy, match_success_policy,
};
pub use ttl::{Expiry, ttl_expiry};

/// The API version Job pods name as their controller.
pub const API_VERSION: &str = "batch/v1";
/// The kind.
pub const KIND: &str = "Job";
/// The finalizer that holds a Job's pod until the Job counted it (rule 6.10).
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The failures of a pod's index before it (`backoffLimitPerIndex`, rule 6.7).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// The failures of a pod's index before it that the failure policy ignored.
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
/// `spec.managedBy` naming this controller (rule 6.4).
pub const CONTROLLER_NAME: &str = "kubernetes.io/job-controller";
/// The most pod UIDs in `status.uncountedTerminatedPods` (`MaxUncountedPods`, rule 6.10).
pub const MAX_UNCOUNTED_PODS: usize = 500;

/// A pod the plan acts on, by name (for the call) and UID (for the precondition and the
/// expectations).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
}

impl PodRef {
    fn of(pod: &Pod) -> Self {
        PodRef {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: uid(pod).to_string(),
        }
    }
}

/// What one sync of a Job does (see the module doc for the order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobPlan {
    /// Pods to create (`generateName` set; the API server names them).
    pub create: Vec<Pod>,
    /// Pods to delete (default delete options: their own grace period).
    pub delete: Vec<PodRef>,
    /// Pods to patch `batch.kubernetes.io/job-tracking` off (`$deleteFromPrimitiveList`),
    /// after `status` is written: counted finished pods, and pods about to be deleted.
    pub remove_finalizers: Vec<PodRef>,
    /// The status to write (`UpdateStatus`), `None` when the stored one is already it.
    pub status: Option<JobStatus>,
    /// Events on the Job, in kube-controller-manager's words.
    pub events: Vec<Event>,
    /// When to sync again: the back-off, the active deadline.
    pub requeue_after: Option<Duration>,
    /// The Job's back-off record after this sync, to keep (see [`Backoff`]).
    pub backoff: Backoff,
}

/// The pod-control event for a pod created as `name` (rule 1.7).
pub fn created_event(name: &str) -> Event {
    Event::normal("SuccessfulCreate", format!("Created pod: {name}"))
}

/// The pod-control event for a deleted pod (rule 1.7).
pub fn deleted_event(name: &str) -> Event {
    Event::normal("SuccessfulDelete", format!("Deleted pod: {name}"))
}

/// The orphan-pod worker's decision (rule 6.10, `syncOrphanPod`): whether to patch the tracking
/// finalizer off `pod`, given `job`, the Job its controller reference resolves to (rule 1.2;
/// `None` when it has none, names another kind or the Job is gone). A pod of a live Job keeps
/// it (that Job's sync counts it), as does a pod of a Job another controller manages.
pub fn remove_orphan_finalizer(pod: &Pod, job: Option<&Job>) -> bool {
    if !has_finalizer(pod) {
        return false;
    }
    if let Some(r) = crate::owner::controller_of(&pod.metadata)
        && (r.kind != KIND || r.api_version != API_VERSION)
    {
        // Another owner's pod: not ours to touch.
        return false;
    }
    match job {
        None => true,
        Some(j) => {
            let managed_elsewhere = j
                .spec
                .as_ref()
                .and_then(|s| s.managed_by.as_deref())
                .is_some_and(|m| m != CONTROLLER_NAME);
            !managed_elsewhere && is_finished(j)
        }
    }
}

/// The spec with the API server's defaults (rule 6.1), as the sync reads it.
pub(crate) struct Config<'a> {
    parallelism: usize,
    completions: Option<usize>,
    backoff_limit: i32,
    per_index: Option<i32>,
    max_failed_indexes: Option<usize>,
    indexed: bool,
    suspended: bool,
    only_replace_failed: bool,
    failure_policy: Option<&'a PodFailurePolicy>,
}

fn to_usize(v: i32) -> usize {
    usize::try_from(v).unwrap_or(0)
}

impl<'a> Config<'a> {
    fn of(spec: &'a JobSpec) -> Self {
        let (parallelism, completions) = match (spec.parallelism, spec.completions) {
            (None, None) => (1, Some(1)),
            (p, c) => (to_usize(p.unwrap_or(1)), c.map(to_usize)),
        };
        let per_index = spec.backoff_limit_per_index;
        Config {
            parallelism,
            completions,
            backoff_limit: spec
                .backoff_limit
                .unwrap_or(if per_index.is_some() { i32::MAX } else { 6 }),
            per_index,
            max_failed_indexes: spec.max_failed_indexes.map(to_usize),
            indexed: spec.completion_mode.as_deref() == Some("Indexed"),
            suspended: spec.suspend == Some(true),
            only_replace_failed: spec.pod_replacement_policy.as_deref() == Some("Failed")
                || spec.pod_failure_policy.is_some(),
            failure_policy: spec.pod_failure_policy.as_ref(),
        }
    }

    fn completions_or_zero(&self) -> usize {
        self.completions.unwrap_or(0)
    }

    /// The pod's completion index when it is below `completions`.
    fn valid_index(&self, pod: &Pod) -> Option<usize> {
        completion_index(pod).filter(|ix| *ix < self.completions_or_zero())
    }

    /// `isPodFailed` (rule 6.6): `Failed`, or deleted and not `Succeeded` unless only failed
    /// pods are replaced.
    fn is_pod_failed(&self, pod: &Pod) -> bool {
        let phase = pods::phase(pod);
        phase == "Failed"
            || (!self.only_replace_failed
                && pod.metadata.deletion_timestamp.is_some()
                && phase != "Succeeded")
    }

    /// Whether a failed pod counts toward the back-off limit (rule 6.11).
    fn counts(&self, pod: &Pod) -> bool {
        self.failure_policy
            .and_then(|fp| match_pod_failure_policy(fp, pod))
            .is_none_or(|a| a.counts())
    }

    /// Whether the pod is one this sync counts: for Indexed Jobs, it has a valid index.
    fn countable(&self, pod: &Pod) -> bool {
        !self.indexed || self.valid_index(pod).is_some()
    }
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

fn condition_true<'c>(conditions: &'c [JobCondition], type_: &str) -> Option<&'c JobCondition> {
    conditions.iter().find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the Job finished: a `Complete` or `Failed` condition is True (rule 6.4).
pub fn is_finished(job: &Job) -> bool {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    condition_true(conditions, "Complete").is_some() || condition_true(conditions, "Failed").is_some()
}

fn new_condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// `ensureJobConditionStatus`: sets the condition (new times) when its status, reason or
/// message differ; never adds one as False. Returns whether it changed.
fn ensure_condition(
    list: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = list.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status || c.reason.as_deref() != Some(reason) || c.message.as_deref() != Some(message)
        {
            *c = new_condition(type_, status, reason, message, now);
            return true;
        }
        return false;
    }
    if status != "False" {
        list.push(new_condition(type_, status, reason, message, now));
        return true;
    }
    false
}

/// How the Job ends (rule 6.9): success or failure, with the reason and message both the
/// interim and the terminal condition carry; `interim_new` when the interim condition is to be
/// added by this sync.
struct Finish {
    success: bool,
    reason: String,
    message: String,
    interim_new: bool,
}

impl Finish {
    fn failure(reason: &str, message: &str) -> Self {
        Finish {
            success: false,
            reason: reason.to_string(),
            message: message.to_string(),
            interim_new: true,
        }
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// What is left of the re-creation back-off (rule 6.7) judged from the pods alone: the failed
/// pods that finished after the latest succeeded one. A deleted pod counts only while it is not counted yet (it carries
/// the finalizer or is uncounted): the pods this controller deletes for surplus or suspension
/// lose theirs first, and are never failures (as upstream, which only counts finalizer holders).
fn pods_backoff_left(
    cfg: &Config<'_>,
    pods: &[&Pod],
    uncounted_failed: &BTreeSet<&str>,
    now: Timestamp,
) -> Duration {
    let last_success = pods
        .iter()
        .filter(|p| pods::phase(p) == "Succeeded")
        .map(|p| finished_time(p))
        .max();
    let failed = pods.iter().filter(|p| {
        cfg.is_pod_failed(p)
            && (has_finalizer(p)
                || uncounted_failed.contains(uid(p))
                || p.metadata.deletion_timestamp.is_none())
    });
    let times: Vec<Timestamp> = failed
        .map(|p| finished_time(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    times
        .iter()
        .max()
        .map_or(Duration::ZERO, |last| policy::remaining(times.len(), *last, now))
}

/// One `syncJob` (rules 6.4–6.13) without a back-off record: the re-creation back-off is
/// judged from the pods alone (see the module doc). Prefer [`plan_with_backoff`].
pub fn plan(job: &Job, pods: &[Pod], now: Timestamp) -> JobPlan {
    plan_with_backoff(job, pods, now, &Backoff::default())
}

/// One `syncJob` (rules 6.4–6.13) with the Job's back-off record as the shell kept it (see
/// [`Backoff`]); the plan's `backoff` is the record to keep. Creation waits for the longer of
/// the record's back-off and the one the pods show.
pub fn plan_with_backoff(job: &Job, pods: &[Pod], now: Timestamp, backoff: &Backoff) -> JobPlan {
    let mut out = JobPlan {
        backoff: *backoff,
        ..Default::default()
    };
    let Some(spec) = job.spec.as_ref() else {
        return out;
    };
    if spec.managed_by.as_deref().is_some_and(|m| m != CONTROLLER_NAME) || is_finished(job) {
        return out;
    }
    if !matches!(
        spec.completion_mode.as_deref(),
        None | Some("NonIndexed") | Some("Indexed")
    ) {
        out.events.push(Event::warning(
            "UnknownCompletionMode",
            "Skipped Job sync because completion mode is unknown",
        ));
        return out;
    }
    let cfg = Config::of(spec);
    if cfg.indexed && cfg.completions.is_none() {
        // The API server rejects an Indexed Job without completions.
        return out;
    }
    let mut pods: Vec<&Pod> = pods.iter().collect();
    if cfg.indexed {
        // Completed indexes are introduced in order.
        pods.sort_by_key(|p| completion_index(p));
    }
    let stored = job.status.clone().unwrap_or_default();
    let mut status = stored.clone();
    let uncounted = stored.uncounted_terminated_pods.clone().unwrap_or_default();
    let unc_succeeded: BTreeSet<&str> = uncounted.succeeded.iter().flatten().map(String::as_str).collect();
    let unc_failed: BTreeSet<&str> = uncounted.failed.iter().flatten().map(String::as_str).collect();

    let active_pods: Vec<&Pod> = pods.iter().copied().filter(|p| pods::is_active(p)).collect();
    let mut ready = active_pods.iter().filter(|p| pods::is_ready(p)).count();
    let mut terminating = pods.iter().filter(|p| pods::is_terminating(p)).count();
    let mut active = active_pods.len();
    let new_finished = |f: &dyn Fn(&Pod) -> bool, unc: &BTreeSet<&str>| -> Vec<&Pod> {
        pods.iter()
            .copied()
            .filter(|p| has_finalizer(p) && !unc.contains(uid(p)) && cfg.countable(p) && f(p))
            .collect()
    };
    let new_succeeded = new_finished(&|p| pods::phase(p) == "Succeeded", &unc_succeeded);
    let new_failed = new_finished(&|p| cfg.is_pod_failed(p), &unc_failed);
    out.backoff = backoff.next(&new_succeeded, &new_failed);
    let backoff = out.backoff;
    let stored_succeeded = to_usize(stored.succeeded.unwrap_or(0));
    let mut succeeded = stored_succeeded + new_succeeded.len() + unc_succeeded.len();
    let failed = to_usize(stored.failed.unwrap_or(0))
        + new_failed.iter().filter(|p| cfg.counts(p)).count()
        + unc_failed.len();

    // Rule 6.4 (6): the first sync while not suspended starts the Job.
    if status.start_time.is_none() && !cfg.suspended {
        status.start_time = Some(Time(now));
    }
    let mut requeue: Vec<Duration> = Vec::new();

    // Rule 6.9: how the Job ends, if it does.
    let conditions = stored.conditions.clone().unwrap_or_default();
    let mut finish = if let Some(c) = condition_true(&conditions, "SuccessCriteriaMet") {
        Some(Finish {
            success: true,
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
            interim_new: false,
        })
    } else if let Some(c) = condition_true(&conditions, "FailureTarget") {
        Some(Finish {
            success: false,
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
            interim_new: false,
        })
    } else {
        // Rule 6.11: the first failed pod that matches a FailJob rule.
        cfg.failure_policy.and_then(|fp| {
            pods.iter()
                .filter(|p| cfg.is_pod_failed(p))
                .find_map(|p| match match_pod_failure_policy(fp, p) {
                    Some(Action::FailJob(msg)) => Some(Finish::failure("PodFailurePolicy", &msg)),
                    _ => None,
                })
        })
    };
    if finish.is_none() {
        let deadline = spec
            .active_deadline_seconds
            .filter(|_| !cfg.suspended)
            .zip(status.start_time.as_ref())
            .map(|(ads, start)| {
                let allowed = Duration::from_secs(u64::try_from(ads).unwrap_or(0));
                let elapsed = Duration::try_from(now.duration_since(start.0)).unwrap_or(Duration::ZERO);
                allowed.saturating_sub(elapsed)
            });
        if i64::try_from(failed).unwrap_or(i64::MAX) > i64::from(cfg.backoff_limit)
            || manage::past_backoff_limit_on_failure(job, &cfg, &pods)
        {
            finish = Some(Finish::failure(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ));
        } else if deadline.is_some_and(|left| left.is_zero()) {
            finish = Some(Finish::failure(
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ));
        } else if let Some(left) = deadline {
            requeue.push(left);
        }
    }

    let completions = cfg.completions_or_zero();
    let prev_succeeded_ix = Intervals::parse(stored.completed_indexes.as_deref().unwrap_or(""), completions);
    let mut succeeded_ix = Intervals::default();
    let mut failed_ix: Option<Intervals> = None;
    let mut delayed = Default::default();
    if cfg.indexed {
        succeeded_ix = prev_succeeded_ix.with(
            pods.iter()
                .filter(|p| pods::phase(p) == "Succeeded" && has_finalizer(p))
                .filter_map(|p| cfg.valid_index(p)),
        );
        succeeded = succeeded_ix.total();
        if let Some(per_index) = cfg.per_index {
            let prev = Intervals::parse(stored.failed_indexes.as_deref().unwrap_or(""), completions);
            let f = prev.with(
                pods.iter()
                    .filter(|p| has_finalizer(p) && manage::is_index_failed(&cfg, p, per_index))
                    .filter_map(|p| cfg.valid_index(p)),
            );
            if finish.is_none() {
                if cfg.max_failed_indexes.is_some_and(|m| f.total() > m) {
                    finish = Some(Finish::failure(
                        "MaxFailedIndexesExceeded",
                        "Job has exceeded the specified maximal number of failed indexes",
                    ));
                } else if f.total() > 0 && f.total() + succeeded_ix.total() >= completions {
                    finish = Some(Finish::failure("FailedIndexes", "Job has failed indexes"));
                }
            }
            delayed = manage::delayed_per_index(&cfg, &pods, &active_pods, &succeeded_ix, &f);
            failed_ix = Some(f);
        }
        if finish.is_none()
            && let Some(msg) = spec
                .success_policy
                .as_ref()
                .and_then(|sp| match_success_policy(sp, completions, &succeeded_ix))
        {
            finish = Some(Finish {
                success: true,
                reason: "SuccessPolicy".to_string(),
                message: msg,
                interim_new: true,
            });
        }
    }

    let mut conditions = conditions;
    let to_delete: Vec<&Pod>;
    if finish.is_some() {
        // The Job ends: its active pods are deleted, keeping their finalizers until counted.
        to_delete = active_pods.clone();
    } else {
        // `manageJob` runs unless the Job is being deleted.
        let deleting = job.metadata.deletion_timestamp.is_some();
        let view = manage::View {
            active: active_pods.clone(),
            succeeded_indexes: succeeded_ix.clone(),
            failed_indexes: failed_ix.clone(),
            delayed: delayed.clone(),
            backoff_left: backoff
                .remaining(now)
                .max(pods_backoff_left(&cfg, &pods, &unc_failed, now)),
        };
        let managed = if deleting {
            manage::Managed::default()
        } else {
            manage::manage(job, &cfg, &pods, &view, succeeded, terminating, now)
        };
        requeue.extend(managed.requeue_after);
        out.remove_finalizers.extend(
            managed
                .delete
                .iter()
                .filter(|p| has_finalizer(p))
                .map(|p| PodRef::of(p)),
        );
        to_delete = managed.delete;
        active = (active + managed.create.len()).saturating_sub(to_delete.len());
        out.create = managed.create;
        let complete = match cfg.completions {
            None => succeeded > 0 && active == 0,
            Some(c) => succeeded >= c && active == 0,
        };
        if complete {
            finish = Some(Finish {
                success: true,
                reason: "CompletionsReached".to_string(),
                message: "Reached expected number of succeeded pods".to_string(),
                interim_new: true,
            });
        } else if deleting {
            // The conditions wait for a sync that manages the pods.
        } else if cfg.suspended {
            // Rule 6.12.
            if ensure_condition(
                &mut conditions,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            ) {
                out.events.push(Event::normal("Suspended", "Job suspended"));
            }
        } else if ensure_condition(
            &mut conditions,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        ) {
            out.events.push(Event::normal("Resumed", "Job resumed"));
            status.start_time = Some(Time(now));
        }
    }
    if finish.is_some() {
        active = active.saturating_sub(to_delete.len());
    }
    terminating += to_delete.len();
    ready = ready.saturating_sub(to_delete.iter().filter(|p| pods::is_ready(p)).count());
    out.delete = to_delete.iter().map(|p| PodRef::of(p)).collect();

    // Rule 6.10: count what finished, remove finalizers of what is counted.
    let with_finalizer: BTreeSet<&str> = pods.iter().filter(|p| has_finalizer(p)).map(|p| uid(p)).collect();
    // `cleanUncountedPodsWithoutFinalizers`: an uncounted UID whose pod lost its finalizer (or
    // is gone) is counted now.
    let keep = |v: &Option<Vec<String>>| -> Vec<String> {
        let mut seen = BTreeSet::new();
        v.iter()
            .flatten()
            .filter(|u| with_finalizer.contains(u.as_str()) && seen.insert(u.as_str()))
            .cloned()
            .collect()
    };
    let done = |set: &BTreeSet<&str>| set.iter().filter(|u| !with_finalizer.contains(*u)).count();
    let mut next_unc_succeeded = keep(&uncounted.succeeded);
    let mut next_unc_failed = keep(&uncounted.failed);
    let mut counted_succeeded = stored_succeeded + done(&unc_succeeded);
    let counted_failed = to_usize(stored.failed.unwrap_or(0)) + done(&unc_failed);
    let mut new_succeeded_ix = 0;
    let job_ending = finish.is_some() || job.metadata.deletion_timestamp.is_some();
    let ending_in_failure = finish.as_ref().is_some_and(|f| !f.success);
    let mut reached_max = false;
    for p in &pods {
        if !has_finalizer(p) {
            continue;
        }
        let considered_failed = cfg.is_pod_failed(p);
        let phase_succeeded = pods::phase(p) == "Succeeded";
        // With `backoffLimitPerIndex`, a failed pod keeps its finalizer until its index has a
        // replacement (which carries its failure count on).
        let delayed_here = cfg
            .valid_index(p)
            .and_then(|ix| delayed.get(&ix))
            .is_some_and(|d| uid(d) == uid(p));
        let removable = job_ending || phase_succeeded || (considered_failed && !delayed_here);
        if !removable {
            continue;
        }
        if !out.remove_finalizers.iter().any(|r| r.uid == uid(p)) {
            out.remove_finalizers.push(PodRef::of(p));
        }
        if phase_succeeded && !unc_failed.contains(uid(p)) {
            if cfg.indexed {
                // The index is enough to not count it twice.
                if cfg.valid_index(p).is_some_and(|ix| !prev_succeeded_ix.has(ix)) {
                    new_succeeded_ix += 1;
                }
            } else if !unc_succeeded.contains(uid(p)) {
                next_unc_succeeded.push(uid(p).to_string());
            }
        } else if (considered_failed || ending_in_failure)
            && !unc_failed.contains(uid(p))
            && cfg.countable(p)
            && cfg.counts(p)
        {
            next_unc_failed.push(uid(p).to_string());
        }
        if new_succeeded_ix + next_unc_succeeded.len() + next_unc_failed.len() >= MAX_UNCOUNTED_PODS {
            reached_max = true;
            break;
        }
    }
    if cfg.indexed {
        counted_succeeded = succeeded_ix.total();
        let s = succeeded_ix.to_string();
        status.completed_indexes = (!s.is_empty()).then_some(s);
        status.failed_indexes = failed_ix.as_ref().map(Intervals::to_string);
    }
    status.succeeded = Some(count(counted_succeeded));
    status.failed = Some(count(counted_failed));
    status.active = Some(count(active));
    status.ready = Some(count(ready));
    status.terminating = Some(count(terminating));
    let uncounted_left = next_unc_succeeded.len() + next_unc_failed.len();
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(next_unc_succeeded),
        failed: Some(next_unc_failed),
    });

    if let Some(f) = &finish {
        let interim = if f.success {
            "SuccessCriteriaMet"
        } else {
            "FailureTarget"
        };
        if f.interim_new && condition_true(&conditions, interim).is_none() {
            conditions.push(new_condition(interim, "True", &f.reason, &f.message, now));
        }
        // The terminal condition waits until every pod is counted and none terminates.
        if !reached_max && uncounted_left == 0 && terminating == 0 {
            let terminal = if f.success { "Complete" } else { "Failed" };
            ensure_condition(&mut conditions, terminal, "True", &f.reason, &f.message, now);
            if f.success {
                status.completion_time = Some(Time(now));
                if cfg.completions.is_some_and(|c| counted_succeeded > c) {
                    out.events.push(Event::warning(
                        "TooManySucceededPods",
                        "Too many succeeded pods running after completion count reached",
                    ));
                }
                out.events.push(Event::normal("Completed", "Job completed"));
            } else {
                out.events.push(Event::warning(&f.reason, f.message.clone()));
            }
        }
    }
    status.conditions = Some(conditions);

    let next = normalize(status);
    if next != normalize(stored) {
        out.status = Some(next);
    }
    out.requeue_after = requeue.into_iter().min();
    out
}

/// The status as the API server stores it: zero counters without `omitempty` pointers are
/// omitted, empty lists and strings are absent.
fn normalize(mut s: JobStatus) -> JobStatus {
    let nonzero = |v: Option<i32>| v.filter(|n| *n != 0);
    s.active = nonzero(s.active);
    s.succeeded = nonzero(s.succeeded);
    s.failed = nonzero(s.failed);
    let u = s.uncounted_terminated_pods.take().unwrap_or_default();
    let nonempty = |v: Option<Vec<String>>| v.filter(|v| !v.is_empty());
    s.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: nonempty(u.succeeded),
        failed: nonempty(u.failed),
    });
    s.completed_indexes = s.completed_indexes.filter(|c| !c.is_empty());
    s.conditions = s.conditions.filter(|c| !c.is_empty());
    s
}

#[cfg(test)]
mod tests;
