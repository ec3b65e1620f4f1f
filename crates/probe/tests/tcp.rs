//! TCP probes and the `tcpSocket` hook against real listeners on 127.0.0.1, and the
//! `TIME_WAIT` budget of probe sockets.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use podvisor_core::corev1;
use podvisor_core::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_core::runtime::HookResult;
use podvisor_core::{HookRunner, ProbeOutcome, ProbeResult, Prober};
use podvisor_probe::ProbeSet;
use support::*;

fn probes() -> ProbeSet {
    ProbeSet::new(FakeExec::new(Script::Exit(0, "")))
}

async fn run(probe: corev1::Probe) -> ProbeResult {
    probes().probe(&probe, &local(), ONE_SECOND).await
}

#[tokio::test]
async fn tcp_connects_to_a_listener() {
    let server = hanging_server().await;
    let result = run(tcp_probe(IntOrString::Int(i32::from(server.port())))).await;
    assert_eq!(result.outcome, ProbeOutcome::Success, "{result:?}");
    assert_eq!(result.error, None);
}

#[tokio::test]
async fn tcp_refused_is_a_failure_not_an_error() {
    let result = run(tcp_probe(IntOrString::Int(i32::from(closed_port())))).await;
    assert_eq!(result.outcome, ProbeOutcome::Failure, "{result:?}");
    assert_eq!(result.error, None);
    assert!(result.output.contains("refused"), "{}", result.output);
}

#[tokio::test]
async fn tcp_named_ports_resolve_in_the_container() {
    let server = hanging_server().await;
    let target = target(&[("liveness-port", server.port())], &[]);
    let by_name = tcp_probe(IntOrString::String("liveness-port".into()));
    let result = probes().probe(&by_name, &target, ONE_SECOND).await;
    assert_eq!(result.outcome, ProbeOutcome::Success, "{result:?}");

    let numeric = tcp_probe(IntOrString::String(server.port().to_string()));
    let result = probes().probe(&numeric, &target, ONE_SECOND).await;
    assert_eq!(result.outcome, ProbeOutcome::Success, "{result:?}");
}

#[tokio::test]
async fn tcp_unknown_or_out_of_range_ports_are_errors() {
    for port in [
        IntOrString::String("nope".into()),
        IntOrString::Int(0),
        IntOrString::Int(70000),
    ] {
        let result = run(tcp_probe(port.clone())).await;
        assert_eq!(result.outcome, ProbeOutcome::Unknown, "{port:?}");
        assert!(result.error.is_some(), "{port:?}: {result:?}");
    }
}

#[tokio::test]
async fn tcp_timeout_is_a_failure_within_bounds() {
    // A listener whose accept queue is full drops further SYNs: connecting hangs.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    socket.bind(&any.into()).expect("bind");
    socket.listen(0).expect("listen");
    let port = socket
        .local_addr()
        .expect("local addr")
        .as_socket()
        .expect("inet")
        .port();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(200), connect).await {
            fillers.push(stream);
        }
    }
    let started = Instant::now();
    let result = run(tcp_probe(IntOrString::Int(i32::from(port)))).await;
    let took = started.elapsed();
    assert_eq!(result.outcome, ProbeOutcome::Failure, "{result:?}");
    assert_eq!(result.error, None);
    assert!(result.output.contains("i/o timeout"), "{}", result.output);
    assert!(took >= Duration::from_millis(900), "took {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop((fillers, socket));
}

#[tokio::test]
async fn tcp_socket_hook_always_fails() {
    let server = hanging_server().await;
    let handler = corev1::LifecycleHandler {
        tcp_socket: Some(corev1::TCPSocketAction {
            port: IntOrString::Int(i32::from(server.port())),
            host: None,
        }),
        ..Default::default()
    };
    let result = probes().run_hook(&handler, &local()).await;
    match result {
        HookResult::Failed(message) => assert!(message.starts_with("invalid handler"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

// Two threads: a probe to a local port connects without yielding, so the server's accepts run
// beside the probes, as a probed server does in its own process. The accept queue holds every
// probe: a probe's handshake completes in the kernel whether or not the server has accepted
// the connections before it, and with the default backlog of 128 a server thread kept off the
// CPU for a few milliseconds (a busy machine) made the kernel drop the next SYN, and that
// probe time out, which is not what this test is about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_tcp_probes_leave_almost_no_time_wait() {
    const PROBES: u32 = 200;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let listener = socket.listen(PROBES + 1).expect("listen");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let before = time_wait_on(port);
    let probes = Arc::new(probes());
    let probe = tcp_probe(IntOrString::Int(i32::from(port)));
    for i in 0..PROBES {
        let result = probes.probe(&probe, &local(), ONE_SECOND).await;
        assert_eq!(result.outcome, ProbeOutcome::Success, "probe {i}: {result:?}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = time_wait_on(port);
    assert!(
        after.saturating_sub(before) <= 5,
        "{after} sockets in TIME_WAIT on port {port} after 200 probes ({before} before)"
    );
}
