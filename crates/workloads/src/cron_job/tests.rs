//! Tests of the CronJob plan: one per rule of section 7, a proptest of the due time against
//! stepping through every start time, and a day of syncs under `Forbid`.

use super::*;
use podvisor_core::batchv1::{CronJobSpec, JobCondition, JobSpec, JobStatus, JobTemplateSpec};
use podvisor_core::corev1::{PodSpec, PodTemplateSpec};
use proptest::prelude::*;

use crate::event::EventType;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cron_job(schedule: &str, created: &str) -> CronJob {
    CronJob {
        metadata: ObjectMeta {
            name: Some("hello".into()),
            namespace: Some("default".into()),
            uid: Some("cj-uid".into()),
            creation_timestamp: Some(Time(ts(created))),
            ..Default::default()
        },
        spec: Some(CronJobSpec {
            schedule: schedule.into(),
            concurrency_policy: Some("Allow".into()),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(1),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([("app".to_string(), "hello".to_string())].into()),
                    annotations: Some([("note".to_string(), "x".to_string())].into()),
                    ..Default::default()
                }),
                spec: Some(JobSpec {
                    template: PodTemplateSpec {
                        spec: Some(PodSpec::default()),
                        ..Default::default()
                    },
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn with_status(mut cj: CronJob, active: &[&Job], last: Option<&str>) -> CronJob {
    cj.status = Some(CronJobStatus {
        active: Some(active.iter().map(|j| job_reference(j)).collect()),
        last_schedule_time: last.map(|t| Time(ts(t))),
        last_successful_time: None,
    });
    cj
}

/// A Job of `hello` named `name`, finished as `how` (`Complete`/`Failed`) or running.
fn job(name: &str, how: Option<&str>, start: Option<&str>, done: Option<&str>) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: None,
        status: Some(JobStatus {
            start_time: start.map(|t| Time(ts(t))),
            completion_time: done.map(|t| Time(ts(t))),
            conditions: how.map(|h| {
                vec![JobCondition {
                    type_: h.into(),
                    status: "True".into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    }
}

fn reasons(p: &CronJobPlan) -> Vec<&str> {
    p.events.iter().map(|e| e.reason.as_str()).collect()
}

fn event<'p>(p: &'p CronJobPlan, reason: &str) -> &'p Event {
    p.events.iter().find(|e| e.reason == reason).unwrap()
}

// 2024-01-01T00:00Z is 28401120 minutes after the epoch.

#[test]
fn a_due_time_creates_its_job() {
    let cj = cron_job("0 * * * *", "2023-12-31T23:30:00Z");
    let p = plan(&cj, &[], ts("2024-01-01T00:00:05Z"));
    let job = p.create.as_ref().unwrap();
    assert_eq!(job.metadata.name.as_deref(), Some("hello-28401120"));
    assert_eq!(job.metadata.namespace.as_deref(), Some("default"));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels.get("app").map(String::as_str), Some("hello"));
    let ann = job.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann.get("note").map(String::as_str), Some("x"));
    assert_eq!(
        ann.get(SCHEDULED_TIMESTAMP).map(String::as_str),
        Some("2024-01-01T00:00:00Z")
    );
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("CronJob", "cj-uid", Some(true))
    );
    assert_eq!(job.spec, cj.spec.as_ref().unwrap().job_template.spec);
    assert_eq!(reasons(&p), ["SuccessfulCreate"]);
    assert_eq!(
        event(&p, "SuccessfulCreate").message,
        "Created job hello-28401120"
    );
    let status = p.status.as_ref().unwrap();
    assert_eq!(status.last_schedule_time, Some(Time(ts("2024-01-01T00:00:00Z"))));
    let active = status.active.as_ref().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].name.as_deref(), Some("hello-28401120"));
    assert_eq!(active[0].uid, None);
    // Next run 01:00, 3595 s away, plus 100 ms.
    assert_eq!(p.requeue_after, Some(Duration::from_millis(3_595_100)));

    // The created Job's UID goes into the status written after the create.
    let mut created = job.clone();
    created.metadata.uid = Some("new-uid".into());
    let written = p.status_with_created(&created).unwrap();
    assert_eq!(written.active.unwrap()[0].uid.as_deref(), Some("new-uid"));
}

#[test]
fn nothing_due_waits_for_the_next_time() {
    let cj = cron_job("0 * * * *", "2024-01-01T00:10:00Z");
    let p = plan(&cj, &[], ts("2024-01-01T00:30:00Z"));
    assert_eq!(p.create, None);
    assert_eq!(p.status, None);
    assert!(p.events.is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_millis(1_800_100)));
}

