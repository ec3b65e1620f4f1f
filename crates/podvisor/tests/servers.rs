//! A cluster as a user runs one, every part a real process: 3 etcd members, 2 `podvisor
//! server`s on them, 2 `podvisor agent`s joining with the servers' join.kubeconfig, and
//! kubectl against both servers. It covers: the servers share the API and its credentials;
//! spreading by requests and Unschedulable in kube-scheduler's words; one etcd member stopped
//! and writes go on; the leading server killed and the control loops move within the lease
//! duration; an agent killed, its node Unknown (NotReady), its pod evicted when its toleration
//! runs out, and stopped by the agent when it comes back (a Deployment's pod recreated on the
//! other agent, a DaemonSet's pod on each staying); `kubectl drain` through the Eviction
//! API; a wrong token refused.
#![allow(
    clippy::disallowed_methods,
    reason = "synchronous test: it drives podvisor processes from a plain thread"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podvisor_test_support::etcd::EtcdCluster;
use support::{NodeProcess, kubectl, send_signal, sleeping, until};

/// A pod asking for 1.2 CPUs (of an agent's 2 at most), pinned to nothing.
fn greedy(name: &str, sleep: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 2
  tolerations:
  - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}}
  - {{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}}
  containers:
  - name: app
    image: host
    command: [sleep, "{sleep}"]
    resources: {{requests: {{cpu: 1200m}}}}
"#
    )
}

/// A DaemonSet (a pod on every agent) and a Deployment of one pod that leaves a lost node
/// after 2 s.
const WORKLOADS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: per-node}
spec:
  selector: {matchLabels: {app: per-node}}
  template:
    metadata: {labels: {app: per-node}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: app, image: host, command: [sleep, "3456786"]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: mover}
spec:
  replicas: 1
  selector: {matchLabels: {app: mover}}
  template:
    metadata: {labels: {app: mover}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      containers:
      - {name: app, image: host, command: [sleep, "3456785"]}
"#;

fn podvisor(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_podvisor"));
    command.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    command
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} was never written", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn server(dir: &Path, etcd: &str) -> NodeProcess {
    let child = podvisor(&["server", "--listen", "127.0.0.1:0", "--etcd-servers", etcd])
        .arg("--data-dir")
        .arg(dir)
        .args(["--node-monitor-grace-period", "15s"])
        .spawn()
        .unwrap_or_else(|e| panic!("podvisor server starts: {e}"));
    let process = NodeProcess(child, &[]);
    wait_for(&dir.join("kubeconfig"));
    wait_for(&dir.join("join.kubeconfig"));
    process
}

fn agent(dir: &Path, join: &Path, name: &str) -> NodeProcess {
    let child = podvisor(&["agent", "--node-name", name, "--node-ip", "127.0.0.1"])
        .arg("--kubeconfig")
        .arg(join)
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--output",
            "quiet",
            "--host-network",
            "--bridge",
            &format!("pv{name}"),
        ])
        // Two agents on one address: each its own kubelet port.
        .args(["--kubelet-port", "0"])
        .spawn()
        .unwrap_or_else(|e| panic!("podvisor agent starts: {e}"));
    NodeProcess(
        child,
        &["3456781", "3456782", "3456783", "3456784", "3456785", "3456786"],
    )
}

fn create(kubeconfig: &Path, dir: &Path, name: &str, sleep: &str) {
    let manifest = dir.join(format!("{name}.yaml"));
    std::fs::write(&manifest, greedy(name, sleep)).unwrap_or_else(|e| panic!("{e}"));
    let out = kubectl(
        kubeconfig,
        &["create", "-f", manifest.to_str().unwrap_or_default()],
    );
    assert!(out.contains(&format!("pod/{name} created")), "{out}");
}

fn field(kubeconfig: &Path, args: &[&str], path: &str) -> String {
    let jsonpath = format!("jsonpath={path}");
    let mut all = args.to_vec();
    all.extend(["-o", &jsonpath]);
    kubectl(kubeconfig, &all)
}

fn holder(kubeconfig: &Path, lease: &str) -> String {
    field(
        kubeconfig,
        &["get", "lease", "-n", "kube-system", lease],
        "{.spec.holderIdentity}",
    )
}

fn kill(process: &mut NodeProcess) {
    assert!(send_signal(process.0.id(), "KILL"));
    let _ = process.0.wait();
}

