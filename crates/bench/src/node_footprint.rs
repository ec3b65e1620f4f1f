//! `node-footprint` (issue 19): the **whole node**'s memory and idle CPU, with 0 pods and
//! growing to each size asked for (110 and 1,000 in a full run). The node is built as
//! `podvisor node` builds it (`podvisor_node::build`: API server on its redb store, control
//! loops, scheduler, kubelet side, runtime, probes, cluster DNS, Services) in a child process
//! (this binary re-executed with [`CHILD_ARG`], on a multi-threaded tokio runtime with its
//! default threads, as the binary's), so the numbers are the node's and not the harness's.
//!
//! The harness creates the pods through the node's API, as kubectl would: each runs
//! `sleep 3600` with an HTTP readiness probe and a TCP liveness probe at period 10 s (the
//! kubelet's default) against a tiny HTTP server in the harness. Once every pod is Ready and a
//! moment has passed, it reads the node process's VmRSS and the CPU time it and everything it
//! started (the containers' monitors, the sandbox holders) spent over an idle window, and the
//! proportional set size (PSS) of those monitors and holders, which `ps` shows beside the node.
//! Beside the idle CPU it says what else the window held, so a run the machine disturbed shows
//! as one: the major page faults of the node and its helpers (a page of the binary that the
//! kernel's reclaim paged out and the node touched again costs a fault and a read) and the CPU
//! the rest of the machine spent (everything but the node, its helpers and this harness).
//!
//! Closing the child's stdin stops the node as Ctrl-C does: every pod stopped, then nothing of
//! it left on the machine.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::Api;
use kube::api::{ListParams, PostParams};
use podvisor_core::corev1::Pod;
use podvisor_runtime::process::{self, ProcStat};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use crate::api_node::{self, Place};
use crate::footprint;
use crate::stats::{Goal, Percentiles, Row};

/// The hidden first argument that makes this binary the node child: `__node-child DATA_DIR N
/// MAX_PODS`.
pub(crate) const CHILD_ARG: &str = "__node-child";

/// The idle window of a full run: whole cycles of the node's periodic work, so that every
/// window holds the same share of it. The probes come every 10 s; the usage scrape every 15 s
/// (`ResourceMetrics`' resolution), reading an idle container at every other scrape only, so
/// its cycle is 30 s. A 20 s window held one or two scrapes, each reading every container or
/// none, and at 1,000 pods a full scrape is about a tenth of the node's idle CPU.
pub(crate) const IDLE_WINDOW: Duration = Duration::from_secs(30);

/// How long the pods may take to be Ready, per 100 pods.
const READY_LIMIT_PER_100: Duration = Duration::from_secs(30);
/// How long the node may take to stop its pods and exit.
const STOP_LIMIT: Duration = Duration::from_secs(180);

/// Goals per size (issue 19): whole-node RSS (MB) and idle CPU (% of one core).
fn goals(pods: usize) -> (Goal, Goal) {
    match pods {
        0 => (Goal::None, Goal::AtMost(0.5)),
        110 => (Goal::AtMost(30.0), Goal::None),
        1000 => (Goal::AtMost(150.0), Goal::AtMost(2.0)),
        _ => (Goal::None, Goal::None),
    }
}

