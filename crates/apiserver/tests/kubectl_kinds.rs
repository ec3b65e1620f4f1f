//! Real kubectl: every served kind in table form, `get -w`, `describe pod` with events, graceful
//! deletion of a bound pod, `get events --sort-by`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KINDS: &str = r#"
apiVersion: v1
kind: Endpoints
metadata: {name: web}
subsets:
- addresses: [{ip: 10.0.0.5}]
  ports: [{port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 8080}]
endpoints:
- addresses: [10.0.0.5]
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status:
  conditions: [{type: Ready, status: "True"}]
  nodeInfo: {kubeletVersion: v1.32.0, machineID: "", systemUUID: "", bootID: "", kernelVersion: "", osImage: "", containerRuntimeVersion: "", kubeProxyVersion: "", operatingSystem: linux, architecture: amd64}
---
apiVersion: v1
kind: Pod
metadata: {name: bound}
spec:
  nodeName: node-1
  terminationGracePeriodSeconds: 30
  containers: [{name: app, image: busybox, command: [sleep, '3600']}]
"#;

const EVENTS: &str = r#"
apiVersion: v1
kind: Event
metadata: {name: bound.1}
involvedObject: {kind: Pod, name: bound, namespace: default, uid: UID}
reason: Scheduled
message: assigned to node-1
type: Normal
lastTimestamp: "2024-01-01T00:00:00Z"
---
apiVersion: v1
kind: Event
metadata: {name: bound.2}
involvedObject: {kind: Pod, name: bound, namespace: default, uid: UID}
reason: Started
message: Started container app
type: Normal
lastTimestamp: "2024-01-01T00:01:00Z"
"#;

#[test]
fn every_kind_describe_events_and_graceful_delete() {
    need_kubectl!();
    let s = common::start();
    s.ok_stdin(&["create", "-f", "-"], KINDS);
    let uid = s.ok(&["get", "pod", "bound", "-o", "jsonpath={.metadata.uid}"]);
    s.ok_stdin(&["create", "-f", "-"], &EVENTS.replace("UID", uid.trim()));
    let ep = s.ok(&["get", "ep", "web"]);
    assert!(ep.contains("ENDPOINTS") && ep.contains("10.0.0.5:8080"), "{ep}");
    let slices = s.ok(&["get", "endpointslices"]);
    assert!(
        slices.contains("ADDRESSTYPE") && slices.contains("IPv4") && slices.contains("8080"),
        "{slices}"
    );
    let nodes = s.ok(&["get", "no"]);
    assert!(
        nodes.contains("node-1") && nodes.contains("Ready") && nodes.contains("v1.32.0"),
        "{nodes}"
    );
    let events = s.ok(&["get", "events", "--sort-by=.lastTimestamp"]);
    let (sched, started) = (events.find("Scheduled").unwrap(), events.find("Started").unwrap());
    assert!(sched < started, "{events}");
    assert!(events.contains("pod/bound"), "{events}");
    let ev = s.ok(&["get", "ev", "--field-selector", "reason=Started"]);
    assert!(ev.contains("Started") && !ev.contains("Scheduled"), "{ev}");

    let describe = s.ok(&["describe", "pod", "bound"]);
    assert!(
        describe.contains("Events:") && describe.contains("Started container app"),
        "{describe}"
    );

    // Bound pod: graceful deletion leaves it with a deletionTimestamp.
    let out = s.ok(&["delete", "pod", "bound", "--wait=false"]);
    assert!(out.contains("pod \"bound\" deleted"), "{out}");
    let yaml = s.ok(&["get", "pod", "bound", "-o", "yaml"]);
    assert!(
        yaml.contains("deletionTimestamp") && yaml.contains("deletionGracePeriodSeconds: 30"),
        "{yaml}"
    );
    assert!(s.ok(&["get", "pods"]).contains("Terminating"));
    // --grace-period=0 --force removes it at once.
    s.ok(&["delete", "pod", "bound", "--grace-period=0", "--force"]);
    assert!(s.fails(&["get", "pod", "bound"], None).contains("not found"));
}

#[test]
fn get_watch_shows_new_objects() {
    need_kubectl!();
    let s = common::start();
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers: [{{name: app, image: busybox, command: [sleep, '1']}}]\n"
        )
    };
    s.ok_stdin(&["create", "-f", "-"], &pod("listed"));
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", s.dir.path())
        .args(["get", "pods", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |name: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                let done = line.starts_with(&format!("{name} "));
                seen.push(line);
                if done {
                    return true;
                }
            }
        }
        false
    };
    // The list shows `listed`; the watch starts from the list's resourceVersion, so `watched`,
    // created only after the list was printed, can come only from the watch.
    let listed = wait_for("listed");
    s.ok_stdin(&["create", "-f", "-"], &pod("watched"));
    let watched = listed && wait_for("watched");
    let _ = child.kill();
    let _ = child.wait();
    assert!(listed && watched, "watch output: {seen:?}");
}
