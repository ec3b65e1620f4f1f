//! `PodMachine::adopt`: a node restarts and finds the pod's sandbox and some of its container
//! instances still there (issue #18). Each test asserts on the commands the node receives and
//! the status a user sees (kubectl columns where they say it best); a property test checks that
//! adopting a running pod right after its status was taken changes nothing a user sees.
#![allow(
    clippy::disallowed_methods,
    reason = "a test reads PROPTEST_CASES from the environment"
)]

use std::time::Duration;

use podvisor_core::{ContainerId, ExitStatus, ProbeKind, ProbeOutcome};
use podvisor_lifecycle::printer::pod_row;
use podvisor_lifecycle::{Adopted, AdoptedExit, Command, Input, PodMachine, Time};
use podvisor_test_support::{Auto, Sim, c, pod};
use proptest::prelude::*;
use serde_json::json;

use ProbeKind::{Liveness, Readiness};
use ProbeOutcome::{Failure, Success};

const IP: &str = "10.88.0.7";

fn probed(name: &str) -> serde_json::Value {
    let mut v = c(name);
    v["readinessProbe"] = json!({"exec": {"command": ["ready"]}, "periodSeconds": 5, "failureThreshold": 1});
    v["livenessProbe"] = json!({"exec": {"command": ["alive"]}, "periodSeconds": 10, "failureThreshold": 1});
    v
}

fn sidecar(name: &str) -> serde_json::Value {
    let mut v = c(name);
    v["restartPolicy"] = json!("Always");
    v
}

/// What a runtime would find of `sim`'s pod now: every running instance, with its restart index
/// and start time as the status shows them.
fn survivors(sim: &Sim) -> Vec<Adopted> {
    sim.running
        .iter()
        .map(|(name, id)| {
            let cs = sim.cs(name);
            let started_at = cs
                .state
                .as_ref()
                .and_then(|s| s.running.as_ref())
                .and_then(|r| r.started_at.as_ref())
                .map(Time::from_k8s)
                .unwrap_or_else(|| panic!("{name} is not running"));
            Adopted {
                name: name.clone(),
                id: id.clone(),
                restart_count: cs.restart_count,
                started_at,
                ended: None,
            }
        })
        .collect()
}

/// The node restarts `secs` after `sim`'s now and adopts `adopted`.
fn restart(sim: &Sim, secs: u64, adopted: &[Adopted]) -> Sim {
    let now = sim.now + Duration::from_secs(secs);
    Sim::adopt(sim.m.pod(), now, Some(IP.into()), adopted, Auto::default())
}

fn creates_or_starts(sim: &Sim) -> Vec<Command> {
    sim.log
        .iter()
        .map(|(_, c)| c.clone())
        .filter(|c| matches!(c, Command::CreateSandbox | Command::StartContainer { .. }))
        .collect()
}

fn started_at(sim: &Sim, name: &str) -> Option<i64> {
    let state = sim.cs(name).state?;
    Some(state.running?.started_at?.0.as_second())
}

fn ago(now: Time, secs: i64) -> Time {
    Time::from_millis(now.as_millis() - secs * 1000)
}

fn ended(id: &str, restart_count: i32, started: Time, status: ExitStatus, finished: Time) -> Adopted {
    Adopted {
        name: "app".into(),
        id: ContainerId(id.into()),
        restart_count,
        started_at: started,
        ended: Some(AdoptedExit {
            status,
            finished_at: finished,
            message: Some("bye".into()),
        }),
    }
}

/// A running `app` that restarted once and is ready.
fn ready_app() -> Sim {
    let mut sim = Sim::new(pod(json!({"spec": {"containers": [probed("app")]}})));
    sim.probe("app", Readiness, Success);
    sim.exit("app", 1);
    sim.advance(3.0);
    sim.probe("app", Readiness, Success);
    sim.probe("app", Liveness, Success);
    assert_eq!(sim.cond("Ready"), "True");
    assert_eq!(sim.cs("app").restart_count, 1);
    sim
}

