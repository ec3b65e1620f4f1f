//! ConfigMaps and Secrets: key names, the 1 MiB size limit, and `immutable` on updates.

use std::collections::BTreeMap;

use podvisor_core::corev1::{ConfigMap, Secret};

use super::field::{FieldError, Path, ValidationErrors, Value, Warning};
use super::meta::{NameRule, validate_object_meta};

/// The most bytes a ConfigMap's or Secret's data may hold (kube-apiserver's limit).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

const IMMUTABLE: &str = "field is immutable when `immutable` is set";

/// Whether `key` is a valid ConfigMap/Secret key (`[-._a-zA-Z0-9]+`, at most 253 characters,
/// not `.` or `..`, not starting with `..`).
pub(crate) fn key_problems(key: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if key.len() > 253 {
        problems.push("must be no more than 253 characters".to_owned());
    }
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        problems.push(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  \
             or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
                .to_owned(),
        );
    }
    if key == "." {
        problems.push("must not be '.'".to_owned());
    } else if key == ".." {
        problems.push("must not be '..'".to_owned());
    } else if key.starts_with("..") {
        problems.push("must not start with '..'".to_owned());
    }
    problems
}

fn check_keys<'a>(field: &str, keys: impl Iterator<Item = &'a String>, errs: &mut Vec<FieldError>) {
    for key in keys {
        for problem in key_problems(key) {
            errs.push(FieldError::invalid(
                &format!("{field}[{key}]"),
                Value::str(key),
                problem,
            ));
        }
    }
}

/// Validates a ConfigMap on create.
pub fn validate_config_map(cm: &ConfigMap) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = Vec::new();
    validate_object_meta(
        &cm.metadata,
        NameRule::Dns1123Subdomain,
        &Path::root("metadata"),
        &mut errs,
    );
    let data = cm.data.clone().unwrap_or_default();
    let binary = cm.binary_data.clone().unwrap_or_default();
    check_keys("data", data.keys(), &mut errs);
    check_keys("binaryData", binary.keys(), &mut errs);
    for key in data.keys().filter(|k| binary.contains_key(*k)) {
        errs.push(FieldError::invalid(
            &format!("data[{key}]"),
            Value::str(key),
            "duplicate of key present in binaryData",
        ));
    }
    let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        + binary.iter().map(|(k, v)| k.len() + v.0.len()).sum::<usize>();
    if size > MAX_DATA_BYTES {
        errs.push(FieldError::too_long("", MAX_DATA_BYTES));
    }
    ValidationErrors::new(errs).into_result(Vec::new())
}

/// Validates a ConfigMap update: the new object, and `immutable` (once set, neither the data
/// nor the flag may change).
pub fn validate_config_map_update(
    old: &ConfigMap,
    new: &ConfigMap,
) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = match validate_config_map(new) {
        Ok(_) => Vec::new(),
        Err(e) => e.into_errors(),
    };
    if old.immutable == Some(true) {
        if new.immutable != Some(true) {
            errs.push(FieldError::forbidden("immutable", IMMUTABLE));
        }
        if old.data != new.data {
            errs.push(FieldError::forbidden("data", IMMUTABLE));
        }
        if old.binary_data != new.binary_data {
            errs.push(FieldError::forbidden("binaryData", IMMUTABLE));
        }
    }
    ValidationErrors::new(errs).into_result(Vec::new())
}

/// Folds `stringData` into `data` (it wins on conflicts), as kube-apiserver does on write.
pub fn fold_string_data(secret: &mut Secret) {
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (k, v) in strings {
            data.insert(k, podvisor_core::k8s_openapi::ByteString(v.into_bytes()));
        }
    }
}

/// Validates a Secret on create (after [`fold_string_data`]).
pub fn validate_secret(secret: &Secret) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = Vec::new();
    validate_object_meta(
        &secret.metadata,
        NameRule::Dns1123Subdomain,
        &Path::root("metadata"),
        &mut errs,
    );
    let data = secret.data.clone().unwrap_or_default();
    check_keys("data", data.keys(), &mut errs);
    let size: usize = data.iter().map(|(k, v)| k.len() + v.0.len()).sum();
    if size > MAX_DATA_BYTES {
        errs.push(FieldError::too_long("data", MAX_DATA_BYTES));
    }
    ValidationErrors::new(errs).into_result(Vec::new())
}

/// Validates a Secret update: the new object, an unchanged `type`, and `immutable`.
pub fn validate_secret_update(old: &Secret, new: &Secret) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = match validate_secret(new) {
        Ok(_) => Vec::new(),
        Err(e) => e.into_errors(),
    };
    let type_of = |s: &Secret| s.type_.clone().unwrap_or_else(|| "Opaque".into());
    if type_of(old) != type_of(new) {
        errs.push(FieldError::invalid(
            "type",
            Value::str(&type_of(new)),
            "field is immutable",
        ));
    }
    if old.immutable == Some(true) {
        if new.immutable != Some(true) {
            errs.push(FieldError::forbidden("immutable", IMMUTABLE));
        }
        if old.data != new.data {
            errs.push(FieldError::forbidden("data", IMMUTABLE));
        }
    }
    ValidationErrors::new(errs).into_result(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(v: serde_json::Value) -> ConfigMap {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn config_keys_are_checked_with_kubernetes_messages() {
        let bad = cm(serde_json::json!({"metadata": {"name": "c"}, "data": {"bad key": "x", "ok.key": "y"}}));
        let errs = validate_config_map(&bad).unwrap_err();
        assert_eq!(
            errs.messages(),
            [
                "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, \
              '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is \
              '[-._a-zA-Z0-9]+')"
            ]
        );
    }

    #[test]
    fn data_is_limited_to_one_mebibyte() {
        let big = "x".repeat(MAX_DATA_BYTES);
        let errs = validate_config_map(&cm(
            serde_json::json!({"metadata": {"name": "c"}, "data": {"k": big}}),
        ))
        .unwrap_err();
        assert!(
            errs.messages()[0].contains("Too long: must have at most 1048576 bytes"),
            "{errs}"
        );
    }

    #[test]
    fn immutable_objects_keep_their_data() {
        let old = cm(serde_json::json!({"metadata": {"name": "c"}, "data": {"k": "1"}, "immutable": true}));
        let new = cm(serde_json::json!({"metadata": {"name": "c"}, "data": {"k": "2"}, "immutable": true}));
        let errs = validate_config_map_update(&old, &new).unwrap_err();
        assert_eq!(
            errs.messages(),
            ["data: Forbidden: field is immutable when `immutable` is set"]
        );
        assert!(validate_config_map_update(&old, &old).is_ok());
    }

    #[test]
    fn string_data_folds_into_data_and_type_is_immutable() {
        let mut s: Secret = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}),
        )
        .unwrap();
        fold_string_data(&mut s);
        assert_eq!(s.data.as_ref().unwrap()["password"].0, b"hunter2");
        assert!(s.string_data.is_none());
        let mut other = s.clone();
        other.type_ = Some("kubernetes.io/tls".into());
        let errs = validate_secret_update(&s, &other).unwrap_err();
        assert_eq!(
            errs.messages(),
            ["type: Invalid value: \"kubernetes.io/tls\": field is immutable"]
        );
    }
}
