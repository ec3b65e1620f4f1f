//! Rich pod fixtures, each as the protobuf message and as the JSON the server must see: containers, volumes, a pod spec and a pod template.

use super::*;

/// A container using most of what a container can say: probes of every handler kind, env with
/// every `valueFrom`, `envFrom`, resources, mounts, lifecycle hooks and a security context.
pub(super) fn app_container() -> (pb::Container, Value) {
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
pub(super) fn other_containers() -> (pb::Container, pb::Container, Value, Value) {
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

pub(super) fn volumes() -> (Vec<pb::Volume>, Value) {
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
pub(super) fn rich_pod_spec() -> (pb::PodSpec, Value) {
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

pub(super) fn rich_template() -> (pb::PodTemplateSpec, Value) {
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