#[test]
fn a_cluster_of_servers_on_etcd_and_agents() {
    let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = |p: &str| -> PathBuf { base.path().join(p) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut etcd = runtime.block_on(EtcdCluster::start(3));
    let urls = etcd.client_urls().join(",");

    // Two servers on the three members; kubectl works against both, with either's kubeconfig.
    let mut first = server(&path("server-1"), &urls);
    let (admin_1, admin_2) = (path("server-1/kubeconfig"), path("server-2/kubeconfig"));
    // The first server leads before the second exists.
    let leader = until(
        &admin_1,
        &[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-scheduler",
            "-o",
            "name",
        ],
        |t| t.contains("lease.coordination.k8s.io/kube-scheduler"),
    );
    assert!(!leader.is_empty());
    let first_identity = holder(&admin_1, "kube-scheduler");
    assert!(!first_identity.is_empty());
    let _second = server(&path("server-2"), &urls);
    let leases = kubectl(&admin_2, &["get", "leases", "-A"]);
    assert!(
        leases.contains("kube-controller-manager") && leases.contains(&first_identity),
        "{leases}"
    );
    let out = kubectl(&admin_1, &["create", "configmap", "shared", "--from-literal=k=v"]);
    assert!(out.contains("configmap/shared created"), "{out}");
    let seen = field(&admin_2, &["get", "configmap", "shared"], "{.data.k}");
    assert_eq!(seen, "v", "a write on one server is read on the other");

    // Two agents join through the second server.
    let join = path("server-2/join.kubeconfig");
    let _agent_1 = agent(&path("agent-1"), &join, "agent-1");
    let mut agent_2 = agent(&path("agent-2"), &join, "agent-2");
    until(&admin_1, &["get", "nodes"], |t| {
        ["agent-1 ", "agent-2 "].iter().all(|name| {
            t.lines()
                .any(|l| l.starts_with(name) && l.split_whitespace().nth(1) == Some("Ready"))
        })
    });

    // Spreading by requests: 1.2 CPUs each, one pod per agent, the third fits nowhere.
    create(&admin_1, base.path(), "greedy-1", "3456781");
    until(&admin_1, &["get", "pod", "greedy-1"], |t| t.contains("Running"));
    create(&admin_2, base.path(), "greedy-2", "3456782");
    until(&admin_1, &["get", "pod", "greedy-2"], |t| t.contains("Running"));
    let (node_1, node_2) = (
        field(&admin_1, &["get", "pod", "greedy-1"], "{.spec.nodeName}"),
        field(&admin_1, &["get", "pod", "greedy-2"], "{.spec.nodeName}"),
    );
    assert_ne!(node_1, node_2, "spread by requests");
    create(&admin_1, base.path(), "greedy-3", "3456783");
    let events = until(
        &admin_1,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=greedy-3",
        ],
        |t| t.contains("FailedScheduling"),
    );
    assert!(
        events.contains("0/2 nodes are available: 2 Insufficient cpu."),
        "{events}"
    );
    let reason = field(
        &admin_2,
        &["get", "pod", "greedy-3"],
        "{.status.conditions[?(@.type==\"PodScheduled\")].reason}",
    );
    assert_eq!(reason, "Unschedulable");
    let out = kubectl(&admin_1, &["delete", "pod", "greedy-3", "--wait=false"]);
    assert!(out.contains("deleted"), "{out}");

    // `kubectl logs` of a pod on an agent, through either server (each asks the agent's kubelet
    // endpoint).
    let talker = base.path().join("talker.yaml");
    std::fs::write(
        &talker,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: talker}\nspec:\n  nodeSelector: {kubernetes.io/hostname: agent-1}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: app, image: host, command: [sh, -c, 'echo hello from agent-1; exec sleep 3456784']}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = kubectl(&admin_1, &["create", "-f", talker.to_str().unwrap_or_default()]);
    assert!(out.contains("pod/talker created"), "{out}");
    until(&admin_1, &["logs", "talker"], |t| {
        t.contains("hello from agent-1")
    });
    until(&admin_2, &["logs", "talker", "--tail=1"], |t| {
        t.trim() == "hello from agent-1"
    });
    // exec and top of a pod on an agent: the server forwards the upgrade to the agent's kubelet
    // endpoint, and samples the agent's counters there.
    let out = std::process::Command::new("kubectl")
        .args([
            "exec",
            "talker",
            "--",
            "sh",
            "-c",
            "echo exec on $(hostname); exit 6",
        ])
        .env("KUBECONFIG", &admin_2)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("exec on "));
    until(&admin_1, &["top", "pod", "talker", "--no-headers"], |t| {
        t.starts_with("talker ") && t.contains('m')
    });
    until(&admin_1, &["top", "node", "agent-1", "--no-headers"], |t| {
        t.contains('%')
    });
    let out = kubectl(&admin_1, &["delete", "pod", "talker", "--wait=false"]);
    assert!(out.contains("deleted"), "{out}");

    // One etcd member stops: writes go on.
    etcd.stop_member(0);
    // (A write that meets the election of a new etcd leader fails with 503 and is tried again.)
    until(
        &admin_2,
        &["create", "configmap", "after-member-loss", "--from-literal=k=v"],
        |t| t.contains("created") || t.contains("AlreadyExists"),
    );
    let seen = field(&admin_1, &["get", "configmap", "after-member-loss"], "{.data.k}");
    assert_eq!(seen, "v");

    // The leading server dies: the other takes the control loops over within the lease duration
    // (15 s) plus the retry's jitter.
    let killed = Instant::now();
    kill(&mut first);
    until(
        &admin_2,
        &["get", "lease", "-n", "kube-system", "kube-controller-manager"],
        |_| {
            let h = holder(&admin_2, "kube-controller-manager");
            !h.is_empty() && h != first_identity
        },
    );
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "took {:?}",
        killed.elapsed()
    );

    // Workloads across agents: the DaemonSet runs a pod on each; the Deployment's pod starts
    // on agent-2 (agent-1 cordoned meanwhile).
    let workloads = base.path().join("workloads.yaml");
    std::fs::write(&workloads, WORKLOADS).unwrap_or_else(|e| panic!("{e}"));
    kubectl(&admin_2, &["cordon", "agent-1"]);
    let out = kubectl(&admin_2, &["apply", "-f", workloads.to_str().unwrap_or_default()]);
    assert!(out.contains("deployment.apps/mover created"), "{out}");
    until(
        &admin_2,
        &[
            "get",
            "pods",
            "-l",
            "app=mover",
            "-o",
            "jsonpath={.items[*].spec.nodeName}",
        ],
        |t| t.trim() == "agent-2",
    );
    kubectl(&admin_2, &["uncordon", "agent-1"]);
    until(
        &admin_2,
        &[
            "get",
            "daemonset",
            "per-node",
            "-o",
            "jsonpath={.status.numberReady}",
        ],
        |t| t.trim() == "2",
    );
    let nodes = field(
        &admin_2,
        &["get", "pods", "-l", "app=per-node"],
        "{.items[*].spec.nodeName}",
    );
    let mut nodes: Vec<&str> = nodes.split_whitespace().collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ["agent-1", "agent-2"], "a daemon pod per agent");

    // An agent dies: its node turns NotReady (Unknown), its pod is evicted after its 2 s
    // toleration; back, the agent stops the pod the API deleted meanwhile.
    let (victim, on_victim) = if node_2 == "agent-2" {
        ("greedy-2", "3456782")
    } else {
        ("greedy-1", "3456781")
    };
    kill(&mut agent_2);
    assert_eq!(
        sleeping(on_victim).len(),
        1,
        "the pod's process outlives its agent"
    );
    until(&admin_2, &["get", "node", "agent-2"], |t| t.contains("NotReady"));
    let ready = field(
        &admin_2,
        &["get", "node", "agent-2"],
        "{.status.conditions[?(@.type==\"Ready\")].reason}",
    );
    assert_eq!(ready, "NodeStatusUnknown");
    until(&admin_2, &["get", "pod", victim], |t| {
        t.contains("Terminating") || t.contains("NotFound")
    });
    // The Deployment's pod is recreated on the agent left; the daemon pod stays (it tolerates
    // an unreachable node).
    until(
        &admin_2,
        &[
            "get",
            "pods",
            "-l",
            "app=mover",
            "--field-selector=spec.nodeName=agent-1",
            "-o",
            "name",
        ],
        |t| t.contains("pod/mover-"),
    );
    let daemon = field(
        &admin_2,
        &[
            "get",
            "pods",
            "-l",
            "app=per-node",
            "--field-selector=spec.nodeName=agent-2",
        ],
        "{.items[*].metadata.deletionTimestamp}",
    );
    assert!(
        daemon.trim().is_empty(),
        "the daemon pod is not evicted: {daemon}"
    );
    let _agent_2 = agent(&path("agent-2"), &join, "agent-2");
    until(&admin_2, &["get", "pod", victim], |t| t.contains("NotFound"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sleeping(on_victim).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the returning agent did not stop the evicted pod"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Draining the other agent evicts its pod (a bare pod: --force), which the agent stops.
    let (survivor, on_survivor) = if victim == "greedy-1" {
        ("greedy-2", "3456782")
    } else {
        ("greedy-1", "3456781")
    };
    let drained = kubectl(
        &admin_2,
        &[
            "drain",
            "agent-1",
            "--force",
            "--ignore-daemonsets",
            "--timeout=60s",
        ],
    );
    for line in [
        "node/agent-1 cordoned".to_owned(),
        format!("evicting pod default/{survivor}"),
        format!("pod/{survivor} evicted"),
        "node/agent-1 drained".to_owned(),
    ] {
        assert!(drained.contains(&line), "{line}:\n{drained}");
    }
    assert!(
        sleeping(on_survivor).is_empty(),
        "the drained pod's process is gone"
    );
    let nodes = kubectl(&admin_2, &["get", "node", "agent-1"]);
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    let out = kubectl(&admin_2, &["uncordon", "agent-1"]);
    assert!(out.contains("node/agent-1 uncordoned"), "{out}");

    // A wrong token is refused.
    let forged = path("forged.kubeconfig");
    let text = std::fs::read_to_string(&join).unwrap_or_default();
    let token = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        // YAML quotes a token that could read as a number (`'323271.…'`).
        .map(|t| t.trim_matches(['\'', '"']))
        .unwrap_or_else(|| panic!("no token in the join kubeconfig"))
        .to_owned();
    std::fs::write(&forged, text.replace(&token, &"f".repeat(64))).unwrap_or_else(|e| panic!("{e}"));
    let refused = kubectl(&forged, &["get", "nodes"]);
    assert!(refused.contains("Unauthorized"), "{refused}");
    // The join token itself may not do what is not a kubelet's.
    let forbidden = kubectl(&join, &["create", "configmap", "nope"]);
    assert!(forbidden.contains("forbidden"), "{forbidden}");
}
