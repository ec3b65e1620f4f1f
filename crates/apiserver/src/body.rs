//! Request bodies: size limit, JSON / YAML / protobuf decoding, and typed field validation
//! (unknown fields under `fieldValidation=Strict|Warn`, type errors always).
//!
//! **Budgets.** Bodies are at most [`MAX_BODY`] (413). JSON nests at most 128 levels
//! (serde_json's limit). YAML is checked for nesting deeper than [`MAX_YAML_DEPTH`] before it is
//! parsed (400), then parsed on the blocking pool, never on an async worker, for at most
//! [`YAML_DECODE_TIMEOUT`]. Under `fieldValidation=Strict` a JSON object with a duplicate key is
//! rejected (400), as kube-apiserver's strict decoder does.

use std::collections::HashSet;
use std::time::Duration;

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

/// The deepest YAML nesting (block indentation levels plus flow brackets) accepted.
pub const MAX_YAML_DEPTH: usize = 100;

/// The longest a YAML body may take to decode.
pub const YAML_DECODE_TIMEOUT: Duration = Duration::from_secs(5);

fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

fn is_yaml(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/yaml" | "application/x-yaml" | "text/yaml"
    )
}

/// How deeply a YAML document nests: indentation levels of block collections plus open flow
/// brackets, measured in one pass without parsing (quoted scalars and comments skipped).
pub fn yaml_depth(bytes: &[u8]) -> usize {
    let mut deepest = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for line in bytes.split(|b| *b == b'\n') {
        let indent = line.iter().take_while(|b| **b == b' ').count();
        let rest = line.get(indent..).unwrap_or_default();
        if flow == 0 && !rest.is_empty() && !rest.starts_with(b"#") {
            while indents.last().is_some_and(|i| *i > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|i| *i < indent) {
                indents.push(indent);
            }
            // Each "- " starting a line (`- - - x`) opens one more level.
            let mut dashes = 0usize;
            let mut item = rest;
            while let Some(after) = item.strip_prefix(b"- ") {
                dashes += 1;
                item = after.trim_ascii_start();
            }
            deepest = deepest.max(indents.len().saturating_add(dashes));
        }
        let mut quote: Option<u8> = None;
        for &b in rest {
            match (quote, b) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'') => quote = Some(b),
                (None, b'#') => break,
                (None, b'[' | b'{') => {
                    flow = flow.saturating_add(1);
                    deepest = deepest.max(indents.len().saturating_add(flow));
                }
                (None, b']' | b'}') => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
    }
    deepest
}

/// The path of the first duplicate key in a JSON document (`metadata.name`), if any.
pub fn first_duplicate_key(bytes: &[u8]) -> Option<String> {
    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

    struct Dups<'a> {
        path: String,
        found: &'a mut Option<String>,
    }

    impl<'de> DeserializeSeed<'de> for Dups<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Dups<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let found = self.found;
            let mut i = 0usize;
            while seq
                .next_element_seed(Dups {
                    path: format!("{}[{i}]", self.path),
                    found: &mut *found,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let found = self.found;
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                if !seen.insert(key) && found.is_none() {
                    *found = Some(path.clone());
                }
                map.next_value_seed(Dups {
                    path,
                    found: &mut *found,
                })?;
            }
            Ok(())
        }
    }

    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    // A malformed document is reported by the real decoding.
    let _ = Dups {
        path: String::new(),
        found: &mut found,
    }
    .deserialize(&mut de);
    found
}

