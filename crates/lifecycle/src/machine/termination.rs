//! Graceful termination: preStop hooks, stop signals in the sidecar order, the grace
//! deadline and SIGKILL, and shortening a termination already under way.

use super::*;

impl PodMachine {
    pub(super) fn begin_termination(&mut self, cause: Cause, grace: Duration, out: &mut Vec<Command>) {
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
    pub(super) fn drive_termination(&mut self, out: &mut Vec<Command>) {
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

    pub(super) fn finish(&mut self, out: &mut Vec<Command>) {
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
    pub(super) fn start_kill(
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
    pub(super) fn after_pre_stop(&mut self, i: usize, grace_left: Duration, out: &mut Vec<Command>) {
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

    pub(super) fn signal(&mut self, i: usize, grace: Duration, out: &mut Vec<Command>) {
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
    pub(super) fn advance_stops(&mut self, out: &mut Vec<Command>) {
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
    pub(super) fn sidecar_turn(&self, i: usize) -> bool {
        self.records.iter().enumerate().all(|(j, rec)| {
            let must_wait_for = matches!(
                self.def.containers[j].kind,
                ContainerKind::Regular | ContainerKind::Ephemeral
            ) || (j > i && self.def.containers[j].kind == ContainerKind::Sidecar);
            !must_wait_for || !rec.is_live()
        })
    }

    /// Rule 9.1: a later, shorter grace period cuts every wait short.
    pub(super) fn shorten_stops(&mut self, grace: Duration, out: &mut Vec<Command>) {
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
}
