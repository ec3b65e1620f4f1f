//! Pod sandboxes with real namespaces: hostname, own network namespace with the pod IP,
//! reachability from the node, loss detection, teardown, host network and the fallback.

mod support;

use std::io::Read;
use std::time::Duration;

use podvisor_core::ExitStatus;
use podvisor_core::runtime::ContainerRuntime;
use serde_json::json;
use support::*;

fn sh(name: &str, script: &str) -> serde_json::Value {
    json!({ "name": name, "command": ["sh", "-c", script] })
}

#[tokio::test]
#[ignore = "needs root"]
async fn sandbox_namespaces_ip_and_reachability() {
    require_root();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), false).await;
    assert!(rt.capabilities().namespaces);
    let p = pod(
        "netpod",
        json!([
            sh("info", "hostname; cat /proc/net/dev | grep -c eth0; ip -4 -o addr show 2>/dev/null | grep -c 127.0.0.1; grep netpod /etc/hosts | head -1; cat /proc/net/if_inet6"),
            { "name": "server", "command": ["python3", "-c", "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('0.0.0.0', 8080))\ns.listen()\nwhile True:\n c,_=s.accept()\n c.sendall(b'hello from pod')\n c.close()"] }
        ]),
        json!({}),
    );
    let sb = sandbox(&rt, &p).await;
    assert!(!sb.host_network && sb.warnings.is_empty(), "{sb:?}");
    let ip = sb.pod_ip.clone().unwrap_or_default();
    let info = start(&rt, &p, 0, Some(ip.clone())).await;
    assert_eq!(within(10, info.exit).await.status, ExitStatus::Exited(0));
    let text = log_text(&read_log(&rt, &p, "info"));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first().copied(), Some("netpod"), "{text}");
    assert_eq!(lines.get(1).copied(), Some("1"), "eth0 in the pod: {text}");
    assert!(text.contains(&format!("{ip}\tnetpod")), "{text}");
    // IPv6 stays on (loopback's ::1), but eth0 gets no link-local address, and neither does the
    // veth's end on the node's bridge (the bridge would flood their neighbour discovery).
    let inet6: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.len() > 32 && l[..32].bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    assert!(
        inet6
            .iter()
            .any(|l| l.starts_with("00000000000000000000000000000001") && l.ends_with(" lo")),
        "{text}"
    );
    assert!(!inet6.iter().any(|l| l.ends_with(" eth0")), "{text}");
    let host_ends = bridge_ports(&rt);
    assert_eq!(host_ends.len(), 1, "{host_ends:?}");
    let node_inet6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    assert!(
        !node_inet6
            .lines()
            .any(|l| l.ends_with(&format!(" {}", host_ends[0]))),
        "{node_inet6}"
    );

    let server = start(&rt, &p, 1, Some(ip.clone())).await;
    let addr = format!("{ip}:8080");
    let mut got = String::new();
    for _ in 0..100 {
        if let Ok(mut c) = std::net::TcpStream::connect_timeout(
            &addr.parse().unwrap_or_else(|e| panic!("{e}")),
            Duration::from_millis(200),
        ) {
            let _ = c.read_to_string(&mut got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, "hello from pod", "node -> pod IP");
    // Not reachable on the node's loopback: it is another network namespace.
    assert!(
        std::net::TcpStream::connect_timeout(
            &"127.0.0.1:8080".parse().unwrap_or_else(|e| panic!("{e}")),
            Duration::from_millis(200)
        )
        .is_err()
    );

    // Exec joins the pod's namespaces too.
    let out = podvisor_core::runtime::ContainerExec::exec(&*rt, &server.id, &["hostname".to_string()], None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(String::from_utf8_lossy(&out.output), "netpod\n");

    rt.stop(&server.id, Duration::from_secs(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    within(10, server.exit).await;
    rt.remove_sandbox(&uid(&p))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = podvisor_runtime::delete_link(&rt.config().bridge_name).await;
}

#[tokio::test]
#[ignore = "needs root"]
async fn sandbox_loss_is_detected_and_teardown_releases_the_ip() {
    require_root();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), false).await;
    let p = pod("lossy", json!([sh("c", "true")]), json!({}));
    let sb = sandbox(&rt, &p).await;
    let ip = sb.pod_ip.clone().unwrap_or_default();
    let allocated = podvisor_runtime::ipam::allocations(&dir.path().join("data"))
        .unwrap_or_else(|e| panic!("no IPAM state found: {e}"));
    assert!(
        allocated
            .iter()
            .any(|(a, u)| a.to_string() == ip && *u == uid(&p)),
        "{allocated:?} lacks {ip}"
    );
    // Find the holder and kill it.
    let holders: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid: &i32| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "podvisor-pause")
                && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rsplit(')')
                        .next()
                        .and_then(|r| r.split(' ').nth(2))
                        .is_some_and(|pp| pp == std::process::id().to_string())
                })
        })
        .collect();
    assert!(!holders.is_empty());
    let me = holders.iter().copied().find(|pid| {
        std::fs::read_link(format!("/proc/{pid}/ns/uts")).ok() != std::fs::read_link("/proc/self/ns/uts").ok()
            && std::process::Command::new("nsenter")
                .args(["-t", &pid.to_string(), "-u", "hostname"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "lossy")
    });
    let holder = me.unwrap_or_else(|| panic!("holder of this pod not found"));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder),
        nix::sys::signal::Signal::SIGKILL,
    );
    within(5, sb.lost).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!exists(holder), "holder reaped");

    rt.remove_sandbox(&uid(&p))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The IP is free again: the data directory no longer lists the pod.
    let state = podvisor_runtime::ipam::allocations(&dir.path().join("data"))
        .unwrap_or_else(|e| panic!("no IPAM state found: {e}"));
    assert!(
        state.iter().all(|(_, u)| *u != uid(&p)),
        "{state:?} still has {ip:?}"
    );
    let p2 = pod("again", json!([sh("c", "true")]), json!({}));
    let sb2 = sandbox(&rt, &p2).await;
    assert_ne!(sb2.pod_ip, None);
    // The first pod's veth is gone by now, or soon (see `bridge_ports_down_to`).
    assert_eq!(
        bridge_ports_down_to(&rt, 1).await,
        1,
        "the pod's veth is a port of the bridge"
    );
    rt.remove_sandbox(&uid(&p2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        bridge_ports_down_to(&rt, 0).await,
        0,
        "veth still on the bridge after 30 s"
    );
    let _ = podvisor_runtime::delete_link(&rt.config().bridge_name).await;
}

