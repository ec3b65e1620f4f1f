//! The node as a member of a Kubernetes cluster: what a kubelet asks of and tells the API
//! server, through a [`kube::Client`] (the node's in-process client of its own API server, or
//! an agent's HTTPS client of a remote one; the code is the same).
//!
//! - [`pods::follow_pods`] watches the pods bound to this node (`spec.nodeName`) with
//!   kube-runtime's watcher and hands them to the run loop as [`PodChange`]s.
//! - [`status::ApiSink`] is the [`PodSink`](crate::PodSink) that writes pod status
//!   (`pods/status`) and records Events; once a deleted pod has stopped, it removes the object.
//! - [`node_status::heartbeat`] registers the Node, keeps its conditions ([`health`]) and
//!   status current and renews its Lease in `kube-node-lease`.
//! - [`node_status::pod_cidr_from_api`] registers the Node without a pod CIDR and waits for the
//!   one the control plane's node IPAM gives it (an agent without `--pod-cidr`).
//! - [`routes::follow_routes`] keeps the routes to the other nodes' pod networks (host-gw).
//! - [`config::ApiConfig`] reads ConfigMaps and Secrets; [`config::watch_changes`] says when
//!   any of them changes.
//!
//! [`connect`] starts all of them for one node and hands the sync loop its side
//! ([`ApiSide`]).

pub mod config;
pub mod health;
pub mod node_status;
pub mod pods;
pub mod routes;
pub mod status;

use std::sync::Arc;

use kube::Client;
use podvisor_core::ConfigSource;
use podvisor_core::corev1::Pod;
use tokio::sync::mpsc;

use crate::Clock;
use crate::sync_loop::ApiSide;

/// A change of a pod assigned to this node.
#[derive(Debug)]
pub enum PodChange {
    /// Run the pod, or pass its new version to its worker.
    Apply(Box<Pod>),
    /// The object is gone from the API (force deletion): stop the pod at once.
    Gone {
        /// The pod's UID.
        uid: String,
    },
}

/// Whether a client error is the API's `code` answer (404, 409, ...).
pub(crate) fn is_api_error(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == code)
}

/// The kubelet's tasks against an API server ([`connect`]).
pub struct Connection {
    /// ConfigMaps and Secrets for the workers, read through the API.
    pub config: Arc<dyn ConfigSource>,
    /// The status and event writer (the workers' sink).
    pub sink: Arc<status::ApiSink>,
    tasks: tokio::task::JoinSet<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

/// Starts following the pods bound to `facts.name` and the ConfigMaps/Secrets, the status
/// writer and the Node heartbeat (measuring the machine through `host`), all through `client`.
/// Returns them and the sync loop's side. Must be called inside a tokio runtime.
pub fn connect(
    client: Client,
    facts: node_status::NodeFacts,
    clock: Clock,
    host: Arc<dyn podvisor_core::host::HostOps>,
) -> (Connection, ApiSide) {
    let (changes_tx, changes) = mpsc::unbounded_channel();
    let (config_tx, config_changes) = mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(pods::follow_pods(client.clone(), facts.name.clone(), changes_tx));
    tasks.spawn(config::watch_changes(client.clone(), config_tx));
    let (sink, writer) = status::ApiSink::new(client.clone(), facts.name.clone());
    tasks.spawn(writer);
    tasks.spawn(node_status::heartbeat(client.clone(), facts, clock, host));
    let sink = Arc::new(sink);
    let connection = Connection {
        config: Arc::new(config::ApiConfig(client.clone())),
        sink: sink.clone(),
        tasks,
    };
    let side = ApiSide {
        client,
        changes,
        config_changes,
        sink,
    };
    (connection, side)
}

impl Connection {
    /// Stops every task and waits until they are gone (with them, their clients).
    pub async fn stop(self) {
        let Connection { mut tasks, .. } = self;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}
