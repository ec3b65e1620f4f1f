//! `pods/{name}/exec`, `pods/{name}/attach` and `pods/{name}/portforward`: the pod and
//! container looked up, the request checked (rules 1.2-1.3 of `streaming-and-apply.md`), the
//! protocol negotiated, and the upgraded connection served by `podvisor-stream` from a
//! [`PodStreams`] — this server's own node's, or, for a pod on an agent, the agent's kubelet
//! endpoint, to which the upgrade is forwarded and the bytes relayed both ways (as
//! kube-apiserver proxies these to the kubelet).
//!
//! What it is not: the wire protocols (`podvisor-stream`) and the processes and connections
//! (the runtime). A WebSocket's bearer-token subprotocol (rule 1.21) is not read: clients here
//! authenticate with the `Authorization` header.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use podvisor_core::streams::PodStreams;
use podvisor_stream::{ExecQuery, Limits, PortForwardTarget, Refusal};
use serde_json::Value;

use crate::Body;
use crate::status::ApiError;

/// Which subresource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// `exec`.
    Exec,
    /// `attach`.
    Attach,
    /// `portforward`.
    PortForward,
}

impl StreamKind {
    /// The subresource's name.
    pub(crate) fn parse(sub: &str) -> Option<StreamKind> {
        match sub {
            "exec" => Some(StreamKind::Exec),
            "attach" => Some(StreamKind::Attach),
            "portforward" => Some(StreamKind::PortForward),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            StreamKind::Exec => "exec",
            StreamKind::Attach => "attach",
            StreamKind::PortForward => "portforward",
        }
    }
}

fn names<'a>(pod: &'a Value, list: &str) -> Vec<&'a str> {
    pod["spec"][list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// The running instance of container `name` (its status `containerID` without the scheme).
fn running_id<'a>(pod: &'a Value, name: &str) -> Option<&'a str> {
    [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .into_iter()
    .filter_map(|list| pod["status"][list].as_array())
    .flatten()
    .find(|cs| cs["name"] == name && cs.pointer("/state/running").is_some())
    .and_then(|cs| cs["containerID"].as_str())
    .map(|id| id.split_once("://").map_or(id, |(_, id)| id))
}

fn refused(r: Refusal) -> ApiError {
    let mut e = ApiError::bad_request(r.message);
    e.code = r.status.as_u16();
    if r.status == StatusCode::FORBIDDEN {
        e.reason = "Forbidden";
    }
    e
}

/// An answer that carries `refusal`'s headers too.
fn refusal_response(r: Refusal) -> Response<Body> {
    let headers = r.headers.clone();
    let mut resp = crate::handlers::error_response(&refused(r));
    resp.headers_mut().extend(headers);
    resp
}

