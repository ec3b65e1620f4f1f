//! Jobs left alone, being deleted or finished: modes and managers, too many successes, caps, finish times, the TTL, the back-off record, orphaned pods.

use super::*;

#[test]
fn unknown_modes_foreign_managers_and_finished_jobs_are_left_alone() {
    let mut j = job(Some(1), Some(1));
    spec(&mut j).completion_mode = Some("Sideways".into());
    let p = plan(&j, &[], t(0));
    assert!(p.create.is_empty() && p.status.is_none());
    assert_eq!(reasons(&p), [("UnknownCompletionMode", EventType::Warning)]);
    assert_eq!(
        p.events[0].message,
        "Skipped Job sync because completion mode is unknown"
    );
    let mut j = job(Some(1), Some(1));
    spec(&mut j).managed_by = Some("kueue.x-k8s.io/multikueue".into());
    assert_eq!(plan(&j, &[], t(0)), JobPlan::default());
    spec(&mut j).managed_by = Some(CONTROLLER_NAME.into());
    assert_eq!(plan(&j, &[], t(0)).create.len(), 1);
}

#[test]
fn a_job_being_deleted_counts_and_releases_its_pods_but_creates_nothing() {
    let mut j = job(Some(2), Some(2));
    j.metadata.deletion_timestamp = Some(Time(t(1)));
    let p = plan(&j, &[pod("a", "Running")], t(5));
    assert!(p.create.is_empty() && p.delete.is_empty());
    assert_eq!(names(&p.remove_finalizers), ["a"]);
    // Its successes still complete it.
    let p = plan(
        &j,
        &[
            exited(pod("a", "Succeeded"), 0, 3),
            exited(pod("b", "Succeeded"), 0, 4),
        ],
        t(5),
    );
    let s = p.status.unwrap();
    assert_eq!(
        cond_says(&s, "SuccessCriteriaMet").map(|c| c.1),
        Some("CompletionsReached".into())
    );
    assert_eq!(uncounted(&s).0, ["uid-a", "uid-b"]);
}

#[test]
fn too_many_successes_are_reported_at_completion() {
    let mut j = job(Some(1), Some(1));
    status(&mut j).succeeded = Some(2);
    status(&mut j).conditions = Some(vec![new_condition(
        "SuccessCriteriaMet",
        "True",
        "CompletionsReached",
        "Reached expected number of succeeded pods",
        t(1),
    )]);
    let p = plan(&j, &[], t(5));
    assert_eq!(
        reasons(&p),
        [
            ("TooManySucceededPods", EventType::Warning),
            ("Completed", EventType::Normal)
        ]
    );
}

#[test]
fn uncounted_pods_are_capped_per_sync() {
    let j = job(Some(1), Some(1000));
    let pods: Vec<Pod> = (0..600)
        .map(|i| exited(pod(&format!("p{i}"), "Succeeded"), 0, 1))
        .collect();
    let p = plan(&j, &pods, t(5));
    assert_eq!(uncounted(p.status.as_ref().unwrap()).0.len(), MAX_UNCOUNTED_PODS);
    assert_eq!(p.remove_finalizers.len(), MAX_UNCOUNTED_PODS);
}

#[test]
fn finish_times_follow_upstreams_lookups() {
    assert_eq!(finished_time(&exited(pod("a", "Failed"), 1, 7)), t(7));
    let mut p = pod("a", "Failed");
    p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
        type_: "Ready".into(),
        status: "False".into(),
        last_transition_time: Some(Time(t(9))),
        ..Default::default()
    }]);
    assert_eq!(finished_time(&p), t(9));
    let mut p = deleting(pod("a", "Running"), 30);
    p.metadata.deletion_grace_period_seconds = Some(10);
    assert_eq!(finished_time(&p), t(20));
    assert_eq!(finished_time(&pod("a", "Failed")), t(0));
}

