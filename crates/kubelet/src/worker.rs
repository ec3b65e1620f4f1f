//! One pod worker: a task that feeds the lifecycle model and carries out its commands.
//!
//! The worker holds no lifecycle logic. It turns what happens (a process started or ended, a
//! probe or hook finished, a timer fired, the pod changed) into [`Input`]s, and each
//! [`Command`] into an action on the runtime, the prober or the hook runner, whose outcome
//! comes back as another input. Every action runs in its own task, so a slow probe or hook
//! never delays anything else.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use podvisor_core::corev1::{Container, EphemeralContainer, Pod, Probe};
use podvisor_core::probe::ProbeTarget;
use podvisor_core::runtime::{
    BoxFuture, ContainerLaunch, ContainerRuntime, ExitReport, RuntimeError, SandboxConfig, Started,
};
use podvisor_core::{
    ConfigSource, ContainerId, HookKind, HookResult, HookRunner, ProbeKind, ProbeResult, Prober,
};
use podvisor_lifecycle::{Command, Event, EventType, Input, PodMachine};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::adoption;
use crate::clock::Clock;
use crate::env_refs::{self, ConfigError};
use crate::metrics::{KubeletMetrics, PodRecorder, RuntimeOperation, timed};
use crate::view::{HookRecord, PodSink, PodView, ProbeRecord};
use crate::volumes::{MountError, VolumeManager};

/// What the worker needs from the node.
#[derive(Clone)]
pub(crate) struct Deps {
    pub(crate) runtime: Arc<dyn ContainerRuntime>,
    pub(crate) prober: Arc<dyn Prober>,
    pub(crate) hooks: Arc<dyn HookRunner>,
    pub(crate) sink: Arc<dyn PodSink>,
    pub(crate) clock: Clock,
    pub(crate) host_ip: Option<String>,
    pub(crate) metrics: Option<KubeletMetrics>,
    /// Where ConfigMaps and Secrets are looked up (none: every reference is missing).
    pub(crate) config: Option<Arc<dyn ConfigSource>>,
    /// Pod volumes (none: volumes are ignored).
    pub(crate) volumes: Option<Arc<VolumeManager>>,
    /// Changes whenever ConfigMaps or Secrets change.
    pub(crate) config_generation: watch::Receiver<u64>,
}

/// A message from the supervisor to a worker.
#[derive(Debug)]
pub(crate) enum Msg {
    /// The pod object changed.
    Update(Box<Pod>),
    /// Terminate the pod, with an optional grace period in seconds.
    Delete { grace_period_seconds: Option<i64> },
}

/// What an action task reports back. Boxed variants: every pod's worker has a channel of these,
/// and the channel's first block holds 32 of them from the start (6.4 KB a pod unboxed).
enum Feedback {
    Input(Box<Input>),
    /// An instance started (`ContainerStarted`), with the wait for its exit, which the worker
    /// then polls itself.
    Started(Box<(Input, Exit)>),
    Probe(Box<ProbeReport>),
    Hook(Box<HookReport>),
    Warning(String),
    Event(Box<Event>),
}

/// The wait for an instance's exit, resolving to its `ContainerExited`.
type Exit = BoxFuture<Input>;

/// A probe's result: for the pod's diagnostics, and the model's input.
struct ProbeReport {
    name: String,
    kind: ProbeKind,
    record: ProbeRecord,
    input: Input,
}

/// A hook's result: for the pod's diagnostics, and the model's input.
struct HookReport {
    name: String,
    hook: HookKind,
    record: HookRecord,
    input: Input,
}

/// One probe of one instance: its definition and its target.
struct ProbeRun {
    probe: Probe,
    target: ProbeTarget,
}

