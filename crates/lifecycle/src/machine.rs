//! [`PodMachine`]: the pod lifecycle as one deterministic `step` function.
//!
//! Each step first records what the input says happened (`observe`), then recomputes what
//! must happen from the whole state (`reconcile`, level-triggered like the kubelet's
//! `computePodActions`), runs the probes that are due, and regenerates the status.

use std::time::Duration;

use podvisor_core::corev1::{HostIP, Pod, PodCondition, PodStatus};
use podvisor_core::{ContainerId, HookKind, HookResult, ProbeKind};

use crate::Time;
use crate::backoff::Verdict;
use crate::command::{Command, Event, EventType};
use crate::input::Input;
use crate::probe_worker::{ProbeValue, ProbeWorker};
use crate::record::{CreateError, KillReason, Record, Running, State, Stop, StopPhase, Terminated};
use crate::spec::{ContainerKind, PodDef, RestartPolicy, probe_index};
use crate::status::{self, Phase};

/// Requeue delay after a failed sandbox creation (the pod worker's error back-off).
const SANDBOX_RETRY: Duration = Duration::from_secs(10);
/// The kubelet's pod worker syncs a pod again this long after a sync that failed (a container
/// that could not be created, or one still in back-off).
const SYNC_RETRY: Duration = Duration::from_secs(10);
/// How long a container that could not be created waits before the next attempt.
const CREATE_RETRY: Duration = SYNC_RETRY;
/// The kubelet never SIGKILLs sooner than this after the stop signal (rule 9.4 step 4).
pub const MIN_KILL_GRACE: Duration = Duration::from_secs(2);

/// Why a pod is terminating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The pod was deleted.
    Deleted,
    /// `activeDeadlineSeconds` passed (rule 12.1).
    Deadline,
    /// Nothing will run again: all regular containers are done, or an init container failed
    /// under `Never`, or a `Never` pod lost its sandbox (rules 5.2, 6.2, 7.5).
    Completed,
}

/// A pod termination in progress (rule 9.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Termination {
    pub(crate) cause: Cause,
    /// The pod-level grace period that overrides per-container ones (rule 9.1).
    pub(crate) grace: Duration,
}

/// Where the pod's sandbox is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Sandbox {
    /// None exists (never created, lost, or torn down).
    Absent { retry_at: Option<Time> },
    /// `CreateSandbox` was issued.
    Creating,
    /// It exists and has its IP.
    Ready,
}

/// The lifecycle of one pod, as the kubelet runs it: a pure state machine.
///
/// Feed it what happens with [`step`](Self::step); do what the returned [`Command`]s say; read
/// the pod's status with [`status`](Self::status). It never reads a clock: `now` comes with
/// every step, and equal inputs give equal outputs.
///
/// ```
/// use podvisor_lifecycle::{Command, Input, PodMachine, Time};
/// # use podvisor_core::corev1::Pod;
/// let pod: Pod = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
///     "spec": {"containers": [{"name": "app", "image": "none", "command": ["sleep", "60"]}]}
/// })).unwrap();
/// let t0 = Time::from_secs(1_700_000_000);
/// let mut pod_machine = PodMachine::new(&pod, t0);
/// let commands = pod_machine.step(t0, Input::Tick);
/// assert!(commands.contains(&Command::CreateSandbox));
/// assert_eq!(pod_machine.status().phase.as_deref(), Some("Pending"));
/// ```
#[derive(Clone, Debug)]
pub struct PodMachine {
    pub(crate) pod: Pod,
    pub(crate) def: PodDef,
    pub(crate) records: Vec<Record>,
    pub(crate) sandbox: Sandbox,
    pub(crate) sandbox_attempts: u32,
    /// The sandbox was lost and no `SandboxChanged` event said so yet.
    pub(crate) sandbox_changed: bool,
    pub(crate) pod_ip: Option<String>,
    pub(crate) host_ip: Option<String>,
    pub(crate) initialized: bool,
    pub(crate) termination: Option<Termination>,
    pub(crate) deletion_requested: bool,
    pub(crate) finished: bool,
    pub(crate) terminal_phase: Option<Phase>,
    pub(crate) reason: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) start_time: Time,
    pub(crate) now: Time,
    pub(crate) external_conditions: Vec<PodCondition>,
    pub(crate) status: PodStatus,
    pub(crate) wake: Option<Time>,
}

// === impl PodMachine ===

impl PodMachine {
    /// A machine for `pod`, admitted to the node at `now` (its `status.startTime`).
    ///
    /// If the pod already has a status (the node restarted), restart counts, the start time,
    /// the last terminations and a terminal phase are carried over: restart counts never go
    /// back, and a finished pod stays finished.
    pub fn new(pod: &Pod, now: Time) -> PodMachine {
        let def = PodDef::new(pod);
        let records = def
            .containers
            .iter()
            .map(|c| {
                Record::new(
                    ProbeKind::ALL
                        .map(|kind| c.probes[probe_index(kind)].map(|p| ProbeWorker::new(kind, p, now))),
                )
            })
            .collect();
        let mut machine = PodMachine {
            pod: pod.clone(),
            def,
            records,
            sandbox: Sandbox::Absent { retry_at: None },
            sandbox_attempts: 0,
            sandbox_changed: false,
            pod_ip: None,
            host_ip: None,
            initialized: false,
            termination: None,
            deletion_requested: false,
            finished: false,
            terminal_phase: None,
            reason: None,
            message: None,
            start_time: now,
            now,
            external_conditions: Vec::new(),
            status: PodStatus::default(),
            wake: None,
        };
        machine.restore_from_status();
        machine.external_conditions = status::external_conditions(pod);
        if pod.metadata.deletion_timestamp.is_some() && !machine.finished {
            // Admitted while already being deleted (a node restart during termination).
            machine.request_deletion(pod.metadata.deletion_grace_period_seconds, &mut Vec::new());
        }
        machine.status = status::generate(&machine);
        if machine.finished
            && let Some(st) = &pod.status
        {
            // A terminal pod's status never changes again: the kubelet keeps the terminated
            // states it reported (their exit codes), which a restarted node has no record of.
            machine.status = st.clone();
        }
        machine
    }

