//! [`KubeletMetrics`]: what the pod workers observe, as Prometheus metrics with the kubelet's
//! names and labels.
//!
//! | metric | type | labels | recorded |
//! |---|---|---|---|
//! | `prober_probe_total` | counter | `probe_type`, `result`, `container`, `pod`, `namespace`, `pod_uid` | each probe attempt |
//! | `prober_probe_duration_seconds` | histogram | `probe_type`, `container`, `pod`, `namespace` | each successful attempt (as the kubelet) |
//! | `kubelet_pod_start_duration_seconds` | histogram | | worker start (the pod first seen) → phase `Running` first seen |
//! | `kubelet_started_pods_total` | counter | | each sandbox creation |
//! | `kubelet_started_containers_total` | counter | `container_type` (`container`, `init_container`) | each start attempt |
//! | `podvisor_container_restarts_total` | counter | `container`, `pod`, `namespace` | each instance started with a restart count above 0 |
//! | `kubelet_runtime_operations_total` | counter | `operation_type` | each runtime call |
//! | `kubelet_runtime_operations_duration_seconds` | histogram | `operation_type` | each runtime call |
//! | `kubelet_runtime_operations_errors_total` | counter | `operation_type` | each failed runtime call |
//!
//! `operation_type` uses the kubelet's CRI operation names: `run_podsandbox`,
//! `remove_podsandbox`, `start_container` (create and start are one call here),
//! `stop_container` and `exec_sync` (through [`KubeletMetrics::instrument_exec`]).
//!
//! Where it differs from the kubelet: the kubelet has no metric of container restarts (that is
//! kube-state-metrics' `kube_pod_container_status_restarts_total`, read from pod statuses), so
//! that counter carries the `podvisor_` prefix; and a probe whose handler could not run (the
//! kubelet discards such results without counting them) counts as `result="unknown"`, so a
//! probe that never runs is visible. The series of a pod are removed when its worker ends, as
//! the kubelet removes its probe workers' series.
//!
//! Recording never fails and never blocks on I/O; the worker only observes and decides nothing
//! from these values.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use podvisor_core::corev1::Pod;
use podvisor_core::runtime::{ContainerExec, ExecOutput, RuntimeError};
use podvisor_core::{ContainerId, ProbeKind, ProbeOutcome, ProbeResult};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

/// The kubelet's default buckets (`metrics.DefBuckets`), for probe durations.
const DEFAULT_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The kubelet's `podStartupDurationBuckets`.
const POD_START_BUCKETS: [f64; 25] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0,
    480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// `probe_type`: the kubelet's spelling of the probe kinds.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
enum ProbeType {
    Liveness,
    Readiness,
    Startup,
}

impl From<ProbeKind> for ProbeType {
    fn from(kind: ProbeKind) -> Self {
        match kind {
            ProbeKind::Liveness => ProbeType::Liveness,
            ProbeKind::Readiness => ProbeType::Readiness,
            ProbeKind::Startup => ProbeType::Startup,
        }
    }
}

/// `result` of `prober_probe_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the label values are the kubelet's lower-case words
enum ProbeResultLabel {
    successful,
    failed,
    unknown,
}

impl ProbeResultLabel {
    const ALL: [ProbeResultLabel; 3] = [
        ProbeResultLabel::successful,
        ProbeResultLabel::failed,
        ProbeResultLabel::unknown,
    ];

