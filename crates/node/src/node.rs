//! [`Node`]: the pod supervisor, the manifest source and the output, run until shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use podvisor_apiserver::logs::LogSource;
use podvisor_apiserver::{ApiServer, ApiServerConfig};
use podvisor_core::runtime::ContainerRuntime;
use podvisor_core::{ConfigSource, HookRunner, Prober};
use podvisor_kubelet::cluster::PodChange;
use podvisor_kubelet::cluster::node_status::{NodeFacts, heartbeat};
use podvisor_kubelet::cluster::status::ApiSink;
use podvisor_kubelet::{Clock, PodSupervisor, SupervisorConfig, VolumeConfig, VolumeManager};
use podvisor_kubelet::{PodSink, Tee};
use podvisor_lifecycle::{Event, EventType};
use podvisor_probe::{HookWarning, ProbeSet};
use podvisor_runtime::{Capabilities, ProcessRuntime, RuntimeConfig};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::api::{self, ApiParts, ApiSetupError};
use crate::metrics::NodeMetrics;
use podvisor_kubelet::output::{NodeOutput, OutputMode};
use podvisor_kubelet::static_pods::StaticPods;

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
    /// Serve the Kubernetes API (with the embedded store) on this address: plain HTTP without
    /// authentication on loopback, TLS with a bearer token anywhere else.
    pub listen: Option<SocketAddr>,
    /// Serve TLS with a bearer token on a loopback `listen` address too (`--tls`).
    pub tls: bool,
    /// Manifest files or directories to create through the API at start-up (`-f`).
    pub apply: Vec<PathBuf>,
    /// Service addresses, cluster DNS and the Service datapath.
    pub services: crate::services::ServicesConfig,
    /// The cgroup directory of this node's containers under each hierarchy (`podvisor`). At
    /// start the node removes what a previous run left there, so two nodes on one machine
    /// need different ones.
    pub cgroup_parent: String,
    /// The pod network's bridge (`podvisor0`). Two nodes on one machine need different ones.
    pub bridge_name: String,
    /// The API server's connection, request and wait budgets (`--max-requests-inflight`,
    /// `--max-mutating-requests-inflight`, `--max-connections`).
    pub api_limits: podvisor_apiserver::limits::Limits,
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
            listen: None,
            tls: false,
            apply: Vec::new(),
            services: crate::services::ServicesConfig::default(),
            cgroup_parent: "podvisor".into(),
            bridge_name: "podvisor0".into(),
            api_limits: podvisor_apiserver::limits::Limits::default(),
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
    /// The API could not be set up.
    #[error(transparent)]
    Api(#[from] ApiSetupError),
}

/// Builds a node over the real parts: the process runtime and the probe handlers.
/// Must be called inside a tokio runtime.
pub async fn build(config: NodeConfig) -> Result<(Node, Capabilities), BuildError> {
    // Large request and response bodies are freed back to the system, not kept by the allocator.
    if !podvisor_runtime::process::return_large_frees_to_the_system() {
        debug!("the allocator keeps freed large blocks (not glibc)");
    }
    podvisor_runtime::process::release_free_memory_periodically();
    // Connections, watches, logs and probes each hold descriptors: 1024 is not enough.
    match podvisor_runtime::process::raise_open_file_limit() {
        Ok((before, after)) if after > before => info!(before, after, "raised the open-file limit"),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot raise the open-file limit"),
    }
    let api = match config.listen {
        Some(listen) => Some(api::open(&config.data_dir, listen, config.tls).await?),
        None => None,
    };
    let runtime = ProcessRuntime::new(RuntimeConfig {
        data_dir: config.data_dir.clone(),
        pod_cidr: config.pod_cidr.clone(),
        node_name: config.node_name.clone(),
        force_host_network: config.host_network_only,
        cgroup_parent: config.cgroup_parent.clone(),
        bridge_name: config.bridge_name.clone(),
        cluster_dns: config
            .listen
            .and_then(|_| crate::services::cluster_dns_address(&config)),
        ..RuntimeConfig::default()
    })
    .await?;
    let capabilities = runtime.capabilities().clone();
    // Cluster DNS listens on the bridge's address: make sure it exists before anything binds it.
    if let Err(e) = runtime.ensure_pod_network().await {
        warn!(error = %e, "cannot set up the pod network bridge yet; it is retried with the first pod");
    }
    let host_ip = runtime.node_ip().await;
    let logs: Arc<dyn LogSource> = Arc::new(runtime.clone());
    let process_runtime = runtime.clone();
    let runtime = Arc::new(runtime);
    let metrics = NodeMetrics::new();
    let exec = metrics.kubelet.instrument_exec(runtime.clone());
    let (probes, hook_warnings) = ProbeSet::new(exec).with_hook_warnings(64);
    let probes = Arc::new(probes);
    let volumes = VolumeConfig {
        root: config.data_dir.join("volumes"),
        // Containers get mount namespaces of their own where the runtime can give them one.
        isolation: capabilities.termination_message_path,
        host: Arc::new(podvisor_runtime::LinuxHost),
    };
    let mut node = Node::new(config, runtime, probes.clone(), probes, host_ip)
        .with_hook_warnings(hook_warnings)
        .with_volumes(volumes);
    node.api = api;
    node.process_runtime = Some(process_runtime);
    node.logs = Some(logs);
    node.metrics = metrics;
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
    api: Option<ApiParts>,
    logs: Option<Arc<dyn LogSource>>,
    metrics: NodeMetrics,
    volumes: Option<VolumeConfig>,
    /// The process runtime of [`build`], whose cgroups and bridge a clean stop removes.
    process_runtime: Option<ProcessRuntime>,
}

