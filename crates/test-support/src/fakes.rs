//! Recording fakes for the node's seams: runtime, prober, hook runner, pod sink, config
//! source and host.
//!
//! Each fake records every call and lets the test decide what happens (a container exits,
//! a probe fails). They are for testing the layers above the seams (the pod workers) under
//! paused tokio time; the real runtime and probes are tested against real processes and
//! sockets in their own crates.
#![allow(missing_docs)] // Test scaffolding: names say what they do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use podvisor_core::corev1::{LifecycleHandler, Pod, Probe};
use podvisor_core::probe::ProbeTarget;
use podvisor_core::runtime::{
    AdoptedContainer, AdoptedPod, AdoptedState, ContainerLaunch, ContainerRuntime, ExitReport, RuntimeError,
    Sandbox, SandboxConfig, Started,
};
use podvisor_core::{ContainerId, ExitStatus, HookResult, HookRunner, ProbeOutcome, ProbeResult, Prober};
use podvisor_kubelet::{PodSink, PodView};
use podvisor_lifecycle::{Event, Time};
use tokio::sync::oneshot;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One call the fake runtime saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeCall {
    CreateSandbox {
        pod: String,
    },
    RemoveSandbox {
        pod_uid: String,
    },
    Start {
        container: String,
        restart_count: i32,
        id: ContainerId,
    },
    Stop {
        id: ContainerId,
        grace: Duration,
    },
}

#[derive(Default)]
struct RuntimeState {
    calls: Vec<(tokio::time::Instant, RuntimeCall)>,
    next_id: u32,
    /// Exit senders of running instances.
    running: HashMap<ContainerId, (String, oneshot::Sender<ExitReport>)>,
    sandbox_lost: Vec<oneshot::Sender<()>>,
    fail_starts: HashMap<String, String>,
    /// The last launch of each container.
    launches: HashMap<String, ContainerLaunch>,
    /// What `adopt` finds, by pod UID: the sandbox's IP and the instances.
    left: HashMap<String, (Option<String>, Vec<Survivor>)>,
    /// The pod UIDs `adopt` was asked about, in order.
    adopt_asked: Vec<String>,
    /// The wall-clock time the runtime reports starts at, and the tokio instant it was set at
    /// ([`FakeRuntime::set_wall`]); unset, the system's clock.
    wall: Option<(std::time::SystemTime, tokio::time::Instant)>,
}

impl RuntimeState {
    /// The runtime's wall clock now.
    fn wall_now(&self) -> std::time::SystemTime {
        match self.wall {
            Some((at, since)) => at + since.elapsed(),
            None => std::time::SystemTime::now(),
        }
    }
}

/// A container instance a test leaves behind for a restarted node to adopt
/// ([`FakeRuntime::leave`]).
#[derive(Clone, Debug)]
pub struct Survivor {
    pub name: String,
    pub id: ContainerId,
    pub restart_count: i32,
    pub started_at: std::time::SystemTime,
    /// `None`: it still runs, and ends on [`FakeRuntime::exit`] or `stop` like a started one.
    pub exited: Option<(ExitReport, std::time::SystemTime)>,
}

impl Survivor {
    pub fn running(name: &str, id: &str, restart_count: i32, started_at: std::time::SystemTime) -> Survivor {
        Survivor {
            name: name.to_owned(),
            id: ContainerId(id.to_owned()),
            restart_count,
            started_at,
            exited: None,
        }
    }

    pub fn exited(
        name: &str,
        id: &str,
        restart_count: i32,
        started_at: std::time::SystemTime,
        status: ExitStatus,
        finished_at: std::time::SystemTime,
    ) -> Survivor {
        let report = ExitReport {
            status,
            message: None,
        };
        Survivor {
            exited: Some((report, finished_at)),
            ..Survivor::running(name, id, restart_count, started_at)
        }
    }
}

