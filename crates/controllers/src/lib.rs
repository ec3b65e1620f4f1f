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
//! - [`apply`]: the objects of manifest files created through the API (`-f`), like
//!   `kubectl create -f`.
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
pub mod namespaces;
pub mod node_lifecycle;
pub mod scheduler;
mod watch;

use std::net::{Ipv4Addr, SocketAddr};

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
    pub fn spawn(client: &Client, config: &ControllersConfig) -> Controllers {
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(
            token
                .clone()
                .run_until_cancelled_owned(endpoints::run(client.clone())),
        );
        tracker.spawn(
            token
                .clone()
                .run_until_cancelled_owned(namespaces::run(client.clone())),
        );
        if let Some((cluster_ip, api)) = config.kubernetes_service {
            tracker.spawn(token.clone().run_until_cancelled_owned(kubernetes_service::run(
                client.clone(),
                cluster_ip,
                api,
            )));
        }
        tracker.spawn(
            token
                .clone()
                .run_until_cancelled_owned(scheduler::run(client.clone())),
        );
        tracker.close();
        Controllers { token, tracker }
    }

    /// Stops every loop and waits until they are gone (nothing of theirs is left running).
    pub async fn stop(self) {
        self.token.cancel();
        self.tracker.wait().await;
    }
}