fn switching(headers: http::HeaderMap) -> Response<Body> {
    let mut resp = Response::new(crate::handlers::full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *resp.headers_mut() = headers;
    resp
}

/// Serves `kind` for `pod` from `streams`, on the connection `req` came on.
pub(crate) fn serve_local<B>(
    req: Request<B>,
    kind: StreamKind,
    pod: &Value,
    streams: Arc<dyn PodStreams>,
) -> Result<Response<Body>, ApiError>
where
    B: Send + 'static,
{
    let query = req.uri().query().unwrap_or("").to_owned();
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    if kind == StreamKind::PortForward {
        let pod_uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        let upgrade = match podvisor_stream::negotiate_port_forward(req.headers(), &query) {
            Ok(u) => u,
            Err(r) => return Ok(refusal_response(r)),
        };
        let target = PortForwardTarget {
            streams,
            pod_name,
            pod_uid,
        };
        let protocol = upgrade.protocol;
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(io) => {
                    let limits = Limits::default();
                    let served =
                        podvisor_stream::serve_port_forward(TokioIo::new(io), protocol, target, &limits);
                    if let Err(e) = served.await {
                        tracing::debug!(error = %e, "port-forward ended");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "port-forward: no upgrade"),
            }
        });
        return Ok(switching(upgrade.headers));
    }
    let parsed = match kind {
        StreamKind::Exec => ExecQuery::parse_exec(&query),
        _ => ExecQuery::parse_attach(&query),
    }
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let container = podvisor_stream::resolve_container(
        &pod_name,
        parsed.container.as_deref(),
        &names(pod, "containers"),
        &names(pod, "initContainers"),
        &names(pod, "ephemeralContainers"),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Some(id) = running_id(pod, &container).map(str::to_owned) else {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: container not found (\"{container}\")"
        )));
    };
    let upgrade = match podvisor_stream::negotiate_exec(req.headers()) {
        Ok(u) => u,
        Err(r) => return Ok(refusal_response(r)),
    };
    let (protocol, stdio, command) = (upgrade.protocol, parsed.stdio, parsed.command);
    tokio::spawn(async move {
        let io = match hyper::upgrade::on(req).await {
            Ok(io) => io,
            Err(e) => {
                tracing::debug!(error = %e, "exec: no upgrade");
                return;
            }
        };
        let open = async {
            match kind {
                StreamKind::Exec => streams.exec(&id, command, stdio).await,
                _ => streams.attach(&id, stdio).await,
            }
        };
        if let Err(e) =
            podvisor_stream::serve_exec(TokioIo::new(io), protocol, stdio, open, &Limits::default()).await
        {
            tracing::debug!(error = %e, "exec/attach ended");
        }
    });
    Ok(switching(upgrade.headers))
}

/// The headers of a streaming request that go on to the kubelet (the upgrade and its
/// protocols; not the client's credentials).
const FORWARDED: [header::HeaderName; 7] = [
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::HeaderName::from_static("x-stream-protocol-version"),
];

/// Forwards `req` for pod `namespace/name` to the kubelet endpoint at `kubelet`
/// (`/{exec|attach|portforward}/{namespace}/{name}?<query>`), presenting `token`; a `101`
/// is answered with the kubelet's headers and the two upgraded connections are joined.
pub(crate) async fn forward<B>(
    kubelet: SocketAddr,
    token: &str,
    kind: StreamKind,
    namespace: &str,
    name: &str,
    req: Request<B>,
) -> Result<Response<Body>, ApiError>
where
    B: Send + 'static,
{
    let path = match req.uri().query() {
        Some(q) => format!("/{}/{namespace}/{name}?{q}", kind.as_str()),
        None => format!("/{}/{namespace}/{name}", kind.as_str()),
    };
    let mut outgoing = Request::builder()
        .method(req.method().clone())
        .uri(&path)
        .header(header::HOST, kubelet.to_string())
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    for name in &FORWARDED {
        for value in req.headers().get_all(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let outgoing = outgoing
        .body(crate::handlers::full(Bytes::new()))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let unavailable = |why: String| {
        let mut e = ApiError::internal(format!("error dialing backend: {why}"));
        e.code = 502;
        e
    };
    let mut sender = crate::kubelet::connect(kubelet, &unavailable).await?;
    let answer = sender
        .send_request(outgoing)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        // A refusal (a bad request, no such container): passed through as the kubelet gave it.
        let (parts, body) = answer.into_parts();
        let bytes = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 1 << 20))
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut out = Response::new(crate::handlers::full(bytes));
        *out.status_mut() = parts.status;
        *out.headers_mut() = parts.headers;
        return Ok(out);
    }
    let headers = answer.headers().clone();
    tokio::spawn(async move {
        let (client, kubelet) = tokio::join!(hyper::upgrade::on(req), hyper::upgrade::on(answer));
        match (client, kubelet) {
            (Ok(client), Ok(kubelet)) => {
                let (mut client, mut kubelet) = (TokioIo::new(client), TokioIo::new(kubelet));
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
                    tracing::debug!(error = %e, "forwarded stream ended");
                }
            }
            _ => tracing::debug!("forwarded stream: an upgrade failed"),
        }
    });
    let mut out = switching(headers);
    out.headers_mut()
        .entry(header::CONNECTION)
        .or_insert(HeaderValue::from_static("Upgrade"));
    Ok(out)
}
