//! An agent without `--pod-cidr` against a real API server (in-process): it registers its Node
//! without a range and gets the /24 node IPAM gives it; without an allocator it gives up after
//! its bounded wait with an error that says what to do; a node that has a range keeps it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use podvisor_core::net::Ipv4Cidr;
use podvisor_kubelet::cluster::node_status::{NodeFacts, PodCidrError, pod_cidr_from_api, register};
use podvisor_store::RedbStore;

async fn client() -> (kube::Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path().join("store.redb")).unwrap());
    let server = podvisor_apiserver::ApiServer::new(store, Default::default());
    server.bootstrap().await.unwrap();
    (kube::Client::new(server.handler(), "default"), dir)
}

fn facts(name: &str, pod_cidr: Option<&str>, dir: &tempfile::TempDir) -> NodeFacts {
    NodeFacts {
        name: name.into(),
        address: Some("192.0.2.30".into()),
        pod_cidr: pod_cidr.map(str::to_owned),
        data_dir: dir.path().to_owned(),
        labels: Default::default(),
        kubelet_port: None,
        max_pods: podvisor_kubelet::cluster::node_status::DEFAULT_MAX_PODS,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_a_pod_cidr_gets_the_range_node_ipam_gives_it() {
    let (client, dir) = client().await;
    let cluster = Ipv4Cidr::parse("10.66.0.0/16").unwrap();
    // The control plane's own node registers first, with the first /24.
    register(&client, &facts("server", Some("10.66.0.0/24"), &dir))
        .await
        .unwrap();
    let ipam = tokio::spawn(podvisor_controllers::node_ipam::run(client.clone(), cluster));
    let got = pod_cidr_from_api(&client, &facts("agent", None, &dir), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(got.to_string(), "10.66.1.0/24");
    let node = Api::<Node>::all(client.clone()).get("agent").await.unwrap();
    let spec = node.spec.unwrap_or_default();
    assert_eq!(spec.pod_cidrs, Some(vec!["10.66.1.0/24".to_owned()]));
    let addresses = node.status.and_then(|s| s.addresses).unwrap_or_default();
    assert!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == "192.0.2.30"),
        "registered with its address: {addresses:?}"
    );
    // Started again: the same range at once.
    let again = pod_cidr_from_api(&client, &facts("agent", None, &dir), Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(again, got);
    ipam.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_node_ipam_the_wait_ends_with_what_to_do() {
    let (client, dir) = client().await;
    let started = tokio::time::Instant::now();
    let error = pod_cidr_from_api(&client, &facts("lonely", None, &dir), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(error, PodCidrError::Timeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");
    assert_eq!(
        error.to_string(),
        "node lonely got no spec.podCIDR within 1s: is the control plane allocating node pod \
         CIDRs (podvisor node --cluster-cidr)? Or start the agent with --pod-cidr"
    );
    // The Node was registered meanwhile, without a range, for the allocator to find.
    let node = Api::<Node>::all(client.clone()).get("lonely").await.unwrap();
    assert_eq!(node.spec.and_then(|s| s.pod_cidr), None);
}
