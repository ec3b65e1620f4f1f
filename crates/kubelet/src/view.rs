//! What a pod worker publishes: the pod with its status, and the diagnostics behind it.

use std::collections::BTreeMap;
use std::time::Duration;

use podvisor_core::corev1::Pod;
use podvisor_core::{HookKind, ProbeKind, ProbeOutcome};
use podvisor_lifecycle::{Event, Time};

/// The last result of one probe, kept so "why is my pod not ready" has an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRecord {
    /// When the attempt finished.
    pub at: Time,
    /// The verdict (`None` when the handler errored and the result was discarded).
    pub outcome: Option<ProbeOutcome>,
    /// The handler's output or error.
    pub message: String,
    /// How long the attempt took.
    pub latency: Duration,
}

/// The last result of one lifecycle hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookRecord {
    /// When the hook finished.
    pub at: Time,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// Why it failed, if it did.
    pub message: String,
    /// How long it took.
    pub latency: Duration,
}

/// Diagnostics for one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerDiagnostics {
    /// The last result of each probe.
    pub probes: BTreeMap<ProbeKind, ProbeRecord>,
    /// The last result of each hook (`postStart`, `preStop`), keyed by name.
    pub hooks: BTreeMap<&'static str, HookRecord>,
}

impl ContainerDiagnostics {
    pub(crate) fn record_hook(&mut self, hook: HookKind, record: HookRecord) {
        let name = match hook {
            HookKind::PostStart => "postStart",
            HookKind::PreStop => "preStop",
        };
        self.hooks.insert(name, record);
    }
}

/// A pod as its worker sees it right now.
#[derive(Clone, Debug, Default)]
pub struct PodView {
    /// The pod, with the status the lifecycle model derived.
    pub pod: Pod,
    /// Per-container probe and hook history.
    pub diagnostics: BTreeMap<String, ContainerDiagnostics>,
    /// The pod is terminal and torn down; its worker has ended.
    pub finished: bool,
}

/// Where pod workers report to: the store, the API, a terminal. Implementations must not block
/// (queue the work if it is slow); they are called from the worker's loop.
pub trait PodSink: Send + Sync {
    /// The pod's status changed.
    fn status(&self, view: &PodView);
    /// The lifecycle model recorded an event about the pod.
    fn event(&self, pod: &Pod, event: &Event, at: Time);
}

/// A sink that drops everything (for embedding without reporting).
#[derive(Clone, Copy, Debug, Default)]
pub struct NullSink;

impl PodSink for NullSink {
    fn status(&self, _view: &PodView) {}
    fn event(&self, _pod: &Pod, _event: &Event, _at: Time) {}
}

/// A sink that reports to two others (the API and the node's own output, say).
#[derive(Debug)]
pub struct Tee<A, B>(pub std::sync::Arc<A>, pub std::sync::Arc<B>);

impl<A: PodSink, B: PodSink> PodSink for Tee<A, B> {
    fn status(&self, view: &PodView) {
        self.0.status(view);
        self.1.status(view);
    }

    fn event(&self, pod: &Pod, event: &Event, at: Time) {
        self.0.event(pod, event, at);
        self.1.event(pod, event, at);
    }
}
