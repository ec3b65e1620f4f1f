//! Tests of the DaemonSet plan: eligibility, pods per node, back-off, status, rolling update,
//! revisions, and proptests driving a small simulated cluster.

use super::*;
use podvisor_core::appsv1::{DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use podvisor_core::corev1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, PodCondition,
    PodSpec, PodStatus, PodTemplateSpec, Taint, Toleration,
};
use podvisor_core::metav1::{LabelSelector, ObjectMeta, Time};
use proptest::prelude::*;

use crate::event::EventType;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn node(name: &str, node_labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(node_labels)),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(
                taints
                    .iter()
                    .map(|(k, e)| Taint {
                        key: k.to_string(),
                        effect: e.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

fn daemon_set() -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("agent".into()),
            namespace: Some("kube-system".into()),
            uid: Some("ds-uid".into()),
            generation: Some(1),
            annotations: Some(labels(&[(TEMPLATE_GENERATION_ANNOTATION, "1")])),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "agent")])),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", "agent")])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Default::default()],
                    ..Default::default()
                }),
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(1)),
                    max_surge: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(10),
            min_ready_seconds: None,
        }),
        status: None,
    }
}

fn spec_mut(ds: &mut DaemonSet) -> &mut DaemonSetSpec {
    ds.spec.as_mut().unwrap()
}

/// A daemon pod `name` of the current template on `node`, created at `created`, ready since
/// `ready` (seconds) when given.
fn pod(ds: &DaemonSet, name: &str, node: &str, created: i64, ready: Option<i64>) -> Pod {
    let hash = crate::hash::compute_hash(&ds.spec.as_ref().unwrap().template, None);
    let mut p = Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("kube-system".into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(labels(&[("app", "agent"), (REVISION_HASH, &hash)])),
            creation_timestamp: Some(Time(at(created))),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        }),
    };
    set_ready(&mut p, ready);
    p
}

fn set_ready(p: &mut Pod, since: Option<i64>) {
    p.status.get_or_insert_with(Default::default).conditions = since.map(|t| {
        vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(at(t))),
            ..Default::default()
        }]
    });
}

fn with_phase(mut p: Pod, phase: &str) -> Pod {
    p.status.get_or_insert_with(Default::default).phase = Some(phase.into());
    p
}

fn run(ds: &DaemonSet, nodes: &[Node], pods: &[Pod], now: i64) -> DaemonSetPlan {
    plan(ds, nodes, pods, &[], &FailedPodBackoff::default(), at(now))
}

fn deleted(p: &DaemonSetPlan) -> Vec<&str> {
    p.delete.iter().map(|d| d.name.as_str()).collect()
}

fn created_on(p: &DaemonSetPlan) -> Vec<&str> {
    p.create
        .iter()
        .map(|c| eligibility::target_node(c.spec.as_ref()).unwrap())
        .collect()
}

fn reasons(p: &DaemonSetPlan) -> Vec<&str> {
    p.events.iter().map(|e| e.reason.as_str()).collect()
}

fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

