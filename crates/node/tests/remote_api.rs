//! The node's control loops and its kubelet side against a second API server, over HTTPS with
//! the CA and bearer token of a kubeconfig: the same code that runs in-process in the node runs
//! unchanged against a remote API server (what an agent on another machine does).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use podvisor_apiserver::ApiServer;
use podvisor_controllers::{Controllers, ControllersConfig};
use podvisor_kubelet::cluster::PodChange;
use podvisor_kubelet::cluster::node_status::{NodeFacts, heartbeat};
use podvisor_kubelet::cluster::pods::follow_pods;
use serde_json::json;
use support::eventually;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_loops_and_the_kubelet_side_work_against_a_remote_api_over_https() {
    // A second API server: its own store, TLS with a bearer token, on a socket.
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let parts = podvisor_node::api::open(dir.path(), listen, true).await.unwrap();
    let store = parts.store.clone();
    let parts = parts.endpoint;
    let pki = parts.pki.as_ref().expect("TLS asked for").token().to_owned();
    let server = ApiServer::new(store.clone(), Default::default())
        .with_tls(parts.server_tls.clone().expect("a TLS config"))
        .with_bearer_tokens(vec![pki]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(async move {
        server
            .serve(parts.listener, async {
                let _ = stopped.await;
            })
            .await
    });
    let kubeconfig = podvisor_apiserver::setup::write_kubeconfig(
        &dir.path().join("kubeconfig"),
        &parts.url,
        parts.pki.as_ref(),
    )
    .unwrap();
    assert!(parts.url.starts_with("https://"), "{}", parts.url);

    // A client from the kubeconfig alone, as an agent on another machine has.
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = Client::try_from(config).unwrap();
    let ready = eventually("the API over HTTPS", || async {
        Api::<Pod>::namespaced(client.clone(), "default")
            .list(&Default::default())
            .await
            .ok()
    })
    .await;
    assert!(ready.items.is_empty());

    let controllers = Controllers::spawn(
        &client,
        &ControllersConfig {
            kubernetes_service: Some(("10.96.0.1".parse().unwrap(), parts.addr)),
            ..Default::default()
        },
    );
    let (changes_tx, mut changes) = mpsc::unbounded_channel();
    let pods_task = tokio::spawn(follow_pods(client.clone(), "remote-node".into(), changes_tx));
    let facts = NodeFacts {
        name: "remote-node".into(),
        address: Some("192.0.2.20".into()),
        pod_cidr: Some("10.88.0.0/16".into()),
        data_dir: dir.path().to_owned(),
        labels: BTreeMap::new(),
        kubelet_port: None,
        max_pods: podvisor_kubelet::cluster::node_status::DEFAULT_MAX_PODS,
    };
    let heartbeat_task = tokio::spawn(heartbeat(
        client.clone(),
        facts,
        podvisor_kubelet::Clock::system(),
        std::sync::Arc::new(podvisor_runtime::LinuxHost),
    ));

    let services = Api::<Service>::namespaced(client.clone(), "default");
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))
    .unwrap();
    services.create(&PostParams::default(), &service).await.unwrap();
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web-0", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "x", "command": ["sleep", "1"]}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    // Bound by the scheduler to the only (registered) node, then handed to this node's kubelet side by its pod watch.
    let handed = tokio::time::timeout(Duration::from_secs(15), changes.recv())
        .await
        .expect("the pod reaches the node in time")
        .expect("the watch is open");
    let PodChange::Apply(handed) = handed else {
        panic!("expected a pod to run")
    };
    assert_eq!(handed.metadata.name.as_deref(), Some("web-0"));
    assert_eq!(
        handed.spec.and_then(|s| s.node_name).as_deref(),
        Some("remote-node")
    );

    // The endpoint controller made the Service's Endpoints; the kubernetes Service exists.
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), "default");
    eventually("the Service's Endpoints", || async {
        endpoints.get_opt("web").await.ok()?
    })
    .await;
    eventually("the kubernetes Service", || async {
        services.get_opt("kubernetes").await.ok()?
    })
    .await;

    // The heartbeat registered the Node and holds its Lease.
    let node = eventually("the Node", || async {
        Api::<Node>::all(client.clone())
            .get_opt("remote-node")
            .await
            .ok()?
    })
    .await;
    let ready = node.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        ready.iter().any(|c| c.type_ == "Ready" && c.status == "True"),
        "{ready:?}"
    );
    let lease = eventually("the node Lease", || async {
        Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
            .get_opt("remote-node")
            .await
            .ok()?
    })
    .await;
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("remote-node")
    );

    controllers.stop().await;
    pods_task.abort();
    heartbeat_task.abort();
    let _ = stop.send(());
    serve.await.unwrap().unwrap();
}
