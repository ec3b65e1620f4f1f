//! `endpoint-propagation`: a pod's readiness flips → the EndpointSlice change reaches a
//! watching client.
//!
//! The real endpoint controller loop of the node runs over a redb store; the "client" watches
//! EndpointSlices on the same store (in-process, as the API server's watch handler does).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use podvisor_endpoints::SLICES;
use podvisor_store::{ObjectKey, Preconditions, RedbStore, Store};
use serde_json::{Value, json};

use crate::stats::{Goal, Percentiles, Row};

fn pod(ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default", "uid": "bench-pod", "labels": {"app": "web"}},
        "spec": {"nodeName": "bench", "containers": [{"name": "app", "image": "x", "ports": [{"containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": "10.88.0.2",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

fn slice_ready(slice: &Value) -> Option<bool> {
    slice["endpoints"].get(0)?["conditions"]["ready"].as_bool()
}

/// Runs `n` readiness flips and reports the propagation time.
pub(crate) async fn run(n: usize) -> Result<Vec<Row>> {
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
    let pod_key = ObjectKey::new("pods", "default", "web-0");
    store.create(&pod_key, pod(false)).await?;
    let revision = store.current_revision().await?;
    let mut watch = store.watch(SLICES, Some("default"), revision).await?;
    // The controller reads and writes through the API server's in-process handler, as in the node.
    let server = podvisor_apiserver::ApiServer::new(store.clone(), Default::default());
    let client = kube::Client::new(server.handler(), "default");
    let controller = tokio::spawn(podvisor_controllers::endpoints::run(client));
    // The first slice, not ready.
    wait_for(&mut watch, false)
        .await
        .context("the first EndpointSlice never appeared")?;
    let mut samples = Vec::with_capacity(n);
    let mut ready = false;
    for _ in 0..n {
        ready = !ready;
        let current = store.get(&pod_key).await?;
        let started = Instant::now();
        store
            .update(
                &pod_key,
                pod(ready),
                Preconditions {
                    resource_version: Some(current.revision),
                    uid: None,
                },
            )
            .await?;
        wait_for(&mut watch, ready).await?;
        samples.push(started.elapsed());
    }
    controller.abort();
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

async fn wait_for(watch: &mut podvisor_store::WatchStream, ready: bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, watch.next()).await else {
            bail!("no EndpointSlice change within 10 s");
        };
        let Some(event) = next else {
            bail!("the watch ended")
        };
        if slice_ready(&event?.object) == Some(ready) {
            return Ok(());
        }
    }
}
