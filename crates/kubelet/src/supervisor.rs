//! [`PodSupervisor`]: one worker task per pod, started, updated and stopped by pod UID.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use podvisor_core::corev1::Pod;
use podvisor_core::{ConfigSource, HookRunner, Prober, runtime::ContainerRuntime};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info_span, warn};

use crate::clock::Clock;
use crate::metrics::KubeletMetrics;
use crate::view::{PodSink, PodView};
use crate::volumes::VolumeManager;
use crate::worker::{self, Deps, Msg};

/// What the supervisor needs besides its seams.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    /// The node's name, written into `spec.nodeName` of pods that have none.
    pub node_name: String,
    /// The node's address (`status.hostIP`).
    pub host_ip: Option<String>,
    /// The clock the lifecycle model reads.
    pub clock: Clock,
}

struct WorkerHandle {
    messages: mpsc::UnboundedSender<Msg>,
    view: watch::Receiver<PodView>,
    /// The pod left the node's pods ([`PodSupervisor::delete`]: gone from the API, its
    /// manifest removed) and is being torn down: it no longer counts against `--max-pods`
    /// (the kubelet counts the pods its pod manager still has).
    released: bool,
}

/// Runs one worker per pod and routes pod changes to it.
///
/// Dropping the supervisor does not stop the workers; call [`shutdown`](Self::shutdown), which
/// terminates every pod gracefully (as a deletion with each pod's own grace period), critical
/// pods last, and waits for them, up to a deadline.
pub struct PodSupervisor {
    deps: Arc<Deps>,
    node_name: String,
    workers: HashMap<String, WorkerHandle>,
    tracker: TaskTracker,
    token: CancellationToken,
    /// The critical pods' workers (the kubelet's `IsCriticalPod`): a shutdown stops them last.
    critical_tracker: TaskTracker,
    critical_token: CancellationToken,
    /// Cancelled when the node leaves its pods running ([`abandon`](Self::abandon)).
    abandon_token: CancellationToken,
    /// Bumped on every ConfigMap or Secret change; workers watch it.
    config_generation: watch::Sender<u64>,
    /// The most pods admitted at once (`--max-pods`); `None`: no bound.
    max_pods: Option<usize>,
    /// Pods that outlived the previous node process: admitted whatever the bound (they run).
    running_before: std::collections::HashSet<String>,
}

impl PodSupervisor {
    /// A supervisor running pods on `runtime`, probing with `prober`, running hooks with `hooks`
    /// and reporting to `sink`.
    pub fn new(
        runtime: Arc<dyn ContainerRuntime>,
        prober: Arc<dyn Prober>,
        hooks: Arc<dyn HookRunner>,
        sink: Arc<dyn PodSink>,
        config: SupervisorConfig,
    ) -> PodSupervisor {
        let (config_tx, config_rx) = watch::channel(0);
        let deps = Deps {
            runtime,
            prober,
            hooks,
            sink,
            clock: config.clock,
            host_ip: config.host_ip,
            metrics: None,
            config: None,
            volumes: None,
            config_generation: config_rx,
        };
        PodSupervisor {
            deps: Arc::new(deps),
            node_name: config.node_name,
            workers: HashMap::new(),
            tracker: TaskTracker::new(),
            token: CancellationToken::new(),
            critical_tracker: TaskTracker::new(),
            critical_token: CancellationToken::new(),
            abandon_token: CancellationToken::new(),
            config_generation: config_tx,
            max_pods: None,
            running_before: std::collections::HashSet::new(),
        }
    }

    /// Admits at most `max_pods` pods at once (the kubelet's `--max-pods`): a new pod beyond
    /// it is rejected as the kubelet rejects it, phase `Failed` with reason `OutOfpods`, and
    /// never runs. The scheduler keeps pods within it; this catches pods bound by name
    /// (`spec.nodeName` set at creation) and static pods. Pods whose UIDs are in
    /// `running_before` (left running by the previous node process) are always admitted: they
    /// run already, and rejecting them would leave their processes without a worker.
    pub fn with_max_pods(
        mut self,
        max_pods: usize,
        running_before: impl IntoIterator<Item = String>,
    ) -> PodSupervisor {
        self.max_pods = Some(max_pods);
        self.running_before = running_before.into_iter().collect();
        self
    }

    /// Records what the workers observe into `metrics` (probe results and durations, pod start
    /// duration, container restarts, runtime operation latencies). Applies to pods applied
    /// after this call; call it before the first [`apply`](Self::apply).
    pub fn with_metrics(mut self, metrics: KubeletMetrics) -> PodSupervisor {
        let mut deps = Deps::clone(&self.deps);
        deps.metrics = Some(metrics);
        self.deps = Arc::new(deps);
        self
    }