/// A runtime that runs nothing: starts succeed at once, exits happen when the test says (or,
/// on `stop`, after the grace period unless the instance "honours SIGTERM").
#[derive(Clone, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<RuntimeState>>,
    /// Instances exit with 143 as soon as they are stopped; otherwise they exit with 137 when
    /// the grace period ends.
    pub honour_sigterm: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        let rt = FakeRuntime::default();
        rt.honour_sigterm.store(true, std::sync::atomic::Ordering::SeqCst);
        rt
    }

    /// Sets the runtime's wall clock (the start times it reports) to `now`, running on with
    /// tokio's clock from here: a test with a paused clock keeps it beside the node's.
    pub fn set_wall(&self, now: std::time::SystemTime) {
        lock(&self.state).wall = Some((now, tokio::time::Instant::now()));
    }

    pub fn calls(&self) -> Vec<RuntimeCall> {
        lock(&self.state).calls.iter().map(|(_, c)| c.clone()).collect()
    }

    pub fn timed_calls(&self) -> Vec<(tokio::time::Instant, RuntimeCall)> {
        lock(&self.state).calls.clone()
    }

    /// Start times of `container`'s instances.
    pub fn starts(&self, container: &str) -> Vec<tokio::time::Instant> {
        lock(&self.state)
            .calls
            .iter()
            .filter(|(_, c)| matches!(c, RuntimeCall::Start { container: n, .. } if n == container))
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn running(&self, container: &str) -> Option<ContainerId> {
        lock(&self.state)
            .running
            .iter()
            .find(|(_, (n, _))| n == container)
            .map(|(id, _)| id.clone())
    }

    /// Makes the running instance of `container` exit.
    pub fn exit(&self, container: &str, status: ExitStatus) -> bool {
        let mut state = lock(&self.state);
        let Some(id) = state
            .running
            .iter()
            .find(|(_, (n, _))| n == container)
            .map(|(id, _)| id.clone())
        else {
            return false;
        };
        let (_, tx) = state.running.remove(&id).expect("present");
        tx.send(ExitReport {
            status,
            message: None,
        })
        .is_ok()
    }

    /// The last launch of `container`: its resolved definition (environment) and mounts.
    pub fn last_launch(&self, container: &str) -> Option<ContainerLaunch> {
        lock(&self.state).launches.get(container).cloned()
    }

    /// The next start of `container` fails with `message`.
    pub fn fail_next_start(&self, container: &str, message: &str) {
        lock(&self.state)
            .fail_starts
            .insert(container.to_owned(), message.to_owned());
    }

    /// The next `adopt` of pod `pod_uid` finds its sandbox (with `pod_ip`) and `survivors`, as
    /// a node restarted after a crash would.
    pub fn leave(&self, pod_uid: &str, pod_ip: Option<&str>, survivors: Vec<Survivor>) {
        lock(&self.state)
            .left
            .insert(pod_uid.to_owned(), (pod_ip.map(str::to_owned), survivors));
    }

    /// The pod UIDs `adopt` was asked about, in order.
    pub fn adopt_requests(&self) -> Vec<String> {
        lock(&self.state).adopt_asked.clone()
    }

    /// Every sandbox created so far is lost.
    pub fn lose_sandboxes(&self) {
        for tx in lock(&self.state).sandbox_lost.drain(..) {
            let _ = tx.send(());
        }
    }

    fn record(&self, call: RuntimeCall) {
        lock(&self.state).calls.push((tokio::time::Instant::now(), call));
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn create_sandbox(&self, config: SandboxConfig) -> Result<Sandbox, RuntimeError> {
        self.record(RuntimeCall::CreateSandbox {
            pod: config.pod.metadata.name.unwrap_or_default(),
        });
        let (tx, rx) = oneshot::channel();
        lock(&self.state).sandbox_lost.push(tx);
        Ok(Sandbox {
            pod_ip: Some("10.88.0.2".into()),
            host_network: false,
            warnings: Vec::new(),
            lost: Box::pin(async move {
                if rx.await.is_err() {
                    std::future::pending::<()>().await;
                }
            }),
        })
    }

    async fn adopt(&self, pod_uid: &str) -> Option<AdoptedPod> {
        let mut state = lock(&self.state);
        state.adopt_asked.push(pod_uid.to_owned());
        let (pod_ip, survivors) = state.left.remove(pod_uid)?;
        let mut containers = Vec::new();
        for s in survivors {
            let adopted = match s.exited {
                Some((report, finished_at)) => AdoptedState::Exited { report, finished_at },
                None => {
                    let (tx, rx) = oneshot::channel();
                    state.running.insert(s.id.clone(), (s.name.clone(), tx));
                    AdoptedState::Running {
                        exit: Box::pin(async move {
                            rx.await.unwrap_or(ExitReport {
                                status: ExitStatus::Signaled(9),
                                message: None,
                            })
                        }),
                    }
                }
            };
            containers.push(AdoptedContainer {
                name: s.name,
                id: s.id,
                restart_count: s.restart_count,
                started_at: s.started_at,
                state: adopted,
            });
        }
        Some(AdoptedPod {
            pod_uid: pod_uid.to_owned(),
            pod_ip,
            containers,
            lost: None,
        })
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        self.record(RuntimeCall::RemoveSandbox {
            pod_uid: pod_uid.to_owned(),
        });
        Ok(())
    }

    async fn start(&self, launch: ContainerLaunch) -> Result<Started, RuntimeError> {
        let name = launch.container.name.clone();
        let mut state = lock(&self.state);
        if let Some(message) = state.fail_starts.remove(&name) {
            return Err(RuntimeError::Start { name, message });
        }
        state.next_id += 1;
        let id = ContainerId(format!("{name}-{}", state.next_id));
        state.launches.insert(name.clone(), launch.clone());
        let (tx, rx) = oneshot::channel();
        state.running.insert(id.clone(), (name.clone(), tx));
        state.calls.push((
            tokio::time::Instant::now(),
            RuntimeCall::Start {
                container: name,
                restart_count: launch.restart_count,
                id: id.clone(),
            },
        ));
        let exit = Box::pin(async move {
            rx.await.unwrap_or(ExitReport {
                status: ExitStatus::Signaled(9),
                message: None,
            })
        });
        let started_at = state.wall_now();
        Ok(Started { id, started_at, exit })
    }

    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError> {
        self.record(RuntimeCall::Stop {
            id: id.clone(),
            grace,
        });
        let honour = self.honour_sigterm.load(std::sync::atomic::Ordering::SeqCst);
        let state = Arc::clone(&self.state);
        let id = id.clone();
        let finish = move |status| {
            if let Some((_, tx)) = lock(&state).running.remove(&id) {
                let _ = tx.send(ExitReport {
                    status,
                    message: None,
                });
            }
        };
        if honour {
            finish(ExitStatus::Signaled(15));
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                finish(ExitStatus::Signaled(9));
            });
        }
        Ok(())
    }
}

