//! `env` values from ConfigMaps and Secrets (`configMapKeyRef`, `secretKeyRef`, `envFrom`) and
//! from the container's resources (`resourceFieldRef`), resolved the way the kubelet's
//! `makeEnvironmentVariables` does, into a container definition the runtime can start as is.
//!
//! The result has no `envFrom` and no ConfigMap/Secret `valueFrom`: every value found becomes a
//! plain `env` entry, `envFrom` variables first, with `$` written as `$$` so the runtime's
//! `$(VAR)` expansion gives back exactly the stored bytes (the kubelet does not expand values
//! that come from objects). Errors and warnings name objects and keys, never values.

use std::collections::HashMap;

use podvisor_core::ConfigSource;
use podvisor_core::corev1::{ConfigMap, Container, EnvVar, Pod, Secret};

/// Why the container cannot be created (`CreateContainerConfigError`), in the kubelet's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigError(pub(crate) String);

/// The resolved container, and warnings to record as `InvalidEnvironmentVariableNames` events.
pub(crate) struct Resolved {
    pub(crate) container: Container,
    pub(crate) warnings: Vec<String>,
}

/// Whether the container needs anything from ConfigMaps or Secrets for its environment.
pub(crate) fn needs_objects(container: &Container) -> bool {
    container.env_from.as_ref().is_some_and(|e| !e.is_empty())
        || container.env.iter().flatten().any(|e| {
            e.value_from.as_ref().is_some_and(|f| {
                f.config_map_key_ref.is_some() || f.secret_key_ref.is_some() || f.resource_field_ref.is_some()
            })
        })
}

