//! The endpoint controller: Endpoints and EndpointSlices follow Services and pod readiness.
//!
//! Level-triggered: every change of a Service or Pod marks its namespace, and the namespace is
//! recomputed from the store with `podvisor-endpoints`' pure functions; an object is written
//! only when it differs from what is stored, so repeated or reordered events do no harm. Like
//! upstream's controllers it watches the Endpoints and EndpointSlices too: one deleted or
//! changed by someone else is put back (its own writes, known by their revisions, are not
//! looked at again).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use podvisor_core::corev1::{Pod, Service};
use podvisor_store::{ListOptions, ObjectKey, Preconditions, Store, StoreError};
use serde_json::{Value, json};
use tracing::{debug, warn};

const SLICES: &str = "discovery.k8s.io/endpointslices";
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// Runs the controller until dropped: reconciles everything, then each namespace a Service or
/// Pod change touches. Relists after watch errors.
pub async fn run(store: Arc<dyn Store>, clock: podvisor_kubelet::Clock) {
    loop {
        let revision = match store.current_revision().await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "endpoint controller cannot read the store; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let namespaces: BTreeSet<String> = match store.list("namespaces", None, ListOptions::default()).await
        {
            Ok(list) => list
                .items
                .iter()
                .filter_map(|v| v.object["metadata"]["name"].as_str().map(str::to_owned))
                .collect(),
            Err(_) => BTreeSet::from(["default".to_owned()]),
        };
        // Revisions of the controller's own writes, whose events need no new pass.
        let mut own = HashSet::new();
        for ns in &namespaces {
            reconcile(&*store, ns, clock, &mut own).await;
        }
        let (Ok(services), Ok(pods), Ok(endpoints), Ok(slices)) = (
            store.watch("services", None, revision).await,
            store.watch("pods", None, revision).await,
            store.watch("endpoints", None, revision).await,
            store.watch(SLICES, None, revision).await,
        ) else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut events = futures_util::stream::select_all([services, pods, endpoints, slices]);
        loop {
            let Some(first) = events.next().await else { break };
            let Ok(first) = first else { break };
            let mut dirty = BTreeSet::new();
            let mut failed = false;
            let mut note = |event: podvisor_store::WatchEvent| {
                if !own.remove(&event.revision) {
                    dirty.insert(event.key.namespace);
                }
            };
            note(first);
            // Take whatever else is already queued, so a burst is handled in one pass.
            while let Ok(Some(more)) = tokio::time::timeout(Duration::from_millis(2), events.next()).await {
                match more {
                    Ok(event) => note(event),
                    Err(_) => failed = true,
                }
            }
            for ns in &dirty {
                reconcile(&*store, ns, clock, &mut own).await;
            }
            if failed {
                break;
            }
        }
        debug!("endpoint controller watch ended; relisting");
    }
}

async fn list_typed<T: serde::de::DeserializeOwned>(store: &dyn Store, resource: &str, ns: &str) -> Vec<T> {
    match store.list(resource, Some(ns), ListOptions::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v.object).ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Recomputes and writes the Endpoints and EndpointSlices of every Service in `ns`.
pub async fn reconcile_namespace(store: &dyn Store, ns: &str, clock: podvisor_kubelet::Clock) {
    reconcile(store, ns, clock, &mut HashSet::new()).await;
}

/// [`reconcile_namespace`], adding the revision of every write it makes to `own`.
async fn reconcile(store: &dyn Store, ns: &str, clock: podvisor_kubelet::Clock, own: &mut HashSet<u64>) {
    let services: Vec<Service> = list_typed(store, "services", ns).await;
    let pods: Vec<Pod> = list_typed(store, "pods", ns).await;
    let mut wanted_endpoints = BTreeSet::new();
    let mut wanted_slices: BTreeMap<String, Value> = BTreeMap::new();
    for service in &services {
        let name = service.metadata.name.clone().unwrap_or_default();
        for problem in unresolved_ports(service, &pods) {
            warn_about(store, service, &problem, clock).await;
        }
        if let Some(endpoints) = podvisor_endpoints::desired_endpoints(service, &pods) {
            wanted_endpoints.insert(name.clone());
            let mut value = serde_json::to_value(&endpoints).unwrap_or(Value::Null);
            value["apiVersion"] = json!("v1");
            value["kind"] = json!("Endpoints");
            own.extend(write(store, ObjectKey::new("endpoints", ns, name.clone()), value, clock).await);
        }
        for slice in podvisor_endpoints::desired_slices(service, &pods) {
            let mut value = serde_json::to_value(&slice).unwrap_or(Value::Null);
            value["apiVersion"] = json!("discovery.k8s.io/v1");
            value["kind"] = json!("EndpointSlice");
            wanted_slices.insert(slice.metadata.name.clone().unwrap_or_default(), value);
        }
    }
    for (name, value) in wanted_slices.clone() {
        own.extend(write(store, ObjectKey::new(SLICES, ns, name), value, clock).await);
    }
    // Managed slices no longer wanted, and Endpoints of Services that are gone.
    if let Ok(list) = store.list(SLICES, Some(ns), ListOptions::default()).await {
        for item in list.items {
            let labels = &item.object["metadata"]["labels"];
            let managed = labels["endpointslice.kubernetes.io/managed-by"].as_str() == Some(MANAGED_BY);
            let name = item.object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if managed && !wanted_slices.contains_key(&name) {
                own.extend(remove(store, ObjectKey::new(SLICES, ns, name)).await);
            }
        }
    }
    let service_names: BTreeSet<String> = services.iter().filter_map(|s| s.metadata.name.clone()).collect();
    if let Ok(list) = store.list("endpoints", Some(ns), ListOptions::default()).await {
        for item in list.items {
            let name = item.object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !service_names.contains(&name) {
                own.extend(remove(store, ObjectKey::new("endpoints", ns, name)).await);
            }
        }
    }
}

/// The parts of an object the controller decides (everything but bookkeeping metadata).
fn content(value: &Value) -> Value {
    let mut v = value.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            meta.remove(key);
        }
    }
    v
}