/// Decodes a request body by its content type into JSON, within the [module](self)'s budgets:
/// YAML off the async workers, bounded in depth and time; duplicate JSON keys rejected under
/// `fieldValidation=Strict`.
pub async fn decode_request(
    content_type: &str,
    bytes: Bytes,
    mode: FieldValidation,
) -> Result<Value, ApiError> {
    let ct = media_type(content_type).to_string();
    if is_yaml(&ct) {
        let depth = yaml_depth(&bytes);
        if depth > MAX_YAML_DEPTH {
            return Err(ApiError::bad_request(format!(
                "error decoding YAML: nesting depth {depth} exceeds the limit of {MAX_YAML_DEPTH}"
            )));
        }
        let task = tokio::task::spawn_blocking(move || decode(&ct, &bytes));
        return match tokio::time::timeout(YAML_DECODE_TIMEOUT, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(ApiError::internal(format!("decoding YAML failed: {e}"))),
            Err(_) => Err(ApiError::bad_request(format!(
                "error decoding YAML: it took longer than {}s",
                YAML_DECODE_TIMEOUT.as_secs()
            ))),
        };
    }
    if mode == FieldValidation::Strict
        && ct != "application/vnd.kubernetes.protobuf"
        && let Some(path) = first_duplicate_key(&bytes)
    {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: json: duplicate field \"{path}\""
        )));
    }
    decode(&ct, &bytes)
}

/// Decodes a body by its content type into JSON.
pub fn decode(content_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    let ct = media_type(content_type);
    match ct {
        "application/vnd.kubernetes.protobuf" => protobuf::decode(bytes).map_err(|e| match e {
            protobuf::ProtobufError::UnsupportedKind { .. } => ApiError::unsupported_media_type(ct),
            other => ApiError::bad_request(other.to_string()),
        }),
        ct if is_yaml(ct) => serde_yaml_ng::from_slice::<Value>(bytes)
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

/// Checks an object against its kind's schema: returns the object (with unknown fields dropped
/// unless the mode is Ignore... they are dropped in every mode) and the warnings to send.
pub fn validate_fields(
    resource: &Resource,
    value: &Value,
    mode: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let (known, unknown) = resource.strategy.decode_known(value).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            resource.kind, resource.version, resource.kind
        ))
    })?;
    validate_metadata_of(resource, &known)?;
    let messages: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    match mode {
        // kube-apiserver's decode error, as kubectl shows it: `Deployment in version "v1" cannot
        // be handled as a Deployment: strict decoding error: unknown field "spec.foo"`.
        FieldValidation::Strict if !messages.is_empty() => Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            resource.kind,
            resource.version,
            resource.kind,
            messages.join(", ")
        ))),
        FieldValidation::Warn => Ok((known, messages)),
        _ => Ok((known, Vec::new())),
    }
}

