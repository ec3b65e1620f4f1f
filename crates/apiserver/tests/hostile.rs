//! Hostile input and load against a real server: every case gets a bounded answer
//! (400/410/413/422/429/504 or kube-apiserver's behaviour), never a panic or a silent hang.

mod common;

use std::time::{Duration, Instant};

use podvisor_apiserver::limits::Limits;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use common::raw_request as request;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bound_pod(name: &str, grace: Option<i64>) -> Vec<u8> {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "x", "command": ["sleep", "1"]}]}});
    if let Some(g) = grace {
        pod["spec"]["terminationGracePeriodSeconds"] = json!(g);
    }
    serde_json::to_vec(&pod).unwrap()
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn grace_periods_from_delete_are_checked_and_negative_is_one_second() {
    let s = common::start();
    rt().block_on(async {
        let base = "/api/v1/namespaces/default/pods";
        for (name, grace) in [("neg", None), ("q", None), ("b", None), ("spec", Some(i64::MAX))] {
            let (code, _, body) =
                request(&s.url, "POST", base, "application/json", &bound_pod(name, grace)).await;
            assert_eq!(code, 201, "{body}");
        }
        // -1 is not a force delete: kube-apiserver's pod strategy makes it 1 s.
        let (code, _, body) = request(
            &s.url,
            "DELETE",
            &format!("{base}/neg?gracePeriodSeconds=-1"),
            "application/json",
            b"",
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let (code, _, body) = request(&s.url, "GET", &format!("{base}/neg"), "application/json", b"").await;
        assert_eq!(code, 200, "still there, being deleted: {body}");
        assert_eq!(parse(&body)["metadata"]["deletionGracePeriodSeconds"], 1);
        // i64::MAX from the query, the body or the pod spec: no overflow, a parseable deadline.
        let max = i64::MAX;
        let (code, _, body) = request(
            &s.url,
            "DELETE",
            &format!("{base}/q?gracePeriodSeconds={max}"),
            "application/json",
            b"",
        )
        .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            parse(&body)["metadata"]["deletionTimestamp"],
            "9999-12-31T23:59:59Z"
        );
        let options = format!(r#"{{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":{max}}}"#);
        let (code, _, body) = request(
            &s.url,
            "DELETE",
            &format!("{base}/b"),
            "application/json",
            options.as_bytes(),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(parse(&body)["metadata"]["deletionGracePeriodSeconds"], max);
        let (code, _, body) =
            request(&s.url, "DELETE", &format!("{base}/spec"), "application/json", b"").await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            parse(&body)["metadata"]["deletionTimestamp"],
            "9999-12-31T23:59:59Z"
        );
        // Malformed options.
        let (code, _, body) = request(
            &s.url,
            "DELETE",
            &format!("{base}/q?gracePeriodSeconds=soon"),
            "application/json",
            b"",
        )
        .await;
        assert_eq!(code, 400, "{body}");
        let (code, _, body) = request(
            &s.url,
            "DELETE",
            &format!("{base}/q?propagationPolicy=Sideways"),
            "application/json",
            b"",
        )
        .await;
        assert_eq!(code, 422, "{body}");
        assert_eq!(parse(&body)["details"]["causes"][0]["field"], "propagationPolicy");
        let (code, _, body) = request(
            &s.url,
            "DELETE",
            &format!("{base}/q"),
            "application/json",
            br#"{"gracePeriodSeconds": 1e30}"#,
        )
        .await;
        assert_eq!(code, 400, "{body}");
    });
}

/// Reads watch events (one JSON object a line) until `n` arrived, the stream ended or `limit`
/// passed.
async fn watch_lines(url: &str, path: &str, n: usize, limit: Duration) -> (u16, Vec<Value>) {
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    let deadline = Instant::now() + limit;
    if tokio::time::timeout(limit, reader.read_line(&mut status))
        .await
        .is_err()
    {
        return (0, Vec::new());
    }
    let code = status.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut events = Vec::new();
    let mut line = String::new();
    while events.len() < n {
        line.clear();
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, reader.read_line(&mut line)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {
                // Chunk sizes of the chunked encoding are between the events.
                if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(line.trim()) {
                    events.push(v);
                }
            }
        }
    }
    (code, events)
}

