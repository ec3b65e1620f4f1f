//! [`Node`]: the pod supervisor, the manifest source and the output, run until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use podvisor_apiserver::logs::LogSource;
use podvisor_apiserver::setup::{self, Endpoint};
use podvisor_apiserver::{ApiServer, ApiServerConfig, Serving};
use podvisor_controllers::{Controllers, ControllersConfig};
use podvisor_core::HookWarning;
use podvisor_core::corev1::Pod;
use podvisor_core::runtime::ContainerRuntime;
use podvisor_core::{HookRunner, Prober};
use podvisor_kubelet::cluster::Connection;
use podvisor_kubelet::cluster::node_status::NodeFacts;
use podvisor_kubelet::{Clock, PodSupervisor, SupervisorConfig, VolumeConfig, VolumeManager};
use podvisor_kubelet::{PodSink, Tee};
use podvisor_runtime::{Capabilities, ProcessRuntime, RuntimeConfig};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::api::{self, ApiParts, ApiSetupError};
use crate::metrics::NodeMetrics;
use crate::parts::PodParts;
use podvisor_kubelet::output::{NodeOutput, OutputMode};
use podvisor_kubelet::static_pods::StaticPods;
pub use podvisor_kubelet::sync_loop::Shutdown;
use podvisor_kubelet::sync_loop::{ApiSide, SyncLoop};

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
    /// This node's pod network (`--pod-cidr`, registered as its `spec.podCIDR`); the node bridge
    /// takes its first address. `None`: an agent registers without one and waits for the /24
    /// the control plane's node IPAM gives it; the all-in-one node takes the first /24 of
    /// [`NodeConfig::cluster_cidr`].
    pub pod_cidr: Option<String>,
    /// The cluster CIDR the all-in-one node's node IPAM gives each node a /24 of
    /// (`--cluster-cidr`, `10.88.0.0/16`); `None` allocates none. Not used by an agent.
    pub cluster_cidr: Option<String>,
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
    /// Run as an agent of the API server this kubeconfig names instead of serving an API
    /// (`podvisor agent --kubeconfig`): only the node side (runtime, probes, pod workers, cluster
    /// DNS and the Service datapath) runs here.
    pub join: Option<PathBuf>,
    /// The address the Node reports as its InternalIP [default: the runtime's host address].
    pub node_ip: Option<String>,
    /// An agent's kubelet endpoint port on its InternalIP (`pods/log` of its pods is served
    /// there for the API servers); `0` picks a free one.
    pub kubelet_port: u16,
    /// The pods this node takes (`--max-pods`, default 110 as the kubelet's): its Node's `pods`
    /// capacity, which the scheduler counts against. Pods with a network of their own also
    /// need an address each in the pod CIDR (a /24 has 253) and a port each on the bridge
    /// (Linux bridges take 1,023).
    pub max_pods: u32,
}

impl NodeConfig {
    /// The defaults of `cargo xtask node`, with state in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            data_dir: data_dir.into(),
            manifests: None,
            node_name: default_node_name(),
            output: OutputMode::Lines,
            pod_cidr: None,
            cluster_cidr: Some("10.88.0.0/16".into()),
            host_network_only: false,
            listen: None,
            tls: false,
            apply: Vec::new(),
            services: crate::services::ServicesConfig::default(),
            cgroup_parent: "podvisor".into(),
            bridge_name: "podvisor0".into(),
            api_limits: podvisor_apiserver::limits::Limits::default(),
            join: None,
            node_ip: None,
            kubelet_port: podvisor_apiserver::kubelet::DEFAULT_PORT,
            max_pods: podvisor_kubelet::cluster::node_status::DEFAULT_MAX_PODS,
        }
    }
}

/// How many pods with a network of their own a node can run (`None` when its pods get none):
/// each takes an address of `pod_cidr` (not its network, gateway or broadcast address) and a
/// port on the bridge.
pub(crate) fn pod_network_limit(pod_cidr: Option<&str>, networks: bool) -> Option<u32> {
    let cidr = podvisor_core::net::Ipv4Cidr::parse(pod_cidr?).ok()?;
    networks.then(|| {
        cidr.size()
            .saturating_sub(3)
            .min(podvisor_runtime::network::BRIDGE_PORTS)
    })
}

