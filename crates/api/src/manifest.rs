//! Loading Kubernetes objects from YAML or JSON text into typed [`Object`]s.
//!
//! - YAML may hold several documents separated by `---`; empty documents are skipped.
//! - JSON holds one value. (JSON is also valid YAML, so [`load`] accepts both.)
//! - A `kind: List` (or any `…List` with an `items` array, such as `PodList`) is expanded into
//!   its items, wherever it appears.
//! - Pods, Services and Namespaces are decoded into their typed form; every other kind is kept
//!   as [`Object::Other`] so nothing is lost.
//!
//! Unknown fields in a typed kind are ignored by default. With [`FieldValidation::Strict`] they
//! are an error naming each field, as kube-apiserver's `fieldValidation=Strict` does. They are
//! found by re-serializing the typed object and comparing its keys with the input's.

use podvisor_core::corev1::{Namespace, Pod, Service};
use serde_json::Value;

/// A Kubernetes object read from a manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A `v1` `Pod`.
    Pod(Box<Pod>),
    /// A `v1` `Service`.
    Service(Box<Service>),
    /// A `v1` `Namespace`.
    Namespace(Box<Namespace>),
    /// Any other kind, kept verbatim.
    Other {
        /// The object's `apiVersion`.
        api_version: String,
        /// The object's `kind`.
        kind: String,
        /// The whole object as JSON.
        value: Value,
    },
}

impl Object {
    /// The object's `kind`.
    pub fn kind(&self) -> &str {
        match self {
            Object::Pod(_) => "Pod",
            Object::Service(_) => "Service",
            Object::Namespace(_) => "Namespace",
            Object::Other { kind, .. } => kind,
        }
    }

    /// The object's `apiVersion`.
    pub fn api_version(&self) -> &str {
        match self {
            Object::Other { api_version, .. } => api_version,
            _ => "v1",
        }
    }
}

/// How to treat fields the typed schema does not know (Kubernetes' `fieldValidation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop unknown fields silently.
    #[default]
    Ignore,
    /// Fail with [`Error::UnknownFields`] listing every unknown field.
    Strict,
}

