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
#[test]
fn decodes_namespace_and_service() {
    let ns = pb::Namespace {
        metadata: Some(pbmeta::ObjectMeta {
            name: Some("x".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = decode(&envelope("v1", "Namespace", ns.encode_to_vec())).unwrap();
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
    let v = decode(&envelope("v1", "Service", svc.encode_to_vec())).unwrap();
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
    let v = decode(&envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
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
    let v = decode(&envelope("v1", "Secret", secret.encode_to_vec())).unwrap();
    assert_eq!(v["data"]["password"], "aHVudGVyMg==");
    assert_eq!(v["type"], "Opaque");
}

#[test]
fn rejects_garbage() {
    assert!(matches!(decode(b"nope"), Err(ProtobufError::Magic)));
    assert!(decode(b"k8s\0\xff\xff\xff").is_err());
    assert!(matches!(
        decode(&envelope("apps/v1", "ControllerRevision", vec![])),
        Err(ProtobufError::UnsupportedKind { .. })
    ));
    // A served kind whose bytes are not its message.
    assert!(matches!(
        decode(&envelope("apps/v1", "Deployment", vec![0xff, 0xff, 0xff])),
        Err(ProtobufError::Decode(_))
    ));
}

/// A container using most of what a container can say: probes of every handler kind, env with
/// every `valueFrom`, `envFrom`, resources, mounts, lifecycle hooks and a security context.
fn app_container() -> (pb::Container, Value) {
    let m = pb!(pb::Container {
        name: "app",
        image: "registry.example/app:1.2",
        command: ["/bin/app"],
        args: ["--port", "8080"],
        working_dir: "/srv",
        ports: [
            pb!(pb::ContainerPort {
                name: "http",
                container_port: 8080,
                protocol: "TCP"
            }),
            pb!(pb::ContainerPort {
                container_port: 9090,
                host_port: 19090,
                host_ip: "127.0.0.1"
            }),
        ],
        env_from: [
            pb!(pb::EnvFromSource {
                prefix: "CFG_",
                config_map_ref: pb!(pb::ConfigMapEnvSource {
                    local_object_reference: pb!(pb::LocalObjectReference { name: "settings" }),
                    optional: true,
                }),
            }),
            pb!(pb::EnvFromSource {
                secret_ref: pb!(pb::SecretEnvSource {
                    local_object_reference: pb!(pb::LocalObjectReference { name: "creds" }),
                }),
            }),
        ],
        env: [
            pb!(pb::EnvVar {
                name: "PLAIN",
                value: "1"
            }),
            pb!(pb::EnvVar {
                name: "POD_IP",
                value_from: pb!(pb::EnvVarSource {
                    field_ref: pb!(pb::ObjectFieldSelector {
                        api_version: "v1",
                        field_path: "status.podIP"
                    }),
                }),
            }),
            pb!(pb::EnvVar {
                name: "MEM",
                value_from: pb!(pb::EnvVarSource {
                    resource_field_ref: pb!(pb::ResourceFieldSelector {
                        container_name: "app",
                        resource: "limits.memory",
                        divisor: pb!(Quantity { string: "1Mi" }),
                    }),
                }),
            }),
            pb!(pb::EnvVar {
                name: "CPU",
                value_from: pb!(pb::EnvVarSource {
                    // Go writes the zero divisor of an unset one, in JSON as in protobuf.
                    resource_field_ref: pb!(pb::ResourceFieldSelector {
                        resource: "requests.cpu",
                        divisor: pb!(Quantity { string: "0" }),
                    }),
                }),
            }),
            pb!(pb::EnvVar {
                name: "MODE",
                value_from: pb!(pb::EnvVarSource {
                    config_map_key_ref: pb!(pb::ConfigMapKeySelector {
                        local_object_reference: pb!(pb::LocalObjectReference { name: "settings" }),
                        key: "mode",
                        optional: false,
                    }),
                }),
            }),
            pb!(pb::EnvVar {
                name: "TOKEN",
                value_from: pb!(pb::EnvVarSource {
                    secret_key_ref: pb!(pb::SecretKeySelector {
                        local_object_reference: pb!(pb::LocalObjectReference { name: "creds" }),
                        key: "token",
                    }),
                }),
            }),
        ],
        resources: pb!(pb::ResourceRequirements {
            limits: [("cpu", "500m"), ("memory", "256Mi")],
            requests: [("cpu", "100m"), ("memory", "64Mi")],
        }),
        resize_policy: [pb!(pb::ContainerResizePolicy {
            resource_name: "cpu",
            restart_policy: "NotRequired"
        })],
        volume_mounts: [
            pb!(pb::VolumeMount {
                name: "data",
                mount_path: "/data"
            }),
            pb!(pb::VolumeMount {
                name: "config",
                mount_path: "/etc/app",
                read_only: true,
                sub_path: "app"
            }),
        ],
        liveness_probe: pb!(pb::Probe {
            handler: pb!(pb::ProbeHandler {
                http_get: pb!(pb::HttpGetAction {
                    path: "/healthz",
                    port: string("http"),
                    scheme: "HTTP",
                    http_headers: [
                        pb!(pb::HttpHeader {
                            name: "X-Probe",
                            value: "1"
                        }),
                        pb!(pb::HttpHeader {
                            name: "X-Empty",
                            value: ""
                        }),
                    ],
                }),
            }),
            initial_delay_seconds: 5,
            timeout_seconds: 2,
            period_seconds: 10,
            success_threshold: 1,
            failure_threshold: 3,
            termination_grace_period_seconds: 30i64,
        }),
        readiness_probe: pb!(pb::Probe {
            handler: pb!(pb::ProbeHandler {
                tcp_socket: pb!(pb::TcpSocketAction {
                    port: int(8080),
                    host: "127.0.0.1"
                }),
            }),
            period_seconds: 5,
        }),
        startup_probe: pb!(pb::Probe {
            handler: pb!(pb::ProbeHandler {
                grpc: pb!(pb::GrpcAction {
                    port: 9090,
                    service: "health"
                }),
            }),
            failure_threshold: 30,
        }),
        lifecycle: pb!(pb::Lifecycle {
            post_start: pb!(pb::LifecycleHandler {
                exec: pb!(pb::ExecAction {
                    command: ["/bin/warm"]
                }),
            }),
            pre_stop: pb!(pb::LifecycleHandler {
                sleep: pb!(pb::SleepAction { seconds: 5i64 }),
            }),
        }),
        termination_message_path: "/dev/termination-log",
        termination_message_policy: "FallbackToLogsOnError",
        image_pull_policy: "IfNotPresent",
        security_context: pb!(pb::SecurityContext {
            capabilities: pb!(pb::Capabilities {
                add: ["NET_BIND_SERVICE"],
                drop: ["ALL"]
            }),
            privileged: false,
            run_as_user: 1000i64,
            run_as_group: 1000i64,
            run_as_non_root: true,
            read_only_root_filesystem: true,
            allow_privilege_escalation: false,
            seccomp_profile: pb!(pb::SeccompProfile {
                r#type: "RuntimeDefault"
            }),
        }),
    });
    let j = json!({
        "name": "app",
        "image": "registry.example/app:1.2",
        "command": ["/bin/app"],
        "args": ["--port", "8080"],
        "workingDir": "/srv",
        "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"containerPort": 9090, "hostPort": 19090, "hostIP": "127.0.0.1"},
        ],
        "envFrom": [
            {"prefix": "CFG_", "configMapRef": {"name": "settings", "optional": true}},
            {"secretRef": {"name": "creds"}},
        ],
        "env": [
            {"name": "PLAIN", "value": "1"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {
                "containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "0"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode", "optional": false}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        ],
        "resources": {
            "limits": {"cpu": "500m", "memory": "256Mi"},
            "requests": {"cpu": "100m", "memory": "64Mi"},
        },
        "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "config", "mountPath": "/etc/app", "readOnly": true, "subPath": "app"},
        ],
        "livenessProbe": {
            "httpGet": {
                "path": "/healthz",
                "port": "http",
                "scheme": "HTTP",
                "httpHeaders": [{"name": "X-Probe", "value": "1"}, {"name": "X-Empty", "value": ""}],
            },
            "initialDelaySeconds": 5,
            "timeoutSeconds": 2,
            "periodSeconds": 10,
            "successThreshold": 1,
            "failureThreshold": 3,
            "terminationGracePeriodSeconds": 30,
        },
        "readinessProbe": {"tcpSocket": {"port": 8080, "host": "127.0.0.1"}, "periodSeconds": 5},
        "startupProbe": {"grpc": {"port": 9090, "service": "health"}, "failureThreshold": 30},
        "lifecycle": {
            "postStart": {"exec": {"command": ["/bin/warm"]}},
            "preStop": {"sleep": {"seconds": 5}},
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
            "privileged": false,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "runAsNonRoot": true,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    });
    (m, j)
}

/// A second, plainer container and a restartable init container (a sidecar).
fn other_containers() -> (pb::Container, pb::Container, Value, Value) {
    let shell = pb!(pb::Container {
        name: "shell",
        image: "busybox",
        stdin: true,
        stdin_once: true,
        tty: true,
        lifecycle: pb!(pb::Lifecycle {
            pre_stop: pb!(pb::LifecycleHandler {
                http_get: pb!(pb::HttpGetAction {
                    path: "/quit",
                    port: int(8081)
                }),
            }),
            stop_signal: "SIGTERM",
        }),
        liveness_probe: pb!(pb::Probe {
            handler: pb!(pb::ProbeHandler {
                exec: pb!(pb::ExecAction {
                    command: ["cat", "/tmp/healthy"]
                }),
            }),
        }),
    });
    let shell_json = json!({
        "name": "shell",
        "image": "busybox",
        "stdin": true,
        "stdinOnce": true,
        "tty": true,
        "lifecycle": {
            "preStop": {"httpGet": {"path": "/quit", "port": 8081}},
            "stopSignal": "SIGTERM",
        },
        "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}},
    });
    let sidecar = pb!(pb::Container {
        name: "proxy",
        image: "proxy:2",
        restart_policy: "Always",
        volume_mounts: [pb!(pb::VolumeMount {
            name: "data",
            mount_path: "/cache",
            mount_propagation: "HostToContainer",
            sub_path_expr: "$(POD_NAME)",
        })],
    });
    let sidecar_json = json!({
        "name": "proxy",
        "image": "proxy:2",
        "restartPolicy": "Always",
        "volumeMounts": [{
            "name": "data",
            "mountPath": "/cache",
            "mountPropagation": "HostToContainer",
            "subPathExpr": "$(POD_NAME)",
        }],
    });
    (shell, sidecar, shell_json, sidecar_json)
}

fn volumes() -> (Vec<pb::Volume>, Value) {
    let vol = |name: &str, source: pb::VolumeSource| {
        pb!(pb::Volume {
            name: name,
            volume_source: source
        })
    };
    let items = || {
        [pb!(pb::KeyToPath {
            key: "a",
            path: "a.conf",
            mode: 0o400
        })]
    };
    let field = |path: &str, field_path: &str| {
        pb!(pb::DownwardAPIVolumeFile {
            path: path,
            field_ref: pb!(pb::ObjectFieldSelector {
                field_path: field_path
            }),
        })
    };
    let m = vec![
        vol(
            "data",
            pb!(pb::VolumeSource {
                empty_dir: pb::EmptyDirVolumeSource::default()
            }),
        ),
        vol(
            "scratch",
            pb!(pb::VolumeSource {
                empty_dir: pb!(pb::EmptyDirVolumeSource {
                    medium: "Memory",
                    size_limit: pb!(Quantity { string: "1Gi" }),
                }),
            }),
        ),
        vol(
            "config",
            pb!(pb::VolumeSource {
                config_map: pb!(pb::ConfigMapVolumeSource {
                    local_object_reference: pb!(pb::LocalObjectReference { name: "settings" }),
                    items: items(),
                    default_mode: 0o644,
                    optional: true,
                }),
            }),
        ),
        vol(
            "creds",
            pb!(pb::VolumeSource {
                secret: pb!(pb::SecretVolumeSource {
                    secret_name: "creds",
                    default_mode: 0o600
                }),
            }),
        ),
        vol(
            "host",
            pb!(pb::VolumeSource {
                host_path: pb!(pb::HostPathVolumeSource {
                    path: "/var/log",
                    r#type: "Directory"
                }),
            }),
        ),
        vol(
            "podinfo",
            pb!(pb::VolumeSource {
                downward_api: pb!(pb::DownwardAPIVolumeSource {
                    items: [
                        field("labels", "metadata.labels"),
                        pb!(pb::DownwardAPIVolumeFile {
                            path: "cpu",
                            resource_field_ref: pb!(pb::ResourceFieldSelector {
                                container_name: "app",
                                resource: "limits.cpu",
                                divisor: pb!(Quantity { string: "1m" }),
                            }),
                            mode: 0o444,
                        }),
                    ],
                }),
            }),
        ),
        vol(
            "all-in-one",
            pb!(pb::VolumeSource {
                projected: pb!(pb::ProjectedVolumeSource {
                    default_mode: 0o440,
                    sources: [
                        pb!(pb::VolumeProjection {
                            config_map: pb!(pb::ConfigMapProjection {
                                local_object_reference: pb!(pb::LocalObjectReference { name: "settings" }),
                                items: items(),
                            }),
                        }),
                        pb!(pb::VolumeProjection {
                            secret: pb!(pb::SecretProjection {
                                local_object_reference: pb!(pb::LocalObjectReference { name: "creds" }),
                                optional: false,
                            }),
                        }),
                        pb!(pb::VolumeProjection {
                            downward_api: pb!(pb::DownwardAPIProjection {
                                items: [field("name", "metadata.name")],
                            }),
                        }),
                        pb!(pb::VolumeProjection {
                            service_account_token: pb!(pb::ServiceAccountTokenProjection {
                                audience: "vault",
                                expiration_seconds: 3600i64,
                                path: "token",
                            }),
                        }),
                    ],
                }),
            }),
        ),
        vol(
            "claim",
            pb!(pb::VolumeSource {
                persistent_volume_claim: pb!(pb::PersistentVolumeClaimVolumeSource {
                    claim_name: "data-0",
                    read_only: true,
                }),
            }),
        ),
    ];
    let items = json!([{"key": "a", "path": "a.conf", "mode": 0o400}]);
    let j = json!([
        {"name": "data", "emptyDir": {}},
        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
        {"name": "config", "configMap": {"name": "settings", "items": items, "defaultMode": 0o644, "optional": true}},
        {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o600}},
        {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
        {"name": "podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"},
             "mode": 0o444},
        ]}},
        {"name": "all-in-one", "projected": {"defaultMode": 0o440, "sources": [
            {"configMap": {"name": "settings", "items": items}},
            {"secret": {"name": "creds", "optional": false}},
            {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "token"}},
        ]}},
        {"name": "claim", "persistentVolumeClaim": {"claimName": "data-0", "readOnly": true}},
    ]);
    (m, j)
}

