//! The Kubernetes REST API for the objects a podvisor node owns, over `podvisor-store`.
//!
//! **What it is.** A hyper 1.x HTTP/1.1 server speaking enough of kube-apiserver's API for
//! kubectl and client libraries: discovery (`/version`, `/api`, `/apis`, resource lists),
//! OpenAPI v3 and v2 with the served kinds' generated schemas ([`openapi`]: `kubectl explain`,
//! field validation by the server), the self-subject reviews of `kubectl auth` ([`reviews`]),
//! namespaces (+
//! `status`, `finalize`), pods (+ `status`, `log`, `binding`), services, endpoints, endpointslices, events (core/v1 and events.k8s.io/v1),
//! nodes and leases; get, list (label and field selectors, limit/continue), watch
//! (resourceVersion, bookmarks, 410 Expired, timeoutSeconds), create, update, patch (JSON,
//! merge, strategic merge), graceful pod deletion, deletecollection, server-side dry runs and
//! the API side of namespace termination ([`namespaces`]; the namespace controller that empties
//! them is `podvisor-controllers`'); bodies in JSON, YAML and Kubernetes
//! protobuf; `Status` errors with field causes; `Table` output; `/livez`, `/readyz`, `/healthz`;
//! `/metrics` with kube-apiserver's request metrics ([`metrics`], [`ApiServer::with_metrics`]).
//!
//! **Security.** Plain HTTP and no authentication by default, for loopback. [`ApiServer::with_tls`]
//! serves TLS (rustls) instead, and [`ApiServer::with_bearer_tokens`] requires a bearer token on
//! every request but anonymous health checks (401 `Unauthorized` Status otherwise, see
//! [`auth`]); off loopback the node uses both.
//!
//! **Budgets.** Every input is bounded ([`limits`], [`body`], [`patch`], [`options`]): connection
//! count, header-read and idle timeouts, requests in flight (429), body and object sizes (413),
//! YAML depth, JSON patch operations and copies, strictly parsed options with checked
//! arithmetic, a bounded wait for future resourceVersions (504), shared initial watch lists
//! and dropped stalled watchers. The README's "Limits" section lists every value.
//!
//! **What it is not.** No client certificates, no RBAC (fixed roles, [`authz`]), no admission beyond podvisor-api's
//! defaulting and validation, no server-side apply, no `pods/log` content (501 Status), no
//! aggregated discovery (kubectl falls back to the legacy documents). events.k8s.io/v1 Events
//! are the core/v1 Events, converted ([`events`]).
//!
//! **Shape.** The verbs (the private `handlers` module: routing and the request context,
//! `read.rs` for get/list/watch, `write.rs` for create/update/patch/delete) know no kind. Every
//! kind's rules are its [`strategy::Strategy`] (schema, defaulting, validation, server-set
//! fields, address allocation, deletion rules, field selectors, table columns and rows,
//! storage conversion), and each entry of [`resources::RESOURCES`] names its strategy: the one
//! registry. [`admission`] runs a create or update through a kind's rules as a plain library
//! call ([`admission::admit_create`], [`admission::admit_update`]), which the verbs use before
//! they write. Each [`ApiServer`] has its own Service address [`Allocator`]. To add a kind:
//! write its strategy and add its [`resources::Resource`] naming it (ARCHITECTURE.md lists the
//! steps).
//!
//! **Where to start.** [`ApiServer::new`], [`ApiServer::serve`]; in-process consumers use
//! [`ApiServer::store`] to read, watch and write the same objects directly. Kinds in
//! [`strategy`] and [`resources`], admission in [`admission`], tables in [`table`], discovery
//! in [`discovery`].
//!
//! **Cancel safety.** `serve` returns once `shutdown` fires and in-flight requests finished (or
//! the drain deadline passed); open watches end at shutdown. Dropping the `serve` future drops
//! every connection at once.
#![forbid(unsafe_code)]

