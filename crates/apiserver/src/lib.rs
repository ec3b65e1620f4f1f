//! The Kubernetes REST API for the objects a podvisor node owns, over `podvisor-store`.
//!
//! **What it is.** A hyper 1.x HTTP/1.1 server speaking enough of kube-apiserver's API for
//! kubectl and client libraries: discovery (`/version`, `/api`, `/apis`, resource lists), a
//! minimal OpenAPI v3 (so kubectl hands field validation to the server), namespaces, pods (+
//! `status`), services, endpoints, endpointslices, events (core/v1 and events.k8s.io/v1) and
//! nodes; get, list (label and field selectors, limit/continue), watch (resourceVersion,
//! bookmarks, 410 Expired, timeoutSeconds), create, update, patch (JSON, merge, strategic
//! merge), graceful pod deletion and deletecollection; bodies in JSON, YAML and Kubernetes
//! protobuf; `Status` errors with field causes; `Table` output; `/livez`, `/readyz`, `/healthz`.
//!
//! **What it is not.** No TLS or authentication yet (serve on loopback only; the listener is
//! passed in, so a TLS acceptor can wrap it later), no admission beyond podvisor-api's
//! defaulting and validation, no server-side apply, no `pods/log` content (501 Status), no
//! aggregated discovery (kubectl falls back to the legacy documents), and events.k8s.io/v1
//! events are stored apart from core/v1 events rather than converted.
//!
//! **Where to start.** [`ApiServer::new`], [`ApiServer::serve`]; in-process consumers use
//! [`ApiServer::store`] to read, watch and write the same objects directly. Routing and verbs
//! are in the private `handlers` module, tables in [`table`], discovery in
//! [`discovery`].
//!
//! **Cancel safety.** `serve` returns once `shutdown` fires and in-flight requests finished (or
//! the drain deadline passed); open watches end at shutdown. Dropping the `serve` future drops
//! every connection at once.
#![forbid(unsafe_code)]

pub mod body;
pub mod discovery;
mod handlers;
pub mod logs;
pub mod meta;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod selectors;
pub mod status;
pub mod table;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use podvisor_store::{ObjectKey, Store, StoreError};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use handlers::Body;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Accepting a connection failed.
    #[error("accepting a connection failed")]
    Accept(#[source] std::io::Error),
    /// Creating the initial namespaces failed.
    #[error("bootstrapping namespace {name} failed")]
    Bootstrap {
        /// The namespace.
        name: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings of an [`ApiServer`].
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    /// How long in-flight requests may take to finish after shutdown.
    pub drain_deadline: Duration,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            drain_deadline: Duration::from_secs(10),
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

/// The API server: a store plus the HTTP front end.
pub struct ApiServer {
    store: Arc<dyn Store>,
    config: ApiServerConfig,
    logs: Option<Arc<dyn logs::LogSource>>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").field("config", &self.config).finish()
    }
}

impl ApiServer {
    /// An API server over `store`.
    pub fn new(store: Arc<dyn Store>, config: ApiServerConfig) -> Self {
        ApiServer {
            store,
            config,
            logs: None,
        }
    }

    /// Serves `pods/{name}/log` from `source` (without one, logs requests fail).
    pub fn with_logs(mut self, source: Arc<dyn logs::LogSource>) -> Self {
        self.logs = Some(source);
        self
    }

    /// The store, for in-process readers, watchers and writers (the node's pod workers).
    /// Objects written here are seen by API clients and vice versa.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Creates the `default` and `kube-system` namespaces if they do not exist.
    pub async fn bootstrap(&self) -> Result<()> {
        for name in ["default", "kube-system"] {
            let ns = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "uid": meta::new_uid(), "creationTimestamp": meta::rfc3339(meta::now_millis()), "labels": {"kubernetes.io/metadata.name": name}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            match self
                .store
                .create(&ObjectKey::new("namespaces", "", name), ns)
                .await
            {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(source) => {
                    return Err(Error::Bootstrap {
                        name: name.into(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Serves HTTP on `listener` until `shutdown` completes, then stops accepting, ends
    /// watches and waits up to the drain deadline for in-flight requests.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        self.bootstrap().await?;
        let token = CancellationToken::new();
        let state = Arc::new(handlers::State {
            store: self.store.clone(),
            shutdown: token.clone(),
            bookmark_interval: self.config.bookmark_interval,
            logs: self.logs.clone(),
        });
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let state = state.clone();
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handlers::handle(state, req).await) }
            });
            let conn = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        token.cancel();
        if tokio::time::timeout(self.config.drain_deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests did not finish within the drain deadline");
        }
        Ok(())
    }
}