/// The worker's state while it runs.
struct Worker {
    deps: Arc<Deps>,
    machine: PodMachine,
    feedback: mpsc::UnboundedSender<Feedback>,
    tasks: JoinSet<()>,
    /// The running instances' exits, polled by the worker itself: a task each would be one
    /// more per running container and one more hand-over between a container's exit and the
    /// model.
    exits: FuturesUnordered<Exit>,
    /// Stop signals being sent: waited for (not aborted) when the worker ends.
    stops: JoinSet<()>,
    sandbox_task: Option<AbortHandle>,
    teardown: Option<JoinHandle<()>>,
    /// Hooks running per instance, aborted when the instance ends (a `sleep` hook then stops).
    hook_tasks: HashMap<ContainerId, Vec<AbortHandle>>,
    /// What each probe runs, by container name, kind and instance: made at its first run and
    /// kept while the instance is the same, so a probe's run does not clone its definition and
    /// build its target again (both are fixed for an instance's life). A few per pod.
    probe_runs: Vec<(String, ProbeKind, ContainerId, Arc<ProbeRun>)>,
    /// A probe or hook result was written into the view's diagnostics since its watchers were
    /// last told of a change.
    diagnostics_changed: bool,
    /// Where what the worker observes is recorded.
    recorder: PodRecorder,
}

