//! gRPC probes (rules 4.16-4.17): `grpc.health.v1.Health/Check` in plaintext to the pod IP.
//!
//! tonic's generated client (from `tonic-health`) runs over a one-shot hyper HTTP/2 connection
//! on a probe socket ([`crate::dial`]), not over a tonic `Channel`: no pool, no reconnects, no
//! balancer, and the connection lives exactly as long as the probe. One deadline covers
//! connecting and the RPC.
//!
//! Every outcome but `SERVING` is a `Failure`, never a handler error. Unlike grpc-go with
//! `WithBlock`, which keeps redialling a refused port until the deadline, a refused connection
//! fails at once; the verdict is the same.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use podvisor_core::corev1;
use podvisor_core::{ProbeOutcome, ProbeResult, ProbeTarget};
use tokio::time::Instant;
use tonic::body::Body;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::conn::{TimedOut, drive, error_chain, within};
use crate::{PROBE_USER_AGENT, dial, go_duration, join_host_port};

/// Makes a hyper HTTP/2 client connection usable as tonic's transport.
#[derive(Clone, Debug)]
struct H2(SendRequest<Body>);

impl tower_service::Service<http::Request<Body>> for H2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

/// Runs a gRPC probe: `Check` with `grpc.service` (default `""`) against the pod IP and
/// `grpc.port`, connection and RPC within `timeout`. `SERVING` → `Success`; everything else
/// (`NOT_SERVING`, `UNKNOWN`, `SERVICE_UNKNOWN`, an error status such as `Unimplemented` or
/// `NotFound`, a timeout, a failed connection) → `Failure`.
pub async fn probe(action: &corev1::GRPCAction, target: &ProbeTarget, timeout: Duration) -> ProbeResult {
    let deadline = Instant::now() + timeout;
    let service = action.service.clone().unwrap_or_default();
    let failure = |output: String| ProbeResult::new(ProbeOutcome::Failure, output);
    let Some(port) = u16::try_from(action.port).ok().filter(|port| *port != 0) else {
        return failure(format!("error: invalid grpc port {}", action.port));
    };
    let address = join_host_port(&target.pod_ip, port);
    let within_text = go_duration(timeout);

    let stream = match within(Some(deadline), dial::connect(&target.pod_ip, port)).await {
        Err(TimedOut) => {
            return failure(format!(
                "timeout: failed to connect service {address:?} within {within_text}: context deadline exceeded"
            ));
        }
        Ok(Err(error)) => {
            return failure(format!("error: failed to connect service {address:?}: {error}"));
        }
        Ok(Ok(stream)) => stream,
    };
    let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Body>(TokioIo::new(stream));
    let (sender, conn) = match within(Some(deadline), handshake).await {
        Err(TimedOut) => {
            return failure(format!(
                "timeout: failed to connect service {address:?} within {within_text}: context deadline exceeded"
            ));
        }
        Ok(Err(error)) => {
            return failure(format!(
                "error: failed to connect service {address:?}: {}",
                error_chain(&error)
            ));
        }
        Ok(Ok(pair)) => pair,
    };
    let Ok(origin) = http::Uri::try_from(format!("http://{address}")) else {
        return failure(format!("error: invalid address {address:?}"));
    };
    let mut client = HealthClient::with_origin(H2(sender), origin);
    let mut request = tonic::Request::new(HealthCheckRequest { service });
    request.set_timeout(deadline.saturating_duration_since(Instant::now()));
    request.metadata_mut().insert(
        "user-agent",
        tonic::metadata::MetadataValue::from_static(PROBE_USER_AGENT),
    );
    let rpc_timeout = || {
        failure(format!(
            "timeout: health rpc did not complete within {within_text}"
        ))
    };
    let answer = within(Some(deadline), drive(client.check(request), conn)).await;
    match answer {
        Err(TimedOut) => rpc_timeout(),
        Ok(Err(status)) => match status.code() {
            tonic::Code::Unimplemented => failure(format!(
                "this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                status.message()
            )),
            tonic::Code::DeadlineExceeded => rpc_timeout(),
            _ => failure(format!("error: health rpc probe failed: {status}")),
        },
        Ok(Ok(response)) => {
            let status = response.into_inner().status;
            if status == ServingStatus::Serving as i32 {
                ProbeResult::new(ProbeOutcome::Success, "service healthy")
            } else {
                let name = ServingStatus::try_from(status)
                    .map(|known| known.as_str_name().to_owned())
                    .unwrap_or_else(|_| status.to_string());
                failure(format!("service unhealthy (responded with {name:?})"))
            }
        }
    }
}