    /// Sets the node's address, reported as `status.hostIP`.
    pub fn set_host_ip(&mut self, ip: impl Into<String>) {
        self.host_ip = Some(ip.into());
        if self.finished {
            // A finished pod's status never changes again (rule 10.4), also one restored after a
            // node restart: only the address is filled in.
            self.status.host_ip.clone_from(&self.host_ip);
            self.status.host_ips = self.host_ip.clone().map(|ip| vec![HostIP { ip }]);
            return;
        }
        self.status = status::generate(self);
    }

    /// The pod's complete status as of the last step.
    pub fn status(&self) -> &PodStatus {
        &self.status
    }

    /// The pod object as last seen (metadata and spec; its `status` is the API's copy, not the
    /// model's). Borrowed, for callers that need the spec or identity without a clone.
    pub fn object(&self) -> &Pod {
        &self.pod
    }

    /// The pod as last seen, with [`status`](Self::status) filled in.
    pub fn pod(&self) -> Pod {
        let mut pod = self.pod.clone();
        pod.status = Some(self.status.clone());
        pod
    }

    /// Whether the pod is terminal and torn down: nothing of it runs and no input changes it.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// When the machine next needs a [`Input::Tick`], if ever.
    pub fn next_wakeup(&self) -> Option<Time> {
        self.wake
    }

    /// Feeds one observation made at `now` and returns what the node must do.
    ///
    /// `now` never goes backwards: an earlier time is treated as the latest one seen.
    pub fn step(&mut self, now: Time, input: Input) -> Vec<Command> {
        self.now = self.now.max(now);
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.observe(input, &mut out);
        self.reconcile(&mut out);
        self.run_due_probes(&mut out);
        let status = status::generate(self);
        if status != self.status {
            // Rule 3.14: generating a changed status probes the readiness of every started
            // container that is not ready, at once.
            for i in 0..self.records.len() {
                if self.records[i].started() && !self.records[i].ready() {
                    self.trigger_readiness(i);
                }
            }
            self.run_due_probes(&mut out);
        }
        self.status = status;
        self.wake = self.compute_wake();
        if let Some(t) = self.wake {
            out.push(Command::WakeAt(t));
        }
        out
    }

    // --- observing ---

    fn observe(&mut self, input: Input, out: &mut Vec<Command>) {
        let now = self.now;
        match input {
            Input::Tick => {}
            Input::SandboxReady { pod_ip } => {
                if self.sandbox == Sandbox::Creating {
                    self.sandbox = Sandbox::Ready;
                    self.pod_ip = pod_ip;
                }
            }
            Input::SandboxFailed { message } => {
                if self.sandbox == Sandbox::Creating {
                    self.sandbox = Sandbox::Absent {
                        retry_at: Some(now + SANDBOX_RETRY),
                    };
                    self.event(
                        out,
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {message}"),
                        None,
                    );
                }
            }
            Input::SandboxLost => {
                if self.sandbox != (Sandbox::Absent { retry_at: None }) {
                    self.sandbox = Sandbox::Absent { retry_at: None };
                    // Announced by `ensure_sandbox` if a new one is made (not for a pod that ends).
                    self.sandbox_changed = true;
                }
            }
            Input::ContainerStarted { name, id } => self.observe_started(&name, id, out),
            Input::ContainerStartFailed { name, message } => {
                let Some(i) = self.index_of(&name) else { return };
                if !matches!(self.records[i].state, State::Starting { .. }) {
                    return;
                }
                let field_path = self.def.containers[i].field_path.clone();
                self.records[i].state = State::Exited(Terminated {
                    id: None,
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message: Some(message.clone()),
                    // The runtime never started it: its start time is the Unix epoch, which the
                    // kubelet reports as is (rule 9.6).
                    started_at: Some(Time::EPOCH),
                    finished_at: now,
                });
                self.records[i].start_error = Some(("RunContainerError", message.clone()));
                self.records[i].create_error = None;
                self.records[i].before_start = None;
                self.event(
                    out,
                    EventType::Warning,
                    "Failed",
                    format!("Error: {message}"),
                    Some(field_path),
                );
            }
            Input::ContainerCreateFailed {
                name,
                reason,
                message,
            } => {
                let Some(i) = self.index_of(&name) else { return };
                if !matches!(self.records[i].state, State::Starting { .. }) {
                    return;
                }
                let field_path = self.def.containers[i].field_path.clone();
                let rec = &mut self.records[i];
                if let Some(before) = rec.before_start.take() {
                    *rec = *before;
                }
                rec.create_error = Some(CreateError {
                    reason,
                    message: message.clone(),
                    retry_at: now + CREATE_RETRY,
                });
                self.event(
                    out,
                    EventType::Warning,
                    "Failed",
                    format!("Error: {message}"),
                    Some(field_path),
                );
            }
            Input::ConfigChanged => {
                for rec in &mut self.records {
                    if let Some(e) = &mut rec.create_error {
                        e.retry_at = now;
                    }
                }
            }
            Input::ContainerExited {
                name,
                id,
                status,
                message,
            } => {
                let Some(i) = self.index_of(&name) else { return };
                let rec = &mut self.records[i];
                let Some(r) = rec.running().filter(|r| r.id == id) else {
                    return;
                };
                let t = Terminated::from_exit(id, status, message, r.started_at, now);
                let restart = r.stop.as_ref().filter(|s| s.restart);
                let (pending_restart, kill_backoff) =
                    (restart.is_some(), restart.and_then(|s| s.backoff_base));
                rec.pending_restart = pending_restart;
                rec.kill_backoff = kill_backoff;
                rec.state = State::Exited(t);
                if let Some(w) = rec.worker_mut(ProbeKind::Readiness) {
                    w.value = ProbeValue::Failure;
                }
            }
            Input::ProbeResult {
                name,
                id,
                kind,
                result,
            } => {
                let Some(i) = self.index_of(&name) else { return };
                let field_path = self.def.containers[i].field_path.clone();
                let rec = &mut self.records[i];
                let Some(w) = rec.worker_mut(kind) else { return };
                if w.in_flight.as_ref() == Some(&id) {
                    w.in_flight = None;
                }
                if w.stopped || w.instance.as_ref() != Some(&id) {
                    return;
                }
                let mut events = Vec::new();
                let applied = w.apply(&result, &field_path, &mut events);
                out.extend(events.into_iter().map(Command::Event));
                if kind == ProbeKind::Startup && applied.recorded == Some(ProbeValue::Success) {
                    self.trigger_readiness(i);
                }
            }
            Input::HookResult {
                name,
                id,
                hook,
                result,
            } => self.observe_hook(&name, &id, hook, result, out),
            Input::PodUpdated(pod) => self.observe_update(*pod, out),
            Input::DeleteRequested { grace_period_seconds } => {
                self.request_deletion(grace_period_seconds, out)
            }
        }
    }

