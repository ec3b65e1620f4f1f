//! What the CronJob controller decides on one sync (rules 7.1–7.9 of
//! `controller-semantics.md`): the Job due now, the Jobs to delete (concurrency policy
//! `Replace`, history limits), `status.active` / `lastScheduleTime` / `lastSuccessfulTime`, the
//! events, and when to look again.
//!
//! It is not the loop around it: the caller lists the Jobs whose controller reference names the
//! CronJob, creates and deletes (background propagation), writes the status and records the
//! events. Upstream's extra reads (the uncached CronJob before `UnexpectedJob`, the GET that
//! confirms a missing active Job, the GET before a `Replace` delete) are the caller's too: the
//! plan takes its input as current. Schedules are parsed in [`schedule`].

pub mod schedule;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use podvisor_core::batchv1::{CronJob, CronJobStatus, Job};
use podvisor_core::corev1::ObjectReference;
use podvisor_core::k8s_openapi::jiff::tz::TimeZone;
use podvisor_core::k8s_openapi::jiff::{SignedDuration, Timestamp};
use podvisor_core::metav1::{ObjectMeta, Time};

use crate::event::Event;
use crate::owner::Owner;
use schedule::Schedule;

/// The annotation with the Job's scheduled time, RFC 3339 in the CronJob's zone (rule 7.6).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this gives `TooManyMissedTimes` (rule 7.5).
pub const MAX_MISSED: i64 = 100;
/// Added to the next schedule time when requeueing (rule 7.4).
pub const REQUEUE_PADDING: Duration = Duration::from_millis(100);

/// A Job to delete, with background propagation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    /// The Job's name.
    pub name: String,
    /// Its UID (a precondition for the delete).
    pub uid: String,
}

/// What one sync of a CronJob does.
#[derive(Debug, Clone, PartialEq)]
pub struct CronJobPlan {
    /// The Job to create (rule 7.6 step 4). Its reference is already in `status.active`
    /// without a UID: after the create, write [`CronJobPlan::status_with_created`] instead
    /// of `status`. On a failed create record [`failed_create_event`], write nothing and retry
    /// with back-off (the next plan recomputes the rest). An `AlreadyExists` for a Job this
    /// CronJob does not control: write `status` as it is (upstream assumes the other actor
    /// keeps the status).
    pub create: Option<Job>,
    /// Jobs to delete (background propagation): the active Jobs under `Replace` (7.6 step 3)
    /// and finished Jobs beyond the history limits (7.8). On a failed delete record
    /// [`failed_delete_event`] instead of that Job's `SuccessfulDelete`.
    pub delete: Vec<JobRef>,
    /// The new status, when it differs from the stored one.
    pub status: Option<CronJobStatus>,
    /// Events on the CronJob, in kube-controller-manager's words (`SuccessfulCreate` and
    /// `SuccessfulDelete` assume the calls succeed).
    pub events: Vec<Event>,
    /// Sync again after this long: the next schedule time + 100 ms. `None` while deleted,
    /// suspended, or with a bad time zone or schedule (an update of the CronJob wakes it).
    pub requeue_after: Option<Duration>,
}

impl CronJobPlan {
    /// `status` once `create` was created as `created`: its active entry gets the created
    /// Job's UID and resource version.
    pub fn status_with_created(&self, created: &Job) -> Option<CronJobStatus> {
        let mut status = self.status.clone()?;
        let name = self.create.as_ref()?.metadata.name.as_deref();
        for r in status.active.iter_mut().flatten() {
            if r.uid.is_none() && r.name.as_deref() == name {
                *r = job_reference(created);
            }
        }
        Some(status)
    }
}

/// The reference to `job` that `status.active` holds.
pub fn job_reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// `<cronjob>-<scheduled Unix time in minutes>` (rule 7.6).
pub fn job_name(cron_job: &str, scheduled: Timestamp) -> String {
    format!("{cron_job}-{}", scheduled.as_second() / 60)
}

/// Warning `FailedCreate` for a Job create that failed (not for `AlreadyExists`).
pub fn failed_create_event(err: &str) -> Event {
    Event::warning("FailedCreate", format!("Error creating job: {err}"))
}

/// Warning `FailedDelete` for a Job delete that failed.
pub fn failed_delete_event(err: &str) -> Event {
    Event::warning("FailedDelete", format!("Deleted job: {err}"))
}