#[test]
fn a_watch_from_a_future_or_the_last_revision_is_answered_too_large_after_a_bounded_wait() {
    let s = common::start_with(|server| {
        server.with_limits(Limits {
            too_large_resource_version_wait: Duration::from_millis(300),
            ..Limits::default()
        })
    });
    rt().block_on(async {
        let base = "/api/v1/namespaces/default/pods";
        for rv in [u64::MAX, 1_000_000] {
            let started = Instant::now();
            let (code, events) = watch_lines(
                &s.url,
                &format!("{base}?watch=1&resourceVersion={rv}"),
                1,
                Duration::from_secs(10),
            )
            .await;
            assert_eq!(code, 200);
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
            let event = events
                .first()
                .unwrap_or_else(|| panic!("no ERROR event for {rv}"));
            assert_eq!(event["type"], "ERROR");
            let status = &event["object"];
            assert_eq!(
                (status["code"].as_u64(), status["reason"].as_str()),
                (Some(504), Some("Timeout")),
                "{status}"
            );
            assert_eq!(
                status["details"]["causes"][0]["reason"],
                "ResourceVersionTooLarge"
            );
            assert_eq!(status["details"]["retryAfterSeconds"], 1);
            assert!(
                status["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(&format!("Timeout: Too large resource version: {rv}, current: ")),
                "{status}"
            );
        }
        let started = Instant::now();
        let (code, _, body) =
            request(&s.url, "GET", &format!("{base}?resourceVersion=1000000"), "", b"").await;
        assert_eq!(code, 504, "{body}");
        assert_eq!(
            parse(&body)["details"]["causes"][0]["reason"],
            "ResourceVersionTooLarge"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let (code, _, body) = request(&s.url, "GET", &format!("{base}?resourceVersion=1"), "", b"").await;
        assert_eq!(code, 200, "a reached revision lists at once: {body}");
        let (code, _, body) = request(
            &s.url,
            "GET",
            &format!("{base}?watch=1&resourceVersion=abc"),
            "",
            b"",
        )
        .await;
        assert_eq!(code, 400, "{body}");
        let (code, _, body) = request(
            &s.url,
            "GET",
            &format!("{base}?watch=1&timeoutSeconds=x"),
            "",
            b"",
        )
        .await;
        assert_eq!(code, 400, "{body}");
        let (code, _, body) = request(&s.url, "GET", &format!("{base}?limit=ten"), "", b"").await;
        assert_eq!(code, 400, "{body}");
    });
}

#[test]
fn objects_over_the_store_limit_are_413() {
    let s = common::start();
    rt().block_on(async {
        // 2 MiB: under the 3 MiB body limit, over the 1.5 MiB object limit.
        let big = "x".repeat(2 * 1024 * 1024);
        let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "big"}, "involvedObject": {"kind": "Pod", "name": "p"}, "message": big});
        let (code, _, body) = request(&s.url, "POST", "/api/v1/namespaces/default/events", "application/json", &serde_json::to_vec(&ev).unwrap()).await;
        assert_eq!(code, 413, "{}", &body[..body.len().min(300)]);
        assert_eq!(parse(&body)["reason"], "RequestEntityTooLarge");
        let (code, _, _) = request(&s.url, "GET", "/api/v1/namespaces/default/events/big", "", b"").await;
        assert_eq!(code, 404, "nothing stored");
    });
}