    fn observe_started(&mut self, name: &str, id: ContainerId, out: &mut Vec<Command>) {
        let now = self.now;
        let Some(i) = self.index_of(name) else {
            // Not ours: make sure nothing unknown keeps running.
            out.push(Command::StopContainer {
                name: name.to_owned(),
                id,
                grace: MIN_KILL_GRACE,
            });
            return;
        };
        let State::Starting { stop_when_started } = self.records[i].state else {
            out.push(Command::StopContainer {
                name: name.to_owned(),
                id,
                grace: MIN_KILL_GRACE,
            });
            return;
        };
        let def = &self.def.containers[i];
        let field_path = def.field_path.clone();
        let rec = &mut self.records[i];
        rec.state = State::Running(Running {
            id: id.clone(),
            started_at: now,
            image: def.image.clone(),
            post_start_pending: def.has_post_start,
            stop: None,
        });
        rec.start_error = None;
        rec.create_error = None;
        rec.before_start = None;
        for w in rec.probes.iter_mut().flatten() {
            w.new_instance(&id);
        }
        self.event(
            out,
            EventType::Normal,
            "Created",
            format!("Created container: {name}"),
            Some(field_path.clone()),
        );
        self.event(
            out,
            EventType::Normal,
            "Started",
            format!("Started container {name}"),
            Some(field_path),
        );
        if def.has_post_start {
            out.push(Command::RunHook {
                name: name.to_owned(),
                id,
                hook: HookKind::PostStart,
            });
        }
        if !self.def.containers[i].has_post_start && self.records[i].worker(ProbeKind::Startup).is_none() {
            self.trigger_readiness(i);
        }
        if stop_when_started || self.termination.is_some() {
            // The pod began terminating while this instance was being started.
            let grace = self.termination.map_or(self.spec_grace(), |t| t.grace);
            self.start_kill(i, KillReason::PodStop, false, Some(grace), None, out);
        }
    }

    fn observe_hook(
        &mut self,
        name: &str,
        id: &ContainerId,
        hook: HookKind,
        result: HookResult,
        out: &mut Vec<Command>,
    ) {
        let now = self.now;
        let Some(i) = self.index_of(name) else { return };
        let field_path = self.def.containers[i].field_path.clone();
        let Some(r) = self.records[i].running_mut().filter(|r| &r.id == id) else {
            return;
        };
        match hook {
            HookKind::PostStart => {
                if !r.post_start_pending {
                    return;
                }
                r.post_start_pending = false;
                match result {
                    HookResult::Succeeded => {
                        // Rule 8.1: only now does the container count as started.
                        if self.records[i].worker(ProbeKind::Startup).is_none() {
                            self.trigger_readiness(i);
                        }
                    }
                    HookResult::Failed(message) => {
                        self.event(
                            out,
                            EventType::Warning,
                            "FailedPostStartHook",
                            "PostStartHook failed".into(),
                            Some(field_path),
                        );
                        self.records[i].start_error = Some(("PostStartHookError", message));
                        let restart = self.termination.is_none()
                            && (self.def.containers[i].kind == ContainerKind::Sidecar
                                || self.def.restart_policy != RestartPolicy::Never);
                        let message = Some("FailedPostStartHook".to_owned());
                        self.start_kill(i, KillReason::PostStartHook, restart, None, message, out);
                    }
                }
            }
            HookKind::PreStop => {
                let Some(Stop {
                    phase: StopPhase::PreStop { since, grace, .. },
                    ..
                }) = r.stop
                else {
                    return;
                };
                if let HookResult::Failed(_) = result {
                    self.event(
                        out,
                        EventType::Warning,
                        "FailedPreStopHook",
                        "PreStopHook failed".into(),
                        Some(field_path),
                    );
                }
                let left = grace.saturating_sub(whole_secs(now.since(since)));
                self.after_pre_stop(i, left, out);
            }
        }
    }

