//! A minimal HTTP/1.1 client for the node's own API server on loopback: applying manifests
//! and static pods goes through the API like any client's request (defaulting, validation,
//! UIDs, graceful deletion), without pulling a full HTTP client into the node.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), ClientError> {
    let io = |source| ClientError::Io { addr, source };
    let mut stream = TcpStream::connect(addr).await.map_err(io)?;
    let payload = body
        .map(|b| serde_json::to_vec(b).unwrap_or_default())
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: podvisor-node\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(&payload).await.map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.map_err(io)?;
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

/// Decodes a chunked body (trailers ignored).
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| {
        w == b"
"
    }) {
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