/// A `PodSpec` with two containers, a sidecar, every common volume kind and the scheduling,
/// security and DNS fields.
fn rich_pod_spec() -> (pb::PodSpec, Value) {
    let (app, app_json) = app_container();
    let (shell, sidecar, shell_json, sidecar_json) = other_containers();
    let (vols, vols_json) = volumes();
    let node_term = pb!(pb::NodeSelectorTerm {
        match_expressions: [pb!(pb::NodeSelectorRequirement {
            key: "kubernetes.io/os",
            operator: "In",
            values: ["linux"],
        })],
        match_fields: [pb!(pb::NodeSelectorRequirement {
            key: "metadata.name",
            operator: "NotIn",
            values: ["old-node"],
        })],
    });
    let m = pb!(pb::PodSpec {
        volumes: vols,
        init_containers: [sidecar],
        containers: [app, shell],
        restart_policy: "Always",
        termination_grace_period_seconds: 45i64,
        active_deadline_seconds: 600i64,
        dns_policy: "ClusterFirst",
        node_selector: [("disk", "ssd")],
        service_account_name: "web",
        automount_service_account_token: false,
        node_name: "node-1",
        host_network: true,
        host_pid: false,
        host_ipc: true,
        share_process_namespace: true,
        security_context: pb!(pb::PodSecurityContext {
            run_as_user: 1000i64,
            run_as_group: 3000i64,
            run_as_non_root: true,
            supplemental_groups: [4000i64],
            fs_group: 2000i64,
            sysctls: [pb!(pb::Sysctl {
                name: "net.ipv4.ip_local_port_range",
                value: "1024 65000"
            })],
            fs_group_change_policy: "OnRootMismatch",
            seccomp_profile: pb!(pb::SeccompProfile {
                r#type: "Localhost",
                localhost_profile: "p.json"
            }),
        }),
        image_pull_secrets: [pb!(pb::LocalObjectReference { name: "regcred" })],
        hostname: "web-0",
        subdomain: "web",
        affinity: pb!(pb::Affinity {
            node_affinity: pb!(pb::NodeAffinity {
                required_during_scheduling_ignored_during_execution: pb!(pb::NodeSelector {
                    node_selector_terms: [node_term.clone()],
                }),
                preferred_during_scheduling_ignored_during_execution: [pb!(pb::PreferredSchedulingTerm {
                    weight: 10,
                    preference: node_term,
                })],
            }),
            pod_anti_affinity: pb!(pb::PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: [pb!(pb::WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: pb!(pb::PodAffinityTerm {
                        label_selector: selector(),
                        topology_key: "kubernetes.io/hostname",
                    }),
                })],
            }),
            pod_affinity: pb!(pb::PodAffinity {
                required_during_scheduling_ignored_during_execution: [pb!(pb::PodAffinityTerm {
                    label_selector: pb!(pbmeta::LabelSelector {
                        match_labels: [("app", "db")]
                    }),
                    namespaces: ["data"],
                    topology_key: "topology.kubernetes.io/zone",
                })],
            }),
        }),
        scheduler_name: "default-scheduler",
        tolerations: [
            pb!(pb::Toleration {
                key: "node.kubernetes.io/not-ready",
                operator: "Exists",
                effect: "NoExecute",
                toleration_seconds: 300i64,
            }),
            pb!(pb::Toleration {
                key: "dedicated",
                operator: "Equal",
                value: "web",
                effect: "NoSchedule"
            }),
        ],
        host_aliases: [pb!(pb::HostAlias {
            ip: "10.0.0.9",
            hostnames: ["db.local"]
        })],
        priority_class_name: "high",
        priority: 1000,
        dns_config: pb!(pb::PodDnsConfig {
            nameservers: ["1.1.1.1"],
            searches: ["svc.local"],
            options: [pb!(pb::PodDnsConfigOption {
                name: "ndots",
                value: "2"
            })],
        }),
        readiness_gates: [pb!(pb::PodReadinessGate {
            condition_type: "example.com/ready"
        })],
        runtime_class_name: "host",
        enable_service_links: false,
        preemption_policy: "Never",
        overhead: [("cpu", "10m")],
        topology_spread_constraints: [pb!(pb::TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone",
            when_unsatisfiable: "ScheduleAnyway",
            label_selector: pb!(pbmeta::LabelSelector {
                match_labels: [("app", "web")]
            }),
            min_domains: 2,
            match_label_keys: ["pod-template-hash"],
        })],
        set_hostname_as_fqdn: false,
    });
    let term = json!({
        "matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}],
        "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["old-node"]}],
    });
    let j = json!({
        "volumes": vols_json,
        "initContainers": [sidecar_json],
        "containers": [app_json, shell_json],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 45,
        "activeDeadlineSeconds": 600,
        "dnsPolicy": "ClusterFirst",
        "nodeSelector": {"disk": "ssd"},
        "serviceAccountName": "web",
        "automountServiceAccountToken": false,
        "nodeName": "node-1",
        "hostNetwork": true,
        "hostIPC": true,
        "shareProcessNamespace": true,
        "securityContext": {
            "runAsUser": 1000,
            "runAsGroup": 3000,
            "runAsNonRoot": true,
            "supplementalGroups": [4000],
            "fsGroup": 2000,
            "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"}],
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"},
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "hostname": "web-0",
        "subdomain": "web",
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]},
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference": term}],
            },
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 100,
                    "podAffinityTerm": {"labelSelector": selector_json(), "topologyKey": "kubernetes.io/hostname"},
                }],
            },
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": "db"}},
                    "namespaces": ["data"],
                    "topologyKey": "topology.kubernetes.io/zone",
                }],
            },
        },
        "schedulerName": "default-scheduler",
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"},
        ],
        "hostAliases": [{"ip": "10.0.0.9", "hostnames": ["db.local"]}],
        "priorityClassName": "high",
        "priority": 1000,
        "dnsConfig": {
            "nameservers": ["1.1.1.1"],
            "searches": ["svc.local"],
            "options": [{"name": "ndots", "value": "2"}],
        },
        "readinessGates": [{"conditionType": "example.com/ready"}],
        "runtimeClassName": "host",
        "enableServiceLinks": false,
        "preemptionPolicy": "Never",
        "overhead": {"cpu": "10m"},
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "web"}},
            "minDomains": 2,
            "matchLabelKeys": ["pod-template-hash"],
        }],
        "setHostnameAsFQDN": false,
    });
    (m, j)
}

