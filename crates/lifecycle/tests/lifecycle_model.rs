//! Property tests: random pods driven through random histories (proptest-state-machine).
//!
//! The system under test is a `PodMachine` inside the simulated node of `podvisor-test-support`
//! (sandbox, starts and stops answered at once). Transitions pick their target among whatever is
//! live at the time they are applied, so they need no preconditions.
//!
//! `lifecycle_follows_the_model` checks after every step the invariants that must always hold,
//! and the machine against [`Model`]'s prediction: which containers run, how often each
//! restarted, the phase and the Ready condition. The model is an independent, plain rendering
//! of the kubelet's rules (sections 3, 5-8, 10, 14, 15), fed the same concrete events.
//!
//! Failures proptest finds are kept as seeds in `lifecycle_model.regressions`; seeds only replay
//! for the generator that found them, so each case worth keeping is also written out below as
//! an explicit `replay_*` test.
#![allow(
    clippy::disallowed_methods,
    reason = "a test reads PROPTEST_CASES from the environment"
)]

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
        .prop_flat_map(move |(policy, n_init, n_regular, grace, hooks_fail)| {
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

/// The generator: every kind of pod and event.
struct Reference;

fn exit_gen() -> impl Strategy<Value = ExitStatus> {
    prop_oneof![
        3 => (0i32..3).prop_map(ExitStatus::Exited),
        1 => Just(ExitStatus::Signaled(9)),
        1 => Just(ExitStatus::OomKilled),
    ]
}

fn outcome_gen() -> impl Strategy<Value = Outcome> {
    prop_oneof![4 => Just(Outcome::Success), 4 => Just(Outcome::Failure), 1 => Just(Outcome::Error)]
}

fn tick_gen() -> impl Strategy<Value = Transition> {
    prop_oneof![3 => 0u64..3_000, 2 => 3_000u64..30_000, 1 => 30_000u64..700_000].prop_map(Transition::Tick)
}

fn apply_ref(mut state: RefState, transition: &Transition) -> RefState {
    if let Transition::Delete(_) = transition {
        state.deleted = true;
    }
    state
}

impl ReferenceStateMachine for Reference {
    type State = RefState;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<RefState> {
        pod_gen().prop_map(|pod| RefState { pod, deleted: false }).boxed()
    }

    fn transitions(_state: &RefState) -> BoxedStrategy<Transition> {
        prop_oneof![
            6 => tick_gen(),
            4 => (0usize..4, exit_gen()).prop_map(|(n, e)| Transition::Exit(n, e)),
            6 => (0usize..8, outcome_gen()).prop_map(|(n, o)| Transition::Probe(n, o)),
            1 => (0usize..4).prop_map(Transition::BreakStart),
            1 => (0usize..4).prop_map(Transition::BreakConfig),
            1 => Just(Transition::ConfigChanged),
            1 => Just(Transition::SandboxLost),
            1 => proptest::option::of(0i64..40).prop_map(Transition::Delete),
        ]
        .boxed()
    }

    fn apply(state: RefState, transition: &Transition) -> RefState {
        apply_ref(state, transition)
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
    /// The sandbox was lost at some point.
    sandbox_lost: bool,
    commands_seen: usize,
    /// The prediction.
    model: Model,
}

/// The harness, checked against the invariants and [`Model`] after every step.
struct PredictionTest;

impl StateMachineTest for PredictionTest {
    type SystemUnderTest = Harness;
    type Reference = Reference;

    fn init_test(state: &RefState) -> Harness {
        init_harness(state)
    }

    fn apply(h: Harness, _state: &RefState, transition: Transition) -> Harness {
        apply_harness(h, transition)
    }
}

fn init_harness(state: &RefState) -> Harness {
    let auto = Auto {
        hook_result: if state.pod.hooks_fail {
            HookResult::Failed("exit 1".into())
        } else {
            HookResult::Succeeded
        },
        ..Auto::default()
    };
    let sim = Sim::with(pod(state.pod.to_json()), auto);
    let model = Model::new(&state.pod, sim.now.as_millis());
    let mut harness = Harness {
        sim,
        pod: state.pod.clone(),
        restart_counts: BTreeMap::new(),
        terminal: None,
        readiness_history: BTreeMap::new(),
        deleted: false,
        sandbox_lost: false,
        commands_seen: 0,
        model,
    };
    check_invariants(&mut harness);
    check_prediction(&harness);
    harness
}

fn apply_harness(mut h: Harness, transition: Transition) -> Harness {
    match transition {
        Transition::Tick(ms) => {
            h.sim.advance(ms as f64 / 1000.0);
            let now = h.sim.now.as_millis();
            h.model.advance(now);
        }
        Transition::Exit(n, status) => {
            let running: Vec<String> = h.sim.running.keys().cloned().collect();
            if !running.is_empty() {
                let name = running[n % running.len()].clone();
                h.sim.exit_with(&name, status);
                h.model.exit(&name, status.code());
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
                let success = matches!(outcome, Outcome::Success);
                if kind == ProbeKind::Readiness && current && result.error.is_none() && !h.sim.finished {
                    h.readiness_history.entry(name.clone()).or_default().push(success);
                }
                let counts = current && result.error.is_none();
                h.sim.input(Input::ProbeResult {
                    name: name.clone(),
                    id,
                    kind,
                    result,
                });
                if counts {
                    h.model.probe(&name, kind, success);
                }
            }
        }
        Transition::BreakStart(n) => {
            let names = h.pod.names();
            let name = names[n % names.len()].clone();
            h.sim.fail_next_start.push(name.clone());
            h.model.break_start(&name);
        }
        Transition::BreakConfig(n) => {
            let names = h.pod.names();
            let name = names[n % names.len()].clone();
            h.sim.config_error_next_start.push(name.clone());
            h.model.break_config(&name);
        }
        Transition::ConfigChanged => {
            h.sim.input(Input::ConfigChanged);
            h.model.config_changed();
        }
        Transition::SandboxLost => {
            h.sandbox_lost = true;
            h.sim.input(Input::SandboxLost);
            h.model.sandbox_lost();
        }
        Transition::Delete(grace) => {
            h.deleted = true;
            h.sim.delete(grace);
            assert!(
                h.sim.finished,
                "with a runtime that answers at once, deletion finishes at once"
            );
            h.model.delete();
        }
    }
    check_invariants(&mut h);
    check_prediction(&h);
    h
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
    // (A Never pod that loses its sandbox fails whatever its containers did, rule 6.2a; its
    // containers that never ran keep waiting, rule 11.2.)
    if phase == "Failed" && h.pod.policy == "Never" && !h.deleted && !h.sandbox_lost {
        let any_failed = init
            .iter()
            .chain(&regular)
            .any(|cs| exit_code(cs).is_some_and(|c| c != 0));
        assert!(any_failed, "a Never pod failed with no failed container");
    }
    // A timer in the past would make the pod worker tick without pause.
    if let Some(wake) = h.sim.m.next_wakeup() {
        assert!(
            wake > h.sim.now,
            "a wake-up at {wake:?}, not after now ({:?})",
            h.sim.now
        );
    }
    // kubectl's columns can always be computed.
    assert!(!h.sim.kubectl_status().is_empty());
}

prop_state_machine! {
    #![proptest_config(Config {
        // 1024 cases (a few seconds each), or PROPTEST_CASES.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1024),
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("regressions"))),
        .. Config::default()
    })]

    #[test]
    fn lifecycle_follows_the_model(sequential 20..60 => PredictionTest);
}

