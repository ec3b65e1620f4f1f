//! Pods outlive the node process (issue 18), through the `podvisor` binary as a user runs it:
//! `kill -9` of a node with 20 pods and a start on the same data dir adopts them (same
//! processes, container IDs, start times and restart counts, Ready never dropped, the log
//! whole across the downtime, an exit during the downtime reported with its code and handled
//! per restartPolicy, probes running again); SIGQUIT leaves the pods running; a hundred rounds
//! of `kill -9` and start leave no orphan behind once the node is stopped with SIGTERM.
#![allow(
    clippy::disallowed_methods,
    reason = "synchronous test: it drives a node process from a plain thread"
)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{NodeProcess, kubectl, send_signal, until};

/// One node's flags apart from the data dir: each test has its own network and cgroups, so the
/// tests of this binary run side by side.
struct Net {
    cidr: &'static str,
    bridge: &'static str,
    cgroup: &'static str,
}

/// A test's node: its temporary directory, data dir, kubeconfig, network and binary.
struct Rig {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    kubeconfig: PathBuf,
    net: Net,
    binary: PathBuf,
}

impl Rig {
    fn new(net: Net) -> Rig {
        root_only();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("node");
        Rig {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            tmp,
            net,
            binary: PathBuf::from(env!("CARGO_BIN_EXE_podvisor")),
        }
    }

    fn start(&self) -> NodeProcess {
        start(&self.binary, &self.dir, &self.net)
    }

    /// Applies `manifest` (written to a file first).
    fn apply(&self, manifest: &str) -> String {
        let file = self.tmp.path().join("pods.yaml");
        std::fs::write(&file, manifest).unwrap();
        kubectl(&self.kubeconfig, &["apply", "-f", file.to_str().unwrap()])
    }

    /// SIGTERM: the node exits 0 and no monitor or holder of its data dir is left.
    fn stop_cleanly(&self, node: &mut NodeProcess) {
        let status = stop(node, "TERM");
        assert!(status.success(), "{status}");
        assert!(
            processes(&self.dir.display().to_string()).is_empty(),
            "no monitor or holder is left"
        );
    }
}

fn start(binary: &Path, dir: &Path, net: &Net) -> NodeProcess {
    let kubeconfig = dir.join("kubeconfig");
    let _ = std::fs::remove_file(&kubeconfig);
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
            "restart-node",
        ])
        .args([
            "--cluster-cidr",
            net.cidr,
            "--bridge",
            net.bridge,
            "--cgroup-parent",
            net.cgroup,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("podvisor starts");
    let node = NodeProcess(child, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubeconfig.exists() {
        assert!(Instant::now() < deadline, "the node never wrote its kubeconfig");
        std::thread::sleep(Duration::from_millis(20));
    }
    node
}

/// SIGKILL, and wait for the exit.
fn crash(node: &mut NodeProcess) {
    node.0.kill().expect("kill -9");
    node.0.wait().expect("reaped");
}

/// SIGTERM, then the exit status within 90 s.
fn stop(node: &mut NodeProcess, signal: &str) -> std::process::ExitStatus {
    assert!(send_signal(node.0.id(), signal), "kill -{signal} ran");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = node.0.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the node exits after SIG{signal}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pods(kubeconfig: &Path) -> BTreeMap<String, Value> {
    let text = kubectl(kubeconfig, &["get", "pods", "-o", "json"]);
    let list: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                p.clone(),
            )
        })
        .collect()
}

/// The pod's container statuses, init containers' included.
fn statuses(pod: &Value) -> impl Iterator<Item = &Value> {
    let list = |key: &str| pod["status"][key].as_array().into_iter().flatten();
    list("containerStatuses").chain(list("initContainerStatuses"))
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    statuses(pod).find(|c| c["name"] == name).unwrap_or(&Value::Null)
}

fn ready_since(pod: &Value) -> Option<String> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")
        .map(|c| c["lastTransitionTime"].as_str().unwrap_or_default().to_string())
}

/// The live processes whose command line contains `needle`, not zombies.
fn processes(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(entry.path().join("cmdline")).unwrap_or_default())
                .replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if cmdline.contains(needle) && !zombie && pid != std::process::id() {
            found.push(pid);
        }
    }
    found
}

