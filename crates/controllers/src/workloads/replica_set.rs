//! The ReplicaSet controller (`controller-semantics.md` section 2): claims the namespace's
//! pods, creates or deletes pods as `podvisor_workloads::replica_set` decides, and writes the
//! status.

use std::sync::Arc;

use crate::events::Recorder;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use podvisor_core::k8s_openapi::jiff::Timestamp;
use podvisor_workloads::owner::{self, Owner};
use podvisor_workloads::replica_set::{self as rules, ManageFailure};

use super::{Backoff, Caches, Expectations, claim_all, in_namespace, key, namespace_terminating, slow_start};
use crate::events::publish;

struct Ctx {
    client: Client,
    caches: Caches,
    expectations: Expectations,
    backoff: Backoff,
    recorder: Recorder,
}

/// Runs the ReplicaSet controller until cancelled.
pub(crate) async fn run(client: Client, caches: Caches) {
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "replicaset-controller".into(),
                instance: None,
            },
        ),
        client: client.clone(),
        caches,
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    Controller::new(Api::<ReplicaSet>::all(client), watcher::Config::default())
        .owns_shared_stream(ctx.caches.pods.objects())
        .run(
            reconcile,
            |rs, _e, ctx: Arc<Ctx>| ctx.backoff.failed(&key(rs.as_ref())),
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let k = key(rs.as_ref());
    let ns = rs.namespace().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    // The cache may lag: read the ReplicaSet as stored.
    let Some(rs) = rs_api.get_opt(&rs.name_any()).await? else {
        ctx.expectations.forget(&k);
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    let candidates = super::namespace_pods(&ctx.caches.pods, &ns);
    let satisfied = ctx.expectations.satisfied(&k, &candidates);
    let active_candidates: Vec<Arc<Pod>> = candidates
        .iter()
        .filter(|p| {
            podvisor_workloads::pods::is_active(p)
                || owner::is_controlled_by(&p.metadata, rs.uid().as_deref().unwrap_or(""))
        })
        .cloned()
        .collect();
    let selector = rs.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    let me = Owner {
        api_version: rules::API_VERSION,
        kind: rules::KIND,
        meta: &rs.metadata,
    };
    let owned = claim_all(&pods_api, me, &selector, &active_candidates).await?;
    let owned_refs: Vec<&Pod> = owned.iter().map(AsRef::as_ref).collect();
    let mut failure = None;
    if satisfied && rs.metadata.deletion_timestamp.is_none() {
        // Pods of every ReplicaSet of the same Deployment rank the victims (rule 2.4).
        let siblings: Vec<String> = owner::controller_of(&rs.metadata)
            .map(|d| {
                in_namespace(&ctx.caches.rss, &ns)
                    .iter()
                    .filter(|r| owner::controller_of(&r.metadata).is_some_and(|o| o.uid == d.uid))
                    .filter_map(|r| r.uid())
                    .collect()
            })
            .unwrap_or_default();
        let related: Vec<&Pod> = candidates
            .iter()
            .map(AsRef::as_ref)
            .filter(|p| owner::controller_of(&p.metadata).is_some_and(|o| siblings.contains(&o.uid)))
            .collect();
        let plan = rules::manage(&rs, &owned_refs, &related, now);
        failure = carry_out(&ctx, &rs, &k, &pods_api, plan).await;
    }
    if let Some(status) = rules::status(&rs, &owned_refs, now, failure.as_ref()) {
        let requeue = rules::requeue_after(&rs, &status);
        let patch = super::status_patch(rs.status.as_ref(), &status);
        match rs_api
            .patch_status(&rs.name_any(), &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if matches!(e.code, 404) => {}
            Err(e) => return Err(e),
        }
        ctx.backoff.succeeded(&k);
        if let Some(after) = requeue {
            return Ok(Action::requeue(after));
        }
    }
    ctx.backoff.succeeded(&k);
    if failure.is_some() {
        return Ok(ctx.backoff.failed(&k));
    }
    if !satisfied {
        // Look again soon: the writes this waits for may not trigger another sync.
        return Ok(Action::requeue(std::time::Duration::from_millis(500)));
    }
    Ok(Action::await_change())
}

/// Creates and deletes what `plan` says, with the events of rule 1.7; the first failure.
/// Deletions go out together (no slow start, rule 1.5); the events are recorded in the
/// background, in order, as client-go's broadcaster does, so the status write does not wait
/// for them.
async fn carry_out(
    ctx: &Arc<Ctx>,
    rs: &ReplicaSet,
    k: &str,
    pods_api: &Api<Pod>,
    plan: rules::Manage<'_>,
) -> Option<ManageFailure> {
    let mut events: Vec<(EventType, &'static str, &'static str, String)> = Vec::new();
    let mut failure = None;
    if plan.create > 0 {
        let (created, error) = slow_start(pods_api, plan.create, || rules::new_pod(rs)).await;
        ctx.expectations
            .expect(k, created.iter().map(ResourceExt::name_any).collect(), Vec::new());
        for p in &created {
            events.push((
                EventType::Normal,
                "SuccessfulCreate",
                "Create",
                format!("Created pod: {}", p.name_any()),
            ));
        }
        if let Some(e) = error {
            if !namespace_terminating(&e) {
                events.push((
                    EventType::Warning,
                    "FailedCreate",
                    "Create",
                    format!("Error creating: {e}"),
                ));
            }
            failure = Some(ManageFailure {
                reason: "FailedCreate",
                message: e.to_string(),
            });
        }
    }
    if !plan.delete.is_empty() {
        let uids: Vec<String> = plan.delete.iter().filter_map(|p| p.uid()).collect();
        ctx.expectations.expect(k, Vec::new(), uids);
        let deletes = plan.delete.iter().map(|p| {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: p.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            async move { (p.name_any(), pods_api.delete(&p.name_any(), &params).await) }
        });
        for (name, result) in futures_util::future::join_all(deletes).await {
            match result {
                Ok(_) => events.push((
                    EventType::Normal,
                    "SuccessfulDelete",
                    "Delete",
                    format!("Deleted pod: {name}"),
                )),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    events.push((
                        EventType::Warning,
                        "FailedDelete",
                        "Delete",
                        format!("Error deleting: {e}"),
                    ));
                    failure = failure.or(Some(ManageFailure {
                        reason: "FailedDelete",
                        message: e.to_string(),
                    }));
                }
            }
        }
    }
    let reference = rs.object_ref(&());
    let ctx = ctx.clone();
    tokio::spawn(async move {
        for (type_, reason, action, note) in events {
            publish(&ctx.recorder, &reference, type_, reason, action, note).await;
        }
    });
    failure
}
