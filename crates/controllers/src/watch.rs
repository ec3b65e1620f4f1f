//! Reflectors that say what changed: each follows one resource into a cache (kube-runtime's
//! watcher and reflector, relisting with back-off after errors) and reports the namespace of
//! every change, so a control loop knows what to look at again; a [`Shared`] watch serves one
//! cache and its changes to several loops.

use std::fmt::Debug;

use std::sync::Arc;

use futures_util::{Stream, StreamExt, stream};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::debug;

/// What a change touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Touched {
    /// One namespace's objects (empty for cluster-scoped ones).
    Namespace(String),
    /// Anything: a (re)list finished, so every namespace is looked at again.
    All,
}

/// What a cache keeps of an object: everything but its `managedFields`, which no control loop
/// reads and which are, for an object many managers write (a pod: its creator, the scheduler,
/// the kubelet), often the larger part of it.
pub(crate) fn lighten<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// A cache of `api`'s objects and the task that keeps it current, sending what each change
/// touched to `touched`. The task ends when `touched` is closed.
pub(crate) fn follow<K>(
    api: Api<K>,
    config: watcher::Config,
    touched: mpsc::UnboundedSender<Touched>,
) -> (Store<K>, impl Future<Output = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + Debug + Send + Sync + 'static,
{
    // One subscriber, which needs to know only what to look at again: one that fell behind
    // looks at everything.
    let (shared, watch) = shared_with_backlog(api, config, 64);
    let forward = shared.touched(touched);
    let task = async move {
        // The watch runs until the forwarding ends (its receiver is gone).
        tokio::select! {
            () = watch => {}
            () = forward => {}
        }
    };
    (shared.store, task)
}

/// How many changes a subscriber of a [`Shared`] watch may fall behind before it is handed the
/// whole cache instead (the channel holds as many from the start: ~40 bytes each).
const SHARED_BACKLOG: usize = 1024;

/// One watch of a resource shared by the control loops of a process: one cache, and every
/// change handed to each subscriber once the cache shows it. A loop that reads the cache when a
/// change reaches it therefore sees at least that change, which two watches (a trigger and a
/// cache) cannot promise.
pub(crate) struct Shared<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    changes: broadcast::Sender<Change<K>>,
    /// Whether the cache has listed once.
    ready: watch::Receiver<bool>,
}

impl<K: Resource<DynamicType = ()> + 'static> Clone for Shared<K> {
    fn clone(&self) -> Self {
        Shared {
            store: self.store.clone(),
            changes: self.changes.clone(),
            ready: self.ready.clone(),
        }
    }
}

/// What a [`Shared`] watch hands its subscribers.
enum Change<K> {
    /// An object applied or deleted (as the cache has it; as last seen when deleted).
    Object(Arc<K>),
    /// A (re)list finished: anything may have changed.
    All,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Object(o) => Change::Object(o.clone()),
            Change::All => Change::All,
        }
    }
}

/// A [`Shared`] watch of `api`'s objects and the task that keeps its cache current and hands
/// out its changes, until dropped.
pub(crate) fn shared<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (Shared<K>, impl Future<Output = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + Debug + Send + Sync + 'static,
{
    shared_with_backlog(api, config, SHARED_BACKLOG)
}

/// A cache of `api`'s objects with no subscribers, and the task that keeps it current.
pub(crate) fn cache<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (Store<K>, impl Future<Output = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (shared, task) = shared_with_backlog(api, config, 1);
    (shared.store, task)
}

/// [`shared`] with subscribers that may fall `backlog` changes behind.
fn shared_with_backlog<K>(
    api: Api<K>,
    config: watcher::Config,
    backlog: usize,
) -> (Shared<K>, impl Future<Output = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let (changes, _) = broadcast::channel(backlog);
    let (listed, ready) = watch::channel(false);
    let shared = Shared {
        store: reader.clone(),
        changes: changes.clone(),
        ready,
    };
    let stream = watcher(api, config)
        .default_backoff()
        .modify(lighten)
        .reflect(writer);
    let task = async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let change = match event {
                // The cache's copy: the reflector has just stored it.
                Ok(watcher::Event::Apply(o)) => Change::Object(
                    reader
                        .get(&ObjectRef::from_obj(&o))
                        .unwrap_or_else(|| Arc::new(o)),
                ),
                Ok(watcher::Event::Delete(o)) => Change::Object(Arc::new(o)),
                Ok(watcher::Event::InitDone) => {
                    listed.send_replace(true);
                    Change::All
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                Err(e) => {
                    debug!(error = %e, "watch failed; relisting after a back-off");
                    continue;
                }
            };
            // No subscriber yet is fine: one that comes later starts from the cache.
            let _ = changes.send(change);
        }
    };
    (shared, task)
}

