//! The CronJob controller (`controller-semantics.md` section 7): carries out
//! `podvisor_workloads::cron_job::plan` — the Job due now, Jobs to replace or trim from the
//! history, the status — and syncs again at the next schedule time.

use std::sync::Arc;

use crate::events::Recorder;
use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{DeleteParams, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use podvisor_core::k8s_openapi::jiff::Timestamp;
use podvisor_workloads::cron_job as rules;
use podvisor_workloads::owner;

use super::{Backoff, code, key, record, recorder};

struct Ctx {
    client: Client,
    backoff: Backoff,
    recorder: Recorder,
}

/// Runs the CronJob controller until cancelled.
pub(crate) async fn run(client: Client) {
    let ctx = Arc::new(Ctx {
        recorder: recorder(&client, "cronjob-controller"),
        client: client.clone(),
        backoff: Backoff::default(),
    });
    Controller::new(Api::<CronJob>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Job>::all(client), watcher::Config::default())
        .run(
            reconcile,
            |c, _e, ctx: Arc<Ctx>| ctx.backoff.failed(&key(c.as_ref())),
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let k = key(cj.as_ref());
    let ns = cj.namespace().unwrap_or_default();
    let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(cj) = api.get_opt(&cj.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let uid = cj.uid().unwrap_or_default();
    let jobs: Vec<Job> = jobs_api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|j| owner::is_controlled_by(&j.metadata, &uid))
        .collect();
    let plan = rules::plan(&cj, &jobs, Timestamp::now());
    let reference = cj.object_ref(&());
    let mut status = plan.status.clone();
    if let Some(job) = &plan.create {
        match jobs_api.create(&PostParams::default(), job).await {
            Ok(created) => status = plan.status_with_created(&created),
            Err(e) => {
                record(
                    &ctx.recorder,
                    &reference,
                    &rules::failed_create_event(&e.to_string()),
                    "Create",
                )
                .await;
                return Err(e);
            }
        }
    }
    for d in &plan.delete {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(d.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match jobs_api.delete(&d.name, &params).await {
            Ok(_) => {}
            Err(e) if code(&e) == Some(404) => {}
            Err(e) => {
                record(
                    &ctx.recorder,
                    &reference,
                    &rules::failed_delete_event(&e.to_string()),
                    "Delete",
                )
                .await;
                return Err(e);
            }
        }
    }
    for e in &plan.events {
        record(&ctx.recorder, &reference, e, "Sync").await;
    }
    if let Some(st) = &status {
        match api
            .patch_status(
                &cj.name_any(),
                &PatchParams::default(),
                &super::status_patch(cj.status.as_ref(), st),
            )
            .await
        {
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
