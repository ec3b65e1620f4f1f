//! Request bodies: size limit, JSON / YAML / protobuf decoding, and typed field validation
//! (unknown fields under `fieldValidation=Strict|Warn`, type errors always).

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use crate::protobuf;
use crate::resources::Resource;
use crate::status::ApiError;

/// The largest request body accepted, like kube-apiserver's 3 MiB.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Reads a whole body, failing with 413 past [`MAX_BODY`].
pub async fn read<B>(body: B) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(MAX_BODY)),
        Err(e) => Err(ApiError::bad_request(format!("reading the request body: {e}"))),
    }
}

/// Decodes a body by its content type into JSON.
pub fn decode(content_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    match ct {
        "application/vnd.kubernetes.protobuf" => protobuf::decode(bytes).map_err(|e| match e {
            protobuf::ProtobufError::UnsupportedKind { .. } => ApiError::unsupported_media_type(ct),
            other => ApiError::bad_request(other.to_string()),
        }),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml_ng::from_slice::<Value>(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}"))),
        _ => serde_json::from_slice::<Value>(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}"))),
    }
}

/// `fieldValidation` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop unknown fields.
    Ignore,
    /// Keep going, with a `Warning` header per unknown field (the default).
    #[default]
    Warn,
    /// Reject the request.
    Strict,
}

impl FieldValidation {
    /// From the query parameter.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            _ => FieldValidation::Warn,
        }
    }
}

fn unknown_fields(original: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (original, known) {
        (Value::Object(o), Value::Object(k)) => {
            for (key, v) in o {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => unknown_fields(v, kv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(o), Value::Array(k)) => {
            for (i, (a, b)) in o.iter().zip(k).enumerate() {
                unknown_fields(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn check_typed<T: serde::de::DeserializeOwned + serde::Serialize>(
    value: &Value,
) -> Result<(Value, Vec<String>), String> {
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let known = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    unknown_fields(value, &known, "", &mut unknown);
    // Fields that serialise away when empty (`labels: {}`) are not unknown: only report keys
    // whose parent exists in the typed form.
    Ok((known, unknown))
}

/// Checks an object against its kind's schema: returns the object (with unknown fields dropped
/// unless the mode is Ignore... they are dropped in every mode) and the warnings to send.
pub fn validate_fields(
    resource: &Resource,
    value: &Value,
    mode: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    use podvisor_core::k8s_openapi::api;
    let result = match (resource.group, resource.plural) {
        ("", "pods") => check_typed::<api::core::v1::Pod>(value),
        ("", "services") => check_typed::<api::core::v1::Service>(value),
        ("", "namespaces") => check_typed::<api::core::v1::Namespace>(value),
        ("", "endpoints") => check_typed::<api::core::v1::Endpoints>(value),
        ("", "events") => check_typed::<api::core::v1::Event>(value),
        ("", "nodes") => check_typed::<api::core::v1::Node>(value),
        ("discovery.k8s.io", "endpointslices") => check_typed::<api::discovery::v1::EndpointSlice>(value),
        ("events.k8s.io", "events") => check_typed::<api::events::v1::Event>(value),
        ("coordination.k8s.io", "leases") => check_typed::<api::coordination::v1::Lease>(value),
        _ => Ok((value.clone(), Vec::new())),
    };
    let (known, unknown) = result.map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            resource.kind, resource.version, resource.kind
        ))
    })?;
    let messages: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    match mode {
        FieldValidation::Strict if !messages.is_empty() => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            messages.join(", ")
        ))),
        FieldValidation::Warn => Ok((known, messages)),
        _ => Ok((known, Vec::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strict_rejects_and_warn_reports_unknown_fields() {
        let pods = Resource::find("", "v1", "pods").unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "imagee": "x"}]}});
        let e = validate_fields(pods, &pod, FieldValidation::Strict).unwrap_err();
        assert_eq!(
            e.message,
            "strict decoding error: unknown field \"spec.containers[0].imagee\""
        );
        let (clean, warnings) = validate_fields(pods, &pod, FieldValidation::Warn).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(clean["spec"]["containers"][0].get("imagee").is_none());
        let bad = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": "nope"}});
        assert_eq!(
            validate_fields(pods, &bad, FieldValidation::Ignore)
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn decodes_yaml_json_and_rejects_garbage() {
        assert_eq!(decode("application/yaml", b"a: 1").unwrap(), json!({"a": 1}));
        assert_eq!(decode("application/json", b"{\"a\":1}").unwrap(), json!({"a": 1}));
        assert_eq!(decode("application/json", b"{").unwrap_err().code, 400);
        assert_eq!(
            decode("application/vnd.kubernetes.protobuf", b"xx")
                .unwrap_err()
                .code,
            400
        );
    }
}