/// The start time shown is the one the runtime reports, which a restarted node finds again in
/// its records, not the time the answer reached the model: across a second's boundary the two
/// differ, and the pod's `startedAt` would change with the node's restart.
#[test]
fn the_start_time_shown_is_the_runtimes_and_a_restart_keeps_it() {
    let mut sim = Sim::with(
        pod(json!({"spec": {"containers": [c("app")]}})),
        Auto {
            start: false,
            ..Auto::default()
        },
    );
    // The runtime starts the process 0.6 s in; its answer arrives 0.6 s later.
    let started = sim.now + Duration::from_millis(600);
    sim.advance(1.2);
    sim.answer_start_at("app", started);
    assert_eq!(sim.state("app"), "running");
    assert_eq!(started_at(&sim, "app"), Some(started.as_secs()));
    assert_ne!(
        started.as_secs(),
        sim.now.as_secs(),
        "the answer came a second later"
    );
    let after = restart(&sim, 30, &survivors(&sim));
    assert_eq!(started_at(&after, "app"), Some(started.as_secs()));
}

#[test]
fn a_running_instance_keeps_its_id_start_time_count_and_readiness() {
    let before = ready_app();
    let adopted = survivors(&before);
    let after = restart(&before, 30, &adopted);
    assert_eq!(creates_or_starts(&after), [], "no sandbox, no start");
    let (old, new) = (before.cs("app"), after.cs("app"));
    assert_eq!(new.container_id, old.container_id);
    assert_eq!(new.container_id, Some(adopted[0].id.uri()));
    assert_eq!(started_at(&after, "app"), started_at(&before, "app"));
    assert_eq!(new.restart_count, 1, "no restart is counted");
    assert_eq!(
        new.last_state, old.last_state,
        "the exit before the crash is kept"
    );
    assert!(new.ready && new.started == Some(true));
    assert_eq!(after.phase(), "Running");
    assert_eq!(after.m.status().pod_ip.as_deref(), Some(IP));
    for type_ in [
        "Ready",
        "ContainersReady",
        "PodReadyToStartContainers",
        "Initialized",
    ] {
        assert_eq!(after.cond(type_), "True", "{type_}");
        assert_eq!(
            after.condition(type_).last_transition_time,
            before.condition(type_).last_transition_time,
            "{type_} did not flap"
        );
    }
    let (row_before, row_after) = (
        pod_row(&before.m.pod(), after.now),
        pod_row(&after.m.pod(), after.now),
    );
    assert_eq!(
        (row_after.ready.as_str(), row_after.status.as_str()),
        ("1/1", "Running")
    );
    assert_eq!(row_after.restarts, row_before.restarts);
    let unknown = after.m.status().container_statuses.iter().flatten().any(|cs| {
        let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        last.and_then(|t| t.reason.as_deref()) == Some("ContainerStatusUnknown")
    });
    assert!(!unknown, "never ContainerStatusUnknown");
}

#[test]
fn probes_resume_at_once_and_act_as_usual() {
    let before = ready_app();
    let adopted = survivors(&before);
    let mut after = restart(&before, 30, &adopted);
    let id = adopted[0].id.clone();
    let probed: Vec<_> = after
        .probes
        .iter()
        .map(|(n, i, k)| (n.clone(), i.clone(), *k))
        .collect();
    assert!(
        probed.contains(&("app".into(), id.clone(), Readiness)),
        "{probed:?}"
    );
    assert!(
        probed.contains(&("app".into(), id.clone(), Liveness)),
        "{probed:?}"
    );
    // Readiness failing now makes it unready, as usual.
    after.probe("app", Readiness, Failure);
    assert_eq!(after.cond("Ready"), "False/ContainersNotReady");
    assert_eq!(pod_row(&after.m.pod(), after.now).ready, "0/1");
    // Liveness failing kills the adopted instance and restarts it, counted.
    after.probe("app", Liveness, Failure);
    assert!(
        after
            .log
            .iter()
            .any(|(_, c)| matches!(c, Command::StopContainer { id: stopped, .. } if *stopped == id)),
        "the adopted instance is stopped"
    );
    after.advance(1.0);
    assert_eq!(after.state("app"), "running");
    assert_ne!(after.running.get("app"), Some(&id));
    assert_eq!(after.cs("app").restart_count, 2);
}