// ===== The predicting reference model =====

/// How a container of the model is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Init,
    Sidecar,
    Regular,
}

/// How far initialisation is in the model.
enum Progress {
    Done,
    Waiting,
    Changed,
    PodFailed,
}

/// Where a container of the model is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MState {
    NotStarted,
    Running,
    Exited { code: i32, finished: i64 },
}

/// A probe's cached result and its streak, which a new instance does not reset.
#[derive(Clone, Debug)]
struct MProbe {
    success_threshold: u32,
    failure_threshold: u32,
    value: bool,
    last: Option<bool>,
    run: u32,
}

impl MProbe {
    fn new(success_threshold: u32, failure_threshold: u32, seed: bool) -> MProbe {
        MProbe {
            success_threshold,
            failure_threshold,
            value: seed,
            last: None,
            run: 0,
        }
    }

    /// One accepted result; returns whether a liveness-style failure was recorded.
    fn record(&mut self, success: bool) -> bool {
        if self.last == Some(success) {
            self.run += 1;
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run < threshold {
            return false;
        }
        self.value = success;
        true
    }
}

#[derive(Clone, Debug)]
struct MContainer {
    name: String,
    kind: Kind,
    post_start: bool,
    state: MState,
    restarts: i32,
    ran: bool,
    /// The end of the instance before the current one.
    previous_finish: Option<i64>,
    /// Back-off entry: (duration, last update), in milliseconds.
    backoff: Option<(i64, i64)>,
    /// In back-off until then.
    restart_at: Option<i64>,
    /// After a liveness kill: the previous instance's end (`Some(None)`: there was none).
    kill_base: Option<Option<i64>>,
    pending_restart: bool,
    break_starts: usize,
    /// Start attempts that will find a ConfigMap reference missing.
    config_breaks: usize,
    /// After such an attempt: when it is tried again (rule 11.5).
    create_retry_at: Option<i64>,
    /// Not started in this sandbox, but an instance in the old one ended with this code.
    old_sandbox_exit: Option<i32>,
    started_once: bool,
    liveness: Option<MProbe>,
    readiness: Option<MProbe>,
    /// The startup probe: `known` is false until a result was recorded for the instance.
    startup: Option<(MProbe, bool)>,
}

impl MContainer {
    /// Rule 3.10.
    fn started(&self) -> bool {
        self.state == MState::Running && self.startup.as_ref().is_none_or(|(p, known)| *known && p.value)
    }

