//! HTTP GET probes and HTTP hooks against real HTTP and HTTPS servers on 127.0.0.1.
#![cfg(feature = "http")]

mod support;

use std::time::{Duration, Instant};

use podvisor_core::corev1;
use podvisor_core::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_core::runtime::HookResult;
use podvisor_core::{HookRunner, ProbeOutcome, ProbeResult, Prober};
use podvisor_probe::{HookWarning, ProbeSet};
use support::*;

fn probes() -> ProbeSet {
    ProbeSet::new(FakeExec::new(Script::Exit(0, "")))
}

async fn run(probe: corev1::Probe) -> ProbeResult {
    probes().probe(&probe, &local(), ONE_SECOND).await
}

async fn get(action: corev1::HTTPGetAction) -> ProbeResult {
    run(http_probe(action)).await
}

fn ok_server_reply(seen: &Seen, _port: u16) -> Reply {
    match seen.path.as_str() {
        "/healthz" => Reply::status(200).body("ok"),
        _ => Reply::status(404).body("not here"),
    }
}

// ---- HTTP ----

#[tokio::test]
async fn http_2xx_is_success_with_the_body() {
    let server = http_server(ok_server_reply).await;
    let result = get(http_get(server.port(), "/healthz")).await;
    assert_eq!(result, ProbeResult::new(ProbeOutcome::Success, "ok"));
}

#[tokio::test]
async fn http_status_codes_map_like_the_kubelet() {
    let server = http_server(|seen: &Seen, _| {
        let code = seen.path.trim_start_matches('/').parse().unwrap_or(500);
        Reply::status(code).body("body text")
    })
    .await;
    for (code, outcome) in [
        (200, ProbeOutcome::Success),
        (204, ProbeOutcome::Success),
        (299, ProbeOutcome::Success),
        (300, ProbeOutcome::Warning),
        (304, ProbeOutcome::Warning),
        (399, ProbeOutcome::Warning),
        (400, ProbeOutcome::Failure),
        (404, ProbeOutcome::Failure),
        (500, ProbeOutcome::Failure),
        (503, ProbeOutcome::Failure),
    ] {
        let result = get(http_get(server.port(), &format!("/{code}"))).await;
        assert_eq!(result.outcome, outcome, "{code}: {result:?}");
        assert_eq!(result.error, None);
        if outcome == ProbeOutcome::Failure {
            assert_eq!(
                result.output,
                format!("HTTP probe failed with statuscode: {code}")
            );
        }
    }
    let warning = get(http_get(server.port(), "/300")).await;
    assert_eq!(
        warning.output,
        "Probe terminated redirects, Response body: body text"
    );
}

#[tokio::test]
async fn http_refused_is_a_failure() {
    let result = get(http_get(closed_port(), "/")).await;
    assert_eq!(result.outcome, ProbeOutcome::Failure, "{result:?}");
    assert_eq!(result.error, None);
    assert!(result.output.contains("refused"), "{}", result.output);
}

