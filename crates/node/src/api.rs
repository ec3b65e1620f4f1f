//! The node's Kubernetes API: the embedded store, the API server's listener
//! ([`podvisor_apiserver::setup`]: plain HTTP only on loopback, otherwise TLS with a bearer
//! token), and manifests applied through the API. The node's own requests do not go through the
//! socket: they use a [`kube::Client`] over the API server's in-process handler.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kube::api::{DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client};
use podvisor_api::manifest::{self, FieldValidation};
use podvisor_store::{RedbStore, Store};
use serde_json::Value;

use podvisor_apiserver::setup::{self, Endpoint, SetupError};

/// Why the API could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ApiSetupError {
    /// The store could not be opened.
    #[error("cannot open the store {path}: {source}")]
    Store {
        /// Its file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: podvisor_store::StoreError,
    },
    /// The listener could not be set up.
    #[error(transparent)]
    Listen(#[from] SetupError),
}

/// The embedded store and the bound API listener.
pub struct ApiParts {
    /// The store the API serves and the node's workers use.
    pub store: Arc<dyn Store>,
    /// The listener, its credentials and its URL.
    pub endpoint: Endpoint,
}

impl std::fmt::Debug for ApiParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiParts")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Opens `<data_dir>/store.redb` and binds `listen` ([`podvisor_apiserver::setup::bind`]).
pub async fn open(data_dir: &Path, listen: SocketAddr, tls: bool) -> Result<ApiParts, ApiSetupError> {
    // A data dir that cannot be made shows as the store's error, which names the file.
    std::fs::create_dir_all(data_dir).ok();
    let endpoint = setup::bind(data_dir, listen, tls).await?;
    let path = data_dir.join("store.redb");
    let store = RedbStore::open(&path).map_err(|source| ApiSetupError::Store {
        path: path.clone(),
        source,
    })?;
    // The store holds Secrets: readable by root only.
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot make the store private");
        }
    }
    Ok(ApiParts {
        store: Arc::new(store),
        endpoint,
    })
}

/// Waits until `/readyz` answers, at most `limit`.
pub async fn wait_ready(client: &Client, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        let request = http::Request::get("/readyz").body(Vec::new());
        if let Ok(request) = request
            && client.request_text(request).await.is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Creates every object of the manifest files in `paths` (files, or directories of `*.yaml`,
/// `*.yml`, `*.json`) through the API, like `kubectl create -f`; objects that exist are left as
/// they are. Returns one line per object (`pod/web created`, or why not).
pub async fn apply_paths(client: &Client, paths: &[PathBuf]) -> Vec<String> {
    let mut lines = Vec::new();
    for path in expand(paths) {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                lines.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let objects = match manifest::load(&text, FieldValidation::Strict) {
            Ok(objects) => objects,
            Err(e) => {
                lines.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        for object in objects {
            lines.push(create(client, object_to_value(object)).await);
        }
    }
    lines
}

/// The JSON of a loaded object (the typed kinds serialize with their `apiVersion` and `kind`).
fn object_to_value(object: manifest::Object) -> Value {
    let typed = match object {
        manifest::Object::Pod(p) => serde_json::to_value(p),
        manifest::Object::Service(s) => serde_json::to_value(s),
        manifest::Object::Namespace(n) => serde_json::to_value(n),
        manifest::Object::Other { value, .. } => return value,
    };
    typed.unwrap_or(Value::Null)
}

fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    files
}

/// Creates one object; returns a kubectl-like line.
async fn create(client: &Client, object: Value) -> String {
    let object: DynamicObject = match serde_json::from_value(object) {
        Ok(object) => object,
        Err(e) => return format!("an object cannot be read: {e}"),
    };
    let Some(types) = object.types.clone() else {
        return "an object has no apiVersion and kind".into();
    };
    let name = object.metadata.name.clone().unwrap_or_default();
    let label = format!("{}/{name}", types.kind.to_lowercase());
    let gvk = match GroupVersionKind::try_from(&types) {
        Ok(gvk) => gvk,
        Err(e) => return format!("{label}: {e}"),
    };
    let (resource, capabilities) = match kube::discovery::pinned_kind(client, &gvk).await {
        Ok(found) => found,
        Err(_) => return format!("{label}: kind {} is not served by this node", types.kind),
    };
    let api: Api<DynamicObject> = match capabilities.scope {
        kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &resource),
        kube::discovery::Scope::Namespaced => {
            let ns = object.metadata.namespace.as_deref().unwrap_or("default");
            Api::namespaced_with(client.clone(), ns, &resource)
        }
    };
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => format!("{label} created"),
        Err(kube::Error::Api(e)) if e.code == 409 => format!("{label} unchanged (it exists)"),
        Err(kube::Error::Api(e)) => format!("{label}: {}", e.message),
        Err(e) => format!("{label}: {e}"),
    }
}
