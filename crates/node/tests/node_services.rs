//! Services through the real `kubectl` against an in-process node: ClusterIPs from the service
//! CIDR (released on delete), headless and explicit addresses, node ports, the `kubernetes`
//! Service, and the validation errors of taken or out-of-range addresses.
//!
//! Needs kubectl (`cargo xtask test` installs it); fails with the reason without it.

mod support;

use support::{RunningNode, require_kubectl};

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: headless}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: fixed}
spec:
  clusterIP: 10.96.200.7
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, nodePort: 31234}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_addresses_from_the_service_cidr_and_node_ports() {
    require_kubectl();
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.98.{}.0/24", std::process::id() % 250);
    let node = RunningNode::start(data.path(), &cidr, "svc").await;

    let k8s = node.ok(&[
        "get",
        "service",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].port}",
    ]);
    assert_eq!(k8s.trim(), "10.96.0.1 443", "{k8s}");
    node.until(&["get", "endpoints", "kubernetes"], 10, |t| {
        t.contains("127.0.0.1:")
    })
    .await;

    node.ok(&["create", "service", "clusterip", "a", "--tcp=80:8080"]);
    let a = node.ok(&["get", "service", "a", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(a.starts_with("10.96.0."), "{a}");
    // A second Service never gets an address another holds; a deleted one's is free again.
    node.ok(&["create", "service", "clusterip", "b", "--tcp=80:8080"]);
    let b = node.ok(&["get", "service", "b", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_ne!(a, b);
    node.ok(&["delete", "service", "a"]);
    node.ok(&["create", "service", "clusterip", "c", "--tcp=80:8080"]);
    let c = node.ok(&["get", "service", "c", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!(a, c, "the deleted Service's address is reused");

    let manifest = data.path().join("services.yaml");
    std::fs::write(&manifest, SERVICES).unwrap();
    node.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let table = node.ok(&["get", "services"]);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("headless")[2], "None", "{table}");
    assert_eq!(row("fixed")[2], "10.96.200.7", "{table}");
    assert_eq!(row("np")[1], "NodePort", "{table}");
    assert_eq!(row("np")[4], "80:31234/TCP", "{table}");

    let (ok, text) = node.kubectl(&[
        "create",
        "service",
        "clusterip",
        "again",
        "--tcp=80",
        "--clusterip=10.96.200.7",
    ]);
    assert!(
        !ok && text.contains("spec.clusterIPs") && text.contains("provided IP is already allocated"),
        "{text}"
    );
    let (ok, text) = node.kubectl(&[
        "create",
        "service",
        "clusterip",
        "far",
        "--tcp=80",
        "--clusterip=192.168.0.1",
    ]);
    assert!(
        !ok && text.contains("The range of valid IPs is 10.96.0.0/16"),
        "{text}"
    );
    let (ok, text) = node.kubectl(&[
        "create",
        "service",
        "nodeport",
        "np2",
        "--tcp=80",
        "--node-port=31234",
    ]);
    assert!(
        !ok && text
            .contains("spec.ports[0].nodePort: Invalid value: 31234: provided port is already allocated"),
        "{text}"
    );
    node.ok(&["create", "service", "nodeport", "np3", "--tcp=80"]);
    let port = node.ok(&[
        "get",
        "service",
        "np3",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let port: u16 = port.trim().parse().unwrap();
    assert!((30000..=32767).contains(&port), "{port}");
    node.stop().await;
}
