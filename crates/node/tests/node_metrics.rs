//! The node's `/metrics`: after a pod with a readiness probe runs, the kubelet's probe counter,
//! pod start duration and runtime operation latencies, and the API's request latencies, are
//! all served from one registry.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use support::RunningNode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_probes_pod_starts_runtime_operations_and_api_requests() {
    let data = tempfile::tempdir().unwrap();
    let cidr = format!("10.97.{}.0/24", std::process::id() % 250);
    let node = RunningNode::start(data.path(), &cidr, "metrics").await;
    let kubeconfig = Kubeconfig::read_from(&node.kubeconfig).expect("kubeconfig readable");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "probed"},
        "spec": {"terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": "host", "command": ["sleep", "600"],
                "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.expect("create");

    let probed = r#"prober_probe_total{probe_type="Readiness",result="successful",container="app",pod="probed",namespace="default""#;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let text = loop {
        let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
        let text = client.request_text(request).await.expect("GET /metrics");
        if text.contains(probed) {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no successful readiness probe counted within a minute:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for expected in [
        "kubelet_pod_start_duration_seconds_count 1",
        r#"kubelet_runtime_operations_total{operation_type="start_container"} 1"#,
        r#"kubelet_runtime_operations_duration_seconds_count{operation_type="exec_sync"}"#,
        r#"apiserver_request_total{verb="POST",dry_run="",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver",code="201"} 1"#,
        r#"apiserver_request_duration_seconds_count{verb="GET",dry_run="",group="",version="",resource="",subresource="/metrics",scope="",component="apiserver"}"#,
    ] {
        assert!(text.contains(expected), "missing {expected}\n{text}");
    }

    pods.delete("probed", &DeleteParams::default())
        .await
        .expect("delete");
    node.stop().await;
}
