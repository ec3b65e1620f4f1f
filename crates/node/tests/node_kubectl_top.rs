//! `kubectl top pod --containers` and `kubectl top node` against an in-process node: the
//! numbers within 20% of what the containers' cgroup files say over the same time.
//!
//! Needs root (containers get cgroups of their own only as root) and kubectl: the test is
//! `#[ignore = "needs root"]`, run by `cargo xtask test` as root.

mod support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use support::{RunningNode, require_kubectl, require_root};

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: busy}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: burn, image: host, command: [sh, -c, 'exec sh -c "while :; do :; done" top-burn-marker']}
  - name: mem
    image: host
    command: [python3, -c, 'import time; x = bytearray(64 << 20); [time.sleep(1) for _ in iter(int, 1)]', top-mem-marker]
"#;

/// The pid of the one process whose command line contains `marker`.
fn pid_of(marker: &str) -> u32 {
    let out = std::process::Command::new("pgrep")
        .args(["-f", marker])
        .output()
        .expect("pgrep runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(pids.len(), 1, "one process with {marker}: {text}");
    pids[0]
}

/// The cgroup v2 directory of `pid`, and its v1 memory directory where memory is not on v2.
fn cgroup_dirs(pid: u32) -> (PathBuf, Option<PathBuf>) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup file");
    let path_of = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|p| p.trim_start_matches('/').to_owned())
    };
    let unified = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|root| root.join("cgroup.controllers").exists())
        .expect("a cgroup v2 mount");
    let v2 = unified.join(path_of("0::").expect("a v2 cgroup"));
    // A v1 memory group of the container's own (not the node's).
    let own = path_of("0::").unwrap_or_default();
    let v1_memory = path_of(":memory:")
        .filter(|p| !p.is_empty() && own.ends_with(p.rsplit('/').next().unwrap_or_default()))
        .map(|p| PathBuf::from("/sys/fs/cgroup/memory").join(p))
        .filter(|d| d.join("memory.usage_in_bytes").exists());
    (v2, v1_memory)
}

fn keyed(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

fn cpu_ns(v2: &Path) -> u64 {
    keyed(
        &std::fs::read_to_string(v2.join("cpu.stat")).unwrap(),
        "usage_usec",
    ) * 1000
}

/// The working set of the container whose only process is `pid`: from its memory cgroup
/// (v2, or v1 on a hybrid machine), or, where the memory controller gives containers no group
/// of their own, its resident set (what the runtime reports then).
fn working_set(pid: u32, v2: &Path, v1: Option<&PathBuf>) -> u64 {
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    if v2.join("memory.current").exists() {
        let current: u64 = read(v2.join("memory.current")).trim().parse().unwrap();
        current.saturating_sub(keyed(&read(v2.join("memory.stat")), "inactive_file"))
    } else if let Some(dir) = v1 {
        let usage: u64 = read(dir.join("memory.usage_in_bytes")).trim().parse().unwrap();
        usage.saturating_sub(keyed(&read(dir.join("memory.stat")), "total_inactive_file"))
    } else {
        let status = read(PathBuf::from(format!("/proc/{pid}/status")));
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kb * 1024
    }
}

/// `123m` → 123 millicores; `2` → 2000.
fn millicores(s: &str) -> f64 {
    match s.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => s.parse::<f64>().unwrap() * 1000.0,
    }
}

/// `70Mi` → bytes.
fn bytes(s: &str) -> f64 {
    let (n, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let scale = match unit {
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "" => 1.0,
        other => panic!("unit {other}"),
    };
    n.parse::<f64>().unwrap() * scale
}

fn within(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= expected * 0.2,
        "{what}: kubectl top says {actual}, the cgroup files {expected}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn top_shows_what_the_cgroups_say() {
    require_root();
    require_kubectl();
    let dir = tempfile::tempdir().unwrap();
    let node = RunningNode::start(dir.path(), "10.88.71.0/24", "top").await;
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(&manifest, POD).unwrap();
    node.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    node.until(&["get", "pod", "busy"], 60, |t| {
        t.contains("2/2") && t.contains("Running")
    })
    .await;
    let (burn, mem) = (pid_of("top-burn-marker"), pid_of("top-mem-marker"));
    let (burn_cg, _) = cgroup_dirs(burn);
    let (mem_cg, mem_v1) = cgroup_dirs(mem);

    // Metrics come after two scrapes, 15 s apart.
    let start = (Instant::now(), cpu_ns(&burn_cg));
    let text = node
        .until(&["top", "pod", "busy", "--containers", "--no-headers"], 60, |t| {
            t.contains("burn") && t.contains("mem")
        })
        .await;
    let cgroup_rate = (cpu_ns(&burn_cg) - start.1) as f64 / start.0.elapsed().as_secs_f64() / 1e6;
    let mem_now = working_set(mem, &mem_cg, mem_v1.as_ref()) as f64;
    let row = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}: {text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    // POD NAME CPU(cores) MEMORY(bytes)
    within(
        millicores(&row("burn")[2]),
        cgroup_rate,
        "burn's CPU in millicores",
    );
    within(bytes(&row("mem")[3]), mem_now, "mem's working set");
    assert!(millicores(&row("mem")[2]) < 100.0, "{text}");

    // The node: at least the busy loop's core, memory in use.
    let text = node
        .until(&["top", "node", "--no-headers"], 30, |t| t.contains('%'))
        .await;
    let cols: Vec<&str> = text.split_whitespace().collect();
    assert!(millicores(cols[1]) >= 0.8 * cgroup_rate, "{text}");
    assert!(bytes(cols[3]) > 64.0 * 1024.0 * 1024.0, "{text}");

    node.ok(&["delete", "pod", "busy", "--wait=true"]);
    node.stop().await;
}
