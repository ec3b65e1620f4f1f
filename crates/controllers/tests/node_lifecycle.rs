//! The node lifecycle controller against a real API server, in-process, with short timings:
//! a node whose Lease is not renewed turns `Unknown` (`kubectl get nodes`: NotReady), gets the
//! `unreachable` taints, its pods turn not ready and are evicted when their toleration runs out.

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use podvisor_controllers::node_lifecycle::{self, NodeLifecycleConfig};
use serde_json::json;
use support::{eventually, server};

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// A Ready node as a kubelet registers it, with its Lease.
async fn ready_node(client: &Client, name: &str) {
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}, "status": {
        "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}}))
    .unwrap_or_else(|e| panic!("{e}"));
    let nodes = Api::<Node>::all(client.clone());
    let created = nodes
        .create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut with_status = created;
    with_status.status = node.status;
    nodes
        .replace_status(name, &PostParams::default(), &with_status)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    renew(client, name).await;
}

async fn renew(client: &Client, name: &str) {
    let leases = Api::<Lease>::namespaced(client.clone(), "kube-node-lease");
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
            "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now())}}))
        .unwrap_or_else(|e| panic!("{e}"));
    if leases.get_opt(name).await.ok().flatten().is_some() {
        leases
            .patch(name, &PatchParams::default(), &Patch::Merge(&lease))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    } else {
        leases
            .create(&PostParams::default(), &lease)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_turns_unknown_and_its_pods_are_evicted_after_their_toleration() {
    let (_dir, _server, client) = server().await;
    ready_node(&client, "alive").await;
    ready_node(&client, "lost").await;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
        "nodeName": "lost",
        "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 2}],
        "containers": [{"name": "c", "image": "x", "command": ["sleep", "1"]}]}}))
    .unwrap_or_else(|e| panic!("{e}"));
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The defaults of DefaultTolerationSeconds: not-ready added, unreachable kept as given.
    let tolerations = created.spec.and_then(|s| s.tolerations).unwrap_or_default();
    assert_eq!(tolerations.len(), 2, "{tolerations:?}");
    let mut running = pods.get("p").await.unwrap_or_else(|e| panic!("{e}"));
    running.status = Some(
        serde_json::from_value(json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]}))
        .unwrap_or_else(|e| panic!("{e}")),
    );
    pods.replace_status("p", &PostParams::default(), &running)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let config = NodeLifecycleConfig {
        monitor_period: Duration::from_millis(200),
        grace: Duration::from_secs(2),
        startup_grace: Duration::from_secs(2),
    };
    let controller = tokio::spawn(node_lifecycle::run(client.clone(), config));
    // "alive" keeps renewing its Lease; "lost" does not.
    let renewer = {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                renew(&client, "alive").await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let nodes = Api::<Node>::all(client.clone());
    let lost = eventually("the lost node Unknown", || async {
        let node = nodes.get("lost").await.ok()?;
        let ready = node
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready")?
            .clone();
        (ready.status == "Unknown").then_some((node, ready))
    })
    .await;
    assert_eq!(lost.1.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        lost.1.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    let taints = eventually("the unreachable taints", || async {
        let node = nodes.get("lost").await.ok()?;
        let taints = node.spec?.taints?;
        let keys: Vec<String> = taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect();
        (keys.len() == 2).then_some(keys)
    })
    .await;
    assert_eq!(
        taints,
        [
            "node.kubernetes.io/unreachable:NoSchedule",
            "node.kubernetes.io/unreachable:NoExecute"
        ]
    );
    let alive = nodes.get("alive").await.unwrap_or_else(|e| panic!("{e}"));
    let alive_ready = alive.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        alive_ready
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        "a renewing node stays Ready"
    );

    // Its pod: Ready=False, then evicted (Terminating, DisruptionTarget) after its 2 s.
    let evicted = eventually("the pod evicted", || async {
        let pod = pods.get("p").await.ok()?;
        pod.metadata.deletion_timestamp.is_some().then_some(pod)
    })
    .await;
    let conditions = evicted.status.and_then(|s| s.conditions).unwrap_or_default();
    let find = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    assert_eq!(find("Ready").map(|c| c.0).as_deref(), Some("False"));
    assert_eq!(
        find("DisruptionTarget"),
        Some(("True".into(), Some("DeletionByTaintManager".into())))
    );
    renewer.abort();
    controller.abort();
}
