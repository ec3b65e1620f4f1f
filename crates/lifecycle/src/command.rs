//! What the model tells the node to do: commands and events, as values.

use std::time::Duration;

use podvisor_core::{ContainerId, HookKind, ProbeKind};

use crate::Time;

/// One thing the node must do, returned by [`PodMachine::step`](crate::PodMachine::step).
///
/// Commands that start work (`CreateSandbox`, `StartContainer`, `RunHook`, `RunProbe`) are
/// answered later with the matching [`Input`](crate::Input). The model never waits for them
/// synchronously, so the node may run them concurrently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Create the pod sandbox (network, UTS and IPC namespaces, pod IP). Answer with
    /// `SandboxReady` or `SandboxFailed`.
    CreateSandbox,
    /// Tear the sandbox down: every container has stopped.
    TeardownSandbox,
    /// Start a new instance of a container. Answer with `ContainerStarted` or
    /// `ContainerStartFailed`.
    StartContainer {
        /// Container name (regular, init or sidecar).
        name: String,
        /// The new instance's restart count.
        restart_count: i32,
    },
    /// Run a container's lifecycle hook. Answer with `HookResult`. A `preStop` hook is not
    /// cancelled when the model stops waiting for it; it simply no longer matters.
    RunHook {
        /// Container name.
        name: String,
        /// The instance.
        id: ContainerId,
        /// Which hook (the handler is in the pod spec).
        hook: HookKind,
    },
    /// Run one probe attempt, bounded by `timeout`. Answer with `ProbeResult`.
    RunProbe {
        /// Container name.
        name: String,
        /// The instance.
        id: ContainerId,
        /// Which probe (the handler is in the pod spec).
        kind: ProbeKind,
        /// `timeoutSeconds`.
        timeout: Duration,
    },
    /// Stop a container instance: stop signal to its process group, wait up to `grace`, then
    /// SIGKILL everything in it. The exit arrives as `ContainerExited`. `grace` is never below
    /// two seconds. A second `StopContainer` for the same instance with a shorter grace
    /// shortens the wait.
    StopContainer {
        /// Container name.
        name: String,
        /// The instance.
        id: ContainerId,
        /// How long to wait after the stop signal before SIGKILL.
        grace: Duration,
    },
    /// Record a Kubernetes Event about the pod.
    Event(Event),
    /// The pod is terminal and torn down: nothing of it runs any more. If it was being deleted,
    /// the node may now remove the API object.
    PodFinished,
    /// Send an [`Input::Tick`](crate::Input::Tick) at (or soon after) this time. Each step
    /// returns at most one, the earliest; a later step's `WakeAt` replaces earlier ones, and a
    /// step without one means no timer is needed.
    WakeAt(Time),
}

/// Event severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Routine (`Started`, `Killing`).
    Normal,
    /// Something a user should look at (`Unhealthy`, `BackOff`).
    Warning,
}

impl EventType {
    /// The API string (`Normal` / `Warning`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// A Kubernetes Event the kubelet would record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Severity.
    pub type_: EventType,
    /// The CamelCase reason (`Started`, `Unhealthy`, `BackOff`, ...).
    pub reason: &'static str,
    /// The human-readable message.
    pub message: String,
    /// The container the event is about, if any (its field path is
    /// `spec.containers{name}` or `spec.initContainers{name}`).
    pub field_path: Option<String>,
}
