//! The kubelet's probe and lifecycle-hook handlers, behind `podvisor-core`'s seams.
//!
//! This crate runs one probe attempt or one hook and says what it found. It implements
//! [`Prober`] and [`HookRunner`] with the semantics of the kubelet's handlers
//! (`shared/docs/k8s-semantics.md` sections 3C, 4 and 8):
//!
//! - **exec**: the command runs in the container through an `Arc<dyn ContainerExec>`, after
//!   `$(VAR)` expansion from the container's static environment ([`exec`]);
//! - **TCP**: connect and close at once ([`tcp`]);
//! - **HTTP GET**: one request on a new connection, same-host redirects, HTTPS without
//!   certificate checks ([`http`], feature `http`);
//! - **gRPC**: `grpc.health.v1.Health/Check` in plaintext ([`grpc`], feature `grpc`);
//! - **hooks**: exec (no timeout), HTTP GET (any response succeeds, HTTPS falls back to HTTP
//!   once), sleep, and `tcpSocket`, which always fails as in the kubelet ([`hook`]).
//!
//! What it is **not**: it applies no thresholds, keeps no probe schedule and decides nothing
//! about a pod (that is `podvisor-lifecycle`); it never depends on the process runtime (exec goes
//! through the [`ContainerExec`] seam); it emits no events (hook warnings go out on a channel,
//! see [`ProbeSet::with_hook_warnings`]).
//!
//! **Where to start:** [`ProbeSet`], which picks the handler for each probe or hook. The
//! handlers' free functions are public too, for callers that want one kind only.
//!
//! # Results, errors and timeouts
//!
//! Expected negative outcomes are values: a refused connection, an HTTP 500, a non-zero exit or
//! a timeout is [`ProbeOutcome::Failure`]. Only what the kubelet treats as a *handler error*
//! (a port name that does not resolve, an exec that cannot run, a body that cannot be read) is
//! reported as [`ProbeResult::errored`], after up to [`MAX_PROBE_TRIES`] tries (rule 3.8).
//! Every probe enforces its own timeout: an attempt never takes much longer than the timeout it
//! is given, even when the peer accepts a connection and then says nothing. Nothing here panics
//! on what a peer sends.
//!
//! # Sockets: `SO_LINGER` 0 instead of the kubelet's 1 s
//!
//! Every probe opens a new connection, and whoever closes a TCP connection first keeps it in
//! `TIME_WAIT` for 60 s on Linux. At 330 probes/s that is about 20,000 sockets. The kubelet sets
//! `SO_LINGER` on with a 1 s timeout (`pkg/probe/dialer_others.go`), expecting it to shorten
//! `TIME_WAIT` to 1 s. On Linux it does not: a non-zero linger time only makes `close()` block
//! until the FIN is acknowledged (which would stall a tokio worker thread), and the socket still
//! sits in `TIME_WAIT` for 60 s. We measured this on the development machine: 50
//! connect-and-close cycles left 50 `TIME_WAIT` sockets with linger 1 s and none with linger 0.
//!
//! So probe sockets set `SO_LINGER` on with **0 s** ([`dial`]): `close()` sends a RST and neither
//! end keeps `TIME_WAIT`, which keeps the node under the benchmark goal of 250 `TIME_WAIT`
//! sockets at 330 probes/s. The kubelet avoids 0 s because a RST discards unsent data; we only
//! close once the exchange is over (TCP probes send nothing, HTTP and gRPC probes close after
//! the response was read), so nothing we still need is lost. The peer may see "connection reset
//! by peer" where the kubelet would have given it a FIN.
//!
//! # Cancel safety
//!
//! Every future here may be dropped at any point: it owns its socket, which is closed (with a
//! RST) when it is dropped, and it spawns no task that outlives it except hyper's HTTP/2 body
//! pipe for a gRPC probe, which ends when the connection does. Dropping a
//! [`HookRunner::run_hook`] future is how a caller cancels a hook: a `sleep` hook then ends
//! early, and an exec hook ends as far as the [`ContainerExec`] implementation ends an exec whose
//! future is dropped.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "http", feature = "grpc"))]
mod conn;
pub mod dial;
pub mod exec;
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub mod grpc;
pub mod hook;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod port;
pub mod tcp;
#[cfg(feature = "http")]
mod tls;

