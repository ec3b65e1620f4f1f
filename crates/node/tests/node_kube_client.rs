//! The `kube` crate, the Rust Kubernetes client, against the node's API: list, watch, create
//! and delete pods — client libraries work unchanged.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use support::RunningNode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_lists_watches_creates_and_deletes_pods() {
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.98.{}.0/24", std::process::id() % 250);
    let node = RunningNode::start(data.path(), &cidr, "kube").await;
    let kubeconfig = Kubeconfig::read_from(&node.kubeconfig).expect("kubeconfig readable");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");

    let initial = pods.list(&ListParams::default()).await.expect("list");
    assert!(initial.items.is_empty());
    let version = initial.metadata.resource_version.clone().unwrap_or_default();
    let mut events = pods
        .watch(&WatchParams::default().timeout(30), &version)
        .await
        .expect("watch")
        .boxed();

    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "from-kube-rs", "labels": {"client": "kube"}},
        "spec": {"terminationGracePeriodSeconds": 2,
            "containers": [{"name": "app", "image": "host", "command": ["sleep", "600"]}]}
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.expect("create");
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

    // The watch sees it added, then running on the node.
    let running = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(event) = events.next().await {
            match event.expect("watch event") {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                    let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
                    if phase == "Running" {
                        return true;
                    }
                }
                _ => {}
            }
        }
        false
    })
    .await
    .expect("the pod runs within a minute");
    assert!(running);
    let listed = pods
        .list(&ListParams::default().labels("client=kube"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);

    pods.delete("from-kube-rs", &DeleteParams::default())
        .await
        .expect("delete");
    let gone = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if pods.get_opt("from-kube-rs").await.unwrap().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the deleted pod is removed once it stopped");
    node.stop().await;
}
