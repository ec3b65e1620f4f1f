//! The kubelet's sync loop: one task that feeds the [`PodSupervisor`] from every pod source
//! (the API's pods bound to this node, a static manifest directory), tells it when ConfigMaps
//! or Secrets change, turns hook warnings into events, redraws the terminal, and at shutdown
//! terminates every pod gracefully.
//!
//! With an API, static pods become API objects (like the kubelet's mirror pods) and reach the
//! supervisor through the API like every other pod; without one they go to it directly.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use podvisor_core::HookWarning;
use podvisor_core::runtime::ContainerRuntime;
use podvisor_lifecycle::{Event, EventType};
use tokio::sync::mpsc;

use crate::cluster::PodChange;
use crate::cluster::status::ApiSink;
use crate::output::NodeOutput;
use crate::static_pods::{self, StaticPods};
use crate::{Clock, PodSink, PodSupervisor, PodView};

/// How often the manifest directory is read and the table redrawn.
pub const SCAN_PERIOD: Duration = Duration::from_secs(1);
/// How many finished pods the loop remembers so that late events of theirs start nothing.
pub const FINISHED_KEPT: usize = 4096;
/// Extra time, beyond the longest grace period, that shutdown waits for pods to stop.
pub const SHUTDOWN_SLACK: Duration = Duration::from_secs(15);

/// The API side of the loop: the client static pods are written through, the changes of the
/// pods bound to this node (`cluster::pods::follow_pods`), ConfigMap/Secret changes
/// (`cluster::config::watch_changes`) and the status writer to detach at shutdown.
pub struct ApiSide {
    /// The client static pods are created through.
    pub client: Client,
    /// Pods to run or stop.
    pub changes: mpsc::UnboundedReceiver<PodChange>,
    /// A ConfigMap or Secret changed.
    pub config_changes: mpsc::UnboundedReceiver<()>,
    /// The status writer.
    pub sink: Arc<ApiSink>,
}

/// What the loop runs and what feeds it.
pub struct SyncLoop {
    /// The pod workers.
    pub supervisor: PodSupervisor,
    /// The runtime, to remove what it keeps of deleted pods once they stopped.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The terminal.
    pub output: Arc<NodeOutput>,
    /// Where the workers' status and events go (the API and the terminal): hook warnings too.
    pub sink: Arc<dyn PodSink>,
    /// The clock the workers use.
    pub clock: Clock,
    /// The API, when there is one.
    pub api: Option<ApiSide>,
    /// A static manifest directory, when followed.
    pub static_pods: Option<StaticPods>,
    /// Hook warnings (`LifecycleHTTPFallback`) to show as Warning events of their pods.
    pub hook_warnings: Option<mpsc::Receiver<HookWarning>>,
}

/// How the node stops (issue 18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Every pod is terminated gracefully first (the default: SIGINT, SIGTERM).
    StopPods,
    /// The node leaves and its pods keep running, under their monitors, for the next node
    /// process to adopt (an upgrade, a service manager's restart).
    LeavePods,
}

impl SyncLoop {
    /// Runs until `shutdown` completes, then terminates every pod gracefully (each with its
    /// own grace period) and returns whether all stopped within the longest grace period plus
    /// [`SHUTDOWN_SLACK`].
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> bool {
        self.run_until(async {
            shutdown.await;
            Shutdown::StopPods
        })
        .await
    }

