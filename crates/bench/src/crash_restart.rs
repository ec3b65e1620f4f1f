//! `crash-restart`: a `restartPolicy: Always` container killed with SIGKILL, until its view
//! shows the replacement running (restart count 1). A pod per sample, so every sample is a
//! first restart (no back-off). Floor: a minimal supervisor's kill → waitpid → spawn.
//!
//! Every sample's pod is created and running before the first kill, and the samples follow
//! each other as the floor's do: no pod is created or deleted while one is measured. (A
//! deleted pod's network namespace is cleaned up by the kernel's workers for some time after
//! the delete returns; with a pod created and deleted around each sample, that work shared the
//! CPUs with the next restart, and kept them awake for it.) Both the containers and the
//! floor's processes are killed asleep (see [`floor::kill_wait_respawn`]).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use crate::floor;
use crate::pods::{self, PodNode};
use crate::stats::{Floor, Goal, Percentiles, Row};
use podvisor_kubelet::PodView;
use tokio::sync::watch;

/// The environment variable that marks a sample's container, to find its pid in /proc.
const MARK: &str = "PODVISOR_BENCH_MARK";

/// Runs `n` samples and reports their restart latency.
pub(crate) async fn run(n: usize) -> Result<Vec<Row>> {
    let mut node = PodNode::start().await?;
    let result = async {
        let mut pods = Vec::with_capacity(n);
        for i in 0..n {
            pods.push(start_one(&mut node, i).await?);
        }
        let mut samples = Vec::with_capacity(n);
        for pod in &mut pods {
            samples.push(restart_one(pod).await?);
        }
        for pod in &pods {
            node.delete_and_wait(&pod.uid).await?;
        }
        Ok::<_, anyhow::Error>(samples)
    }
    .await;
    node.shutdown().await;
    let samples = result?;
    let floor_samples = tokio::task::spawn_blocking(move || floor::kill_wait_respawn(n.max(50)))
        .await
        .context("the floor thread")?
        .context("measuring the restart floor")?;
    Ok(vec![Row {
        bench: "crash-restart".into(),
        metric: "SIGKILL→replacement Running".into(),
        unit: "ms",
        value: Percentiles::of_durations_ms(&samples).context("no samples")?,
        floor: Some(Floor {
            name: "kill -9 + waitpid + spawn sleep".into(),
            value: Percentiles::of_durations_ms(&floor_samples).context("no floor samples")?,
        }),
        goal: Goal::Ratio {
            p50: Some(5.0),
            p99: Some(5.0),
        },
        note: None,
    }])
}

/// A sample's pod, running.
struct Sample {
    uid: String,
    view: watch::Receiver<PodView>,
    /// Its container's main process.
    pid: i32,
}

/// Creates a sample's pod and waits until its container runs.
async fn start_one(node: &mut PodNode, i: usize) -> Result<Sample> {
    let mark = format!("{}-{i}", std::process::id());
    let pod = pods::pod(
        "crash",
        json!({"restartPolicy": "Always", "terminationGracePeriodSeconds": 0, "containers": [{
            "name": "main", "image": "host", "command": ["sleep", "3600"],
            "env": [{"name": MARK, "value": mark}],
        }]}),
    )?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    node.supervisor.apply(pod);
    let mut view = node.supervisor.watch(&uid).context("the pod has no worker")?;
    pods::wait_view(
        &mut view,
        Duration::from_secs(30),
        "the pod to run",
        pods::running,
    )
    .await?;
    // The runtime reports a start once the exec has begun; the new program's environment shows
    // in /proc a moment later.
    let mut found = find_marked(&mark);
    for _ in 0..100 {
        if found.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        found = find_marked(&mark);
    }
    let pid = found.with_context(|| format!("no process carries {MARK}={mark}"))?;
    Ok(Sample { uid, view, pid })
}

/// SIGKILLs the sample's container and measures until its replacement runs.
async fn restart_one(sample: &mut Sample) -> Result<Duration> {
    let start = Instant::now();
    kill(Pid::from_raw(sample.pid), Signal::SIGKILL).context("kill -9 of the container")?;
    pods::wait_view(
        &mut sample.view,
        Duration::from_secs(30),
        "the replacement to run",
        |v| {
            let (restarts, running) = pods::first_container(v);
            restarts >= 1 && running
        },
    )
    .await?;
    Ok(start.elapsed())
}

/// The pid of the `sleep` process whose environment has `MARK=mark`.
fn find_marked(mark: &str) -> Result<i32> {
    let needle = format!("{MARK}={mark}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if !cmdline.starts_with(b"sleep\0") {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|var| var == needle.as_bytes()) {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        [] => bail!("not found"),
        many => bail!("several processes match: {many:?}"),
    }
}