#[tokio::test]
async fn host_network_pods_share_the_node_network() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), false).await;
    let p = pod(
        "hostnet",
        json!([sh("c", "readlink /proc/self/ns/net")]),
        json!({ "hostNetwork": true }),
    );
    let sb = sandbox(&rt, &p).await;
    assert!(sb.host_network && sb.warnings.is_empty());
    assert_eq!(sb.pod_ip.as_deref(), Some("127.0.0.1"));
    let s = start(&rt, &p, 0, sb.pod_ip.clone()).await;
    assert_eq!(within(10, s.exit).await.status, ExitStatus::Exited(0));
    let own = std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    assert_eq!(log_text(&read_log(&rt, &p, "c")).trim(), own);
    rt.remove_sandbox(&uid(&p))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn without_namespaces_every_pod_falls_back_to_the_host_network() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    assert!(!rt.capabilities().namespaces);
    let p = pod("fallback", json!([sh("c", "echo ok")]), json!({}));
    let sb = sandbox(&rt, &p).await;
    assert!(sb.host_network);
    assert!(
        sb.warnings.iter().any(|w| w.contains("host network")),
        "{:?}",
        sb.warnings
    );
    // dnsPolicy ClusterFirst (the default) cannot be had there: the pod is told.
    assert!(
        sb.warnings
            .iter()
            .any(|w| w.starts_with("Service names will not resolve in this pod")),
        "{:?}",
        sb.warnings
    );
    let s = start(&rt, &p, 0, sb.pod_ip.clone()).await;
    assert_eq!(within(10, s.exit).await.status, ExitStatus::Exited(0));
    rt.remove_sandbox(&uid(&p))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A pod that asked for the host's resolver gets no such warning.
    let p = pod(
        "fallback-dns",
        json!([sh("c", "echo ok")]),
        json!({"dnsPolicy": "Default"}),
    );
    let sb = sandbox(&rt, &p).await;
    assert!(
        !sb.warnings.iter().any(|w| w.contains("Service names")),
        "{:?}",
        sb.warnings
    );
    rt.remove_sandbox(&uid(&p))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The ports of the runtime's bridge: the node's ends of its pods' veths.
fn bridge_ports(rt: &podvisor_runtime::ProcessRuntime) -> Vec<String> {
    let ports = format!("/sys/class/net/{}/brif", rt.config().bridge_name);
    std::fs::read_dir(ports)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// How many ports the runtime's bridge has once it has at most `n`, or after 30 s. A veth goes
/// with its pod's network namespace, which the kernel destroys off the teardown's path (later
/// while other tests' namespaces go too; or the runtime's own 5 s fallback deletes it): the
/// bound is generous for a loaded 2-core machine.
async fn bridge_ports_down_to(rt: &podvisor_runtime::ProcessRuntime, n: usize) -> usize {
    let t = std::time::Instant::now();
    while bridge_ports(rt).len() > n && t.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bridge_ports(rt).len()
}

/// The directories named `name` under `dir`, to `depth` levels down.
fn dirs_named(dir: &std::path::Path, name: &str, depth: usize) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if e.file_name() == name {
            found.push(e.path());
        } else if depth > 0 {
            found.extend(dirs_named(&e.path(), name, depth - 1));
        }
    }
    found
}

#[tokio::test]
#[ignore = "needs root"]
async fn removing_a_sandbox_removes_the_pods_groups_and_what_still_ran_in_them() {
    require_root();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), false).await;
    let p = pod(
        "groups",
        json!([sh("done", "true"), sh("left", "sleep 3600")]),
        json!({}),
    );
    let sb = sandbox(&rt, &p).await;
    let done = start(&rt, &p, 0, sb.pod_ip.clone()).await;
    assert_eq!(within(10, done.exit).await.status, ExitStatus::Exited(0));
    // A container still running when its pod's sandbox goes (as after a node crash).
    let left = start(&rt, &p, 1, sb.pod_ip.clone()).await;
    let groups = || dirs_named(std::path::Path::new("/sys/fs/cgroup"), &uid(&p), 8);
    let before = groups();
    assert!(
        rt.capabilities().cgroup == podvisor_runtime::CgroupVersion::None || !before.is_empty(),
        "the pod has groups"
    );
    rt.remove_sandbox(&uid(&p))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Gone when the removal returns, in every hierarchy, with the container in them.
    assert_eq!(groups(), Vec::<std::path::PathBuf>::new(), "left of {before:?}");
    if !before.is_empty() {
        assert_eq!(
            within(10, left.exit).await.status,
            ExitStatus::Signaled(9),
            "the container left in its group is killed"
        );
    }
    let _ = podvisor_runtime::delete_link(&rt.config().bridge_name).await;
}
