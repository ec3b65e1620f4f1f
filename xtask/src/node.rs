//! `cargo xtask node`: run a podvisor node in this process.
//!
//! This module only turns flags into a [`podvisor_node::NodeConfig`], sets up logging and
//! signals, and calls the node library; the wiring lives in `podvisor-node`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use podvisor_node::{NodeConfig, OutputMode};

use crate::flags::{Arg, Parser};

const HELP: &str = "\
cargo xtask node: run a podvisor node: Pods as supervised host processes

USAGE:
    cargo xtask node [OPTIONS]

OPTIONS:
    --data-dir DIR      Where the node keeps its state and container logs [default: ./.podvisor]
    --manifests DIR     Follow the Pod manifests (*.yaml, *.yml, *.json) in DIR, like the
                        kubelet's staticPodPath: added, changed and removed files are followed
                        (the pods appear in the API, like mirror pods)
    --listen ADDR       Serve the Kubernetes API on IP:PORT and write DATA_DIR/kubeconfig once
                        it answers [default: 127.0.0.1:6443]. Loopback is plain HTTP without
                        authentication; any other address is HTTPS with a bearer token: a CA,
                        serving certificate and token are made on first start in DATA_DIR/pki
                        (keys and token mode 0600) and the kubeconfig carries the CA and token
    --tls               Serve HTTPS with the bearer token on a loopback --listen address too
    -f, --filename PATH Create the objects of a manifest file or directory through the API at
                        start-up, like `kubectl create -f` (may be repeated)
    --node-name NAME    The node's name [default: the host name]
    --pod-cidr CIDR     The pod network; the bridge podvisor0 takes its first address
                        [default: 10.88.0.0/16]
    --host-network      Run every pod in the node's network, without pod sandboxes (what
                        happens anyway when the node does not run as root)
    --output MODE       table (a live `kubectl get pods -w`-like table), lines (one line per
                        change and per event) or quiet [default: table on a terminal, else lines]
    --max-requests-inflight N
                        API reads (GET, LIST) served at once; more get 429 [default: 400]
    --max-mutating-requests-inflight N
                        API writes served at once; more get 429 [default: 200]
    --max-connections N API connections open at once; more are closed [default: 1024]
    -h, --help          Print this message

Flags may also be written --flag=VALUE. Logs go to stderr; RUST_LOG sets their level
[default: warn]. SIGINT or SIGTERM terminates every pod gracefully (preStop hooks, grace
periods), then the node exits.

EXIT CODES:
    0   the node stopped after a signal
    1   the node could not start
    2   usage error
";

/// The node's flags, validated.
#[derive(Debug, PartialEq, Eq)]
struct NodeArgs {
    data_dir: PathBuf,
    listen: SocketAddr,
    tls: bool,
    manifests: Option<PathBuf>,
    node_name: Option<String>,
    pod_cidr: String,
    host_network: bool,
    output: Option<String>,
    apply: Vec<PathBuf>,
    max_requests_inflight: Option<usize>,
    max_mutating_requests_inflight: Option<usize>,
    max_connections: Option<usize>,
}