/// Runs one pod until it is terminal and torn down.
pub(crate) async fn run(
    pod: Box<Pod>,
    deps: Arc<Deps>,
    mut msgs: mpsc::UnboundedReceiver<Msg>,
    view: watch::Sender<PodView>,
    shutdown: CancellationToken,
    abandon: CancellationToken,
) {
    let clock = deps.clock;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    // Issue #18: what of the pod outlived the node's previous run is taken over, not restarted.
    let mut survivors = match uid.as_str() {
        "" => None,
        uid => deps.runtime.adopt(uid).await,
    };
    let adopted = survivors.is_some();
    let sandbox_lost = survivors.as_mut().and_then(|s| s.lost.take());
    let (mut machine, exits) = match survivors {
        None => (PodMachine::new(&pod, clock.now()), Vec::new()),
        Some(survivors) => adoption::machine(&pod, clock.now(), survivors, deps.host_ip.as_deref()),
    };
    if let Some(ip) = &deps.host_ip {
        machine.set_host_ip(ip.clone());
    }
    let (feedback, mut feedback_rx) = mpsc::unbounded_channel();
    let admitted = Instant::now();
    // An adopted pod started long ago: its start is not this node's to measure.
    let mut start_recorded = adopted;
    let recorder = PodRecorder::new(deps.metrics.clone(), &pod);
    // The model keeps the pod: this copy is not held for the pod's lifetime.
    drop(pod);
    // Boxed: the worker (its lifecycle model holds the pod) lives as long as the pod, and
    // inline it made this future, one per pod, that much larger.
    let mut worker = Box::new(Worker {
        deps,
        machine,
        feedback,
        tasks: JoinSet::new(),
        exits: FuturesUnordered::new(),
        stops: JoinSet::new(),
        sandbox_task: None,
        teardown: None,
        hook_tasks: HashMap::new(),
        probe_runs: Vec::new(),
        diagnostics_changed: false,
        recorder,
    });
    for (name, id, exit) in exits {
        // Exactly as a started instance's exit is observed.
        worker.watch_exit(name, id, exit);
    }
    if let Some(lost) = sandbox_lost {
        // The surviving sandbox's loss, exactly as a created one's.
        let feedback = worker.feedback.clone();
        worker.sandbox_task = Some(worker.tasks.spawn(async move {
            lost.await;
            Worker::send(&feedback, Input::SandboxLost);
        }));
    }
    if adopted && !worker.machine.is_finished() {
        // Its volumes are still there (`VolumeManager::keeping`): checked and refreshed, not
        // made anew.
        let (deps, pod, feedback) = (Arc::clone(&worker.deps), worker.pod(), worker.feedback.clone());
        worker
            .tasks
            .spawn(async move { Worker::setup_volumes(&deps, &pod, &feedback).await });
    }
    if !adopted && !worker.machine.is_finished() {
        // There is no scheduler: the node accepts its pods itself, and says so as one would.
        let pod = worker.pod();
        let message = format!(
            "Successfully assigned {} to {}",
            podvisor_core::object::PodRef::of(&pod),
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or_default(),
        );
        let event = Event {
            type_: EventType::Normal,
            reason: "Scheduled",
            message,
            field_path: None,
        };
        worker.deps.sink.event(&pod, &event, clock.now());
    }
    let mut queue = VecDeque::from([Input::Tick]);
    // The status revision last published.
    let mut published: Option<u64> = None;
    let mut msgs_open = true;
    let mut shutting_down = false;
    let mut config_generation = worker.deps.config_generation.clone();
    config_generation.mark_unchanged();
    // The waits that outlive a pass of the loop are made once and kept. Made again at every
    // pass (three or so a probe: its start, its result, its task's end), each was registered
    // with its source and removed again: the timer with the runtime's timer wheel, the tokens'
    // and the watch channel's waits with their waiter lists, each under a lock.
    let config_changes = futures_util::stream::unfold(config_generation, |mut generation| async move {
        generation.changed().await.ok()?;
        Some(((), generation))
    })
    .fuse();
    let mut config_changes = std::pin::pin!(config_changes);
    let mut shutdown_requested = std::pin::pin!(shutdown.cancelled());
    let mut abandoned = std::pin::pin!(abandon.cancelled());
    let mut timer = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
    loop {
        // The tasks that ended are reaped here, not waited for: what a task has to tell
        // comes through `feedback`, and a wait for the tasks' ends woke the worker once more
        // per probe, for nothing.
        while worker.tasks.try_join_next().is_some() {}
        while let Some(input) = queue.pop_front() {
            let commands = worker.machine.step(clock.now(), input);
            for command in commands {
                worker.execute(command);
            }
        }
        let status = worker.machine.status();
        if !start_recorded && status.phase.as_deref() == Some("Running") {
            // kubelet_pod_start_duration_seconds: first seen → running.
            start_recorded = true;
            worker.recorder.pod_running(admitted.elapsed());
        }
        if !worker.machine.is_finished() {
            // Most inputs (probe results that change nothing) leave the status as it was: its
            // revision says so without comparing it.
            let revision = worker.machine.status_revision();
            let changed = published != Some(revision);
            if changed {
                published = Some(revision);
                worker.publish(&view);
            } else if worker.diagnostics_changed {
                // A probe or hook result that left the status as it was: only the diagnostics
                // are published again, the pod is not cloned.
                worker.publish_diagnostics(&view);
            }
        }
        if worker.machine.is_finished() {
            break;
        }
        // Far wake-ups (a probe's next period) on the clock's grid, so workers wake together.
        let wake = worker.machine.next_wakeup().map(|t| clock.wake_instant(t));
        // Set again only when the wake-up moves; a timer that fired stays ready, so a wake-up
        // the model asks for again is a tick again, as it is due.
        if let Some(at) = wake
            && timer.deadline() != at
        {
            timer.as_mut().reset(at);
        }
        tokio::select! {
            Some(fb) = feedback_rx.recv() => queue.push_back(worker.absorb(fb, &view)),
            Some(()) = config_changes.next() => {
                worker.refresh_volumes();
                queue.push_back(Input::ConfigChanged);
            }
            msg = msgs.recv(), if msgs_open => match msg {
                Some(Msg::Update(pod)) => {
                    worker.probe_runs.clear();
                    queue.push_back(Input::PodUpdated(pod));
                    worker.refresh_volumes();
                }
                Some(Msg::Delete { grace_period_seconds }) => {
                    queue.push_back(Input::DeleteRequested { grace_period_seconds });
                }
                None => msgs_open = false,
            },
            () = &mut shutdown_requested, if !shutting_down => {
                shutting_down = true;
                queue.push_back(Input::DeleteRequested { grace_period_seconds: None });
            }
            // The node leaves its pods running (issue 18): the worker ends where it is, its
            // tasks aborted, nothing stopped; the next node process adopts the pod.
            () = &mut abandoned => return,
            Some(exited) = worker.exits.next(), if !worker.exits.is_empty() => {
                queue.push_back(worker.absorb(Feedback::Input(Box::new(exited)), &view));
            }
            Some(_) = worker.stops.join_next(), if !worker.stops.is_empty() => {}
            () = &mut timer, if wake.is_some() => queue.push_back(Input::Tick),
        }
    }
    worker.finish(&view).await;
}

