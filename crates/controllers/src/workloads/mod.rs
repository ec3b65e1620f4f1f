//! kube-controller-manager's workload controllers as kube-runtime
//! [`Controller`](kube::runtime::Controller)s: each reconciles one owner object as stored (its
//! dependents read when the sync starts), asks `podvisor-workloads` what to do, and carries the
//! plan out through the API (`controller-semantics.md`).
//!
//! - [`replica_set`]: pods for ReplicaSets (section 2);
//! - [`deployment`]: ReplicaSets for Deployments (section 3);
//! - [`stateful_set`]: pods with stable names for StatefulSets (section 4);
//! - [`daemon_set`]: a pod on every eligible node for DaemonSets (section 5);
//! - [`job`]: pods to completion for Jobs, TTL after finished (section 6);
//! - [`cron_job`]: Jobs on a schedule for CronJobs (section 7);
//! - [`gc`]: the garbage collector (section 8): dependents of deleted owners, orphaning and
//!   foreground deletion;
//! - [`service_accounts`]: a `default` ServiceAccount in every active namespace (9.1).
//!
//! Shared here: reading a namespace's pods, claiming (rule 1.3), expectations (1.4), slow-start
//! creation (1.5), per-key back-off, status merge patches and event recording; the caches of
//! pods and ReplicaSets. The pod cache is one `watch::Shared` (in the node, the one the
//! endpoint and node lifecycle controllers read too): every controller that owns pods is
//! triggered by it and reads its pods from it, so a sync sees at least the change that
//! triggered it, without listing the namespace's pods from the API at every sync.

pub mod cron_job;
pub mod daemon_set;
pub mod deployment;
pub mod gc;
pub mod job;
pub mod replica_set;
pub mod service_accounts;
pub mod stateful_set;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use podvisor_core::metav1::{LabelSelector, OwnerReference};
use podvisor_workloads::owner::{Claim, Owner, claim};
use serde_json::json;

use crate::watch::{Shared, cache, shared};

/// How long an unmet expectation holds a controller back (`ExpectationsTimeout`, rule 1.4).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

/// The objects of `store` in `namespace`.
pub(crate) fn in_namespace<K: Resource<DynamicType = ()> + Clone>(
    store: &Store<K>,
    namespace: &str,
) -> Vec<Arc<K>> {
    store
        .state()
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
        .collect()
}

/// The namespace's pods as the shared cache has them, for a controller whose pod trigger is
/// that cache's watch.
///
/// The cache and the trigger are one watch ([`Shared`]): a sync that a pod's change triggered
/// sees at least that change, so every change is acted on. What the controller itself just
/// wrote the cache may not show yet; its expectations (rule 1.4) hold it back until it does.
pub(crate) fn namespace_pods(pods: &Shared<Pod>, namespace: &str) -> Vec<Arc<Pod>> {
    in_namespace(pods.store(), namespace)
}

/// The namespace's pods as stored, for a controller with no pod trigger (the Deployment
/// controller, which looks at pods only for `Recreate`): it reads them when a sync starts.
pub(crate) async fn stored_namespace_pods(
    client: &Client,
    namespace: &str,
) -> Result<Vec<Arc<Pod>>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .map(Arc::new)
        .collect())
}

/// What a controller expects its caches to show after its own writes (rule 1.4, tracked by
/// name for creates and UID for deletes): until they do, or 5 minutes pass, it writes status
/// only.
#[derive(Debug, Default)]
pub(crate) struct Expectations {
    by_owner: Mutex<HashMap<String, Expected>>,
}

#[derive(Debug)]
struct Expected {
    created: Vec<String>,
    deleted: Vec<String>,
    /// UIDs that lose `finalizer` (a Job's tracking finalizer).
    released: Vec<String>,
    finalizer: &'static str,
    since: Instant,
}