/// The pods of the 20-pod test: 14 sleepers with an exec readiness probe that stamps a file,
/// two HTTP servers with HTTP readiness and TCP liveness, a sidecar pod with a finished init
/// container, a crash-looping pod, a pod that logs a line every 10 ms and one whose container
/// is ended while no node runs.
fn manifests(stamps: &Path) -> String {
    let mut docs = Vec::new();
    for i in 0..14 {
        docs.push(format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: sleeper-{i}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: host
    command: [sleep, "{}"]
    readinessProbe: {{exec: {{command: [touch, "{}/sleeper-{i}"]}}, periodSeconds: 1}}
"#,
            4_180_000 + i,
            stamps.display()
        ));
    }
    for i in 0..2 {
        docs.push(format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: web-{i}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: host
    command: [/usr/bin/python3, -m, http.server, "8080"]
    readinessProbe: {{httpGet: {{port: 8080}}, periodSeconds: 1}}
    livenessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
"#
        ));
    }
    docs.push(
        r#"apiVersion: v1
kind: Pod
metadata: {name: sidecar}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: setup, image: host, command: [sh, -c, "exit 0"]}
  - {name: helper, image: host, restartPolicy: Always, command: [sleep, "4189001"]}
  containers:
  - {name: app, image: host, command: [sleep, "4189002"]}
"#
        .into(),
    );
    docs.push(
        r#"apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: host, command: [sh, -c, "sleep 0.2; exit 3"]}
"#
        .into(),
    );
    docs.push(
        r#"apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: host
    command: [sh, -c, "i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.01; done"]
"#
        .into(),
    );
    docs.push(
        r#"apiVersion: v1
kind: Pod
metadata: {name: quitter}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: host, command: [sh, -c, "trap 'exit 7' TERM; echo 4189003 >/dev/null; while :; do sleep 0.1; done"]}
"#
        .into(),
    );
    docs.join("---\n")
}

/// The numbers `tick-N` in the ticker's log, in order.
fn ticks(kubeconfig: &Path) -> Vec<u64> {
    kubectl(kubeconfig, &["logs", "ticker"])
        .lines()
        .filter_map(|l| l.strip_prefix("tick-")?.parse().ok())
        .collect()
}

fn epoch_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn root_only() {
    assert!(
        podvisor_node::is_root(),
        "needs root: run `cargo xtask test` (or `cargo test -- --ignored`) as root"
    );
}

