//! Failures: `backoffLimit`, the re-creation back-off, `activeDeadlineSeconds` and `podFailurePolicy` (rules 6.5–6.8).

use super::*;

#[test]
fn backoff_limit_fails_the_job_in_two_steps() {
    let mut j = job(Some(2), Some(4));
    spec(&mut j).backoff_limit = Some(1);
    let pods = [
        exited(pod("f1", "Failed"), 1, 10),
        exited(pod("f2", "Failed"), 1, 20),
        ready(pod("r", "Running")),
    ];
    let p = plan(&j, &pods, t(30));
    let s = p.status.clone().unwrap();
    let msg = "Job has reached the specified backoff limit";
    assert_eq!(
        cond_says(&s, "FailureTarget"),
        says("True", "BackoffLimitExceeded", msg)
    );
    assert!(cond(&s, "Failed").is_none());
    assert_eq!(names(&p.delete), ["r"]);
    assert!(p.create.is_empty());
    // Every pod is counted as failed, the running one too.
    assert_eq!(uncounted(&s).1, ["uid-f1", "uid-f2", "uid-r"]);
    assert_eq!((s.active, s.ready, s.terminating), (None, Some(0), Some(1)));
    let mut rf = names(&p.remove_finalizers);
    rf.sort();
    assert_eq!(rf, ["f1", "f2", "r"]);

    // Next sync: all counted, nothing terminates: Failed with the same reason.
    let j = written(j, &p);
    let pods: Vec<Pod> = pods.into_iter().map(no_finalizer).collect();
    let p = plan(&j, &pods[..2], t(31));
    let s = p.status.clone().unwrap();
    assert_eq!(s.failed, Some(3));
    assert_eq!(cond_says(&s, "Failed"), says("True", "BackoffLimitExceeded", msg));
    assert_eq!(s.completion_time, None);
    assert_eq!(reasons(&p), [("BackoffLimitExceeded", EventType::Warning)]);
    assert_eq!(p.events[0].message, msg);
}

#[test]
fn the_default_limit_fails_on_the_seventh_failure() {
    let j = job(Some(1), Some(1));
    let six: Vec<Pod> = (0..6)
        .map(|i| exited(pod(&format!("f{i}"), "Failed"), 1, 1))
        .collect();
    let p = plan(&j, &six, t(10_000));
    assert!(cond(p.status.as_ref().unwrap(), "FailureTarget").is_none());
    assert_eq!(p.create.len(), 1);
    let mut seven = six;
    seven.push(exited(pod("f6", "Failed"), 1, 1));
    let p = plan(&j, &seven, t(10_000));
    assert!(cond(p.status.as_ref().unwrap(), "FailureTarget").is_some());
}

#[test]
fn restarts_count_against_the_limit_with_on_failure() {
    let mut j = job(Some(1), Some(1));
    spec(&mut j).backoff_limit = Some(2);
    spec(&mut j).template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    let mut p1 = pod("a", "Running");
    p1.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        name: "main".into(),
        restart_count: 2,
        ..Default::default()
    }]);
    let p = plan(&j, &[p1], t(5));
    assert_eq!(
        cond_says(p.status.as_ref().unwrap(), "FailureTarget").map(|c| c.1),
        Some("BackoffLimitExceeded".into())
    );
}

#[test]
fn pod_recreation_waits_for_the_backoff() {
    let j = job(Some(1), Some(1));
    let failed = [exited(pod("f1", "Failed"), 1, 100)];
    let p = plan(&j, &failed, t(105));
    assert!(p.create.is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(5)));
    assert_eq!(plan(&j, &failed, t(110)).create.len(), 1);
    // Two failures: 20 s from the later one.
    let two = [
        exited(pod("f1", "Failed"), 1, 100),
        exited(pod("f2", "Failed"), 1, 130),
    ];
    assert_eq!(
        plan(&j, &two, t(140)).requeue_after,
        Some(Duration::from_secs(10))
    );
    assert_eq!(plan(&j, &two, t(150)).create.len(), 1);
    // A success resets the count: only failures after it count.
    let mut j3 = job(Some(1), Some(3));
    spec(&mut j3).backoff_limit = Some(10);
    let mixed = [
        exited(pod("f1", "Failed"), 1, 100),
        exited(pod("f2", "Failed"), 1, 110),
        exited(pod("s", "Succeeded"), 0, 120),
        exited(pod("f3", "Failed"), 1, 130),
    ];
    assert_eq!(
        plan(&j3, &mixed, t(131)).requeue_after,
        Some(Duration::from_secs(9))
    );
}

#[test]
fn the_backoff_is_capped_at_ten_minutes() {
    assert_eq!(backoff_delay(0), Duration::ZERO);
    assert_eq!(backoff_delay(1), Duration::from_secs(10));
    assert_eq!(backoff_delay(4), Duration::from_secs(80));
    assert_eq!(backoff_delay(7), Duration::from_secs(600));
    assert_eq!(backoff_delay(70), Duration::from_secs(600));
}

#[test]
fn the_active_deadline_fails_the_job_and_deletes_its_pods() {
    let mut j = job(Some(1), Some(1));
    spec(&mut j).active_deadline_seconds = Some(10);
    status(&mut j).start_time = Some(Time(t(0)));
    let running = [pod("a", "Running")];
    let p = plan(&j, &running, t(4));
    assert_eq!(p.requeue_after, Some(Duration::from_secs(6)));
    assert!(p.delete.is_empty());
    let p = plan(&j, &running, t(10));
    let msg = "Job was active longer than specified deadline";
    assert_eq!(
        cond_says(p.status.as_ref().unwrap(), "FailureTarget"),
        says("True", "DeadlineExceeded", msg)
    );
    assert_eq!(names(&p.delete), ["a"]);
    assert_eq!(p.requeue_after, None);
}

