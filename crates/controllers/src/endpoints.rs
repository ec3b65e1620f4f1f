//! The endpoint controllers: EndpointSlices and Endpoints follow Services and pod readiness.
//!
//! Two loops over shared caches, as upstream has two controllers: one writes the
//! EndpointSlices (what kube-proxy, DNS and our datapath read), the other the Endpoints (up to
//! 1,000 addresses in one object, for older clients), so a readiness change reaches the slices
//! without waiting behind the previous change's Endpoints write. Each gathers a burst of
//! changes into one pass; the Endpoints' waits longer for the burst to end (10 ms against
//! 2 ms, at most 100 ms either), so the slices usually reach the store first.
//!
//! Each is level-triggered: every change of a Service, Pod, or of the loop's own kind marks
//! its namespace, and the namespace is recomputed from the reflectors' caches with
//! `podvisor-endpoints`' pure functions; an object is written only when it differs from the
//! cached one, so repeated or reordered events do no harm, and one deleted or changed by
//! someone else is put back, as upstream's controllers do. A write that loses a race (409) is
//! left: the event of whoever won marks the namespace again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Event, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, warn};

use crate::watch::{Shared, Touched, follow, shared};

/// What one loop writes.
#[derive(Clone, Copy)]
enum Output {
    Slices,
    Endpoints,
}

/// How long a burst of changes is gathered before the slices' pass handles it: a pass starts
/// once no change came for this long.
const BATCH: Duration = Duration::from_millis(2);
/// The same for the Endpoints' pass: longer, so that the slices (what kube-proxy, DNS and our
/// datapath read) are usually written first and do not wait behind the Endpoints object's
/// write (up to 1,000 addresses) in the store.
const ENDPOINTS_BATCH: Duration = Duration::from_millis(10);
/// The longest a pass waits for a burst to end: changes that keep coming (faster than the
/// batch period) are handled at least this often.
const MAX_GATHER: Duration = Duration::from_millis(100);

/// The caches the controller decides from.
#[derive(Clone)]
struct Caches {
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
}

/// Runs the controller until dropped, on a watch of pods of its own.
pub async fn run(client: Client) {
    let (pods, watch) = shared(Api::<Pod>::all(client.clone()), watcher::Config::default());
    tokio::select! {
        () = watch => {}
        () = run_shared(client, pods.clone()) => {}
    }
}

/// Runs the controller until dropped, on a pod watch it shares with other loops.
pub(crate) async fn run_shared(client: Client, pods: Shared<Pod>) {
    let (to_slices, slices_touched) = mpsc::unbounded_channel();
    let (to_endpoints, endpoints_touched) = mpsc::unbounded_channel();
    let config = watcher::Config::default;
    let (services, services_watch) = shared(Api::<Service>::all(client.clone()), config());
    let followers = [
        services_watch.boxed(),
        services.touched(to_slices.clone()).boxed(),
        services.touched(to_endpoints.clone()).boxed(),
        pods.touched(to_slices.clone()).boxed(),
        pods.touched(to_endpoints.clone()).boxed(),
    ];
    let pods_listed = pods.ready();
    let pods = pods.store().clone();
    let (endpoints, c) = follow(Api::<Endpoints>::all(client.clone()), config(), to_endpoints);
    let (slices, d) = follow(Api::<EndpointSlice>::all(client.clone()), config(), to_slices);
    // The followers end with this task.
    let _followers = followers
        .into_iter()
        .chain([c.boxed(), d.boxed()])
        .map(|f| AbortOnDropHandle::new(tokio::spawn(f)))
        .collect::<Vec<_>>();
    let caches = Caches {
        services: services.store().clone(),
        pods,
        endpoints,
        slices,
    };
    if !pods_listed.await {
        return;
    }
    for ready in [
        caches.services.wait_until_ready().await,
        caches.endpoints.wait_until_ready().await,
        caches.slices.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return;
        }
    }
    // Two tasks, so the Endpoints' pass (its write of up to 1,000 addresses is encoded and
    // admitted on the task that makes it) runs beside the slices', not between its steps.
    let slices_loop = AbortOnDropHandle::new(tokio::spawn(passes(
        client.clone(),
        caches.clone(),
        Output::Slices,
        slices_touched,
    )));
    let endpoints_loop = AbortOnDropHandle::new(tokio::spawn(passes(
        client,
        caches,
        Output::Endpoints,
        endpoints_touched,
    )));
    let _ = tokio::join!(slices_loop, endpoints_loop);
}

