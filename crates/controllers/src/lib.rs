//! The control loops of podvisor's control plane, as clients of the Kubernetes API on
//! kube-runtime: they watch through reflectors and write through a [`kube::Client`], so the same
//! code runs in the node's process (over the API server's in-process handler,
//! `podvisor_apiserver::ApiServer::handler`) and against a remote API server over HTTPS.
//!
//! - [`endpoints`]: Endpoints and EndpointSlices follow Services and pod readiness (the
//!   endpoint and endpointslice controllers of kube-controller-manager).
//! - [`kubernetes_service`]: the `default/kubernetes` Service and its endpoints point at the API
//!   server (kube-apiserver's own controller).
//! - [`namespaces`]: a deleted namespace's contents are deleted, then the namespace is
//!   finalized (the namespace controller of kube-controller-manager).
//! - [`node_lifecycle`]: a node that stops renewing its Lease turns `Unknown` and is tainted,
//!   its pods turn not ready and are evicted once their tolerations run out.
//! - [`node_ipam`]: every Node gets a /24 of the cluster CIDR as its `spec.podCIDR` (the range
//!   allocator of kube-controller-manager's node IPAM controller).
//! - [`apply`]: the objects of manifest files created through the API (`-f`), like
//!   `kubectl create -f`.
//! - [`leader`]: leader election on a Lease, so that with several API servers the loops run
//!   in one process at a time.
//! - [`workloads`]: ReplicaSets, Deployments, the garbage collector and the `default`
//!   ServiceAccounts, on kube-runtime's `Controller` and the pure `podvisor-workloads`.
//! - [`scheduler`]: binds pending pods to nodes as kube-scheduler's default profile does
//!   (filters, least-allocated scoring, `Unschedulable` with kube-scheduler's message).
//!
//! Every loop is level-triggered: an event only says *what* to look at again, the decision is
//! made from the reflectors' whole state, and an object is written only when it differs from
//! what is stored. [`Controllers::spawn`] starts them on a task tracker and stops them with a
//! cancellation token.
#![forbid(unsafe_code)]

pub mod apply;
pub mod endpoints;
mod events;
pub mod kubernetes_service;
pub mod leader;
pub mod namespaces;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod scheduler;
mod watch;
pub mod workloads;

/// The integration tests' API server (in-process) and bounded wait, for unit tests too.
#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod test_support;

use std::net::{Ipv4Addr, SocketAddr};

use futures_util::FutureExt;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the control loops need to know beyond the API.
#[derive(Clone, Debug, Default)]
pub struct ControllersConfig {
    /// The `kubernetes` Service's ClusterIP (the service CIDR's first address) and where the
    /// API server listens; `None` keeps no `kubernetes` Service.
    pub kubernetes_service: Option<(Ipv4Addr, SocketAddr)>,
    /// The node lifecycle controller's timing.
    pub node_lifecycle: node_lifecycle::NodeLifecycleConfig,
    /// Run the loops only while holding their Leases (several API servers); the config's
    /// `name` is replaced by each Lease's. `None`: run them at once (the all-in-one node).
    pub leader_election: Option<leader::LeaderElectionConfig>,
    /// The cluster CIDR nodes get their `spec.podCIDR` (a /24) from (`--cluster-cidr`);
    /// `None` allocates none.
    pub cluster_cidr: Option<podvisor_core::net::Ipv4Cidr>,
}

/// The Lease of every control loop but the scheduler (kube-controller-manager's).
pub const CONTROLLER_MANAGER_LEASE: &str = "kube-controller-manager";
/// The scheduler's Lease (kube-scheduler's).
pub const SCHEDULER_LEASE: &str = "kube-scheduler";

/// One watch and cache of every pod for the loops that read pods (each alone keeps its own).
fn pods_watch(client: &Client) -> (PodWatch, impl Future<Output = ()> + Send + 'static) {
    watch::shared(
        kube::Api::<k8s_openapi::api::core::v1::Pod>::all(client.clone()),
        kube::runtime::watcher::Config::default(),
    )
}

