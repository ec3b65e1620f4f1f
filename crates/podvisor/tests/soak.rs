//! A soak of the whole node (the `podvisor` binary, root, pod sandboxes): pods created and
//! deleted in batches, many idle connections, many watches that never read, big-but-legal
//! objects; meanwhile `/readyz` answers within a second, and afterwards the node's memory is
//! within 2x of where it started plus the store's page cache (a bounded cache that pod churn
//! fills: `RedbStoreConfig::cache_bytes`), and under 256 MB throughout; it holds no more file
//! descriptors, every acknowledged write reads back, and no pod sandbox is left: no cgroup, bridge port (veth) or
//! IP allocation (network namespaces go with their veths: a veth's pod end lives in it). Bounded in count and time, loopback only.
//!
//! `cargo xtask test` runs a short soak; `cargo xtask soak` the full one (10,000 pods, 1,000
//! connections, 500 watches) against a release build. The counts come from the environment:
//! `PODVISOR_SOAK_PODS`, `PODVISOR_SOAK_CONNECTIONS`, `PODVISOR_SOAK_WATCHES`, and
//! `PODVISOR_SOAK_BINARY` names another `podvisor` binary.
#![allow(
    clippy::disallowed_methods,
    reason = "synchronous test: it drives a node process from a plain thread"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The node under test, stopped (SIGTERM, then SIGKILL) if the test fails midway.
struct Node {
    child: Child,
    addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").arg(self.child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP/1.1 request on a new connection; (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("the API accepts a connection");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// `/readyz` answers 200 within a second.
fn ready_within_a_second(addr: &str, during: &str) {
    let t = Instant::now();
    let (code, _) = http(addr, "GET", "/readyz", "");
    assert_eq!(code, 200, "/readyz during {during}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "/readyz took {:?} during {during}",
        t.elapsed()
    );
}

fn pod(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","labels":{{"soak":"yes"}}}},"spec":{{"terminationGracePeriodSeconds":1,"containers":[{{"name":"c","image":"host","command":["sleep","3600"]}}]}}}}"#
    )
}

/// Pods in `default` whose phase is Running, and all of them.
fn pods(addr: &str) -> (usize, usize) {
    let (code, body) = http(
        addr,
        "GET",
        "/api/v1/namespaces/default/pods?labelSelector=soak%3Dyes",
        "",
    );
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let running = items.iter().filter(|p| p["status"]["phase"] == "Running").count();
    (running, items.len())
}

