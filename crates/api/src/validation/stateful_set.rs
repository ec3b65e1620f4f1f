//! `apps/v1` StatefulSet validation (`ValidateStatefulSet`, `ValidateStatefulSetUpdate`), as
//! v1.35 with its paths and messages. `volumeClaimTemplates` are not validated beyond providing
//! their volumes to the template's mounts.

use podvisor_core::appsv1::{RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec};
use podvisor_core::corev1::{PersistentVolumeClaimVolumeSource, PodTemplateSpec, Volume};

use super::apps::{
    int_or_percent, int_or_string_value, meta_and, not_more_than_100_percent, positive_int_or_percent,
    strategy_value,
};
use super::field::{FieldError, Path, ValidationErrors, Value, Warning};
use super::format;
use super::meta::{NameRule, validate_object_meta};
use super::pod::{Errs, s};
use super::template::{
    Selector, non_negative, selector_is_empty, selector_is_nil, selector_mismatch, selector_value,
    template_spec, template_warnings, validate_label_selector, validate_meta_update, validate_pod_template,
};

/// What `ValidateStatefulSetSpec` skips on updates.
#[derive(Default, Clone, Copy)]
struct SetOpts {
    allow_invalid_service_name: bool,
    skip_pod_template: bool,
}

/// Go's JSON of the internal (untagged) `RollingUpdateStatefulSetStrategy`.
fn sts_rolling_update_value(ru: &RollingUpdateStatefulSetStrategy) -> String {
    let max = ru
        .max_unavailable
        .as_ref()
        .map_or_else(|| "null".to_owned(), |m| int_or_string_value(m).0);
    format!(
        "{{\"Partition\":{},\"MaxUnavailable\":{max}}}",
        ru.partition.unwrap_or(0)
    )
}

