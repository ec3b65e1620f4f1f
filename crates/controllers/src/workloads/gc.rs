//! The garbage collector (`controller-semantics.md` section 8): deletes objects whose owners
//! are all gone, orphans the dependents of owners deleted with `propagationPolicy: Orphan`
//! (finalizer `orphan`), and holds owners deleted with `Foreground` (finalizer
//! `foregroundDeletion`) until their blocking dependents are gone.
//!
//! It follows the kinds of [`KINDS`] (every kind podvisor serves whose objects own or are
//! owned) through kube-runtime caches and makes one level-triggered pass over them after
//! every change (at most every 100 ms, at least every 10 s). Before an object is collected
//! its owner is looked up live (rule 8.3), so a cache that lags never deletes a dependent of a
//! live owner.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use podvisor_core::metav1::OwnerReference;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::debug;

/// The kinds the collector follows: (group, version, kind, plural, namespaced).
pub const KINDS: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "Pod", "pods", true),
    ("", "v1", "ConfigMap", "configmaps", true),
    ("", "v1", "Secret", "secrets", true),
    ("", "v1", "Service", "services", true),
    ("", "v1", "ServiceAccount", "serviceaccounts", true),
    ("", "v1", "Node", "nodes", false),
    ("apps", "v1", "Deployment", "deployments", true),
    ("apps", "v1", "ReplicaSet", "replicasets", true),
    ("apps", "v1", "StatefulSet", "statefulsets", true),
    ("apps", "v1", "DaemonSet", "daemonsets", true),
    ("apps", "v1", "ControllerRevision", "controllerrevisions", true),
    ("batch", "v1", "Job", "jobs", true),
    ("batch", "v1", "CronJob", "cronjobs", true),
    ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true),
    ("coordination.k8s.io", "v1", "Lease", "leases", true),
];

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

fn api_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The kind an owner reference names, if the collector knows it.
fn kind_of(
    r: &OwnerReference,
) -> Option<&'static (&'static str, &'static str, &'static str, &'static str, bool)> {
    let (group, version) = r
        .api_version
        .split_once('/')
        .unwrap_or(("", r.api_version.as_str()));
    KINDS
        .iter()
        .find(|(g, v, k, _, _)| *g == group && *v == version && *k == r.kind)
}

/// One cached object, as the collector sees it.
struct Node {
    kind: usize,
    object: std::sync::Arc<DynamicObject>,
}

fn has_finalizer(o: &DynamicObject, f: &str) -> bool {
    o.metadata.finalizers.iter().flatten().any(|x| x == f)
}

/// Runs the collector until cancelled.
pub(crate) async fn run(client: Client) {
    let (touched, mut changes) = mpsc::unbounded_channel();
    let mut stores = Vec::new();
    let mut tasks = Vec::new();
    for (group, version, kind, plural, _) in KINDS {
        let ar = api_resource(group, version, kind, plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let (store, task) = follow_dynamic(api, ar, touched.clone());
        stores.push(store);
        tasks.push(tokio::spawn(task));
    }
    let _abort = AbortOnDrop(tasks);
    for s in &stores {
        if s.wait_until_ready().await.is_err() {
            return;
        }
    }
    loop {
        pass(&client, &stores).await;
        // The next change (and whatever follows it within 100 ms), or 10 s.
        if let Ok(Some(())) = tokio::time::timeout(Duration::from_secs(10), changes.recv()).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
            while changes.try_recv().is_ok() {}
        }
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn follow_dynamic(
    api: Api<DynamicObject>,
    ar: ApiResource,
    touched: mpsc::UnboundedSender<()>,
) -> (Store<DynamicObject>, impl Future<Output = ()> + Send + 'static) {
    use futures_util::StreamExt;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let writer = reflector::store::Writer::new(ar);
    let reader = writer.as_reader();
    // The collector reads owners, finalizers and deletion only: the objects' bodies are not kept.
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|object: &mut DynamicObject| {
            crate::watch::lighten(object);
            object.data = serde_json::Value::Object(serde_json::Map::new());
        })
        .reflect(writer);
    let task = async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    if touched.send(()).is_err() {
                        return;
                    }
                }
                Err(e) => debug!(error = %e, "watch failed; relisting after a back-off"),
            }
        }
    };
    (reader, task)
}

