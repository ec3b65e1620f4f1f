//! Pod workers against recording fakes, under paused tokio time: what the runtime is asked to
//! do, and when.

use std::sync::Arc;
use std::time::Duration;

use podvisor_core::corev1::Pod;
use podvisor_core::{ExitStatus, ProbeOutcome};
use podvisor_kubelet::{Clock, PodSupervisor, SupervisorConfig};
use podvisor_kubelet::{VolumeConfig, VolumeManager};
use podvisor_lifecycle::Time;
use podvisor_test_support::fakes::{
    FakeConfig, FakeHooks, FakeHost, FakeRuntime, RecordingSink, RuntimeCall, ScriptedProber, Survivor,
};
use serde_json::json;

struct Node {
    runtime: FakeRuntime,
    prober: ScriptedProber,
    hooks: FakeHooks,
    sink: RecordingSink,
    supervisor: PodSupervisor,
}

fn node_with(hooks: FakeHooks) -> Node {
    build_node(hooks, |s| s)
}

fn build_node(hooks: FakeHooks, customize: impl FnOnce(PodSupervisor) -> PodSupervisor) -> Node {
    build_node_at(Time::from_secs(1_700_000_000), hooks, customize)
}

/// A node whose clock reads `start` now.
fn build_node_at(
    start: Time,
    hooks: FakeHooks,
    customize: impl FnOnce(PodSupervisor) -> PodSupervisor,
) -> Node {
    let runtime = FakeRuntime::new();
    // The start times the runtime reports, by the node's clock.
    runtime
        .set_wall(std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(start.as_millis()).unwrap()));
    let prober = ScriptedProber::default();
    let sink = RecordingSink::default();
    let supervisor = PodSupervisor::new(
        Arc::new(runtime.clone()),
        Arc::new(prober.clone()),
        Arc::new(hooks.clone()),
        Arc::new(sink.clone()),
        SupervisorConfig {
            node_name: "node-1".into(),
            host_ip: Some("192.0.2.1".into()),
            clock: Clock::starting_at(start),
        },
    );
    let supervisor = customize(supervisor);
    Node {
        runtime,
        prober,
        hooks,
        sink,
        supervisor,
    }
}

fn node() -> Node {
    node_with(FakeHooks::default())
}

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "uid-1"}, "spec": spec}),
    )
    .unwrap()
}

fn container(name: &str) -> serde_json::Value {
    json!({"name": name, "image": "img", "command": ["run"]})
}

/// Lets every ready task run (paused time does not move).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

impl Node {
    /// The pods the runtime was asked to make a sandbox for, in order.
    fn sandboxes_made(&self) -> Vec<String> {
        self.runtime
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                RuntimeCall::CreateSandbox { pod } => Some(pod),
                _ => None,
            })
            .collect()
    }

    fn phase(&self) -> String {
        self.supervisor.pods()[0]
            .pod
            .status
            .clone()
            .unwrap_or_default()
            .phase
            .unwrap_or_default()
    }

    fn ready(&self) -> bool {
        let status = self.supervisor.pods()[0].pod.status.clone().unwrap_or_default();
        status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    }
}

#[tokio::test(start_paused = true)]
async fn a_pod_starts_and_reports_running() {
    let mut n = node();
    n.supervisor.apply(pod(json!({"containers": [container("app")]})));
    settle().await;
    let calls = n.runtime.calls();
    assert_eq!(calls[0], RuntimeCall::CreateSandbox { pod: "web".into() });
    assert!(
        matches!(&calls[1], RuntimeCall::Start { container, restart_count: 0, .. } if container == "app")
    );
    assert_eq!(n.phase(), "Running");
    let st = n.supervisor.pods()[0].pod.status.clone().unwrap();
    assert_eq!(st.pod_ip.as_deref(), Some("10.88.0.2"));
    assert_eq!(st.host_ip.as_deref(), Some("192.0.2.1"));
    assert_eq!(
        n.supervisor.pods()[0]
            .pod
            .spec
            .as_ref()
            .unwrap()
            .node_name
            .as_deref(),
        Some("node-1")
    );
    assert!(
        n.sink
            .event_lines()
            .contains(&"Started: Started container app".into())
    );
}