fn with_affinity(terms: Vec<NodeSelectorTerm>) -> PodSpec {
    PodSpec {
        affinity: Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn exprs(reqs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(reqs),
        match_fields: None,
    }
}

// === Rule 5.2: eligibility ===

#[test]
fn node_selector_and_node_name() {
    let n = node("n1", &[("disk", "ssd")], &[]);
    let mut spec = PodSpec::default();
    assert_eq!(eligibility(&spec, &n), (true, true));
    spec.node_selector = Some(labels(&[("disk", "hdd")]));
    assert_eq!(eligibility(&spec, &n), (false, false));
    spec.node_selector = Some(labels(&[("disk", "ssd")]));
    assert_eq!(eligibility(&spec, &n), (true, true));
    spec.node_name = Some("n2".into());
    assert_eq!(eligibility(&spec, &n), (false, false));
    spec.node_name = Some("n1".into());
    assert_eq!(eligibility(&spec, &n), (true, true));
}

#[test]
fn required_affinity_operators() {
    let n = node("n1", &[("zone", "a"), ("cores", "8")], &[]);
    let fits = |reqs: Vec<NodeSelectorRequirement>| eligibility(&with_affinity(vec![exprs(reqs)]), &n).0;
    assert!(fits(vec![req("zone", "In", &["a", "b"])]));
    assert!(!fits(vec![req("zone", "In", &["b"])]));
    assert!(fits(vec![req("zone", "NotIn", &["b"])]));
    assert!(!fits(vec![req("zone", "NotIn", &["a"])]));
    assert!(fits(vec![req("zone", "Exists", &[])]));
    assert!(!fits(vec![req("gpu", "Exists", &[])]));
    assert!(fits(vec![req("gpu", "DoesNotExist", &[])]));
    assert!(fits(vec![req("cores", "Gt", &["4"])]));
    assert!(!fits(vec![req("cores", "Gt", &["8"])]));
    assert!(fits(vec![req("cores", "Lt", &["9"])]));
    assert!(!fits(vec![req("zone", "Lt", &["9"])]), "non-integer label");
    // Requirements of a term all hold.
    assert!(!fits(vec![req("zone", "In", &["a"]), req("gpu", "Exists", &[])]));
    // Parse errors match nothing: In without values, Gt with two, an unknown operator.
    assert!(!fits(vec![req("zone", "In", &[])]));
    assert!(!fits(vec![req("cores", "Gt", &["1", "2"])]));
    assert!(!fits(vec![req("zone", "Near", &["a"])]));
    // Terms are ORed; an empty term matches nothing.
    let spec = with_affinity(vec![
        NodeSelectorTerm::default(),
        exprs(vec![req("zone", "In", &["b"])]),
        exprs(vec![req("cores", "In", &["8"])]),
    ]);
    assert_eq!(eligibility(&spec, &n), (true, true));
    assert_eq!(eligibility(&with_affinity(vec![]), &n), (false, false));
    // matchFields on metadata.name.
    let fields = |op: &str, v: &[&str]| {
        with_affinity(vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", op, v)]),
        }])
    };
    assert!(eligibility(&fields("In", &["n1"]), &n).0);
    assert!(!eligibility(&fields("In", &["n2"]), &n).0);
    assert!(eligibility(&fields("NotIn", &["n2"]), &n).0);
    assert!(!eligibility(&fields("Exists", &[]), &n).0);
}

