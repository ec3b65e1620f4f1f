//! The vocabulary every podvisor crate shares, and the seams they plug into.
//!
//! This crate is deliberately small: it holds
//!
//! - the Kubernetes object types, re-exported from [`k8s_openapi`] (one pinned API version for the
//!   whole workspace), so every crate names `Pod` and `PodStatus` the same way;
//! - plain value types that cross crate boundaries: [`ContainerId`], [`ExitStatus`], the probe
//!   vocabulary in [`probe`] ([`ProbeKind`], [`ProbeOutcome`], [`ProbeResult`]) and hook results;
//! - the seam traits that the node's parts implement ([`runtime::ContainerRuntime`],
//!   [`runtime::ContainerExec`], [`probe::Prober`], [`probe::HookRunner`], [`config::ConfigSource`],
//!   [`host::HostOps`], [`logs::LogSource`], [`streams::PodStreams`], [`usage::UsageSource`])
//!   and their error enums.
//!
//! What it does **not** contain: any I/O, any async runtime, any decision about pod behaviour
//! (that is `podvisor-lifecycle`), and no dependency on another `podvisor-*` crate. Its dependency
//! closure has no tokio, hyper, nix or tonic; the workspace's tidy test checks this.
//!
//! Start with [`probe`] and [`runtime`]: they say what the node's moving parts promise each
//! other.
#![forbid(unsafe_code)]

pub mod config;
pub mod downward;
pub mod expansion;
pub mod host;
pub mod logs;
pub mod net;
pub mod object;
pub mod probe;
pub mod quantity;
pub mod rfc3339;
pub mod runtime;
pub mod streams;
pub mod usage;
pub mod version;

pub use config::{ConfigSource, ConfigSourceError};
pub use k8s_openapi;
pub use probe::{HookRunner, HookWarning, ProbeKind, ProbeOutcome, ProbeResult, ProbeTarget, Prober};
pub use runtime::{ContainerId, ExitReport, ExitStatus, HookKind, HookResult};

/// `apps/v1` types (`Deployment`, `ReplicaSet`, `StatefulSet`, `DaemonSet`, `ControllerRevision`).
pub use k8s_openapi::api::apps::v1 as appsv1;
/// `batch/v1` types (`Job`, `CronJob`).
pub use k8s_openapi::api::batch::v1 as batchv1;
/// Kubernetes core/v1 object types (`Pod`, `Service`, `Endpoints`, `Event`, `Node`, ...).
pub use k8s_openapi::api::core::v1 as corev1;
/// `discovery.k8s.io/v1` types (`EndpointSlice`).
pub use k8s_openapi::api::discovery::v1 as discoveryv1;
/// `metav1` types (`ObjectMeta`, `Time`, `Status`, ...).
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
