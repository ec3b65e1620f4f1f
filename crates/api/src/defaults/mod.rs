//! API-server defaulting for Pods, Services and Secrets (k8s-semantics rules 1.1–1.8), and for
//! the workload kinds in `workload.rs` (Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs,
//! CronJobs), re-exported here.
//!
//! Defaulting fills fields that are unset (or hold their zero value) and never overwrites a
//! value the user chose. It runs before [`crate::validation`]. Filling `metadata.namespace` is
//! deliberately not done here: that comes from the request, which is the API layer's business.

use podvisor_core::corev1::{
    Container, HTTPGetAction, Lifecycle, Pod, PodSecurityContext, PodSpec, Probe, Secret, Service,
    ServiceSpec,
};
use podvisor_core::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

mod workload;

pub use workload::{
    JOB_CONTROLLER_UID_LABEL, JOB_NAME_LABEL, LEGACY_JOB_CONTROLLER_UID_LABEL, LEGACY_JOB_NAME_LABEL,
    default_cron_job, default_daemon_set, default_deployment, default_job, default_replica_set,
    default_stateful_set,
};

/// Default `terminationGracePeriodSeconds` (rule 1.2).
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// Default `terminationMessagePath` (rule 1.5).
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// Set `slot` to `value` when it is `None` or holds the empty string.
pub(crate) fn default_str(slot: &mut Option<String>, value: &str) {
    if slot.as_deref().is_none_or(str::is_empty) {
        *slot = Some(value.to_owned());
    }
}

/// Set `slot` to `value` when it is `None` or zero.
/// `defaultMode` of configMap, secret, downwardAPI and projected volumes (0644).
pub const DEFAULT_VOLUME_MODE: i32 = 0o644;