/// Once the deleted pod `uid` has stopped (its worker finished, or there is none), removes
/// what the runtime keeps of it: its logs go with the pod, as the kubelet's do.
fn remove_when_stopped(
    runtime: Arc<dyn ContainerRuntime>,
    view: Option<tokio::sync::watch::Receiver<podvisor_kubelet::PodView>>,
    uid: String,
) {
    tokio::spawn(async move {
        if let Some(mut view) = view {
            // The worker's end also ends the channel.
            while !view.borrow_and_update().finished {
                if view.changed().await.is_err() {
                    break;
                }
            }
        }
        if let Err(e) = runtime.remove_pod(&uid).await {
            tracing::warn!(pod_uid = %uid, error = %e, "removing the files of a deleted pod");
        }
    });
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
            api: None,
            logs: None,
            metrics: NodeMetrics::new(),
            volumes: None,
            process_runtime: None,
        }
    }

    /// Also serves pod volumes, kept under `volumes.root`.
    pub fn with_volumes(mut self, volumes: VolumeConfig) -> Node {
        self.volumes = Some(volumes);
        self
    }

    /// Also turns hook warnings (`LifecycleHTTPFallback`) into Warning events of their pods.
    pub fn with_hook_warnings(mut self, warnings: mpsc::Receiver<HookWarning>) -> Node {
        self.hook_warnings = Some(warnings);
        self
    }

    /// Runs until `shutdown` completes, then terminates every pod gracefully (each with its
    /// own grace period) and returns once they have stopped, or after the longest grace period
    /// plus a margin.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let output = Arc::new(NodeOutput::new(self.config.output));
        let clock = Clock::system();
        let (changes_tx, mut changes) = mpsc::unbounded_channel::<PodChange>();
        let (config_tx, mut config_changes) = mpsc::unbounded_channel::<()>();
        let mut api = None;
        let sink: Arc<dyn PodSink> = match self.api.take() {
            Some(parts) => {
                let running = self.start_api(parts, changes_tx, config_tx, &output, clock).await;
                let sink = Arc::new(Tee(running.sink.clone(), output.clone()));
                api = Some(running);
                sink
            }
            None => output.clone(),
        };
        let runtime = self.runtime.clone();
        let mut supervisor = PodSupervisor::new(
            self.runtime,
            self.prober,
            self.hooks,
            sink,
            SupervisorConfig {
                node_name: self.config.node_name.clone(),
                host_ip: self.host_ip,
                clock,
            },
        )
        .with_metrics(self.metrics.kubelet.clone());
        if let Some(running) = &api {
            supervisor = supervisor.with_config_source(running.config.clone());
        }
        if let Some(volumes) = self.volumes.take() {
            match VolumeManager::new(volumes.clone()) {
                Ok(manager) => supervisor = supervisor.with_volumes(manager),
                Err(e) => output.notice(&format!(
                    "pod volumes are not served: {}: {e}",
                    volumes.root.display()
                )),
            }
        }
        let mut statics = self.config.manifests.as_ref().map(StaticPods::new);
        let mut static_names = BTreeMap::new();
        let mut statics_pending = false;
        let mut interval = tokio::time::interval(SCAN_PERIOD);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        let mut hook_warnings = self.hook_warnings;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(change) = changes.recv() => match change {
                    PodChange::Apply(pod) => supervisor.apply(*pod),
                    PodChange::Gone { uid } => {
                        supervisor.delete(&uid, Some(0));
                        remove_when_stopped(runtime.clone(), supervisor.watch(&uid), uid);
                    }
                },
                Some(()) = config_changes.recv() => supervisor.config_changed(),
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
                        let changed = !changes.added.is_empty() || !changes.removed.is_empty();
                        for error in &changes.errors {
                            output.notice(&format!("manifest skipped: {error}"));
                        }
                        match &api {
                            // With an API, static pods are objects in it, like the kubelet's mirror pods.
                            Some(running) => {
                                if changed || statics_pending {
                                    let desired: Vec<_> = statics.pods().cloned().collect();
                                    statics_pending = !api::sync_static_pods(&running.client, &desired, &mut static_names).await;
                                }
                            }
                            None => {
                                for uid in &changes.removed {
                                    supervisor.delete(uid, None);
                                }
                                for pod in changes.added {
                                    supervisor.apply(pod);
                                }
                            }
                        }
                        if api.is_none() {
                            let defined: BTreeSet<String> =
                                statics.pods().filter_map(|p| p.metadata.uid.clone()).collect();
                            supervisor.forget_finished_except(&defined);
                        }
                    }
                    if api.is_some() {
                        supervisor.forget_finished();
                    }
                    output.redraw(&supervisor.pods(), clock.now());
                }
            }
        }
        if let Some(running) = &api {
            // The API keeps the pods as they were; a restarted node runs them again.
            running.sink.detach();
        }
        let longest_grace = supervisor
            .pods()
            .iter()
            .filter_map(|v| v.pod.spec.as_ref()?.termination_grace_period_seconds)
            .max()
            .unwrap_or(30);
        let deadline = Duration::from_secs(u64::try_from(longest_grace).unwrap_or(30)) + SHUTDOWN_SLACK;
        output.notice("shutting down: terminating every pod");
        let all_stopped = supervisor.shutdown(deadline).await;
        if !all_stopped {
            output.notice("some pods did not stop in time");
        }
        if let Some(running) = api {
            running.stop().await;
        }
        if all_stopped && let Some(runtime) = self.process_runtime.take() {
            // Every pod stopped: the node leaves no cgroup or bridge of its own behind.
            let removed = tokio::task::spawn_blocking(move || runtime.remove_cgroup_parent()).await;
            if let Err(e) = removed {
                warn!(error = %e, "removing the node's cgroups failed");
            }
            let bridge = &self.config.bridge_name;
            if !self.config.host_network_only
                && let Err(e) = podvisor_runtime::delete_link(bridge).await
            {
                debug!(error = %e, bridge, "the pod network bridge was not removed");
            }
        }
    }

    /// Serves the API, writes the kubeconfig, applies `-f` manifests and starts following
    /// pods, the Node heartbeat and the status writer.
    async fn start_api(
        &self,
        parts: ApiParts,
        changes: mpsc::UnboundedSender<PodChange>,
        config_changes: mpsc::UnboundedSender<()>,
        output: &NodeOutput,
        clock: Clock,
    ) -> RunningApi {
        let ApiParts {
            store,
            listener,
            addr,
            pki,
            server_tls,
            url,
        } = parts;
        let service_ranges = crate::services::ranges(&self.config.services, output);
        let api_config = ApiServerConfig {
            service_ranges: service_ranges.clone(),
            limits: self.config.api_limits.clone(),
            ..ApiServerConfig::default()
        };
        let mut server = ApiServer::new(store.clone(), api_config);
        if let Some(logs) = &self.logs {
            server = server.with_logs(logs.clone());
        }
        server = server.with_metrics(self.metrics.api.clone(), self.metrics.registry.clone());
        if let (Some(tls), Some(pki)) = (server_tls, &pki) {
            server = server
                .with_tls(tls)
                .with_bearer_tokens(vec![pki.token().to_owned()]);
        }
        if let Err(e) = server.bootstrap().await {
            output.notice(&format!("cannot create the initial namespaces: {e}"));
        }
        // The node's own requests go to the API server in-process, not through the socket.
        let client = kube::Client::new(server.handler(), "default");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve = tokio::spawn(async move {
            if let Err(e) = server
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
            {
                warn!(error = %e, "the API server stopped");
            }
        });
        if api::wait_ready(&client, Duration::from_secs(10)).await {
            match api::write_kubeconfig(&self.config.data_dir, &url, pki.as_ref()) {
                Ok(path) => output.notice(&format!("API on {url}; KUBECONFIG={}", path.display())),
                Err(e) => output.notice(&format!("API on {url}; cannot write the kubeconfig: {e}")),
            }
        } else {
            output.notice(&format!("the API on {addr} did not become ready"));
        }
        for line in api::apply_paths(&client, &self.config.apply).await {
            output.notice(&line);
        }
        // Files of pods deleted while the node was down go before any pod starts again.
        if let Ok(list) = kube::Api::<podvisor_core::corev1::Pod>::all(client.clone())
            .list(&Default::default())
            .await
        {
            let uids: Vec<String> = list.items.into_iter().filter_map(|p| p.metadata.uid).collect();
            if let Err(e) = self.runtime.remove_pods_except(&uids).await {
                warn!(error = %e, "removing the files of deleted pods");
            }
        }
        let controllers = podvisor_controllers::Controllers::spawn(
            &client,
            &podvisor_controllers::ControllersConfig {
                kubernetes_service: Some((service_ranges.first(), addr)),
                bind_to: Some(self.config.node_name.clone()),
            },
        );
        let mut tasks = tokio::task::JoinSet::new();
        let kubelet = &podvisor_kubelet::cluster::pods::follow_pods;
        tasks.spawn(kubelet(client.clone(), self.config.node_name.clone(), changes));
        tasks.spawn(podvisor_kubelet::cluster::config::watch_changes(
            client.clone(),
            config_changes,
        ));
        let config: Arc<dyn ConfigSource> =
            Arc::new(podvisor_kubelet::cluster::config::ApiConfig(client.clone()));
        let facts = NodeFacts {
            name: self.config.node_name.clone(),
            address: self.host_ip.clone(),
            pod_cidr: self.config.pod_cidr.clone(),
            data_dir: self.config.data_dir.clone(),
            labels: [("node-role.kubernetes.io/control-plane".to_owned(), String::new())].into(),
        };
        tasks.spawn(heartbeat(
            client.clone(),
            facts,
            clock,
            Arc::new(podvisor_runtime::LinuxHost),
        ));
        crate::services::start(&mut tasks, client.clone(), &self.config, output).await;
        let (sink, writer) = ApiSink::new(client.clone(), self.config.node_name.clone());
        tasks.spawn(writer);
        RunningApi {
            store: Arc::downgrade(&store),
            client,
            config,
            sink: Arc::new(sink),
            stop,
            serve,
            tasks,
            controllers,
        }
    }
}