    fn observe_update(&mut self, pod: Pod, out: &mut Vec<Command>) {
        let new_def = PodDef::new(&pod);
        // Only images and activeDeadlineSeconds may change (rule 2.24); take those.
        for (old, new) in self.def.containers.iter_mut().zip(&new_def.containers) {
            if old.name == new.name {
                old.image.clone_from(&new.image);
            }
        }
        self.def.active_deadline_secs = new_def.active_deadline_secs;
        self.external_conditions = status::external_conditions(&pod);
        let deletion = pod.metadata.deletion_timestamp.is_some();
        let grace = pod.metadata.deletion_grace_period_seconds;
        let status = self.pod.status.take();
        self.pod = pod;
        self.pod.status = status;
        if deletion {
            self.request_deletion(grace, out);
        }
    }

    /// Rule 9.1: the effective grace period can only shrink.
    fn request_deletion(&mut self, grace_secs: Option<i64>, out: &mut Vec<Command>) {
        self.deletion_requested = true;
        let requested = grace_secs.unwrap_or(self.def.grace_secs);
        let grace = secs(if requested <= 0 { 1 } else { requested });
        match self.termination {
            Some(mut t) => {
                if t.cause == Cause::Completed {
                    t.cause = Cause::Deleted;
                }
                let shorter = grace < t.grace;
                if shorter {
                    t.grace = grace;
                }
                self.termination = Some(t);
                if shorter {
                    self.shorten_stops(grace, out);
                }
            }
            None => self.begin_termination(Cause::Deleted, grace, out),
        }
    }

    // --- reconciling ---

    fn reconcile(&mut self, out: &mut Vec<Command>) {
        self.advance_stops(out);
        if self.termination.is_none() {
            self.check_deadline(out);
        }
        if self.termination.is_some() {
            self.drive_termination(out);
            return;
        }
        match self.sandbox {
            Sandbox::Creating => return,
            Sandbox::Absent { .. } => {
                self.ensure_sandbox(out);
                return;
            }
            Sandbox::Ready => {}
        }
        if !self.initialized {
            match self.progress_init(out) {
                InitProgress::Done => self.initialized = true,
                InitProgress::Waiting => {}
                InitProgress::Failed => {
                    self.begin_termination(Cause::Completed, self.spec_grace(), out);
                    self.drive_termination(out);
                    return;
                }
            }
        }
        self.maintain_sidecars(out);
        if self.initialized {
            self.maintain_regular(out);
            if !self.any_regular_will_run() {
                // Rule 7.5: nothing regular runs or will run: the pod is done.
                self.begin_termination(Cause::Completed, self.spec_grace(), out);
                self.drive_termination(out);
            }
        }
    }

    /// Rule 12.1.
    fn check_deadline(&mut self, out: &mut Vec<Command>) {
        let Some(deadline) = self.deadline() else { return };
        if self.now < deadline {
            return;
        }
        let message = "Pod was active on the node longer than the specified deadline";
        self.reason = Some("DeadlineExceeded".into());
        self.message = Some(message.into());
        self.terminal_phase = Some(Phase::Failed);
        self.event(out, EventType::Normal, "DeadlineExceeded", message.into(), None);
        self.begin_termination(Cause::Deadline, self.spec_grace(), out);
    }

    fn deadline(&self) -> Option<Time> {
        let ads = self.def.active_deadline_secs?;
        Some(self.start_time + secs(ads.max(0)))
    }

    /// Rules 6.1-6.3: create the sandbox, or decide the pod is done without one.
    fn ensure_sandbox(&mut self, out: &mut Vec<Command>) {
        if self.sandbox_attempts > 0 {
            let has_records = self.records.iter().any(|r| r.has_history);
            if self.def.restart_policy == RestartPolicy::Never && has_records {
                self.begin_termination(Cause::Completed, self.spec_grace(), out);
                self.drive_termination(out);
                return;
            }
            let to_start = self.regular_indices().any(|i| {
                let succeeded = self.records[i].exited().is_some_and(|t| t.exit_code == 0);
                !(self.def.restart_policy == RestartPolicy::OnFailure && succeeded)
            });
            if !to_start && self.initialized {
                self.begin_termination(Cause::Completed, self.spec_grace(), out);
                self.drive_termination(out);
                return;
            }
            if std::mem::take(&mut self.sandbox_changed) {
                self.event(
                    out,
                    EventType::Normal,
                    "SandboxChanged",
                    "Pod sandbox changed, it will be killed and re-created.".into(),
                    None,
                );
            }
            // Kill everything of the old sandbox first.
            let mut live = false;
            for i in 0..self.records.len() {
                match self.records[i].state {
                    State::Running(ref r) => {
                        live = true;
                        if r.stop.is_none() {
                            self.start_kill(i, KillReason::PodStop, true, None, None, out);
                        }
                    }
                    State::Starting { .. } => live = true,
                    _ => {}
                }
            }
            if live {
                return;
            }
            // Rule 6.2c: initialisation starts over from the first init container.
            for rec in &mut self.records[..self.def.n_init] {
                if let State::Exited(t) = std::mem::replace(&mut rec.state, State::Absent) {
                    rec.last_termination = Some(t);
                }
                rec.sidecar_started_once = false;
                rec.backoff_wait = None;
            }
            self.initialized = false;
        }
        if let Sandbox::Absent { retry_at: Some(t) } = self.sandbox
            && self.now < t
        {
            return;
        }
        self.sandbox = Sandbox::Creating;
        self.sandbox_attempts += 1;
        out.push(Command::CreateSandbox);
    }

