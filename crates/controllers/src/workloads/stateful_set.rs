//! The StatefulSet controller (`controller-semantics.md` section 4): claims pods and
//! ControllerRevisions, carries out `podvisor_workloads::stateful_set::plan` in upstream's order
//! (revision, pods, status, history) and records its events.

use std::sync::Arc;

use crate::events::Recorder;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use podvisor_core::k8s_openapi::jiff::Timestamp;
use podvisor_workloads::owner::Owner;
use podvisor_workloads::stateful_set::{self as rules, Verb};
use serde_json::json;

use super::{Backoff, Caches, Expectations, code, key, record, recorder};
use crate::watch::Shared;

struct Ctx {
    client: Client,
    pods: Shared<Pod>,
    expectations: Expectations,
    backoff: Backoff,
    recorder: Recorder,
}

/// Runs the StatefulSet controller until cancelled.
pub(crate) async fn run(client: Client, caches: Caches) {
    let ctx = Arc::new(Ctx {
        recorder: recorder(&client, "statefulset-controller"),
        client: client.clone(),
        pods: caches.pods.clone(),
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_shared_stream(caches.pods.objects())
    .owns(Api::<ControllerRevision>::all(client), watcher::Config::default())
    .run(
        reconcile,
        |s, _e, ctx: Arc<Ctx>| ctx.backoff.failed(&key(s.as_ref())),
        ctx,
    )
    .for_each(|_| async {})
    .await;
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let k = key(set.as_ref());
    let ns = set.namespace().unwrap_or_default();
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let revs_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(set) = api.get_opt(&set.name_any()).await? else {
        ctx.expectations.forget(&k);
        return Ok(Action::await_change());
    };
    let candidates = super::namespace_pods(&ctx.pods, &ns);
    if !ctx.expectations.satisfied(&k, &candidates) {
        return Ok(Action::requeue(std::time::Duration::from_secs(1)));
    }
    let selector = set.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    let me = Owner {
        api_version: "apps/v1",
        kind: "StatefulSet",
        meta: &set.metadata,
    };
    let (pods, revisions) =
        super::claim_pods_and_revisions(&pods_api, &revs_api, me, &selector, &candidates).await?;
    let plan = rules::plan(&set, &pods, &revisions, Timestamp::now());
    let reference = set.object_ref(&());
    if let Some(rev) = &plan.create_revision {
        let collisions = set.status.as_ref().and_then(|s| s.collision_count);
        if !super::create_revision(&revs_api, rev, &api, &set.name_any(), collisions).await? {
            return Ok(Action::requeue(std::time::Duration::ZERO));
        }
    }
    if let Some(bump) = &plan.bump_revision {
        let patch = Patch::Merge(json!({"revision": bump.revision}));
        revs_api
            .patch(&bump.name, &PatchParams::default(), &patch)
            .await?;
    }
    let set_name = set.name_any();
    let mut events = plan.events.iter();
    let mut created = Vec::new();
    for pod in &plan.create {
        let event = events.next();
        match pods_api.create(&PostParams::default(), pod).await {
            Ok(p) => {
                created.push(p.name_any());
                if let Some(e) = event {
                    record(&ctx.recorder, &reference, e, "Create").await;
                }
            }
            Err(e) => {
                let failed = rules::pod_event(Verb::Create, &pod.name_any(), &set_name, Some(&e.to_string()));
                record(&ctx.recorder, &reference, &failed, "Create").await;
                ctx.expectations.expect(&k, created, Vec::new());
                return Err(e);
            }
        }
    }
    for u in &plan.update {
        let event = events.next();
        let patch = Patch::Merge(json!({"metadata": {"labels": u.labels}}));
        match pods_api.patch(&u.name, &PatchParams::default(), &patch).await {
            Ok(_) => {
                if let Some(e) = event {
                    record(&ctx.recorder, &reference, e, "Update").await;
                }
            }
            Err(e) => {
                let failed = rules::pod_event(Verb::Update, &u.name, &set_name, Some(&e.to_string()));
                record(&ctx.recorder, &reference, &failed, "Update").await;
                return Err(e);
            }
        }
    }
    let mut deleted = Vec::new();
    for d in &plan.delete {
        let event = events.next();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(d.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods_api.delete(&d.name, &params).await {
            Ok(_) => {
                deleted.push(d.uid.clone());
                if let Some(e) = event {
                    record(&ctx.recorder, &reference, e, "Delete").await;
                }
            }
            Err(e) if code(&e) == Some(404) => {}
            Err(e) => {
                let failed = rules::pod_event(Verb::Delete, &d.name, &set_name, Some(&e.to_string()));
                record(&ctx.recorder, &reference, &failed, "Delete").await;
                return Err(e);
            }
        }
    }
    ctx.expectations.expect(&k, created, deleted);
    for e in events {
        record(&ctx.recorder, &reference, e, "Sync").await;
    }
    if let Some(st) = &plan.status {
        match api
            .patch_status(
                &set_name,
                &PatchParams::default(),
                &super::status_patch(set.status.as_ref(), st),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if code(&e) == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    for name in &plan.delete_revisions {
        match revs_api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if code(&e) == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    ctx.backoff.succeeded(&k);
    Ok(plan
        .requeue_after
        .map_or_else(Action::await_change, Action::requeue))
}
