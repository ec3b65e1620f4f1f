//! Suspending and resuming a Job.

use super::*;

#[test]
fn suspending_deletes_active_pods_and_resuming_restarts_the_clock() {
    let mut j = job(Some(2), Some(4));
    spec(&mut j).suspend = Some(true);
    status(&mut j).start_time = Some(Time(t(0)));
    let pods = [pod("a", "Running"), pod("b", "Pending")];
    let p = plan(&j, &pods, t(50));
    let mut d = names(&p.delete);
    d.sort();
    assert_eq!(d, ["a", "b"]);
    assert_eq!(p.remove_finalizers.len(), 2);
    let s = p.status.clone().unwrap();
    assert_eq!(
        cond_says(&s, "Suspended"),
        says("True", "JobSuspended", "Job suspended")
    );
    assert_eq!((s.active, s.terminating), (None, Some(2)));
    assert_eq!(reasons(&p), [("Suspended", EventType::Normal)]);

    let mut j = written(j, &p);
    spec(&mut j).suspend = Some(false);
    let p = plan(&j, &[], t(500));
    let s = p.status.clone().unwrap();
    assert_eq!(
        cond_says(&s, "Suspended"),
        says("False", "JobResumed", "Job resumed")
    );
    assert_eq!(s.start_time, Some(Time(t(500))));
    assert_eq!(reasons(&p), [("Resumed", EventType::Normal)]);
    assert_eq!(p.create.len(), 2);
}

#[test]
fn a_job_created_suspended_has_no_start_time_and_no_resumed_condition() {
    let mut j = job(Some(1), Some(1));
    spec(&mut j).suspend = Some(true);
    let p = plan(&j, &[], t(5));
    let s = p.status.unwrap();
    assert_eq!(s.start_time, None);
    assert!(p.create.is_empty());
    assert_eq!(
        cond_says(&s, "Suspended").map(|c| c.1),
        Some("JobSuspended".into())
    );
    // Never added as False.
    let p = plan(&job(Some(1), Some(1)), &[], t(5));
    assert!(p.status.unwrap().conditions.is_none());
}
