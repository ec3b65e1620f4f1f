//! The composition root: podvisor's parts wired into a runnable node.
//!
//! [`Node`] runs a [`PodSupervisor`](podvisor_kubelet::PodSupervisor) over a container
//! runtime, a prober and a hook runner, feeds it the static pod manifests of a directory
//! ([`manifests::StaticPods`], like the kubelet's `staticPodPath`) and shows what happens
//! ([`output`]: a live table on a terminal, one line per change otherwise).
//!
//! This is the only crate that names concrete types from more than one `podvisor-*` crate.
//! What it is not: it makes no decision about pods (that is `podvisor-lifecycle`), and it does
//! not parse command lines or install signal handlers (that is the binary, `podvisor node`).
//!
//! Shutdown: [`Node::run`] takes a shutdown future; when it completes, every pod is terminated
//! gracefully and `run` returns once they have stopped or a deadline passed.
#![forbid(unsafe_code)]

pub mod api;
pub mod metrics;
mod node;
pub mod services;

pub use node::{BuildError, Node, NodeConfig, build};
/// The API server's connection and request budgets ([`NodeConfig::api_limits`]).
pub use podvisor_apiserver::limits::Limits as ApiLimits;
pub use podvisor_kubelet::output::OutputMode;
/// Whether the node runs as root (sandboxes, cgroups, the nftables datapath need it).
pub use podvisor_runtime::is_root;