fn rich_template() -> (pb::PodTemplateSpec, Value) {
    let (spec, spec_json) = rich_pod_spec();
    let m = pb!(pb::PodTemplateSpec {
        metadata: pb!(pbmeta::ObjectMeta {
            labels: [("app", "web"), ("tier", "front")],
            annotations: [("kubectl.kubernetes.io/default-container", "app")],
        }),
        spec: spec,
    });
    let j = json!({
        "metadata": {
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"kubectl.kubernetes.io/default-container": "app"},
        },
        "spec": spec_json,
    });
    (m, j)
}

#[test]
fn decodes_a_rich_deployment() {
    use k8s_openapi::api::apps::v1::Deployment;
    let (template, template_json) = rich_template();
    let mut metadata = meta("web");
    metadata.annotations = [("deployment.kubernetes.io/revision", "3")].p();
    metadata.owner_references = vec![pb!(pbmeta::OwnerReference {
        api_version: "example.com/v1",
        kind: "App",
        name: "web",
        uid: "1234-5678",
        controller: true,
        block_owner_deletion: true,
    })];
    metadata.finalizers = ["example.com/cleanup"].p();
    let d = pb!(apps::Deployment {
        metadata: metadata,
        spec: pb!(apps::DeploymentSpec {
            replicas: 3,
            selector: selector(),
            template: template,
            strategy: pb!(apps::DeploymentStrategy {
                r#type: "RollingUpdate",
                rolling_update: pb!(apps::RollingUpdateDeployment {
                    max_unavailable: int(0),
                    max_surge: string("25%"),
                }),
            }),
            min_ready_seconds: 5,
            revision_history_limit: 0,
            paused: true,
            progress_deadline_seconds: 600,
        }),
        status: pb!(apps::DeploymentStatus {
            replicas: 3,
            ready_replicas: 1
        }),
    });
    let mut metadata_json = meta_json("web");
    metadata_json["annotations"] = json!({"deployment.kubernetes.io/revision": "3"});
    metadata_json["ownerReferences"] = json!([{
        "apiVersion": "example.com/v1",
        "kind": "App",
        "name": "web",
        "uid": "1234-5678",
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    metadata_json["finalizers"] = json!(["example.com/cleanup"]);
    assert_converts::<Deployment, _>(
        d,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata_json,
            "spec": {
                "replicas": 3,
                "selector": selector_json(),
                "template": template_json,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
                "minReadySeconds": 5,
                "revisionHistoryLimit": 0,
                "paused": true,
                "progressDeadlineSeconds": 600,
            },
        }),
    );
}

#[test]
fn decodes_a_replica_set() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    let (template, template_json) = rich_template();
    let rs = pb!(apps::ReplicaSet {
        metadata: meta("web-5d4f"),
        spec: pb!(apps::ReplicaSetSpec {
            replicas: 0,
            min_ready_seconds: 10,
            selector: selector(),
            template: template,
        }),
    });
    assert_converts::<ReplicaSet, _>(
        rs,
        json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": meta_json("web-5d4f"),
            "spec": {"replicas": 0, "minReadySeconds": 10, "selector": selector_json(), "template": template_json},
        }),
    );
}