pub mod admission;
pub mod alloc;
pub mod auth;
pub mod authz;
pub mod body;
pub mod bootstrap_tokens;
pub mod cluster_credentials;
pub mod discovery;
pub mod events;
mod handlers;
mod initial;
pub mod kubelet;
pub mod limits;
mod list_types;
pub mod logs;
mod managed;
pub mod meta;
pub mod metrics;
pub mod namespaces;
pub mod openapi;
pub mod options;
pub mod patch;
pub mod pki;
mod pod_streams;
pub mod protobuf;
pub mod reservations;
pub mod resource_metrics;
pub mod resources;
pub mod reviews;
pub mod selectors;
pub mod setup;
pub mod status;
pub mod strategy;
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

pub use alloc::{Allocator, ServiceRanges};
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
    /// The service CIDR and node-port range Services get their addresses from.
    pub service_ranges: alloc::ServiceRanges,
    /// Connection, request and wait budgets ([`limits`]).
    pub limits: limits::Limits,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            drain_deadline: Duration::from_secs(10),
            bookmark_interval: Duration::from_secs(5),
            service_ranges: alloc::ServiceRanges::default(),
            limits: limits::Limits::default(),
        }
    }
}

/// The API server: a store plus the HTTP front end.
pub struct ApiServer {
    store: Arc<dyn Store>,
    config: ApiServerConfig,
    logs: Option<Arc<dyn logs::LogSource>>,
    /// Exec, attach and port-forward into the pods of this server's own node.
    streams: Option<Arc<dyn podvisor_core::streams::PodStreams>>,
    /// The node this server runs pods on and its usage counters (`kubectl top`).
    usage: Option<(String, Arc<dyn podvisor_core::usage::UsageSource>)>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    auth: Option<Arc<auth::Authenticator>>,
    metrics: Option<metrics::Served>,
    /// What every request shares, built on first use (by [`ApiServer::handler`] or
    /// [`ApiServer::serve`]): configure the server before either.
    state: std::sync::OnceLock<Arc<handlers::State>>,
    /// This server's Service address allocator (not shared with other servers).
    allocator: Arc<alloc::Allocator>,
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
            allocator: Arc::new(alloc::Allocator::new(config.service_ranges.clone())),
            config,
            logs: None,
            usage: None,
            streams: None,
            tls: None,
            auth: None,
            metrics: None,
            state: std::sync::OnceLock::new(),
        }
    }

    fn state(&self) -> Arc<handlers::State> {
        self.state
            .get_or_init(|| {
                Arc::new(handlers::State {
                    store: self.store.clone(),
                    shutdown: CancellationToken::new(),
                    bookmark_interval: self.config.bookmark_interval,
                    logs: self.logs.clone(),
                    streams: self.streams.clone(),
                    resource_metrics: Arc::new(resource_metrics::ResourceMetrics::new(self.usage.clone())),
                    allocator: self.allocator.clone(),
                    metrics: self.metrics.clone(),
                    limits: self.config.limits.clone(),
                    initial_lists: initial::InitialLists::default(),
                    event_lines: initial::EventLines::default(),
                    node_key: self.auth.as_ref().and_then(|a| a.node_key().map(str::to_owned)),
                })
            })
            .clone()
    }

    /// The request handler, for clients in the same process: a [`tower_service::Service`] that
    /// answers HTTP requests exactly as the served API does (routing, admission, watches,
    /// metrics), without a socket, authentication or the in-flight limits, which are the
    /// front door's. `kube::Client::new(server.handler(), "default")` makes a client of it.
    /// Watches it opens end when [`ApiServer::serve`] shuts down.
    pub fn handler(&self) -> Handler {
        Handler { state: self.state() }
    }

    /// Serves HTTPS with `config` instead of plain HTTP. The server speaks HTTP/1.1, so
    /// `config` gets `http/1.1` as its ALPN protocol when it names none. A connection whose
    /// handshake fails or takes longer than [`limits::Limits::tls_handshake_timeout`] is dropped.
    pub fn with_tls(mut self, mut config: rustls::ServerConfig) -> Self {
        if config.alpn_protocols.is_empty() {
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
        }
        self.tls = Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        self
    }

    /// Requires `Authorization: Bearer <token>` with one of `tokens` (administrators) on every
    /// request except anonymous health checks (see [`auth::Authenticator`]).
    pub fn with_bearer_tokens(self, tokens: Vec<String>) -> Self {
        self.with_authenticator(auth::Authenticator::bearer_tokens(tokens))
    }

    /// Authenticates every request with `authenticator`.
    pub fn with_authenticator(mut self, authenticator: auth::Authenticator) -> Self {
        self.auth = Some(Arc::new(authenticator));
        self
    }

    /// Records request metrics into `metrics` and serves `GET /metrics` from `registry` (which
    /// should hold `metrics`, see [`metrics::ApiMetrics::register`]). Without it, `/metrics`
    /// is 404 and nothing is recorded.
    pub fn with_metrics(
        mut self,
        metrics: metrics::ApiMetrics,
        registry: Arc<prometheus_client::registry::Registry>,
    ) -> Self {
        self.metrics = Some((metrics, registry));
        self
    }

    /// Replaces the server's budgets (connections, timeouts, requests in flight).
    pub fn with_limits(mut self, limits: limits::Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Serves `pods/{name}/log` from `source` (without one, logs requests fail).
    pub fn with_logs(mut self, source: Arc<dyn logs::LogSource>) -> Self {
        self.logs = Some(source);
        self
    }

    /// Serves `pods/{name}/exec`, `attach` and `portforward` of this server's own pods from
    /// `streams` (an agent's pods are reached through its kubelet endpoint).
    pub fn with_streams(mut self, streams: Arc<dyn podvisor_core::streams::PodStreams>) -> Self {
        self.streams = Some(streams);
        self
    }

    /// Serves `metrics.k8s.io` for the pods of node `node` from `source` (an agent's pods are
    /// sampled through their kubelet endpoint).
    pub fn with_usage(mut self, node: String, source: Arc<dyn podvisor_core::usage::UsageSource>) -> Self {
        self.usage = Some((node, source));
        self
    }

    /// The store, for in-process readers, watchers and writers (the node's pod workers).
    /// Objects written here are seen by API clients and vice versa.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Creates the namespaces kube-apiserver keeps (`default`, `kube-system`, `kube-public`,
    /// `kube-node-lease`) if they do not exist.
    pub async fn bootstrap(&self) -> Result<()> {
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
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

    /// Serves HTTP (or HTTPS, see [`ApiServer::with_tls`]) on `listener` until `shutdown` completes, then stops accepting, ends
    /// watches and waits up to the drain deadline for in-flight requests.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        self.bootstrap().await?;
        let state = self.state();
        // `kubectl top`: sample the nodes there are counters of (this server's own, agents).
        let _scraper = (self.usage.is_some() || state.node_key.is_some()).then(|| {
            let run = state
                .resource_metrics
                .clone()
                .run(self.store.clone(), state.node_key.clone());
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(run))
        });
        let token = state.shutdown.clone();
        let limits = &self.config.limits;
        let inflight = Arc::new(limits::InFlight::new(limits));
        let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
        let header_read_timeout = limits.header_read_timeout;
        let handshake_timeout = limits.tls_handshake_timeout;
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
            // Over the connection cap: closed at once, before any byte is read.
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "connection refused: too many connections");
                drop(stream);
                continue;
            };
            let state = state.clone();
            let authenticator = self.auth.clone();
            let inflight = inflight.clone();
            let busy = limits::Busy::default();
            let stream = limits::Timed::new(stream, busy.clone(), limits);
            let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                let state = state.clone();
                let in_flight = busy.enter();
                let authenticator = authenticator.clone();
                let inflight = inflight.clone();
                async move {
                    let checked = match &authenticator {
                        Some(a) => Some(a.check(req.method(), req.uri().path(), req.headers()).await),
                        None => None,
                    };
                    // The handlers apply what depends on the object (a node's own pods) by role.
                    let rejected = match checked {
                        Some(Ok(Some(role))) => {
                            req.extensions_mut().insert(role);
                            None
                        }
                        Some(Err(e)) => Some(e),
                        Some(Ok(None)) | None => None,
                    };
                    let response = if let Some(e) = rejected {
                        handlers::error_response(&e)
                    } else {
                        let budget = limits::Budget::of(req.method(), req.uri().path(), req.uri().query());
                        match inflight.admit(budget) {
                            Ok(_permit) => handlers::handle(state, req).await,
                            Err(limits::Spent) => limits::too_many_requests(),
                        }
                    };
                    Ok::<_, std::convert::Infallible>(limits::hold_until_sent(response, in_flight))
                }
            });
            let watcher = graceful.watcher();
            let Some(acceptor) = self.tls.clone() else {
                tokio::spawn(async move {
                    serve_connection(TokioIo::new(stream), service, watcher, peer, header_read_timeout).await;
                    drop(permit);
                });
                continue;
            };
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        serve_connection(TokioIo::new(tls), service, watcher, peer, header_read_timeout)
                            .await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
                drop(permit);
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

