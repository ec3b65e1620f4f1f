//! `podvisor`: the product binary.
//!
//! `podvisor node` runs the all-in-one node: the Kubernetes API on an embedded store, the
//! runtime, probes, pod workers, endpoints, cluster DNS and the Service datapath, in one process.
//! This file only turns flags into a [`podvisor_node::NodeConfig`], sets up logging and signals,
//! and calls the node library; the wiring lives in `podvisor-node`. `cargo xtask node` builds this
//! binary with optimizations and runs `podvisor node` with the same flags.
//!
//! Exit codes: 0 when the node stopped after a signal, 1 when it could not start, 2 on a usage
//! error.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use podvisor_node::{NodeConfig, OutputMode};

/// Kubernetes Pods as supervised host processes, with the kubelet's lifecycle semantics.
#[derive(Debug, Parser)]
#[command(name = "podvisor", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an all-in-one node: the Kubernetes API on an embedded store, and its Pods as
    /// supervised host processes.
    ///
    /// SIGINT or SIGTERM terminates every pod gracefully (preStop hooks, grace periods), then
    /// the node exits; SIGQUIT (or SIGINT/SIGTERM with --leave-pods-running) exits leaving
    /// every pod running, and a crash leaves them too: the next start adopts them. Logs go to
    /// stderr; RUST_LOG sets their level [default: warn].
    Node(NodeArgs),
    /// Run an agent: the node side only (runtime, probes, pod workers, cluster DNS, the Service
    /// datapath) for the API server a kubeconfig names. It registers its Node, renews its Lease
    /// and runs the pods the scheduler binds to it.
    ///
    /// SIGINT or SIGTERM terminates its pods gracefully, then the agent exits (the API keeps
    /// them; an agent started again runs them again); SIGQUIT (or --leave-pods-running) exits
    /// leaving them running for the next start to adopt.
    Agent(AgentArgs),
    /// Run an API server without pods, on etcd: several servers on one etcd cluster each serve
    /// the whole API, and the control loops (scheduler, node lifecycle, endpoints, namespaces)
    /// run on one elected leader at a time.
    ///
    /// Writes DATA_DIR/kubeconfig (administrator) and DATA_DIR/join.kubeconfig (for `podvisor
    /// agent --kubeconfig`) once the API answers. SIGINT or SIGTERM hands leadership over and
    /// stops the server.
    Server(ServerArgs),
}

/// The flags of `podvisor agent`.
#[derive(Debug, clap::Args, PartialEq, Eq)]
struct AgentArgs {
    /// On SIGINT or SIGTERM, exit leaving every pod running under its monitor, for the next
    /// node process started with the same data directory to adopt (an upgrade; a service
    /// manager's restart, with systemd's KillMode=process). SIGQUIT always does this.
    #[arg(long)]
    leave_pods_running: bool,

    /// The kubeconfig of the API server to join (a server's DATA_DIR/join.kubeconfig, or a
    /// node's DATA_DIR/kubeconfig).
    #[arg(long, value_name = "FILE", value_parser = existing_path)]
    kubeconfig: PathBuf,
    /// Where the agent keeps its state and container logs.
    #[arg(long, value_name = "DIR", default_value = "./.podvisor-agent", value_parser = non_empty_path)]
    data_dir: PathBuf,
    /// The Node's name [default: the host name].
    #[arg(long, value_name = "NAME", value_parser = non_empty)]
    node_name: Option<String>,
    /// The address the Node reports as its InternalIP [default: the host's address].
    #[arg(long, value_name = "IP", value_parser = ip_address)]
    node_ip: Option<String>,
    /// The agent's pod network, registered as its Node's spec.podCIDR; the agent's bridge
    /// takes its first address [default: the /24 the control plane's node IPAM gives the Node,
    /// awaited for up to 60 s after registering].
    #[arg(long, value_name = "CIDR", value_parser = pod_cidr)]
    pod_cidr: Option<String>,
    /// Run every pod in the agent's network, without pod sandboxes.
    #[arg(long)]
    host_network: bool,
    /// The pods this node takes, as the kubelet's --max-pods: its Node's `pods` capacity, which
    /// the scheduler counts against. Pods with a network of their own also need an address
    /// each in the pod CIDR (a /24 holds 253) and a port each on the bridge (at most 1,023).
    #[arg(long, value_name = "N", default_value_t = podvisor_node::DEFAULT_MAX_PODS, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_pods: u32,
    /// The cgroup directory of the agent's containers [default: podvisor-NODE_NAME, so one
    /// agent never cleans up another's pods].
    #[arg(long, value_name = "NAME", value_parser = cgroup_name)]
    cgroup_parent: Option<String>,
    /// The pod network's bridge. Two agents in one network namespace need different ones.
    #[arg(long, value_name = "NAME", default_value = "podvisor0", value_parser = interface_name)]
    bridge: String,
    /// The port of the agent's kubelet endpoint on its --node-ip, where the API servers read
    /// its pods' logs (`kubectl logs`); 0 picks a free one (agents sharing one address).
    #[arg(long, value_name = "PORT", default_value_t = 10250)]
    kubelet_port: u16,
    /// How the agent shows what happens [default: table on a terminal, else lines].
    #[arg(long, value_name = "MODE")]
    output: Option<Output>,
}