    /// Rule 3.11.
    fn ready(&self) -> bool {
        self.started() && self.readiness.as_ref().is_none_or(|r| r.value)
    }

    fn startup_failed(&self) -> bool {
        self.startup.as_ref().is_some_and(|(p, known)| *known && !p.value)
    }
}

/// An independent, deliberately plain model of what the kubelet does with a pod under this
/// harness (a runtime that starts and stops at once, hooks answered at once): which containers
/// run, how often each restarted, the phase and the Ready condition. It is fed the same
/// concrete events as the machine and written from the rules, not from the machine's code.
#[derive(Clone, Debug)]
struct Model {
    policy: &'static str,
    hooks_fail: bool,
    containers: Vec<MContainer>,
    initialized: bool,
    finished: Option<&'static str>,
    now: i64,
}

const INITIAL_BACKOFF: i64 = 10_000;
const MAX_BACKOFF: i64 = 300_000;
const BACKOFF_RESET: i64 = 600_000;

/// Rule 7.9: `None` to start now, `Some(until)` to wait.
fn backoff_check(entry: &mut Option<(i64, i64)>, finished: i64, now: i64) -> Option<i64> {
    match entry {
        Some((duration, last_update)) if (finished - *last_update).max(0) <= BACKOFF_RESET => {
            if (now - finished).max(0) < *duration {
                Some(finished + *duration)
            } else {
                *duration = (*duration * 2).min(MAX_BACKOFF);
                *last_update = now;
                None
            }
        }
        _ => {
            *entry = Some((INITIAL_BACKOFF, now));
            None
        }
    }
}

impl Model {
    fn new(pod: &PodGen, now: i64) -> Model {
        let container = |c: &ContainerGen, kind: Kind| MContainer {
            name: c.name.clone(),
            kind,
            post_start: c.post_start && kind != Kind::Init,
            state: MState::NotStarted,
            restarts: 0,
            ran: false,
            previous_finish: None,
            backoff: None,
            restart_at: None,
            kill_base: None,
            pending_restart: false,
            break_starts: 0,
            config_breaks: 0,
            create_retry_at: None,
            old_sandbox_exit: None,
            started_once: false,
            liveness: c
                .liveness
                .filter(|_| kind != Kind::Init)
                .map(|(_, failure)| MProbe::new(1, failure, true)),
            readiness: c
                .readiness
                .filter(|_| kind != Kind::Init)
                .map(|(_, success, failure)| MProbe::new(success, failure, false)),
            // As generated: periodSeconds 1, failureThreshold 3.
            startup: (c.startup && kind != Kind::Init).then(|| (MProbe::new(1, 3, false), false)),
        };
        let mut containers: Vec<MContainer> = pod
            .init
            .iter()
            .map(|c| container(c, if c.sidecar { Kind::Sidecar } else { Kind::Init }))
            .collect();
        containers.extend(pod.regular.iter().map(|c| container(c, Kind::Regular)));
        let mut model = Model {
            policy: pod.policy,
            hooks_fail: pod.hooks_fail,
            containers,
            initialized: false,
            finished: None,
            now,
        };
        model.reconcile();
        model
    }

    fn index(&self, name: &str) -> usize {
        self.containers
            .iter()
            .position(|c| c.name == name)
            .expect("a container of the pod")
    }

    fn restarts_by_policy(&self, code: i32) -> bool {
        match self.policy {
            "Always" => true,
            "OnFailure" => code != 0,
            _ => false,
        }
    }

