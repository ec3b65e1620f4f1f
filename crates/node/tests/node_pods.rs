//! Whole pods on the real parts: process runtime, probe handlers, pod workers. Real processes,
//! real sockets, and (as root) real pod sandboxes. Bounds are generous: these must not flake on
//! a loaded 2-core machine.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use podvisor_core::corev1::Pod;
use podvisor_kubelet::{Clock, PodSupervisor, PodView, SupervisorConfig};
use podvisor_probe::ProbeSet;
use podvisor_runtime::{ProcessRuntime, RuntimeConfig};
use podvisor_test_support::fakes::RecordingSink;
use serde_json::json;
use support::is_root;

static NEXT: AtomicU16 = AtomicU16::new(0);

struct Harness {
    supervisor: PodSupervisor,
    sink: RecordingSink,
    _data: tempfile::TempDir,
    _bridge: BridgeGuard,
}

/// Removes the test's cgroups and bridge when the test ends.
struct BridgeGuard(String, ProcessRuntime);

async fn harness() -> Harness {
    let n = NEXT.fetch_add(1, Ordering::SeqCst) + u16::try_from(std::process::id() % 100).unwrap_or(0) * 3;
    let data = tempfile::tempdir().unwrap();
    let bridge = format!("pvn{}", n % 1000);
    let runtime = ProcessRuntime::new(RuntimeConfig {
        data_dir: data.path().to_owned(),
        pod_cidr: format!("10.{}.{}.0/24", 90 + (n / 250) % 10, n % 250),
        bridge_name: bridge.clone(),
        cgroup_parent: format!("podvisor-node-test-{n}-{}", std::process::id()),
        force_host_network: !is_root(),
        cleanup_on_start: false,
        ..RuntimeConfig::default()
    })
    .await
    .expect("runtime");
    let guard = BridgeGuard(bridge, runtime.clone());
    let runtime = Arc::new(runtime);
    let probes = Arc::new(ProbeSet::new(runtime.clone()));
    let sink = RecordingSink::default();
    let supervisor = PodSupervisor::new(
        runtime,
        probes.clone(),
        probes,
        Arc::new(sink.clone()),
        SupervisorConfig {
            node_name: "test-node".into(),
            host_ip: None,
            clock: Clock::system(),
        },
    );
    Harness {
        supervisor,
        sink,
        _data: data,
        _bridge: guard,
    }
}

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        self.1.remove_cgroup_parent();
        let name = self.0.clone();
        // Drop cannot await: remove the link from a thread with its own small runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(podvisor_runtime::delete_link(&name)).ok()
        })
        .join();
    }
}

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    let uid = format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    serde_json::from_value(
        json!({"metadata": {"name": name, "namespace": "default", "uid": uid}, "spec": spec}),
    )
    .unwrap()
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap()
}

/// Waits until `check` holds for the pod's view, at most `secs` seconds.
async fn wait_for(
    h: &Harness,
    uid: &str,
    secs: u64,
    what: &str,
    check: impl Fn(&PodView) -> bool,
) -> PodView {
    let mut rx = h.supervisor.watch(uid).expect("pod known");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let view = rx.borrow_and_update().clone();
        if check(&view) {
            return view;
        }
        if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
            panic!(
                "timed out waiting for {what}; last status: {:#?}; events: {:#?}",
                view.pod.status,
                h.sink.event_lines()
            );
        }
    }
}

fn restarts(view: &PodView, container: &str) -> i32 {
    let st = view.pod.status.clone().unwrap_or_default();
    st.container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .find(|c| c.name == container)
        .map_or(0, |c| c.restart_count)
}

