//! The container vocabulary: instances, exits, hooks, and the runtime seam.

use std::time::Duration;

use crate::corev1;

/// A container instance, unique for the life of the node (`podvisor://<id>` in status).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(pub String);

impl ContainerId {
    /// The URI form used in `containerStatuses[].containerID`.
    pub fn uri(&self) -> String {
        format!("podvisor://{}", self.0)
    }

    /// The instance a `containerStatuses[].containerID` names (`None` if it is not a
    /// `podvisor://` URI, or empty).
    pub fn from_uri(uri: &str) -> Option<ContainerId> {
        uri.strip_prefix("podvisor://")
            .filter(|id| !id.is_empty())
            .map(|id| ContainerId(id.to_owned()))
    }
}

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a container's main process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It called `exit(code)`.
    Exited(i32),
    /// It was killed by a signal.
    Signaled(i32),
    /// The kernel's OOM killer ended it (memory limit reached).
    OomKilled,
}

impl ExitStatus {
    /// The exit code Kubernetes reports: the code itself, `128 + signal` for a signal, and 137
    /// (SIGKILL) for an OOM kill.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => 128 + signal,
            ExitStatus::OomKilled => 137,
        }
    }

    /// The terminated `reason`: `Completed`, `Error` or `OOMKilled`.
    pub fn reason(self) -> &'static str {
        match self {
            ExitStatus::OomKilled => "OOMKilled",
            _ if self.code() == 0 => "Completed",
            _ => "Error",
        }
    }

    /// The signal number, if a signal ended the process.
    pub fn signal(self) -> Option<i32> {
        match self {
            ExitStatus::Signaled(signal) => Some(signal),
            ExitStatus::OomKilled => Some(9),
            ExitStatus::Exited(_) => None,
        }
    }
}

/// Which lifecycle hook a result belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// `lifecycle.postStart`: runs right after the process starts.
    PostStart,
    /// `lifecycle.preStop`: runs before the stop signal.
    PreStop,
}

/// The result of running a hook handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookResult {
    /// Exec exited 0, HTTP got any response, sleep finished.
    Succeeded,
    /// The handler failed; the message says why (it is not put into events).
    Failed(String),
}

/// A future the runtime resolves once, boxed so the seam stays object-safe.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// How a container instance ended, as the runtime observed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitReport {
    /// How the main process ended (`OomKilled` when the memory limit killed it).
    pub status: ExitStatus,
    /// The termination message: the `terminationMessagePath` file (at most 4096 bytes), or with
    /// `FallbackToLogsOnError` and a failed, silent exit, the log tail (80 lines, 2048 bytes).
    pub message: Option<String>,
}

/// Everything the runtime needs to create a pod's sandbox.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// The pod (name, namespace, UID, `hostNetwork`, `hostname`, `dnsConfig`, ...).
    pub pod: corev1::Pod,
}

/// A pod sandbox: the network, UTS and IPC namespaces and the pod IP that every container of
/// the pod shares (the pause container's role).
pub struct Sandbox {
    /// The pod IP (the node's address when the pod uses the host network).
    pub pod_ip: Option<String>,
    /// Whether the pod shares the node's network (`hostNetwork: true`, or no privilege to
    /// create namespaces).
    pub host_network: bool,
    /// Warnings for the user (e.g. why the host network is used), to be recorded as Events.
    pub warnings: Vec<String>,
    /// Resolves if the sandbox disappears while it is in use (its holder died).
    pub lost: BoxFuture<()>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("pod_ip", &self.pod_ip)
            .field("host_network", &self.host_network)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

/// Everything the runtime needs to start one container instance.
#[derive(Clone, Debug)]
pub struct ContainerLaunch {
    /// The full pod, for `fieldRef` environment values and its sandbox (looked up by UID).
    pub pod: corev1::Pod,
    /// The pod IP, for `status.podIP` environment values.
    pub pod_ip: Option<String>,
    /// The container definition (regular, init or sidecar).
    pub container: corev1::Container,
    /// This instance's restart count (0 for the first); it names the log file.
    pub restart_count: i32,
    /// The container's volume mounts, resolved to host paths. A runtime that can give the
    /// container its own mount namespace shows exactly these (and nothing else of other
    /// volumes); one that cannot ignores them, and the caller decides beforehand what may not
    /// be ignored (see [`Mount::sensitive`]).
    pub mounts: Vec<Mount>,
}

/// One volume mount of a container: a host file or directory shown at a path inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The volume's name (for messages).
    pub volume: String,
    /// What is mounted: the volume's directory, or a file or directory in it (`subPath`).
    pub host_path: std::path::PathBuf,
    /// `mountPath`.
    pub container_path: String,
    /// `readOnly`.
    pub read_only: bool,
    /// The mount carries Secret data: it must not be exposed where it cannot be isolated.
    pub sensitive: bool,
}

