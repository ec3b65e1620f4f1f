//! One test per numbered rule of `shared/docs/k8s-semantics.md` (sections 3 and 5-15), each
//! asserting on the commands the node receives and the status a user would see.

use std::time::Duration;

use podvisor_core::{ExitStatus, HookKind, HookResult, ProbeKind, ProbeOutcome, ProbeResult};
use podvisor_lifecycle::{Command, Input, PodMachine, Time};
use podvisor_test_support::{Auto, Sim, T0, c, pod};
use serde_json::json;

use ProbeKind::{Liveness, Readiness, Startup};
use ProbeOutcome::{Failure, Success};

fn with_probe(mut container: serde_json::Value, field: &str, probe: serde_json::Value) -> serde_json::Value {
    container[field] = probe;
    container
}

fn exec_probe(extra: serde_json::Value) -> serde_json::Value {
    let mut p = json!({"exec": {"command": ["check"]}});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn one(container: serde_json::Value) -> Sim {
    Sim::new(pod(json!({"spec": {"containers": [container]}})))
}

// ===== Section 3: probes =====

#[test]
fn rule_3_2_results_before_the_first_probe() {
    let app = with_probe(c("app"), "readinessProbe", exec_probe(json!({})));
    let app = with_probe(app, "livenessProbe", exec_probe(json!({})));
    let sim = one(app);
    // Readiness starts as Failure: running but not ready. Liveness starts as Success: no kill.
    assert_eq!(sim.state("app"), "running");
    assert!(!sim.cs("app").ready);
    assert_eq!(sim.cs("app").started, Some(true));
    assert_eq!(sim.kubectl_ready(), "0/1");
    assert_eq!(sim.starts_of("app").len(), 1);

    let app = with_probe(c("app"), "startupProbe", exec_probe(json!({})));
    let sim = one(app);
    // Startup starts as Unknown: not started.
    assert_eq!(sim.cs("app").started, Some(false));
}

#[test]
fn rule_3_4_first_probe_at_once_then_every_period() {
    let app = with_probe(c("app"), "livenessProbe", exec_probe(json!({"periodSeconds": 5})));
    let mut sim = one(app);
    // The worker's first attempt comes when the pod is added, before the container runs; the
    // ticker is anchored there, so the first real probe is one period later.
    assert!(!sim.has_probe("app", Liveness));
    sim.advance(4.9);
    assert!(!sim.has_probe("app", Liveness));
    sim.advance(0.1);
    assert!(sim.has_probe("app", Liveness), "one period after the anchor");
    sim.probe("app", Liveness, Success);
    sim.advance(5.0);
    assert!(sim.has_probe("app", Liveness));
    let probe_times: Vec<i64> = sim
        .log
        .iter()
        .filter(|(_, c)| matches!(c, Command::RunProbe { kind: Liveness, .. }))
        .map(|(t, _)| sim.secs(*t))
        .collect();
    assert_eq!(probe_times, [5, 10]);
}

/// Probe results and ticks that change nothing keep the status and its revision (the node
/// publishes nothing); a result that crosses a threshold changes both.
#[test]
fn the_status_revision_moves_with_the_status_only() {
    let app = with_probe(
        c("app"),
        "readinessProbe",
        exec_probe(json!({"periodSeconds": 1})),
    );
    let app = with_probe(app, "livenessProbe", exec_probe(json!({"periodSeconds": 1})));
    let mut sim = one(app);
    sim.probe("app", Readiness, Success);
    assert!(sim.cs("app").ready);
    let (revision, status) = (sim.m.status_revision(), sim.m.status().clone());
    for _ in 0..5 {
        sim.advance(1.0);
        sim.probe("app", Readiness, Success);
        sim.probe("app", Liveness, Success);
    }
    assert_eq!(sim.m.status(), &status, "nothing shown changed");
    assert_eq!(sim.m.status_revision(), revision);
    for _ in 0..3 {
        // failureThreshold 3: the third failure in a row makes the container unready.
        sim.advance(1.0);
        sim.probe("app", Readiness, Failure);
    }
    assert!(!sim.cs("app").ready);
    assert!(sim.m.status_revision() > revision);
}

#[test]
fn rule_3_5_8_initial_delay_skips_early_attempts() {
    let app = with_probe(
        c("app"),
        "readinessProbe",
        exec_probe(json!({"initialDelaySeconds": 15, "periodSeconds": 10})),
    );
    let mut sim = one(app);
    assert!(!sim.has_probe("app", Readiness));
    sim.advance(10.0);
    assert!(!sim.has_probe("app", Readiness), "10s < initialDelaySeconds");
    sim.advance(10.0);
    assert!(sim.has_probe("app", Readiness), "20s >= initialDelaySeconds");
    sim.probe("app", Readiness, Success);
    assert!(sim.cs("app").ready);
}

#[test]
fn rule_3_5_9_startup_probe_gates_liveness_and_readiness() {
    let app = with_probe(
        c("app"),
        "startupProbe",
        exec_probe(json!({"periodSeconds": 1, "failureThreshold": 30})),
    );
    let app = with_probe(app, "livenessProbe", exec_probe(json!({"periodSeconds": 1})));
    let app = with_probe(app, "readinessProbe", exec_probe(json!({"periodSeconds": 1})));
    let mut sim = one(app);
    sim.advance(1.0);
    assert!(sim.has_probe("app", Startup));
    sim.probe("app", Startup, Failure);
    sim.advance(3.0);
    assert!(!sim.has_probe("app", Liveness) && !sim.has_probe("app", Readiness));
    sim.probe("app", Startup, Success);
    assert_eq!(sim.cs("app").started, Some(true));
    assert!(
        sim.has_probe("app", Readiness),
        "readiness is triggered as soon as the container started"
    );
    sim.advance(1.0);
    assert!(sim.has_probe("app", Liveness));
    assert!(
        !sim.has_probe("app", Startup),
        "a started container's startup probe does nothing"
    );
}

#[test]
fn rule_3_9_probe_errors_are_discarded() {
    let app = with_probe(
        c("app"),
        "readinessProbe",
        exec_probe(json!({"periodSeconds": 1})),
    );
    let app = with_probe(
        app,
        "livenessProbe",
        exec_probe(json!({"periodSeconds": 1, "failureThreshold": 1})),
    );
    let mut sim = one(app);
    for _ in 0..5 {
        sim.probe_result("app", Readiness, ProbeResult::errored("port \"web\" not found"));
        sim.probe_result("app", Liveness, ProbeResult::errored("port \"web\" not found"));
        sim.advance(1.0);
    }
    assert!(
        !sim.cs("app").ready,
        "an erroring readiness probe never makes the container ready"
    );
    assert_eq!(
        sim.starts_of("app").len(),
        1,
        "an erroring liveness probe never kills"
    );
    assert!(sim.event_lines().contains(
        &"Unhealthy: Liveness probe errored and resulted in unknown state: port \"web\" not found".into()
    ));
}

#[test]
fn rule_3_5_12_thresholds_decide_when_a_result_counts() {
    let app = with_probe(
        c("app"),
        "readinessProbe",
        exec_probe(json!({"periodSeconds": 1, "successThreshold": 2, "failureThreshold": 3})),
    );
    let mut sim = one(app);
    sim.probe("app", Readiness, Success);
    assert!(!sim.cs("app").ready, "one success of two");
    sim.advance(1.0);
    sim.probe("app", Readiness, Success);
    assert!(sim.cs("app").ready, "two successes in a row");
    for n in 1..=3 {
        sim.advance(1.0);
        sim.probe("app", Readiness, Failure);
        assert_eq!(sim.cs("app").ready, n < 3, "after {n} failures");
    }
    assert_eq!(sim.starts_of("app").len(), 1, "readiness failures never restart");
    assert_eq!(sim.cond("Ready"), "False/ContainersNotReady");
}

#[test]
fn rule_3_5_13_liveness_failure_holds_probing_until_a_new_instance() {
    let app = with_probe(
        c("app"),
        "livenessProbe",
        exec_probe(json!({"periodSeconds": 1, "failureThreshold": 1})),
    );
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [app], "terminationGracePeriodSeconds": 5}})),
        Auto {
            stop: None,
            ..Auto::default()
        },
    );
    sim.advance(1.0);
    sim.probe("app", Liveness, Failure);
    assert_eq!(sim.stops.len(), 1, "killed after failureThreshold=1");
    sim.advance(3.0);
    assert!(
        !sim.has_probe("app", Liveness),
        "on hold while the old instance stops"
    );
    let (_, id, _) = sim.stops.remove(0);
    sim.running.remove("app");
    sim.input(Input::ContainerExited {
        name: "app".into(),
        id,
        status: ExitStatus::Signaled(15),
        message: None,
    });
    assert_eq!(sim.state("app"), "running");
    sim.advance(1.0);
    assert!(
        sim.has_probe("app", Liveness),
        "probing resumes for the new instance"
    );
}

