//! TLS and bearer-token authentication: 401 Status without (or with a wrong) token, 200 with
//! it, health endpoints open, a handshake against a self-signed certificate, and plain HTTP on
//! a TLS port getting nowhere.

use std::net::SocketAddr;
use std::sync::Arc;

use podvisor_apiserver::{ApiServer, ApiServerConfig};
use podvisor_store::RedbStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Starts a server (TLS if `cert` is given) requiring [`TOKEN`]; returns its address.
async fn start(
    dir: &std::path::Path,
    cert: Option<(CertificateDer<'static>, Vec<u8>)>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let store = Arc::new(RedbStore::open(dir.join("store.redb")).unwrap());
    let mut server =
        ApiServer::new(store, ApiServerConfig::default()).with_bearer_tokens(vec![TOKEN.to_owned()]);
    if let Some((cert, key)) = cert {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)))
            .unwrap();
        server = server.with_tls(config);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        server
            .serve(listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (addr, tx)
}

/// One `Connection: close` GET over `stream`; returns (status, body).
async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // A TLS peer may close without close_notify after the response; what was read counts.
    let _ = stream.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn plain_http_with_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop) = start(dir.path(), None).await;
    let conn = || tokio::net::TcpStream::connect(addr);

    let (code, body) = get(conn().await.unwrap(), "/api/v1/namespaces/default/pods", None).await;
    assert_eq!(code, 401, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        status,
        serde_json::json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message":"Unauthorized","reason":"Unauthorized","code":401})
    );
    let (code, _) = get(
        conn().await.unwrap(),
        "/api/v1/namespaces/default/pods",
        Some("wrong"),
    )
    .await;
    assert_eq!(code, 401);
    let (code, _) = get(conn().await.unwrap(), "/version", None).await;
    assert_eq!(code, 401, "only health checks are anonymous");
    let (code, body) = get(
        conn().await.unwrap(),
        "/api/v1/namespaces/default/pods",
        Some(TOKEN),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("PodList"), "{body}");
    for health in ["/livez", "/readyz", "/healthz"] {
        let (code, body) = get(conn().await.unwrap(), health, None).await;
        assert_eq!((code, body.as_str()), (200, "ok"), "{health}");
    }
}

#[tokio::test]
async fn tls_handshake_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = cert.der().clone();
    let (addr, _stop) = start(dir.path(), Some((der.clone(), signing_key.serialize_der()))).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    };
    let tls = connect().await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        None,
        "the client offered no ALPN"
    );
    let (code, body) = get(tls, "/api/v1/namespaces", None).await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = get(connect().await, "/api/v1/namespaces", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("kube-system"), "{body}");
    let (code, _) = get(connect().await, "/readyz", None).await;
    assert_eq!(code, 200);

    // A client that does not trust the certificate fails the handshake; the server goes on.
    let untrusting = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let refused = tokio_rustls::TlsConnector::from(Arc::new(untrusting))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    assert!(refused.is_err());
    // Plain HTTP on the TLS port gets no HTTP answer.
    let (code, _) = get(
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        "/readyz",
        None,
    )
    .await;
    assert_eq!(code, 0);
    let (code, _) = get(connect().await, "/healthz", None).await;
    assert_eq!(code, 200, "still serving after failed handshakes");
}
