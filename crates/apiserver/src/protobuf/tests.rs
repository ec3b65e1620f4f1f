//! Tests of the protobuf conversion. Each fixture is written twice: as the prost message kubectl
//! would encode, and as the JSON the server must see; the JSON is first checked to be exactly
//! what `k8s-openapi` serialises for the same object (so every field name is the real one), then
//! the message is enveloped, decoded and compared with it.

use std::collections::BTreeMap;

use k8s_openapi::Resource;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as pb;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pbmeta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::*;

/// Fixture values into the field types of the prost messages (`Some`, owned strings, lists).
trait P<T> {
    fn p(self) -> T;
}
impl<T> P<Option<T>> for T {
    fn p(self) -> Option<T> {
        Some(self)
    }
}
impl P<Option<String>> for &str {
    fn p(self) -> Option<String> {
        Some(self.to_string())
    }
}
impl<T> P<Vec<T>> for Vec<T> {
    fn p(self) -> Vec<T> {
        self
    }
}
impl<T, const N: usize> P<Vec<T>> for [T; N] {
    fn p(self) -> Vec<T> {
        self.into()
    }
}
impl<const N: usize> P<Vec<String>> for [&str; N] {
    fn p(self) -> Vec<String> {
        self.iter().map(|s| s.to_string()).collect()
    }
}
impl<const N: usize> P<BTreeMap<String, String>> for [(&str, &str); N] {
    fn p(self) -> BTreeMap<String, String> {
        self.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}
impl<const N: usize> P<BTreeMap<String, Quantity>> for [(&str, &str); N] {
    fn p(self) -> BTreeMap<String, Quantity> {
        self.iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Quantity {
                        string: Some(v.to_string()),
                    },
                )
            })
            .collect()
    }
}

/// A prost message with the given fields (each through [`P`]) and every other field unset.
macro_rules! pb {
    ($($ty:ident)::+ { $($f:ident : $v:expr),* $(,)? }) => {
        {
            #[allow(clippy::needless_update)]
            let message = $($ty)::+ { $($f: P::p($v),)* ..Default::default() };
            message
        }
    };
}

fn int(i: i32) -> IntOrString {
    pb!(IntOrString {
        r#type: 0i64,
        int_val: i
    })
}

fn string(s: &str) -> IntOrString {
    pb!(IntOrString {
        r#type: 1i64,
        str_val: s
    })
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: None,
        content_type: None,
    };
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// Asserts that `expected` is exactly `k8s-openapi`'s serialisation of a `K`, and that the
/// message `m` decodes to it.
fn assert_converts<K, M>(m: M, expected: Value)
where
    K: Resource + serde::de::DeserializeOwned + serde::Serialize,
    M: Message,
{
    let typed: K = serde_json::from_value(expected.clone()).expect("fixture is a valid object");
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        expected,
        "the JSON fixture round-trips through k8s-openapi"
    );
    let got = decode(&envelope(K::API_VERSION, K::KIND, m.encode_to_vec())).unwrap();
    assert_eq!(got, expected);
}

fn meta(name: &str) -> pbmeta::ObjectMeta {
    pb!(pbmeta::ObjectMeta {
        name: name,
        namespace: "default",
        labels: [("app", name)]
    })
}

fn meta_json(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "labels": {"app": name}})
}

fn selector() -> pbmeta::LabelSelector {
    pb!(pbmeta::LabelSelector {
        match_labels: [("app", "web")],
        match_expressions: [pb!(pbmeta::LabelSelectorRequirement {
            key: "tier",
            operator: "In",
            values: ["front", "edge"],
        })],
    })
}

fn selector_json() -> Value {
    json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}],
    })
}

// After the `pb!` macro, which textual scope makes visible only to modules declared below it.
mod basics;
mod fixtures;
mod kinds;
mod kubectl;