impl Expectations {
    /// Records what `owner` just created (names) and deleted (UIDs).
    pub(crate) fn expect(&self, owner: &str, created: Vec<String>, deleted: Vec<String>) {
        let mut map = self
            .by_owner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if created.is_empty() && deleted.is_empty() {
            map.remove(owner);
        } else {
            map.insert(
                owner.to_string(),
                Expected {
                    created,
                    deleted,
                    released: Vec::new(),
                    finalizer: "",
                    since: Instant::now(),
                },
            );
        }
    }

    /// Adds to `owner`'s record what it created (names) and deleted (UIDs).
    pub(crate) fn expect_more(&self, owner: &str, created: Vec<String>, deleted: Vec<String>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let mut map = self
            .by_owner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = map.entry(owner.to_string()).or_insert_with(|| Expected {
            created: Vec::new(),
            deleted: Vec::new(),
            released: Vec::new(),
            finalizer: "",
            since: Instant::now(),
        });
        e.created.extend(created);
        e.deleted.extend(deleted);
    }

    /// Adds to `owner`'s record the objects (UIDs) it took `finalizer` off.
    pub(crate) fn expect_released(&self, owner: &str, uids: Vec<String>, finalizer: &'static str) {
        if uids.is_empty() {
            return;
        }
        let mut map = self
            .by_owner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = map.entry(owner.to_string()).or_insert_with(|| Expected {
            created: Vec::new(),
            deleted: Vec::new(),
            released: Vec::new(),
            finalizer,
            since: Instant::now(),
        });
        e.released.extend(uids);
        e.finalizer = finalizer;
    }

    /// Whether `owner`'s cache shows its writes: every created name present, every deleted UID
    /// gone or being deleted.
    pub(crate) fn satisfied<K: Resource>(&self, owner: &str, seen: &[Arc<K>]) -> bool {
        let mut map = self
            .by_owner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(e) = map.get(owner) else { return true };
        let created = e
            .created
            .iter()
            .all(|n| seen.iter().any(|o| o.meta().name.as_ref() == Some(n)));
        let deleted = e.deleted.iter().all(|u| {
            seen.iter()
                .find(|o| o.meta().uid.as_ref() == Some(u))
                .is_none_or(|o| o.meta().deletion_timestamp.is_some())
        });
        let released = e.released.iter().all(|u| {
            seen.iter()
                .find(|o| o.meta().uid.as_ref() == Some(u))
                .is_none_or(|o| !o.meta().finalizers.iter().flatten().any(|f| f == e.finalizer))
        });
        let done = (created && deleted && released) || e.since.elapsed() > EXPECTATIONS_TIMEOUT;
        if done {
            map.remove(owner);
        }
        done
    }

    /// Forgets `owner` (it was deleted).
    pub(crate) fn forget(&self, owner: &str) {
        self.by_owner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(owner);
    }
}

/// Claims `candidates` for `owner` (rule 1.3): adopts selected orphans and releases what it no
/// longer selects, by patches preconditioned on the object's resourceVersion. Returns the
/// objects it controls afterwards.
pub(crate) async fn claim_all<K>(
    api: &Api<K>,
    owner: Owner<'_>,
    selector: &LabelSelector,
    candidates: &[Arc<K>],
) -> Result<Vec<Arc<K>>, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut owned = Vec::new();
    for o in candidates {
        let meta = o.meta();
        let name = o.name_any();
        let mut refs: Vec<OwnerReference> = meta.owner_references.clone().unwrap_or_default();
        match claim(owner, selector, meta) {
            Claim::Owned => owned.push(o.clone()),
            Claim::Ignore => {}
            Claim::Adopt => {
                refs.push(owner.controller_ref());
                let patch =
                    json!({"metadata": {"ownerReferences": refs, "resourceVersion": meta.resource_version}});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                {
                    Ok(adopted) => owned.push(Arc::new(adopted)),
                    Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409 | 422) => {}
                    Err(e) => return Err(e),
                }
            }
            Claim::Release => {
                refs.retain(|r| r.uid != owner.uid());
                let patch =
                    json!({"metadata": {"ownerReferences": refs, "resourceVersion": meta.resource_version}});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409 | 422) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(owned)
}

