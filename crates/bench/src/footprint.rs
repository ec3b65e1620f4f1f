//! `footprint`: the memory and CPU of the node's pod parts (runtime, probes, supervisor) with
//! 0 and N probed pods. Each size runs in a child process (this binary re-executed with a
//! hidden argument) so the numbers are not the harness's own: the child starts the pods, waits
//! until they are ready, then reads its VmRSS and its CPU time over an idle window.
//!
//! Each pod is `sleep 3600` with an HTTP readiness probe and a TCP liveness probe, period 1 s,
//! against a tiny HTTP server the parent runs on 127.0.0.1 (probes come from the node's network
//! namespace, like the kubelet's).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::pods::{self, PodNode};
use crate::stats::{Goal, Percentiles, Row};

/// The hidden first argument that makes this binary the footprint child.
pub(crate) const CHILD_ARG: &str = "__footprint-child";

/// Runs the child for 0 and `pods` pods, watching for `idle` each time.
pub(crate) async fn run(pods: usize, idle: Duration) -> Result<Vec<Row>> {
    // The probe target: a tiny HTTP server in this (the parent) process.
    let (port, server) = probe_target().await?;
    let mut rows = Vec::new();
    for n in [0, pods] {
        let report = run_child(n, idle, port, "http-tcp").await?;
        let rss_mb = report["rss_kb"].as_f64().context("rss_kb")? / 1024.0;
        let cpu = report["cpu_percent"].as_f64().context("cpu_percent")?;
        rows.push(Row {
            bench: "footprint".into(),
            metric: format!("RSS, {n} probed pods"),
            unit: "MB",
            value: Percentiles::single(rss_mb),
            floor: None,
            goal: if n >= 110 { Goal::AtMost(30.0) } else { Goal::None },
            note: Some("pod parts only (runtime, probes, supervisor); no API server or store".into()),
        });
        rows.push(Row {
            bench: "footprint".into(),
            metric: format!("CPU, {n} probed pods"),
            unit: "%",
            value: Percentiles::single(cpu),
            floor: None,
            goal: if n == 0 { Goal::AtMost(0.5) } else { Goal::None },
            note: Some(format!(
                "% of one core over {:.0} s; with pods it includes 2 probes/s per pod",
                idle.as_secs_f64()
            )),
        });
    }
    server.abort();
    Ok(rows)
}

/// A tiny HTTP server on 127.0.0.1 answering every request with 200, the probes' target.
pub(crate) async fn probe_target() -> Result<(u16, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the probe target")?;
    let port = listener
        .local_addr()
        .context("the probe target's address")?
        .port();
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                if matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    Ok((port, server))
}

/// Runs the child (this binary re-executed) with `n` pods probed as `variant`, and returns its
/// JSON report.
pub(crate) async fn run_child(
    n: usize,
    idle: Duration,
    port: u16,
    variant: &'static str,
) -> Result<serde_json::Value> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let output = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args([
                CHILD_ARG,
                &n.to_string(),
                &idle.as_millis().to_string(),
                &port.to_string(),
                variant,
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
    })
    .await
    .context("the child thread")?
    .context("running the footprint child")?;
    if !output.status.success() {
        bail!("the footprint child with {n} pods failed ({})", output.status);
    }
    serde_json::from_slice(&output.stdout).context("decoding the child's report")
}