    /// Rules 5.1-5.5 and 15.1: run init containers one at a time.
    fn progress_init(&mut self, out: &mut Vec<Command>) -> InitProgress {
        for i in 0..self.def.n_init {
            let kind = self.def.containers[i].kind;
            let rec = &self.records[i];
            if kind == ContainerKind::Sidecar {
                if rec.sidecar_started_once {
                    continue;
                }
                match &rec.state {
                    State::Absent | State::Exited(_) => {
                        self.try_start(i, out);
                        return InitProgress::Waiting;
                    }
                    State::Starting { .. } => return InitProgress::Waiting,
                    State::Running(r) => {
                        if r.stop.is_some() || r.post_start_pending {
                            return InitProgress::Waiting;
                        }
                        if rec.probe_value(ProbeKind::Startup) == Some(ProbeValue::Failure) {
                            // Rule 15.2: killed and started again; initialisation waits.
                            let message = format!(
                                "Init container {} failed startup probe",
                                self.def.containers[i].name
                            );
                            self.start_kill(i, KillReason::Startup, true, None, Some(message), out);
                            return InitProgress::Waiting;
                        }
                        if !rec.started() {
                            return InitProgress::Waiting;
                        }
                        self.records[i].sidecar_started_once = true;
                    }
                }
            } else {
                match &rec.state {
                    State::Absent => {
                        self.try_start(i, out);
                        return InitProgress::Waiting;
                    }
                    State::Starting { .. } | State::Running(_) => return InitProgress::Waiting,
                    State::Exited(t) if t.exit_code == 0 => {}
                    State::Exited(_) => {
                        if self.def.restart_policy == RestartPolicy::Never {
                            return InitProgress::Failed;
                        }
                        self.try_start(i, out);
                        return InitProgress::Waiting;
                    }
                }
            }
        }
        InitProgress::Done
    }

    /// Rules 15.2-15.3: sidecars that have started once are kept running.
    fn maintain_sidecars(&mut self, out: &mut Vec<Command>) {
        for i in 0..self.def.n_init {
            if self.def.containers[i].kind != ContainerKind::Sidecar || !self.records[i].sidecar_started_once
            {
                continue;
            }
            match &self.records[i].state {
                State::Running(r) if r.stop.is_none() => self.check_running_health(i, true, out),
                State::Absent | State::Exited(_) => self.try_start(i, out),
                _ => {}
            }
        }
    }

    /// Rules 7.1 and 7.3 for regular containers.
    fn maintain_regular(&mut self, out: &mut Vec<Command>) {
        let restart = self.def.restart_policy != RestartPolicy::Never;
        // A postStart hook that has not returned holds back the containers after it (rule 8.1).
        let mut held = false;
        for i in self.regular_indices().collect::<Vec<_>>() {
            match &self.records[i].state {
                State::Running(r) => {
                    let pending = r.post_start_pending;
                    if r.stop.is_none() {
                        self.check_running_health(i, restart, out);
                    }
                    held |= pending;
                }
                State::Starting { .. } => held |= self.def.containers[i].has_post_start,
                State::Absent => {
                    if !held {
                        held |= self.start_holding(i, out);
                    }
                }
                State::Exited(t) => {
                    let restarts =
                        self.def.restart_policy.restarts(t.exit_code) || self.records[i].pending_restart;
                    if restarts && !held {
                        held |= self.start_holding(i, out);
                    }
                }
            }
        }
    }

    /// Tries to start container `i`; true if a start with a postStart hook is now under way,
    /// which holds back the containers after it. One left in back-off (or waiting to retry a
    /// create error) holds nothing back: the kubelet goes on to the next container.
    fn start_holding(&mut self, i: usize, out: &mut Vec<Command>) -> bool {
        self.try_start(i, out);
        self.def.containers[i].has_post_start && matches!(self.records[i].state, State::Starting { .. })
    }

    /// Rule 7.3 (and 15.2 for sidecars): kill a running container whose definition changed or
    /// whose liveness or startup probe failed. `restart` says whether it will be started again.
    fn check_running_health(&mut self, i: usize, restart: bool, out: &mut Vec<Command>) {
        let def = &self.def.containers[i];
        let rec = &self.records[i];
        let Some(r) = rec.running() else { return };
        let reason = if r.image != def.image {
            KillReason::SpecChanged
        } else if rec.probe_value(ProbeKind::Liveness) == Some(ProbeValue::Failure) {
            KillReason::Liveness
        } else if rec.probe_value(ProbeKind::Startup) == Some(ProbeValue::Failure) {
            KillReason::Startup
        } else {
            return;
        };
        let what = match reason {
            KillReason::SpecChanged => "definition changed",
            KillReason::Liveness => "failed liveness probe",
            _ => "failed startup probe",
        };
        let restart = restart || reason == KillReason::SpecChanged;
        // The kubelet words a sidecar's kill as an init container's, without the suffix.
        let message = if def.kind == ContainerKind::Sidecar {
            format!("Init container {} {what}", def.name)
        } else if restart {
            format!("Container {} {what}, will be restarted", def.name)
        } else {
            format!("Container {} {what}", def.name)
        };
        self.start_kill(i, reason, restart, None, Some(message), out);
    }