/// What a user would check of the pods before and after the restart: each container's ID,
/// start time and restart count, and when each pod became Ready.
fn snapshot(all: &BTreeMap<String, Value>) -> BTreeMap<String, (String, String, i64, Option<String>)> {
    let mut out = BTreeMap::new();
    for (name, pod) in all {
        for c in statuses(pod) {
            out.insert(
                format!("{name}/{}", c["name"].as_str().unwrap_or_default()),
                (
                    c["containerID"].as_str().unwrap_or_default().to_string(),
                    c["state"]["running"]["startedAt"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    c["restartCount"].as_i64().unwrap_or(-1),
                    ready_since(pod),
                ),
            );
        }
    }
    out
}

#[test]
#[ignore = "needs root"]
fn a_node_killed_with_20_pods_adopts_them_on_the_next_start() {
    let rig = Rig::new(Net {
        cidr: "10.61.0.0/16",
        bridge: "pvrestart0",
        cgroup: "podvisor-restart",
    });
    let stamps = rig.tmp.path().join("stamps");
    std::fs::create_dir_all(&stamps).unwrap();
    let kubeconfig = rig.kubeconfig.as_path();
    let mut node = rig.start();
    let applied = rig.apply(&manifests(&stamps));
    assert_eq!(applied.matches(" created").count(), 20, "{applied}");
    let healthy: Vec<String> = (0..14)
        .map(|i| format!("sleeper-{i}"))
        .chain(["web-0", "web-1", "sidecar", "ticker", "quitter"].map(String::from))
        .collect();
    until(kubeconfig, &["get", "pods", "-o", "json"], |t| {
        let Ok(list) = serde_json::from_str::<Value>(t) else {
            return false;
        };
        let by_name: BTreeMap<&str, &Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| (p["metadata"]["name"].as_str().unwrap_or_default(), p))
            .collect();
        healthy
            .iter()
            .all(|n| by_name.get(n.as_str()).is_some_and(|p| ready_since(p).is_some()))
            && by_name
                .get("crasher")
                .is_some_and(|p| container(p, "app")["restartCount"].as_i64() >= Some(1))
    });
    let before_pods = pods(kubeconfig);
    let before = snapshot(&before_pods);
    let pids_before: Vec<(u32, Vec<u32>)> = (0..14u32)
        .map(|i| (i, processes(&format!("sleep {}", 4_180_000 + i))))
        .collect();
    for (i, pids) in &pids_before {
        assert_eq!(pids.len(), 1, "sleeper-{i} runs once: {pids:?}");
    }
    let quitter = processes("echo 4189003");
    assert_eq!(quitter.len(), 1, "{quitter:?}");

    // kill -9: the pods run on, the ticker writes into its log, the quitter ends with 7.
    crash(&mut node);
    let crashed_at = Instant::now();
    for (i, pids) in &pids_before {
        assert_eq!(
            processes(&format!("sleep {}", 4_180_000 + i)),
            *pids,
            "sleeper-{i} outlives the node"
        );
    }
    assert!(send_signal(quitter[0], "TERM"));
    std::thread::sleep(Duration::from_secs(2));
    let quitter_ended = epoch_ms();
    // The same across another binary file (an upgrade installs a new one).
    let upgraded = rig.tmp.path().join("podvisor-upgraded");
    std::fs::copy(&rig.binary, &upgraded).unwrap();
    let mut node = start(&upgraded, &rig.dir, &rig.net);
    let down = crashed_at.elapsed();

    // Adopted: the same processes, IDs, start times, restart counts and Ready times.
    let after_pods = until(kubeconfig, &["get", "pods", "-o", "json"], |t| {
        let Ok(list) = serde_json::from_str::<Value>(t) else {
            return false;
        };
        list["items"].as_array().is_some_and(|a| a.len() == 20)
    });
    let after_pods: Value = serde_json::from_str(&after_pods).unwrap();
    let after_pods: BTreeMap<String, Value> = after_pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["metadata"]["name"].as_str().unwrap().to_string(), p.clone()))
        .collect();
    let after = snapshot(&after_pods);
    for name in healthy.iter().filter(|n| *n != "quitter") {
        for (key, was) in before.iter().filter(|(k, _)| k.starts_with(&format!("{name}/"))) {
            if key == "sidecar/setup" {
                continue;
            }
            assert_eq!(after.get(key), Some(was), "{key} is adopted as it was");
        }
    }
    for (i, pids) in &pids_before {
        assert_eq!(
            processes(&format!("sleep {}", 4_180_000 + i)),
            *pids,
            "sleeper-{i} is the same process"
        );
    }
    // The init container that completed is not run again.
    assert_eq!(
        container(&after_pods["sidecar"], "setup")["state"]["terminated"]["exitCode"].as_i64(),
        Some(0)
    );
    assert_eq!(processes("sleep 4189001").len(), 1, "one sidecar");
    assert_eq!(processes("sleep 4189002").len(), 1, "one app");

    // The quitter's end while no node ran: its real exit code and finish time, then a restart.
    let quitter = until(kubeconfig, &["get", "pod", "quitter", "-o", "json"], |t| {
        serde_json::from_str::<Value>(t)
            .is_ok_and(|p| container(&p, "app")["restartCount"].as_i64() == Some(1))
    });
    let quitter: Value = serde_json::from_str(&quitter).unwrap();
    let last = &container(&quitter, "app")["lastState"]["terminated"];
    assert_eq!(last["exitCode"].as_i64(), Some(7), "{quitter}");
    let finished = podvisor_core::rfc3339::parse(last["finishedAt"].as_str().unwrap()).unwrap();
    // Second precision: it ended within the 2 s the node was away before it started again.
    assert!(
        finished <= quitter_ended && quitter_ended - finished < 4000,
        "finished at {finished} ms, while no node ran (until {quitter_ended} ms)"
    );

    // Probes run again: every sleeper's readiness stamp is renewed after the restart.
    let restarted = std::time::SystemTime::now();
    std::thread::sleep(Duration::from_millis(2500));
    for i in 0..14 {
        let stamp = std::fs::metadata(stamps.join(format!("sleeper-{i}")))
            .unwrap()
            .modified()
            .unwrap();
        assert!(stamp > restarted, "sleeper-{i} is probed again");
    }
    // Ready never dropped: the transition times are still the ones from before the crash.
    let later = snapshot(&pods(kubeconfig));
    for name in healthy.iter().filter(|n| *n != "quitter") {
        let key = format!(
            "{name}/{}",
            if name == "web-0" || name == "web-1" {
                "web"
            } else {
                "app"
            }
        );
        assert_eq!(later[&key].3, before[&key].3, "{name} stayed Ready");
    }

    // Every line the ticker wrote while no node ran is in its log.
    let seen = ticks(kubeconfig);
    assert!(
        seen.len() as u128 > down.as_millis() / 40,
        "the log grew while the node was away: {} lines",
        seen.len()
    );
    for pair in seen.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "no line lost");
    }
    assert_eq!(seen.first(), Some(&1));

    // SIGTERM: every pod stops, nothing is left.
    rig.stop_cleanly(&mut node);
    for i in 0..14 {
        assert!(processes(&format!("sleep {}", 4_180_000 + i)).is_empty());
    }
}

