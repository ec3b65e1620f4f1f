//! A minimal HTTP/1.1 client for the node's own API server: applying manifests and static
//! pods goes through the API like any client's request (defaulting, validation, UIDs, graceful
//! deletion), without pulling a full HTTP client into the node.
//!
//! When the API serves TLS, the client speaks TLS too (tokio-rustls, trusting only the node's
//! CA) and sends the bearer token, like any other client: there is no unauthenticated side
//! door for the node's own requests.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where and how to reach the API: plain HTTP, or HTTPS with a bearer token.
#[derive(Clone)]
pub struct Endpoint {
    addr: SocketAddr,
    tls: Option<Arc<Tls>>,
}

struct Tls {
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    token: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url())
    }
}

impl Endpoint {
    /// Plain HTTP to `addr`.
    pub fn plain(addr: SocketAddr) -> Endpoint {
        Endpoint { addr, tls: None }
    }

    /// HTTPS to `addr` with `config` (which must trust the server's certificate for the
    /// address's IP), sending `token` as `Authorization: Bearer`.
    pub fn tls(addr: SocketAddr, config: rustls::ClientConfig, token: String) -> Endpoint {
        Endpoint {
            addr,
            tls: Some(Arc::new(Tls {
                connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
                server_name: ServerName::IpAddress(addr.ip().into()),
                token,
            })),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

/// A failed exchange with the API server (not an HTTP error status: those are answers).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, writing or reading failed.
    #[error("talking to the API server at {addr}: {source}")]
    Io {
        /// The server.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The answer was not HTTP.
    #[error("the API server at {addr} sent a malformed response")]
    Malformed {
        /// The server.
        addr: SocketAddr,
    },
}

/// Sends one request and returns the status code and the JSON body (`Null` if none or not JSON).
pub async fn request(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), ClientError> {
    let addr = endpoint.addr;
    let io = |source| ClientError::Io { addr, source };
    let stream = TcpStream::connect(addr).await.map_err(io)?;
    let payload = body
        .map(|b| serde_json::to_vec(b).unwrap_or_default())
        .unwrap_or_default();
    let auth = endpoint
        .tls
        .as_ref()
        .map(|t| format!("Authorization: Bearer {}\r\n", t.token))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: podvisor-node\r\nAccept: application/json\r\n\
         {auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    let raw = match &endpoint.tls {
        None => exchange(stream, head.as_bytes(), &payload).await,
        Some(tls) => {
            let stream = tls
                .connector
                .connect(tls.server_name.clone(), stream)
                .await
                .map_err(io)?;
            exchange(stream, head.as_bytes(), &payload).await
        }
    }
    .map_err(io)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ClientError::Malformed { addr })?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(ClientError::Malformed { addr })?;
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((code, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Writes the request and reads the whole response (the server closes the connection).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head: &[u8],
    payload: &[u8],
) -> std::io::Result<Vec<u8>> {
    stream.write_all(head).await?;
    stream.write_all(payload).await?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw).await {
        Ok(_) => Ok(raw),
        // A TLS peer that closes without close_notify after a complete response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}

/// Decodes a chunked body (trailers ignored).
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    out
}

/// The API path of a namespaced or cluster-scoped object (`name` empty: its collection).
pub fn object_path(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Option<String> {
    let resource = match kind {
        "Pod" => "pods",
        "Service" => "services",
        "Namespace" => "namespaces",
        "Endpoints" => "endpoints",
        "EndpointSlice" => "endpointslices",
        "Event" => "events",
        "Node" => "nodes",
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        _ => return None,
    };
    let root = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    let scoped = match (kind, namespace) {
        ("Namespace" | "Node", _) => root,
        (_, ns) => format!("{root}/namespaces/{}", ns.unwrap_or("default")),
    };
    Some(if name.is_empty() {
        format!("{scoped}/{resource}")
    } else {
        format!("{scoped}/{resource}/{name}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(dechunk(b"4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\n\r\n"), b"Wikipedia");
    }

    #[test]
    fn paths_follow_the_api_layout() {
        assert_eq!(
            object_path("v1", "Pod", Some("team"), "web").unwrap(),
            "/api/v1/namespaces/team/pods/web"
        );
        assert_eq!(
            object_path("v1", "Namespace", None, "").unwrap(),
            "/api/v1/namespaces"
        );
        assert_eq!(
            object_path("discovery.k8s.io/v1", "EndpointSlice", None, "").unwrap(),
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
        );
        assert!(object_path("apps/v1", "Deployment", None, "x").is_none());
    }
}