    /// Time passes to `target`; back-offs that end on the way restart their containers then.
    fn advance(&mut self, target: i64) {
        while self.finished.is_none() {
            let next = self
                .containers
                .iter()
                .flat_map(|c| [c.restart_at, c.create_retry_at])
                .flatten()
                .filter(|t| *t > self.now && *t <= target)
                .min();
            let Some(t) = next else { break };
            self.now = t;
            self.reconcile();
        }
        self.now = self.now.max(target);
        self.reconcile();
    }

    fn exit(&mut self, name: &str, code: i32) {
        let i = self.index(name);
        self.end_instance(i, code, false, None);
        self.reconcile();
    }

    fn end_instance(&mut self, i: usize, code: i32, restart: bool, kill_base: Option<Option<i64>>) {
        let now = self.now;
        let c = &mut self.containers[i];
        c.state = MState::Exited { code, finished: now };
        c.pending_restart = restart;
        c.kill_base = kill_base;
        if let Some(r) = &mut c.readiness {
            r.value = false;
        }
    }

    fn probe(&mut self, name: &str, kind: ProbeKind, success: bool) {
        if self.finished.is_some() {
            return;
        }
        let i = self.index(name);
        let c = &mut self.containers[i];
        match kind {
            ProbeKind::Liveness => {
                if let Some(p) = &mut c.liveness
                    && p.record(success)
                    && !success
                {
                    p.run = 0;
                }
            }
            ProbeKind::Readiness => {
                if let Some(p) = &mut c.readiness {
                    p.record(success);
                }
            }
            ProbeKind::Startup => {
                // Either result, once recorded, holds the worker and resets its streak.
                if let Some((p, known)) = &mut c.startup
                    && p.record(success)
                {
                    *known = true;
                    p.run = 0;
                }
            }
        }
        self.reconcile();
    }

    fn break_start(&mut self, name: &str) {
        let i = self.index(name);
        self.containers[i].break_starts += 1;
    }

    fn break_config(&mut self, name: &str) {
        let i = self.index(name);
        self.containers[i].config_breaks += 1;
    }

    /// Rules 6.2-6.3: the sandbox is gone. A Never pod that ran anything ends; otherwise
    /// everything is killed (to be started again) and initialisation starts over in a new one.
    fn sandbox_lost(&mut self) {
        if self.finished.is_some() {
            return;
        }
        let regulars = || self.containers.iter().filter(|c| c.kind == Kind::Regular);
        let ends = if self.policy == "Never" {
            self.containers.iter().any(|c| c.ran)
        } else {
            let to_start = regulars()
                .any(|c| !(self.policy == "OnFailure" && matches!(c.state, MState::Exited { code: 0, .. })));
            !to_start && self.initialized
        };
        if ends {
            self.kill_everything();
            self.finished = Some(self.final_phase());
            return;
        }
        for i in 0..self.containers.len() {
            if self.containers[i].state == MState::Running {
                self.end_instance(i, 143, true, None);
            }
        }
        for c in self.containers.iter_mut().filter(|c| c.kind != Kind::Regular) {
            if let MState::Exited { code, finished } = c.state {
                c.state = MState::NotStarted;
                c.old_sandbox_exit = Some(code);
                c.previous_finish = Some(finished);
            }
            c.started_once = false;
            c.restart_at = None;
        }
        self.initialized = false;
        self.reconcile();
    }

    /// ConfigMaps changed: containers waiting after a create error are tried again now.
    fn config_changed(&mut self) {
        let now = self.now;
        for c in &mut self.containers {
            if c.create_retry_at.is_some() {
                c.create_retry_at = Some(now);
            }
        }
        self.reconcile();
    }

    fn delete(&mut self) {
        if self.finished.is_some() {
            return;
        }
        self.kill_everything();
        self.finished = Some(self.final_phase());
    }

    fn kill_everything(&mut self) {
        for i in 0..self.containers.len() {
            if self.containers[i].state == MState::Running {
                self.end_instance(i, 143, false, None);
            }
        }
    }

    /// Every regular container exited 0: Succeeded; anything else: Failed.
    fn final_phase(&self) -> &'static str {
        let all_zero = self
            .containers
            .iter()
            .filter(|c| c.kind == Kind::Regular)
            .all(|c| matches!(c.state, MState::Exited { code: 0, .. }));
        if all_zero { "Succeeded" } else { "Failed" }
    }

    fn reconcile(&mut self) {
        while self.finished.is_none() && self.sync_once() {}
    }