#[test]
fn decodes_a_stateful_set_with_claim_templates() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    let (template, template_json) = rich_template();
    let claim = pb!(pb::PersistentVolumeClaim {
        metadata: pb!(pbmeta::ObjectMeta {
            name: "data",
            labels: [("app", "db")]
        }),
        spec: pb!(pb::PersistentVolumeClaimSpec {
            access_modes: ["ReadWriteOnce"],
            resources: pb!(pb::VolumeResourceRequirements {
                requests: [("storage", "1Gi")]
            }),
            storage_class_name: "",
            volume_mode: "Filesystem",
        }),
    });
    let sts = pb!(apps::StatefulSet {
        metadata: meta("db"),
        spec: pb!(apps::StatefulSetSpec {
            replicas: 2,
            selector: selector(),
            template: template,
            volume_claim_templates: [claim],
            service_name: "db",
            pod_management_policy: "Parallel",
            update_strategy: pb!(apps::StatefulSetUpdateStrategy {
                r#type: "RollingUpdate",
                rolling_update: pb!(apps::RollingUpdateStatefulSetStrategy {
                    partition: 1,
                    max_unavailable: string("50%"),
                }),
            }),
            revision_history_limit: 5,
            min_ready_seconds: 3,
            persistent_volume_claim_retention_policy: pb!(
                apps::StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: "Delete",
                    when_scaled: "Retain",
                }
            ),
            ordinals: pb!(apps::StatefulSetOrdinals { start: 5 }),
        }),
    });
    assert_converts::<StatefulSet, _>(
        sts,
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta_json("db"),
            "spec": {
                "replicas": 2,
                "selector": selector_json(),
                "template": template_json,
                "volumeClaimTemplates": [{
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "data", "labels": {"app": "db"}},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                        "storageClassName": "",
                        "volumeMode": "Filesystem",
                    },
                }],
                "serviceName": "db",
                "podManagementPolicy": "Parallel",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1, "maxUnavailable": "50%"}},
                "revisionHistoryLimit": 5,
                "minReadySeconds": 3,
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
                "ordinals": {"start": 5},
            },
        }),
    );
}