#[test]
fn ttl_after_finished_deletes_at_finish_plus_ttl() {
    let mut j = job(Some(1), Some(1));
    assert_eq!(ttl_expiry(&j, t(0)), None);
    spec(&mut j).ttl_seconds_after_finished = Some(100);
    assert_eq!(ttl_expiry(&j, t(0)), None);
    status(&mut j).conditions = Some(vec![new_condition(
        "Complete",
        "True",
        "CompletionsReached",
        "",
        t(50),
    )]);
    assert_eq!(
        ttl_expiry(&j, t(60)),
        Some(Expiry::RequeueAfter(Duration::from_secs(90)))
    );
    assert_eq!(ttl_expiry(&j, t(150)), Some(Expiry::DeleteNow));
    assert_eq!(ttl_expiry(&j, t(400)), Some(Expiry::DeleteNow));
    // A finish in the future only delays it.
    assert_eq!(
        ttl_expiry(&j, t(10)),
        Some(Expiry::RequeueAfter(Duration::from_secs(140)))
    );
    j.metadata.deletion_timestamp = Some(Time(t(151)));
    assert_eq!(ttl_expiry(&j, t(160)), None);
    let mut failed = job(Some(1), Some(1));
    spec(&mut failed).ttl_seconds_after_finished = Some(0);
    status(&mut failed).conditions = Some(vec![new_condition(
        "Failed",
        "True",
        "DeadlineExceeded",
        "",
        t(5),
    )]);
    assert_eq!(ttl_expiry(&failed, t(5)), Some(Expiry::DeleteNow));
}

#[test]
fn the_back_off_record_remembers_failures_whose_pods_are_gone() {
    let mut j = job(Some(1), Some(1));
    status(&mut j).start_time = Some(Time(t(0)));
    // A running pod is deleted at 100: a failure (TerminatingOrFailed), recorded.
    let gone = deleting(pod("a", "Running"), 100);
    let p = plan_with_backoff(&j, std::slice::from_ref(&gone), t(101), &Backoff::default());
    assert!(p.create.is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(9)));
    assert_eq!(
        p.backoff,
        Backoff {
            failures_after_last_success: 1,
            last_failure: Some(t(100)),
        }
    );
    // The pod is gone; the record still holds the replacement until 110.
    let j = written(j, &p);
    let held = plan_with_backoff(&j, &[], t(105), &p.backoff);
    assert!(held.create.is_empty());
    assert_eq!(held.requeue_after, Some(Duration::from_secs(5)));
    assert_eq!(plan_with_backoff(&j, &[], t(110), &p.backoff).create.len(), 1);
    // Without the record only the pods count: nothing holds it back.
    assert_eq!(plan(&j, &[], t(105)).create.len(), 1);
}

#[test]
fn a_new_success_resets_the_record_to_the_failures_after_it() {
    let b = Backoff {
        failures_after_last_success: 3,
        last_failure: Some(t(50)),
    };
    let s = exited(pod("s", "Succeeded"), 0, 60);
    let f1 = exited(pod("f1", "Failed"), 1, 55);
    let f2 = exited(pod("f2", "Failed"), 1, 70);
    assert_eq!(b.next(&[], &[]), b);
    assert_eq!(
        b.next(&[], &[&f2, &f1]),
        Backoff {
            failures_after_last_success: 5,
            last_failure: Some(t(70)),
        }
    );
    assert_eq!(
        b.next(&[&s], &[&f1, &f2]),
        Backoff {
            failures_after_last_success: 1,
            last_failure: Some(t(70)),
        }
    );
    assert_eq!(b.next(&[&s], &[&f1]), Backoff::default());
    assert_eq!(b.remaining(t(55)), Duration::from_secs(35));
}

#[test]
fn orphaned_pods_lose_the_finalizer_unless_a_live_job_holds_them() {
    let mut owned = pod("a", "Succeeded");
    let owner = crate::owner::Owner {
        api_version: API_VERSION,
        kind: KIND,
        meta: &job(Some(1), Some(1)).metadata,
    };
    owned.metadata.owner_references = Some(vec![owner.controller_ref()]);
    let live = job(Some(1), Some(1));
    assert!(!remove_orphan_finalizer(&owned, Some(&live)));
    assert!(remove_orphan_finalizer(&owned, None));
    let mut done = job(Some(1), Some(1));
    status(&mut done).conditions = Some(vec![new_condition(
        "Complete",
        "True",
        "CompletionsReached",
        "",
        t(1),
    )]);
    assert!(remove_orphan_finalizer(&owned, Some(&done)));
    spec(&mut done).managed_by = Some("example.com/other".into());
    assert!(!remove_orphan_finalizer(&owned, Some(&done)));
    assert!(remove_orphan_finalizer(&pod("orphan", "Running"), None));
    assert!(!remove_orphan_finalizer(
        &no_finalizer(pod("orphan", "Running")),
        None
    ));
    let mut foreign = pod("rs-pod", "Running");
    foreign.metadata.owner_references = Some(vec![
        crate::owner::Owner {
            api_version: "apps/v1",
            kind: "ReplicaSet",
            meta: &live.metadata,
        }
        .controller_ref(),
    ]);
    assert!(!remove_orphan_finalizer(&foreign, None));
}
