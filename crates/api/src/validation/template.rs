//! Pod templates of the workload kinds (`ValidatePodTemplateSpec`) and their label selectors
//! (`ValidateLabelSelector`, `LabelSelectorAsSelector` and matching).

use std::collections::BTreeMap;

use podvisor_core::corev1::{PodSpec, PodTemplateSpec};
use podvisor_core::metav1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};

use super::field::{FieldError, Path, Value, Warning, go_json_escape};
use super::format;
use super::meta::{validate_annotations, validate_labels};
use super::pod::{Errs, validate_pod_spec};

/// The template's labels, or none.
pub(super) fn template_labels(t: &PodTemplateSpec) -> Option<&BTreeMap<String, String>> {
    t.metadata.as_ref().and_then(|m| m.labels.as_ref())
}

/// The template's pod spec, or an empty one (Go's is a value, never nil).
pub(super) fn template_spec(t: &PodTemplateSpec) -> std::borrow::Cow<'_, PodSpec> {
    match &t.spec {
        Some(spec) => std::borrow::Cow::Borrowed(spec),
        None => std::borrow::Cow::Owned(PodSpec::default()),
    }
}

/// `ValidatePodTemplateSpec` at `path` (e.g. `spec.template`): labels at `<path>.labels` and
/// annotations at `<path>.annotations` (kube-apiserver's paths, without `metadata`), the pod
/// spec at `<path>.spec` with the pod rules that apply to templates, and no ephemeral
/// containers.
pub(super) fn validate_pod_template(t: &PodTemplateSpec, path: &Path, errs: &mut Errs) {
    let meta = t.metadata.clone().unwrap_or_default();
    if let Some(labels) = &meta.labels {
        validate_labels(labels, &path.child("labels"), errs);
    }
    if let Some(annotations) = &meta.annotations {
        validate_annotations(annotations, &path.child("annotations"), errs);
    }
    let spec = template_spec(t);
    validate_pod_spec(&spec, &path.child("spec"), errs);
    if spec.ephemeral_containers.as_ref().is_some_and(|e| !e.is_empty()) {
        errs.push(FieldError::forbidden(
            path.child("spec").child("ephemeralContainers").as_str(),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// The warnings kube-apiserver attaches to a pod template (a negative grace period).
pub(super) fn template_warnings(t: &PodTemplateSpec, path: &Path) -> Vec<Warning> {
    let negative = t
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .is_some_and(|g| g < 0);
    if negative {
        vec![Warning {
            path: path
                .child("spec")
                .child("terminationGracePeriodSeconds")
                .to_string(),
            message: "must be >= 0; negative values are invalid and will be treated as 1".to_owned(),
        }]
    } else {
        Vec::new()
    }
}

/// `<path>.metadata.labels: Invalid value: {...}: `selector` does not match template `labels``.
pub(super) fn selector_mismatch(t: &PodTemplateSpec, path: &Path) -> FieldError {
    FieldError::invalid(
        path.child("metadata").child("labels").as_str(),
        Value::json(&template_labels(t)),
        "`selector` does not match template `labels`",
    )
}

/// Whether a selector is absent: `k8s-openapi` decodes a missing (required) `selector` as an
/// empty one, so a selector with neither `matchLabels` nor `matchExpressions` present is taken
/// for Go's nil selector.
pub(super) fn selector_is_nil(sel: &LabelSelector) -> bool {
    sel.match_labels.is_none() && sel.match_expressions.is_none()
}

/// Whether a selector has no requirement (`len(matchLabels)+len(matchExpressions) == 0`).
pub(super) fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && sel.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// `metav1validation.ValidateLabelSelector` at `path`.
pub(super) fn validate_label_selector(sel: &LabelSelector, path: &Path, errs: &mut Errs) {
    if let Some(labels) = &sel.match_labels {
        validate_labels(labels, &path.child("matchLabels"), errs);
    }
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = req.values.as_deref().unwrap_or(&[]);
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                p.child("values").as_str(),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                p.child("values").as_str(),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(
                p.child("operator").as_str(),
                Value::str(other),
                "not a valid selector operator",
            )),
        }
        for m in format::is_qualified_name(&req.key) {
            errs.push(FieldError::invalid(
                p.child("key").as_str(),
                Value::str(&req.key),
                m,
            ));
        }
        for (j, v) in values.iter().enumerate() {
            for m in format::is_label_value(v) {
                errs.push(FieldError::invalid(
                    p.child("values").index(j).as_str(),
                    Value::str(v),
                    m,
                ));
            }
        }
    }
}

/// A selector converted like `metav1.LabelSelectorAsSelector`: `None` when it does not convert
/// (an invalid key, value or operator, or missing/extra values).
pub(super) enum Selector<'a> {
    /// Go's nil selector: matches nothing, and is not "empty".
    Nothing,
    /// The requirements of a valid selector (none: matches everything).
    Requirements(&'a LabelSelector),
}

impl<'a> Selector<'a> {
    /// Convert a required `selector` of an `apps/v1` spec, treating an absent one (see
    /// [`selector_is_nil`]) as nil.
    pub(super) fn convert_required(sel: &'a LabelSelector) -> Option<Self> {
        Self::convert((!selector_is_nil(sel)).then_some(sel))
    }

    /// Convert an optional selector (`None` is Go's nil).
    pub(super) fn convert(sel: Option<&'a LabelSelector>) -> Option<Self> {
        let Some(sel) = sel else {
            return Some(Selector::Nothing);
        };
        let mut probe = Vec::new();
        validate_label_selector(sel, &Path::root(""), &mut probe);
        probe.is_empty().then_some(Selector::Requirements(sel))
    }

    /// `selector.Empty()`: a valid selector without requirements.
    pub(super) fn is_empty(&self) -> bool {
        matches!(self, Selector::Requirements(sel) if selector_is_empty(sel))
    }

    /// `selector.Matches(labels)`.
    pub(super) fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let Selector::Requirements(sel) = self else {
            return false;
        };
        let empty = BTreeMap::new();
        let labels = labels.unwrap_or(&empty);
        let by_label = sel
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v));
        by_label
            && sel
                .match_expressions
                .iter()
                .flatten()
                .all(|r| requirement_matches(r, labels))
    }
}

