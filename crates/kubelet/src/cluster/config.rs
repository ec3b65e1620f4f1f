//! ConfigMaps and Secrets for the pod workers: a [`ConfigSource`] reading them from the API,
//! and a task that tells the supervisor when either kind changes (volumes follow, waiting
//! containers retry).

use futures_util::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use podvisor_core::corev1::{ConfigMap, Secret};
use podvisor_core::{ConfigSource, ConfigSourceError};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::debug;

/// Reads ConfigMaps and Secrets from the API.
#[derive(Clone)]
pub struct ApiConfig(pub Client);

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig").finish_non_exhaustive()
    }
}

impl ApiConfig {
    async fn get<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, ConfigSourceError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        Api::<K>::namespaced(self.0.clone(), namespace)
            .get_opt(name)
            .await
            // The error names the object only: a Secret's content must not reach messages.
            .map_err(|e| {
                let kind = K::kind(&());
                ConfigSourceError(format!(
                    "{kind} {namespace}/{name} cannot be read: {}",
                    reason(&e)
                ))
            })
    }
}

/// What went wrong, without any of the object's content.
fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        kube::Error::SerdeError(_) => "it cannot be decoded".into(),
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl ConfigSource for ApiConfig {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ConfigSourceError> {
        self.get(namespace, name).await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ConfigSourceError> {
        self.get(namespace, name).await
    }
}

/// Sends `()` on `changed` whenever a ConfigMap or Secret is created, updated or deleted, and
/// after every (re)list, since anything may have changed while no watch was open. Runs until
/// `changed` is closed.
pub async fn watch_changes(client: Client, changed: mpsc::UnboundedSender<()>) {
    let config_maps =
        watcher(Api::<ConfigMap>::all(client.clone()), watcher::Config::default()).default_backoff();
    let secrets = watcher(Api::<Secret>::all(client), watcher::Config::default()).default_backoff();
    let config_maps = config_maps.map(|e| is_change(&e));
    let secrets = secrets.map(|e| is_change(&e));
    let mut events = std::pin::pin!(futures_util::stream::select(config_maps, secrets));
    while let Some(changed_now) = events.next().await {
        if changed_now && changed.send(()).is_err() {
            return;
        }
    }
}

/// Whether a watch event says something changed (a relist finishing counts).
fn is_change<K>(event: &Result<watcher::Event<K>, watcher::Error>) -> bool {
    match event {
        Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => true,
        Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => false,
        Err(e) => {
            debug!(error = %e, "configuration watch failed; relisting");
            false
        }
    }
}