#[test]
fn a_json_patch_of_repeated_copies_is_rejected_before_it_grows() {
    let s = common::start();
    rt().block_on(async {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "x".repeat(1024)}});
        let base = "/api/v1/namespaces/default/configmaps";
        let (code, _, body) = request(&s.url, "POST", base, "application/json", &serde_json::to_vec(&cm).unwrap()).await;
        assert_eq!(code, 201, "{body}");
        // Copies of /data into itself double it each time (~1 KB of patch, 2^40 KiB of result).
        let doubling: Vec<Value> = (0..40)
            .map(|i| json!({"op": "copy", "from": "/data", "path": format!("/data/c{i}")}))
            .collect();
        let started = Instant::now();
        let (code, _, body) = request(&s.url, "PATCH", &format!("{base}/cm"), "application/json-patch+json", &serde_json::to_vec(&doubling).unwrap()).await;
        assert_eq!(code, 422, "{body}");
        assert!(body.contains("accumulated size increase of copy"), "{body}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let (code, _, body) = request(&s.url, "GET", &format!("{base}/cm"), "", b"").await;
        assert_eq!(code, 200);
        assert!(parse(&body)["data"].get("c0").is_none(), "unchanged");
    });
}

#[test]
fn metrics_labels_stay_bounded_whatever_the_path() {
    let s = common::start_with(|server| {
        let metrics = podvisor_apiserver::metrics::ApiMetrics::new();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        server.with_metrics(metrics, std::sync::Arc::new(registry))
    });
    rt().block_on(async {
        for i in 0..300 {
            request(&s.url, "GET", &format!("/livez/{i}-made-up"), "", b"").await;
            request(&s.url, "GET", &format!("/nothing/{i}"), "", b"").await;
        }
        let (code, _, text) = request(&s.url, "GET", "/metrics", "", b"").await;
        assert_eq!(code, 200);
        assert!(!text.contains("made-up") && !text.contains("/nothing"), "{text}");
        assert!(text.len() < 64 * 1024, "{} bytes of metrics", text.len());
    });
}