#[test]
fn decodes_a_daemon_set() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let (template, template_json) = rich_template();
    let ds = pb!(apps::DaemonSet {
        metadata: meta("agent"),
        spec: pb!(apps::DaemonSetSpec {
            selector: selector(),
            template: template,
            update_strategy: pb!(apps::DaemonSetUpdateStrategy {
                r#type: "RollingUpdate",
                rolling_update: pb!(apps::RollingUpdateDaemonSet {
                    max_unavailable: int(1),
                    max_surge: int(0),
                }),
            }),
            min_ready_seconds: 2,
            revision_history_limit: 10,
        }),
        status: pb!(apps::DaemonSetStatus { number_ready: 4 }),
    });
    assert_converts::<DaemonSet, _>(
        ds,
        json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": meta_json("agent"),
            "spec": {
                "selector": selector_json(),
                "template": template_json,
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                "minReadySeconds": 2,
                "revisionHistoryLimit": 10,
            },
        }),
    );
}

/// A JobSpec with every field set, and its JSON.
fn rich_job_spec() -> (batch::JobSpec, Value) {
    let (template, template_json) = rich_template();
    let m = pb!(batch::JobSpec {
        parallelism: 2,
        completions: 4,
        active_deadline_seconds: 3600i64,
        pod_failure_policy: pb!(batch::PodFailurePolicy {
            rules: [
                pb!(batch::PodFailurePolicyRule {
                    action: "FailJob",
                    on_exit_codes: pb!(batch::PodFailurePolicyOnExitCodesRequirement {
                        container_name: "app",
                        operator: "In",
                        values: [42, 43],
                    }),
                }),
                pb!(batch::PodFailurePolicyRule {
                    action: "Ignore",
                    on_pod_conditions: [pb!(batch::PodFailurePolicyOnPodConditionsPattern {
                        r#type: "DisruptionTarget",
                        status: "True",
                    })],
                }),
            ],
        }),
        success_policy: pb!(batch::SuccessPolicy {
            rules: [pb!(batch::SuccessPolicyRule {
                succeeded_indexes: "0-2",
                succeeded_count: 2
            })],
        }),
        backoff_limit: 0,
        backoff_limit_per_index: 1,
        max_failed_indexes: 2,
        selector: selector(),
        manual_selector: true,
        template: template,
        ttl_seconds_after_finished: 100,
        completion_mode: "Indexed",
        suspend: false,
        pod_replacement_policy: "Failed",
    });
    let j = json!({
        "parallelism": 2,
        "completions": 4,
        "activeDeadlineSeconds": 3600,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "app", "operator": "In", "values": [42, 43]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
        "successPolicy": {"rules": [{"succeededIndexes": "0-2", "succeededCount": 2}]},
        "backoffLimit": 0,
        "backoffLimitPerIndex": 1,
        "maxFailedIndexes": 2,
        "selector": selector_json(),
        "manualSelector": true,
        "template": template_json,
        "ttlSecondsAfterFinished": 100,
        "completionMode": "Indexed",
        "suspend": false,
        "podReplacementPolicy": "Failed",
    });
    (m, j)
}

#[test]
fn decodes_a_rich_job() {
    use k8s_openapi::api::batch::v1::Job;
    let (spec, spec_json) = rich_job_spec();
    let job = pb!(batch::Job {
        metadata: meta("pi"),
        spec: spec,
        status: pb!(batch::JobStatus {
            active: 1,
            succeeded: 2
        }),
    });
    assert_converts::<Job, _>(
        job,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta_json("pi"), "spec": spec_json}),
    );
}