    /// [`run`](Self::run), stopping as `shutdown` says: with [`Shutdown::LeavePods`] it
    /// returns at once (`false`: the pods still run), leaving the pods and what the API says
    /// of them as they are.
    pub async fn run_until(self, shutdown: impl Future<Output = Shutdown>) -> bool {
        let SyncLoop {
            mut supervisor,
            runtime,
            output,
            sink,
            clock,
            api,
            mut static_pods,
            mut hook_warnings,
        } = self;
        let (api, mut changes, mut config_changes) = match api {
            Some(ApiSide {
                client,
                changes,
                config_changes,
                sink,
            }) => (Some((client, sink)), Some(changes), Some(config_changes)),
            None => (None, None, None),
        };
        let mut static_names = BTreeMap::new();
        // The pods whose workers finished and were forgotten, until their objects are gone (the
        // newest FINISHED_KEPT).
        let mut finished: VecDeque<String> = VecDeque::new();
        let mut statics_pending = false;
        let mut interval = tokio::time::interval(SCAN_PERIOD);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        let how = loop {
            tokio::select! {
                how = &mut shutdown => break how,
                Some(change) = async { changes.as_mut()?.recv().await }, if changes.is_some() => match change {
                    PodChange::Apply(pod) => {
                        // A finished pod never runs again: a late event of it (its status
                        // still Running in the API while its final status is being written)
                        // must not start a new worker that would restore it as lost.
                        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                        if !finished.iter().any(|f| f == uid) {
                            supervisor.apply(*pod);
                        }
                    }
                    PodChange::Gone { uid } => {
                        finished.retain(|f| *f != uid);
                        supervisor.delete(&uid, Some(0));
                        remove_when_stopped(runtime.clone(), supervisor.watch(&uid), uid);
                    }
                },
                Some(()) = async { config_changes.as_mut()?.recv().await }, if config_changes.is_some() => {
                    supervisor.config_changed();
                }
                Some(warning) = async { hook_warnings.as_mut()?.recv().await }, if hook_warnings.is_some() => {
                    warn_owner(&supervisor, sink.as_ref(), &warning, clock);
                }
                _ = interval.tick() => {
                    if let Some(statics) = static_pods.as_mut() {
                        let changes = statics.scan();
                        let changed = !changes.added.is_empty() || !changes.removed.is_empty();
                        for error in &changes.errors {
                            output.notice(&format!("manifest skipped: {error}"));
                        }
                        match &api {
                            Some((client, _)) => {
                                if changed || statics_pending {
                                    let desired: Vec<_> = statics.pods().cloned().collect();
                                    let synced = static_pods::sync_to_api(client, &desired, &mut static_names).await;
                                    statics_pending = !synced;
                                }
                            }
                            None => {
                                for uid in &changes.removed {
                                    supervisor.delete(uid, None);
                                }
                                for pod in changes.added {
                                    supervisor.apply(pod);
                                }
                                let defined: BTreeSet<String> =
                                    statics.pods().filter_map(|p| p.metadata.uid.clone()).collect();
                                supervisor.forget_finished_except(&defined);
                            }
                        }
                    }
                    if api.is_some() {
                        finished.extend(supervisor.forget_finished());
                        while finished.len() > FINISHED_KEPT {
                            finished.pop_front();
                        }
                    }
                    // The views are copied only for a table to draw (a copy of every pod each
                    // second is most of an idle node's CPU at 1,000 pods).
                    output.redraw(|| supervisor.pods(), clock.now());
                }
            }
        };
        if let Some((_, api_sink)) = &api {
            // The API keeps the pods as they were; a restarted node adopts them (or, when they
            // were stopped, runs them again).
            api_sink.detach();
        }
        if how == Shutdown::LeavePods {
            supervisor.abandon().await;
            output.notice("leaving: every pod keeps running for the next node process to adopt");
            return false;
        }
        let longest_grace = supervisor
            .pods()
            .iter()
            .filter_map(|v| v.pod.spec.as_ref()?.termination_grace_period_seconds)
            .max()
            .unwrap_or(30);
        let deadline = Duration::from_secs(u64::try_from(longest_grace).unwrap_or(30)) + SHUTDOWN_SLACK;
        output.notice("shutting down: terminating every pod");
        let all_stopped = supervisor.shutdown(deadline).await;
        if !all_stopped {
            output.notice("some pods did not stop in time");
        }
        all_stopped
    }
}

/// Shows `warning` as a Warning event of the pod whose container it names.
fn warn_owner(supervisor: &PodSupervisor, sink: &dyn PodSink, warning: &HookWarning, clock: Clock) {
    let uri = warning.container_id.uri();
    let owner = supervisor.pods().into_iter().find(|v| {
        let status = v.pod.status.clone().unwrap_or_default();
        status
            .container_statuses
            .iter()
            .flatten()
            .chain(status.init_container_statuses.iter().flatten())
            .any(|c| c.container_id.as_deref() == Some(uri.as_str()))
    });
    if let Some(view) = owner {
        let event = Event {
            type_: EventType::Warning,
            reason: warning.reason,
            message: warning.message.clone(),
            field_path: None,
        };
        sink.event(&view.pod, &event, clock.now());
    }
}

/// Once the deleted pod `uid` has stopped (its worker finished, or there is none), removes
/// what the runtime keeps of it: its logs go with the pod, as the kubelet's do.
fn remove_when_stopped(
    runtime: Arc<dyn ContainerRuntime>,
    view: Option<tokio::sync::watch::Receiver<PodView>>,
    uid: String,
) {
    tokio::spawn(async move {
        if let Some(mut view) = view {
            // The worker's end also ends the channel.
            while !view.borrow_and_update().finished {
                if view.changed().await.is_err() {
                    break;
                }
            }
        }
        if let Err(e) = runtime.remove_pod(&uid).await {
            tracing::warn!(pod_uid = %uid, error = %e, "removing the files of a deleted pod");
        }
    });
}
