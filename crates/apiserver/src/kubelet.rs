//! The kubelet endpoint of an agent, and the API server's client of it: how `kubectl logs`
//! reaches a pod on another machine.
//!
//! kube-apiserver serves `pods/{name}/log` by asking the pod's kubelet (its HTTPS port, in the
//! Node's `status.daemonEndpoints.kubeletEndpoint`). Here an agent serves its pods' logs on
//! HTTPS ([`serve_endpoint`], `GET /podLogs/{namespace}/{pod}?<the pods/log query>`), and an
//! API server whose own node has no log of a pod forwards the request to the pod's node when
//! that Node names a kubelet port (`forward`). The answer, a stream for `follow`, is passed
//! through as it comes.
//!
//! Trust: like kube-apiserver without `--kubelet-certificate-authority`, the API server does
//! not verify the kubelet's self-signed serving certificate; it proves itself with a bearer
//! token only the servers and that node know ([`server_token`], HMAC-SHA256 of the node's name
//! under the servers' node key, given to the agent with its node credential).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::Body;
use crate::handlers::error_response;
use crate::logs::{LogOptions, LogSource};
use crate::status::ApiError;
use podvisor_core::usage::UsageSource;

/// The kubelet's port (`--kubelet-port`), as upstream's.
pub const DEFAULT_PORT: u16 = 10250;

/// How long connecting to a kubelet may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a usage scrape of one node may take.
const USAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest usage report read from a node, and the largest list of container IDs a node
/// takes.
const MAX_USAGE_REPORT: usize = 4 << 20;

/// The token an API server presents to node `node`'s kubelet endpoint.
pub fn server_token(node_key: &str, node: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, node_key.as_bytes());
    let tag = ring::hmac::sign(&key, format!("kubelet:{node}").as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a pod by namespace and name (the agent's client of the API).
pub type PodReader =
    Arc<dyn Fn(String, String) -> futures_util::future::BoxFuture<'static, Option<Value>> + Send + Sync>;

/// What an agent's kubelet endpoint answers from.
#[derive(Clone)]
pub struct EndpointParts {
    /// The token the API servers present ([`server_token`]).
    pub token: String,
    /// Reads the agent's pods.
    pub pods: PodReader,
    /// The agent's container logs.
    pub logs: Arc<dyn LogSource>,
    /// The agent's usage counters (`kubectl top`), if it can read them.
    pub usage: Option<Arc<dyn UsageSource>>,
    /// Exec, attach and port-forward into the agent's pods.
    pub streams: Option<Arc<dyn podvisor_core::streams::PodStreams>>,
}

/// Serves the kubelet endpoint on `listener` with `tls` until the task is dropped, with
/// `Authorization: Bearer <token>` (a wrong token is 401, anything else 404):
/// - `GET /podLogs/{namespace}/{pod}`, answering as `pods/log` does;
/// - `GET`/`POST /{exec|attach|portforward}/{namespace}/{pod}?<the subresource's query>`, the
///   upgrade a server forwards, served as the subresource is (`pod_streams`);
/// - `POST /usage` with a JSON list of container IDs: a
///   [`NodeReport`](crate::resource_metrics::NodeReport) of the node and those containers.
pub async fn serve_endpoint(
    listener: tokio::net::TcpListener,
    tls: rustls::ServerConfig,
    parts: EndpointParts,
) {
    let shutdown = CancellationToken::new();
    // Followed logs end when the endpoint does.
    let _stop_follows = shutdown.clone().drop_guard();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let parts = Arc::new(parts);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "kubelet endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, parts, shutdown) = (acceptor.clone(), parts.clone(), shutdown.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(stream)).await else {
                tracing::debug!(%peer, "kubelet endpoint: TLS handshake failed");
                return;
            };
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (parts, shutdown) = (parts.clone(), shutdown.clone());
                async move {
                    let answer = answer(req, &parts, shutdown).await;
                    Ok::<_, std::convert::Infallible>(answer.unwrap_or_else(|e| error_response(&e)))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "kubelet endpoint: connection ended");
            }
        });
    }
}