    fn of(result: &ProbeResult) -> Self {
        if result.error.is_some() {
            return ProbeResultLabel::unknown;
        }
        match result.outcome {
            ProbeOutcome::Success | ProbeOutcome::Warning => ProbeResultLabel::successful,
            ProbeOutcome::Failure => ProbeResultLabel::failed,
            ProbeOutcome::Unknown => ProbeResultLabel::unknown,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    probe_type: ProbeType,
    result: ProbeResultLabel,
    container: String,
    pod: String,
    namespace: String,
    pod_uid: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeDurationLabels {
    probe_type: ProbeType,
    container: String,
    pod: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    container: String,
    pod: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerTypeLabels {
    container_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation_type: &'static str,
}

/// A runtime operation, named as the kubelet's `operation_type` label names CRI calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RuntimeOperation {
    /// `ContainerRuntime::create_sandbox` (CRI `RunPodSandbox`).
    RunPodSandbox,
    /// `ContainerRuntime::remove_sandbox` (CRI `RemovePodSandbox`).
    RemovePodSandbox,
    /// `ContainerRuntime::start` (CRI `CreateContainer` and `StartContainer` in one).
    StartContainer,
    /// `ContainerRuntime::stop` (CRI `StopContainer`).
    StopContainer,
    /// `ContainerExec::exec` (CRI `ExecSync`).
    ExecSync,
}

impl RuntimeOperation {
    fn label(self) -> &'static str {
        match self {
            RuntimeOperation::RunPodSandbox => "run_podsandbox",
            RuntimeOperation::RemovePodSandbox => "remove_podsandbox",
            RuntimeOperation::StartContainer => "start_container",
            RuntimeOperation::StopContainer => "stop_container",
            RuntimeOperation::ExecSync => "exec_sync",
        }
    }
}

fn probe_duration_histogram() -> Histogram {
    Histogram::new(DEFAULT_BUCKETS)
}

fn runtime_duration_histogram() -> Histogram {
    // The kubelet's `ExponentialBuckets(.005, 2.5, 14)`.
    Histogram::new(exponential_buckets(0.005, 2.5, 14))
}

struct Inner {
    probe_total: Family<ProbeLabels, Counter>,
    probe_duration: Family<ProbeDurationLabels, Histogram, fn() -> Histogram>,
    pod_start_duration: Histogram,
    started_pods: Counter,
    started_containers: Family<ContainerTypeLabels, Counter>,
    container_restarts: Family<ContainerLabels, Counter>,
    runtime_operations: Family<OperationLabels, Counter>,
    runtime_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    runtime_errors: Family<OperationLabels, Counter>,
}

/// The pod workers' metrics (see the [module documentation](self) for names and labels).
///
/// Cloning is cheap and every clone records into the same metrics. Create one, add it to a
/// registry with [`register`](Self::register), and give it to the supervisor with
/// [`PodSupervisor::with_metrics`](crate::PodSupervisor::with_metrics).
#[derive(Clone)]
pub struct KubeletMetrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KubeletMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletMetrics").finish_non_exhaustive()
    }
}

impl Default for KubeletMetrics {
    fn default() -> Self {
        KubeletMetrics::new()
    }
}

impl KubeletMetrics {
    /// Empty metrics, not yet registered anywhere.
    pub fn new() -> KubeletMetrics {
        let inner = Inner {
            probe_total: Family::default(),
            probe_duration: Family::new_with_constructor(probe_duration_histogram),
            pod_start_duration: Histogram::new(POD_START_BUCKETS),
            started_pods: Counter::default(),
            started_containers: Family::default(),
            container_restarts: Family::default(),
            runtime_operations: Family::default(),
            runtime_duration: Family::new_with_constructor(runtime_duration_histogram),
            runtime_errors: Family::default(),
        };
        KubeletMetrics {
            inner: Arc::new(inner),
        }
    }

    /// Adds every metric to `registry`. Counters are registered without their `_total`
    /// suffix, which the encoder appends.
    pub fn register(&self, registry: &mut Registry) {
        let m = &self.inner;
        registry.register(
            "prober_probe",
            "Cumulative number of a liveness, readiness or startup probe for a container by result.",
            m.probe_total.clone(),
        );
        registry.register(
            "prober_probe_duration_seconds",
            "Duration in seconds for a probe response.",
            m.probe_duration.clone(),
        );
        registry.register(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
            m.pod_start_duration.clone(),
        );
        registry.register(
            "kubelet_started_pods",
            "Cumulative number of pods started",
            m.started_pods.clone(),
        );
        registry.register(
            "kubelet_started_containers",
            "Cumulative number of containers started",
            m.started_containers.clone(),
        );
        registry.register(
            "podvisor_container_restarts",
            "Cumulative number of container restarts (instances started with a restart count above 0)",
            m.container_restarts.clone(),
        );
        registry.register(
            "kubelet_runtime_operations",
            "Cumulative number of runtime operations by operation type.",
            m.runtime_operations.clone(),
        );
        registry.register(
            "kubelet_runtime_operations_duration_seconds",
            "Duration in seconds of runtime operations. Broken down by operation type.",
            m.runtime_duration.clone(),
        );
        registry.register(
            "kubelet_runtime_operations_errors",
            "Cumulative number of runtime operation errors by operation type.",
            m.runtime_errors.clone(),
        );
    }