#[test]
fn rule_3_7_warning_is_success_and_unknown_is_failure() {
    let app = with_probe(
        c("app"),
        "readinessProbe",
        exec_probe(json!({"periodSeconds": 1, "failureThreshold": 1})),
    );
    let mut sim = one(app);
    sim.probe_result(
        "app",
        Readiness,
        ProbeResult::new(ProbeOutcome::Warning, "Probe terminated redirects"),
    );
    assert!(sim.cs("app").ready);
    assert!(
        sim.event_lines()
            .contains(&"ProbeWarning: Readiness probe warning: Probe terminated redirects".into())
    );
    sim.advance(1.0);
    sim.probe_result(
        "app",
        Readiness,
        ProbeResult::new(ProbeOutcome::Unknown, "no answer"),
    );
    assert!(!sim.cs("app").ready);
    assert!(
        sim.event_lines()
            .contains(&"Unhealthy: Readiness probe failed: no answer".into())
    );
}

#[test]
fn rule_3_11_a_container_without_readiness_probe_is_ready_when_started() {
    let sim = one(c("app"));
    assert!(sim.cs("app").ready);
    assert_eq!(sim.cond("Ready"), "True");
    assert_eq!(sim.kubectl_ready(), "1/1");
    assert_eq!(sim.kubectl_status(), "Running");
}

#[test]
fn rule_3_15_readiness_goes_on_during_termination_liveness_stops() {
    let app = with_probe(
        c("app"),
        "readinessProbe",
        exec_probe(json!({"periodSeconds": 1})),
    );
    let app = with_probe(app, "livenessProbe", exec_probe(json!({"periodSeconds": 1})));
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [app]}})),
        Auto {
            stop: None,
            ..Auto::default()
        },
    );
    sim.probe("app", Readiness, Success);
    sim.probe("app", Liveness, Success);
    sim.delete(Some(30));
    assert!(
        sim.cs("app").ready,
        "a terminating pod stays ready until its probe fails"
    );
    sim.advance(1.0);
    assert!(sim.has_probe("app", Readiness));
    assert!(!sim.has_probe("app", Liveness));
    sim.probe("app", Readiness, Failure);
    sim.advance(1.0);
    sim.probe("app", Readiness, Failure);
    sim.advance(1.0);
    sim.probe("app", Readiness, Failure);
    assert!(!sim.cs("app").ready);
}

// ===== Section 5: init containers =====

fn init_pod(policy: &str) -> Sim {
    Sim::with(
        pod(
            json!({"spec": {"restartPolicy": policy, "initContainers": [c("init-a"), c("init-b")], "containers": [c("app")]}}),
        ),
        Auto::default(),
    )
}

#[test]
fn rule_5_1_init_containers_run_one_at_a_time_in_order() {
    let mut sim = init_pod("Always");
    assert_eq!(sim.kubectl_status(), "Init:0/2");
    assert_eq!(sim.phase(), "Pending");
    assert_eq!(sim.state("init-a"), "running");
    assert_eq!(sim.state("init-b"), "waiting:PodInitializing");
    assert_eq!(sim.state("app"), "waiting:PodInitializing");
    assert_eq!(sim.cond("Initialized"), "False/ContainersNotInitialized");
    assert_eq!(
        sim.condition("Initialized").message.as_deref(),
        Some("containers with incomplete status: [init-a init-b]")
    );
    sim.exit("init-a", 0);
    assert_eq!(sim.state("init-b"), "running");
    assert_eq!(sim.kubectl_status(), "Init:1/2");
    assert!(sim.starts_of("app").is_empty());
    sim.exit("init-b", 0);
    assert_eq!(sim.state("app"), "running");
    assert_eq!(sim.state("init-a"), "terminated:Completed:0");
    assert!(sim.cs("init-a").ready);
    assert_eq!(sim.phase(), "Running");
    assert_eq!(sim.cond("Initialized"), "True");
}

#[test]
fn rule_5_2_failed_init_container_is_retried_with_backoff() {
    let mut sim = init_pod("OnFailure");
    sim.exit("init-a", 1);
    assert_eq!(sim.starts_of("init-a").len(), 2, "first retry is immediate");
    assert_eq!(sim.cs("init-a").restart_count, 1);
    sim.exit("init-a", 1);
    assert_eq!(sim.state("init-a"), "waiting:CrashLoopBackOff");
    assert_eq!(sim.kubectl_status(), "Init:CrashLoopBackOff");
    assert_eq!(sim.phase(), "Pending");
    sim.advance(10.0);
    assert_eq!(sim.state("init-a"), "running");
    sim.exit("init-a", 0);
    assert_eq!(sim.state("init-b"), "running");
}

#[test]
fn rule_5_2_failed_init_container_fails_a_never_pod() {
    let mut sim = init_pod("Never");
    sim.exit("init-a", 3);
    assert_eq!(sim.phase(), "Failed");
    assert!(sim.starts_of("init-a").len() == 1 && sim.starts_of("init-b").is_empty());
    assert!(sim.starts_of("app").is_empty(), "app containers never start");
    assert!(sim.finished);
    assert_eq!(sim.kubectl_status(), "Init:Error");
    assert_eq!(
        sim.state("app"),
        "waiting:PodInitializing",
        "never ran: not made terminated (rule 11.2)"
    );
    assert_eq!(sim.state("init-b"), "waiting:PodInitializing");
}

#[test]
fn rule_5_3_successful_init_containers_are_not_rerun() {
    let mut sim = init_pod("Always");
    sim.exit("init-a", 0);
    sim.exit("init-b", 0);
    sim.exit("app", 1);
    sim.exit("app", 1);
    sim.advance(60.0);
    assert_eq!(sim.starts_of("init-a").len(), 1);
    assert_eq!(sim.starts_of("init-b").len(), 1);
    assert!(sim.starts_of("app").len() >= 3);
}

#[test]
fn rule_5_8_no_init_containers_means_initialized_at_once() {
    let sim = one(c("app"));
    assert_eq!(sim.cond("Initialized"), "True");
}

// ===== Section 6: sandbox =====

#[test]
fn rule_6_3_sandbox_loss_reruns_every_init_container() {
    let mut sim = init_pod("Always");
    sim.exit("init-a", 0);
    sim.exit("init-b", 0);
    assert_eq!(sim.state("app"), "running");
    sim.input(Input::SandboxLost);
    assert!(
        sim.event_lines()
            .contains(&"SandboxChanged: Pod sandbox changed, it will be killed and re-created.".into())
    );
    assert_eq!(sim.sandbox_requests, 2);
    assert_eq!(sim.state("init-a"), "running", "init starts over");
    assert_eq!(
        sim.cs("init-a").restart_count,
        1,
        "restart counts survive (rule 6.4)"
    );
    sim.exit("init-a", 0);
    sim.exit("init-b", 0);
    assert_eq!(sim.state("app"), "running");
    assert_eq!(sim.cs("app").restart_count, 1);
}