#[test]
fn decodes_a_cron_job_with_a_full_job_template() {
    use k8s_openapi::api::batch::v1::CronJob;
    let (spec, spec_json) = rich_job_spec();
    let cj = pb!(batch::CronJob {
        metadata: meta("nightly"),
        spec: pb!(batch::CronJobSpec {
            schedule: "0 3 * * *",
            time_zone: "Europe/Berlin",
            starting_deadline_seconds: 200i64,
            concurrency_policy: "Forbid",
            suspend: true,
            job_template: pb!(batch::JobTemplateSpec {
                metadata: pb!(pbmeta::ObjectMeta {
                    labels: [("job", "nightly")]
                }),
                spec: spec,
            }),
            successful_jobs_history_limit: 0,
            failed_jobs_history_limit: 1,
        }),
    });
    assert_converts::<CronJob, _>(
        cj,
        json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta_json("nightly"),
            "spec": {
                "schedule": "0 3 * * *",
                "timeZone": "Europe/Berlin",
                "startingDeadlineSeconds": 200,
                "concurrencyPolicy": "Forbid",
                "suspend": true,
                "jobTemplate": {"metadata": {"labels": {"job": "nightly"}}, "spec": spec_json},
                "successfulJobsHistoryLimit": 0,
                "failedJobsHistoryLimit": 1,
            },
        }),
    );
}

#[test]
fn decodes_a_pod() {
    use k8s_openapi::api::core::v1::Pod;
    let (spec, spec_json) = rich_pod_spec();
    let pod = pb!(pb::Pod {
        metadata: pb!(pbmeta::ObjectMeta {
            generate_name: "debug-",
            namespace: "default"
        }),
        spec: spec,
        status: pb!(pb::PodStatus { phase: "Running" }),
    });
    assert_converts::<Pod, _>(
        pod,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "debug-", "namespace": "default"},
            "spec": spec_json,
        }),
    );
}

#[test]
fn decodes_a_service_account() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let sa = pb!(pb::ServiceAccount {
        metadata: meta("builder"),
        secrets: [pb!(pb::ObjectReference {
            name: "builder-token"
        })],
        image_pull_secrets: [pb!(pb::LocalObjectReference { name: "regcred" })],
        automount_service_account_token: false,
    });
    assert_converts::<ServiceAccount, _>(
        sa,
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta_json("builder"),
            "secrets": [{"name": "builder-token"}],
            "imagePullSecrets": [{"name": "regcred"}],
            "automountServiceAccountToken": false,
        }),
    );
}

/// Bodies real kubectl (v1.32) sent, each beside what `--dry-run=client -o json` prints for the
/// same command: Go's JSON encoding of the very object it encoded in protobuf. The CronJob that
/// `--from=cronjob/nightly` copied was served as the JSON of [`rich_job_spec`]'s template, so
/// that body carries a whole PodSpec with every zero value Go writes.
const KUBECTL_BODIES: &[(&str, &[u8], &str)] = &[
    (
        "kubectl create deployment web --image=x -- sleep 1",
        include_bytes!("testdata/deployment-web.pb"),
        include_str!("testdata/deployment-web.json"),
    ),
    (
        "kubectl create deployment multi --image=nginx --image=redis --replicas=3 --port=8080",
        include_bytes!("testdata/deployment-multi.pb"),
        include_str!("testdata/deployment-multi.json"),
    ),
    (
        "kubectl create job pi --image=perl -- perl -e 'print 1'",
        include_bytes!("testdata/job-pi.pb"),
        include_str!("testdata/job-pi.json"),
    ),
    (
        "kubectl create cronjob tick --image=busybox --schedule='*/1 * * * *' --restart=OnFailure -- date",
        include_bytes!("testdata/cronjob-tick.pb"),
        include_str!("testdata/cronjob-tick.json"),
    ),
    (
        "kubectl create job manual --from=cronjob/nightly",
        include_bytes!("testdata/job-from-cronjob.pb"),
        include_str!("testdata/job-from-cronjob.json"),
    ),
    (
        // The same, from a CronJob whose jobTemplate is that one with every string, number and
        // bool zeroed (quantities "0"): what Go keeps in JSON shows which fields are pointers
        // or lack omitempty.
        "kubectl create job zeroed --from=cronjob/nightly",
        include_bytes!("testdata/job-from-zeroed-cronjob.pb"),
        include_str!("testdata/job-from-zeroed-cronjob.json"),
    ),
    (
        // The rest of what a PodSpec carries (v1.32's fields): OS, scheduling gates, resource
        // claims, SELinux/Windows/AppArmor options, volume devices, nfs/csi/ephemeral/image
        // volumes, cluster trust bundles; served as is and zeroed.
        "kubectl create job extra --from=cronjob/nightly",
        include_bytes!("testdata/job-from-cronjob-extra.pb"),
        include_str!("testdata/job-from-cronjob-extra.json"),
    ),
    (
        "kubectl create job extra-zeroed --from=cronjob/nightly",
        include_bytes!("testdata/job-from-zeroed-cronjob-extra.pb"),
        include_str!("testdata/job-from-zeroed-cronjob-extra.json"),
    ),
    (
        "kubectl create namespace x",
        include_bytes!("testdata/namespace-x.pb"),
        include_str!("testdata/namespace-x.json"),
    ),
    (
        "kubectl create service clusterip s --tcp=80:8080 --tcp=443:https",
        include_bytes!("testdata/service-clusterip.pb"),
        include_str!("testdata/service-clusterip.json"),
    ),
    (
        "kubectl create service nodeport np --tcp=80:8080 --node-port=30080",
        include_bytes!("testdata/service-nodeport.pb"),
        include_str!("testdata/service-nodeport.json"),
    ),
    (
        "kubectl create service externalname ex --external-name=example.com",
        include_bytes!("testdata/service-externalname.pb"),
        include_str!("testdata/service-externalname.json"),
    ),
    (
        "kubectl create service clusterip h --clusterip=None --tcp=53:53",
        include_bytes!("testdata/service-headless.pb"),
        include_str!("testdata/service-headless.json"),
    ),
    (
        "kubectl create configmap c --from-literal=a=b --from-literal=mode=fast",
        include_bytes!("testdata/configmap-c.pb"),
        include_str!("testdata/configmap-c.json"),
    ),
    (
        "kubectl create secret generic s --from-literal=password=hunter2 --type=Opaque",
        include_bytes!("testdata/secret-generic.pb"),
        include_str!("testdata/secret-generic.json"),
    ),
    (
        "kubectl create secret docker-registry reg --docker-server=r.example --docker-username=u --docker-password=p",
        include_bytes!("testdata/secret-docker.pb"),
        include_str!("testdata/secret-docker.json"),
    ),
    (
        "kubectl create serviceaccount builder",
        include_bytes!("testdata/serviceaccount-builder.pb"),
        include_str!("testdata/serviceaccount-builder.json"),
    ),
];

