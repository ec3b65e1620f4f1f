//! `watch-latency`: a pod status write on one API server → the event at an agent watching
//! through another server on the same etcd.
//!
//! Two real `podvisor server`s (`podvisor_node::server::run`: HTTPS with the cluster's tokens,
//! elected control loops) share one etcd member the benchmark starts in a temporary directory.
//! A writer with the admin kubeconfig of server A patches `pods/status` of one pod; an agent's
//! pod follower (`podvisor_kubelet::cluster::pods::follow_pods`, the watch of pods with
//! `spec.nodeName=<node>`) runs with the node credential it gets for the join kubeconfig of
//! server B, as `podvisor agent` does.
//! Each sample is the time from sending write `i` until the follower hands on the pod carrying
//! it (the write's own round trip included), after a few unmeasured writes. Floor: an etcd put
//! → the event on an etcd watch of a second client (the same hop without the API servers).
//!
//! Not measured: fan-out to many agents, and several etcd members.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use podvisor_core::corev1::Pod;
use podvisor_kubelet::cluster::PodChange;
use podvisor_node::server::{ServerConfig, ServerError};
use podvisor_store::{EtcdStore, EtcdStoreConfig};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::etcd::{Etcd, watch_floor};
use crate::stats::{Floor, Goal, Percentiles, Row};

/// The node the agent is, and the pod is bound to.
const NODE: &str = "bench-agent";
/// Writes before the measured ones.
const WARM_UP: usize = 5;
/// How long one write may take to reach the agent before the run fails.
const LIMIT: Duration = Duration::from_secs(10);

/// One `podvisor server` running in the background.
struct Server {
    dir: tempfile::TempDir,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Server {
    /// Starts a server on `etcd` and waits until its kubeconfigs are written.
    async fn start(etcd: &Etcd) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("podvisor-bench-server-")
            .tempdir()
            .context("creating a server's data directory")?;
        let store = EtcdStore::connect(EtcdStoreConfig {
            endpoints: vec![etcd.url().to_owned()],
            compaction_interval: Duration::ZERO,
            ..EtcdStoreConfig::default()
        })
        .await
        .context("connecting a server's store to etcd")?;
        let config = ServerConfig::new(dir.path(), ([127, 0, 0, 1], 0).into());
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready) = oneshot::channel::<()>();
        let task = tokio::spawn(podvisor_node::server::run(
            config,
            Arc::new(store),
            async {
                let _ = stopped.await;
            },
            move |_url| {
                let _ = ready_tx.send(());
            },
        ));
        if tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .is_err()
            || task.is_finished()
        {
            let _ = stop.send(());
            return match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(Ok(Err(e))) => Err(e).context("starting a server"),
                _ => bail!("a server did not become ready within 30 s"),
            };
        }
        Ok(Server { dir, stop, task })
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Stops the server (it releases its Leases first) and waits for it, at most 20 s.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
        drop(self.dir);
    }
}

async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    podvisor_node::api::join(kubeconfig)
        .await
        .with_context(|| format!("a client from {}", kubeconfig.display()))
}

/// Runs `n` writes (and as many floor puts).
pub(crate) async fn run(n: usize) -> Result<Vec<Row>> {
    let etcd = Etcd::start().await?;
    let a = Server::start(&etcd).await?;
    let b = match Server::start(&etcd).await {
        Ok(b) => b,
        Err(e) => {
            a.stop().await;
            return Err(e);
        }
    };
    let result = measure(&a, &b, n).await;
    b.stop().await;
    a.stop().await;
    let samples = result?;
    let floor = watch_floor(&etcd, n.max(200), &[b'x'; 2048]).await?;
    drop(etcd);
    Ok(vec![Row {
        bench: "watch-latency".into(),
        metric: "status write on server A → agent's watch on server B".into(),
        unit: "ms",
        value: Percentiles::of_durations_ms(&samples).context("no samples")?,
        floor: Some(Floor {
            name: "etcd put → etcd watch event on another client".into(),
            value: Percentiles::of_durations_ms(&floor).context("no floor samples")?,
        }),
        goal: Goal::AtMost(50.0),
        note: Some(
            "both servers on one etcd member over HTTPS with tokens; the agent watches spec.nodeName as `podvisor agent` does"
                .into(),
        ),
    }])
}

async fn measure(a: &Server, b: &Server, n: usize) -> Result<Vec<Duration>> {
    let writer = client(&a.path("kubeconfig")).await?;
    // The agent's own credential, exchanged for the join token as `podvisor agent` does.
    let join = b.path("join.kubeconfig");
    let (agent, _) = podvisor_node::api::join_as_node(&join, NODE)
        .await
        .with_context(|| format!("a node credential from {}", join.display()))?;
    let pods: Api<Pod> = Api::namespaced(writer, "default");
    let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "watched", "namespace": "default"},
        "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": "host", "command": ["sleep", "3600"]}]}}))?;
    pods.create(&PostParams::default(), &pod)
        .await
        .context("creating the watched pod")?;
    let (tx, mut changes) = mpsc::unbounded_channel();
    let follower = tokio::spawn(podvisor_kubelet::cluster::pods::follow_pods(
        agent,
        NODE.into(),
        tx,
    ));
    let result = async {
        // The follower's first list brings the pod.
        wait_for(&mut changes, |_| true)
            .await
            .context("the agent never saw the pod")?;
        let mut samples = Vec::with_capacity(n);
        // The first writes, not measured: connections and the servers' own start-up settle.
        for i in 0..n + WARM_UP {
            let marker = format!("write-{i}");
            let started = Instant::now();
            let patch = Patch::Merge(json!({"status": {"message": marker}}));
            let params = PatchParams::default();
            let write = pods.patch_status("watched", &params, &patch);
            let seen = wait_for(&mut changes, |pod| {
                pod.status.as_ref().and_then(|s| s.message.as_deref()) == Some(marker.as_str())
            });
            // The event may arrive before the write's answer: each is awaited on its own.
            let (written, seen) = tokio::join!(write, seen);
            written.context("patching the pod's status")?;
            let seen = seen.with_context(|| format!("write {i} never reached the agent"))?;
            if i >= WARM_UP {
                samples.push(seen - started);
            }
        }
        Ok(samples)
    }
    .await;
    follower.abort();
    result
}

/// Waits (at most [`LIMIT`]) for the follower to hand on a pod `matches` accepts; when it did.
async fn wait_for(
    changes: &mut mpsc::UnboundedReceiver<PodChange>,
    matches: impl Fn(&Pod) -> bool,
) -> Result<Instant> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Err(_) => bail!("nothing within {LIMIT:?}"),
            Ok(None) => bail!("the agent's pod follower ended"),
            Ok(Some(PodChange::Apply(pod))) if matches(&pod) => return Ok(Instant::now()),
            Ok(Some(_)) => {}
        }
    }
}
