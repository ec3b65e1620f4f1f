//! `probe-timing`: how late probes run. Pods with two HTTP probes each (readiness and liveness,
//! period 1 s) probe a server in this process that records when each probe arrives; a probe's
//! lateness is how much longer than the period the gap since that probe's previous arrival was.
//! Measured idle, then with both cores loaded by busy threads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use crate::pods::{self, PodNode};
use crate::stats::{Goal, Percentiles, Row};

type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

/// Runs `probes` probes (two per pod) for `window`, idle and loaded.
pub(crate) async fn run(probes: usize, window: Duration) -> Result<Vec<Row>> {
    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the probe target")?;
    let port = listener
        .local_addr()
        .context("the probe target's address")?
        .port();
    let record = arrivals.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let Ok(n) = stream.read(&mut buf).await else {
                    return;
                };
                let at = Instant::now();
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(path) = text.split_whitespace().nth(1)
                    && let Ok(mut map) = record.lock()
                {
                    map.entry(path.to_owned()).or_default().push(at);
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                    .await;
            });
        }
    });
    let mut node = PodNode::start().await?;
    let result = async {
        let pods_n = probes.div_ceil(2);
        let mut watches = Vec::new();
        for i in 0..pods_n {
            let probe = |kind: &str| json!({"httpGet": {"host": "127.0.0.1", "port": port, "path": format!("/{kind}/{i}")}, "periodSeconds": 1});
            let pod = pods::pod(
                "timing",
                json!({"terminationGracePeriodSeconds": 0, "containers": [{
                    "name": "main", "image": "host", "command": ["sleep", "3600"],
                    "readinessProbe": probe("r"), "livenessProbe": probe("l"),
                }]}),
            )?;
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            node.supervisor.apply(pod);
            watches.push(node.supervisor.watch(&uid).context("the pod has no worker")?);
        }
        for rx in &mut watches {
            pods::wait_view(rx, Duration::from_secs(120), "the pod to run", pods::running).await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = lateness_over(&arrivals, window).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let burners: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x: u64 = 1;
                    while !stop.load(Ordering::Relaxed) {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        std::hint::black_box(x);
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let loaded = lateness_over(&arrivals, window).await;
        stop.store(true, Ordering::Relaxed);
        for b in burners {
            let _ = b.join();
        }
        Ok::<_, anyhow::Error>((idle, loaded?))
    }
    .await;
    node.shutdown().await;
    server.abort();
    let (idle, loaded) = result?;
    let row = |metric: &str, samples: &[f64], bound: f64| -> Result<Row> {
        Ok(Row {
            bench: "probe-timing".into(),
            metric: metric.into(),
            unit: "ms",
            value: Percentiles::of(samples).context("no probe arrivals")?,
            floor: None,
            goal: Goal::AtMost(bound),
            note: Some("lateness = gap between a probe's arrivals minus its 1 s period".into()),
        })
    };
    Ok(vec![
        row(&format!("{probes} probes, idle"), &idle, 10.0)?,
        row(&format!("{probes} probes, both cores loaded"), &loaded, 50.0)?,
    ])
}

/// Clears the arrivals, waits `window`, and returns every probe's lateness in ms.
async fn lateness_over(arrivals: &Arrivals, window: Duration) -> Result<Vec<f64>> {
    arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clear();
    tokio::time::sleep(window).await;
    let map = std::mem::take(&mut *arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let mut late = Vec::new();
    for times in map.values() {
        for pair in times.windows(2) {
            let gap = pair[1].duration_since(pair[0]).as_secs_f64() - 1.0;
            late.push(gap.max(0.0) * 1000.0);
        }
    }
    Ok(late)
}