/// The pods and ControllerRevisions `owner` controls once claimed (StatefulSets and
/// DaemonSets keep their history as ControllerRevisions): `candidates` are the namespace's
/// pods from the cache; the revisions are read as stored.
pub(crate) async fn claim_pods_and_revisions(
    pods_api: &Api<Pod>,
    revs_api: &Api<k8s_openapi::api::apps::v1::ControllerRevision>,
    owner: Owner<'_>,
    selector: &LabelSelector,
    candidates: &[Arc<Pod>],
) -> Result<(Vec<Pod>, Vec<k8s_openapi::api::apps::v1::ControllerRevision>), kube::Error> {
    let pods = claim_all(pods_api, owner, selector, candidates).await?;
    let stored: Vec<Arc<_>> = revs_api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .map(Arc::new)
        .collect();
    let revisions = claim_all(revs_api, owner, selector, &stored).await?;
    Ok((
        pods.iter().map(|p| (**p).clone()).collect(),
        revisions.iter().map(|r| (**r).clone()).collect(),
    ))
}

/// Creates a StatefulSet's or DaemonSet's new ControllerRevision; `false` when its name is
/// taken (a hash collision, rules 4.4 and 5.7): the owner's `status.collisionCount` is then
/// raised, so its next sync hashes anew.
pub(crate) async fn create_revision<K>(
    revs_api: &Api<k8s_openapi::api::apps::v1::ControllerRevision>,
    revision: &k8s_openapi::api::apps::v1::ControllerRevision,
    owner_api: &Api<K>,
    owner: &str,
    collisions: Option<i32>,
) -> Result<bool, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match revs_api.create(&kube::api::PostParams::default(), revision).await {
        Ok(_) => Ok(true),
        Err(e) if code(&e) == Some(409) => {
            bump_collision_count(owner_api, owner, collisions).await?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Raises an owner's `status.collisionCount` (Deployments, StatefulSets, DaemonSets) from
/// `current`.
pub(crate) async fn bump_collision_count<K>(
    api: &Api<K>,
    name: &str,
    current: Option<i32>,
) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = Patch::Merge(json!({"status": {"collisionCount": current.unwrap_or(0) + 1}}));
    api.patch_status(name, &PatchParams::default(), &patch)
        .await
        .map(|_| ())
}

/// Creates `n` copies of `make()` in slow-start batches of 1, 2, 4, ... (rule 1.5): a batch's
/// calls run together; a failure skips the remaining batches. Returns the created objects and
/// the first error.
pub(crate) async fn slow_start<K>(
    api: &Api<K>,
    n: usize,
    mut make: impl FnMut() -> K,
) -> (Vec<K>, Option<kube::Error>)
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut created = Vec::new();
    let mut batch = 1;
    let mut left = n;
    while left > 0 {
        let size = batch.min(left);
        let objects: Vec<K> = (0..size).map(|_| make()).collect();
        let params = kube::api::PostParams::default();
        let results = futures_util::future::join_all(objects.iter().map(|o| api.create(&params, o))).await;
        let mut error = None;
        for r in results {
            match r {
                Ok(o) => created.push(o),
                Err(e) => error = error.or(Some(e)),
            }
        }
        if error.is_some() {
            return (created, error);
        }
        left -= size;
        batch *= 2;
    }
    (created, None)
}

/// Per-key exponential back-off of failed syncs (client-go's default controller rate limiter:
/// 5 ms doubling to 1000 s), reset by a success.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The delay before retrying `key` after another failure.
    pub(crate) fn failed(&self, key: &str) -> Action {
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(key.to_string()).or_default();
        *n = n.saturating_add(1);
        let millis = 5u64.saturating_mul(1u64 << (*n - 1).min(30)).min(1_000_000);
        Action::requeue(Duration::from_millis(millis))
    }

    /// `key` synced.
    pub(crate) fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// `namespace/name` of an object.