#[test]
fn missed_times_start_only_the_most_recent() {
    // Every minute, down for three hours: one Job, for the latest minute, and a warning.
    let cj = cron_job("* * * * *", "2024-01-01T00:00:00Z");
    let p = plan(&cj, &[], ts("2024-01-01T03:00:30Z"));
    assert_eq!(
        p.create.as_ref().unwrap().metadata.name.as_deref(),
        Some("hello-28401300")
    );
    assert_eq!(reasons(&p), ["TooManyMissedTimes", "SuccessfulCreate"]);
    assert_eq!(
        event(&p, "TooManyMissedTimes").message,
        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check \
         clock skew"
    );
    assert_eq!(event(&p, "TooManyMissedTimes").type_, EventType::Warning);
    // 100 missed is not too many.
    let p = plan(&cj, &[], ts("2024-01-01T01:40:30Z"));
    assert_eq!(reasons(&p), ["SuccessfulCreate"]);
}

#[test]
fn starting_deadline_bounds_the_look_back() {
    let mut cj = cron_job("0 * * * *", "2024-01-01T00:30:00Z");
    cj.spec.as_mut().unwrap().starting_deadline_seconds = Some(600);
    // 10:00 passed 20 minutes ago: outside the window, nothing starts.
    let p = plan(&cj, &[], ts("2024-01-01T10:20:00Z"));
    assert_eq!(p.create, None);
    assert!(p.events.is_empty(), "{:?}", p.events);
    assert_eq!(p.requeue_after, Some(Duration::from_millis(2_400_100)));
    // 5 minutes late: inside it, no warning about the hours missed before the window.
    let p = plan(&cj, &[], ts("2024-01-01T10:05:00Z"));
    assert_eq!(
        p.create.as_ref().unwrap().metadata.name.as_deref(),
        Some(job_name("hello", ts("2024-01-01T10:00:00Z")).as_str())
    );
    assert_eq!(reasons(&p), ["SuccessfulCreate"]);
}

#[test]
fn too_late_is_due_plus_deadline_before_now() {
    let due = ts("2024-01-01T10:00:00Z");
    assert!(!too_late(due, 60, ts("2024-01-01T10:01:00Z")));
    assert!(too_late(due, 60, ts("2024-01-01T10:01:01Z")));
}

#[test]
fn a_time_already_started_is_not_started_again() {
    let running = job("hello-28401120", None, None, None);
    let cj = with_status(
        cron_job("0 * * * *", "2023-12-31T23:30:00Z"),
        &[&running],
        Some("2024-01-01T00:00:00Z"),
    );
    let p = plan(&cj, &[running], ts("2024-01-01T00:00:30Z"));
    assert_eq!((p.create, p.status, p.events.len()), (None, None, 0));
}