/// The API server's request handler for in-process clients ([`ApiServer::handler`]).
#[derive(Clone)]
pub struct Handler {
    state: Arc<handlers::State>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").finish_non_exhaustive()
    }
}

impl Handler {
    /// Answers one request.
    pub async fn handle<B>(&self, req: http::Request<B>) -> http::Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        handlers::handle(self.state.clone(), req).await
    }
}

impl<B> tower_service::Service<http::Request<B>> for Handler
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move { Ok(handlers::handle(state, req).await) })
    }
}

/// Serves one accepted connection (plain or TLS) until it ends or graceful shutdown ends it.
async fn serve_connection<I, S>(
    io: I,
    service: S,
    watcher: hyper_util::server::graceful::Watcher,
    peer: std::net::SocketAddr,
    header_read_timeout: Duration,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<Body>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let conn = builder.serve_connection_with_upgrades(io, service).into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

impl ApiServer {
    /// Serves on `listener` in a background task ([`ApiServer::serve`]) until
    /// [`Serving::stop`]. Must be called inside a tokio runtime.
    pub fn spawn(self, listener: tokio::net::TcpListener) -> Serving {
        let handler = self.handler();
        let store = Arc::downgrade(&self.store);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                // A dropped sender stops the server too.
                stopped.await.ok();
            };
            if let Err(e) = self.serve(listener, shutdown).await {
                tracing::warn!(error = %e, "the API server stopped");
            }
        });
        Serving {
            handler,
            store,
            stop,
            task,
        }
    }
}