/// A container instance that runs.
pub struct Started {
    /// The instance.
    pub id: ContainerId,
    /// When the instance's process started, by the runtime's wall clock: the status's
    /// `startedAt` (as the kubelet's comes from the runtime's container status), and the time
    /// a restarted node finds in [`AdoptedContainer::started_at`].
    pub started_at: std::time::SystemTime,
    /// Resolves when the instance's main process has ended and everything of it was reaped.
    /// Dropping it does not stop the container.
    pub exit: BoxFuture<ExitReport>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("id", &self.id)
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
}

/// A container instance a node found at start: left running by the node's previous run, or
/// ended while no node ran.
#[derive(Debug)]
pub struct AdoptedContainer {
    /// The container's name in the pod spec (regular, init or sidecar).
    pub name: String,
    /// The instance.
    pub id: ContainerId,
    /// The instance's restart index (its `restartCount` when it was started).
    pub restart_count: i32,
    /// When the instance's process started.
    pub started_at: std::time::SystemTime,
    /// Whether it still runs, or how it ended.
    pub state: AdoptedState,
}

/// The state of an [`AdoptedContainer`].
pub enum AdoptedState {
    /// Still running: `exit` resolves when it ends, exactly like [`Started::exit`].
    Running {
        /// Resolves when the instance's main process has ended and everything of it was
        /// reaped. Dropping it does not stop the container.
        exit: BoxFuture<ExitReport>,
    },
    /// It ended while no node ran.
    Exited {
        /// How it ended.
        report: ExitReport,
        /// When it ended.
        finished_at: std::time::SystemTime,
    },
}

impl std::fmt::Debug for AdoptedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdoptedState::Running { .. } => f.debug_struct("Running").finish_non_exhaustive(),
            AdoptedState::Exited { report, finished_at } => f
                .debug_struct("Exited")
                .field("report", report)
                .field("finished_at", finished_at)
                .finish(),
        }
    }
}

/// What of one pod survived the node's previous run.
pub struct AdoptedPod {
    /// The pod's UID.
    pub pod_uid: String,
    /// The surviving sandbox's pod IP (None: host network).
    pub pod_ip: Option<String>,
    /// The container instances found: of each container its newest instance, running or not
    /// (older ones may be given too; the highest `restart_count` of a name counts, and any
    /// other that still runs is stopped).
    pub containers: Vec<AdoptedContainer>,
    /// Resolves if the surviving sandbox is lost later, as [`Sandbox::lost`] (`None`: the
    /// runtime cannot tell).
    pub lost: Option<BoxFuture<()>>,
}

impl std::fmt::Debug for AdoptedPod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdoptedPod")
            .field("pod_uid", &self.pod_uid)
            .field("pod_ip", &self.pod_ip)
            .field("containers", &self.containers)
            .finish_non_exhaustive()
    }
}

