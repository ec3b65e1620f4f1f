//! The endpoint computation, rule by rule (section 16), plus properties over random pods.

use podvisor_core::corev1::{Pod, Service};
use podvisor_endpoints::{MAX_ENDPOINTS, desired_endpoints, desired_slices};
use proptest::prelude::*;
use serde_json::json;

fn service(spec: serde_json::Value) -> Service {
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "svc-uid",
        "labels": {"team": "a"}}, "spec": spec}),
    )
    .unwrap()
}

fn pod(name: &str, ip: &str, ready: bool, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": labels},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "x",
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": ip,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
    .unwrap()
}

fn ips(addresses: &Option<Vec<podvisor_core::corev1::EndpointAddress>>) -> Vec<String> {
    addresses.iter().flatten().map(|a| a.ip.clone()).collect()
}

fn web_service() -> Service {
    service(json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}))
}

#[test]
fn rule_16_4_ready_pods_in_addresses_not_ready_in_not_ready_addresses() {
    let pods = [
        pod("a", "10.88.0.2", true, json!({"app": "web"})),
        pod("b", "10.88.0.3", false, json!({"app": "web"})),
        pod("c", "10.88.0.4", true, json!({"app": "other"})),
    ];
    let ep = desired_endpoints(&web_service(), &pods).unwrap();
    let subsets = ep.subsets.unwrap();
    assert_eq!(subsets.len(), 1);
    assert_eq!(ips(&subsets[0].addresses), ["10.88.0.2"]);
    assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.88.0.3"]);
    let port = &subsets[0].ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port),
        (Some("http"), 8080),
        "named targetPort resolved"
    );
    let target = subsets[0].addresses.as_ref().unwrap()[0]
        .target_ref
        .clone()
        .unwrap();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("a"))
    );
    assert_eq!(ep.metadata.name.as_deref(), Some("web"));
    assert_eq!(ep.metadata.labels.unwrap()["team"], "a");
}

#[test]
fn rule_16_1_no_selector_or_external_name_means_no_managed_endpoints() {
    let pods = [pod("a", "10.88.0.2", true, json!({"app": "web"}))];
    assert!(desired_endpoints(&service(json!({"ports": [{"port": 80}]})), &pods).is_none());
    assert!(desired_endpoints(&service(json!({"selector": {}, "ports": [{"port": 80}]})), &pods).is_none());
    let external =
        service(json!({"type": "ExternalName", "externalName": "x.example", "selector": {"app": "web"}}));
    assert!(desired_endpoints(&external, &pods).is_none());
    assert!(desired_slices(&external, &pods).is_empty());
}

#[test]
fn rule_16_2_finished_ip_less_and_terminating_pods_are_left_out() {
    let mut done = pod("done", "10.88.0.2", true, json!({"app": "web"}));
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let mut no_ip = pod("noip", "", true, json!({"app": "web"}));
    no_ip.status.as_mut().unwrap().pod_ip = None;
    let mut leaving = pod("leaving", "10.88.0.5", true, json!({"app": "web"}));
    leaving.metadata.deletion_timestamp = Some(podvisor_core::metav1::Time(Default::default()));
    let pods = [done, no_ip, leaving.clone()];
    assert!(
        desired_endpoints(&web_service(), &pods)
            .unwrap()
            .subsets
            .is_none()
    );
    // EndpointSlices keep terminating pods, not ready but serving (rule 16.10).
    let slices = desired_slices(&web_service(), &pods);
    assert_eq!(slices.len(), 1);
    let c = slices[0].endpoints[0].conditions.clone().unwrap();
    assert_eq!(
        (c.ready, c.serving, c.terminating),
        (Some(false), Some(true), Some(true))
    );
    // publishNotReadyAddresses includes terminating pods in Endpoints, as ready.
    let mut publish = web_service();
    publish.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let ep = desired_endpoints(&publish, &[leaving]).unwrap();
    assert_eq!(ips(&ep.subsets.unwrap()[0].addresses), ["10.88.0.5"]);
}