/// `Complete` or `Failed` when the Job has that condition True.
fn finished(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find_map(|c| match (c.type_.as_str(), c.status.as_str()) {
            ("Complete", "True") => Some("Complete"),
            ("Failed", "True") => Some("Failed"),
            _ => None,
        })
}

fn uid(job: &Job) -> &str {
    job.metadata.uid.as_deref().unwrap_or("")
}

fn name(job: &Job) -> &str {
    job.metadata.name.as_deref().unwrap_or("")
}

/// One sync of `cron_job` (rule 7.4) at `now`, given the Jobs it controls.
pub fn plan(cron_job: &CronJob, jobs: &[Job], now: Timestamp) -> CronJobPlan {
    let spec = cron_job.spec.clone().unwrap_or_default();
    let stored = cron_job.status.clone().unwrap_or_default();
    let mut status = stored.clone();
    let mut active: Vec<ObjectReference> = status.active.take().unwrap_or_default();
    let mut out = CronJobPlan {
        create: None,
        delete: Vec::new(),
        status: None,
        events: Vec::new(),
        requeue_after: None,
    };

    history(&spec, jobs, &mut active, &mut out);
    reconcile_active(jobs, &mut active, &mut status, &mut out);

    let requeue = sync(cron_job, jobs, now, &mut active, &mut status, &mut out);
    out.requeue_after = requeue;
    status.active = (!active.is_empty()).then_some(active);
    if normalized(&status) != normalized(&stored) {
        out.status = Some(status);
    }
    out
}

fn normalized(s: &CronJobStatus) -> CronJobStatus {
    let mut s = s.clone();
    if s.active.as_ref().is_some_and(Vec::is_empty) {
        s.active = None;
    }
    s
}

/// Rule 7.8: finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`,
/// oldest start time first (none last, then by name). Jobs already being deleted count but are
/// not deleted again.
fn history(
    spec: &podvisor_core::batchv1::CronJobSpec,
    jobs: &[Job],
    active: &mut Vec<ObjectReference>,
    out: &mut CronJobPlan,
) {
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut list: Vec<&Job> = jobs.iter().filter(|j| finished(j) == Some(kind)).collect();
        let keep = usize::try_from(limit.max(0)).unwrap_or(0);
        let Some(excess) = list.len().checked_sub(keep).filter(|n| *n > 0) else {
            continue;
        };
        list.sort_by_key(|j| {
            let start = j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            (start.is_none(), start, name(j).to_string())
        });
        for j in list.into_iter().take(excess) {
            if j.metadata.deletion_timestamp.is_some() {
                continue;
            }
            out.delete.push(JobRef {
                name: name(j).to_string(),
                uid: uid(j).to_string(),
            });
            active.retain(|r| r.uid.as_deref() != Some(uid(j)));
            out.events.push(Event::normal(
                "SuccessfulDelete",
                format!("Deleted job {}", name(j)),
            ));
        }
    }
}

/// Rule 7.7: unexpected Jobs, finished active Jobs, the last success, missing active Jobs.
fn reconcile_active(
    jobs: &[Job],
    active: &mut Vec<ObjectReference>,
    status: &mut CronJobStatus,
    out: &mut CronJobPlan,
) {
    for j in jobs {
        let in_active = active.iter().any(|r| r.uid.as_deref() == Some(uid(j)));
        match finished(j) {
            None if !in_active => out.events.push(Event::warning(
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    name(j)
                ),
            )),
            Some(how) if in_active => {
                active.retain(|r| r.uid.as_deref() != Some(uid(j)));
                out.events.push(Event::normal(
                    "SawCompletedJob",
                    format!("Saw completed job: {}, status: {how}", name(j)),
                ));
            }
            _ => {}
        }
        if finished(j) == Some("Complete") {
            let done = j.status.as_ref().and_then(|s| s.completion_time.as_ref());
            if let Some(done) = done
                && status.last_successful_time.as_ref().is_none_or(|t| t.0 < done.0)
            {
                status.last_successful_time = Some(done.clone());
            }
        }
    }
    let uids: BTreeSet<&str> = jobs.iter().map(uid).collect();
    active.retain(|r| {
        let present = r.uid.as_deref().is_some_and(|u| uids.contains(u));
        if !present {
            out.events.push(Event::normal(
                "MissingJob",
                format!("Active job went missing: {}", r.name.as_deref().unwrap_or("")),
            ));
        }
        present
    });
}