// === impl Worker ===

impl Worker {
    fn pod(&self) -> Pod {
        self.machine.pod()
    }

    /// The named container's definition, found without cloning the whole pod (an ephemeral
    /// container's as a container: it has the same fields, fewer of them set).
    fn container(&self, name: &str) -> Option<Container> {
        self.spec_container(name).cloned().or_else(|| {
            let spec = self.machine.object().spec.as_ref()?;
            spec.ephemeral_containers
                .iter()
                .flatten()
                .find(|c| c.name == name)
                .map(ephemeral_as_container)
        })
    }

    /// The named init or regular container's definition, borrowed: what has probes (an
    /// ephemeral container may have none).
    fn spec_container(&self, name: &str) -> Option<&Container> {
        let spec = self.machine.object().spec.as_ref()?;
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .find(|c| c.name == name)
    }

    /// What probe `kind` of instance `id` of container `name` runs: kept from its last run
    /// while the instance is the same ([`Worker::probe_runs`]); `None` when the container has
    /// no such probe.
    fn probe_run(&mut self, name: &str, kind: ProbeKind, id: &ContainerId) -> Option<Arc<ProbeRun>> {
        let kept = self
            .probe_runs
            .iter()
            .position(|(n, k, _, _)| n == name && *k == kind);
        if let Some(i) = kept
            && self.probe_runs[i].2 == *id
        {
            return Some(Arc::clone(&self.probe_runs[i].3));
        }
        // Borrowed: the container's whole definition is not needed for a probe.
        let container = self.spec_container(name)?;
        let probe = match kind {
            ProbeKind::Liveness => &container.liveness_probe,
            ProbeKind::Readiness => &container.readiness_probe,
            ProbeKind::Startup => &container.startup_probe,
        };
        let run = Arc::new(ProbeRun {
            probe: probe.clone()?,
            target: self.target(container, id),
        });
        let entry = (name.to_owned(), kind, id.clone(), Arc::clone(&run));
        match kept {
            Some(i) => self.probe_runs[i] = entry,
            None => self.probe_runs.push(entry),
        }
        Some(run)
    }

    fn target(&self, container: &Container, id: &ContainerId) -> ProbeTarget {
        let status = self.machine.status();
        let pod_ip = status
            .pod_ip
            .clone()
            .or_else(|| self.deps.host_ip.clone())
            .unwrap_or_else(|| "127.0.0.1".into());
        let env = container
            .env
            .iter()
            .flatten()
            .filter_map(|e| e.value.as_ref().map(|v| (e.name.clone(), v.clone())))
            .collect();
        ProbeTarget {
            container_id: id.clone(),
            pod_ip,
            ports: container.ports.clone().unwrap_or_default(),
            env,
        }
    }

    fn send(feedback: &mpsc::UnboundedSender<Feedback>, input: Input) {
        // The worker may have ended; then nobody needs the answer.
        let _ = feedback.send(Feedback::Input(Box::new(input)));
    }

