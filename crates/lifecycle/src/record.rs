//! What the model knows about each container: its current instance and its history.

use std::time::Duration;

use podvisor_core::{ContainerId, ExitStatus, ProbeKind};

use crate::Time;
use crate::backoff::{self, Backoff, Verdict};
use crate::probe_worker::{ProbeValue, ProbeWorker};
use crate::spec::probe_index;

/// A container instance that has ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Terminated {
    pub(crate) id: Option<ContainerId>,
    pub(crate) exit_code: i32,
    pub(crate) signal: Option<i32>,
    pub(crate) reason: String,
    pub(crate) message: Option<String>,
    pub(crate) started_at: Option<Time>,
    pub(crate) finished_at: Time,
}

impl Terminated {
    pub(crate) fn from_exit(
        id: ContainerId,
        status: ExitStatus,
        message: Option<String>,
        started_at: Time,
        now: Time,
    ) -> Self {
        Terminated {
            id: Some(id),
            exit_code: status.code(),
            // The kubelet never fills `signal`: a signalled exit shows only as 128 + N.
            signal: None,
            reason: status.reason().to_owned(),
            message,
            started_at: Some(started_at),
            finished_at: now,
        }
    }
}

/// A container that could not be created (rule 11.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CreateError {
    /// The waiting reason (`CreateContainerConfigError`, `CreateContainerError`).
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    /// When to try again.
    pub(crate) retry_at: Time,
}

/// Why a running container is being stopped (rule 7.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KillReason {
    /// Pod deletion, deadline, pod completion, sandbox change.
    PodStop,
    /// The liveness probe failed.
    Liveness,
    /// The startup probe failed.
    Startup,
    /// The postStart hook failed.
    PostStartHook,
    /// The container's definition (image) changed.
    SpecChanged,
}

/// Where a stop is in the `killContainer` sequence (rule 9.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StopPhase {
    /// The preStop hook runs; we wait for it until `deadline`.
    PreStop {
        since: Time,
        deadline: Time,
        grace: Duration,
    },
    /// A sidecar waits for the containers that must stop before it (rule 9.7 step 3).
    AwaitTurn {
        since: Time,
        deadline: Time,
        grace: Duration,
    },
    /// The stop signal was sent; SIGKILL follows after `grace`.
    Signalled { at: Time, grace: Duration },
}

/// What the back-off of the restart after a probe or definition kill is measured from (rule
/// 7.9): the kubelet kills and starts again in one sync, from the runtime's records as they were
/// before the kill, so it looks at the instance that exited before the killed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BackoffBase {
    /// No instance had exited before: the restart is immediate and leaves the back-off alone.
    NoneExited,
    /// The instance before the killed one finished at this time.
    Previous(Time),
}

/// A stop in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stop {
    pub(crate) reason: KillReason,
    /// The container will be started again after it exits.
    pub(crate) restart: bool,
    /// For a restart decided in a sync (probe or definition kill), what its back-off counts from.
    pub(crate) backoff_base: Option<BackoffBase>,
    pub(crate) phase: StopPhase,
}

/// A running instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Running {
    pub(crate) id: ContainerId,
    pub(crate) started_at: Time,
    /// The image it was started with (its definition hash, rule 7.4).
    pub(crate) image: String,
    /// The postStart hook has not returned yet.
    pub(crate) post_start_pending: bool,
    pub(crate) stop: Option<Stop>,
}

/// The current instance of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// No instance: never started, or its record was purged with its sandbox.
    Absent,
    /// `StartContainer` was issued; waiting for the runtime. `stop_when_started` is set when the
    /// pod began terminating in the meantime.
    Starting { stop_when_started: bool },
    /// The process runs.
    Running(Running),
    /// The last instance ended.
    Exited(Terminated),
}