#[test]
fn requests_over_the_inflight_budgets_get_429_with_retry_after() {
    // A budget of 0 makes every request of that kind the one too many.
    let s = common::start_with(|server| {
        server.with_limits(Limits {
            max_requests_inflight: 0,
            max_mutating_requests_inflight: 0,
            ..Limits::default()
        })
    });
    rt().block_on(async {
        let base = "/api/v1/namespaces/default/configmaps";
        let (code, headers, body) = request(&s.url, "GET", base, "", b"").await;
        assert_eq!(code, 429, "{body}");
        assert!(
            headers.to_ascii_lowercase().contains("retry-after: 1"),
            "{headers}"
        );
        let (code, _, _) = request(&s.url, "POST", base, "application/json", b"{}").await;
        assert_eq!(code, 429);
        // Health checks and watches are exempt.
        let (code, _, _) = request(&s.url, "GET", "/readyz", "", b"").await;
        assert_eq!(code, 200);
        let (code, _) = watch_lines(
            &s.url,
            &format!("{base}?watch=1&timeoutSeconds=1"),
            0,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(code, 200);
    });
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[test]
fn idle_and_slow_connections_are_closed_and_connections_are_capped() {
    let s = common::start_with(|server| {
        server.with_limits(Limits {
            header_read_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(500),
            max_connections: 3,
            ..Limits::default()
        })
    });
    rt().block_on(async {
        let addr = s.url.trim_start_matches("http://").to_string();
        // A connection that never sends a byte, and one that sends half a header.
        let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
        slow.write_all(b"GET /api HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        // A keep-alive connection after one request.
        let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
        kept.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 64];
        let n = kept.read(&mut first).await.unwrap();
        assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
        // A fourth connection is over the cap: closed at once.
        let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
        assert!(
            closed_within(&mut extra, Duration::from_secs(2)).await,
            "over the cap"
        );
        for (name, stream) in [("silent", &mut silent), ("slow", &mut slow), ("kept", &mut kept)] {
            assert!(
                closed_within(stream, Duration::from_secs(5)).await,
                "{name} not closed"
            );
        }
        // With those gone there is room again.
        let (code, _, _) = request(&s.url, "GET", "/readyz", "", b"").await;
        assert_eq!(code, 200);
    });
}

#[test]
fn names_quantities_strict_fields_and_selectors_are_validated() {
    let s = common::start();
    rt().block_on(async {
        for (path, kind) in [
            ("/api/v1/namespaces", "Namespace"),
            ("/api/v1/nodes", "Node"),
            ("/api/v1/namespaces/default/events", "Event"),
            ("/api/v1/namespaces/default/endpoints", "Endpoints"),
        ] {
            for name in ["a/b", "..", "Upper", "nul\u{0}", &"n".repeat(100_000)] {
                let obj = json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "involvedObject": {}});
                let (code, _, body) = request(&s.url, "POST", path, "application/json", &serde_json::to_vec(&obj).unwrap()).await;
                assert_eq!(code, 422, "{kind} {:?}: {}", &name[..name.len().min(20)], &body[..body.len().min(300)]);
            }
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"}, "spec": {"containers": [
            {"name": "c", "image": "x", "command": ["true"], "resources": {"limits": {"memory": "abc"}, "requests": {"cpu": "-1"}}}]}});
        let (code, _, body) = request(&s.url, "POST", "/api/v1/namespaces/default/pods", "application/json", &serde_json::to_vec(&pod).unwrap()).await;
        assert_eq!(code, 422, "{body}");
        let fields: Vec<Value> = parse(&body)["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].clone()).collect();
        assert!(fields.contains(&json!("spec.containers[0].resources.limits[memory]")), "{body}");
        assert!(fields.contains(&json!("spec.containers[0].resources.requests[cpu]")), "{body}");
        let cm = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"},"dta":{}}"#;
        let (code, _, body) = request(&s.url, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", "application/json", cm).await;
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("unknown field"), "{body}");
        let dup = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","name":"b"}}"#;
        let (code, _, body) = request(&s.url, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", "application/json", dup).await;
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("duplicate field"), "{body}");
        for selector in ["labelSelector=a%20b%20c", "labelSelector=x%3D%3D%3Dy", "labelSelector=Bad%20Key%3D1", "fieldSelector=garbage"] {
            let (code, _, body) = request(&s.url, "GET", &format!("/api/v1/namespaces/default/pods?{selector}"), "", b"").await;
            assert_eq!(code, 400, "{selector}: {body}");
        }
        // A deeply nested YAML body is refused at once, and the server keeps answering.
        let deep = format!("a: {}{}", "[".repeat(40_000), "]".repeat(40_000));
        let started = Instant::now();
        let (code, _, body) = request(&s.url, "POST", "/api/v1/namespaces/default/configmaps", "application/yaml", deep.as_bytes()).await;
        assert_eq!(code, 400, "{}", &body[..body.len().min(200)]);
        assert!(started.elapsed() < Duration::from_secs(2));
        let (code, _, _) = request(&s.url, "GET", "/readyz", "", b"").await;
        assert_eq!(code, 200);
    });
}

