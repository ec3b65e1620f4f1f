//! What an input says happened: exits, starts, probe and hook results, spec updates and
//! deletion requests, recorded before `reconcile` decides what must happen.

use super::*;

impl PodMachine {
    pub(super) fn observe(&mut self, input: Input, out: &mut Vec<Command>) {
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
            Input::ContainerStarted { name, id, started_at } => {
                self.observe_started(&name, id, started_at, out)
            }
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

    pub(super) fn observe_started(
        &mut self,
        name: &str,
        id: ContainerId,
        started_at: Time,
        out: &mut Vec<Command>,
    ) {
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
            started_at,
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

    pub(super) fn observe_hook(
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

    pub(super) fn observe_update(&mut self, pod: Pod, out: &mut Vec<Command>) {
        let new_def = PodDef::new(&pod);
        // Only images and activeDeadlineSeconds may change (rule 2.24); take those.
        for (old, new) in self.def.containers.iter_mut().zip(&new_def.containers) {
            if old.name == new.name {
                old.image.clone_from(&new.image);
            }
        }
        self.def.active_deadline_secs = new_def.active_deadline_secs;
        // Ephemeral containers can only be added (rule 5.3 of streaming-and-apply.md).
        for def in &new_def.containers[new_def.n_app_end..] {
            if self.index_of(&def.name).is_none() {
                self.def.containers.push(def.clone());
                self.records.push(Record::new([None, None, None]));
            }
        }
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
    pub(super) fn request_deletion(&mut self, grace_secs: Option<i64>, out: &mut Vec<Command>) {
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
}
