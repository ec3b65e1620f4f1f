//! Identity repair, status writes, foreign pods and failure events (rules 4.2, 4.12, 4.13).

use super::*;

#[test]
fn identity_drift_is_repaired_by_an_update() {
    let mut w = World::new(set(2));
    w.settle();
    let labels = w.pod_mut("web-1").metadata.labels.as_mut().unwrap();
    labels.remove(POD_NAME_LABEL);
    labels.insert(POD_INDEX_LABEL.into(), "9".into());
    let plan = w.sync();
    assert_eq!(plan.update.len(), 1);
    let u = &plan.update[0];
    assert_eq!(u.name, "web-1");
    assert_eq!(u.uid, w.pods["web-1"].metadata.uid.clone().unwrap());
    assert_eq!(
        u.labels,
        BTreeMap::from([
            (POD_INDEX_LABEL.to_string(), "1".to_string()),
            (POD_NAME_LABEL.to_string(), "web-1".to_string())
        ])
    );
    assert_eq!(
        plan.events,
        [Event::normal(
            "SuccessfulUpdate",
            "update Pod web-1 in StatefulSet web successful"
        )]
    );
    assert!(w.sync().update.is_empty());
}

#[test]
fn status_is_written_only_when_it_changes_and_a_deleted_set_only_gets_status() {
    let mut w = World::new(set(2));
    w.settle();
    let plan = w.plan();
    assert_eq!(plan.status, None);
    assert!(plan.create.is_empty() && plan.delete.is_empty() && plan.update.is_empty());
    let status = w.set.status.clone().unwrap();
    assert_eq!(
        (status.replicas, status.ready_replicas, status.available_replicas),
        (2, Some(2), Some(2))
    );

    w.set.metadata.deletion_timestamp = Some(Time(at(w.now)));
    w.phase("web-1", "Failed");
    spec_mut(&mut w.set).replicas = Some(5);
    let plan = w.plan();
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.status.unwrap().ready_replicas, Some(1));
}

#[test]
fn pods_with_other_names_are_ignored() {
    let mut w = World::new(set(1));
    w.settle();
    for name in ["web-01", "webby-0", "web-x", "web-99999999999"] {
        let mut p = w.pods["web-0"].clone();
        p.metadata.name = Some(name.into());
        w.pods.insert(name.into(), p);
    }
    let plan = w.plan();
    assert!(plan.delete.is_empty() && plan.create.is_empty() && plan.status.is_none());
}

#[test]
fn failure_events_carry_the_error() {
    assert_eq!(
        pod_event(Verb::Create, "web-3", "web", Some("quota exceeded")),
        Event::warning(
            "FailedCreate",
            "create Pod web-3 in StatefulSet web failed error: quota exceeded"
        )
    );
    assert_eq!(
        pod_event(Verb::Delete, "web-3", "web", Some("boom")).reason,
        "FailedDelete"
    );
}