/// The flags of `podvisor node` (and `cargo xtask node`).
#[derive(Debug, clap::Args, PartialEq, Eq)]
struct NodeArgs {
    /// Where the node keeps its state and container logs.
    #[arg(long, value_name = "DIR", default_value = "./.podvisor", value_parser = non_empty_path)]
    data_dir: PathBuf,
    /// Serve the Kubernetes API on IP:PORT and write DATA_DIR/kubeconfig once it answers.
    /// Loopback is plain HTTP without authentication; any other address is HTTPS with a bearer
    /// token: a CA, serving certificate and token are made on first start in DATA_DIR/pki (keys
    /// and token mode 0600) and the kubeconfig carries the CA and token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6443", value_parser = listen_address)]
    listen: SocketAddr,
    /// Serve HTTPS with the bearer token on a loopback --listen address too.
    #[arg(long)]
    tls: bool,
    /// Follow the Pod manifests (*.yaml, *.yml, *.json) in DIR, like the kubelet's
    /// staticPodPath: added, changed and removed files are followed (the pods appear in the API,
    /// like mirror pods).
    #[arg(long, value_name = "DIR", value_parser = existing_dir)]
    manifests: Option<PathBuf>,
    /// Create the objects of a manifest file or directory through the API at start-up, like
    /// `kubectl create -f` (may be repeated).
    #[arg(short = 'f', long = "filename", value_name = "PATH", value_parser = existing_path)]
    apply: Vec<PathBuf>,
    /// The node's name [default: the host name].
    #[arg(long, value_name = "NAME", value_parser = non_empty)]
    node_name: Option<String>,
    /// The cluster's pod network: every Node without a spec.podCIDR (agents) gets the next
    /// free /24 of it, and nodes route each other's /24s through their InternalIPs (host-gw).
    #[arg(long, value_name = "CIDR", default_value = "10.88.0.0/16", value_parser = pod_cidr)]
    cluster_cidr: String,
    /// This node's own pod network; its bridge takes its first address [default: the first /24
    /// of --cluster-cidr].
    #[arg(long, value_name = "CIDR", value_parser = pod_cidr)]
    pod_cidr: Option<String>,
    /// The address the Node reports as its InternalIP, which agents route its pods through
    /// [default: the host's address].
    #[arg(long, value_name = "IP", value_parser = ip_address)]
    node_ip: Option<String>,
    /// Run every pod in the node's network, without pod sandboxes (what happens anyway when the
    /// node does not run as root).
    #[arg(long)]
    host_network: bool,
    /// The pods this node takes, as the kubelet's --max-pods: its Node's `pods` capacity, which
    /// the scheduler counts against. Pods with a network of their own also need an address
    /// each in the pod CIDR (a /24 holds 253) and a port each on the bridge (at most 1,023).
    #[arg(long, value_name = "N", default_value_t = podvisor_node::DEFAULT_MAX_PODS, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_pods: u32,
    /// The cgroup directory of the node's containers under each hierarchy. At start the node
    /// removes what an earlier run left there, so two nodes on one machine need different ones.
    #[arg(long, value_name = "NAME", default_value = "podvisor", value_parser = cgroup_name)]
    cgroup_parent: String,
    /// The pod network's bridge. Two nodes on one machine need different ones.
    #[arg(long, value_name = "NAME", default_value = "podvisor0", value_parser = interface_name)]
    bridge: String,
    /// How the node shows what happens [default: table on a terminal, else lines].
    #[arg(long, value_name = "MODE")]
    output: Option<Output>,
    /// On SIGINT or SIGTERM, exit leaving every pod running under its monitor, for the next
    /// node process started with the same data directory to adopt (an upgrade; a service
    /// manager's restart, with systemd's KillMode=process). SIGQUIT always does this.
    #[arg(long)]
    leave_pods_running: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The API server's budgets, shared by `podvisor node` and `podvisor server`.
#[derive(Debug, clap::Args, PartialEq, Eq)]
struct LimitArgs {
    /// API reads (GET, LIST) served at once; more get 429 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = podvisor_node::ApiLimits::default().max_requests_inflight, value_parser = positive)]
    max_requests_inflight: usize,
    /// API writes served at once; more get 429 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = podvisor_node::ApiLimits::default().max_mutating_requests_inflight, value_parser = positive)]
    max_mutating_requests_inflight: usize,
    /// API connections open at once; more are closed as soon as they are accepted.
    #[arg(long, value_name = "N", default_value_t = podvisor_node::ApiLimits::default().max_connections, value_parser = positive)]
    max_connections: usize,
}

impl LimitArgs {
    fn limits(&self) -> podvisor_node::ApiLimits {
        podvisor_node::ApiLimits {
            max_requests_inflight: self.max_requests_inflight,
            max_mutating_requests_inflight: self.max_mutating_requests_inflight,
            max_connections: self.max_connections,
            ..podvisor_node::ApiLimits::default()
        }
    }
}

/// The flags of `podvisor server`.
#[derive(Debug, clap::Args, PartialEq, Eq)]
struct ServerArgs {
    /// Where the server keeps its credentials and writes kubeconfig (administrator) and
    /// join.kubeconfig (agents).
    #[arg(long, value_name = "DIR", default_value = "./.podvisor-server", value_parser = non_empty_path)]
    data_dir: PathBuf,
    /// The etcd members to store the cluster in (comma-separated client URLs).
    #[arg(long, value_name = "URLS", required = true, value_delimiter = ',', value_parser = etcd_url)]
    etcd_servers: Vec<String>,
    /// Serve the Kubernetes API (HTTPS with bearer tokens) on IP:PORT.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6443", value_parser = listen_address)]
    listen: SocketAddr,
    /// The range Services' ClusterIPs come from; the same on every server of a cluster.
    #[arg(long, value_name = "CIDR", default_value = "10.96.0.0/16", value_parser = pod_cidr)]
    service_cidr: String,
    /// The cluster's pod network: every Node without a spec.podCIDR (agents started without
    /// --pod-cidr) gets the next free /24 of it.
    #[arg(long, value_name = "CIDR", default_value = "10.88.0.0/16", value_parser = pod_cidr)]
    cluster_cidr: String,
    /// How long a node may go without renewing its Lease before it is marked Unknown
    /// (kube-controller-manager's flag; 40s, 50s, 2m). Keep it well above the agents' 10 s
    /// renewal, or healthy nodes flap.
    #[arg(long, value_name = "DURATION", default_value = "50s", value_parser = duration)]
    node_monitor_grace_period: std::time::Duration,
    #[command(flatten)]
    limits: LimitArgs,
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// A live `kubectl get pods -w`-like table.
    Table,
    /// One line per change and per event.
    Lines,
    /// Nothing but errors.
    Quiet,
}

fn positive(value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "not a positive number".into())
}