/// Objects looked up once per resolution, as the kubelet caches them per sync.
struct Lookup<'a> {
    source: Option<&'a dyn ConfigSource>,
    namespace: &'a str,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Lookup<'_> {
    async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, ConfigError> {
        if !self.config_maps.contains_key(name) {
            let found = match self.source {
                Some(s) => s.config_map(self.namespace, name).await.map_err(|e| {
                    ConfigError(format!("couldn't get configMap {}/{name}: {e}", self.namespace))
                })?,
                None => None,
            };
            self.config_maps.insert(name.to_string(), found);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, ConfigError> {
        if !self.secrets.contains_key(name) {
            let found = match self.source {
                Some(s) => s.secret(self.namespace, name).await.map_err(|e| {
                    ConfigError(format!("couldn't get secret {}/{name}: {e}", self.namespace))
                })?,
                None => None,
            };
            self.secrets.insert(name.to_string(), found);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

/// An environment variable name as Kubernetes accepts it (printable ASCII, no `=`).
fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

/// A value the runtime must pass through unexpanded.
fn literal(value: &str) -> String {
    value.replace('$', "$$")
}

fn set(env: &mut Vec<EnvVar>, name: String, value: &str) {
    let value = Some(literal(value));
    match env.iter_mut().find(|e| e.name == name) {
        Some(slot) => {
            slot.value = value;
            slot.value_from = None;
        }
        None => env.push(EnvVar {
            name,
            value,
            value_from: None,
        }),
    }
}

/// Resolves the container's ConfigMap and Secret references (in the pod's namespace) and its
/// `resourceFieldRef` values.
pub(crate) async fn resolve(
    container: &Container,
    pod: &Pod,
    source: Option<&dyn ConfigSource>,
) -> Result<Resolved, ConfigError> {
    let namespace = podvisor_core::object::namespace_of(&pod.metadata);
    let mut lookup = Lookup {
        source,
        namespace,
        config_maps: HashMap::new(),
        secrets: HashMap::new(),
    };
    let mut env: Vec<EnvVar> = Vec::new();
    let mut warnings = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, pairs): (&str, &str, Vec<(String, String)>) = if let Some(r) = &from.config_map_ref {
            let optional = r.optional.unwrap_or(false);
            match lookup.config_map(&r.name).await? {
                Some(cm) => (
                    "configMap",
                    &r.name,
                    cm.data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                None if optional => continue,
                None => return Err(ConfigError(format!("configmap \"{}\" not found", r.name))),
            }
        } else if let Some(r) = &from.secret_ref {
            let optional = r.optional.unwrap_or(false);
            match lookup.secret(&r.name).await? {
                Some(s) => (
                    "secret",
                    &r.name,
                    s.data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                        .collect(),
                ),
                None if optional => continue,
                None => return Err(ConfigError(format!("secret \"{}\" not found", r.name))),
            }
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (key, value) in pairs {
            let var = format!("{prefix}{key}");
            if valid_env_name(&var) {
                set(&mut env, var, &value);
            } else {
                invalid.push(var);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            warnings.push(format!(
                "Keys [{}] from the EnvFrom {kind} {namespace}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }
    for var in container.env.iter().flatten() {
        let from = var.value_from.as_ref();
        if let Some(r) = from.and_then(|f| f.config_map_key_ref.as_ref()) {
            let optional = r.optional.unwrap_or(false);
            let value = match lookup.config_map(&r.name).await? {
                None if optional => continue,
                None => return Err(ConfigError(format!("configmap \"{}\" not found", r.name))),
                Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => {
                        return Err(ConfigError(format!(
                            "couldn't find key {} in ConfigMap {namespace}/{}",
                            r.key, r.name
                        )));
                    }
                },
            };
            set(&mut env, var.name.clone(), &value);
        } else if let Some(r) = from.and_then(|f| f.secret_key_ref.as_ref()) {
            let optional = r.optional.unwrap_or(false);
            let value = match lookup.secret(&r.name).await? {
                None if optional => continue,
                None => return Err(ConfigError(format!("secret \"{}\" not found", r.name))),
                Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(ConfigError(format!(
                            "couldn't find key {} in Secret {namespace}/{}",
                            r.key, r.name
                        )));
                    }
                },
            };
            set(&mut env, var.name.clone(), &value);
        } else if let Some(r) = from.and_then(|f| f.resource_field_ref.as_ref()) {
            let mut r = r.clone();
            if r.container_name.as_deref().unwrap_or("").is_empty() {
                r.container_name = Some(container.name.clone());
            }
            let value = crate::volumes::payload::resource_value(pod, &r).map_err(ConfigError)?;
            set(&mut env, var.name.clone(), &value);
        } else {
            // Plain values and field references stay for the runtime (a later entry of the same
            // name replaces an earlier one, as in the kubelet's map).
            env.retain(|e| e.name != var.name);
            env.push(var.clone());
        }
    }
    let mut container = container.clone();
    container.env = Some(env);
    container.env_from = None;
    Ok(Resolved { container, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use podvisor_core::ConfigSourceError;
    use serde_json::json;

    struct Objects(Vec<serde_json::Value>);

    #[async_trait::async_trait]
    impl ConfigSource for Objects {
        async fn config_map(
            &self,
            namespace: &str,
            name: &str,
        ) -> Result<Option<ConfigMap>, ConfigSourceError> {
            Ok(self.find("ConfigMap", namespace, name))
        }
        async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ConfigSourceError> {
            Ok(self.find("Secret", namespace, name))
        }
    }

    impl Objects {
        fn find<T: serde::de::DeserializeOwned>(&self, kind: &str, ns: &str, name: &str) -> Option<T> {
            self.0
                .iter()
                .find(|o| {
                    o["kind"] == kind && o["metadata"]["namespace"] == ns && o["metadata"]["name"] == name
                })
                .map(|o| serde_json::from_value(o.clone()).unwrap())
        }
    }

    fn objects() -> Objects {
        Objects(vec![
            json!({"kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "ns"},
                   "data": {"MODE": "fast", "PRICE": "$(HOME)$5", "bad=key": "x"}}),
            // "hunter2" and "s3cr3t" in base64.
            json!({"kind": "Secret", "metadata": {"name": "db", "namespace": "ns"},
                   "data": {"password": "aHVudGVyMg==", "TOKEN": "czNjcjN0"}}),
        ])
    }

    fn container(v: serde_json::Value) -> Container {
        let mut c = json!({"name": "app", "image": "host"});
        for (k, val) in v.as_object().unwrap() {
            c[k] = val.clone();
        }
        serde_json::from_value(c).unwrap()
    }

    fn pod_in(namespace: &str, c: &Container) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": namespace}, "spec": {"containers": [c]}}),
        )
        .unwrap()
    }

    fn env_of(r: &Resolved) -> Vec<(String, String)> {
        r.container
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    #[tokio::test]
    async fn env_from_and_key_refs_become_literal_values() {
        let c = container(json!({
            "envFrom": [{"configMapRef": {"name": "settings"}}, {"prefix": "DB_", "secretRef": {"name": "db"}}],
            "env": [
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "MODE", "value": "slow"},
                {"name": "OPTIONAL", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}
            ],
            "resources": {"limits": {"memory": "128Mi"}}
        }));
        let objects = objects();
        let r = resolve(&c, &pod_in("ns", &c), Some(&objects)).await.unwrap();
        assert_eq!(
            env_of(&r),
            vec![
                ("PRICE".into(), "$$(HOME)$$5".into()),
                ("DB_TOKEN".into(), "s3cr3t".into()),
                ("DB_password".into(), "hunter2".into()),
                ("PASSWORD".into(), "hunter2".into()),
                ("MODE".into(), "slow".into()),
                ("POD".into(), String::new()),
                ("MEM_MI".into(), "128".into()),
            ]
        );
        assert!(r.container.env_from.is_none());
        assert_eq!(
            r.warnings,
            vec![
                "Keys [bad=key] from the EnvFrom configMap ns/settings were skipped since they are considered invalid environment variable names."
            ]
        );
    }

    #[tokio::test]
    async fn missing_references_are_errors_in_the_kubelets_words() {
        let objects = objects();
        for (env, message) in [
            (
                json!({"env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "other", "key": "password"}}}]}),
                "secret \"other\" not found",
            ),
            (
                json!({"env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "user"}}}]}),
                "couldn't find key user in Secret ns/db",
            ),
            (
                json!({"env": [{"name": "P", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "K"}}}]}),
                "couldn't find key K in ConfigMap ns/settings",
            ),
            (
                json!({"envFrom": [{"configMapRef": {"name": "gone"}}]}),
                "configmap \"gone\" not found",
            ),
        ] {
            let c = container(env);
            let Err(ConfigError(e)) = resolve(&c, &pod_in("ns", &c), Some(&objects)).await else {
                panic!("{message}: resolved");
            };
            assert_eq!(e, message);
            assert!(!e.contains("hunter2"));
        }
        // Optional ones are left out instead.
        let c = container(json!({
            "envFrom": [{"secretRef": {"name": "gone", "optional": true}}],
            "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "user", "optional": true}}}]
        }));
        let r = resolve(&c, &pod_in("ns", &c), Some(&objects)).await.unwrap();
        assert!(env_of(&r).is_empty());
    }
}