#[test]
fn readiness_is_not_carried_over_from_another_instance() {
    let before = ready_app();
    let mut adopted = survivors(&before);
    // The previous node started a newer instance it never reported.
    adopted[0].id = ContainerId("app-newer".into());
    adopted[0].restart_count = 2;
    let mut after = restart(&before, 30, &adopted);
    assert_eq!(after.cs("app").restart_count, 2);
    assert!(!after.cs("app").ready, "nothing said this instance was ready");
    after.probe("app", Readiness, Success);
    assert!(after.cs("app").ready);
    assert_eq!(after.cond("Ready"), "True");
}

#[test]
fn an_exit_after_adoption_restarts_per_policy() {
    let before = ready_app();
    let adopted = survivors(&before);
    let mut after = restart(&before, 30, &adopted);
    after.exit("app", 2);
    let cs = after.cs("app");
    let last = cs.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 2);
    assert_eq!(last.container_id, Some(adopted[0].id.uri()));
    assert_eq!(
        last.started_at.map(|t| t.0.as_second()),
        Some(adopted[0].started_at.as_secs())
    );
    // Restart index 1 crashed quickly: a 10 s back-off (rule 7.10).
    assert_eq!(after.kubectl_status(), "CrashLoopBackOff");
    after.advance(10.0);
    assert_eq!(after.state("app"), "running");
    assert_eq!(after.cs("app").restart_count, 2);
}

#[test]
fn an_instance_that_ended_while_away_shows_its_real_exit_and_then_backs_off() {
    let before = ready_app();
    let now = before.now + Duration::from_secs(60);
    let started = ago(now, 50);
    let finished = ago(now, 5);
    let adopted = [ended("app-gone", 2, started, ExitStatus::Exited(3), finished)];
    let mut after = Sim::adopt(before.m.pod(), now, Some(IP.into()), &adopted, Auto::default());
    assert_eq!(
        creates_or_starts(&after),
        [],
        "restart index 2: a 20 s back-off first"
    );
    let cs = after.cs("app");
    assert_eq!(cs.restart_count, 2);
    let t = cs.last_state.unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    assert_eq!(t.message.as_deref(), Some("bye"));
    assert_eq!(t.container_id, Some(ContainerId("app-gone".into()).uri()));
    assert_eq!(t.started_at.map(|t| t.0.as_second()), Some(started.as_secs()));
    assert_eq!(
        t.finished_at.map(|t| t.0.as_second()),
        Some(finished.as_secs()),
        "not now"
    );
    assert_eq!(after.kubectl_status(), "CrashLoopBackOff");
    // The back-off counts from finishedAt: 20 s after it, 15 s after the node came back.
    after.advance(14.0);
    assert!(after.starts_of("app").is_empty());
    after.advance(1.0);
    assert_eq!(after.starts_of("app"), [finished + Duration::from_secs(20)]);
    assert_eq!(after.cs("app").restart_count, 3, "counted once");
}

#[test]
fn an_instance_that_ran_long_before_ending_restarts_at_once() {
    let before = ready_app();
    let now = before.now + Duration::from_secs(3600);
    let adopted = [ended(
        "app-gone",
        5,
        ago(now, 2000),
        ExitStatus::Exited(1),
        ago(now, 10),
    )];
    let after = Sim::adopt(before.m.pod(), now, Some(IP.into()), &adopted, Auto::default());
    assert_eq!(
        after.starts_of("app"),
        [now],
        "ten minutes of running reset the back-off (7.8)"
    );
    assert_eq!(after.cs("app").restart_count, 6);
}

