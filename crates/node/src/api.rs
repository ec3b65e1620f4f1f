//! The node's Kubernetes API: the embedded store, the API server's listener and credentials,
//! the kubeconfig for clients, and manifests applied through the API.
//!
//! Plain HTTP without authentication is served only on loopback. Any other address, or
//! loopback with `tls` asked for, gets TLS with the node's CA and a bearer token ([`podvisor_apiserver::pki`]);
//! the kubeconfig then carries the CA and the token. The node's own requests do not go through
//! the socket: they use a [`kube::Client`] over the API server's in-process handler.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kube::api::{DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client};
use podvisor_api::manifest::{self, FieldValidation};
use podvisor_core::corev1::Pod;
use podvisor_store::{RedbStore, Store};
use serde_json::Value;

use podvisor_apiserver::pki::{Pki, PkiError};

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
    /// The URL clients reach the API at (`http://127.0.0.1:PORT`, `https://ADDR`).
    pub url: String,
}

impl std::fmt::Debug for ApiParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiParts")
            .field("addr", &self.addr)
            .field("url", &self.url)
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
    let (url, server_tls) = match &pki {
        Some(pki) => (
            format!("https://{target}"),
            Some(pki.server_config().map_err(pki_error)?),
        ),
        None => (format!("http://{target}"), None),
    };
    Ok(ApiParts {
        store: Arc::new(store),
        listener,
        addr,
        pki,
        server_tls,
        url,
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

/// Writes `<data_dir>/kubeconfig` pointing kubectl at `url`: with TLS, the server is
/// `https://ADDR`, the cluster trusts the node's CA (`certificate-authority-data`) and the user
/// sends the token (the file is then mode 0600, like the token itself).
pub fn write_kubeconfig(data_dir: &Path, url: &str, pki: Option<&Pki>) -> std::io::Result<PathBuf> {
    use base64::Engine as _;
    let path = data_dir.join("kubeconfig");
    let server = url;
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
    podvisor_apiserver::pki::write_file_with_mode(&path, text.as_bytes(), mode)?;
    Ok(path)
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

/// Keeps the API's pods in line with the static manifests: a pod per manifest (marked with
/// [`STATIC_POD_ANNOTATION`]); an edited manifest's pod is deleted and created again; a removed
/// manifest's pod is deleted (gracefully). Returns whether everything is in line.
pub async fn sync_static_pods(
    client: &Client,
    desired: &[Pod],
    previous: &mut BTreeMap<(String, String), String>,
) -> bool {
    let mut converged = true;
    let mut now: BTreeMap<(String, String), String> = BTreeMap::new();
    let hash_of = |pod: &Pod| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(STATIC_POD_ANNOTATION))
            .cloned()
    };
    for pod in desired {
        let ns = podvisor_core::object::namespace_of(&pod.metadata).to_string();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let hash = pod.metadata.uid.clone().unwrap_or_default();
        now.insert((ns.clone(), name.clone()), hash.clone());
        let api = Api::<Pod>::namespaced(client.clone(), &ns);
        match api.get_opt(&name).await {
            Ok(None) => {
                let mut object = pod.clone();
                object.metadata.uid = None;
                object.metadata.creation_timestamp = None;
                object
                    .metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(STATIC_POD_ANNOTATION.into(), hash);
                if api.create(&PostParams::default(), &object).await.is_err() {
                    converged = false;
                }
            }
            Ok(Some(existing)) => {
                if hash_of(&existing).as_deref() != Some(hash.as_str()) {
                    converged = false;
                    if existing.metadata.deletion_timestamp.is_none() {
                        let _ = api.delete(&name, &DeleteParams::default()).await;
                    }
                }
            }
            Err(_) => converged = false,
        }
    }
    for ((ns, name), hash) in previous.iter() {
        if now.contains_key(&(ns.clone(), name.clone())) {
            continue;
        }
        let api = Api::<Pod>::namespaced(client.clone(), ns);
        if let Ok(Some(existing)) = api.get_opt(name).await {
            let ours = hash_of(&existing).as_deref() == Some(hash.as_str());
            if ours && existing.metadata.deletion_timestamp.is_none() {
                let _ = api.delete(name, &DeleteParams::default()).await;
            }
        }
    }
    *previous = now;
    converged
}