/// One request to the kubelet endpoint.
async fn answer(
    req: Request<hyper::body::Incoming>,
    parts: &EndpointParts,
    shutdown: CancellationToken,
) -> Result<Response<Body>, ApiError> {
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !crate::auth::constant_time_eq(presented.as_bytes(), parts.token.as_bytes()) {
        return Err(ApiError::unauthorized());
    }
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["usage"] if req.method() == http::Method::POST => {
            let Some(source) = parts.usage.clone() else {
                return Err(ApiError::no_route(&path));
            };
            let limited = http_body_util::Limited::new(req.into_body(), MAX_USAGE_REPORT);
            let bytes = limited
                .collect()
                .await
                .map_err(|e| ApiError::bad_request(e.to_string()))?
                .to_bytes();
            let ids: Vec<String> =
                serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let report = tokio::task::spawn_blocking(move || crate::resource_metrics::report(&*source, &ids))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let body = crate::handlers::encode(&report)?;
            let mut out = Response::new(crate::handlers::full(body));
            out.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(out)
        }
        [sub @ ("exec" | "attach" | "portforward"), namespace, name] => {
            let (Some(kind), Some(streams)) =
                (crate::pod_streams::StreamKind::parse(sub), parts.streams.clone())
            else {
                return Err(ApiError::no_route(&path));
            };
            let Some(pod) = (parts.pods)((*namespace).to_owned(), (*name).to_owned()).await else {
                return Err(ApiError::bad_request(format!(
                    "pod \"{name}\" is not known on this node"
                )));
            };
            crate::pod_streams::serve_local(req, kind, &pod, streams)
        }
        ["podLogs", namespace, name] => {
            let Some(pod) = (parts.pods)((*namespace).to_owned(), (*name).to_owned()).await else {
                return Err(ApiError::bad_request(format!(
                    "pod \"{name}\" is not known on this node"
                )));
            };
            let query = crate::options::parse_query(req.uri().query());
            crate::logs::serve(
                Some(parts.logs.clone()),
                pod,
                LogOptions::from_query(&query),
                shutdown,
            )
            .await
        }
        _ => Err(ApiError::no_route(&path)),
    }
}

/// Forwards a `pods/log` request (its query as given) for the pod `namespace/name` to the
/// kubelet endpoint at `kubelet`, presenting `token`; the kubelet's answer is passed through.
pub(crate) async fn forward(
    kubelet: SocketAddr,
    namespace: &str,
    name: &str,
    query: Option<&str>,
    token: &str,
) -> Result<Response<Body>, ApiError> {
    let unavailable = |why: String| {
        let mut e = ApiError::internal(format!(
            "Get \"https://{kubelet}/podLogs/{namespace}/{name}\": {why}"
        ));
        e.code = 502;
        e
    };
    let mut sender = connect(kubelet, &unavailable).await?;
    let uri = match query {
        Some(q) if !q.is_empty() => format!("/podLogs/{namespace}/{name}?{q}"),
        _ => format!("/podLogs/{namespace}/{name}"),
    };
    let request = Request::get(uri)
        .header(http::header::HOST, kubelet.to_string())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(crate::handlers::full(Bytes::new()))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let (parts, body) = response.into_parts();
    // A failing stream ends the answer: the client sees what came before it.
    let frames = body
        .into_data_stream()
        .take_while(|chunk| std::future::ready(chunk.is_ok()))
        .filter_map(|chunk| std::future::ready(chunk.ok().map(|data| Ok(Frame::data(data)))));
    let body: Body = BodyExt::boxed(StreamBody::new(frames));
    let mut out = Response::new(body);
    *out.status_mut() = parts.status;
    for name in [http::header::CONTENT_TYPE, http::header::TRANSFER_ENCODING] {
        if let Some(value) = parts.headers.get(&name) {
            out.headers_mut().insert(name, value.clone());
        }
    }
    if out.status() == StatusCode::OK && !out.headers().contains_key(http::header::CONTENT_TYPE) {
        out.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
    }
    Ok(out)
}

/// An HTTP/1.1 connection to the kubelet endpoint at `kubelet` (TLS, its certificate not
/// verified); failures are turned into errors by `unavailable`.
pub(crate) async fn connect(
    kubelet: SocketAddr,
    unavailable: &(dyn Fn(String) -> ApiError + Sync),
) -> Result<hyper::client::conn::http1::SendRequest<Body>, ApiError> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(kubelet))
        .await
        .map_err(|_| unavailable("dial tcp: i/o timeout".into()))?
        .map_err(|e| unavailable(format!("dial tcp: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(crate::pki::unverified_client_config()));
    let server_name = rustls::pki_types::ServerName::IpAddress(kubelet.ip().into());
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(server_name, tcp))
        .await
        .map_err(|_| unavailable("TLS handshake timeout".into()))?
        .map_err(|e| unavailable(format!("TLS handshake: {e}")))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "kubelet connection ended");
        }
    });
    Ok(sender)
}