    /// One pass of what the kubelet's sync does; true if anything changed.
    fn sync_once(&mut self) -> bool {
        // Rule 7.3 / 15.2: a failed liveness probe kills (and restarts unless Never).
        for i in 0..self.containers.len() {
            let c = &self.containers[i];
            // Rule 15.2: a sidecar's failed startup probe kills it even before it ever started.
            let eligible = c.kind == Kind::Regular || c.kind == Kind::Sidecar;
            let liveness_failed = c.liveness.as_ref().is_some_and(|p| !p.value) && c.started_once;
            let failed = c.liveness.as_ref().is_some_and(|p| !p.value) && c.kind == Kind::Regular
                || liveness_failed
                || c.startup_failed();
            if eligible && failed && c.state == MState::Running {
                let restart = c.kind == Kind::Sidecar || self.policy != "Never";
                let base = restart.then_some(c.previous_finish);
                self.end_instance(i, 143, restart, base);
                return true;
            }
        }
        let mut changed = false;
        if !self.initialized {
            match self.progress_init() {
                Progress::Changed => return true,
                Progress::PodFailed => return false,
                Progress::Waiting => {}
                Progress::Done => {
                    self.initialized = true;
                    changed = true;
                }
            }
        }
        for i in 0..self.containers.len() {
            let c = &self.containers[i];
            let wanted = match (c.kind, c.state) {
                (Kind::Sidecar, MState::Exited { .. }) => c.started_once,
                (Kind::Regular, MState::NotStarted) => self.initialized,
                (Kind::Regular, MState::Exited { code, .. }) => {
                    self.initialized && (self.restarts_by_policy(code) || c.pending_restart)
                }
                _ => false,
            };
            if wanted {
                changed |= self.try_start(i);
            }
        }
        if changed || !self.initialized {
            return changed;
        }
        // Rule 7.5: nothing regular runs or will run.
        let any_will_run = self.containers.iter().any(|c| {
            c.kind == Kind::Regular
                && match c.state {
                    MState::NotStarted | MState::Running => true,
                    MState::Exited { code, .. } => self.restarts_by_policy(code) || c.pending_restart,
                }
        });
        if !any_will_run {
            self.kill_everything();
            self.finished = Some(self.final_phase());
        }
        false
    }

    /// Rules 5.1, 5.2, 15.1: initialisation, one container at a time.
    fn progress_init(&mut self) -> Progress {
        for i in 0..self.containers.len() {
            let c = &self.containers[i];
            match (c.kind, c.state) {
                (Kind::Regular, _) => break,
                // The kubelet goes on from the last init container with a status in this
                // sandbox: a sidecar that started once gates the next one again while that one
                // has none (it never got created), restarted and started anew.
                (Kind::Sidecar, _) if c.started_once && self.later_init_has_status(i) => {}
                (Kind::Sidecar, MState::Running) if c.started() => {
                    if !c.started_once {
                        self.containers[i].started_once = true;
                        return Progress::Changed;
                    }
                }
                (Kind::Sidecar, MState::Running) => return Progress::Waiting,
                (Kind::Init, MState::Exited { code: 0, .. }) => {}
                (Kind::Init, MState::Exited { .. }) if self.policy == "Never" => {
                    self.kill_everything();
                    self.finished = Some("Failed");
                    return Progress::PodFailed;
                }
                (Kind::Init, MState::Running) => return Progress::Waiting,
                _ => {
                    return if self.try_start(i) {
                        Progress::Changed
                    } else {
                        Progress::Waiting
                    };
                }
            }
        }
        Progress::Done
    }

    /// Whether an init container after `i` has run in this sandbox.
    fn later_init_has_status(&self, i: usize) -> bool {
        self.containers[i + 1..]
            .iter()
            .take_while(|c| c.kind != Kind::Regular)
            .any(|c| c.state != MState::NotStarted)
    }

