//! What the node keeps in its API, through the real `kubectl`: a finished pod's status survives
//! metadata updates, the Node's heartbeat Lease, the Node's and events' wide columns, the one
//! version, and the `kubernetes` Service coming back after a delete.
//!
//! Skipped (with a message) when `kubectl` is not installed.

mod support;

use std::time::Duration;

use support::{RunningNode, require_kubectl};

const FINISHED: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: done
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: host
    command: [sh, -c, 'echo bye; exit 3']
"#;

fn cells(table: &str, first: &str) -> Vec<String> {
    table
        .lines()
        .find(|l| l.starts_with(first))
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_keeps_its_api_objects_as_kubernetes_does() {
    require_kubectl();
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.98.{}.0/24", std::process::id() % 250);
    let node = RunningNode::start(data.path(), &cidr, "apiobj").await;
    let manifest = data.path().join("done.yaml");
    std::fs::write(&manifest, FINISHED).unwrap();
    node.ok(&["apply", "-f", manifest.to_str().unwrap()]);

    // Item: a finished pod's status survives a metadata-only update.
    let status_of = || {
        node.ok(&[
            "get",
            "pod",
            "done",
            "-o",
            "jsonpath={.status.phase}|{.status.containerStatuses[0].state.terminated.reason}|{.status.containerStatuses[0].state.terminated.exitCode}|{.status.podIP}",
        ])
    };
    node.until(
        &["get", "pod", "done", "-o", "jsonpath={.status.phase}"],
        60,
        |p| p == "Failed",
    )
    .await;
    let before = status_of();
    assert!(
        before.starts_with("Failed|Error|3|") && !before.ends_with('|'),
        "{before}"
    );
    node.ok(&["label", "pod", "done", "checked=yes"]);
    node.ok(&["annotate", "pod", "done", "note=seen"]);
    // Longer than the node's bookkeeping period, after which it forgets finished workers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    node.ok(&["label", "pod", "done", "checked=again", "--overwrite"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(status_of(), before, "a label changed the finished pod's status");

    // Item: events have a creation time kubectl sorts by, and kubectl's wide columns.
    let sorted = node.ok(&["get", "events", "--sort-by=.metadata.creationTimestamp"]);
    assert!(sorted.contains("pod/done"), "{sorted}");
    let wide = node.ok(&["get", "events", "-o", "wide"]);
    let header = wide.lines().next().unwrap_or_default();
    for column in [
        "LAST SEEN",
        "TYPE",
        "REASON",
        "OBJECT",
        "SUBOBJECT",
        "SOURCE",
        "MESSAGE",
        "FIRST SEEN",
        "COUNT",
        "NAME",
    ] {
        assert!(header.contains(column), "{column} missing: {wide}");
    }
    assert!(
        wide.contains("spec.containers{app}") && wide.contains("kubelet, e2e-node"),
        "{wide}"
    );

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_object_its_lease_and_the_kubernetes_service() {
    require_kubectl();
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.98.{}.0/24", (std::process::id() + 1) % 250);
    let node = RunningNode::start(data.path(), &cidr, "apinode").await;
    node.until(&["get", "nodes", "-o", "name"], 30, |t| {
        t.contains("node/e2e-node")
    })
    .await;

    // Item: the Node's wide columns, machine identity and one version.
    let nodes = node.ok(&["get", "nodes", "-o", "wide"]);
    let header = cells(&nodes, "NAME");
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME"
        ],
        "{nodes}"
    );
    let row = cells(&nodes, "e2e-node");
    let server: serde_json::Value = serde_json::from_str(&node.ok(&["get", "--raw", "/version"])).unwrap();
    assert_eq!(
        row.get(4).map(String::as_str),
        server["gitVersion"].as_str(),
        "{nodes}"
    );
    assert_eq!(
        row.get(9).map(String::as_str),
        Some("podvisor://0.1.0"),
        "{nodes}"
    );
    let ids = node.ok(&[
        "get",
        "node",
        "e2e-node",
        "-o",
        "jsonpath={.status.nodeInfo.machineID}|{.status.nodeInfo.bootID}|{.status.nodeInfo.systemUUID}",
    ]);
    let mut ids = ids.split('|');
    let expect = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(ids.next(), Some(expect("/etc/machine-id").as_str()));
    assert_eq!(
        ids.next(),
        Some(expect("/proc/sys/kernel/random/boot_id").as_str())
    );
    assert_eq!(
        ids.next(),
        Some(expect("/sys/class/dmi/id/product_uuid").as_str())
    );
    assert!(!expect("/proc/sys/kernel/random/boot_id").is_empty());

    // Item: the heartbeat is a Lease in kube-node-lease, and describe shows it.
    let lease = node.ok(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        "e2e-node",
        "-o",
        "jsonpath={.spec.holderIdentity}|{.spec.leaseDurationSeconds}|{.metadata.ownerReferences[0].kind}",
    ]);
    assert_eq!(lease, "e2e-node|40|Node");
    let leases = node.ok(&["get", "leases", "-n", "kube-node-lease"]);
    assert_eq!(cells(&leases, "NAME")[..2], ["NAME", "HOLDER"], "{leases}");
    assert_eq!(
        cells(&leases, "e2e-node")[..2],
        ["e2e-node", "e2e-node"],
        "{leases}"
    );
    let described = node.ok(&["describe", "node", "e2e-node"]);
    assert!(
        described.contains("HolderIdentity:  e2e-node") && !described.contains("Failed to get lease"),
        "{described}"
    );

    // Item: the kubernetes Service comes back within seconds.
    node.ok(&["delete", "service", "kubernetes"]);
    node.until(&["get", "service", "kubernetes", "-o", "name"], 15, |t| {
        t.trim() == "service/kubernetes"
    })
    .await;

    // Item: a deleted namespace terminates; its pod stops gracefully on the node, then both go.
    node.ok(&["create", "namespace", "doomed"]);
    let manifest = data.path().join("graceful.yaml");
    std::fs::write(&manifest, GRACEFUL).unwrap();
    node.ok(&["apply", "-n", "doomed", "-f", manifest.to_str().unwrap()]);
    node.until(&["get", "pod", "-n", "doomed", "graceful"], 60, |t| {
        t.contains("Running")
    })
    .await;
    node.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    let ns = node.ok(&["get", "namespace", "doomed", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(ns, "Terminating");
    let pods = node
        .until(&["get", "pods", "-n", "doomed"], 10, |t| {
            t.contains("Terminating")
        })
        .await;
    assert!(pods.contains("graceful"), "{pods}");
    node.until(&["get", "namespace", "doomed"], 60, |t| t.contains("NotFound"))
        .await;
    node.stop().await;
}

/// A pod that takes a moment to stop after SIGTERM.
const GRACEFUL: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: graceful
spec:
  terminationGracePeriodSeconds: 20
  containers:
  - name: app
    image: host
    command: [sh, -c, 'trap "sleep 2; exit 0" TERM; while true; do sleep 0.2; done']
"#;
