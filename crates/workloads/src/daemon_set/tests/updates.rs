//! Status counts and rolling updates with maxUnavailable and maxSurge (rules 5.6, 5.9).

use super::*;

// === Rule 5.9: status ===

#[test]
fn status_counts_the_oldest_pod_per_node() {
    let mut ds = daemon_set();
    spec_mut(&mut ds).min_ready_seconds = Some(30);
    ds.metadata.generation = Some(3);
    let nodes = [
        node("n1", &[], &[]),
        node("n2", &[], &[]),
        node("n3", &[], &[]),
        node("n4", &[], &[("k", "NoSchedule")]),
    ];
    let mut stale = pod(&ds, "old", "n2", 0, Some(0));
    stale
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(REVISION_HASH.into(), "other".into());
    let pods = [
        pod(&ds, "a", "n1", 0, Some(10)), // available
        stale,                            // ready, available, not updated
        pod(&ds, "c", "n3", 0, Some(90)), // ready, not yet available
        pod(&ds, "d", "n4", 0, Some(0)),  // misscheduled (kept: NoSchedule only)
    ];
    let p = run(&ds, &nodes, &pods, 100);
    let s = p.status.clone().unwrap();
    assert_eq!(s.desired_number_scheduled, 3);
    assert_eq!(s.current_number_scheduled, 3);
    assert_eq!(s.number_misscheduled, 1);
    assert_eq!(s.number_ready, 3);
    assert_eq!(s.number_available, Some(2));
    assert_eq!(s.number_unavailable, Some(1));
    assert_eq!(s.updated_number_scheduled, Some(2));
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(p.status_unobserved.as_ref().unwrap().observed_generation, None);
    // c becomes available at 120.
    assert_eq!(p.requeue_after, Some(Duration::from_secs(20)));
    // Written back, nothing changes.
    ds.status = Some(s);
    let p = run(&ds, &nodes, &pods, 100);
    assert_eq!((p.status, p.status_unobserved), (None, None));
}

// === Rule 5.6: rolling update ===

/// `n` nodes, each with an available pod of an older template.
fn old_cluster(ds: &DaemonSet, n: usize) -> (Vec<Node>, Vec<Pod>) {
    let nodes: Vec<Node> = (0..n).map(|i| node(&format!("n{i}"), &[], &[])).collect();
    let pods = (0..n)
        .map(|i| pod_with_hash(ds, &format!("old{i}"), &format!("n{i}"), "old", 0, Some(0)))
        .collect();
    (nodes, pods)
}

#[test]
fn rolling_update_deletes_up_to_max_unavailable() {
    let mut ds = daemon_set();
    ds.metadata.annotations = None;
    let (nodes, mut pods) = old_cluster(&ds, 5);
    let p = run(&ds, &nodes, &pods, 100);
    assert_eq!(deleted(&p), ["old0"]);
    assert!(p.create.is_empty());
    // Percentages round up: 25 % of 5 is 2.
    spec_mut(&mut ds)
        .update_strategy
        .as_mut()
        .unwrap()
        .rolling_update
        .as_mut()
        .unwrap()
        .max_unavailable = Some(IntOrString::String("25%".into()));
    assert_eq!(deleted(&run(&ds, &nodes, &pods, 100)), ["old0", "old1"]);
    // An unavailable old pod is replaced without counting against the budget... but uses it.
    set_ready(&mut pods[3], None);
    assert_eq!(deleted(&run(&ds, &nodes, &pods, 100)), ["old3", "old0"]);
    // OnDelete leaves old pods alone.
    spec_mut(&mut ds).update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("OnDelete".into()),
        rolling_update: None,
    });
    assert!(run(&ds, &nodes, &pods, 100).delete.is_empty());
}

#[test]
fn rolling_update_with_surge_creates_before_deleting() {
    let mut ds = daemon_set();
    ds.metadata.annotations = None;
    spec_mut(&mut ds).update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrString::Int(0)),
            max_surge: Some(IntOrString::Int(1)),
        }),
    });
    let (nodes, mut pods) = old_cluster(&ds, 3);
    let p = run(&ds, &nodes, &pods, 100);
    assert_eq!(created_on(&p), ["n0"]);
    assert!(p.delete.is_empty());
    // The new pod is not ready yet: no more surge, nothing deleted.
    pods.push(pod(&ds, "new0", "n0", 100, None));
    let p = run(&ds, &nodes, &pods, 110);
    assert!(p.create.is_empty() && p.delete.is_empty());
    // Ready and available: the old one goes (manage sees the ready new pod).
    set_ready(&mut pods[3], Some(110));
    let p = run(&ds, &nodes, &pods, 120);
    assert_eq!(deleted(&p), ["old0"]);
}
