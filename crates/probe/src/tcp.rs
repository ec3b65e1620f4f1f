//! TCP probes (rule 4.12): connect within the timeout, close at once, send nothing.

use std::time::Duration;

use podvisor_core::corev1;
use podvisor_core::{ProbeOutcome, ProbeResult, ProbeTarget};

use crate::{dial, join_host_port, port};

/// Connects to `tcpSocket.host` (or the pod IP) on the resolved port within `timeout`.
/// Connected → `Success` (the connection is closed right away); refused, unreachable or timed out
/// → `Failure`; a port that does not resolve → a handler error.
pub async fn probe(action: &corev1::TCPSocketAction, target: &ProbeTarget, timeout: Duration) -> ProbeResult {
    let port = match port::resolve(&action.port, &target.ports) {
        Ok(port) => port,
        Err(error) => return ProbeResult::errored(error.to_string()),
    };
    let host = action
        .host
        .as_deref()
        .filter(|host| !host.is_empty())
        .unwrap_or(&target.pod_ip);
    let address = join_host_port(host, port);
    // The connection is closed with a RST (SO_LINGER 0): no TIME_WAIT on either end.
    match tokio::time::timeout(timeout, dial::reach(host, port)).await {
        Ok(Ok(())) => ProbeResult::new(ProbeOutcome::Success, ""),
        Ok(Err(error)) => ProbeResult::new(ProbeOutcome::Failure, error.to_string()),
        Err(_elapsed) => ProbeResult::new(ProbeOutcome::Failure, format!("dial tcp {address}: i/o timeout")),
    }
}