fn stateful_set_spec_errors(spec: &StatefulSetSpec, path: &Path, opts: SetOpts, errs: &mut Errs) {
    let pmp = path.child("podManagementPolicy");
    match s(&spec.pod_management_policy) {
        "" => errs.push(FieldError::required(pmp.as_str(), "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            pmp.as_str(),
            Value::str(other),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let default_strategy = Default::default();
    let strategy = spec.update_strategy.as_ref().unwrap_or(&default_strategy);
    let usp = path.child("updateStrategy");
    match s(&strategy.type_) {
        "" => errs.push(FieldError::required(usp.as_str(), "")),
        "OnDelete" => {
            if let Some(ru) = &strategy.rolling_update {
                errs.push(FieldError::invalid(
                    usp.child("rollingUpdate").as_str(),
                    Value::raw(sts_rolling_update_value(ru)),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = &strategy.rolling_update {
                let p = usp.child("rollingUpdate");
                non_negative(i64::from(ru.partition.unwrap_or(0)), &p.child("partition"), errs);
                if let Some(max) = &ru.max_unavailable {
                    let mp = p.child("maxUnavailable");
                    positive_int_or_percent(max, &mp, errs);
                    if int_or_percent(max) == 0 {
                        errs.push(FieldError::invalid(
                            mp.as_str(),
                            int_or_string_value(max),
                            "cannot be 0",
                        ));
                    }
                    not_more_than_100_percent(max, &mp, errs);
                }
            }
        }
        other => {
            let ru = strategy.rolling_update.as_ref().map(sts_rolling_update_value);
            errs.push(FieldError::invalid(
                usp.as_str(),
                strategy_value(other, ru),
                "must be 'RollingUpdate' or 'OnDelete'",
            ));
        }
    }
    if let Some(policy) = &spec.persistent_volume_claim_retention_policy {
        let p = path.child("persistentVolumeClaimRetentionPolicy");
        for (field, value) in [
            ("whenDeleted", &policy.when_deleted),
            ("whenScaled", &policy.when_scaled),
        ] {
            let v = s(value);
            if v != "Retain" && v != "Delete" {
                errs.push(FieldError::not_supported(
                    p.child(field).as_str(),
                    Value::str(v),
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    non_negative(
        i64::from(spec.replicas.unwrap_or(0)),
        &path.child("replicas"),
        errs,
    );
    non_negative(
        i64::from(spec.min_ready_seconds.unwrap_or(0)),
        &path.child("minReadySeconds"),
        errs,
    );
    if let Some(ordinals) = &spec.ordinals {
        non_negative(
            i64::from(ordinals.start.unwrap_or(0)),
            &path.child("ordinals.start"),
            errs,
        );
    }
    let service = s(&spec.service_name);
    if !opts.allow_invalid_service_name && !service.is_empty() {
        for m in format::is_dns1123_label(service) {
            errs.push(FieldError::invalid(
                path.child("serviceName").as_str(),
                Value::str(service),
                m,
            ));
        }
    }
    let sel_path = path.child("selector");
    if selector_is_nil(&spec.selector) {
        errs.push(FieldError::required(sel_path.as_str(), ""));
    } else {
        validate_label_selector(&spec.selector, &sel_path, errs);
        if selector_is_empty(&spec.selector) {
            errs.push(FieldError::invalid(
                sel_path.as_str(),
                selector_value(Some(&spec.selector)),
                "empty selector is invalid for statefulset",
            ));
        }
    }
    let tp = path.child("template");
    match Selector::convert_required(&spec.selector) {
        None => errs.push(FieldError::invalid(
            sel_path.as_str(),
            selector_value(Some(&spec.selector)),
            "",
        )),
        Some(selector) => {
            if !selector.is_empty() && !selector.matches(super::template::template_labels(&spec.template)) {
                errs.push(selector_mismatch(&spec.template, &tp));
            }
            if !opts.skip_pod_template {
                validate_pod_template(&template_for_validation(spec), &tp, errs);
            }
        }
    }
    let pod = template_spec(&spec.template);
    let rp = s(&pod.restart_policy);
    if rp != "Always" {
        errs.push(FieldError::not_supported(
            tp.child("spec").child("restartPolicy").as_str(),
            Value::str(rp),
            &["Always"],
        ));
    }
    if pod.active_deadline_seconds.is_some() {
        errs.push(FieldError::forbidden(
            tp.child("spec").child("activeDeadlineSeconds").as_str(),
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
}

/// The template as upstream validates it: hostname and subdomain cleared (the controller sets
/// them), and a `persistentVolumeClaim` volume per claim template (ahead of the template's own
/// volumes of other names), so mounts of claim templates resolve.
fn template_for_validation(spec: &StatefulSetSpec) -> PodTemplateSpec {
    let mut t = spec.template.clone();
    let pod = t.spec.get_or_insert_with(Default::default);
    pod.hostname = None;
    pod.subdomain = None;
    let claims = spec.volume_claim_templates.as_deref().unwrap_or(&[]);
    if !claims.is_empty() {
        let mut volumes: Vec<Volume> = Vec::new();
        for claim in claims {
            let name = claim.metadata.name.clone().unwrap_or_default();
            if volumes.iter().any(|v| v.name == name) {
                continue;
            }
            volumes.push(Volume {
                name: name.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: name,
                    read_only: None,
                }),
                ..Default::default()
            });
        }
        let own = pod.volumes.take().unwrap_or_default();
        let claim_count = volumes.len();
        for v in own {
            if !volumes[..claim_count].iter().any(|c| c.name == v.name) {
                volumes.push(v);
            }
        }
        pod.volumes = Some(volumes);
    }
    t
}

fn stateful_set_spec(set: &StatefulSet) -> std::borrow::Cow<'_, StatefulSetSpec> {
    set.spec
        .as_ref()
        .map_or_else(Default::default, std::borrow::Cow::Borrowed)
}

/// Validates a StatefulSet on create (`ValidateStatefulSet`); its name must be a DNS-1123
/// label, as its pods' hostnames derive from it.
pub fn validate_stateful_set(set: &StatefulSet) -> Result<Vec<Warning>, ValidationErrors> {
    let spec = stateful_set_spec(set);
    let errs = meta_and(
        |e| validate_object_meta(&set.metadata, NameRule::Dns1123Label, &Path::root("metadata"), e),
        |e| stateful_set_spec_errors(&spec, &Path::root("spec"), SetOpts::default(), e),
    );
    let warnings = template_warnings(&spec.template, &Path::root("spec").child("template"));
    ValidationErrors::new(errs).into_result(warnings)
}

/// The kube-apiserver message for a StatefulSet update that changes an immutable spec field.
pub const STATEFUL_SET_FORBIDDEN_UPDATE: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

/// Validates a StatefulSet update (`ValidateStatefulSetUpdate`): the new spec (tolerating an
/// invalid serviceName, and an invalid template when the old one was invalid too), and only
/// replicas, ordinals, template, updateStrategy, revisionHistoryLimit,
/// persistentVolumeClaimRetentionPolicy and minReadySeconds may change.
pub fn validate_stateful_set_update(
    old: &StatefulSet,
    new: &StatefulSet,
) -> Result<Vec<Warning>, ValidationErrors> {
    let (old_spec, spec) = (stateful_set_spec(old), stateful_set_spec(new));
    let mut opts = SetOpts {
        allow_invalid_service_name: true,
        skip_pod_template: false,
    };
    let mut old_errs = Vec::new();
    stateful_set_spec_errors(&old_spec, &Path::root("spec"), opts, &mut old_errs);
    opts.skip_pod_template = !old_errs.is_empty();
    let mut errs = meta_and(
        |e| validate_meta_update(&old.metadata, &new.metadata, e),
        |e| stateful_set_spec_errors(&spec, &Path::root("spec"), opts, e),
    );
    let mut munged = spec.clone().into_owned();
    munged.replicas = old_spec.replicas;
    munged.template.clone_from(&old_spec.template);
    munged.update_strategy.clone_from(&old_spec.update_strategy);
    munged.min_ready_seconds = old_spec.min_ready_seconds;
    munged.ordinals.clone_from(&old_spec.ordinals);
    munged.revision_history_limit = old_spec.revision_history_limit;
    munged
        .persistent_volume_claim_retention_policy
        .clone_from(&old_spec.persistent_volume_claim_retention_policy);
    if munged != *old_spec {
        errs.push(FieldError::forbidden("spec", STATEFUL_SET_FORBIDDEN_UPDATE));
    }
    let warnings = template_warnings(&spec.template, &Path::root("spec").child("template"));
    ValidationErrors::new(errs).into_result(warnings)
}
