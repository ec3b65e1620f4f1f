//! Property test: random pods driven through random histories, with the invariants that must
//! hold after every step (proptest-state-machine).
//!
//! The reference model is deliberately simple: it knows the pod spec and whether the pod was
//! deleted, nothing else. The system under test is a `PodMachine` inside the simulated node
//! of `support` (sandbox, starts and stops answered at once). Transitions pick their target
//! among whatever is live at the time they are applied, so they need no preconditions.

use std::collections::BTreeMap;

use podvisor_core::corev1::ContainerStatus;
use podvisor_core::{ExitStatus, HookResult, ProbeKind, ProbeOutcome, ProbeResult};
use podvisor_lifecycle::{Command, Input};
use podvisor_test_support::{Auto, Sim, pod};
use proptest::prelude::*;
use proptest::test_runner::Config;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use serde_json::json;

/// One container of a generated pod.
#[derive(Clone, Debug)]
struct ContainerGen {
    name: String,
    sidecar: bool,
    readiness: Option<(u32, u32, u32)>,
    liveness: Option<(u32, u32)>,
    startup: bool,
    pre_stop: bool,
    post_start: bool,
}

/// A generated pod.
#[derive(Clone, Debug)]
struct PodGen {
    policy: &'static str,
    init: Vec<ContainerGen>,
    regular: Vec<ContainerGen>,
    grace: i64,
    hooks_fail: bool,
}

impl PodGen {
    fn to_json(&self) -> serde_json::Value {
        let container = |c: &ContainerGen, init: bool| {
            let mut v = json!({"name": c.name, "image": "img", "command": ["run"]});
            if c.sidecar {
                v["restartPolicy"] = json!("Always");
            }
            let probes_allowed = !init || c.sidecar;
            if probes_allowed {
                if let Some((period, success, failure)) = c.readiness {
                    v["readinessProbe"] = json!({"exec": {"command": ["ok"]}, "periodSeconds": period,
                        "successThreshold": success, "failureThreshold": failure});
                }
                if let Some((period, failure)) = c.liveness {
                    v["livenessProbe"] = json!({"exec": {"command": ["ok"]}, "periodSeconds": period,
                        "failureThreshold": failure});
                }
                if c.startup {
                    v["startupProbe"] =
                        json!({"exec": {"command": ["ok"]}, "periodSeconds": 1, "failureThreshold": 3});
                }
                let mut lifecycle = json!({});
                if c.pre_stop {
                    lifecycle["preStop"] = json!({"exec": {"command": ["drain"]}});
                }
                if c.post_start {
                    lifecycle["postStart"] = json!({"exec": {"command": ["warm"]}});
                }
                v["lifecycle"] = lifecycle;
            }
            v
        };
        json!({"spec": {
            "restartPolicy": self.policy,
            "terminationGracePeriodSeconds": self.grace,
            "initContainers": self.init.iter().map(|c| container(c, true)).collect::<Vec<_>>(),
            "containers": self.regular.iter().map(|c| container(c, false)).collect::<Vec<_>>(),
        }})
    }

    fn names(&self) -> Vec<String> {
        self.init
            .iter()
            .chain(&self.regular)
            .map(|c| c.name.clone())
            .collect()
    }

    fn readiness_thresholds(&self, name: &str) -> Option<(u32, u32)> {
        let init = self.init.iter().filter(|c| c.sidecar);
        init.chain(&self.regular)
            .find(|c| c.name == name)
            .and_then(|c| c.readiness.map(|r| (r.1, r.2)))
    }
}

fn container_gen(
    prefix: &'static str,
    index: usize,
    may_be_sidecar: bool,
) -> impl Strategy<Value = ContainerGen> {
    (
        proptest::bool::weighted(if may_be_sidecar { 0.4 } else { 0.0 }),
        proptest::option::of((1u32..10, 1u32..3, 1u32..4)),
        proptest::option::of((1u32..10, 1u32..4)),
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.3),
        proptest::bool::weighted(0.2),
    )
        .prop_map(
            move |(sidecar, readiness, liveness, startup, pre_stop, post_start)| ContainerGen {
                name: format!("{prefix}-{index}"),
                sidecar,
                readiness,
                liveness,
                startup,
                pre_stop,
                post_start,
            },
        )
}