impl<K> Shared<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    /// The cache. Wait for it with [`Shared::ready`], not its `wait_until_ready`: that wakes
    /// only one of several tasks waiting at once (it polls a oneshot channel, which keeps the
    /// last waiter's waker), and a shared cache has several.
    pub(crate) fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Resolves once the cache has listed (true), or when the watch has ended before (false).
    pub(crate) fn ready(&self) -> impl Future<Output = bool> + Send + 'static + use<K> {
        let mut ready = self.ready.clone();
        async move { ready.wait_for(|listed| *listed).await.is_ok() }
    }

    /// Sends what each change touched to `touched` (everything after a relist, or when this
    /// subscriber fell behind), until `touched` is closed.
    pub(crate) fn touched(
        &self,
        touched: mpsc::UnboundedSender<Touched>,
    ) -> impl Future<Output = ()> + Send + 'static + use<K> {
        let mut changes = self.changes.subscribe();
        async move {
            loop {
                let touch = match changes.recv().await {
                    Ok(Change::Object(o)) => Touched::Namespace(o.namespace().unwrap_or_default()),
                    Ok(Change::All) | Err(broadcast::error::RecvError::Lagged(_)) => Touched::All,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if touched.send(touch).is_err() {
                    return;
                }
            }
        }
    }

    /// Every object changed (applied or deleted), once the cache shows the change; every cached
    /// object after a relist or when this subscriber fell behind. For a controller's trigger
    /// (kube-runtime's `owns_shared_stream`).
    pub(crate) fn objects(&self) -> impl Stream<Item = Arc<K>> + Send + 'static + use<K> {
        let changes = self.changes.subscribe();
        let store = self.store.clone();
        stream::unfold(changes, move |mut changes| {
            let store = store.clone();
            async move {
                let batch = match changes.recv().await {
                    Ok(Change::Object(o)) => vec![o],
                    Ok(Change::All) | Err(broadcast::error::RecvError::Lagged(_)) => store.state(),
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                Some((stream::iter(batch), changes))
            }
        })
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Api;
    use kube::api::{DeleteParams, PostParams};

    use super::*;

    use crate::test_support::{eventually, server};

    fn config_map(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    async fn next<T>(stream: &mut (impl Stream<Item = T> + Unpin)) -> T {
        tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap_or_else(|_| panic!("no change within 20 s"))
            .unwrap_or_else(|| panic!("the stream ended"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_subscriber_sees_each_change_once_the_cache_shows_it() {
        let (_dir, _server, client) = server().await;
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let (shared, watch) = shared(api.clone(), watcher::Config::default());
        let mut objects = std::pin::pin!(shared.objects());
        let (tx, mut touched) = mpsc::unbounded_channel();
        let forward = tokio::spawn(shared.touched(tx));
        let watch = tokio::spawn(watch);
        assert_eq!(touched.recv().await, Some(Touched::All), "the first list");
        // The subscriber takes the first list's end (the whole cache, empty yet) before the
        // create, or it would hand out `a` twice: from the cache, then as the change.
        let first = tokio::time::timeout(Duration::from_millis(200), objects.next()).await;
        assert!(first.is_err(), "the empty first list handed out an object");
        let pp = PostParams::default();
        api.create(&pp, &config_map("a"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let key = ObjectRef::new("a").within("default");
        let seen = next(&mut objects).await;
        assert_eq!(seen.name_any(), "a");
        assert!(
            shared.store().get(&key).is_some(),
            "the cache has what a subscriber was handed"
        );
        assert_eq!(touched.recv().await, Some(Touched::Namespace("default".into())));
        api.delete("a", &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let gone = next(&mut objects).await;
        assert_eq!(gone.name_any(), "a", "a deleted object reaches its subscribers");
        assert!(
            shared.store().get(&key).is_none(),
            "and the cache no longer has it"
        );
        watch.abort();
        forward.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_loop_waiting_for_the_first_list_wakes() {
        let (_dir, _server, client) = server().await;
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let (shared, watch) = shared(api, watcher::Config::default());
        // Three loops wait at once before the watch lists, as the node's loops do.
        let waiting: Vec<_> = (0..3).map(|_| tokio::spawn(shared.ready())).collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let watch = tokio::spawn(watch);
        for (i, loop_) in waiting.into_iter().enumerate() {
            let listed = tokio::time::timeout(Duration::from_secs(20), loop_)
                .await
                .unwrap_or_else(|_| panic!("loop {i} still waits 20 s after the first list"))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(listed, "loop {i}: the watch ended before it listed");
        }
        watch.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscriber_that_fell_behind_is_handed_the_whole_cache() {
        let (_dir, _server, client) = server().await;
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let (shared, watch) = shared_with_backlog(api.clone(), watcher::Config::default(), 2);
        let mut objects = std::pin::pin!(shared.objects());
        let watch = tokio::spawn(watch);
        assert!(shared.ready().await, "the first list");
        let pp = PostParams::default();
        for name in ["a", "b", "c", "d", "e"] {
            api.create(&pp, &config_map(name))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        // Six changes (the first list's end, five creates) into room for two: the subscriber
        // lost some, so it is handed every cached object instead.
        eventually("the cache to have all five", || async {
            (shared.store().state().len() == 5).then_some(())
        })
        .await;
        let mut names = std::collections::BTreeSet::new();
        while names.len() < 5 {
            names.insert(next(&mut objects).await.name_any());
        }
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["a", "b", "c", "d", "e"]);
        watch.abort();
    }
}
