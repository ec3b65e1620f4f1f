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

/// `--max-pods`: a pod created bound to the node by name once it is full is rejected by the
/// node (phase Failed, reason OutOfpods), as the kubelet rejects it; the one within runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_bound_by_name_to_a_full_node_fails_out_of_pods() {
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.97.{}.0/24", std::process::id() % 250);
    let mut config = support::e2e_config(data.path(), &cidr);
    config.services.nft_table = format!("podvisor_maxpods_{}", std::process::id());
    config.max_pods = 1;
    let node_name = config.node_name.clone();
    let node = RunningNode::start_with(config).await;
    let kubeconfig = Kubeconfig::read_from(&node.kubeconfig).expect("kubeconfig readable");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    let bound = |name: &str| -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node_name, "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "app", "image": "host", "command": ["sleep", "600"]}]}
        }))
        .unwrap()
    };
    let status_of = |name: &'static str| {
        let pods = pods.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(60), async {
                loop {
                    let pod = pods.get(name).await.expect("get");
                    let status = pod.status.unwrap_or_default();
                    if matches!(status.phase.as_deref(), Some("Running" | "Failed")) {
                        return status;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
            .await
            .expect("the pod runs or fails within a minute")
        }
    };
    pods.create(&PostParams::default(), &bound("first"))
        .await
        .expect("create");
    assert_eq!(status_of("first").await.phase.as_deref(), Some("Running"));
    pods.create(&PostParams::default(), &bound("second"))
        .await
        .expect("create");
    let second = status_of("second").await;
    assert_eq!(second.phase.as_deref(), Some("Failed"));
    assert_eq!(second.reason.as_deref(), Some("OutOfpods"));
    assert_eq!(
        second.message.as_deref(),
        Some("Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 1, capacity: 1")
    );
    node.stop().await;
}
