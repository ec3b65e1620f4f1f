//! The pod parts of a node, composed in one place: the process runtime, the probe and hook
//! handlers running on its exec, and a pod supervisor over both. [`crate::build`] makes the
//! node's from them; the benchmark harness makes its in-process pod nodes the same way.

use std::sync::Arc;

use podvisor_core::HookWarning;
use podvisor_kubelet::metrics::KubeletMetrics;
use podvisor_kubelet::{PodSink, PodSupervisor, SupervisorConfig};
use podvisor_probe::ProbeSet;
use podvisor_runtime::{InitError, ProcessRuntime, RuntimeConfig};
use tokio::sync::mpsc;

/// How many hook warnings wait for the sync loop before more are dropped.
const HOOK_WARNINGS: usize = 64;

/// A process runtime and the probe and hook handlers on it.
pub struct PodParts {
    /// The process runtime.
    pub runtime: Arc<ProcessRuntime>,
    /// Probes and hooks, executing in containers through the runtime (timed by the kubelet's
    /// metrics when there are some).
    pub probes: Arc<ProbeSet>,
    /// Hook warnings (`LifecycleHTTPFallback`) for the sync loop to record as events.
    pub hook_warnings: mpsc::Receiver<HookWarning>,
}

impl std::fmt::Debug for PodParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodParts").finish_non_exhaustive()
    }
}

impl PodParts {
    /// Sets up the runtime with `config` and the handlers on it. Must be called inside a tokio
    /// runtime.
    pub async fn new(config: RuntimeConfig, metrics: Option<&KubeletMetrics>) -> Result<PodParts, InitError> {
        let runtime = Arc::new(ProcessRuntime::new(config).await?);
        let exec = match metrics {
            Some(metrics) => metrics.instrument_exec(runtime.clone()),
            None => runtime.clone(),
        };
        let (probes, hook_warnings) = ProbeSet::new(exec).with_hook_warnings(HOOK_WARNINGS);
        Ok(PodParts {
            runtime,
            probes: Arc::new(probes),
            hook_warnings,
        })
    }

    /// A pod supervisor over these parts, reporting to `sink`.
    pub fn supervisor(&self, sink: Arc<dyn PodSink>, config: SupervisorConfig) -> PodSupervisor {
        PodSupervisor::new(
            self.runtime.clone(),
            self.probes.clone(),
            self.probes.clone(),
            sink,
            config,
        )
    }
}