pub(crate) fn run(args: Vec<String>) -> Result<ExitCode> {
    let Some(node_args) = parse(args)? else {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    };
    let mut config = NodeConfig::new(&node_args.data_dir);
    config.manifests = node_args.manifests;
    if let Some(name) = node_args.node_name {
        config.node_name = name;
    }
    config.pod_cidr = node_args.pod_cidr;
    config.host_network_only = node_args.host_network;
    config.listen = Some(node_args.listen);
    config.tls = node_args.tls;
    config.apply = node_args.apply;
    if let Some(n) = node_args.max_requests_inflight {
        config.api_limits.max_requests_inflight = n;
    }
    if let Some(n) = node_args.max_mutating_requests_inflight {
        config.api_limits.max_mutating_requests_inflight = n;
    }
    if let Some(n) = node_args.max_connections {
        config.api_limits.max_connections = n;
    }
    config.output = match node_args.output.as_deref() {
        Some("table") => OutputMode::Table,
        Some("lines") => OutputMode::Lines,
        Some("quiet") => OutputMode::Quiet,
        _ if std::io::stdout().is_terminal() => OutputMode::Table,
        _ => OutputMode::Lines,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (node, capabilities) = podvisor_node::build(config)
            .await
            .context("cannot start the node")?;
        let scheme = if node_args.tls || !node_args.listen.ip().is_loopback() {
            "https"
        } else {
            "http"
        };
        eprintln!(
            "podvisor node: root={} namespaces={} cgroups={:?} api={scheme}://{}",
            capabilities.root, capabilities.namespaces, capabilities.cgroup, node_args.listen
        );
        node.run(shutdown_signal()).await;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
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

/// The validated flags, or `None` when `--help` was asked for.
fn parse(args: Vec<String>) -> Result<Option<NodeArgs>> {
    let mut parser = Parser::new(args, "cargo xtask node --help");
    let mut data_dir = PathBuf::from("./.podvisor");
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 6443));
    let mut manifests = None;
    let mut node_name = None;
    let mut pod_cidr = "10.88.0.0/16".to_owned();
    let mut host_network = false;
    let mut tls = false;
    let mut output = None;
    let mut apply = Vec::new();
    let (mut max_requests_inflight, mut max_mutating_requests_inflight, mut max_connections) =
        (None, None, None);
    while let Some(arg) = parser.next_arg()? {
        match arg {
            Arg::Flag(flag) => match flag.as_str() {
                "help" => return Ok(None),
                "data-dir" => {
                    let value = parser.value()?;
                    if value.is_empty() {
                        return Err(parser.error("`--data-dir` must not be empty").into());
                    }
                    data_dir = PathBuf::from(value);
                }
                "listen" => {
                    let value = parser.value()?;
                    listen = value.parse().map_err(|error| {
                        parser.error(format!(
                            "`--listen {value}` is not an address of the form IP:PORT \
                             (e.g. 127.0.0.1:6443): {error}"
                        ))
                    })?;
                }
                "manifests" => {
                    let value = PathBuf::from(parser.value()?);
                    if !value.is_dir() {
                        return Err(parser
                            .error(format!("`--manifests {}` is not a directory", value.display()))
                            .into());
                    }
                    manifests = Some(value);
                }
                "node-name" => {
                    let value = parser.value()?;
                    if value.is_empty() {
                        return Err(parser.error("`--node-name` must not be empty").into());
                    }
                    node_name = Some(value);
                }
                "pod-cidr" => {
                    let value = parser.value()?;
                    let valid = value.split_once('/').is_some_and(|(ip, len)| {
                        ip.parse::<std::net::Ipv4Addr>().is_ok()
                            && len.parse::<u8>().is_ok_and(|l| (8..=30).contains(&l))
                    });
                    if !valid {
                        return Err(parser
                            .error(format!(
                                "`--pod-cidr {value}` is not an IPv4 CIDR with a /8 to /30 prefix"
                            ))
                            .into());
                    }
                    pod_cidr = value;
                }
                "host-network" => host_network = true,
                "tls" => tls = true,
                "filename" => {
                    let value = PathBuf::from(parser.value()?);
                    if !value.exists() {
                        return Err(parser
                            .error(format!("`-f {}`: no such file or directory", value.display()))
                            .into());
                    }
                    apply.push(value);
                }
                "output" => {
                    let value = parser.value()?;
                    if !matches!(value.as_str(), "table" | "lines" | "quiet") {
                        return Err(parser
                            .error(format!("`--output {value}` must be one of table, lines, quiet"))
                            .into());
                    }
                    output = Some(value);
                }
                name @ ("max-requests-inflight" | "max-mutating-requests-inflight" | "max-connections") => {
                    let value = parser.value()?;
                    let n = value.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        parser.error(format!("`--{name} {value}` is not a positive number"))
                    })?;
                    match name {
                        "max-requests-inflight" => max_requests_inflight = Some(n),
                        "max-mutating-requests-inflight" => max_mutating_requests_inflight = Some(n),
                        _ => max_connections = Some(n),
                    }
                }
                _ => return Err(parser.unknown_flag().into()),
            },
            Arg::Positional(arg) => {
                return Err(parser.error(format!("unexpected argument `{arg}`")).into());
            }
        }
    }
    Ok(Some(NodeArgs {
        data_dir,
        listen,
        tls,
        manifests,
        node_name,
        pod_cidr,
        host_network,
        output,
        apply,
        max_requests_inflight,
        max_mutating_requests_inflight,
        max_connections,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Option<NodeArgs>> {
        parse(args.iter().map(|arg| (*arg).to_owned()).collect())
    }

    #[test]
    fn defaults() {
        let args = parse_strs(&[]).unwrap().unwrap();
        assert_eq!(args.data_dir, PathBuf::from("./.podvisor"));
        assert_eq!(args.listen, "127.0.0.1:6443".parse().unwrap());
        assert_eq!(args.manifests, None);
        assert!(!args.tls);
    }

    #[test]
    fn flags_are_read() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let args = parse_strs(&[
            "--data-dir",
            "/tmp/pv",
            "--listen=[::1]:7000",
            "--manifests",
            dir,
            "--tls",
            "--max-requests-inflight=10",
            "--max-mutating-requests-inflight",
            "5",
            "--max-connections",
            "64",
        ])
        .unwrap()
        .unwrap();
        assert!(args.tls);
        assert_eq!(
            (
                args.max_requests_inflight,
                args.max_mutating_requests_inflight,
                args.max_connections
            ),
            (Some(10), Some(5), Some(64))
        );
        assert_eq!(args.data_dir, PathBuf::from("/tmp/pv"));
        assert_eq!(args.listen, "[::1]:7000".parse().unwrap());
        assert_eq!(args.manifests, Some(PathBuf::from(dir)));
    }

    #[test]
    fn errors_name_the_flag() {
        for (args, expected) in [
            (&["--listen", "localhost"][..], "`--listen localhost`"),
            (
                &["--manifests", "/does/not/exist"][..],
                "`--manifests /does/not/exist`",
            ),
            (&["--data-dir"][..], "`--data-dir` needs a value"),
            (&["--bogus"][..], "unknown option `--bogus`"),
            (&["--pod-cidr", "10.88.0.0"][..], "`--pod-cidr 10.88.0.0`"),
            (&["--output", "fancy"][..], "`--output fancy`"),
            (&["--max-connections", "0"][..], "`--max-connections 0`"),
            (
                &["--max-requests-inflight", "many"][..],
                "`--max-requests-inflight many`",
            ),
        ] {
            let error = parse_strs(args).unwrap_err().to_string();
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }

    #[test]
    fn help_is_recognised() {
        assert_eq!(parse_strs(&["--help"]).unwrap(), None);
        assert_eq!(parse_strs(&["-h"]).unwrap(), None);
    }
}
