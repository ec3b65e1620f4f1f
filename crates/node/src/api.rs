//! The node's Kubernetes API: the embedded store, the API server's listener and credentials,
//! the kubeconfig for clients, and manifests applied through the API.
//!
//! Plain HTTP without authentication is served only on loopback. Any other address, or
//! loopback with `tls` asked for, gets TLS with the node's CA and a bearer token ([`crate::pki`]);
//! the kubeconfig then carries the CA and the token, and the node's own requests use both.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use podvisor_api::manifest::{self, FieldValidation};
use podvisor_core::corev1::Pod;
use podvisor_store::{RedbStore, Store};
use serde_json::{Value, json};

use crate::client::{self, Endpoint, object_path};
use crate::pki::{Pki, PkiError};

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
    /// The TLS credentials could not be loaded or made.
    #[error("cannot set up TLS for --listen {addr}")]
    Pki {
        /// The address.
        addr: SocketAddr,
        /// The cause (naming the file).
        #[source]
        source: PkiError,
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
    /// The CA, serving certificate and token when the API serves TLS.
    pub pki: Option<Pki>,
    /// The API server's TLS settings (the serving certificate) when it serves TLS.
    pub server_tls: Option<rustls::ServerConfig>,
    /// How the node's own requests reach the API (TLS and the token when `pki` is set).
    pub endpoint: Endpoint,
}

impl std::fmt::Debug for ApiParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiParts")
            .field("addr", &self.addr)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Opens `<data_dir>/store.redb` and binds `listen`. A loopback address is served over plain
/// HTTP without authentication unless `tls` is set; any other address (and loopback with `tls`)
/// is served over TLS with a bearer token, with the credentials of `<data_dir>/pki/`.
pub async fn open(data_dir: &Path, listen: SocketAddr, tls: bool) -> Result<ApiParts, ApiSetupError> {
    let secure = tls || !listen.ip().is_loopback();
    let pki = if secure {
        let ip = client_ip(listen.ip());
        Some(
            Pki::load_or_create(data_dir, ip)
                .map_err(|source| ApiSetupError::Pki { addr: listen, source })?,
        )
    } else {
        None
    };
    let path = data_dir.join("store.redb");
    let _ = std::fs::create_dir_all(data_dir);
    let store = RedbStore::open(&path).map_err(|source| ApiSetupError::Store {
        path: path.clone(),
        source,
    })?;
    // The store holds Secrets: readable by root only.
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ApiSetupError::Listen { addr: listen, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ApiSetupError::Listen { addr: listen, source })?;
    // Clients reach a wildcard listener on loopback (the certificate names 127.0.0.1 and ::1).
    let target = SocketAddr::new(client_ip(addr.ip()), addr.port());
    let pki_error = |source| ApiSetupError::Pki { addr: listen, source };
    let (endpoint, server_tls) = match &pki {
        Some(pki) => {
            let client = pki.client_config().map_err(pki_error)?;
            let server = pki.server_config().map_err(pki_error)?;
            (
                Endpoint::tls(target, client, pki.token().to_owned()),
                Some(server),
            )
        }
        None => (Endpoint::plain(target), None),
    };
    Ok(ApiParts {
        store: Arc::new(store),
        listener,
        addr,
        pki,
        server_tls,
        endpoint,
    })
}

/// The address clients use for a listener on `ip`: loopback for the unspecified address.
fn client_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// Waits until `/readyz` answers 200, at most `limit`.
pub async fn wait_ready(endpoint: &Endpoint, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Ok((200, _)) = client::request(endpoint, "GET", "/readyz", None).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Writes `<data_dir>/kubeconfig` pointing kubectl at `endpoint`: with TLS, the server is
/// `https://ADDR`, the cluster trusts the node's CA (`certificate-authority-data`) and the user
/// sends the token (the file is then mode 0600, like the token itself).
pub fn write_kubeconfig(data_dir: &Path, endpoint: &Endpoint, pki: Option<&Pki>) -> std::io::Result<PathBuf> {
    use base64::Engine as _;
    let path = data_dir.join("kubeconfig");
    let server = endpoint.url();
    let (ca, user, mode) = match pki {
        Some(pki) => (
            format!(
                "\n    certificate-authority-data: {}",
                base64::engine::general_purpose::STANDARD.encode(pki.ca_pem())
            ),
            format!("\n    token: {}", pki.token()),
            0o600,
        ),
        None => (String::new(), " {}".to_owned(), 0o644),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: podvisor\n  cluster:\n    server: {server}{ca}\n\
         contexts:\n- name: podvisor\n  context:\n    cluster: podvisor\n    namespace: default\n    user: podvisor\n\
         current-context: podvisor\nusers:\n- name: podvisor\n  user:{user}\n"
    );
    crate::pki::write_file_with_mode(&path, text.as_bytes(), mode)?;
    Ok(path)
}

/// Creates every object of the manifest files in `paths` (files, or directories of `*.yaml`,
/// `*.yml`, `*.json`) through the API, like `kubectl create -f`; objects that exist are left as
/// they are. Returns one line per object (`pod/web created`, or why not).
pub async fn apply_paths(endpoint: &Endpoint, paths: &[PathBuf]) -> Vec<String> {
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
            lines.push(create(endpoint, object_to_value(object)).await);
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
async fn create(endpoint: &Endpoint, object: Value) -> String {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1").to_owned();
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
    let label = format!("{}/{name}", kind.to_lowercase());
    let Some(path) = object_path(&api_version, &kind, namespace.as_deref(), "") else {
        return format!("{label}: kind {kind} is not served by this node");
    };
    match client::request(endpoint, "POST", &path, Some(&object)).await {
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
    endpoint: &Endpoint,
    desired: &[Pod],
    previous: &mut BTreeMap<(String, String), String>,
) -> bool {
    let mut converged = true;
    let mut now: BTreeMap<(String, String), String> = BTreeMap::new();
    for pod in desired {
        let ns = podvisor_core::object::namespace_of(&pod.metadata).to_string();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let hash = pod.metadata.uid.clone().unwrap_or_default();
        now.insert((ns.clone(), name.clone()), hash.clone());
        let Some(path) = object_path("v1", "Pod", Some(&ns), &name) else {
            continue;
        };
        match client::request(endpoint, "GET", &path, None).await {
            Ok((404, _)) => {
                let mut object = serde_json::to_value(pod).unwrap_or(Value::Null);
                object["apiVersion"] = json!("v1");
                object["kind"] = json!("Pod");
                object["metadata"]["uid"] = Value::Null;
                object["metadata"]["creationTimestamp"] = Value::Null;
                object["metadata"]["annotations"][STATIC_POD_ANNOTATION] = json!(hash);
                let collection = object_path("v1", "Pod", Some(&ns), "").unwrap_or_default();
                if !matches!(
                    client::request(endpoint, "POST", &collection, Some(&object)).await,
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
                        let _ = client::request(endpoint, "DELETE", &path, None).await;
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
        if let Ok((200, existing)) = client::request(endpoint, "GET", &path, None).await {
            let ours =
                existing["metadata"]["annotations"][STATIC_POD_ANNOTATION].as_str() == Some(hash.as_str());
            if ours && existing["metadata"]["deletionTimestamp"].is_null() {
                let _ = client::request(endpoint, "DELETE", &path, None).await;
            }
        }
    }
    *previous = now;
    converged
}
