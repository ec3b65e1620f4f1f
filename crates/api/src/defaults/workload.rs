//! Defaulting of the workload kinds, as kube-apiserver's `apps/v1` and `batch/v1` defaulters
//! (`SetDefaults_Deployment`, `_ReplicaSet`, `_StatefulSet`, `_DaemonSet`, `_Job`, `_CronJob`)
//! plus the pod defaults of their templates, and the Job registry's selector generation.
//!
//! Like the rest of [`crate::defaults`], nothing set by the user is overwritten. Feature gates
//! are those of a v1.35 API server with default gates (`MaxUnavailableStatefulSet` on,
//! `JobPodReplacementPolicy` on, `StatefulSetAutoDeletePVC` on).

use std::collections::BTreeMap;

use podvisor_core::appsv1::{
    DaemonSet, DaemonSetUpdateStrategy, Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDaemonSet,
    RollingUpdateDeployment, RollingUpdateStatefulSetStrategy, StatefulSet,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetUpdateStrategy,
};
use podvisor_core::batchv1::{CronJob, Job, JobSpec};
use podvisor_core::corev1::{PodSpec, PodTemplateSpec};
use podvisor_core::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_core::metav1::{LabelSelector, ObjectMeta};

use super::{default_pod_spec, default_str};

/// The label selecting a Job's pods by the Job's uid (`batch.kubernetes.io/controller-uid`).
pub const JOB_CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The label naming a Job's pods' Job (`batch.kubernetes.io/job-name`).
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The unprefixed `controller-uid` label kube-apiserver still adds for compatibility.
pub const LEGACY_JOB_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// The unprefixed `job-name` label kube-apiserver still adds for compatibility.
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// `revisionHistoryLimit` of Deployments, StatefulSets and DaemonSets.
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// The pod defaults of a template's spec; a missing spec is created first (Go's template spec
/// is never nil).
fn default_template(template: &mut PodTemplateSpec) {
    default_pod_spec(template.spec.get_or_insert_with(PodSpec::default));
}

/// `SetDefaults_Deployment`: replicas 1, strategy RollingUpdate with maxUnavailable and
/// maxSurge 25% (only for RollingUpdate), revisionHistoryLimit 10, progressDeadlineSeconds 600,
/// and the pod defaults of the template. A missing `spec` is created first.
pub fn default_deployment(deployment: &mut Deployment) {
    let spec = deployment.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    let strategy = spec.strategy.get_or_insert_with(DeploymentStrategy::default);
    default_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        ru.max_unavailable
            .get_or_insert_with(|| IntOrString::String("25%".to_owned()));
        ru.max_surge
            .get_or_insert_with(|| IntOrString::String("25%".to_owned()));
    }
    spec.revision_history_limit
        .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
    spec.progress_deadline_seconds.get_or_insert(600);
    default_template(&mut spec.template);
}

/// `SetDefaults_ReplicaSet`: replicas 1, and the pod defaults of the template (a missing
/// template is created, as Go's is a value).
pub fn default_replica_set(rs: &mut ReplicaSet) {
    let spec = rs.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    default_template(spec.template.get_or_insert_with(PodTemplateSpec::default));
}

/// `SetDefaults_StatefulSet`: podManagementPolicy OrderedReady; updateStrategy RollingUpdate
/// with partition 0 and maxUnavailable 1 (a RollingUpdate strategy without `rollingUpdate` that
/// the user typed gets none, as upstream); persistentVolumeClaimRetentionPolicy Retain/Retain;
/// replicas 1; revisionHistoryLimit 10; the pod defaults of the template; and the claim
/// templates' `volumeMode: Filesystem` and `status.phase: Pending`.
pub fn default_stateful_set(set: &mut StatefulSet) {
    let spec = set.spec.get_or_insert_with(Default::default);
    default_str(&mut spec.pod_management_policy, "OrderedReady");
    let strategy = spec
        .update_strategy
        .get_or_insert_with(StatefulSetUpdateStrategy::default);
    if strategy.type_.as_deref().is_none_or(str::is_empty) {
        strategy.type_ = Some("RollingUpdate".to_owned());
        strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateStatefulSetStrategy::default);
    }
    if strategy.type_.as_deref() == Some("RollingUpdate")
        && let Some(ru) = strategy.rolling_update.as_mut()
    {
        ru.partition.get_or_insert(0);
        ru.max_unavailable.get_or_insert(IntOrString::Int(1));
    }
    let retention = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
    default_str(&mut retention.when_deleted, "Retain");
    default_str(&mut retention.when_scaled, "Retain");
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit
        .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
    default_template(&mut spec.template);
    for claim in spec.volume_claim_templates.iter_mut().flatten() {
        let claim_spec = claim.spec.get_or_insert_with(Default::default);
        default_str(&mut claim_spec.volume_mode, "Filesystem");
        let status = claim.status.get_or_insert_with(Default::default);
        default_str(&mut status.phase, "Pending");
    }
}

