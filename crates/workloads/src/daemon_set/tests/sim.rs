//! Simulations: a small cluster driven by the plans, with proptest.

use super::*;

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