    /// Starts container `i`, or puts it in CrashLoopBackOff (rule 7.9).
    fn try_start(&mut self, i: usize, out: &mut Vec<Command>) {
        let now = self.now;
        let def = &self.def.containers[i];
        let (name, image, field_path) = (def.name.clone(), def.image.clone(), def.field_path.clone());
        let pod_ref = self.pod_ref();
        let rec = &mut self.records[i];
        if rec.backoff_image != image {
            rec.backoff = None;
            rec.backoff_image = image;
        }
        if rec.is_live() || rec.create_error.as_ref().is_some_and(|e| e.retry_at > now) {
            return;
        }
        rec.before_start = None;
        let snapshot = Box::new(rec.clone());
        match &rec.state {
            State::Absent => {}
            State::Exited(t) => match rec.restart_verdict(t.finished_at, now) {
                Verdict::Start => {}
                Verdict::Wait { until, duration } => {
                    // Rule 7.9: every sync that finds the container in back-off records the
                    // event; the kubelet's pod worker syncs it again every SYNC_RETRY.
                    let new_wait = rec.backoff_wait.map(|(u, _)| u) != Some(until);
                    if new_wait || now >= rec.backoff_resync {
                        rec.backoff_wait = Some((until, duration));
                        rec.backoff_resync = now + SYNC_RETRY;
                        self.event(
                            out,
                            EventType::Warning,
                            "BackOff",
                            format!("Back-off restarting failed container {name} in pod {pod_ref}"),
                            Some(field_path),
                        );
                    }
                    return;
                }
            },
            State::Starting { .. } | State::Running(_) => return,
        }
        let rec = &mut self.records[i];
        rec.before_start = Some(snapshot);
        if let State::Exited(t) = std::mem::replace(
            &mut rec.state,
            State::Starting {
                stop_when_started: false,
            },
        ) {
            rec.last_termination = Some(t);
        }
        if rec.has_history && !rec.count_preincremented {
            rec.restart_count = rec.restart_count.saturating_add(1);
        }
        rec.count_preincremented = false;
        rec.has_history = true;
        rec.backoff_wait = None;
        rec.pending_restart = false;
        out.push(Command::StartContainer {
            name,
            restart_count: rec.restart_count,
        });
    }

    fn any_regular_will_run(&self) -> bool {
        self.regular_indices().any(|i| match &self.records[i].state {
            State::Absent | State::Starting { .. } => true,
            State::Running(r) => r.stop.as_ref().is_none_or(|s| s.restart),
            State::Exited(t) => {
                self.def.restart_policy.restarts(t.exit_code) || self.records[i].pending_restart
            }
        })
    }

    // --- stopping ---

    fn begin_termination(&mut self, cause: Cause, grace: Duration, out: &mut Vec<Command>) {
        let _ = out;
        self.termination = Some(Termination { cause, grace });
        // Rule 3.15: liveness and startup probing stop; readiness goes on.
        for rec in &mut self.records {
            for kind in [ProbeKind::Liveness, ProbeKind::Startup] {
                if let Some(w) = rec.worker_mut(kind) {
                    w.stopped = true;
                    w.in_flight = None;
                    w.value = ProbeValue::Success;
                }
            }
        }
    }

    /// Rule 9.7: stop everything, sidecars last in reverse order, then the sandbox.
    fn drive_termination(&mut self, out: &mut Vec<Command>) {
        let Some(termination) = self.termination else {
            return;
        };
        for i in 0..self.records.len() {
            match &mut self.records[i].state {
                State::Running(r) => match &mut r.stop {
                    None => {
                        self.start_kill(i, KillReason::PodStop, false, Some(termination.grace), None, out)
                    }
                    Some(stop) => stop.restart = false,
                },
                State::Starting { stop_when_started } => *stop_when_started = true,
                State::Absent | State::Exited(_) => {}
            }
        }
        self.advance_stops(out);
        if self.records.iter().any(Record::is_live) {
            return;
        }
        self.finish(out);
    }

    fn finish(&mut self, out: &mut Vec<Command>) {
        if self.sandbox_attempts > 0 {
            out.push(Command::TeardownSandbox);
        }
        self.sandbox = Sandbox::Absent { retry_at: None };
        for w in self
            .records
            .iter_mut()
            .flat_map(|r| r.probes.iter_mut().flatten())
        {
            w.stopped = true;
            w.in_flight = None;
        }
        self.finished = true;
        self.terminal_phase = Some(status::final_phase(self));
        out.push(Command::PodFinished);
    }

    /// Begins `killContainer` for container `i` (rule 9.4), choosing its grace period (9.3).
    fn start_kill(
        &mut self,
        i: usize,
        reason: KillReason,
        restart: bool,
        grace_override: Option<Duration>,
        message: Option<String>,
        out: &mut Vec<Command>,
    ) {
        let now = self.now;
        let def = &self.def.containers[i];
        let (name, field_path, has_pre_stop) = (def.name.clone(), def.field_path.clone(), def.has_pre_stop);
        let probe_grace = |kind| def.probe(kind).and_then(|p| p.termination_grace_secs);
        let grace = grace_override.unwrap_or_else(|| {
            let probe = match reason {
                KillReason::Liveness => probe_grace(ProbeKind::Liveness),
                KillReason::Startup => probe_grace(ProbeKind::Startup),
                _ => None,
            };
            secs(probe.unwrap_or(self.def.grace_secs))
        });
        let Some(r) = self.records[i].running_mut() else {
            return;
        };
        if r.stop.is_some() {
            return;
        }
        let id = r.id.clone();
        let message = message.unwrap_or_else(|| format!("Stopping container {name}"));
        let backoff_base = self.records[i].kill_backoff_base(reason, restart);
        let Some(r) = self.records[i].running_mut() else {
            return;
        };
        if has_pre_stop && !grace.is_zero() {
            r.stop = Some(Stop {
                reason,
                restart,
                backoff_base,
                phase: StopPhase::PreStop {
                    since: now,
                    deadline: now + grace,
                    grace,
                },
            });
            self.event(out, EventType::Normal, "Killing", message, Some(field_path));
            out.push(Command::RunHook {
                name,
                id,
                hook: HookKind::PreStop,
            });
        } else {
            r.stop = Some(Stop {
                reason,
                restart,
                backoff_base,
                phase: StopPhase::Signalled { at: now, grace },
            });
            self.event(out, EventType::Normal, "Killing", message, Some(field_path));
            self.after_pre_stop(i, grace, out);
        }
    }

