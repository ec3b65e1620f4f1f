//! The cluster of issue 15's rig, every part a real process and every agent on a "host" of its
//! own (root only): 3 etcd members on loopback ports, 2 `podvisor server`s in the root network
//! namespace listening on a test bridge's address, and 3 `podvisor agent`s, each in its own
//! network namespace with its own address, data dir, bridge and cgroup parent, joining through
//! the second server's `join.kubeconfig` without `--pod-cidr`; kubectl against both servers.
//! It covers: three Ready nodes with distinct /24s from the servers' node IPAM and the Leases'
//! holders; a pod on one agent reaching an HTTP server pod on another by ClusterIP and by
//! Service name; a cordoned node getting no new pod, a pod pinned to it Pending with
//! kube-scheduler 1.35's FailedScheduling message, and scheduled there once uncordoned; the
//! leading server killed (SIGKILL) and the other holding both control-loop Leases within the
//! lease duration plus the retry period's jitter, its scheduler then binding new pods.
//!
//! It is not the node-lost, drain, etcd-member-loss or token test: `servers.rs` covers those
//! with agents on the host network, and `pod_network.rs` the pod network under `podvisor node`.
#![allow(
    clippy::disallowed_methods,
    reason = "synchronous test: it drives podvisor processes from a plain thread"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podvisor_test_support::etcd::EtcdCluster;
use support::netns::{Rig, web_behind_service};
use support::{NodeProcess, Reaper, kubectl, send_signal, until_within};

/// The cluster CIDR of the test (both servers): pods live only inside the rig's namespaces, so
/// it meets neither the machine's networks nor `pod_network.rs`'s `10.212.0.0/16`.
const CLUSTER_CIDR: &str = "10.213.0.0/16";

/// How long any one step may take on a loaded two-core machine.
const STEP: Duration = Duration::from_secs(120);

/// kube-scheduler 1.35's message for a pod pinned by nodeSelector to the one cordoned node of
/// three (cluster-semantics §1.17, §1.21–1.23): the cordon is rejected by NodeUnschedulable
/// first, the others by NodeAffinity, both unresolvable by preemption.
const PINNED_TO_CORDONED: &str = "0/3 nodes are available: 1 node(s) were unschedulable, 2 \
     node(s) didn't match Pod's node affinity/selector. no new claims to deallocate, preemption: \
     0/3 nodes are available: 3 Preemption is not helpful for scheduling.";

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} was never written", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `podvisor server` on the bridge's address (a port of its own), on `etcd`; returns it and
/// its admin kubeconfig once both kubeconfigs are written.
fn server(rig: &Rig, dir: &Path, etcd: &str) -> (NodeProcess, PathBuf) {
    let child = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["server", "--listen", &format!("{}:0", rig.gateway())])
        .args(["--etcd-servers", etcd, "--cluster-cidr", CLUSTER_CIDR])
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("podvisor server starts: {e}"));
    let process = NodeProcess(child, &[]);
    let admin = dir.join("kubeconfig");
    wait_for(&admin);
    wait_for(&dir.join("join.kubeconfig"));
    let config = std::fs::read_to_string(&admin).unwrap_or_default();
    assert!(
        config.contains(&format!("https://{}:", rig.gateway())),
        "the server is reached on the bridge's address:\n{config}"
    );
    (process, admin)
}

