//! `deploy-100` and `rollout-100`: the workload controllers (`podvisor_controllers::workloads`,
//! issue #16) driving a Deployment of `n` replicas on a whole node in-process ([`ApiNode`]: the
//! API, the control loops and the kubelet, as `podvisor node` runs them), observed through
//! watches over the node's loopback API, as kubectl would.
//!
//! - `deploy-100`: the Deployment created → `status.availableReplicas == n`. Floor: the same
//!   `n` pods created directly through the API (concurrently, `spec.nodeName` set, so neither the
//!   scheduler nor a workload controller is involved) → every one Running and Ready. The ratio
//!   is what the controllers add: the ReplicaSet, slow-start batches, scheduling, and the status
//!   travelling pod → ReplicaSet → Deployment.
//! - `rollout-100`: a template change (an env var) with the default maxSurge and
//!   maxUnavailable (25%) → what `kubectl rollout status` calls done (observedGeneration ≥
//!   generation, updatedReplicas == replicas == availableReplicas == n), and every old pod gone
//!   from the API. Floor: the bare pods' start plus their deletion → gone, in the same round
//!   (what a rolling update must do at the least).
//!
//! The pods run `sleep` with no readiness probe: Ready then follows the container's start, as
//! it does for the floor's pods, so the ratio is the controllers' and not a probe period's (the
//! probes' own cost is `probe-cpu`'s and `probe-timing`'s subject). Both kinds of pods have a
//! termination grace period of 0, as `burst-110`'s: a deleted pod leaves the API at once and its
//! process is killed.
//!
//! The node is one, with the kubelet's 110 pods allocatable: a rollout of 100 with 25% surge
//! wants up to 125 pods, so some new pods wait `Unschedulable` until old ones are gone, and the
//! scheduler's back-off (1, 2, 4 s) is part of what `rollout-100` measures, as it would be on one
//! upstream node. The rollout row's note says how many pods the watch saw at once (the surge
//! bounds the ReplicaSets' sizes, not the pods still being deleted) and how many
//! `FailedScheduling` events each rollout caused.
//!
//! Every round deletes the Deployment and waits until its ReplicaSets and pods are gone (the
//! garbage collector's work, reported as an informational row), so nothing is left behind.
//! Not measured: scaling, probes, minReadySeconds, progress deadlines, several nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use futures_util::future::try_join_all;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Resource};
use podvisor_core::appsv1::{Deployment, ReplicaSet};
use podvisor_core::corev1::Pod;
use podvisor_core::k8s_openapi::api::events::v1::Event;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::api_node::ApiNode;
use crate::stats::{Floor, Goal, Percentiles, Row};

/// What a run reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Measure {
    /// `deploy-100`: created → available, and the Deployment's deletion.
    Deploy,
    /// `rollout-100`: a rolling update (the Deployment is still created first, not reported).
    Rollout,
}

/// The Deployment's name and its pods' label.
const NAME: &str = "bench";
/// The floor pods' label.
const FLOOR_APP: &str = "bench-floor";
/// The Deployment's pods' label.
const DEPLOY_APP: &str = "bench-deploy";

/// A pod's state as the watches see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PodState {
    /// Phase Running with condition Ready=True.
    ready: bool,
    /// Being deleted (`metadata.deletionTimestamp` set).
    terminating: bool,
}

/// The pods of one label, by name, as a watch sees them.
type Pods = BTreeMap<String, PodState>;

/// The Deployment's status fields `kubectl rollout status` reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Progress {
    generation: i64,
    observed: i64,
    replicas: i32,
    updated: i32,
    available: i32,
}

/// Runs `rounds` rounds of `n` replicas; each round measures the floor, then the Deployment.
pub(crate) async fn run(n: usize, rounds: usize, measure: Measure) -> Result<Vec<Row>> {
    let node = ApiNode::start().await?;
    let result = rounds_on(&node, n, rounds, measure).await;
    let stopped = node.shutdown().await;
    let samples = result?;
    stopped?;
    rows(n, measure, &samples)
}