    /// Rule 9.4 steps 3-5, after the preStop hook (or without one).
    fn after_pre_stop(&mut self, i: usize, grace_left: Duration, out: &mut Vec<Command>) {
        let now = self.now;
        let ordered = self.termination.is_some()
            && self.def.containers[i].kind == ContainerKind::Sidecar
            && !grace_left.is_zero();
        let Some(r) = self.records[i].running_mut() else {
            return;
        };
        let Some(stop) = r.stop.as_mut() else { return };
        if ordered {
            stop.phase = StopPhase::AwaitTurn {
                since: now,
                deadline: now + grace_left,
                grace: grace_left,
            };
            self.advance_stops(out);
        } else {
            self.signal(i, grace_left, out);
        }
    }

    fn signal(&mut self, i: usize, grace: Duration, out: &mut Vec<Command>) {
        let now = self.now;
        let name = self.def.containers[i].name.clone();
        let Some(r) = self.records[i].running_mut() else {
            return;
        };
        let Some(stop) = r.stop.as_mut() else { return };
        let grace = grace.max(MIN_KILL_GRACE);
        stop.phase = StopPhase::Signalled { at: now, grace };
        out.push(Command::StopContainer {
            name,
            id: r.id.clone(),
            grace,
        });
    }

    /// Moves stops whose wait is over to their next phase.
    fn advance_stops(&mut self, out: &mut Vec<Command>) {
        let now = self.now;
        for i in 0..self.records.len() {
            let Some(Stop { phase, .. }) = self.records[i].running().and_then(|r| r.stop.clone()) else {
                continue;
            };
            match phase {
                StopPhase::PreStop { deadline, .. } if now >= deadline => {
                    self.after_pre_stop(i, Duration::ZERO, out)
                }
                StopPhase::AwaitTurn {
                    since,
                    deadline,
                    grace,
                } => {
                    if now >= deadline {
                        self.signal(i, Duration::ZERO, out);
                    } else if self.sidecar_turn(i) {
                        self.signal(i, grace.saturating_sub(whole_secs(now.since(since))), out);
                    }
                }
                _ => {}
            }
        }
    }

    /// Rule 9.7 step 3: a sidecar stops once every regular container and every later sidecar
    /// has exited.
    fn sidecar_turn(&self, i: usize) -> bool {
        self.records.iter().enumerate().all(|(j, rec)| {
            let must_wait_for = self.def.containers[j].kind == ContainerKind::Regular
                || (j > i && self.def.containers[j].kind == ContainerKind::Sidecar);
            !must_wait_for || !rec.is_live()
        })
    }

    /// Rule 9.1: a later, shorter grace period cuts every wait short.
    fn shorten_stops(&mut self, grace: Duration, out: &mut Vec<Command>) {
        let now = self.now;
        let limit = now + grace;
        for i in 0..self.records.len() {
            let Some(r) = self.records[i].running_mut() else {
                continue;
            };
            let Some(stop) = r.stop.as_mut() else { continue };
            match &mut stop.phase {
                StopPhase::PreStop { deadline, .. } | StopPhase::AwaitTurn { deadline, .. } => {
                    *deadline = (*deadline).min(limit);
                }
                StopPhase::Signalled { at, grace: signalled } => {
                    let kill_at = *at + *signalled;
                    let new_grace = grace.max(MIN_KILL_GRACE);
                    if now + new_grace < kill_at {
                        *at = now;
                        *signalled = new_grace;
                        let (name, id) = (self.def.containers[i].name.clone(), r.id.clone());
                        out.push(Command::StopContainer {
                            name,
                            id,
                            grace: new_grace,
                        });
                    }
                }
            }
        }
    }

    // --- probing ---

    fn trigger_readiness(&mut self, i: usize) {
        if let Some(w) = self.records[i].worker_mut(ProbeKind::Readiness)
            && w.value != ProbeValue::Success
        {
            w.triggered = true;
        }
    }

    /// Rule 3.5: one attempt per due worker.
    fn run_due_probes(&mut self, out: &mut Vec<Command>) {
        let now = self.now;
        let terminating = self.termination.is_some();
        let policy = self.def.restart_policy;
        for i in 0..self.records.len() {
            let def = &self.def.containers[i];
            let rec = &mut self.records[i];
            let started = rec.started();
            // Rule 8.1: while its postStart hook runs, the status shows no running container,
            // so the workers find nothing to probe.
            let running = rec
                .running()
                .filter(|r| !r.post_start_pending)
                .map(|r| (r.id.clone(), r.started_at, r.stop.is_some()));
            let exited = rec.exited().is_some();
            for w in rec.probes.iter_mut().flatten() {
                if !w.due(now) {
                    continue;
                }
                w.consume_tick(now);
                let Some((id, started_at, _stopping)) = running.clone() else {
                    if exited && policy == RestartPolicy::Never && def.kind != ContainerKind::Sidecar {
                        w.stopped = true;
                    }
                    continue;
                };
                if w.instance.as_ref() != Some(&id) {
                    w.new_instance(&id);
                }
                if w.on_hold || (terminating && w.kind != ProbeKind::Readiness) {
                    continue;
                }
                if whole_secs(now.since(started_at)).as_secs()
                    < u64::try_from(w.params.initial_delay_secs).unwrap_or(0)
                {
                    continue;
                }
                let gated = match w.kind {
                    ProbeKind::Startup => started,
                    ProbeKind::Liveness | ProbeKind::Readiness => !started,
                };
                if gated {
                    continue;
                }
                w.in_flight = Some(id.clone());
                out.push(Command::RunProbe {
                    name: def.name.clone(),
                    id,
                    kind: w.kind,
                    timeout: w.params.timeout,
                });
            }
        }
    }