fn api_for(client: &Client, kind: usize, namespace: Option<&str>) -> Api<DynamicObject> {
    let (g, v, k, p, namespaced) = KINDS[kind];
    let ar = api_resource(g, v, k, p);
    match namespace {
        Some(ns) if namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// How an owner reference stands (rule 8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnerState {
    Solid,
    Waiting,
    Dangling,
    Unknown,
}

/// One pass over every cached object.
async fn pass(client: &Client, stores: &[Store<DynamicObject>]) {
    let nodes: Vec<Node> = stores
        .iter()
        .enumerate()
        .flat_map(|(kind, s)| s.state().into_iter().map(move |object| Node { kind, object }))
        .collect();
    let by_uid: HashMap<&str, &Node> = nodes
        .iter()
        .filter_map(|n| n.object.metadata.uid.as_deref().map(|u| (u, n)))
        .collect();
    // Owners with dependents, by owner UID.
    let mut dependents: HashMap<&str, Vec<&Node>> = HashMap::new();
    for n in &nodes {
        for r in n.object.metadata.owner_references.iter().flatten() {
            dependents.entry(r.uid.as_str()).or_default().push(n);
        }
    }
    let mut gone_owners: HashSet<String> = HashSet::new();
    // Owners being deleted: orphan their dependents or delete them first.
    for n in &nodes {
        let o = &n.object;
        if o.metadata.deletion_timestamp.is_none() {
            continue;
        }
        let uid = o.metadata.uid.clone().unwrap_or_default();
        let deps = dependents.get(uid.as_str()).cloned().unwrap_or_default();
        if has_finalizer(o, ORPHAN) {
            let mut all_done = true;
            for d in &deps {
                all_done &= remove_refs(client, d, &[uid.as_str()]).await;
            }
            if all_done {
                remove_finalizer(client, n, ORPHAN).await;
            }
        } else if has_finalizer(o, FOREGROUND) {
            let blocking = deps.iter().any(|d| {
                d.object
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
            });
            for d in &deps {
                if d.object.metadata.deletion_timestamp.is_none() {
                    let cascade = d
                        .object
                        .metadata
                        .uid
                        .as_deref()
                        .is_some_and(|u| dependents.contains_key(u));
                    delete(
                        client,
                        d,
                        if cascade {
                            PropagationPolicy::Foreground
                        } else {
                            PropagationPolicy::Background
                        },
                    )
                    .await;
                }
            }
            if !blocking {
                remove_finalizer(client, n, FOREGROUND).await;
            }
        }
    }
    // Dependents whose owners are all gone.
    for n in &nodes {
        let o = &n.object;
        let Some(refs) = o.metadata.owner_references.as_ref().filter(|r| !r.is_empty()) else {
            continue;
        };
        if o.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let mut states = Vec::new();
        for r in refs {
            let state = match by_uid.get(r.uid.as_str()) {
                Some(owner)
                    if owner.object.metadata.deletion_timestamp.is_some()
                        && has_finalizer(&owner.object, FOREGROUND) =>
                {
                    OwnerState::Waiting
                }
                Some(_) => OwnerState::Solid,
                None if gone_owners.contains(&r.uid) => OwnerState::Dangling,
                None => live_owner(client, r, o.metadata.namespace.as_deref(), &mut gone_owners).await,
            };
            states.push((r.uid.clone(), state));
        }
        if states.iter().any(|(_, s)| *s == OwnerState::Unknown) {
            continue;
        }
        let solid = states.iter().any(|(_, s)| *s == OwnerState::Solid);
        let stale: Vec<&str> = states
            .iter()
            .filter(|(_, s)| *s != OwnerState::Solid)
            .map(|(u, _)| u.as_str())
            .collect();
        if solid {
            if !stale.is_empty() {
                remove_refs(client, n, &stale).await;
            }
            continue;
        }
        let waiting = states.iter().any(|(_, s)| *s == OwnerState::Waiting);
        let has_deps = o
            .metadata
            .uid
            .as_deref()
            .is_some_and(|u| dependents.contains_key(u));
        let policy = if has_finalizer(o, ORPHAN) {
            PropagationPolicy::Orphan
        } else if has_finalizer(o, FOREGROUND) || (waiting && has_deps) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        delete(client, n, policy).await;
    }
}

/// Looks the owner up live (rule 8.5): gone, or there with another UID, is dangling.
async fn live_owner(
    client: &Client,
    r: &OwnerReference,
    namespace: Option<&str>,
    gone: &mut HashSet<String>,
) -> OwnerState {
    let Some(kind) = kind_of(r) else {
        return OwnerState::Unknown;
    };
    let index = KINDS.iter().position(|k| k == kind).unwrap_or(0);
    match api_for(client, index, namespace).get_opt(&r.name).await {
        Ok(Some(owner)) if owner.metadata.uid.as_deref() == Some(r.uid.as_str()) => OwnerState::Solid,
        Ok(_) => {
            gone.insert(r.uid.clone());
            OwnerState::Dangling
        }
        Err(e) => {
            debug!(error = %e, owner = %r.name, "looking up an owner failed");
            OwnerState::Unknown
        }
    }
}

/// Removes the owner references with `uids` from `n`; whether it is done (or `n` is gone).
async fn remove_refs(client: &Client, n: &Node, uids: &[&str]) -> bool {
    let o = &n.object;
    let refs: Vec<&OwnerReference> = o
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| !uids.contains(&r.uid.as_str()))
        .collect();
    if refs.len() == o.metadata.owner_references.as_ref().map_or(0, Vec::len) {
        return true;
    }
    let patch =
        json!({"metadata": {"ownerReferences": refs, "resourceVersion": o.metadata.resource_version}});
    let api = api_for(client, n.kind, o.metadata.namespace.as_deref());
    match api
        .patch(&o.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(e)) if e.code == 404 => true,
        Err(e) => {
            debug!(error = %e, object = %o.name_any(), "removing owner references failed");
            false
        }
    }
}

async fn remove_finalizer(client: &Client, n: &Node, finalizer: &str) {
    let o = &n.object;
    let rest: Vec<&String> = o
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .collect();
    let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": o.metadata.resource_version}});
    let api = api_for(client, n.kind, o.metadata.namespace.as_deref());
    if let Err(e) = api
        .patch(&o.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        debug!(error = %e, object = %o.name_any(), "removing a finalizer failed");
    }
}

async fn delete(client: &Client, n: &Node, policy: PropagationPolicy) {
    let o = &n.object;
    let params = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(Preconditions {
            uid: o.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let api = api_for(client, n.kind, o.metadata.namespace.as_deref());
    match api.delete(&o.name_any(), &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => {}
        Err(e) => debug!(error = %e, object = %o.name_any(), "collecting failed"),
    }
}