#[test]
fn forbid_skips_while_a_job_runs() {
    let running = job("hello-28401060", None, None, None);
    let mut cj = with_status(
        cron_job("0 * * * *", "2023-12-31T22:30:00Z"),
        &[&running],
        Some("2023-12-31T23:00:00Z"),
    );
    cj.spec.as_mut().unwrap().concurrency_policy = Some("Forbid".into());
    let p = plan(&cj, std::slice::from_ref(&running), ts("2024-01-01T00:00:10Z"));
    assert_eq!(p.create, None);
    assert_eq!(reasons(&p), ["JobAlreadyActive"]);
    assert_eq!(
        event(&p, "JobAlreadyActive").message,
        "Not starting job because prior execution is running and concurrency policy is Forbid"
    );
    // Allow starts the next one beside it.
    cj.spec.as_mut().unwrap().concurrency_policy = Some("Allow".into());
    let p = plan(&cj, std::slice::from_ref(&running), ts("2024-01-01T00:00:10Z"));
    assert!(p.create.is_some() && p.delete.is_empty());
    assert_eq!(p.status.unwrap().active.unwrap().len(), 2);
}

#[test]
fn replace_deletes_the_running_job_and_starts_the_new_one() {
    let running = job("hello-28401060", None, None, None);
    let mut cj = with_status(
        cron_job("0 * * * *", "2023-12-31T22:30:00Z"),
        &[&running],
        Some("2023-12-31T23:00:00Z"),
    );
    cj.spec.as_mut().unwrap().concurrency_policy = Some("Replace".into());
    let p = plan(&cj, &[running], ts("2024-01-01T00:00:10Z"));
    assert_eq!(
        p.delete,
        [JobRef {
            name: "hello-28401060".into(),
            uid: "uid-hello-28401060".into()
        }]
    );
    assert_eq!(reasons(&p), ["SuccessfulDelete", "SuccessfulCreate"]);
    assert_eq!(
        event(&p, "SuccessfulDelete").message,
        "Deleted job hello-28401060"
    );
    let active = p.status.unwrap().active.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].name.as_deref(), Some("hello-28401120"));
}

#[test]
fn active_list_follows_the_jobs() {
    let done = job(
        "hello-1",
        Some("Complete"),
        Some("2024-01-01T00:00:00Z"),
        Some("2024-01-01T00:05:00Z"),
    );
    let failed = job("hello-2", Some("Failed"), Some("2024-01-01T00:01:00Z"), None);
    let stray = job("hello-3", None, None, None);
    let gone = job("hello-4", None, None, None);
    let cj = with_status(
        cron_job("0 0 1 1 *", "2024-01-01T00:00:00Z"),
        &[&done, &failed, &gone],
        Some("2024-01-01T00:00:00Z"),
    );
    let p = plan(&cj, &[done, failed, stray], ts("2024-01-01T00:10:00Z"));
    assert_eq!(
        reasons(&p),
        [
            "SawCompletedJob",
            "SawCompletedJob",
            "UnexpectedJob",
            "MissingJob"
        ]
    );
    let msgs: Vec<&str> = p.events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "Saw completed job: hello-1, status: Complete",
            "Saw completed job: hello-2, status: Failed",
            "Saw a job that the controller did not create or forgot: hello-3",
            "Active job went missing: hello-4",
        ]
    );
    let status = p.status.unwrap();
    assert_eq!(status.active, None);
    assert_eq!(
        status.last_successful_time,
        Some(Time(ts("2024-01-01T00:05:00Z")))
    );
    assert_eq!(p.create, None);
}