/// One round's durations.
#[derive(Debug, Default)]
struct Samples {
    floor_up: Vec<Duration>,
    floor_down: Vec<Duration>,
    deploy: Vec<Duration>,
    rollout: Vec<Duration>,
    /// When `kubectl rollout status` would have said done (old pods possibly still going).
    rollout_status: Vec<Duration>,
    /// The most pods not being deleted the watch saw at once during a rollout (at least that
    /// many: a watch channel keeps only the latest state).
    rollout_peak: usize,
    /// `FailedScheduling` events (with their repeats) recorded during each rollout.
    failed_scheduling: Vec<usize>,
    teardown: Vec<Duration>,
}

async fn rounds_on(node: &ApiNode, n: usize, rounds: usize, measure: Measure) -> Result<Samples> {
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");
    let floor_pods = follow_pods(pods.clone(), FLOOR_APP).await?;
    let deploy_pods = follow_pods(pods.clone(), DEPLOY_APP).await?;
    let progress = follow_deployment(Api::namespaced(node.client.clone(), "default")).await?;
    let limit = limit(n);
    // Two bare pods first, not measured: warms the bridge, the cgroup parent and the caches.
    floor_round(&pods, &node.name, 2, &floor_pods.rx, limit).await?;
    let mut samples = Samples::default();
    for round in 0..rounds {
        let (up, down) = floor_round(&pods, &node.name, n, &floor_pods.rx, limit).await?;
        samples.floor_up.push(up);
        samples.floor_down.push(down);
        let deployments: Api<Deployment> = Api::namespaced(node.client.clone(), "default");
        let started = Instant::now();
        deployments
            .create(&PostParams::default(), &deployment(n)?)
            .await
            .context("creating the Deployment")?;
        wait(&progress.rx, limit, "the Deployment to be available", |p| {
            p.is_some_and(|p| p.observed >= p.generation && p.available == count(n) && p.updated == count(n))
        })
        .await?;
        samples.deploy.push(started.elapsed());
        if measure == Measure::Rollout {
            let events: Api<Event> = Api::namespaced(node.client.clone(), "default");
            let before = failed_scheduling(&events).await?;
            let peak = Arc::new(AtomicUsize::new(0));
            let watching = track_peak(deploy_pods.rx.clone(), peak.clone());
            let done = rollout(&deployments, n, round, &deploy_pods.rx, &progress.rx, limit).await;
            watching.abort();
            let (status, gone) = done?;
            samples.rollout_status.push(status);
            samples.rollout.push(gone);
            samples.rollout_peak = samples.rollout_peak.max(peak.load(Ordering::Relaxed));
            let after = failed_scheduling(&events).await?;
            samples.failed_scheduling.push(after.saturating_sub(before));
        }
        let started = Instant::now();
        deployments
            .delete(NAME, &DeleteParams::background())
            .await
            .context("deleting the Deployment")?;
        wait(&deploy_pods.rx, limit, "the Deployment's pods to be gone", |p| {
            p.is_empty()
        })
        .await?;
        samples.teardown.push(started.elapsed());
        wait(&progress.rx, limit, "the Deployment to be gone", Option::is_none).await?;
        replica_sets_gone(&node.client, limit).await?;
    }
    Ok(samples)
}

/// The longest any one wait of a round may take with `n` pods.
fn limit(n: usize) -> Duration {
    Duration::from_secs(120 + 2 * u64::try_from(n).unwrap_or(u64::MAX / 4))
}

/// `n` as a replica count.
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The pod spec both kinds of pods share; `env` marks a template revision.
fn pod_spec(env: Option<usize>) -> Value {
    let mut container = json!({"name": "main", "image": "host", "command": ["sleep", "3600"]});
    if let Some(round) = env {
        container["env"] = json!([{"name": "BENCH_ROLLOUT", "value": round.to_string()}]);
    }
    json!({"terminationGracePeriodSeconds": 0, "containers": [container]})
}

fn deployment(n: usize) -> Result<Deployment> {
    let value = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": "default"},
        "spec": {"replicas": n, "selector": {"matchLabels": {"app": DEPLOY_APP}},
            "template": {"metadata": {"labels": {"app": DEPLOY_APP}}, "spec": pod_spec(None)}}});
    serde_json::from_value(value).context("building the Deployment")
}

