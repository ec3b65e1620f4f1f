//! [`PodMachine`]: the pod lifecycle as one deterministic `step` function.
//!
//! Each step first records what the input says happened (`observe`), then recomputes what
//! must happen from the whole state (`reconcile`, level-triggered like the kubelet's
//! `computePodActions`), runs the probes that are due, and regenerates the status. `observe`,
//! graceful `termination` and the `restore` after a node restart (from the last status, or
//! adopting what survived) are in their own files.

mod observe;
mod restore;
mod termination;

pub use restore::{Adopted, AdoptedExit};

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
    /// Counts the changes of `status` ([`PodMachine::status_revision`]).
    pub(crate) status_revision: u64,
    pub(crate) wake: Option<Time>,
    /// Instances [`adopt`](Self::adopt) found that must not run: stopped by the next step.
    pub(crate) leftovers: Vec<(String, ContainerId)>,
    /// A finished pod's sandbox survived: the next step tears it down.
    pub(crate) leftover_sandbox: bool,
}

// === impl PodMachine ===

impl PodMachine {
    /// A machine for `pod`, admitted to the node at `now` (its `status.startTime`).
    ///
    /// If the pod already has a status (the node restarted), restart counts, the start time,
    /// the last terminations and a terminal phase are carried over: restart counts never go
    /// back, and a finished pod stays finished.
    pub fn new(pod: &Pod, now: Time) -> PodMachine {
        PodMachine::take_over(pod, now, None)
    }

    /// Sets the node's address, reported as `status.hostIP`.
    pub fn set_host_ip(&mut self, ip: impl Into<String>) {
        self.host_ip = Some(ip.into());
        let status = if self.finished {
            // A finished pod's status never changes again (rule 10.4), also one restored after a
            // node restart: only the address is filled in.
            PodStatus {
                host_ip: self.host_ip.clone(),
                host_ips: self.host_ip.clone().map(|ip| vec![HostIP { ip }]),
                ..self.status.clone()
            }
        } else {
            status::generate(self)
        };
        self.keep_status(status);
    }

    /// Keeps `status` if it differs from the status kept, counting the change
    /// ([`status_revision`](Self::status_revision)); whether it did.
    fn keep_status(&mut self, status: PodStatus) -> bool {
        if status == self.status {
            return false;
        }
        self.status = status;
        self.status_revision += 1;
        true
    }

    /// The pod's complete status as of the last step.
    pub fn status(&self) -> &PodStatus {
        &self.status
    }

    /// A number that changes whenever [`status`](Self::status) does, and only then: what a
    /// caller compares to know whether the status changed, instead of the whole status.
    pub fn status_revision(&self) -> u64 {
        self.status_revision
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
        let mut out = self.take_leftovers();
        if self.finished {
            return out;
        }
        // The inputs that come most often (a probe's result and the tick that runs the next
        // probe; 400 a second at 1,000 pods with two probes each at 10 s) mostly change only
        // the probe workers' bookkeeping. When no container's started or ready state moved and
        // nothing but probes was asked for, the status is the one generated last: it is not
        // generated again (a whole PodStatus, about a tenth of an idle node's CPU at 1,000
        // pods). Debug builds check that skipping it changed nothing.
        let probes_before = matches!(input, Input::ProbeResult { .. } | Input::Tick)
            .then(|| self.probe_states())
            .flatten();
        self.observe(input, &mut out);
        self.reconcile(&mut out);
        self.run_due_probes(&mut out);
        let unchanged = probes_before.is_some()
            && probes_before == self.probe_states()
            && out.iter().all(|c| matches!(c, Command::RunProbe { .. }));
        if unchanged {
            debug_assert!(
                status::generate(self) == self.status,
                "a probe result or tick that changed no probe state changed the status"
            );
        } else {
            self.refresh_status(&mut out);
        }
        self.wake = self.compute_wake();
        if let Some(t) = self.wake {
            out.push(Command::WakeAt(t));
        }
        out
    }

    /// Generates the status; when it changed, keeps it (counting the change) and, by rule 3.14,
    /// probes the readiness of every started container that is not ready, at once.
    fn refresh_status(&mut self, out: &mut Vec<Command>) {
        let status = status::generate(self);
        if !self.keep_status(status) {
            return;
        }
        for i in 0..self.records.len() {
            if self.records[i].started() && !self.records[i].ready() {
                self.trigger_readiness(i);
            }
        }
        self.run_due_probes(out);
    }

    /// Every container's started and ready state, two bits each (`None` past 32 containers):
    /// what probe results change in the status.
    fn probe_states(&self) -> Option<u64> {
        if self.records.len() > 32 {
            return None;
        }
        Some(self.records.iter().enumerate().fold(0u64, |bits, (i, r)| {
            bits | (u64::from(r.started()) << (2 * i)) | (u64::from(r.ready()) << (2 * i + 1))
        }))
    }

    // --- observing ---

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
        // Ephemeral containers may start before initialisation is complete.
        self.start_ephemeral(out);
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
                // The kubelet goes on from the last init container with a status in this
                // sandbox: a sidecar that started once gates the next one again while that one
                // has none (a config error kept it from being created).
                if rec.sidecar_started_once && self.later_init_has_status(i) {
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

    /// Whether an init container after `i` has an instance in this sandbox.
    fn later_init_has_status(&self, i: usize) -> bool {
        self.records[i + 1..self.def.n_init]
            .iter()
            .any(|r| !matches!(r.state, State::Absent))
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

    /// Ephemeral containers start once, when they appear, and are never restarted (not even
    /// after a sandbox change: a status once reported stays).
    fn start_ephemeral(&mut self, out: &mut Vec<Command>) {
        for i in self.def.ephemeral() {
            let rec = &self.records[i];
            if matches!(rec.state, State::Absent) && !rec.has_history && rec.create_error.is_none() {
                self.try_start(i, out);
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
        // A kill's back-off base is for the restart right after it; a new instance (this one, or
        // the first in a new sandbox) measures from its own end (a start error included).
        rec.kill_backoff = None;
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
            // Most steps find no probe due: nothing of the instance is copied for them.
            if !rec.probes.iter().flatten().any(|w| w.due(now)) {
                continue;
            }
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
        self.def.regular()
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
