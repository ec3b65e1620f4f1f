//! Validation of Pods (with their volumes), Services, ConfigMaps, Secrets and Events, and the
//! metadata of every other served kind, with kube-apiserver's field paths and messages.
//!
//! Call after [`crate::defaults`]: like kube-apiserver, validation assumes defaults are
//! applied and reports unset defaulted fields as `Required`. Every error is collected; the
//! result is a [`ValidationErrors`] whose `Display` matches the apiserver's aggregate message
//! and whose [`ValidationErrors::errors`] feed `Status.details.causes`.

mod config;
mod event;
mod field;
pub mod format;
mod meta;
mod pod;
mod probe;
mod quantity;
mod service;
mod volume;

pub use config::{
    MAX_DATA_BYTES, fold_string_data, validate_config_map, validate_config_map_update, validate_secret,
    validate_secret_update,
};
pub use event::validate_event;
pub use field::{ErrorKind, FieldError, ValidationErrors, Value, Warning};
pub use meta::{validate_metadata, validate_namespace_finalizers};
pub use pod::{COMMAND_REQUIRED_DETAIL, pod_warnings, validate_pod, validate_pod_update};
pub use quantity::parse_quantity;
pub use service::validate_service;

#[cfg(test)]
mod tests;