fn cgroup_name(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err("not a cgroup directory name (letters, digits, '-', '_', '.')".into());
    }
    Ok(value.to_owned())
}

fn interface_name(value: &str) -> Result<String, String> {
    let valid = (1..=15).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err("not a network interface name (1 to 15 letters, digits, '-', '_', '.')".into());
    }
    Ok(value.to_owned())
}

fn non_empty(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(value.to_owned())
}

fn non_empty_path(value: &str) -> Result<PathBuf, String> {
    non_empty(value).map(PathBuf::from)
}

fn listen_address(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|e| format!("not an address of the form IP:PORT (e.g. 127.0.0.1:6443): {e}"))
}

fn existing_dir(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    if !path.is_dir() {
        return Err("not a directory".into());
    }
    Ok(path)
}

fn existing_path(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    if !path.exists() {
        return Err("no such file or directory".into());
    }
    Ok(path)
}

/// A duration as Kubernetes flags write them: whole seconds or minutes (`50s`, `2m`).
fn duration(value: &str) -> Result<std::time::Duration, String> {
    let invalid = || format!("`{value}` is not a duration like 50s or 2m");
    let (number, unit) = value.split_at(value.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?);
    let n: u64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(invalid)?,
        _ => return Err(invalid()),
    };
    if seconds == 0 {
        return Err(format!("`{value}` must be positive"));
    }
    Ok(std::time::Duration::from_secs(seconds))
}