#[test]
fn history_limits_delete_the_oldest_finished_jobs() {
    let ok = |n: &str, start: Option<&str>| job(n, Some("Complete"), start, None);
    let jobs = [
        ok("a", Some("2024-01-01T03:00:00Z")),
        ok("b", None),
        ok("c", Some("2024-01-01T01:00:00Z")),
        ok("d", Some("2024-01-01T02:00:00Z")),
        ok("e", Some("2024-01-01T01:00:00Z")),
        job("f1", Some("Failed"), Some("2024-01-01T01:00:00Z"), None),
        job("f2", Some("Failed"), Some("2024-01-01T02:00:00Z"), None),
        job("r", None, None, None),
    ];
    let mut cj = with_status(
        cron_job("0 0 1 1 *", "2024-01-01T00:00:00Z"),
        &[&jobs[7]],
        Some("2024-01-01T00:00:00Z"),
    );
    let p = plan(&cj, &jobs, ts("2024-01-01T04:00:00Z"));
    let deleted: Vec<&str> = p.delete.iter().map(|d| d.name.as_str()).collect();
    // Keep 3 successful (a, d, and b with no start time last... sorted c, e, d, a, b: delete
    // c and e, the oldest, name breaking the tie) and 1 failed (delete f1).
    assert_eq!(deleted, ["c", "e", "f1"]);
    assert_eq!(event(&p, "SuccessfulDelete").message, "Deleted job c");
    // A limit of 0 keeps none; no limit keeps all.
    let spec = cj.spec.as_mut().unwrap();
    spec.successful_jobs_history_limit = Some(0);
    spec.failed_jobs_history_limit = None;
    let p = plan(&cj, &jobs, ts("2024-01-01T04:00:00Z"));
    let deleted: Vec<&str> = p.delete.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deleted, ["c", "e", "d", "a", "b"]);
    // Jobs already being deleted are not deleted again.
    let mut terminating = jobs.to_vec();
    terminating[2].metadata.deletion_timestamp = Some(Time(ts("2024-01-01T03:59:00Z")));
    let p = plan(&cj, &terminating, ts("2024-01-01T04:00:00Z"));
    assert_eq!(p.delete.len(), 4);
}

#[test]
fn suspend_stops_new_jobs_only() {
    let done = job("hello-1", Some("Complete"), None, Some("2024-01-01T00:05:00Z"));
    let mut cj = with_status(cron_job("* * * * *", "2024-01-01T00:00:00Z"), &[&done], None);
    cj.spec.as_mut().unwrap().suspend = Some(true);
    let p = plan(&cj, &[done], ts("2024-01-01T00:10:00Z"));
    assert_eq!(p.create, None);
    assert_eq!(p.requeue_after, None);
    assert_eq!(reasons(&p), ["SawCompletedJob"]);
    assert!(p.status.is_some());
}

#[test]
fn deleted_cron_jobs_only_update_status() {
    let mut cj = cron_job("* * * * *", "2024-01-01T00:00:00Z");
    cj.metadata.deletion_timestamp = Some(Time(ts("2024-01-01T00:05:00Z")));
    let p = plan(&cj, &[], ts("2024-01-01T00:10:00Z"));
    assert_eq!((p.create, p.requeue_after), (None, None));
}

#[test]
fn time_zones_name_and_stamp_the_job() {
    let mut cj = cron_job("0 9 * * *", "2023-12-31T12:00:00Z");
    cj.spec.as_mut().unwrap().time_zone = Some("Asia/Tokyo".into());
    // 09:00 in Tokyo is 00:00 UTC.
    let p = plan(&cj, &[], ts("2024-01-01T00:00:30Z"));
    let job = p.create.unwrap();
    assert_eq!(job.metadata.name.as_deref(), Some("hello-28401120"));
    assert_eq!(
        job.metadata
            .annotations
            .unwrap()
            .get(SCHEDULED_TIMESTAMP)
            .map(String::as_str),
        Some("2024-01-01T09:00:00+09:00")
    );

    cj.spec.as_mut().unwrap().time_zone = Some("Mars/Olympus".into());
    let p = plan(&cj, &[], ts("2024-01-01T00:00:30Z"));
    assert_eq!((p.create.is_none(), p.requeue_after), (true, None));
    assert_eq!(reasons(&p), ["UnknownTimeZone"]);
    assert_eq!(
        event(&p, "UnknownTimeZone").message,
        "invalid timeZone: \"Mars/Olympus\": unknown time zone Mars/Olympus"
    );
}