    /// Carries out one command of the model.
    fn execute(&mut self, command: Command) {
        let deps = Arc::clone(&self.deps);
        let feedback = self.feedback.clone();
        match command {
            Command::CreateSandbox => {
                // Boxed: this task waits for the sandbox's loss as long as the pod lives, and
                // the pod inline made each such task that much larger.
                let config = Box::new(SandboxConfig { pod: self.pod() });
                let recorder = self.recorder.clone();
                let handle = self.tasks.spawn(async move {
                    Worker::setup_volumes(&deps, &config.pod, &feedback).await;
                    let created = {
                        // The box goes at the end of this block, not of the task.
                        let config = config;
                        timed(
                            &recorder,
                            RuntimeOperation::RunPodSandbox,
                            deps.runtime.create_sandbox(*config),
                        )
                    };
                    match created.await {
                        Ok(sandbox) => {
                            for warning in sandbox.warnings {
                                let _ = feedback.send(Feedback::Warning(warning));
                            }
                            Worker::send(
                                &feedback,
                                Input::SandboxReady {
                                    pod_ip: sandbox.pod_ip,
                                },
                            );
                            sandbox.lost.await;
                            Worker::send(&feedback, Input::SandboxLost);
                        }
                        Err(e) => Worker::send(
                            &feedback,
                            Input::SandboxFailed {
                                message: e.to_string(),
                            },
                        ),
                    }
                });
                if let Some(old) = self.sandbox_task.replace(handle) {
                    old.abort();
                }
            }
            Command::TeardownSandbox => {
                if let Some(task) = self.sandbox_task.take() {
                    task.abort();
                }
                let uid = self.machine.object().metadata.uid.clone().unwrap_or_default();
                let recorder = self.recorder.clone();
                self.teardown = Some(tokio::spawn(async move {
                    let removed = timed(
                        &recorder,
                        RuntimeOperation::RemovePodSandbox,
                        deps.runtime.remove_sandbox(&uid),
                    );
                    if let Err(e) = removed.await {
                        warn!(error = %e, "failed to remove the pod sandbox");
                    }
                }));
            }
            Command::StartContainer { name, restart_count } => {
                let Some(container) = self.container(&name) else {
                    return;
                };
                let pod = self.pod();
                let spec = pod.spec.as_ref();
                let init = spec
                    .and_then(|s| s.init_containers.as_ref())
                    .is_some_and(|init| init.iter().any(|c| c.name == name));
                let ephemeral = spec
                    .and_then(|s| s.ephemeral_containers.as_ref())
                    .is_some_and(|e| e.iter().any(|c| c.name == name));
                let pod_ip = self.machine.status().pod_ip.clone();
                let recorder = self.recorder.clone();
                recorder.container_start_attempt(init);
                // The start (the container's preparation, the runtime's start) in a task that
                // ends with it; the worker then waits for the exit itself (`exits`).
                self.tasks.spawn(async move {
                    let field_path = if init {
                        format!("spec.initContainers{{{name}}}")
                    } else if ephemeral {
                        format!("spec.ephemeralContainers{{{name}}}")
                    } else {
                        format!("spec.containers{{{name}}}")
                    };
                    let prepared =
                        Worker::prepare_container(&deps, &pod, container, &field_path, &feedback).await;
                    let (container, mounts) = match prepared {
                        Ok(ready) => ready,
                        Err((reason, message)) => {
                            Worker::send(
                                &feedback,
                                Input::ContainerCreateFailed {
                                    name,
                                    reason,
                                    message,
                                },
                            );
                            return;
                        }
                    };
                    let launch = ContainerLaunch {
                        pod,
                        pod_ip,
                        container,
                        restart_count,
                        mounts,
                    };
                    let started = timed(
                        &recorder,
                        RuntimeOperation::StartContainer,
                        deps.runtime.start(launch),
                    );
                    match started.await {
                        Ok(Started { id, started_at, exit }) => {
                            recorder.container_started(&name, restart_count);
                            let input = Input::ContainerStarted {
                                name: name.clone(),
                                id: id.clone(),
                                started_at: Clock::wall(started_at),
                            };
                            let exit = Worker::exited(name, id, exit);
                            // The worker may have ended; then nobody needs the answer.
                            let _ = feedback.send(Feedback::Started(Box::new((input, exit))));
                        }
                        Err(e) => {
                            let message = match e {
                                RuntimeError::Start { message, .. } => message,
                                other => other.to_string(),
                            };
                            Worker::send(&feedback, Input::ContainerStartFailed { name, message });
                        }
                    }
                });
            }
            Command::RunHook { name, id, hook } => {
                let Some(container) = self.container(&name) else {
                    return;
                };
                let lifecycle = container.lifecycle.clone().unwrap_or_default();
                let handler = match hook {
                    HookKind::PostStart => lifecycle.post_start,
                    HookKind::PreStop => lifecycle.pre_stop,
                };
                let Some(handler) = handler else { return };
                let target = self.target(&container, &id);
                let instance = id.clone();
                let clock = deps.clock;
                let task = self.tasks.spawn(async move {
                    let started = Instant::now();
                    let result = deps.hooks.run_hook(&handler, &target).await;
                    let record = HookRecord {
                        at: clock.now(),
                        succeeded: result == HookResult::Succeeded,
                        message: match &result {
                            HookResult::Succeeded => String::new(),
                            HookResult::Failed(m) => m.clone(),
                        },
                        latency: started.elapsed(),
                    };
                    let input = Input::HookResult {
                        name: name.clone(),
                        id,
                        hook,
                        result,
                    };
                    let _ = feedback.send(Feedback::Hook(Box::new(HookReport {
                        name,
                        hook,
                        record,
                        input,
                    })));
                });
                self.hook_tasks.entry(instance).or_default().push(task);
            }
            Command::RunProbe {
                name,
                id,
                kind,
                timeout,
            } => {
                let Some(run) = self.probe_run(&name, kind, &id) else {
                    return;
                };
                let clock = deps.clock;
                let recorder = self.recorder.clone();
                self.tasks.spawn(async move {
                    let started = Instant::now();
                    let result: ProbeResult = deps.prober.probe(&run.probe, &run.target, timeout).await;
                    recorder.probe(&name, kind, &result, started.elapsed());
                    let record = ProbeRecord {
                        at: clock.now(),
                        outcome: if result.error.is_some() {
                            None
                        } else {
                            Some(result.outcome)
                        },
                        message: result.error.clone().unwrap_or_else(|| result.output.clone()),
                        latency: started.elapsed(),
                    };
                    let input = Input::ProbeResult {
                        name: name.clone(),
                        id,
                        kind,
                        result,
                    };
                    let _ = feedback.send(Feedback::Probe(Box::new(ProbeReport {
                        name,
                        kind,
                        record,
                        input,
                    })));
                });
            }
            Command::StopContainer { name, id, grace } => {
                let recorder = self.recorder.clone();
                self.stops.spawn(async move {
                    let stopped = timed(
                        &recorder,
                        RuntimeOperation::StopContainer,
                        deps.runtime.stop(&id, grace),
                    );
                    if let Err(e) = stopped.await {
                        debug!(container = %name, error = %e, "stop failed (the instance may have ended)");
                    }
                });
            }
            Command::Event(event) => {
                self.deps
                    .sink
                    .event(self.machine.object(), &event, self.deps.clock.now())
            }
            Command::PodFinished | Command::WakeAt(_) => {}
        }
    }

