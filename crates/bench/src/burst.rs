//! `burst-110` and `burst-1000`: that many one-container pods applied at once until every one is
//! Running, then all deleted until every worker has finished (processes reaped, sandboxes and
//! cgroups removed).
//! Floor: spawning the same number of `sleep` processes one after another, and killing and
//! reaping them. When root, as a pod needs at least: each in new network, UTS, IPC and mount
//! namespaces (a container's own mount namespace: since issue 19's twenty-third session) and in
//! a pod group holding a container group, in every cgroup hierarchy the
//! runtime gives such a container one (made before the spawn, the process moved in after it,
//! removed after the reap).

use std::path::{Path, PathBuf};
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
    let floor = tokio::task::spawn_blocking(move || spawn_all_floor(n, rounds.max(3), sandboxes))
        .await
        .context("the floor thread")??;
    let (what_up, what_down) = if sandboxes && floor.cgroups {
        (
            format!("spawn {n} sleeps in new net/uts/ipc/mnt namespaces and pod cgroups"),
            format!("SIGKILL + reap {n} processes, remove their cgroups"),
        )
    } else if sandboxes {
        (
            format!("spawn {n} sleeps in new net/uts/ipc/mnt namespaces (no usable cgroups)"),
            format!("SIGKILL + reap {n} processes"),
        )
    } else {
        (
            format!("spawn {n} sleeps"),
            format!("SIGKILL + reap {n} processes"),
        )
    };
    let note = if sandboxes {
        "floor leaves out each sandbox's veth and address set-up and the log files"
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
        row(&format!("{n} created→all Running"), &up, &floor.up, what_up)?,
        row(&format!("{n} deleted→all gone"), &down, &floor.down, what_down)?,
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

/// The floor's samples, one per round.
struct FloorSamples {
    /// Spawning every process.
    up: Vec<Duration>,
    /// Killing and reaping them all, and removing their groups.
    down: Vec<Duration>,
    /// Whether the processes had groups of their own (a cgroup hierarchy was usable).
    cgroups: bool,
}

/// The floor, `rounds` times: spawn `n` sleeps (until the last spawn returned), then SIGKILL
/// and reap them all. With `sandboxes`, each sleep is in new namespaces and its own groups
/// (where a cgroup hierarchy is usable).
fn spawn_all_floor(n: usize, rounds: usize, sandboxes: bool) -> Result<FloorSamples> {
    let hierarchies = sandboxes.then(|| {
        podvisor_runtime::cgroup::BareHierarchies::detect(&format!("podvisor-floor-{}", std::process::id()))
    });
    let bases: Vec<&Path> = hierarchies.as_ref().map(|h| h.bases()).unwrap_or_default();
    let spawn = || -> std::io::Result<Child> {
        let mut cmd = Command::new("sleep");
        cmd.arg("3600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if sandboxes {
            podvisor_runtime::with_new_pod_namespaces(&mut cmd);
        }
        cmd.spawn()
    };
    let mut up = Vec::with_capacity(rounds);
    let mut down = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut round = FloorRound::default();
        let start = Instant::now();
        for i in 0..n {
            let mut leaves = Vec::with_capacity(bases.len());
            for base in &bases {
                let pod = round.create_dir(base.join(format!("pod-{i}")))?;
                leaves.push(round.create_dir(pod.join("main-0"))?);
            }
            let child = spawn().context("spawning a floor process")?;
            let pid = child.id().to_string();
            round.children.push(child);
            for leaf in leaves {
                let procs = leaf.join("cgroup.procs");
                std::fs::write(&procs, &pid).with_context(|| format!("writing {}", procs.display()))?;
            }
        }
        up.push(start.elapsed());
        let start = Instant::now();
        round.end()?;
        down.push(start.elapsed());
    }
    Ok(FloorSamples {
        up,
        down,
        cgroups: !bases.is_empty(),
    })
}

/// One round of the floor's processes and the groups made for them; what a failed round
/// leaves is killed and removed on drop.
#[derive(Default)]
struct FloorRound {
    children: Vec<Child>,
    /// In the order made: each pod's group before its container's.
    dirs: Vec<PathBuf>,
}

impl FloorRound {
    fn create_dir(&mut self, dir: PathBuf) -> Result<PathBuf> {
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// Kills every process, reaps them, then removes the groups (containers' before pods').
    fn end(&mut self) -> Result<()> {
        for child in &mut self.children {
            child.kill()?;
        }
        for child in &mut self.children {
            child.wait()?;
        }
        self.children.clear();
        while let Some(dir) = self.dirs.pop() {
            std::fs::remove_dir(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        Ok(())
    }
}

impl Drop for FloorRound {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