/// One node grows from 0 pods to each of `sizes` (ascending); each is measured over `idle`.
pub(crate) async fn run(sizes: &[usize], idle: Duration) -> Result<Vec<Row>> {
    let most = sizes.iter().copied().max().unwrap_or(0);
    let (port, server) = footprint::probe_target().await?;
    let place = Place::new()?;
    let exe = std::env::current_exe().context("finding this binary")?;
    let max_pods = u32::try_from(most.max(110)).context("too many pods")?;
    let mut child = tokio::process::Command::new(exe)
        .arg(CHILD_ARG)
        .arg(place.path())
        .arg(place.number().to_string())
        .arg(max_pods.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the node child")?;
    let pid = child.id().context("the node child's pid")?;
    let result = measure(&place.config(max_pods).data_dir, pid, sizes, idle, port).await;
    // Closing stdin stops the node gracefully, whatever happened above.
    drop(child.stdin.take());
    let status = tokio::time::timeout(STOP_LIMIT, child.wait()).await;
    server.abort();
    match status {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => bail!("the node child failed ({status})"),
        Ok(Err(e)) => bail!("waiting for the node child: {e}"),
        Err(_) => {
            let _ = child.kill().await;
            bail!("the node child did not stop within {STOP_LIMIT:?}");
        }
    }
    result
}

async fn measure(data_dir: &Path, pid: u32, sizes: &[usize], idle: Duration, port: u16) -> Result<Vec<Row>> {
    let client = api_node::connect(&data_dir.join("kubeconfig"), api_node::NODE_NAME).await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut rows = Vec::new();
    let mut created = 0;
    for &size in std::iter::once(&0).chain(sizes) {
        while created < size {
            pods.create(&PostParams::default(), &probed_pod(created, port)?)
                .await
                .with_context(|| format!("creating pod {created}"))?;
            created += 1;
        }
        let limit = READY_LIMIT_PER_100 * u32::try_from(size / 100 + 1).unwrap_or(u32::MAX);
        wait_all_ready(&pods, size, limit).await?;
        // Start-up work (first probes, status writes, endpoint and event traffic) settles.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = Window::read(pid)?;
        let start = Instant::now();
        tokio::time::sleep(idle).await;
        let after = Window::read(pid)?;
        let seconds = start.elapsed().as_secs_f64();
        let percent = |ticks: f64| ticks / ticks_per_second() / seconds * 100.0;
        let cpu = percent(after.node_ticks - before.node_ticks);
        let rest = percent(
            (after.machine_ticks - before.machine_ticks)
                - (after.node_ticks - before.node_ticks)
                - (after.harness_ticks - before.harness_ticks),
        )
        .max(0.0);
        let faults = after.node_major_faults - before.node_major_faults;
        let rss_mb = footprint::rss_kb(&pid.to_string())? / 1024.0;
        let (helpers, helpers_kb) = children_pss_kb(pid);
        let (rss_goal, cpu_goal) = goals(size);
        rows.push(Row {
            bench: "node-footprint".into(),
            metric: format!("node RSS, {size} probed pods"),
            unit: "MB",
            value: Percentiles::single(rss_mb),
            floor: None,
            goal: rss_goal,
            note: Some(
                "the whole node process: API server, store, control loops, kubelet, runtime, probes, DNS"
                    .into(),
            ),
        });
        rows.push(Row {
            bench: "node-footprint".into(),
            metric: format!("monitors+holders PSS, {size} pods"),
            unit: "MB",
            value: Percentiles::single(helpers_kb / 1024.0),
            floor: None,
            goal: Goal::None,
            note: Some(format!(
                "{helpers} processes beside the node: one monitor per container, one holder per sandbox"
            )),
        });
        rows.push(Row {
            bench: "node-footprint".into(),
            metric: format!("idle CPU, {size} probed pods"),
            unit: "%",
            value: Percentiles::single(cpu),
            floor: None,
            goal: cpu_goal,
            note: Some(format!(
                "% of one core over {:.0} s, node and its monitors and holders; HTTP+TCP probes at 10 s; \
                 in the window: {faults:.0} major page faults of theirs, the rest of the machine {rest:.2}%",
                idle.as_secs_f64()
            )),
        });
    }
    if let Some((found, listed)) = laid_out_first() {
        rows.push(Row {
            bench: "node-footprint".into(),
            metric: "functions laid out first".into(),
            unit: "names",
            value: Percentiles::single(found as f64),
            floor: None,
            goal: Goal::None,
            note: Some(format!(
                "names of layout/hot-functions.txt ({listed}: podvisor's and this binary's) that this binary \
                 has, about 9,200 when the list was written; far fewer means a stale list, so the node's \
                 code spreads over more pages: run `cargo xtask layout`"
            )),
        });
    }
    Ok(rows)
}

/// How many of the functions `layout/hot-functions.txt` names this binary has, and how many it
/// names; `None` when the list or `nm` is missing. Names carry a hash of their crate's build, so
/// after a toolchain or dependency update the count falls and the RSS rows above rise.
fn laid_out_first() -> Option<(usize, usize)> {
    let list = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../layout/hot-functions.txt"
    ))
    .ok()?;
    let listed: std::collections::HashSet<&str> = list
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .collect();
    let exe = std::env::current_exe().ok()?;
    let nm = std::process::Command::new("nm")
        .arg("--defined-only")
        .arg(exe)
        .output()
        .ok()?;
    if !nm.status.success() {
        return None;
    }
    let names = String::from_utf8_lossy(&nm.stdout);
    let found: std::collections::HashSet<&str> = names
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .filter(|name| listed.contains(name))
        .collect();
    Some((found.len(), listed.len()))
}

/// Pod `i`: `sleep 3600`, HTTP readiness and TCP liveness at 10 s against the harness's target.
fn probed_pod(i: usize, port: u16) -> Result<Pod> {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("fp-{i}")},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "main", "image": "host", "command": ["sleep", "3600"],
            "readinessProbe": {"httpGet": {"host": "127.0.0.1", "port": port, "path": "/"}, "periodSeconds": 10},
            "livenessProbe": {"tcpSocket": {"host": "127.0.0.1", "port": port}, "periodSeconds": 10},
        }]}
    }))
    .context("the pod")
}