/// `podvisor agent` in host `i`'s namespace, joining with `join`, without `--pod-cidr`.
fn agent(rig: &Rig, i: usize, name: &str, join: &Path, dir: &Path) -> NodeProcess {
    let child = rig
        .command(i, env!("CARGO_BIN_EXE_podvisor"))
        .arg("agent")
        .arg("--kubeconfig")
        .arg(join)
        .arg("--data-dir")
        .arg(dir)
        .args(["--node-name", name, "--node-ip", &rig.host_ip(i).to_string()])
        .args(["--bridge", &format!("pvr{}b{i}", rig.tag())])
        .args(["--cgroup-parent", &format!("podvisor-test-{name}")])
        .args(["--output", "quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("podvisor agent starts: {e}"));
    NodeProcess(child, &[])
}

/// `kubectl args -o jsonpath=PATH`, trimmed.
fn field(kubeconfig: &Path, args: &[&str], path: &str) -> String {
    let jsonpath = format!("jsonpath={path}");
    let mut all = args.to_vec();
    all.extend(["-o", &jsonpath]);
    kubectl(kubeconfig, &all).trim().to_owned()
}

/// The holder of a control-loop Lease in kube-system, once there is one (an identity has no
/// spaces; kubectl's errors do).
fn holder(kubeconfig: &Path, lease: &str) -> String {
    let out = field(
        kubeconfig,
        &["get", "lease", "-n", "kube-system", lease],
        "{.spec.holderIdentity}",
    );
    if out.contains(char::is_whitespace) {
        String::new()
    } else {
        out
    }
}

/// Creates the objects of `manifest` (written to `dir/<file>`) and checks kubectl's words.
fn create(kubeconfig: &Path, dir: &Path, file: &str, manifest: &str, expect: &[&str]) {
    let path = dir.join(file);
    std::fs::write(&path, manifest).unwrap_or_else(|e| panic!("{e}"));
    let out = kubectl(kubeconfig, &["create", "-f", path.to_str().unwrap_or_default()]);
    for line in expect {
        assert!(out.contains(line), "{line}:\n{out}");
    }
}

/// A pod that runs until stopped, its command line naming `marker` (for the reaper).
fn idle_pod(name: &str, selector: Option<&str>, marker: &str) -> String {
    let selector = selector.map_or_else(String::new, |node| {
        format!("  nodeSelector: {{kubernetes.io/hostname: {node}}}\n")
    });
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
{selector}  terminationGracePeriodSeconds: 2
  containers:
  - name: idle
    image: host
    command: [tail, -f, "{marker}/index.html"]
"#
    )
}

/// Whether `kubectl get nodes` output shows `name` with exactly `status`.
fn node_status(nodes: &str, name: &str, status: &str) -> bool {
    nodes
        .lines()
        .any(|l| l.starts_with(&format!("{name} ")) && l.split_whitespace().nth(1) == Some(status))
}

#[test]
#[ignore = "needs root"]
fn three_agents_on_their_own_hosts_two_servers_and_three_etcd_members() {
    assert!(
        podvisor_node::is_root(),
        "needs root (network namespaces, bridges, routes, cgroups)"
    );
    let started = Instant::now();
    // Dropped in reverse: the agents (stopping their pods), the servers, etcd, the reaper, the
    // files, then the namespaces and the bridge.
    let rig = Rig::new(3);
    let tag = rig.tag();
    let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let www = base.path().join(format!("www-pvrig{tag}"));
    std::fs::create_dir_all(&www).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(www.join("index.html"), "hello from agent-b\n").unwrap_or_else(|e| panic!("{e}"));
    let marker = www.to_string_lossy().into_owned();
    let _reaper = Reaper(marker.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let etcd = runtime.block_on(EtcdCluster::start(3));
    let urls = etcd.client_urls().join(",");

    // The first server leads before the second exists, so the leader is known.
    let (mut first, admin_1) = server(&rig, &base.path().join("server-1"), &urls);
    until_within(STEP, &admin_1, &["get", "leases", "-n", "kube-system"], |_| {
        let scheduler = holder(&admin_1, "kube-scheduler");
        !scheduler.is_empty() && scheduler == holder(&admin_1, "kube-controller-manager")
    });
    let first_identity = holder(&admin_1, "kube-scheduler");
    let (_second, admin_2) = server(&rig, &base.path().join("server-2"), &urls);

    // Three agents, each on its own host, joining through the second server (the one that
    // survives below).
    let join = base.path().join("server-2/join.kubeconfig");
    let names = ["a", "b", "c"].map(|n| format!("agent-{tag}-{n}"));
    let [a, b, c] = &names;
    let _agents: Vec<NodeProcess> = names
        .iter()
        .enumerate()
        .map(|(i, name)| agent(&rig, i, name, &join, &base.path().join(name)))
        .collect();

    // 1. Three Ready nodes with distinct /24s of the cluster CIDR; the Leases show who holds
    // them, on either server.
    until_within(STEP, &admin_1, &["get", "nodes"], |t| {
        names.iter().all(|name| node_status(t, name, "Ready"))
    });
    let cidrs: Vec<String> = names
        .iter()
        .map(|name| field(&admin_2, &["get", "node", name], "{.spec.podCIDR}"))
        .collect();
    for cidr in &cidrs {
        assert!(
            cidr.starts_with("10.213.") && cidr.ends_with(".0/24"),
            "a /24 of {CLUSTER_CIDR}: {cidrs:?}"
        );
    }
    assert!(
        cidrs[0] != cidrs[1] && cidrs[1] != cidrs[2] && cidrs[0] != cidrs[2],
        "each node its own range: {cidrs:?}"
    );
    let leases = kubectl(&admin_1, &["get", "leases", "-A"]);
    for name in &names {
        assert!(
            leases.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.get(..3) == Some(&["kube-node-lease", name.as_str(), name.as_str()][..])
            }),
            "{name} holds its node Lease:\n{leases}"
        );
    }
    for lease in ["kube-scheduler", "kube-controller-manager"] {
        assert!(
            leases.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.get(..3) == Some(&["kube-system", lease, first_identity.as_str()][..])
            }),
            "the first server holds {lease}:\n{leases}"
        );
    }
    assert_eq!(
        kubectl(&admin_2, &["get", "leases", "-A", "-o", "name"]),
        kubectl(&admin_1, &["get", "leases", "-A", "-o", "name"]),
        "both servers show the same Leases"
    );

    // 2. Cross-node Service traffic: an HTTP server on B behind a Service, a client on A
    // reaching it by ClusterIP and by name.
    let web = web_behind_service(b, &www);
    create(
        &admin_1,
        base.path(),
        "web.yaml",
        &web,
        &["pod/web created", "service/web created"],
    );
    until_within(STEP, &admin_2, &["get", "pod", "web"], |t| {
        t.lines()
            .any(|l| l.starts_with("web ") && l.split_whitespace().nth(1) == Some("1/1"))
    });
    let web_ip = field(&admin_2, &["get", "pod", "web"], "{.status.podIP}");
    assert!(
        web_ip.starts_with(cidrs[1].trim_end_matches("0/24")),
        "web's IP {web_ip} is from B's {}",
        cidrs[1]
    );
    let cluster_ip = field(&admin_1, &["get", "service", "web"], "{.spec.clusterIP}");
    assert!(cluster_ip.starts_with("10.96."), "{cluster_ip}");
    // The client prints what it got and exits 0 once both answered; an agent's pod logs are
    // not served through the API, so it writes into a file the test reads.
    let client_out = base.path().join("client.out");
    let script = format!(
        "exec >{out} 2>&1; for i in $(seq 1 60); do \
           a=$(curl -sS -m 3 http://{cluster_ip}/ 2>&1); \
           b=$(curl -sS -m 3 http://web/ 2>&1); \
           echo \"cluster-ip: $a\"; echo \"name: $b\"; \
           case \"$a$b\" in *agent-b*agent-b*) exit 0;; esac; sleep 1; \
         done; exit 1",
        out = client_out.display()
    );
    let client = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {a}}}
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: curl
    image: host
    command: [/bin/sh, -c, {script:?}, "{marker}"]
