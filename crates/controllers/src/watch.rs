//! Reflectors that say what changed: each follows one resource into a cache (kube-runtime's
//! watcher and reflector, relisting with back-off after errors) and reports the namespace of
//! every change, so a control loop knows what to look at again.

use std::fmt::Debug;

use futures_util::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::mpsc;
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
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(lighten)
        .reflect(writer);
    let task = async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let touch = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => {
                    Touched::Namespace(o.namespace().unwrap_or_default())
                }
                Ok(watcher::Event::InitDone) => Touched::All,
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                Err(e) => {
                    debug!(error = %e, "watch failed; relisting after a back-off");
                    continue;
                }
            };
            if touched.send(touch).is_err() {
                return;
            }
        }
    };
    (reader, task)
}
