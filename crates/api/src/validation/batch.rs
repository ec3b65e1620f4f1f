//! `batch/v1` Job validation (`ValidateJob`, `ValidateJobUpdate`), as
//! `pkg/apis/batch/validation` (v1.35) with its paths and messages, under the default feature
//! gates of that release. The pod failure and success policies are in [`super::job_policy`],
//! CronJobs in [`super::cron_job`].
//!
//! Job template updates follow upstream: the template is immutable, except that a suspended
//! Job that never started may change its scheduling directives (node selector, node affinity,
//! tolerations, scheduling gates) and the template's labels and annotations. Values that
//! upstream renders from internal Go structs (a pod template, a pod failure policy) are printed
//! as the JSON of the `batch/v1` objects.

use std::collections::BTreeMap;

use podvisor_core::batchv1::{Job, JobSpec};
use podvisor_core::corev1::PodTemplateSpec;

use super::field::{FieldError, Path, ValidationErrors, Value, Warning};
use super::format;
use super::meta::{NameRule, validate_object_meta};
use super::pod::Errs;
use super::template::{
    Selector, immutable, name_label_warning, non_negative, normalized_selector, opt_int, selector_mismatch,
    selector_value, template_labels, template_spec, template_warnings, validate_label_selector,
    validate_meta_update, validate_pod_template,
};
use crate::defaults::{
    JOB_CONTROLLER_UID_LABEL, JOB_NAME_LABEL, LEGACY_JOB_CONTROLLER_UID_LABEL, LEGACY_JOB_NAME_LABEL,
};

const MAX_PARALLELISM_INDEXED: i32 = 100_000;
const MAX_FAILED_INDEXES: i32 = 100_000;
const COMPLETIONS_SOFT_LIMIT: i32 = 100_000;
const PARALLELISM_HIGH_COMPLETIONS: i32 = 10_000;
const MAX_FAILED_INDEXES_HIGH_COMPLETIONS: i32 = 10_000;
const MAX_MANAGED_BY: usize = 63;

fn indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