type PodWatch = watch::Shared<k8s_openapi::api::core::v1::Pod>;

/// Runs kube-controller-manager's loops (and the `kubernetes` Service's) until `token` is
/// cancelled, on `pods`, or on a pod watch of their own.
async fn run_manager(
    client: Client,
    config: ControllersConfig,
    pods: Option<PodWatch>,
    token: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let run = |tracker: &TaskTracker, work| {
        tracker.spawn(token.clone().run_until_cancelled_owned(work));
    };
    let pods = pods.unwrap_or_else(|| {
        let (pods, watch) = pods_watch(&client);
        run(&tracker, watch.boxed());
        pods
    });
    run(
        &tracker,
        endpoints::run_shared(client.clone(), pods.clone()).boxed(),
    );
    run(&tracker, namespaces::run(client.clone()).boxed());
    run(
        &tracker,
        workloads::run_shared(client.clone(), pods.clone()).boxed(),
    );
    run(
        &tracker,
        node_lifecycle::run_shared(client.clone(), config.node_lifecycle.clone(), pods).boxed(),
    );
    if let Some(cluster) = config.cluster_cidr {
        run(&tracker, node_ipam::run(client.clone(), cluster).boxed());
    }
    if let Some((cluster_ip, api)) = config.kubernetes_service {
        run(
            &tracker,
            kubernetes_service::run(client.clone(), cluster_ip, api).boxed(),
        );
    }
    tracker.close();
    tracker.wait().await;
}

/// Runs the scheduler until `token` is cancelled, on `pods` or on a watch of its own.
async fn run_scheduler(client: Client, pods: Option<PodWatch>, token: CancellationToken) {
    match pods {
        Some(pods) => {
            token
                .run_until_cancelled_owned(scheduler::run_shared(client, pods))
                .await;
        }
        None => {
            token.run_until_cancelled_owned(scheduler::run(client)).await;
        }
    }
}

/// The running control loops.
#[derive(Debug)]
pub struct Controllers {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Controllers {
    /// Starts every control loop `config` asks for on `client`. Must be called inside a tokio
    /// runtime.
    ///
    /// With [`ControllersConfig::leader_election`] the loops run only while this process holds
    /// their Lease: the scheduler under `kube-system/kube-scheduler`, every other loop under
    /// `kube-system/kube-controller-manager`, as upstream's two components do.
    pub fn spawn(client: &Client, config: &ControllersConfig) -> Controllers {
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        match &config.leader_election {
            Some(election) => {
                let (c, cfg) = (client.clone(), config.clone());
                tracker.spawn(leader::run(
                    client.clone(),
                    election.named(CONTROLLER_MANAGER_LEASE),
                    token.clone(),
                    move |leading| run_manager(c.clone(), cfg.clone(), None, leading),
                ));
                let c = client.clone();
                tracker.spawn(leader::run(
                    client.clone(),
                    election.named(SCHEDULER_LEASE),
                    token.clone(),
                    move |leading| run_scheduler(c.clone(), None, leading),
                ));
            }
            None => {
                // One process runs every loop: the scheduler shares the manager's pod watch.
                let (pods, watch) = pods_watch(client);
                tracker.spawn(token.clone().run_until_cancelled_owned(watch));
                tracker.spawn(run_manager(
                    client.clone(),
                    config.clone(),
                    Some(pods.clone()),
                    token.clone(),
                ));
                tracker.spawn(run_scheduler(client.clone(), Some(pods), token.clone()));
            }
        }
        tracker.close();
        Controllers { token, tracker }
    }

    /// Stops every loop and waits until they are gone (nothing of theirs is left running).
    pub async fn stop(self) {
        self.token.cancel();
        self.tracker.wait().await;
    }
}
