//! Container environment: `env` entries with `fieldRef` and `$(VAR)` expansion (both rules
//! live in `podvisor-core`: `downward` and `expansion`), `command` and `args`.

use std::collections::HashMap;

use podvisor_core::corev1;
use podvisor_core::downward::{self, FieldContext, FieldValue, RuntimeFields};
use podvisor_core::expansion;

/// Expands `$(NAME)` from `vars` (the rule lives in `podvisor_core::expansion`).
fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    expansion::expand(input, |name| vars.get(name).map(String::as_str))
}

/// The `PATH` a container gets when its `env` does not set one (the usual image default).
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a container's environment could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    /// A `fieldRef` names a field this runtime does not provide.
    #[error("unsupported fieldRef {field_path:?} in env {name:?}")]
    UnsupportedField {
        /// The env variable.
        name: String,
        /// The `fieldPath`.
        field_path: String,
    },
    /// A `valueFrom` source other than `fieldRef` (ConfigMap, Secret, resources).
    #[error("env {name:?}: valueFrom.{source_kind} is not supported by the process runtime")]
    UnsupportedSource {
        /// The env variable.
        name: String,
        /// `configMapKeyRef`, `secretKeyRef`, `resourceFieldRef`, ...
        source_kind: &'static str,
    },
    /// `envFrom` is set (it needs ConfigMaps or Secrets).
    #[error("envFrom is not supported by the process runtime")]
    EnvFrom,
}

/// What `fieldRef` values resolve against.
pub(crate) struct FieldSource<'a> {
    pub(crate) pod: &'a corev1::Pod,
    pub(crate) pod_ip: Option<&'a str>,
    pub(crate) node_name: &'a str,
}

impl FieldSource<'_> {
    fn field(&self, env_name: &str, path: &str) -> Result<String, EnvError> {
        let runtime = RuntimeFields {
            pod_ip: self.pod_ip,
            node_name: Some(self.node_name),
        };
        match downward::resolve(self.pod, path, FieldContext::Env, runtime) {
            Ok(FieldValue::Text(value)) => Ok(value),
            Ok(FieldValue::Map(_)) | Err(_) => Err(EnvError::UnsupportedField {
                name: env_name.to_string(),
                field_path: path.to_string(),
            }),
        }
    }
}

/// Builds the environment of a container: `PATH` and `HOSTNAME` defaults, then `env` in order,
/// each value expanded against the variables defined before it.
pub(crate) fn build(
    container: &corev1::Container,
    source: &FieldSource<'_>,
    hostname: &str,
) -> Result<Vec<(String, String)>, EnvError> {
    if container.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(EnvError::EnvFrom);
    }
    let mut list: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOSTNAME".into(), hostname.into()),
    ];
    let mut map: HashMap<String, String> = list.iter().cloned().collect();
    // Kubernetes expands against the container's own env only, not the defaults above.
    let mut defined: HashMap<String, String> = HashMap::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    source.field(&var.name, &field.field_path)?
                } else {
                    let source_kind = if from.config_map_key_ref.is_some() {
                        "configMapKeyRef"
                    } else if from.secret_key_ref.is_some() {
                        "secretKeyRef"
                    } else if from.resource_field_ref.is_some() {
                        "resourceFieldRef"
                    } else {
                        "fileKeyRef"
                    };
                    return Err(EnvError::UnsupportedSource {
                        name: var.name.clone(),
                        source_kind,
                    });
                }
            }
            (Some(value), None) => expand(value, &defined),
            (None, None) => String::new(),
        };
        defined.insert(var.name.clone(), value.clone());
        map.insert(var.name.clone(), value.clone());
        match list.iter_mut().find(|(k, _)| *k == var.name) {
            Some(slot) => slot.1 = value,
            None => list.push((var.name.clone(), value)),
        }
    }
    Ok(list)
}

/// `command` + `args`, each expanded against the container's environment.
pub(crate) fn argv(container: &corev1::Container, env: &[(String, String)]) -> Vec<String> {
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|a| expand(a, &vars))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> HashMap<String, String> {
        [
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two".to_string()),
        ]
        .into()
    }

    #[test]
    fn env_values_expand_against_earlier_entries() {
        let v = vars();
        assert_eq!(expand("$(A)-$(B)-$(C)", &v), "1-two-$(C)");
    }
}