/// `SetDefaults_DaemonSet`: updateStrategy RollingUpdate with maxUnavailable 1 and maxSurge 0
/// (only for RollingUpdate), revisionHistoryLimit 10, and the pod defaults of the template.
pub fn default_daemon_set(ds: &mut DaemonSet) {
    let spec = ds.spec.get_or_insert_with(Default::default);
    let strategy = spec
        .update_strategy
        .get_or_insert_with(DaemonSetUpdateStrategy::default);
    default_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        ru.max_unavailable.get_or_insert(IntOrString::Int(1));
        ru.max_surge.get_or_insert(IntOrString::Int(0));
    }
    spec.revision_history_limit
        .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
    default_template(&mut spec.template);
}

/// The defaults every Job spec gets, in a Job or not: pod template defaults and the
/// `onPodConditions[].status` default `True` of a pod failure policy.
fn default_job_spec_common(spec: &mut JobSpec) {
    default_template(&mut spec.template);
    if let Some(policy) = spec.pod_failure_policy.as_mut() {
        for rule in &mut policy.rules {
            for pattern in rule.on_pod_conditions.iter_mut().flatten() {
                default_str(&mut pattern.status, "True");
            }
        }
    }
}

/// `SetDefaults_Job`, followed by what the Job registry does on create (`generateSelector`):
///
/// - completions and parallelism both unset: both 1; parallelism unset: 1 (completions stays
///   unset);
/// - backoffLimit 6, or 2147483647 when `backoffLimitPerIndex` is set;
/// - completionMode NonIndexed, suspend false, manualSelector false;
/// - podReplacementPolicy Failed when a podFailurePolicy is set, else TerminatingOrFailed;
/// - unless `manualSelector` is true, the template gets the `job-name` and `controller-uid`
///   labels (both prefixed and legacy; ones the user set are kept, validation rejects wrong
///   ones) and the selector gets `batch.kubernetes.io/controller-uid: <metadata.uid>`;
/// - the Job's own labels, when it has none, are the template's (as kube-apiserver shows them
///   once stored: the generated labels too, unless the user gave the template labels).
///
/// `metadata.uid` must already be set (the API layer assigns it before defaulting); with none,
/// the generated labels are empty and validation reports `metadata.uid: Required value`.
pub fn default_job(job: &mut Job) {
    let spec = job.spec.get_or_insert_with(Default::default);
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    spec.parallelism.get_or_insert(1);
    if spec.backoff_limit.is_none() {
        let limit = if spec.backoff_limit_per_index.is_some() {
            i32::MAX
        } else {
            6
        };
        spec.backoff_limit = Some(limit);
    }
    copy_template_labels(&mut job.metadata, &spec.template);
    if spec.completion_mode.is_none() {
        spec.completion_mode = Some("NonIndexed".to_owned());
    }
    spec.suspend.get_or_insert(false);
    if spec.pod_replacement_policy.is_none() {
        let policy = if spec.pod_failure_policy.is_some() {
            "Failed"
        } else {
            "TerminatingOrFailed"
        };
        spec.pod_replacement_policy = Some(policy.to_owned());
    }
    spec.manual_selector.get_or_insert(false);
    default_job_spec_common(spec);
    if spec.manual_selector != Some(true) {
        let name = job.metadata.name.clone().unwrap_or_default();
        let uid = job.metadata.uid.clone().unwrap_or_default();
        generate_selector(spec, &name, &uid);
    }
    copy_template_labels(&mut job.metadata, &spec.template);
}

/// `labels := spec.template.labels; if labels != nil && len(job.labels) == 0 { job.labels = labels }`.
fn copy_template_labels(meta: &mut ObjectMeta, template: &PodTemplateSpec) {
    let template_labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    if let Some(labels) = template_labels
        && meta.labels.as_ref().is_none_or(BTreeMap::is_empty)
    {
        meta.labels = Some(labels.clone());
    }
}

/// The Job registry's `generateSelector`.
fn generate_selector(spec: &mut JobSpec, name: &str, uid: &str) {
    let labels = spec
        .template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    for (key, value) in [
        (LEGACY_JOB_NAME_LABEL, name),
        (JOB_NAME_LABEL, name),
        (LEGACY_JOB_CONTROLLER_UID_LABEL, uid),
        (JOB_CONTROLLER_UID_LABEL, uid),
    ] {
        labels.entry(key.to_owned()).or_insert_with(|| value.to_owned());
    }
    let selector = spec.selector.get_or_insert_with(LabelSelector::default);
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .entry(JOB_CONTROLLER_UID_LABEL.to_owned())
        .or_insert_with(|| uid.to_owned());
}

/// `SetDefaults_CronJob`: concurrencyPolicy Allow, suspend false, successfulJobsHistoryLimit 3,
/// failedJobsHistoryLimit 1; and of the job template only what the generated defaulters apply
/// to a `JobSpec` outside a Job: the pod defaults of its template and the pod failure policy's
/// condition status. (Completions, backoffLimit and the selector are the Job's, defaulted when
/// the CronJob controller creates it.)
pub fn default_cron_job(cj: &mut CronJob) {
    let spec = cj.spec.get_or_insert_with(Default::default);
    default_str(&mut spec.concurrency_policy, "Allow");
    spec.suspend.get_or_insert(false);
    spec.successful_jobs_history_limit.get_or_insert(3);
    spec.failed_jobs_history_limit.get_or_insert(1);
    default_job_spec_common(spec.job_template.spec.get_or_insert_with(JobSpec::default));
}

#[cfg(test)]
mod tests;
