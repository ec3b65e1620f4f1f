//! Pods created and counted (through `uncountedTerminatedPods` and the tracking finalizer), and completion (rules 6.2–6.4).

use super::*;

#[test]
fn a_new_job_starts_parallelism_pods_with_the_tracking_finalizer() {
    let p = plan(&job(Some(2), Some(5)), &[], t(100));
    assert_eq!(p.create.len(), 2);
    for c in &p.create {
        assert_eq!(c.metadata.generate_name.as_deref(), Some("pi-"));
        assert_eq!(
            c.metadata.finalizers.as_deref(),
            Some(&[TRACKING_FINALIZER.to_string()][..])
        );
        let r = &c.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (r.kind.as_str(), r.api_version.as_str(), r.uid.as_str()),
            ("Job", "batch/v1", "job-uid")
        );
        assert!(
            c.metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key("batch.kubernetes.io/job-name")
        );
    }
    let s = p.status.unwrap();
    assert_eq!(s.start_time, Some(Time(t(100))));
    assert_eq!((s.active, s.ready, s.terminating), (Some(2), Some(0), Some(0)));
    assert!(s.conditions.is_none());
    assert_eq!(p.requeue_after, None);
}

#[test]
fn defaults_give_one_pod_and_nothing_changes_when_the_status_is_current() {
    let j = job(None, None);
    let p = plan(&j, &[], t(0));
    assert_eq!(p.create.len(), 1);
    let j = written(j, &p);
    let p = plan(&j, &[pod("a", "Running")], t(1));
    assert_eq!(p, JobPlan::default());
}

#[test]
fn active_never_exceeds_the_remaining_completions() {
    let mut j = job(Some(5), Some(3));
    status(&mut j).succeeded = Some(2);
    let p = plan(&j, &[], t(0));
    assert_eq!(p.create.len(), 1);
    // Parallelism caps it too, and creations stop at 500 per sync.
    let p = plan(&job(Some(2000), Some(3000)), &[], t(0));
    assert_eq!(p.create.len(), MAX_POD_CREATE_DELETE_PER_SYNC);
}

#[test]
fn surplus_pods_are_deleted_least_valuable_first_after_losing_their_finalizer() {
    let j = job(Some(1), Some(3));
    let mut pending = pod("pending", "Pending");
    pending.spec.as_mut().unwrap().node_name = None;
    let running = ready(pod("running", "Running"));
    let p = plan(&j, &[running, pending], t(10));
    assert_eq!(names(&p.delete), ["pending"]);
    assert_eq!(names(&p.remove_finalizers), ["pending"]);
    assert!(p.create.is_empty());
    let s = p.status.unwrap();
    assert_eq!((s.active, s.ready, s.terminating), (Some(1), Some(1), Some(1)));
}

#[test]
fn a_work_queue_job_stops_growing_after_the_first_success() {
    let j = job(Some(3), None);
    let pods = [pod("a", "Running"), exited(pod("b", "Succeeded"), 0, 5)];
    let p = plan(&j, &pods, t(10));
    assert!(p.create.is_empty() && p.delete.is_empty());
    assert_eq!(uncounted(p.status.as_ref().unwrap()).0, ["uid-b"]);
    // Once nothing runs, it is complete.
    let pods = [
        exited(pod("a", "Succeeded"), 0, 11),
        no_finalizer(exited(pod("b", "Succeeded"), 0, 5)),
    ];
    let j = written(j, &p);
    let p = plan(&j, &pods, t(12));
    let s = p.status.unwrap();
    assert_eq!(
        cond_says(&s, "SuccessCriteriaMet"),
        says(
            "True",
            "CompletionsReached",
            "Reached expected number of succeeded pods"
        )
    );
    assert_eq!(s.succeeded, Some(1));
}

#[test]
fn success_is_counted_through_uncounted_pods_then_completes() {
    let j = job(Some(1), Some(1));
    let done = exited(pod("a", "Succeeded"), 0, 50);
    let p1 = plan(&j, std::slice::from_ref(&done), t(60));
    let s1 = p1.status.clone().unwrap();
    assert_eq!(uncounted(&s1).0, ["uid-a"]);
    assert_eq!(s1.succeeded, None);
    assert_eq!(names(&p1.remove_finalizers), ["a"]);
    assert_eq!(
        cond_says(&s1, "SuccessCriteriaMet"),
        says(
            "True",
            "CompletionsReached",
            "Reached expected number of succeeded pods"
        )
    );
    assert!(cond(&s1, "Complete").is_none() && p1.events.is_empty());

    // The finalizer is gone: the pod is counted and the Job completes.
    let j = written(j, &p1);
    let p2 = plan(&j, &[no_finalizer(done)], t(61));
    let s2 = p2.status.clone().unwrap();
    assert_eq!(s2.succeeded, Some(1));
    assert_eq!(uncounted(&s2), (vec![], vec![]));
    assert_eq!(
        cond_says(&s2, "Complete"),
        says(
            "True",
            "CompletionsReached",
            "Reached expected number of succeeded pods"
        )
    );
    assert_eq!(s2.completion_time, Some(Time(t(61))));
    assert_eq!(s2.conditions.as_ref().unwrap()[0].type_, "SuccessCriteriaMet");
    assert_eq!(reasons(&p2), [("Completed", EventType::Normal)]);
    assert_eq!(p2.events[0].message, "Job completed");
    // A finished Job is not synced again.
    let j = written(
        j,
        &JobPlan {
            status: Some(s2),
            ..Default::default()
        },
    );
    assert!(is_finished(&j));
    assert_eq!(plan(&j, &[], t(62)), JobPlan::default());
}

#[test]
fn an_uncounted_pod_that_is_gone_is_still_counted() {
    let mut j = job(Some(1), Some(2));
    status(&mut j).uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(vec!["uid-gone".into()]),
        failed: Some(vec!["uid-gone-too".into()]),
    });
    status(&mut j).start_time = Some(Time(t(0)));
    let p = plan(&j, &[pod("a", "Running")], t(5));
    let s = p.status.unwrap();
    assert_eq!((s.succeeded, s.failed), (Some(1), Some(1)));
    assert_eq!(uncounted(&s), (vec![], vec![]));
    // One success of two and one running: nothing to create.
    assert!(p.create.is_empty());
}

#[test]
fn a_pod_still_holding_its_finalizer_stays_uncounted() {
    let mut j = job(Some(1), Some(2));
    status(&mut j).uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(vec!["uid-a".into()]),
        failed: None,
    });
    let done = exited(pod("a", "Succeeded"), 0, 3);
    let p = plan(&j, &[done], t(5));
    let s = p.status.unwrap();
    assert_eq!(s.succeeded, None);
    assert_eq!(uncounted(&s).0, ["uid-a"]);
    // Counted as a success for the decision: one more pod for the second completion.
    assert_eq!(p.create.len(), 1);
    assert_eq!(names(&p.remove_finalizers), ["a"]);
}