#[test]
fn taints_and_tolerations() {
    let spec = PodSpec::default();
    let run_on = |taints: &[(&str, &str)], spec: &PodSpec| eligibility(spec, &node("n", &[], taints));
    assert_eq!(run_on(&[("dedicated", "NoSchedule")], &spec), (false, true));
    assert_eq!(run_on(&[("dedicated", "NoExecute")], &spec), (false, false));
    assert_eq!(run_on(&[("dedicated", "PreferNoSchedule")], &spec), (true, true));
    // The daemon tolerations of rule 5.3: cordoned, not-ready, under pressure.
    assert_eq!(
        run_on(
            &[
                ("node.kubernetes.io/unschedulable", "NoSchedule"),
                ("node.kubernetes.io/not-ready", "NoExecute"),
                ("node.kubernetes.io/unreachable", "NoExecute"),
                ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ],
            &spec
        ),
        (true, true)
    );
    // network-unavailable only with hostNetwork.
    let net = [("node.kubernetes.io/network-unavailable", "NoSchedule")];
    assert_eq!(run_on(&net, &spec), (false, true));
    let host = PodSpec {
        host_network: Some(true),
        ..Default::default()
    };
    assert_eq!(run_on(&net, &host), (true, true));
    // Equal compares the value; Exists with an empty key tolerates everything.
    let tol = |key: Option<&str>, op: &str, value: Option<&str>, effect: Option<&str>| PodSpec {
        tolerations: Some(vec![Toleration {
            key: key.map(Into::into),
            operator: Some(op.into()),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let mut tainted = node("n", &[], &[]);
    tainted.spec.as_mut().unwrap().taints = Some(vec![Taint {
        key: "dedicated".into(),
        value: Some("gpu".into()),
        effect: "NoSchedule".into(),
        ..Default::default()
    }]);
    let ok = |s: &PodSpec| eligibility(s, &tainted).0;
    assert!(ok(&tol(
        Some("dedicated"),
        "Equal",
        Some("gpu"),
        Some("NoSchedule")
    )));
    assert!(!ok(&tol(
        Some("dedicated"),
        "Equal",
        Some("cpu"),
        Some("NoSchedule")
    )));
    assert!(!ok(&tol(Some("dedicated"), "Exists", None, Some("NoExecute"))));
    assert!(ok(&tol(Some("dedicated"), "Exists", None, None)));
    assert!(ok(&tol(None, "Exists", None, None)));
    assert!(!ok(&tol(Some("other"), "Exists", None, None)));
}

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

fn pod_with_hash(
    ds: &DaemonSet,
    name: &str,
    node: &str,
    hash: &str,
    created: i64,
    ready: Option<i64>,
) -> Pod {
    let mut p = pod(ds, name, node, created, ready);
    p.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(REVISION_HASH.into(), hash.into());
    p
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

// === Rule 5.7: revisions ===

fn revision(ds: &DaemonSet, name: &str, number: i64, hash: &str) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(&[(REVISION_HASH, hash)])),
            ..Default::default()
        },
        data: Some(
            podvisor_core::k8s_openapi::apimachinery::pkg::runtime::RawExtension(
                serde_json::json!({"spec": {"template": {"n": name, "$patch": "replace"}}}),
            ),
        ),
        revision: number,
    }
    .with_owner(ds)
}

trait WithOwner {
    fn with_owner(self, ds: &DaemonSet) -> Self;
}

impl WithOwner for ControllerRevision {
    fn with_owner(mut self, ds: &DaemonSet) -> Self {
        self.metadata.owner_references = Some(vec![
            Owner {
                api_version: "apps/v1",
                kind: "DaemonSet",
                meta: &ds.metadata,
            }
            .controller_ref(),
        ]);
        self
    }
}

#[test]
fn revisions_are_created_numbered_and_trimmed() {
    let mut ds = daemon_set();
    spec_mut(&mut ds).revision_history_limit = Some(2);
    let old: Vec<ControllerRevision> = (1..=4)
        .map(|i| revision(&ds, &format!("agent-r{i}"), i, &format!("h{i}")))
        .collect();
    // A pod still carries h1: that revision stays.
    let pods = [pod_with_hash(&ds, "p", "n1", "h1", 0, Some(0))];
    let p = plan(
        &ds,
        &[node("n1", &[], &[])],
        &pods,
        &old,
        &FailedPodBackoff::default(),
        at(0),
    );
    let rev = p.revision.as_ref().unwrap();
    let hash = crate::hash::compute_hash(&ds.spec.as_ref().unwrap().template, None);
    assert_eq!(
        rev.metadata.name.as_deref(),
        Some(format!("agent-{hash}").as_str())
    );
    assert_eq!(rev.revision, 5);
    assert_eq!(rev.data.as_ref().unwrap().0, history::template_patch(&ds));
    assert_eq!(
        rev.data.as_ref().unwrap().0["spec"]["template"]["$patch"],
        "replace"
    );
    assert_eq!(rev.metadata.labels.as_ref().unwrap()["app"], "agent");
    assert_eq!(p.revisions_delete, ["agent-r2", "agent-r3"]);
    // The pod is of an older revision: rolling update replaces it.
    assert_eq!(deleted(&p), ["p"]);

    // The current revision exists with a low number: raised; duplicates merged.
    let mut cur = rev.clone();
    cur.revision = 2;
    let mut dup = rev.clone();
    dup.metadata.name = Some("agent-dup".into());
    dup.metadata.labels = Some(labels(&[(REVISION_HASH, "dup")]));
    dup.revision = 1;
    let others = [revision(&ds, "agent-r4", 4, "h4")];
    let revs = [cur, dup, others[0].clone()];
    let pods = [pod_with_hash(&ds, "q", "n1", "dup", 0, Some(0))];
    let p = plan(
        &ds,
        &[node("n1", &[], &[])],
        &pods,
        &revs,
        &FailedPodBackoff::default(),
        at(0),
    );
    assert_eq!(p.revision, None);
    assert_eq!(
        p.renumber,
        Some(RevisionNumber {
            name: format!("agent-{hash}"),
            revision: 5
        })
    );
    assert_eq!(p.revisions_delete, ["agent-dup"]);
    assert_eq!(
        p.relabel,
        [PodRelabel {
            name: "q".into(),
            hash: hash.clone()
        }]
    );
}

#[test]
fn a_hash_collision_bumps_the_collision_count() {
    let ds = daemon_set();
    let hash = crate::hash::compute_hash(&ds.spec.as_ref().unwrap().template, None);
    let clash = revision(&ds, &format!("agent-{hash}"), 1, &hash);
    let p = plan(
        &ds,
        &[node("n1", &[], &[])],
        &[],
        &[clash],
        &FailedPodBackoff::default(),
        at(0),
    );
    assert!(p.create.is_empty() && p.revision.is_none());
    assert_eq!(p.status.unwrap().collision_count, Some(1));
}

// === Simulations ===

/// A small cluster: the controller's plans carried out, the scheduler binding, pods starting
/// (ready one step after creation), deleted pods gone one step later.
struct Cluster {
    ds: DaemonSet,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    revisions: Vec<ControllerRevision>,
    backoff: FailedPodBackoff,
    now: i64,
    serial: usize,
}

impl Cluster {
    fn step(&mut self) -> DaemonSetPlan {
        self.now += 10;
        // Deleted pods go; new pods bind and turn ready.
        self.pods.retain(|p| p.metadata.deletion_timestamp.is_none());
        for p in &mut self.pods {
            if pods::phase(p) == "Pending" {
                p.status.as_mut().unwrap().phase = Some("Running".into());
                set_ready(p, Some(self.now));
            }
        }
        let p = plan(
            &self.ds,
            &self.nodes,
            &self.pods,
            &self.revisions,
            &self.backoff,
            at(self.now),
        );
        if let Some(r) = &p.revision {
            self.revisions.push(r.clone());
        }
        self.revisions
            .retain(|r| !p.revisions_delete.contains(r.metadata.name.as_ref().unwrap()));
        for d in &p.delete {
            for q in &mut self.pods {
                if q.metadata.name.as_deref() == Some(d.name.as_str()) {
                    q.metadata.deletion_timestamp = Some(Time(at(self.now)));
                }
            }
        }
        for c in &p.create {
            self.serial += 1;
            let mut q = c.clone();
            let node = eligibility::target_node(q.spec.as_ref()).unwrap().to_string();
            q.metadata.name = Some(format!("agent-{}", self.serial));
            q.metadata.uid = Some(format!("u{}", self.serial));
            q.metadata.creation_timestamp = Some(Time(at(self.now)));
            q.spec.as_mut().unwrap().node_name = Some(node);
            q.status = Some(PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            });
            self.pods.push(q);
        }
        self.backoff = p.backoff.clone();
        if let Some(s) = &p.status {
            self.ds.status = Some(s.clone());
        }
        p
    }

    fn live_on(&self, node: &str) -> usize {
        self.pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| eligibility::target_node(p.spec.as_ref()) == Some(node))
            .count()
    }

    /// Desired nodes without an available pod.
    fn unavailable(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| eligibility(self.ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap(), n).0)
            .filter(|n| {
                !self.pods.iter().any(|p| {
                    eligibility::target_node(p.spec.as_ref()) == n.metadata.name.as_deref()
                        && pods::is_available(p, 0, at(self.now))
                })
            })
            .count()
    }
}

