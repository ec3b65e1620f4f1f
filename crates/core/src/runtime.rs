//! The container vocabulary: instances, exits, hooks, and the runtime seam.

use std::time::Duration;

use futures_core::stream::BoxStream;

use crate::corev1;

/// A container instance, unique for the life of the node (`podvisor://<id>` in status).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(pub String);

impl ContainerId {
    /// The URI form used in `containerStatuses[].containerID`.
    pub fn uri(&self) -> String {
        format!("podvisor://{}", self.0)
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

/// What the runtime reports about containers, as a stream (no callbacks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeEvent {
    /// A container's main process ended.
    Exited {
        /// The instance.
        id: ContainerId,
        /// How it ended.
        status: ExitStatus,
        /// The termination message read from `terminationMessagePath` (or the log tail).
        message: Option<String>,
    },
}

/// Everything the runtime needs to start one container instance.
#[derive(Clone, Debug)]
pub struct ContainerLaunch {
    /// Owning pod's UID.
    pub pod_uid: String,
    /// The full pod, for `fieldRef` environment values and the sandbox.
    pub pod: corev1::Pod,
    /// The container definition (regular, init or sidecar).
    pub container: corev1::Container,
    /// This instance's restart count (0 for the first).
    pub restart_count: i32,
}

/// Errors at the runtime seam.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The process could not be spawned (`StartError`, exit code 128).
    #[error("failed to start container {name}: {message}")]
    Start {
        /// Container name.
        name: String,
        /// What went wrong (e.g. `executable file not found`).
        message: String,
    },
    /// The instance is unknown to the runtime.
    #[error("container {id} not found")]
    NotFound {
        /// The instance.
        id: ContainerId,
    },
    /// Any other failure of the implementation.
    #[error(transparent)]
    Backend(#[from] Box<dyn std::error::Error + Send + Sync>),
}

/// Runs containers. Implementations: the process runtime (real), and fakes in tests.
///
/// `stop` only signals and escalates; exits are observed on [`ContainerRuntime::events`].
#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Starts one container instance in its pod's sandbox.
    async fn start(&self, launch: ContainerLaunch) -> Result<ContainerId, RuntimeError>;
    /// Sends the stop signal, waits up to `grace`, then kills every process of the container.
    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError>;
    /// Exits of every container this runtime started.
    fn events(&self) -> BoxStream<'static, RuntimeEvent>;
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