fn until(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(dir: &Path, cgroup_parent: &str, bridge: &str) -> Node {
    let binary = std::env::var_os("PODVISOR_SOAK_BINARY")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_podvisor")), PathBuf::from);
    let child = Command::new(binary)
        .arg("node")
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--output",
            "quiet",
            "--node-name",
            "soak-node",
        ])
        .args([
            "--pod-cidr",
            "10.77.0.0/16",
            "--cgroup-parent",
            cgroup_parent,
            "--bridge",
            bridge,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("podvisor starts");
    let mut node = Node {
        child,
        addr: String::new(),
    };
    let kubeconfig = dir.join("kubeconfig");
    until("the kubeconfig is written", 60, || kubeconfig.exists());
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: http://"))
        .expect("a plain-HTTP loopback server in the kubeconfig");
    node.addr = server.trim().to_owned();
    node
}

#[test]
#[ignore = "needs root"]
fn the_node_holds_steady_through_pods_connections_watches_and_big_objects() {
    assert!(
        podvisor_node::is_root(),
        "needs root: run `cargo xtask test` (or `cargo test -- --ignored`) as root"
    );
    let (n_pods, n_connections, n_watches) = (
        count("PODVISOR_SOAK_PODS", 60),
        count("PODVISOR_SOAK_CONNECTIONS", 200),
        count("PODVISOR_SOAK_WATCHES", 100),
    );
    let tmp = tempfile::tempdir().unwrap();
    let tag = std::process::id() % 10_000;
    let (cgroup_parent, bridge) = (format!("podvisor-soak-{tag}"), format!("pvs{tag}"));
    let mut node = start(&tmp.path().join("node"), &cgroup_parent, &bridge);
    let addr = node.addr.clone();
    let pid = node.child.id();

    // Warm up (first pods, first list), then take the baseline.
    let base = "/api/v1/namespaces/default/pods";
    for i in 0..5 {
        assert_eq!(http(&addr, "POST", base, &pod(&format!("warm-{i}"))).0, 201);
    }
    until("the warm-up pods run", 60, || pods(&addr).0 == 5);
    let (code, _) = http(&addr, "DELETE", &format!("{base}?labelSelector=soak%3Dyes"), "");
    assert_eq!(code, 200);
    until("the warm-up pods go", 60, || pods(&addr).1 == 0);
    let (rss_start, fds_start) = (rss_kib(pid), fds(pid));
    let mut rss_peak = rss_start;

    // Pods, in batches of 20: created, running, deleted, gone.
    let mut made = 0;
    while made < n_pods {
        let batch = (n_pods - made).min(20);
        for i in made..made + batch {
            assert_eq!(http(&addr, "POST", base, &pod(&format!("soak-{i}"))).0, 201);
        }
        until("a batch of pods runs", 120, || pods(&addr).0 == batch);
        ready_within_a_second(&addr, "pod churn");
        let (code, _) = http(&addr, "DELETE", &format!("{base}?labelSelector=soak%3Dyes"), "");
        assert_eq!(code, 200);
        until("a batch of pods goes", 120, || pods(&addr).1 == 0);
        made += batch;
        rss_peak = rss_peak.max(rss_kib(pid));
    }

    // Idle connections that never send a request.
    let idle: Vec<TcpStream> = (0..n_connections)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    assert_eq!(idle.len(), n_connections);
    ready_within_a_second(&addr, "idle connections");
    rss_peak = rss_peak.max(rss_kib(pid));
    drop(idle);

    // Big-but-legal objects (~1 MiB each), and watches that never read.
    let big = "x".repeat(1024 * 1024 - 1024);
    let maps = "/api/v1/namespaces/default/configmaps";
    for i in 0..10 {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big-{i}"}},"data":{{"k":"{big}"}}}}"#
        );
        assert_eq!(
            http(&addr, "POST", maps, &body).0,
            201,
            "a 1 MiB ConfigMap is legal"
        );
    }
    let watches: Vec<TcpStream> = (0..n_watches)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "GET {maps}?watch=true&timeoutSeconds=60 HTTP/1.1\r\nHost: soak\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    ready_within_a_second(&addr, "unread watches of a 10 MiB list");
    let (code, _) = http(&addr, "GET", base, "");
    assert_eq!(code, 200, "a pod list is served beside the watches");
    rss_peak = rss_peak.max(rss_kib(pid));
    drop(watches);

    // Every acknowledged write reads back.
    for i in 0..10 {
        let (code, body) = http(&addr, "GET", &format!("{maps}/big-{i}"), "");
        assert_eq!(code, 200);
        assert!(body.contains(&big[..1024]), "big-{i} reads back");
        assert_eq!(http(&addr, "DELETE", &format!("{maps}/big-{i}"), "").0, 200);
    }

    // Settled: memory and descriptors back, no sandbox left. Memory may keep what the store's
    // page cache holds on top of 2x the start: a bounded cache (redb's pages, filled by the
    // churn's writes) is not growth; anything else is.
    let cache_kib =
        u64::try_from(podvisor_store::RedbStoreConfig::default().cache_bytes / 1024).unwrap_or(u64::MAX);
    let rss_allowed = 2 * rss_start + cache_kib;
    let deadline = Instant::now() + Duration::from_secs(60);
    let settled = loop {
        let settled = (rss_kib(pid), fds(pid));
        if settled.0 <= rss_allowed && settled.1 <= fds_start + 8 {
            break settled;
        }
        assert!(
            Instant::now() < deadline,
            "memory and descriptors did not settle: RSS {rss_start} -> {} KiB (peak {rss_peak}; allowed 2x the start + {cache_kib} KiB of store page cache = {rss_allowed} KiB), fds {fds_start} -> {}",
            settled.0,
            settled.1
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(rss_peak < 256 * 1024, "RSS peaked at {rss_peak} KiB");
    let brif = PathBuf::from(format!("/sys/class/net/{bridge}/brif"));
    assert_eq!(
        std::fs::read_dir(&brif).map_or(0, Iterator::count),
        0,
        "no veth left on the bridge"
    );
    // The runtime's IP allocations in the data dir: none in use.
    let ipam = podvisor_runtime::ipam::allocations(&tmp.path().join("node"))
        .unwrap_or_else(|e| panic!("reading the IPAM state: {e}"));
    assert!(ipam.is_empty(), "no IP left allocated: {ipam:?}");
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let parent = hierarchy.path().join(&cgroup_parent);
        let pods_left =
            std::fs::read_dir(&parent).map_or(0, |d| d.flatten().filter(|e| e.path().is_dir()).count());
        assert_eq!(pods_left, 0, "no pod cgroup left under {}", parent.display());
    }
    eprintln!(
        "soak: {n_pods} pods, {n_connections} connections, {n_watches} watches; RSS {rss_start} KiB at start, {} KiB after (allowed {rss_allowed}: 2x the start + {cache_kib} KiB store page cache), {rss_peak} KiB peak; fds {fds_start} -> {}",
        settled.0, settled.1
    );

    // A clean stop: exit 0, and the node's cgroups and bridge go.
    let _ = Command::new("kill").arg(pid.to_string()).status();
    until("the node exits after SIGTERM", 60, || {
        node.child.try_wait().ok().flatten().is_some()
    });
    assert!(node.child.wait().unwrap().success());
    assert!(
        !PathBuf::from(format!("/sys/class/net/{bridge}")).exists(),
        "the bridge goes"
    );
}