fn floor_pod(name: &str, node: &str) -> Result<Pod> {
    let mut spec = pod_spec(None);
    spec["nodeName"] = json!(node);
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": FLOOR_APP}},
        "spec": spec}))
    .context("building a floor pod")
}

/// The floor: `n` pods created at once on `node` → all Running and Ready, then all deleted →
/// all gone from the API.
async fn floor_round(
    pods: &Api<Pod>,
    node: &str,
    n: usize,
    seen: &watch::Receiver<Pods>,
    limit: Duration,
) -> Result<(Duration, Duration)> {
    let objects = (0..n)
        .map(|i| floor_pod(&format!("floor-{i}"), node))
        .collect::<Result<Vec<_>>>()?;
    let params = PostParams::default();
    let started = Instant::now();
    try_join_all(objects.iter().map(|p| pods.create(&params, p)))
        .await
        .context("creating the floor pods")?;
    wait(seen, limit, "every floor pod to be Ready", |p| {
        p.len() == n && p.values().all(|s| s.ready)
    })
    .await?;
    let up = started.elapsed();
    let started = Instant::now();
    try_join_all((0..n).map(|i| {
        let name = format!("floor-{i}");
        async move { pods.delete(&name, &DeleteParams::default()).await }
    }))
    .await
    .context("deleting the floor pods")?;
    wait(seen, limit, "every floor pod to be gone", BTreeMap::is_empty).await?;
    Ok((up, started.elapsed()))
}

