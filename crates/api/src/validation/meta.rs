//! `metadata` validation shared by every kind: name, namespace, labels and annotations.

use std::collections::BTreeMap;

use podvisor_core::metav1::ObjectMeta;

use super::field::{FieldError, Path, ValidationErrors, Value};
use super::format;

/// Total size limit of all annotation keys and values, in bytes.
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Which format `metadata.name` must have.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NameRule {
    /// Pods, namespaces' objects in general: a DNS-1123 subdomain.
    Dns1123Subdomain,
    /// Services: a DNS-1035 label.
    Dns1035Label,
    /// Namespaces: a DNS-1123 label.
    Dns1123Label,
}

/// The `metadata.name` rule of a kind, as kube-apiserver's validators name it: a DNS-1123
/// label for Namespaces, a DNS-1035 label for Services, a DNS-1123 subdomain for every other
/// kind podvisor serves (Pod, Node, Event, Endpoints, EndpointSlice, ConfigMap, Secret, ...).
pub(crate) fn name_rule(kind: &str) -> NameRule {
    match kind {
        "Namespace" => NameRule::Dns1123Label,
        "Service" => NameRule::Dns1035Label,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Validates the `metadata` (name by the kind's rule, namespace, labels, annotations) of an
/// object of `kind` that has no validator of its own here: Namespace, Node, Event, Endpoints,
/// EndpointSlice. A name with `/`, `..`, upper case or NUL, or longer than the rule allows, is
/// invalid; errors are at `metadata.*` with kube-apiserver's messages.
pub fn validate_metadata(kind: &str, meta: &ObjectMeta) -> Result<(), ValidationErrors> {
    let mut errs = Vec::new();
    validate_object_meta(meta, name_rule(kind), &Path::root("metadata"), &mut errs);
    ValidationErrors::new(errs).into_result(())
}

/// Validate `metadata` like `ValidateObjectMeta` (name, namespace, labels, annotations).
///
/// An empty namespace is accepted: kube-apiserver fills it from the request before validating,
/// and on podvisor that is the API layer's job.
pub(crate) fn validate_object_meta(
    meta: &ObjectMeta,
    rule: NameRule,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    let name = meta.name.as_deref().unwrap_or("");
    let name_path = path.child("name");
    if name.is_empty() {
        errs.push(FieldError::required(
            name_path.as_str(),
            "name or generateName is required",
        ));
    } else {
        let msgs = match rule {
            NameRule::Dns1123Subdomain => format::is_dns1123_subdomain(name),
            NameRule::Dns1035Label => format::is_dns1035_label(name),
            NameRule::Dns1123Label => format::is_dns1123_label(name),
        };
        for m in msgs {
            errs.push(FieldError::invalid(name_path.as_str(), Value::str(name), m));
        }
    }
    let ns = meta.namespace.as_deref().unwrap_or("");
    if !ns.is_empty() {
        for m in format::is_dns1123_label(ns) {
            errs.push(FieldError::invalid(
                path.child("namespace").as_str(),
                Value::str(ns),
                m,
            ));
        }
    }
    if let Some(labels) = &meta.labels {
        validate_labels(labels, &path.child("labels"), errs);
    }
    if let Some(annotations) = &meta.annotations {
        validate_annotations(annotations, &path.child("annotations"), errs);
    }
}

/// `ValidateAnnotations`: keys are qualified names (case-insensitively), and keys and values
/// together are at most 256 KiB; errors sit at `path` itself.
pub(crate) fn validate_annotations(
    annotations: &BTreeMap<String, String>,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    let mut total = 0usize;
    for (k, v) in annotations {
        for m in format::is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path.as_str(), Value::str(k), m));
        }
        total = total.saturating_add(k.len()).saturating_add(v.len());
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path.as_str(), TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

/// The immutable part of `ValidateObjectMetaUpdate`: `metadata.name` and `metadata.namespace`
/// may not change (`Invalid value: <new>: field is immutable`).
pub(crate) fn validate_object_meta_update(old: &ObjectMeta, new: &ObjectMeta, errs: &mut Vec<FieldError>) {
    for (field, o, n) in [
        ("name", &old.name, &new.name),
        ("namespace", &old.namespace, &new.namespace),
    ] {
        if o != n {
            errs.push(FieldError::invalid(
                Path::root("metadata").child(field).as_str(),
                Value::str(n.as_deref().unwrap_or("")),
                "field is immutable",
            ));
        }
    }
}

/// `ValidateLabels`: keys are qualified names, values label values; errors sit at `path` itself.
pub(crate) fn validate_labels(labels: &BTreeMap<String, String>, path: &Path, errs: &mut Vec<FieldError>) {
    for (k, v) in labels {
        for m in format::is_qualified_name(k) {
            errs.push(FieldError::invalid(path.as_str(), Value::str(k), m));
        }
        for m in format::is_label_value(v) {
            errs.push(FieldError::invalid(path.as_str(), Value::str(v), m));
        }
    }
}

/// The finalizer names kube-apiserver knows without a domain prefix.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// Validates a Namespace's `spec.finalizers`, as `ValidateNamespaceFinalizeUpdate` does for the
/// `finalize` subresource: each is a qualified name, and one without a `/` is a standard one.
pub fn validate_namespace_finalizers(finalizers: &[String]) -> Result<(), ValidationErrors> {
    let mut errs = Vec::new();
    let path = Path::root("spec").child("finalizers");
    for (i, name) in finalizers.iter().enumerate() {
        let at = path.index(i);
        for m in format::is_qualified_name(name) {
            errs.push(FieldError::invalid(at.as_str(), Value::str(name), m));
        }
        if !name.contains('/') && !STANDARD_FINALIZERS.contains(&name.as_str()) {
            errs.push(FieldError::invalid(
                at.as_str(),
                Value::str(name),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    ValidationErrors::new(errs).into_result(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_finalizers_are_standard_or_qualified() {
        let ok = ["kubernetes", "example.com/keep"].map(String::from);
        assert!(validate_namespace_finalizers(&ok).is_ok());
        let bad = ["kubernetes", "keep", "example.com/not ok"].map(String::from);
        let errs = validate_namespace_finalizers(&bad).unwrap_err();
        let messages: Vec<String> = errs.errors().iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert_eq!(
            messages[0],
            "spec.finalizers[1]: Invalid value: \"keep\": name is neither a standard finalizer name nor is it fully qualified"
        );
        assert!(
            messages[1].starts_with(
                "spec.finalizers[2]: Invalid value: \"example.com/not ok\": name part must consist of"
            ),
            "{messages:?}"
        );
    }
}