/// The machine's host name, or `podvisor`.
pub(crate) fn default_node_name() -> String {
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

/// The process's memory set-up, for a node and an API server alike: large frees go back to the
/// system, free allocator memory is handed back every 10 s, and start-up's executable pages are
/// unmapped once it is done. Must be called inside a tokio runtime.
pub(crate) fn tune_process_memory() {
    // Large request and response bodies are freed back to the system, not kept by the allocator.
    if !podvisor_runtime::process::return_large_frees_to_the_system() {
        debug!("the allocator keeps freed large blocks (not glibc)");
    }
    podvisor_runtime::process::release_free_memory_periodically();
    // What only start-up ran stops counting against the process's memory once it is done.
    podvisor_runtime::process::release_start_up_pages();
}

/// Builds a node over the real parts: the process runtime and the probe handlers.
/// Must be called inside a tokio runtime.
pub async fn build(config: NodeConfig) -> Result<(Node, Capabilities), BuildError> {
    tune_process_memory();
    // Connections, watches, logs and probes each hold descriptors: 1024 is not enough.
    match podvisor_runtime::process::raise_open_file_limit() {
        Ok((before, after)) if after > before => info!(before, after, "raised the open-file limit"),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot raise the open-file limit"),
    }
    let remote = match &config.join {
        Some(path) => Some(api::join_as_node(path, &config.node_name).await?),
        None => None,
    };
    let mut config = config;
    config.pod_cidr = Some(match (&config.pod_cidr, &remote) {
        (Some(cidr), _) => cidr.clone(),
        (None, Some((client, _))) => api::pod_cidr_from_api(client, &config).await?.to_string(),
        (None, None) => api::first_node_range(&config)?.to_string(),
    });
    let api = match config.listen {
        Some(listen) => Some(api::open(&config.data_dir, listen, config.tls).await?),
        None => None,
    };
    let metrics = NodeMetrics::new();
    let runtime_config = RuntimeConfig {
        data_dir: config.data_dir.clone(),
        pod_cidr: config.pod_cidr.clone().unwrap_or_default(),
        node_name: config.node_name.clone(),
        force_host_network: config.host_network_only,
        cgroup_parent: config.cgroup_parent.clone(),
        bridge_name: config.bridge_name.clone(),
        // Cluster DNS runs where there is an API to follow: the all-in-one node and agents.
        cluster_dns: (config.listen.is_some() || config.join.is_some())
            .then(|| crate::services::cluster_dns_address(&config))
            .flatten(),
        ..RuntimeConfig::default()
    };
    let PodParts {
        runtime,
        probes,
        hook_warnings,
    } = PodParts::new(runtime_config, Some(&metrics.kubelet)).await?;
    let capabilities = runtime.capabilities().clone();
    let networks = capabilities.namespaces && !config.host_network_only;
    if let Some(limit) = pod_network_limit(config.pod_cidr.as_deref(), networks)
        && config.max_pods > limit
    {
        warn!(
            max_pods = config.max_pods,
            pod_cidr = config.pod_cidr.as_deref().unwrap_or_default(),
            "--max-pods is above the {limit} pods with a network of their own this node can run \
             (an address each in --pod-cidr, a port each on the bridge, at most {}): more fail to \
             start unless they use hostNetwork",
            podvisor_runtime::network::BRIDGE_PORTS
        );
    }
    // Cluster DNS listens on the bridge's address: make sure it exists before anything binds it.
    if let Err(e) = runtime.ensure_pod_network().await {
        warn!(error = %e, "cannot set up the pod network bridge yet; it is retried with the first pod");
    }
    let host_ip = match &config.node_ip {
        Some(ip) => Some(ip.clone()),
        None => runtime.node_ip().await,
    };
    let process_runtime = ProcessRuntime::clone(&runtime);
    let logs: Arc<dyn LogSource> = runtime.clone();
    let streams: Arc<dyn podvisor_core::streams::PodStreams> = runtime.clone();
    let usage: Arc<dyn podvisor_core::usage::UsageSource> = runtime.clone();
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
    if let Some((client, kubelet_token)) = remote {
        node.remote = Some(client);
        node.kubelet_token = kubelet_token;
    }
    node.process_runtime = Some(process_runtime);
    node.logs = Some(logs);
    node.streams = Some(streams);
    node.usage = Some(usage);
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
    /// The remote API server an agent joins.
    remote: Option<kube::Client>,
    /// What the API servers present to this agent's kubelet endpoint (with a node credential).
    kubelet_token: Option<String>,
    logs: Option<Arc<dyn LogSource>>,
    /// The containers' usage counters (`kubectl top`).
    usage: Option<Arc<dyn podvisor_core::usage::UsageSource>>,
    /// Exec, attach and port-forward into the pods.
    streams: Option<Arc<dyn podvisor_core::streams::PodStreams>>,
    metrics: NodeMetrics,
    volumes: Option<VolumeConfig>,
    /// The process runtime of [`build`], whose cgroups and bridge a clean stop removes.
    process_runtime: Option<ProcessRuntime>,
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
            remote: None,
            kubelet_token: None,
            logs: None,
            usage: None,
            streams: None,
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
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        self.run_until(async {
            shutdown.await;
            Shutdown::StopPods
        })
        .await;
    }

    /// [`run`](Self::run), stopping as `shutdown` says: [`Shutdown::LeavePods`] leaves every pod
    /// running under its monitor (and the node's cgroups and bridge with them) for the next
    /// node process to adopt (issue 18).
    pub async fn run_until(mut self, shutdown: impl Future<Output = Shutdown>) {
        let output = Arc::new(NodeOutput::new(self.config.output));
        let clock = Clock::system();
        let (api, api_side) = match (self.api.take(), self.remote.take()) {
            (Some(parts), _) => {
                let (running, side) = self.start_api(parts, &output, clock).await;
                (Some(running), Some(side))
            }
            (None, Some(client)) => {
                if let Some(path) = &self.config.join {
                    output.notice(&format!("agent of the API in {}", path.display()));
                }
                let (running, side) = self.connect(None, client, &output, clock).await;
                (Some(running), Some(side))
            }
            (None, None) => (None, None),
        };
        let sink: Arc<dyn PodSink> = match &api {
            Some(running) => Arc::new(Tee(running.kubelet.sink.clone(), output.clone())),
            None => output.clone(),
        };
        let mut supervisor = PodSupervisor::new(
            self.runtime.clone(),
            self.prober,
            self.hooks,
            sink.clone(),
            SupervisorConfig {
                node_name: self.config.node_name.clone(),
                host_ip: self.host_ip,
                clock,
            },
        )
        .with_metrics(self.metrics.kubelet.clone())
        .with_max_pods(
            usize::try_from(self.config.max_pods).unwrap_or(usize::MAX),
            self.process_runtime
                .as_ref()
                .map(ProcessRuntime::survivors)
                .unwrap_or_default(),
        );
        if let Some(running) = &api {
            supervisor = supervisor.with_config_source(running.kubelet.config.clone());
        }
        if let Some(volumes) = self.volumes.take() {
            // The volumes of pods that outlived the previous node process stay as they are.
            let survivors = self
                .process_runtime
                .as_ref()
                .map(ProcessRuntime::survivors)
                .unwrap_or_default();
            match VolumeManager::keeping(volumes.clone(), &survivors) {
                Ok(manager) => supervisor = supervisor.with_volumes(manager),
                Err(e) => output.notice(&format!(
                    "pod volumes are not served: {}: {e}",
                    volumes.root.display()
                )),
            }
        }
        let leaving = std::sync::atomic::AtomicBool::new(false);
        let all_stopped = SyncLoop {
            supervisor,
            runtime: self.runtime,
            output,
            sink,
            clock,
            api: api_side,
            static_pods: self.config.manifests.as_ref().map(StaticPods::new),
            hook_warnings: self.hook_warnings,
        }
        .run_until(async {
            let how = shutdown.await;
            leaving.store(how == Shutdown::LeavePods, std::sync::atomic::Ordering::SeqCst);
            how
        })
        .await;
        if leaving.load(std::sync::atomic::Ordering::SeqCst)
            && let Some(runtime) = &self.process_runtime
        {
            // The workers are gone; the runtime lets go too: the pods are the next node's.
            runtime.detach();
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

    /// Serves the API, writes the kubeconfig, applies `-f` manifests, starts the control loops,
    /// the kubelet's side of the API and Services.
    async fn start_api(&self, parts: ApiParts, output: &NodeOutput, clock: Clock) -> (RunningApi, ApiSide) {
        let ApiParts {
            store,
            endpoint,
            closed,
        } = parts;
        let Endpoint {
            listener,
            addr,
            pki,
            server_tls,
            url,
        } = endpoint;
        let service_ranges = crate::services::ranges(&self.config.services, output);
        let api_config = ApiServerConfig {
            service_ranges: service_ranges.clone(),
            limits: self.config.api_limits.clone(),
            ..ApiServerConfig::default()
        };
        // Join tokens are Secrets in the store, read when agents present them.
        let tokens = store.clone();
        let mut server = ApiServer::new(store, api_config);
        if let Some(logs) = &self.logs {
            server = server.with_logs(logs.clone());
        }
        if let Some(streams) = &self.streams {
            server = server.with_streams(streams.clone());
        }
        if let Some(usage) = &self.usage {
            server = server.with_usage(self.config.node_name.clone(), usage.clone());
        }
        server = server.with_metrics(self.metrics.api.clone(), self.metrics.registry.clone());
        if let (Some(tls), Some(pki)) = (server_tls, &pki) {
            server = server.with_tls(tls).with_authenticator(
                podvisor_apiserver::auth::Authenticator::for_cluster(pki, tokens.clone()),
            );
        }
        if let Err(e) = server.bootstrap().await {
            output.notice(&format!("cannot create the initial namespaces: {e}"));
        }
        let serving = server.spawn(listener);
        // The node's own requests go to the API server in-process, not through the socket.
        let client = kube::Client::new(serving.handler(), "default");
        if api::wait_ready(&client, Duration::from_secs(10)).await {
            // Registered with its pod CIDR before any agent can join, so node IPAM never hands
            // that range to another node.
            if let Err(e) = podvisor_kubelet::cluster::node_status::register(&client, &self.facts(true)).await
            {
                warn!(error = %e, "registering the node failed; its heartbeat tries again");
            }
            let path = self.config.data_dir.join("kubeconfig");
            match setup::write_kubeconfig(&path, &url, pki.as_ref()) {
                Ok(path) => output.notice(&format!("API on {url}; KUBECONFIG={}", path.display())),
                Err(e) => output.notice(&format!("API on {url}; cannot write the kubeconfig: {e}")),
            }
            // Agents join with their own, narrower credential.
            if let Some(pki) = &pki {
                let join = self.config.data_dir.join("join.kubeconfig");
                let written = match podvisor_apiserver::bootstrap_tokens::ensure_join_token(&*tokens).await {
                    Ok(token) => setup::write_join_kubeconfig(&join, &url, pki, &token),
                    Err(e) => Err(std::io::Error::other(e)),
                };
                if let Err(e) = written {
                    output.notice(&format!("cannot write {}: {e}", join.display()));
                }
            }
        } else {
            output.notice(&format!("the API on {addr} did not become ready"));
        }
        let cluster_cidr = match self
            .config
            .cluster_cidr
            .as_deref()
            .map(podvisor_core::net::Ipv4Cidr::parse)
        {
            Some(Ok(cidr)) => Some(cidr),
            Some(Err(e)) => {
                output.notice(&format!("{e}; nodes get no pod CIDRs"));
                None
            }
            None => None,
        };
        let controllers = Controllers::spawn(
            &client,
            &ControllersConfig {
                kubernetes_service: Some((service_ranges.first(), addr)),
                cluster_cidr,
                ..Default::default()
            },
        );
        let local = LocalApi {
            serving,
            controllers,
            closed,
        };
        let (running, side) = self.connect(Some(local), client.clone(), output, clock).await;
        for line in podvisor_controllers::apply::apply_paths(&client, &self.config.apply).await {
            output.notice(&line);
        }
        (running, side)
    }

    /// What this node's Node object says; the all-in-one node is its cluster's control plane.
    fn facts(&self, control_plane: bool) -> NodeFacts {
        let labels = match control_plane {
            true => [("node-role.kubernetes.io/control-plane".to_owned(), String::new())].into(),
            false => Default::default(),
        };
        NodeFacts {
            name: self.config.node_name.clone(),
            address: self.host_ip.clone(),
            pod_cidr: self.config.pod_cidr.clone(),
            data_dir: self.config.data_dir.clone(),
            labels,
            kubelet_port: None,
            max_pods: self.config.max_pods,
        }
    }

    /// Connects the node side to the API through `client` (the in-process one of `local`, or an
    /// agent's remote one): removes the files of this node's pods deleted while it was down,
    /// then starts the kubelet's API side and Services.
    async fn connect(
        &self,
        local: Option<LocalApi>,
        client: kube::Client,
        output: &NodeOutput,
        clock: Clock,
    ) -> (RunningApi, ApiSide) {
        let name = &self.config.node_name;
        // Files of pods deleted while the node was down go before any pod starts again.
        let mine = kube::api::ListParams::default().fields(&format!("spec.nodeName={name}"));
        match kube::Api::<Pod>::all(client.clone()).list(&mine).await {
            Ok(list) => {
                let uids: Vec<String> = list.items.into_iter().filter_map(|p| p.metadata.uid).collect();
                if let Err(e) = self.runtime.remove_pods_except(&uids).await {
                    warn!(error = %e, "removing the files of deleted pods");
                }
            }
            Err(e) => warn!(error = %e, "listing pods to remove the files of deleted ones"),
        }
        let mut services = tokio::task::JoinSet::new();
        // An agent serves its pods' logs to the API servers on its kubelet endpoint.
        let kubelet_port = match (&local, &self.kubelet_token, &self.logs, &self.host_ip) {
            (None, Some(token), Some(logs), Some(ip)) => {
                let endpoint = crate::kubelet_endpoint::Endpoint {
                    client: client.clone(),
                    token: token.clone(),
                    logs: logs.clone(),
                    usage: self.usage.clone(),
                    streams: self.streams.clone(),
                    data_dir: self.config.data_dir.clone(),
                    ip: ip.clone(),
                    port: self.config.kubelet_port,
                };
                endpoint.start(&mut services, output).await
            }
            _ => None,
        };
        let mut facts = self.facts(local.is_some());
        facts.kubelet_port = kubelet_port;
        let host = Arc::new(podvisor_runtime::LinuxHost);
        let (kubelet, side) = podvisor_kubelet::cluster::connect(client.clone(), facts, clock, host);
        crate::services::start(&mut services, client.clone(), &self.config, output).await;
        // Pods of other nodes are reached through their nodes (host-gw), where pods have a
        // network of their own.
        let routes = (!self.config.host_network_only && crate::is_root()).then(|| {
            Arc::new(podvisor_runtime::routes::NodeRoutes::new(
                &self.config.bridge_name,
            ))
        });
        if let Some(routes) = &routes {
            let follow = podvisor_kubelet::cluster::routes::follow_routes(
                client.clone(),
                name.clone(),
                routes.clone(),
            );
            services.spawn(follow);
        }
        let running = RunningApi {
            local,
            client,
            kubelet,
            services,
            routes,
        };
        (running, side)
    }
}

/// The API server this node serves and the control loops on it (not on an agent).
struct LocalApi {
    serving: Serving,
    controllers: Controllers,
    closed: podvisor_store::Closed,
}

/// The API and the tasks that connect the node to it.
struct RunningApi {
    local: Option<LocalApi>,
    client: kube::Client,
    kubelet: Connection,
    services: tokio::task::JoinSet<()>,
    /// The routes to other nodes' pod networks, removed at the end.
    routes: Option<Arc<podvisor_runtime::routes::NodeRoutes>>,
}

impl RunningApi {
    /// Stops the control loops, the kubelet's and the Services' tasks, then the API server;
    /// returns once the store is closed.
    async fn stop(self) {
        let RunningApi {
            local,
            client,
            kubelet,
            mut services,
            routes,
        } = self;
        let serving = match local {
            Some(LocalApi {
                serving,
                controllers,
                closed,
            }) => {
                controllers.stop().await;
                Some((serving, closed))
            }
            None => None,
        };
        kubelet.stop().await;
        services.abort_all();
        while services.join_next().await.is_some() {}
        if let Some(routes) = routes
            && let Err(e) = routes.sync_routes(&[]).await
        {
            warn!(error = %e, "removing the routes to other nodes' pod networks failed");
        }
        drop(client);
        if let Some((serving, closed)) = serving {
            serving.stop().await;
            // Watch streams that were being torn down still hold the store: the file is closed
            // once they are gone.
            let deadline = tokio::time::Instant::now() + Serving::STOP_WAIT;
            while !closed.is_closed() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if !closed.is_closed() {
                warn!("the store is still open after the API stopped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pod_network_limit;

    #[test]
    fn pod_network_limit_is_the_pod_cidr_or_the_bridge() {
        assert_eq!(pod_network_limit(Some("10.88.0.0/24"), true), Some(253));
        assert_eq!(pod_network_limit(Some("10.88.0.0/22"), true), Some(1021));
        // A /20 has 4,093 addresses, but a Linux bridge takes 1,023 ports.
        assert_eq!(pod_network_limit(Some("10.88.0.0/20"), true), Some(1023));
        assert_eq!(pod_network_limit(Some("10.88.0.0/24"), false), None);
        assert_eq!(pod_network_limit(None, true), None);
    }
}
