//! The whole node, driven by the real `kubectl` through its API: pods applied, running, ready,
//! described, deleted, and kept across a node restart with restart counts continuing.
//!
//! Skipped (with a message) when `kubectl` is not installed; `.ci/run` installs it.

mod support;

use std::time::Duration;

use support::{RunningNode, require_kubectl};

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: host
    command: [sh, -c, 'echo started; touch $(MARK); exec sleep 3600']
    env:
    - name: MARK
      value: MARK_PATH
    readinessProbe:
      exec: {command: [test, -e, $(MARK)]}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: crasher
spec:
  containers:
  - name: app
    image: host
    command: [sh, -c, 'echo crashing now; exit 3']
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_runs_pods_on_the_node_and_the_node_keeps_them_across_a_restart() {
    require_kubectl();
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.97.{}.0/24", std::process::id() % 250);
    let node = RunningNode::start(data.path(), &cidr, "e2e").await;
    let manifest = data.path().join("pods.yaml");
    let mark = data.path().join("ready-mark");
    std::fs::write(&manifest, POD.replace("MARK_PATH", mark.to_str().unwrap())).unwrap();

    let applied = node.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    assert!(
        applied.contains("pod/web created") && applied.contains("pod/crasher created"),
        "{applied}"
    );
    node.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=60s"]);
    let table = node.ok(&["get", "pods", "-o", "wide"]);
    let web = table
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_default()
        .to_owned();
    let cells: Vec<&str> = web.split_whitespace().collect();
    assert_eq!(&cells[1..3], ["1/1", "Running"], "{table}");
    assert_eq!(cells[6], "e2e-node", "bound to the node: {table}");
    // A Service selecting the pod gets its IP as an endpoint (readiness decides).
    node.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let pod_ip = node.ok(&["get", "pod", "web", "-o", "jsonpath={.status.podIP}"]);
    let endpoints = node
        .until(&["get", "endpoints", "web"], 30, |t| {
            t.contains(&format!("{}:8080", pod_ip.trim()))
        })
        .await;
    assert!(endpoints.starts_with("NAME"), "{endpoints}");
    // ConfigMaps and Secrets through kubectl's generators (protobuf bodies); values stay out of
    // describe.
    node.ok(&[
        "create",
        "configmap",
        "app-config",
        "--from-literal=mode=fast",
        "--from-literal=level=3",
    ]);
    let cms = node.ok(&["get", "configmaps", "app-config"]);
    assert!(
        cms.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("2")),
        "{cms}"
    );
    node.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=hunter2",
    ]);
    let encoded = node.ok(&["get", "secret", "creds", "-o", "jsonpath={.data.password}"]);
    assert_eq!(encoded.trim(), "aHVudGVyMg==");
    let described = node.ok(&["describe", "secret", "creds"]);
    assert!(
        !described.contains("hunter2") && described.contains("password:  7 bytes"),
        "{described}"
    );
    let (ok, bad) = node.kubectl(&["create", "configmap", "bad", "--from-literal=bad key=x"]);
    assert!(
        !ok && bad.contains("a valid config key must consist of alphanumeric characters"),
        "{bad}"
    );
    // The crasher restarts and backs off; RESTARTS counts up.
    node.until(&["get", "pod", "crasher"], 60, |t| t.contains("CrashLoopBackOff"))
        .await;
    let described = node.ok(&["describe", "pod", "crasher"]);
    assert!(
        described.contains("Back-off restarting failed container app"),
        "{described}"
    );
    assert!(node.ok(&["get", "nodes"]).contains("Ready"));

    // Logs: current and previous instance, tail, timestamps, container, follow.
    assert_eq!(node.ok(&["logs", "web"]), "started\n");
    assert_eq!(node.ok(&["logs", "web", "-c", "app", "--tail=1"]), "started\n");
    let stamped = node.ok(&["logs", "web", "--timestamps"]);
    assert!(
        stamped.starts_with("20") && stamped.trim_end().ends_with("Z started"),
        "{stamped}"
    );
    assert_eq!(node.ok(&["logs", "crasher", "--previous"]), "crashing now\n");
    // --since / --since-time keep the lines written since then (the CRI timestamps).
    assert_eq!(node.ok(&["logs", "web", "--since=1h"]), "started\n");
    assert_eq!(node.ok(&["logs", "web", "--since-time=2099-01-01T00:00:00Z"]), "");
    let (ok, text) = node.kubectl(&["logs", "web", "-c", "nope"]);
    assert!(
        !ok && text.contains("container nope is not valid for pod web"),
        "{text}"
    );
    // `logs -f` streaming lines written after it started: node_streams.rs.

    // A restart of the node: the pods come back, restart counts continue.
    let before: i64 = node
        .ok(&[
            "get",
            "pod",
            "crasher",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ])
        .trim()
        .parse()
        .unwrap();
    node.stop().await;
    let node = RunningNode::start(data.path(), &cidr, "e2e").await;
    // The web container runs again: its instance from before the restart counts as a restart
    // (rule 11.9), and it is ready again.
    let jsonpath =
        "jsonpath={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready}";
    node.until(&["get", "pod", "web", "-o", jsonpath], 60, |t| {
        t.trim() == "1 true"
    })
    .await;
    let restarts = |t: &str| t.trim().parse::<i64>().unwrap_or(-1);
    node.until(
        &[
            "get",
            "pod",
            "crasher",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ],
        60,
        |t| restarts(t) > before,
    )
    .await;

    // Deletion is graceful and the object goes once the pod has stopped.
    let pod_dir = |pod: &str| {
        let uid = node.ok(&["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"]);
        data.path()
            .join("node/pods")
            .join(format!("default_{pod}_{}", uid.trim()))
    };
    let (web_dir, crasher_dir) = (pod_dir("web"), pod_dir("crasher"));
    assert!(web_dir.join("app").exists() && crasher_dir.join("app").exists());
    node.ok(&["delete", "pod", "web", "--timeout=60s"]);
    let (_, gone) = node.kubectl(&["get", "pod", "web"]);
    assert!(gone.contains("NotFound"), "{gone}");
    node.ok(&["delete", "pod", "crasher", "--grace-period=0", "--force"]);
    // Their logs go with them.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while web_dir.exists() || crasher_dir.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "logs of deleted pods are kept: {} {}",
            web_dir.exists(),
            crasher_dir.exists()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A pod deleted while the node is down: its files go when the node starts again.
    node.ok(&[
        "run",
        "brief",
        "--image=host",
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "echo bye",
    ]);
    node.until(&["get", "pod", "brief"], 60, |t| t.contains("Completed"))
        .await;
    let brief_dir = pod_dir("brief");
    assert!(brief_dir.join("brief").exists());
    node.stop().await;
    {
        use podvisor_store::Store;
        // As the node does at start: wait (bounded) while a child forked before the stop still
        // holds the file's lock.
        let path = data.path().join("node/store.redb");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let store = loop {
            match podvisor_store::RedbStore::open(&path) {
                Err(e) if e.is_locked() && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other.unwrap(),
            }
        };
        let key = podvisor_store::ObjectKey::new("pods", "default", "brief");
        store.delete(&key, Default::default()).await.unwrap();
    }
    let node = RunningNode::start(data.path(), &cidr, "e2e").await;
    assert!(
        !brief_dir.exists(),
        "the files of a pod deleted while the node was down are kept"
    );
    node.stop().await;
}