fn ready(view: &PodView) -> bool {
    view.pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn phase(view: &PodView) -> String {
    view.pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_restarts_a_container_whose_port_closed() {
    let mut h = harness().await;
    let port = free_port();
    let script = format!(
        "import socket, time\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('0.0.0.0', {port}))\ns.listen(16)\nprint('listening', flush=True)\ntime.sleep(3)\n\
         s.close()\nprint('port closed', flush=True)\ntime.sleep(600)\n"
    );
    let p = pod(
        "liveness",
        json!({"terminationGracePeriodSeconds": 2, "containers": [{
            "name": "web", "image": "host", "command": ["python3", "-c", script],
            "livenessProbe": {"tcpSocket": {"port": port}, "initialDelaySeconds": 1, "periodSeconds": 1, "failureThreshold": 2}
        }]}),
    );
    let id = uid(&p);
    h.supervisor.apply(p);
    wait_for(&h, &id, 30, "the container to run", |v| phase(v) == "Running").await;
    let view = wait_for(&h, &id, 40, "a liveness restart", |v| restarts(v, "web") >= 1).await;
    assert_eq!(phase(&view), "Running");
    let events = h.sink.event_lines();
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Unhealthy: Liveness probe failed")),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e == "Killing: Container web failed liveness probe, will be restarted"),
        "{events:#?}"
    );
    assert!(h.supervisor.shutdown(Duration::from_secs(30)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_a_file_without_restarts() {
    let mut h = harness().await;
    let flag = format!(
        "/tmp/podvisor-node-test-ready-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let _ = std::fs::remove_file(&flag);
    let p = pod(
        "readiness",
        json!({"terminationGracePeriodSeconds": 2, "containers": [{
            "name": "app", "image": "host", "command": ["sleep", "600"],
            "readinessProbe": {"exec": {"command": ["test", "-e", flag]}, "periodSeconds": 1, "failureThreshold": 1}
        }]}),
    );
    let id = uid(&p);
    h.supervisor.apply(p);
    let view = wait_for(&h, &id, 30, "the container to run", |v| phase(v) == "Running").await;
    assert!(!ready(&view), "not ready before the file exists");
    std::fs::write(&flag, "").unwrap();
    wait_for(&h, &id, 30, "ready", ready).await;
    std::fs::remove_file(&flag).unwrap();
    let view = wait_for(&h, &id, 30, "not ready again", |v| !ready(v)).await;
    assert_eq!(restarts(&view, "app"), 0, "readiness never restarts");
    assert!(h.supervisor.shutdown(Duration::from_secs(30)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_and_a_failure_fails_a_never_pod() {
    let mut h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("first-ran");
    let marker = marker.to_str().unwrap();
    let ok = pod(
        "init-order",
        json!({"restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
        "initContainers": [
            {"name": "first", "image": "host", "command": ["sh", "-c", format!("sleep 1; touch {marker}")]},
            {"name": "second", "image": "host", "command": ["test", "-e", marker]}],
        "containers": [{"name": "app", "image": "host", "command": ["test", "-e", marker]}]}),
    );
    let id = uid(&ok);
    h.supervisor.apply(ok);
    let view = wait_for(&h, &id, 30, "the pod to succeed", |v| v.finished).await;
    assert_eq!(phase(&view), "Succeeded", "{:#?}", view.pod.status);

    let failing = pod(
        "init-fails",
        json!({"restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
        "initContainers": [{"name": "check", "image": "host", "command": ["sh", "-c", "echo precondition missing; exit 3"]}],
        "containers": [{"name": "app", "image": "host", "command": ["sleep", "600"]}]}),
    );
    let id = uid(&failing);
    h.supervisor.apply(failing);
    let view = wait_for(&h, &id, 30, "the pod to fail", |v| v.finished).await;
    assert_eq!(phase(&view), "Failed");
    let st = view.pod.status.unwrap();
    let init = &st.init_container_statuses.unwrap()[0];
    assert_eq!(
        init.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        3
    );
    let app = &st.container_statuses.unwrap()[0];
    assert!(app.container_id.is_none(), "the app never started");
    assert!(h.supervisor.shutdown(Duration::from_secs(30)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_init_container_is_retried_under_on_failure() {
    let mut h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("tries");
    let counter = counter.to_str().unwrap();
    // Fails on the first try, succeeds on the second.
    let p = pod(
        "init-retry",
        json!({"restartPolicy": "OnFailure", "terminationGracePeriodSeconds": 2,
        "initContainers": [{"name": "flaky", "image": "host",
            "command": ["sh", "-c", format!("if [ -e {counter} ]; then exit 0; else touch {counter}; exit 1; fi")]}],
        "containers": [{"name": "app", "image": "host", "command": ["sleep", "600"]}]}),
    );
    let id = uid(&p);
    h.supervisor.apply(p);
    let view = wait_for(&h, &id, 30, "the app to run", |v| phase(v) == "Running").await;
    assert_eq!(restarts(&view, "flaky"), 1);
    assert!(h.supervisor.shutdown(Duration::from_secs(30)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_waits_the_grace_period_then_kills_a_process_ignoring_sigterm() {
    let mut h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let trapped = dir.path().join("trapped");
    let trapped = trapped.to_str().unwrap();
    // Ready only once the TERM trap is in place, so the signal cannot arrive before it.
    let script = format!(
        "trap 'echo ignoring TERM' TERM; (trap '' TERM; sleep 600) & touch {trapped}; while true; do sleep 1; done"
    );
    let p = pod(
        "stubborn",
        json!({"terminationGracePeriodSeconds": 2, "containers": [{
            "name": "app", "image": "host", "command": ["sh", "-c", script],
            "readinessProbe": {"exec": {"command": ["test", "-e", trapped]}, "periodSeconds": 1}
        }]}),
    );
    let id = uid(&p);
    h.supervisor.apply(p);
    wait_for(&h, &id, 30, "the trap to be set", ready).await;
    let started = std::time::Instant::now();
    h.supervisor.delete(&id, None);
    let view = wait_for(&h, &id, 30, "termination", |v| v.finished).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "the grace period was honoured ({took:?})"
    );
    let st = view.pod.status.unwrap();
    let term = st.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(term.exit_code, 137, "SIGKILL after the grace period");
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    assert!(h.supervisor.shutdown(Duration::from_secs(30)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn a_pod_sandbox_gives_the_pod_its_own_ip_as_root() {
    assert!(
        is_root(),
        "needs root: run `cargo xtask test` (or `cargo test -- --ignored`) as root"
    );
    let mut h = harness().await;
    let p = pod(
        "sandboxed",
        json!({"terminationGracePeriodSeconds": 2, "containers": [{
            "name": "web", "image": "host", "command": ["python3", "-m", "http.server", "8099"],
            "ports": [{"name": "http", "containerPort": 8099}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}
        }]}),
    );
    let id = uid(&p);
    h.supervisor.apply(p);
    let view = wait_for(&h, &id, 30, "ready", ready).await;
    let ip = view.pod.status.unwrap().pod_ip.unwrap();
    assert!(ip.starts_with("10."), "a pod IP from the pod CIDR: {ip}");
    let mut conn =
        std::net::TcpStream::connect((ip.as_str(), 8099)).expect("the pod IP answers from the node");
    use std::io::{Read, Write};
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", 8099)).is_err(),
        "not on the node's own loopback"
    );
    assert!(h.supervisor.shutdown(Duration::from_secs(30)).await);
}
