//! `podvisor agent` joining a `podvisor node` as a user runs them: the agent registers its Node
//! (`kubectl get nodes` shows two), the scheduler binds a pod asking for the agent's host name
//! there, the agent runs it and reports its status through the remote API; SIGTERM stops the
//! agent's pods and the agent exits 0.
#![allow(
    clippy::disallowed_methods,
    reason = "synchronous test: it drives podvisor processes from a plain thread"
)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{NodeProcess, kubectl, send_signal, sleeping, until};

const ON_THE_AGENT: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: on-agent}
spec:
  nodeSelector: {kubernetes.io/hostname: agent-a}
  terminationGracePeriodSeconds: 2
  containers:
  - {name: app, image: host, command: [sleep, "2345678"]}
"#;

fn podvisor(args: &[&str], dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_podvisor"));
    command
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .args(["--output", "quiet", "--host-network"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

#[test]
fn an_agent_joins_a_node_and_runs_the_pods_scheduled_to_it() {
    let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (server_dir, agent_dir) = (base.path().join("server"), base.path().join("agent"));
    let server = podvisor(
        &[
            "node",
            "--listen",
            "127.0.0.1:0",
            "--tls",
            "--node-name",
            "server-a",
        ],
        &server_dir,
    )
    .args(["--cgroup-parent", "podvisor-test-server-a", "--bridge", "pvsa0"])
    .spawn()
    .unwrap_or_else(|e| panic!("podvisor node starts: {e}"));
    let _server = NodeProcess(server, &[]);
    let (kubeconfig, join) = (server_dir.join("kubeconfig"), server_dir.join("join.kubeconfig"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(kubeconfig.exists() && join.exists()) {
        assert!(Instant::now() < deadline, "the node never wrote its kubeconfigs");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The agent joins with the agents' credential, which allows only a kubelet's requests.
    let kubeconfig_arg = join.to_str().unwrap_or_default();
    let agent = podvisor(
        &["agent", "--kubeconfig", kubeconfig_arg, "--node-name", "agent-a"],
        &agent_dir,
    )
    .args(["--node-ip", "127.0.0.1", "--bridge", "pvaa0"])
    .spawn()
    .unwrap_or_else(|e| panic!("podvisor agent starts: {e}"));
    let mut agent = NodeProcess(agent, &["2345678"]);

    // Two Ready nodes: the all-in-one node (control plane) and the agent.
    until(&kubeconfig, &["get", "nodes"], |t| {
        let ready = |name: &str| {
            t.lines()
                .any(|l| l.starts_with(name) && l.split_whitespace().nth(1) == Some("Ready"))
        };
        ready("server-a ") && ready("agent-a ")
    });
    let labels = kubectl(
        &kubeconfig,
        &["get", "node", "agent-a", "-o", "jsonpath={.metadata.labels}"],
    );
    assert!(
        !labels.contains("control-plane"),
        "an agent is no control plane: {labels}"
    );

    // Scheduled to the agent by its host name label, run there, Running through the remote API.
    let manifest = base.path().join("pod.yaml");
    std::fs::write(&manifest, ON_THE_AGENT).unwrap_or_else(|e| panic!("{e}"));
    let created = kubectl(
        &kubeconfig,
        &["create", "-f", manifest.to_str().unwrap_or_default()],
    );
    assert!(created.contains("pod/on-agent created"), "{created}");
    let wide = until(&kubeconfig, &["get", "pod", "on-agent", "-o", "wide"], |t| {
        t.lines()
            .any(|l| l.starts_with("on-agent ") && l.split_whitespace().nth(2) == Some("Running"))
    });
    assert!(wide.contains("agent-a"), "bound to the agent: {wide}");
    let host_ip = kubectl(
        &kubeconfig,
        &["get", "pod", "on-agent", "-o", "jsonpath={.status.hostIP}"],
    );
    assert_eq!(host_ip, "127.0.0.1", "the agent's --node-ip");
    assert_eq!(sleeping("2345678").len(), 1, "the pod's process runs once");
    let events = kubectl(
        &kubeconfig,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=on-agent",
        ],
    );
    assert!(
        events.contains("Successfully assigned default/on-agent to agent-a"),
        "{events}"
    );

    // SIGTERM: the agent stops its pods gracefully and exits 0.
    assert!(send_signal(agent.0.id(), "TERM"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = agent.0.try_wait().unwrap_or_else(|e| panic!("{e}")) {
            break status;
        }
        assert!(Instant::now() < deadline, "the agent did not stop in time");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status}");
    assert!(sleeping("2345678").is_empty(), "the agent's pod stopped with it");
}
