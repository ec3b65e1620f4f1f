//! Node IPAM against a real API server, in-process: what `kubectl get nodes -o
//! custom-columns=NAME:.metadata.name,CIDR:.spec.podCIDR` shows as nodes register, and the
//! `CIDRNotAvailable` event `kubectl get events` shows when the cluster CIDR is full.

mod support;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use podvisor_core::net::Ipv4Cidr;
use serde_json::json;
use support::{eventually, server};

async fn add_node(client: &Client, name: &str, pod_cidr: Option<&str>) {
    let mut node = json!({"metadata": {"name": name}});
    if let Some(cidr) = pod_cidr {
        node["spec"] = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
    }
    let node: Node = serde_json::from_value(node).unwrap_or_else(|e| panic!("{e}"));
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The node's (podCIDR, podCIDRs) once it has them.
async fn cidr_of(client: &Client, name: &str) -> Option<(String, Vec<String>)> {
    let node = Api::<Node>::all(client.clone()).get(name).await.ok()?;
    let spec = node.spec?;
    Some((spec.pod_cidr?, spec.pod_cidrs?))
}

fn cidr(s: &str) -> Ipv4Cidr {
    Ipv4Cidr::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_ranges_keep_their_own_and_a_full_cluster_cidr_says_so() {
    let (_dir, _server, client) = server().await;
    // A /22 holds four /24s; "own" registered with the first one (a kubelet's --pod-cidr).
    add_node(&client, "own", Some("10.77.0.0/24")).await;
    add_node(&client, "outside", Some("10.99.0.0/24")).await;
    let controller = tokio::spawn(podvisor_controllers::node_ipam::run(
        client.clone(),
        cidr("10.77.0.0/22"),
    ));
    for name in ["a", "b", "c"] {
        add_node(&client, name, None).await;
    }
    let mut got = Vec::new();
    for name in ["a", "b", "c"] {
        let (single, list) = eventually("a pod CIDR", || cidr_of(&client, name)).await;
        assert_eq!(list, std::slice::from_ref(&single), "podCIDRs holds podCIDR");
        got.push(single);
    }
    got.sort();
    assert_eq!(got, ["10.77.1.0/24", "10.77.2.0/24", "10.77.3.0/24"]);
    assert_eq!(
        cidr_of(&client, "own").await.map(|c| c.0).as_deref(),
        Some("10.77.0.0/24"),
        "a node's own range is kept"
    );
    assert_eq!(
        cidr_of(&client, "outside").await.map(|c| c.0).as_deref(),
        Some("10.99.0.0/24"),
        "a range outside the cluster CIDR is left alone"
    );

    // Full: the fifth node waits with a Warning event, as kube-controller-manager says it.
    add_node(&client, "d", None).await;
    let events = Api::<Event>::all(client.clone());
    let event = eventually("the CIDRNotAvailable event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("CIDRNotAvailable")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("d")
        })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(
        event.note.as_deref(),
        Some("Node d status is now: CIDRNotAvailable")
    );
    assert_eq!(cidr_of(&client, "d").await, None, "no range for d yet");

    // A node leaves: its range goes to the one waiting.
    let b_range = cidr_of(&client, "b").await.map(|c| c.0);
    Api::<Node>::all(client.clone())
        .delete("b", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (d_range, _) = eventually("d's range", || cidr_of(&client, "d")).await;
    assert_eq!(Some(d_range), b_range, "the freed range");
    controller.abort();
}
