//! ConfigMaps and Secrets for the pod workers: a [`ConfigSource`] reading the API store, and a
//! task that tells the supervisor when either kind changes (volumes follow, waiting containers
//! retry).

use std::sync::Arc;
use std::time::Duration;

use podvisor_core::corev1::{ConfigMap, Secret};
use podvisor_core::{ConfigSource, ConfigSourceError};
use podvisor_store::{ObjectKey, Store, StoreError};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::debug;

/// Reads ConfigMaps and Secrets from the store the API serves.
pub(crate) struct StoreConfig(pub(crate) Arc<dyn Store>);

impl StoreConfig {
    async fn get<T: DeserializeOwned>(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<T>, ConfigSourceError> {
        match self.0.get(&ObjectKey::new(resource, namespace, name)).await {
            Ok(found) => serde_json::from_value(found.object)
                .map(Some)
                // The error names the object only: a Secret's content must not reach messages.
                .map_err(|_| ConfigSourceError(format!("{resource} {namespace}/{name} cannot be decoded"))),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(ConfigSourceError(e.to_string())),
        }
    }
}

#[async_trait::async_trait]
impl ConfigSource for StoreConfig {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ConfigSourceError> {
        self.get("configmaps", namespace, name).await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ConfigSourceError> {
        self.get("secrets", namespace, name).await
    }
}

/// Sends `()` on `changed` whenever a ConfigMap or Secret is created, updated or deleted.
pub(crate) async fn watch_changes(store: Arc<dyn Store>, changed: mpsc::UnboundedSender<()>) {
    loop {
        let revision = match store.current_revision().await {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "cannot read the store revision; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Anything may have changed while no watch was open.
        if changed.send(()).is_err() {
            return;
        }
        let (Ok(mut config_maps), Ok(mut secrets)) = (
            store.watch("configmaps", None, revision).await,
            store.watch("secrets", None, revision).await,
        ) else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        loop {
            let event = tokio::select! {
                e = futures_util::StreamExt::next(&mut config_maps) => e,
                e = futures_util::StreamExt::next(&mut secrets) => e,
            };
            match event {
                Some(Ok(_)) => {
                    if changed.send(()).is_err() {
                        return;
                    }
                }
                _ => break,
            }
        }
    }
}