/// One loop: gathers what was touched and recomputes each namespace's `output`, until the
/// followers are gone.
async fn passes(
    client: Client,
    caches: Caches,
    output: Output,
    mut touched: mpsc::UnboundedReceiver<Touched>,
) {
    let batch = match output {
        Output::Slices => BATCH,
        Output::Endpoints => ENDPOINTS_BATCH,
    };
    // The first pass looks at everything.
    let mut first = true;
    while let Some((mut dirty, all)) = gather(&mut touched, batch, std::mem::take(&mut first)).await {
        if all {
            dirty.extend(caches.namespaces());
        }
        for ns in &dirty {
            match output {
                Output::Slices => reconcile_slices(&client, &caches, ns).await,
                Output::Endpoints => reconcile_endpoints(&client, &caches, ns).await,
            }
        }
    }
}

/// Waits for changes and gathers them, so a burst is one pass: until none came for `batch`,
/// and at most [`MAX_GATHER`] after the first. Returns the namespaces touched and whether
/// everything was (`all` starts the gathering at once, as if everything had been touched);
/// `None` once every sender is gone.
async fn gather(
    touched: &mut mpsc::UnboundedReceiver<Touched>,
    batch: Duration,
    mut all: bool,
) -> Option<(BTreeSet<String>, bool)> {
    let mut dirty = BTreeSet::new();
    let mut deadline = None;
    loop {
        let next = if all || !dirty.is_empty() {
            let now = tokio::time::Instant::now();
            let until = *deadline.get_or_insert(now + MAX_GATHER);
            match tokio::time::timeout_at(until.min(now + batch), touched.recv()).await {
                Ok(next) => next,
                Err(_) => return Some((dirty, all)),
            }
        } else {
            touched.recv().await
        };
        match next? {
            Touched::All => all = true,
            Touched::Namespace(ns) => {
                dirty.insert(ns);
            }
        }
    }
}

use futures_util::FutureExt as _;

impl Caches {
    /// Every namespace any cached object is in.
    fn namespaces(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        out.extend(self.services.state().iter().filter_map(|o| o.namespace()));
        out.extend(self.pods.state().iter().filter_map(|o| o.namespace()));
        out.extend(self.endpoints.state().iter().filter_map(|o| o.namespace()));
        out.extend(self.slices.state().iter().filter_map(|o| o.namespace()));
        out
    }
}

/// The cached objects of `store` in `ns`.
fn in_namespace<K>(store: &Store<K>, ns: &str) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .collect()
}

/// Recomputes and writes the EndpointSlices of every Service in `ns`, and removes the managed
/// ones no Service wants.
async fn reconcile_slices(client: &Client, caches: &Caches, ns: &str) {
    let services = in_namespace(&caches.services, ns);
    // Shared with the cache, not copied: this runs on every change of a pod of `ns`.
    let pods: Vec<Arc<Pod>> = in_namespace(&caches.pods, ns);
    let slices_api = Api::<EndpointSlice>::namespaced(client.clone(), ns);
    let mut wanted = BTreeSet::new();
    for service in &services {
        for problem in unresolved_ports(service, &pods) {
            warn_about(client, service, &problem).await;
        }
        for desired in podvisor_endpoints::desired_slices(service, &pods) {
            let slice_name = desired.name_any();
            wanted.insert(slice_name.clone());
            let current = caches.slices.get(&ObjectRef::new(&slice_name).within(ns));
            write(&slices_api, desired, current).await;
        }
    }
    for slice in in_namespace(&caches.slices, ns) {
        let managed = slice
            .labels()
            .get(podvisor_endpoints::MANAGED_BY_LABEL)
            .map(String::as_str)
            == Some(podvisor_endpoints::MANAGED_BY);
        if managed && !wanted.contains(&slice.name_any()) {
            remove(&slices_api, &slice).await;
        }
    }
}

