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
//! ConfigMaps and Secrets: with a [`ConfigSource`](podvisor_core::ConfigSource)
//! ([`PodSupervisor::with_config_source`]) workers resolve `env` references and `envFrom`
//! (a missing one keeps the container in `CreateContainerConfigError`); with a
//! [`VolumeManager`] ([`PodSupervisor::with_volumes`]) they prepare the pod's volumes before
//! its sandbox (`FailedMount` events until they can), give each container its mounts, follow
//! object updates ([`PodSupervisor::config_changed`]) and remove the volumes with the pod.
//!
//! Node restarts (issue #18): before anything else a worker asks the runtime what of its pod
//! outlived the node's previous run (`ContainerRuntime::adopt`); if something did, the machine
//! adopts it (no sandbox, no start, no restart counted, no second "Scheduled" event) and the
//! running instances' exits are watched like any other. [`VolumeManager::keeping`] leaves such
//! pods' volumes as they were.
//!
//! Time: the model's clock is [`Clock`], which follows tokio's clock, so tests run workers
//! under `tokio::time::pause()` with fakes from `podvisor-test-support`. A worker sleeps until
//! its model's next wake-up, moved onto a 250 ms grid when it is more than 1 s away
//! ([`Clock::wake_instant`]), so that workers whose probes fall due together wake together.
//!
//! Metrics: [`KubeletMetrics`] (probe results and durations, pod start duration, container
//! restarts, runtime operation latencies) with the kubelet's metric names, given to the
//! supervisor with [`PodSupervisor::with_metrics`]; the workers only observe.
//!
//! Cancellation: [`PodSupervisor::shutdown`] terminates every pod gracefully (each with its own
//! grace period, preStop hooks included) and waits, up to a deadline. Dropping the supervisor
//! without it leaves the workers running.
#![forbid(unsafe_code)]

mod adoption;
mod clock;
pub mod cluster;
mod env_refs;
pub mod metrics;
pub mod output;
pub mod static_pods;
mod supervisor;
pub mod sync_loop;
pub mod table;
mod view;
pub mod volumes;
mod worker;

pub use clock::Clock;
pub use metrics::KubeletMetrics;
pub use supervisor::{PodSupervisor, SupervisorConfig};
pub use view::{ContainerDiagnostics, HookRecord, NullSink, PodSink, PodView, ProbeRecord, Tee};
pub use volumes::{VolumeConfig, VolumeManager};
