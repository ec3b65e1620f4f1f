//! Tests of the DaemonSet plan: eligibility, pods per node, back-off, status, rolling update,
//! revisions, and proptests driving a small simulated cluster.

mod daemon_pods;
mod fits;
mod revisions;
mod sim;
mod updates;

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
