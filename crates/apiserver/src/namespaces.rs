//! The API server's part of namespace termination (kube-apiserver's namespace lifecycle
//! admission): deleting a namespace marks it (`deletionTimestamp`, phase `Terminating`) while
//! its `spec.finalizers` hold `kubernetes`, and creates in it are refused (403). The namespace
//! controller of `podvisor-controllers` deletes its contents and then removes the finalizer
//! through `namespaces/{name}/finalize`, which removes the namespace.

use serde_json::Value;

use crate::meta;
use crate::resources::Resource;
use crate::status::{ApiError, Cause};

/// Namespaces that cannot be deleted.
pub const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

/// Whether `namespace` is being terminated.
pub fn terminating(namespace: &Value) -> bool {
    namespace.pointer("/metadata/deletionTimestamp").is_some()
        || meta::str_at(namespace, "status.phase") == Some("Terminating")
}

/// The 403 for a create of `resource` `name` in the terminating namespace `ns`.
pub fn refuse_create(resource: &Resource, name: &str, ns: &str) -> ApiError {
    let mut e = ApiError::forbidden(
        resource,
        name,
        &format!("unable to create new content in namespace {ns} because it is being terminated"),
    );
    e.causes.push(Cause {
        reason: "NamespaceTerminating".into(),
        message: format!("namespace {ns} is being terminated"),
        field: "metadata.namespace".into(),
    });
    e
}
