//! Tests of the Job rules (section 6).

use std::collections::BTreeMap;

use podvisor_core::batchv1::{
    JobSpec, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern,
    PodFailurePolicyRule, SuccessPolicy, SuccessPolicyRule,
};
use podvisor_core::corev1::{
    Container, ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodSpec, PodStatus,
    PodTemplateSpec,
};
use podvisor_core::metav1::ObjectMeta;

use super::*;
use crate::event::EventType;

mod sim;

pub(super) fn t(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap()
}

pub(super) fn job(parallelism: Option<i32>, completions: Option<i32>) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some("pi".into()),
            namespace: Some("default".into()),
            uid: Some("job-uid".into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            parallelism,
            completions,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([("batch.kubernetes.io/job-name".to_string(), "pi".to_string())].into()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "main".into(),
                        ..Default::default()
                    }],
                    restart_policy: Some("Never".into()),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn spec(j: &mut Job) -> &mut JobSpec {
    j.spec.as_mut().unwrap()
}

fn status(j: &mut Job) -> &mut JobStatus {
    j.status.get_or_insert_with(Default::default)
}

/// A pod of the Job with the tracking finalizer, created at 0.
pub(super) fn pod(name: &str, phase: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: Some(Time(t(0))),
            finalizers: Some(vec![TRACKING_FINALIZER.into()]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    }
}

fn indexed(mut p: Pod, ix: usize) -> Pod {
    p.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(COMPLETION_INDEX.into(), ix.to_string());
    p
}

/// The pod's only container terminated at `at` with `code`.
fn exited(mut p: Pod, code: i32, at: i64) -> Pod {
    p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        name: "main".into(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                finished_at: Some(Time(t(at))),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    p
}

fn ready(mut p: Pod) -> Pod {
    p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
        type_: "Ready".into(),
        status: "True".into(),
        last_transition_time: Some(Time(t(1))),
        ..Default::default()
    }]);
    p
}

fn deleting(mut p: Pod, at: i64) -> Pod {
    p.metadata.deletion_timestamp = Some(Time(t(at)));
    p.metadata.deletion_grace_period_seconds = Some(0);
    p
}

fn no_finalizer(mut p: Pod) -> Pod {
    p.metadata.finalizers = None;
    p
}

fn names(refs: &[PodRef]) -> Vec<&str> {
    refs.iter().map(|r| r.name.as_str()).collect()
}

fn cond<'s>(s: &'s JobStatus, type_: &str) -> Option<&'s JobCondition> {
    s.conditions.iter().flatten().find(|c| c.type_ == type_)
}

fn cond_says(s: &JobStatus, type_: &str) -> Option<(String, String, String)> {
    cond(s, type_).map(|c| {
        (
            c.status.clone(),
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    })
}

fn says(status: &str, reason: &str, message: &str) -> Option<(String, String, String)> {
    Some((status.into(), reason.into(), message.into()))
}

fn uncounted(s: &JobStatus) -> (Vec<String>, Vec<String>) {
    let u = s.uncounted_terminated_pods.clone().unwrap_or_default();
    (u.succeeded.unwrap_or_default(), u.failed.unwrap_or_default())
}

fn reasons(p: &JobPlan) -> Vec<(&str, EventType)> {
    p.events.iter().map(|e| (e.reason.as_str(), e.type_)).collect()
}

/// Applies a plan's status to the job, as the shell's write would.
fn written(mut j: Job, p: &JobPlan) -> Job {
    if let Some(s) = &p.status {
        j.status = Some(s.clone());
    }
    j
}

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

fn indexed_job(parallelism: i32, completions: i32) -> Job {
    let mut j = job(Some(parallelism), Some(completions));
    spec(&mut j).completion_mode = Some("Indexed".into());
    j
}

#[test]
fn indexed_pods_carry_their_index_everywhere() {
    let p = plan(&indexed_job(2, 4), &[], t(0));
    assert_eq!(p.create.len(), 2);
    for (ix, c) in p.create.iter().enumerate() {
        let m = &c.metadata;
        assert_eq!(m.generate_name.as_deref(), Some(format!("pi-{ix}-").as_str()));
        assert_eq!(m.annotations.as_ref().unwrap()[COMPLETION_INDEX], ix.to_string());
        assert_eq!(m.labels.as_ref().unwrap()[COMPLETION_INDEX], ix.to_string());
        let spec = c.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("pi-{ix}").as_str()));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, "JOB_COMPLETION_INDEX");
        assert_eq!(
            env.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.labels['batch.kubernetes.io/job-completion-index']"
        );
    }
    let long = "j".repeat(60);
    assert_eq!(
        generate_name_with_index(&long, 12),
        format!("{}-12-", "j".repeat(54))
    );
}