#[test]
fn rule_6_2a_a_never_pod_gets_no_new_sandbox() {
    let mut sim = Sim::new(pod(
        json!({"spec": {"restartPolicy": "Never", "containers": [c("app")]}}),
    ));
    sim.input(Input::SandboxLost);
    assert_eq!(sim.sandbox_requests, 1);
    assert!(sim.finished);
    assert_eq!(sim.phase(), "Failed");
    assert!(
        !sim.event_lines().iter().any(|e| e.starts_with("SandboxChanged")),
        "no new sandbox, no SandboxChanged"
    );
}

#[test]
fn rule_6_1_failed_sandbox_creation_is_retried() {
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [c("app")]}})),
        Auto {
            sandbox: false,
            ..Auto::default()
        },
    );
    sim.input(Input::SandboxFailed {
        message: "no IPs left".into(),
    });
    assert!(
        sim.event_lines()
            .contains(&"FailedCreatePodSandBox: Failed to create pod sandbox: no IPs left".into())
    );
    assert_eq!(sim.cond("PodReadyToStartContainers"), "False");
    assert_eq!(sim.state("app"), "waiting:ContainerCreating");
    sim.advance(10.0);
    assert_eq!(sim.sandbox_requests, 2);
    sim.input(Input::SandboxReady {
        pod_ip: Some("10.88.0.9".into()),
    });
    assert_eq!(sim.cond("PodReadyToStartContainers"), "True");
    assert_eq!(sim.m.status().pod_ip.as_deref(), Some("10.88.0.9"));
    assert_eq!(sim.state("app"), "running");
}

// ===== Section 7: restarts =====

#[test]
fn rule_7_1_restart_policy_decides_restarts() {
    for (policy, code, restarts, phase) in [
        ("Always", 0, true, "Running"),
        ("Always", 1, true, "Running"),
        ("OnFailure", 0, false, "Succeeded"),
        ("OnFailure", 1, true, "Running"),
        ("Never", 0, false, "Succeeded"),
        ("Never", 1, false, "Failed"),
    ] {
        let mut sim = Sim::new(pod(
            json!({"spec": {"restartPolicy": policy, "containers": [c("app")]}}),
        ));
        sim.exit("app", code);
        assert_eq!(sim.starts_of("app").len() == 2, restarts, "{policy} exit {code}");
        assert_eq!(sim.phase(), phase, "{policy} exit {code}");
        assert_eq!(sim.finished, !restarts, "{policy} exit {code}");
    }
}

#[test]
fn rule_7_3_liveness_failure_kills_and_restarts() {
    let app = with_probe(
        c("app"),
        "livenessProbe",
        exec_probe(json!({"periodSeconds": 10, "failureThreshold": 3})),
    );
    let mut sim = one(app);
    for _ in 0..3 {
        sim.advance(10.0);
        sim.probe("app", Liveness, Failure);
    }
    assert!(
        sim.event_lines()
            .contains(&"Killing: Container app failed liveness probe, will be restarted".into())
    );
    assert_eq!(sim.cs("app").restart_count, 1);
    assert_eq!(sim.state("app"), "running");
    let last = sim.cs("app").last_state.unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (143, Some("Error")));
    assert_eq!(sim.stop_graces("app"), [Duration::from_secs(30)]);
}

#[test]
fn rule_7_3_never_pod_liveness_kill_ends_the_pod() {
    let app = with_probe(
        c("app"),
        "livenessProbe",
        exec_probe(json!({"failureThreshold": 1})),
    );
    let mut sim = Sim::new(pod(
        json!({"spec": {"restartPolicy": "Never", "containers": [app]}}),
    ));
    sim.advance(10.0);
    sim.probe("app", Liveness, Failure);
    assert!(
        sim.event_lines()
            .contains(&"Killing: Container app failed liveness probe".into())
    );
    assert_eq!(sim.starts_of("app").len(), 1);
    assert_eq!(sim.phase(), "Failed");
    assert!(sim.finished);
}

#[test]
fn rule_7_3_startup_failure_kills() {
    let app = with_probe(
        c("app"),
        "startupProbe",
        exec_probe(json!({"failureThreshold": 2, "periodSeconds": 1})),
    );
    let mut sim = one(app);
    sim.advance(1.0);
    sim.probe("app", Startup, Failure);
    sim.advance(1.0);
    sim.probe("app", Startup, Failure);
    assert!(
        sim.event_lines()
            .contains(&"Killing: Container app failed startup probe, will be restarted".into())
    );
    assert_eq!(sim.cs("app").restart_count, 1);
}

#[test]
fn rule_7_3_image_change_restarts_regardless_of_policy() {
    let p = pod(json!({"spec": {"restartPolicy": "Never", "containers": [c("app")]}}));
    let mut sim = Sim::new(p.clone());
    let mut changed = p;
    changed.spec.as_mut().unwrap().containers[0].image = Some("img:v2".into());
    sim.input(Input::PodUpdated(Box::new(changed)));
    assert!(
        sim.event_lines()
            .contains(&"Killing: Container app definition changed, will be restarted".into())
    );
    assert_eq!(sim.starts_of("app").len(), 2);
    assert_eq!(sim.cs("app").image, "img:v2");
    assert_eq!(sim.phase(), "Running");
}

#[test]
fn rule_7_9_crash_loop_backoff_waits_and_reports() {
    let mut sim = one(c("app"));
    sim.exit("app", 1);
    assert_eq!(sim.state("app"), "running", "the first restart is immediate");
    sim.advance(1.0);
    sim.exit("app", 1);
    assert_eq!(sim.state("app"), "waiting:CrashLoopBackOff");
    assert_eq!(
        sim.cs("app").state.unwrap().waiting.unwrap().message.as_deref(),
        Some("back-off 10s restarting failed container=app pod=p_default(uid-1)")
    );
    assert_eq!(sim.kubectl_status(), "CrashLoopBackOff");
    assert_eq!(
        sim.phase(),
        "Running",
        "a crash-looping pod is Running (rule 10.3)"
    );
    assert!(
        sim.event_lines()
            .contains(&"BackOff: Back-off restarting failed container app in pod p_default(uid-1)".into())
    );
    sim.advance(9.9);
    assert_eq!(sim.state("app"), "waiting:CrashLoopBackOff");
    sim.advance(0.1);
    assert_eq!(sim.state("app"), "running");
    sim.exit("app", 1);
    sim.advance(19.9);
    assert_eq!(sim.state("app"), "waiting:CrashLoopBackOff");
    assert_eq!(
        sim.cs("app").state.unwrap().waiting.unwrap().message.as_deref(),
        Some("back-off 20s restarting failed container=app pod=p_default(uid-1)")
    );
    sim.advance(0.1);
    assert_eq!(sim.state("app"), "running");
    let starts: Vec<i64> = sim.starts_of("app").iter().map(|t| sim.secs(*t)).collect();
    assert_eq!(starts, [0, 0, 11, 31]);
}

#[test]
fn rule_7_13_restart_counts_only_grow() {
    let mut sim = one(c("app"));
    let mut last = 0;
    for _ in 0..6 {
        sim.exit("app", 2);
        sim.advance(400.0);
        let n = sim.cs("app").restart_count;
        assert!(n > last, "{n} > {last}");
        last = n;
    }
    assert_eq!(last, 6);
}

// ===== Section 8: hooks =====

#[test]
fn rule_8_1_post_start_holds_back_the_next_container() {
    let mut first = c("a");
    first["lifecycle"] = json!({"postStart": {"exec": {"command": ["warm-up"]}}});
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [first, c("b")]}})),
        Auto {
            hooks: false,
            ..Auto::default()
        },
    );
    assert!(sim.starts_of("b").is_empty());
    sim.hook("a", HookKind::PostStart, HookResult::Succeeded);
    assert_eq!(sim.state("b"), "running");
}

#[test]
fn rule_8_1_a_container_in_back_off_holds_nothing_back() {
    let mut first = c("a");
    first["lifecycle"] = json!({"postStart": {"exec": {"command": ["warm-up"]}}});
    let mut sim = Sim::new(pod(json!({"spec": {"containers": [first, c("b")]}})));
    sim.exit("a", 1);
    sim.exit("a", 1);
    assert_eq!(sim.state("a"), "waiting:CrashLoopBackOff");
    sim.exit("b", 1);
    assert_eq!(
        sim.state("b"),
        "running",
        "only a start under way (its hook running) holds the next one back"
    );
}