#[test]
fn a_selector_watch_sees_objects_start_and_stop_matching() {
    let s = common::start();
    rt().block_on(async {
        let base = "/api/v1/namespaces/default/configmaps";
        let cm = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","labels":{"app":"db"}}}"#;
        let (code, _, body) = request(&s.url, "POST", base, "application/json", cm).await;
        assert_eq!(code, 201, "{body}");
        let url = s.url.clone();
        let watch = tokio::spawn(async move {
            watch_lines(
                &url,
                &format!("{base}?watch=1&labelSelector=app%3Dweb&timeoutSeconds=5"),
                2,
                Duration::from_secs(10),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        for app in ["web", "db"] {
            let patch = format!(r#"{{"metadata":{{"labels":{{"app":"{app}"}}}}}}"#);
            let (code, _, body) = request(
                &s.url,
                "PATCH",
                &format!("{base}/a"),
                "application/merge-patch+json",
                patch.as_bytes(),
            )
            .await;
            assert_eq!(code, 200, "{body}");
        }
        let (code, events) = watch.await.unwrap();
        assert_eq!(code, 200);
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap_or("")).collect();
        assert_eq!(kinds, ["ADDED", "DELETED"], "{events:?}");
        assert_eq!(events[1]["object"]["metadata"]["labels"]["app"], "web");
    });
}

#[test]
fn a_watch_that_is_never_read_ends_at_its_timeout() {
    let s = common::start();
    rt().block_on(async {
        // Enough objects (16 MB) that the initial events fill every buffer (the watch's channel,
        // both sockets) of a client that never reads.
        const OBJECTS: usize = 16;
        const SIZE: usize = 1000 * 1024;
        let big = "x".repeat(SIZE);
        for i in 0..OBJECTS {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}")}, "data": {"k": big}});
            let (code, _, _) = request(&s.url, "POST", "/api/v1/namespaces/default/configmaps", "application/json", &serde_json::to_vec(&cm).unwrap()).await;
            assert_eq!(code, 201);
        }
        let addr = s.url.trim_start_matches("http://").to_string();
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // Not reading for longer than the timeout...
        tokio::time::sleep(Duration::from_secs(3)).await;
        // ...then the stream ends after what was already buffered.
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(n) => {
                        total += n;
                        if buf[..n].ends_with(b"0\r\n\r\n") {
                            return true;
                        }
                    }
                }
            }
        })
        .await
        .unwrap_or(false);
        assert!(ended, "the watch did not end ({total} bytes read)");
        assert!(total < OBJECTS * SIZE, "not every initial event was sent: {total} bytes");
    });
}

#[test]
fn a_tls_client_that_never_finishes_its_handshake_is_dropped() {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der())),
    )
    .unwrap();
    let s = common::start_with(move |server| {
        server.with_tls(config).with_limits(Limits {
            tls_handshake_timeout: Duration::from_millis(300),
            ..Limits::default()
        })
    });
    rt().block_on(async {
        let addr = s.url.trim_start_matches("http://").to_string();
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        // The start of a TLS record, then nothing: the handshake never completes.
        stream.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40]).await.unwrap();
        let started = Instant::now();
        assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    });
}

/// Times one request; returns (status, elapsed).
async fn timed(url: &str, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let (code, _, _) = request(url, "GET", path, "", b"").await;
    (code, started.elapsed())
}

#[test]
fn under_hostile_load_readyz_and_a_pod_list_answer_within_a_second() {
    let s = common::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr = s.url.trim_start_matches("http://").to_string();
        // 300 connections that never send anything.
        let mut idle = Vec::new();
        for _ in 0..300 {
            idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
        }
        // Deep YAML, doubling JSON patches and a watch from the last revision, repeatedly.
        let deep = format!("a: {}{}", "[".repeat(40_000), "]".repeat(40_000));
        let cm = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"},"data":{"k":"v"}}"#;
        request(
            &s.url,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            cm,
        )
        .await;
        let doubling: Vec<Value> = (0..40)
            .map(|i| json!({"op": "copy", "from": "/data", "path": format!("/data/c{i}")}))
            .collect();
        let doubling = serde_json::to_vec(&doubling).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut attackers = Vec::new();
        for i in 0..6 {
            let (url, deep, doubling, stop) = (s.url.clone(), deep.clone(), doubling.clone(), stop.clone());
            attackers.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match i % 3 {
                        0 => {
                            request(
                                &url,
                                "POST",
                                "/api/v1/namespaces/default/configmaps",
                                "application/yaml",
                                deep.as_bytes(),
                            )
                            .await;
                        }
                        1 => {
                            request(
                                &url,
                                "PATCH",
                                "/api/v1/namespaces/default/configmaps/cm",
                                "application/json-patch+json",
                                &doubling,
                            )
                            .await;
                        }
                        _ => {
                            request(&url, "GET", &format!("/livez/{}", rand_suffix()), "", b"").await;
                        }
                    }
                }
            }));
        }
        for _ in 0..10 {
            let (code, took) = timed(&s.url, "/readyz").await;
            assert_eq!(code, 200);
            assert!(took < Duration::from_secs(1), "/readyz took {took:?}");
            let (code, took) = timed(&s.url, "/api/v1/namespaces/default/pods").await;
            assert_eq!(code, 200);
            assert!(took < Duration::from_secs(1), "the pod list took {took:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for a in attackers {
            a.await.unwrap();
        }
        drop(idle);
    });
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish()
}

