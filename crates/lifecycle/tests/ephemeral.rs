//! Ephemeral containers (`kubectl debug`): added to a running pod through a pod update, started
//! once, never restarted, shown in `ephemeralContainerStatuses`, and never part of the pod's
//! readiness or phase (`streaming-and-apply.md` rules 5.1-5.5).

use podvisor_core::corev1::{EphemeralContainer, Pod};
use podvisor_lifecycle::Input;
use podvisor_test_support::{Sim, c, pod};
use serde_json::json;

fn with_debugger(p: &Pod, name: &str) -> Pod {
    let mut p = p.clone();
    let spec = p.spec.as_mut().unwrap();
    spec.ephemeral_containers
        .get_or_insert_with(Vec::new)
        .push(EphemeralContainer {
            name: name.into(),
            image: Some("busybox".into()),
            command: Some(vec!["sh".into()]),
            target_container_name: Some("app".into()),
            ..EphemeralContainer::default()
        });
    p
}

fn ephemeral_names(sim: &Sim) -> Vec<String> {
    sim.m
        .status()
        .ephemeral_container_statuses
        .iter()
        .flatten()
        .map(|cs| cs.name.clone())
        .collect()
}

#[test]
fn an_added_ephemeral_container_starts_once_and_is_never_restarted() {
    let p = pod(json!({"spec": {"containers": [c("app")]}}));
    let mut sim = Sim::new(p.clone());
    assert_eq!(sim.phase(), "Running");
    assert!(sim.m.status().ephemeral_container_statuses.is_none());

    sim.input(Input::PodUpdated(Box::new(with_debugger(&p, "debugger"))));
    assert_eq!(sim.starts_of("debugger").len(), 1);
    assert_eq!(sim.state("debugger"), "running");
    assert_eq!(ephemeral_names(&sim), ["debugger"]);
    // Not an app container: the pod's readiness and its container list are unchanged.
    assert!(!sim.cs("debugger").ready);
    assert_eq!(sim.cond("Ready"), "True");
    assert_eq!(sim.m.status().container_statuses.as_ref().unwrap().len(), 1);

    // It exits non-zero in an `Always` pod: it stays terminated.
    sim.exit("debugger", 3);
    sim.advance(600.0);
    assert_eq!(sim.starts_of("debugger").len(), 1);
    assert_eq!(sim.state("debugger"), "terminated:Error:3");
    assert_eq!(sim.cs("debugger").restart_count, 0);
    assert_eq!(sim.phase(), "Running");
    assert_eq!(sim.cond("Ready"), "True");

    // A second one is added; the first is not started again.
    let both = with_debugger(&with_debugger(&p, "debugger"), "debugger-2");
    sim.input(Input::PodUpdated(Box::new(both)));
    assert_eq!(sim.starts_of("debugger").len(), 1);
    assert_eq!(sim.starts_of("debugger-2").len(), 1);
    assert_eq!(ephemeral_names(&sim), ["debugger", "debugger-2"]);
}

#[test]
fn ephemeral_containers_are_stopped_with_the_pod_and_do_not_decide_its_phase() {
    let p = pod(json!({"spec": {"restartPolicy": "Never", "containers": [c("app")]}}));
    let mut sim = Sim::new(p.clone());
    sim.input(Input::PodUpdated(Box::new(with_debugger(&p, "debugger"))));
    assert_eq!(sim.state("debugger"), "running");
    // The app container ends: the pod is done although the debugger still runs, which is
    // stopped with it.
    sim.exit("app", 0);
    sim.advance(60.0);
    assert_eq!(sim.phase(), "Succeeded");
    assert!(
        sim.state("debugger").starts_with("terminated:"),
        "{}",
        sim.state("debugger")
    );
}

#[test]
fn an_ephemeral_container_starts_before_initialisation_is_done() {
    let p = pod(json!({"spec": {
        "initContainers": [c("init")],
        "containers": [c("app")]
    }}));
    let mut sim = Sim::new(p.clone());
    assert_eq!(sim.state("init"), "running");
    sim.input(Input::PodUpdated(Box::new(with_debugger(&p, "debugger"))));
    assert_eq!(sim.state("debugger"), "running");
    assert_eq!(sim.state("app"), "waiting:PodInitializing");
}
