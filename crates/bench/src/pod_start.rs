//! `pod-start`: a pod with one container (`sleep 3600`) and no init containers, from
//! [`PodSupervisor::apply`](podvisor_kubelet::PodSupervisor::apply) until its view shows the
//! pod Running with the container started. Floor: spawn+wait of `/bin/true`, in new network,
//! UTS, IPC and mount namespaces when root.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use crate::floor;
use crate::pods::{self, PodNode};
use crate::stats::{Floor, Goal, Percentiles, Row};

/// Runs `n` pods one after another and reports their start latency.
pub(crate) async fn run(n: usize) -> Result<Vec<Row>> {
    let mut node = PodNode::start().await?;
    let sandboxes = node.sandboxes;
    // One pod first, not measured: warms the bridge, the cgroup parent and the page cache.
    let result = async {
        start_one(&mut node).await?;
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            samples.push(start_one(&mut node).await?);
        }
        Ok::<_, anyhow::Error>(samples)
    }
    .await;
    node.shutdown().await;
    let samples = result?;
    let floor_samples = tokio::task::spawn_blocking(move || floor::spawn_wait(n.max(50), sandboxes))
        .await
        .context("the floor thread")?
        .context("measuring the spawn floor")?;
    let (floor_name, note) = if sandboxes {
        (
            "spawn+wait /bin/true in new net/uts/ipc/mnt namespaces",
            "floor leaves out veth+address setup (≈5 ms here per docs/performance.md F5b)",
        )
    } else {
        (
            "spawn+wait /bin/true",
            "not root: pods use the host network (no sandbox), floor without namespaces",
        )
    };
    Ok(vec![Row {
        bench: "pod-start".into(),
        metric: "created→Running".into(),
        unit: "ms",
        value: Percentiles::of_durations_ms(&samples).context("no samples")?,
        floor: Some(Floor {
            name: floor_name.into(),
            value: Percentiles::of_durations_ms(&floor_samples).context("no floor samples")?,
        }),
        goal: Goal::Ratio {
            p50: Some(10.0),
            p99: Some(30.0),
        },
        note: Some(note.into()),
    }])
}

/// Starts one pod, measures until it runs, then deletes it (not measured).
async fn start_one(node: &mut PodNode) -> Result<Duration> {
    let pod = pods::pod(
        "start",
        json!({"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "main", "image": "host", "command": ["sleep", "3600"]
        }]}),
    )?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let start = Instant::now();
    node.supervisor.apply(pod);
    let mut rx = node.supervisor.watch(&uid).context("the pod has no worker")?;
    pods::wait_view(&mut rx, Duration::from_secs(30), "the pod to run", pods::running).await?;
    let elapsed = start.elapsed();
    node.delete_and_wait(&uid).await?;
    Ok(elapsed)
}