/// An API server serving in the background ([`ApiServer::spawn`]).
pub struct Serving {
    handler: Handler,
    store: std::sync::Weak<dyn Store>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving").finish_non_exhaustive()
    }
}

impl Serving {
    /// How long [`Serving::stop`] waits for the server task, then for in-process clients to let
    /// go of the store.
    pub const STOP_WAIT: Duration = Duration::from_secs(15);

    /// The request handler, for in-process clients (`kube::Client::new(h, "default")`).
    pub fn handler(&self) -> Handler {
        self.handler.clone()
    }

    /// Stops accepting, ends watches, drains requests ([`ApiServer::serve`]), then waits until
    /// every in-process handler is dropped, so the store is closed when this returns and can be
    /// opened again (each wait at most [`Serving::STOP_WAIT`]). Drop the in-process clients
    /// first: a `kube::Client`'s buffer task lets go of its handler only once its last clone is
    /// gone.
    pub async fn stop(self) {
        let Serving {
            handler,
            store,
            stop,
            task,
        } = self;
        drop(handler);
        // The server may have stopped already; then there is nobody to tell.
        stop.send(()).ok();
        if tokio::time::timeout(Self::STOP_WAIT, task).await.is_err() {
            tracing::warn!("the API server did not stop in time");
        }
        let released = async {
            while store.strong_count() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(Self::STOP_WAIT, released).await.is_err() {
            tracing::warn!("the store is still held after the API server stopped");
        }
    }
}