    /// Starts container `i` unless it is in back-off; true if it was started.
    fn try_start(&mut self, i: usize) -> bool {
        let now = self.now;
        let before = self.containers[i].clone();
        let c = &mut self.containers[i];
        if c.create_retry_at.is_some_and(|t| t > now) {
            return false;
        }
        if let MState::Exited { finished, .. } = c.state {
            if c.restart_at.is_some_and(|t| t > now) {
                return false;
            }
            let wait = match c.kill_base.take() {
                Some(None) => None,
                Some(Some(previous)) => backoff_check(&mut c.backoff, previous, now)
                    .and_then(|_| backoff_check(&mut c.backoff, finished, now)),
                None => backoff_check(&mut c.backoff, finished, now),
            };
            if let Some(until) = wait {
                c.restart_at = Some(until);
                return false;
            }
            c.previous_finish = Some(finished);
        }
        if c.ran {
            c.restarts += 1;
        }
        c.ran = true;
        c.restart_at = None;
        c.pending_restart = false;
        if c.break_starts > 0 {
            // Rule 11.5: StartError, exit 128, at once.
            c.break_starts -= 1;
            c.create_retry_at = None;
            c.old_sandbox_exit = None;
            self.end_instance(i, 128, false, None);
            return true;
        }
        if c.config_breaks > 0 {
            // Rule 11.5: nothing was created; as it was, tried again in 10 s, no restart counted.
            let breaks = c.config_breaks - 1;
            *c = before;
            c.config_breaks = breaks;
            c.create_retry_at = Some(now + 10_000);
            return false;
        }
        c.create_retry_at = None;
        c.old_sandbox_exit = None;
        c.state = MState::Running;
        if let Some(p) = &mut c.liveness {
            p.value = true;
        }
        if let Some(p) = &mut c.readiness {
            p.value = false;
        }
        if let Some((_, known)) = &mut c.startup {
            *known = false;
        }
        if c.post_start && self.hooks_fail {
            // Rule 8.2: killed at once, started again unless the pod's policy says Never.
            let restart = c.kind == Kind::Sidecar || self.policy != "Never";
            self.end_instance(i, 143, restart, None);
        }
        true
    }

    fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .containers
            .iter()
            .filter(|c| c.state == MState::Running)
            .map(|c| c.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Rule 10.2 over the model's containers.
    fn phase(&self) -> &'static str {
        if let Some(p) = self.finished {
            return p;
        }
        let (mut pending_init, mut failed_init) = (0, 0);
        let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
        // A regular container shows Running or Terminated, not Waiting in back-off or after a
        // create error.
        let regular_started = self.containers.iter().any(|c| {
            c.kind == Kind::Regular
                && match c.state {
                    MState::Running => true,
                    MState::Exited { .. } => c.restart_at.is_none() && c.create_retry_at.is_none(),
                    MState::NotStarted => false,
                }
        });
        for c in &self.containers {
            match (c.kind, c.state) {
                (Kind::Init, MState::Exited { code, .. }) => failed_init += usize::from(code != 0),
                // Waiting with its old sandbox's exit as the last state.
                (Kind::Init, MState::NotStarted) if c.old_sandbox_exit.is_some_and(|code| code != 0) => {
                    failed_init += 1
                }
                (Kind::Init, _) => pending_init += 1,
                (Kind::Sidecar, MState::Running) => {
                    running += 1;
                    pending_init += usize::from(!c.started());
                }
                (Kind::Sidecar, MState::Exited { .. }) => {}
                (Kind::Sidecar, MState::NotStarted) if c.old_sandbox_exit.is_some() => {}
                (Kind::Sidecar, MState::NotStarted) => {
                    pending_init += 1;
                    waiting += 1;
                }
                (Kind::Regular, MState::Running) => running += 1,
                (Kind::Regular, MState::NotStarted) => waiting += 1,
                (Kind::Regular, MState::Exited { code, .. }) => {
                    stopped += 1;
                    // One that will restart shows waiting (back-off): not a success.
                    let will_restart = self.restarts_by_policy(code) || c.pending_restart;
                    succeeded += usize::from(code == 0 && !will_restart);
                }
            }
        }
        if failed_init > 0 && self.policy == "Never" {
            return "Failed";
        }
        if (pending_init > 0 && !regular_started) || waiting > 0 {
            return "Pending";
        }
        if running > 0 {
            return "Running";
        }
        if stopped > 0 {
            return match self.policy {
                "Always" => "Running",
                _ if stopped == succeeded => "Succeeded",
                "Never" => "Failed",
                _ => "Running",
            };
        }
        "Pending"
    }

    /// Rules 14.6-14.7: every sidecar and regular container ready, in a pod still going.
    fn ready(&self) -> bool {
        matches!(self.phase(), "Pending" | "Running")
            && self
                .containers
                .iter()
                .filter(|c| c.kind != Kind::Init)
                .all(MContainer::ready)
    }
}

