//! Taking a pod over after a node restart.
//!
//! [`PodMachine::new`] starts from the status the previous node reported and nothing else (its
//! sandbox and containers are gone): restart counts, the start time, last terminations,
//! conditions and a terminal phase carry over (rules 3.16, 11.9, 10.4).
//! [`PodMachine::adopt`] is for a node whose pods outlive it (issue #18): the sandbox and some
//! container instances survived, so running instances keep their IDs, `startedAt`, restart
//! counts and published readiness, instances that ended while no node ran are reported with
//! their real exit and handled per `restartPolicy` as if their exit had just been observed,
//! and nothing that completed in the surviving sandbox runs again.
//!
//! What it is not: it does not find the survivors (the runtime does) and reads no clock.

use podvisor_core::ExitStatus;
use podvisor_core::corev1::ContainerStateTerminated;

use super::*;
use crate::backoff::{self, Backoff};

/// A container instance that survived the node's previous run, as the runtime found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adopted {
    /// The container's name in the pod spec (regular, init, sidecar or ephemeral).
    pub name: String,
    /// The instance.
    pub id: ContainerId,
    /// The instance's restart index (its `restartCount` when it was started).
    pub restart_count: i32,
    /// When its process started.
    pub started_at: Time,
    /// `None`: it still runs. Otherwise how and when it ended while no node ran.
    pub ended: Option<AdoptedExit>,
}

/// How an [`Adopted`] instance ended while no node ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdoptedExit {
    /// How its main process ended.
    pub status: ExitStatus,
    /// When it ended (its `finishedAt`, and what its back-off counts from).
    pub finished_at: Time,
    /// Its termination message, if any.
    pub message: Option<String>,
}

/// What survived of a pod: its sandbox (with this IP) and these instances.
pub(super) struct Survivors<'a> {
    pod_ip: Option<String>,
    instances: &'a [Adopted],
}

impl PodMachine {
    /// A machine for `pod` whose sandbox and some container instances survived the node's
    /// previous run (found by the runtime at `now`). `pod_ip` is the surviving sandbox's IP.
    ///
    /// As [`new`](Self::new) it carries restart counts, the start time, last terminations,
    /// conditions and a terminal phase over from `pod.status`; in addition:
    ///
    /// - the sandbox exists: no `CreateSandbox` is issued, and the pod is not started over
    ///   (rule 6.2 does not apply); init containers that completed stay completed, and a pod
    ///   whose regular containers ran (or whose `Initialized` condition was `True`) counts as
    ///   initialized, its sidecars as started once;
    /// - an instance that still runs is `Running` with its ID and `startedAt`, no restart is
    ///   counted, and the `started` and `ready` the previous status showed for that same
    ///   instance are kept until the probes (all due at the first step) say otherwise;
    /// - an instance that ended is recorded as terminated at its `finished_at`, with its exit
    ///   code, reason and message, and the first step handles it per `restartPolicy`, as if its
    ///   exit had been observed at `finished_at`;
    /// - the CrashLoopBackOff the previous node held in memory is rebuilt from each instance's
    ///   restart index (10 s doubled per restart, capped, last set at its start: rule 7.10, as
    ///   if no reset had happened since; a reset, rule 7.8, is found by the usual check), so
    ///   a restart after an exit (while away, or later) waits as it would have;
    /// - where several instances of one container survived, the one with the highest restart
    ///   index is the container's; any other that runs, and any running instance of a
    ///   container the pod does not have, is stopped by the first step;
    /// - a container without an instance is treated as `new` treats it (rule 11.9 for one that
    ///   was running), except that a terminated state the previous status showed stands;
    /// - a terminal pod stays terminal with its status unchanged; its first step stops
    ///   whatever of it still ran and tears its sandbox down (the only commands a finished
    ///   machine ever returns).
    ///
    /// Exits of the running instances arrive later as [`Input::ContainerExited`] with their
    /// adopted IDs.
    pub fn adopt(pod: &Pod, now: Time, pod_ip: Option<String>, adopted: &[Adopted]) -> PodMachine {
        PodMachine::take_over(
            pod,
            now,
            Some(Survivors {
                pod_ip,
                instances: adopted,
            }),
        )
    }

