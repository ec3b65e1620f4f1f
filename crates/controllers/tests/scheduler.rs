//! The scheduler against a real API server, in-process: what `kubectl get pods -o wide` and
//! `kubectl describe pod` show (the node a pod landed on, `PodScheduled`, the events).

mod support;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::{eventually, server};

async fn add_node(client: &Client, name: &str, cpu: &str, labels: serde_json::Value) {
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}}}))
    .unwrap_or_else(|e| panic!("{e}"));
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn add_pod(client: &Client, name: &str, cpu: &str, selector: serde_json::Value) {
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
        "nodeSelector": selector,
        "containers": [{"name": "c", "image": "x", "command": ["sleep", "1"],
            "resources": {"requests": {"cpu": cpu}}}]}}))
    .unwrap_or_else(|e| panic!("{e}"));
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn node_of(client: &Client, pod: &str) -> Option<String> {
    let pod = Api::<Pod>::namespaced(client.clone(), "default")
        .get(pod)
        .await
        .ok()?;
    pod.spec?.node_name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_spread_by_requests_and_a_pod_that_fits_nowhere_says_why_until_a_node_fits() {
    let (_dir, _server, client) = server().await;
    add_node(&client, "a", "2", json!({"disk": "ssd"})).await;
    add_node(&client, "b", "2", json!({})).await;
    add_node(&client, "c", "2", json!({})).await;
    let scheduler = tokio::spawn(podvisor_controllers::scheduler::run(client.clone()));

    // Least allocated first: three 1-cpu pods land on three different nodes.
    for name in ["p1", "p2", "p3"] {
        add_pod(&client, name, "1", json!({})).await;
        eventually("the pod to be bound", || node_of(&client, name)).await;
    }
    let mut nodes = Vec::new();
    for name in ["p1", "p2", "p3"] {
        nodes.push(node_of(&client, name).await.unwrap_or_default());
    }
    nodes.sort();
    assert_eq!(nodes, ["a", "b", "c"]);

    // 2 cpu on an ssd node: node a has 1 cpu left, b and c are not ssd.
    add_pod(&client, "big", "2", json!({"disk": "ssd"})).await;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let want = "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node \
                affinity/selector. no new claims to deallocate, preemption: 0/3 nodes are available: 1 No \
                preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.";
    let condition = eventually("PodScheduled=False", || async {
        let pod = pods.get("big").await.ok()?;
        let c = pod
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled")?;
        (c.status == "False").then_some(c)
    })
    .await;
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(condition.message.as_deref(), Some(want));
    let events = Api::<Event>::namespaced(client.clone(), "default");
    let failed = eventually("a FailedScheduling event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
    })
    .await;
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert_eq!(failed.note.as_deref(), Some(want));
    assert_eq!(failed.reporting_controller.as_deref(), Some("default-scheduler"));
    assert_eq!(failed.regarding.and_then(|r| r.name).as_deref(), Some("big"));

    // A node that fits arrives: the pod is retried and bound there, PodScheduled=True.
    add_node(&client, "d", "4", json!({"disk": "ssd"})).await;
    let node = eventually("the pending pod to be bound", || node_of(&client, "big")).await;
    assert_eq!(node, "d");
    let scheduled = pods.get("big").await.unwrap_or_else(|e| panic!("{e}"));
    let condition = scheduled
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap_or_else(|| panic!("no PodScheduled condition"));
    assert_eq!(condition.status, "True");
    let assigned = eventually("a Scheduled event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("Scheduled")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("big")
        })
    })
    .await;
    assert_eq!(
        assigned.note.as_deref(),
        Some("Successfully assigned default/big to d")
    );
    scheduler.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cordoned_node_gets_no_pods_and_pods_naming_another_scheduler_wait() {
    let (_dir, _server, client) = server().await;
    let cordoned: Node =
        serde_json::from_value(json!({"metadata": {"name": "a"}, "spec": {"unschedulable": true},
        "status": {"allocatable": {"cpu": "8", "memory": "8Gi", "pods": "110"}}}))
        .unwrap_or_else(|e| panic!("{e}"));
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &cordoned)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    add_node(&client, "b", "1", json!({})).await;
    let scheduler = tokio::spawn(podvisor_controllers::scheduler::run(client.clone()));
    add_pod(&client, "p", "100m", json!({})).await;
    assert_eq!(
        eventually("the pod to be bound", || node_of(&client, "p")).await,
        "b"
    );
    let other: Pod = serde_json::from_value(json!({"metadata": {"name": "other"}, "spec": {
        "schedulerName": "my-scheduler", "containers": [{"name": "c", "image": "x", "command": ["sleep", "1"]}]}}))
    .unwrap_or_else(|e| panic!("{e}"));
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &other)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    add_pod(&client, "after", "100m", json!({})).await;
    eventually("a later pod to be bound", || node_of(&client, "after")).await;
    let other = pods.get("other").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        other.spec.and_then(|s| s.node_name),
        None,
        "another scheduler's pod is left alone"
    );
    assert!(
        other
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .all(|c| c.type_ != "PodScheduled"),
        "and gets no condition from this scheduler"
    );
    scheduler.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_pod_is_not_scheduled_when_the_scheduler_shares_the_managers_pods() {
    let (_dir, _server, client) = server().await;
    add_node(&client, "a", "4", json!({})).await;
    // A pod that failed before it was scheduled (as one rejected by admission would).
    add_pod(&client, "gave-up", "1", json!({})).await;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let mut gave_up = pods.get("gave-up").await.unwrap_or_else(|e| panic!("{e}"));
    gave_up.status.get_or_insert_default().phase = Some("Failed".into());
    pods.replace_status("gave-up", &PostParams::default(), &gave_up)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Every loop in one process, no leader election: the scheduler reads the controller
    // manager's watch of every pod, finished ones included.
    let controllers = podvisor_controllers::Controllers::spawn(&client, &Default::default());
    add_pod(&client, "pending", "1", json!({})).await;
    eventually("the pending pod to be bound", || node_of(&client, "pending")).await;
    assert_eq!(node_of(&client, "gave-up").await, None, "a Failed pod was bound");
    controllers.stop().await;
}