#[test]
fn indexed_jobs_fill_the_lowest_pending_indexes_and_record_completed_ones() {
    let mut j = indexed_job(3, 8);
    status(&mut j).completed_indexes = Some("0".into());
    status(&mut j).succeeded = Some(1);
    let pods = [
        indexed(exited(pod("s1", "Succeeded"), 0, 3), 1),
        indexed(exited(pod("s3", "Succeeded"), 0, 3), 3),
        indexed(exited(pod("s4", "Succeeded"), 0, 3), 4),
        indexed(pod("r2", "Running"), 2),
    ];
    let p = plan(&j, &pods, t(10));
    let s = p.status.unwrap();
    assert_eq!(s.completed_indexes.as_deref(), Some("0,1,3,4"));
    assert_eq!(s.succeeded, Some(4));
    assert_eq!(uncounted(&s).0, Vec::<String>::new());
    let ixs: Vec<&str> = p
        .create
        .iter()
        .map(|c| c.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX].as_str())
        .collect();
    assert_eq!(ixs, ["5", "6"]);
}

#[test]
fn repeated_and_out_of_range_indexes_are_deleted() {
    let j = indexed_job(3, 3);
    let pods = [
        indexed(pod("a", "Pending"), 0),
        indexed(ready(pod("b", "Running")), 0),
        indexed(pod("c", "Running"), 7),
        pod("d", "Running"),
    ];
    let p = plan(&j, &pods, t(10));
    let mut d = names(&p.delete);
    d.sort();
    assert_eq!(d, ["a", "c", "d"]);
    assert!(p.create.is_empty());
}

#[test]
fn a_success_policy_ends_an_indexed_job_early() {
    let mut j = indexed_job(3, 5);
    spec(&mut j).success_policy = Some(SuccessPolicy {
        rules: vec![SuccessPolicyRule {
            succeeded_indexes: Some("0,1".into()),
            succeeded_count: None,
        }],
    });
    let pods = [
        indexed(exited(pod("a", "Succeeded"), 0, 3), 0),
        indexed(exited(pod("b", "Succeeded"), 0, 3), 1),
        indexed(pod("c", "Running"), 2),
    ];
    let p = plan(&j, &pods, t(10));
    let s = p.status.unwrap();
    assert_eq!(
        cond_says(&s, "SuccessCriteriaMet"),
        says("True", "SuccessPolicy", "Matched rules at index 0")
    );
    assert_eq!(names(&p.delete), ["c"]);
    // The lingering pod is not counted as failed.
    assert_eq!(uncounted(&s).1, Vec::<String>::new());
    assert!(cond(&s, "Complete").is_none());
}

#[test]
fn backoff_limit_per_index_fails_indexes_and_then_the_job() {
    let mut j = indexed_job(2, 2);
    spec(&mut j).backoff_limit_per_index = Some(1);
    status(&mut j).start_time = Some(Time(t(0)));
    // Index 0 failed for the first time: replaced after its own back-off, with the count.
    let first = indexed(exited(pod("a", "Failed"), 1, 100), 0);
    let other = indexed(pod("b", "Running"), 1);
    let p = plan(&j, &[first.clone(), other.clone()], t(105));
    assert!(p.create.is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(5)));
    // Its finalizer stays until the replacement exists.
    assert!(p.remove_finalizers.is_empty());
    let p = plan(&j, &[first.clone(), other.clone()], t(111));
    assert_eq!(p.create.len(), 1);
    let annotations = p.create[0].metadata.annotations.clone().unwrap();
    assert_eq!(annotations[INDEX_FAILURE_COUNT], "1");
    assert_eq!(annotations[COMPLETION_INDEX], "0");
    assert_eq!(p.status.unwrap().failed_indexes.as_deref(), Some(""));

    // The replacement fails too: index 0 has failed, the other then succeeds.
    let mut second = indexed(exited(pod("a2", "Failed"), 1, 200), 0);
    second
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(INDEX_FAILURE_COUNT.into(), "1".into());
    let first = no_finalizer(first);
    let p = plan(&j, &[first.clone(), second.clone(), other], t(210));
    let s = p.status.unwrap();
    assert_eq!(s.failed_indexes.as_deref(), Some("0"));
    assert!(cond(&s, "FailureTarget").is_none());
    let done = indexed(exited(pod("b", "Succeeded"), 0, 220), 1);
    let p = plan(&j, &[first, second, done], t(230));
    assert_eq!(
        cond_says(p.status.as_ref().unwrap(), "FailureTarget"),
        says("True", "FailedIndexes", "Job has failed indexes")
    );
}

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
