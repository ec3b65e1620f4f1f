//! The DaemonSet controller (`controller-semantics.md` section 5): follows Nodes as well as
//! its pods and ControllerRevisions, carries out `podvisor_workloads::daemon_set::plan` in
//! upstream's order (revision, history, pods, status) and keeps each DaemonSet's failed-pod
//! back-off between syncs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::events::Recorder;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use podvisor_core::k8s_openapi::jiff::Timestamp;
use podvisor_workloads::daemon_set::{self as rules, FailedPodBackoff};
use podvisor_workloads::owner::Owner;
use serde_json::json;

use super::{Backoff, Caches, Expectations, code, key, record, recorder};
use crate::watch::{Shared, cache};

struct Ctx {
    client: Client,
    pods: Shared<Pod>,
    nodes: Store<Node>,
    expectations: Expectations,
    backoff: Backoff,
    failed_pods: Mutex<HashMap<String, FailedPodBackoff>>,
    recorder: Recorder,
}

/// Runs the DaemonSet controller until cancelled.
pub(crate) async fn run(client: Client, caches: Caches) {
    let (nodes, nodes_task) = cache(Api::<Node>::all(client.clone()), watcher::Config::default());
    let ctx = Arc::new(Ctx {
        recorder: recorder(&client, "daemonset-controller"),
        client: client.clone(),
        pods: caches.pods.clone(),
        nodes,
        expectations: Expectations::default(),
        backoff: Backoff::default(),
        failed_pods: Mutex::new(HashMap::new()),
    });
    let controller = Controller::new(Api::<DaemonSet>::all(client.clone()), watcher::Config::default());
    let sets = controller.store();
    let controller = controller
        .owns_shared_stream(caches.pods.objects())
        .owns(
            Api::<ControllerRevision>::all(client.clone()),
            watcher::Config::default(),
        )
        // Any node change may change where daemon pods belong.
        .watches(
            Api::<Node>::all(client),
            watcher::Config::default(),
            move |_node| {
                sets.state()
                    .into_iter()
                    .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .run(
            reconcile,
            |d, _e, ctx: Arc<Ctx>| ctx.backoff.failed(&key(d.as_ref())),
            ctx,
        )
        .for_each(|_| async {});
    tokio::join!(nodes_task, controller);
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let k = key(ds.as_ref());
    let ns = ds.namespace().unwrap_or_default();
    let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let revs_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(ds) = api.get_opt(&ds.name_any()).await? else {
        ctx.expectations.forget(&k);
        return Ok(Action::await_change());
    };
    let uid = ds.uid().unwrap_or_default();
    let candidates = super::namespace_pods(&ctx.pods, &ns);
    let satisfied = ctx.expectations.satisfied(&k, &candidates);
    let selector = ds.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    let me = Owner {
        api_version: "apps/v1",
        kind: "DaemonSet",
        meta: &ds.metadata,
    };
    let (pods, revisions) =
        super::claim_pods_and_revisions(&pods_api, &revs_api, me, &selector, &candidates).await?;
    let nodes: Vec<Node> = ctx.nodes.state().iter().map(|n| (**n).clone()).collect();
    let backoff = ctx
        .failed_pods
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&uid)
        .cloned()
        .unwrap_or_default();
    let plan = rules::plan(&ds, &nodes, &pods, &revisions, &backoff, Timestamp::now());
    ctx.failed_pods
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(uid, plan.backoff.clone());
    let reference = ds.object_ref(&());
    let status = if satisfied {
        if !apply(&ctx, &ds, &k, &plan, &pods_api, &revs_api, &api).await? {
            return Ok(Action::requeue(std::time::Duration::ZERO));
        }
        plan.status.as_ref()
    } else {
        plan.status_unobserved.as_ref()
    };
    for e in &plan.events {
        record(&ctx.recorder, &reference, e, "Sync").await;
    }
    if let Some(st) = status {
        match api
            .patch_status(
                &ds.name_any(),
                &PatchParams::default(),
                &super::status_patch(ds.status.as_ref(), st),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if code(&e) == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    ctx.backoff.succeeded(&k);
    if !satisfied {
        // Look again soon: the writes this waits for may not trigger another sync.
        return Ok(Action::requeue(std::time::Duration::from_millis(500)));
    }
    Ok(plan
        .requeue_after
        .map_or_else(Action::await_change, Action::requeue))
}

/// Revision, history, then pods (rule 5.10's order); `false` when the revision's name was
/// taken and the sync must start again with a new hash.
async fn apply(
    ctx: &Ctx,
    ds: &DaemonSet,
    k: &str,
    plan: &rules::DaemonSetPlan,
    pods_api: &Api<Pod>,
    revs_api: &Api<ControllerRevision>,
    api: &Api<DaemonSet>,
) -> Result<bool, kube::Error> {
    let reference = ds.object_ref(&());
    if let Some(rev) = &plan.revision {
        let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
        if !super::create_revision(revs_api, rev, api, &ds.name_any(), collisions).await? {
            return Ok(false);
        }
    }
    if let Some(n) = &plan.renumber {
        revs_api
            .patch(
                &n.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"revision": n.revision})),
            )
            .await?;
    }
    for r in &plan.relabel {
        let patch = Patch::Merge(json!({"metadata": {"labels": {rules::history::REVISION_HASH: r.hash}}}));
        match pods_api.patch(&r.name, &PatchParams::default(), &patch).await {
            Ok(_) => {}
            Err(e) if code(&e) == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    for name in &plan.revisions_delete {
        match revs_api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if code(&e) == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    let mut created = Vec::new();
    let mut failure = None;
    for pod in &plan.create {
        match pods_api.create(&PostParams::default(), pod).await {
            Ok(p) => {
                record(
                    &ctx.recorder,
                    &reference,
                    &rules::successful_create_event(&p.name_any()),
                    "Create",
                )
                .await;
                created.push(p.name_any());
            }
            Err(e) => {
                if !super::namespace_terminating(&e) {
                    let failed = podvisor_workloads::event::Event::warning(
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    );
                    record(&ctx.recorder, &reference, &failed, "Create").await;
                }
                failure = Some(e);
                break;
            }
        }
    }
    let mut deleted = Vec::new();
    for d in &plan.delete {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(d.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods_api.delete(&d.name, &params).await {
            Ok(_) => deleted.push(d.uid.clone()),
            Err(e) if code(&e) == Some(404) => {}
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    ctx.expectations.expect(k, created, deleted);
    failure.map_or(Ok(true), Err)
}
