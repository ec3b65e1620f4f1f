//! Tests of the ReplicaSet rules (section 2).

use super::*;
use podvisor_core::appsv1::ReplicaSetSpec;
use podvisor_core::corev1::{PodCondition, PodSpec, PodStatus, PodTemplateSpec};
use podvisor_core::metav1::{LabelSelector, ObjectMeta};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
    let labels: std::collections::BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web-abc".into()),
            namespace: Some("default".into()),
            uid: Some("rs-uid".into()),
            generation: Some(2),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: Some(min_ready),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec::default()),
            }),
        }),
        status: None,
    }
}

fn pod(name: &str, ready_at: Option<i64>) -> Pod {
    let mut p = new_pod(&rs(1, 0));
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.metadata.creation_timestamp = Some(Time(at(0)));
    p.spec.get_or_insert_with(Default::default).node_name = Some("n".into());
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        conditions: ready_at.map(|t| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(at(t))),
                ..Default::default()
            }]
        }),
        ..Default::default()
    });
    p
}

#[test]
fn too_few_pods_are_created_too_many_deleted_least_valuable_first() {
    let now = at(1000);
    let a = pod("a", Some(10));
    let b = pod("b", None);
    let set = rs(3, 0);
    let m = manage(&set, &[&a, &b], &[], now);
    assert_eq!((m.create, m.delete.len()), (1, 0));
    let set = rs(1, 0);
    let m = manage(&set, &[&a, &b], &[], now);
    assert_eq!(m.create, 0);
    assert_eq!(
        m.delete
            .iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect::<Vec<_>>(),
        ["b"]
    );
    let m = manage(&rs(1_000_000, 0), &[], &[], now);
    assert_eq!(m.create, BURST_REPLICAS, "at most 500 per sync");
}

#[test]
fn finished_and_terminating_pods_are_not_counted_and_replaced() {
    let now = at(1000);
    let mut done = pod("done", None);
    done.status.as_mut().unwrap().phase = Some("Failed".into());
    let mut going = pod("going", Some(5));
    going.metadata.deletion_timestamp = Some(Time(at(999)));
    let set = rs(2, 0);
    let m = manage(&set, &[&done, &going], &[], now);
    assert_eq!(m.create, 2);
    assert!(m.delete.is_empty(), "terminal pods are never reaped");
    let st = status(&set, &[&done, &going], now, None).unwrap();
    assert_eq!((st.replicas, st.terminating_replicas), (0, Some(1)));
}

#[test]
fn status_counts_ready_and_available_and_keeps_the_first_failure() {
    let set = rs(2, 10);
    let a = pod("a", Some(100));
    let b = pod("b", Some(95));
    let st = status(&set, &[&a, &b], at(105), None).unwrap();
    assert_eq!(st.replicas, 2);
    assert_eq!((st.ready_replicas, st.available_replicas), (Some(2), Some(1)));
    assert_eq!(
        (st.fully_labeled_replicas, st.observed_generation),
        (Some(2), Some(2))
    );
    assert_eq!(requeue_after(&set, &st), Some(Duration::from_secs(10)));
    let mut set = set;
    set.status = Some(st.clone());
    assert_eq!(
        status(&set, &[&a, &b], at(105), None),
        None,
        "unchanged: no write"
    );

    let failure = ManageFailure {
        reason: "FailedCreate",
        message: "pods \"web\" is forbidden: quota".into(),
    };
    let st = status(&set, &[&a, &b], at(105), Some(&failure)).unwrap();
    let c = &st.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (c.type_.as_str(), c.reason.as_deref()),
        ("ReplicaFailure", Some("FailedCreate"))
    );
    set.status = Some(st);
    let again = ManageFailure {
        reason: "FailedDelete",
        message: "other".into(),
    };
    assert_eq!(
        status(&set, &[&a, &b], at(105), Some(&again)),
        None,
        "the first error stays"
    );
    let cleared = status(&set, &[&a, &b], at(105), None).unwrap();
    assert_eq!(cleared.conditions, None);
}

#[test]
fn new_pods_carry_the_template_and_the_controller_ref() {
    let p = new_pod(&rs(1, 0));
    assert_eq!(p.metadata.generate_name.as_deref(), Some("web-abc-"));
    let r = &p.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (r.kind.as_str(), r.uid.as_str(), r.controller),
        ("ReplicaSet", "rs-uid", Some(true))
    );
    assert_eq!(p.metadata.labels.as_ref().unwrap()["app"], "web");
}
