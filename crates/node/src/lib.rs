//! The composition root: podvisor's parts wired into a runnable node.
//!
//! [`build`] composes the real parts ([`parts::PodParts`]: the process runtime, probes and
//! hooks; with `--listen`, the store and the API listener, [`api`]); [`Node::run`] starts the
//! API server in the background, the control loops (`podvisor-controllers`), the kubelet's side
//! of the API (`podvisor_kubelet::cluster`) and Services ([`services`]), all talking to the API
//! through an in-process `kube::Client`, and runs the kubelet's sync loop
//! (`podvisor_kubelet::sync_loop`) until shutdown.
//!
//! This is the only library crate that names concrete types from more than one component; it
//! holds no Kubernetes rule and no loop of its own.
//! What it is not: it makes no decision about pods (that is `podvisor-lifecycle`), and it does
//! not parse command lines or install signal handlers (that is the binary, `podvisor node`).
//!
//! Shutdown: [`Node::run`] takes a shutdown future; when it completes, every pod is terminated
//! gracefully and `run` returns once they have stopped or a deadline passed.
#![forbid(unsafe_code)]

pub mod api;
mod kubelet_endpoint;
pub mod metrics;
mod node;
pub mod parts;
pub mod server;
pub mod services;

pub use node::{BuildError, Node, NodeConfig, Shutdown, build};
/// The API server's connection and request budgets ([`NodeConfig::api_limits`]).
pub use podvisor_apiserver::limits::Limits as ApiLimits;
/// The kubelet's default `--max-pods` ([`NodeConfig::max_pods`]).
pub use podvisor_kubelet::cluster::node_status::DEFAULT_MAX_PODS;
pub use podvisor_kubelet::output::OutputMode;
/// What the machine lets the runtime do (root, namespaces, cgroups).
pub use podvisor_runtime::Capabilities;
/// Whether the node runs as root (sandboxes, cgroups, the nftables datapath need it).
pub use podvisor_runtime::is_root;