/// The child: `__footprint-child PODS IDLE_MS PORT [http-tcp|exec][-10s]` (probes every second,
/// or every 10 s with `-10s`). Prints
/// `{"rss_kb":..,"cpu_percent":..,"time_wait":..,"unready":..}`: CPU includes reaped children
/// (exec probes), `time_wait` counts the probes' TIME_WAIT sockets at the end, `unready` the pods seen not
/// ready during the window (false probe failures: every probe target answers).
pub(crate) fn child(args: &[String]) -> Result<()> {
    let (pods, idle_ms, port, variant) = match args {
        [pods, idle_ms, port] => (pods, idle_ms, port, "http-tcp"),
        [pods, idle_ms, port, variant] => (pods, idle_ms, port, variant.as_str()),
        _ => bail!("usage: {CHILD_ARG} PODS IDLE_MS PORT [http-tcp|exec][-10s]"),
    };
    // The variant, and the probes' period: `-10s` probes every 10 s (the kubelet's default).
    let (variant, period) = match variant.strip_suffix("-10s") {
        Some(variant) => (variant, 10),
        None => (variant, 1),
    };
    let exec = match variant {
        "http-tcp" => false,
        "exec" => true,
        other => bail!("unknown probe variant {other:?}"),
    };
    let pods: usize = pods.parse().context("PODS")?;
    let idle = Duration::from_millis(idle_ms.parse().context("IDLE_MS")?);
    let port: u16 = port.parse().context("PORT")?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = tokio.block_on(async move {
        let mut node = PodNode::start().await?;
        let result = async {
            let mut watches = Vec::new();
            for _ in 0..pods {
                let (readiness, liveness) = if exec {
                    (
                        json!({"exec": {"command": ["true"]}, "periodSeconds": period}),
                        json!({"exec": {"command": ["true"]}, "periodSeconds": period}),
                    )
                } else {
                    (
                        json!({"httpGet": {"host": "127.0.0.1", "port": port, "path": "/"}, "periodSeconds": period}),
                        json!({"tcpSocket": {"host": "127.0.0.1", "port": port}, "periodSeconds": period}),
                    )
                };
                let pod = pods::pod(
                    "fp",
                    json!({"terminationGracePeriodSeconds": 0, "containers": [{
                        "name": "main", "image": "host", "command": ["sleep", "3600"],
                        "readinessProbe": readiness, "livenessProbe": liveness,
                    }]}),
                )?;
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                node.supervisor.apply(pod);
                watches.push(node.supervisor.watch(&uid).context("the pod has no worker")?);
            }
            for rx in &mut watches {
                pods::wait_view(rx, Duration::from_secs(120), "the pod to be ready", ready).await?;
            }
            // Let start-up work settle, then measure.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let cpu_before = cpu_time()?;
            let start = Instant::now();
            let mut unready: Vec<bool> = watches.iter_mut().map(|rx| !ready(&rx.borrow_and_update())).collect();
            while start.elapsed() < idle {
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Only the views that changed are looked at: this loop runs in the measured
                // process, and reading 1,000 pods' conditions ten times a second was a tenth of
                // what it measured.
                for (seen, rx) in unready.iter_mut().zip(&mut watches) {
                    if rx.has_changed().unwrap_or(false) {
                        *seen |= !ready(&rx.borrow_and_update());
                    }
                }
            }
            let cpu = (cpu_time()? - cpu_before) / start.elapsed().as_secs_f64() * 100.0;
            let unready = unready.iter().filter(|u| **u).count();
            Ok::<_, anyhow::Error>(json!({
                "rss_kb": rss_kb("self")?, "cpu_percent": cpu, "time_wait": time_wait(port), "unready": unready
            }))
        }
        .await;
        node.shutdown().await;
        result
    })?;
    println!("{report}");
    Ok(())
}

fn ready(view: &podvisor_kubelet::PodView) -> bool {
    view.pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The resident set size (VmRSS) of process `pid` (`self` for this one), in KiB.
pub(crate) fn rss_kb(pid: &str) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// User plus system CPU time of this process and its reaped children so far, in seconds.
pub(crate) fn cpu_time() -> Result<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let secs = |t: nix::sys::time::TimeVal| {
        #[allow(clippy::cast_precision_loss)]
        let s = t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        s
    };
    let mut total = 0.0;
    for who in [UsageWho::RUSAGE_SELF, UsageWho::RUSAGE_CHILDREN] {
        let usage = getrusage(who).context("getrusage")?;
        total += secs(usage.user_time()) + secs(usage.system_time());
    }
    Ok(total)
}

/// Probe sockets in TIME_WAIT: client-side TCP sockets to `port` (the probe target's own
/// sockets, which close first, are not the node's).
pub(crate) fn time_wait(port: u16) -> usize {
    let remote = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| {
            t.lines()
                .skip(1)
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.get(3) == Some(&"06") && f.get(2).is_some_and(|r| r.ends_with(&remote))
                })
                .count()
        })
        .sum()
}
