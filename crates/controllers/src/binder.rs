//! Binding without a scheduler: every pod that has no node is bound to the one node, through
//! `pods/{name}/binding` as a scheduler binds. The scheduler of issue #15 (resources, node
//! selectors, taints) replaces this loop when there is more than one node.

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::debug;

/// Binds every unassigned pod to `node` until dropped.
pub async fn run(client: Client, node: String) {
    let unassigned = watcher::Config::default().fields("spec.nodeName=");
    let pods = watcher(Api::<Pod>::all(client.clone()), unassigned)
        .default_backoff()
        .applied_objects();
    let mut pods = std::pin::pin!(pods);
    while let Some(pod) = pods.next().await {
        match pod {
            Ok(pod) => bind(&client, &pod, &node).await,
            Err(e) => debug!(error = %e, "watching unassigned pods failed; relisting"),
        }
    }
}

/// Binds `pod` to `node`; a pod that is gone, deleted or bound meanwhile is left alone.
async fn bind(client: &Client, pod: &Pod, node: &str) {
    if pod.metadata.deletion_timestamp.is_some() {
        return;
    }
    let Some(ns) = pod.namespace() else { return };
    let name = pod.name_any();
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_owned()),
            ..Default::default()
        },
    };
    let api = Api::<Pod>::namespaced(client.clone(), &ns);
    match api
        .create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding)
        .await
    {
        Ok(_) => debug!(pod = %name, node, "bound"),
        Err(e) => debug!(error = %e, pod = %name, "binding failed (the pod changed meanwhile)"),
    }
}