/// Changes the template and waits for the rollout: returns when `kubectl rollout status` would
/// have said done and when, besides, every old pod was gone.
async fn rollout(
    deployments: &Api<Deployment>,
    n: usize,
    round: usize,
    pods: &watch::Receiver<Pods>,
    progress: &watch::Receiver<Option<Progress>>,
    limit: Duration,
) -> Result<(Duration, Duration)> {
    let old: BTreeSet<String> = pods.borrow().keys().cloned().collect();
    let patch = json!({"spec": {"template": {"spec": pod_spec(Some(round))}}});
    let started = Instant::now();
    let changed = deployments
        .patch(NAME, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .context("changing the Deployment's template")?;
    let generation = changed.meta().generation.unwrap_or_default();
    let n = count(n);
    wait(progress, limit, "the rollout to be done", |p| {
        p.is_some_and(|p| {
            p.generation >= generation
                && p.observed >= p.generation
                && p.updated == n
                && p.replicas == n
                && p.available == n
        })
    })
    .await?;
    let status = started.elapsed();
    wait(pods, limit, "every old pod to be gone", |p| {
        p.keys().all(|name| !old.contains(name))
    })
    .await?;
    Ok((status, started.elapsed()))
}

/// Keeps in `peak` the most pods not being deleted that `rx` shows at once, until aborted.
fn track_peak(mut rx: watch::Receiver<Pods>, peak: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let active = rx.borrow_and_update().values().filter(|p| !p.terminating).count();
            peak.fetch_max(active, Ordering::Relaxed);
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
}

/// How many times the scheduler has recorded `FailedScheduling` in `default` so far (events
/// and their repeats).
async fn failed_scheduling(events: &Api<Event>) -> Result<usize> {
    let list = events
        .list(&ListParams::default())
        .await
        .context("listing the events")?;
    let count = list
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
        .map(|e| {
            let repeats = e.series.as_ref().map_or(1, |s| s.count);
            usize::try_from(repeats).unwrap_or(1)
        })
        .sum();
    Ok(count)
}

/// Waits until no ReplicaSet is left in `default` (the garbage collector's part of a delete).
async fn replica_sets_gone(client: &kube::Client, limit: Duration) -> Result<()> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = api.list(&ListParams::default()).await?.items.len();
        if left == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{left} ReplicaSets were left {limit:?} after their Deployment was deleted");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `check` holds for what `rx` shows, at most `limit`.
async fn wait<T: Clone + std::fmt::Debug>(
    rx: &watch::Receiver<T>,
    limit: Duration,
    what: &str,
    check: impl Fn(&T) -> bool,
) -> Result<()> {
    let mut rx = rx.clone();
    let outcome = tokio::time::timeout(limit, rx.wait_for(|v| check(v))).await;
    match outcome {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => bail!("the watch ended while waiting for {what}"),
        Err(_) => bail!("timed out after {limit:?} waiting for {what}"),
    }
}

/// A watch followed in the background until dropped, publishing what it shows.
struct Followed<T> {
    rx: watch::Receiver<T>,
    task: tokio::task::JoinHandle<()>,
}

impl<T> Drop for Followed<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Follows the pods labelled `app=<app>` in `default`; returns once the first list is in.
async fn follow_pods(api: Api<Pod>, app: &str) -> Result<Followed<Pods>> {
    let config = watcher::Config::default().labels(&format!("app={app}"));
    follow(api, config, BTreeMap::new(), |pods, event| match event {
        Change::Apply(pod) | Change::InitApply(pod) => {
            if let Some(name) = pod.metadata.name.clone() {
                let terminating = pod.metadata.deletion_timestamp.is_some();
                pods.insert(
                    name,
                    PodState {
                        ready: ready(&pod),
                        terminating,
                    },
                );
            }
        }
        Change::Delete(pod) => {
            if let Some(name) = &pod.metadata.name {
                pods.remove(name);
            }
        }
        Change::Init => pods.clear(),
    })
    .await
}

/// Follows the Deployment [`NAME`] in `default`; returns once the first list is in.
async fn follow_deployment(api: Api<Deployment>) -> Result<Followed<Option<Progress>>> {
    follow(
        api,
        watcher::Config::default(),
        None,
        |state, event| match event {
            Change::Apply(d) | Change::InitApply(d) if d.metadata.name.as_deref() == Some(NAME) => {
                *state = Some(progress(&d));
            }
            Change::Delete(d) if d.metadata.name.as_deref() == Some(NAME) => *state = None,
            Change::Init => *state = None,
            Change::Apply(_) | Change::InitApply(_) | Change::Delete(_) => {}
        },
    )
    .await
}

/// A watch event, the relist's `InitDone` folded into publishing.
enum Change<K> {
    Init,
    InitApply(K),
    Apply(K),
    Delete(K),
}

/// Runs a watcher on `api`, folding its events into `state` with `apply` and publishing the
/// state after every event but those of a relist in progress. Returns once the first list has
/// been published.
async fn follow<K, T>(
    api: Api<K>,
    config: watcher::Config,
    state: T,
    apply: impl Fn(&mut T, Change<K>) + Send + 'static,
) -> Result<Followed<T>>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    T: Clone + Send + Sync + 'static,
{
    let (tx, mut rx) = watch::channel(state.clone());
    let task = tokio::spawn(async move {
        let mut state = state;
        let mut stream = std::pin::pin!(watcher(api, config));
        while let Some(event) = stream.next().await {
            let publish = match event {
                Ok(watcher::Event::Init) => {
                    apply(&mut state, Change::Init);
                    false
                }
                Ok(watcher::Event::InitApply(o)) => {
                    apply(&mut state, Change::InitApply(o));
                    false
                }
                Ok(watcher::Event::InitDone) => true,
                Ok(watcher::Event::Apply(o)) => {
                    apply(&mut state, Change::Apply(o));
                    true
                }
                Ok(watcher::Event::Delete(o)) => {
                    apply(&mut state, Change::Delete(o));
                    true
                }
                Err(_) => {
                    // A failed watch relists; a short pause keeps it from spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    false
                }
            };
            if publish && tx.send(state.clone()).is_err() {
                return;
            }
        }
    });
    let followed = Followed { rx: rx.clone(), task };
    // The first publication is the end of the first list.
    tokio::time::timeout(Duration::from_secs(30), rx.changed())
        .await
        .context("the first list of a watch took over 30 s")?
        .context("a watch ended before its first list")?;
    Ok(followed)
}

/// Phase Running and condition Ready=True.
fn ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else { return false };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn progress(d: &Deployment) -> Progress {
    let status = d.status.clone().unwrap_or_default();
    Progress {
        generation: d.metadata.generation.unwrap_or_default(),
        observed: status.observed_generation.unwrap_or_default(),
        replicas: status.replicas.unwrap_or_default(),
        updated: status.updated_replicas.unwrap_or_default(),
        available: status.available_replicas.unwrap_or_default(),
    }
}

/// The report's rows for `measure`.
fn rows(n: usize, measure: Measure, s: &Samples) -> Result<Vec<Row>> {
    let pct = |v: &[Duration]| Percentiles::of_durations_ms(v).context("no samples");
    let floor_up = Floor {
        name: format!("{n} bare pods (nodeName set) created → all Running+Ready"),
        value: pct(&s.floor_up)?,
    };
    Ok(match measure {
        Measure::Deploy => vec![
            Row {
                bench: "deploy-100".into(),
                metric: format!("Deployment of {n} created→{n} available"),
                unit: "ms",
                value: pct(&s.deploy)?,
                floor: Some(floor_up),
                // The controllers add a ReplicaSet, slow-start batches (1, 2, 4, … pods: about
                // log2(n) create round trips in sequence where the floor does one burst), the
                // scheduler's bindings, and two status hops (pod → ReplicaSet → Deployment);
                // each is a watch event and a write on the same machine, so a few times the
                // bare pods' start is what they should cost, not an order of magnitude.
                goal: Goal::Ratio {
                    p50: Some(3.0),
                    p99: None,
                },
                note: Some(
                    "through a whole node's loopback API; the Deployment's pods are also scheduled, \
                     the floor's are not"
                        .into(),
                ),
            },
            Row {
                bench: "deploy-100".into(),
                metric: format!("Deployment of {n} deleted→pods gone"),
                unit: "ms",
                value: pct(&s.teardown)?,
                floor: Some(Floor {
                    name: format!("{n} bare pods deleted → all gone"),
                    value: pct(&s.floor_down)?,
                }),
                goal: Goal::None,
                note: Some("the garbage collector deletes the ReplicaSet, then its pods".into()),
            },
        ],
        Measure::Rollout => {
            let floor: Vec<Duration> = s
                .floor_up
                .iter()
                .zip(&s.floor_down)
                .map(|(u, d)| *u + *d)
                .collect();
            let status = pct(&s.rollout_status)?;
            vec![Row {
                bench: "rollout-100".into(),
                metric: format!("rolling update of {n}→done, old pods gone"),
                unit: "ms",
                value: pct(&s.rollout)?,
                floor: Some(Floor {
                    name: format!("{n} bare pods started + deleted, one after the other"),
                    value: pct(&floor)?,
                }),
                // 25% surge and 25% unavailable: about four waves of a quarter each, every one
                // waiting for the previous one's pods to be Ready (a status round trip through
                // ReplicaSet and Deployment) before the next starts, where the floor does one
                // burst of starts and one of deletions; 3x is what the waves and hops should
                // cost at most.
                goal: Goal::Ratio {
                    p50: Some(3.0),
                    p99: None,
                },
                note: Some(format!(
                    "kubectl rollout status done at p50 {:.0} ms; maxSurge and maxUnavailable 25% \
                     allow {} pods, the watch saw at least {} not being deleted at once; \
                     FailedScheduling events per rollout: {}",
                    status.p50,
                    n + n.div_ceil(4),
                    s.rollout_peak,
                    s.failed_scheduling
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployment_and_floor_pods_share_their_pod_spec() {
        let d = deployment(100).unwrap();
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(100));
        let template = spec.template.spec.as_ref().unwrap();
        let floor = floor_pod("floor-0", "bench-node").unwrap();
        let floor_spec = floor.spec.as_ref().unwrap();
        assert_eq!(floor_spec.node_name.as_deref(), Some("bench-node"));
        assert_eq!(template.containers, floor_spec.containers);
        assert_eq!(template.termination_grace_period_seconds, Some(0));
        assert!(template.containers.iter().all(|c| c.readiness_probe.is_none()));
    }
}