    /// Wraps `exec` so that every exec (exec probes and exec hooks) is recorded as the
    /// runtime operation `exec_sync`.
    pub fn instrument_exec(&self, exec: Arc<dyn ContainerExec>) -> Arc<dyn ContainerExec> {
        Arc::new(InstrumentedExec {
            exec,
            metrics: self.clone(),
        })
    }

    /// Records one runtime call that took `elapsed`.
    pub(crate) fn runtime_operation(&self, op: RuntimeOperation, elapsed: Duration, ok: bool) {
        let labels = OperationLabels {
            operation_type: op.label(),
        };
        let m = &self.inner;
        m.runtime_operations.get_or_create(&labels).inc();
        m.runtime_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if !ok {
            m.runtime_errors.get_or_create(&labels).inc();
        }
        if op == RuntimeOperation::RunPodSandbox && ok {
            m.started_pods.inc();
        }
    }
}

/// The pod a worker records for: its labels, and the metrics (if any).
#[derive(Clone, Debug)]
pub(crate) struct PodRecorder {
    metrics: Option<KubeletMetrics>,
    pod: Arc<PodLabels>,
    /// The pod's probe series, shared by every clone of the recorder.
    probes: Arc<Mutex<ProbeSeries>>,
}

/// Handles of a pod's probe series, taken from their families at each series' first probe:
/// recording through one is an atomic add, where a family's lookup clones and hashes four
/// label strings (a probe result a second per pod adds up at 1,000 pods). A handle shares its
/// value with the family's series.
#[derive(Debug, Default)]
struct ProbeSeries {
    totals: Vec<(String, ProbeKind, ProbeResultLabel, Counter)>,
    durations: Vec<(String, ProbeKind, Histogram)>,
}

#[derive(Debug)]
struct PodLabels {
    name: String,
    namespace: String,
    uid: String,
}

impl PodRecorder {
    /// A recorder for `pod`; records nothing without `metrics`.
    pub(crate) fn new(metrics: Option<KubeletMetrics>, pod: &Pod) -> PodRecorder {
        let meta = &pod.metadata;
        PodRecorder {
            metrics,
            pod: Arc::new(PodLabels {
                name: meta.name.clone().unwrap_or_default(),
                namespace: podvisor_core::object::namespace_of(meta).to_string(),
                uid: meta.uid.clone().unwrap_or_default(),
            }),
            probes: Arc::default(),
        }
    }

    /// Records one probe attempt of `container`.
    pub(crate) fn probe(&self, container: &str, kind: ProbeKind, result: &ProbeResult, elapsed: Duration) {
        let Some(m) = &self.metrics else { return };
        let label = ProbeResultLabel::of(result);
        let mut series = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        match series
            .totals
            .iter()
            .find(|(c, k, l, _)| c == container && *k == kind && *l == label)
        {
            Some((.., total)) => {
                total.inc();
            }
            None => {
                let total = m
                    .inner
                    .probe_total
                    .get_or_create(&self.probe_labels(container, kind, label))
                    .clone();
                total.inc();
                series.totals.push((container.to_owned(), kind, label, total));
            }
        };
        // The kubelet observes the duration of successful probes only.
        if label != ProbeResultLabel::successful {
            return;
        }
        let seconds = elapsed.as_secs_f64();
        match series
            .durations
            .iter()
            .find(|(c, k, _)| c == container && *k == kind)
        {
            Some((.., duration)) => duration.observe(seconds),
            None => {
                let duration = m
                    .inner
                    .probe_duration
                    .get_or_create(&self.duration_labels(container, kind))
                    .clone();
                duration.observe(seconds);
                series.durations.push((container.to_owned(), kind, duration));
            }
        }
    }

    /// Records a start attempt of `container` (an init container if `init`).
    pub(crate) fn container_start_attempt(&self, init: bool) {
        let Some(m) = &self.metrics else { return };
        let container_type = if init { "init_container" } else { "container" };
        m.inner
            .started_containers
            .get_or_create(&ContainerTypeLabels { container_type })
            .inc();
    }

