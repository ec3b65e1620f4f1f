//! A whole node in-process, as `podvisor node` runs it (`podvisor_node::build` and `Node::run`):
//! the API server on its redb store, listening on a loopback port, the control loops (workload
//! controllers and scheduler included), the kubelet's side of the API and the pod supervisor
//! on the real runtime. The harness talks to it over HTTP through the kubeconfig the node
//! writes, as kubectl would.
//!
//! Everything the node makes on the machine has a name of its own (cgroup parent, bridge,
//! nftables table, pod CIDR), so it does not touch another node's; [`ApiNode::shutdown`] stops
//! it and waits until it has removed them. Not here: waiting for particular objects (the
//! benchmarks do that with their own watches).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::Api;
use podvisor_core::corev1::{Node, ServiceAccount};
use podvisor_node::{NodeConfig, OutputMode, Shutdown};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// How long the node may take to serve its API, register and turn Ready.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long the node may take to stop every pod and itself.
const STOP_LIMIT: Duration = Duration::from_secs(90);

/// A node running in this process until [`ApiNode::shutdown`] (or [`ApiNode::leave`]).
pub(crate) struct ApiNode {
    /// A client of its API over loopback HTTP (the kubeconfig the node wrote).
    pub(crate) client: kube::Client,
    /// Its Node's name (`spec.nodeName` of the pods it runs).
    pub(crate) name: String,
    stop: oneshot::Sender<Shutdown>,
    task: JoinHandle<()>,
    place: Place,
}

/// Where a node runs: its data directory and the number its network and cgroup names come
/// from; a node started again on the same place takes over what the previous one left.
pub(crate) struct Place {
    n: u32,
    data: tempfile::TempDir,
}

impl Place {
    /// The number its names come from.
    pub(crate) fn number(&self) -> u32 {
        self.n
    }

    /// The data directory's path (removed with the place).
    pub(crate) fn path(&self) -> &std::path::Path {
        self.data.path()
    }

    /// The configuration of a node on this place: names of its own for everything it makes on
    /// the machine, room for `max_pods` pods ([`NodeConfig::max_pods`]), quiet.
    pub(crate) fn config(&self, max_pods: u32) -> NodeConfig {
        node_config(self.data.path(), self.n, max_pods)
    }

    pub(crate) fn new() -> Result<Place> {
        Ok(Place {
            n: (std::process::id() % 200) * 5 + NEXT.fetch_add(1, Ordering::SeqCst),
            data: tempfile::Builder::new()
                .prefix("podvisor-bench-node-")
                .tempdir()
                .context("creating the data directory")?,
        })
    }
}

impl ApiNode {
    /// Starts a node (pods get sandboxes when this process is root) and waits until its Node is
    /// Ready and the `default` namespace has its `default` ServiceAccount, so pods can be
    /// created and scheduled.
    pub(crate) async fn start() -> Result<ApiNode> {
        ApiNode::start_on(Place::new()?).await
    }

    /// [`start`](Self::start) on `place` (again, after [`leave`](Self::leave)).
    pub(crate) async fn start_on(place: Place) -> Result<ApiNode> {
        let config = place.config(podvisor_node::DEFAULT_MAX_PODS);
        let name = config.node_name.clone();
        let kubeconfig = config.data_dir.join("kubeconfig");
        // A previous node on this place wrote one for its own (ephemeral) port.
        let _ = std::fs::remove_file(&kubeconfig);
        let (node, _) = podvisor_node::build(config).await.context("building the node")?;
        let (stop, stopped) = oneshot::channel::<Shutdown>();
        let task = tokio::spawn(node.run_until(async move { stopped.await.unwrap_or(Shutdown::StopPods) }));
        let node = async { connect(&kubeconfig, &name).await }.await;
        let node = ApiNode {
            client: match node {
                Ok(client) => client,
                Err(e) => {
                    let _ = stop.send(Shutdown::StopPods);
                    let _ = tokio::time::timeout(STOP_LIMIT, task).await;
                    return Err(e);
                }
            },
            name,
            stop,
            task,
            place,
        };
        Ok(node)
    }

    /// Stops the node, leaving its pods running for the next node on its place to adopt.
    pub(crate) async fn leave(self) -> Result<Place> {
        let _ = self.stop.send(Shutdown::LeavePods);
        match tokio::time::timeout(STOP_LIMIT, self.task).await {
            Ok(Ok(())) => Ok(self.place),
            Ok(Err(e)) => bail!("the node's task failed: {e}"),
            Err(_) => bail!("the node did not leave within {STOP_LIMIT:?}"),
        }
    }

    /// Stops the node (its pods first) and waits until it is gone.
    pub(crate) async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(Shutdown::StopPods);
        match tokio::time::timeout(STOP_LIMIT, self.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => bail!("the node's task failed: {e}"),
            Err(_) => bail!("the node did not stop within {STOP_LIMIT:?}"),
        }
    }
}

/// Waits until the node writes `kubeconfig`, then until its Node `name` is Ready with a
/// `default` ServiceAccount ([`wait_ready`]), within [`START_LIMIT`]; returns a client of it.
pub(crate) async fn connect(kubeconfig: &std::path::Path, name: &str) -> Result<kube::Client> {
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    while !kubeconfig.exists() {
        if tokio::time::Instant::now() >= deadline {
            bail!("the node wrote no kubeconfig within {START_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = podvisor_node::api::join(kubeconfig)
        .await
        .context("a client of the node's API")?;
    wait_ready(&client, name, deadline).await?;
    Ok(client)
}

/// The node on data directory `data` with number `n` (see [`Place`]).
pub(crate) fn node_config(data: &std::path::Path, n: u32, max_pods: u32) -> NodeConfig {
    let mut config = NodeConfig::new(data.join("node"));
    config.node_name = NODE_NAME.to_owned();
    config.output = OutputMode::Quiet;
    config.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    // A /22 of its own beside `pods::PodNode`'s 10.80-89 ranges: room for 1,021 pods.
    config.pod_cidr = Some(format!("10.{}.{}.0/22", 90 + (n / 60) % 5, (n % 60) * 4));
    config.cluster_cidr = None;
    config.host_network_only = !podvisor_node::is_root();
    config.cgroup_parent = format!("podvisor-bench-node-{n}");
    config.bridge_name = format!("pvn{}", n % 1000);
    config.services.nft_table = format!("podvisor_bench_{n}");
    config.max_pods = max_pods;
    config
}

/// The benchmark nodes' name.
pub(crate) const NODE_NAME: &str = "bench-node";

/// Waits until the Node `name` is Ready and `default/default` ServiceAccount exists (pods are
/// admitted only with their ServiceAccount).
async fn wait_ready(client: &kube::Client, name: &str, deadline: tokio::time::Instant) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    loop {
        let ready = nodes.get_opt(name).await.ok().flatten().is_some_and(|node| {
            node.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        let account = accounts.get_opt("default").await.ok().flatten().is_some();
        if ready && account {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the node was not Ready with a default ServiceAccount in time (Ready: {ready})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