/// The machine against the model's prediction.
fn check_prediction(h: &Harness) {
    let model = &h.model;
    let status = h.sim.m.status();
    let context = || format!("model: {model:#?}\nstatus: {status:#?}");
    let running: Vec<String> = h.sim.running.keys().cloned().collect();
    assert_eq!(running, model.running(), "running containers\n{}", context());
    for c in &model.containers {
        let cs = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
            .find(|cs| cs.name == c.name)
            .expect("a status per container");
        assert_eq!(
            cs.restart_count,
            c.restarts,
            "restarts of {}\n{}",
            c.name,
            context()
        );
    }
    assert_eq!(
        status.phase.as_deref(),
        Some(model.phase()),
        "phase\n{}",
        context()
    );
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status == "True");
    assert_eq!(ready, Some(model.ready()), "Ready\n{}", context());
}

fn cgen(name: &str, sidecar: bool, post_start: bool) -> ContainerGen {
    ContainerGen {
        name: name.into(),
        sidecar,
        readiness: None,
        liveness: None,
        startup: false,
        pre_stop: false,
        post_start,
    }
}

/// Runs `transitions` through the harness, checking the invariants and the model's prediction
/// after each, as the property test does.
fn replay(pod: PodGen, transitions: Vec<Transition>) -> Harness {
    let state = RefState { pod, deleted: false };
    let mut h = init_harness(&state);
    for t in transitions {
        h = apply_harness(h, t);
    }
    h
}

fn pod_of(policy: &'static str, init: Vec<ContainerGen>, regular: Vec<ContainerGen>) -> PodGen {
    PodGen {
        policy,
        init,
        regular,
        grace: 0,
        hooks_fail: false,
    }
}

/// Formerly a seed: a sidecar pod whose sandbox is lost after the app exited twice (the
/// sidecar's started state had to start over with the new sandbox).
#[test]
fn replay_sandbox_loss_after_app_exits_with_a_sidecar() {
    let pod = pod_of(
        "Always",
        vec![cgen("init-0", true, false)],
        vec![cgen("app-0", false, false)],
    );
    let h = replay(
        pod,
        vec![
            Transition::Exit(1, ExitStatus::Exited(0)),
            Transition::Exit(1, ExitStatus::Exited(0)),
            Transition::Tick(10_000),
            Transition::SandboxLost,
        ],
    );
    assert!(h.sim.running.contains_key("app-0") && h.sim.running.contains_key("init-0"));
}

/// Formerly a seed: a regular init container that fails under Always is retried.
#[test]
fn replay_failed_init_container_under_always() {
    let pod = pod_of(
        "Always",
        vec![cgen("init-0", false, false)],
        vec![cgen("app-0", false, false)],
    );
    let h = replay(pod, vec![Transition::Exit(0, ExitStatus::Exited(1))]);
    assert_eq!(h.sim.m.status().phase.as_deref(), Some("Pending"));
}

/// Formerly a seed: a Never pod that loses its sandbox ends.
#[test]
fn replay_never_pod_loses_its_sandbox() {
    let pod = pod_of("Never", vec![], vec![cgen("app-0", false, false)]);
    let h = replay(pod, vec![Transition::SandboxLost]);
    assert!(h.sim.finished);
}

/// Formerly a seed: a create error under Never is retried (the container never ran).
#[test]
fn replay_create_error_under_never_is_retried() {
    let pod = pod_of(
        "Never",
        vec![cgen("init-0", false, false)],
        vec![cgen("app-0", false, false)],
    );
    let h = replay(
        pod,
        vec![
            Transition::BreakConfig(1),
            Transition::Exit(0, ExitStatus::Exited(0)),
            Transition::Tick(10_000),
        ],
    );
    assert!(h.sim.running.contains_key("app-0"));
}

/// Found by the model: a container in back-off whose spec has a postStart hook held back the
/// containers after it (rule 8.1 applies to a start under way only).
#[test]
fn replay_back_off_with_post_start_holds_nothing_back() {
    let pod = pod_of(
        "Always",
        vec![cgen("init-0", true, false)],
        vec![cgen("app-0", false, true), cgen("app-1", false, false)],
    );
    let h = replay(
        pod,
        vec![
            Transition::Exit(0, ExitStatus::Exited(0)),
            Transition::Exit(3, ExitStatus::Exited(0)),
            Transition::Exit(0, ExitStatus::Exited(0)),
        ],
    );
    assert!(h.sim.running.contains_key("app-1"));
}

