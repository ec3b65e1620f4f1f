//! `podvisor server`: the control plane without pods, on a store shared with other servers
//! (etcd). Every server serves the whole API; the control loops run on one leader at a time
//! (`podvisor_controllers::leader`), and agents (`podvisor agent`) run the pods.
//!
//! At start the server takes the cluster's shared credentials from the store (or makes and
//! stores them, [`podvisor_apiserver::cluster_credentials`]), signs its own serving certificate
//! with the shared CA, serves HTTPS with the administrator's token and the agents' join token
//! ([`podvisor_apiserver::authz`]), and once the API answers writes `<data-dir>/kubeconfig`
//! (administrator) and `<data-dir>/join.kubeconfig` (agents).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use podvisor_apiserver::auth::Authenticator;
use podvisor_apiserver::setup::{self, Endpoint};
use podvisor_apiserver::{ApiServer, ApiServerConfig, ServiceRanges};
use podvisor_controllers::leader::LeaderElectionConfig;
use podvisor_controllers::{Controllers, ControllersConfig};
use podvisor_store::Store;
use tracing::info;

/// What a server is told on its command line.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where the server keeps its credentials and kubeconfigs.
    pub data_dir: PathBuf,
    /// The address the API listens on (always HTTPS with a bearer token).
    pub listen: SocketAddr,
    /// The service CIDR ClusterIPs come from (`10.96.0.0/16`); the same on every server.
    pub service_cidr: String,
    /// The cluster's pod network (`10.88.0.0/16`): every Node without a `spec.podCIDR` gets
    /// the next free /24 of it (node IPAM, on the elected leader).
    pub cluster_cidr: String,
    /// The API server's connection, request and wait budgets.
    pub api_limits: podvisor_apiserver::limits::Limits,
    /// This server's candidacy for the control loops' Leases: its identity (`<host>_<uuid>`)
    /// and the timing (upstream's 15/10/2 s); the Lease names are the controllers'.
    pub leader_election: LeaderElectionConfig,
    /// The node lifecycle controller's timing (`--node-monitor-grace-period`).
    pub node_lifecycle: podvisor_controllers::node_lifecycle::NodeLifecycleConfig,
}

impl ServerConfig {
    /// The defaults, with state in `data_dir`, listening on `listen`.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> ServerConfig {
        let identity = format!("{}_{}", crate::node::default_node_name(), uuid::Uuid::new_v4());
        ServerConfig {
            data_dir: data_dir.into(),
            listen,
            service_cidr: "10.96.0.0/16".into(),
            cluster_cidr: "10.88.0.0/16".into(),
            api_limits: podvisor_apiserver::limits::Limits::default(),
            leader_election: LeaderElectionConfig::new("", identity),
            node_lifecycle: Default::default(),
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The shared credentials could not be set up.
    #[error(transparent)]
    Credentials(#[from] Box<podvisor_apiserver::cluster_credentials::CredentialsError>),
    /// The listener could not be set up.
    #[error(transparent)]
    Listen(#[from] Box<setup::SetupError>),
    /// The listener came without TLS credentials.
    #[error("the API on {0} has no TLS credentials")]
    NoTls(SocketAddr),
    /// The service CIDR is not valid.
    #[error("--service-cidr: {0}")]
    ServiceCidr(String),
    /// The cluster CIDR is not valid.
    #[error("--cluster-cidr: {0}")]
    ClusterCidr(String),
    /// The initial namespaces could not be created.
    #[error("cannot create the initial namespaces: {0}")]
    Bootstrap(#[from] Box<podvisor_apiserver::Error>),
    /// The API did not answer in time.
    #[error("the API on {0} did not become ready")]
    NotReady(SocketAddr),
    /// A kubeconfig could not be written.
    #[error("cannot write {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Serves the API on `store` and runs the elected control loops until `shutdown` completes;
/// then releases its Leases and stops serving. `ready` is called with the admin kubeconfig's
/// path once the API answers and both kubeconfigs are written.
pub async fn run(
    config: ServerConfig,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(&str),
) -> Result<(), ServerError> {
    crate::node::tune_process_memory();
    std::fs::create_dir_all(&config.data_dir).ok();
    podvisor_apiserver::cluster_credentials::share(&*store, &config.data_dir, client_ip(config.listen.ip()))
        .await
        .map_err(Box::new)?;
    let Endpoint {
        listener,
        addr,
        pki,
        server_tls,
        url,
    } = setup::bind(&config.data_dir, config.listen, true)
        .await
        .map_err(Box::new)?;
    let (Some(pki), Some(server_tls)) = (pki, server_tls) else {
        return Err(ServerError::NoTls(addr));
    };
    let ranges = ServiceRanges::with_cidr(&config.service_cidr)
        .map_err(|e| ServerError::ServiceCidr(e.to_string()))?;
    let cluster_cidr = podvisor_core::net::Ipv4Cidr::parse(&config.cluster_cidr)
        .map_err(|e| ServerError::ClusterCidr(e.to_string()))?;
    let api_config = ApiServerConfig {
        service_ranges: ranges.clone(),
        limits: config.api_limits.clone(),
        ..ApiServerConfig::default()
    };
    // Join tokens are Secrets in the store, read when agents present them.
    let tokens = store.clone();
    let server = ApiServer::new(store, api_config)
        .with_tls(server_tls)
        .with_authenticator(Authenticator::for_cluster(&pki, tokens.clone()));
    server.bootstrap().await.map_err(Box::new)?;
    let serving = server.spawn(listener);
    let client = kube::Client::new(serving.handler(), "default");
    if !crate::api::wait_ready(&client, Duration::from_secs(10)).await {
        serving.stop().await;
        return Err(ServerError::NotReady(addr));
    }
    let admin = config.data_dir.join("kubeconfig");
    let join = config.data_dir.join("join.kubeconfig");
    let written = match podvisor_apiserver::bootstrap_tokens::ensure_join_token(&*tokens).await {
        Ok(token) => setup::write_join_kubeconfig(&join, &url, &pki, &token),
        Err(e) => Err(std::io::Error::other(e)),
    }
    .and_then(|_| setup::write_kubeconfig(&admin, &url, Some(&pki)));
    if let Err(source) = written {
        serving.stop().await;
        return Err(ServerError::Kubeconfig { path: admin, source });
    }
    info!(%url, identity = %config.leader_election.identity, "API serving");
    ready(&url);
    let controllers = Controllers::spawn(
        &client,
        &ControllersConfig {
            kubernetes_service: Some((ranges.first(), addr)),
            leader_election: Some(config.leader_election.clone()),
            node_lifecycle: config.node_lifecycle.clone(),
            cluster_cidr: Some(cluster_cidr),
        },
    );
    shutdown.await;
    // Leases are released before the API stops, so another server leads at once.
    controllers.stop().await;
    drop(client);
    drop(tokens);
    serving.stop().await;
    Ok(())
}

/// The address clients use for a listener on `ip`: loopback for the unspecified address.
fn client_ip(ip: IpAddr) -> IpAddr {
    if ip.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        ip
    }
}