/// The metadata (name by the kind's rule, labels, annotations) of the kinds whose validation
/// is only their metadata ([`crate::strategy::Strategy::validates_only_metadata`]; the others
/// are validated whole by their strategy). 422 Invalid. A name not set yet (`generateName`) is
/// checked once generated.
fn validate_metadata_of(resource: &Resource, object: &Value) -> Result<(), ApiError> {
    let metadata_only = resource.strategy.validates_only_metadata();
    let Some(meta) = object.get("metadata").filter(|_| metadata_only) else {
        return Ok(());
    };
    let meta: podvisor_core::metav1::ObjectMeta =
        serde_json::from_value(meta.clone()).map_err(|e| ApiError::bad_request(format!("metadata: {e}")))?;
    let name = meta.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Ok(());
    }
    podvisor_api::validation::validate_metadata(resource.kind, &meta)
        .map_err(|e| ApiError::invalid(resource, &name, &e))
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
            "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].imagee\""
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

    #[test]
    fn yaml_depth_counts_blocks_sequences_and_flows() {
        assert_eq!(yaml_depth(b"a: 1\nb: 2\n"), 1);
        assert_eq!(yaml_depth(b"a:\n  b:\n    c: 1\nd: 2\n"), 3);
        assert_eq!(yaml_depth(b"a:\n- - x\n"), 3);
        assert_eq!(yaml_depth(b"a: [[1], {b: [2]}]\n"), 4);
        assert_eq!(
            yaml_depth(b"a: \"[[[[\" # [[[\n"),
            1,
            "quoted and commented brackets"
        );
        let deep = format!("a: {}{}", "[".repeat(40_000), "]".repeat(40_000));
        assert!(yaml_depth(deep.as_bytes()) > MAX_YAML_DEPTH);
        let mut block = String::new();
        for i in 0..200 {
            block.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        assert!(yaml_depth(block.as_bytes()) > MAX_YAML_DEPTH);
    }

    #[tokio::test]
    async fn deep_yaml_is_refused_before_parsing_and_duplicates_under_strict() {
        let deep = format!("a: {}{}", "[".repeat(40_000), "]".repeat(40_000));
        let started = std::time::Instant::now();
        let e = decode_request("application/yaml", Bytes::from(deep), FieldValidation::Warn)
            .await
            .unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("nesting depth"), "{}", e.message);
        assert!(started.elapsed() < Duration::from_secs(1));
        let ok = decode_request(
            "application/yaml",
            Bytes::from_static(b"a:\n  b: [1, 2]\n"),
            FieldValidation::Strict,
        )
        .await
        .unwrap();
        assert_eq!(ok, json!({"a": {"b": [1, 2]}}));
        let dup = Bytes::from_static(br#"{"metadata": {"name": "a", "labels": {"x": "1"}, "name": "b"}}"#);
        let e = decode_request("application/json", dup.clone(), FieldValidation::Strict)
            .await
            .unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "strict decoding error: json: duplicate field \"metadata.name\""
        );
        assert!(
            decode_request("application/json", dup, FieldValidation::Warn)
                .await
                .is_ok()
        );
        assert_eq!(
            first_duplicate_key(br#"[{"a": 1}, {"a": 2, "a": 3}]"#).as_deref(),
            Some("[1].a")
        );
        assert_eq!(first_duplicate_key(br#"{"a": {"b": 1}, "c": {"b": 2}}"#), None);
    }

    #[test]
    fn strict_field_validation_covers_config_maps_and_secrets() {
        let cms = Resource::find("", "v1", "configmaps").unwrap();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}, "dataa": {}});
        let e = validate_fields(cms, &cm, FieldValidation::Strict).unwrap_err();
        assert_eq!(
            e.message,
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"dataa\""
        );
        let secrets = Resource::find("", "v1", "secrets").unwrap();
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}, "stringData": {"k": "v"}, "typo": 1});
        let e = validate_fields(secrets, &secret, FieldValidation::Strict).unwrap_err();
        assert_eq!(
            e.message,
            "Secret in version \"v1\" cannot be handled as a Secret: strict decoding error: unknown field \"typo\""
        );
        let (clean, _) = validate_fields(secrets, &secret, FieldValidation::Ignore).unwrap();
        assert_eq!(clean["stringData"]["k"], "v");
    }

    #[test]
    fn names_are_validated_for_kinds_without_a_validator() {
        for (group, plural, kind) in [
            ("", "namespaces", "Namespace"),
            ("", "nodes", "Node"),
            ("", "events", "Event"),
            ("", "endpoints", "Endpoints"),
            ("discovery.k8s.io", "endpointslices", "EndpointSlice"),
        ] {
            let r = Resource::find(group, "v1", plural).unwrap();
            for name in ["a/b", "..", "Upper", "nul\u{0}", &"x".repeat(300)] {
                let mut obj = json!({"kind": kind, "metadata": {"name": name}});
                if plural == "endpointslices" {
                    obj["addressType"] = json!("IPv4");
                }
                let e = validate_fields(r, &obj, FieldValidation::Ignore).unwrap_err();
                assert_eq!(
                    (e.code, e.reason),
                    (422, "Invalid"),
                    "{kind} {name:?}: {}",
                    e.message
                );
                assert_eq!(e.causes[0].field, "metadata.name");
            }
        }
        let ns = Resource::find("", "v1", "namespaces").unwrap();
        assert!(
            validate_fields(
                ns,
                &json!({"metadata": {"name": "team-a"}}),
                FieldValidation::Strict
            )
            .is_ok()
        );
        assert_eq!(
            validate_fields(
                ns,
                &json!({"metadata": {"name": "team.a"}}),
                FieldValidation::Strict
            )
            .unwrap_err()
            .code,
            422
        );
    }
}