#[test]
#[ignore = "needs root"]
fn sigquit_leaves_the_pods_running_and_the_next_start_takes_them_over() {
    let rig = Rig::new(Net {
        cidr: "10.62.0.0/16",
        bridge: "pvquit0",
        cgroup: "podvisor-quit",
    });
    let mut node = rig.start();
    rig.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: kept}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: app, image: host, command: [sleep, \"4190001\"]}\n",
    );
    until(&rig.kubeconfig, &["get", "pod", "kept"], |t| {
        t.contains("Running")
    });
    let pid = processes("sleep 4190001");
    assert_eq!(pid.len(), 1);
    let status = stop(&mut node, "QUIT");
    assert!(status.success(), "SIGQUIT is a clean exit: {status}");
    assert_eq!(processes("sleep 4190001"), pid, "the pod outlives its node");
    let mut node = rig.start();
    until(&rig.kubeconfig, &["get", "pod", "kept"], |t| {
        t.contains("Running") && t.contains(" 0 ")
    });
    assert_eq!(processes("sleep 4190001"), pid, "adopted, not started again");
    rig.stop_cleanly(&mut node);
    assert!(processes("sleep 4190001").is_empty());
}

#[test]
#[ignore = "needs root"]
fn a_hundred_crashes_under_load_leave_nothing_behind() {
    let rig = Rig::new(Net {
        cidr: "10.63.0.0/16",
        bridge: "pvcrash0",
        cgroup: "podvisor-crash",
    });
    let (dir, kubeconfig, net) = (&rig.dir, &rig.kubeconfig, &rig.net);
    let mut node = rig.start();
    let mut docs = Vec::new();
    for i in 0..4 {
        docs.push(format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: s{i}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: app, image: host, command: [sleep, \"{}\"], readinessProbe: {{exec: {{command: [\"true\"]}}, periodSeconds: 1}}}}\n",
            4_191_000 + i
        ));
    }
    docs.push("apiVersion: v1\nkind: Pod\nmetadata: {name: crasher}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: app, image: host, command: [sh, -c, \"sleep 0.3; exit 1\"]}\n".into());
    rig.apply(&docs.join("---\n"));
    until(kubeconfig, &["get", "pods"], |t| {
        t.matches("Running").count() >= 4
    });
    // Kill it at every moment of its life: right after its API answers (adoption under way),
    // and later, while pods are started, probed and restarted.
    for round in 0..100u64 {
        crash(&mut node);
        for i in 0..4 {
            let n = processes(&format!("sleep {}", 4_191_000 + i)).len();
            assert!(n <= 1, "round {round}: s{i} runs {n} times");
        }
        node = rig.start();
        std::thread::sleep(Duration::from_millis(round * 37 % 700));
    }
    until(kubeconfig, &["get", "pods"], |t| {
        t.matches("Running").count() >= 4
    });
    for i in 0..4 {
        assert_eq!(
            processes(&format!("sleep {}", 4_191_000 + i)).len(),
            1,
            "s{i} runs once"
        );
    }
    // Nothing of the 101 node processes is left: processes, cgroups, interfaces, addresses.
    rig.stop_cleanly(&mut node);
    for i in 0..4 {
        assert!(processes(&format!("sleep {}", 4_191_000 + i)).is_empty());
    }
    for hierarchy in ["unified", "cpu", "memory", "pids", ""] {
        let parent = Path::new("/sys/fs/cgroup").join(hierarchy).join(net.cgroup);
        assert!(!parent.exists(), "{} is removed", parent.display());
    }
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains(net.bridge), "the bridge is removed");
    let veths = links.lines().filter(|l| l.contains("master pvcrash0")).count();
    assert_eq!(veths, 0, "no veth is left: {links}");
    let sandboxes = std::fs::read_dir(dir.join("sandboxes"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(sandboxes, 0, "no sandbox record is left");
    let ipam =
        podvisor_runtime::ipam::allocations(dir).unwrap_or_else(|e| panic!("reading the IPAM state: {e}"));
    assert!(ipam.is_empty(), "no IP is still allocated to a pod: {ipam:?}");
}
