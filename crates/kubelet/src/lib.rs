//! Pod workers: the async shell around podvisor's pure lifecycle model.
//!
//! [`PodSupervisor`] runs one worker task per pod. A worker owns the pod's
//! [`PodMachine`](podvisor_lifecycle::PodMachine), feeds it everything that happens (processes
//! starting and ending, probe and hook results, timers, pod changes, deletion) and carries out
//! the commands it returns through the node's seams: a
//! [`ContainerRuntime`](podvisor_core::runtime::ContainerRuntime), a
//! [`Prober`](podvisor_core::Prober) and a [`HookRunner`](podvisor_core::HookRunner). Status,
//! events and probe/hook history go to a [`PodSink`] and to a [`PodView`] per pod.
//!
//! What it is not: it makes no decision about a pod (all of them come from
//! `podvisor-lifecycle`), and it depends on no concrete runtime, prober or store: the node
//! wires those in. Child exits are noticed through the runtime's exit futures, never by
//! polling.
//!
//! Time: the model's clock is [`Clock`], which follows tokio's clock, so tests run workers
//! under `tokio::time::pause()` with fakes from `podvisor-test-support`.
//!
//! Metrics: [`KubeletMetrics`] (probe results and durations, pod start duration, container
//! restarts, runtime operation latencies) with the kubelet's metric names, given to the
//! supervisor with [`PodSupervisor::with_metrics`]; the workers only observe.
//!
//! Cancellation: [`PodSupervisor::shutdown`] terminates every pod gracefully (each with its own
//! grace period, preStop hooks included) and waits, up to a deadline. Dropping the supervisor
//! without it leaves the workers running.
#![forbid(unsafe_code)]

mod clock;
pub mod metrics;
mod supervisor;
mod view;
mod worker;

pub use clock::Clock;
pub use metrics::KubeletMetrics;
pub use supervisor::{PodSupervisor, SupervisorConfig};
pub use view::{ContainerDiagnostics, HookRecord, NullSink, PodSink, PodView, ProbeRecord};
