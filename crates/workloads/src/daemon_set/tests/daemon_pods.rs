//! Daemon pods: one pinned pod per node, extra and misplaced pods, failed-pod back-off, caps (rules 5.3–5.5).

use super::*;

// === Rules 5.4, 5.5: pods per node ===

#[test]
fn a_one_node_cluster_gets_one_pinned_pod() {
    let ds = daemon_set();
    let p = run(&ds, &[node("n1", &[], &[])], &[], 100);
    assert_eq!(p.create.len(), 1);
    let pod = &p.create[0];
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
    assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
    let l = pod.metadata.labels.as_ref().unwrap();
    let rev = p.revision.as_ref().unwrap();
    let hash = rev.metadata.labels.as_ref().unwrap()[REVISION_HASH].clone();
    assert_eq!(l[REVISION_HASH], hash);
    assert_eq!(l[TEMPLATE_GENERATION_LABEL], "1");
    assert_eq!(l["app"], "agent");
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("DaemonSet", "ds-uid"));
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name, None, "the scheduler binds it");
    assert_eq!(eligibility::target_node(Some(spec)), Some("n1"));
    let keys: Vec<&str> = spec
        .tolerations
        .iter()
        .flatten()
        .filter_map(|t| t.key.as_deref())
        .collect();
    assert!(keys.contains(&"node.kubernetes.io/not-ready"));
    assert!(keys.contains(&"node.kubernetes.io/unschedulable"));
    assert!(p.delete.is_empty() && p.events.is_empty());
    // Once it runs, nothing more to do.
    let running = pod_with_hash(&ds, "agent-a", "n1", &hash, 100, Some(100));
    let p = plan(
        &ds,
        &[node("n1", &[], &[])],
        &[running],
        std::slice::from_ref(rev),
        &FailedPodBackoff::default(),
        at(200),
    );
    assert!(p.create.is_empty() && p.delete.is_empty() && p.revision.is_none());
}

#[test]
fn the_user_affinity_is_replaced_by_the_node_pin() {
    let mut ds = daemon_set();
    spec_mut(&mut ds).template.spec = Some(with_affinity(vec![exprs(vec![req("zone", "In", &["a"])])]));
    let p = run(
        &ds,
        &[
            node("n1", &[("zone", "a")], &[]),
            node("n2", &[("zone", "b")], &[]),
        ],
        &[],
        0,
    );
    assert_eq!(created_on(&p), ["n1"]);
    let terms = &p.create[0]
        .spec
        .as_ref()
        .unwrap()
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms;
    assert_eq!(terms.len(), 1);
    assert_eq!(terms[0].match_expressions, None);
}

#[test]
fn extra_pods_keep_the_oldest() {
    let ds = daemon_set();
    let pods = [
        pod(&ds, "b", "n1", 20, Some(20)),
        pod(&ds, "a", "n1", 10, Some(10)),
        pod(&ds, "c", "n1", 10, Some(10)),
    ];
    let p = run(&ds, &[node("n1", &[], &[])], &pods, 100);
    assert_eq!(deleted(&p), ["c", "b"]);
    assert_eq!(reasons(&p), ["SuccessfulDelete", "SuccessfulDelete"]);
    assert_eq!(p.events[0].message, "Deleted pod: c");
}

#[test]
fn pods_leave_nodes_that_no_longer_fit() {
    let mut ds = daemon_set();
    spec_mut(&mut ds).template.spec.as_mut().unwrap().node_selector = Some(labels(&[("role", "edge")]));
    let nodes = [node("n1", &[("role", "edge")], &[]), node("n2", &[], &[])];
    let mut gone = pod(&ds, "on-gone", "", 0, None);
    gone.spec = Some(PodSpec {
        affinity: Some(eligibility::pin_to_node(None, "n9")),
        ..Default::default()
    });
    let pods = [
        pod(&ds, "x", "n1", 0, Some(0)),
        pod(&ds, "y", "n2", 0, Some(0)),
        gone,
    ];
    let p = run(&ds, &nodes, &pods, 100);
    assert_eq!(deleted(&p), ["y", "on-gone"]);
    let s = p.status.unwrap();
    assert_eq!((s.desired_number_scheduled, s.number_misscheduled), (1, 1));
    // A NoSchedule taint alone keeps the running pod; NoExecute evicts it.
    let ds = daemon_set();
    let pods = [pod(&ds, "x", "n1", 0, Some(0))];
    assert!(
        run(&ds, &[node("n1", &[], &[("k", "NoSchedule")])], &pods, 9)
            .delete
            .is_empty()
    );
    assert_eq!(
        deleted(&run(&ds, &[node("n1", &[], &[("k", "NoExecute")])], &pods, 9)),
        ["x"]
    );
}