/// Waits until `n` pods are Ready.
async fn wait_all_ready(pods: &Api<Pod>, n: usize, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let list = pods.list(&ListParams::default()).await.context("listing pods")?;
        let ready = list
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready >= n {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{ready} of {n} pods Ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The processes whose parent is `pid`, and their PSS summed, in KiB.
fn children_pss_kb(pid: u32) -> (usize, f64) {
    let mut count = 0;
    let mut total = 0.0;
    for child in children(pid) {
        let pss = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", child.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Pss:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<f64>().ok())
            });
        if let Some(kb) = pss {
            count += 1;
            total += kb;
        }
    }
    (count, total)
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(process::stat)
        .filter(|s| u32::try_from(s.ppid) == Ok(pid))
        .collect()
}

/// What the idle window is measured by, read at its start and its end.
struct Window {
    /// CPU ticks (user + system, its reaped children's included) of the node and of the
    /// processes it started that still run.
    node_ticks: f64,
    /// Their major page faults (their reaped children's included).
    node_major_faults: f64,
    /// This harness's CPU ticks (it serves the pods' probes).
    harness_ticks: f64,
    /// The machine's busy ticks: every CPU's time but idle and I/O wait (`/proc/stat`).
    machine_ticks: f64,
}

impl Window {
    fn read(pid: u32) -> Result<Window> {
        let stat = |p: u32| i32::try_from(p).ok().and_then(process::stat);
        let node = stat(pid).context("reading the node's /proc/PID/stat")?;
        let tree: Vec<ProcStat> = std::iter::once(node).chain(children(pid)).collect();
        let sum = |field: fn(&ProcStat) -> u64| tree.iter().map(|s| field(s) as f64).sum::<f64>();
        let harness = stat(std::process::id()).context("reading the harness's CPU time")?;
        Ok(Window {
            node_ticks: sum(|s| s.cpu_ticks),
            node_major_faults: sum(|s| s.major_faults),
            harness_ticks: harness.cpu_ticks as f64,
            machine_ticks: machine_busy_ticks().context("reading /proc/stat")?,
        })
    }
}

/// The machine's busy CPU ticks: user, nice, system, irq, softirq and steal of `/proc/stat`'s
/// `cpu` line (guest time is inside user and nice).
fn machine_busy_ticks() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    Some([0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum())
}

fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u32::try_from(t).ok())
        .map_or(100.0, f64::from)
}

/// The child: runs the node on DATA_DIR (place number N, room for MAX_PODS pods) until its
/// stdin closes or it gets SIGINT or SIGTERM (an interrupted run: a terminal's Ctrl-C reaches
/// the harness's whole process group), then stops every pod and exits.
pub(crate) fn child(args: &[String]) -> Result<()> {
    let [data, n, max_pods] = args else {
        bail!("usage: {CHILD_ARG} DATA_DIR N MAX_PODS");
    };
    let n: u32 = n.parse().context("N")?;
    let max_pods: u32 = max_pods.parse().context("MAX_PODS")?;
    let config = api_node::node_config(Path::new(data), n, max_pods);
    // As the `podvisor` binary's runtime: multi-threaded with tokio's default threads.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = tokio.block_on(async move {
        let (node, _) = podvisor_node::build(config).await.context("building the node")?;
        let stdin_closed = tokio::task::spawn_blocking(|| {
            use std::io::Read;
            let mut buf = [0u8; 64];
            while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
        });
        let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("SIGTERM")?;
        node.run_until(async move {
            tokio::select! {
                _ = stdin_closed => {}
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            podvisor_node::Shutdown::StopPods
        })
        .await;
        Ok(())
    });
    // Stopped by a signal, the stdin reader still blocks: not waited for.
    tokio.shutdown_background();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window holds whole probe periods (10 s, `probed_pod`) and whole cycles of the usage
    /// scrape (an idle container is read at every other scrape).
    #[test]
    fn the_idle_window_holds_whole_cycles_of_the_periodic_work() {
        let scrape_cycle = 2 * podvisor_apiserver::resource_metrics::RESOLUTION.as_secs();
        let window = IDLE_WINDOW.as_secs();
        assert_eq!(window % scrape_cycle, 0, "{window} s against {scrape_cycle} s");
        assert_eq!(window % 10, 0);
        let pod = probed_pod(0, 80).unwrap();
        let c = &pod.spec.unwrap().containers[0];
        assert_eq!(
            c.readiness_probe.as_ref().and_then(|p| p.period_seconds),
            Some(10)
        );
        assert_eq!(c.liveness_probe.as_ref().and_then(|p| p.period_seconds), Some(10));
    }
}
