//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//!
//! The envelope is the magic `k8s\0` followed by a `runtime.Unknown` whose `raw` holds the
//! object. kubectl's generator commands (`kubectl create namespace|service ...`) send these.
//! The object is decoded with `k8s-pb`'s prost types and converted to the JSON form every other
//! body takes; the kinds converted are those kubectl generates for served resources
//! (Namespace, Service). Other kinds get 415, so the client can retry in JSON.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_pb::api::core::v1 as pb;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pbmeta;
use prost::Message;
use serde_json::{Map, Value, json};

/// Why a protobuf body was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("protobuf body lacks the k8s envelope magic")]
    Magic,
    /// The envelope or the object did not decode.
    #[error("invalid protobuf body")]
    Decode(#[source] prost::DecodeError),
    /// A kind that is not converted here.
    #[error("protobuf bodies of kind {kind} are not supported")]
    UnsupportedKind {
        /// `apiVersion/kind` of the body.
        kind: String,
    },
}

const MAGIC: &[u8] = b"k8s\0";

/// Decodes an enveloped protobuf object into its JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let raw = body.strip_prefix(MAGIC).ok_or(ProtobufError::Magic)?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(raw).map_err(ProtobufError::Decode)?;
    let tm = unknown.type_meta.unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let bytes = unknown.raw.unwrap_or_default();
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => {
            let ns = pb::Namespace::decode(bytes.as_slice()).map_err(ProtobufError::Decode)?;
            let mut v = json!({"apiVersion": "v1", "kind": "Namespace"});
            set_meta(&mut v, ns.metadata);
            if let Some(spec) = ns.spec
                && !spec.finalizers.is_empty()
            {
                v["spec"] = json!({"finalizers": spec.finalizers});
            }
            Ok(v)
        }
        ("v1", "Service") => {
            let svc = pb::Service::decode(bytes.as_slice()).map_err(ProtobufError::Decode)?;
            let mut v = json!({"apiVersion": "v1", "kind": "Service"});
            set_meta(&mut v, svc.metadata);
            if let Some(spec) = svc.spec {
                v["spec"] = service_spec(spec);
            }
            Ok(v)
        }
        ("v1", "ConfigMap") => {
            let cm = pb::ConfigMap::decode(bytes.as_slice()).map_err(ProtobufError::Decode)?;
            let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap"});
            set_meta(&mut v, cm.metadata);
            if !cm.data.is_empty() {
                v["data"] = json!(cm.data);
            }
            if !cm.binary_data.is_empty() {
                let binary: Map<String, Value> = cm
                    .binary_data
                    .into_iter()
                    .map(|(k, b)| (k, Value::String(STANDARD.encode(b))))
                    .collect();
                v["binaryData"] = Value::Object(binary);
            }
            if let Some(immutable) = cm.immutable {
                v["immutable"] = json!(immutable);
            }
            Ok(v)
        }
        ("v1", "Secret") => {
            let secret = pb::Secret::decode(bytes.as_slice()).map_err(ProtobufError::Decode)?;
            let mut v = json!({"apiVersion": "v1", "kind": "Secret"});
            set_meta(&mut v, secret.metadata);
            if !secret.data.is_empty() {
                let data: Map<String, Value> = secret
                    .data
                    .into_iter()
                    .map(|(k, b)| (k, Value::String(STANDARD.encode(b))))
                    .collect();
                v["data"] = Value::Object(data);
            }
            if !secret.string_data.is_empty() {
                v["stringData"] = json!(secret.string_data);
            }
            if let Some(t) = secret.r#type {
                v["type"] = json!(t);
            }
            if let Some(immutable) = secret.immutable {
                v["immutable"] = json!(immutable);
            }
            Ok(v)
        }
        _ => Err(ProtobufError::UnsupportedKind {
            kind: format!("{api_version}/{kind}"),
        }),
    }
}

fn insert_opt<T: Into<Value>>(map: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(v) = value {
        map.insert(key.to_string(), v.into());
    }
}

fn set_meta(object: &mut Value, meta: Option<pbmeta::ObjectMeta>) {
    let Some(meta) = meta else { return };
    let mut m = Map::new();
    insert_opt(&mut m, "name", meta.name);
    insert_opt(&mut m, "generateName", meta.generate_name);
    insert_opt(&mut m, "namespace", meta.namespace);
    insert_opt(&mut m, "resourceVersion", meta.resource_version);
    if !meta.labels.is_empty() {
        m.insert("labels".into(), json!(meta.labels));
    }
    if !meta.annotations.is_empty() {
        m.insert("annotations".into(), json!(meta.annotations));
    }
    if !meta.finalizers.is_empty() {
        m.insert("finalizers".into(), json!(meta.finalizers));
    }
    object["metadata"] = Value::Object(m);
}