#[test]
fn rule_8_1_while_post_start_runs_the_container_is_still_being_created() {
    let mut app = with_probe(
        c("app"),
        "livenessProbe",
        exec_probe(json!({"periodSeconds": 1, "failureThreshold": 1})),
    );
    app = with_probe(app, "readinessProbe", exec_probe(json!({"periodSeconds": 1})));
    app["lifecycle"] = json!({"postStart": {"exec": {"command": ["warm-up"]}}});
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [app]}})),
        Auto {
            hooks: false,
            ..Auto::default()
        },
    );
    assert_eq!(sim.starts_of("app").len(), 1, "the process was started");
    assert_eq!(sim.state("app"), "waiting:ContainerCreating");
    assert_eq!(sim.cs("app").started, Some(false));
    assert!(!sim.cs("app").ready);
    assert_eq!(sim.phase(), "Pending");
    assert_eq!(sim.kubectl_status(), "ContainerCreating");
    sim.advance(5.0);
    assert!(
        !sim.has_probe("app", Liveness) && !sim.has_probe("app", Readiness),
        "no probe runs while the hook runs"
    );
    assert_eq!(sim.state("app"), "waiting:ContainerCreating");
    sim.hook("app", HookKind::PostStart, HookResult::Succeeded);
    let cs = sim.cs("app");
    assert_eq!(
        cs.state
            .unwrap()
            .running
            .unwrap()
            .started_at
            .map(|t| t.0.as_second()),
        Some(T0),
        "startedAt is the process start"
    );
    assert_eq!(cs.started, Some(true));
    assert_eq!(sim.phase(), "Running");
    assert!(sim.has_probe("app", Readiness), "readiness is probed at once");
}

#[test]
fn rule_8_2_failed_post_start_kills_the_container() {
    let mut app = c("app");
    app["lifecycle"] = json!({"postStart": {"exec": {"command": ["warm-up"]}}});
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [app]}})),
        Auto {
            hooks: false,
            ..Auto::default()
        },
    );
    sim.hook("app", HookKind::PostStart, HookResult::Failed("exit 1".into()));
    assert!(
        sim.event_lines()
            .contains(&"FailedPostStartHook: PostStartHook failed".into())
    );
    assert!(
        sim.event_lines().contains(&"Killing: FailedPostStartHook".into()),
        "the kill's message is its reason"
    );
    assert_eq!(sim.cs("app").restart_count, 1, "killed and restarted");
}

#[test]
fn rule_8_3_pre_stop_runs_before_the_stop_signal_and_its_time_is_subtracted() {
    let mut app = c("app");
    app["lifecycle"] = json!({"preStop": {"exec": {"command": ["drain"]}}});
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [app], "terminationGracePeriodSeconds": 30}})),
        Auto {
            hooks: false,
            ..Auto::default()
        },
    );
    sim.delete(None);
    assert!(sim.stop_graces("app").is_empty(), "no signal while preStop runs");
    assert_eq!(
        sim.kubectl_status(),
        "Running",
        "no deletionTimestamp in the model's own pod copy"
    );
    sim.advance(12.5);
    sim.hook("app", HookKind::PreStop, HookResult::Succeeded);
    assert_eq!(
        sim.stop_graces("app"),
        [Duration::from_secs(18)],
        "30s minus 12 whole seconds"
    );
    assert!(sim.finished);
}

#[test]
fn rule_8_9_a_failed_or_slow_pre_stop_never_blocks_the_stop() {
    let mut app = c("app");
    app["lifecycle"] = json!({"preStop": {"exec": {"command": ["drain"]}}});
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [app], "terminationGracePeriodSeconds": 5}})),
        Auto {
            hooks: false,
            ..Auto::default()
        },
    );
    sim.delete(None);
    sim.advance(5.0);
    assert_eq!(
        sim.stop_graces("app"),
        [Duration::from_secs(2)],
        "grace used up: the 2s minimum"
    );
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [sim.m.pod().spec.unwrap().containers[0].clone()]}})),
        Auto {
            hooks: false,
            ..Auto::default()
        },
    );
    sim.delete(None);
    sim.hook("app", HookKind::PreStop, HookResult::Failed("exit 2".into()));
    assert!(
        sim.event_lines()
            .contains(&"FailedPreStopHook: PreStopHook failed".into())
    );
    assert!(sim.finished);
}

// ===== Section 9: termination =====

#[test]
fn rule_9_1_deletion_grace_zero_becomes_one_and_kill_window_is_two() {
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [c("app")]}})),
        Auto {
            stop: None,
            ..Auto::default()
        },
    );
    sim.delete(Some(0));
    assert_eq!(sim.stop_graces("app"), [Duration::from_secs(2)]);
}

#[test]
fn rule_9_1_a_shorter_grace_cuts_termination_short() {
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [c("app")]}})),
        Auto {
            stop: None,
            ..Auto::default()
        },
    );
    sim.delete(None);
    sim.advance(1.0);
    sim.delete(Some(5));
    sim.delete(Some(20));
    assert_eq!(
        sim.stop_graces("app"),
        [Duration::from_secs(30), Duration::from_secs(5)]
    );
}

#[test]
fn rule_9_3_liveness_probe_grace_overrides_the_pod_grace() {
    let app = with_probe(
        c("app"),
        "livenessProbe",
        exec_probe(json!({"failureThreshold": 1, "terminationGracePeriodSeconds": 60})),
    );
    let mut sim = one(app);
    sim.advance(10.0);
    sim.probe("app", Liveness, Failure);
    assert_eq!(sim.stop_graces("app"), [Duration::from_secs(60)]);
}

#[test]
fn rule_9_6_exit_codes_and_reasons() {
    for (status, code, reason) in [
        (ExitStatus::Exited(0), 0, "Completed"),
        (ExitStatus::Exited(3), 3, "Error"),
        (ExitStatus::Signaled(15), 143, "Error"),
        (ExitStatus::Signaled(9), 137, "Error"),
        (ExitStatus::OomKilled, 137, "OOMKilled"),
    ] {
        let mut sim = Sim::new(pod(
            json!({"spec": {"restartPolicy": "Never", "containers": [c("app")]}}),
        ));
        sim.exit_with("app", status);
        assert_eq!(sim.state("app"), format!("terminated:{reason}:{code}"));
    }
}

#[test]
fn rule_9_7_sidecars_stop_after_regular_containers_in_reverse_order() {
    let mut s1 = c("side-1");
    s1["restartPolicy"] = json!("Always");
    let mut s2 = c("side-2");
    s2["restartPolicy"] = json!("Always");
    let mut sim = Sim::with(
        pod(json!({"spec": {"initContainers": [s1, s2], "containers": [c("app")]}})),
        Auto {
            stop: None,
            ..Auto::default()
        },
    );
    assert_eq!(sim.state("app"), "running");
    sim.delete(None);
    let stopped: Vec<String> = sim.stops.iter().map(|(n, _, _)| n.clone()).collect();
    assert_eq!(stopped, ["app"], "sidecars wait for the app");
    let (_, id, _) = sim.stops.remove(0);
    sim.running.remove("app");
    sim.input(Input::ContainerExited {
        name: "app".into(),
        id,
        status: ExitStatus::Signaled(15),
        message: None,
    });
    let stopped: Vec<String> = sim.stops.iter().map(|(n, _, _)| n.clone()).collect();
    assert_eq!(stopped, ["side-2"], "then the last sidecar");
    let (_, id, _) = sim.stops.remove(0);
    sim.running.remove("side-2");
    sim.input(Input::ContainerExited {
        name: "side-2".into(),
        id,
        status: ExitStatus::Exited(0),
        message: None,
    });
    let stopped: Vec<String> = sim.stops.iter().map(|(n, _, _)| n.clone()).collect();
    assert_eq!(stopped, ["side-1"]);
}