#[test]
fn an_exit_reported_before_the_crash_is_not_counted_twice() {
    let mut before = Sim::new(pod(json!({"spec": {"containers": [c("app")]}})));
    before.exit("app", 1);
    before.exit("app", 1);
    // Instance 1 crashed and waits in back-off: the status already shows it.
    assert_eq!(before.kubectl_status(), "CrashLoopBackOff");
    let id = before.last_id["app"].clone();
    let shown = before.cs("app");
    assert_eq!(shown.restart_count, 1);
    let t = shown.last_state.unwrap().terminated.unwrap();
    let finished = Time::from_k8s(t.finished_at.as_ref().unwrap());
    let started = Time::from_k8s(t.started_at.as_ref().unwrap());
    let adopted = [Adopted {
        id: id.clone(),
        ..ended("", 1, started, ExitStatus::Exited(1), finished)
    }];
    let mut after = restart(&before, 2, &adopted);
    let cs = after.cs("app");
    assert_eq!(cs.restart_count, 1);
    assert_eq!(after.kubectl_status(), "CrashLoopBackOff");
    let last = cs.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.container_id, Some(id.uri()));
    after.advance(10.0);
    assert_eq!(after.state("app"), "running");
    let cs = after.cs("app");
    assert_eq!(cs.restart_count, 2, "one restart for one exit");
    let last = cs.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.container_id, Some(id.uri()), "lastState is that exit, once");
}

#[test]
fn with_nothing_to_restart_the_pod_ends_with_the_real_exit() {
    for (policy, status, phase, kubectl) in [
        ("Never", ExitStatus::Exited(3), "Failed", "Error"),
        ("OnFailure", ExitStatus::Exited(0), "Succeeded", "Completed"),
        ("Never", ExitStatus::OomKilled, "Failed", "OOMKilled"),
    ] {
        let before = Sim::new(pod(
            json!({"spec": {"restartPolicy": policy, "containers": [c("app")]}}),
        ));
        let now = before.now + Duration::from_secs(60);
        let adopted = [ended("app-1", 0, before.now, status, ago(now, 30))];
        let after = Sim::adopt(before.m.pod(), now, Some(IP.into()), &adopted, Auto::default());
        assert_eq!(after.phase(), phase, "{policy} {status:?}");
        assert_eq!(after.kubectl_status(), kubectl);
        assert!(after.finished);
        assert_eq!(creates_or_starts(&after), []);
        assert!(after.log.iter().any(|(_, c)| *c == Command::TeardownSandbox));
        let t = after.cs("app").state.unwrap().terminated.unwrap();
        assert_eq!(t.exit_code, status.code());
        assert_eq!(
            t.finished_at.map(|t| t.0.as_second()),
            Some(ago(now, 30).as_secs())
        );
    }
}

#[test]
fn completed_init_containers_do_not_run_again() {
    let mut before = Sim::new(pod(json!({"spec": {
        "initContainers": [c("setup")],
        "containers": [c("app")],
    }})));
    before.exit("setup", 0);
    assert_eq!(before.state("setup"), "terminated:Completed:0");
    assert_eq!(before.state("app"), "running");
    let after = restart(&before, 30, &survivors(&before));
    assert_eq!(creates_or_starts(&after), []);
    assert_eq!(after.state("setup"), "terminated:Completed:0");
    assert_eq!(after.cond("Initialized"), "True");
    assert_eq!(after.kubectl_status(), "Running");
}

#[test]
fn an_init_container_running_at_the_crash_is_adopted_and_init_goes_on() {
    let mut before = Sim::new(pod(json!({"spec": {
        "initContainers": [c("first"), c("second")],
        "containers": [c("app")],
    }})));
    before.exit("first", 0);
    assert_eq!(before.state("second"), "running");
    let mut after = restart(&before, 30, &survivors(&before));
    assert_eq!(creates_or_starts(&after), []);
    assert_eq!(after.kubectl_status(), "Init:1/2");
    after.exit("second", 0);
    assert_eq!(after.starts_of("app").len(), 1);
    assert!(after.starts_of("first").is_empty());
    assert_eq!(after.kubectl_status(), "Running");
}