fn pod_gen() -> impl Strategy<Value = PodGen> {
    (
        prop_oneof![Just("Always"), Just("OnFailure"), Just("Never")],
        0usize..3,
        1usize..3,
        prop_oneof![Just(0i64), Just(5), Just(30)],
        proptest::bool::weighted(0.2),
    )
        .prop_flat_map(|(policy, n_init, n_regular, grace, hooks_fail)| {
            let init: Vec<_> = (0..n_init).map(|i| container_gen("init", i, true)).collect();
            let regular: Vec<_> = (0..n_regular).map(|i| container_gen("app", i, false)).collect();
            (init, regular).prop_map(move |(init, regular)| PodGen {
                policy,
                init,
                regular,
                grace,
                hooks_fail,
            })
        })
}

#[derive(Clone, Debug)]
enum Transition {
    /// Time passes (milliseconds).
    Tick(u64),
    /// The `n`th running container (modulo) exits.
    Exit(usize, ExitStatus),
    /// The `n`th pending probe (modulo) is answered.
    Probe(usize, Outcome),
    /// The next start of the `n`th container fails.
    BreakStart(usize),
    /// The next start of the `n`th container finds a config reference missing.
    BreakConfig(usize),
    /// ConfigMaps or Secrets changed.
    ConfigChanged,
    SandboxLost,
    Delete(Option<i64>),
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Success,
    Failure,
    Error,
}

#[derive(Clone, Debug)]
struct RefState {
    pod: PodGen,
    deleted: bool,
}

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = RefState;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<RefState> {
        pod_gen().prop_map(|pod| RefState { pod, deleted: false }).boxed()
    }

    fn transitions(_state: &RefState) -> BoxedStrategy<Transition> {
        let exit = prop_oneof![
            3 => (0i32..3).prop_map(ExitStatus::Exited),
            1 => Just(ExitStatus::Signaled(9)),
            1 => Just(ExitStatus::OomKilled),
        ];
        let outcome =
            prop_oneof![4 => Just(Outcome::Success), 4 => Just(Outcome::Failure), 1 => Just(Outcome::Error)];
        prop_oneof![
            6 => prop_oneof![3 => 0u64..3_000, 2 => 3_000u64..30_000, 1 => 30_000u64..700_000].prop_map(Transition::Tick),
            4 => (0usize..4, exit).prop_map(|(n, e)| Transition::Exit(n, e)),
            6 => (0usize..8, outcome).prop_map(|(n, o)| Transition::Probe(n, o)),
            1 => (0usize..4).prop_map(Transition::BreakStart),
            1 => (0usize..4).prop_map(Transition::BreakConfig),
            1 => Just(Transition::ConfigChanged),
            1 => Just(Transition::SandboxLost),
            1 => proptest::option::of(0i64..40).prop_map(Transition::Delete),
        ]
        .boxed()
    }

    fn apply(mut state: RefState, transition: &Transition) -> RefState {
        if let Transition::Delete(_) = transition {
            state.deleted = true;
        }
        state
    }
}

/// The system under test and what the invariants need to remember.
struct Harness {
    sim: Sim,
    pod: PodGen,
    restart_counts: BTreeMap<String, i32>,
    terminal: Option<String>,
    /// Raw readiness results accepted for each container, in order.
    readiness_history: BTreeMap<String, Vec<bool>>,
    deleted: bool,
    commands_seen: usize,
}

struct LifecycleTest;

impl StateMachineTest for LifecycleTest {
    type SystemUnderTest = Harness;
    type Reference = Reference;

