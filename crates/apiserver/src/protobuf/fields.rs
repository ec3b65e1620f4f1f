//! The building blocks of the protobuf-to-JSON conversion: an object builder that spells out
//! the omission rules once, and the converters for the apimachinery messages every kind shares
//! (`ObjectMeta`, `OwnerReference`, `LabelSelector`, `IntOrString`, `Quantity`, `Time`). Nothing
//! here knows a kind or a spec; those are the sibling modules'.
//!
//! Go's protobuf encoder writes every non-pointer field, even at its zero value, and Go's JSON
//! encoder drops zero values only of `omitempty` fields. The builder mirrors the JSON encoder, so
//! a protobuf body converts to exactly the JSON kubectl would have sent: [`Obj::s`] and
//! [`Obj::nz`] are for non-pointer `omitempty` fields (absent at `""`, `0`, `false`), [`Obj::opt`]
//! for pointers and fields without `omitempty` (`replicas: 0`, `suspend: false`, `name: ""` are
//! kept), and lists and maps are absent when empty. Which fields are which was checked against
//! kubectl's own JSON for the same objects (the `testdata` captures).

use std::collections::BTreeMap;

use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pbmeta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value};

/// A JSON object under construction; every method omits what the Kubernetes JSON API omits.
#[derive(Default)]
pub(super) struct Obj(Map<String, Value>);

impl Obj {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// A field that is a pointer in Go, or has no `omitempty`: present whenever it was sent.
    pub(super) fn opt<T: Into<Value>>(mut self, key: &str, value: Option<T>) -> Self {
        if let Some(v) = value {
            self.0.insert(key.to_string(), v.into());
        }
        self
    }

    /// A non-pointer scalar in Go (`omitempty`): absent at its zero value.
    pub(super) fn nz<T: Into<Value> + Default + PartialEq>(self, key: &str, value: Option<T>) -> Self {
        self.opt(key, value.filter(|v| *v != T::default()))
    }

    /// A non-pointer `omitempty` string field: absent when empty.
    pub(super) fn s(self, key: &str, value: Option<String>) -> Self {
        self.nz(key, value)
    }

    /// A message field converted by `f`; a message that was sent is kept even when empty
    /// (`emptyDir: {}` selects the volume source).
    pub(super) fn msg<T>(mut self, key: &str, value: Option<T>, f: impl FnOnce(T) -> Value) -> Self {
        if let Some(v) = value {
            self.0.insert(key.to_string(), f(v));
        }
        self
    }

    /// A repeated field converted item by item; absent when empty.
    pub(super) fn list<T>(mut self, key: &str, items: Vec<T>, f: impl FnMut(T) -> Value) -> Self {
        if !items.is_empty() {
            self.0
                .insert(key.to_string(), Value::Array(items.into_iter().map(f).collect()));
        }
        self
    }

    /// A repeated scalar field; absent when empty.
    pub(super) fn vals<T: Into<Value>>(self, key: &str, items: Vec<T>) -> Self {
        self.list(key, items, Into::into)
    }

    /// A `map<string, string>` field; absent when empty.
    pub(super) fn map(self, key: &str, map: BTreeMap<String, String>) -> Self {
        self.map_of(key, map, Value::String)
    }

    /// A `map<string, Quantity>` field (resource lists); absent when empty.
    pub(super) fn quantities(self, key: &str, map: BTreeMap<String, Quantity>) -> Self {
        self.map_of(key, map, quantity)
    }

    fn map_of<T>(mut self, key: &str, map: BTreeMap<String, T>, f: impl Fn(T) -> Value) -> Self {
        if !map.is_empty() {
            let m: Map<String, Value> = map.into_iter().map(|(k, v)| (k, f(v))).collect();
            self.0.insert(key.to_string(), Value::Object(m));
        }
        self
    }

    /// Inserts an already converted value.
    pub(super) fn set(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.to_string(), value);
        self
    }

    pub(super) fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// The object's metadata, as in JSON; only `managedFields` (written by server-side apply, which
/// takes JSON and YAML) and the deprecated `selfLink` are dropped.
pub(super) fn object_meta(m: pbmeta::ObjectMeta) -> Value {
    Obj::new()
        .s("name", m.name)
        .s("generateName", m.generate_name)
        .s("namespace", m.namespace)
        .s("uid", m.uid)
        .s("resourceVersion", m.resource_version)
        .nz("generation", m.generation)
        .opt("creationTimestamp", m.creation_timestamp.and_then(time))
        .opt("deletionTimestamp", m.deletion_timestamp.and_then(time))
        .opt("deletionGracePeriodSeconds", m.deletion_grace_period_seconds)
        .map("labels", m.labels)
        .map("annotations", m.annotations)
        .list("ownerReferences", m.owner_references, owner_reference)
        .vals("finalizers", m.finalizers)
        .done()
}

fn owner_reference(r: pbmeta::OwnerReference) -> Value {
    Obj::new()
        .opt("apiVersion", r.api_version)
        .opt("kind", r.kind)
        .opt("name", r.name)
        .opt("uid", r.uid)
        .opt("controller", r.controller)
        .opt("blockOwnerDeletion", r.block_owner_deletion)
        .done()
}

pub(super) fn label_selector(s: pbmeta::LabelSelector) -> Value {
    Obj::new()
        .map("matchLabels", s.match_labels)
        .list("matchExpressions", s.match_expressions, |r| {
            Obj::new()
                .opt("key", r.key)
                .opt("operator", r.operator)
                .vals("values", r.values)
                .done()
        })
        .done()
}

/// `IntOrString`: type 1 is a string, anything else the integer (Go writes both values).
pub(super) fn int_or_string(v: IntOrString) -> Value {
    match v.r#type {
        Some(1) => Value::String(v.str_val.unwrap_or_default()),
        _ => Value::from(v.int_val.unwrap_or_default()),
    }
}

/// `metav1.Time` in RFC 3339 at second precision, as its JSON form. Go writes the zero time as
/// an empty message (no `seconds`), which is JSON's `null`: absent here.
pub(super) fn time(t: pbmeta::Time) -> Option<Value> {
    t.seconds
        .map(|s| Value::String(podvisor_core::rfc3339::seconds(s.saturating_mul(1000))))
}

pub(super) fn quantity(q: Quantity) -> Value {
    Value::String(q.string.unwrap_or_default())
}