fn arb_node(i: usize) -> impl Strategy<Value = Node> {
    (
        prop::bool::ANY,
        prop::sample::select(vec!["", "NoSchedule", "NoExecute", "PreferNoSchedule"]),
    )
        .prop_map(move |(edge, effect)| {
            let taints: Vec<(&str, &str)> = if effect.is_empty() {
                vec![]
            } else {
                vec![("k", effect)]
            };
            node(
                &format!("n{i}"),
                if edge { &[("role", "edge")] } else { &[] },
                &taints,
            )
        })
}

fn arb_nodes() -> impl Strategy<Value = Vec<Node>> {
    (1usize..8).prop_flat_map(|n| (0..n).map(arb_node).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Rules 5.2 and 5.5: whatever the nodes and however they change, the plans converge to
    /// exactly one pod on each eligible node and none elsewhere.
    #[test]
    fn one_pod_per_eligible_node(
        nodes in arb_nodes(),
        later in arb_nodes(),
        selector in prop::bool::ANY,
        extra in 0usize..3,
    ) {
        let mut ds = daemon_set();
        if selector {
            spec_mut(&mut ds).template.spec.as_mut().unwrap().node_selector =
                Some(labels(&[("role", "edge")]));
        }
        let mut c = Cluster { ds, nodes, pods: Vec::new(), revisions: Vec::new(),
            backoff: FailedPodBackoff::default(), now: 0, serial: 0 };
        // Some strays on the first node.
        for i in 0..extra {
            c.pods.push(pod(&c.ds, &format!("stray{i}"), "n0", 0, Some(0)));
        }
        for round in 0..2 {
            for _ in 0..6 {
                c.step();
            }
            let spec = c.ds.spec.as_ref().unwrap().template.spec.clone().unwrap();
            for n in &c.nodes {
                let name = n.metadata.name.as_deref().unwrap();
                let (run, cont) = eligibility(&spec, n);
                let live = c.live_on(name);
                if run {
                    prop_assert_eq!(live, 1, "node {} round {}", name, round);
                } else if !cont {
                    prop_assert_eq!(live, 0, "node {} round {}", name, round);
                } else {
                    // Kept by a tolerated NoExecute, not created: at most the one it had.
                    prop_assert!(live <= 1);
                }
            }
            let s = c.ds.status.clone().unwrap();
            let desired = c.nodes.iter().filter(|n| eligibility(&spec, n).0).count();
            prop_assert_eq!(usize::try_from(s.desired_number_scheduled).unwrap(), desired);
            c.nodes = later.clone();
        }
    }

    /// Rule 5.6: a rolling update never leaves more than maxUnavailable desired nodes without
    /// an available pod, and finishes.
    #[test]
    fn rolling_update_respects_max_unavailable(n in 1usize..9, max_unavailable in 1i32..4) {
        let mut ds = daemon_set();
        spec_mut(&mut ds).update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap()
            .max_unavailable = Some(IntOrString::Int(max_unavailable));
        let nodes: Vec<Node> = (0..n).map(|i| node(&format!("n{i}"), &[], &[])).collect();
        let mut c = Cluster { ds, nodes, pods: Vec::new(), revisions: Vec::new(),
            backoff: FailedPodBackoff::default(), now: 0, serial: 0 };
        for _ in 0..4 {
            c.step();
        }
        prop_assert_eq!(c.unavailable(), 0);
        // A new template.
        let spec = spec_mut(&mut c.ds);
        spec.template.metadata.as_mut().unwrap().labels.as_mut().unwrap()
            .insert("version".into(), "2".into());
        c.ds.metadata.annotations = Some(labels(&[(TEMPLATE_GENERATION_ANNOTATION, "2")]));
        let limit = usize::try_from(max_unavailable).unwrap();
        for _ in 0..(4 * n + 6) {
            c.step();
            prop_assert!(c.unavailable() <= limit, "{} unavailable", c.unavailable());
        }
        let s = c.ds.status.clone().unwrap();
        prop_assert_eq!(s.updated_number_scheduled, Some(i32::try_from(n).unwrap()));
        prop_assert_eq!(s.number_available, Some(i32::try_from(n).unwrap()));
        prop_assert!(c.pods.iter().all(|p| p.metadata.labels.as_ref().unwrap()
            .get("version").map(String::as_str) == Some("2")));
    }
}
