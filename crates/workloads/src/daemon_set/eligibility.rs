//! Which nodes a DaemonSet runs on (rules 5.2 and 5.3): the template's `nodeName`,
//! `nodeSelector` and required node affinity against the node's labels and name, and its
//! tolerations (with the ones every daemon pod gets) against the node's taints.
//!
//! What it is not: no resources, ports or preferred affinity (the scheduler's business), no
//! `spec.unschedulable` (cordoning taints the node, and daemon pods tolerate that taint).

use std::collections::BTreeMap;

use podvisor_core::corev1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint,
    Toleration,
};

/// The node-name field a `matchFields` requirement may name.
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// The tolerations every daemon pod gets (rule 5.3), as (key, effect); all with operator
/// `Exists` and no `tolerationSeconds`.
const DAEMON_TOLERATIONS: [(&str, &str); 6] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// `AddOrUpdateDaemonPodTolerations` (rule 5.3): adds the daemon tolerations to `spec`, replacing
/// any toleration with the same key and effect; `network-unavailable:NoSchedule` only with
/// `hostNetwork`.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let network = spec
        .host_network
        .unwrap_or(false)
        .then_some(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in DAEMON_TOLERATIONS.into_iter().chain(network) {
        let t = Toleration {
            key: Some(key.to_string()),
            operator: Some("Exists".to_string()),
            effect: Some(effect.to_string()),
            ..Default::default()
        };
        match tolerations
            .iter_mut()
            .find(|o| o.key.as_deref() == Some(key) && o.effect.as_deref() == Some(effect))
        {
            Some(existing) => *existing = t,
            None => tolerations.push(t),
        }
    }
}

/// Whether `toleration` tolerates `taint` (`Toleration.ToleratesTaint`): an empty effect
/// matches every effect, an empty key every key; `Exists` ignores the value, `Equal` (or no
/// operator) compares it.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    let key = toleration.key.as_deref().unwrap_or("");
    if (!effect.is_empty() && effect != taint.effect) || (!key.is_empty() && key != taint.key) {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Whether some taint with an effect in `effects` is tolerated by none of `tolerations`.
fn untolerated(taints: &[Taint], tolerations: &[Toleration], effects: &[&str]) -> bool {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// One label requirement of a node selector term (`In`, `NotIn`, `Exists`, `DoesNotExist`,
/// `Gt`, `Lt`); `None` when it does not parse (wrong number of values, a non-integer for
/// `Gt`/`Lt`, an unknown operator).
fn label_requirement(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> Option<bool> {
    let values = r.values.as_deref().unwrap_or(&[]);
    let value = labels.get(&r.key);
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => None,
        "In" => Some(value.is_some_and(|v| values.contains(v))),
        "NotIn" => Some(value.is_none_or(|v| !values.contains(v))),
        "Exists" | "DoesNotExist" if !values.is_empty() => None,
        "Exists" => Some(value.is_some()),
        "DoesNotExist" => Some(value.is_none()),
        "Gt" | "Lt" => {
            let [bound] = values else { return None };
            let bound = int(bound)?;
            // A label that is absent or not an integer does not match.
            Some(
                value
                    .and_then(|v| int(v))
                    .is_some_and(|v| if r.operator == "Gt" { v > bound } else { v < bound }),
            )
        }
        _ => None,
    }
}

/// One field requirement: only `metadata.name` with `In`/`NotIn`.
fn field_requirement(r: &NodeSelectorRequirement, node_name: &str) -> Option<bool> {
    let values = r.values.as_deref().unwrap_or(&[]);
    if r.key != NODE_NAME_FIELD || values.is_empty() {
        return None;
    }
    match r.operator.as_str() {
        "In" => Some(values.iter().any(|v| v == node_name)),
        "NotIn" => Some(!values.iter().any(|v| v == node_name)),
        _ => None,
    }
}

/// Whether one term matches: all its requirements hold. An empty term, or one with a
/// requirement that does not parse, matches nothing.
fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let results: Option<Vec<bool>> = exprs
        .iter()
        .map(|r| label_requirement(r, labels))
        .chain(fields.iter().map(|r| field_requirement(r, node_name)))
        .collect();
    results.is_some_and(|r| r.into_iter().all(|b| b))
}

/// Whether a required node selector matches: any of its terms does.
pub fn node_selector_matches(selector: &NodeSelector, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref().unwrap_or("");
    selector
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, labels, name))
}

/// `GetRequiredNodeAffinity(pod).Match(node)`: `nodeSelector` and the required node affinity.
pub fn fits_node_affinity(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let by_selector = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    by_selector && required.is_none_or(|r| node_selector_matches(r, node))
}

/// Rule 5.2 (`NodeShouldRunDaemonPod`): (*shouldRun*, *shouldContinueRunning*) for a daemon
/// pod made from `template_spec` on `node`. A template `nodeName` naming another node, or a
/// failed node selector or required affinity: neither. An untolerated `NoSchedule`/`NoExecute`
/// taint: not *shouldRun*, and *shouldContinueRunning* only if every `NoExecute` taint is
/// tolerated. The daemon tolerations of rule 5.3 count.
pub fn eligibility(template_spec: &PodSpec, node: &Node) -> (bool, bool) {
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    if template_spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return (false, false);
    }
    if !fits_node_affinity(template_spec, node) {
        return (false, false);
    }
    let mut spec = template_spec.clone();
    add_daemon_tolerations(&mut spec);
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    if untolerated(taints, tolerations, &["NoSchedule", "NoExecute"]) {
        return (false, !untolerated(taints, tolerations, &["NoExecute"]));
    }
    (true, true)
}

/// `ReplaceDaemonSetPodNodeNameNodeAffinity` (rule 5.4): the required node affinity becomes
/// the single term `metadata.name In [node]`; everything else in `affinity` is kept.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NODE_NAME_FIELD.to_string(),
                operator: "In".to_string(),
                values: Some(vec![node.to_string()]),
            }]),
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

/// `GetTargetNodeName`: the pod's `nodeName`, or while unbound the node its required affinity
/// pins it to (`metadata.name In [one node]`).
pub fn target_node(spec: Option<&PodSpec>) -> Option<&str> {
    let spec = spec?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == NODE_NAME_FIELD && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([one]) => Some(one.as_str()),
            _ => None,
        })
}