"#
    );
    create(
        &admin_2,
        base.path(),
        "client.yaml",
        &client,
        &["pod/client created"],
    );
    let phase = until_within(
        STEP,
        &admin_1,
        &["get", "pod", "client", "-o", "jsonpath={.status.phase}"],
        |t| t == "Succeeded" || t == "Failed",
    );
    let logs = std::fs::read_to_string(&client_out).unwrap_or_default();
    assert_eq!(phase, "Succeeded", "the client's output:\n{logs}");
    for how in ["cluster-ip", "name"] {
        assert!(
            logs.contains(&format!("{how}: hello from agent-b")),
            "{how} answered:\n{logs}"
        );
    }
    let client_ip = field(&admin_1, &["get", "pod", "client"], "{.status.podIP}");
    assert!(
        client_ip.starts_with(cidrs[0].trim_end_matches("0/24")),
        "client's IP {client_ip} is from A's {}",
        cidrs[0]
    );

    // 3. Cordon and nodeSelector. A (no running pod, and the first name when scores tie) is
    // where an unconstrained pod would go; cordoned, it gets no new pod, and a pod pinned to
    // it stays Pending in kube-scheduler's words until it is uncordoned.
    let out = kubectl(&admin_2, &["cordon", a]);
    assert!(out.contains(&format!("node/{a} cordoned")), "{out}");
    let nodes = kubectl(&admin_1, &["get", "nodes"]);
    assert!(node_status(&nodes, a, "Ready,SchedulingDisabled"), "{nodes}");
    create(
        &admin_1,
        base.path(),
        "pinned.yaml",
        &idle_pod("pinned", Some(a.as_str()), &marker),
        &["pod/pinned created"],
    );
    let events = until_within(
        STEP,
        &admin_2,
        &["get", "events", "--field-selector", "involvedObject.name=pinned"],
        |t| t.contains("FailedScheduling"),
    );
    assert!(events.contains(PINNED_TO_CORDONED), "{events}");
    let condition = "{.status.conditions[?(@.type==\"PodScheduled\")]}";
    let scheduled = field(&admin_1, &["get", "pod", "pinned"], condition);
    let scheduled: serde_json::Value =
        serde_json::from_str(&scheduled).unwrap_or_else(|e| panic!("{e}: {scheduled}"));
    assert_eq!(scheduled["status"], "False", "{scheduled}");
    assert_eq!(scheduled["reason"], "Unschedulable", "{scheduled}");
    assert_eq!(scheduled["message"], PINNED_TO_CORDONED, "{scheduled}");
    for name in ["free-1", "free-2"] {
        create(
            &admin_2,
            base.path(),
            &format!("{name}.yaml"),
            &idle_pod(name, None, &marker),
            &[format!("pod/{name} created").as_str()],
        );
        let node = until_within(
            STEP,
            &admin_1,
            &["get", "pod", name, "-o", "jsonpath={.spec.nodeName}"],
            |t| names.iter().any(|n| n == t),
        );
        assert_ne!(&node, a, "{name} went to the cordoned node");
    }
    let pending = field(&admin_2, &["get", "pod", "pinned"], "{.spec.nodeName}");
    assert_eq!(pending, "", "the pinned pod waits for its node");
    let out = kubectl(&admin_1, &["uncordon", a]);
    assert!(out.contains(&format!("node/{a} uncordoned")), "{out}");
    until_within(STEP, &admin_2, &["get", "pod", "pinned", "-o", "wide"], |t| {
        t.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.first() == Some(&"pinned") && cols.get(2) == Some(&"Running") && l.contains(a.as_str())
        })
    });

    // 4. The leading server dies (SIGKILL: it releases nothing): the other holds both Leases
    // once the lease duration (15 s) has passed since it saw the last renewal, as client-go's
    // elector does; it looks every retry period stretched by the jitter (2 to 4.4 s), so at
    // worst 4.4 + 15 + 4.4 s after the kill. Its scheduler then binds new pods to agents that
    // never noticed, since they joined through it.
    assert!(send_signal(first.0.id(), "KILL"));
    let killed = Instant::now();
    let _ = first.0.wait();
    until_within(STEP, &admin_2, &["get", "leases", "-n", "kube-system"], |_| {
        ["kube-scheduler", "kube-controller-manager"].iter().all(|lease| {
            let h = holder(&admin_2, lease);
            !h.is_empty() && h != first_identity
        })
    });
    let takeover = killed.elapsed();
    assert!(
        takeover < Duration::from_secs(30),
        "the control loops moved after {takeover:?}"
    );
    eprintln!("the control loops moved {takeover:?} after the leader was killed");
    create(
        &admin_2,
        base.path(),
        "after.yaml",
        &idle_pod("after-failover", Some(c.as_str()), &marker),
        &["pod/after-failover created"],
    );
    until_within(STEP, &admin_2, &["get", "pod", "after-failover"], |t| {
        t.contains("Running")
    });
    let nodes = kubectl(&admin_2, &["get", "nodes"]);
    assert!(
        names.iter().all(|name| node_status(&nodes, name, "Ready")),
        "{nodes}"
    );
    eprintln!("the rig's cases took {:?}", started.elapsed());
}
