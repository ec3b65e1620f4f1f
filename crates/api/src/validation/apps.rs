//! `apps/v1` validation: Deployments, ReplicaSets, DaemonSets and ControllerRevisions, as
//! `pkg/apis/apps/validation` (v1.35) with its paths and messages; StatefulSets are in
//! [`super::stateful_set`].
//!
//! Values that upstream renders from internal Go structs without JSON tags (an unknown update
//! strategy, a `rollingUpdate` where none is allowed) are printed with Go's field names, as the
//! apiserver's JSON rendering of those structs does.

use podvisor_core::appsv1::{
    ControllerRevision, DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet,
    ReplicaSetSpec,
};
use podvisor_core::corev1::PodTemplateSpec;
use podvisor_core::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_core::metav1::LabelSelector;

use super::field::{FieldError, Path, ValidationErrors, Value, Warning};
use super::format;
use super::meta::{NameRule, validate_object_meta};
use super::pod::{Errs, s};
use super::template::{
    Selector, immutable, name_label_warning, non_negative, normalized_selector, selector_is_empty,
    selector_is_nil, selector_mismatch, selector_value, template_spec, template_warnings,
    validate_label_selector, validate_meta_update, validate_pod_template,
};

/// `IntOrString` as kube-apiserver prints it (Go JSON): a bare number or a quoted string.
pub(super) fn int_or_string_value(v: &IntOrString) -> Value {
    match v {
        IntOrString::Int(i) => Value::int(*i),
        IntOrString::String(s) => Value::json(s),
    }
}

/// The number of a valid percent (`[0-9]+%`), as `getPercentValue`.
fn percent(v: &IntOrString) -> Option<i64> {
    let IntOrString::String(s) = v else {
        return None;
    };
    let digits = s.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(go_atoi(digits))
}

/// Go's `strconv.Atoi` as upstream uses it here: the error ignored, so junk is 0 and an
/// overflow saturates.
fn go_atoi(s: &str) -> i64 {
    match s.parse::<i64>() {
        Ok(n) => n,
        Err(_) => {
            let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                if s.starts_with('-') { i64::MIN } else { i64::MAX }
            } else {
                0
            }
        }
    }
}

/// `getIntOrPercentValue`.
pub(super) fn int_or_percent(v: &IntOrString) -> i64 {
    match (percent(v), v) {
        (Some(p), _) => p,
        (None, IntOrString::Int(i)) => i64::from(*i),
        (None, IntOrString::String(s)) => go_atoi(s),
    }
}

/// `ValidatePositiveIntOrPercent`.
pub(super) fn positive_int_or_percent(v: &IntOrString, path: &Path, errs: &mut Errs) {
    match v {
        IntOrString::String(_) => {
            if percent(v).is_none() {
                errs.push(FieldError::invalid(
                    path.as_str(),
                    int_or_string_value(v),
                    format::regex_error(
                        "a valid percent string must be a numeric string followed by an ending '%'",
                        "[0-9]+%",
                        &["1%", "93%"],
                    ),
                ));
            }
        }
        IntOrString::Int(i) => non_negative(i64::from(*i), path, errs),
    }
}

/// `IsNotMoreThan100Percent`.
pub(super) fn not_more_than_100_percent(v: &IntOrString, path: &Path, errs: &mut Errs) {
    if percent(v).is_some_and(|p| p > 100) {
        errs.push(FieldError::invalid(
            path.as_str(),
            int_or_string_value(v),
            "must not be greater than 100%",
        ));
    }
}

/// An internal IntOrString field (a value in Go): unset is the integer 0.
fn or_zero(v: &Option<IntOrString>) -> IntOrString {
    v.clone().unwrap_or(IntOrString::Int(0))
}