/// Recomputes and writes the Endpoints of every Service in `ns`, and removes those of Services
/// that are gone.
async fn reconcile_endpoints(client: &Client, caches: &Caches, ns: &str) {
    let services = in_namespace(&caches.services, ns);
    let pods: Vec<Arc<Pod>> = in_namespace(&caches.pods, ns);
    let endpoints_api = Api::<Endpoints>::namespaced(client.clone(), ns);
    for service in &services {
        if let Some(desired) = podvisor_endpoints::desired_endpoints(service, &pods) {
            let current = caches
                .endpoints
                .get(&ObjectRef::new(&service.name_any()).within(ns));
            write(&endpoints_api, desired, current).await;
        }
    }
    let service_names: BTreeSet<String> = services.iter().map(|s| s.name_any()).collect();
    for endpoints in in_namespace(&caches.endpoints, ns) {
        if !service_names.contains(&endpoints.name_any()) {
            remove(&endpoints_api, &endpoints).await;
        }
    }
}

/// Whether `current` already says what `desired` does: equal but for the fields the server
/// sets, compared as typed objects. Those fields are taken from `current` into `desired` for
/// the comparison (a replace then carries the version, UID and creation time it read; its
/// generation and managedFields are left as they were), so nothing else is copied: this runs
/// for every slice on every pod change.
fn same_content<K: Resource + PartialEq>(current: &K, desired: &mut K) -> bool {
    let (meta, server) = (desired.meta_mut(), current.meta());
    meta.resource_version.clone_from(&server.resource_version);
    meta.uid.clone_from(&server.uid);
    meta.creation_timestamp.clone_from(&server.creation_timestamp);
    let generation = std::mem::replace(&mut meta.generation, server.generation);
    let managed = std::mem::replace(&mut meta.managed_fields, server.managed_fields.clone());
    let same = *current == *desired;
    let meta = desired.meta_mut();
    meta.generation = generation;
    meta.managed_fields = managed;
    same
}

/// Creates `desired`, or replaces `current` with it when their content differs.
async fn write<K>(api: &Api<K>, mut desired: K, current: Option<Arc<K>>)
where
    K: Resource + Clone + PartialEq + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    let result = match current {
        Some(current) if same_content(&*current, &mut desired) => return,
        Some(_) => api.replace(&name, &PostParams::default(), &desired).await,
        None => api.create(&PostParams::default(), &desired).await,
    };
    match result {
        Ok(_) => {}
        // Someone else wrote first: their event brings the namespace back.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
            debug!(object = %name, reason = %e.reason, "lost a race writing endpoints");
        }
        Err(e) => warn!(error = %e, object = %name, "writing endpoints failed"),
    }
}

/// Deletes `object` (only the version that was looked at).
async fn remove<K>(api: &Api<K>, object: &K)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let params = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: object.meta().uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => warn!(error = %e, object = %name, "deleting endpoints failed"),
    }
}

/// Named target ports that none of the Service's selected pods exposes (with the protocol), so
/// the Service has no endpoints for them: a user should be told rather than left guessing.
fn unresolved_ports(service: &Service, pods: &[Arc<Pod>]) -> Vec<String> {
    let selected: Vec<&Pod> = pods
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| podvisor_endpoints::selects(service, p))
        .collect();
    if selected.is_empty() {
        return Vec::new();
    }
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    ports
        .iter()
        .filter_map(|sp| match &sp.target_port {
            Some(IntOrString::String(target)) if !target.is_empty() => Some((sp, target)),
            _ => None,
        })
        .filter(|(sp, _)| {
            selected
                .iter()
                .all(|p| podvisor_endpoints::find_port(p, sp).is_none())
        })
        .map(|(sp, target)| {
            format!(
                "no selected pod has a container port named \"{target}\" with protocol {} (service port {})",
                sp.protocol.as_deref().unwrap_or("TCP"),
                sp.port
            )
        })
        .collect()
}

