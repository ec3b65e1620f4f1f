//! The probe vocabulary: which probe, what it found, and the seam that runs one.

use std::time::Duration;

use crate::corev1;
use crate::runtime::ContainerId;

/// A probe's timing fields and the API server's defaults for them (rule 1.3): a field that
/// is unset or zero gets its default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeTiming {
    /// `timeoutSeconds` (default 1).
    pub timeout_seconds: i32,
    /// `periodSeconds` (default 10).
    pub period_seconds: i32,
    /// `successThreshold` (default 1).
    pub success_threshold: i32,
    /// `failureThreshold` (default 3).
    pub failure_threshold: i32,
}

impl ProbeTiming {
    /// The defaults kube-apiserver applies.
    pub const DEFAULT: ProbeTiming = ProbeTiming {
        timeout_seconds: 1,
        period_seconds: 10,
        success_threshold: 1,
        failure_threshold: 3,
    };

    /// The timing of `probe` as stored: each field as given, its default when unset or zero
    /// (a negative value stays, for validation to reject).
    pub fn of(probe: &corev1::Probe) -> ProbeTiming {
        let d = ProbeTiming::DEFAULT;
        let or = |v: Option<i32>, default: i32| v.filter(|v| *v != 0).unwrap_or(default);
        ProbeTiming {
            timeout_seconds: or(probe.timeout_seconds, d.timeout_seconds),
            period_seconds: or(probe.period_seconds, d.period_seconds),
            success_threshold: or(probe.success_threshold, d.success_threshold),
            failure_threshold: or(probe.failure_threshold, d.failure_threshold),
        }
    }

    /// Writes the defaults into `probe`'s unset or zero fields.
    pub fn apply_defaults(probe: &mut corev1::Probe) {
        let t = ProbeTiming::of(probe);
        probe.timeout_seconds = Some(t.timeout_seconds);
        probe.period_seconds = Some(t.period_seconds);
        probe.success_threshold = Some(t.success_threshold);
        probe.failure_threshold = Some(t.failure_threshold);
    }
}

/// Which of a container's three probes a result belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// `livenessProbe`: a failure kills the container.
    Liveness,
    /// `readinessProbe`: a failure takes the container out of Service endpoints.
    Readiness,
    /// `startupProbe`: gates the other two until it succeeds once.
    Startup,
}

impl ProbeKind {
    /// All three kinds, in the order the kubelet creates their workers.
    pub const ALL: [ProbeKind; 3] = [ProbeKind::Readiness, ProbeKind::Liveness, ProbeKind::Startup];

    /// The capitalised name the kubelet uses in events (`Liveness probe failed: ...`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a probe handler found, before thresholds are applied.
///
/// These are the kubelet's low-level prober results (`pkg/probe`), not the cached
/// Success/Failure a container ends up with: `Warning` counts as success and `Unknown` as
/// failure once the lifecycle model sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeOutcome {
    /// The check passed (exit 0, connection established, HTTP 2xx, gRPC `SERVING`).
    Success,
    /// It passed with a remark: an HTTP 3xx that was not followed. Counts as success and is
    /// reported with a `ProbeWarning` event.
    Warning,
    /// The check ran and failed (non-zero exit, refused connection, HTTP 4xx/5xx, timeout).
    Failure,
    /// The check could not tell. Counts as failure unless [`ProbeResult::error`] is set.
    Unknown,
}

/// One probe attempt's complete result.
///
/// Expected negative outcomes are values here, never `Err`: a failed probe is data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// The verdict.
    pub outcome: ProbeOutcome,
    /// Short human-readable detail: HTTP status, exit code and output tail, connection error.
    pub output: String,
    /// Set when the handler itself could not run (a port name that does not resolve, an exec
    /// that could not be spawned) even after its retries. The kubelet discards such results:
    /// they change no counter and no state, and only produce an `Unhealthy` event.
    pub error: Option<String>,
}

impl ProbeResult {
    /// A result with the given outcome and output and no handler error.
    pub fn new(outcome: ProbeOutcome, output: impl Into<String>) -> Self {
        ProbeResult {
            outcome,
            output: output.into(),
            error: None,
        }
    }

    /// A handler error: the result is discarded by the lifecycle model.
    pub fn errored(error: impl Into<String>) -> Self {
        ProbeResult {
            outcome: ProbeOutcome::Unknown,
            output: String::new(),
            error: Some(error.into()),
        }
    }
}

/// Where a probe is aimed: the container instance and the pod's address.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeTarget {
    /// The container instance being probed (exec probes run inside it).
    pub container_id: ContainerId,
    /// The pod IP (`status.podIP`), used when a handler has no `host`.
    pub pod_ip: String,
    /// The container's declared ports, for resolving named ports.
    pub ports: Vec<corev1::ContainerPort>,
    /// The container's static `env[].value` entries, for `$(VAR)` expansion in exec probes.
    pub env: Vec<(String, String)>,
}

/// Runs one probe attempt. Implementations enforce `timeout` themselves, retry handler errors as
/// the kubelet does (up to three tries), and never panic.
#[async_trait::async_trait]
pub trait Prober: Send + Sync {
    /// Runs `probe`'s handler once against `target`, bounded by `timeout`.
    async fn probe(&self, probe: &corev1::Probe, target: &ProbeTarget, timeout: Duration) -> ProbeResult;
}

/// Something a hook did that deserves a Warning event although the hook's result does not show
/// it (the kubelet records these as events on the pod).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookWarning {
    /// The container whose hook it was.
    pub container_id: ContainerId,
    /// The event reason, e.g. [`HookWarning::LIFECYCLE_HTTP_FALLBACK`].
    pub reason: &'static str,
    /// The event message.
    pub message: String,
}

impl HookWarning {
    /// An HTTPS hook got a plain-HTTP answer and succeeded when retried over HTTP (rule 8.6).
    pub const LIFECYCLE_HTTP_FALLBACK: &'static str = "LifecycleHTTPFallback";
}

/// Runs lifecycle hook handlers (`postStart`, `preStop`): exec in the container, HTTP GET (any
/// response is success), sleep; a `tcpSocket` handler always fails, as in the kubelet.
/// Implementations never panic and report failure as [`HookResult::Failed`](crate::HookResult::Failed).
///
/// Hooks have no timeout of their own: the caller bounds `preStop` by the grace period and
/// drops the future when it stops waiting (a `sleep` hook then ends early).
#[async_trait::async_trait]
pub trait HookRunner: Send + Sync {
    /// Runs `handler` against `target`.
    async fn run_hook(
        &self,
        handler: &corev1::LifecycleHandler,
        target: &ProbeTarget,
    ) -> crate::runtime::HookResult;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_timing_defaults_unset_and_zero_fields_only() {
        let probe = corev1::Probe {
            timeout_seconds: Some(0),
            period_seconds: None,
            success_threshold: Some(2),
            failure_threshold: Some(-1),
            ..Default::default()
        };
        assert_eq!(
            ProbeTiming::of(&probe),
            ProbeTiming {
                timeout_seconds: 1,
                period_seconds: 10,
                success_threshold: 2,
                failure_threshold: -1,
            }
        );
        let mut stored = probe;
        ProbeTiming::apply_defaults(&mut stored);
        assert_eq!(
            (
                stored.timeout_seconds,
                stored.period_seconds,
                stored.failure_threshold
            ),
            (Some(1), Some(10), Some(-1))
        );
    }
}
