//! The downward API's `fieldRef.fieldPath`: which pod fields a container's `env` and a
//! `downwardAPI` volume may name, and their values (upstream: `pkg/fieldpath` and the
//! kubelet's `podFieldSelectorRuntimeValue`).

use std::collections::BTreeMap;

use crate::corev1::Pod;
use crate::object::namespace_of;

/// Where a field path is used: the two accept different sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldContext {
    /// `env[].valueFrom.fieldRef`: metadata by key, the node and service account, the pod IP.
    Env,
    /// `downwardAPI` volume items: metadata, whole label and annotation maps included.
    Volume,
}

/// What a field path resolves against besides the pod itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct RuntimeFields<'a> {
    /// The pod's IP once its sandbox has one.
    pub pod_ip: Option<&'a str>,
    /// The node running the pod (`spec.nodeName` when the pod does not carry it yet).
    pub node_name: Option<&'a str>,
}

/// A resolved field: text, or a whole label/annotation map (a volume writes it as
/// `key="value"` lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue<'p> {
    /// The field's text.
    Text(String),
    /// `metadata.labels` or `metadata.annotations`.
    Map(Option<&'p BTreeMap<String, String>>),
}

/// A field path the context does not support.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported fieldPath {0:?}")]
pub struct UnsupportedField(pub String);

/// Resolves `path` on `pod` for `context`.
pub fn resolve<'p>(
    pod: &'p Pod,
    path: &str,
    context: FieldContext,
    runtime: RuntimeFields<'_>,
) -> Result<FieldValue<'p>, UnsupportedField> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let text = |s: Option<&str>| FieldValue::Text(s.unwrap_or_default().to_string());
    let keyed = |prefix: &str| path.strip_prefix(prefix)?.strip_suffix("']");
    let env = context == FieldContext::Env;
    let value = match path {
        "metadata.name" => text(meta.name.as_deref()),
        "metadata.namespace" => text(Some(namespace_of(meta))),
        "metadata.uid" => text(meta.uid.as_deref()),
        "metadata.labels" if !env => FieldValue::Map(meta.labels.as_ref()),
        "metadata.annotations" if !env => FieldValue::Map(meta.annotations.as_ref()),
        "status.podIP" | "status.podIPs" if env => text(runtime.pod_ip),
        "spec.nodeName" if env => text(spec.and_then(|s| s.node_name.as_deref()).or(runtime.node_name)),
        "spec.serviceAccountName" if env => text(Some(
            spec.and_then(|s| s.service_account_name.as_deref())
                .unwrap_or("default"),
        )),
        _ => {
            if let Some(key) = keyed("metadata.labels['") {
                text(meta.labels.as_ref().and_then(|m| m.get(key)).map(String::as_str))
            } else if let Some(key) = keyed("metadata.annotations['") {
                text(
                    meta.annotations
                        .as_ref()
                        .and_then(|m| m.get(key))
                        .map(String::as_str),
                )
            } else {
                return Err(UnsupportedField(path.to_string()));
            }
        }
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "uid": "u1", "labels": {"app": "web"},
                         "annotations": {"note": "hi"}},
            "spec": {"containers": []}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn text(v: Result<FieldValue<'_>, UnsupportedField>) -> String {
        match v {
            Ok(FieldValue::Text(t)) => t,
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn env_fields() {
        let p = pod();
        let rt = RuntimeFields {
            pod_ip: Some("10.88.0.5"),
            node_name: Some("n1"),
        };
        let env = |path| text(resolve(&p, path, FieldContext::Env, rt));
        assert_eq!(env("metadata.name"), "web");
        assert_eq!(env("metadata.namespace"), "default");
        assert_eq!(env("metadata.uid"), "u1");
        assert_eq!(env("metadata.labels['app']"), "web");
        assert_eq!(env("metadata.labels['none']"), "");
        assert_eq!(env("metadata.annotations['note']"), "hi");
        assert_eq!(env("status.podIP"), "10.88.0.5");
        assert_eq!(env("spec.nodeName"), "n1");
        assert_eq!(env("spec.serviceAccountName"), "default");
        assert_eq!(
            resolve(&p, "metadata.labels", FieldContext::Env, rt),
            Err(UnsupportedField("metadata.labels".into()))
        );
        assert!(resolve(&p, "spec.hostname", FieldContext::Env, rt).is_err());
    }

    #[test]
    fn volume_fields() {
        let p = pod();
        let rt = RuntimeFields::default();
        assert_eq!(
            text(resolve(&p, "metadata.name", FieldContext::Volume, rt)),
            "web"
        );
        assert!(matches!(
            resolve(&p, "metadata.labels", FieldContext::Volume, rt),
            Ok(FieldValue::Map(Some(m))) if m.get("app").map(String::as_str) == Some("web")
        ));
        assert!(resolve(&p, "status.podIP", FieldContext::Volume, rt).is_err());
        assert!(resolve(&p, "spec.nodeName", FieldContext::Volume, rt).is_err());
    }
}
