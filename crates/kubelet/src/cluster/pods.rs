//! The pods bound to this node, from a watch on `spec.nodeName` (the kubelet's API pod source).

use std::collections::HashSet;

use futures_util::StreamExt;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use podvisor_core::corev1::Pod;
use tokio::sync::mpsc;
use tracing::debug;

use super::PodChange;

/// Watches the pods bound to `node_name` and sends them to `changes`: each pod not in a
/// terminal phase as [`PodChange::Apply`], each that left the API as [`PodChange::Gone`].
/// Relists (with back-off) after watch errors; runs until `changes` is closed.
pub async fn follow_pods(client: Client, node_name: String, changes: mpsc::UnboundedSender<PodChange>) {
    let bound = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    // The kubelet never reads a pod's managedFields (its status writes start from the API's
    // current object), and they are often the larger part of a pod: each copy the pod's worker
    // keeps or hands on would carry them.
    let events = watcher(Api::<Pod>::all(client.clone()), bound)
        .default_backoff()
        .modify(|pod| pod.metadata.managed_fields = None);
    let mut events = std::pin::pin!(events);
    // The pods running here, and those seen in the relist under way.
    let mut known: HashSet<String> = HashSet::new();
    let mut relisted: HashSet<String> = HashSet::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                debug!(error = %e, "pod watch failed; relisting");
                continue;
            }
        };
        match event {
            watcher::Event::Init => relisted.clear(),
            watcher::Event::InitApply(pod) => {
                if let Some(uid) = handle(&client, pod, &changes).await {
                    relisted.insert(uid);
                }
            }
            watcher::Event::InitDone => {
                for uid in known.difference(&relisted) {
                    let _ = changes.send(PodChange::Gone { uid: uid.clone() });
                }
                known = std::mem::take(&mut relisted);
            }
            watcher::Event::Apply(pod) => {
                if let Some(uid) = handle(&client, pod, &changes).await {
                    known.insert(uid);
                }
            }
            watcher::Event::Delete(pod) => {
                let uid = pod.metadata.uid.unwrap_or_default();
                if known.remove(&uid) {
                    let _ = changes.send(PodChange::Gone { uid });
                }
            }
        }
        if changes.is_closed() {
            return;
        }
    }
}

/// Forwards one pod; returns its UID if it runs here (not in a terminal phase).
async fn handle(client: &Client, pod: Pod, changes: &mpsc::UnboundedSender<PodChange>) -> Option<String> {
    let uid = pod.metadata.uid.clone()?;
    // A pod in a terminal phase is done: the kubelet never runs it again, and its status
    // (written when it finished) stays as it is, whatever else changes in the object.
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if !matches!(phase, Some("Succeeded" | "Failed")) {
        let _ = changes.send(PodChange::Apply(Box::new(pod)));
        return Some(uid);
    }
    if pod.metadata.deletion_timestamp.is_some() {
        // Finished and deleted (its removal was interrupted, e.g. by a node restart): nothing
        // runs any more, so the object can go, as the kubelet's status manager removes it.
        let ns = pod.namespace().unwrap_or_default();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        if let Err(e) = Api::<Pod>::namespaced(client.clone(), &ns)
            .delete(&pod.name_any(), &params)
            .await
        {
            debug!(error = %e, "removing a finished deleted pod failed");
        }
    }
    // No worker needs to hear of it again (a finished worker ignores a stop).
    None
}