/// The usage counters of containers `ids` and of the node, from the kubelet endpoint at
/// `kubelet` (`POST /usage`, a JSON list of container IDs).
pub(crate) async fn usage(
    kubelet: SocketAddr,
    token: &str,
    ids: &[String],
) -> Result<crate::resource_metrics::NodeReport, ApiError> {
    let unavailable = |why: String| ApiError::unavailable(format!("Post \"https://{kubelet}/usage\": {why}"));
    let mut sender = connect(kubelet, &unavailable).await?;
    let body = serde_json::to_vec(ids).map_err(|e| ApiError::internal(e.to_string()))?;
    let request = Request::post("/usage")
        .header(http::header::HOST, kubelet.to_string())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(crate::handlers::full(body))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let answer = tokio::time::timeout(USAGE_TIMEOUT, async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if response.status() != StatusCode::OK {
            return Err(unavailable(format!("answered {}", response.status())));
        }
        let limited = http_body_util::Limited::new(response.into_body(), MAX_USAGE_REPORT);
        let bytes = limited
            .collect()
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| unavailable(format!("bad report: {e}")))
    })
    .await;
    answer.unwrap_or_else(|_| Err(unavailable("timed out".into())))
}

/// The kubelet endpoint of the node a pod is on: its InternalIP and the port it reports, when
/// it reports one.
pub(crate) fn endpoint_of(node: &Value) -> Option<SocketAddr> {
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)?;
    let ip = node["status"]["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")?["address"]
        .as_str()?
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogReader;

    struct NoLogs;

    struct FixedUsage;

    impl UsageSource for FixedUsage {
        fn container_usage(&self, id: &str) -> Option<podvisor_core::usage::UsageSample> {
            (id == "c1").then_some(podvisor_core::usage::UsageSample {
                cpu_ns: 1,
                working_set_bytes: 42,
            })
        }

        fn node_usage(&self) -> Option<podvisor_core::usage::UsageSample> {
            Some(podvisor_core::usage::UsageSample {
                cpu_ns: 7,
                working_set_bytes: 9,
            })
        }
    }

    impl LogSource for NoLogs {
        fn open(&self, _: &str, _: &str, _: i32, _: bool) -> Option<Box<dyn LogReader>> {
            None
        }
    }

    #[test]
    fn a_node_reports_its_endpoint_by_port_and_internal_ip() {
        let node = serde_json::json!({"status": {
            "addresses": [{"type": "Hostname", "address": "a"}, {"type": "InternalIP", "address": "10.0.0.7"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(
            endpoint_of(&node),
            Some("10.0.0.7:10250".parse().unwrap_or_else(|e| panic!("{e}")))
        );
        let mut none = node.clone();
        none["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] = 0.into();
        assert_eq!(endpoint_of(&none), None);
        assert_ne!(server_token("k", "a"), server_token("k", "b"));
        assert_ne!(server_token("k", "a"), server_token("other", "a"));
    }

    #[tokio::test]
    async fn the_endpoint_answers_only_the_servers_token() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let tls = crate::pki::Pki::load_or_create(dir.path(), ip)
            .and_then(|p| p.server_config())
            .unwrap_or_else(|e| panic!("{e}"));
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let pods: PodReader = Arc::new(|_, _| Box::pin(async { None }));
        let parts = EndpointParts {
            token: "secret".into(),
            pods,
            logs: Arc::new(NoLogs),
            usage: Some(Arc::new(FixedUsage)),
            streams: None,
        };
        let task = tokio::spawn(serve_endpoint(listener, tls, parts));
        // Usage: the node's and the asked containers' that run here.
        let ids = vec!["c1".to_string(), "gone".to_string()];
        let report = usage(addr, "secret", &ids)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.node.map(|n| n.cpu_ns), Some(7));
        assert_eq!(report.containers.keys().collect::<Vec<_>>(), ["c1"]);
        assert_eq!(report.containers["c1"].working_set_bytes, 42);
        assert_eq!(
            usage(addr, "guess", &ids).await.map(|_| ()).unwrap_err().code,
            503
        );
        let wrong = forward(addr, "default", "web", None, "guess")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let right = forward(addr, "default", "web", Some("tailLines=1"), "secret")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(right.status(), StatusCode::BAD_REQUEST);
        let body = right
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        assert!(String::from_utf8_lossy(&body).contains("pod \\\"web\\\" is not known on this node"));
        task.abort();
        // Nobody there: a 502 naming the kubelet's address.
        let gone = forward(addr, "default", "web", None, "secret")
            .await
            .err()
            .map(|e| (e.code, e.message));
        let (code, message) = gone.unwrap_or_default();
        assert_eq!(code, 502);
        assert!(message.contains(&addr.to_string()), "{message}");
    }
}
