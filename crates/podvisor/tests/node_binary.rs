//! The `podvisor` binary as a user runs it: `podvisor node` with `--manifests` (static pods
//! appear in the API), killed with SIGKILL and started again on the same data dir (every pod
//! runs on in the processes it had, adopted, nothing running twice; `node_restart.rs` has the
//! rest of issue 18), then stopped with SIGTERM (exit 0, every pod's processes gone).
#![allow(
    clippy::disallowed_methods,
    reason = "synchronous test: it drives a node process from a plain thread"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{NodeProcess, kubectl, send_signal, sleeping, until};

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: api-pod}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - {name: app, image: host, command: [sleep, "1234567"]}
"#;

const STATIC_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: static-web}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - {name: app, image: host, command: [sleep, "7654321"]}
"#;

/// A `podvisor node` process on `dir`, its API on an ephemeral loopback port.
fn start(dir: &Path, manifests: &Path) -> NodeProcess {
    let kubeconfig = dir.join("kubeconfig");
    let _ = std::fs::remove_file(&kubeconfig);
    let child = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .arg("node")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--output", "quiet"])
        .arg("--manifests")
        .arg(manifests)
        .args(["--node-name", "binary-node", "--host-network"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("podvisor starts");
    let child = NodeProcess(child, &["1234567", "7654321"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubeconfig.exists() {
        assert!(Instant::now() < deadline, "the node never wrote its kubeconfig");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn running(kubeconfig: &Path) -> String {
    until(kubeconfig, &["get", "pods", "-o", "wide"], |t| {
        let ready = |name: &str| {
            t.lines()
                .any(|l| l.starts_with(name) && l.split_whitespace().nth(2) == Some("Running"))
        };
        ready("api-pod ") && ready("static-web ")
    })
}

/// Root-only, as the rest of the binary's restart tests (`node_restart.rs`): with root the
/// leftovers' cgroups are checked to be gone too.
#[test]
#[ignore = "needs root"]
fn a_killed_node_runs_its_pods_again_once_and_a_stopped_node_leaves_nothing() {
    assert!(
        podvisor_node::is_root(),
        "needs root: run `cargo xtask test` (or `cargo test -- --ignored`) as root"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("node");
    let manifests = tmp.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("web.yaml"), STATIC_POD).unwrap();
    let kubeconfig = dir.join("kubeconfig");

    let mut node = start(&dir, &manifests);
    let pod_file = tmp.path().join("pod.yaml");
    std::fs::write(&pod_file, POD).unwrap();
    let applied = kubectl(&kubeconfig, &["apply", "-f", pod_file.to_str().unwrap()]);
    assert!(applied.contains("pod/api-pod created"), "{applied}");
    // The static pod is in the API beside the one created through it.
    running(&kubeconfig);
    assert_eq!(sleeping("1234567").len(), 1);
    assert_eq!(sleeping("7654321").len(), 1);
    let before = (sleeping("1234567"), sleeping("7654321"));

    // SIGKILL: no graceful stop. The next start on the same data dir adopts every pod: the
    // containers the killed run left are the ones that run, exactly once.
    node.0.kill().unwrap();
    node.0.wait().unwrap();
    let mut node = start(&dir, &manifests);
    running(&kubeconfig);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sleeping("1234567").len() != 1 || sleeping("7654321").len() != 1 {
        assert!(
            Instant::now() < deadline,
            "each container runs once after the restart: {:?} {:?}",
            sleeping("1234567"),
            sleeping("7654321")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        (sleeping("1234567"), sleeping("7654321")),
        before,
        "the pods outlived the node and were adopted"
    );

    // SIGTERM: every pod stops gracefully, then the node exits 0.
    assert!(send_signal(node.0.id(), "TERM"), "kill -TERM ran");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = node.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the node exits after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(sleeping("1234567").is_empty() && sleeping("7654321").is_empty());
}