    /// Resolves ConfigMap and Secret references (`env`, `envFrom`, volumes) through `source`.
    /// Without one, every reference is missing. Call it before the first
    /// [`apply`](Self::apply), and call [`config_changed`](Self::config_changed) whenever a
    /// ConfigMap or Secret changes.
    pub fn with_config_source(mut self, source: Arc<dyn ConfigSource>) -> PodSupervisor {
        let mut deps = Deps::clone(&self.deps);
        deps.config = Some(source);
        self.deps = Arc::new(deps);
        self
    }

    /// Serves pod volumes with `volumes`. Without a volume manager, volumes are ignored and
    /// containers get no mounts. Call it before the first [`apply`](Self::apply).
    pub fn with_volumes(mut self, volumes: VolumeManager) -> PodSupervisor {
        let mut deps = Deps::clone(&self.deps);
        deps.volumes = Some(Arc::new(volumes));
        self.deps = Arc::new(deps);
        self
    }

    /// ConfigMaps or Secrets changed: volumes that show them are rewritten, and containers
    /// waiting for a missing reference are tried again at once.
    pub fn config_changed(&self) {
        self.config_generation.send_modify(|g| *g += 1);
    }

    /// Runs `pod`, or passes a change of an already running pod (same UID) to its worker.
    /// A pod without a UID is ignored with a warning: the UID is its identity.
    pub fn apply(&mut self, mut pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone().filter(|u| !u.is_empty()) else {
            warn!(pod = ?pod.metadata.name, "pod without a UID ignored");
            return;
        };
        if let Some(spec) = pod.spec.as_mut()
            && spec.node_name.as_deref().unwrap_or_default().is_empty()
        {
            spec.node_name = Some(self.node_name.clone());
        }
        if pod.metadata.creation_timestamp.is_none() {
            // Pods that did not come through an API server (static pods) start existing now.
            pod.metadata.creation_timestamp = Some(self.deps.clock.now().to_k8s());
        }
        if let Some(worker) = self.workers.get(&uid) {
            if worker.messages.send(Msg::Update(Box::new(pod.clone()))).is_ok() {
                return;
            }
            // That worker has finished; a pod with the same UID is not run twice.
            return;
        }
        if let Some(max) = self.max_pods.filter(|_| !self.running_before.contains(&uid)) {
            let used = self.admitted();
            if used >= max {
                let message = format!(
                    "Node didn't have enough resource: pods, requested: 1, used: {used}, capacity: {max}"
                );
                self.reject(uid, pod, "OutOfpods", message);
                return;
            }
        }
        let (messages, rx) = mpsc::unbounded_channel();
        let (view_tx, view) = watch::channel(PodView {
            pod: pod.clone(),
            ..PodView::default()
        });
        let span = info_span!(
            "pod",
            uid = %uid,
            namespace = podvisor_core::object::namespace_of(&pod.metadata),
            name = pod.metadata.name.as_deref().unwrap_or_default(),
        );
        let deps = Arc::clone(&self.deps);
        let (tracker, token) = if is_critical(&pod) {
            (&self.critical_tracker, self.critical_token.child_token())
        } else {
            (&self.tracker, self.token.child_token())
        };
        let abandon = self.abandon_token.child_token();
        tracker.spawn(worker::run(Box::new(pod), deps, rx, view_tx, token, abandon).instrument(span));
        self.workers.insert(
            uid,
            WorkerHandle {
                messages,
                view,
                released: false,
            },
        );
    }

    /// The pods admitted and not yet terminal (the kubelet's active pods).
    fn admitted(&self) -> usize {
        self.workers
            .values()
            .filter(|w| {
                if w.released {
                    return false;
                }
                let view = w.view.borrow();
                let phase = view.pod.status.as_ref().and_then(|s| s.phase.as_deref());
                !view.finished && !matches!(phase, Some("Succeeded" | "Failed"))
            })
            .count()
    }

