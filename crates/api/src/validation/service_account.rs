//! ServiceAccounts: kube-apiserver validates only their metadata (`ValidateServiceAccount`).

use podvisor_core::corev1::ServiceAccount;

use super::field::{Path, ValidationErrors, Warning};
use super::meta::{NameRule, validate_object_meta};
use super::template::validate_meta_update;

/// Validates a ServiceAccount on create: its metadata, the name a DNS-1123 subdomain.
pub fn validate_service_account(sa: &ServiceAccount) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = Vec::new();
    validate_object_meta(
        &sa.metadata,
        NameRule::Dns1123Subdomain,
        &Path::root("metadata"),
        &mut errs,
    );
    ValidationErrors::new(errs).into_result(Vec::new())
}

/// Validates a ServiceAccount update: name and namespace are immutable, labels and annotations
/// valid.
pub fn validate_service_account_update(
    old: &ServiceAccount,
    new: &ServiceAccount,
) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = Vec::new();
    validate_meta_update(&old.metadata, &new.metadata, &mut errs);
    ValidationErrors::new(errs).into_result(Vec::new())
}