#[test]
fn rule_9_7_5_a_deleted_always_pod_ends_failed_or_succeeded() {
    let mut sim = one(c("app"));
    sim.delete(None);
    assert!(sim.finished);
    assert_eq!(sim.phase(), "Failed", "SIGTERM gives 143");
    assert!(sim.log.iter().any(|(_, c)| *c == Command::TeardownSandbox));

    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [c("app")]}})),
        Auto {
            stop: Some(ExitStatus::Exited(0)),
            ..Auto::default()
        },
    );
    sim.delete(None);
    assert_eq!(sim.phase(), "Succeeded", "a clean exit on SIGTERM");
    assert_eq!(sim.cond("Ready"), "False/PodCompleted");
}

#[test]
fn rule_9_8_nothing_restarts_while_terminating() {
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [c("app")]}})),
        Auto {
            stop: None,
            ..Auto::default()
        },
    );
    sim.delete(None);
    sim.exit("app", 1);
    assert_eq!(sim.starts_of("app").len(), 1);
    assert!(sim.finished);
}

// ===== Section 10: phase =====

#[test]
fn rule_10_3_pending_until_every_container_started() {
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [c("a"), c("b")]}})),
        Auto {
            start: false,
            ..Auto::default()
        },
    );
    sim.answer_start("a");
    assert_eq!(sim.phase(), "Pending");
    assert_eq!(sim.kubectl_status(), "ContainerCreating");
    sim.answer_start("b");
    assert_eq!(sim.phase(), "Running");
}

#[test]
fn rule_10_4_terminal_phase_absorbs_every_input() {
    let mut sim = Sim::new(pod(
        json!({"spec": {"restartPolicy": "Never", "containers": [c("app")]}}),
    ));
    sim.exit("app", 0);
    assert_eq!(sim.phase(), "Succeeded");
    let before = sim.m.status().clone();
    sim.input(Input::SandboxLost);
    sim.delete(Some(0));
    sim.advance(1000.0);
    assert!(sim.m.step(sim.now, Input::Tick).is_empty());
    assert_eq!(sim.m.status(), &before);
}

#[test]
fn rule_10_3_sidecar_exit_codes_never_decide_the_phase() {
    let mut side = c("side");
    side["restartPolicy"] = json!("Always");
    let mut sim = Sim::new(pod(
        json!({"spec": {"restartPolicy": "Never", "initContainers": [side], "containers": [c("app")]}}),
    ));
    sim.exit("side", 1);
    assert_eq!(
        sim.state("side"),
        "running",
        "sidecars restart even under Never (rule 15.3)"
    );
    assert_eq!(sim.cs("side").restart_count, 1);
    sim.exit("app", 0);
    assert_eq!(
        sim.phase(),
        "Succeeded",
        "the sidecar was killed with 143, which does not count"
    );
    assert!(sim.finished);
}

// ===== Section 11: container status =====

#[test]
fn rule_11_1_default_waiting_reasons() {
    let sim = Sim::with(
        pod(json!({"spec": {"containers": [c("app")]}})),
        Auto {
            sandbox: false,
            ..Auto::default()
        },
    );
    assert_eq!(sim.state("app"), "waiting:ContainerCreating");
    assert_eq!(sim.kubectl_status(), "ContainerCreating");
    let sim = Sim::with(
        pod(json!({"spec": {"initContainers": [c("init")], "containers": [c("app")]}})),
        Auto {
            sandbox: false,
            ..Auto::default()
        },
    );
    assert_eq!(sim.state("init"), "waiting:PodInitializing");
    assert_eq!(sim.state("app"), "waiting:PodInitializing");
}

#[test]
fn rule_11_5_spawn_failure_is_start_error_128_then_run_container_error() {
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [c("app")]}})),
        Auto {
            start: false,
            ..Auto::default()
        },
    );
    sim.starts.clear();
    sim.input(Input::ContainerStartFailed {
        name: "app".into(),
        message: "exec: \"run\": not found".into(),
    });
    assert!(
        sim.event_lines()
            .contains(&"Failed: Error: exec: \"run\": not found".into())
    );
    // The retry is immediate (first restart); the status shows why the last attempt failed.
    let cs = sim.cs("app");
    let last = cs.last_state.unwrap().terminated.unwrap();
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (128, Some("StartError"))
    );
    assert_eq!(
        last.started_at.map(|t| t.0.as_second()),
        Some(0),
        "never started: the runtime's zero start time, the Unix epoch"
    );
    sim.starts.clear();
    sim.input(Input::ContainerStartFailed {
        name: "app".into(),
        message: "exec: \"run\": not found".into(),
    });
    assert_eq!(sim.state("app"), "waiting:CrashLoopBackOff");
}

#[test]
fn rule_11_5_missing_config_reference_waits_in_create_container_config_error() {
    let mut sim = Sim::with(
        pod(json!({"spec": {"initContainers": [c("init")], "containers": [c("app")]}})),
        Auto {
            start: false,
            ..Auto::default()
        },
    );
    let config_error = |sim: &mut Sim| {
        sim.input(Input::ContainerCreateFailed {
            name: "init".into(),
            reason: "CreateContainerConfigError",
            message: "secret \"db\" not found".into(),
        });
    };
    assert_eq!(sim.starts_of("init").len(), 1);
    config_error(&mut sim);
    assert!(
        sim.event_lines()
            .contains(&"Failed: Error: secret \"db\" not found".into())
    );
    let cs = sim
        .m
        .status()
        .init_container_statuses
        .clone()
        .unwrap_or_default()
        .remove(0);
    let waiting = cs.state.unwrap().waiting.unwrap();
    assert_eq!(
        (waiting.reason.as_deref(), waiting.message.as_deref()),
        (
            Some("CreateContainerConfigError"),
            Some("secret \"db\" not found")
        )
    );
    assert_eq!(cs.restart_count, 0, "nothing was created: no restart counted");
    assert_eq!(sim.phase(), "Pending");
    assert_eq!(sim.kubectl_status(), "Init:CreateContainerConfigError");
    // Tried again after the retry period, not before; the count still does not move.
    sim.advance(9.0);
    assert_eq!(sim.starts_of("init").len(), 1);
    sim.advance(1.5);
    assert_eq!(sim.starts_of("init").len(), 2);
    config_error(&mut sim);
    // A change of ConfigMaps or Secrets retries at once; this time it starts.
    sim.input(Input::ConfigChanged);
    assert_eq!(sim.starts_of("init").len(), 3);
    sim.answer_start("init");
    let cs = sim
        .m
        .status()
        .init_container_statuses
        .clone()
        .unwrap_or_default()
        .remove(0);
    assert!(cs.state.unwrap().running.is_some());
    assert_eq!(cs.restart_count, 0);
}

#[test]
fn rule_11_7_container_statuses_are_sorted_by_name() {
    let sim = Sim::new(pod(
        json!({"spec": {"initContainers": [c("z-init"), c("a-init")], "containers": [c("web"), c("api")]}}),
    ));
    let names: Vec<String> = sim
        .m
        .status()
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["api", "web"]);
    let init: Vec<String> = sim
        .m
        .status()
        .init_container_statuses
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(init, ["z-init", "a-init"], "init containers keep spec order");
}

// ===== Section 12: activeDeadlineSeconds =====

#[test]
fn rule_12_1_active_deadline_fails_the_pod() {
    let mut sim = Sim::new(pod(
        json!({"spec": {"activeDeadlineSeconds": 30, "containers": [c("app")]}}),
    ));
    sim.advance(29.0);
    assert_eq!(sim.phase(), "Running");
    sim.advance(1.0);
    assert_eq!(sim.phase(), "Failed");
    assert_eq!(sim.m.status().reason.as_deref(), Some("DeadlineExceeded"));
    assert!(
        sim.event_lines().contains(
            &"DeadlineExceeded: Pod was active on the node longer than the specified deadline".into()
        )
    );
    assert!(sim.finished);
}

// ===== Section 14: conditions =====

