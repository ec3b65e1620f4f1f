//! The node's Kubernetes API: the embedded store, the API server on loopback, the kubeconfig
//! for clients, and manifests applied through the API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use podvisor_api::manifest::{self, FieldValidation};
use podvisor_core::corev1::Pod;
use podvisor_store::{RedbStore, Store};
use serde_json::{Value, json};

use crate::client::{self, object_path};

/// The annotation that marks a pod made from a static manifest, with the manifest's hash.
pub const STATIC_POD_ANNOTATION: &str = "podvisor.io/static-manifest";

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
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Only loopback is served without TLS and authentication.
    #[error(
        "--listen {addr}: only loopback addresses are served for now; serving off-host needs TLS and \
         bearer-token authentication, which are not implemented yet"
    )]
    OffHost {
        /// The address.
        addr: SocketAddr,
    },
}

/// The embedded store and the bound API listener.
pub struct ApiParts {
    /// The store the API serves and the node's workers use.
    pub store: Arc<dyn Store>,
    /// The bound listener.
    pub listener: tokio::net::TcpListener,
    /// Its address (with the real port when 0 was asked for).
    pub addr: SocketAddr,
}

/// Opens `<data_dir>/store.redb` and binds `listen`.
pub async fn open(data_dir: &Path, listen: SocketAddr) -> Result<ApiParts, ApiSetupError> {
    if !listen.ip().is_loopback() {
        return Err(ApiSetupError::OffHost { addr: listen });
    }
    let path = data_dir.join("store.redb");
    let _ = std::fs::create_dir_all(data_dir);
    let store = RedbStore::open(&path).map_err(|source| ApiSetupError::Store {
        path: path.clone(),
        source,
    })?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ApiSetupError::Listen { addr: listen, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ApiSetupError::Listen { addr: listen, source })?;
    Ok(ApiParts {
        store: Arc::new(store),
        listener,
        addr,
    })
}

/// Waits until `/readyz` answers 200, at most `limit`.
pub async fn wait_ready(addr: SocketAddr, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Ok((200, _)) = client::request(addr, "GET", "/readyz", None).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Writes `<data_dir>/kubeconfig` pointing kubectl at the API.
pub fn write_kubeconfig(data_dir: &Path, addr: SocketAddr) -> std::io::Result<PathBuf> {
    let path = data_dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: podvisor\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: podvisor\n  context:\n    cluster: podvisor\n    namespace: default\n    user: podvisor\n\
         current-context: podvisor\nusers:\n- name: podvisor\n  user: {{}}\n"
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Creates every object of the manifest files in `paths` (files, or directories of `*.yaml`,
/// `*.yml`, `*.json`) through the API, like `kubectl create -f`; objects that exist are left as
/// they are. Returns one line per object (`pod/web created`, or why not).
pub async fn apply_paths(addr: SocketAddr, paths: &[PathBuf]) -> Vec<String> {
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
            lines.push(create(addr, object_to_value(object)).await);
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

/// POSTs one object; returns a kubectl-like line.
async fn create(addr: SocketAddr, object: Value) -> String {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1").to_owned();
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
    let label = format!("{}/{name}", kind.to_lowercase());
    let Some(path) = object_path(&api_version, &kind, namespace.as_deref(), "") else {
        return format!("{label}: kind {kind} is not served by this node");
    };
    match client::request(addr, "POST", &path, Some(&object)).await {
        Ok((201 | 200, _)) => format!("{label} created"),
        Ok((409, _)) => format!("{label} unchanged (it exists)"),
        Ok((_, status)) => format!("{label}: {}", status["message"].as_str().unwrap_or("rejected")),
        Err(e) => format!("{label}: {e}"),
    }
}

/// Keeps the API's pods in line with the static manifests: a pod per manifest (marked with
/// [`STATIC_POD_ANNOTATION`]); an edited manifest's pod is deleted and created again; a removed
/// manifest's pod is deleted (gracefully). Returns whether everything is in line.
pub async fn sync_static_pods(
    addr: SocketAddr,
    desired: &[Pod],
    previous: &mut BTreeMap<(String, String), String>,
) -> bool {
    let mut converged = true;
    let mut now: BTreeMap<(String, String), String> = BTreeMap::new();
    for pod in desired {
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let hash = pod.metadata.uid.clone().unwrap_or_default();
        now.insert((ns.clone(), name.clone()), hash.clone());
        let Some(path) = object_path("v1", "Pod", Some(&ns), &name) else {
            continue;
        };
        match client::request(addr, "GET", &path, None).await {
            Ok((404, _)) => {
                let mut object = serde_json::to_value(pod).unwrap_or(Value::Null);
                object["apiVersion"] = json!("v1");
                object["kind"] = json!("Pod");
                object["metadata"]["uid"] = Value::Null;
                object["metadata"]["creationTimestamp"] = Value::Null;
                object["metadata"]["annotations"][STATIC_POD_ANNOTATION] = json!(hash);
                let collection = object_path("v1", "Pod", Some(&ns), "").unwrap_or_default();
                if !matches!(
                    client::request(addr, "POST", &collection, Some(&object)).await,
                    Ok((201 | 200, _))
                ) {
                    converged = false;
                }
            }
            Ok((200, existing)) => {
                let same = existing["metadata"]["annotations"][STATIC_POD_ANNOTATION].as_str()
                    == Some(hash.as_str());
                if !same {
                    converged = false;
                    if existing["metadata"]["deletionTimestamp"].is_null() {
                        let _ = client::request(addr, "DELETE", &path, None).await;
                    }
                }
            }
            _ => converged = false,
        }
    }
    for ((ns, name), hash) in previous.iter() {
        if now.contains_key(&(ns.clone(), name.clone())) {
            continue;
        }
        let Some(path) = object_path("v1", "Pod", Some(ns), name) else {
            continue;
        };
        if let Ok((200, existing)) = client::request(addr, "GET", &path, None).await {
            let ours =
                existing["metadata"]["annotations"][STATIC_POD_ANNOTATION].as_str() == Some(hash.as_str());
            if ours && existing["metadata"]["deletionTimestamp"].is_null() {
                let _ = client::request(addr, "DELETE", &path, None).await;
            }
        }
    }
    *previous = now;
    converged
}