/// `validateJobSpec`: everything but the selector.
pub(super) fn job_spec_errors(spec: &JobSpec, path: &Path, errs: &mut Errs) {
    for (field, value) in [
        ("parallelism", spec.parallelism.map(i64::from)),
        ("completions", spec.completions.map(i64::from)),
        ("activeDeadlineSeconds", spec.active_deadline_seconds),
        ("backoffLimit", spec.backoff_limit.map(i64::from)),
        (
            "ttlSecondsAfterFinished",
            spec.ttl_seconds_after_finished.map(i64::from),
        ),
        (
            "backoffLimitPerIndex",
            spec.backoff_limit_per_index.map(i64::from),
        ),
        ("maxFailedIndexes", spec.max_failed_indexes.map(i64::from)),
    ] {
        if let Some(v) = value {
            non_negative(v, &path.child(field), errs);
        }
    }
    if spec.max_failed_indexes.is_some() && spec.backoff_limit_per_index.is_none() {
        errs.push(FieldError::required(
            path.child("backoffLimitPerIndex").as_str(),
            "when maxFailedIndexes is specified",
        ));
    }
    if let Some(managed_by) = &spec.managed_by {
        validate_managed_by(managed_by, &path.child("managedBy"), errs);
    }
    if let Some(mode) = &spec.completion_mode {
        indexed_errors(spec, mode, path, errs);
    }
    if !indexed(spec) {
        for (field, value) in [
            ("backoffLimitPerIndex", spec.backoff_limit_per_index),
            ("maxFailedIndexes", spec.max_failed_indexes),
        ] {
            if let Some(v) = value {
                errs.push(FieldError::invalid(
                    path.child(field).as_str(),
                    Value::int(v),
                    "requires indexed completion mode",
                ));
            }
        }
    }
    if spec.pod_failure_policy.is_some() {
        super::job_policy::pod_failure_policy_errors(spec, &path.child("podFailurePolicy"), errs);
    }
    if let Some(policy) = &spec.success_policy {
        let p = path.child("successPolicy");
        if indexed(spec) {
            super::job_policy::success_policy_errors(spec, policy, &p, errs);
        } else {
            errs.push(FieldError::invalid(
                p.as_str(),
                Value::json(policy),
                "requires indexed completion mode",
            ));
        }
    }
    if let Some(policy) = &spec.pod_replacement_policy {
        let p = path.child("podReplacementPolicy");
        if spec.pod_failure_policy.is_some() {
            if policy != "Failed" {
                errs.push(FieldError::not_supported(
                    p.as_str(),
                    Value::str(policy),
                    &["Failed"],
                ));
            }
        } else if policy != "Failed" && policy != "TerminatingOrFailed" {
            errs.push(FieldError::not_supported(
                p.as_str(),
                Value::str(policy),
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    let tp = path.child("template");
    validate_pod_template(&spec.template, &tp, errs);
    let rp_path = tp.child("spec").child("restartPolicy");
    let rp = template_spec(&spec.template)
        .restart_policy
        .clone()
        .unwrap_or_default();
    match rp.as_str() {
        "" | "Always" => errs.push(FieldError::required(
            rp_path.as_str(),
            "valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" | "Never" => {
            if spec.pod_failure_policy.is_some() && rp != "Never" {
                errs.push(FieldError::invalid(
                    rp_path.as_str(),
                    Value::str(&rp),
                    "only \"Never\" is supported when podFailurePolicy is specified",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            rp_path.as_str(),
            Value::str(other),
            &["OnFailure", "Never"],
        )),
    }
}

/// `IsDomainPrefixedPath` and the length limit of `managedBy`.
fn validate_managed_by(v: &str, path: &Path, errs: &mut Errs) {
    match v.split_once('/') {
        _ if v.is_empty() => errs.push(FieldError::required(path.as_str(), "")),
        Some((host, rest)) if !host.is_empty() && !rest.is_empty() => {
            for m in format::is_dns1123_subdomain(host) {
                errs.push(FieldError::invalid(path.as_str(), Value::str(host), m));
            }
            let path_ok = rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c));
            if !path_ok {
                errs.push(FieldError::invalid(
                    path.as_str(),
                    Value::str(rest),
                    format::regex_error("Invalid path", "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+", &[]),
                ));
            }
        }
        _ => errs.push(FieldError::invalid(
            path.as_str(),
            Value::str(v),
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        )),
    }
    if v.len() > MAX_MANAGED_BY {
        errs.push(FieldError::too_long(path.as_str(), MAX_MANAGED_BY));
    }
}

fn indexed_errors(spec: &JobSpec, mode: &str, path: &Path, errs: &mut Errs) {
    if mode != "NonIndexed" && mode != "Indexed" {
        errs.push(FieldError::not_supported(
            path.child("completionMode").as_str(),
            Value::str(mode),
            &["NonIndexed", "Indexed"],
        ));
    }
    if mode != "Indexed" {
        return;
    }
    let parallelism = spec.parallelism.unwrap_or(0);
    let max_failed = spec.max_failed_indexes;
    if spec.completions.is_none() {
        errs.push(FieldError::required(
            path.child("completions").as_str(),
            "when completion mode is Indexed",
        ));
    }
    if parallelism > MAX_PARALLELISM_INDEXED {
        errs.push(FieldError::invalid(
            path.child("parallelism").as_str(),
            Value::int(parallelism),
            format!(
                "must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"
            ),
        ));
    }
    let mfp = path.child("maxFailedIndexes");
    if let (Some(c), Some(m)) = (spec.completions, max_failed)
        && m > c
    {
        errs.push(FieldError::invalid(
            mfp.as_str(),
            Value::int(m),
            "must be less than or equal to completions",
        ));
    }
    if let Some(m) = max_failed.filter(|m| *m > MAX_FAILED_INDEXES) {
        errs.push(FieldError::invalid(
            mfp.as_str(),
            Value::int(m),
            format!("must be less than or equal to {MAX_FAILED_INDEXES}"),
        ));
    }
    let high = spec.completions.is_some_and(|c| c > COMPLETIONS_SOFT_LIMIT);
    if high && spec.backoff_limit_per_index.is_some() {
        let tail = format!(
            "when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index"
        );
        if max_failed.is_none() {
            errs.push(FieldError::required(
                mfp.as_str(),
                format!("must be specified when completions is above {COMPLETIONS_SOFT_LIMIT}"),
            ));
        }
        if parallelism > PARALLELISM_HIGH_COMPLETIONS {
            errs.push(FieldError::invalid(
                path.child("parallelism").as_str(),
                Value::int(parallelism),
                format!("must be less than or equal to {PARALLELISM_HIGH_COMPLETIONS} {tail}"),
            ));
        }
        if let Some(m) = max_failed.filter(|m| *m > MAX_FAILED_INDEXES_HIGH_COMPLETIONS) {
            errs.push(FieldError::invalid(
                mfp.as_str(),
                Value::int(m),
                format!("must be less than or equal to {MAX_FAILED_INDEXES_HIGH_COMPLETIONS} {tail}"),
            ));
        }
    }
}

/// `ValidateJobSpec`: the spec and its selector, which must match the template.
fn job_spec_with_selector(spec: &JobSpec, path: &Path, errs: &mut Errs) {
    job_spec_errors(spec, path, errs);
    let sel_path = path.child("selector");
    let selector = spec.selector.as_ref();
    match selector {
        None => errs.push(FieldError::required(sel_path.as_str(), "")),
        Some(sel) => validate_label_selector(sel, &sel_path, errs),
    }
    if let Some(converted) = Selector::convert(selector)
        && !converted.matches(template_labels(&spec.template))
    {
        errs.push(selector_mismatch(&spec.template, &path.child("template")));
    }
}

/// `validateGeneratedSelector`: a generated selector's labels are on the template.
fn generated_selector_errors(job: &Job, spec: &JobSpec, prefixed: bool, errs: &mut Errs) {
    if spec.manual_selector == Some(true) {
        return;
    }
    let Some(selector) = &spec.selector else {
        return;
    };
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    if uid.is_empty() {
        errs.push(FieldError::required("metadata.uid", ""));
    }
    let labels = template_labels(&spec.template).cloned().unwrap_or_default();
    let mut expected: Vec<(&str, &str)> = vec![
        (LEGACY_JOB_CONTROLLER_UID_LABEL, uid.as_str()),
        (LEGACY_JOB_NAME_LABEL, name.as_str()),
    ];
    if prefixed {
        expected.push((JOB_CONTROLLER_UID_LABEL, uid.as_str()));
        expected.push((JOB_NAME_LABEL, name.as_str()));
    }
    for (key, want) in &expected {
        let p = format!("spec.template.metadata.labels[{key}]");
        match labels.get(*key) {
            None => errs.push(FieldError::required(&p, *want)),
            Some(v) if v != want => errs.push(FieldError::invalid(
                &p,
                Value::json(&labels),
                format!("must be '{want}'"),
            )),
            Some(_) => {}
        }
    }
    let expected: BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    if let Some(converted) = Selector::convert(Some(selector))
        && !converted.matches(Some(&expected))
    {
        errs.push(FieldError::invalid(
            "spec.selector",
            selector_value(Some(selector)),
            "`selector` not auto-generated",
        ));
    }
}

fn job_spec(job: &Job) -> std::borrow::Cow<'_, JobSpec> {
    job.spec
        .as_ref()
        .map_or_else(Default::default, std::borrow::Cow::Borrowed)
}

/// `ValidateJob`.
fn job_errors(job: &Job, prefixed: bool, errs: &mut Errs) {
    validate_object_meta(
        &job.metadata,
        NameRule::Dns1123Subdomain,
        &Path::root("metadata"),
        errs,
    );
    let spec = job_spec(job);
    generated_selector_errors(job, &spec, prefixed, errs);
    job_spec_with_selector(&spec, &Path::root("spec"), errs);
    if indexed(&spec)
        && let Some(c) = spec.completions.filter(|c| *c > 0)
    {
        let name = job.metadata.name.clone().unwrap_or_default();
        let host = format!("{name}-{}", c - 1);
        if !format::is_dns1123_label(&host).is_empty() {
            errs.push(FieldError::invalid(
                "metadata.name",
                Value::str(&name),
                format!("will not able to create pod with invalid DNS label: {host}"),
            ));
        }
    }
}

fn job_warnings(job: &Job) -> Vec<Warning> {
    let mut out: Vec<Warning> = name_label_warning(job.metadata.name.as_deref())
        .into_iter()
        .collect();
    out.extend(template_warnings(
        &job_spec(job).template,
        &Path::root("spec").child("template"),
    ));
    out
}

/// Validates a Job on create (`ValidateJob`), after [`crate::defaults::default_job`] (which
/// generates the selector from `metadata.uid`).
pub fn validate_job(job: &Job) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = Vec::new();
    job_errors(job, true, &mut errs);
    ValidationErrors::new(errs).into_result(job_warnings(job))
}

/// Validates a Job update (`ValidateJob` and `ValidateJobUpdate`): selector, completionMode,
/// podFailurePolicy, backoffLimitPerIndex, managedBy and successPolicy are immutable;
/// completions too unless Indexed (then only in tandem with parallelism); and the template as
/// described in the module docs.
pub fn validate_job_update(old: &Job, new: &Job) -> Result<Vec<Warning>, ValidationErrors> {
    let (old_spec, spec) = (job_spec(old), job_spec(new));
    let old_labels = template_labels(&old_spec.template);
    let prefixed = old_labels
        .is_some_and(|l| l.contains_key(JOB_NAME_LABEL) && l.contains_key(JOB_CONTROLLER_UID_LABEL));
    let mut errs = Vec::new();
    job_errors(new, prefixed, &mut errs);
    validate_meta_update(&old.metadata, &new.metadata, &mut errs);
    let path = Path::root("spec");
    let cp = path.child("completions");
    if indexed(&spec) {
        if spec.completions != old_spec.completions
            && let Some(c) = spec.completions
            && Some(c) != spec.parallelism
        {
            errs.push(FieldError::invalid(
                cp.as_str(),
                Value::int(c),
                "can only be modified in tandem with spec.parallelism",
            ));
        }
    } else {
        immutable(
            &old_spec.completions,
            &spec.completions,
            || opt_int(spec.completions),
            &cp,
            &mut errs,
        );
    }
    immutable(
        &normalized_selector(old_spec.selector.as_ref()),
        &normalized_selector(spec.selector.as_ref()),
        || selector_value(spec.selector.as_ref()),
        &path.child("selector"),
        &mut errs,
    );
    let old_template = template_for_update(old, &old_spec.template, &spec.template);
    immutable(
        &old_template,
        &spec.template,
        || Value::json(&spec.template),
        &path.child("template"),
        &mut errs,
    );
    immutable(
        &old_spec.completion_mode,
        &spec.completion_mode,
        || {
            spec.completion_mode
                .as_deref()
                .map_or_else(Value::null, Value::str)
        },
        &path.child("completionMode"),
        &mut errs,
    );
    immutable(
        &old_spec.pod_failure_policy,
        &spec.pod_failure_policy,
        || Value::json(&spec.pod_failure_policy),
        &path.child("podFailurePolicy"),
        &mut errs,
    );
    immutable(
        &old_spec.backoff_limit_per_index,
        &spec.backoff_limit_per_index,
        || opt_int(spec.backoff_limit_per_index),
        &path.child("backoffLimitPerIndex"),
        &mut errs,
    );
    immutable(
        &old_spec.managed_by,
        &spec.managed_by,
        || spec.managed_by.as_deref().map_or_else(Value::null, Value::str),
        &path.child("managedBy"),
        &mut errs,
    );
    immutable(
        &old_spec.success_policy,
        &spec.success_policy,
        || Value::json(&spec.success_policy),
        &path.child("successPolicy"),
        &mut errs,
    );
    ValidationErrors::new(errs).into_result(template_warnings(&spec.template, &path.child("template")))
}

/// The old template with what the new one may change carried over: for a suspended Job that
/// never started, its scheduling directives, labels and annotations.
fn template_for_update(old: &Job, old_t: &PodTemplateSpec, new_t: &PodTemplateSpec) -> PodTemplateSpec {
    let suspended = old.spec.as_ref().and_then(|s| s.suspend) == Some(true);
    let never_started = old.status.as_ref().and_then(|s| s.start_time.as_ref()).is_none();
    let mut t = old_t.clone();
    if !(suspended && never_started) {
        return t;
    }
    let new_meta = new_t.metadata.clone().unwrap_or_default();
    let meta = t.metadata.get_or_insert_with(Default::default);
    meta.labels = new_meta.labels;
    meta.annotations = new_meta.annotations;
    if let (Some(pod), Some(new_pod)) = (t.spec.as_mut(), new_t.spec.as_ref()) {
        pod.node_selector.clone_from(&new_pod.node_selector);
        pod.tolerations.clone_from(&new_pod.tolerations);
        pod.scheduling_gates.clone_from(&new_pod.scheduling_gates);
        let node_affinity = new_pod.affinity.as_ref().and_then(|a| a.node_affinity.clone());
        match (&mut pod.affinity, &new_pod.affinity) {
            (Some(_), None) => {
                if let Some(a) = pod.affinity.as_mut() {
                    a.node_affinity = None;
                }
                if pod.affinity.as_ref().is_some_and(|a| *a == Default::default()) {
                    pod.affinity = None;
                }
            }
            (None, Some(_)) => {
                pod.affinity = Some(podvisor_core::corev1::Affinity {
                    node_affinity,
                    ..Default::default()
                });
            }
            (Some(a), Some(_)) => a.node_affinity = node_affinity,
            (None, None) => {}
        }
    }
    t
}