#[test]
fn tz_in_the_schedule_is_used_with_a_warning() {
    let cj = cron_job("CRON_TZ=Asia/Tokyo 0 9 * * *", "2023-12-31T12:00:00Z");
    let p = plan(&cj, &[], ts("2024-01-01T00:00:30Z"));
    assert_eq!(reasons(&p), ["UnsupportedSchedule", "SuccessfulCreate"]);
    assert!(event(&p, "UnsupportedSchedule").message.starts_with(
        "CRON_TZ or TZ used in schedule \"CRON_TZ=Asia/Tokyo 0 9 * * *\" is not officially supported"
    ));
}

#[test]
fn bad_schedules_are_reported_and_not_requeued() {
    let p = plan(
        &cron_job("61 * * * *", "2024-01-01T00:00:00Z"),
        &[],
        ts("2024-01-02T00:00:00Z"),
    );
    assert_eq!(reasons(&p), ["UnparseableSchedule"]);
    assert!(
        event(&p, "UnparseableSchedule")
            .message
            .starts_with("unparseable schedule: \"61 * * * *\" : ")
    );
    assert_eq!(p.requeue_after, None);

    let p = plan(
        &cron_job("59 23 31 2 *", "2024-01-01T00:00:00Z"),
        &[],
        ts("2024-01-02T00:00:00Z"),
    );
    assert_eq!(reasons(&p), ["InvalidSchedule"]);
    assert_eq!(
        event(&p, "InvalidSchedule").message,
        "invalid schedule: 59 23 31 2 * : time difference between two schedules is less than 1 second"
    );
    assert_eq!((p.create, p.requeue_after), (None, None));
}

#[test]
fn a_job_created_before_a_lost_status_write_is_adopted() {
    let existing = job("hello-28401120", None, None, None);
    let cj = cron_job("0 * * * *", "2023-12-31T23:30:00Z");
    let p = plan(&cj, std::slice::from_ref(&existing), ts("2024-01-01T00:00:30Z"));
    assert_eq!(p.create, None);
    assert_eq!(reasons(&p), ["UnexpectedJob"]);
    let status = p.status.unwrap();
    assert_eq!(status.active.unwrap(), [job_reference(&existing)]);
    assert_eq!(status.last_schedule_time, Some(Time(ts("2024-01-01T00:00:00Z"))));
}

#[test]
fn go_rfc3339_and_rfc1123z() {
    let t = ts("2024-07-01T12:00:00Z");
    assert_eq!(rfc3339_in(t, &TimeZone::UTC), "2024-07-01T12:00:00Z");
    let ny = schedule::load_zone("America/New_York").unwrap();
    assert_eq!(rfc3339_in(t, &ny), "2024-07-01T08:00:00-04:00");
    let london = schedule::load_zone("Europe/London").unwrap();
    assert_eq!(
        rfc3339_in(ts("2024-01-01T00:00:00Z"), &london),
        "2024-01-01T00:00:00Z"
    );
    assert_eq!(
        t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string(),
        "Mon, 01 Jul 2024 12:00:00 +0000"
    );
}

/// Every start time of `sched` in `(earliest, now]`, by stepping; `None` past `limit` steps.
fn brute_force(
    sched: &Schedule,
    earliest: Timestamp,
    now: Timestamp,
    limit: usize,
) -> Option<Vec<Timestamp>> {
    let mut out = Vec::new();
    let mut t = earliest;
    loop {
        match sched.next_after(t) {
            Some(n) if n <= now => {
                out.push(n);
                t = n;
                if out.len() > limit {
                    return None;
                }
            }
            _ => return Some(out),
        }
    }
}

fn field(max: u8, min: u8) -> impl Strategy<Value = String> {
    let v = min..=max;
    prop_oneof![
        Just("*".to_string()),
        (1..=max.max(2)).prop_map(|s| format!("*/{s}")),
        v.clone().prop_map(|a| a.to_string()),
        (v.clone(), v.clone()).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (v.clone(), v).prop_map(|(a, b)| format!("{a},{b}")),
    ]
}