/// Everything about one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) state: State,
    pub(crate) restart_count: i32,
    /// An instance existed before (so the next start is a restart).
    pub(crate) has_history: bool,
    /// The previous instance's end, shown as `lastState`.
    pub(crate) last_termination: Option<Terminated>,
    /// The last start attempt failed: waiting reason and message (rule 11.4).
    pub(crate) start_error: Option<(&'static str, String)>,
    /// The container could not be created from its configuration (rule 11.5: a missing
    /// ConfigMap or Secret reference); no process was started, and it is tried again.
    pub(crate) create_error: Option<CreateError>,
    /// The record as it was before the start in flight, restored when that start turns out to
    /// be a create error (nothing was created: no restart is counted).
    pub(crate) before_start: Option<Box<Record>>,
    /// In CrashLoopBackOff until this time, with this back-off.
    pub(crate) backoff_wait: Option<(Time, Duration)>,
    /// While in back-off: when the next sync (and `BackOff` event) is due.
    pub(crate) backoff_resync: Time,
    pub(crate) backoff: Option<Backoff>,
    /// The image the back-off entry belongs to (rule 7.7).
    pub(crate) backoff_image: String,
    /// The last instance was stopped to be restarted (liveness, spec change): start it again
    /// whatever the restart policy says.
    pub(crate) pending_restart: bool,
    /// The last instance was killed by a probe or a definition change; its restart's back-off
    /// is measured from this (used once).
    pub(crate) kill_backoff: Option<BackoffBase>,
    /// `restart_count` already counts the next instance (rule 11.9 after a node restart).
    pub(crate) count_preincremented: bool,
    /// A sidecar reached "started" once in the current sandbox (so it no longer gates init).
    pub(crate) sidecar_started_once: bool,
    pub(crate) probes: [Option<ProbeWorker>; 3],
}

impl Record {
    pub(crate) fn new(probes: [Option<ProbeWorker>; 3]) -> Record {
        Record {
            state: State::Absent,
            restart_count: 0,
            has_history: false,
            last_termination: None,
            start_error: None,
            create_error: None,
            before_start: None,
            backoff_wait: None,
            backoff_resync: Time::EPOCH,
            backoff: None,
            backoff_image: String::new(),
            pending_restart: false,
            kill_backoff: None,
            count_preincremented: false,
            sidecar_started_once: false,
            probes,
        }
    }

    /// What a kill for `reason` measures its restart's back-off from (see [`BackoffBase`]).
    pub(crate) fn kill_backoff_base(&self, reason: KillReason, restart: bool) -> Option<BackoffBase> {
        let in_sync = matches!(
            reason,
            KillReason::Liveness | KillReason::Startup | KillReason::SpecChanged
        );
        let base = match &self.last_termination {
            Some(t) => BackoffBase::Previous(t.finished_at),
            None => BackoffBase::NoneExited,
        };
        (restart && in_sync).then_some(base)
    }

    /// Rule 7.9 for an exited instance that finished at `finished_at`: may it start at `now`?
    /// Right after a probe or definition kill the kubelet's check looks at the instance before
    /// the killed one; if that says wait, the killed one's own end counts from then on.
    pub(crate) fn restart_verdict(&mut self, finished_at: Time, now: Time) -> Verdict {
        match self.kill_backoff.take() {
            Some(BackoffBase::NoneExited) => Verdict::Start,
            Some(BackoffBase::Previous(previous)) => match backoff::check(&mut self.backoff, previous, now) {
                Verdict::Start => Verdict::Start,
                Verdict::Wait { .. } => backoff::check(&mut self.backoff, finished_at, now),
            },
            None => backoff::check(&mut self.backoff, finished_at, now),
        }
    }

    pub(crate) fn worker(&self, kind: ProbeKind) -> Option<&ProbeWorker> {
        self.probes[probe_index(kind)].as_ref()
    }

    pub(crate) fn worker_mut(&mut self, kind: ProbeKind) -> Option<&mut ProbeWorker> {
        self.probes[probe_index(kind)].as_mut()
    }

    pub(crate) fn running(&self) -> Option<&Running> {
        match &self.state {
            State::Running(r) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn running_mut(&mut self) -> Option<&mut Running> {
        match &mut self.state {
            State::Running(r) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        matches!(self.state, State::Running(_))
    }

    /// Running or about to run: something the runtime may have.
    pub(crate) fn is_live(&self) -> bool {
        matches!(self.state, State::Running(_) | State::Starting { .. })
    }

    pub(crate) fn exited(&self) -> Option<&Terminated> {
        match &self.state {
            State::Exited(t) => Some(t),
            _ => None,
        }
    }

    /// The cached probe value, or `None` when the container has no such probe.
    pub(crate) fn probe_value(&self, kind: ProbeKind) -> Option<ProbeValue> {
        self.worker(kind).map(|w| w.value)
    }

    /// Rule 3.10: running (its postStart hook returned, rule 8.1), and its startup probe (if
    /// any) succeeded.
    pub(crate) fn started(&self) -> bool {
        self.running().is_some_and(|r| !r.post_start_pending)
            && match self.probe_value(ProbeKind::Startup) {
                None => true,
                Some(v) => v == ProbeValue::Success,
            }
    }

    /// Rule 3.11: started, and its readiness probe (if any) succeeded.
    pub(crate) fn ready(&self) -> bool {
        self.started()
            && match self.probe_value(ProbeKind::Readiness) {
                None => true,
                Some(v) => v == ProbeValue::Success,
            }
    }
}
