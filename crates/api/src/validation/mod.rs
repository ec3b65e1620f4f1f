//! Validation of Pods (with their volumes), Services, ConfigMaps, Secrets, Events,
//! ServiceAccounts, the workload kinds (Deployments, ReplicaSets, StatefulSets, DaemonSets,
//! ControllerRevisions, Jobs, CronJobs, whose pod templates get the pod spec rules), and the
//! metadata of every other served kind, with kube-apiserver's field paths and messages.
//!
//! Call after [`crate::defaults`]: like kube-apiserver, validation assumes defaults are
//! applied and reports unset defaulted fields as `Required`. Every error is collected; the
//! result is a [`ValidationErrors`] whose `Display` matches the apiserver's aggregate message
//! and whose [`ValidationErrors::errors`] feed `Status.details.causes`.

mod apps;
mod batch;
mod config;
mod cron;
mod cron_job;
mod ephemeral;
mod event;
mod field;
pub mod format;
mod job_policy;
mod meta;
mod pod;
mod probe;
mod quantity;
mod service;
mod service_account;
mod stateful_set;
mod template;
mod volume;

pub use apps::{
    validate_controller_revision, validate_controller_revision_update, validate_daemon_set,
    validate_daemon_set_update, validate_deployment, validate_deployment_update, validate_replica_set,
    validate_replica_set_update,
};
pub use batch::{validate_job, validate_job_update};
pub use config::{
    MAX_DATA_BYTES, fold_string_data, validate_config_map, validate_config_map_update, validate_secret,
    validate_secret_update,
};
pub use cron_job::{validate_cron_job, validate_cron_job_update};
pub use ephemeral::validate_ephemeral_containers_update;
pub use event::validate_event;
pub use field::{ErrorKind, FieldError, ValidationErrors, Value, Warning};
pub use meta::{validate_metadata, validate_namespace_finalizers};
pub use pod::{COMMAND_REQUIRED_DETAIL, pod_warnings, validate_pod, validate_pod_update};
pub use quantity::parse_quantity;
pub use service::validate_service;
pub use service_account::{validate_service_account, validate_service_account_update};
pub use stateful_set::{STATEFUL_SET_FORBIDDEN_UPDATE, validate_stateful_set, validate_stateful_set_update};

#[cfg(test)]
mod tests;