/// Records (or counts again, at most once a minute) a Warning event
/// `FailedToResolveTargetPort` on the Service.
async fn warn_about(client: &Client, service: &Service, message: &str) {
    let ns = podvisor_core::object::namespace_of(&service.metadata).to_owned();
    let svc = service.name_any();
    let tag = message.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let name = format!("{svc}.targetport.{tag:08x}");
    let api = Api::<Event>::namespaced(client.clone(), &ns);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let result = match api.get_opt(&name).await {
        Ok(Some(mut event)) => {
            // Already said; count it at most once a minute so a busy namespace does not churn.
            let fresh = event
                .last_timestamp
                .as_ref()
                .is_some_and(|last| now.0.duration_since(last.0).as_secs() < 60);
            if fresh {
                return;
            }
            event.count = Some(event.count.unwrap_or(1) + 1);
            event.last_timestamp = Some(now);
            api.replace(&name, &PostParams::default(), &event).await
        }
        Ok(None) => {
            let event = Event {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: Some(ns.clone()),
                    ..Default::default()
                },
                involved_object: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Service".into()),
                    namespace: Some(ns),
                    name: Some(svc),
                    uid: service.metadata.uid.clone(),
                    ..Default::default()
                },
                reason: Some("FailedToResolveTargetPort".into()),
                message: Some(message.to_owned()),
                type_: Some("Warning".into()),
                source: Some(k8s_openapi::api::core::v1::EventSource {
                    component: Some("endpoint-controller".into()),
                    host: None,
                }),
                reporting_component: Some("endpoint-controller".into()),
                first_timestamp: Some(now.clone()),
                last_timestamp: Some(now),
                count: Some(1),
                ..Default::default()
            };
            api.create(&PostParams::default(), &event).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        debug!(error = %e, "recording a FailedToResolveTargetPort event failed");
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use super::{BATCH, ENDPOINTS_BATCH, MAX_GATHER, Touched, gather, same_content};

    /// A change is handled once the batch period passed without another; a burst of changes
    /// is one pass.
    #[tokio::test(start_paused = true)]
    async fn a_pass_starts_once_changes_pause() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for ns in ["a", "b", "a"] {
            tx.send(Touched::Namespace(ns.into()))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let started = Instant::now();
        let gathered = gather(&mut rx, BATCH, false).await;
        assert_eq!(gathered, Some((["a".to_string(), "b".to_string()].into(), false)));
        assert_eq!(started.elapsed(), BATCH);
        drop(tx);
        assert_eq!(gather(&mut rx, BATCH, false).await, None, "the senders are gone");
    }

    /// Changes that never pause are still handled, at least every MAX_GATHER: a busy namespace
    /// must not hold its Endpoints back for good.
    #[tokio::test(start_paused = true)]
    async fn changes_that_never_pause_are_handled_at_least_every_max_gather() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sender = tokio::spawn(async move {
            loop {
                if tx.send(Touched::Namespace("busy".into())).is_err() {
                    return;
                }
                tokio::time::sleep(ENDPOINTS_BATCH / 2).await;
            }
        });
        for _ in 0..3 {
            let started = Instant::now();
            let gathered = tokio::time::timeout(10 * MAX_GATHER, gather(&mut rx, ENDPOINTS_BATCH, false))
                .await
                .unwrap_or_else(|_| panic!("still gathering after {:?}", 10 * MAX_GATHER));
            assert_eq!(gathered, Some((["busy".to_string()].into(), false)));
            assert!(
                started.elapsed() <= MAX_GATHER + ENDPOINTS_BATCH,
                "gathered for {:?}",
                started.elapsed()
            );
        }
        sender.abort();
    }

    /// The first pass looks at everything without waiting for a change.
    #[tokio::test(start_paused = true)]
    async fn the_first_pass_needs_no_change() {
        let (_tx, mut rx) = mpsc::unbounded_channel::<Touched>();
        let started = Instant::now();
        assert_eq!(
            gather(&mut rx, BATCH, true).await,
            Some((Default::default(), true))
        );
        assert_eq!(started.elapsed(), BATCH);
    }

    fn slice(addresses: &[&str]) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: addresses
                .iter()
                .map(|a| Endpoint {
                    addresses: vec![(*a).into()],
                    ..Endpoint::default()
                })
                .collect(),
            ..EndpointSlice::default()
        }
    }

    /// What the server stamped on the stored copy is no difference; the endpoints are.
    #[test]
    fn content_ignores_what_the_server_sets() {
        let desired = slice(&["10.88.0.2"]);
        let mut stored = desired.clone();
        stored.metadata.resource_version = Some("42".into());
        stored.metadata.uid = Some("u".into());
        stored.metadata.creation_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        stored.metadata.generation = Some(3);
        let mut compared = desired.clone();
        assert!(same_content(&stored, &mut compared));
        // A replace carries the version, UID and creation time read; not the generation.
        assert_eq!(compared.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(compared.metadata.uid.as_deref(), Some("u"));
        assert_eq!(compared.metadata.generation, None);
        assert!(!same_content(&stored, &mut slice(&["10.88.0.3"])));
        let mut relabelled = stored.clone();
        relabelled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        assert!(!same_content(&relabelled, &mut desired.clone()));
    }
}
