//! The node's API over TLS with a bearer token (forced on a loopback address with `tls`): the
//! kubeconfig carries the CA and the token, real kubectl works with it, requests without the
//! token get 401, `-f` manifests go through the node's own TLS client, and a restarted node
//! keeps its CA and token.
//!
//! The kubectl part is skipped (with a message) when `kubectl` is not installed.

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use support::{RunningNode, e2e_config, require_kubectl};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const SERVICE: &str =
    "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n";

/// The value of `key: value` on some line of the kubeconfig.
fn field<'a>(kubeconfig: &'a str, key: &str) -> &'a str {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no {key} in the kubeconfig:\n{kubeconfig}"))
}

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
    let _ = stream.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_tls_needs_the_token_and_kubectl_uses_the_kubeconfig() {
    let data = tempfile::tempdir().unwrap();
    let manifest = data.path().join("service.yaml");
    std::fs::write(&manifest, SERVICE).unwrap();
    let mut config = e2e_config(data.path(), &format!("10.96.{}.0/24", std::process::id() % 250));
    // 127.0.0.2 is loopback (plain HTTP by default); `tls` forces TLS and the token there too.
    config.listen = Some("127.0.0.2:0".parse().unwrap());
    config.tls = true;
    config.apply = vec![manifest];
    let node = RunningNode::start_with(config.clone()).await;

    let kubeconfig = std::fs::read_to_string(&node.kubeconfig).unwrap();
    let mode = std::fs::metadata(&node.kubeconfig).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the kubeconfig holds the token");
    let server = field(&kubeconfig, "server");
    let addr: SocketAddr = server
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("not https: {server}"))
        .parse()
        .unwrap();
    assert_eq!(addr.ip().to_string(), "127.0.0.2");
    let token = field(&kubeconfig, "token").to_owned();
    assert_eq!(
        token,
        std::fs::read_to_string(data.path().join("node/pki/token"))
            .unwrap()
            .trim()
    );
    assert!(!field(&kubeconfig, "certificate-authority-data").is_empty());

    // Raw TLS, trusting the node's CA for the listen address.
    let ca = CertificateDer::from_pem_file(data.path().join("node/pki/ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let client =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        connector
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .expect("the serving certificate is valid for the listen address")
    };
    let services = "/api/v1/namespaces/default/services";
    let (code, body) = get(connect().await, services, None).await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains(r#""reason":"Unauthorized""#), "{body}");
    let (code, _) = get(connect().await, services, Some("not-the-token")).await;
    assert_eq!(code, 401);
    let (code, body) = get(connect().await, "/readyz", None).await;
    assert_eq!((code, body.as_str()), (200, "ok"), "health checks are anonymous");
    // `-f` went through the node's own client, over TLS with the token.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = get(connect().await, &format!("{services}/web"), Some(&token)).await;
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the -f service never appeared: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Plain HTTP gets no answer.
    let (code, _) = get(
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        "/readyz",
        None,
    )
    .await;
    assert_eq!(code, 0);

    require_kubectl();
    {
        assert!(node.ok(&["get", "pods"]).contains("No resources found"));
        assert!(node.ok(&["get", "nodes"]).contains("e2e-node"));
        assert!(node.ok(&["get", "service", "web"]).contains("web"));
        let (ok, text) = node.kubectl(&["get", "pods", "--token=not-the-token"]);
        assert!(!ok && text.contains("Unauthorized"), "{text}");
    }

    // A second start reuses the CA and the token: the kubeconfig is the same.
    node.stop().await;
    let node = RunningNode::start_with(config).await;
    let again = std::fs::read_to_string(&node.kubeconfig).unwrap();
    assert_eq!(field(&again, "token"), token);
    assert_eq!(
        field(&again, "certificate-authority-data"),
        field(&kubeconfig, "certificate-authority-data")
    );
    node.ok(&["get", "nodes"]);
    node.stop().await;
}
