//! [`Node`]: the pod supervisor, the manifest source and the output, run until shutdown.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use podvisor_core::runtime::ContainerRuntime;
use podvisor_core::{HookRunner, Prober};
use podvisor_kubelet::PodSink;
use podvisor_kubelet::{Clock, PodSupervisor, SupervisorConfig};
use podvisor_lifecycle::{Event, EventType};
use podvisor_probe::{HookWarning, ProbeSet};
use podvisor_runtime::{Capabilities, ProcessRuntime, RuntimeConfig};
use tokio::sync::mpsc;

use crate::manifests::StaticPods;
use crate::output::{NodeOutput, OutputMode};

/// How often the manifest directory is read and the table redrawn.
const SCAN_PERIOD: Duration = Duration::from_secs(1);
/// Extra time, beyond the longest grace period, that shutdown waits for pods to stop.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(15);

/// What the node is told on its command line.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Where the node keeps its state (logs, sandboxes, IP allocations).
    pub data_dir: PathBuf,
    /// A directory of static pod manifests to follow, if any.
    pub manifests: Option<PathBuf>,
    /// The node's name (`spec.nodeName` of its pods).
    pub node_name: String,
    /// How the node shows what happens.
    pub output: OutputMode,
    /// The pod network (`10.88.0.0/16`); the node bridge takes its first address.
    pub pod_cidr: String,
    /// Run every pod in the node's network, without sandboxes (what happens without root).
    pub host_network_only: bool,
}

impl NodeConfig {
    /// The defaults of `cargo xtask node`, with state in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            data_dir: data_dir.into(),
            manifests: None,
            node_name: default_node_name(),
            output: OutputMode::Lines,
            pod_cidr: "10.88.0.0/16".into(),
            host_network_only: false,
        }
    }
}

/// The machine's host name, or `podvisor`.
fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_lowercase())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "podvisor".into())
}

/// Why a node could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The process runtime could not be set up.
    #[error("cannot set up the process runtime: {0}")]
    Runtime(#[from] podvisor_runtime::InitError),
}

/// Builds a node over the real parts: the process runtime and the probe handlers.
/// Must be called inside a tokio runtime.
pub async fn build(config: NodeConfig) -> Result<(Node, Capabilities), BuildError> {
    let runtime = ProcessRuntime::new(RuntimeConfig {
        data_dir: config.data_dir.clone(),
        pod_cidr: config.pod_cidr.clone(),
        node_name: config.node_name.clone(),
        force_host_network: config.host_network_only,
        ..RuntimeConfig::default()
    })
    .await?;
    let capabilities = runtime.capabilities().clone();
    let host_ip = runtime.node_ip().await;
    let runtime = Arc::new(runtime);
    let (probes, hook_warnings) = ProbeSet::new(runtime.clone()).with_hook_warnings(64);
    let probes = Arc::new(probes);
    let node = Node::new(config, runtime, probes.clone(), probes, host_ip).with_hook_warnings(hook_warnings);
    Ok((node, capabilities))
}

/// A node: the pod supervisor over a runtime, a prober and a hook runner, fed by static
/// manifests.
pub struct Node {
    config: NodeConfig,
    runtime: Arc<dyn ContainerRuntime>,
    prober: Arc<dyn Prober>,
    hooks: Arc<dyn HookRunner>,
    host_ip: Option<String>,
    hook_warnings: Option<mpsc::Receiver<HookWarning>>,
}

impl Node {
    /// A node over the given seams (see [`crate::build`] for the real ones).
    pub fn new(
        config: NodeConfig,
        runtime: Arc<dyn ContainerRuntime>,
        prober: Arc<dyn Prober>,
        hooks: Arc<dyn HookRunner>,
        host_ip: Option<String>,
    ) -> Node {
        Node {
            config,
            runtime,
            prober,
            hooks,
            host_ip,
            hook_warnings: None,
        }
    }

    /// Also turns hook warnings (`LifecycleHTTPFallback`) into Warning events of their pods.
    pub fn with_hook_warnings(mut self, warnings: mpsc::Receiver<HookWarning>) -> Node {
        self.hook_warnings = Some(warnings);
        self
    }

    /// Runs until `shutdown` completes, then terminates every pod gracefully (each with its
    /// own grace period) and returns once they have stopped, or after the longest grace period
    /// plus a margin.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let output = Arc::new(NodeOutput::new(self.config.output));
        let clock = Clock::system();
        let mut supervisor = PodSupervisor::new(
            self.runtime,
            self.prober,
            self.hooks,
            output.clone(),
            SupervisorConfig {
                node_name: self.config.node_name.clone(),
                host_ip: self.host_ip,
                clock,
            },
        );
        let mut statics = self.config.manifests.as_ref().map(StaticPods::new);
        let mut interval = tokio::time::interval(SCAN_PERIOD);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        let mut hook_warnings = self.hook_warnings;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(warning) = async { hook_warnings.as_mut()?.recv().await }, if hook_warnings.is_some() => {
                    let uri = warning.container_id.uri();
                    let owner = supervisor.pods().into_iter().find(|v| {
                        let st = v.pod.status.clone().unwrap_or_default();
                        st.container_statuses.iter().flatten().chain(st.init_container_statuses.iter().flatten())
                            .any(|c| c.container_id.as_deref() == Some(uri.as_str()))
                    });
                    if let Some(view) = owner {
                        let event = Event { type_: EventType::Warning, reason: warning.reason, message: warning.message, field_path: None };
                        output.event(&view.pod, &event, clock.now());
                    }
                }
                _ = interval.tick() => {
                    if let Some(statics) = statics.as_mut() {
                        let changes = statics.scan();
                        for error in &changes.errors {
                            output.notice(&format!("manifest skipped: {error}"));
                        }
                        for uid in &changes.removed {
                            supervisor.delete(uid, None);
                        }
                        for pod in changes.added {
                            supervisor.apply(pod);
                        }
                        let defined: BTreeSet<String> =
                            statics.pods().filter_map(|p| p.metadata.uid.clone()).collect();
                        supervisor.forget_finished_except(&defined);
                    }
                    output.redraw(&supervisor.pods(), clock.now());
                }
            }
        }
        let longest_grace = supervisor
            .pods()
            .iter()
            .filter_map(|v| v.pod.spec.as_ref()?.termination_grace_period_seconds)
            .max()
            .unwrap_or(30);
        let deadline = Duration::from_secs(u64::try_from(longest_grace).unwrap_or(30)) + SHUTDOWN_SLACK;
        output.notice("shutting down: terminating every pod");
        if !supervisor.shutdown(deadline).await {
            output.notice("some pods did not stop in time");
        }
    }
}