use std::sync::Arc;
use std::time::Duration;

use podvisor_core::corev1;
use podvisor_core::runtime::{ContainerExec, HookResult};
use podvisor_core::{HookRunner, ProbeResult, ProbeTarget, Prober};

pub use hook::HookWarning;
pub use podvisor_core::ProbeOutcome;

/// The Kubernetes version this node claims in `User-Agent` headers (`<major>.<minor>`).
pub const KUBE_VERSION: &str = "1.35";
/// The `User-Agent` of HTTP and gRPC probes.
pub const PROBE_USER_AGENT: &str = "kube-probe/1.35";
/// The `User-Agent` of HTTP lifecycle hooks.
pub const LIFECYCLE_USER_AGENT: &str = "kube-lifecycle/1.35";
/// How much of a response body or of an exec's output a probe keeps: 10 KiB.
pub const MAX_OUTPUT_BYTES: usize = 10 * 1024;
/// How often one probe attempt runs its handler while the handler reports an error (rule 3.8).
pub const MAX_PROBE_TRIES: usize = 3;

/// Every handler behind one value: implements [`Prober`] and [`HookRunner`] and picks the handler
/// each probe or hook names.
///
/// ```
/// # use std::sync::Arc;
/// # use podvisor_core::runtime::ContainerExec;
/// # fn wire(exec: Arc<dyn ContainerExec>) {
/// let probes = Arc::new(podvisor_probe::ProbeSet::new(exec));
/// let prober: Arc<dyn podvisor_core::Prober> = probes.clone();
/// let hooks: Arc<dyn podvisor_core::HookRunner> = probes;
/// # let _ = (prober, hooks);
/// # }
/// ```
#[derive(Clone)]
pub struct ProbeSet {
    exec: Arc<dyn ContainerExec>,
    hook_warnings: Option<tokio::sync::mpsc::Sender<HookWarning>>,
}

impl std::fmt::Debug for ProbeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeSet")
            .field("hook_warnings", &self.hook_warnings.is_some())
            .finish_non_exhaustive()
    }
}

impl ProbeSet {
    /// A probe set whose exec probes and exec hooks run through `exec`.
    pub fn new(exec: Arc<dyn ContainerExec>) -> Self {
        ProbeSet {
            exec,
            hook_warnings: None,
        }
    }

    /// Also reports hook warnings (today only `LifecycleHTTPFallback`) on a channel that holds up
    /// to `capacity` of them; the caller turns them into Warning events. A warning that finds
    /// the channel full or closed is dropped: a slow reader never slows a hook down.
    pub fn with_hook_warnings(mut self, capacity: usize) -> (Self, tokio::sync::mpsc::Receiver<HookWarning>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(capacity.max(1));
        self.hook_warnings = Some(sender);
        (self, receiver)
    }

    /// Runs `probe`'s handler once (plus retries on handler errors), without the trait's boxing.
    pub async fn run_probe(
        &self,
        probe: &corev1::Probe,
        target: &ProbeTarget,
        timeout: Duration,
    ) -> ProbeResult {
        let mut result = self.run_handler_once(probe, target, timeout).await;
        for _ in 1..MAX_PROBE_TRIES {
            if result.error.is_none() {
                break;
            }
            result = self.run_handler_once(probe, target, timeout).await;
        }
        result
    }

