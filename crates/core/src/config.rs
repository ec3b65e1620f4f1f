//! Where a pod's ConfigMaps and Secrets come from: the seam between the pod workers (which
//! resolve `env` references and fill volumes) and whatever holds the objects (the API store in
//! the node, a map in tests).

use crate::corev1::{ConfigMap, Secret};

/// Why an object could not be read (not "it does not exist": that is `Ok(None)`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigSourceError(pub String);

/// Looks ConfigMaps and Secrets up by namespace and name.
#[async_trait::async_trait]
pub trait ConfigSource: Send + Sync {
    /// The ConfigMap, or `None` if it does not exist.
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ConfigSourceError>;
    /// The Secret, or `None` if it does not exist.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ConfigSourceError>;
}