#[test]
fn rule_14_2_last_transition_time_changes_only_with_status() {
    let app = with_probe(
        c("app"),
        "readinessProbe",
        exec_probe(json!({"periodSeconds": 1})),
    );
    let mut sim = one(app);
    let t_false = sim.condition("Ready").last_transition_time;
    sim.advance(5.0);
    assert_eq!(
        sim.condition("Ready").last_transition_time,
        t_false,
        "unchanged status keeps its time"
    );
    sim.probe("app", Readiness, Success);
    let t_true = sim.condition("Ready").last_transition_time.unwrap();
    assert_eq!(t_true.0.as_second(), T0 + 5);
    assert_eq!(sim.condition("PodScheduled").status, "True");
}

#[test]
fn rule_14_4_ready_to_start_containers_follows_the_sandbox() {
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [c("app")]}})),
        Auto {
            sandbox: false,
            ..Auto::default()
        },
    );
    assert_eq!(sim.cond("PodReadyToStartContainers"), "False");
    sim.input(Input::SandboxReady {
        pod_ip: Some("10.88.0.3".into()),
    });
    assert_eq!(sim.cond("PodReadyToStartContainers"), "True");
}

#[test]
fn rule_14_6_containers_ready_names_the_unready_ones() {
    let b = with_probe(c("b"), "readinessProbe", exec_probe(json!({})));
    let a = with_probe(c("a"), "readinessProbe", exec_probe(json!({})));
    let sim = Sim::new(pod(json!({"spec": {"containers": [b, a, c("ok")]}})));
    let cond = sim.condition("ContainersReady");
    assert_eq!(cond.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        cond.message.as_deref(),
        Some("containers with unready status: [b a]")
    );
    let ready = sim.condition("Ready");
    assert_eq!((ready.status.as_str(), ready.message), ("False", cond.message));
}

#[test]
fn rule_14_7_readiness_gates() {
    let p = pod(
        json!({"spec": {"readinessGates": [{"conditionType": "example.com/lb"}], "containers": [c("app")]}}),
    );
    let mut sim = Sim::new(p.clone());
    assert_eq!(sim.cond("ContainersReady"), "True");
    assert_eq!(sim.cond("Ready"), "False/ReadinessGatesNotReady");
    assert_eq!(
        sim.condition("Ready").message.as_deref(),
        Some("corresponding condition of pod readiness gate \"example.com/lb\" does not exist.")
    );
    let mut updated = p;
    updated.status = Some(
        serde_json::from_value(json!({"conditions": [{"type": "example.com/lb", "status": "True"}]}))
            .unwrap(),
    );
    sim.input(Input::PodUpdated(Box::new(updated)));
    assert_eq!(sim.cond("Ready"), "True");
    assert!(
        sim.m
            .status()
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "example.com/lb"),
        "preserved"
    );
}

// ===== Section 15: sidecars =====

#[test]
fn rule_15_1_a_sidecar_must_be_started_before_the_next_init_container() {
    let side = with_probe(c("side"), "startupProbe", exec_probe(json!({"periodSeconds": 1})));
    let mut side = side;
    side["restartPolicy"] = json!("Always");
    let mut sim = Sim::new(pod(
        json!({"spec": {"initContainers": [side, c("init")], "containers": [c("app")]}}),
    ));
    assert_eq!(sim.state("side"), "running");
    assert!(sim.starts_of("init").is_empty());
    assert_eq!(sim.kubectl_status(), "Init:0/2");
    sim.advance(1.0);
    sim.probe("side", Startup, Success);
    assert_eq!(sim.state("init"), "running");
    sim.exit("init", 0);
    assert_eq!(sim.state("app"), "running");
    assert_eq!(sim.kubectl_ready(), "2/2", "sidecars count in READY");
}

#[test]
fn rule_15_5_sidecars_are_stopped_once_the_main_containers_are_done() {
    let mut side = c("side");
    side["restartPolicy"] = json!("Always");
    let mut sim = Sim::with(
        pod(
            json!({"spec": {"restartPolicy": "OnFailure", "initContainers": [side], "containers": [c("app")]}}),
        ),
        Auto {
            stop: None,
            ..Auto::default()
        },
    );
    sim.exit("app", 0);
    assert_eq!(sim.phase(), "Running", "the sidecar still runs");
    assert_eq!(sim.stops.len(), 1);
    sim.exit_with("side", ExitStatus::Signaled(15));
    assert_eq!(sim.starts_of("side").len(), 1, "not restarted");
    assert_eq!(sim.phase(), "Succeeded");
    assert_eq!(sim.kubectl_status(), "Completed");
}

#[test]
fn restore_carries_restart_counts_over_a_node_restart() {
    let mut sim = one(c("app"));
    sim.exit("app", 1);
    sim.advance(1.0);
    sim.exit("app", 1);
    sim.advance(20.0);
    assert_eq!(sim.cs("app").restart_count, 2);
    let saved = sim.m.pod();
    let now = sim.now + Duration::from_secs(5);
    let mut fresh = Sim::new(saved);
    fresh.now = now;
    fresh.input(Input::Tick);
    assert_eq!(fresh.state("app"), "running");
    assert_eq!(fresh.cs("app").restart_count, 3, "continues, never resets");
    assert_eq!(fresh.m.status().start_time, sim.m.status().start_time);
    let _ = Time::EPOCH;
}

#[test]
fn phase_is_unknown_when_the_node_cannot_report() {
    let sim = one(c("app"));
    let later = sim.now + Duration::from_secs(60);
    let st = podvisor_lifecycle::node_unreachable(sim.m.status(), later);
    assert_eq!(st.phase.as_deref(), Some("Unknown"));
    let ready = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(
        ready.last_transition_time.as_ref().map(|t| t.0.as_second()),
        Some(later.as_secs())
    );

    let mut done = Sim::new(pod(
        json!({"spec": {"restartPolicy": "Never", "containers": [c("app")]}}),
    ));
    done.exit("app", 0);
    let st = podvisor_lifecycle::node_unreachable(done.m.status(), later);
    assert_eq!(st.phase.as_deref(), Some("Succeeded"), "terminal phases stay");
}

#[test]
fn rule_11_9_a_container_running_before_a_node_restart_counts_as_restarted() {
    let mut sim = one(c("app"));
    sim.exit("app", 1);
    assert_eq!(sim.cs("app").restart_count, 1);
    let saved = sim.m.pod();
    let mut fresh = Sim::with(
        saved,
        Auto {
            sandbox: false,
            ..Auto::default()
        },
    );
    let cs = fresh.cs("app");
    assert_eq!(cs.restart_count, 2, "incremented for the lost instance");
    let last = cs.last_state.unwrap().terminated.unwrap();
    assert_eq!(
        (last.reason.as_deref(), last.exit_code),
        (Some("ContainerStatusUnknown"), 137)
    );
    fresh.input(Input::SandboxReady {
        pod_ip: Some("10.88.0.8".into()),
    });
    assert_eq!(fresh.state("app"), "running");
    assert_eq!(fresh.cs("app").restart_count, 2, "not counted twice");
}

#[test]
fn a_pod_admitted_while_being_deleted_terminates() {
    let mut sim = one(c("app"));
    let mut deleting = sim.m.pod();
    deleting.metadata.deletion_timestamp = Some(sim.now.to_k8s());
    deleting.metadata.deletion_grace_period_seconds = Some(10);
    sim.input(Input::PodUpdated(Box::new(deleting.clone())));
    assert!(sim.finished);
    let fresh = Sim::new(deleting);
    assert!(
        fresh.finished,
        "nothing is started for a pod that is being deleted"
    );
    assert!(fresh.starts_of("app").is_empty());
}

#[test]
fn rule_3_5_4_a_success_streak_carries_over_a_restart() {
    let app = with_probe(
        c("app"),
        "readinessProbe",
        exec_probe(json!({"periodSeconds": 1, "successThreshold": 2})),
    );
    let mut sim = one(app);
    sim.probe("app", Readiness, Success);
    assert!(!sim.cs("app").ready);
    sim.exit("app", 1);
    assert_eq!(sim.state("app"), "running", "restarted");
    sim.probe("app", Readiness, Success);
    assert!(
        sim.cs("app").ready,
        "the streak of the previous instance counts (kubelet behaviour)"
    );
}