fn exit_rule(action: &str, op: &str, codes: &[i32]) -> PodFailurePolicyRule {
    PodFailurePolicyRule {
        action: action.into(),
        on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
            container_name: None,
            operator: op.into(),
            values: codes.to_vec(),
        }),
        on_pod_conditions: None,
    }
}

fn condition_rule(action: &str, type_: &str) -> PodFailurePolicyRule {
    PodFailurePolicyRule {
        action: action.into(),
        on_exit_codes: None,
        on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
            type_: type_.into(),
            status: None,
        }]),
    }
}

fn with_policy(rules: Vec<PodFailurePolicyRule>) -> Job {
    let mut j = job(Some(1), Some(2));
    spec(&mut j).pod_failure_policy = Some(PodFailurePolicy { rules });
    j
}

#[test]
fn a_fail_job_rule_fails_the_job_with_the_policy_message() {
    let j = with_policy(vec![
        exit_rule("Ignore", "In", &[3]),
        exit_rule("FailJob", "In", &[42]),
    ]);
    let p = plan(&j, &[exited(pod("a", "Failed"), 42, 5)], t(10));
    assert_eq!(
        cond_says(p.status.as_ref().unwrap(), "FailureTarget"),
        says(
            "True",
            "PodFailurePolicy",
            "Container main for pod default/a failed with exit code 42 matching FailJob rule at index 1"
        )
    );
    // Exit code 0 never matches, NotIn included.
    let j = with_policy(vec![exit_rule("FailJob", "NotIn", &[1])]);
    let p = plan(&j, &[exited(pod("a", "Failed"), 0, 5)], t(10));
    assert!(cond(p.status.as_ref().unwrap(), "FailureTarget").is_none());
}

#[test]
fn ignored_failures_do_not_count_toward_the_limit_but_are_replaced() {
    let mut j = with_policy(vec![condition_rule("Ignore", "DisruptionTarget")]);
    spec(&mut j).backoff_limit = Some(0);
    let mut disrupted = exited(pod("a", "Failed"), 137, 5);
    disrupted.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        ..Default::default()
    }]);
    let p = plan(&j, std::slice::from_ref(&disrupted), t(100));
    let s = p.status.unwrap();
    assert!(cond(&s, "FailureTarget").is_none());
    assert_eq!(uncounted(&s).1, Vec::<String>::new());
    assert_eq!(names(&p.remove_finalizers), ["a"]);
    assert_eq!(p.create.len(), 1);
    // Counted, the same failure ends the Job.
    let mut j = with_policy(vec![condition_rule("Count", "DisruptionTarget")]);
    spec(&mut j).backoff_limit = Some(0);
    let p = plan(&j, &[disrupted.clone()], t(100));
    assert!(cond(p.status.as_ref().unwrap(), "FailureTarget").is_some());
    let j = with_policy(vec![condition_rule("FailJob", "DisruptionTarget")]);
    let p = plan(&j, &[disrupted], t(100));
    assert_eq!(
        cond_says(p.status.as_ref().unwrap(), "FailureTarget").map(|c| c.2),
        Some("Pod default/a has condition DisruptionTarget matching FailJob rule at index 0".into())
    );
}

#[test]
fn terminating_pods_are_failures_and_replaced_unless_only_failed_pods_are() {
    let mut j = job(Some(1), Some(1));
    status(&mut j).start_time = Some(Time(t(0)));
    let gone = deleting(pod("a", "Running"), 100);
    let p = plan(&j, std::slice::from_ref(&gone), t(200));
    let s = p.status.unwrap();
    assert_eq!(uncounted(&s).1, ["uid-a"]);
    assert_eq!(s.terminating, Some(1));
    assert_eq!(p.create.len(), 1);
    spec(&mut j).pod_replacement_policy = Some("Failed".into());
    let p = plan(&j, &[gone], t(200));
    let s = p.status.unwrap();
    assert_eq!(uncounted(&s).1, Vec::<String>::new());
    assert!(p.create.is_empty());
    assert!(p.remove_finalizers.is_empty());
}

#[test]
fn a_fail_index_rule_fails_the_index_at_once() {
    let mut j = indexed_job(2, 3);
    spec(&mut j).backoff_limit_per_index = Some(5);
    spec(&mut j).pod_failure_policy = Some(PodFailurePolicy {
        rules: vec![exit_rule("FailIndex", "In", &[42])],
    });
    status(&mut j).start_time = Some(Time(t(0)));
    let pods = [
        indexed(exited(pod("a", "Failed"), 42, 5), 0),
        indexed(pod("b", "Running"), 1),
    ];
    let p = plan(&j, &pods, t(10));
    let s = p.status.unwrap();
    assert_eq!(s.failed_indexes.as_deref(), Some("0"));
    assert_eq!(uncounted(&s).1, ["uid-a"]);
    // Index 0 is not re-created; index 2 is.
    let ixs: Vec<&str> = p
        .create
        .iter()
        .map(|c| c.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX].as_str())
        .collect();
    assert_eq!(ixs, ["2"]);
    assert_eq!(names(&p.remove_finalizers), ["a"]);
}
