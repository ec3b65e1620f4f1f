//! What the node tells the model: everything it observed, as values.

use podvisor_core::corev1::Pod;
use podvisor_core::{ContainerId, ExitStatus, HookKind, HookResult, ProbeKind, ProbeResult};

use crate::Time;

/// One observation fed to [`PodMachine::step`](crate::PodMachine::step).
///
/// Inputs that no longer apply (a result for a container instance that has since been
/// replaced, a sandbox report nobody asked for) are ignored, so the node may deliver them late
/// or twice without harm.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Time passed; nothing else happened. Sent when a [`Command::WakeAt`](crate::Command) is
    /// due, and as the first input to a new machine.
    Tick,
    /// The sandbox asked for with `CreateSandbox` exists. `pod_ip` is the pod's address (the
    /// node's own address for `hostNetwork` pods).
    SandboxReady {
        /// The pod IP, if the sandbox has one.
        pod_ip: Option<String>,
    },
    /// Creating the sandbox failed; it will be retried.
    SandboxFailed {
        /// Why.
        message: String,
    },
    /// The sandbox disappeared (its holder died, its namespace was removed).
    SandboxLost,
    /// A container instance asked for with `StartContainer` is running.
    ContainerStarted {
        /// Container name.
        name: String,
        /// The new instance.
        id: ContainerId,
        /// When its process started, as the runtime says: the status's `startedAt`, which a
        /// restarted node finds again in the runtime (the model's own clock reads later, by the
        /// time the answer arrives).
        started_at: Time,
    },
    /// A container could not be started (spawn failure: `StartError`, exit code 128).
    ContainerStartFailed {
        /// Container name.
        name: String,
        /// The runtime's error text.
        message: String,
    },
    /// A container could not be created from its configuration, before any process was
    /// started: a referenced ConfigMap, Secret or key is missing (`CreateContainerConfigError`),
    /// or a mount cannot be made safely (`CreateContainerError`). The container waits with
    /// that reason and is tried again later (or at once after `ConfigChanged`); no restart is
    /// counted.
    ContainerCreateFailed {
        /// Container name.
        name: String,
        /// The waiting reason.
        reason: &'static str,
        /// What is missing, as the kubelet says it (`secret "db" not found`).
        message: String,
    },
    /// ConfigMaps or Secrets the pod may reference changed: containers waiting after a
    /// `ContainerCreateFailed` are tried again now.
    ConfigChanged,
    /// A container instance's main process ended.
    ContainerExited {
        /// Container name.
        name: String,
        /// The instance.
        id: ContainerId,
        /// How it ended.
        status: ExitStatus,
        /// The termination message (file content or log tail), if any.
        message: Option<String>,
    },
    /// A probe attempt asked for with `RunProbe` finished.
    ProbeResult {
        /// Container name.
        name: String,
        /// The instance probed.
        id: ContainerId,
        /// Which probe.
        kind: ProbeKind,
        /// What it found.
        result: ProbeResult,
    },
    /// A hook asked for with `RunHook` finished.
    HookResult {
        /// Container name.
        name: String,
        /// The instance.
        id: ContainerId,
        /// Which hook.
        hook: HookKind,
        /// Whether it succeeded.
        result: HookResult,
    },
    /// The pod object changed in the API: a new image, a new `activeDeadlineSeconds`,
    /// conditions set by others (readiness gates), or a `deletionTimestamp`.
    PodUpdated(Box<Pod>),
    /// The pod is to be terminated (deleted), with an optional grace period in seconds that
    /// overrides the pod's own when it is shorter.
    DeleteRequested {
        /// `deletionGracePeriodSeconds`, if the deletion gave one.
        grace_period_seconds: Option<i64>,
    },
}