    pub(super) fn take_over(pod: &Pod, now: Time, survivors: Option<Survivors<'_>>) -> PodMachine {
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
            status_revision: 0,
            wake: None,
            leftovers: Vec::new(),
            leftover_sandbox: false,
        };
        match &survivors {
            None => machine.restore_from_status(None),
            Some(s) => {
                let current = machine.current_instances(s.instances);
                machine.restore_from_status(Some(&current));
                machine.adopt_instances(s.pod_ip.clone(), &current);
            }
        }
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
        if machine.finished && survivors.is_some() {
            // Nothing of a finished pod may run: stop what survived, remove its sandbox.
            let names = machine.def.containers.iter().map(|c| c.name.as_str());
            let running = names
                .zip(&machine.records)
                .filter_map(|(name, rec)| rec.running().map(|r| (name.to_owned(), r.id.clone())));
            let running: Vec<_> = running.collect();
            machine.leftovers.extend(running);
            machine.leftover_sandbox = true;
        }
        machine
    }

    /// The instance each container continues with (by record index), the newest of those
    /// found; the other running ones are queued to be stopped.
    fn current_instances<'a>(&mut self, instances: &'a [Adopted]) -> Vec<Option<&'a Adopted>> {
        let mut current: Vec<Option<&Adopted>> = vec![None; self.records.len()];
        let newer = |a: &Adopted, b: &Adopted| {
            (a.restart_count, a.ended.is_none()) > (b.restart_count, b.ended.is_none())
        };
        for a in instances {
            let dropped = match self.index_of(&a.name) {
                None => Some(a),
                Some(i) => match current[i] {
                    None => {
                        current[i] = Some(a);
                        None
                    }
                    Some(b) if newer(a, b) => {
                        current[i] = Some(a);
                        Some(b)
                    }
                    Some(_) => Some(a),
                },
            };
            if let Some(d) = dropped.filter(|d| d.ended.is_none()) {
                self.leftovers.push((d.name.clone(), d.id.clone()));
            }
        }
        current
    }

    /// Carries restart counts, start time, last terminations and a terminal phase over from an
    /// existing status (a node restart). `adopted`: the surviving instance of each container
    /// (by record index), when the sandbox survived.
    fn restore_from_status(&mut self, adopted: Option<&[Option<&Adopted>]>) {
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
            .chain(st.container_statuses.iter().flatten())
            .chain(st.ephemeral_container_statuses.iter().flatten());
        for cs in all {
            let Some(i) = self.index_of(&cs.name) else {
                continue;
            };
            let instance = adopted.and_then(|a| a.get(i).copied().flatten());
            let rec = &mut self.records[i];
            rec.restart_count = cs.restart_count.max(rec.restart_count);
            let state = cs.state.as_ref();
            let ran = cs.restart_count > 0
                || cs.last_state.as_ref().is_some_and(|s| s.terminated.is_some())
                || state.is_some_and(|s| s.running.is_some() || s.terminated.is_some());
            rec.has_history |= ran;
            let current = state.and_then(|s| s.terminated.as_ref());
            let previous = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            if adopted.is_some()
                && instance.is_none()
                && let Some(t) = current
            {
                // The sandbox survived, so an exit it reported stands (and is not run again).
                rec.state = State::Exited(status::terminated_from_api(t));
                rec.last_termination = previous.map(status::terminated_from_api);
                continue;
            }
            // The last termination that is not the adopted instance itself.
            let is_adopted = |t: &&ContainerStateTerminated| {
                instance.is_some_and(|a| t.container_id.as_deref() == Some(a.id.uri().as_str()))
            };
            let last = [current, previous].into_iter().flatten().find(|t| !is_adopted(t));
            if let Some(t) = last {
                rec.last_termination = Some(status::terminated_from_api(t));
            }
            if instance.is_none() && state.is_some_and(|s| s.running.is_some()) {
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

    /// The surviving sandbox and instances become the machine's.
    fn adopt_instances(&mut self, pod_ip: Option<String>, current: &[Option<&Adopted>]) {
        self.sandbox = Sandbox::Ready;
        self.pod_ip = pod_ip;
        // A sandbox exists: losing it later is a re-creation (rule 6.2), and the pod's end
        // tears it down.
        self.sandbox_attempts = 1;
        let statuses = self.pod.status.clone().unwrap_or_default();
        let previous_status = |name: &str| {
            statuses
                .init_container_statuses
                .iter()
                .flatten()
                .chain(statuses.container_statuses.iter().flatten())
                .chain(statuses.ephemeral_container_statuses.iter().flatten())
                .find(|cs| cs.name == name)
        };
        for (i, a) in current.iter().enumerate() {
            let Some(a) = a else { continue };
            let def = &self.def.containers[i];
            let rec = &mut self.records[i];
            rec.has_history = true;
            rec.count_preincremented = false;
            rec.restart_count = rec.restart_count.max(a.restart_count);
            match &a.ended {
                None => {
                    rec.state = State::Running(Running {
                        id: a.id.clone(),
                        started_at: a.started_at,
                        image: def.image.clone(),
                        // Its postStart hook ran under the previous node.
                        post_start_pending: false,
                        stop: None,
                    });
                    for w in rec.probes.iter_mut().flatten() {
                        w.new_instance(&a.id);
                    }
                    // Rule 3.16: what the last status said of this very instance is kept until
                    // the probes, all due at once, take over.
                    let shown = previous_status(&def.name).filter(|cs| {
                        cs.container_id.as_deref() == Some(a.id.uri().as_str())
                            && cs.state.as_ref().is_some_and(|s| s.running.is_some())
                    });
                    if let Some(cs) = shown {
                        if cs.started == Some(true)
                            && let Some(w) = rec.worker_mut(ProbeKind::Startup)
                        {
                            // A startup probe that succeeded probes no more (rule 3.5 step 13).
                            w.value = ProbeValue::Success;
                            w.on_hold = true;
                        }
                        if cs.ready
                            && let Some(w) = rec.worker_mut(ProbeKind::Readiness)
                        {
                            w.value = ProbeValue::Success;
                        }
                    }
                }
                Some(e) => {
                    rec.state = State::Exited(Terminated::from_exit(
                        a.id.clone(),
                        e.status,
                        e.message.clone(),
                        a.started_at,
                        e.finished_at,
                    ));
                }
            }
            if a.restart_count > 0 {
                // The back-off the previous node held for it (in memory, lost): after
                // restart n it is 10 s doubled n - 1 times (rule 7.10), last set when the
                // instance started; a reset (rule 7.8) is found by the usual check.
                let doublings = u32::try_from(a.restart_count - 1).unwrap_or(0).min(16);
                let duration = (backoff::INITIAL * 2u32.pow(doublings)).min(backoff::CAP);
                rec.backoff = Some(Backoff {
                    duration,
                    last_update: a.started_at,
                });
                rec.backoff_image.clone_from(&def.image);
            }
        }
        let regular_ran = self
            .def
            .regular()
            .any(|i| !matches!(self.records[i].state, State::Absent));
        let shown_initialized = statuses
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Initialized" && c.status == "True");
        if regular_ran || shown_initialized {
            // Initialisation completed in this very sandbox: it is not run again, and every
            // sidecar has started once (so one that ended is restarted, rule 15.3).
            self.initialized = true;
            for i in 0..self.def.n_init {
                if self.def.containers[i].kind == ContainerKind::Sidecar {
                    self.records[i].sidecar_started_once = true;
                }
            }
        }
    }

    /// The stops (and for a finished pod, the sandbox teardown) [`adopt`](Self::adopt) left
    /// for the first step.
    pub(super) fn take_leftovers(&mut self) -> Vec<Command> {
        let grace = self.spec_grace().max(MIN_KILL_GRACE);
        let mut out: Vec<Command> = std::mem::take(&mut self.leftovers)
            .into_iter()
            .map(|(name, id)| Command::StopContainer { name, id, grace })
            .collect();
        if std::mem::take(&mut self.leftover_sandbox) {
            out.push(Command::TeardownSandbox);
        }
        out
    }
}
