//! `node-restart` (issue 18): a whole node in-process ([`ApiNode`]) with `n` pods leaves them
//! running (`Shutdown::LeavePods`, as SIGQUIT or a crash does), stays away for a second, and a
//! new node starts on the same data directory. Measured: from the new node's start to every
//! pod adopted with its status current — each pod probed again by the new node (its exec
//! readiness probe touches a file of its own) and Ready in the API with the same container
//! ID — against the floor, a node started on an empty data directory until it is Ready. And the
//! lines a pod writing one every 10 ms lost while no node ran (goal 0): the monitors write the
//! logs, so none should be.
//!
//! Not measured: a node killed with SIGKILL (the binary's `node_restart.rs` test does that; in
//! process the harness cannot be killed) and adoption across versions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use kube::Api;
use kube::api::{LogParams, PostParams};
use podvisor_core::corev1::Pod;
use serde_json::json;

use crate::api_node::{ApiNode, Place};
use crate::stats::{Floor, Goal, Percentiles, Row};

/// How long every pod may take to be adopted and probed again.
const ADOPT_LIMIT: Duration = Duration::from_secs(120);

pub(crate) async fn run(n: usize, rounds: usize) -> Result<Vec<Row>> {
    let stamps = tempfile::Builder::new()
        .prefix("podvisor-bench-stamps-")
        .tempdir()
        .context("creating the stamps directory")?;
    let mut node = Some(ApiNode::start().await?);
    let result = async {
        let client = |node: &Option<ApiNode>| node.as_ref().map(|n| (n.client.clone(), n.name.clone()));
        let (api, name) = client(&node).context("no node")?;
        let pods: Api<Pod> = Api::namespaced(api, "default");
        for i in 0..n.saturating_sub(1) {
            pods.create(&PostParams::default(), &sleeper(i, stamps.path(), &name)?)
                .await
                .with_context(|| format!("creating pod {i}"))?;
        }
        pods.create(&PostParams::default(), &ticker(&name)?)
            .await
            .context("creating the ticker")?;
        let ids = wait_ready(&pods, n, None, ADOPT_LIMIT).await?;
        let mut adopt = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let place = node.take().context("no node")?.leave().await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let t = Instant::now();
            let since = SystemTime::now();
            node = Some(ApiNode::start_on(place).await?);
            let (api, _) = client(&node).context("no node")?;
            let pods: Api<Pod> = Api::namespaced(api, "default");
            let after = wait_ready(&pods, n, Some(&ids), ADOPT_LIMIT).await?;
            wait_probed(stamps.path(), n.saturating_sub(1), since).await?;
            adopt.push(t.elapsed());
            if after != ids {
                bail!("container IDs changed across the restart: adopted pods were started again");
            }
        }
        let (api, _) = client(&node).context("no node")?;
        let pods: Api<Pod> = Api::namespaced(api, "default");
        let log = pods
            .logs("ticker", &LogParams::default())
            .await
            .context("the ticker's log")?;
        Ok::<_, anyhow::Error>((adopt, lost_lines(&log)))
    }
    .await;
    if let Some(node) = node {
        node.shutdown().await?;
    }
    let (adopt, lost) = result?;
    let mut floor = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let empty = ApiNode::start_on(Place::new()?).await?;
        floor.push(t.elapsed());
        empty.shutdown().await?;
    }
    Ok(vec![
        Row {
            bench: "node-restart".into(),
            metric: format!("{n} pods: node start→all adopted, probed and Ready"),
            unit: "ms",
            value: Percentiles::of_durations_ms(&adopt).context("no samples")?,
            floor: Some(Floor {
                name: "a node started with no pods until Ready".into(),
                value: Percentiles::of_durations_ms(&floor).context("no floor samples")?,
            }),
            // Issue #18 asks for the measurement against this floor, with no bound.
            goal: Goal::None,
            note: Some(
                "in process: the node leaves (as on SIGQUIT), 1 s away, a new node on the same data dir"
                    .into(),
            ),
        },
        Row {
            bench: "node-restart".into(),
            metric: "log lines lost while no node ran (one line per 10 ms)".into(),
            unit: "lines",
            value: Percentiles::single(lost as f64),
            floor: None,
            goal: Goal::AtMost(0.0),
            note: None,
        },
    ])
}

fn sleeper(i: usize, stamps: &Path, node: &str) -> Result<Pod> {
    let stamp = stamps.join(format!("p{i}"));
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("p{i}")},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "app", "image": "host", "command": ["sleep", "infinity"],
                "readinessProbe": {"exec": {"command": ["touch", stamp]}, "periodSeconds": 1},
            }],
        },
    }))
    .context("building a pod")
}

fn ticker(node: &str) -> Result<Pod> {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "ticker"},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "app", "image": "host",
                "command": ["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.01; done"],
            }],
        },
    }))
    .context("building the ticker")
}

/// Waits until all `n` pods are Ready (with the container IDs in `same`, when given); returns
/// each pod's container ID.
async fn wait_ready(
    pods: &Api<Pod>,
    n: usize,
    same: Option<&BTreeMap<String, String>>,
    limit: Duration,
) -> Result<BTreeMap<String, String>> {
    let deadline = Instant::now() + limit;
    loop {
        let list = pods.list(&Default::default()).await.context("listing pods")?;
        let ids: BTreeMap<String, String> = list
            .items
            .iter()
            .filter_map(|p| {
                let status = p.status.as_ref()?;
                let ready = status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                let id = status
                    .container_statuses
                    .as_ref()?
                    .first()?
                    .container_id
                    .clone()?;
                ready.then(|| (p.metadata.name.clone().unwrap_or_default(), id))
            })
            .collect();
        let done = ids.len() == n && same.is_none_or(|s| *s == ids);
        if done {
            return Ok(ids);
        }
        if Instant::now() >= deadline {
            bail!("{} of {n} pods Ready (as before) within {limit:?}", ids.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every pod's readiness probe ran after `since`.
async fn wait_probed(stamps: &Path, n: usize, since: SystemTime) -> Result<()> {
    let deadline = Instant::now() + ADOPT_LIMIT;
    let paths: Vec<PathBuf> = (0..n).map(|i| stamps.join(format!("p{i}"))).collect();
    loop {
        let probed = paths
            .iter()
            .filter(|p| {
                std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t > since)
            })
            .count();
        if probed == n {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{probed} of {n} pods probed again within {ADOPT_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many `tick-N` lines are missing between the first and the last of the log.
fn lost_lines(log: &str) -> u64 {
    let ticks: Vec<u64> = log
        .lines()
        .filter_map(|l| l.strip_prefix("tick-")?.parse().ok())
        .collect();
    let (Some(first), Some(last)) = (ticks.first(), ticks.last()) else {
        return u64::MAX;
    };
    (last - first + 1).saturating_sub(ticks.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_lines_are_the_gaps() {
        assert_eq!(lost_lines("tick-1\ntick-2\ntick-3\n"), 0);
        assert_eq!(lost_lines("tick-1\ntick-4\n"), 2);
        assert_eq!(lost_lines(""), u64::MAX);
    }
}
