//! What the node keeps in its API, through the real `kubectl`: a finished pod's status survives
//! metadata updates, and events have a creation time.
//!
//! Skipped (with a message) when `kubectl` is not installed.

mod support;

use std::time::Duration;

use support::{RunningNode, kubectl_available};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_keeps_its_api_objects_as_kubernetes_does() {
    if !kubectl_available() {
        eprintln!("skipped: kubectl not found");
        return;
    }
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

    // Events have a creation time kubectl sorts by.
    let sorted = node.ok(&["get", "events", "--sort-by=.metadata.creationTimestamp"]);
    assert!(sorted.contains("pod/done"), "{sorted}");
    node.stop().await;
}
