//! What the node shows: the pod table and the reasons pods are not ready.

use std::collections::BTreeMap;
use std::time::Duration;

use podvisor_core::{ProbeKind, ProbeOutcome};
use podvisor_kubelet::output::not_ready_reasons;
use podvisor_kubelet::table::render;
use podvisor_kubelet::{ContainerDiagnostics, PodView, ProbeRecord};
use podvisor_lifecycle::Time;
use serde_json::json;

fn view(ready: bool) -> PodView {
    let pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2023-11-14T22:13:20Z"},
        "spec": {"containers": [{"name": "app", "image": "x"}]},
        "status": {"phase": "Running", "podIP": "10.88.0.5",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": ready, "restartCount": 0,
                "state": {"running": {"startedAt": "2023-11-14T22:13:21Z"}}}]}
    }))
    .unwrap();
    let mut probes = BTreeMap::new();
    probes.insert(
        ProbeKind::Readiness,
        ProbeRecord {
            at: Time::from_secs(1_700_000_030),
            outcome: Some(ProbeOutcome::Failure),
            message: "HTTP probe failed with statuscode: 404".into(),
            latency: Duration::from_millis(3),
        },
    );
    let mut diagnostics = BTreeMap::new();
    diagnostics.insert(
        "app".to_owned(),
        ContainerDiagnostics {
            probes,
            hooks: BTreeMap::new(),
        },
    );
    PodView {
        pod,
        diagnostics,
        finished: false,
    }
}

#[test]
fn not_ready_pods_show_their_failing_probe() {
    let now = Time::from_secs(1_700_000_035);
    assert_eq!(
        not_ready_reasons(&[view(false)], now),
        ["default/web/app: Readiness probe failed 5s ago (3 ms): HTTP probe failed with statuscode: 404"]
    );
    assert!(
        not_ready_reasons(&[view(true)], now).is_empty(),
        "ready pods are not listed"
    );
}

#[test]
fn the_table_has_kubectl_columns() {
    let now = Time::from_secs(1_700_000_060);
    let table = render(&[view(true).pod], now);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["web", "1/1", "Running", "0", "60s", "10.88.0.5"]
    );
}
