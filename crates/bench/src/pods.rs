//! The node's real pod parts, in-process ([`PodParts`]: the process runtime, its probes and a
//! [`PodSupervisor`]) over a temporary data directory with a bridge, pod CIDR and cgroup parent
//! of its own, plus helpers to wait for a pod's [`PodView`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use podvisor_core::corev1::Pod;
use podvisor_kubelet::{Clock, NullSink, PodSupervisor, PodView, SupervisorConfig};
use podvisor_node::parts::PodParts;
use podvisor_runtime::{ProcessRuntime, RuntimeConfig};
use tokio::sync::watch;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The data directories of the nodes shut down so far, removed by [`remove_data_dirs`] once
/// every benchmark has run. A node's directory holds a file or more per pod it ran (thousands
/// after burst-1000), and removing them frees as many inodes: on ext4 without a journal every
/// file created in the next minute then passes over each of them (about 1 ms a creation), and
/// the next benchmark (crash-restart after the bursts) would measure the harness's cleanup.
static SHUT_DOWN: Mutex<Vec<tempfile::TempDir>> = Mutex::new(Vec::new());

/// Removes the data directories of the nodes shut down (see [`SHUT_DOWN`]).
pub(crate) fn remove_data_dirs() {
    let dirs = std::mem::take(&mut *SHUT_DOWN.lock().unwrap_or_else(|e| e.into_inner()));
    drop(dirs);
}

pub(crate) use podvisor_runtime::is_root;

/// A pod supervisor on the real runtime, torn down by [`PodNode::shutdown`].
pub(crate) struct PodNode {
    /// The supervisor the benchmarks apply pods to.
    pub(crate) supervisor: PodSupervisor,
    /// Whether pods get sandboxes (root) or share the host network.
    pub(crate) sandboxes: bool,
    bridge: String,
    runtime: Arc<ProcessRuntime>,
    data: tempfile::TempDir,
}

impl PodNode {
    /// A node whose pods get sandboxes when this process is root.
    pub(crate) async fn start() -> Result<PodNode> {
        let n = (std::process::id() % 200) * 5 + NEXT.fetch_add(1, Ordering::SeqCst);
        let data = tempfile::Builder::new()
            .prefix("podvisor-bench-")
            .tempdir()
            .context("creating the data directory")?;
        let bridge = format!("pvb{}", n % 1000);
        let sandboxes = is_root();
        let parts = PodParts::new(
            RuntimeConfig {
                data_dir: data.path().to_owned(),
                pod_cidr: format!("10.{}.{}.0/22", 80 + (n / 60) % 10, (n % 60) * 4),
                bridge_name: bridge.clone(),
                node_name: "bench-node".into(),
                cgroup_parent: format!("podvisor-bench-{}-{n}", std::process::id()),
                force_host_network: !sandboxes,
                cleanup_on_start: false,
                ..RuntimeConfig::default()
            },
            None,
        )
        .await
        .context("starting the process runtime")?;
        let supervisor = parts.supervisor(
            Arc::new(NullSink),
            SupervisorConfig {
                node_name: "bench-node".into(),
                host_ip: None,
                clock: Clock::system(),
            },
        );
        let runtime = parts.runtime;
        Ok(PodNode {
            supervisor,
            sandboxes,
            bridge,
            runtime,
            data,
        })
    }

    /// Deletes the pod with `uid` (no grace) and waits until its worker has finished and
    /// everything of it is gone, then forgets it.
    pub(crate) async fn delete_and_wait(&mut self, uid: &str) -> Result<()> {
        let Some(mut rx) = self.supervisor.watch(uid) else {
            return Ok(());
        };
        self.supervisor.delete(uid, Some(0));
        wait_view(&mut rx, Duration::from_secs(60), "the pod to be torn down", |v| {
            v.finished
        })
        .await?;
        self.supervisor.forget_finished();
        Ok(())
    }

    /// Stops every pod and removes the bridge and the cgroup parent; the data directory goes
    /// when the harness ends ([`remove_data_dirs`]).
    pub(crate) async fn shutdown(self) {
        let _ = self.supervisor.shutdown(Duration::from_secs(60)).await;
        self.runtime.remove_cgroup_parent();
        if self.sandboxes {
            let _ = podvisor_runtime::delete_link(&self.bridge).await;
        }
        SHUT_DOWN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.data);
    }
}

/// A pod named `name` in `default` with a fresh UID and the given spec.
pub(crate) fn pod(name: &str, spec: serde_json::Value) -> Result<Pod> {
    let uid = format!(
        "bench-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{name}-{}", NEXT.fetch_add(1, Ordering::SeqCst)), "namespace": "default", "uid": uid},
        "spec": spec,
    }))
    .context("building the pod")
}

/// Waits until `check` holds for the view, at most `limit`.
pub(crate) async fn wait_view(
    rx: &mut watch::Receiver<PodView>,
    limit: Duration,
    what: &str,
    check: impl Fn(&PodView) -> bool,
) -> Result<PodView> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        // Checked in place: a view is a whole pod, and cloning each one the worker publishes
        // would add the harness's own work to what is measured.
        {
            let view = rx.borrow_and_update();
            if check(&view) {
                return Ok(view.clone());
            }
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => bail!("the pod's worker ended while waiting for {what}"),
            Err(_) => bail!(
                "timed out after {limit:?} waiting for {what}; last status: {:?}",
                rx.borrow().pod.status
            ),
        }
    }
}

/// The first container's restart count and whether it is running.
pub(crate) fn first_container(view: &PodView) -> (i32, bool) {
    view.pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map_or((0, false), |c| {
            (
                c.restart_count,
                c.state.as_ref().is_some_and(|s| s.running.is_some()),
            )
        })
}

/// The pod's phase is `Running` and its first container runs.
pub(crate) fn running(view: &PodView) -> bool {
    let phase = view.pod.status.as_ref().and_then(|s| s.phase.as_deref());
    phase == Some("Running") && first_container(view).1
}