#[test]
fn failed_pods_are_killed_with_back_off() {
    let ds = daemon_set();
    let nodes = [node("n1", &[], &[])];
    let failed = |name: &str| with_phase(pod(&ds, name, "n1", 0, None), "Failed");
    let p = plan(
        &ds,
        &nodes,
        &[failed("f1")],
        &[],
        &FailedPodBackoff::default(),
        at(100),
    );
    assert_eq!(deleted(&p), ["f1"]);
    assert_eq!(reasons(&p), ["FailedDaemonPod", "SuccessfulDelete"]);
    assert_eq!(p.events[0].type_, EventType::Warning);
    assert_eq!(
        p.events[0].message,
        "Found failed daemon pod kube-system/f1 on node n1, will try to kill it"
    );
    assert_eq!(p.backoff.delay(0, "n1"), Some(Duration::from_secs(1)));
    // The replacement fails again at once: wait out the second.
    let q = plan(&ds, &nodes, &[failed("f2")], &[], &p.backoff, at(100));
    assert!(q.delete.is_empty());
    assert_eq!(q.requeue_after, Some(Duration::from_secs(1)));
    // After it, delete and double.
    let q = plan(&ds, &nodes, &[failed("f2")], &[], &p.backoff, at(101));
    assert_eq!(deleted(&q), ["f2"]);
    assert_eq!(q.backoff.delay(0, "n1"), Some(Duration::from_secs(2)));
    // Doubling stops at 15 minutes.
    let mut b = q.backoff;
    let mut t = 101;
    for _ in 0..20 {
        t += 15 * 60;
        b = plan(&ds, &nodes, &[failed("f")], &[], &b, at(t)).backoff;
    }
    assert_eq!(b.delay(0, "n1"), Some(BACKOFF_MAX));
    // Idle for over 30 minutes, it starts again at 1 s.
    let b = plan(&ds, &nodes, &[failed("f")], &[], &b, at(t + 31 * 60)).backoff;
    assert_eq!(b.delay(0, "n1"), Some(BACKOFF_INITIAL));
}

#[test]
fn succeeded_pods_are_deleted() {
    let ds = daemon_set();
    let p = run(
        &ds,
        &[node("n1", &[], &[])],
        &[with_phase(pod(&ds, "s", "n1", 0, None), "Succeeded")],
        5,
    );
    assert_eq!(deleted(&p), ["s"]);
    assert_eq!(
        p.events[0].message,
        "Found succeeded daemon pod kube-system/s on node n1, will try to delete it"
    );
}

#[test]
fn at_most_250_creates_per_sync() {
    let ds = daemon_set();
    let nodes: Vec<Node> = (0..300).map(|i| node(&format!("n{i:03}"), &[], &[])).collect();
    let p = run(&ds, &nodes, &[], 0);
    assert_eq!(p.create.len(), BURST);
    assert_eq!(p.status.unwrap().desired_number_scheduled, 300);
}

#[test]
fn empty_selectors_and_deleted_daemon_sets_do_nothing() {
    let mut ds = daemon_set();
    spec_mut(&mut ds).selector = LabelSelector::default();
    let p = run(&ds, &[node("n1", &[], &[])], &[], 0);
    assert_eq!(reasons(&p), ["SelectingAll"]);
    assert_eq!(
        p.events[0].message,
        "This daemon set is selecting all pods. A non-empty selector is required."
    );
    assert!(p.create.is_empty() && p.status.is_none());
    let mut ds = daemon_set();
    ds.metadata.deletion_timestamp = Some(Time(at(0)));
    let p = run(&ds, &[node("n1", &[], &[])], &[], 0);
    assert!(p.create.is_empty() && p.status.is_none() && p.events.is_empty());
}
