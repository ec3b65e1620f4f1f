//! Namespaces, Services (the whole ServiceSpec), ConfigMaps, Secrets, and bodies that are not protobuf objects.

use super::*;

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