/// Where in the input an object came from: the document index and, inside a `List`, the item
/// indices from the outside in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// Zero-based index of the YAML document (always 0 for JSON).
    pub document: usize,
    /// Indices into enclosing `List` objects' `items`, outermost first.
    pub items: Vec<usize>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "document {}", self.document)?;
        for i in &self.items {
            write!(f, ", item {i}")?;
        }
        Ok(())
    }
}

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not valid YAML.
    #[error("document {document}: invalid YAML: {source}")]
    Yaml {
        /// Zero-based document index.
        document: usize,
        /// The parser's error; it carries line and column.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The text is not valid JSON.
    #[error("invalid JSON: {source}")]
    Json {
        /// The parser's error; it carries line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A document (or list item) is not a mapping.
    #[error("{location}: expected an object, found {found}")]
    NotAnObject {
        /// Where it was.
        location: Location,
        /// What was found instead (`array`, `string`, ...).
        found: &'static str,
    },
    /// `apiVersion` or `kind` is missing or not a string.
    #[error("{location}: Object '{field}' is missing or not a string")]
    MissingTypeField {
        /// Where it was.
        location: Location,
        /// `apiVersion` or `kind`.
        field: &'static str,
    },
    /// A typed kind did not match its schema.
    #[error("{location} ({kind}): {path}{message}", path = field_prefix(.field))]
    Decode {
        /// Where it was.
        location: Location,
        /// The object's kind.
        kind: String,
        /// The field where decoding failed (`spec.containers[0].ports[0].containerPort`), when
        /// known.
        field: Option<String>,
        /// serde's message, without position.
        message: String,
    },
    /// Strict field validation found fields the schema does not know.
    #[error("{location} ({kind}): strict decoding error: {}", unknown_list(.fields))]
    UnknownFields {
        /// Where it was.
        location: Location,
        /// The object's kind.
        kind: String,
        /// Paths of the unknown fields, e.g. `spec.containers[0].nmae`.
        fields: Vec<String>,
    },
}

fn field_prefix(field: &Option<String>) -> String {
    field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default()
}

fn unknown_list(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Load every object from YAML or JSON text.
///
/// Text whose first non-blank character is `{` is parsed as JSON (better error positions);
/// anything else as YAML.
pub fn load(text: &str, mode: FieldValidation) -> Result<Vec<Object>> {
    if text.trim_start().starts_with('{') {
        load_json(text, mode)
    } else {
        load_yaml(text, mode)
    }
}

/// Load every object from (possibly multi-document) YAML.
pub fn load_yaml(text: &str, mode: FieldValidation) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    for (document, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value: Value =
            serde::Deserialize::deserialize(de).map_err(|source| Error::Yaml { document, source })?;
        if value.is_null() {
            continue;
        }
        let location = Location {
            document,
            items: Vec::new(),
        };
        decode_into(value, location, mode, &mut out)?;
    }
    Ok(out)
}

/// Load every object from a JSON value (a single object or a `List`).
pub fn load_json(text: &str, mode: FieldValidation) -> Result<Vec<Object>> {
    let value: Value = serde_json::from_str(text).map_err(|source| Error::Json { source })?;
    let mut out = Vec::new();
    decode_into(value, Location::default(), mode, &mut out)?;
    Ok(out)
}

/// Decode one already-parsed JSON value (expanding lists) into typed objects.
pub fn decode_value(value: Value, mode: FieldValidation) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    decode_into(value, Location::default(), mode, &mut out)?;
    Ok(out)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn decode_into(value: Value, location: Location, mode: FieldValidation, out: &mut Vec<Object>) -> Result<()> {
    let Value::Object(map) = &value else {
        return Err(Error::NotAnObject {
            found: type_name(&value),
            location,
        });
    };
    let kind = match map.get("kind") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        _ => {
            return Err(Error::MissingTypeField {
                location,
                field: "kind",
            });
        }
    };
    let api_version = match map.get("apiVersion") {
        Some(Value::String(v)) if !v.is_empty() => v.clone(),
        _ => {
            return Err(Error::MissingTypeField {
                location,
                field: "apiVersion",
            });
        }
    };
    if let Some(Value::Array(_)) = map.get("items")
        && kind.ends_with("List")
    {
        let item_kind = kind.strip_suffix("List").unwrap_or("").to_owned();
        let Value::Object(mut map) = value else {
            return Ok(());
        };
        let Some(Value::Array(items)) = map.remove("items") else {
            return Ok(());
        };
        for (i, mut item) in items.into_iter().enumerate() {
            // Typed lists (PodList) may omit kind/apiVersion on their items.
            if let Value::Object(m) = &mut item
                && !item_kind.is_empty()
            {
                m.entry("kind")
                    .or_insert_with(|| Value::String(item_kind.clone()));
                m.entry("apiVersion")
                    .or_insert_with(|| Value::String(api_version.clone()));
            }
            let mut loc = location.clone();
            loc.items.push(i);
            decode_into(item, loc, mode, out)?;
        }
        return Ok(());
    }
    let obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Pod") => Object::Pod(Box::new(typed(&value, &location, &kind, mode)?)),
        ("v1", "Service") => Object::Service(Box::new(typed(&value, &location, &kind, mode)?)),
        ("v1", "Namespace") => Object::Namespace(Box::new(typed(&value, &location, &kind, mode)?)),
        _ => Object::Other {
            api_version,
            kind,
            value,
        },
    };
    out.push(obj);
    Ok(())
}

fn typed<T>(value: &Value, location: &Location, kind: &str, mode: FieldValidation) -> Result<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let decode_error = |field: Option<String>, e: &serde_json::Error| Error::Decode {
        location: location.clone(),
        kind: kind.to_owned(),
        field,
        message: strip_position(e),
    };
    // serde_path_to_error tracks the field being decoded, so the error names it.
    let obj: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        decode_error(field, e.inner())
    })?;
    if mode == FieldValidation::Strict {
        let round_trip = serde_json::to_value(&obj).map_err(|e| decode_error(None, &e))?;
        let mut fields = Vec::new();
        unknown_fields(value, &round_trip, String::new(), &mut fields);
        if !fields.is_empty() {
            return Err(Error::UnknownFields {
                location: location.clone(),
                kind: kind.to_owned(),
                fields,
            });
        }
    }
    Ok(obj)
}

/// serde_json's message without its ` at line L column C` suffix.
fn strip_position(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&suffix).unwrap_or(&full).to_owned()
}

fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Collect paths of keys present (and non-null) in `input` but absent from `typed`.
fn unknown_fields(input: &Value, typed: &Value, path: String, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = join_key(&path, k);
                match b.get(k) {
                    Some(tv) => unknown_fields(v, tv, p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, tv)) in a.iter().zip(b).enumerate() {
                unknown_fields(v, tv, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