fn service_spec(spec: pb::ServiceSpec) -> Value {
    let mut m = Map::new();
    if !spec.ports.is_empty() {
        let ports: Vec<Value> = spec
            .ports
            .into_iter()
            .map(|p| {
                let mut pm = Map::new();
                insert_opt(&mut pm, "name", p.name.filter(|n| !n.is_empty()));
                insert_opt(&mut pm, "protocol", p.protocol);
                insert_opt(&mut pm, "appProtocol", p.app_protocol);
                insert_opt(&mut pm, "port", p.port);
                insert_opt(&mut pm, "nodePort", p.node_port.filter(|n| *n != 0));
                if let Some(t) = p.target_port {
                    let target = match (t.r#type, t.int_val, t.str_val) {
                        (Some(1), _, Some(s)) => Value::String(s),
                        (_, Some(i), _) => json!(i),
                        (_, None, Some(s)) => Value::String(s),
                        _ => Value::Null,
                    };
                    if !target.is_null() && target != json!(0) {
                        pm.insert("targetPort".into(), target);
                    }
                }
                Value::Object(pm)
            })
            .collect();
        m.insert("ports".into(), Value::Array(ports));
    }
    if !spec.selector.is_empty() {
        m.insert("selector".into(), json!(spec.selector));
    }
    insert_opt(&mut m, "clusterIP", spec.cluster_ip.filter(|s| !s.is_empty()));
    if !spec.cluster_ips.is_empty() {
        m.insert("clusterIPs".into(), json!(spec.cluster_ips));
    }
    insert_opt(&mut m, "type", spec.r#type.filter(|s| !s.is_empty()));
    insert_opt(
        &mut m,
        "externalName",
        spec.external_name.filter(|s| !s.is_empty()),
    );
    insert_opt(
        &mut m,
        "sessionAffinity",
        spec.session_affinity.filter(|s| !s.is_empty()),
    );
    if !spec.external_ips.is_empty() {
        m.insert("externalIPs".into(), json!(spec.external_ips));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some("v1".into()),
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

    #[test]
    fn decodes_namespace_and_service() {
        let ns = pb::Namespace {
            metadata: Some(pbmeta::ObjectMeta {
                name: Some("x".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = decode(&envelope("Namespace", ns.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
        );

        let svc = pb::Service {
            metadata: Some(pbmeta::ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            }),
            spec: Some(pb::ServiceSpec {
                ports: vec![pb::ServicePort {
                    name: Some("80-8080".into()),
                    port: Some(80),
                    target_port: Some(k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
                        r#type: Some(0),
                        int_val: Some(8080),
                        str_val: None,
                    }),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }],
                r#type: Some("ClusterIP".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = decode(&envelope("Service", svc.encode_to_vec())).unwrap();
        assert_eq!(v["spec"]["ports"][0]["targetPort"], 8080);
        assert_eq!(v["spec"]["type"], "ClusterIP");
    }

    #[test]
    fn decodes_config_maps_and_secrets() {
        let cm = pb::ConfigMap {
            metadata: Some(pbmeta::ObjectMeta {
                name: Some("c".into()),
                ..Default::default()
            }),
            data: [("mode".to_string(), "fast".to_string())].into_iter().collect(),
            ..Default::default()
        };
        let v = decode(&envelope("ConfigMap", cm.encode_to_vec())).unwrap();
        assert_eq!(v["data"]["mode"], "fast");
        let secret = pb::Secret {
            metadata: Some(pbmeta::ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            }),
            data: [("password".to_string(), b"hunter2".to_vec())]
                .into_iter()
                .collect(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let v = decode(&envelope("Secret", secret.encode_to_vec())).unwrap();
        assert_eq!(v["data"]["password"], "aHVudGVyMg==");
        assert_eq!(v["type"], "Opaque");
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(decode(b"nope"), Err(ProtobufError::Magic)));
        assert!(decode(b"k8s\0\xff\xff\xff").is_err());
        assert!(matches!(
            decode(&envelope("Pod", vec![])),
            Err(ProtobufError::UnsupportedKind { .. })
        ));
    }
}