#[tokio::test]
async fn http_hanging_server_times_out_as_a_failure() {
    let server = hanging_server().await;
    let started = Instant::now();
    let result = get(http_get(server.port(), "/")).await;
    let took = started.elapsed();
    assert_eq!(result.outcome, ProbeOutcome::Failure, "{result:?}");
    assert_eq!(result.error, None);
    assert!(
        result.output.contains("Client.Timeout exceeded"),
        "{}",
        result.output
    );
    assert!(took >= Duration::from_millis(900), "took {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn http_garbage_is_a_failure() {
    let server = garbage_server().await;
    let started = Instant::now();
    let result = get(http_get(server.port(), "/")).await;
    assert_eq!(result.outcome, ProbeOutcome::Failure, "{result:?}");
    assert_eq!(result.error, None);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn http_sends_the_kubelet_headers() {
    let server = http_server(ok_server_reply).await;
    let result = get(http_get(server.port(), "/healthz")).await;
    assert_eq!(result.outcome, ProbeOutcome::Success);
    let seen = server.requests();
    let headers = &seen.first().expect("one request").headers;
    assert_eq!(headers["user-agent"], "kube-probe/1.35");
    assert_eq!(headers["accept"], "*/*");
    assert_eq!(headers["host"], format!("127.0.0.1:{}", server.port()));
    // No `Connection: close`: the probe resets the connection itself (no TIME_WAIT).
    assert!(headers.get("connection").is_none());
    assert!(headers.get("accept-encoding").is_none());
}

#[tokio::test]
async fn http_user_headers_accumulate_and_override() {
    let server = http_server(ok_server_reply).await;
    let mut action = http_get(server.port(), "/healthz");
    action.http_headers = Some(vec![
        header("X-Custom", "one"),
        header("x-custom", "two"),
        header("user-agent", "my-agent"),
        header("Accept", "application/json"),
        header("Host", "example.test"),
    ]);
    assert_eq!(get(action).await.outcome, ProbeOutcome::Success);
    let seen = server.requests();
    let headers = &seen.first().expect("one request").headers;
    let custom: Vec<_> = headers.get_all("x-custom").iter().collect();
    assert_eq!(custom, ["one", "two"]);
    assert_eq!(headers["user-agent"], "my-agent");
    assert_eq!(headers["accept"], "application/json");
    assert_eq!(headers["host"], "example.test");
    assert_eq!(headers.get_all("host").iter().count(), 1);
}

#[tokio::test]
async fn http_empty_accept_removes_the_header() {
    let server = http_server(ok_server_reply).await;
    let mut action = http_get(server.port(), "/healthz");
    action.http_headers = Some(vec![header("Accept", "")]);
    assert_eq!(get(action).await.outcome, ProbeOutcome::Success);
    let seen = server.requests();
    assert!(seen.first().expect("one request").headers.get("accept").is_none());
}

#[tokio::test]
async fn http_scheme_host_path_and_named_port() {
    let server = http_server(ok_server_reply).await;
    let action = corev1::HTTPGetAction {
        port: IntOrString::String("http".into()),
        host: Some("127.0.0.1".into()),
        path: Some("healthz".into()),
        scheme: Some("HTTP".into()),
        ..Default::default()
    };
    let mut target = target(&[("http", server.port())], &[]);
    target.pod_ip = "192.0.2.1".into(); // never used: the host is set
    let result = probes().probe(&http_probe(action), &target, ONE_SECOND).await;
    assert_eq!(result.outcome, ProbeOutcome::Success, "{result:?}");
    assert_eq!(server.requests().first().expect("request").path, "/healthz");
}

#[tokio::test]
async fn http_unknown_named_port_is_an_error() {
    let mut action = http_get(80, "/");
    action.port = IntOrString::String("missing".into());
    let result = get(action).await;
    assert_eq!(result.outcome, ProbeOutcome::Unknown);
    assert!(result.error.is_some());
}

#[tokio::test]
async fn http_query_strings_are_kept() {
    let server = http_server(|seen: &Seen, _| Reply::status(200).body(seen.path.clone())).await;
    let result = get(http_get(server.port(), "/check?deep=1")).await;
    assert_eq!(result.output, "/check?deep=1");
}

#[tokio::test]
async fn http_body_is_read_up_to_10_kib() {
    let server = http_server(|_: &Seen, _| Reply::status(200).body(vec![b'x'; 64 * 1024])).await;
    let result = get(http_get(server.port(), "/")).await;
    assert_eq!(result.outcome, ProbeOutcome::Success);
    assert_eq!(result.output.len(), 10 * 1024);
}

#[tokio::test]
async fn http_same_host_redirects_are_followed_also_to_another_port() {
    let target_server = http_server(ok_server_reply).await;
    let other_port = target_server.port();
    let server = http_server(move |seen: &Seen, _| match seen.path.as_str() {
        "/start" => Reply::redirect(302, "/middle"),
        "/middle" => Reply::redirect(301, "next"),
        "/next" => Reply::redirect(307, format!("http://127.0.0.1:{other_port}/healthz")),
        _ => Reply::status(500),
    })
    .await;
    let result = get(http_get(server.port(), "/start")).await;
    assert_eq!(result, ProbeResult::new(ProbeOutcome::Success, "ok"));
    assert_eq!(server.requests().len(), 3);
    assert_eq!(target_server.requests().len(), 1);
}

#[tokio::test]
async fn http_redirect_to_another_host_is_not_followed_and_warns() {
    let server = http_server(|seen: &Seen, port| match seen.path.as_str() {
        "/away" => Reply::redirect(302, format!("http://localhost:{port}/healthz")).body("moved"),
        _ => Reply::status(200).body("followed"),
    })
    .await;
    let result = get(http_get(server.port(), "/away")).await;
    assert_eq!(
        result,
        ProbeResult::new(
            ProbeOutcome::Warning,
            "Probe terminated redirects, Response body: moved"
        )
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn http_redirect_loop_stops_after_10_requests() {
    let server = http_server(|_: &Seen, _| Reply::redirect(302, "/loop")).await;
    let result = get(http_get(server.port(), "/loop")).await;
    assert_eq!(result.outcome, ProbeOutcome::Failure, "{result:?}");
    assert_eq!(result.error, None);
    assert!(
        result.output.ends_with("stopped after 10 redirects"),
        "{}",
        result.output
    );
    assert_eq!(server.requests().len(), 10);
}

#[tokio::test]
async fn http_host_override_survives_relative_redirects_only() {
    let server = http_server(|seen: &Seen, port| match seen.path.as_str() {
        "/rel" => Reply::redirect(302, "/abs"),
        "/abs" => Reply::redirect(302, format!("http://127.0.0.1:{port}/end")),
        _ => Reply::status(200),
    })
    .await;
    let mut action = http_get(server.port(), "/rel");
    action.http_headers = Some(vec![header("Host", "virtual.test")]);
    assert_eq!(get(action).await.outcome, ProbeOutcome::Success);
    let hosts: Vec<String> = server
        .requests()
        .iter()
        .map(|seen| seen.headers["host"].to_str().unwrap_or_default().to_owned())
        .collect();
    let own = format!("127.0.0.1:{}", server.port());
    assert_eq!(hosts, ["virtual.test", "virtual.test", own.as_str()]);
}

#[tokio::test]
async fn https_skips_certificate_verification() {
    let server = https_server(ok_server_reply).await;
    let mut action = http_get(server.port(), "/healthz");
    action.scheme = Some("HTTPS".into());
    let result = get(action.clone()).await;
    assert_eq!(result, ProbeResult::new(ProbeOutcome::Success, "ok"));

    // A DNS name works too, with SNI.
    action.host = Some("localhost".into());
    let result = get(action).await;
    assert_eq!(result, ProbeResult::new(ProbeOutcome::Success, "ok"));
}

#[tokio::test]
async fn https_against_plain_http_is_a_failure() {
    let server = http_server(ok_server_reply).await;
    let mut action = http_get(server.port(), "/healthz");
    action.scheme = Some("https".into());
    let result = get(action).await;
    assert_eq!(result.outcome, ProbeOutcome::Failure, "{result:?}");
    assert!(
        result
            .output
            .contains("server gave HTTP response to HTTPS client"),
        "{}",
        result.output
    );
}

// ---- HTTP hooks ----

fn http_hook(action: corev1::HTTPGetAction) -> corev1::LifecycleHandler {
    corev1::LifecycleHandler {
        http_get: Some(action),
        ..Default::default()
    }
}

#[tokio::test]
async fn http_hook_succeeds_on_any_status_with_the_lifecycle_agent() {
    let server = http_server(|_: &Seen, _| Reply::status(500)).await;
    let result = probes()
        .run_hook(&http_hook(http_get(server.port(), "/stop")), &local())
        .await;
    assert_eq!(result, HookResult::Succeeded);
    let seen = server.requests();
    let headers = &seen.first().expect("one request").headers;
    assert_eq!(headers["user-agent"], "kube-lifecycle/1.35");
    assert_eq!(headers["accept"], "*/*");
}

#[tokio::test]
async fn http_hook_fails_on_transport_errors() {
    let result = probes()
        .run_hook(&http_hook(http_get(closed_port(), "/stop")), &local())
        .await;
    assert!(matches!(result, HookResult::Failed(_)), "{result:?}");
}

#[tokio::test]
async fn https_hook_falls_back_to_http_once_without_authorization() {
    let server = http_server(ok_server_reply).await;
    let mut action = http_get(server.port(), "/healthz");
    action.scheme = Some("HTTPS".into());
    action.http_headers = Some(vec![
        header("Authorization", "Bearer secret"),
        header("X-Kept", "yes"),
    ]);
    let (probes, mut warnings) = probes().with_hook_warnings(4);
    let result = probes.run_hook(&http_hook(action), &local()).await;
    assert_eq!(result, HookResult::Succeeded);
    let seen = server.requests();
    let headers = &seen.first().expect("the plain-HTTP retry").headers;
    assert!(headers.get("authorization").is_none());
    assert_eq!(headers["x-kept"], "yes");
    let warning = warnings.try_recv().expect("a fallback warning");
    assert_eq!(warning.reason, HookWarning::LIFECYCLE_HTTP_FALLBACK);
    assert_eq!(
        warning.message,
        format!(
            "request to HTTPS lifecycle hook 127.0.0.1:{} got HTTP response, retry with HTTP succeeded",
            server.port()
        )
    );
}

#[tokio::test]
async fn a_connection_close_answer_ends_with_a_reset_and_no_fin() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    // The server answers `Connection: close` and keeps its end open to see how the probe ends.
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut request = [0u8; 1024];
        let read = stream.read(&mut request).await.expect("the request");
        assert!(read > 0, "the probe sent no request");
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .await
            .expect("the answer");
        stream.read(&mut request).await
    });
    let result = get(http_get(port, "/")).await;
    assert_eq!(result.outcome, ProbeOutcome::Success, "{result:?}");
    let after = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the probe ended its connection")
        .expect("the server task");
    // A FIN (`shutdown`) would read as the end of the stream; the probe's close is a RST.
    match after {
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}"),
        Ok(read) => panic!("the server read {read} bytes (0: a FIN) where the probe's RST was expected"),
    }
}

#[tokio::test]
async fn sequential_http_probes_leave_almost_no_time_wait() {
    let server = http_server(ok_server_reply).await;
    let before = time_wait_on(server.port());
    for _ in 0..100 {
        let result = get(http_get(server.port(), "/healthz")).await;
        assert_eq!(result.outcome, ProbeOutcome::Success, "{result:?}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = time_wait_on(server.port());
    assert!(
        after.saturating_sub(before) <= 5,
        "{after} sockets in TIME_WAIT after 100 HTTP probes ({before} before)"
    );
}