#[test]
fn rule_16_6_named_ports_match_name_and_protocol_and_search_sidecars() {
    let udp = service(json!({"selector": {"app": "web"},
        "ports": [{"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}]}));
    let mut p = pod("a", "10.88.0.2", true, json!({"app": "web"}));
    p.spec.as_mut().unwrap().containers[0].ports = Some(vec![
        serde_json::from_value(json!({"name": "dns", "containerPort": 5353, "protocol": "TCP"})).unwrap(),
    ]);
    assert!(
        desired_endpoints(&udp, std::slice::from_ref(&p))
            .unwrap()
            .subsets
            .is_none(),
        "protocol must match"
    );
    p.spec.as_mut().unwrap().init_containers = Some(vec![
        serde_json::from_value(json!({"name": "side",
        "restartPolicy": "Always", "ports": [{"name": "dns", "containerPort": 5300, "protocol": "UDP"}]}))
        .unwrap(),
    ]);
    let ep = desired_endpoints(&udp, &[p]).unwrap();
    assert_eq!(
        ep.subsets.unwrap()[0].ports.as_ref().unwrap()[0].port,
        5300,
        "found in the sidecar"
    );
}

#[test]
fn rule_16_7_capacity_keeps_ready_addresses_and_marks_truncation() {
    let pods: Vec<Pod> = (0..1100)
        .map(|i| {
            pod(
                &format!("p{i:04}"),
                &format!("10.88.{}.{}", i / 250, i % 250 + 1),
                i < 900,
                json!({"app": "web"}),
            )
        })
        .collect();
    let ep = desired_endpoints(&web_service(), &pods).unwrap();
    let subset = &ep.subsets.unwrap()[0];
    assert_eq!(ips(&subset.addresses).len(), 900);
    assert_eq!(ips(&subset.not_ready_addresses).len(), MAX_ENDPOINTS - 900);
    assert_eq!(
        ep.metadata.annotations.unwrap()["endpoints.kubernetes.io/over-capacity"],
        "truncated"
    );
}

#[test]
fn rule_16_8_slices_hold_at_most_100_endpoints_with_the_controller_labels() {
    let pods: Vec<Pod> = (0..250)
        .map(|i| {
            pod(
                &format!("p{i:03}"),
                &format!("10.88.1.{}", i + 1),
                true,
                json!({"app": "web"}),
            )
        })
        .collect();
    let slices = desired_slices(&web_service(), &pods);
    let sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let labels = slices[0].metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/service-name"], "web");
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let owner = &slices[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Service", "web", "svc-uid")
    );
}

#[test]
fn headless_services_carry_the_headless_label_and_portless_addresses() {
    let headless = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
    let ep = desired_endpoints(&headless, &[pod("a", "10.88.0.2", true, json!({"app": "web"}))]).unwrap();
    assert_eq!(ep.metadata.labels.unwrap()["service.kubernetes.io/headless"], "");
    let subset = &ep.subsets.unwrap()[0];
    assert_eq!(ips(&subset.addresses), ["10.88.0.2"]);
    assert!(subset.ports.is_none());
}

proptest! {
    /// Equal inputs, in any order, give equal outputs; only selected, eligible pods appear, and
    /// a pod is in `addresses` exactly when it is ready.
    #[test]
    fn endpoints_are_a_function_of_the_pod_set(
        specs in proptest::collection::vec((any::<bool>(), any::<bool>(), 0u8..3), 0..30),
        seed in any::<u64>(),
    ) {
        let pods: Vec<Pod> = specs
            .iter()
            .enumerate()
            .map(|(i, (selected, ready, phase))| {
                let mut p = pod(&format!("p{i}"), &format!("10.88.0.{}", i + 1), *ready,
                    json!({"app": if *selected { "web" } else { "other" }}));
                p.status.as_mut().unwrap().phase = Some(["Running", "Pending", "Failed"][*phase as usize].into());
                p
            })
            .collect();
        let mut shuffled = pods.clone();
        let n = shuffled.len().max(1);
        shuffled.rotate_left((seed as usize) % n);
        let svc = web_service();
        prop_assert_eq!(desired_endpoints(&svc, &pods), desired_endpoints(&svc, &shuffled));
        prop_assert_eq!(desired_slices(&svc, &pods), desired_slices(&svc, &shuffled));
        let ep = desired_endpoints(&svc, &pods).unwrap();
        let ready: Vec<String> = ep.subsets.iter().flatten().flat_map(|s| ips(&s.addresses)).collect();
        for (i, (selected, is_ready, phase)) in specs.iter().enumerate() {
            let ip = format!("10.88.0.{}", i + 1);
            let expected = *selected && *is_ready && *phase != 2;
            prop_assert_eq!(ready.contains(&ip), expected, "pod {}", i);
        }
    }
}