/// This process's resident memory in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Measures in a process of its own: resident memory is the whole process's, and the other
/// tests of this binary allocate alongside it.
#[test]
fn many_watches_of_a_large_list_share_one_copy_of_it() {
    const ALONE: &str = "PODVISOR_HOSTILE_RSS_ALONE";
    if std::env::var_os(ALONE).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "many_watches_of_a_large_list_share_one_copy_of_it",
                "--nocapture",
            ])
            .env(ALONE, "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
        return;
    }
    let s = common::start();
    rt().block_on(async {
        // A 2 MB list.
        let big = "x".repeat(100 * 1024);
        for i in 0..20 {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}")}, "data": {"k": big}});
            let (code, _, _) = request(&s.url, "POST", "/api/v1/namespaces/default/configmaps", "application/json", &serde_json::to_vec(&cm).unwrap()).await;
            assert_eq!(code, 201);
        }
        let addr = s.url.trim_start_matches("http://").to_string();
        let open = |n: usize| {
            let addr = addr.clone();
            async move {
                let mut watches = Vec::new();
                for _ in 0..n {
                    let mut w = tokio::net::TcpStream::connect(&addr).await.unwrap();
                    w.write_all(b"GET /api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=30 HTTP/1.1\r\nHost: x\r\n\r\n")
                        .await
                        .unwrap();
                    // The status line: the watch is open and its events are queued.
                    let mut first = [0u8; 12];
                    w.read_exact(&mut first).await.unwrap();
                    assert_eq!(&first[9..12], b"200");
                    watches.push(w);
                }
                watches
            }
        };
        let warm = open(5).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = rss();
        // 200 watches that never read: 400 MB if each kept its own copy of the list.
        let watches = open(200).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let grown = rss().saturating_sub(before);
        assert!(grown < 150 * 1024 * 1024, "RSS grew {} MB for 200 watches", grown >> 20);
        drop((warm, watches));
    });
}

#[test]
fn a_watch_whose_client_takes_nothing_is_ended() {
    let s = common::start_with(|server| {
        server.with_limits(Limits {
            stalled_watch_timeout: Duration::from_millis(500),
            ..Limits::default()
        })
    });
    rt().block_on(async {
        let addr = s.url.trim_start_matches("http://").to_string();
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /api/v1/namespaces/default/configmaps?watch=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        // More events than the channel and both sockets hold, while the client reads nothing.
        let big = "x".repeat(300 * 1024);
        for i in 0..40 {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}")}, "data": {"k": big}});
            let (code, _, _) = request(&s.url, "POST", "/api/v1/namespaces/default/configmaps", "application/json", &serde_json::to_vec(&cm).unwrap()).await;
            assert_eq!(code, 201);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The watch was ended: what was buffered drains, then the stream ends, well before
        // its 1800 s timeout, and not every event was delivered.
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(n) => {
                        total += n;
                        if buf[..n].ends_with(b"0\r\n\r\n") {
                            return true;
                        }
                    }
                }
            }
        })
        .await
        .unwrap_or(false);
        assert!(ended, "the stalled watch was not ended ({total} bytes)");
        assert!(total < 40 * 300 * 1024, "{total} bytes: every event was delivered");
    });
}