/// A Never pod that loses its sandbox during init fails though no container failed; the app
/// container that never ran keeps waiting (rules 6.2a, 11.2).
#[test]
fn replay_never_pod_loses_its_sandbox_during_init() {
    let mut side = cgen("init-0", true, false);
    side.startup = true;
    let pod = pod_of("Never", vec![side], vec![cgen("app-0", false, false)]);
    let h = replay(
        pod,
        vec![
            Transition::Exit(0, ExitStatus::Exited(0)),
            Transition::Exit(0, ExitStatus::Exited(0)),
            Transition::SandboxLost,
        ],
    );
    let status = h.sim.m.status();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    let app = &status.container_statuses.as_ref().expect("statuses")[0];
    let waiting = app.state.as_ref().and_then(|s| s.waiting.as_ref());
    assert_eq!(waiting.and_then(|w| w.reason.as_deref()), Some("PodInitializing"));
}

/// Found by the model (CI): a pod deleted while its init containers run again in a new sandbox
/// ends Succeeded when its regular containers did; init containers that have not run again
/// do not keep it Pending once a regular container has started (the kubelet's
/// `HasAnyRegularContainerStarted`, rule 10.2 step 5).
#[test]
fn replay_delete_during_init_in_a_new_sandbox() {
    let mut app = cgen("app-0", false, false);
    app.readiness = Some((1, 2, 3));
    let pod = pod_of(
        "Always",
        vec![cgen("init-0", false, false), cgen("init-1", false, false)],
        vec![app],
    );
    let h = replay(
        pod,
        vec![
            Transition::Exit(0, ExitStatus::Exited(0)),
            Transition::BreakStart(2),
            Transition::Exit(0, ExitStatus::Exited(0)),
            Transition::Exit(0, ExitStatus::Exited(0)),
            Transition::SandboxLost,
            Transition::Delete(None),
        ],
    );
    assert_eq!(h.sim.m.status().phase.as_deref(), Some("Succeeded"));
}

/// While init containers run again in a new sandbox, a pod whose regular container shows
/// Terminated is Running, not Pending (rule 10.2 step 5).
#[test]
fn replay_init_again_after_sandbox_loss_is_running() {
    let pod = pod_of(
        "Always",
        vec![cgen("init-0", false, false)],
        vec![cgen("app-0", false, false)],
    );
    let h = replay(
        pod,
        vec![
            Transition::Exit(0, ExitStatus::Exited(0)),
            Transition::SandboxLost,
        ],
    );
    assert!(h.sim.running.contains_key("init-0"));
    assert_eq!(h.sim.m.status().phase.as_deref(), Some("Running"));
}

/// Formerly a seed: a sidecar killed by its startup probe, whose restart hit a config error,
/// then lost its sandbox. Its first start in the new sandbox fails (StartError): the restart
/// after that waits out the back-off, measured from the failed start, not from the exit
/// before the kill.
#[test]
fn replay_start_error_in_a_new_sandbox_backs_off() {
    let mut side = cgen("init-0", true, false);
    side.startup = true;
    let pod = pod_of("Always", vec![side], vec![cgen("app-0", false, false)]);
    let h = replay(
        pod,
        vec![
            Transition::Exit(0, ExitStatus::Exited(0)),
            Transition::Tick(3000),
            Transition::Probe(0, Outcome::Failure),
            Transition::Probe(0, Outcome::Failure),
            Transition::Tick(7000),
            Transition::BreakConfig(0),
            Transition::Probe(0, Outcome::Failure),
            Transition::BreakStart(0),
            Transition::SandboxLost,
            Transition::Tick(10000),
        ],
    );
    assert!(h.sim.running.is_empty());
}

/// Found by the model: a started sidecar that exits while the next init container waits to
/// retry a config error is restarted (after its back-off) before that one is tried again: the
/// kubelet goes on from the last init container that has a status.
#[test]
fn replay_exited_sidecar_comes_before_the_next_init_container() {
    let mut side = cgen("init-0", true, false);
    side.startup = true;
    let pod = pod_of(
        "Never",
        vec![side, cgen("init-1", false, false)],
        vec![cgen("app-0", false, false)],
    );
    let h = replay(
        pod,
        vec![
            Transition::Exit(0, ExitStatus::Exited(0)),
            Transition::BreakConfig(1),
            Transition::Tick(3000),
            Transition::Probe(0, Outcome::Success),
            Transition::Exit(0, ExitStatus::Exited(0)),
            Transition::BreakStart(1),
            Transition::Tick(10000),
        ],
    );
    assert_eq!(h.sim.running.keys().collect::<Vec<_>>(), ["init-0"]);
    assert!(!h.sim.finished);
}
