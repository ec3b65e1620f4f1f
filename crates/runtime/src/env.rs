//! Container environment: `env` entries with `fieldRef`, and Kubernetes `$(VAR)` expansion.

use std::collections::HashMap;

use podvisor_core::corev1;

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

/// Expands `$(NAME)` references in `input` the way the kubelet does: `$$` is a literal `$`,
/// `$(NAME)` with a known NAME is replaced, anything else (unknown names, an unclosed `$(`, a
/// `$` before another character) is kept as written.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// What `fieldRef` values resolve against.
pub(crate) struct FieldSource<'a> {
    pub(crate) pod: &'a corev1::Pod,
    pub(crate) pod_ip: Option<&'a str>,
    pub(crate) node_name: &'a str,
}

impl FieldSource<'_> {
    fn field(&self, env_name: &str, path: &str) -> Result<String, EnvError> {
        let meta = &self.pod.metadata;
        let spec = self.pod.spec.as_ref();
        let value = match path {
            "metadata.name" => meta.name.clone().unwrap_or_default(),
            "metadata.namespace" => meta.namespace.clone().unwrap_or_else(|| "default".into()),
            "metadata.uid" => meta.uid.clone().unwrap_or_default(),
            "status.podIP" => self.pod_ip.unwrap_or_default().to_string(),
            "status.podIPs" => self.pod_ip.unwrap_or_default().to_string(),
            "spec.nodeName" => spec
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| self.node_name.to_string()),
            "spec.serviceAccountName" => spec
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
            _ => {
                let keyed = |prefix: &str| -> Option<String> {
                    let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
                    Some(key.to_string())
                };
                if let Some(key) = keyed("metadata.labels['") {
                    meta.labels
                        .as_ref()
                        .and_then(|m| m.get(&key).cloned())
                        .unwrap_or_default()
                } else if let Some(key) = keyed("metadata.annotations['") {
                    meta.annotations
                        .as_ref()
                        .and_then(|m| m.get(&key).cloned())
                        .unwrap_or_default()
                } else {
                    return Err(EnvError::UnsupportedField {
                        name: env_name.to_string(),
                        field_path: path.to_string(),
                    });
                }
            }
        };
        Ok(value)
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
    fn expansion_follows_kubernetes() {
        let v = vars();
        assert_eq!(expand("$(A)-$(B)", &v), "1-two");
        assert_eq!(expand("$$(A)", &v), "$(A)");
        assert_eq!(expand("$(C)", &v), "$(C)");
        assert_eq!(expand("$(A", &v), "$(A");
        assert_eq!(expand("a$b$", &v), "a$b$");
        assert_eq!(expand("$$$$", &v), "$$");
        assert_eq!(expand("héllo $(A)é", &v), "héllo 1é");
        assert_eq!(expand("", &v), "");
    }
}