/// The CronJob's zone for annotations: `timeZone`, else UTC.
fn zone_of(cron_job: &CronJob) -> TimeZone {
    let tz = cron_job.spec.as_ref().and_then(|s| s.time_zone.as_deref());
    tz.and_then(|z| schedule::load_zone(z).ok())
        .unwrap_or(TimeZone::UTC)
}

/// Rule 7.4 step 2 after the active list: gates, the due time (7.5) and acting on it (7.6).
/// Returns the requeue delay.
fn sync(
    cron_job: &CronJob,
    jobs: &[Job],
    now: Timestamp,
    active: &mut Vec<ObjectReference>,
    status: &mut CronJobStatus,
    out: &mut CronJobPlan,
) -> Option<Duration> {
    let spec = cron_job.spec.as_ref()?;
    if cron_job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    if let Some(tz) = spec.time_zone.as_deref()
        && schedule::load_zone(tz).is_err()
    {
        out.events.push(Event::warning(
            "UnknownTimeZone",
            format!("invalid timeZone: {tz:?}: unknown time zone {tz}"),
        ));
        return None;
    }
    if spec.suspend == Some(true) {
        return None;
    }
    let zone = if spec.schedule.contains("TZ") {
        out.events.push(Event::warning(
            "UnsupportedSchedule",
            format!(
                "CRON_TZ or TZ used in schedule {:?} is not officially supported, see \
                 https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more \
                 details",
                spec.schedule
            ),
        ));
        None
    } else {
        spec.time_zone.as_deref()
    };
    let sched = match schedule::parse(&spec.schedule, zone) {
        Ok(s) => s,
        Err(e) => {
            out.events.push(Event::warning(
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            ));
            return None;
        }
    };
    let created = cron_job.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let last = status.last_schedule_time.as_ref().map(|t| t.0);
    let deadline = spec.starting_deadline_seconds;
    let requeue = |last: Option<Timestamp>| requeue_after(&sched, last.unwrap_or(created), now);

    let due = match due_time(&sched, last.unwrap_or(created), deadline, now) {
        Err(e) => {
            out.events.push(Event::warning(
                "InvalidSchedule",
                format!("invalid schedule: {} : {e}", spec.schedule),
            ));
            return None;
        }
        Ok(Due { time: None, .. }) => return requeue(last),
        Ok(Due {
            time: Some(t),
            missed,
        }) => {
            if missed > MAX_MISSED {
                out.events.push(Event::warning(
                    "TooManyMissedTimes",
                    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds \
                     or check clock skew",
                ));
            }
            t
        }
    };
    if let Some(s) = deadline
        && too_late(due, s, now)
    {
        out.events.push(Event::warning(
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                due.strftime("%a, %d %b %Y %H:%M:%S +0000")
            ),
        ));
        return requeue(last);
    }
    let due_name = job_name(cron_job.metadata.name.as_deref().unwrap_or(""), due);
    if active
        .iter()
        .any(|r| r.name.as_deref() == Some(due_name.as_str()))
        || last == Some(due)
    {
        return requeue(last);
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !active.is_empty() {
        out.events.push(Event::normal(
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is \
             Forbid",
        ));
        return requeue(last);
    }
    if policy == "Replace" {
        let by_uid: BTreeMap<&str, &Job> = jobs.iter().map(|j| (uid(j), j)).collect();
        for r in active.drain(..) {
            let Some(j) = r.uid.as_deref().and_then(|u| by_uid.get(u)) else {
                continue;
            };
            out.delete.push(JobRef {
                name: name(j).to_string(),
                uid: uid(j).to_string(),
            });
            out.events.push(Event::normal(
                "SuccessfulDelete",
                format!("Deleted job {}", name(j)),
            ));
        }
    }
    if let Some(existing) = jobs.iter().find(|j| name(j) == due_name) {
        // Created before, but the status write was lost: AlreadyExists, and ours.
        active.push(job_reference(existing));
    } else {
        let job = job_from_template(cron_job, &due_name, due);
        out.events.push(Event::normal(
            "SuccessfulCreate",
            format!("Created job {due_name}"),
        ));
        active.push(job_reference(&job));
        out.create = Some(job);
    }
    status.last_schedule_time = Some(Time(due));
    requeue(Some(due))
}

/// The Job for the scheduled time `due` (rule 7.6 step 4).
fn job_from_template(cron_job: &CronJob, name: &str, due: Timestamp) -> Job {
    let template = cron_job
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tm = template.metadata.unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.to_string(),
        rfc3339_in(due, &zone_of(cron_job)),
    );
    let owner = Owner {
        api_version: "batch/v1",
        kind: "CronJob",
        meta: &cron_job.metadata,
    };
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cron_job.metadata.namespace.clone(),
            labels: tm.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owner.controller_ref()]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Go's `time.RFC3339` of `t` in `zone`: whole seconds, `Z` for a zero offset.
