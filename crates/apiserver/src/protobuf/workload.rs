//! apps/v1 (Deployment, ReplicaSet, StatefulSet, DaemonSet) and batch/v1 (Job, CronJob)
//! objects: metadata and spec. The status of every kind is dropped: a create or update body
//! carries none the server keeps (status is written through the `/status` subresource in JSON).

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pbmeta;
use serde_json::Value;

use super::fields::{Obj, int_or_string, label_selector, object_meta};
use super::pod::pod_template_spec;
use super::volume::persistent_volume_claim;

fn object(api_version: &str, kind: &str, meta: Option<pbmeta::ObjectMeta>, spec: Option<Value>) -> Value {
    Obj::new()
        .set("apiVersion", Value::from(api_version))
        .set("kind", Value::from(kind))
        .msg("metadata", meta, object_meta)
        .opt("spec", spec)
        .done()
}

pub(super) fn deployment(d: apps::Deployment) -> Value {
    object("apps/v1", "Deployment", d.metadata, d.spec.map(deployment_spec))
}

fn deployment_spec(s: apps::DeploymentSpec) -> Value {
    Obj::new()
        .opt("replicas", s.replicas)
        .msg("selector", s.selector, label_selector)
        .msg("template", s.template, pod_template_spec)
        .msg("strategy", s.strategy, |st| {
            Obj::new()
                .s("type", st.r#type)
                .msg("rollingUpdate", st.rolling_update, |r| {
                    Obj::new()
                        .msg("maxUnavailable", r.max_unavailable, int_or_string)
                        .msg("maxSurge", r.max_surge, int_or_string)
                        .done()
                })
                .done()
        })
        .nz("minReadySeconds", s.min_ready_seconds)
        .opt("revisionHistoryLimit", s.revision_history_limit)
        .nz("paused", s.paused)
        .opt("progressDeadlineSeconds", s.progress_deadline_seconds)
        .done()
}

pub(super) fn replica_set(r: apps::ReplicaSet) -> Value {
    let spec = r.spec.map(|s| {
        Obj::new()
            .opt("replicas", s.replicas)
            .nz("minReadySeconds", s.min_ready_seconds)
            .msg("selector", s.selector, label_selector)
            .msg("template", s.template, pod_template_spec)
            .done()
    });
    object("apps/v1", "ReplicaSet", r.metadata, spec)
}

pub(super) fn stateful_set(s: apps::StatefulSet) -> Value {
    object(
        "apps/v1",
        "StatefulSet",
        s.metadata,
        s.spec.map(stateful_set_spec),
    )
}

fn stateful_set_spec(s: apps::StatefulSetSpec) -> Value {
    Obj::new()
        .opt("replicas", s.replicas)
        .msg("selector", s.selector, label_selector)
        .msg("template", s.template, pod_template_spec)
        .list(
            "volumeClaimTemplates",
            s.volume_claim_templates,
            persistent_volume_claim,
        )
        .s("serviceName", s.service_name)
        .s("podManagementPolicy", s.pod_management_policy)
        .msg("updateStrategy", s.update_strategy, |u| {
            Obj::new()
                .s("type", u.r#type)
                .msg("rollingUpdate", u.rolling_update, |r| {
                    Obj::new()
                        .opt("partition", r.partition)
                        .msg("maxUnavailable", r.max_unavailable, int_or_string)
                        .done()
                })
                .done()
        })
        .opt("revisionHistoryLimit", s.revision_history_limit)
        .nz("minReadySeconds", s.min_ready_seconds)
        .msg(
            "persistentVolumeClaimRetentionPolicy",
            s.persistent_volume_claim_retention_policy,
            |p| {
                Obj::new()
                    .s("whenDeleted", p.when_deleted)
                    .s("whenScaled", p.when_scaled)
                    .done()
            },
        )
        .msg("ordinals", s.ordinals, |o| {
            Obj::new().opt("start", o.start).done()
        })
        .done()
}

pub(super) fn daemon_set(d: apps::DaemonSet) -> Value {
    let spec = d.spec.map(|s| {
        Obj::new()
            .msg("selector", s.selector, label_selector)
            .msg("template", s.template, pod_template_spec)
            .msg("updateStrategy", s.update_strategy, |u| {
                Obj::new()
                    .s("type", u.r#type)
                    .msg("rollingUpdate", u.rolling_update, |r| {
                        Obj::new()
                            .msg("maxUnavailable", r.max_unavailable, int_or_string)
                            .msg("maxSurge", r.max_surge, int_or_string)
                            .done()
                    })
                    .done()
            })
            .nz("minReadySeconds", s.min_ready_seconds)
            .opt("revisionHistoryLimit", s.revision_history_limit)
            .done()
    });
    object("apps/v1", "DaemonSet", d.metadata, spec)
}

pub(super) fn job(j: batch::Job) -> Value {
    object("batch/v1", "Job", j.metadata, j.spec.map(job_spec))
}

fn job_spec(s: batch::JobSpec) -> Value {
    Obj::new()
        .opt("parallelism", s.parallelism)
        .opt("completions", s.completions)
        .opt("activeDeadlineSeconds", s.active_deadline_seconds)
        .msg("podFailurePolicy", s.pod_failure_policy, |p| {
            Obj::new().list("rules", p.rules, pod_failure_policy_rule).done()
        })
        .msg("successPolicy", s.success_policy, |p| {
            Obj::new()
                .list("rules", p.rules, |r| {
                    Obj::new()
                        .opt("succeededIndexes", r.succeeded_indexes)
                        .opt("succeededCount", r.succeeded_count)
                        .done()
                })
                .done()
        })
        .opt("backoffLimit", s.backoff_limit)
        .opt("backoffLimitPerIndex", s.backoff_limit_per_index)
        .opt("maxFailedIndexes", s.max_failed_indexes)
        .msg("selector", s.selector, label_selector)
        .opt("manualSelector", s.manual_selector)
        .msg("template", s.template, pod_template_spec)
        .opt("ttlSecondsAfterFinished", s.ttl_seconds_after_finished)
        .opt("completionMode", s.completion_mode)
        .opt("suspend", s.suspend)
        .opt("podReplacementPolicy", s.pod_replacement_policy)
        .opt("managedBy", s.managed_by)
        .done()
}

fn pod_failure_policy_rule(r: batch::PodFailurePolicyRule) -> Value {
    Obj::new()
        .opt("action", r.action)
        .msg("onExitCodes", r.on_exit_codes, |e| {
            Obj::new()
                .opt("containerName", e.container_name)
                .opt("operator", e.operator)
                .vals("values", e.values)
                .done()
        })
        .list("onPodConditions", r.on_pod_conditions, |c| {
            Obj::new().opt("type", c.r#type).opt("status", c.status).done()
        })
        .done()
}

pub(super) fn cron_job(c: batch::CronJob) -> Value {
    let spec = c.spec.map(|s| {
        Obj::new()
            .opt("schedule", s.schedule)
            .opt("timeZone", s.time_zone)
            .opt("startingDeadlineSeconds", s.starting_deadline_seconds)
            .s("concurrencyPolicy", s.concurrency_policy)
            .opt("suspend", s.suspend)
            .msg("jobTemplate", s.job_template, |t| {
                Obj::new()
                    .msg("metadata", t.metadata, object_meta)
                    .msg("spec", t.spec, job_spec)
                    .done()
            })
            .opt("successfulJobsHistoryLimit", s.successful_jobs_history_limit)
            .opt("failedJobsHistoryLimit", s.failed_jobs_history_limit)
            .done()
    });
    object("batch/v1", "CronJob", c.metadata, spec)
}