/// The API and the tasks that connect the node to it.
struct RunningApi {
    /// The store, to wait for its release at the stop.
    store: std::sync::Weak<dyn podvisor_store::Store>,
    client: kube::Client,
    config: Arc<dyn ConfigSource>,
    sink: Arc<ApiSink>,
    stop: tokio::sync::oneshot::Sender<()>,
    serve: tokio::task::JoinHandle<()>,
    tasks: tokio::task::JoinSet<()>,
    controllers: podvisor_controllers::Controllers,
}

impl RunningApi {
    async fn stop(self) {
        let RunningApi {
            store,
            client,
            config,
            sink,
            stop,
            serve,
            mut tasks,
            controllers,
        } = self;
        controllers.stop().await;
        tasks.abort_all();
        // Wait until the aborted tasks are gone: they hold the store, which must be closed
        // before this process (or a restarted node in it) opens it again.
        while tasks.join_next().await.is_some() {}
        drop((client, config, sink));
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(15), serve).await;
        // The in-process client's buffer task lets go of the API server (and its store) only
        // once it sees the last client dropped: wait for that, so a node started again in this
        // process can open the store.
        let released = async {
            while store.strong_count() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), released)
            .await
            .is_err()
        {
            warn!("the store is still held 10 s after the API stopped");
        }
    }
}