#[test]
fn an_init_container_that_completed_while_away_lets_the_app_start() {
    let mut before = Sim::new(pod(json!({"spec": {
        "initContainers": [c("first"), c("second")],
        "containers": [c("app")],
    }})));
    before.exit("first", 0);
    let second = survivors(&before).remove(0);
    let now = before.now + Duration::from_secs(30);
    let done = Adopted {
        ended: Some(AdoptedExit {
            status: ExitStatus::Exited(0),
            finished_at: ago(now, 10),
            message: None,
        }),
        ..second
    };
    let after = Sim::adopt(before.m.pod(), now, Some(IP.into()), &[done], Auto::default());
    assert_eq!(after.sandbox_requests, 0);
    assert!(after.starts_of("first").is_empty() && after.starts_of("second").is_empty());
    assert_eq!(after.starts_of("app"), [now]);
    assert_eq!(after.state("second"), "terminated:Completed:0");
    assert_eq!(after.cs("second").restart_count, 0);
}

#[test]
fn a_started_container_is_not_startup_probed_again() {
    let mut app = probed("app");
    app["startupProbe"] = json!({"exec": {"command": ["up"]}, "periodSeconds": 1});
    let mut before = Sim::new(pod(json!({"spec": {"containers": [app]}})));
    before.advance(1.0);
    assert_eq!(before.probe("app", ProbeKind::Startup, Success), 1);
    before.probe("app", Readiness, Success);
    assert_eq!(before.cond("Ready"), "True");
    let after = restart(&before, 30, &survivors(&before));
    assert_eq!(after.cs("app").started, Some(true));
    assert_eq!(after.cond("Ready"), "True");
    assert!(
        !after.has_probe("app", ProbeKind::Startup),
        "its startup probe succeeded"
    );
    assert!(after.has_probe("app", Liveness) && after.has_probe("app", Readiness));
}

#[test]
fn running_sidecars_are_adopted_like_regular_containers() {
    let before = Sim::new(pod(json!({"spec": {
        "initContainers": [sidecar("proxy")],
        "containers": [c("app")],
    }})));
    assert_eq!(before.kubectl_ready(), "2/2");
    let mut after = restart(&before, 30, &survivors(&before));
    assert_eq!(creates_or_starts(&after), []);
    assert_eq!(after.kubectl_ready(), "2/2");
    assert_eq!(after.cs("proxy").container_id, before.cs("proxy").container_id);
    // A sidecar that ends after adoption is restarted (rule 15.3).
    after.exit("proxy", 1);
    assert_eq!(after.starts_of("proxy").len(), 1);
    assert_eq!(after.cs("proxy").restart_count, 1);
}

#[test]
fn an_initialized_pod_stays_initialized_while_a_sidecar_is_probed_again() {
    let mut proxy = sidecar("proxy");
    proxy["startupProbe"] = json!({"exec": {"command": ["up"]}, "periodSeconds": 1});
    let mut before = Sim::new(pod(json!({"spec": {
        "initContainers": [proxy],
        "containers": [c("app")],
    }})));
    before.advance(1.0);
    assert_eq!(before.probe("proxy", ProbeKind::Startup, Success), 1);
    assert_eq!(before.state("app"), "running");
    let mut adopted = survivors(&before);
    // The proxy's instance is one the status never showed: its startup probe runs again.
    let proxy = adopted.iter_mut().find(|a| a.name == "proxy").unwrap();
    proxy.id = ContainerId("proxy-unreported".into());
    proxy.restart_count = 1;
    let mut after = restart(&before, 30, &adopted);
    assert_eq!(after.cs("proxy").started, Some(false));
    assert!(after.has_probe("proxy", ProbeKind::Startup));
    // Initialisation is not waited for again: the app is restarted as usual meanwhile.
    after.exit("app", 1);
    assert_eq!(after.starts_of("app").len(), 1);
    assert_eq!(after.cond("Initialized"), "True");
}

