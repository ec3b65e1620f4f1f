//! `/openapi/v2` as client-go reads it: gnostic's `openapi_v2.Document` in protobuf (rule 8.3;
//! client-go always proto-decodes this document). kubectl needs it for one thing the v3
//! documents cannot answer: a `kind: List` is never validated server-side (its GVK has no
//! PATCH operation), so kubectl validates its items client-side against these definitions.
//!
//! The document carries the same schemas as the v3 documents, as Swagger 2.0 `definitions`
//! (`$ref`s to `#/definitions/<name>`, every `x-` extension as a vendor extension); it has no
//! paths (v2 is only read for its definitions). The messages below are the subset of gnostic's
//! `OpenAPIv2.proto` this document uses, with its field numbers.

use prost::Message;
use serde_json::Value;

use super::schemas::Components;

#[derive(Clone, PartialEq, Message)]
pub(super) struct Document {
    #[prost(string, tag = "1")]
    pub(super) swagger: String,
    #[prost(message, optional, tag = "2")]
    pub(super) info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    pub(super) paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub(super) definitions: Option<Definitions>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Info {
    #[prost(string, tag = "1")]
    pub(super) title: String,
    #[prost(string, tag = "2")]
    pub(super) version: String,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Paths {}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub(super) additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct NamedSchema {
    #[prost(string, tag = "1")]
    pub(super) name: String,
    #[prost(message, optional, tag = "2")]
    pub(super) value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct NamedAny {
    #[prost(string, tag = "1")]
    pub(super) name: String,
    #[prost(message, optional, tag = "2")]
    pub(super) value: Option<Any>,
}

/// A value as YAML text (JSON is YAML).
#[derive(Clone, PartialEq, Message)]
pub(super) struct Any {
    #[prost(string, tag = "2")]
    pub(super) yaml: String,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Schema {
    #[prost(string, tag = "1")]
    pub(super) reference: String,
    #[prost(string, tag = "2")]
    pub(super) format: String,
    #[prost(string, tag = "4")]
    pub(super) description: String,
    #[prost(string, repeated, tag = "19")]
    pub(super) required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    pub(super) enumeration: Vec<Any>,
    #[prost(message, optional, boxed, tag = "21")]
    pub(super) additional_properties: Option<Box<AdditionalPropertiesItem>>,
    #[prost(message, optional, tag = "22")]
    pub(super) kind: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub(super) items: Option<ItemsItem>,
    #[prost(message, optional, tag = "25")]
    pub(super) properties: Option<Properties>,
    #[prost(message, repeated, tag = "31")]
    pub(super) vendor_extension: Vec<NamedAny>,
}

/// gnostic's `oneof {Schema schema = 1; bool boolean = 2;}`: one of the two is set.
#[derive(Clone, PartialEq, Message)]
pub(super) struct AdditionalPropertiesItem {
    #[prost(message, optional, tag = "1")]
    pub(super) schema: Option<Schema>,
    #[prost(bool, optional, tag = "2")]
    pub(super) boolean: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub(super) value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub(super) schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub(super) additional_properties: Vec<NamedSchema>,
}

/// How deep a schema is converted (the generated ones nest a few levels; refs do not count).
const MAX_DEPTH: usize = 16;

/// One OpenAPI 3 schema as a Swagger 2.0 one.
fn schema(v3: &Value, depth: usize) -> Schema {
    let mut out = Schema::default();
    let Some(map) = v3.as_object() else {
        return out;
    };
    if depth > MAX_DEPTH {
        return out;
    }
    let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    out.description = text("description");
    out.format = text("format");
    if let Some(target) = super::schemas::ref_of(v3) {
        out.reference = format!("#/definitions/{target}");
    }
    if let Some(kind) = map.get("type").and_then(Value::as_str) {
        out.kind = Some(TypeItem {
            value: vec![kind.to_owned()],
        });
    }
    out.required = map
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    out.enumeration = map
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| Any { yaml: v.to_string() })
        .collect();
    if let Some(items) = map.get("items") {
        out.items = Some(ItemsItem {
            schema: vec![schema(items, depth + 1)],
        });
    }
    if let Some(properties) = map.get("properties").and_then(Value::as_object) {
        out.properties = Some(Properties {
            additional_properties: properties
                .iter()
                .map(|(name, s)| NamedSchema {
                    name: name.clone(),
                    value: Some(schema(s, depth + 1)),
                })
                .collect(),
        });
    }
    match map.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            out.additional_properties = Some(Box::new(AdditionalPropertiesItem {
                schema: None,
                boolean: Some(*b),
            }));
        }
        Some(s @ Value::Object(_)) => {
            out.additional_properties = Some(Box::new(AdditionalPropertiesItem {
                schema: Some(schema(s, depth + 1)),
                boolean: None,
            }));
        }
        _ => {}
    }
    out.vendor_extension = map
        .iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| NamedAny {
            name: k.clone(),
            value: Some(Any { yaml: v.to_string() }),
        })
        .collect();
    out
}

/// The v2 document of every component, encoded.
pub(super) fn document(components: &Components) -> Vec<u8> {
    let definitions = components
        .schemas
        .iter()
        .map(|(name, s)| NamedSchema {
            name: name.clone(),
            value: Some(schema(s, 0)),
        })
        .collect();
    Document {
        swagger: "2.0".into(),
        info: Some(Info {
            title: "Kubernetes".into(),
            version: crate::discovery::GIT_VERSION.into(),
        }),
        paths: Some(Paths {}),
        definitions: Some(Definitions {
            additional_properties: definitions,
        }),
    }
    .encode_to_vec()
}