    fn init_test(state: &RefState) -> Harness {
        let auto = Auto {
            hook_result: if state.pod.hooks_fail {
                HookResult::Failed("exit 1".into())
            } else {
                HookResult::Succeeded
            },
            ..Auto::default()
        };
        let sim = Sim::with(pod(state.pod.to_json()), auto);
        let mut harness = Harness {
            sim,
            pod: state.pod.clone(),
            restart_counts: BTreeMap::new(),
            terminal: None,
            readiness_history: BTreeMap::new(),
            deleted: false,
            commands_seen: 0,
        };
        check_invariants(&mut harness);
        harness
    }

    fn apply(mut h: Harness, _state: &RefState, transition: Transition) -> Harness {
        match transition {
            Transition::Tick(ms) => h.sim.advance(ms as f64 / 1000.0),
            Transition::Exit(n, status) => {
                let running: Vec<String> = h.sim.running.keys().cloned().collect();
                if !running.is_empty() {
                    let name = running[n % running.len()].clone();
                    h.sim.exit_with(&name, status);
                }
            }
            Transition::Probe(n, outcome) => {
                if !h.sim.probes.is_empty() {
                    let (name, id, kind) = h.sim.probes.remove(n % h.sim.probes.len());
                    let result = match outcome {
                        Outcome::Success => ProbeResult::new(ProbeOutcome::Success, "ok"),
                        Outcome::Failure => ProbeResult::new(ProbeOutcome::Failure, "nope"),
                        Outcome::Error => ProbeResult::errored("port not found"),
                    };
                    // The model counts results for the newest instance, running or not (a probe that
                    // was under way when the container died still counts, as in the kubelet).
                    let current = h.sim.last_id.get(&name) == Some(&id);
                    if kind == ProbeKind::Readiness && current && result.error.is_none() && !h.sim.finished {
                        let success = matches!(outcome, Outcome::Success);
                        h.readiness_history.entry(name.clone()).or_default().push(success);
                    }
                    h.sim.input(Input::ProbeResult {
                        name,
                        id,
                        kind,
                        result,
                    });
                }
            }
            Transition::BreakStart(n) => {
                let names = h.pod.names();
                h.sim.fail_next_start.push(names[n % names.len()].clone());
            }
            Transition::BreakConfig(n) => {
                let names = h.pod.names();
                h.sim.config_error_next_start.push(names[n % names.len()].clone());
            }
            Transition::ConfigChanged => h.sim.input(Input::ConfigChanged),
            Transition::SandboxLost => h.sim.input(Input::SandboxLost),
            Transition::Delete(grace) => {
                h.deleted = true;
                h.sim.delete(grace);
                assert!(
                    h.sim.finished,
                    "with a runtime that answers at once, deletion finishes at once"
                );
            }
        }
        check_invariants(&mut h);
        h
    }
}