    // --- timers ---

    fn compute_wake(&self) -> Option<Time> {
        if self.finished {
            return None;
        }
        let mut wake: Option<Time> = None;
        let mut at = |t: Time| wake = Some(wake.map_or(t, |w| w.min(t)));
        if let Sandbox::Absent { retry_at: Some(t) } = self.sandbox {
            at(t);
        }
        if self.termination.is_none()
            && let Some(t) = self.deadline()
        {
            at(t);
        }
        // A container's wait that is over but could not act (its start held back by another
        // container's postStart hook, or its back-off ended while a create error waits for its
        // retry) is woken by whatever holds it: a wake-up in the past would only spin.
        let now = self.now;
        for rec in &self.records {
            // The end of the back-off and the next sync in it (rule 7.9); a create error's retry.
            let backoff = rec.backoff_wait.filter(|_| self.termination.is_none());
            let retry = rec.create_error.as_ref().filter(|_| !rec.is_live());
            [
                backoff.map(|(until, _)| until),
                backoff.map(|_| rec.backoff_resync),
                retry.map(|e| e.retry_at),
            ]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .for_each(&mut at);
            if let Some(r) = rec.running() {
                if let Some(StopPhase::PreStop { deadline, .. } | StopPhase::AwaitTurn { deadline, .. }) =
                    r.stop.as_ref().map(|s| &s.phase)
                {
                    at(*deadline);
                }
                for w in rec.probes.iter().flatten() {
                    if !w.stopped && !w.on_hold && w.in_flight.is_none() {
                        at(if w.triggered { self.now } else { w.next_due });
                    }
                }
            }
        }
        wake
    }

    // --- helpers ---

    fn index_of(&self, name: &str) -> Option<usize> {
        self.def.containers.iter().position(|c| c.name == name)
    }

    fn regular_indices(&self) -> impl Iterator<Item = usize> + use<> {
        self.def.n_init..self.def.containers.len()
    }

    fn spec_grace(&self) -> Duration {
        secs(self.def.grace_secs.max(1))
    }

    fn pod_ref(&self) -> String {
        status::pod_ref(&self.pod)
    }

    fn event(
        &self,
        out: &mut Vec<Command>,
        type_: EventType,
        reason: &'static str,
        message: String,
        field_path: Option<String>,
    ) {
        out.push(Command::Event(Event {
            type_,
            reason,
            message,
            field_path,
        }));
    }

    /// Carries restart counts, start time, last terminations and a terminal phase over from an
    /// existing status (a node restart).
    fn restore_from_status(&mut self) {
        let Some(st) = self.pod.status.clone() else { return };
        // The kubelet's own conditions as last reported: their lastTransitionTimes are kept
        // where their status does not change (rule 14.2).
        self.status.conditions.clone_from(&st.conditions);
        if let Some(t) = &st.start_time {
            self.start_time = Time::from_k8s(t);
        }
        self.reason = st.reason.clone();
        self.message = st.message.clone();
        let deleting = self.pod.metadata.deletion_timestamp.is_some();
        let all = st
            .init_container_statuses
            .iter()
            .flatten()
            .chain(st.container_statuses.iter().flatten());
        for cs in all {
            let Some(i) = self.index_of(&cs.name) else {
                continue;
            };
            let rec = &mut self.records[i];
            rec.restart_count = cs.restart_count.max(rec.restart_count);
            let state = cs.state.as_ref();
            let ran = cs.restart_count > 0
                || cs.last_state.as_ref().is_some_and(|s| s.terminated.is_some())
                || state.is_some_and(|s| s.running.is_some() || s.terminated.is_some());
            rec.has_history |= ran;
            let last = state
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
            if let Some(t) = last {
                rec.last_termination = Some(status::terminated_from_api(t));
            }
            if state.is_some_and(|s| s.running.is_some()) {
                // Rule 11.9: it was running and no runtime record of it survived.
                rec.last_termination = Some(Terminated {
                    id: None,
                    exit_code: 137,
                    signal: None,
                    reason: "ContainerStatusUnknown".into(),
                    message: Some(
                        "The container could not be located when the pod was deleted.  The container used to be Running"
                            .into(),
                    ),
                    started_at: None,
                    finished_at: self.now,
                });
                if deleting {
                    rec.count_preincremented = false;
                } else {
                    rec.restart_count = rec.restart_count.saturating_add(1);
                    rec.count_preincremented = true;
                }
            }
        }
        if self.records.iter().any(|r| r.has_history) {
            // The old sandbox is gone with the old node process (rule 6.2).
            self.sandbox_attempts = 1;
        }
        match st.phase.as_deref() {
            Some("Succeeded") => self.terminal_phase = Some(Phase::Succeeded),
            Some("Failed") => self.terminal_phase = Some(Phase::Failed),
            _ => {}
        }
        if self.terminal_phase.is_some() {
            self.finished = true;
            for w in self
                .records
                .iter_mut()
                .flat_map(|r| r.probes.iter_mut().flatten())
            {
                w.stopped = true;
            }
        }
    }
}

/// How far init has got.
enum InitProgress {
    Done,
    Waiting,
    Failed,
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

/// Truncates to whole seconds, as the kubelet's grace arithmetic does.
fn whole_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}