#[test]
fn rule_3_5_6_probing_ends_for_a_finished_container_of_a_never_pod() {
    let a = with_probe(c("a"), "livenessProbe", exec_probe(json!({"periodSeconds": 1})));
    let mut sim = Sim::new(pod(
        json!({"spec": {"restartPolicy": "Never", "containers": [a, c("b")]}}),
    ));
    sim.advance(1.0);
    sim.probe("a", Liveness, Success);
    sim.exit("a", 0);
    sim.advance(10.0);
    assert!(!sim.has_probe("a", Liveness));
    assert_eq!(sim.phase(), "Running", "b still runs");
}

#[test]
fn rule_3_14_readiness_is_probed_at_once_when_a_container_starts() {
    let app = with_probe(
        c("app"),
        "readinessProbe",
        exec_probe(json!({"periodSeconds": 60})),
    );
    let sim = one(app);
    assert!(
        sim.has_probe("app", Readiness),
        "the manual trigger does not wait a period"
    );
}

#[test]
fn rule_7_7_an_image_change_starts_a_fresh_backoff() {
    let p = pod(json!({"spec": {"containers": [c("app")]}}));
    let mut sim = one(c("app"));
    for _ in 0..3 {
        sim.exit("app", 1);
        sim.advance(60.0);
    }
    sim.exit("app", 1);
    assert_eq!(sim.state("app"), "waiting:CrashLoopBackOff");
    let mut changed = p;
    changed.spec.as_mut().unwrap().containers[0].image = Some("img:fixed".into());
    sim.input(Input::PodUpdated(Box::new(changed)));
    assert_eq!(sim.state("app"), "running", "new definition, no back-off");
}

#[test]
fn rule_9_9_the_phase_stays_running_while_terminating() {
    let p = pod(json!({"spec": {"containers": [c("app")]}}));
    let mut sim = Sim::with(
        p.clone(),
        Auto {
            stop: None,
            ..Auto::default()
        },
    );
    let mut deleting = p;
    deleting.metadata.deletion_timestamp = Some(sim.now.to_k8s());
    deleting.metadata.deletion_grace_period_seconds = Some(30);
    sim.input(Input::PodUpdated(Box::new(deleting)));
    assert_eq!(sim.phase(), "Running");
    assert_eq!(sim.kubectl_status(), "Terminating");
    assert_eq!(sim.stop_graces("app"), [Duration::from_secs(30)]);
}

#[test]
fn rule_10_6_start_time_is_set_once() {
    let mut sim = one(c("app"));
    let start = sim.m.status().start_time.clone();
    assert_eq!(start.as_ref().map(|t| t.0.as_second()), Some(T0));
    sim.exit("app", 1);
    sim.advance(100.0);
    assert_eq!(sim.m.status().start_time, start);
}

#[test]
fn rule_14_1_foreign_conditions_come_first_and_are_kept() {
    let mut p = pod(json!({"spec": {"containers": [c("app")]}}));
    p.status = Some(
        serde_json::from_value(json!({"conditions": [{"type": "DisruptionTarget", "status": "True"}]}))
            .unwrap(),
    );
    let sim = Sim::new(p);
    let types: Vec<String> = sim
        .m
        .status()
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.clone())
        .collect();
    assert_eq!(
        types,
        [
            "DisruptionTarget",
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled"
        ]
    );
}

#[test]
fn rule_15_2_a_sidecar_failing_liveness_is_restarted_and_does_not_block() {
    let side = with_probe(
        c("side"),
        "livenessProbe",
        exec_probe(json!({"periodSeconds": 1, "failureThreshold": 1})),
    );
    let mut side = side;
    side["restartPolicy"] = json!("Always");
    let mut sim = Sim::new(pod(
        json!({"spec": {"restartPolicy": "Never", "initContainers": [side, c("init")], "containers": [c("app")]}}),
    ));
    assert_eq!(
        sim.state("init"),
        "running",
        "started sidecars do not wait for probes"
    );
    sim.advance(1.0);
    sim.probe("side", Liveness, Failure);
    assert_eq!(sim.cs("side").restart_count, 1, "restarted even under Never");
    assert!(
        sim.event_lines()
            .contains(&"Killing: Init container side failed liveness probe".into()),
        "a sidecar's kill is worded as an init container's"
    );
    sim.exit("init", 0);
    assert_eq!(sim.state("app"), "running");
}

fn sidecar(name: &str) -> serde_json::Value {
    let mut s = c(name);
    s["restartPolicy"] = json!("Always");
    s
}

#[test]
fn rule_3_12_completed_init_containers_stay_ready_in_a_succeeded_pod() {
    let mut sim = init_pod("Never");
    sim.exit("init-a", 0);
    assert!(sim.cs("init-a").ready, "ready once it exited 0");
    sim.exit("init-b", 0);
    sim.exit("app", 0);
    assert_eq!(sim.phase(), "Succeeded");
    assert!(sim.finished);
    assert!(sim.cs("init-a").ready && sim.cs("init-b").ready);
    assert!(!sim.cs("app").ready);
    assert_eq!(sim.cs("init-a").started, Some(false));
}

#[test]
fn rule_11_2_containers_that_never_ran_keep_waiting_in_a_finished_pod() {
    // Deleted while the first init container runs: it was killed, nothing after it ran.
    let mut sim = init_pod("Always");
    sim.delete(Some(5));
    assert!(sim.finished);
    assert_eq!(sim.state("init-a"), "terminated:Error:143");
    assert_eq!(sim.state("init-b"), "waiting:PodInitializing");
    assert_eq!(sim.state("app"), "waiting:PodInitializing");
    // Deleted after initialisation: a regular container that cannot be accounted for is
    // reported as unknown.
    let mut sim = Sim::with(
        pod(json!({"spec": {"initContainers": [c("init")], "containers": [c("a"), c("b")]}})),
        Auto {
            start: false,
            ..Auto::default()
        },
    );
    sim.answer_start("init");
    sim.exit("init", 0);
    sim.answer_start("a");
    sim.delete(Some(5));
    sim.answer_start("b");
    assert!(sim.finished);
    assert_eq!(sim.state("a"), "terminated:Error:143");
    assert_eq!(sim.state("init"), "terminated:Completed:0");
}

#[test]
fn rule_15_2_a_sidecar_failing_its_startup_probe_before_it_started_is_restarted() {
    let side = with_probe(
        sidecar("side"),
        "startupProbe",
        exec_probe(json!({"periodSeconds": 1, "failureThreshold": 1})),
    );
    let mut sim = Sim::new(pod(
        json!({"spec": {"initContainers": [side], "containers": [c("app")]}}),
    ));
    sim.advance(1.0);
    sim.probe("side", Startup, Failure);
    assert!(
        sim.event_lines()
            .contains(&"Killing: Init container side failed startup probe".into())
    );
    assert_eq!(sim.cs("side").restart_count, 1);
    assert_eq!(sim.state("side"), "running", "the first restart is immediate");
    assert!(sim.starts_of("app").is_empty(), "initialisation waits");
    for _ in 0..2 {
        sim.advance(1.0);
        sim.probe("side", Startup, Failure);
    }
    assert_eq!(sim.cs("side").restart_count, 2);
    assert_eq!(sim.kubectl_status(), "Init:CrashLoopBackOff");
    sim.advance(10.0);
    assert_eq!(sim.cs("side").restart_count, 3);
    sim.advance(1.0);
    sim.probe("side", Startup, Success);
    assert_eq!(sim.state("app"), "running");
}

