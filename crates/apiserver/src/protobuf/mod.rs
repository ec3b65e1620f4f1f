//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//!
//! The envelope is the magic `k8s\0` followed by a `runtime.Unknown` whose `raw` holds the
//! object. kubectl sends these from its generator commands (`kubectl create namespace|service|
//! configmap|secret|serviceaccount|deployment|job|cronjob`, `kubectl create job --from=cronjob/x`)
//! and does not retry in JSON on 415; `kubectl debug --copy-to` and `kubectl debug node/x` create
//! their pods in protobuf (`kubectl run` sends JSON). The object is decoded with `k8s-pb`'s
//! prost types and converted to exactly the JSON kubectl would have sent for it (camelCase
//! names, Go's `omitempty` rules; see `fields`), which every other body takes.
//!
//! Kinds converted: core/v1 Namespace, Service, ConfigMap, Secret, ServiceAccount and Pod;
//! apps/v1 Deployment, ReplicaSet, StatefulSet and DaemonSet; batch/v1 Job and CronJob; the
//! self-subject reviews of `kubectl auth` (`review`). Every
//! other kind (ControllerRevision, TokenRequest, RBAC, ...) gets 415. Converted are the metadata
//! (all but `managedFields` and `selfLink`) and the spec, including the whole `PodSpec` of pods
//! and templates. Status is dropped for every kind: a create or update body carries none the
//! server keeps, status being written through `/status` in JSON. Not converted either:
//! `ephemeralContainers` and the in-tree cloud and network volume sources (see `volume`).
//!
//! One small function per message type: `fields` has the builder and the shared apimachinery
//! messages, `container`, `volume` and `pod` the parts of a `PodSpec`, `workload` the apps and
//! batch kinds. The tests check fixtures against `k8s-openapi`'s serialisation and real kubectl
//! bodies against kubectl's own JSON (`testdata/README.md`).

mod container;
mod fields;
mod pod;
mod review;
mod volume;
mod workload;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_pb::api::core::v1 as pb;
use prost::Message;
use serde_json::{Map, Value};

use fields::{Obj, int_or_string, object_meta};
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
    let bytes = bytes.as_slice();
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => convert(bytes, namespace),
        ("v1", "Service") => convert(bytes, service),
        ("v1", "ConfigMap") => convert(bytes, config_map),
        ("v1", "Secret") => convert(bytes, secret),
        ("v1", "ServiceAccount") => convert(bytes, service_account),
        ("v1", "Pod") => convert(bytes, pod::pod),
        ("apps/v1", "Deployment") => convert(bytes, workload::deployment),
        ("apps/v1", "ReplicaSet") => convert(bytes, workload::replica_set),
        ("apps/v1", "StatefulSet") => convert(bytes, workload::stateful_set),
        ("apps/v1", "DaemonSet") => convert(bytes, workload::daemon_set),
        ("batch/v1", "Job") => convert(bytes, workload::job),
        ("batch/v1", "CronJob") => convert(bytes, workload::cron_job),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => convert(bytes, review::access),
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => convert(bytes, review::rules),
        ("authentication.k8s.io/v1", "SelfSubjectReview") => convert(bytes, review::subject),
        _ => Err(ProtobufError::UnsupportedKind {
            kind: format!("{api_version}/{kind}"),
        }),
    }
}

/// Decodes the object's bytes as `M` and converts it.
fn convert<M: Message + Default>(bytes: &[u8], f: fn(M) -> Value) -> Result<Value, ProtobufError> {
    M::decode(bytes).map(f).map_err(ProtobufError::Decode)
}

/// The `apiVersion`, `kind` and `metadata` every core/v1 object starts with.
fn core_object(kind: &str, meta: Option<k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta>) -> Obj {
    Obj::new()
        .set("apiVersion", Value::from("v1"))
        .set("kind", Value::from(kind))
        .msg("metadata", meta, object_meta)
}