    /// Waits for an instance's exit (among the worker's `exits`), reported as `ContainerExited`.
    fn watch_exit(&mut self, name: String, id: ContainerId, exit: BoxFuture<ExitReport>) {
        self.exits.push(Worker::exited(name, id, exit));
    }

    /// An instance's exit as the model's input.
    fn exited(name: String, id: ContainerId, exit: BoxFuture<ExitReport>) -> Exit {
        Box::pin(async move {
            let report = exit.await;
            Input::ContainerExited {
                name,
                id,
                status: report.status,
                message: report.message,
            }
        })
    }

    /// Records what a task reported and returns the input for the model. A probe's or hook's
    /// record is written into the view's diagnostics, whose watchers are told after the model
    /// has taken the input ([`Worker::publish`], [`Worker::publish_diagnostics`]).
    fn absorb(&mut self, feedback: Feedback, view: &watch::Sender<PodView>) -> Input {
        match feedback {
            Feedback::Input(input) => {
                if let Input::ContainerExited { id, .. } = &*input {
                    for task in self.hook_tasks.remove(id).into_iter().flatten() {
                        task.abort();
                    }
                }
                *input
            }
            Feedback::Started(started) => {
                let (input, exit) = *started;
                self.exits.push(exit);
                input
            }
            Feedback::Probe(report) => {
                let ProbeReport {
                    name,
                    kind,
                    record,
                    input,
                } = *report;
                view.send_if_modified(|current| {
                    let diagnostics = current.diagnostics.entry(name).or_default();
                    diagnostics.probes.insert(kind, record);
                    false
                });
                self.diagnostics_changed = true;
                input
            }
            Feedback::Hook(report) => {
                let HookReport {
                    name,
                    hook,
                    record,
                    input,
                } = *report;
                view.send_if_modified(|current| {
                    current
                        .diagnostics
                        .entry(name)
                        .or_default()
                        .record_hook(hook, record);
                    false
                });
                self.diagnostics_changed = true;
                input
            }
            Feedback::Event(event) => {
                self.deps
                    .sink
                    .event(self.machine.object(), &event, self.deps.clock.now());
                Input::Tick
            }
            Feedback::Warning(message) => {
                let event = Event {
                    type_: EventType::Warning,
                    reason: "SandboxWarning",
                    message,
                    field_path: None,
                };
                self.deps
                    .sink
                    .event(self.machine.object(), &event, self.deps.clock.now());
                Input::Tick
            }
        }
    }

