//! The userspace NodePort proxy with real sockets on loopback.

use std::net::Ipv4Addr;
use std::time::Duration;

use podvisor_proxy::{ProxyPort, ProxyService, UserspaceProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn service(node_port: u16, endpoints: Vec<(Ipv4Addr, u16)>) -> ProxyService {
    ProxyService {
        id: "default/web".into(),
        cluster_ip: Some(Ipv4Addr::new(10, 96, 0, 9)),
        ports: vec![ProxyPort {
            // As the node passes it: the Service's own spelling.
            protocol: "TCP".into(),
            port: 80,
            node_port: Some(node_port),
            endpoints,
        }],
    }
}

async fn echo_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = s.write_all(&buf[..n]).await;
            });
        }
    });
    port
}

async fn round_trip(port: u16) -> std::io::Result<Vec<u8>> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"ping").await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .map_err(std::io::Error::other)??;
    Ok(out)
}

#[tokio::test]
async fn node_ports_forward_to_ready_endpoints_and_close_without_them() {
    let backend = echo_server().await;
    let node_port = free_port();
    let mut proxy = UserspaceProxy::new();
    proxy
        .sync(&[service(node_port, vec![(Ipv4Addr::LOCALHOST, backend)])])
        .await;
    assert_eq!(proxy.ports(), [node_port]);
    assert_eq!(round_trip(node_port).await.unwrap(), b"ping");

    // No ready endpoint: the connection is closed at once, nothing comes back.
    proxy.sync(&[service(node_port, vec![])]).await;
    assert_eq!(round_trip(node_port).await.unwrap_or_default(), b"");

    // The Service is gone: nobody listens any more.
    proxy.sync(&[]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", node_port))
            .await
            .is_err()
    );
}
