//! The pod network across hosts, as a user sets it up: a `podvisor node` control plane on a
//! test bridge (HTTPS and a token, since it is off loopback) and two `podvisor agent`s, each in
//! its own network namespace (its own "host"), joining with the node's kubeconfig and no
//! `--pod-cidr`. Each agent's Node gets its own /24 of the cluster CIDR, its pods get addresses
//! from it, and a pod on agent A reaches a ready HTTP server pod on agent B by pod IP, by
//! ClusterIP and by Service name (cluster DNS), without being masqueraded (the server sees the
//! client pod's address).
#![allow(
    clippy::disallowed_methods,
    reason = "synchronous test: it drives podvisor processes from a plain thread"
)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::netns::{Rig, web_behind_service};
use support::{NodeProcess, Reaper, kubectl, send_signal, until_within};

/// The cluster CIDR of the test: pods live only inside the rig's namespaces, so it does not
/// meet the machine's own networks.
const CLUSTER_CIDR: &str = "10.212.0.0/16";

fn podvisor(command: &mut Command, args: &[&str], dir: &Path) {
    command
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .args(["--output", "quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
}

fn jsonpath(kubeconfig: &Path, args: &[&str]) -> String {
    kubectl(kubeconfig, args).trim().to_owned()
}

#[test]
#[ignore = "needs root"]
fn a_pod_on_one_agent_reaches_a_pod_on_another_by_ip_cluster_ip_and_name() {
    assert!(
        podvisor_node::is_root(),
        "needs root (network namespaces, bridges, routes)"
    );
    let rig = Rig::new(2);
    let tag = rig.tag();
    let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let www = base.path().join(format!("www-pvnet{tag}"));
    std::fs::create_dir_all(&www).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(www.join("index.html"), "hello from agent-b\n").unwrap_or_else(|e| panic!("{e}"));
    let _reaper = Reaper(www.to_string_lossy().into_owned());

    // The control plane, on the bridge's address; its own pods would use the host network.
    let server_dir = base.path().join("server");
    let listen = format!("{}:0", rig.gateway());
    let node_ip = rig.gateway().to_string();
    let (cp, a, b) = (
        format!("cp-{tag}"),
        format!("agent-{tag}-a"),
        format!("agent-{tag}-b"),
    );
    let mut server = Command::new(env!("CARGO_BIN_EXE_podvisor"));
    podvisor(
        &mut server,
        &[
            "node",
            "--listen",
            &listen,
            "--node-name",
            &cp,
            "--node-ip",
            &node_ip,
        ],
        &server_dir,
    );
    server
        .args(["--cluster-cidr", CLUSTER_CIDR, "--host-network"])
        .args(["--cgroup-parent", &format!("podvisor-test-{cp}")])
        .args(["--bridge", &format!("pvtc{tag}")]);
    let server = server
        .spawn()
        .unwrap_or_else(|e| panic!("podvisor node starts: {e}"));
    let _server = NodeProcess(server, &[]);
    let kubeconfig = server_dir.join("kubeconfig");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubeconfig.exists() {
        assert!(Instant::now() < deadline, "the node never wrote its kubeconfig");
        std::thread::sleep(Duration::from_millis(50));
    }
    let config = std::fs::read_to_string(&kubeconfig).unwrap_or_default();
    assert!(
        config.contains(&format!("https://{}:", rig.gateway())) && config.contains("token"),
        "off loopback the API is HTTPS with a token:\n{config}"
    );

    // Two agents, each in its own namespace, without --pod-cidr.
    let mut agents = Vec::new();
    for (i, name) in [&a, &b].into_iter().enumerate() {
        let mut agent = rig.command(i, env!("CARGO_BIN_EXE_podvisor"));
        let ip = rig.host_ip(i).to_string();
        podvisor(
            &mut agent,
            &["agent", "--kubeconfig", kubeconfig.to_str().unwrap_or_default()],
            &base.path().join(name),
        );
        agent
            .args(["--node-name", name, "--node-ip", &ip])
            .args(["--bridge", &format!("pvt{tag}b{i}")])
            .args(["--cgroup-parent", &format!("podvisor-test-{name}")]);
        let child = agent
            .spawn()
            .unwrap_or_else(|e| panic!("podvisor agent starts: {e}"));
        agents.push(NodeProcess(child, &[]));
    }

    // Three Ready nodes, each with a /24 of its own: the control plane the first.
    until_within(Duration::from_secs(120), &kubeconfig, &["get", "nodes"], |t| {
        [&cp, &a, &b].iter().all(|name| {
            t.lines()
                .any(|l| l.starts_with(&format!("{name} ")) && l.split_whitespace().nth(1) == Some("Ready"))
        })
    });
    let cidr_of = |name: &str| {
        jsonpath(
            &kubeconfig,
            &["get", "node", name, "-o", "jsonpath={.spec.podCIDR}"],
        )
    };
    let (cp_cidr, a_cidr, b_cidr) = (cidr_of(&cp), cidr_of(&a), cidr_of(&b));
    assert_eq!(cp_cidr, "10.212.0.0/24", "the control plane's own: the first /24");
    for cidr in [&a_cidr, &b_cidr] {
        assert!(
            cidr.starts_with("10.212.") && cidr.ends_with(".0/24") && *cidr != cp_cidr,
            "an agent's /24 of the cluster CIDR: {cidr}"
        );
    }
    assert_ne!(a_cidr, b_cidr, "each node its own range");
    let prefix = |cidr: &str| cidr.trim_end_matches("0/24").to_owned();

    // Agent A routes B's pods through B's address (host-gw), as `ip route` shows it.
    let b_route = format!("{b_cidr} via {}", rig.host_ip(1));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = rig
            .command(0, "ip")
            .args(["route", "show", "proto", "201"])
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let routes = String::from_utf8_lossy(&out.stdout).into_owned();
        if routes.contains(&b_route) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no route {b_route} on agent A:\n{routes}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The server on B, ready, behind a Service.
    let server_manifest = web_behind_service(&b, &www);
    let manifest = base.path().join("web.yaml");
    std::fs::write(&manifest, server_manifest).unwrap_or_else(|e| panic!("{e}"));
    let created = kubectl(
        &kubeconfig,
        &["create", "-f", manifest.to_str().unwrap_or_default()],
    );
    assert!(
        created.contains("pod/web created") && created.contains("service/web created"),
        "{created}"
    );
    until_within(
        Duration::from_secs(120),
        &kubeconfig,
        &["get", "pod", "web"],
        |t| {
            t.lines()
                .any(|l| l.starts_with("web ") && l.split_whitespace().nth(1) == Some("1/1"))
        },
    );
    let web_ip = jsonpath(
        &kubeconfig,
        &["get", "pod", "web", "-o", "jsonpath={.status.podIP}"],
    );
    assert!(
        web_ip.starts_with(&prefix(&b_cidr)),
        "web's IP {web_ip} is from B's {b_cidr}"
    );
    let cluster_ip = jsonpath(
        &kubeconfig,
        &["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"],
    );
    assert!(cluster_ip.starts_with("10.96."), "{cluster_ip}");

    // The client on A: by pod IP, by ClusterIP and by name; it prints what it got and exits 0
    // once all three answered. (An agent's pod logs are not served through the API yet, so
    // the client and the server write into files the test reads.)
    let client_out = base.path().join("client.out");
    let script = format!(
        "exec >{out} 2>&1; for i in $(seq 1 60); do \
           a=$(curl -sS -m 3 http://{web_ip}:8080/ 2>&1); \
           b=$(curl -sS -m 3 http://{cluster_ip}/ 2>&1); \
           c=$(curl -sS -m 3 http://web/ 2>&1); \
           echo \"pod-ip: $a\"; echo \"cluster-ip: $b\"; echo \"name: $c\"; \
           case \"$a$b$c\" in *agent-b*agent-b*agent-b*) exit 0;; esac; sleep 1; \
         done; exit 1",
        out = client_out.display()
    );
    let client_manifest = format!(
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
"#,
        marker = www.display()
    );
    let manifest = base.path().join("client.yaml");
    std::fs::write(&manifest, client_manifest).unwrap_or_else(|e| panic!("{e}"));
    let created = kubectl(
        &kubeconfig,
        &["create", "-f", manifest.to_str().unwrap_or_default()],
    );
    assert!(created.contains("pod/client created"), "{created}");
    let phase = until_within(
        Duration::from_secs(120),
        &kubeconfig,
        &["get", "pod", "client", "-o", "jsonpath={.status.phase}"],
        |t| t == "Succeeded" || t == "Failed",
    );
    let logs = std::fs::read_to_string(&client_out).unwrap_or_default();
    assert_eq!(phase, "Succeeded", "the client's output:\n{logs}");
    let client_ip = jsonpath(
        &kubeconfig,
        &["get", "pod", "client", "-o", "jsonpath={.status.podIP}"],
    );
    assert!(
        client_ip.starts_with(&prefix(&a_cidr)),
        "client's IP {client_ip} is from A's {a_cidr}"
    );
    for how in ["pod-ip", "cluster-ip", "name"] {
        assert!(
            logs.contains(&format!("{how}: hello from agent-b")),
            "{how} answered:\n{logs}"
        );
    }
    // Not masqueraded: the server logged the client pod's own address, for the direct request
    // and for the ones through the Service.
    let web_logs = std::fs::read_to_string(format!("{}.log", www.display())).unwrap_or_default();
    let requests: Vec<&str> = web_logs.lines().filter(|l| l.contains("\"GET / HTTP")).collect();
    assert!(
        requests.len() >= 3 && requests.iter().all(|l| l.starts_with(&format!("{client_ip} "))),
        "every request from {client_ip}:\n{web_logs}"
    );

    // Gone: the agents stop their pods and exit 0; then the routes they made are gone too.
    for agent in &mut agents {
        assert!(send_signal(agent.0.id(), "TERM"));
    }
    for agent in &mut agents {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = agent.0.try_wait().unwrap_or_else(|e| panic!("{e}")) {
                break status;
            }
            assert!(Instant::now() < deadline, "an agent did not stop in time");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "exit status {status}");
    }
    let out = rig
        .command(0, "ip")
        .args(["route", "show", "proto", "201"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "agent A removed its routes"
    );
}
