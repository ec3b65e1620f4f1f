//! `probe-cpu`: the CPU the node's pod parts spend probing N pods, each with a readiness and a
//! liveness probe at period 1 s: HTTP GET + TCP, and a variant with two exec probes.
//! `probe-cpu-1000`: 1,000 pods' HTTP GET + TCP probes at period 10 s (the kubelet's default)
//! and 1 s. Measured
//! in the footprint child (see [`crate::footprint`]) over a window, with the TIME_WAIT sockets
//! left on the machine and the pods seen unready (false failures: every target answers).
//!
//! Floors, measured in this process: the CPU of the same number of bare operations per second
//! (an HTTP GET on a fresh connection plus a bare TCP connect; or spawning and reaping `true`
//! twice), as a percentage of one core.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::footprint::{self, cpu_time};
use crate::stats::{Floor, Goal, Percentiles, Row};

/// Runs both variants with `pods` pods over `window`, probes every second.
pub(crate) async fn run(pods: usize, window: Duration) -> Result<Vec<Row>> {
    // exec first: TIME_WAIT sockets of the HTTP run would outlive it by a minute.
    measure(
        "probe-cpu",
        pods,
        &[(Variant::Exec, 1, window), (Variant::HttpTcp, 1, window)],
    )
    .await
}

/// `probe-cpu-1000`: HTTP+TCP only (1,000 pods' exec probes every second would take more than
/// the machine), probes every 10 s over `window_10s` and every second over `window_1s`.
pub(crate) async fn run_scale(pods: usize, window_10s: Duration, window_1s: Duration) -> Result<Vec<Row>> {
    measure(
        "probe-cpu-1000",
        pods,
        &[
            (Variant::HttpTcp, 10, window_10s),
            (Variant::HttpTcp, 1, window_1s),
        ],
    )
    .await
}

#[derive(Clone, Copy)]
enum Variant {
    HttpTcp,
    Exec,
}

/// Each run's child (`pods` pods, the variant's two probes every `period` seconds, measured
/// over the window) and its floor, as rows of `bench`.
async fn measure(bench: &str, pods: usize, runs: &[(Variant, u64, Duration)]) -> Result<Vec<Row>> {
    let (port, server) = footprint::probe_target().await?;
    let result = async {
        let mut measured = Vec::new();
        for &(variant, period, window) in runs {
            let name = match (variant, period) {
                (Variant::HttpTcp, 1) => "http-tcp",
                (Variant::HttpTcp, _) => "http-tcp-10s",
                (Variant::Exec, 1) => "exec",
                (Variant::Exec, _) => "exec-10s",
            };
            let report = footprint::run_child(pods, window, port, name).await?;
            // The probes each second: two per pod per period.
            let ops = (pods * 2).div_ceil(usize::try_from(period).unwrap_or(1));
            let floor = match variant {
                // One GET and one connect per pod and period: half the probes' rate in pairs.
                Variant::HttpTcp => {
                    let pairs = ops.div_ceil(2);
                    tokio::task::spawn_blocking(move || floor_percent(pairs, || http_and_connect(port))).await
                }
                Variant::Exec => tokio::task::spawn_blocking(move || floor_percent(ops, spawn_true)).await,
            }
            .context("the floor thread")??;
            measured.push((variant, period, report, floor, ops));
        }
        Ok::<_, anyhow::Error>(measured)
    }
    .await;
    server.abort();
    let mut rows = Vec::new();
    for (variant, period, report, floor, ops) in result? {
        let (variant, floor_name) = match variant {
            Variant::HttpTcp => (
                "HTTP+TCP",
                format!("{} HTTP GETs + {} TCP connects per second", ops / 2, ops / 2),
            ),
            Variant::Exec => ("exec+exec", format!("{ops} spawns of `true` per second")),
        };
        let cpu = report["cpu_percent"].as_f64().context("cpu_percent")?;
        rows.push(Row {
            bench: bench.into(),
            metric: format!("CPU, {pods} pods {variant} at {period} s"),
            unit: "%",
            value: Percentiles::single(cpu),
            floor: Some(Floor {
                name: floor_name,
                value: Percentiles::single(floor),
            }),
            goal: Goal::Ratio {
                p50: Some(3.0),
                p99: None,
            },
            note: Some("% of one core, exec probes' processes included".into()),
        });
        let count = |key: &str| report[key].as_f64().context("a count in the child's report");
        rows.push(Row {
            bench: bench.into(),
            metric: format!("TIME_WAIT sockets, {variant} at {period} s"),
            unit: "",
            value: Percentiles::single(count("time_wait")?),
            floor: None,
            goal: Goal::AtMost(250.0),
            note: None,
        });
        rows.push(Row {
            bench: bench.into(),
            metric: format!("false probe failures, {variant} at {period} s"),
            unit: "pods",
            value: Percentiles::single(count("unready")?),
            floor: None,
            goal: Goal::AtMost(0.0),
            note: None,
        });
    }
    Ok(rows)
}

/// The CPU (% of one core) of doing `per_second` operations every second: the cost of one
/// operation, measured over a batch, times the rate.
fn floor_percent(per_second: usize, op: impl Fn() -> Result<()>) -> Result<f64> {
    let batch = per_second.clamp(20, 400);
    let before = cpu_time()?;
    for _ in 0..batch {
        op()?;
    }
    #[allow(clippy::cast_precision_loss)]
    let per_op = (cpu_time()? - before) / batch as f64;
    #[allow(clippy::cast_precision_loss)]
    Ok(per_op * per_second as f64 * 100.0)
}

/// An HTTP probe's and a TCP probe's bare work: one GET on a fresh connection and one
/// connect-and-close (the caller runs `pods / period` of these pairs a second).
fn http_and_connect(port: u16) -> Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).context("connecting")?;
    stream.write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf)?;
    drop(TcpStream::connect(("127.0.0.1", port)).context("connecting")?);
    Ok(())
}

fn spawn_true() -> Result<()> {
    Command::new("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("spawning true")?;
    Ok(())
}
