//! `burst-110` and `burst-1000`: that many one-container pods applied at once until every one is
//! Running, then all deleted until every worker has finished (processes reaped, sandboxes and
//! cgroups removed).
//! Floor: spawning the same number of `sleep` processes one after another (in new network, UTS
//! and IPC namespaces when root, as a sandbox needs at least), and killing and reaping them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use crate::pods::{self, PodNode};
use crate::stats::{Floor, Goal, Percentiles, Row};

/// Runs `rounds` bursts of `n` pods, reported as benchmark `bench`.
pub(crate) async fn run(bench: &str, n: usize, rounds: usize) -> Result<Vec<Row>> {
    let mut node = PodNode::start().await?;
    let sandboxes = node.sandboxes;
    let result = async {
        // One small burst first, not measured: warms the bridge, cgroup parent and caches.
        burst(&mut node, 2).await?;
        let mut up = Vec::with_capacity(rounds);
        let mut down = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let (u, d) = burst(&mut node, n).await?;
            up.push(u);
            down.push(d);
        }
        Ok::<_, anyhow::Error>((up, down))
    }
    .await;
    node.shutdown().await;
    let (up, down) = result?;
    let (floor_up, floor_down) =
        tokio::task::spawn_blocking(move || spawn_all_floor(n, rounds.max(3), sandboxes))
            .await
            .context("the floor thread")??;
    let what = if sandboxes {
        format!("spawn {n} sleeps in new net/uts/ipc namespaces")
    } else {
        format!("spawn {n} sleeps")
    };
    let note = if sandboxes {
        "floor leaves out each sandbox's veth and address set-up, the per-pod cgroup and log files"
    } else {
        "not root: pods use the host network (no sandbox)"
    };
    let row = |metric: &str, samples: &[Duration], floor: &[Duration], floor_name: String| -> Result<Row> {
        Ok(Row {
            bench: bench.into(),
            metric: metric.into(),
            unit: "ms",
            value: Percentiles::of_durations_ms(samples).context("no samples")?,
            floor: Some(Floor {
                name: floor_name,
                value: Percentiles::of_durations_ms(floor).context("no floor samples")?,
            }),
            goal: Goal::Ratio {
                p50: Some(3.0),
                p99: None,
            },
            note: Some(note.into()),
        })
    };
    Ok(vec![
        row(&format!("{n} created→all Running"), &up, &floor_up, what)?,
        row(
            &format!("{n} deleted→all gone"),
            &down,
            &floor_down,
            format!("SIGKILL + reap {n} processes"),
        )?,
    ])
}

/// Applies `n` pods at once and waits for all to run, then deletes them all and waits until
/// every one is torn down. Returns both durations.
async fn burst(node: &mut PodNode, n: usize) -> Result<(Duration, Duration)> {
    let pods = (0..n)
        .map(|_| {
            pods::pod(
                "burst",
                json!({"terminationGracePeriodSeconds": 0, "containers": [{
                    "name": "main", "image": "host", "command": ["sleep", "3600"]
                }]}),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let uids: Vec<String> = pods
        .iter()
        .map(|p| p.metadata.uid.clone().unwrap_or_default())
        .collect();
    // Two minutes per 110 pods.
    let limit = Duration::from_secs(120) * u32::try_from(n / 110 + 1).unwrap_or(u32::MAX);
    let start = Instant::now();
    for pod in pods {
        node.supervisor.apply(pod);
    }
    let mut views = Vec::with_capacity(n);
    for uid in &uids {
        views.push(node.supervisor.watch(uid).context("a pod has no worker")?);
    }
    for rx in &mut views {
        pods::wait_view(rx, limit, "every pod to run", pods::running).await?;
    }
    let up = start.elapsed();
    let start = Instant::now();
    for uid in &uids {
        node.supervisor.delete(uid, Some(0));
    }
    for rx in &mut views {
        pods::wait_view(rx, limit, "every pod to be gone", |v| v.finished).await?;
    }
    let down = start.elapsed();
    node.supervisor.forget_finished();
    Ok((up, down))
}

/// The floor, `rounds` times: spawn `n` sleeps (until the last spawn returned), then SIGKILL
/// and reap them all.
fn spawn_all_floor(n: usize, rounds: usize, namespaces: bool) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let spawn = || -> std::io::Result<Child> {
        let mut cmd = Command::new("sleep");
        cmd.arg("3600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if namespaces {
            podvisor_runtime::with_new_pod_namespaces(&mut cmd);
        }
        cmd.spawn()
    };
    let mut up = Vec::with_capacity(rounds);
    let mut down = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let mut children = Vec::with_capacity(n);
        for _ in 0..n {
            children.push(spawn().context("spawning a floor process")?);
        }
        up.push(start.elapsed());
        let start = Instant::now();
        for child in &mut children {
            child.kill()?;
        }
        for child in &mut children {
            child.wait()?;
        }
        down.push(start.elapsed());
    }
    Ok((up, down))
}
