//! Tests of the pod predicates, the deletion order and pods from templates.

use super::*;
use podvisor_core::corev1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
use podvisor_core::metav1::Time;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

/// A pod named `name` on `node` in `phase`, ready since `ready` (seconds), created at `created`.
fn pod(name: &str, node: &str, phase: &str, ready: Option<i64>, created: i64) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: Some(Time(at(created))),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: (!node.is_empty()).then(|| node.to_string()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            conditions: ready.map(|t| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(at(t))),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    }
}

fn names(pods: &[&Pod]) -> Vec<String> {
    pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
}

#[test]
fn availability_waits_min_ready_seconds() {
    let p = pod("a", "n", "Running", Some(100), 0);
    assert!(is_ready(&p));
    assert!(is_available(&p, 0, at(100)));
    assert!(!is_available(&p, 10, at(109)));
    assert!(is_available(&p, 10, at(110)));
    let not_ready = pod("b", "n", "Running", None, 0);
    assert!(!is_available(&not_ready, 0, at(1000)));
}

#[test]
fn activity_follows_phase_and_deletion() {
    let mut p = pod("a", "n", "Running", None, 0);
    assert!(is_active(&p) && !is_terminating(&p));
    p.metadata.deletion_timestamp = Some(Time(at(5)));
    assert!(!is_active(&p) && is_terminating(&p));
    let done = pod("b", "n", "Succeeded", None, 0);
    assert!(!is_active(&done) && is_finished(&done) && !is_terminating(&done));
}

#[test]
fn surplus_pods_go_most_expendable_first() {
    let now = at(10_000);
    let unassigned = pod("unassigned", "", "Pending", None, 9_000);
    let pending = pod("pending", "n1", "Pending", None, 9_000);
    let not_ready = pod("not-ready", "n1", "Running", None, 1_000);
    let ready_new = pod("ready-new", "n1", "Running", Some(9_990), 1_000);
    let ready_old = pod("ready-old", "n1", "Running", Some(100), 1_000);
    let mut costly = pod("costly", "n1", "Running", None, 1_000);
    costly.metadata.annotations = Some([(DELETION_COST.to_string(), "100".to_string())].into());
    let all = [&ready_old, &costly, &ready_new, &not_ready, &pending, &unassigned];
    let mut pods = all.to_vec();
    sort_for_deletion(&mut pods, &all, now);
    assert_eq!(
        names(&pods),
        [
            "unassigned",
            "pending",
            "not-ready",
            "costly",
            "ready-new",
            "ready-old"
        ]
    );
}

#[test]
fn crowded_nodes_restarts_and_youth_break_ties() {
    let now = at(10_000);
    let crowded = pod("crowded", "n1", "Running", None, 1_000);
    let other = pod("other", "n1", "Running", None, 1_000);
    let alone = pod("alone", "n2", "Running", None, 1_000);
    let mut pods = vec![&alone, &crowded];
    sort_for_deletion(&mut pods, &[&alone, &crowded, &other], now);
    assert_eq!(names(&pods), ["crowded", "alone"]);

    let mut restarted = pod("restarted", "n1", "Running", None, 1_000);
    restarted.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        name: "c".into(),
        restart_count: 4,
        ..Default::default()
    }]);
    let young = pod("young", "n2", "Running", None, 9_999);
    let old = pod("old", "n3", "Running", None, 10);
    let mut pods = vec![&old, &young, &restarted];
    sort_for_deletion(&mut pods, &[], now);
    assert_eq!(names(&pods), ["restarted", "young", "old"]);
}

#[test]
fn a_pod_from_a_template_carries_its_owner() {
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        }),
        spec: Some(PodSpec::default()),
    };
    let owner = OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "web".into(),
        uid: "u".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let p = pod_from_template(&template, "ns", owner.clone(), PodName::Generate("web-"));
    assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(p.metadata.namespace.as_deref(), Some("ns"));
    assert_eq!(p.metadata.owner_references, Some(vec![owner.clone()]));
    assert_eq!(p.metadata.labels, template.metadata.unwrap().labels);
    assert_eq!(generate_name_prefix("web"), "web-");
    assert_eq!(generate_name_prefix(&"a".repeat(253)).len(), 253);
}
