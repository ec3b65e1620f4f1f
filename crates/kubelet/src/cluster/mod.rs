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
//! - [`config::ApiConfig`] reads ConfigMaps and Secrets; [`config::watch_changes`] says when
//!   any of them changes.

pub mod config;
pub mod health;
pub mod node_status;
pub mod pods;
pub mod status;

use podvisor_core::corev1::Pod;

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
