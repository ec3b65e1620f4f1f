//! The Deployment controller (`controller-semantics.md` section 3): claims the namespace's
//! ReplicaSets, carries out what `podvisor_workloads::deployment::plan` decides (create the new
//! ReplicaSet, scale, clean up history) and writes the status, with the `ScalingReplicaSet`
//! events.

use std::sync::Arc;

use crate::events::Recorder;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use podvisor_core::k8s_openapi::jiff::Timestamp;
use podvisor_workloads::deployment::{self as rules};
use podvisor_workloads::event::EventType as PlanEventType;
use podvisor_workloads::owner::{self, Owner};
use serde_json::json;

use super::{Backoff, claim_all, key};
use crate::events::publish;

struct Ctx {
    client: Client,
    backoff: Backoff,
    recorder: Recorder,
}

/// Runs the Deployment controller until cancelled.
pub(crate) async fn run(client: Client) {
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "deployment-controller".into(),
                instance: None,
            },
        ),
        client: client.clone(),
        backoff: Backoff::default(),
    });
    Controller::new(Api::<Deployment>::all(client.clone()), watcher::Config::default())
        .owns(Api::<ReplicaSet>::all(client), watcher::Config::default())
        .run(
            reconcile,
            |d, _e, ctx: Arc<Ctx>| ctx.backoff.failed(&key(d.as_ref())),
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let k = key(d.as_ref());
    let ns = d.namespace().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(d) = api.get_opt(&d.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    let me = Owner {
        api_version: rules::API_VERSION,
        kind: rules::KIND,
        meta: &d.metadata,
    };
    // Read the ReplicaSets as stored: the plan compares their sizes and revisions.
    let stored: Vec<Arc<ReplicaSet>> = rs_api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .map(Arc::new)
        .collect();
    let owned = if podvisor_workloads::selector::is_empty(&selector) {
        Vec::new()
    } else {
        claim_all(&rs_api, me, &selector, &stored).await?
    };
    let rss: Vec<ReplicaSet> = owned.iter().map(|r| (**r).clone()).collect();
    let uids: Vec<String> = rss.iter().filter_map(|r| r.uid()).collect();
    // Only Recreate looks at the pods (whether an old ReplicaSet's still run, rule 3.12).
    let recreate = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate");
    let pods: Vec<Arc<Pod>> = if recreate {
        super::stored_namespace_pods(&ctx.client, &ns)
            .await?
            .into_iter()
            .filter(|p| owner::controller_of(&p.metadata).is_some_and(|o| uids.contains(&o.uid)))
            .collect()
    } else {
        Vec::new()
    };
    let pod_refs: Vec<&Pod> = pods.iter().map(AsRef::as_ref).collect();
    let plan = rules::plan(&d, &rss, &pod_refs, Timestamp::now());
    let reference = d.object_ref(&());
    if let Some(rs) = &plan.create {
        match rs_api.create(&PostParams::default(), rs).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // A ReplicaSet of that name that is not ours: a hash collision (rule 3.5).
                let collisions = d.status.as_ref().and_then(|s| s.collision_count);
                super::bump_collision_count(&api, &d.name_any(), collisions).await?;
                return Ok(Action::requeue(std::time::Duration::ZERO));
            }
            Err(e) => {
                let name = rs.name_any();
                publish(
                    &ctx.recorder,
                    &reference,
                    EventType::Warning,
                    "ReplicaSetCreateError",
                    "Create",
                    format!("Failed to create new replica set \"{name}\": {e}"),
                )
                .await;
                return Err(e);
            }
        }
    }
    for rs in &plan.update {
        rs_api.replace(&rs.name_any(), &PostParams::default(), rs).await?;
    }
    for (name, uid) in &plan.delete {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match rs_api.delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => {}
            Err(e) => return Err(e),
        }
    }
    for e in &plan.events {
        let type_ = match e.type_ {
            PlanEventType::Normal => EventType::Normal,
            PlanEventType::Warning => EventType::Warning,
        };
        publish(
            &ctx.recorder,
            &reference,
            type_,
            &e.reason,
            "Scale",
            e.message.clone(),
        )
        .await;
    }
    if plan.status.is_some() || plan.annotations.is_some() {
        let mut body = json!({});
        if let Some(st) = &plan.status
            && let Patch::Merge(patch) = super::status_patch(d.status.as_ref(), st)
        {
            body = patch;
        }
        if let Some(a) = &plan.annotations {
            body["metadata"] = json!({"annotations": a});
        }
        match api
            .patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(body))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if matches!(e.code, 404) => {}
            Err(e) => return Err(e),
        }
    }
    ctx.backoff.succeeded(&k);
    Ok(plan
        .requeue_after
        .map_or_else(Action::await_change, Action::requeue))
}