#[test]
fn rule_7_9_backoff_after_a_liveness_kill_counts_from_the_previous_exit() {
    let app = with_probe(
        c("app"),
        "livenessProbe",
        exec_probe(json!({"periodSeconds": 10, "failureThreshold": 1})),
    );
    let mut sim = one(app);
    let mut kills = Vec::new();
    for _ in 0..4 {
        sim.advance(10.0);
        assert_eq!(sim.state("app"), "running");
        sim.probe("app", Liveness, Failure);
        kills.push(sim.secs(sim.now));
    }
    let starts: Vec<i64> = sim.starts_of("app").iter().map(|t| sim.secs(*t)).collect();
    // The first kill finds no earlier exit; the second finds one but no back-off yet, the
    // third one 10s old, as long as the back-off; the fourth finds the third's exit 10s back
    // in a 20s back-off, and waits 20s from the kill itself.
    assert_eq!(kills, [10, 20, 30, 40]);
    assert_eq!(starts, [0, 10, 20, 30]);
    assert_eq!(sim.state("app"), "waiting:CrashLoopBackOff");
    sim.advance(19.0);
    assert_eq!(sim.starts_of("app").len(), 4);
    sim.advance(1.0);
    assert_eq!(sim.state("app"), "running");
}

#[test]
fn rule_11_4_sidecars_of_never_pods_keep_their_terminated_state() {
    let mut sim = Sim::new(pod(
        json!({"spec": {"restartPolicy": "Never", "initContainers": [sidecar("side")], "containers": [c("app")]}}),
    ));
    sim.exit("side", 1);
    sim.exit("side", 1);
    assert_eq!(
        sim.state("side"),
        "terminated:Error:1",
        "not restarted by the pod's policy: no waiting reason"
    );
    sim.advance(10.0);
    assert_eq!(sim.state("side"), "running", "but restarted all the same");
    let mut sim = Sim::new(pod(
        json!({"spec": {"restartPolicy": "OnFailure", "initContainers": [sidecar("side")], "containers": [c("app")]}}),
    ));
    sim.exit("side", 0);
    sim.exit("side", 0);
    assert_eq!(sim.state("side"), "terminated:Completed:0");
    sim.advance(10.0);
    sim.exit("side", 1);
    assert_eq!(sim.state("side"), "waiting:CrashLoopBackOff");
}

#[test]
fn rule_14_5_a_regular_container_in_back_off_has_not_started() {
    let mut sim = Sim::new(pod(
        json!({"spec": {"initContainers": [sidecar("side")], "containers": [c("app")]}}),
    ));
    for _ in 0..2 {
        sim.exit("app", 1);
        sim.exit("side", 1);
    }
    assert_eq!(sim.state("app"), "waiting:CrashLoopBackOff");
    assert_eq!(sim.state("side"), "waiting:CrashLoopBackOff");
    assert_eq!(sim.cond("Initialized"), "False/ContainersNotInitialized");
    assert_eq!(
        sim.condition("Initialized").message.as_deref(),
        Some("containers with incomplete status: [side]")
    );
    sim.advance(10.0);
    assert_eq!(sim.cond("Initialized"), "True");
}

#[test]
fn rule_3_14_a_status_change_probes_readiness_at_once() {
    let app = with_probe(
        c("app"),
        "readinessProbe",
        exec_probe(json!({"periodSeconds": 60, "failureThreshold": 1})),
    );
    let mut sim = Sim::new(pod(json!({"spec": {"containers": [app, c("other")]}})));
    // Both starts changed the status: probes asked for then are answered in turn.
    while sim.probe("app", Readiness, Success) > 0 {}
    assert!(sim.cs("app").ready);
    assert_eq!(
        sim.log
            .iter()
            .filter(|(_, c)| matches!(c, Command::RunProbe { .. }))
            .count(),
        2,
        "one probe per status change while not ready"
    );
    sim.advance(60.0);
    sim.probe("app", Readiness, Failure);
    assert!(!sim.cs("app").ready);
    assert!(
        sim.has_probe("app", Readiness),
        "the status changed: probed again without waiting a period"
    );
    sim.probe("app", Readiness, Failure);
    assert!(
        !sim.has_probe("app", Readiness),
        "an unchanged status asks nothing"
    );
    sim.advance(1.0);
    sim.exit("other", 1);
    assert!(
        sim.has_probe("app", Readiness),
        "another container's change probes it too"
    );
}

#[test]
fn rule_9_6_a_signalled_exit_shows_its_code_and_no_signal() {
    let mut sim = Sim::new(pod(
        json!({"spec": {"restartPolicy": "Never", "containers": [c("app")]}}),
    ));
    sim.exit_with("app", ExitStatus::Signaled(9));
    let t = sim.cs("app").state.unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.signal), (137, None));
}

#[test]
fn rule_7_9_every_sync_in_back_off_records_the_event() {
    let mut sim = one(c("app"));
    for wait in [0.0, 10.0, 20.0] {
        sim.exit("app", 1);
        sim.advance(wait);
    }
    let before = sim.events().iter().filter(|e| e.reason == "BackOff").count();
    sim.exit("app", 1);
    assert_eq!(
        sim.cs("app").state.unwrap().waiting.unwrap().message.as_deref(),
        Some("back-off 40s restarting failed container=app pod=p_default(uid-1)")
    );
    sim.advance(40.0);
    assert_eq!(sim.state("app"), "running");
    let during = sim.events().iter().filter(|e| e.reason == "BackOff").count() - before;
    assert_eq!(during, 4, "at the exit and every 10s after it");
}

#[test]
fn rule_14_2_transition_times_survive_a_node_restart() {
    let mut sim = one(c("app"));
    sim.advance(100.0);
    let restarted_at = sim.now + Duration::from_secs(5);
    let mut fresh = PodMachine::new(&sim.m.pod(), restarted_at);
    fresh.step(restarted_at, Input::Tick);
    let transition = |type_: &str| {
        let c = fresh
            .status()
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_);
        c.and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.as_second())
    };
    for type_ in ["PodScheduled", "Initialized"] {
        assert_eq!(transition(type_), Some(T0), "{type_} did not change");
    }
    assert_eq!(
        transition("PodReadyToStartContainers"),
        Some(restarted_at.as_secs()),
        "the sandbox is gone: that one changed"
    );
}

#[test]
fn rule_10_4_a_finished_pod_keeps_its_status_over_a_node_restart() {
    let mut sim = Sim::new(pod(
        json!({"spec": {"restartPolicy": "Never", "containers": [c("app")]}}),
    ));
    sim.exit("app", 3);
    assert_eq!(sim.phase(), "Failed");
    let restarted_at = sim.now + Duration::from_secs(60);
    let mut fresh = PodMachine::new(&sim.m.pod(), restarted_at);
    assert!(fresh.is_finished());
    assert_eq!(fresh.status(), sim.m.status(), "the exit code is not lost");
    // The node tells a restored machine its address; nothing else changes.
    let revision = fresh.status_revision();
    fresh.set_host_ip("192.0.2.1");
    assert_eq!(fresh.status().host_ip.as_deref(), Some("192.0.2.1"));
    assert_eq!(fresh.status_revision(), revision + 1, "the address is a change");
    fresh.set_host_ip("192.0.2.1");
    assert_eq!(
        fresh.status_revision(),
        revision + 1,
        "the same address again is none"
    );
    assert_eq!(
        fresh.status().container_statuses,
        sim.m.status().container_statuses
    );
    assert_eq!(fresh.status().conditions, sim.m.status().conditions);
}

#[test]
fn rule_11_5_a_create_error_after_a_back_off_sets_no_timer_in_the_past() {
    let mut sim = one(c("app"));
    sim.exit("app", 1);
    sim.exit("app", 1);
    assert_eq!(sim.state("app"), "waiting:CrashLoopBackOff");
    sim.config_error_next_start.push("app".into());
    sim.advance(10.0);
    assert_eq!(sim.state("app"), "waiting:CreateContainerConfigError");
    assert!(
        sim.m.next_wakeup() > Some(sim.now),
        "the node would tick without pause until the retry: {:?} at {:?}",
        sim.m.next_wakeup(),
        sim.now
    );
    sim.advance(10.0);
    assert_eq!(sim.state("app"), "running");
}