#[test]
fn a_container_without_an_instance_is_restarted_in_the_surviving_sandbox() {
    let before = Sim::new(pod(json!({"spec": {"containers": [c("app"), c("web")]}})));
    let adopted: Vec<_> = survivors(&before)
        .into_iter()
        .filter(|a| a.name == "app")
        .collect();
    let after = restart(&before, 30, &adopted);
    assert_eq!(after.sandbox_requests, 0);
    assert!(after.starts_of("app").is_empty());
    assert_eq!(after.starts_of("web").len(), 1);
    let web = after.cs("web");
    assert_eq!(web.restart_count, 1, "rule 11.9: it vanished while running");
    let last = web.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.reason.as_deref(), Some("ContainerStatusUnknown"));
    assert_eq!(after.cs("app").restart_count, 0);
}

#[test]
fn a_terminal_pod_stays_terminal_and_what_survived_of_it_is_stopped() {
    let mut before = Sim::new(pod(
        json!({"spec": {"restartPolicy": "Never", "containers": [c("app")]}}),
    ));
    before.exit("app", 0);
    assert_eq!(before.phase(), "Succeeded");
    let now = before.now + Duration::from_secs(60);
    let stray = Adopted {
        name: "app".into(),
        id: ContainerId("app-zombie".into()),
        restart_count: 0,
        started_at: before.now,
        ended: None,
    };
    let mut m = PodMachine::adopt(
        &before.m.pod(),
        now,
        Some(IP.into()),
        std::slice::from_ref(&stray),
    );
    assert!(m.is_finished());
    assert_eq!(m.status(), before.m.status(), "the status is not touched");
    let first = m.step(now, Input::Tick);
    assert!(
        first
            .iter()
            .any(|c| matches!(c, Command::StopContainer { id, .. } if *id == stray.id)),
        "{first:?}"
    );
    assert!(first.contains(&Command::TeardownSandbox));
    assert_eq!(m.status(), before.m.status());
    assert_eq!(m.step(now, Input::Tick), [], "then it absorbs everything");
}