    /// Records that an instance of `container` with `restart_count` started.
    pub(crate) fn container_started(&self, container: &str, restart_count: i32) {
        let Some(m) = &self.metrics else { return };
        if restart_count > 0 {
            m.inner
                .container_restarts
                .get_or_create(&self.container_labels(container))
                .inc();
        }
    }

    /// Records that the pod reached `Running`, `elapsed` after its worker started.
    pub(crate) fn pod_running(&self, elapsed: Duration) {
        if let Some(m) = &self.metrics {
            m.inner.pod_start_duration.observe(elapsed.as_secs_f64());
        }
    }

    /// Records one runtime call.
    pub(crate) fn runtime_operation(&self, op: RuntimeOperation, elapsed: Duration, ok: bool) {
        if let Some(m) = &self.metrics {
            m.runtime_operation(op, elapsed, ok);
        }
    }

    /// Removes every per-pod series of `containers` (the pod's worker has ended).
    pub(crate) fn forget(&self, containers: &[String]) {
        let Some(m) = &self.metrics else { return };
        let mut series = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        series.totals.retain(|(c, ..)| !containers.contains(c));
        series.durations.retain(|(c, ..)| !containers.contains(c));
        for container in containers {
            for kind in [ProbeKind::Liveness, ProbeKind::Readiness, ProbeKind::Startup] {
                for result in ProbeResultLabel::ALL {
                    m.inner
                        .probe_total
                        .remove(&self.probe_labels(container, kind, result));
                }
                m.inner
                    .probe_duration
                    .remove(&self.duration_labels(container, kind));
            }
            m.inner
                .container_restarts
                .remove(&self.container_labels(container));
        }
    }

    fn probe_labels(&self, container: &str, kind: ProbeKind, result: ProbeResultLabel) -> ProbeLabels {
        ProbeLabels {
            probe_type: kind.into(),
            result,
            container: container.to_string(),
            pod: self.pod.name.clone(),
            namespace: self.pod.namespace.clone(),
            pod_uid: self.pod.uid.clone(),
        }
    }

    fn duration_labels(&self, container: &str, kind: ProbeKind) -> ProbeDurationLabels {
        ProbeDurationLabels {
            probe_type: kind.into(),
            container: container.to_string(),
            pod: self.pod.name.clone(),
            namespace: self.pod.namespace.clone(),
        }
    }

    fn container_labels(&self, container: &str) -> ContainerLabels {
        ContainerLabels {
            container: container.to_string(),
            pod: self.pod.name.clone(),
            namespace: self.pod.namespace.clone(),
        }
    }
}

/// Runs `op` and records it as runtime operation `kind`.
pub(crate) async fn timed<T, E>(
    recorder: &PodRecorder,
    kind: RuntimeOperation,
    op: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = op.await;
    recorder.runtime_operation(kind, started.elapsed(), result.is_ok());
    result
}

/// A [`ContainerExec`] that records every call as `exec_sync`.
struct InstrumentedExec {
    exec: Arc<dyn ContainerExec>,
    metrics: KubeletMetrics,
}

#[async_trait::async_trait]
impl ContainerExec for InstrumentedExec {
    async fn exec(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
        let started = Instant::now();
        let result = self.exec.exec(id, argv, timeout).await;
        self.metrics
            .runtime_operation(RuntimeOperation::ExecSync, started.elapsed(), result.is_ok());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    fn pod() -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.namespace = Some("team".into());
        pod.metadata.uid = Some("uid-1".into());
        pod
    }

    fn encoded(metrics: &KubeletMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encoding into a String cannot fail");
        text
    }

