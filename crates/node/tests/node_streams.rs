//! What a user drives through the API that no other test exercised: `kubectl logs -f` and
//! `kubectl get -w` seeing what happens after they started, and through the `kube` crate JSON
//! patch, `generateName`, deletecollection with a label selector, finalizers holding a deleted
//! object, and PUT to `pods/status`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use support::{RunningNode, require_kubectl};

/// A kubectl that keeps running (`-f`, `-w`), its stdout lines arriving on a channel.
struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Streaming {
    fn start(node: &RunningNode, args: &[&str]) -> Streaming {
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &node.kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Streaming { child, lines }
    }

    /// The first line (within `secs`) that `check` accepts; panics with what was seen.
    fn until(&self, secs: u64, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if check(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no matching line within {secs} s; saw {seen:?}");
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TICKER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: host
    command: [sh, -c, 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.2; done']
"#;

fn tick(line: &str) -> Option<u64> {
    line.strip_prefix("tick ")?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_follows_logs_and_watches_changes_made_after_it_started() {
    require_kubectl();
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.94.{}.0/24", std::process::id() % 250);
    let node = RunningNode::start(data.path(), &cidr, "stream").await;
    let manifest = data.path().join("ticker.yaml");
    std::fs::write(&manifest, TICKER).unwrap();
    node.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    node.ok(&["wait", "--for=condition=Ready", "pod/ticker", "--timeout=60s"]);

    // logs -f: lines written after kubectl started arrive while it runs. `--tail=1` makes the
    // first line the newest one written, so every later tick was written after kubectl started.
    node.until(&["logs", "ticker", "--tail=1"], 30, |t| {
        tick(t).is_some_and(|n| n >= 3)
    })
    .await;
    let before = tick(&node.ok(&["logs", "ticker", "--tail=1"])).unwrap();
    let follow = Streaming::start(&node, &["logs", "-f", "--tail=1", "ticker"]);
    let first = tick(&follow.until(30, |l| tick(l).is_some())).unwrap();
    assert!(
        first >= before,
        "--tail=1 starts at the newest line: {first} < {before}"
    );
    let written_later = follow.until(30, |l| tick(l).is_some_and(|n| n >= first + 5));
    let now_in_file = node.ok(&["logs", "ticker", "--tail=1"]);
    assert!(
        tick(&written_later) <= tick(&now_in_file),
        "followed {written_later:?}, the log ends at {now_in_file:?}"
    );
    drop(follow);

    // get -w: the list, then a change made after the list, from the watch.
    node.ok(&["create", "configmap", "early", "--from-literal=k=v"]);
    node.ok(&["label", "configmap", "early", "watch=me"]);
    let watch = Streaming::start(&node, &["get", "configmaps", "-l", "watch=me", "-w"]);
    watch.until(30, |l| l.starts_with("early "));
    node.ok(&["create", "configmap", "late", "--from-literal=k=v"]);
    node.ok(&["label", "configmap", "late", "watch=me"]);
    watch.until(30, |l| l.starts_with("late "));
    drop(watch);
    node.stop().await;
}

async fn client(node: &RunningNode) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(&node.kubeconfig).expect("kubeconfig readable");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn configmap(value: serde_json::Value) -> ConfigMap {
    serde_json::from_value(value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_patch_generate_name_deletecollection_finalizers_and_status() {
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.93.{}.0/24", std::process::id() % 250);
    let node = RunningNode::start(data.path(), &cidr, "paths").await;
    let client = client(&node).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let post = PostParams::default();

    // generateName: the server completes the name.
    let made = maps
        .create(
            &post,
            &configmap(serde_json::json!({
                "metadata": {"generateName": "gen-", "labels": {"batch": "one"}},
                "data": {"a": "1"}
            })),
        )
        .await
        .expect("create with generateName");
    let name = made.metadata.name.clone().unwrap();
    assert!(name.starts_with("gen-") && name.len() > 4, "{name}");

    // JSON patch (RFC 6902) over HTTP: test, add, remove.
    let json_patch = |ops: serde_json::Value| {
        http::Request::patch(format!("/api/v1/namespaces/default/configmaps/{name}"))
            .header("Content-Type", "application/json-patch+json")
            .body(serde_json::to_vec(&ops).unwrap())
            .unwrap()
    };
    let patched: ConfigMap = client
        .request(json_patch(serde_json::json!([
            {"op": "test", "path": "/data/a", "value": "1"},
            {"op": "add", "path": "/data/b", "value": "2"},
            {"op": "remove", "path": "/data/a"}
        ])))
        .await
        .expect("json patch");
    let data_after = patched.data.unwrap_or_default();
    assert_eq!(data_after.get("b").map(String::as_str), Some("2"));
    assert!(!data_after.contains_key("a"));
    let refused = client
        .request::<ConfigMap>(json_patch(serde_json::json!([
            {"op": "test", "path": "/data/b", "value": "not-2"}
        ])))
        .await;
    assert!(refused.is_err(), "a failing test op refuses the patch");
    assert_eq!(
        maps.get(&name)
            .await
            .unwrap()
            .data
            .unwrap_or_default()
            .get("b")
            .map(String::as_str),
        Some("2"),
        "a refused patch changes nothing"
    );

    // A finalizer holds a deleted object: it gets a deletionTimestamp and stays until the
    // finalizer is removed.
    maps.create(
        &post,
        &configmap(serde_json::json!({
            "metadata": {"name": "held", "finalizers": ["example.com/hold"], "labels": {"batch": "one"}}
        })),
    )
    .await
    .expect("create held");
    maps.delete("held", &DeleteParams::default())
        .await
        .expect("delete held");
    let held = maps.get("held").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    maps.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove the finalizer");
    let deadline = Instant::now() + Duration::from_secs(10);
    while maps.get_opt("held").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the object goes once its finalizer is removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // deletecollection with a label selector removes exactly the matching objects.
    maps.create(
        &post,
        &configmap(serde_json::json!({"metadata": {"name": "other", "labels": {"batch": "two"}}})),
    )
    .await
    .unwrap();
    maps.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("batch=one"),
    )
    .await
    .expect("deletecollection");
    let left: Vec<String> = maps
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|m| m.metadata.name)
        .filter(|n| n != "kube-root-ca.crt")
        .collect();
    assert_eq!(left, ["other"]);

    // PUT pods/status writes the status; a PUT of the pod itself leaves it alone. The pod is
    // bound to another node, so this node does not run it or write its status.
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "elsewhere"},
        "spec": {"nodeName": "another-node",
            "containers": [{"name": "app", "image": "host", "command": ["sleep", "600"]}]}
    }))
    .unwrap();
    pods.create(&post, &pod).await.expect("create pod");
    let mut current = pods.get("elsewhere").await.unwrap();
    let mut status = current.status.clone().unwrap_or_default();
    status.phase = Some("Running".into());
    status.message = Some("set through pods/status".into());
    current.status = Some(status);
    let written = pods
        .replace_status("elsewhere", &post, &current)
        .await
        .expect("PUT pods/status");
    assert_eq!(
        written.status.as_ref().and_then(|s| s.message.as_deref()),
        Some("set through pods/status")
    );
    let mut again = pods.get("elsewhere").await.unwrap();
    again.metadata.labels = Some([("touched".to_owned(), "yes".to_owned())].into());
    if let Some(status) = again.status.as_mut() {
        status.message = Some("not through pods/status".into());
    }
    let replaced = pods.replace("elsewhere", &post, &again).await.expect("PUT pod");
    assert_eq!(
        replaced.status.as_ref().and_then(|s| s.message.as_deref()),
        Some("set through pods/status"),
        "a PUT of the pod keeps the stored status"
    );
    assert_eq!(
        replaced
            .metadata
            .labels
            .unwrap_or_default()
            .get("touched")
            .map(String::as_str),
        Some("yes")
    );
    pods.delete("elsewhere", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    node.stop().await;
}
