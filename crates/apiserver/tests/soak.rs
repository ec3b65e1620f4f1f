//! A short soak on loopback (bounded count and time): create/delete cycles, connections opened
//! and dropped, idle connections, watches opened and abandoned. Afterwards the server holds no
//! more descriptors than before, its memory is within 2x, and every acknowledged write reads
//! back. `SOAK_CYCLES` (default 300) sets the number of cycles.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One JSON request; returns its status.
async fn request(url: &str, method: &str, path: &str, body: &[u8]) -> u16 {
    common::raw_request(url, method, path, "application/json", body)
        .await
        .0
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

#[test]
fn cycles_of_writes_connections_and_watches_leak_nothing() {
    let cycles: usize = std::env::var("SOAK_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(300);
    let s = common::start_with(|server| {
        server.with_limits(podvisor_apiserver::limits::Limits {
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
            ..Default::default()
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let base = "/api/v1/namespaces/default/configmaps";
        // Warm up, then measure.
        for i in 0..20 {
            let body = format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"warm{i}"}}}}"#);
            assert_eq!(request(&s.url, "POST", base, body.as_bytes()).await, 201);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (fds, mem) = (open_fds(), rss());
        let addr = s.url.trim_start_matches("http://").to_string();
        for i in 0..cycles {
            let body = format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c{i}"}},"data":{{"k":"{}"}}}}"#,
                "v".repeat(4096)
            );
            assert_eq!(request(&s.url, "POST", base, body.as_bytes()).await, 201);
            assert_eq!(request(&s.url, "DELETE", &format!("{base}/c{i}"), b"").await, 200);
            if i % 10 == 0 {
                // An idle connection and an abandoned watch.
                let idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
                let mut watch = tokio::net::TcpStream::connect(&addr).await.unwrap();
                watch
                    .write_all(format!("GET {base}?watch=1 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
                let mut first = [0u8; 12];
                watch.read_exact(&mut first).await.unwrap();
                drop((idle, watch));
            }
        }
        // Every acknowledged write reads back.
        for i in 0..50 {
            let body = format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"keep{i}"}}}}"#);
            assert_eq!(request(&s.url, "POST", base, body.as_bytes()).await, 201);
        }
        for i in 0..50 {
            assert_eq!(request(&s.url, "GET", &format!("{base}/keep{i}"), b"").await, 200);
        }
        // Idle connections time out, abandoned watches end with their connections.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (fds_after, mem_after) = (open_fds(), rss());
        assert!(fds_after <= fds + 4, "descriptors: {fds} before, {fds_after} after");
        assert!(mem_after < mem * 2, "RSS: {} MB before, {} MB after", mem >> 20, mem_after >> 20);
    });
}
