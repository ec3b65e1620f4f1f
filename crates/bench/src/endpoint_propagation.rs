//! `endpoint-propagation`: a pod's readiness flips → the EndpointSlice change reaches a
//! watching client. `endpoint-propagation-1000`: the same flip in a Service of 1,000 endpoints
//! (ten slices of 100), against the one-endpoint flip measured in the same run as its floor.
//!
//! The real endpoint controller loop of the node runs over a redb store; the "client" watches
//! EndpointSlices on the same store (in-process, as the API server's watch handler does).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use podvisor_endpoints::{MAX_SLICE_ENDPOINTS, SLICES};
use podvisor_store::{ListOptions, ObjectKey, Preconditions, RedbStore, Store};
use serde_json::{Value, json};

use crate::stats::{Floor, Goal, Percentiles, Row};

/// The pod that flips; the others stay ready.
const FLIPPED: &str = "web-0";

fn pod(i: usize, ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("web-{i}"), "namespace": "default", "uid": format!("bench-pod-{i}"),
            "labels": {"app": "web"}},
        "spec": {"nodeName": "bench", "containers": [{"name": "app", "image": "x", "ports": [{"containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": format!("10.88.{}.{}", i / 250, i % 250 + 2),
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

/// The ready condition of `pod`'s endpoint in `slice`, when the slice has it.
fn ready_in(slice: &Value, pod: &str) -> Option<bool> {
    let endpoints = slice["endpoints"].as_array()?;
    let endpoint = endpoints.iter().find(|e| e["targetRef"]["name"] == pod)?;
    endpoint["conditions"]["ready"].as_bool()
}

/// `flips` readiness flips of one pod in a Service of `endpoints` pods: how long each took to
/// reach a watcher of EndpointSlices.
async fn measure(flips: usize, endpoints: usize) -> Result<Vec<Duration>> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path().join("store.redb"))?);
    store
        .create(
            &ObjectKey::new("namespaces", "", "default"),
            json!({"metadata": {"name": "default"}}),
        )
        .await?;
    store
        .create(
            &ObjectKey::new("services", "default", "web"),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default", "uid": "svc"},
                "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.20", "ports": [{"port": 80, "targetPort": 8080}]}}),
        )
        .await?;
    for i in 0..endpoints {
        let key = ObjectKey::new("pods", "default", format!("web-{i}"));
        store.create(&key, pod(i, i != 0)).await?;
    }
    // The controller reads and writes through the API server's in-process handler, as in the node.
    let server = podvisor_apiserver::ApiServer::new(store.clone(), Default::default());
    let client = kube::Client::new(server.handler(), "default");
    let controller = tokio::spawn(podvisor_controllers::endpoints::run(client));
    let result = flip(&*store, flips, endpoints).await;
    controller.abort();
    result
}

async fn flip(store: &dyn Store, flips: usize, endpoints: usize) -> Result<Vec<Duration>> {
    settled(store, endpoints).await?;
    let pod_key = ObjectKey::new("pods", "default", FLIPPED);
    let mut samples = Vec::with_capacity(flips);
    let mut ready = false;
    for _ in 0..flips {
        ready = !ready;
        let current = store.get(&pod_key).await?;
        let mut watch = store.watch(SLICES, Some("default"), current.revision).await?;
        let started = Instant::now();
        store
            .update(
                &pod_key,
                pod(0, ready),
                Preconditions {
                    resource_version: Some(current.revision),
                    uid: None,
                },
            )
            .await?;
        wait_for(&mut watch, ready).await?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

/// Waits until the slices hold every endpoint, none in a slice of more than 100, the flipped
/// one not ready.
async fn settled(store: &dyn Store, endpoints: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let slices = store
            .list(SLICES, Some("default"), ListOptions::default())
            .await?;
        let sizes: Vec<usize> = slices
            .items
            .iter()
            .map(|s| s.object["endpoints"].as_array().map_or(0, Vec::len))
            .collect();
        let flipped = slices.items.iter().find_map(|s| ready_in(&s.object, FLIPPED));
        if sizes.iter().sum::<usize>() == endpoints && flipped == Some(false) {
            if let Some(big) = sizes.iter().find(|n| **n > MAX_SLICE_ENDPOINTS) {
                bail!("a slice holds {big} endpoints, more than {MAX_SLICE_ENDPOINTS}");
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the slices never held {endpoints} endpoints (they hold {sizes:?})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for(watch: &mut podvisor_store::WatchStream, ready: bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, watch.next()).await else {
            bail!("no EndpointSlice change within 10 s");
        };
        let Some(event) = next else {
            bail!("the watch ended")
        };
        if ready_in(&event?.object, FLIPPED) == Some(ready) {
            return Ok(());
        }
    }
}

/// Runs `flips` readiness flips of the only endpoint of a Service.
pub(crate) async fn run(flips: usize) -> Result<Vec<Row>> {
    let samples = measure(flips, 1).await?;
    Ok(vec![Row {
        bench: "endpoint-propagation".into(),
        metric: "readiness flip → slice watch event".into(),
        unit: "ms",
        value: Percentiles::of_durations_ms(&samples).context("no samples")?,
        floor: None,
        goal: Goal::AtMost(50.0),
        note: Some("goal also p50 ≤ 5 ms; the store write of the pod status is included".into()),
    }])
}

/// Runs `flips` readiness flips of one endpoint of `endpoints`, and as many of a one-endpoint
/// Service as the floor.
pub(crate) async fn run_scale(flips: usize, endpoints: usize) -> Result<Vec<Row>> {
    let floor = measure(flips, 1).await?;
    let samples = measure(flips, endpoints).await?;
    let slices = endpoints.div_ceil(MAX_SLICE_ENDPOINTS);
    Ok(vec![Row {
        bench: format!("endpoint-propagation-{endpoints}"),
        metric: format!("readiness flip → slice watch event, {endpoints} endpoints in {slices} slices"),
        unit: "ms",
        value: Percentiles::of_durations_ms(&samples).context("no samples")?,
        floor: Some(Floor {
            name: "the same flip in a Service of one endpoint".into(),
            value: Percentiles::of_durations_ms(&floor).context("no floor samples")?,
        }),
        goal: Goal::Ratio {
            p50: Some(3.0),
            p99: None,
        },
        note: Some(
            "only the flipped pod's slice is rewritten; the floor is the same controller and store with one endpoint"
                .into(),
        ),
    }])
}