/// What Go's JSON has that the conversion leaves out: `creationTimestamp: null` (the zero
/// time) and the empty `status`.
fn without_zero_time_and_status(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|k, v| !(k == "creationTimestamp" && v.is_null()));
        m.values_mut().for_each(without_zero_time_and_status);
    } else if let Value::Array(a) = v {
        a.iter_mut().for_each(without_zero_time_and_status);
    }
}

#[test]
fn decodes_what_kubectl_sends_as_kubectl_would_send_it_in_json() {
    for (command, body, json_text) in KUBECTL_BODIES {
        let mut expected: Value = serde_json::from_str(json_text).unwrap();
        without_zero_time_and_status(&mut expected);
        // Go's zero status (`{}`, a Service's `{"loadBalancer": {}}`): dropped by the conversion.
        if let Some(status) = expected.as_object_mut().and_then(|m| m.remove("status")) {
            assert!(only_empty_objects(&status), "{command}: {status}");
        }
        let got = decode(body).unwrap();
        assert_eq!(
            differences(&got, &expected, "$"),
            Vec::<String>::new(),
            "{command}"
        );
    }
}

fn only_empty_objects(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.values().all(only_empty_objects))
}

/// The paths at which two JSON values differ, to make a failing comparison readable.
fn differences(got: &Value, want: &Value, path: &str) -> Vec<String> {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let keys: std::collections::BTreeSet<&String> = g.keys().chain(w.keys()).collect();
            keys.into_iter()
                .flat_map(|k| match (g.get(k), w.get(k)) {
                    (Some(a), Some(b)) => differences(a, b, &format!("{path}.{k}")),
                    (a, b) => vec![format!("{path}.{k}: got {a:?}, want {b:?}")],
                })
                .collect()
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => g
            .iter()
            .zip(w)
            .enumerate()
            .flat_map(|(i, (a, b))| differences(a, b, &format!("{path}[{i}]")))
            .collect(),
        _ if got == want => Vec::new(),
        _ => vec![format!("{path}: got {got}, want {want}")],
    }
}

#[test]
fn decodes_the_whole_object_metadata() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let cm = pb!(pb::ConfigMap {
        metadata: pb!(pbmeta::ObjectMeta {
            name: "c",
            generate_name: "c-",
            namespace: "ns",
            uid: "9b2f",
            resource_version: "42",
            generation: 3i64,
            creation_timestamp: pb!(pbmeta::Time {
                seconds: 1_709_251_199i64,
                nanos: 5
            }),
            deletion_timestamp: pb!(pbmeta::Time {
                seconds: 1_709_251_200i64
            }),
            deletion_grace_period_seconds: 0i64,
            labels: [("a", "1")],
            annotations: [("b", "2")],
            finalizers: ["f"],
            managed_fields: [pb!(pbmeta::ManagedFieldsEntry { manager: "kubectl" })],
        }),
    });
    assert_converts::<ConfigMap, _>(
        cm,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "c",
                "generateName": "c-",
                "namespace": "ns",
                "uid": "9b2f",
                "resourceVersion": "42",
                "generation": 3,
                "creationTimestamp": "2024-02-29T23:59:59Z",
                "deletionTimestamp": "2024-03-01T00:00:00Z",
                "deletionGracePeriodSeconds": 0,
                "labels": {"a": "1"},
                "annotations": {"b": "2"},
                "finalizers": ["f"],
            },
        }),
    );
    // Go's zero time is an empty message: JSON's null, absent here.
    let zero = pb!(pb::ConfigMap {
        metadata: pb!(pbmeta::ObjectMeta {
            name: "z",
            creation_timestamp: pbmeta::Time::default()
        }),
    });
    let v = decode(&envelope("v1", "ConfigMap", zero.encode_to_vec())).unwrap();
    assert_eq!(v["metadata"], json!({"name": "z"}));
}