    /// The kubelet's `rejectPod`: a Warning event with `reason`, and the pod's status set to
    /// `Failed` with the reason and "Pod was rejected: `message`". No worker runs it.
    fn reject(&mut self, uid: String, mut pod: Pod, reason: &'static str, message: String) {
        warn!(pod = ?pod.metadata.name, reason, %message, "pod rejected");
        let now = self.deps.clock.now();
        let event = podvisor_lifecycle::Event {
            type_: podvisor_lifecycle::EventType::Warning,
            reason,
            message: message.clone(),
            field_path: None,
        };
        self.deps.sink.event(&pod, &event, now);
        pod.status = Some(podvisor_core::corev1::PodStatus {
            phase: Some("Failed".into()),
            reason: Some(reason.into()),
            message: Some(format!("Pod was rejected: {message}")),
            qos_class: Some(podvisor_lifecycle::qos_class(&pod).into()),
            ..Default::default()
        });
        let view = PodView {
            pod,
            finished: true,
            ..PodView::default()
        };
        self.deps.sink.status(&view);
        // Kept as a finished worker: a later change of the same pod is not run either, and
        // `forget_finished` drops it like any other.
        let (messages, _) = mpsc::unbounded_channel();
        let (_, view) = watch::channel(view);
        self.workers.insert(
            uid,
            WorkerHandle {
                messages,
                view,
                released: true,
            },
        );
    }

    /// Terminates the pod with UID `uid`, with an optional grace period in seconds (the pod's
    /// own `terminationGracePeriodSeconds` otherwise). Unknown UIDs are ignored.
    pub fn delete(&mut self, uid: &str, grace_period_seconds: Option<i64>) {
        if let Some(worker) = self.workers.get_mut(uid) {
            worker.released = true;
            let _ = worker.messages.send(Msg::Delete { grace_period_seconds });
        }
    }

    /// The current view of every pod, including finished ones not yet [forgotten](Self::forget_finished).
    pub fn pods(&self) -> Vec<PodView> {
        self.workers.values().map(|w| w.view.borrow().clone()).collect()
    }

    /// A receiver that sees every change of the pod with UID `uid`.
    pub fn watch(&self, uid: &str) -> Option<watch::Receiver<PodView>> {
        self.workers.get(uid).map(|w| w.view.clone())
    }

    /// Drops the bookkeeping of pods whose workers have finished, returning their UIDs.
    pub fn forget_finished(&mut self) -> Vec<String> {
        let done: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| w.view.borrow().finished)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &done {
            self.workers.remove(uid);
        }
        done
    }

    /// Like [`forget_finished`](Self::forget_finished), but keeps the pods in `keep`.
    pub fn forget_finished_except(&mut self, keep: &std::collections::BTreeSet<String>) -> Vec<String> {
        let done: Vec<String> = self
            .workers
            .iter()
            .filter(|(uid, w)| w.view.borrow().finished && !keep.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &done {
            self.workers.remove(uid);
        }
        done
    }

    /// Ends every worker at once without stopping its pod (the node leaves its pods running
    /// for the next node process to adopt, issue 18) and waits until they are gone.
    pub async fn abandon(self) {
        self.tracker.close();
        self.critical_tracker.close();
        self.abandon_token.cancel();
        self.tracker.wait().await;
        self.critical_tracker.wait().await;
    }

    /// Terminates every pod gracefully and waits for all workers, at most `deadline`.
    /// Returns `false` if the deadline passed first (the remaining workers are left running
    /// until the runtime is dropped).
    pub async fn shutdown(self, deadline: Duration) -> bool {
        // The kubelet's graceful node shutdown: every other pod first, then the critical ones
        // (static and mirror pods, and system-critical priorities), each phase up to `deadline`.
        self.tracker.close();
        self.critical_tracker.close();
        self.token.cancel();
        let regular = tokio::time::timeout(deadline, self.tracker.wait()).await.is_ok();
        self.critical_token.cancel();
        let critical = tokio::time::timeout(deadline, self.critical_tracker.wait())
            .await
            .is_ok();
        regular && critical
    }
}

/// The kubelet's `IsCriticalPod` (pkg/kubelet/types): a static or mirror pod, or one whose
/// priority is system-critical (at least 2,000,000,000, which kube-apiserver's priority
/// admission gives `system-cluster-critical` and `system-node-critical`).
pub(crate) fn is_critical(pod: &Pod) -> bool {
    const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;
    let annotations = pod.metadata.annotations.as_ref();
    let static_or_mirror = annotations.is_some_and(|a| {
        a.contains_key(crate::static_pods::STATIC_POD_ANNOTATION)
            || a.contains_key("kubernetes.io/config.mirror")
            || a.get("kubernetes.io/config.source").is_some_and(|s| s != "api")
    });
    let spec = pod.spec.as_ref();
    let priority = spec
        .and_then(|s| s.priority)
        .is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY);
    let class = spec
        .and_then(|s| s.priority_class_name.as_deref())
        .is_some_and(|c| c == "system-node-critical" || c == "system-cluster-critical");
    static_or_mirror || priority || class
}
