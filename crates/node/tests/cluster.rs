//! The node's side of the API against a real API server (in-process, over its store): binding,
//! the pods of this node, status write-back, events, removal after deletion, and the Node
//! object.

use std::sync::Arc;
use std::time::Duration;

use podvisor_core::corev1::Pod;
use podvisor_kubelet::cluster::PodChange;
use podvisor_kubelet::cluster::node_status::{NodeFacts, heartbeat};
use podvisor_kubelet::cluster::pods::follow_pods;
use podvisor_kubelet::cluster::status::ApiSink;
use podvisor_kubelet::{Clock, PodSink, PodView};
use podvisor_lifecycle::{Event, EventType, Time};
use podvisor_store::{ListOptions, ObjectKey, Preconditions, RedbStore, Store};
use serde_json::json;
use tokio::sync::mpsc;

/// A store, and a client of an API server over it (objects written to the store are what the
/// API serves).
async fn store() -> (Arc<dyn Store>, kube::Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path().join("store.redb")).unwrap());
    let server = podvisor_apiserver::ApiServer::new(store.clone(), Default::default());
    server.bootstrap().await.unwrap();
    let client = kube::Client::new(server.handler(), "default");
    (store, client, dir)
}

fn pod_json(name: &str, node: Option<&str>) -> serde_json::Value {
    let mut spec = json!({"containers": [{"name": "app", "image": "x", "command": ["sleep", "1"]}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")}, "spec": spec})
}

async fn next(rx: &mut mpsc::UnboundedReceiver<PodChange>) -> PodChange {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a change in time")
        .expect("open")
}

#[tokio::test]
async fn unassigned_pods_are_bound_here_and_others_are_ignored() {
    let (store, client, _dir) = store().await;
    store
        .create(&ObjectKey::new("pods", "default", "mine"), pod_json("mine", None))
        .await
        .unwrap();
    store
        .create(
            &ObjectKey::new("pods", "default", "theirs"),
            pod_json("theirs", Some("other-node")),
        )
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(follow_pods(client.clone(), "node-1".into(), tx));
    // The only node, as its heartbeat registers it: the scheduler binds pending pods to it.
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
        "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}});
    store
        .create(&ObjectKey::new("nodes", "", "node-1"), node)
        .await
        .unwrap();
    let scheduler = tokio::spawn(podvisor_controllers::scheduler::run(client.clone()));
    let PodChange::Apply(pod) = next(&mut rx).await else {
        panic!("expected a pod")
    };
    assert_eq!(pod.metadata.name.as_deref(), Some("mine"));
    assert_eq!(
        pod.spec.unwrap().node_name.as_deref(),
        Some("node-1"),
        "bound to this node"
    );
    // A pod created later is bound too; a force-deleted one is reported gone.
    store
        .create(
            &ObjectKey::new("pods", "default", "later"),
            pod_json("later", None),
        )
        .await
        .unwrap();
    let PodChange::Apply(pod) = next(&mut rx).await else {
        panic!("expected a pod")
    };
    assert_eq!(pod.metadata.name.as_deref(), Some("later"));
    store
        .delete(
            &ObjectKey::new("pods", "default", "mine"),
            Preconditions::default(),
        )
        .await
        .unwrap();
    loop {
        match next(&mut rx).await {
            PodChange::Gone { uid } => {
                assert_eq!(uid, "uid-mine");
                break;
            }
            PodChange::Apply(_) => continue,
        }
    }
    task.abort();
    scheduler.abort();
}

#[tokio::test]
async fn finished_pods_are_not_run_again_and_deleted_ones_are_removed() {
    let (store, client, _dir) = store().await;
    let finished = |name: &str, deleted: bool| {
        let mut pod = pod_json(name, Some("node-1"));
        pod["status"] = json!({"phase": "Succeeded"});
        if deleted {
            pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        pod
    };
    for (name, deleted) in [("done", false), ("done-deleted", true)] {
        store
            .create(&ObjectKey::new("pods", "default", name), finished(name, deleted))
            .await
            .unwrap();
    }
    store
        .create(
            &ObjectKey::new("pods", "default", "live"),
            pod_json("live", Some("node-1")),
        )
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(follow_pods(client, "node-1".into(), tx));
    let PodChange::Apply(pod) = next(&mut rx).await else {
        panic!("expected a pod")
    };
    assert_eq!(
        pod.metadata.name.as_deref(),
        Some("live"),
        "only the running pod is run"
    );
    // A label on the finished pod does not hand it to a worker either.
    let key = ObjectKey::new("pods", "default", "done");
    let mut labelled = store.get(&key).await.unwrap().object;
    labelled["metadata"]["labels"] = json!({"checked": "yes"});
    store
        .update(&key, labelled, Preconditions::default())
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "a finished pod was handed to a worker"
    );
    assert!(store.get(&key).await.is_ok());
    let gone = store
        .get(&ObjectKey::new("pods", "default", "done-deleted"))
        .await;
    assert!(gone.is_err(), "a finished, deleted pod stays forever");
    task.abort();
}

#[tokio::test]
async fn status_and_events_are_written_and_a_deleted_pod_is_removed_once_stopped() {
    let (store, client, _dir) = store().await;
    let key = ObjectKey::new("pods", "default", "web");
    let mut object = pod_json("web", Some("node-1"));
    object["status"] = json!({"conditions": [{"type": "example.com/gate", "status": "True"}]});
    store.create(&key, object).await.unwrap();
    let (sink, writer) = ApiSink::new(client, "node-1".into());
    let writer = tokio::spawn(writer);
    let mut pod: Pod = serde_json::from_value(pod_json("web", Some("node-1"))).unwrap();
    pod.status = Some(
        serde_json::from_value(json!({"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}]}))
        .unwrap(),
    );
    let view = PodView {
        pod: pod.clone(),
        ..PodView::default()
    };
    sink.status(&view);
    let event = Event {
        type_: EventType::Warning,
        reason: "Unhealthy",
        message: "Readiness probe failed: x".into(),
        field_path: Some("spec.containers{app}".into()),
    };
    sink.event(&pod, &event, Time::from_secs(1_700_000_000));
    sink.event(&pod, &event, Time::from_secs(1_700_000_010));
    // The writer works in the background: wait (bounded) until the status and the repeat landed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status_written = store.get(&key).await.unwrap().object["status"]["phase"] == "Running";
        let events = store
            .list("events", Some("default"), ListOptions::default())
            .await
            .unwrap();
        let repeated = events.items.iter().any(|e| e.object["count"] == 2);
        if (status_written && repeated) || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stored = store.get(&key).await.unwrap().object;
    assert_eq!(stored["status"]["phase"], "Running");
    let types: Vec<&str> = stored["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["example.com/gate", "Ready"],
        "a gate set by others is kept"
    );
    let events = store
        .list("events", Some("default"), ListOptions::default())
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1, "repeats are aggregated");
    let e = &events.items[0].object;
    assert_eq!(
        (e["reason"].as_str(), e["count"].as_i64()),
        (Some("Unhealthy"), Some(2))
    );
    assert_eq!(e["involvedObject"]["fieldPath"], "spec.containers{app}");
    // Like every object, an event has a creation time (kubectl sorts events by it): the API
    // server's, as kube-apiserver sets it.
    let created = e["metadata"]["creationTimestamp"].as_str().unwrap_or_default();
    assert!(created.starts_with("20") && created.ends_with('Z'), "{created:?}");
    assert_eq!(e["firstTimestamp"], "2023-11-14T22:13:20Z");

    // Deleted and stopped: the object goes away.
    pod.metadata.deletion_timestamp = Some(Time::from_secs(1_700_000_020).to_k8s());
    sink.status(&PodView {
        pod,
        finished: true,
        ..PodView::default()
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.get(&key).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "the deleted pod stays");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(sink);
    writer.await.unwrap();
}

/// The Node object the heartbeat registers, once it exists.
async fn registered_node(
    store: &Arc<dyn Store>,
    client: kube::Client,
    data_dir: std::path::PathBuf,
) -> serde_json::Value {
    let facts = NodeFacts {
        name: "node-1".into(),
        address: Some("192.0.2.10".into()),
        pod_cidr: Some("10.88.0.0/16".into()),
        data_dir,
        labels: Default::default(),
        kubelet_port: None,
        max_pods: podvisor_kubelet::cluster::node_status::DEFAULT_MAX_PODS,
    };
    let task = tokio::spawn(heartbeat(
        client,
        facts,
        Clock::system(),
        Arc::new(podvisor_runtime::LinuxHost),
    ));
    let key = ObjectKey::new("nodes", "", "node-1");
    let mut node = None;
    for _ in 0..50 {
        if let Ok(found) = store.get(&key).await {
            node = Some(found.object);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    node.expect("node registered")
}

fn condition<'a>(node: &'a serde_json::Value, type_: &str) -> &'a serde_json::Value {
    node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

#[tokio::test]
async fn the_node_registers_itself_as_ready() {
    let (store, client, dir) = store().await;
    let node = registered_node(&store, client, dir.path().to_owned()).await;
    assert_eq!(condition(&node, "Ready")["status"], "True");
    // DiskPressure is the file system's truth (a full disk on the test machine shows), so the
    // expectation is what the data dir's file system measures now.
    let measured = podvisor_kubelet::cluster::health::conditions(
        &podvisor_kubelet::cluster::health::measure(&podvisor_runtime::LinuxHost, dir.path()),
    );
    let disk = measured.iter().find(|c| c.type_ == "DiskPressure").unwrap();
    assert_eq!(condition(&node, "DiskPressure")["reason"], disk.reason);
    assert_eq!(node["status"]["addresses"][0]["address"], "192.0.2.10");
    assert_eq!(node["status"]["capacity"]["pods"], "110");
}

/// Ready is measured: a node whose runtime cannot write its data dir is not ready.
#[tokio::test]
async fn a_node_that_cannot_write_its_data_dir_is_not_ready() {
    let (store, client, dir) = store().await;
    let node = registered_node(&store, client, dir.path().join("gone")).await;
    let ready = condition(&node, "Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("KubeletNotReady"))
    );
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("container runtime is down: cannot write the data dir"),
        "{message}"
    );
}

/// A late event of a pod whose worker finished and was forgotten (its status in the API still
/// says Running while the final one is being written) starts nothing: the pod is not taken
/// over as lost (which would show `ContainerStatusUnknown` and count a restart).
#[tokio::test]
async fn a_late_event_of_a_finished_pod_starts_no_new_worker() {
    use podvisor_core::ExitStatus;
    use podvisor_kubelet::sync_loop::{ApiSide, SyncLoop};
    use podvisor_kubelet::{PodSupervisor, SupervisorConfig};
    use podvisor_test_support::fakes::{FakeHooks, FakeRuntime, RecordingSink, ScriptedProber};

    let (_store, client, _dir) = store().await;
    let runtime = FakeRuntime::new();
    let recorded = RecordingSink::default();
    let supervisor = PodSupervisor::new(
        Arc::new(runtime.clone()),
        Arc::new(ScriptedProber::default()),
        Arc::new(FakeHooks::default()),
        Arc::new(recorded.clone()),
        SupervisorConfig {
            node_name: "node-1".into(),
            host_ip: None,
            clock: Clock::system(),
        },
    );
    let (changes_tx, changes) = mpsc::unbounded_channel();
    let (_config_tx, config_changes) = mpsc::unbounded_channel();
    let (sink, _writer) = ApiSink::new(client.clone(), "node-1".into());
    let output = Arc::new(podvisor_kubelet::output::NodeOutput::new(
        podvisor_kubelet::output::OutputMode::Quiet,
    ));
    let sync = SyncLoop {
        supervisor,
        runtime: Arc::new(runtime.clone()),
        output: output.clone(),
        sink: output,
        clock: Clock::system(),
        api: Some(ApiSide {
            client,
            changes,
            config_changes,
            sink: Arc::new(sink),
        }),
        static_pods: None,
        hook_warnings: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(sync.run(async move {
        let _ = stopped.await;
    }));
    let mut value = pod_json("brief", Some("node-1"));
    value["spec"]["restartPolicy"] = json!("Never");
    let pod: Pod = serde_json::from_value(value).unwrap();
    changes_tx.send(PodChange::Apply(Box::new(pod.clone()))).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while runtime.running("app").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the container never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let running = recorded.last().expect("a status");
    assert!(runtime.exit("app", ExitStatus::Exited(0)));
    // The worker finishes, and the loop forgets it at its next scan (every second).
    tokio::time::sleep(podvisor_kubelet::sync_loop::SCAN_PERIOD * 2).await;
    let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone());
    assert_eq!(
        recorded.last().as_ref().and_then(phase).as_deref(),
        Some("Succeeded")
    );
    // A late event carrying the earlier status.
    let mut late = pod.clone();
    late.status = running.status;
    changes_tx.send(PodChange::Apply(Box::new(late))).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let statuses = recorded.statuses.lock().unwrap().clone();
    let unknown = statuses.iter().any(|p| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .any(|c| {
                let terminated = c.state.as_ref().and_then(|s| s.terminated.as_ref());
                terminated.is_some_and(|t| t.reason.as_deref() == Some("ContainerStatusUnknown"))
            })
    });
    assert!(!unknown, "the finished pod was taken over as lost");
    assert_eq!(runtime.starts("app").len(), 1);
    assert_eq!(
        recorded.last().as_ref().and_then(phase).as_deref(),
        Some("Succeeded")
    );
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// The host as the node sees it, except that measuring disk usage blocks until `release` is
/// dropped (a stalled disk).
#[derive(Debug)]
struct StalledDisk {
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl podvisor_core::host::HostOps for StalledDisk {
    fn mount_tmpfs(&self, dir: &std::path::Path, size: Option<u64>) -> std::io::Result<()> {
        podvisor_runtime::LinuxHost.mount_tmpfs(dir, size)
    }
    fn unmount(&self, dir: &std::path::Path) -> std::io::Result<()> {
        podvisor_runtime::LinuxHost.unmount(dir)
    }
    fn is_mount_point(&self, dir: &std::path::Path) -> bool {
        podvisor_runtime::LinuxHost.is_mount_point(dir)
    }
    fn mount_points_under(&self, root: &std::path::Path) -> Vec<std::path::PathBuf> {
        podvisor_runtime::LinuxHost.mount_points_under(root)
    }
    fn fs_usage(&self, path: &std::path::Path) -> std::io::Result<podvisor_core::host::FsUsage> {
        // Returns once the test drops the sender (recv then fails).
        if let Ok(release) = self.release.lock() {
            let _ = release.recv();
        }
        podvisor_runtime::LinuxHost.fs_usage(path)
    }
    fn memory_available(&self) -> Option<u64> {
        podvisor_runtime::LinuxHost.memory_available()
    }
    fn pids(&self) -> Option<(u64, u64)> {
        podvisor_runtime::LinuxHost.pids()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_disk_does_not_stop_the_lease_renewal() {
    let (store, client, dir) = store().await;
    let (hold, release) = std::sync::mpsc::channel::<()>();
    let facts = NodeFacts {
        name: "node-1".into(),
        address: None,
        pod_cidr: Some("10.88.0.0/16".into()),
        data_dir: dir.path().to_owned(),
        labels: Default::default(),
        kubelet_port: None,
        max_pods: podvisor_kubelet::cluster::node_status::DEFAULT_MAX_PODS,
    };
    let host = Arc::new(StalledDisk {
        release: std::sync::Mutex::new(release),
    });
    let task = tokio::spawn(heartbeat(client, facts, Clock::system(), host));
    // The status cannot be measured, so the Node is not registered, but the Lease is renewed.
    let lease = ObjectKey::new("coordination.k8s.io/leases", "kube-node-lease", "node-1");
    let mut renewed = None;
    for _ in 0..100 {
        if let Ok(found) = store.get(&lease).await {
            renewed = Some(found.object);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let renewed = renewed.expect("the Lease is renewed while the disk stalls");
    assert_eq!(renewed["spec"]["holderIdentity"], "node-1");
    assert!(store.get(&ObjectKey::new("nodes", "", "node-1")).await.is_err());
    // The disk answers again: the Node is registered.
    drop(hold);
    let mut registered = false;
    for _ in 0..100 {
        if store.get(&ObjectKey::new("nodes", "", "node-1")).await.is_ok() {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    assert!(registered, "the Node is registered once the disk answers");
}