const SERVED: &[(&str, &str)] = &[
    ("v1", "Namespace"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "ServiceAccount"),
    ("v1", "Pod"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
];

proptest::proptest! {
    /// Any bytes as any converted kind: an object or an error, never a panic.
    #[test]
    fn arbitrary_objects_decode_or_fail(
        kind in 0..SERVED.len(),
        raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
    ) {
        let (api_version, kind) = SERVED[kind];
        if let Ok(v) = decode(&envelope(api_version, kind, raw)) {
            proptest::prop_assert_eq!(&v["kind"], kind);
        }
    }

    /// A real body with a byte changed: an object or an error, never a panic.
    #[test]
    fn mangled_kubectl_bodies_decode_or_fail(
        which in 0..KUBECTL_BODIES.len(),
        at in 0usize..4096,
        byte in proptest::prelude::any::<u8>(),
    ) {
        let mut body = KUBECTL_BODIES[which].1.to_vec();
        let i = at % body.len();
        body[i] = byte;
        let _ = decode(&body);
    }
}

/// kubectl's generated bodies, converted, are objects the server's own strategies know
/// field by field; those of a process node's kind (with commands) also pass defaulting and
/// validation of a create. `deployment-multi` names no command (a process node refuses it) and
/// `job-from-cronjob` is a deliberately odd template (an `Always` restart policy in a Job).
#[test]
fn kubectl_generated_bodies_pass_the_server_strategies() {
    use crate::strategy::{self, Strategy};
    let cases: [(&[u8], &dyn Strategy, bool); 6] = [
        (
            include_bytes!("testdata/deployment-web.pb"),
            &strategy::DEPLOYMENTS,
            true,
        ),
        (
            include_bytes!("testdata/deployment-multi.pb"),
            &strategy::DEPLOYMENTS,
            false,
        ),
        (include_bytes!("testdata/job-pi.pb"), &strategy::JOBS, true),
        (
            include_bytes!("testdata/cronjob-tick.pb"),
            &strategy::CRON_JOBS,
            true,
        ),
        (
            include_bytes!("testdata/job-from-cronjob.pb"),
            &strategy::JOBS,
            false,
        ),
        (
            include_bytes!("testdata/serviceaccount-builder.pb"),
            &strategy::SERVICE_ACCOUNTS,
            true,
        ),
    ];
    for (body, strategy, valid) in cases {
        let mut object = decode(body).unwrap();
        object["metadata"]["namespace"] = json!("default");
        // Admission gives a new object its UID before defaulting (a Job's selector uses it).
        object["metadata"]["uid"] = json!("0f1e2d3c-0000-4000-8000-000000000001");
        let (_, unknown) = strategy.decode_known(&object).unwrap();
        assert_eq!(unknown, Vec::<String>::new(), "{object}");
        match strategy.default_and_validate(&mut object, None) {
            Ok(_) => assert!(valid, "{object}"),
            Err(crate::strategy::Rejection::Invalid(e)) if !valid => assert!(!e.errors().is_empty()),
            Err(e) => panic!("{e:?}: {object}"),
        }
    }
}

#[test]
fn decodes_a_full_service_spec() {
    use k8s_openapi::api::core::v1::Service;
    let svc = pb!(pb::Service {
        metadata: meta("lb"),
        spec: pb!(pb::ServiceSpec {
            ports: [pb!(pb::ServicePort {
                name: "https",
                protocol: "TCP",
                app_protocol: "kubernetes.io/h2c",
                port: 443,
                target_port: string("https"),
                node_port: 30443,
            })],
            selector: [("app", "lb")],
            cluster_ip: "10.0.0.10",
            cluster_ips: ["10.0.0.10", "fd00::10"],
            r#type: "LoadBalancer",
            external_ips: ["192.0.2.1"],
            session_affinity: "ClientIP",
            load_balancer_ip: "192.0.2.2",
            load_balancer_source_ranges: ["192.0.2.0/24"],
            external_traffic_policy: "Local",
            health_check_node_port: 32000,
            publish_not_ready_addresses: true,
            session_affinity_config: pb!(pb::SessionAffinityConfig {
                client_ip: pb!(pb::ClientIpConfig { timeout_seconds: 600 }),
            }),
            ip_families: ["IPv4", "IPv6"],
            ip_family_policy: "PreferDualStack",
            allocate_load_balancer_node_ports: false,
            load_balancer_class: "example.com/lb",
            internal_traffic_policy: "Cluster",
            traffic_distribution: "PreferClose",
        }),
        status: pb!(pb::ServiceStatus {
            load_balancer: pb::LoadBalancerStatus::default()
        }),
    });
    assert_converts::<Service, _>(
        svc,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta_json("lb"),
            "spec": {
                "ports": [{
                    "name": "https",
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                    "port": 443,
                    "targetPort": "https",
                    "nodePort": 30443,
                }],
                "selector": {"app": "lb"},
                "clusterIP": "10.0.0.10",
                "clusterIPs": ["10.0.0.10", "fd00::10"],
                "type": "LoadBalancer",
                "externalIPs": ["192.0.2.1"],
                "sessionAffinity": "ClientIP",
                "loadBalancerIP": "192.0.2.2",
                "loadBalancerSourceRanges": ["192.0.2.0/24"],
                "externalTrafficPolicy": "Local",
                "healthCheckNodePort": 32000,
                "publishNotReadyAddresses": true,
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
                "ipFamilies": ["IPv4", "IPv6"],
                "ipFamilyPolicy": "PreferDualStack",
                "allocateLoadBalancerNodePorts": false,
                "loadBalancerClass": "example.com/lb",
                "internalTrafficPolicy": "Cluster",
                "trafficDistribution": "PreferClose",
            },
        }),
    );
}

/// The pods `kubectl debug` (v1.32) creates in protobuf: a copy of a pod with a debug container
/// (`--copy-to`), and a node debugging pod (`node/n1`: host namespaces, the host's root, a
/// toleration of everything). `kubectl debug` has no `--dry-run`, so the JSON is written out;
/// both pass the Pod strategy.
#[test]
fn decodes_kubectl_debug_pods() {
    use crate::strategy::{PodStrategy, Strategy};
    let copy = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-debug", "namespace": "default"},
        "spec": {"containers": [
            {"name": "app", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}},
            {
                "name": "dbg",
                "image": "busybox",
                "command": ["sleep", "1"],
                "resources": {},
                "terminationMessagePolicy": "File",
            },
        ]},
    });
    let node = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "node-debugger-n1-872jc"},
        "spec": {
            "containers": [{
                "name": "debugger",
                "image": "busybox",
                "command": ["sleep", "1"],
                "resources": {},
                "terminationMessagePolicy": "File",
                "volumeMounts": [{"name": "host-root", "mountPath": "/host"}],
            }],
            "hostIPC": true,
            "hostNetwork": true,
            "hostPID": true,
            "nodeName": "n1",
            "restartPolicy": "Never",
            "tolerations": [{"operator": "Exists"}],
            "volumes": [{"name": "host-root", "hostPath": {"path": "/"}}],
        },
    });
    let cases: [(&[u8], Value, bool); 2] = [
        (include_bytes!("testdata/pod-debug-copy.pb"), copy, false),
        (include_bytes!("testdata/pod-debug-node.pb"), node, true),
    ];
    for (body, expected, valid) in cases {
        let mut got = decode(body).unwrap();
        assert_eq!(differences(&got, &expected, "$"), Vec::<String>::new());
        got["metadata"]["namespace"] = json!("default");
        let (_, unknown) = PodStrategy.decode_known(&got).unwrap();
        assert_eq!(unknown, Vec::<String>::new());
        if valid && let Err(e) = PodStrategy.default_and_validate(&mut got, None) {
            panic!("{e:?}: {got}");
        }
    }
}
