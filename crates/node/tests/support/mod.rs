//! Shared by the whole-node tests: a node running in-process with its API, and kubectl.
#![allow(dead_code, unreachable_pub)] // Each test binary uses its own subset.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use podvisor_node::{NodeConfig, OutputMode, build};

pub fn kubectl_available() -> bool {
    Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Fails a test that needs kubectl when it is missing, with the reason (never a silent pass).
/// `cargo xtask test` installs it (Debian's `kubernetes-client`).
pub fn require_kubectl() {
    assert!(
        kubectl_available(),
        "needs kubectl: not found on PATH (`cargo xtask test` installs Debian's kubernetes-client)"
    );
}

/// Fails a root-only test (one marked `#[ignore = "needs root"]`) run without root.
pub fn require_root() {
    assert!(
        is_root(),
        "needs root: run `cargo xtask test` (or `cargo test -- --ignored`) as root"
    );
}

/// Fails a test that needs `nft` (the nftables datapath) when it is missing.
pub fn require_nft() {
    let nft = Command::new("nft").arg("--version").output();
    assert!(
        nft.is_ok_and(|o| o.status.success()),
        "needs nft: not found (`cargo xtask test` installs Debian's nftables)"
    );
}

pub use podvisor_node::is_root;

/// The whole-node tests' configuration: API on 127.0.0.1:0, quiet, host network without root.
/// The node's data dir is `dir/node`: containers cannot see the node's data dir, so tests keep
/// the files their pods use beside it, in `dir`.
pub fn e2e_config(dir: &Path, pod_cidr: &str) -> NodeConfig {
    let data_dir = &dir.join("node");
    let mut config = NodeConfig::new(data_dir);
    config.node_name = "e2e-node".into();
    config.output = OutputMode::Quiet;
    config.listen = Some("127.0.0.1:0".parse().unwrap());
    config.pod_cidr = Some(pod_cidr.into());
    config.host_network_only = !is_root();
    // A cgroup parent of its own (stable for the same data dir, so a restarted node finds its
    // own): a node cleans its parent at start and must not kill another test node's pods.
    let tag = data_dir.to_string_lossy().bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    config.cgroup_parent = format!("podvisor-e2e-{tag:08x}");
    // And a bridge of its own: a node removes its bridge when it stops.
    config.bridge_name = format!("pve{tag:08x}");
    config
}

/// A node running in this process until dropped.
pub struct RunningNode {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub kubeconfig: PathBuf,
}

impl RunningNode {
    pub async fn start(data_dir: &Path, pod_cidr: &str, bridge_hint: &str) -> RunningNode {
        // Each node owns its own nftables table, so parallel tests do not replace each other's.
        let mut config = e2e_config(data_dir, pod_cidr);
        config.services.nft_table = format!("podvisor_{bridge_hint}_{}", std::process::id());
        RunningNode::start_with(config).await
    }

    /// [`RunningNode::start`] with a Service range of its own (`172.31.<slot>.0/24`), for tests
    /// that send Service traffic while others in the same binary do: two nodes in one network
    /// namespace must not program the same ClusterIP (each hint is distinct within a binary).
    pub async fn start_with_own_services(data_dir: &Path, pod_cidr: &str, bridge_hint: &str) -> RunningNode {
        let mut config = e2e_config(data_dir, pod_cidr);
        config.services.nft_table = format!("podvisor_{bridge_hint}_{}", std::process::id());
        let slot = bridge_hint.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        }) % 250;
        config.services.service_cidr = format!("172.31.{slot}.0/24");
        RunningNode::start_with(config).await
    }

    /// Starts a node with `config` and waits for its kubeconfig.
    pub async fn start_with(config: NodeConfig) -> RunningNode {
        let data_dir = config.data_dir.clone();
        let (node, _caps) = build(config).await.expect("node builds");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(node.run(async move {
            let _ = stopped.await;
        }));
        let kubeconfig = data_dir.join("kubeconfig");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !kubeconfig.exists() {
            assert!(Instant::now() < deadline, "the node never wrote its kubeconfig");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        RunningNode {
            stop: Some(stop),
            task: Some(task),
            kubeconfig,
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("the node stops")
                .unwrap();
        }
        let _ = std::fs::remove_file(&self.kubeconfig);
    }

    pub fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("kubectl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.kubectl(args);
        assert!(ok, "kubectl {args:?} failed: {text}");
        text
    }

    /// Runs `kubectl args` until its output satisfies `check`, at most `secs` seconds.
    pub async fn until(&self, args: &[&str], secs: u64, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, text) = self.kubectl(args);
            if check(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "kubectl {args:?} never satisfied the check; last output:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most 20 s.
pub async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