fn exit_code(cs: &ContainerStatus) -> Option<i32> {
    cs.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

fn check_invariants(h: &mut Harness) {
    let status = h.sim.m.status().clone();
    let phase = status.phase.clone().unwrap_or_default();
    let init: Vec<ContainerStatus> = status.init_container_statuses.clone().unwrap_or_default();
    let regular: Vec<ContainerStatus> = status.container_statuses.clone().unwrap_or_default();

    // Terminal phases absorb.
    if let Some(t) = &h.terminal {
        assert_eq!(&phase, t, "a terminal phase changed");
    }
    if phase == "Succeeded" || phase == "Failed" {
        h.terminal = Some(phase.clone());
        // Nothing runs after Succeeded/Failed; the pod was torn down.
        assert!(
            h.sim.running.is_empty(),
            "containers still run in a {phase} pod: {:?}",
            h.sim.running
        );
        assert!(h.sim.finished, "a {phase} pod was not torn down");
    }

    // Restart counts never decrease.
    for cs in init.iter().chain(&regular) {
        let previous = h
            .restart_counts
            .insert(cs.name.clone(), cs.restart_count)
            .unwrap_or(0);
        assert!(
            cs.restart_count >= previous,
            "restart count of {} went from {previous} to {}",
            cs.name,
            cs.restart_count
        );
    }

    // No app container runs before every regular init container has succeeded.
    let app_running = h.pod.regular.iter().any(|c| h.sim.running.contains_key(&c.name));
    if app_running {
        for (c, cs) in h.pod.init.iter().zip(&init) {
            if !c.sidecar {
                assert_eq!(
                    exit_code(cs),
                    Some(0),
                    "app runs but init container {} has not succeeded",
                    c.name
                );
            }
        }
    }

    // Nothing starts after the pod finished, and nothing restarts under Never (sidecars aside).
    let commands = &h.sim.log[h.commands_seen..];
    let mut finished_at = None;
    for (i, (_, cmd)) in h.sim.log.iter().enumerate() {
        if *cmd == Command::PodFinished {
            finished_at.get_or_insert(i);
        }
    }
    if let Some(f) = finished_at {
        assert!(
            !h.sim.log[f..]
                .iter()
                .any(|(_, c)| matches!(c, Command::StartContainer { .. } | Command::CreateSandbox)),
            "something started after PodFinished"
        );
    }
    let _ = commands;
    h.commands_seen = h.sim.log.len();
    if h.pod.policy == "Never" {
        for c in h.pod.init.iter().chain(&h.pod.regular).filter(|c| !c.sidecar) {
            // Attempts that failed before the container existed (CreateContainerConfigError)
            // are retried under any policy: the container never ran.
            let never_ran = h.sim.create_failed.iter().filter(|n| **n == c.name).count();
            let starts = h.sim.starts_of(&c.name).len() - never_ran;
            assert!(
                starts <= 1,
                "{} started {starts} times under restartPolicy Never",
                c.name
            );
        }
    }

    // No container is ready before its readiness probe succeeded successThreshold times in a
    // row, nor after failureThreshold failures in a row.
    for cs in init.iter().chain(&regular).filter(|cs| cs.ready) {
        if let Some((success, failure)) = h.pod.readiness_thresholds(&cs.name) {
            let history = h.readiness_history.get(&cs.name).cloned().unwrap_or_default();
            let (s, f) = (success as usize, failure as usize);
            let had_streak = history.windows(s).any(|w| w.iter().all(|ok| *ok));
            let failed_out = history.len() >= f && history[history.len() - f..].iter().all(|ok| !*ok);
            assert!(
                had_streak && !failed_out,
                "{} is ready but its readiness results were {history:?} (thresholds {s}/{f})",
                cs.name
            );
        }
        assert!(
            h.sim.running.contains_key(&cs.name)
                || h.pod.init.iter().any(|c| c.name == cs.name && !c.sidecar),
            "{} is ready but not running",
            cs.name
        );
    }

    // The phase agrees with the restart policy and the exit codes.
    if phase == "Succeeded" {
        for cs in &regular {
            assert_eq!(exit_code(cs), Some(0), "Succeeded but {} did not exit 0", cs.name);
        }
    }
    if !h.deleted {
        match h.pod.policy {
            "Always" => assert!(
                phase != "Succeeded" && phase != "Failed",
                "an Always pod became {phase}"
            ),
            "OnFailure" => assert_ne!(phase, "Failed", "an OnFailure pod failed"),
            _ => {}
        }
    }
    if phase == "Failed" && h.pod.policy == "Never" && !h.deleted {
        let any_failed = init
            .iter()
            .chain(&regular)
            .any(|cs| exit_code(cs).is_some_and(|c| c != 0));
        assert!(any_failed, "a Never pod failed with no failed container");
    }
    // kubectl's columns can always be computed.
    let row = podvisor_lifecycle::printer::pod_row(&h.sim.m.pod(), h.sim.now);
    assert!(!row.status.is_empty());
}

prop_state_machine! {
    #![proptest_config(Config {
        // CI runs at least 256 cases (the default, or PROPTEST_CASES).
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("regressions"))),
        .. Config::default()
    })]

    #[test]
    fn lifecycle_invariants_hold(sequential 30..60 => LifecycleTest);
}