fn rfc3339_in(t: Timestamp, zone: &TimeZone) -> String {
    let z = t.to_zoned(zone.clone());
    let offset = z.offset().seconds();
    let suffix = if offset == 0 {
        "Z".to_string()
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let a = offset.unsigned_abs();
        format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
    };
    format!("{}{suffix}", z.strftime("%Y-%m-%dT%H:%M:%S"))
}

/// `due + s < now`: the start is too late for `startingDeadlineSeconds = s` (rule 7.5).
fn too_late(due: Timestamp, deadline_seconds: i64, now: Timestamp) -> bool {
    due.checked_add(SignedDuration::from_secs(deadline_seconds))
        .is_ok_and(|limit| limit < now)
}

/// The due time of rule 7.5 and upstream's estimate of the missed start times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    /// The most recent schedule time after `earliest` and at or before now.
    pub(crate) time: Option<Timestamp>,
    /// `floor((now − t1) / (t2 − t1)) + 1` when at least two times passed, else 0.
    pub(crate) missed: i64,
}

/// The schedule has no two start times at least a second apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("time difference between two schedules is less than 1 second")]
pub(crate) struct InvalidSchedule;

/// Rule 7.5: from `earliest` (last schedule time or creation), moved up to
/// `now − startingDeadlineSeconds`, the most recent schedule time ≤ `now`.
///
/// Deviation: upstream estimates the most recent time by stepping `(t2 − t1)` from `t1`,
/// which can miss it for irregular schedules (`0 0,1 * * *`); we find it exactly, by a
/// binary search over how far before `now` the next start time lies (≈ 30 evaluations).
pub(crate) fn due_time(
    sched: &Schedule,
    earliest: Timestamp,
    deadline_seconds: Option<i64>,
    now: Timestamp,
) -> Result<Due, InvalidSchedule> {
    let mut earliest = earliest;
    if let Some(s) = deadline_seconds
        && let Ok(window) = now.checked_sub(SignedDuration::from_secs(s))
        && window > earliest
    {
        earliest = window;
    }
    let none = Due {
        time: None,
        missed: 0,
    };
    let Some(t1) = sched.next_after(earliest) else {
        return Err(InvalidSchedule);
    };
    if now < t1 {
        return Ok(none);
    }
    let Some(t2) = sched.next_after(t1) else {
        return Err(InvalidSchedule);
    };
    if now < t2 {
        return Ok(Due {
            time: Some(t1),
            missed: 0,
        });
    }
    let between = (t2.as_millisecond() - t1.as_millisecond() + 500) / 1000;
    if between < 1 {
        return Err(InvalidSchedule);
    }
    let missed = (now.as_second() - t1.as_second()) / between + 1;
    Ok(Due {
        time: Some(latest_at_or_before(sched, earliest, now).unwrap_or(t2)),
        missed,
    })
}

/// The latest start time in `(earliest, now]`, if any: the next start after `now − w` is at
/// or before `now` exactly when `w` exceeds `now − latest`, so the smallest such whole `w`
/// gives it (start times are whole seconds).
fn latest_at_or_before(sched: &Schedule, earliest: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let probe = |w: i64| {
        let from = now
            .checked_sub(SignedDuration::from_secs(w))
            .map_or(earliest, |t| t.max(earliest));
        sched.next_after(from).filter(|t| *t <= now)
    };
    let mut hi = now
        .as_second()
        .saturating_sub(earliest.as_second())
        .saturating_add(2);
    probe(hi)?;
    let mut lo = 0;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if probe(mid).is_some() {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    probe(hi)
}

/// Rule 7.4 step 3: until the start time after the most recent one (no deadline window), plus
/// 100 ms.
fn requeue_after(sched: &Schedule, earliest: Timestamp, now: Timestamp) -> Option<Duration> {
    let base = match due_time(sched, earliest, None, now) {
        Err(_) => now,
        Ok(Due { time: None, .. }) => earliest,
        Ok(Due { time: Some(t), .. }) => t,
    };
    let next = sched.next_after(base)?;
    let wait = next.as_millisecond().saturating_sub(now.as_millisecond()).max(0);
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)) + REQUEUE_PADDING)
}

#[cfg(test)]
mod tests;
