//! gRPC probes against a real tonic `grpc.health.v1` server on 127.0.0.1.
#![cfg(feature = "grpc")]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use podvisor_core::corev1;
use podvisor_core::{ProbeOutcome, ProbeResult, Prober};
use podvisor_probe::ProbeSet;
use support::*;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

/// A health server with "" and "ready" serving, "down" not serving and "maybe" unknown.
async fn health_server() -> SocketAddr {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_service_status("", ServingStatus::Serving).await;
    reporter.set_service_status("ready", ServingStatus::Serving).await;
    reporter
        .set_service_status("down", ServingStatus::NotServing)
        .await;
    reporter.set_service_status("maybe", ServingStatus::Unknown).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _keep = reporter;
        let _ = tonic::transport::Server::builder()
            .serve_with_incoming(service, TcpIncoming::from(listener))
            .await;
    });
    addr
}

/// A gRPC server without the health service: every call is `Unimplemented`.
#[derive(Clone)]
struct NoHealth;

impl tower_service::Service<http::Request<tonic::body::Body>> for NoHealth {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: http::Request<tonic::body::Body>) -> Self::Future {
        std::future::ready(Ok(tonic::Status::unimplemented("unknown service").into_http()))
    }
}

async fn no_health_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .serve_with_incoming(NoHealth, TcpIncoming::from(listener))
            .await;
    });
    addr
}

async fn check(port: u16, service: Option<&str>) -> ProbeResult {
    let probe = corev1::Probe {
        grpc: Some(corev1::GRPCAction {
            port: i32::from(port),
            service: service.map(str::to_owned),
        }),
        ..Default::default()
    };
    ProbeSet::new(FakeExec::new(Script::Exit(0, "")))
        .probe(&probe, &local(), ONE_SECOND)
        .await
}

#[tokio::test]
async fn serving_is_success() {
    let server = health_server().await;
    assert_eq!(
        check(server.port(), None).await,
        ProbeResult::new(ProbeOutcome::Success, "service healthy")
    );
    assert_eq!(
        check(server.port(), Some("ready")).await.outcome,
        ProbeOutcome::Success
    );
}

#[tokio::test]
async fn not_serving_and_unknown_are_failures() {
    let server = health_server().await;
    assert_eq!(
        check(server.port(), Some("down")).await,
        ProbeResult::new(
            ProbeOutcome::Failure,
            "service unhealthy (responded with \"NOT_SERVING\")"
        )
    );
    assert_eq!(
        check(server.port(), Some("maybe")).await,
        ProbeResult::new(
            ProbeOutcome::Failure,
            "service unhealthy (responded with \"UNKNOWN\")"
        )
    );
}

#[tokio::test]
async fn an_unknown_service_is_a_failure_not_an_error() {
    let server = health_server().await;
    let result = check(server.port(), Some("nobody")).await;
    assert_eq!(result.outcome, ProbeOutcome::Failure, "{result:?}");
    assert_eq!(result.error, None);
    assert!(
        result.output.starts_with("error: health rpc probe failed"),
        "{}",
        result.output
    );
}

#[tokio::test]
async fn a_server_without_the_health_service_is_a_failure() {
    let server = no_health_server().await;
    let result = check(server.port(), None).await;
    assert_eq!(result.outcome, ProbeOutcome::Failure, "{result:?}");
    assert_eq!(result.error, None);
    assert!(
        result
            .output
            .starts_with("this server does not implement the grpc health protocol"),
        "{}",
        result.output
    );
}

#[tokio::test]
async fn a_closed_port_is_a_failure() {
    let result = check(closed_port(), None).await;
    assert_eq!(result.outcome, ProbeOutcome::Failure, "{result:?}");
    assert_eq!(result.error, None);
}

#[tokio::test]
async fn a_hanging_server_times_out_within_bounds() {
    let server = hanging_server().await;
    let started = Instant::now();
    let result = check(server.port(), None).await;
    let took = started.elapsed();
    assert_eq!(result.outcome, ProbeOutcome::Failure, "{result:?}");
    assert_eq!(result.error, None);
    assert!(result.output.starts_with("timeout"), "{}", result.output);
    assert!(took >= Duration::from_millis(900), "took {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn a_garbage_server_is_a_failure() {
    let server = garbage_server().await;
    let result = check(server.port(), None).await;
    assert_eq!(result.outcome, ProbeOutcome::Failure, "{result:?}");
    assert_eq!(result.error, None);
}

#[tokio::test]
async fn many_probes_leave_almost_no_time_wait() {
    let server = health_server().await;
    let before = time_wait_on(server.port());
    for _ in 0..50 {
        assert_eq!(check(server.port(), None).await.outcome, ProbeOutcome::Success);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = time_wait_on(server.port());
    assert!(
        after.saturating_sub(before) <= 5,
        "{after} sockets in TIME_WAIT after 50 gRPC probes ({before} before)"
    );
}