#[test]
fn instances_the_pod_does_not_have_are_stopped() {
    let before = ready_app();
    let mut adopted = survivors(&before);
    let older = Adopted {
        id: ContainerId("app-older".into()),
        restart_count: 0,
        ..adopted[0].clone()
    };
    let unknown = Adopted {
        name: "gone".into(),
        id: ContainerId("gone-1".into()),
        ..adopted[0].clone()
    };
    adopted.extend([older.clone(), unknown.clone()]);
    let after = restart(&before, 30, &adopted);
    let stopped: Vec<_> = after
        .log
        .iter()
        .filter_map(|(_, c)| match c {
            Command::StopContainer { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(stopped, [older.id, unknown.id]);
    assert_eq!(after.cs("app").container_id, Some(adopted[0].id.uri()));
    assert_eq!(after.state("app"), "running");
}

#[test]
fn deleting_an_adopted_pod_stops_its_instances_and_sandbox() {
    let before = ready_app();
    let adopted = survivors(&before);
    let mut after = restart(&before, 30, &adopted);
    after.delete(Some(5));
    assert!(after.finished);
    assert_eq!(after.stop_graces("app"), [Duration::from_secs(5)]);
    assert!(after.log.iter().any(|(_, c)| *c == Command::TeardownSandbox));
    assert_eq!(after.sandbox_requests, 0);
}

#[test]
fn a_pod_being_deleted_when_adopted_terminates() {
    let before = ready_app();
    let mut deleting = before.m.pod();
    deleting.metadata.deletion_timestamp = Some(before.now.to_k8s());
    deleting.metadata.deletion_grace_period_seconds = Some(7);
    let adopted = survivors(&before);
    let now = before.now + Duration::from_secs(3);
    let after = Sim::adopt(deleting, now, Some(IP.into()), &adopted, Auto::default());
    assert_eq!(after.stop_graces("app"), [Duration::from_secs(7)]);
    assert!(after.finished);
    assert!(creates_or_starts(&after).is_empty());
}

// ===== The property =====

/// A pod of one to three regular containers (some probed), maybe a sidecar and an init
/// container, driven through exits, probe results and time, then taken over.
/// (an init container?, a sidecar?, which regular containers are probed, the steps as (what,
/// which, seconds), how long after the last step the node comes back).
type Scenario = (bool, bool, Vec<bool>, Vec<(u8, u8, u8)>, u64);

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(any::<bool>(), 1..4),
        proptest::collection::vec((0u8..6, 0u8..4, 1u8..30), 0..25),
        1u64..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    /// Adopting a pod whose status was just taken, with its running instances, at a later time:
    /// the same restart counts, Ready, container IDs and `startedAt`; the first step creates no
    /// sandbox and starts none of the running containers again.
    #[test]
    fn adopting_a_running_pod_changes_nothing_a_user_sees(
        (with_init, with_sidecar, probed_regulars, steps, later) in scenario()
    ) {
        let names: Vec<String> = (0..probed_regulars.len()).map(|i| format!("app{i}")).collect();
        let containers: Vec<_> = names
            .iter()
            .zip(&probed_regulars)
            .map(|(n, p)| if *p { probed(n) } else { c(n) })
            .collect();
        let mut init = Vec::new();
        if with_init {
            init.push(c("setup"));
        }
        if with_sidecar {
            init.push(sidecar("proxy"));
        }
        let mut sim = Sim::new(pod(json!({"spec": {"initContainers": init, "containers": containers}})));
        for (what, which, secs) in steps {
            let running: Vec<String> = sim.running.keys().cloned().collect();
            let pick = |v: &[String]| v.get(usize::from(which) % v.len().max(1)).cloned();
            match what {
                0 => {
                    if let Some(n) = pick(&running) {
                        sim.exit(&n, i32::from(which % 2));
                    }
                }
                1 | 2 => {
                    let outcome = if what == 1 { Success } else { Failure };
                    let kind = if which % 2 == 0 { Readiness } else { Liveness };
                    if let Some(n) = pick(&names) {
                        sim.probe(&n, kind, outcome);
                    }
                }
                _ => sim.advance(f64::from(secs)),
            }
        }
        let before = sim.m.status().clone();
        let adopted = survivors(&sim);
        let now = sim.now + Duration::from_secs(later);
        let m = PodMachine::adopt(&sim.m.pod(), now, Some(IP.into()), &adopted);
        let taken = m.status();
        let statuses = |st: &podvisor_core::corev1::PodStatus| {
            st.init_container_statuses
                .iter()
                .flatten()
                .chain(st.container_statuses.iter().flatten())
                .map(|cs| (cs.name.clone(), cs.restart_count, cs.ready))
                .collect::<Vec<_>>()
        };
        prop_assert_eq!(statuses(taken), statuses(&before));
        let ready = |st: &podvisor_core::corev1::PodStatus| {
            st.conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Ready")
                .map(|c| (c.status.clone(), c.last_transition_time.clone()))
        };
        prop_assert_eq!(ready(taken), ready(&before));
        let mut after = Sim::adopt(sim.m.pod(), now, Some(IP.into()), &adopted, Auto::default());
        prop_assert_eq!(after.sandbox_requests, 0);
        for a in &adopted {
            prop_assert!(after.starts_of(&a.name).is_empty(), "{} started again", a.name);
            let cs = after.cs(&a.name);
            prop_assert_eq!(cs.container_id, Some(a.id.uri()));
            prop_assert_eq!(cs.restart_count, a.restart_count);
            prop_assert_eq!(started_at(&after, &a.name), Some(a.started_at.as_secs()));
        }
        // And it goes on as usual: every adopted instance can still end and be replaced.
        for a in &adopted {
            if after.running.get(&a.name) == Some(&a.id) {
                after.exit(&a.name, 1);
            }
        }
        after.advance(400.0);
        for a in &adopted {
            prop_assert!(!after.starts_of(&a.name).is_empty(), "{} was not restarted", a.name);
        }
    }
}
