//! The node's Kubernetes API: the embedded store, the API server's listener
//! ([`podvisor_apiserver::setup`]: plain HTTP only on loopback, otherwise TLS with a bearer
//! token), and waiting for the API to answer. The node's own requests do not go through the
//! socket: they use a [`kube::Client`] over the API server's in-process handler.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use podvisor_store::{RedbStore, Store};

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
    /// The kubeconfig of the API to join could not be read or used.
    #[error("cannot use the kubeconfig {path}: {message}")]
    Join {
        /// Its file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An agent without `--pod-cidr` got no pod CIDR from the control plane.
    #[error(transparent)]
    PodCidr(#[from] podvisor_kubelet::cluster::node_status::PodCidrError),
    /// The cluster CIDR is not one.
    #[error("--cluster-cidr: {0}")]
    ClusterCidr(#[from] podvisor_core::net::CidrError),
}

/// How long an agent without `--pod-cidr` waits for its node's pod CIDR.
pub const POD_CIDR_WAIT: Duration = Duration::from_secs(60);

/// An agent's pod network when it has no `--pod-cidr`: its Node is registered without one and
/// the /24 the control plane's node IPAM gives it is awaited ([`POD_CIDR_WAIT`]).
pub async fn pod_cidr_from_api(
    client: &Client,
    config: &crate::NodeConfig,
) -> Result<podvisor_core::net::Ipv4Cidr, ApiSetupError> {
    let facts = podvisor_kubelet::cluster::node_status::NodeFacts {
        name: config.node_name.clone(),
        address: config.node_ip.clone(),
        pod_cidr: None,
        data_dir: config.data_dir.clone(),
        labels: Default::default(),
        kubelet_port: None,
        max_pods: config.max_pods,
    };
    let cidr =
        podvisor_kubelet::cluster::node_status::pod_cidr_from_api(client, &facts, POD_CIDR_WAIT).await?;
    tracing::info!(node = %config.node_name, %cidr, "the node's pod CIDR, from the control plane");
    Ok(cidr)
}

/// The all-in-one node's pod network when it has no `--pod-cidr`: the first /24 of its
/// cluster CIDR (`10.88.0.0/24`), which its node IPAM then counts as used.
pub fn first_node_range(config: &crate::NodeConfig) -> Result<podvisor_core::net::Ipv4Cidr, ApiSetupError> {
    let cluster =
        podvisor_core::net::Ipv4Cidr::parse(config.cluster_cidr.as_deref().unwrap_or("10.88.0.0/16"))?;
    Ok(podvisor_controllers::node_ipam::first_range(cluster))
}

/// The embedded store and the bound API listener.
pub struct ApiParts {
    /// The store the API serves and the node's workers use.
    pub store: Arc<dyn Store>,
    /// The listener, its credentials and its URL.
    pub endpoint: Endpoint,
    /// Says when the store file is closed (every clone of the store, watch streams included,
    /// dropped), so a node started again in this process can open it.
    pub closed: podvisor_store::Closed,
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
    let store = open_store(&path).await.map_err(|source| ApiSetupError::Store {
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
        closed: store.closed(),
        store: Arc::new(store),
        endpoint,
    })
}

/// How long [`open`] waits for a store file another holder still has open.
const STORE_BUSY_WAIT: Duration = Duration::from_secs(10);

/// Opens the store at `path`, waiting up to [`STORE_BUSY_WAIT`] while the file is still locked
/// (a node stopping in another process, or in this one with a child process forked before it
/// closed the file and not yet exec'd).
async fn open_store(path: &Path) -> Result<RedbStore, podvisor_store::StoreError> {
    let deadline = tokio::time::Instant::now() + STORE_BUSY_WAIT;
    loop {
        match RedbStore::open(path) {
            Err(e) if e.is_locked() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// A client of the API server `kubeconfig` names (its current context).
pub async fn join(kubeconfig: &Path) -> Result<Client, ApiSetupError> {
    let config = client_config(kubeconfig).await?;
    Client::try_from(config).map_err(|e| join_error(kubeconfig, e.to_string()))
}

/// A client of the API server `kubeconfig` names, as the node `node_name`: a join token
/// (`join.kubeconfig`) is exchanged for the node's own credential first, as kubelet TLS
/// bootstrap exchanges a bootstrap token for a client certificate; any other kubeconfig is
/// used as it is (a server that issues no node credentials answers 404, an administrator's
/// token may do everything anyway). Waits up to [`JOIN_WAIT`] for the API to answer.
///
/// Returns the client and, with a node credential, the token the API servers present to this
/// node's kubelet endpoint.
pub async fn join_as_node(
    kubeconfig: &Path,
    node_name: &str,
) -> Result<(Client, Option<String>), ApiSetupError> {
    let mut config = client_config(kubeconfig).await?;
    let client = Client::try_from(config.clone()).map_err(|e| join_error(kubeconfig, e.to_string()))?;
    let body = serde_json::json!({"nodeName": node_name})
        .to_string()
        .into_bytes();
    let deadline = tokio::time::Instant::now() + JOIN_WAIT;
    let answer = loop {
        let request = http::Request::post(podvisor_apiserver::authz::NODE_CREDENTIALS_PATH)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .map_err(|e| join_error(kubeconfig, e.to_string()))?;
        match client.request::<serde_json::Value>(request).await {
            Ok(answer) => break Some(answer),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => break None,
            Err(kube::Error::Api(e)) if e.code == 401 => {
                return Err(join_error(
                    kubeconfig,
                    format!("the API refused its token: {}", e.message),
                ));
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(join_error(kubeconfig, format!("the API did not answer: {e}")));
            }
            Err(e) => {
                tracing::debug!(error = %e, "asking for the node's credential; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let Some(token) = answer.as_ref().and_then(|a| a["token"].as_str()) else {
        return Ok((client, None));
    };
    let kubelet_token = answer
        .as_ref()
        .and_then(|a| a["kubeletToken"].as_str())
        .map(str::to_owned);
    config.auth_info.token = Some(token.to_owned().into());
    let client = Client::try_from(config).map_err(|e| join_error(kubeconfig, e.to_string()))?;
    Ok((client, kubelet_token))
}

/// How long [`join_as_node`] waits for the API to answer.
pub const JOIN_WAIT: Duration = Duration::from_secs(60);

fn join_error(kubeconfig: &Path, message: String) -> ApiSetupError {
    ApiSetupError::Join {
        path: kubeconfig.to_owned(),
        message,
    }
}

/// The client configuration of `kubeconfig`'s current context.
async fn client_config(kubeconfig: &Path) -> Result<kube::Config, ApiSetupError> {
    let file =
        kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| join_error(kubeconfig, e.to_string()))?;
    let options = kube::config::KubeConfigOptions::default();
    kube::Config::from_custom_kubeconfig(file, &options)
        .await
        .map_err(|e| join_error(kubeconfig, e.to_string()))
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
