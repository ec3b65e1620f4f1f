//! The control loops against a real API server, through its in-process handler: what a user
//! would see with kubectl (pods bound, Endpoints following readiness, the `kubernetes` Service
//! put back, a deleted namespace emptied and removed).

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, NamespaceCondition, Node, Pod, PodCondition, PodStatus, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use podvisor_controllers::{Controllers, ControllersConfig};
use serde_json::json;
use support::{eventually, server};

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_and_endpoints_follow_readiness() {
    let (_dir, _server, client) = server().await;
    let config = ControllersConfig {
        kubernetes_service: None,
        ..Default::default()
    };
    let node: Node = from_json(json!({"metadata": {"name": "node-1"},
        "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}}));
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let controllers = Controllers::spawn(&client, &config);
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let services = Api::<Service>::namespaced(client.clone(), "default");
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), "default");
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let service: Service = from_json(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }));
    services
        .create(&pp, &service)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pod: Pod = from_json(json!({
        "metadata": {"name": "web-1", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1000"]}]}
    }));
    pods.create(&pp, &pod).await.unwrap_or_else(|e| panic!("{e}"));

    // Bound through pods/binding: spec.nodeName and PodScheduled.
    let bound = eventually("the pod to be bound", || async {
        let pod = pods.get("web-1").await.ok()?;
        pod.spec.as_ref()?.node_name.as_ref()?;
        Some(pod)
    })
    .await;
    assert_eq!(
        bound.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("node-1")
    );
    let scheduled = bound
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten();
    assert!(
        scheduled
            .into_iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );

    // Not ready yet: no ready address. Then the pod becomes Ready, with an IP.
    let mut ready = bound;
    ready.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some("10.88.0.7".into()),
        pod_ips: Some(vec![k8s_openapi::api::core::v1::PodIP {
            ip: "10.88.0.7".into(),
        }]),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    pods.replace_status("web-1", &pp, &ready)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("a ready address in the Endpoints", || async {
        let ep = endpoints.get("web").await.ok()?;
        let subset = ep.subsets?.into_iter().next()?;
        let address = subset.addresses?.into_iter().next()?;
        (address.ip == "10.88.0.7" && subset.ports?.first()?.port == 8080).then_some(())
    })
    .await;
    eventually("a ready endpoint in the EndpointSlice", || async {
        let list = slices.list(&Default::default()).await.ok()?;
        let slice = list.items.into_iter().find(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .map(String::as_str)
                == Some("web")
        })?;
        let endpoint = slice.endpoints.first()?;
        (endpoint.addresses == ["10.88.0.7"] && endpoint.conditions.as_ref()?.ready == Some(true))
            .then_some(())
    })
    .await;

    // Someone deletes the Endpoints: they are put back.
    endpoints
        .delete("web", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the Endpoints to be put back", || async {
        endpoints.get("web").await.ok()
    })
    .await;

    // The Service goes: its Endpoints and slices go with it.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the Endpoints to go", || async {
        endpoints.get_opt("web").await.ok()?.is_none().then_some(())
    })
    .await;
    eventually("the managed slices to go", || async {
        slices
            .list(&Default::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    controllers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_pod_cannot_be_bound_again() {
    let (_dir, _server, client) = server().await;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let pod: Pod = from_json(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let binding = |node: &str| {
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    };
    let first = pods
        .create_subresource::<_, serde_json::Value>("binding", "p", &PostParams::default(), &binding("a"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first["status"], "Success");
    let again = pods
        .create_subresource::<_, serde_json::Value>("binding", "p", &PostParams::default(), &binding("b"))
        .await;
    match again {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 409);
            assert_eq!(
                e.message,
                "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"a\""
            );
        }
        other => panic!("a second binding must conflict, got {other:?}"),
    }
    let bound = pods.get("p").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bound.spec.and_then(|s| s.node_name).as_deref(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_service_is_put_back() {
    let (_dir, _server, client) = server().await;
    let api = "127.0.0.1:6443".parse().unwrap_or_else(|e| panic!("{e}"));
    let config = ControllersConfig {
        kubernetes_service: Some(("10.96.0.1".parse().unwrap_or_else(|e| panic!("{e}")), api)),
        ..Default::default()
    };
    let controllers = Controllers::spawn(&client, &config);
    let services = Api::<Service>::namespaced(client.clone(), "default");
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), "default");
    let cluster_ip = || async { services.get("kubernetes").await.ok()?.spec?.cluster_ip };
    eventually("the kubernetes Service", || async { cluster_ip().await }).await;
    assert_eq!(cluster_ip().await.as_deref(), Some("10.96.0.1"));
    services
        .delete("kubernetes", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the kubernetes Service back", || async { cluster_ip().await }).await;
    // The Endpoints come back with the Service (the keeper writes both).
    let mut changed = eventually("the kubernetes Endpoints back", || async {
        endpoints.get("kubernetes").await.ok()
    })
    .await;
    changed.subsets = None;
    endpoints
        .replace("kubernetes", &PostParams::default(), &changed)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the kubernetes Endpoints fixed", || async {
        let port = endpoints
            .get("kubernetes")
            .await
            .ok()?
            .subsets?
            .first()?
            .ports
            .as_ref()?
            .first()?
            .port;
        (port == 6443).then_some(())
    })
    .await;
    controllers.stop().await;
}

/// The `type` condition of `namespace`, if any.
fn condition(namespace: &Namespace, type_: &str) -> Option<NamespaceCondition> {
    namespace
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_terminates_its_contents_through_their_normal_paths() {
    let (_dir, _server, client) = server().await;
    let config = ControllersConfig {
        kubernetes_service: None,
        ..Default::default()
    };
    let controllers = Controllers::spawn(&client, &config);
    let namespaces = Api::<Namespace>::all(client.clone());
    let pp = PostParams::default();
    let ns = |name: &str| -> Namespace { from_json(json!({"metadata": {"name": name}})) };
    namespaces
        .create(&pp, &ns("t"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pods = Api::<Pod>::namespaced(client.clone(), "t");
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), "t");
    let secrets = Api::<Secret>::namespaced(client.clone(), "t");
    let bound: Pod = from_json(json!({
        "metadata": {"name": "bound"},
        "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}]}
    }));
    pods.create(&pp, &bound).await.unwrap_or_else(|e| panic!("{e}"));
    let configmap = |name: &str, finalizers: serde_json::Value| -> ConfigMap {
        from_json(json!({"metadata": {"name": name, "finalizers": finalizers}, "data": {"a": "b"}}))
    };
    for cm in [
        configmap("kept", json!(["example.com/keep"])),
        configmap("plain", json!([])),
    ] {
        configmaps
            .create(&pp, &cm)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let secret: Secret = from_json(json!({"metadata": {"name": "creds"}, "stringData": {"a": "b"}}));
    secrets
        .create(&pp, &secret)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    namespaces
        .delete("t", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let terminating = namespaces.get("t").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        terminating.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    // The pod is deleted gracefully: marked with its grace period, waiting for its node; the
    // rest goes, or waits for its finalizer.
    eventually("the contents deleted", || async {
        let pod = pods.get("bound").await.ok()?;
        let kept = configmaps.get("kept").await.ok()?;
        let plain_gone = configmaps.get_opt("plain").await.ok()?.is_none();
        let creds_gone = secrets.get_opt("creds").await.ok()?.is_none();
        (pod.metadata.deletion_grace_period_seconds == Some(30)
            && kept.metadata.deletion_timestamp.is_some()
            && plain_gone
            && creds_gone)
            .then_some(())
    })
    .await;
    // What remains is in the namespace's conditions, with kube-controller-manager's texts.
    let remaining = eventually("the conditions", || async {
        let namespace = namespaces.get("t").await.ok()?;
        let held = condition(&namespace, "NamespaceFinalizersRemaining")?;
        (held.status == "True").then_some(namespace)
    })
    .await;
    let held = condition(&remaining, "NamespaceFinalizersRemaining");
    assert_eq!(
        held.as_ref().and_then(|c| c.reason.as_deref()),
        Some("SomeFinalizersRemain")
    );
    assert_eq!(
        held.and_then(|c| c.message),
        Some("Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances".into())
    );
    let content = condition(&remaining, "NamespaceContentRemaining");
    assert_eq!(
        content.and_then(|c| c.message),
        Some("Some resources are remaining: configmaps has 1 resource instances, pods has 1 resource instances".into())
    );
    for (type_, reason) in [
        ("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered"),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            "ParsedGroupVersions",
        ),
        ("NamespaceDeletionContentFailure", "ContentDeleted"),
    ] {
        let c = condition(&remaining, type_).unwrap_or_else(|| panic!("no {type_}"));
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some(reason)),
            "{type_}"
        );
    }

    // The node removes the stopped pod; the finalizer's owner lets go; the namespace goes.
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods.delete("bound", &now).await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        namespaces.get_opt("t").await.ok().flatten().is_some(),
        "gone while a finalizer holds content"
    );
    let unfinalize = json!({"metadata": {"finalizers": null}});
    configmaps
        .patch("kept", &PatchParams::default(), &Patch::Merge(&unfinalize))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the empty namespace removed", || async {
        namespaces.get_opt("t").await.ok()?.is_none().then_some(())
    })
    .await;

    // Removing a namespace's own finalizer does not skip the termination of its contents.
    let mut held = ns("held");
    held.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    namespaces
        .create(&pp, &held)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let inside = Api::<ConfigMap>::namespaced(client.clone(), "held");
    inside
        .create(&pp, &configmap("inside", json!(["example.com/keep"])))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    namespaces
        .delete("held", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    namespaces
        .patch("held", &PatchParams::default(), &Patch::Merge(&unfinalize))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let phase = namespaces
        .get("held")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .status
        .and_then(|s| s.phase);
    assert_eq!(
        phase.as_deref(),
        Some("Terminating"),
        "the namespace went while content remained"
    );
    inside
        .patch("inside", &PatchParams::default(), &Patch::Merge(&unfinalize))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the namespace removed after its content", || async {
        namespaces.get_opt("held").await.ok()?.is_none().then_some(())
    })
    .await;

    // A namespace of that name can be made again, empty.
    namespaces
        .create(&pp, &ns("t"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let list = configmaps
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(list.items.is_empty(), "{:?}", list.items);
    controllers.stop().await;
}