fn base64_map(map: std::collections::BTreeMap<String, Vec<u8>>) -> Option<Value> {
    (!map.is_empty()).then(|| {
        let m: Map<String, Value> = map
            .into_iter()
            .map(|(k, b)| (k, Value::String(STANDARD.encode(b))))
            .collect();
        Value::Object(m)
    })
}

fn namespace(ns: pb::Namespace) -> Value {
    core_object("Namespace", ns.metadata)
        .msg("spec", ns.spec, |s| {
            Obj::new().vals("finalizers", s.finalizers).done()
        })
        .done()
}

fn config_map(cm: pb::ConfigMap) -> Value {
    core_object("ConfigMap", cm.metadata)
        .map("data", cm.data)
        .opt("binaryData", base64_map(cm.binary_data))
        .opt("immutable", cm.immutable)
        .done()
}

fn secret(secret: pb::Secret) -> Value {
    core_object("Secret", secret.metadata)
        .opt("data", base64_map(secret.data))
        .map("stringData", secret.string_data)
        .s("type", secret.r#type)
        .opt("immutable", secret.immutable)
        .done()
}

fn service_account(sa: pb::ServiceAccount) -> Value {
    core_object("ServiceAccount", sa.metadata)
        .list("secrets", sa.secrets, |r| {
            Obj::new()
                .s("kind", r.kind)
                .s("namespace", r.namespace)
                .s("name", r.name)
                .s("uid", r.uid)
                .s("apiVersion", r.api_version)
                .s("resourceVersion", r.resource_version)
                .s("fieldPath", r.field_path)
                .done()
        })
        .list(
            "imagePullSecrets",
            sa.image_pull_secrets,
            volume::local_object_reference,
        )
        .opt("automountServiceAccountToken", sa.automount_service_account_token)
        .done()
}

fn service(svc: pb::Service) -> Value {
    core_object("Service", svc.metadata)
        .msg("spec", svc.spec, service_spec)
        .done()
}

fn service_spec(spec: pb::ServiceSpec) -> Value {
    Obj::new()
        .list("ports", spec.ports, |p| {
            let target = p.target_port.map(int_or_string).filter(|t| *t != 0);
            Obj::new()
                .s("name", p.name)
                .s("protocol", p.protocol)
                .opt("appProtocol", p.app_protocol)
                .opt("port", p.port)
                .opt("targetPort", target)
                .nz("nodePort", p.node_port)
                .done()
        })
        .map("selector", spec.selector)
        .s("clusterIP", spec.cluster_ip)
        .vals("clusterIPs", spec.cluster_ips)
        .s("type", spec.r#type)
        .s("externalName", spec.external_name)
        .s("sessionAffinity", spec.session_affinity)
        .vals("externalIPs", spec.external_ips)
        .s("loadBalancerIP", spec.load_balancer_ip)
        .vals("loadBalancerSourceRanges", spec.load_balancer_source_ranges)
        .s("externalTrafficPolicy", spec.external_traffic_policy)
        .nz("healthCheckNodePort", spec.health_check_node_port)
        .nz("publishNotReadyAddresses", spec.publish_not_ready_addresses)
        .msg("sessionAffinityConfig", spec.session_affinity_config, |c| {
            Obj::new()
                .msg("clientIP", c.client_ip, |ip| {
                    Obj::new().opt("timeoutSeconds", ip.timeout_seconds).done()
                })
                .done()
        })
        .vals("ipFamilies", spec.ip_families)
        .opt("ipFamilyPolicy", spec.ip_family_policy)
        .opt(
            "allocateLoadBalancerNodePorts",
            spec.allocate_load_balancer_node_ports,
        )
        .opt("loadBalancerClass", spec.load_balancer_class)
        .opt("internalTrafficPolicy", spec.internal_traffic_policy)
        .opt("trafficDistribution", spec.traffic_distribution)
        .done()
}

#[cfg(test)]
mod tests;