    /// Prepares the pod's volumes before its sandbox, retrying (with `FailedMount` events) until
    /// they can be: after a back-off, or at once when ConfigMaps or Secrets change.
    async fn setup_volumes(deps: &Deps, pod: &Pod, feedback: &mpsc::UnboundedSender<Feedback>) {
        let Some(volumes) = &deps.volumes else { return };
        let warn = |reason: &'static str, message: String| {
            let event = Event {
                type_: EventType::Warning,
                reason,
                message,
                field_path: None,
            };
            let _ = feedback.send(Feedback::Event(Box::new(event)));
        };
        if let Some(message) = volumes.unhonoured(pod) {
            warn("FailedMount", message);
        }
        let mut generation = deps.config_generation.clone();
        let mut delay = Duration::from_millis(500);
        loop {
            match volumes.setup(pod, deps.config.as_deref()).await {
                Ok(()) => return,
                Err(MountError(message)) => warn("FailedMount", message),
            }
            generation.mark_unchanged();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                Ok(()) = generation.changed() => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// Resolves the container's ConfigMap and Secret references and its mounts, or says why
    /// it cannot be created (waiting reason, message).
    async fn prepare_container(
        deps: &Deps,
        pod: &Pod,
        mut container: Container,
        field_path: &str,
        feedback: &mpsc::UnboundedSender<Feedback>,
    ) -> Result<(Container, Vec<podvisor_core::runtime::Mount>), (&'static str, String)> {
        if env_refs::needs_objects(&container) {
            match env_refs::resolve(&container, pod, deps.config.as_deref()).await {
                Ok(resolved) => {
                    for message in resolved.warnings {
                        let event = Event {
                            type_: EventType::Warning,
                            reason: "InvalidEnvironmentVariableNames",
                            message,
                            field_path: Some(field_path.to_string()),
                        };
                        let _ = feedback.send(Feedback::Event(Box::new(event)));
                    }
                    container = resolved.container;
                }
                Err(ConfigError(message)) => return Err(("CreateContainerConfigError", message)),
            }
        }
        let mounts = match &deps.volumes {
            Some(volumes) => volumes
                .mounts(pod, &container)
                .map_err(|message| ("CreateContainerError", message))?,
            None => Vec::new(),
        };
        Ok((container, mounts))
    }

    /// Rewrites the pod's ConfigMap, Secret, downward API and projected volumes whose content
    /// changed.
    fn refresh_volumes(&mut self) {
        let Some(volumes) = self.deps.volumes.clone() else {
            return;
        };
        if self.machine.is_finished() {
            return;
        }
        let pod = self.pod();
        let deps = Arc::clone(&self.deps);
        self.tasks
            .spawn(async move { volumes.refresh(&pod, deps.config.as_deref()).await });
    }

    /// Tells the view's watchers of the diagnostics written into it (the view's pod is still
    /// current).
    fn publish_diagnostics(&mut self, view: &watch::Sender<PodView>) {
        view.send_modify(|_| {});
        self.diagnostics_changed = false;
    }

    /// Publishes the view after a status change, and tells the sink. The diagnostics are the
    /// view's own (written there as results come): only the pod and whether it is finished
    /// change here, so a probe's record is never copied.
    fn publish(&mut self, view: &watch::Sender<PodView>) {
        let (pod, finished) = (self.pod(), self.machine.is_finished());
        view.send_modify(|current| {
            current.pod = pod;
            current.finished = finished;
            self.deps.sink.status(current);
        });
        self.diagnostics_changed = false;
    }

    /// Waits for the sandbox teardown and stops whatever is still running of the worker's tasks.
    async fn finish(mut self: Box<Self>, view: &watch::Sender<PodView>) {
        if let Some(teardown) = self.teardown.take()
            && tokio::time::timeout(Duration::from_secs(30), teardown)
                .await
                .is_err()
        {
            warn!("sandbox teardown took longer than 30s");
        }
        if let Some(volumes) = &self.deps.volumes {
            let uid = self.machine.object().metadata.uid.clone().unwrap_or_default();
            volumes.teardown(&uid).await;
        }
        // A stop still being sent (an adopted finished pod's leftovers) is sent, not dropped.
        let stops = async { while self.stops.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(30), stops)
            .await
            .is_err()
        {
            warn!("stopping containers took longer than 30s");
        }
        self.tasks.abort_all();
        self.publish(view);
        // The pod is gone from this node: so are its series, as the kubelet's prober removes them.
        let containers: Vec<String> = self
            .pod()
            .spec
            .map(|s| {
                s.init_containers
                    .into_iter()
                    .flatten()
                    .chain(s.containers)
                    .map(|c| c.name)
                    .chain(s.ephemeral_containers.into_iter().flatten().map(|c| c.name))
                    .collect()
            })
            .unwrap_or_default();
        self.recorder.forget(&containers);
    }
}

/// An ephemeral container as the runtime starts it: the fields they share (validation allows
/// nothing else on an ephemeral container).
fn ephemeral_as_container(e: &EphemeralContainer) -> Container {
    Container {
        name: e.name.clone(),
        image: e.image.clone(),
        image_pull_policy: e.image_pull_policy.clone(),
        command: e.command.clone(),
        args: e.args.clone(),
        working_dir: e.working_dir.clone(),
        env: e.env.clone(),
        env_from: e.env_from.clone(),
        volume_mounts: e.volume_mounts.clone(),
        volume_devices: e.volume_devices.clone(),
        security_context: e.security_context.clone(),
        termination_message_path: e.termination_message_path.clone(),
        termination_message_policy: e.termination_message_policy.clone(),
        stdin: e.stdin,
        stdin_once: e.stdin_once,
        tty: e.tty,
        ..Container::default()
    }
}