fn requirement_matches(r: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let value = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// A label selector as kube-apiserver prints it: Go's JSON of `metav1.LabelSelector`
/// (`matchLabels` before `matchExpressions`, empty ones omitted).
pub(super) fn selector_value(sel: Option<&LabelSelector>) -> Value {
    let Some(sel) = sel else {
        return Value::null();
    };
    let mut fields = Vec::new();
    if let Some(labels) = sel.match_labels.as_ref().filter(|l| !l.is_empty()) {
        fields.push(format!("\"matchLabels\":{}", json(labels)));
    }
    if let Some(exprs) = sel.match_expressions.as_ref().filter(|e| !e.is_empty()) {
        let items: Vec<String> = exprs
            .iter()
            .map(|r| {
                let mut item = format!("{{\"key\":{},\"operator\":{}", json(&r.key), json(&r.operator));
                if let Some(values) = r.values.as_ref().filter(|v| !v.is_empty()) {
                    item.push_str(&format!(",\"values\":{}", json(values)));
                }
                item.push('}');
                item
            })
            .collect();
        fields.push(format!("\"matchExpressions\":[{}]", items.join(",")));
    }
    Value::raw(format!("{{{}}}", fields.join(",")))
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).map_or_else(|_| "null".to_owned(), go_json_escape)
}

/// `ValidateNonnegativeField`: `Invalid value: <v>: must be greater than or equal to 0`.
pub(super) fn non_negative(v: i64, path: &Path, errs: &mut Errs) {
    if v < 0 {
        errs.push(FieldError::invalid(
            path.as_str(),
            Value::int(v),
            super::pod::NON_NEGATIVE,
        ));
    }
}

/// `ValidateImmutableField`: when `old != new`, `Invalid value: <new>: field is immutable`.
pub(super) fn immutable<T: PartialEq>(
    old: &T,
    new: &T,
    value: impl FnOnce() -> Value,
    path: &Path,
    errs: &mut Errs,
) {
    if old != new {
        errs.push(FieldError::invalid(path.as_str(), value(), "field is immutable"));
    }
}

/// An optional integer as kube-apiserver prints a pointer: the number, or `null`.
pub(super) fn opt_int(v: Option<impl Into<i64>>) -> Value {
    v.map_or_else(Value::null, Value::int)
}

/// The metadata checks of an update: name and namespace immutable, the new labels and
/// annotations valid (the name itself is not re-validated, as upstream).
pub(super) fn validate_meta_update(old: &ObjectMeta, new: &ObjectMeta, errs: &mut Errs) {
    super::meta::validate_object_meta_update(old, new, errs);
    let path = Path::root("metadata");
    if let Some(labels) = &new.labels {
        validate_labels(labels, &path.child("labels"), errs);
    }
    if let Some(annotations) = &new.annotations {
        validate_annotations(annotations, &path.child("annotations"), errs);
    }
}

/// A selector with empty lists and maps as absent, for apimachinery's semantic equality (which
/// does not tell nil from empty).
pub(super) fn normalized_selector(sel: Option<&LabelSelector>) -> Option<LabelSelector> {
    sel.map(|sel| LabelSelector {
        match_labels: sel.match_labels.clone().filter(|l| !l.is_empty()),
        match_expressions: sel
            .match_expressions
            .as_ref()
            .map(|exprs| {
                exprs
                    .iter()
                    .map(|r| LabelSelectorRequirement {
                        values: r.values.clone().filter(|v| !v.is_empty()),
                        ..r.clone()
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|e| !e.is_empty()),
    })
}

/// The create-time warning of Deployments, ReplicaSets and Jobs whose name is not a DNS-1123
/// label (their pods' names and hostnames derive from it).
pub(super) fn name_label_warning(name: Option<&str>) -> Option<Warning> {
    let msgs = format::is_dns1123_label(name.unwrap_or(""));
    (!msgs.is_empty()).then(|| Warning {
        path: "metadata.name".to_owned(),
        message: format!(
            "this is used in Pod names and hostnames, which can result in surprising behavior; a DNS label is recommended: [{}]",
            msgs.join(" ")
        ),
    })
}
