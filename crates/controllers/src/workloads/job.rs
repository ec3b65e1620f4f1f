//! The Job controller (`controller-semantics.md` section 6) and the TTL-after-finished
//! controller: carries out `podvisor_workloads::job::plan_with_backoff` in the order its
//! finalizer tracking needs (status first, then finalizers, deletions, creations), keeps each
//! Job's back-off record between syncs, deletes finished Jobs whose TTL passed, and takes the
//! tracking finalizer off pods whose Job is gone (the orphan-pod worker).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use podvisor_core::k8s_openapi::jiff::Timestamp;
use podvisor_workloads::job::{self as rules, Backoff as JobBackoff, Expiry};
use podvisor_workloads::owner::{self, Owner};
use serde_json::json;

use super::{Backoff, Caches, Expectations, claim_all, code, key, record, recorder, slow_start};
use crate::events::Recorder;
use crate::watch::Shared;

struct Ctx {
    client: Client,
    pods: Shared<Pod>,
    expectations: Expectations,
    backoff: Backoff,
    records: Mutex<HashMap<String, JobBackoff>>,
    recorder: Recorder,
}

/// Runs the Job controller until cancelled.
pub(crate) async fn run(client: Client, caches: Caches) {
    let ctx = Arc::new(Ctx {
        recorder: recorder(&client, rules::CONTROLLER_NAME),
        client: client.clone(),
        pods: caches.pods.clone(),
        expectations: Expectations::default(),
        backoff: Backoff::default(),
        records: Mutex::new(HashMap::new()),
    });
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default());
    let jobs = controller.store();
    let controller = controller
        .owns_shared_stream(caches.pods.objects())
        .run(
            reconcile,
            |j, _e, ctx: Arc<Ctx>| ctx.backoff.failed(&key(j.as_ref())),
            ctx,
        )
        .for_each(|_| async {});
    tokio::join!(controller, orphans(client, caches.pods.store().clone(), jobs));
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let k = key(job.as_ref());
    let ns = job.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(job) = api.get_opt(&job.name_any()).await? else {
        ctx.expectations.forget(&k);
        lock(&ctx.records).remove(&k);
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    if rules::is_finished(&job) {
        lock(&ctx.records).remove(&k);
        return match rules::ttl_expiry(&job, now) {
            Some(Expiry::DeleteNow) => {
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Foreground),
                    preconditions: Some(Preconditions {
                        uid: job.uid(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(&job.name_any(), &params).await {
                    Ok(_) => Ok(Action::await_change()),
                    Err(e) if matches!(code(&e), Some(404 | 409)) => Ok(Action::await_change()),
                    Err(e) => Err(e),
                }
            }
            Some(Expiry::RequeueAfter(after)) => Ok(Action::requeue(after)),
            None => Ok(Action::await_change()),
        };
    }
    let candidates = super::namespace_pods(&ctx.pods, &ns);
    if !ctx.expectations.satisfied(&k, &candidates) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let selector = job
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let me = Owner {
        api_version: rules::API_VERSION,
        kind: rules::KIND,
        meta: &job.metadata,
    };
    let pods: Vec<Pod> = claim_all(&pods_api, me, &selector, &candidates)
        .await?
        .iter()
        .map(|p| (**p).clone())
        .collect();
    let record_before = lock(&ctx.records).get(&k).copied().unwrap_or_default();
    let plan = rules::plan_with_backoff(&job, &pods, now, &record_before);
    let reference = job.object_ref(&());
    // The status first: finished pods are counted before their finalizers go.
    if let Some(st) = &plan.status {
        api.patch_status(
            &job.name_any(),
            &PatchParams::default(),
            &super::status_patch(job.status.as_ref(), st),
        )
        .await?;
    }
    lock(&ctx.records).insert(k.clone(), plan.backoff);
    // Until the cache shows them without it, the next sync would count them again.
    ctx.expectations.expect_released(
        &k,
        plan.remove_finalizers.iter().map(|p| p.uid.clone()).collect(),
        rules::TRACKING_FINALIZER,
    );
    for p in &plan.remove_finalizers {
        if let Some(pod) = pods.iter().find(|x| x.uid().as_deref() == Some(p.uid.as_str())) {
            remove_tracking_finalizer(&pods_api, pod).await?;
        }
    }
    let mut deleted = Vec::new();
    for p in &plan.delete {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(p.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods_api.delete(&p.name, &params).await {
            Ok(_) => {
                deleted.push(p.uid.clone());
                record(
                    &ctx.recorder,
                    &reference,
                    &rules::deleted_event(&p.name),
                    "Delete",
                )
                .await;
            }
            Err(e) if code(&e) == Some(404) => {}
            Err(e) => {
                let failed =
                    podvisor_workloads::event::Event::warning("FailedDelete", format!("Error deleting: {e}"));
                record(&ctx.recorder, &reference, &failed, "Delete").await;
                ctx.expectations.expect_more(&k, Vec::new(), deleted);
                return Err(e);
            }
        }
    }
    let mut templates = plan.create.iter();
    let (created, error) = slow_start(&pods_api, plan.create.len(), || {
        templates.next().cloned().unwrap_or_default()
    })
    .await;
    for p in &created {
        record(
            &ctx.recorder,
            &reference,
            &rules::created_event(&p.name_any()),
            "Create",
        )
        .await;
    }
    ctx.expectations
        .expect_more(&k, created.iter().map(ResourceExt::name_any).collect(), deleted);
    for e in &plan.events {
        record(&ctx.recorder, &reference, e, "Sync").await;
    }
    if let Some(e) = error {
        if !super::namespace_terminating(&e) {
            let failed =
                podvisor_workloads::event::Event::warning("FailedCreate", format!("Error creating: {e}"));
            record(&ctx.recorder, &reference, &failed, "Create").await;
        }
        return Err(e);
    }
    ctx.backoff.succeeded(&k);
    Ok(plan
        .requeue_after
        .map_or_else(Action::await_change, Action::requeue))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Patches the tracking finalizer off `pod` (preconditioned on its resourceVersion).
async fn remove_tracking_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let rest: Vec<&String> = pod
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != rules::TRACKING_FINALIZER)
        .collect();
    let patch = Patch::Merge(
        json!({"metadata": {"finalizers": rest, "resourceVersion": pod.metadata.resource_version}}),
    );
    match api.patch(&pod.name_any(), &PatchParams::default(), &patch).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(code(&e), Some(404 | 409)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The orphan-pod worker: every 2 s, pods holding the tracking finalizer whose Job is gone (or
/// does not manage them) lose it, so they can go.
async fn orphans(client: Client, pods: Store<Pod>, jobs: Store<Job>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        for pod in pods.state() {
            if !pod.finalizers().iter().any(|f| f == rules::TRACKING_FINALIZER) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            let job = owner::controller_of(&pod.metadata)
                .filter(|r| r.kind == rules::KIND)
                .and_then(|r| {
                    jobs.state().into_iter().find(|j| {
                        j.namespace().as_deref() == Some(ns.as_str())
                            && j.uid().as_deref() == Some(r.uid.as_str())
                    })
                });
            if rules::remove_orphan_finalizer(&pod, job.as_deref()) {
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                if let Err(e) = remove_tracking_finalizer(&api, &pod).await {
                    tracing::debug!(error = %e, pod = %pod.name_any(), "removing an orphan pod's finalizer failed");
                }
            }
        }
    }
}
