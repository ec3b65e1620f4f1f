//! Tests of the Job rules (section 6).

mod counting;
mod failures;
mod indexed;
mod lifecycle;
mod suspend;

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

fn indexed_job(parallelism: i32, completions: i32) -> Job {
    let mut j = job(Some(parallelism), Some(completions));
    spec(&mut j).completion_mode = Some("Indexed".into());
    j
}