#[tokio::test(start_paused = true)]
async fn a_crash_is_noticed_at_once_and_restarts_follow_the_backoff() {
    let mut n = node();
    n.supervisor.apply(pod(json!({"containers": [container("app")]})));
    settle().await;
    let t0 = tokio::time::Instant::now();
    assert!(n.runtime.exit("app", ExitStatus::Exited(1)));
    settle().await;
    assert_eq!(n.runtime.starts("app").len(), 2, "first restart is immediate");
    tokio::time::sleep(Duration::from_secs(1)).await;
    n.runtime.exit("app", ExitStatus::Exited(1));
    settle().await;
    assert_eq!(n.runtime.starts("app").len(), 2, "in back-off");
    tokio::time::sleep(Duration::from_secs(10)).await;
    settle().await;
    let starts = n.runtime.starts("app");
    assert_eq!(starts.len(), 3);
    assert_eq!(
        starts[2] - t0,
        Duration::from_secs(11),
        "10 s after the second crash"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_liveness_probe_stops_and_restarts_the_container() {
    let mut n = node();
    let mut app = container("app");
    app["livenessProbe"] = json!({"exec": {"command": ["alive"]}, "periodSeconds": 5, "failureThreshold": 2});
    n.supervisor.apply(pod(
        json!({"containers": [app], "terminationGracePeriodSeconds": 7}),
    ));
    settle().await;
    n.prober.answer("alive", ProbeOutcome::Failure);
    tokio::time::sleep(Duration::from_secs(11)).await;
    settle().await;
    let stops: Vec<Duration> = n
        .runtime
        .calls()
        .iter()
        .filter_map(|c| match c {
            RuntimeCall::Stop { grace, .. } => Some(*grace),
            _ => None,
        })
        .collect();
    assert_eq!(stops, [Duration::from_secs(7)]);
    assert_eq!(n.runtime.starts("app").len(), 2);
    assert!(
        n.sink
            .event_lines()
            .contains(&"Unhealthy: Liveness probe failed: scripted Failure".into())
    );
    let diag = &n.supervisor.pods()[0].diagnostics["app"];
    assert_eq!(
        diag.probes[&podvisor_core::ProbeKind::Liveness].outcome,
        Some(ProbeOutcome::Failure)
    );
}

#[tokio::test(start_paused = true)]
async fn a_restarted_containers_probes_reach_its_new_instance() {
    let mut n = node();
    let mut app = container("app");
    app["livenessProbe"] = json!({"exec": {"command": ["alive"]}, "periodSeconds": 5, "failureThreshold": 1});
    n.supervisor.apply(pod(
        json!({"containers": [app], "terminationGracePeriodSeconds": 1}),
    ));
    settle().await;
    let first = n.runtime.running("app").expect("the first instance runs");
    n.prober.answer("alive", ProbeOutcome::Failure);
    tokio::time::sleep(Duration::from_secs(6)).await;
    settle().await;
    n.prober.answer("alive", ProbeOutcome::Success);
    // Stopped, then started again after the first back-off (10 s).
    tokio::time::sleep(Duration::from_secs(15)).await;
    settle().await;
    let second = n.runtime.running("app").expect("the second instance runs");
    assert_ne!(first, second);
    tokio::time::sleep(Duration::from_secs(11)).await;
    settle().await;
    let targets = n.prober.targets();
    assert!(targets.contains(&first), "{targets:?}");
    assert_eq!(
        targets.last(),
        Some(&second),
        "the last probes reach the new instance: {targets:?}"
    );
    let after = targets.iter().skip_while(|t| **t == first).collect::<Vec<_>>();
    assert!(
        after.len() >= 2 && after.iter().all(|t| **t == second),
        "once the new instance runs, no probe reaches the old one: {targets:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_follows_the_probe_without_restarts() {
    let mut n = node();
    let mut app = container("app");
    app["readinessProbe"] = json!({"exec": {"command": ["ready"]}, "periodSeconds": 1});
    n.supervisor.apply(pod(json!({"containers": [app]})));
    settle().await;
    assert!(n.ready(), "probed at once on start, succeeded");
    n.prober.answer("ready", ProbeOutcome::Failure);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    settle().await;
    assert!(!n.ready());
    n.prober.answer("ready", ProbeOutcome::Success);
    tokio::time::sleep(Duration::from_secs(1)).await;
    settle().await;
    assert!(n.ready());
    assert_eq!(n.runtime.starts("app").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn every_probe_result_reaches_the_pods_view_though_the_status_stays() {
    let mut n = node();
    let mut app = container("app");
    app["readinessProbe"] = json!({"exec": {"command": ["ready"]}, "periodSeconds": 1});
    n.supervisor.apply(pod(json!({"containers": [app]})));
    settle().await;
    assert!(n.ready());
    let last_probe = |n: &Node| {
        let view = &n.supervisor.pods()[0];
        view.diagnostics["app"].probes[&podvisor_core::ProbeKind::Readiness]
            .at
            .as_millis()
    };
    let first = last_probe(&n);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    settle().await;
    assert!(n.ready(), "still ready: the status did not change");
    let since = last_probe(&n) - first;
    assert!(
        since >= 2000,
        "the view shows a probe of 2-3 s later, not the first: {since} ms"
    );
}

#[tokio::test(start_paused = true)]
async fn deletion_runs_pre_stop_then_stops_with_the_remaining_grace_and_tears_down() {
    let hooks = FakeHooks {
        duration: Duration::from_secs(4),
        ..FakeHooks::default()
    };
    let mut n = node_with(hooks);
    let mut app = container("app");
    app["lifecycle"] = json!({"preStop": {"exec": {"command": ["drain"]}}});
    n.supervisor.apply(pod(
        json!({"containers": [app], "terminationGracePeriodSeconds": 10}),
    ));
    settle().await;
    n.supervisor.delete("uid-1", None);
    settle().await;
    assert_eq!(n.hooks.calls().len(), 1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    settle().await;
    let calls = n.runtime.calls();
    assert!(
        calls
            .iter()
            .any(|c| matches!(c, RuntimeCall::Stop { grace, .. } if *grace == Duration::from_secs(6))),
        "{calls:?}"
    );
    assert!(calls.contains(&RuntimeCall::RemoveSandbox {
        pod_uid: "uid-1".into()
    }));
    let view = &n.supervisor.pods()[0];
    assert!(view.finished);
    assert_eq!(
        view.pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Failed"),
        "143 on SIGTERM"
    );
}

#[tokio::test(start_paused = true)]
async fn a_process_ignoring_sigterm_is_killed_after_the_grace_period() {
    let mut n = node();
    n.runtime
        .honour_sigterm
        .store(false, std::sync::atomic::Ordering::SeqCst);
    n.supervisor.apply(pod(
        json!({"containers": [container("app")], "terminationGracePeriodSeconds": 3}),
    ));
    settle().await;
    n.supervisor.delete("uid-1", None);
    tokio::time::sleep(Duration::from_millis(2900)).await;
    settle().await;
    assert!(!n.supervisor.pods()[0].finished);
    tokio::time::sleep(Duration::from_millis(200)).await;
    settle().await;
    let view = &n.supervisor.pods()[0];
    assert!(view.finished);
    let cs = &view
        .pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        cs.state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code,
        137
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_terminates_every_pod() {
    let mut n = node();
    n.supervisor
        .apply(pod(json!({"containers": [container("a"), container("b")]})));
    let mut other = pod(json!({"containers": [container("c")]}));
    other.metadata.uid = Some("uid-2".into());
    other.metadata.name = Some("other".into());
    n.supervisor.apply(other);
    settle().await;
    let runtime = n.runtime.clone();
    assert!(n.supervisor.shutdown(Duration::from_secs(60)).await);
    let stops = runtime
        .calls()
        .iter()
        .filter(|c| matches!(c, RuntimeCall::Stop { .. }))
        .count();
    let removed = runtime
        .calls()
        .iter()
        .filter(|c| matches!(c, RuntimeCall::RemoveSandbox { .. }))
        .count();
    assert_eq!((stops, removed), (3, 2));
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_critical_pods_after_every_other_pod() {
    let mut n = node();
    let mut critical = pod(json!({
        "priorityClassName": "system-node-critical",
        "terminationGracePeriodSeconds": 5,
        "containers": [container("dns")],
    }));
    critical.metadata.uid = Some("uid-critical".into());
    critical.metadata.name = Some("critical".into());
    n.supervisor.apply(critical);
    n.supervisor.apply(pod(json!({
        "terminationGracePeriodSeconds": 5,
        "containers": [container("app")],
    })));
    settle().await;
    let runtime = n.runtime.clone();
    assert!(n.supervisor.shutdown(Duration::from_secs(60)).await);
    let stopped: Vec<String> = runtime
        .calls()
        .iter()
        .filter_map(|c| match c {
            RuntimeCall::Stop { id, .. } => Some(id.0.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(stopped.len(), 2, "{stopped:?}");
    assert!(
        stopped[0].contains("app") && stopped[1].contains("dns"),
        "the critical pod stops last: {stopped:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_start_error_is_reported_and_retried() {
    let mut n = node();
    n.runtime
        .fail_next_start("app", "exec: \"run\": executable file not found in $PATH");
    n.supervisor.apply(pod(json!({"containers": [container("app")]})));
    settle().await;
    assert!(
        n.sink
            .event_lines()
            .contains(&"Failed: Error: exec: \"run\": executable file not found in $PATH".into())
    );
    assert_eq!(n.runtime.starts("app").len(), 1, "the immediate retry succeeded");
    assert_eq!(n.phase(), "Running");
}

#[tokio::test(start_paused = true)]
async fn sandbox_loss_recreates_the_sandbox_and_restarts_the_containers() {
    let mut n = node();
    n.supervisor.apply(pod(
        json!({"initContainers": [container("init")], "containers": [container("app")]}),
    ));
    settle().await;
    n.runtime.exit("init", ExitStatus::Exited(0));
    settle().await;
    assert!(n.runtime.running("app").is_some());
    n.runtime.lose_sandboxes();
    settle().await;
    assert_eq!(n.sandboxes_made().len(), 2);
    assert_eq!(n.runtime.starts("init").len(), 2, "init runs again");
}

#[tokio::test(start_paused = true)]
async fn probe_results_and_runtime_operations_are_counted_in_the_metrics() {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    let metrics = podvisor_kubelet::KubeletMetrics::new();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let runtime = FakeRuntime::new();
    let prober = ScriptedProber::default();
    let mut supervisor = PodSupervisor::new(
        Arc::new(runtime.clone()),
        Arc::new(prober.clone()),
        Arc::new(FakeHooks::default()),
        Arc::new(RecordingSink::default()),
        SupervisorConfig {
            node_name: "node-1".into(),
            host_ip: Some("192.0.2.1".into()),
            clock: Clock::starting_at(Time::from_secs(1_700_000_000)),
        },
    )
    .with_metrics(metrics);
    let mut app = container("app");
    app["readinessProbe"] = json!({"exec": {"command": ["ready"]}, "periodSeconds": 1});
    supervisor.apply(pod(json!({"containers": [app]})));
    settle().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    settle().await;
    let probes = prober.calls().len();
    assert!(probes >= 3, "probed at start and every second: {probes}");

    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let counted = text
        .lines()
        .find(|l| {
            l.starts_with(r#"prober_probe_total{probe_type="Readiness",result="successful",container="app",pod="web",namespace="default",pod_uid="uid-1"}"#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<usize>().ok());
    assert_eq!(counted, Some(probes), "{text}");
    for name in [
        r#"prober_probe_duration_seconds_count{probe_type="Readiness",container="app",pod="web",namespace="default"}"#,
        r#"kubelet_runtime_operations_total{operation_type="run_podsandbox"} 1"#,
        r#"kubelet_runtime_operations_total{operation_type="start_container"} 1"#,
        r#"kubelet_started_containers_total{container_type="container"} 1"#,
        "kubelet_pod_start_duration_seconds_count 1",
    ] {
        assert!(text.contains(name), "missing {name}\n{text}");
    }
}

fn node_with_config(config: FakeConfig, volumes_root: Option<&std::path::Path>) -> Node {
    build_node(FakeHooks::default(), |supervisor| {
        let supervisor = supervisor.with_config_source(Arc::new(config));
        match volumes_root {
            Some(root) => {
                let manager = VolumeManager::new(VolumeConfig {
                    root: root.to_path_buf(),
                    isolation: true,
                    host: Arc::new(podvisor_test_support::fakes::FakeHost::default()),
                })
                .unwrap();
                supervisor.with_volumes(manager)
            }
            None => supervisor,
        }
    })
}

fn waiting_reason(n: &Node) -> Option<String> {
    let status = n.supervisor.pods()[0].pod.status.clone().unwrap_or_default();
    status.container_statuses.unwrap_or_default()[0]
        .state
        .clone()
        .and_then(|s| s.waiting)
        .and_then(|w| w.reason)
}

#[tokio::test(start_paused = true)]
async fn a_missing_secret_reference_waits_then_recovers_when_the_secret_appears() {
    let config = FakeConfig::default();
    let mut n = node_with_config(config.clone(), None);
    let mut app = container("app");
    app["env"] =
        json!([{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]);
    n.supervisor.apply(pod(json!({"containers": [app]})));
    settle().await;
    assert!(
        n.runtime.starts("app").is_empty(),
        "no process without its environment"
    );
    assert_eq!(waiting_reason(&n).as_deref(), Some("CreateContainerConfigError"));
    assert!(
        n.sink
            .event_lines()
            .contains(&"Failed: Error: secret \"db\" not found".into())
    );
    // "s3cr3t$(X)" in base64: the value reaches the process exactly, unexpanded.
    config.put_secret(
        json!({"metadata": {"name": "db", "namespace": "default"}, "data": {"password": "czNjcjN0JChYKQ=="}}),
    );
    n.supervisor.config_changed();
    settle().await;
    assert_eq!(n.runtime.starts("app").len(), 1, "tried again at once");
    let launch = n.runtime.last_launch("app").unwrap();
    let env = launch.container.env.unwrap();
    assert_eq!(env[0].name, "PASSWORD");
    assert_eq!(env[0].value.as_deref(), Some("s3cr3t$$(X)"));
    assert_eq!(n.phase(), "Running");
    assert!(
        !n.sink.event_lines().iter().any(|l| l.contains("s3cr3t")),
        "secret values never reach events"
    );
}

#[tokio::test(start_paused = true)]
async fn volumes_are_prepared_before_the_sandbox_and_mounted_per_container() {
    let tmp = tempfile::tempdir().unwrap();
    let config = FakeConfig::default();
    let mut n = node_with_config(config.clone(), Some(tmp.path()));
    let mut init = container("init");
    init["volumeMounts"] =
        json!([{"name": "work", "mountPath": "/work"}, {"name": "cfg", "mountPath": "/etc/app"}]);
    let mut app = container("app");
    app["volumeMounts"] = json!([{"name": "work", "mountPath": "/srv", "readOnly": true},
                                 {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"}]);
    n.supervisor.apply(pod(json!({
        "initContainers": [init], "containers": [app],
        "volumes": [{"name": "work", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "settings"}}]
    })));
    settle().await;
    assert!(
        n.runtime.calls().is_empty(),
        "no sandbox before the volumes are ready"
    );
    assert!(
        n.sink.event_lines().contains(
            &"FailedMount: MountVolume.SetUp failed for volume \"cfg\" : configmap \"settings\" not found"
                .into()
        ),
        "{:?}",
        n.sink.event_lines()
    );
    config.put_config_map(
        json!({"metadata": {"name": "settings", "namespace": "default"}, "data": {"app.conf": "v1"}}),
    );
    n.supervisor.config_changed();
    settle().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    settle().await;
    assert_eq!(n.runtime.starts("init").len(), 1);
    let mounts = n.runtime.last_launch("init").unwrap().mounts;
    let work = tmp.path().join("uid-1/empty-dir/work");
    let cfg = tmp.path().join("uid-1/configmap/cfg");
    assert_eq!(
        mounts
            .iter()
            .map(|m| (m.host_path.clone(), m.container_path.as_str(), m.read_only))
            .collect::<Vec<_>>(),
        vec![(work.clone(), "/work", false), (cfg.clone(), "/etc/app", true)]
    );
    assert_eq!(std::fs::read_to_string(cfg.join("app.conf")).unwrap(), "v1");
    n.runtime.exit("init", ExitStatus::Exited(0));
    settle().await;
    let mounts = n.runtime.last_launch("app").unwrap().mounts;
    assert_eq!(mounts[0].container_path, "/srv");
    assert!(mounts[0].read_only);
    assert_eq!(mounts[1].host_path, cfg.join("app.conf"));
    // An update reaches the volume; deleting the pod removes it.
    config.put_config_map(
        json!({"metadata": {"name": "settings", "namespace": "default"}, "data": {"app.conf": "v2"}}),
    );
    n.supervisor.config_changed();
    settle().await;
    assert_eq!(std::fs::read_to_string(cfg.join("app.conf")).unwrap(), "v2");
    n.supervisor.delete("uid-1", Some(0));
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        settle().await;
    }
    assert!(!tmp.path().join("uid-1").exists(), "volumes removed with the pod");
}

// ===== Issue #18: a restarted node adopts what outlived it =====

/// A wall-clock time `secs` after the Unix epoch.
fn wall(secs: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap())
}

/// The pod as node `n` last published it, and of its `name` container the instance (its ID
/// without the `podvisor://`), restart count and `startedAt` in seconds.
fn published(n: &Node, name: &str) -> (Pod, String, i32, i64) {
    let pod = n.supervisor.pods()[0].pod.clone();
    let status = pod.status.clone().unwrap();
    let cs = status
        .container_statuses
        .iter()
        .flatten()
        .find(|cs| cs.name == name)
        .unwrap()
        .clone();
    let id = cs
        .container_id
        .unwrap()
        .strip_prefix("podvisor://")
        .unwrap()
        .to_owned();
    let started = cs
        .state
        .unwrap()
        .running
        .unwrap()
        .started_at
        .unwrap()
        .0
        .as_second();
    (pod, id, cs.restart_count, started)
}

/// The node restarted: a new one whose clock reads `at` (seconds), with `survivors` of pod
/// `uid-1` and its sandbox left in its runtime.
fn restarted_node_at(at: i64, survivors: Vec<Survivor>) -> Node {
    let n = build_node_at(Time::from_secs(at), FakeHooks::default(), |s| s);
    n.runtime.leave("uid-1", Some("10.88.0.2"), survivors);
    n
}

fn status_of(n: &Node) -> podvisor_core::corev1::PodStatus {
    n.supervisor.pods()[0].pod.status.clone().unwrap_or_default()
}

fn creates_and_starts(n: &Node) -> Vec<RuntimeCall> {
    n.runtime
        .calls()
        .into_iter()
        .filter(|c| matches!(c, RuntimeCall::CreateSandbox { .. } | RuntimeCall::Start { .. }))
        .collect()
}

fn probed_app() -> serde_json::Value {
    let mut app = container("app");
    app["readinessProbe"] = json!({"exec": {"command": ["ready"]}, "periodSeconds": 5});
    app["livenessProbe"] =
        json!({"exec": {"command": ["alive"]}, "periodSeconds": 10, "failureThreshold": 1});
    app
}

#[tokio::test(start_paused = true)]
async fn an_adopted_running_pod_is_running_and_ready_without_a_start_or_a_restart() {
    let mut before = node();
    before
        .supervisor
        .apply(pod(json!({"containers": [probed_app()]})));
    settle().await;
    assert!(before.ready());
    let (saved, id, restarts, started) = published(&before, "app");
    let t0 = 1_700_000_000;
    let mut after = restarted_node_at(
        t0 + 60,
        vec![Survivor::running("app", &id, restarts, wall(started))],
    );
    after.supervisor.apply(saved);
    settle().await;
    assert_eq!(after.runtime.adopt_requests(), ["uid-1"]);
    assert_eq!(creates_and_starts(&after), [], "no sandbox, no start");
    assert_eq!(after.phase(), "Running");
    assert!(after.ready());
    let statuses = after.sink.statuses.lock().unwrap().clone();
    for published in &statuses {
        let conditions = published.status.as_ref().unwrap().conditions.clone().unwrap();
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True", "Ready never flapped");
    }
    let st = status_of(&after);
    assert_eq!(st.pod_ip.as_deref(), Some("10.88.0.2"));
    let cs = &st.container_statuses.unwrap()[0];
    assert_eq!(cs.container_id, Some(format!("podvisor://{id}")));
    assert_eq!(cs.restart_count, 0);
    let running = cs.state.clone().unwrap().running.unwrap();
    assert_eq!(running.started_at.unwrap().0.as_second(), started);
    assert!(
        !after
            .sink
            .event_lines()
            .iter()
            .any(|l| l.starts_with("Scheduled:")),
        "{:?}",
        after.sink.event_lines()
    );
    // Its probes run again at once (within a period), against the adopted instance.
    let probed: Vec<String> = after.prober.calls().into_iter().map(|(_, k)| k).collect();
    assert!(
        probed.contains(&"ready".into()) && probed.contains(&"alive".into()),
        "{probed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_adopted_instances_exit_restarts_it_per_policy() {
    let mut before = node();
    before
        .supervisor
        .apply(pod(json!({"containers": [container("app")]})));
    settle().await;
    let (saved, id, restarts, started) = published(&before, "app");
    let mut after = restarted_node_at(
        1_700_000_060,
        vec![Survivor::running("app", &id, restarts, wall(started))],
    );
    after.supervisor.apply(saved);
    settle().await;
    assert!(
        after.runtime.exit("app", ExitStatus::Exited(1)),
        "the adopted exit is watched"
    );
    settle().await;
    let starts: Vec<RuntimeCall> = creates_and_starts(&after);
    assert!(
        matches!(&starts[..], [RuntimeCall::Start { container, restart_count: 1, .. }] if container == "app"),
        "{starts:?}"
    );
    let cs = &status_of(&after).container_statuses.unwrap()[0];
    let last = cs.last_state.clone().unwrap().terminated.unwrap();
    assert_eq!(
        (last.exit_code, last.container_id),
        (1, Some(format!("podvisor://{id}")))
    );
    assert_eq!(after.phase(), "Running");
}

#[tokio::test(start_paused = true)]
async fn a_failing_liveness_probe_restarts_an_adopted_instance() {
    let mut before = node();
    before
        .supervisor
        .apply(pod(json!({"containers": [probed_app()]})));
    settle().await;
    let (saved, id, restarts, started) = published(&before, "app");
    let mut after = restarted_node_at(
        1_700_000_060,
        vec![Survivor::running("app", &id, restarts, wall(started))],
    );
    after.prober.answer("alive", ProbeOutcome::Failure);
    after.supervisor.apply(saved);
    settle().await;
    assert!(
        after
            .runtime
            .calls()
            .iter()
            .any(|c| matches!(c, RuntimeCall::Stop { id: stopped, .. } if stopped.0 == id)),
        "{:?}",
        after.runtime.calls()
    );
    settle().await;
    assert_eq!(after.runtime.starts("app").len(), 1);
    assert_eq!(status_of(&after).container_statuses.unwrap()[0].restart_count, 1);
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_ended_while_no_node_ran_is_reported_and_restarted_after_its_back_off() {
    let mut before = node();
    before
        .supervisor
        .apply(pod(json!({"containers": [container("app")]})));
    settle().await;
    // One restart already: the next one waits 10 s from the exit (rule 7.10).
    before.runtime.exit("app", ExitStatus::Exited(1));
    settle().await;
    let (saved, id, restarts, started) = published(&before, "app");
    assert_eq!(restarts, 1);
    let (at, finished) = (1_700_000_060, 1_700_000_055);
    let mut after = restarted_node_at(
        at,
        vec![Survivor::exited(
            "app",
            &id,
            restarts,
            wall(started),
            ExitStatus::Exited(3),
            wall(finished),
        )],
    );
    let t0 = tokio::time::Instant::now();
    after.supervisor.apply(saved);
    settle().await;
    assert_eq!(
        creates_and_starts(&after),
        [],
        "in back-off until 10 s after the exit"
    );
    let cs = &status_of(&after).container_statuses.unwrap()[0];
    assert_eq!(
        cs.state.clone().unwrap().waiting.unwrap().reason.as_deref(),
        Some("CrashLoopBackOff")
    );
    let t = cs.last_state.clone().unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    assert_eq!(
        t.finished_at.unwrap().0.as_second(),
        finished,
        "its real finish time"
    );
    assert_eq!(t.started_at.unwrap().0.as_second(), started);
    tokio::time::sleep(Duration::from_secs(6)).await;
    settle().await;
    let starts = after.runtime.timed_calls();
    let starts: Vec<_> = starts
        .iter()
        .filter_map(|(when, c)| match c {
            RuntimeCall::Start { restart_count, .. } => Some((*when - t0, *restart_count)),
            _ => None,
        })
        .collect();
    assert_eq!(starts, [(Duration::from_secs(5), 2)]);
    assert_eq!(status_of(&after).container_statuses.unwrap()[0].restart_count, 2);
}

#[tokio::test(start_paused = true)]
async fn an_adopted_pods_volumes_are_kept_refreshed_and_mounted_again_for_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let host = FakeHost::default();
    let config = FakeConfig::default();
    config.put_config_map(
        json!({"metadata": {"name": "settings", "namespace": "default"}, "data": {"app.conf": "v1"}}),
    );
    let with_volumes = |manager: VolumeManager| {
        let config = Arc::new(config.clone());
        move |s: PodSupervisor| s.with_config_source(config).with_volumes(manager)
    };
    let volume_config = || VolumeConfig {
        root: root.clone(),
        isolation: true,
        host: Arc::new(host.clone()),
    };
    let mut app = container("app");
    app["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/scratch"},
                                 {"name": "cfg", "mountPath": "/etc/app"}]);
    let spec = json!({
        "containers": [app],
        "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}},
                    {"name": "cfg", "configMap": {"name": "settings"}}]
    });
    // The previous run set the volumes up; its container wrote to the memory volume.
    let mut before = build_node(
        FakeHooks::default(),
        with_volumes(VolumeManager::new(volume_config()).unwrap()),
    );
    before.supervisor.apply(pod(spec));
    settle().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    settle().await;
    let scratch = root.join("uid-1/empty-dir/scratch");
    let cfg = root.join("uid-1/configmap/cfg");
    assert_eq!(host.mounted().keys().collect::<Vec<_>>(), [&scratch]);
    std::fs::write(scratch.join("state"), "kept").unwrap();
    let (saved, id, restarts, started) = published(&before, "app");
    let mounted = host.calls();
    // While no node ran, the ConfigMap changed.
    config.put_config_map(
        json!({"metadata": {"name": "settings", "namespace": "default"}, "data": {"app.conf": "v2"}}),
    );
    let keeping = VolumeManager::keeping(volume_config(), &["uid-1".to_owned()]).unwrap();
    let mut after = build_node_at(
        Time::from_secs(1_700_000_060),
        FakeHooks::default(),
        with_volumes(keeping),
    );
    after.runtime.leave(
        "uid-1",
        Some("10.88.0.2"),
        vec![Survivor::running("app", &id, restarts, wall(started))],
    );
    after.supervisor.apply(saved);
    settle().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    settle().await;
    assert_eq!(host.calls(), mounted, "no second tmpfs, nothing unmounted");
    assert_eq!(std::fs::read_to_string(scratch.join("state")).unwrap(), "kept");
    assert_eq!(
        std::fs::read_to_string(cfg.join("app.conf")).unwrap(),
        "v2",
        "brought up to date"
    );
    assert!(after.runtime.exit("app", ExitStatus::Exited(1)));
    settle().await;
    let mounts = after.runtime.last_launch("app").unwrap().mounts;
    assert_eq!(mounts[0].host_path, scratch);
    after.supervisor.delete("uid-1", Some(0));
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        settle().await;
    }
    assert!(after.supervisor.pods()[0].finished);
    assert!(host.mounted().is_empty(), "unmounted with the pod");
    assert!(!root.join("uid-1").exists(), "removed with the pod");
}

#[tokio::test(start_paused = true)]
async fn what_outlived_a_finished_pod_is_stopped_and_its_sandbox_removed() {
    let mut before = node();
    before.supervisor.apply(pod(
        json!({"containers": [container("app")], "restartPolicy": "Never"}),
    ));
    settle().await;
    let (_, _, _, started) = published(&before, "app");
    before.runtime.exit("app", ExitStatus::Exited(0));
    settle().await;
    assert_eq!(before.phase(), "Succeeded");
    let saved = before.supervisor.pods()[0].pod.clone();
    let mut after = restarted_node_at(
        1_700_000_060,
        vec![Survivor::running("app", "app-stray", 0, wall(started))],
    );
    after
        .runtime
        .honour_sigterm
        .store(true, std::sync::atomic::Ordering::SeqCst);
    after.supervisor.apply(saved.clone());
    settle().await;
    let calls = after.runtime.calls();
    assert!(
        calls.contains(&RuntimeCall::Stop {
            id: podvisor_core::ContainerId("app-stray".into()),
            grace: Duration::from_secs(30)
        }),
        "{calls:?}"
    );
    assert!(calls.contains(&RuntimeCall::RemoveSandbox {
        pod_uid: "uid-1".into()
    }));
    assert!(creates_and_starts(&after).is_empty());
    let view = &after.supervisor.pods()[0];
    assert!(view.finished);
    assert_eq!(view.pod.status, saved.status, "its status stays as it was");
}

#[tokio::test(start_paused = true)]
async fn an_adopted_host_network_pod_keeps_the_nodes_address() {
    let mut before = node();
    before.supervisor.apply(pod(
        json!({"containers": [container("app")], "hostNetwork": true}),
    ));
    settle().await;
    let (saved, id, restarts, started) = published(&before, "app");
    let mut after = build_node_at(Time::from_secs(1_700_000_060), FakeHooks::default(), |s| s);
    after.runtime.leave(
        "uid-1",
        None,
        vec![Survivor::running("app", &id, restarts, wall(started))],
    );
    after.supervisor.apply(saved);
    settle().await;
    assert_eq!(creates_and_starts(&after), []);
    assert_eq!(status_of(&after).pod_ip.as_deref(), Some("192.0.2.1"));
}

fn named_pod(name: &str, uid: &str) -> Pod {
    serde_json::from_value(
        json!({"metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {"containers": [container("app")]}}),
    )
    .unwrap()
}

/// `--max-pods`: a pod past the node's capacity is rejected as the kubelet rejects it (phase
/// Failed, reason OutOfpods, a Warning event) and never runs; a pod left running by the
/// previous node process is admitted whatever the count; a pod gone from the API frees its
/// place.
#[tokio::test(start_paused = true)]
async fn pods_past_max_pods_are_rejected_out_of_pods() {
    let mut n = build_node(FakeHooks::default(), |s| {
        s.with_max_pods(2, ["survivor".to_string()])
    });
    n.supervisor.apply(named_pod("a", "uid-a"));
    n.supervisor.apply(named_pod("b", "uid-b"));
    n.supervisor.apply(named_pod("c", "uid-c"));
    settle().await;
    let rejected = n
        .sink
        .statuses
        .lock()
        .unwrap()
        .iter()
        .rfind(|p| p.metadata.name.as_deref() == Some("c"))
        .cloned()
        .expect("a status for the rejected pod");
    let status = rejected.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.reason.as_deref(), Some("OutOfpods"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2")
    );
    assert!(
        n.sink
            .event_lines()
            .iter()
            .any(|e| e.starts_with("OutOfpods: Node didn't have enough resource: pods"))
    );
    assert_eq!(n.sandboxes_made(), ["a", "b"]);
    // A later change of the rejected pod does not run it either.
    n.supervisor.apply(named_pod("c", "uid-c"));
    // Left running by the previous node process: admitted.
    n.supervisor.apply(named_pod("survivor", "survivor"));
    settle().await;
    assert_eq!(n.sandboxes_made(), ["a", "b", "survivor"]);
    // Admitted pods count, the survivor too: full. Pods that left the node's pods (gone from
    // the API) free their places at once, while they are still being torn down.
    n.supervisor.delete("uid-a", Some(0));
    n.supervisor.delete("survivor", Some(0));
    n.supervisor.apply(named_pod("d", "uid-d"));
    settle().await;
    assert_eq!(n.sandboxes_made(), ["a", "b", "survivor", "d"]);
}