/// A prober that answers what the test scripted per (container-id prefix, probe kind):
/// `Success` unless told otherwise. It records every call, and the instance each probed.
#[derive(Clone, Default)]
pub struct ScriptedProber {
    answers: Arc<Mutex<BTreeMap<String, ProbeOutcome>>>,
    calls: Arc<Mutex<Vec<(tokio::time::Instant, String)>>>,
    targets: Arc<Mutex<Vec<ContainerId>>>,
    /// How long each probe takes.
    pub latency: Duration,
}

impl ScriptedProber {
    /// From now on, probes whose handler is `exec: [<key>]` answer `outcome`.
    pub fn answer(&self, key: &str, outcome: ProbeOutcome) {
        lock(&self.answers).insert(key.to_owned(), outcome);
    }

    /// The keys probed, with when.
    pub fn calls(&self) -> Vec<(tokio::time::Instant, String)> {
        lock(&self.calls).clone()
    }

    /// The instance of each probe, in the order of [`ScriptedProber::calls`].
    pub fn targets(&self) -> Vec<ContainerId> {
        lock(&self.targets).clone()
    }

    fn key(probe: &Probe) -> String {
        probe
            .exec
            .as_ref()
            .and_then(|e| e.command.as_ref())
            .and_then(|c| c.first().cloned())
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Prober for ScriptedProber {
    async fn probe(&self, probe: &Probe, target: &ProbeTarget, _timeout: Duration) -> ProbeResult {
        let key = ScriptedProber::key(probe);
        lock(&self.calls).push((tokio::time::Instant::now(), key.clone()));
        lock(&self.targets).push(target.container_id.clone());
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let outcome = lock(&self.answers)
            .get(&key)
            .copied()
            .unwrap_or(ProbeOutcome::Success);
        ProbeResult::new(outcome, format!("scripted {outcome:?}"))
    }
}

/// A hook runner whose hooks take `duration` and then return `result`.
#[derive(Clone)]
pub struct FakeHooks {
    pub duration: Duration,
    pub result: HookResult,
    pub calls: Arc<Mutex<Vec<(tokio::time::Instant, ContainerId)>>>,
}

impl Default for FakeHooks {
    fn default() -> Self {
        FakeHooks {
            duration: Duration::ZERO,
            result: HookResult::Succeeded,
            calls: Arc::default(),
        }
    }
}

impl FakeHooks {
    pub fn calls(&self) -> Vec<(tokio::time::Instant, ContainerId)> {
        lock(&self.calls).clone()
    }
}

#[async_trait::async_trait]
impl HookRunner for FakeHooks {
    async fn run_hook(&self, _handler: &LifecycleHandler, target: &ProbeTarget) -> HookResult {
        lock(&self.calls).push((tokio::time::Instant::now(), target.container_id.clone()));
        tokio::time::sleep(self.duration).await;
        self.result.clone()
    }
}

/// Everything a pod worker reported.
#[derive(Clone, Default)]
pub struct RecordingSink {
    pub statuses: Arc<Mutex<Vec<Pod>>>,
    pub events: Arc<Mutex<Vec<(Time, String)>>>,
}

impl RecordingSink {
    /// `reason: message` of every event so far.
    pub fn event_lines(&self) -> Vec<String> {
        lock(&self.events).iter().map(|(_, e)| e.clone()).collect()
    }

    pub fn last(&self) -> Option<Pod> {
        lock(&self.statuses).last().cloned()
    }
}

impl PodSink for RecordingSink {
    fn status(&self, view: &PodView) {
        lock(&self.statuses).push(view.pod.clone());
    }

    fn event(&self, _pod: &Pod, event: &Event, at: Time) {
        lock(&self.events).push((at, format!("{}: {}", event.reason, event.message)));
    }
}

/// ConfigMaps and Secrets held in memory, changed by the test.
#[derive(Clone, Default)]
pub struct FakeConfig {
    config_maps: Arc<Mutex<HashMap<(String, String), podvisor_core::corev1::ConfigMap>>>,
    secrets: Arc<Mutex<HashMap<(String, String), podvisor_core::corev1::Secret>>>,
}

impl FakeConfig {
    /// Stores (or replaces) a ConfigMap given as JSON (`metadata.namespace` defaults to `default`).
    pub fn put_config_map(&self, object: serde_json::Value) {
        let cm: podvisor_core::corev1::ConfigMap = serde_json::from_value(object).expect("a ConfigMap");
        lock(&self.config_maps).insert(Self::key(&cm.metadata), cm);
    }

    /// Stores (or replaces) a Secret given as JSON (`data` values in base64).
    pub fn put_secret(&self, object: serde_json::Value) {
        let secret: podvisor_core::corev1::Secret = serde_json::from_value(object).expect("a Secret");
        lock(&self.secrets).insert(Self::key(&secret.metadata), secret);
    }

    fn key(meta: &podvisor_core::metav1::ObjectMeta) -> (String, String) {
        (
            podvisor_core::object::namespace_of(meta).to_string(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

#[async_trait::async_trait]
impl podvisor_core::ConfigSource for FakeConfig {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<podvisor_core::corev1::ConfigMap>, podvisor_core::ConfigSourceError> {
        Ok(lock(&self.config_maps)
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned())
    }

    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<podvisor_core::corev1::Secret>, podvisor_core::ConfigSourceError> {
        Ok(lock(&self.secrets)
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned())
    }
}

/// One mount operation the fake host saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostCall {
    MountTmpfs {
        dir: std::path::PathBuf,
        size: Option<u64>,
    },
    Unmount {
        dir: std::path::PathBuf,
    },
}

#[derive(Debug, Default)]
struct HostState {
    calls: Vec<HostCall>,
    /// Mounted tmpfs: directory → size.
    mounted: BTreeMap<std::path::PathBuf, Option<u64>>,
    fail_mounts: Option<String>,
    fs_usage: Option<podvisor_core::host::FsUsage>,
    memory_available: Option<u64>,
    pids: Option<(u64, u64)>,
}

/// A machine whose mount table is a map: tmpfs mounts are recorded (and listed, and undone)
/// without mounting anything, and the measured figures are what the test sets (none at first).
#[derive(Clone, Debug, Default)]
pub struct FakeHost {
    state: Arc<Mutex<HostState>>,
}

impl FakeHost {
    pub fn calls(&self) -> Vec<HostCall> {
        lock(&self.state).calls.clone()
    }

    /// What is mounted now: directory → size.
    pub fn mounted(&self) -> BTreeMap<std::path::PathBuf, Option<u64>> {
        lock(&self.state).mounted.clone()
    }

    /// A tmpfs that is already there (left by a previous run), without a recorded call.
    pub fn leave_mounted(&self, dir: &std::path::Path) {
        lock(&self.state).mounted.insert(dir.to_path_buf(), None);
    }

    /// Every tmpfs mount from now on fails with `message`.
    pub fn fail_mounts(&self, message: &str) {
        lock(&self.state).fail_mounts = Some(message.to_owned());
    }

    pub fn set_fs_usage(&self, usage: Option<podvisor_core::host::FsUsage>) {
        lock(&self.state).fs_usage = usage;
    }

    pub fn set_memory_available(&self, bytes: Option<u64>) {
        lock(&self.state).memory_available = bytes;
    }

    pub fn set_pids(&self, pids: Option<(u64, u64)>) {
        lock(&self.state).pids = pids;
    }
}

impl podvisor_core::host::HostOps for FakeHost {
    fn mount_tmpfs(&self, dir: &std::path::Path, size: Option<u64>) -> std::io::Result<()> {
        let mut state = lock(&self.state);
        state.calls.push(HostCall::MountTmpfs {
            dir: dir.to_path_buf(),
            size,
        });
        if let Some(message) = &state.fail_mounts {
            return Err(std::io::Error::other(message.clone()));
        }
        state.mounted.insert(dir.to_path_buf(), size);
        Ok(())
    }

    fn unmount(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let mut state = lock(&self.state);
        state.calls.push(HostCall::Unmount {
            dir: dir.to_path_buf(),
        });
        match state.mounted.remove(dir) {
            Some(_) => Ok(()),
            None => Err(std::io::Error::from_raw_os_error(22)),
        }
    }

    fn is_mount_point(&self, dir: &std::path::Path) -> bool {
        lock(&self.state).mounted.contains_key(dir)
    }

    fn mount_points_under(&self, root: &std::path::Path) -> Vec<std::path::PathBuf> {
        lock(&self.state)
            .mounted
            .keys()
            .filter(|p| p.starts_with(root) && *p != root)
            .cloned()
            .collect()
    }

    fn fs_usage(&self, _path: &std::path::Path) -> std::io::Result<podvisor_core::host::FsUsage> {
        lock(&self.state)
            .fs_usage
            .ok_or_else(|| std::io::Error::other("no file system figures set"))
    }

    fn memory_available(&self) -> Option<u64> {
        lock(&self.state).memory_available
    }

    fn pids(&self) -> Option<(u64, u64)> {
        lock(&self.state).pids
    }
}
