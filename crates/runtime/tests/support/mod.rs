//! Shared helpers for the runtime's integration tests: pods from JSON, unique names, /proc checks.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use podvisor_core::corev1;
use podvisor_core::runtime::{ContainerLaunch, ContainerRuntime, SandboxConfig, Started};
use podvisor_runtime::{ProcessRuntime, RuntimeConfig};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique suffix per call in this test process.
pub fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub use podvisor_runtime::is_root;

/// Fails a root-only test that was run without root. Such tests are `#[ignore = "needs root"]`:
/// `cargo xtask test` runs them as root; a plain `cargo test -- --ignored` without root fails
/// here with the reason instead of passing without having checked anything.
pub fn require_root() {
    assert!(
        is_root(),
        "needs root: run `cargo xtask test` (or `cargo test -- --ignored`) as root"
    );
}

/// A runtime that removes its cgroups (killing what is left in them) and its bridge when
/// dropped.
pub struct Rt(ProcessRuntime, String);

impl std::ops::Deref for Rt {
    type Target = ProcessRuntime;
    fn deref(&self) -> &ProcessRuntime {
        &self.0
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        self.0.remove_cgroup_parent();
        // The bridge goes too (on a thread of its own: this may run inside a tokio runtime).
        let bridge = std::mem::take(&mut self.1);
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(podvisor_runtime::delete_link(&bridge));
            }
        })
        .join();
    }
}

/// A runtime with its data in `dir/data` (containers cannot see the node's data directory, so
/// tests keep their own files beside it), its own cgroup parent, pod CIDR and bridge name;
/// `host_network` forces the no-namespace fallback.
pub async fn runtime(dir: &Path, host_network: bool) -> Rt {
    let data_dir = dir.join("data");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 200;
    let bridge = format!("pvt{}x{n}", std::process::id() % 10000);
    let cfg = RuntimeConfig {
        data_dir,
        pod_cidr: format!("10.231.{n}.0/24"),
        bridge_name: bridge.clone(),
        cgroup_parent: format!("podvisor-test-{}", unique()),
        cleanup_on_start: false,
        force_host_network: host_network,
        log_max_bytes: 64 * 1024,
        log_max_files: 3,
        node_ip: Some("127.0.0.1".into()),
        ..RuntimeConfig::default()
    };
    let rt = ProcessRuntime::new(cfg)
        .await
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    Rt(rt, bridge)
}

/// A pod from a JSON container list.
pub fn pod(name: &str, containers: serde_json::Value, extra_spec: serde_json::Value) -> corev1::Pod {
    let mut spec = serde_json::json!({ "containers": containers });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "ns1", "uid": format!("uid-{name}-{}", unique()),
                      "labels": { "app": "demo" }, "annotations": { "note": "hi" } },
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("pod: {e}"))
}

pub fn uid(pod: &corev1::Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

pub async fn start(rt: &ProcessRuntime, pod: &corev1::Pod, index: usize, ip: Option<String>) -> Started {
    start_instance(rt, pod, index, ip, 0).await
}

/// [`start`] of the container's instance with `restart_count`.
pub async fn start_instance(
    rt: &ProcessRuntime,
    pod: &corev1::Pod,
    index: usize,
    ip: Option<String>,
    restart_count: i32,
) -> Started {
    let container = pod
        .spec
        .as_ref()
        .map(|s| s.containers[index].clone())
        .unwrap_or_else(|| panic!("no spec"));
    rt.start(ContainerLaunch {
        pod: pod.clone(),
        pod_ip: ip,
        container,
        restart_count,
        mounts: Vec::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("start: {e}"))
}

pub async fn sandbox(rt: &ProcessRuntime, pod: &corev1::Pod) -> podvisor_core::runtime::Sandbox {
    rt.create_sandbox(SandboxConfig { pod: pod.clone() })
        .await
        .unwrap_or_else(|e| panic!("sandbox: {e}"))
}

pub async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs}s"))
}

/// Whether a process exists at all (zombie included).
pub fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Zombie children of this test process.
pub fn zombie_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let f = stat_fields(pid);
        if f.first().map(String::as_str) == Some("Z") && f.get(1) == Some(&me) {
            out.push(pid);
        }
    }
    out
}

/// The fields of `/proc/<pid>/stat` after the command name (state, parent, group, ...); empty
/// once the process is gone. The name is skipped by its last `)`: it may hold spaces and
/// parentheses of its own.
pub fn stat_fields(pid: i32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    text.rfind(')')
        .map(|i| text[i + 1..].split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

pub fn read_log(rt: &ProcessRuntime, pod: &corev1::Pod, container: &str) -> String {
    read_instance_log(rt, pod, container, 0)
}

/// [`read_log`] of the container's instance with `restart_count`.
pub fn read_instance_log(
    rt: &ProcessRuntime,
    pod: &corev1::Pod,
    container: &str,
    restart_count: i32,
) -> String {
    let path = rt
        .log_path(&uid(pod), container, restart_count)
        .unwrap_or_else(|| panic!("no log path"));
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The text of a CRI log (bodies only, partial records joined).
pub fn log_text(cri: &str) -> String {
    let mut out = String::new();
    for line in cri.lines() {
        let parts: Vec<&str> = line.splitn(4, ' ').collect();
        out.push_str(parts.get(3).copied().unwrap_or(""));
        if parts.get(2) != Some(&"P") {
            out.push('\n');
        }
    }
    out
}