/// Creates or updates `key` to `desired`, writing nothing when the content is the same.
/// Returns the revision of the write, if it made one.
async fn write(
    store: &dyn Store,
    key: ObjectKey,
    mut desired: Value,
    clock: podvisor_kubelet::Clock,
) -> Option<u64> {
    for _ in 0..3 {
        match store.get(&key).await {
            Ok(current) => {
                if content(&current.object) == content(&desired) {
                    return None;
                }
                for field in ["uid", "creationTimestamp"] {
                    desired["metadata"][field] = current.object["metadata"][field].clone();
                }
                let pre = Preconditions {
                    resource_version: Some(current.revision),
                    uid: None,
                };
                match store.update(&key, desired.clone(), pre).await {
                    Ok(written) => return Some(written.revision),
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => {
                        warn!(error = %e, object = %key.name, "writing endpoints failed");
                        return None;
                    }
                }
            }
            Err(StoreError::NotFound { .. }) => {
                desired["metadata"]["creationTimestamp"] =
                    serde_json::to_value(clock.now().to_k8s()).unwrap_or_default();
                desired["metadata"]["uid"] = json!(podvisor_apiserver::meta::new_uid());
                match store.create(&key, desired.clone()).await {
                    Ok(written) => return Some(written.revision),
                    Err(StoreError::AlreadyExists { .. }) => continue,
                    Err(e) => {
                        warn!(error = %e, object = %key.name, "creating endpoints failed");
                        return None;
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "reading endpoints failed");
                return None;
            }
        }
    }
    None
}

/// Deletes `key`; returns the revision of the deletion, if it made one.
async fn remove(store: &dyn Store, key: ObjectKey) -> Option<u64> {
    match store.delete(&key, Preconditions::default()).await {
        Ok(deleted) => Some(deleted.revision),
        Err(StoreError::NotFound { .. }) => None,
        Err(e) => {
            warn!(error = %e, object = %key.name, "deleting endpoints failed");
            None
        }
    }
}

/// Named target ports that none of the Service's selected pods exposes (with the protocol), so
/// the Service has no endpoints for them: a user should be told rather than left guessing.
fn unresolved_ports(service: &Service, pods: &[Pod]) -> Vec<String> {
    use podvisor_core::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let selected: Vec<&Pod> = pods
        .iter()
        .filter(|p| podvisor_endpoints::selects(service, p))
        .collect();
    if selected.is_empty() {
        return Vec::new();
    }
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    ports
        .iter()
        .filter(|sp| matches!(&sp.target_port, Some(IntOrString::String(n)) if !n.is_empty()))
        .filter(|sp| {
            selected
                .iter()
                .all(|p| podvisor_endpoints::find_port(p, sp).is_none())
        })
        .map(|sp| {
            let Some(IntOrString::String(target)) = &sp.target_port else {
                return String::new();
            };
            format!(
                "no selected pod has a container port named \"{target}\" with protocol {} (service port {})",
                sp.protocol.as_deref().unwrap_or("TCP"),
                sp.port
            )
        })
        .collect()
}

/// Records (or counts again) a Warning event `FailedToResolveTargetPort` on the Service.
async fn warn_about(store: &dyn Store, service: &Service, message: &str, clock: podvisor_kubelet::Clock) {
    let ns = service
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let svc = service.metadata.name.clone().unwrap_or_default();
    let tag = message.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let key = ObjectKey::new("events", ns.clone(), format!("{svc}.targetport.{tag:08x}"));
    let now = serde_json::to_value(clock.now().to_k8s()).unwrap_or_default();
    if let Ok(current) = store.get(&key).await {
        // Already said; count it at most once a minute so a busy namespace does not churn.
        let last = current.object["lastTimestamp"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let fresh = now.as_str().is_some_and(|n| n.get(..16) == last.get(..16));
        if fresh {
            return;
        }
        let mut object = current.object;
        object["count"] = json!(object["count"].as_i64().unwrap_or(1) + 1);
        object["lastTimestamp"] = now;
        let _ = store
            .update(
                &key,
                object,
                Preconditions {
                    resource_version: Some(current.revision),
                    uid: None,
                },
            )
            .await;
        return;
    }
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": key.name, "namespace": ns, "uid": podvisor_apiserver::meta::new_uid(), "creationTimestamp": now},
        "involvedObject": {"apiVersion": "v1", "kind": "Service", "namespace": ns, "name": svc,
            "uid": service.metadata.uid},
        "reason": "FailedToResolveTargetPort", "message": message, "type": "Warning",
        "source": {"component": "endpoint-controller"}, "reportingComponent": "endpoint-controller",
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let _ = store.create(&key, event).await;
}