/// Errors at the runtime seam.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The process could not be spawned (`StartError`, exit code 128).
    #[error("failed to start container {name}: {message}")]
    Start {
        /// Container name.
        name: String,
        /// What went wrong (e.g. `executable file not found in $PATH`).
        message: String,
    },
    /// The pod's sandbox could not be created.
    #[error("failed to create sandbox for pod {pod}: {message}")]
    Sandbox {
        /// `namespace/name` of the pod.
        pod: String,
        /// What went wrong.
        message: String,
    },
    /// The instance is unknown to the runtime (it ended, or was never started here).
    #[error("container {id} not found")]
    NotFound {
        /// The instance.
        id: ContainerId,
    },
    /// A command could not be run in the container (the binary is missing, the container is
    /// gone). Exec probes report this as a probe error, not a failure.
    #[error("exec in container {id} failed: {message}")]
    Exec {
        /// The instance.
        id: ContainerId,
        /// What went wrong.
        message: String,
    },
    /// Any other failure of the implementation.
    #[error(transparent)]
    Backend(#[from] Box<dyn std::error::Error + Send + Sync>),
}

/// Runs pod sandboxes and containers. Implementations: the process runtime
/// (`podvisor-runtime`), and fakes in tests.
///
/// `stop` only signals and escalates; the end of an instance is observed on
/// [`Started::exit`], so stopping and waiting are separate (a stop may be repeated with a
/// shorter grace).
#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Creates the pod's sandbox. Containers of the pod start inside it.
    async fn create_sandbox(&self, config: SandboxConfig) -> Result<Sandbox, RuntimeError>;
    /// Tears the sandbox of pod `pod_uid` down and releases its IP. Idempotent.
    async fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError>;
    /// Starts one container instance in its pod's sandbox.
    async fn start(&self, launch: ContainerLaunch) -> Result<Started, RuntimeError>;
    /// Sends the stop signal to the instance's processes, waits up to `grace`, then kills every
    /// process of the container. Returns once the signal is sent.
    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError>;
    /// Removes what the runtime keeps of pod `pod_uid` once the pod is deleted and stopped:
    /// its containers' logs and files (a finished pod that still exists keeps them, for
    /// `kubectl logs`). Idempotent.
    async fn remove_pod(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        let _ = pod_uid;
        Ok(())
    }
    /// What of pod `pod_uid` survived the node's previous run (its sandbox and container
    /// instances), now owned by this runtime: `stop` and exec reach the instances, their exits
    /// are reported. `None`: nothing survived; the pod starts from scratch. Asked once per pod,
    /// before anything else is done for it.
    async fn adopt(&self, pod_uid: &str) -> Option<AdoptedPod> {
        let _ = pod_uid;
        None
    }
    /// [`remove_pod`](Self::remove_pod) for every pod the runtime keeps files of except those
    /// in `keep`: the pods deleted while the node was down. Returns how many went.
    async fn remove_pods_except(&self, keep: &[String]) -> Result<usize, RuntimeError> {
        let _ = keep;
        Ok(0)
    }
}

/// The output of a command run inside a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status of the command.
    pub status: ExitStatus,
    /// Combined stdout and stderr, capped by the runtime.
    pub output: Vec<u8>,
    /// Whether the timeout killed it.
    pub timed_out: bool,
}

/// Runs a command in a container's context (namespaces, environment, working directory), as
/// exec probes and exec hooks need. A capability of its own so probes need nothing else.
#[async_trait::async_trait]
pub trait ContainerExec: Send + Sync {
    /// Runs `argv` inside container `id`, killing it after `timeout` if one is given.
    async fn exec(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_id_uri_round_trip() {
        let id = ContainerId("abc-1".into());
        assert_eq!(ContainerId::from_uri(&id.uri()), Some(id));
        assert_eq!(ContainerId::from_uri("containerd://abc"), None);
        assert_eq!(ContainerId::from_uri("podvisor://"), None);
    }
}
