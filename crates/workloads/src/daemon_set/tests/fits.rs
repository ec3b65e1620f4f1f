//! Node eligibility: nodeSelector, nodeName, required node affinity, taints and tolerations (rule 5.2).

use super::*;

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