    #[test]
    fn records_and_encodes_with_the_kubelets_names_and_labels() {
        let metrics = KubeletMetrics::new();
        let rec = PodRecorder::new(Some(metrics.clone()), &pod());
        let ok = ProbeResult::new(ProbeOutcome::Success, "");
        rec.probe("app", ProbeKind::Readiness, &ok, Duration::from_millis(20));
        rec.probe("app", ProbeKind::Readiness, &ok, Duration::from_millis(20));
        let failed = ProbeResult::new(ProbeOutcome::Failure, "exit 1");
        rec.probe("app", ProbeKind::Liveness, &failed, Duration::from_millis(3));
        rec.container_start_attempt(false);
        rec.container_started("app", 0);
        rec.container_started("app", 1);
        rec.pod_running(Duration::from_secs(2));
        rec.runtime_operation(RuntimeOperation::RunPodSandbox, Duration::from_millis(40), true);
        rec.runtime_operation(RuntimeOperation::StopContainer, Duration::from_millis(1), false);
        let text = encoded(&metrics);
        for line in [
            r#"prober_probe_total{probe_type="Readiness",result="successful",container="app",pod="web",namespace="team",pod_uid="uid-1"} 2"#,
            r#"prober_probe_total{probe_type="Liveness",result="failed",container="app",pod="web",namespace="team",pod_uid="uid-1"} 1"#,
            r#"prober_probe_duration_seconds_count{probe_type="Readiness",container="app",pod="web",namespace="team"} 2"#,
            r#"kubelet_pod_start_duration_seconds_count 1"#,
            r#"kubelet_started_pods_total 1"#,
            r#"kubelet_started_containers_total{container_type="container"} 1"#,
            r#"podvisor_container_restarts_total{container="app",pod="web",namespace="team"} 1"#,
            r#"kubelet_runtime_operations_total{operation_type="run_podsandbox"} 1"#,
            r#"kubelet_runtime_operations_duration_seconds_count{operation_type="stop_container"} 1"#,
            r#"kubelet_runtime_operations_errors_total{operation_type="stop_container"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        assert!(
            !text.contains(r#"prober_probe_duration_seconds_count{probe_type="Liveness""#),
            "failed probes have no duration, as in the kubelet"
        );
    }

    #[test]
    fn a_handler_error_counts_as_unknown_and_forget_removes_the_pods_series() {
        let metrics = KubeletMetrics::new();
        let rec = PodRecorder::new(Some(metrics.clone()), &pod());
        let mut errored = ProbeResult::new(ProbeOutcome::Failure, "");
        errored.error = Some("port not found".into());
        rec.probe("app", ProbeKind::Startup, &errored, Duration::ZERO);
        assert!(encoded(&metrics).contains(r#"prober_probe_total{probe_type="Startup",result="unknown""#));
        rec.forget(&["app".to_string()]);
        assert!(!encoded(&metrics).contains("prober_probe_total{"));
    }

    /// The worker records each probe through a clone of its recorder: every clone counts into
    /// the same series, and `forget` removes them.
    #[test]
    fn clones_of_a_recorder_count_into_one_series() {
        let metrics = KubeletMetrics::new();
        let rec = PodRecorder::new(Some(metrics.clone()), &pod());
        let ok = ProbeResult::new(ProbeOutcome::Success, "");
        for _ in 0..3 {
            rec.clone()
                .probe("app", ProbeKind::Liveness, &ok, Duration::from_millis(5));
        }
        rec.clone().probe(
            "sidecar",
            ProbeKind::Liveness,
            &ProbeResult::new(ProbeOutcome::Failure, ""),
            Duration::ZERO,
        );
        let text = encoded(&metrics);
        for line in [
            r#"prober_probe_total{probe_type="Liveness",result="successful",container="app",pod="web",namespace="team",pod_uid="uid-1"} 3"#,
            r#"prober_probe_total{probe_type="Liveness",result="failed",container="sidecar",pod="web",namespace="team",pod_uid="uid-1"} 1"#,
            r#"prober_probe_duration_seconds_count{probe_type="Liveness",container="app",pod="web",namespace="team"} 3"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        rec.forget(&["app".to_string(), "sidecar".to_string()]);
        assert!(
            !encoded(&metrics).contains("prober_probe"),
            "{}",
            encoded(&metrics)
        );
    }

    #[test]
    fn without_metrics_nothing_is_recorded_and_nothing_fails() {
        let rec = PodRecorder::new(None, &pod());
        rec.probe(
            "app",
            ProbeKind::Liveness,
            &ProbeResult::new(ProbeOutcome::Success, ""),
            Duration::ZERO,
        );
        rec.forget(&["app".to_string()]);
    }
}