fn schedule_spec() -> impl Strategy<Value = String> {
    (
        field(59, 0),
        field(23, 0),
        field(31, 1),
        field(12, 1),
        field(6, 0),
    )
        .prop_map(|(m, h, d, mo, w)| format!("{m} {h} {d} {mo} {w}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Rule 7.5: the due time is the latest start time in the window and never in the future.
    #[test]
    fn due_time_is_the_latest_start_in_the_window(
        spec in schedule_spec(),
        earliest in 1_700_000_000i64..1_700_100_000,
        span in 0i64..400_000,
        deadline in proptest::option::of(0i64..200_000),
    ) {
        let sched = schedule::parse(&spec, None).unwrap();
        let earliest = Timestamp::from_second(earliest).unwrap();
        let now = Timestamp::from_second(earliest.as_second() + span).unwrap();
        let window = match deadline {
            Some(s) => earliest.max(Timestamp::from_second(now.as_second() - s).unwrap()),
            None => earliest,
        };
        let Some(all) = brute_force(&sched, window, now, 20_000) else {
            return Ok(());
        };
        match due_time(&sched, earliest, deadline, now) {
            Ok(due) => {
                prop_assert_eq!(due.time, all.last().copied());
                if let Some(t) = due.time {
                    prop_assert!(t <= now && t > window);
                }
            }
            // Only when two start times cannot be found.
            Err(InvalidSchedule) => prop_assert!(all.len() < 2 || sched.next_after(all[0]).is_none()),
        }
    }
}

/// A CronJob driven over a day of syncs: Jobs finish after `run` minutes; under Forbid no two
/// Jobs run at once, and no scheduled time gets two Jobs.
#[test]
fn forbid_never_runs_two_jobs_over_a_day() {
    let mut cj = cron_job("*/7 * * * *", "2024-01-01T00:00:00Z");
    cj.spec.as_mut().unwrap().concurrency_policy = Some("Forbid".into());
    let mut jobs: Vec<Job> = Vec::new();
    let mut started: BTreeSet<String> = BTreeSet::new();
    let mut now = ts("2024-01-01T00:00:00Z");
    let mut n = 0;
    for step in 0..2000 {
        // Jobs run for 10 minutes.
        for j in &mut jobs {
            let name = j.metadata.name.clone().unwrap();
            let minute: i64 = name.rsplit('-').next().unwrap().parse().unwrap();
            if finished(j).is_none() && now.as_second() >= (minute + 10) * 60 {
                j.status = Some(JobStatus {
                    conditions: Some(vec![JobCondition {
                        type_: "Complete".into(),
                        status: "True".into(),
                        ..Default::default()
                    }]),
                    completion_time: Some(Time(now)),
                    ..Default::default()
                });
            }
        }
        let p = plan(&cj, &jobs, now);
        for d in &p.delete {
            jobs.retain(|j| j.metadata.name.as_deref() != Some(d.name.as_str()));
        }
        if let Some(mut j) = p.create.clone() {
            n += 1;
            j.metadata.uid = Some(format!("u{n}"));
            assert!(
                started.insert(j.metadata.name.clone().unwrap()),
                "twice at step {step}"
            );
            cj.status = p.status_with_created(&j);
            jobs.push(j);
        } else if let Some(s) = p.status {
            cj.status = Some(s);
        }
        let running = jobs.iter().filter(|j| finished(j).is_none()).count();
        assert!(running <= 1, "{running} running at {now}");
        // History keeps at most 3 successful Jobs.
        assert!(jobs.len() <= 4);
        let wait = p.requeue_after.unwrap().min(Duration::from_secs(90));
        now = now.checked_add(SignedDuration::try_from(wait).unwrap()).unwrap();
    }
    assert!(started.len() > 50, "{}", started.len());
}