/// The checks of `ValidatePodTemplateSpecForReplicaSet` (also Deployments' and, with its own
/// kind name, DaemonSets'): restartPolicy Always and no activeDeadlineSeconds.
fn always_restarting_template(t: &PodTemplateSpec, kind: &str, path: &Path, errs: &mut Errs) {
    let spec = template_spec(t);
    let rp = s(&spec.restart_policy);
    if rp != "Always" {
        errs.push(FieldError::not_supported(
            path.child("spec").child("restartPolicy").as_str(),
            Value::str(rp),
            &["Always"],
        ));
    }
    if spec.active_deadline_seconds.is_some() {
        errs.push(FieldError::forbidden(
            path.child("spec").child("activeDeadlineSeconds").as_str(),
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

/// The selector part of the Deployment and ReplicaSet spec checks, then the template.
fn selector_and_template(sel: &LabelSelector, t: &PodTemplateSpec, kind: &str, path: &Path, errs: &mut Errs) {
    let sel_path = path.child("selector");
    if selector_is_nil(sel) {
        errs.push(FieldError::required(sel_path.as_str(), ""));
    } else {
        validate_label_selector(sel, &sel_path, errs);
        if selector_is_empty(sel) {
            errs.push(FieldError::invalid(
                sel_path.as_str(),
                selector_value(Some(sel)),
                format!("empty selector is invalid for {kind}"),
            ));
        }
    }
    let tp = path.child("template");
    match Selector::convert_required(sel) {
        None => errs.push(FieldError::invalid(
            sel_path.as_str(),
            selector_value(Some(sel)),
            "invalid label selector",
        )),
        Some(selector) => {
            if !selector.is_empty() && !selector.matches(super::template::template_labels(t)) {
                errs.push(selector_mismatch(t, &tp));
            }
            validate_pod_template(t, &tp, errs);
            always_restarting_template(t, "ReplicaSet", &tp, errs);
        }
    }
}

pub(super) fn meta_and(meta_errs: impl FnOnce(&mut Errs), spec_errs: impl FnOnce(&mut Errs)) -> Errs {
    let mut errs = Vec::new();
    meta_errs(&mut errs);
    spec_errs(&mut errs);
    errs
}

// ---------------------------------------------------------------------------------------------
// Deployment

fn deployment_spec_errors(spec: &DeploymentSpec, errs: &mut Errs) {
    let path = Path::root("spec");
    non_negative(
        i64::from(spec.replicas.unwrap_or(0)),
        &path.child("replicas"),
        errs,
    );
    selector_and_template(&spec.selector, &spec.template, "deployment", &path, errs);
    validate_deployment_strategy(spec.strategy.as_ref(), &path.child("strategy"), errs);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    non_negative(i64::from(min_ready), &path.child("minReadySeconds"), errs);
    if let Some(limit) = spec.revision_history_limit {
        non_negative(i64::from(limit), &path.child("revisionHistoryLimit"), errs);
    }
    if let Some(deadline) = spec.progress_deadline_seconds {
        let p = path.child("progressDeadlineSeconds");
        non_negative(i64::from(deadline), &p, errs);
        if deadline <= min_ready {
            errs.push(FieldError::invalid(
                p.as_str(),
                Value::int(deadline),
                "must be greater than minReadySeconds",
            ));
        }
    }
}

/// Go's JSON of the internal (untagged) `RollingUpdateDeployment`/`RollingUpdateDaemonSet`.
fn rolling_update_value(max_unavailable: &Option<IntOrString>, max_surge: &Option<IntOrString>) -> String {
    format!(
        "{{\"MaxUnavailable\":{},\"MaxSurge\":{}}}",
        int_or_string_value(&or_zero(max_unavailable)).0,
        int_or_string_value(&or_zero(max_surge)).0
    )
}

pub(super) fn strategy_value(type_: &str, rolling_update: Option<String>) -> Value {
    Value::raw(format!(
        "{{\"Type\":{},\"RollingUpdate\":{}}}",
        Value::json(type_).0,
        rolling_update.unwrap_or_else(|| "null".to_owned())
    ))
}

fn validate_deployment_strategy(strategy: Option<&DeploymentStrategy>, path: &Path, errs: &mut Errs) {
    let default = DeploymentStrategy::default();
    let strategy = strategy.unwrap_or(&default);
    let type_ = s(&strategy.type_);
    match type_ {
        "Recreate" => {
            if strategy.rolling_update.is_some() {
                errs.push(FieldError::forbidden(
                    path.child("rollingUpdate").as_str(),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match &strategy.rolling_update {
            None => errs.push(FieldError::required(
                path.child("rollingUpdate").as_str(),
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let p = path.child("rollingUpdate");
                let unavailable = or_zero(&ru.max_unavailable);
                let surge = or_zero(&ru.max_surge);
                positive_int_or_percent(&unavailable, &p.child("maxUnavailable"), errs);
                positive_int_or_percent(&surge, &p.child("maxSurge"), errs);
                if int_or_percent(&unavailable) == 0 && int_or_percent(&surge) == 0 {
                    errs.push(FieldError::invalid(
                        p.child("maxUnavailable").as_str(),
                        int_or_string_value(&unavailable),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                not_more_than_100_percent(&unavailable, &p.child("maxUnavailable"), errs);
            }
        },
        _ => {
            let ru = strategy
                .rolling_update
                .as_ref()
                .map(|ru| rolling_update_value(&ru.max_unavailable, &ru.max_surge));
            errs.push(FieldError::not_supported(
                path.as_str(),
                strategy_value(type_, ru),
                &["Recreate", "RollingUpdate"],
            ));
        }
    }
}

fn deployment_spec(d: &Deployment) -> std::borrow::Cow<'_, DeploymentSpec> {
    d.spec
        .as_ref()
        .map_or_else(Default::default, std::borrow::Cow::Borrowed)
}

/// Validates a Deployment on create (`ValidateDeployment`), after
/// [`crate::defaults::default_deployment`].
pub fn validate_deployment(d: &Deployment) -> Result<Vec<Warning>, ValidationErrors> {
    let spec = deployment_spec(d);
    let errs = meta_and(
        |e| {
            validate_object_meta(
                &d.metadata,
                NameRule::Dns1123Subdomain,
                &Path::root("metadata"),
                e,
            )
        },
        |e| deployment_spec_errors(&spec, e),
    );
    let mut warnings: Vec<Warning> = name_label_warning(d.metadata.name.as_deref())
        .into_iter()
        .collect();
    warnings.extend(template_warnings(
        &spec.template,
        &Path::root("spec").child("template"),
    ));
    ValidationErrors::new(errs).into_result(warnings)
}

/// Validates a Deployment update (`ValidateDeploymentUpdate`): the new spec as on create, and
/// `spec.selector` immutable.
pub fn validate_deployment_update(
    old: &Deployment,
    new: &Deployment,
) -> Result<Vec<Warning>, ValidationErrors> {
    let (old_spec, spec) = (deployment_spec(old), deployment_spec(new));
    let mut errs = meta_and(
        |e| validate_meta_update(&old.metadata, &new.metadata, e),
        |e| deployment_spec_errors(&spec, e),
    );
    immutable(
        &normalized_selector(Some(&old_spec.selector)),
        &normalized_selector(Some(&spec.selector)),
        || selector_value(Some(&spec.selector)),
        &Path::root("spec").child("selector"),
        &mut errs,
    );
    let warnings = template_warnings(&spec.template, &Path::root("spec").child("template"));
    ValidationErrors::new(errs).into_result(warnings)
}

// ---------------------------------------------------------------------------------------------
// ReplicaSet

fn replica_set_spec_errors(spec: &ReplicaSetSpec, errs: &mut Errs) {
    let path = Path::root("spec");
    non_negative(
        i64::from(spec.replicas.unwrap_or(0)),
        &path.child("replicas"),
        errs,
    );
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    non_negative(i64::from(min_ready), &path.child("minReadySeconds"), errs);
    let template = spec.template.clone().unwrap_or_default();
    // Upstream's ReplicaSet check says "deployment" too.
    selector_and_template(&spec.selector, &template, "deployment", &path, errs);
}

fn replica_set_spec(rs: &ReplicaSet) -> std::borrow::Cow<'_, ReplicaSetSpec> {
    rs.spec
        .as_ref()
        .map_or_else(Default::default, std::borrow::Cow::Borrowed)
}

fn replica_set_warnings(spec: &ReplicaSetSpec) -> Vec<Warning> {
    spec.template
        .as_ref()
        .map(|t| template_warnings(t, &Path::root("spec").child("template")))
        .unwrap_or_default()
}

/// Validates a ReplicaSet on create (`ValidateReplicaSet`).
pub fn validate_replica_set(rs: &ReplicaSet) -> Result<Vec<Warning>, ValidationErrors> {
    let spec = replica_set_spec(rs);
    let errs = meta_and(
        |e| {
            validate_object_meta(
                &rs.metadata,
                NameRule::Dns1123Subdomain,
                &Path::root("metadata"),
                e,
            )
        },
        |e| replica_set_spec_errors(&spec, e),
    );
    let mut warnings: Vec<Warning> = name_label_warning(rs.metadata.name.as_deref())
        .into_iter()
        .collect();
    warnings.extend(replica_set_warnings(&spec));
    ValidationErrors::new(errs).into_result(warnings)
}

/// Validates a ReplicaSet update (`ValidateReplicaSetUpdate`): `spec.selector` is immutable.
pub fn validate_replica_set_update(
    old: &ReplicaSet,
    new: &ReplicaSet,
) -> Result<Vec<Warning>, ValidationErrors> {
    let (old_spec, spec) = (replica_set_spec(old), replica_set_spec(new));
    let mut errs = meta_and(
        |e| validate_meta_update(&old.metadata, &new.metadata, e),
        |e| replica_set_spec_errors(&spec, e),
    );
    immutable(
        &normalized_selector(Some(&old_spec.selector)),
        &normalized_selector(Some(&spec.selector)),
        || selector_value(Some(&spec.selector)),
        &Path::root("spec").child("selector"),
        &mut errs,
    );
    ValidationErrors::new(errs).into_result(replica_set_warnings(&spec))
}

// ---------------------------------------------------------------------------------------------
// DaemonSet

fn daemon_set_spec_errors(spec: &DaemonSetSpec, errs: &mut Errs) {
    let path = Path::root("spec");
    let sel_path = path.child("selector");
    let nil = selector_is_nil(&spec.selector);
    if !nil {
        validate_label_selector(&spec.selector, &sel_path, errs);
    }
    let tp = path.child("template");
    if let Some(selector) = Selector::convert_required(&spec.selector)
        && !selector.matches(super::template::template_labels(&spec.template))
    {
        errs.push(selector_mismatch(&spec.template, &tp));
    }
    if !nil && selector_is_empty(&spec.selector) {
        errs.push(FieldError::invalid(
            sel_path.as_str(),
            selector_value(Some(&spec.selector)),
            "empty selector is invalid for daemonset",
        ));
    }
    validate_pod_template(&spec.template, &tp, errs);
    always_restarting_template(&spec.template, "DaemonSet", &tp, errs);
    non_negative(
        i64::from(spec.min_ready_seconds.unwrap_or(0)),
        &path.child("minReadySeconds"),
        errs,
    );
    let default_strategy = Default::default();
    let strategy = spec.update_strategy.as_ref().unwrap_or(&default_strategy);
    let usp = path.child("updateStrategy");
    match s(&strategy.type_) {
        "OnDelete" => {}
        "RollingUpdate" => match &strategy.rolling_update {
            None => errs.push(FieldError::required(usp.child("rollingUpdate").as_str(), "")),
            Some(ru) => {
                let p = usp.child("rollingUpdate");
                let unavailable = or_zero(&ru.max_unavailable);
                let surge = or_zero(&ru.max_surge);
                positive_int_or_percent(&unavailable, &p.child("maxUnavailable"), errs);
                positive_int_or_percent(&surge, &p.child("maxSurge"), errs);
                not_more_than_100_percent(&unavailable, &p.child("maxUnavailable"), errs);
                not_more_than_100_percent(&surge, &p.child("maxSurge"), errs);
                let has_unavailable = int_or_percent(&unavailable) != 0;
                let has_surge = int_or_percent(&surge) != 0;
                if has_unavailable && has_surge {
                    errs.push(FieldError::invalid(
                        p.child("maxSurge").as_str(),
                        int_or_string_value(&surge),
                        "may not be set when maxUnavailable is non-zero",
                    ));
                } else if !has_unavailable && !has_surge {
                    errs.push(FieldError::required(
                        p.child("maxUnavailable").as_str(),
                        "cannot be 0 when maxSurge is 0",
                    ));
                }
            }
        },
        other => {
            let ru = strategy
                .rolling_update
                .as_ref()
                .map(|ru| rolling_update_value(&ru.max_unavailable, &ru.max_surge));
            errs.push(FieldError::not_supported(
                usp.as_str(),
                strategy_value(other, ru),
                &["RollingUpdate", "OnDelete"],
            ));
        }
    }
    if let Some(limit) = spec.revision_history_limit {
        non_negative(i64::from(limit), &path.child("revisionHistoryLimit"), errs);
    }
}

fn daemon_set_spec(ds: &DaemonSet) -> std::borrow::Cow<'_, DaemonSetSpec> {
    ds.spec
        .as_ref()
        .map_or_else(Default::default, std::borrow::Cow::Borrowed)
}

/// Validates a DaemonSet on create (`ValidateDaemonSet`).
pub fn validate_daemon_set(ds: &DaemonSet) -> Result<Vec<Warning>, ValidationErrors> {
    let spec = daemon_set_spec(ds);
    let errs = meta_and(
        |e| {
            validate_object_meta(
                &ds.metadata,
                NameRule::Dns1123Subdomain,
                &Path::root("metadata"),
                e,
            )
        },
        |e| daemon_set_spec_errors(&spec, e),
    );
    let warnings = template_warnings(&spec.template, &Path::root("spec").child("template"));
    ValidationErrors::new(errs).into_result(warnings)
}

/// Validates a DaemonSet update (`ValidateDaemonSetUpdate`): `spec.selector` is immutable.
pub fn validate_daemon_set_update(
    old: &DaemonSet,
    new: &DaemonSet,
) -> Result<Vec<Warning>, ValidationErrors> {
    let (old_spec, spec) = (daemon_set_spec(old), daemon_set_spec(new));
    let mut errs = Vec::new();
    validate_meta_update(&old.metadata, &new.metadata, &mut errs);
    immutable(
        &normalized_selector(Some(&old_spec.selector)),
        &normalized_selector(Some(&spec.selector)),
        || selector_value(Some(&spec.selector)),
        &Path::root("spec").child("selector"),
        &mut errs,
    );
    daemon_set_spec_errors(&spec, &mut errs);
    let warnings = template_warnings(&spec.template, &Path::root("spec").child("template"));
    ValidationErrors::new(errs).into_result(warnings)
}

// ---------------------------------------------------------------------------------------------
// ControllerRevision

fn controller_revision_errors(cr: &ControllerRevision, errs: &mut Errs) {
    non_negative(cr.revision, &Path::root("revision"), errs);
}

/// Validates a ControllerRevision on create (`ValidateControllerRevisionCreate`): a
/// non-negative `revision` and `data` a JSON object.
pub fn validate_controller_revision(cr: &ControllerRevision) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = Vec::new();
    validate_object_meta(
        &cr.metadata,
        NameRule::Dns1123Subdomain,
        &Path::root("metadata"),
        &mut errs,
    );
    controller_revision_errors(cr, &mut errs);
    match cr.data.as_ref().map(|d| &d.0) {
        None | Some(serde_json::Value::Null) => errs.push(FieldError::required("data", "data is mandatory")),
        Some(serde_json::Value::Object(_)) => {}
        Some(_) => errs.push(FieldError::required("data", "data must be a valid JSON object")),
    }
    ValidationErrors::new(errs).into_result(Vec::new())
}

/// Validates a ControllerRevision update (`ValidateControllerRevisionUpdate`): `data` is
/// immutable.
pub fn validate_controller_revision_update(
    old: &ControllerRevision,
    new: &ControllerRevision,
) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = Vec::new();
    validate_meta_update(&old.metadata, &new.metadata, &mut errs);
    controller_revision_errors(new, &mut errs);
    immutable(
        &old.data,
        &new.data,
        || Value::json(&new.data),
        &Path::root("data"),
        &mut errs,
    );
    ValidationErrors::new(errs).into_result(Vec::new())
}