fn etcd_url(value: &str) -> Result<String, String> {
    let rest = value
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{value}` is not an etcd client URL (http://HOST:PORT)"))?;
    if rest.is_empty() || rest.contains('/') && !rest.ends_with('/') {
        return Err(format!("`{value}` is not an etcd client URL (http://HOST:PORT)"));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

fn ip_address(value: &str) -> Result<String, String> {
    value
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|e| format!("not an IP address: {e}"))
}

fn pod_cidr(value: &str) -> Result<String, String> {
    if podvisor_core::net::Ipv4Cidr::parse(value).is_err() {
        return Err("not an IPv4 CIDR with a /8 to /30 prefix".into());
    }
    Ok(value.to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Node(args) => node(args),
        Command::Agent(args) => agent(args),
        Command::Server(args) => server(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

impl NodeArgs {
    fn config(&self) -> NodeConfig {
        let mut config = NodeConfig::new(&self.data_dir);
        config.manifests.clone_from(&self.manifests);
        if let Some(name) = &self.node_name {
            config.node_name.clone_from(name);
        }
        config.cluster_cidr = Some(self.cluster_cidr.clone());
        config.pod_cidr.clone_from(&self.pod_cidr);
        config.node_ip.clone_from(&self.node_ip);
        config.host_network_only = self.host_network;
        config.max_pods = self.max_pods;
        config.cgroup_parent.clone_from(&self.cgroup_parent);
        config.bridge_name.clone_from(&self.bridge);
        config.listen = Some(self.listen);
        config.tls = self.tls;
        config.apply.clone_from(&self.apply);
        config.api_limits = self.limits.limits();
        config.output = output_mode(self.output);
        config
    }
}

fn output_mode(output: Option<Output>) -> OutputMode {
    match output {
        Some(Output::Table) => OutputMode::Table,
        Some(Output::Lines) => OutputMode::Lines,
        Some(Output::Quiet) => OutputMode::Quiet,
        None if std::io::stdout().is_terminal() => OutputMode::Table,
        None => OutputMode::Lines,
    }
}

impl AgentArgs {
    fn config(&self) -> NodeConfig {
        let mut config = NodeConfig::new(&self.data_dir);
        if let Some(name) = &self.node_name {
            config.node_name.clone_from(name);
        }
        config.join = Some(self.kubeconfig.clone());
        config.node_ip.clone_from(&self.node_ip);
        config.pod_cidr.clone_from(&self.pod_cidr);
        config.host_network_only = self.host_network;
        config.max_pods = self.max_pods;
        config.cgroup_parent = match &self.cgroup_parent {
            Some(parent) => parent.clone(),
            None => format!("podvisor-{}", config.node_name),
        };
        config.bridge_name.clone_from(&self.bridge);
        config.kubelet_port = self.kubelet_port;
        config.output = output_mode(self.output);
        config
    }
}

/// `podvisor agent`: runs until SIGINT or SIGTERM, then stops every pod gracefully.
fn agent(args: AgentArgs) -> Result<()> {
    let config = args.config();
    run(config, args.leave_pods_running, |capabilities| {
        format!(
            "podvisor agent: root={} namespaces={} cgroups={:?} api from {}",
            capabilities.root,
            capabilities.namespaces,
            capabilities.cgroup,
            args.kubeconfig.display()
        )
    })
}

/// `podvisor node`: runs until SIGINT or SIGTERM, then stops every pod gracefully.
fn node(args: NodeArgs) -> Result<()> {
    let config = args.config();
    let scheme = if args.tls || !args.listen.ip().is_loopback() {
        "https"
    } else {
        "http"
    };
    run(config, args.leave_pods_running, |capabilities| {
        format!(
            "podvisor node: root={} namespaces={} cgroups={:?} api={scheme}://{}",
            capabilities.root, capabilities.namespaces, capabilities.cgroup, args.listen
        )
    })
}

/// `podvisor server`: serves until SIGINT or SIGTERM.
fn server(args: ServerArgs) -> Result<()> {
    let mut config = podvisor_node::server::ServerConfig::new(&args.data_dir, args.listen);
    config.service_cidr.clone_from(&args.service_cidr);
    config.cluster_cidr.clone_from(&args.cluster_cidr);
    config.api_limits = args.limits.limits();
    config.node_lifecycle.grace = args.node_monitor_grace_period;
    config.node_lifecycle.monitor_period = config
        .node_lifecycle
        .monitor_period
        .min(args.node_monitor_grace_period / 2);
    let runtime = async_runtime()?;
    runtime.block_on(async move {
        let etcd = podvisor_store::EtcdStoreConfig {
            endpoints: args.etcd_servers.clone(),
            ..podvisor_store::EtcdStoreConfig::default()
        };
        let store = podvisor_store::EtcdStore::connect(etcd)
            .await
            .context("cannot connect to etcd")?;
        let kubeconfig = args.data_dir.join("kubeconfig");
        let join = args.data_dir.join("join.kubeconfig");
        podvisor_node::server::run(config, std::sync::Arc::new(store), shutdown_signal(), |url| {
            eprintln!(
                "podvisor server: API on {url}; KUBECONFIG={}; agents join with {}",
                kubeconfig.display(),
                join.display()
            );
        })
        .await
        .context("the server failed")
    })
}

/// Logging to stderr (RUST_LOG, default `warn`) and a multi-threaded tokio runtime.
fn async_runtime() -> Result<tokio::runtime::Runtime> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Builds and runs a node with `config` until SIGINT, SIGTERM or SIGQUIT, after saying
/// `banner`.
fn run(
    config: NodeConfig,
    leave_pods_running: bool,
    banner: impl FnOnce(&podvisor_node::Capabilities) -> String,
) -> Result<()> {
    let runtime = async_runtime()?;
    runtime.block_on(async move {
        let (node, capabilities) = podvisor_node::build(config)
            .await
            .context("cannot start the node")?;
        eprintln!("{}", banner(&capabilities));
        node.run_until(node_stop(leave_pods_running)).await;
        Ok(())
    })
}

/// How the node stops: on SIGQUIT it leaves its pods running; on SIGINT or SIGTERM it stops
/// them, unless `leave_pods_running`.
async fn node_stop(leave_pods_running: bool) -> podvisor_node::Shutdown {
    use podvisor_node::Shutdown;
    use tokio::signal::unix::{SignalKind, signal};
    let quit = async {
        match signal(SignalKind::quit()) {
            Ok(mut quit) => {
                quit.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = shutdown_signal() => if leave_pods_running { Shutdown::LeavePods } else { Shutdown::StopPods },
        () = quit => Shutdown::LeavePods,
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_args(args: &[&str]) -> Result<NodeArgs, clap::Error> {
        let cli = Cli::try_parse_from(["podvisor", "node"].iter().chain(args))?;
        match cli.command {
            Command::Node(node) => Ok(node),
            other => panic!("not a node command: {other:?}"),
        }
    }

    fn agent_args(args: &[&str]) -> Result<AgentArgs, clap::Error> {
        let cli = Cli::try_parse_from(["podvisor", "agent"].iter().chain(args))?;
        match cli.command {
            Command::Agent(agent) => Ok(agent),
            other => panic!("not an agent command: {other:?}"),
        }
    }

    #[test]
    fn agent_flags_make_a_joining_node_with_its_own_cgroup_parent() {
        let kubeconfig = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let args = agent_args(&[
            "--kubeconfig",
            kubeconfig,
            "--data-dir",
            "/tmp/agent-1",
            "--node-name",
            "agent-1",
            "--node-ip",
            "10.0.0.7",
            "--pod-cidr",
            "10.77.0.0/16",
            "--max-pods=500",
        ])
        .unwrap();
        let config = args.config();
        assert_eq!(config.max_pods, 500);
        assert_eq!(config.join.as_deref(), Some(std::path::Path::new(kubeconfig)));
        assert_eq!(config.listen, None, "an agent serves no API");
        assert_eq!(config.node_name, "agent-1");
        assert_eq!(config.node_ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(config.cgroup_parent, "podvisor-agent-1");
        assert_eq!(config.pod_cidr.as_deref(), Some("10.77.0.0/16"));
        let from_api = agent_args(&["--kubeconfig", kubeconfig]).unwrap().config();
        assert_eq!(from_api.pod_cidr, None, "the pod CIDR comes from the API");
        for (args, expected) in [
            (&[][..], "--kubeconfig <FILE>"),
            (&["--kubeconfig", "/does/not/exist"][..], "--kubeconfig <FILE>"),
            (
                &["--kubeconfig", kubeconfig, "--node-ip", "ten"][..],
                "--node-ip <IP>",
            ),
            (
                &["--kubeconfig", kubeconfig, "--max-pods", "0"][..],
                "--max-pods <N>",
            ),
        ] {
            let error = agent_args(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(error.to_string().contains(expected), "{args:?}: {error}");
        }
    }

    #[test]
    fn defaults() {
        let args = node_args(&[]).unwrap();
        assert_eq!(args.data_dir, PathBuf::from("./.podvisor"));
        assert_eq!(args.listen, "127.0.0.1:6443".parse().unwrap());
        assert_eq!(args.manifests, None);
        assert_eq!(args.cluster_cidr, "10.88.0.0/16");
        assert_eq!(args.pod_cidr, None);
        assert!(!args.tls && !args.host_network);
        let config = args.config();
        assert_eq!(config.max_pods, 110, "the kubelet's default --max-pods");
        assert_eq!(config.cluster_cidr.as_deref(), Some("10.88.0.0/16"));
        assert_eq!(
            config.pod_cidr, None,
            "the node takes the first /24 of the cluster CIDR"
        );
        let given = node_args(&["--cluster-cidr", "10.50.0.0/16", "--pod-cidr", "10.50.7.0/24"])
            .unwrap()
            .config();
        assert_eq!(
            (given.cluster_cidr.as_deref(), given.pod_cidr.as_deref()),
            (Some("10.50.0.0/16"), Some("10.50.7.0/24"))
        );
    }

    #[test]
    fn flags_are_read() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let args = node_args(&[
            "--data-dir",
            "/tmp/pv",
            "--listen=[::1]:7000",
            "--manifests",
            dir,
            "--tls",
            "-f",
            dir,
            "--filename",
            dir,
            "--output",
            "quiet",
            "--max-requests-inflight=10",
            "--max-mutating-requests-inflight",
            "5",
            "--max-connections",
            "64",
            "--cgroup-parent",
            "podvisor-a",
            "--bridge",
            "pva0",
            "--max-pods",
            "1000",
        ])
        .unwrap();
        assert!(args.tls);
        assert_eq!(args.data_dir, PathBuf::from("/tmp/pv"));
        assert_eq!(args.listen, "[::1]:7000".parse().unwrap());
        assert_eq!(args.manifests, Some(PathBuf::from(dir)));
        assert_eq!(args.apply.len(), 2);
        let config = args.config();
        assert_eq!(config.output, OutputMode::Quiet);
        assert_eq!(config.listen, Some("[::1]:7000".parse().unwrap()));
        assert_eq!(
            (config.cgroup_parent.as_str(), config.bridge_name.as_str()),
            ("podvisor-a", "pva0")
        );
        assert_eq!(config.max_pods, 1000);
        let limits = &config.api_limits;
        assert_eq!(
            (
                limits.max_requests_inflight,
                limits.max_mutating_requests_inflight,
                limits.max_connections
            ),
            (10, 5, 64)
        );
    }

    fn server_args(args: &[&str]) -> Result<ServerArgs, clap::Error> {
        let mut full = vec!["podvisor", "server"];
        full.extend_from_slice(args);
        match Cli::try_parse_from(full)?.command {
            Command::Server(args) => Ok(args),
            other => panic!("not a server command: {other:?}"),
        }
    }

    #[test]
    fn server_flags_are_read_and_etcd_is_required() {
        let args = server_args(&[
            "--etcd-servers",
            "http://127.0.0.1:2379,http://127.0.0.1:2479/",
            "--listen",
            "10.0.0.1:6443",
            "--data-dir",
            "/tmp/s",
            "--max-connections",
            "64",
        ])
        .unwrap();
        assert_eq!(
            args.etcd_servers,
            ["http://127.0.0.1:2379", "http://127.0.0.1:2479"]
        );
        assert_eq!(args.listen, "10.0.0.1:6443".parse().unwrap());
        assert_eq!(args.service_cidr, "10.96.0.0/16");
        assert_eq!(args.limits.limits().max_connections, 64);
        assert_eq!(args.node_monitor_grace_period, std::time::Duration::from_secs(50));
        let grace = server_args(&[
            "--etcd-servers",
            "http://e:1",
            "--node-monitor-grace-period",
            "2m",
        ])
        .unwrap();
        assert_eq!(
            grace.node_monitor_grace_period,
            std::time::Duration::from_secs(120)
        );
        for bad in ["50", "0s", "5h", "s"] {
            let e = server_args(&["--etcd-servers", "http://e:1", "--node-monitor-grace-period", bad])
                .unwrap_err();
            assert!(
                e.to_string().contains("--node-monitor-grace-period <DURATION>"),
                "{bad}: {e}"
            );
        }
        let missing = server_args(&[]).unwrap_err().to_string();
        assert!(missing.contains("--etcd-servers <URLS>"), "{missing}");
        let bad = server_args(&["--etcd-servers", "127.0.0.1:2379"])
            .unwrap_err()
            .to_string();
        assert!(bad.contains("is not an etcd client URL"), "{bad}");
    }

    #[test]
    fn errors_name_the_flag() {
        for (args, expected) in [
            (&["--listen", "localhost"][..], "--listen <ADDR>"),
            (&["--manifests", "/does/not/exist"][..], "--manifests <DIR>"),
            (&["--data-dir"][..], "--data-dir <DIR>"),
            (&["--bogus"][..], "--bogus"),
            (&["--pod-cidr", "10.88.0.0"][..], "--pod-cidr <CIDR>"),
            (&["--cluster-cidr", "10.88.0.0/31"][..], "--cluster-cidr <CIDR>"),
            (&["--node-ip", "ten"][..], "--node-ip <IP>"),
            (&["--output", "fancy"][..], "--output <MODE>"),
            (&["-f", "/does/not/exist"][..], "--filename <PATH>"),
            (&["--max-connections", "0"][..], "--max-connections <N>"),
            (&["--cgroup-parent", "../escape"][..], "--cgroup-parent <NAME>"),
            (&["--bridge", "a-name-longer-than-15"][..], "--bridge <NAME>"),
            (
                &["--max-requests-inflight", "many"][..],
                "--max-requests-inflight <N>",
            ),
        ] {
            let error = node_args(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}: usage errors exit with 2");
            let text = error.to_string();
            assert!(text.contains(expected), "{args:?}: {text}");
        }
    }

    #[test]
    fn help_and_version_are_recognised() {
        for flag in ["--help", "-h"] {
            let error = node_args(&[flag]).unwrap_err();
            assert_eq!(error.kind(), clap::error::ErrorKind::DisplayHelp);
        }
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