pub(crate) fn key<K: Resource>(o: &K) -> String {
    format!(
        "{}/{}",
        o.meta().namespace.as_deref().unwrap_or(""),
        o.meta().name.as_deref().unwrap_or("")
    )
}

/// Whether an API error says the namespace is being deleted (creates there are not errors
/// worth an event, rule 1.7).
pub(crate) fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.message.contains("because it is being terminated"))
}

/// The merge patch that makes `old` status into `new` (RFC 7386: what `old` has and `new`
/// lacks, at any depth, is sent as `null`; a merge patch otherwise keeps it).
pub(crate) fn status_patch<T: serde::Serialize>(old: Option<&T>, new: &T) -> Patch<serde_json::Value> {
    let mut next = json!(new);
    if let Some(o) = old {
        null_what_went(&json!(o), &mut next);
    }
    Patch::Merge(json!({"status": next}))
}

fn null_what_went(old: &serde_json::Value, new: &mut serde_json::Value) {
    if let (Some(o), Some(n)) = (old.as_object(), new.as_object_mut()) {
        for (k, v) in o {
            match n.get_mut(k) {
                Some(nv) => null_what_went(v, nv),
                None => {
                    n.insert(k.clone(), serde_json::Value::Null);
                }
            }
        }
    }
}

/// Records a plan's event on `reference`, with the upstream controller's `action`.
pub(crate) async fn record(
    recorder: &crate::events::Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    event: &podvisor_workloads::event::Event,
    action: &str,
) {
    let type_ = match event.type_ {
        podvisor_workloads::event::EventType::Normal => kube::runtime::events::EventType::Normal,
        podvisor_workloads::event::EventType::Warning => kube::runtime::events::EventType::Warning,
    };
    crate::events::publish(
        recorder,
        reference,
        type_,
        &event.reason,
        action,
        event.message.clone(),
    )
    .await;
}

/// A recorder reporting as `controller`.
pub(crate) fn recorder(client: &Client, controller: &str) -> crate::events::Recorder {
    crate::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: controller.into(),
            instance: None,
        },
    )
}

/// The API error's HTTP code, if it is one.
pub(crate) fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Runs the workload controllers until cancelled, on a watch of pods of their own.
pub async fn run(client: Client) {
    let (pods, watch) = shared(Api::<Pod>::all(client.clone()), watcher::Config::default());
    tokio::select! {
        () = watch => {}
        () = run_shared(client, pods.clone()) => {}
    }
}

/// Runs the workload controllers until cancelled, on a pod watch they share with other loops
/// (and with each other: it is their pod cache and their pods' trigger).
pub(crate) async fn run_shared(client: Client, pods: Shared<Pod>) {
    let (rss, rss_task) = cache(
        Api::<k8s_openapi::api::apps::v1::ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let caches = Caches { pods, rss };
    // The controllers that read pods must not decide from a cache that has not listed yet
    // (they would see no pods and make them all again); the others start at once.
    let pod_owners = async {
        if caches.pods.ready().await {
            tokio::join!(
                replica_set::run(client.clone(), caches.clone()),
                stateful_set::run(client.clone(), caches.clone()),
                daemon_set::run(client.clone(), caches.clone()),
                job::run(client.clone(), caches.clone()),
            );
        }
    };
    tokio::join!(
        rss_task,
        pod_owners,
        deployment::run(client.clone()),
        cron_job::run(client.clone()),
        gc::run(client.clone()),
        service_accounts::run(client.clone()),
    );
}

/// The caches several workload controllers read.
#[derive(Clone)]
pub(crate) struct Caches {
    /// Every pod, and each pod's change once the cache shows it (the controllers' trigger).
    pub(crate) pods: Shared<Pod>,
    /// Every ReplicaSet.
    pub(crate) rss: Store<k8s_openapi::api::apps::v1::ReplicaSet>,
}