/// The `tolerationSeconds` kube-apiserver's DefaultTolerationSeconds admission gives pods for
/// the `not-ready` and `unreachable` NoExecute taints (`--default-not-ready-toleration-seconds`,
/// `--default-unreachable-toleration-seconds`).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// kube-apiserver's DefaultTolerationSeconds admission (`cluster-semantics.md` 2.16), on a
/// pod's create: unless a NoExecute (or any-effect) toleration for the key (or for every key)
/// exists, the pod tolerates `node.kubernetes.io/not-ready` and
/// `node.kubernetes.io/unreachable` NoExecute for [`DEFAULT_TOLERATION_SECONDS`], so a lost
/// node's pods are evicted after 5 minutes.
pub fn default_toleration_seconds(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let covered = tolerations.iter().any(|t| {
            let key_matches = t.key.as_deref().is_none_or(|k| k.is_empty() || k == key);
            let effect_matches = t
                .effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "NoExecute");
            key_matches && effect_matches
        });
        if !covered {
            tolerations.push(podvisor_core::corev1::Toleration {
                key: Some(key.to_owned()),
                operator: Some("Exists".to_owned()),
                effect: Some("NoExecute".to_owned()),
                toleration_seconds: Some(DEFAULT_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
}

/// Apply every pod default in place. A missing `spec` is created first, as the API server
/// always has one.
pub fn default_pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    default_pod_spec(spec);
}

pub(crate) fn default_pod_spec(spec: &mut PodSpec) {
    // 1.1
    default_str(&mut spec.restart_policy, "Always");
    // 1.2
    if spec.termination_grace_period_seconds.is_none() {
        spec.termination_grace_period_seconds = Some(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
    }
    default_str(&mut spec.dns_policy, "ClusterFirst");
    default_str(&mut spec.scheduler_name, "default-scheduler");
    if spec.security_context.is_none() {
        spec.security_context = Some(PodSecurityContext::default());
    }
    if spec.enable_service_links.is_none() {
        spec.enable_service_links = Some(true);
    }
    // Volume sources' file modes (0644), as the API server defaults them.
    for v in spec.volumes.iter_mut().flatten() {
        if let Some(c) = v.config_map.as_mut() {
            c.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        }
        if let Some(s) = v.secret.as_mut() {
            s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        }
        if let Some(d) = v.downward_api.as_mut() {
            d.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        }
        if let Some(p) = v.projected.as_mut() {
            p.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        }
        if let Some(h) = v.host_path.as_mut() {
            h.type_.get_or_insert_with(String::new);
        }
    }
    let host_network = spec.host_network == Some(true);
    let inits = spec.init_containers.iter_mut().flatten();
    for c in spec.containers.iter_mut().chain(inits) {
        default_container(c, host_network);
    }
    // An ephemeral container has no ports, probes, hooks or resources to default.
    for c in spec.ephemeral_containers.iter_mut().flatten() {
        default_str(&mut c.termination_message_path, DEFAULT_TERMINATION_MESSAGE_PATH);
        default_str(&mut c.termination_message_policy, "File");
        if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
            let policy = image_pull_policy_for(c.image.as_deref().unwrap_or(""));
            c.image_pull_policy = Some(policy.to_owned());
        }
    }
}

/// Rules 1.3–1.7 for one container (regular or init).
fn default_container(c: &mut Container, host_network: bool) {
    // 1.5
    default_str(&mut c.termination_message_path, DEFAULT_TERMINATION_MESSAGE_PATH);
    default_str(&mut c.termination_message_policy, "File");
    if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
        let policy = image_pull_policy_for(c.image.as_deref().unwrap_or(""));
        c.image_pull_policy = Some(policy.to_owned());
    }
    // 1.6
    for port in c.ports.iter_mut().flatten() {
        default_str(&mut port.protocol, "TCP");
        if host_network && port.host_port.is_none_or(|p| p == 0) {
            port.host_port = Some(port.container_port);
        }
    }
    // 1.3, 1.4
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    if let Some(lc) = &mut c.lifecycle {
        default_lifecycle(lc);
    }
    // 1.7
    if let Some(res) = &mut c.resources
        && let Some(limits) = &res.limits
    {
        let requests = res.requests.get_or_insert_with(Default::default);
        for (name, qty) in limits {
            requests.entry(name.clone()).or_insert_with(|| qty.clone());
        }
    }
}

fn default_probe(p: &mut Probe) {
    podvisor_core::probe::ProbeTiming::apply_defaults(p);
    if let Some(h) = &mut p.http_get {
        default_http_get(h);
    }
}

fn default_lifecycle(lc: &mut Lifecycle) {
    for h in [&mut lc.post_start, &mut lc.pre_stop].into_iter().flatten() {
        if let Some(http) = &mut h.http_get {
            default_http_get(http);
        }
    }
}

fn default_http_get(h: &mut HTTPGetAction) {
    default_str(&mut h.path, "/");
    default_str(&mut h.scheme, "HTTP");
}

/// The pull policy an unset `imagePullPolicy` defaults to (rule 1.5): `Always` when the image's
/// tag is `latest` or there is neither tag nor digest, otherwise `IfNotPresent`.
///
/// A registry host with a port (`localhost:5000/img`) is not a tag; a digest
/// (`img@sha256:…`) without a tag counts as "not latest". An empty image gets `IfNotPresent`,
/// as kube-apiserver's parser fails on it and falls through to that branch.
pub fn image_pull_policy_for(image: &str) -> &'static str {
    if image.is_empty() {
        return "IfNotPresent";
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    // The tag lives after the last ':' of the last path component.
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.rsplit_once(':').map(|(_, t)| t);
    let tag = match (tag, digest) {
        (Some(t), _) => t,
        (None, Some(_)) => "",
        (None, None) => "latest",
    };
    if tag == "latest" { "Always" } else { "IfNotPresent" }
}

/// Apply every service default in place (rule 1.8). A missing `spec` is created first.
pub fn default_service(svc: &mut Service) {
    let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
    default_str(&mut spec.type_, "ClusterIP");
    default_str(&mut spec.session_affinity, "None");
    for port in spec.ports.iter_mut().flatten() {
        default_str(&mut port.protocol, "TCP");
        let unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
    let type_ = spec.type_.clone().unwrap_or_default();
    if type_ == "ExternalName" {
        return;
    }
    // The traffic policies (SetDefaults_Service) and the IP families the registry sets: this
    // is a single-stack IPv4 cluster, so a headless Service without a selector prefers dual
    // stack (as upstream's), every other one is SingleStack.
    default_str(&mut spec.internal_traffic_policy, "Cluster");
    if type_ == "NodePort" || type_ == "LoadBalancer" {
        default_str(&mut spec.external_traffic_policy, "Cluster");
    }
    if type_ == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        spec.allocate_load_balancer_node_ports = Some(true);
    }
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let selectorless = spec.selector.as_ref().is_none_or(|s| s.is_empty());
    let policy = if headless && selectorless {
        "PreferDualStack"
    } else {
        "SingleStack"
    };
    default_str(&mut spec.ip_family_policy, policy);
    if spec.ip_families.as_ref().is_none_or(Vec::is_empty) {
        spec.ip_families = Some(vec!["IPv4".into()]);
    }
}

/// Secrets: `type` defaults to `Opaque`, also when it is the empty string (kubectl's
/// generators send protobuf, where an unset string is empty).
pub fn default_secret(secret: &mut Secret) {
    default_str(&mut secret.type_, "Opaque");
}

#[cfg(test)]
mod tests {
    use super::*;
    use podvisor_core::corev1::{
        ContainerPort, ExecAction, HTTPGetAction, LifecycleHandler, ResourceRequirements, ServicePort,
    };
    use podvisor_core::k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn pods_tolerate_lost_nodes_for_five_minutes_unless_they_say_otherwise() {
        let mut pod = Pod::default();
        default_toleration_seconds(&mut pod);
        let added: Vec<_> = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                (
                    t.key.unwrap_or_default(),
                    t.effect.unwrap_or_default(),
                    t.toleration_seconds,
                )
            })
            .collect();
        assert_eq!(
            added,
            [
                (
                    "node.kubernetes.io/not-ready".into(),
                    "NoExecute".into(),
                    Some(300)
                ),
                (
                    "node.kubernetes.io/unreachable".into(),
                    "NoExecute".into(),
                    Some(300)
                ),
            ]
        );
        default_toleration_seconds(&mut pod);
        assert_eq!(
            pod.spec
                .as_ref()
                .and_then(|s| s.tolerations.as_ref())
                .map(Vec::len),
            Some(2)
        );
        // A toleration of every NoExecute taint covers both keys.
        let mut everything = Pod::default();
        everything.spec.get_or_insert_with(Default::default).tolerations =
            Some(vec![podvisor_core::corev1::Toleration {
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                ..Default::default()
            }]);
        default_toleration_seconds(&mut everything);
        assert_eq!(
            everything.spec.and_then(|s| s.tolerations).map(|t| t.len()),
            Some(1)
        );
    }

    fn container(name: &str, image: &str) -> Container {
        Container {
            name: name.to_owned(),
            image: Some(image.to_owned()),
            ..Default::default()
        }
    }

    fn pod_with(c: Container) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![c],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn spec(p: &Pod) -> &PodSpec {
        p.spec.as_ref().expect("defaulting creates a spec")
    }

    fn exec_probe() -> Probe {
        Probe {
            exec: Some(ExecAction {
                command: Some(vec!["true".into()]),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn rule_1_1_restart_policy_defaults_to_always() {
        let mut p = Pod::default();
        default_pod(&mut p);
        assert_eq!(spec(&p).restart_policy.as_deref(), Some("Always"));

        let mut p = Pod {
            spec: Some(PodSpec {
                restart_policy: Some("Never".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        default_pod(&mut p);
        assert_eq!(spec(&p).restart_policy.as_deref(), Some("Never"));
    }

    #[test]
    fn rule_1_2_pod_level_defaults() {
        let mut p = Pod::default();
        default_pod(&mut p);
        let s = spec(&p);
        assert_eq!(s.termination_grace_period_seconds, Some(30));
        assert_eq!(s.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(s.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(s.security_context, Some(PodSecurityContext::default()));
        assert_eq!(s.enable_service_links, Some(true));
        assert_eq!(p.metadata.namespace, None, "namespace is not defaulting's job");

        let mut p = Pod {
            spec: Some(PodSpec {
                termination_grace_period_seconds: Some(0),
                enable_service_links: Some(false),
                dns_policy: Some("Default".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        default_pod(&mut p);
        let s = spec(&p);
        assert_eq!(s.termination_grace_period_seconds, Some(0));
        assert_eq!(s.enable_service_links, Some(false));
        assert_eq!(s.dns_policy.as_deref(), Some("Default"));
    }

    #[test]
    fn rule_1_3_probe_defaults_apply_when_zero() {
        let mut c = container("app", "img:1");
        c.liveness_probe = Some(Probe {
            timeout_seconds: Some(0),
            period_seconds: None,
            success_threshold: Some(0),
            failure_threshold: Some(0),
            initial_delay_seconds: Some(0),
            ..exec_probe()
        });
        c.readiness_probe = Some(Probe {
            timeout_seconds: Some(5),
            period_seconds: Some(7),
            success_threshold: Some(2),
            failure_threshold: Some(9),
            ..exec_probe()
        });
        let mut init = container("init", "img:1");
        init.startup_probe = Some(exec_probe());
        let mut p = pod_with(c);
        if let Some(s) = p.spec.as_mut() {
            s.init_containers = Some(vec![init]);
        }
        default_pod(&mut p);
        let s = spec(&p);
        let live = s.containers[0].liveness_probe.as_ref().expect("probe");
        assert_eq!(
            (
                live.timeout_seconds,
                live.period_seconds,
                live.success_threshold,
                live.failure_threshold,
                live.initial_delay_seconds
            ),
            (Some(1), Some(10), Some(1), Some(3), Some(0))
        );
        let ready = s.containers[0].readiness_probe.as_ref().expect("probe");
        assert_eq!(
            (
                ready.timeout_seconds,
                ready.period_seconds,
                ready.success_threshold,
                ready.failure_threshold
            ),
            (Some(5), Some(7), Some(2), Some(9))
        );
        let startup = s.init_containers.as_ref().expect("inits")[0]
            .startup_probe
            .as_ref()
            .expect("probe");
        assert_eq!(startup.period_seconds, Some(10));
        assert_eq!(startup.failure_threshold, Some(3));
    }

    #[test]
    fn rule_1_3_negative_probe_values_are_left_for_validation() {
        let mut c = container("app", "img:1");
        c.liveness_probe = Some(Probe {
            period_seconds: Some(-1),
            ..exec_probe()
        });
        let mut p = pod_with(c);
        default_pod(&mut p);
        let live = spec(&p).containers[0].liveness_probe.as_ref().expect("probe");
        assert_eq!(live.period_seconds, Some(-1));
    }

    #[test]
    fn rule_1_4_http_get_path_and_scheme_default_in_probes_and_hooks() {
        let get = HTTPGetAction {
            port: IntOrString::Int(8080),
            ..Default::default()
        };
        let mut c = container("app", "img:1");
        c.readiness_probe = Some(Probe {
            http_get: Some(get.clone()),
            ..Default::default()
        });
        c.lifecycle = Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                http_get: Some(get.clone()),
                ..Default::default()
            }),
            post_start: Some(LifecycleHandler {
                http_get: Some(HTTPGetAction {
                    path: Some("/hook".into()),
                    scheme: Some("HTTPS".into()),
                    ..get
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut p = pod_with(c);
        default_pod(&mut p);
        let c = &spec(&p).containers[0];
        let probe_get = c
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("httpGet");
        assert_eq!(probe_get.path.as_deref(), Some("/"));
        assert_eq!(probe_get.scheme.as_deref(), Some("HTTP"));
        assert_eq!(probe_get.host, None);
        let lc = c.lifecycle.as_ref().expect("lifecycle");
        let pre = lc
            .pre_stop
            .as_ref()
            .and_then(|h| h.http_get.as_ref())
            .expect("preStop");
        assert_eq!(
            (pre.path.as_deref(), pre.scheme.as_deref()),
            (Some("/"), Some("HTTP"))
        );
        let post = lc
            .post_start
            .as_ref()
            .and_then(|h| h.http_get.as_ref())
            .expect("postStart");
        assert_eq!(
            (post.path.as_deref(), post.scheme.as_deref()),
            (Some("/hook"), Some("HTTPS"))
        );
    }

    #[test]
    fn rule_1_5_container_defaults() {
        let mut p = pod_with(container("app", "nginx:1.27"));
        default_pod(&mut p);
        let c = &spec(&p).containers[0];
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));

        let mut kept = container("app", "nginx");
        kept.image_pull_policy = Some("Never".into());
        let mut p = pod_with(kept);
        default_pod(&mut p);
        assert_eq!(spec(&p).containers[0].image_pull_policy.as_deref(), Some("Never"));
    }

    #[test]
    fn rule_1_5_image_pull_policy_follows_the_tag() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("docker.io/library/nginx", "Always"),
            ("localhost:5000/img", "Always"),
            ("localhost:5000/img:v2", "IfNotPresent"),
            ("localhost:5000/img:latest", "Always"),
            ("img@sha256:0123456789abcdef", "IfNotPresent"),
            ("localhost:5000/img@sha256:0123", "IfNotPresent"),
            ("img:latest@sha256:0123", "Always"),
            ("", "IfNotPresent"),
        ];
        for (image, want) in cases {
            assert_eq!(image_pull_policy_for(image), want, "image {image:?}");
        }
    }

    #[test]
    fn rule_1_6_port_protocol_and_host_network_host_port() {
        let mut c = container("app", "img:1");
        c.ports = Some(vec![
            ContainerPort {
                container_port: 8080,
                ..Default::default()
            },
            ContainerPort {
                container_port: 53,
                protocol: Some("UDP".into()),
                host_port: Some(5353),
                ..Default::default()
            },
        ]);
        let mut p = pod_with(c.clone());
        default_pod(&mut p);
        let ports = spec(&p).containers[0].ports.as_ref().expect("ports");
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(ports[0].host_port, None);
        assert_eq!(ports[1].protocol.as_deref(), Some("UDP"));

        let mut p = pod_with(c.clone());
        if let Some(s) = p.spec.as_mut() {
            s.host_network = Some(true);
            s.init_containers = Some(vec![c]);
        }
        default_pod(&mut p);
        let s = spec(&p);
        for ports in [
            s.containers[0].ports.as_ref().expect("ports"),
            s.init_containers.as_ref().expect("inits")[0]
                .ports
                .as_ref()
                .expect("ports"),
        ] {
            assert_eq!(ports[0].host_port, Some(8080));
            assert_eq!(ports[1].host_port, Some(5353), "an explicit hostPort is kept");
        }
    }

    #[test]
    fn rule_1_7_limits_default_requests_per_resource() {
        let q = |s: &str| Quantity(s.to_owned());
        let mut c = container("app", "img:1");
        c.resources = Some(ResourceRequirements {
            limits: Some([("cpu".to_owned(), q("1")), ("memory".to_owned(), q("1Gi"))].into()),
            requests: Some([("cpu".to_owned(), q("250m"))].into()),
            ..Default::default()
        });
        let mut init = container("init", "img:1");
        init.resources = Some(ResourceRequirements {
            limits: Some([("memory".to_owned(), q("64Mi"))].into()),
            ..Default::default()
        });
        let mut p = pod_with(c);
        if let Some(s) = p.spec.as_mut() {
            s.init_containers = Some(vec![init]);
        }
        default_pod(&mut p);
        let s = spec(&p);
        let req = s.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .expect("requests");
        assert_eq!(req.get("cpu"), Some(&q("250m")), "explicit request kept");
        assert_eq!(
            req.get("memory"),
            Some(&q("1Gi")),
            "missing request taken from limit"
        );
        let init_req = s.init_containers.as_ref().expect("inits")[0]
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .expect("requests");
        assert_eq!(init_req.get("memory"), Some(&q("64Mi")));
    }

    #[test]
    fn rule_1_8_service_defaults() {
        let mut svc = Service {
            spec: Some(ServiceSpec {
                ports: Some(vec![
                    ServicePort {
                        port: 80,
                        ..Default::default()
                    },
                    ServicePort {
                        port: 443,
                        target_port: Some(IntOrString::String(String::new())),
                        ..Default::default()
                    },
                    ServicePort {
                        port: 53,
                        protocol: Some("UDP".into()),
                        target_port: Some(IntOrString::String("dns".into())),
                        ..Default::default()
                    },
                    ServicePort {
                        port: 8080,
                        target_port: Some(IntOrString::Int(0)),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        default_service(&mut svc);
        let s = svc.spec.as_ref().expect("spec");
        assert_eq!(s.internal_traffic_policy.as_deref(), Some("Cluster"));
        assert_eq!(s.ip_family_policy.as_deref(), Some("SingleStack"));
        assert_eq!(s.ip_families.as_deref(), Some(&["IPv4".to_string()][..]));
        assert_eq!(s.external_traffic_policy, None, "ClusterIP Services have none");
        assert_eq!(s.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(s.session_affinity.as_deref(), Some("None"));
        let ports = s.ports.as_ref().expect("ports");
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(ports[0].target_port, Some(IntOrString::Int(80)));
        assert_eq!(ports[1].target_port, Some(IntOrString::Int(443)));
        assert_eq!(ports[2].protocol.as_deref(), Some("UDP"));
        assert_eq!(ports[2].target_port, Some(IntOrString::String("dns".into())));
        assert_eq!(ports[3].target_port, Some(IntOrString::Int(8080)));
    }

    #[test]
    fn rule_1_8_service_defaults_by_type() {
        let with = |type_: &str, cluster_ip: Option<&str>| {
            let mut svc = Service {
                spec: Some(ServiceSpec {
                    type_: Some(type_.into()),
                    cluster_ip: cluster_ip.map(Into::into),
                    ..Default::default()
                }),
                ..Default::default()
            };
            default_service(&mut svc);
            svc.spec.expect("spec")
        };
        let np = with("NodePort", None);
        assert_eq!(np.external_traffic_policy.as_deref(), Some("Cluster"));
        let lb = with("LoadBalancer", None);
        assert_eq!(lb.allocate_load_balancer_node_ports, Some(true));
        let headless = with("ClusterIP", Some("None"));
        assert_eq!(headless.ip_family_policy.as_deref(), Some("PreferDualStack"));
        let external = with("ExternalName", None);
        assert_eq!(external.ip_families, None);
        assert_eq!(external.internal_traffic_policy, None);
    }

    #[test]
    fn secret_type_defaults_to_opaque_also_when_empty() {
        for given in [None, Some(String::new())] {
            let mut secret = Secret {
                type_: given,
                ..Default::default()
            };
            default_secret(&mut secret);
            assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        }
        let mut tls = Secret {
            type_: Some("kubernetes.io/tls".into()),
            ..Default::default()
        };
        default_secret(&mut tls);
        assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    }
}
