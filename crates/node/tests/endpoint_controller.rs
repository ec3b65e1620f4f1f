//! The endpoint controller (podvisor-controllers) against a real API server over its store:
//! Endpoints and EndpointSlices follow Services, pod readiness and deletions, and nothing is
//! rewritten when nothing changed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use podvisor_store::{ObjectKey, Preconditions, RedbStore, Store};
use serde_json::{Value, json};

/// A client of an API server over `store`, in-process.
fn client_of(store: &Arc<dyn Store>) -> kube::Client {
    let server = podvisor_apiserver::ApiServer::new(store.clone(), Default::default());
    kube::Client::new(server.handler(), "default")
}

fn pod(name: &str, ip: &str, ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

async fn wait_for(
    store: &Arc<dyn Store>,
    key: &ObjectKey,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let current = store.get(key).await.map(|v| v.object).unwrap_or(Value::Null);
        if check(&current) {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last: {current:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ready_ips(endpoints: &Value) -> Vec<String> {
    endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["addresses"].as_array().into_iter().flatten())
        .filter_map(|a| a["ip"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn endpoints_follow_readiness_and_services() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path().join("store.redb")).unwrap());
    store
        .create(
            &ObjectKey::new("namespaces", "", "default"),
            json!({"metadata": {"name": "default"}}),
        )
        .await
        .unwrap();
    let controller = tokio::spawn(podvisor_controllers::endpoints::run(client_of(&store)));
    store
        .create(
            &ObjectKey::new("services", "default", "web"),
            json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "uid": "svc"},
        "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.20",
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}),
        )
        .await
        .unwrap();
    store
        .create(
            &ObjectKey::new("pods", "default", "a"),
            pod("a", "10.88.0.2", true),
        )
        .await
        .unwrap();
    store
        .create(
            &ObjectKey::new("pods", "default", "b"),
            pod("b", "10.88.0.3", false),
        )
        .await
        .unwrap();

    let ep_key = ObjectKey::new("endpoints", "default", "web");
    // Level-triggered from caches: a first pass may have seen only one of the pods.
    let ep = wait_for(&store, &ep_key, "a ready and a not-ready address", |e| {
        ready_ips(e) == ["10.88.0.2"] && e["subsets"][0]["notReadyAddresses"][0]["ip"] == "10.88.0.3"
    })
    .await;
    assert_eq!(ep["subsets"][0]["notReadyAddresses"][0]["ip"], "10.88.0.3");
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 8080);

    // b becomes ready: it moves into addresses.
    let current = store.get(&ObjectKey::new("pods", "default", "b")).await.unwrap();
    store
        .update(
            &ObjectKey::new("pods", "default", "b"),
            pod("b", "10.88.0.3", true),
            Preconditions {
                resource_version: Some(current.revision),
                uid: None,
            },
        )
        .await
        .unwrap();
    let ep = wait_for(&store, &ep_key, "two ready addresses", |e| {
        ready_ips(e).len() == 2
    })
    .await;
    let revision = ep["metadata"]["resourceVersion"].clone();

    // An unrelated change of the namespace rewrites nothing.
    store.create(&ObjectKey::new("pods", "default", "other"), json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "other", "namespace": "default", "labels": {"app": "other"}}, "spec": {"containers": []}})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store.get(&ep_key).await.unwrap().object["metadata"]["resourceVersion"],
        revision,
        "no needless write"
    );

    let slices = store
        .list(
            "discovery.k8s.io/endpointslices",
            Some("default"),
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(slices.items.len(), 1);
    assert_eq!(slices.items[0].object["endpoints"].as_array().unwrap().len(), 2);

    // The Service goes: so do its Endpoints and slices.
    store
        .delete(
            &ObjectKey::new("services", "default", "web"),
            Preconditions::default(),
        )
        .await
        .unwrap();
    wait_for(&store, &ep_key, "the endpoints to go", Value::is_null).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store
        .list(
            "discovery.k8s.io/endpointslices",
            Some("default"),
            Default::default(),
        )
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(Instant::now() < deadline, "slices not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    controller.abort();
}

#[tokio::test]
async fn a_target_port_no_pod_exposes_gives_no_endpoints_and_a_warning_event() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path().join("store.redb")).unwrap());
    store
        .create(
            &ObjectKey::new("namespaces", "", "default"),
            json!({"metadata": {"name": "default"}}),
        )
        .await
        .unwrap();
    let controller = tokio::spawn(podvisor_controllers::endpoints::run(client_of(&store)));
    store
        .create(
            &ObjectKey::new("services", "default", "web"),
            json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "uid": "svc"},
        "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.20",
            "ports": [{"name": "http", "port": 80, "targetPort": "https", "protocol": "TCP"}]}}),
        )
        .await
        .unwrap();
    store
        .create(
            &ObjectKey::new("pods", "default", "a"),
            pod("a", "10.88.0.2", true),
        )
        .await
        .unwrap();
    let ep = wait_for(
        &store,
        &ObjectKey::new("endpoints", "default", "web"),
        "the endpoints object",
        |e| !e.is_null(),
    )
    .await;
    assert!(
        ep["subsets"].is_null(),
        "no endpoints for an unresolvable port: {ep:#}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = store
            .list("events", Some("default"), Default::default())
            .await
            .unwrap();
        if let Some(e) = events
            .items
            .iter()
            .find(|e| e.object["reason"] == "FailedToResolveTargetPort")
        {
            assert_eq!(e.object["involvedObject"]["kind"], "Service");
            assert!(
                e.object["message"].as_str().unwrap().contains("\"https\""),
                "{:#}",
                e.object
            );
            break;
        }
        assert!(Instant::now() < deadline, "no warning event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    controller.abort();
}

#[tokio::test]
async fn deleted_or_changed_endpoints_and_slices_are_put_back() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path().join("store.redb")).unwrap());
    store
        .create(
            &ObjectKey::new("namespaces", "", "default"),
            json!({"metadata": {"name": "default"}}),
        )
        .await
        .unwrap();
    let controller = tokio::spawn(podvisor_controllers::endpoints::run(client_of(&store)));
    store
        .create(
            &ObjectKey::new("services", "default", "web"),
            json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "uid": "svc"},
        "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.21",
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}),
        )
        .await
        .unwrap();
    store
        .create(
            &ObjectKey::new("pods", "default", "a"),
            pod("a", "10.88.0.2", true),
        )
        .await
        .unwrap();
    let ep_key = ObjectKey::new("endpoints", "default", "web");
    let has_a = |e: &Value| ready_ips(e) == ["10.88.0.2"];
    wait_for(&store, &ep_key, "the endpoints", has_a).await;
    let slice_name = || async {
        store
            .list(
                "discovery.k8s.io/endpointslices",
                Some("default"),
                Default::default(),
            )
            .await
            .unwrap()
            .items
            .first()
            .and_then(|s| s.object["metadata"]["name"].as_str().map(str::to_owned))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let name = loop {
        if let Some(name) = slice_name().await {
            break name;
        }
        assert!(Instant::now() < deadline, "no slice");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let slice_key = ObjectKey::new("discovery.k8s.io/endpointslices", "default", name);
    let slice_has_a = |s: &Value| s["endpoints"][0]["addresses"][0] == "10.88.0.2";

    // Deleted by a user: both come back.
    store.delete(&ep_key, Preconditions::default()).await.unwrap();
    wait_for(&store, &ep_key, "the endpoints to come back", has_a).await;
    store.delete(&slice_key, Preconditions::default()).await.unwrap();
    wait_for(&store, &slice_key, "the slice to come back", slice_has_a).await;

    // Changed by a user: put right again.
    let current = store.get(&slice_key).await.unwrap();
    let mut changed = current.object.clone();
    changed["endpoints"] = json!([]);
    store
        .update(
            &slice_key,
            changed,
            Preconditions {
                resource_version: Some(current.revision),
                uid: None,
            },
        )
        .await
        .unwrap();
    let restored = wait_for(&store, &slice_key, "the slice to be restored", slice_has_a).await;

    // Its own writes cause no further writes: the slice stays as it is.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store.get(&slice_key).await.unwrap().object["metadata"]["resourceVersion"],
        restored["metadata"]["resourceVersion"]
    );
    controller.abort();
}