    /// One try of the handler, in the kubelet's order: exec, httpGet, tcpSocket, grpc.
    async fn run_handler_once(
        &self,
        probe: &corev1::Probe,
        target: &ProbeTarget,
        timeout: Duration,
    ) -> ProbeResult {
        if let Some(action) = &probe.exec {
            return exec::probe(self.exec.as_ref(), action, target, timeout).await;
        }
        if let Some(action) = &probe.http_get {
            return http_probe(action, target, timeout).await;
        }
        if let Some(action) = &probe.tcp_socket {
            return tcp::probe(action, target, timeout).await;
        }
        if let Some(action) = &probe.grpc {
            return grpc_probe(action, target, timeout).await;
        }
        ProbeResult::errored(format!(
            "missing probe handler for container {}",
            target.container_id
        ))
    }

    /// Runs a lifecycle hook and also returns the warning it produced, if any.
    pub async fn run_hook_reported(
        &self,
        handler: &corev1::LifecycleHandler,
        target: &ProbeTarget,
    ) -> (HookResult, Option<HookWarning>) {
        hook::run(self.exec.as_ref(), handler, target).await
    }
}

#[cfg(feature = "http")]
async fn http_probe(action: &corev1::HTTPGetAction, target: &ProbeTarget, timeout: Duration) -> ProbeResult {
    http::probe(action, target, timeout).await
}

#[cfg(not(feature = "http"))]
async fn http_probe(
    _action: &corev1::HTTPGetAction,
    _target: &ProbeTarget,
    _timeout: Duration,
) -> ProbeResult {
    ProbeResult::errored("httpGet probes are not compiled into this node (feature `http`)")
}

#[cfg(feature = "grpc")]
async fn grpc_probe(action: &corev1::GRPCAction, target: &ProbeTarget, timeout: Duration) -> ProbeResult {
    grpc::probe(action, target, timeout).await
}

#[cfg(not(feature = "grpc"))]
async fn grpc_probe(_action: &corev1::GRPCAction, _target: &ProbeTarget, _timeout: Duration) -> ProbeResult {
    ProbeResult::errored("grpc probes are not compiled into this node (feature `grpc`)")
}

#[async_trait::async_trait]
impl Prober for ProbeSet {
    async fn probe(&self, probe: &corev1::Probe, target: &ProbeTarget, timeout: Duration) -> ProbeResult {
        self.run_probe(probe, target, timeout).await
    }
}

#[async_trait::async_trait]
impl HookRunner for ProbeSet {
    async fn run_hook(&self, handler: &corev1::LifecycleHandler, target: &ProbeTarget) -> HookResult {
        let (result, warning) = self.run_hook_reported(handler, target).await;
        if let (Some(warning), Some(sender)) = (warning, &self.hook_warnings) {
            // Full or closed: the warning is dropped (documented on `with_hook_warnings`).
            let _ = sender.try_send(warning);
        }
        result
    }
}

/// Keeps at most [`MAX_OUTPUT_BYTES`] of `bytes` and turns them into text, replacing invalid
/// UTF-8 (a cut may split a character).
pub(crate) fn output_text(bytes: &[u8]) -> String {
    let kept = bytes.get(..MAX_OUTPUT_BYTES).unwrap_or(bytes);
    String::from_utf8_lossy(kept).into_owned()
}

#[cfg(any(feature = "grpc", test))]
/// A duration the way Go prints one in the kubelet's messages (`1s`, `1.5s`, `300ms`).
pub(crate) fn go_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}s", duration.as_secs_f64())
    }
}

/// `host:port`, with an IPv6 address in brackets (Go's `net.JoinHostPort`).
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn host_port_brackets_ipv6() {
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("[::1]", 80), "[::1]:80");
        assert_eq!(join_host_port("example.com", 8080), "example.com:8080");
    }

    #[test]
    fn output_is_capped() {
        let long = vec![b'a'; MAX_OUTPUT_BYTES + 10];
        assert_eq!(output_text(&long).len(), MAX_OUTPUT_BYTES);
        assert_eq!(output_text(b"ok"), "ok");
    }
}
