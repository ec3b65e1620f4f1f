//! kube-scheduler's default profile as pure functions (`cluster-semantics.md` §1, v1.35
//! strings): what a pod requests (1.19), the filters in profile order with their reasons
//! (1.14, 1.17, 1.18, 1.20), the aggregate message of a pod that fits nowhere (1.21–1.23) and
//! least-allocated plus balanced-allocation scoring with a deterministic tie-break (1.29–1.31).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};
use podvisor_core::quantity;

/// Resource amounts: cpu in millicores, everything else (memory, ephemeral-storage, pods,
/// extended resources) in whole units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources(pub BTreeMap<String, u64>);

impl Resources {
    /// `name`'s amount (0 when absent).
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    fn add(&mut self, other: &Resources) {
        for (name, amount) in &other.0 {
            let slot = self.0.entry(name.clone()).or_default();
            *slot = slot.saturating_add(*amount);
        }
    }

    fn max_with(&mut self, other: &Resources) {
        for (name, amount) in &other.0 {
            let slot = self.0.entry(name.clone()).or_default();
            *slot = (*slot).max(*amount);
        }
    }

    /// Parses a `ResourceList`; an amount that does not parse counts as 0 (validation refuses
    /// such pods, so only a Node could carry one).
    pub fn from_list(
        list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    ) -> Resources {
        let mut out = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            let amount = if name == "cpu" {
                quantity::cpu_millis(&q.0)
            } else {
                quantity::memory_bytes(&q.0)
            };
            out.0.insert(name.clone(), amount.unwrap_or(0));
        }
        out
    }
}

/// A container's requests; with `non_zero`, a missing cpu request counts as 100m and a missing
/// memory request as 200 MiB (the scorers' defaults, 1.30).
fn container_requests(c: &Container, non_zero: bool) -> Resources {
    let mut r = Resources::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
    if non_zero {
        r.0.entry("cpu".into()).or_insert(100);
        r.0.entry("memory".into()).or_insert(200 * 1024 * 1024);
    }
    r
}

/// What `pod` requests (rule 1.19): regular containers plus sidecars, or the peak while an
/// init container runs if higher, plus `spec.overhead`.
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::default();
    };
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let own = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&own);
            init_peak.max_with(&sidecars);
        } else {
            let mut peak = sidecars.clone();
            peak.add(&own);
            init_peak.max_with(&peak);
        }
    }
    total.add(&sidecars);
    total.max_with(&init_peak);
    total.add(&Resources::from_list(spec.overhead.as_ref()));
    total
}

/// A node as the scheduler sees it: the node and the non-terminal pods bound to it (and those
/// this scheduler assumed there).
#[derive(Clone, Debug)]
pub struct NodeView {
    /// The Node.
    pub node: Node,
    /// Its pods.
    pods: Vec<Pod>,
    /// What its pods request, kept as pods are added (kube-scheduler's NodeInfo keeps the
    /// same running sums), so each placement costs the nodes, not the pods on them.
    requested: Resources,
    /// The same with the non-zero defaults scoring uses.
    requested_non_zero: Resources,
}

impl NodeView {
    /// The view of `node` with `pods` on it.
    pub fn new(node: Node, pods: Vec<Pod>) -> NodeView {
        let mut view = NodeView {
            node,
            pods: Vec::with_capacity(pods.len()),
            requested: Resources::default(),
            requested_non_zero: Resources::default(),
        };
        for pod in pods {
            view.add(pod);
        }
        view
    }

    /// Counts `pod` on this node (bound, or assumed bound for the next placement).
    pub fn add(&mut self, pod: Pod) {
        self.requested.add(&pod_requests(&pod, false));
        self.requested_non_zero.add(&pod_requests(&pod, true));
        self.pods.push(pod);
    }

    /// The pods on this node.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    fn allocatable(&self) -> Resources {
        Resources::from_list(self.node.status.as_ref().and_then(|s| s.allocatable.as_ref()))
    }

    fn requested(&self, non_zero: bool) -> Resources {
        if non_zero {
            self.requested_non_zero.clone()
        } else {
            self.requested.clone()
        }
    }
}

/// Why a node was rejected, and whether preemption could help (1.17's code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The reasons (NodeResourcesFit may give several).
    pub reasons: Vec<String>,
    /// `Unschedulable` (resources, ports) rather than `UnschedulableAndUnresolvable`.
    pub resolvable: bool,
}

fn unresolvable(reason: &str) -> Rejection {
    Rejection {
        reasons: vec![reason.to_owned()],
        resolvable: false,
    }
}

/// Whether `toleration` tolerates `taint` (`ToleratesTaint` of k8s.io/api).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    let exists = toleration.operator.as_deref() == Some("Exists");
    if key.is_empty() {
        return exists;
    }
    if key != taint.key {
        return false;
    }
    exists || toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let as_int = |v: &str| v.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (value.and_then(as_int), values.first().and_then(|v| as_int(v)))
            else {
                return false;
            };
            if req.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        // An empty term matches nothing.
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    expressions
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = (r.key == "metadata.name").then(|| node.metadata.name.as_deref().unwrap_or(""));
            requirement_matches(r, value)
        })
}

fn affinity_matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    let affinity_ok = required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)));
    selector_ok && affinity_ok
}

/// `(hostIP, protocol, hostPort)` entries of the pod's containers (1.20).
fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            let ip = p
                .host_ip
                .clone()
                .filter(|ip| !ip.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into());
            let protocol = p
                .protocol
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "TCP".into());
            Some((ip, protocol, port))
        })
        .collect()
}

fn ports_conflict(wanted: &[(String, String, i32)], used: &[(String, String, i32)]) -> bool {
    wanted.iter().any(|(ip, proto, port)| {
        used.iter().any(|(uip, uproto, uport)| {
            uproto == proto && uport == port && (ip == "0.0.0.0" || uip == "0.0.0.0" || uip == ip)
        })
    })
}

/// Runs the filters in profile order on one node; the first failing plugin decides (1.14).
pub fn filter(pod: &Pod, view: &NodeView) -> Result<(), Rejection> {
    let node = &view.node;
    let spec = node.spec.as_ref();
    let taints = spec.and_then(|s| s.taints.as_deref()).unwrap_or_default();
    // NodeUnschedulable.
    if spec.and_then(|s| s.unschedulable) == Some(true) {
        let cordon = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        if !tolerations(pod).iter().any(|t| tolerates(t, &cordon)) {
            return Err(unresolvable("node(s) were unschedulable"));
        }
    }
    // TaintToleration: NoSchedule and NoExecute taints must be tolerated.
    let untolerated = taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .any(|t| !tolerations(pod).iter().any(|tol| tolerates(tol, t)));
    if untolerated {
        return Err(unresolvable("node(s) had untolerated taint(s)"));
    }
    // NodeAffinity.
    if !affinity_matches(pod, node) {
        return Err(unresolvable("node(s) didn't match Pod's node affinity/selector"));
    }
    // NodePorts.
    let used: Vec<_> = view.pods.iter().flat_map(host_ports).collect();
    if ports_conflict(&host_ports(pod), &used) {
        return Err(Rejection {
            reasons: vec!["node(s) didn't have free ports for the requested pod ports".into()],
            resolvable: true,
        });
    }
    // NodeResourcesFit (1.18).
    let allocatable = view.allocatable();
    let mut reasons = Vec::new();
    if view.pods.len() as u64 + 1 > allocatable.get("pods") {
        reasons.push("Too many pods".to_owned());
    }
    let wanted = pod_requests(pod, false);
    let requested = view.requested(false);
    let mut names: Vec<&String> = wanted.0.keys().filter(|n| *n != "pods").collect();
    // cpu, memory, ephemeral-storage first, then extended resources by name.
    names.sort_by_key(|n| match n.as_str() {
        "cpu" => (0, n.as_str()),
        "memory" => (1, n.as_str()),
        "ephemeral-storage" => (2, n.as_str()),
        other => (3, other),
    });
    for name in names {
        let want = wanted.get(name);
        if want > 0 && allocatable.get(name) < want.saturating_add(requested.get(name)) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Rejection {
            reasons,
            resolvable: true,
        })
    }
}

/// The node score (1.29–1.31): least-allocated and balanced-allocation over cpu and memory,
/// each 0–100 with weight 1, on requests with the non-zero defaults, counting `pod` on the node.
pub fn score(pod: &Pod, view: &NodeView) -> u64 {
    let allocatable = view.allocatable();
    let mut requested = view.requested(true);
    requested.add(&pod_requests(pod, true));
    let resources = ["cpu", "memory"];
    let least: u64 = resources
        .iter()
        .map(|r| {
            let (alloc, req) = (allocatable.get(r), requested.get(r));
            if alloc == 0 || req > alloc {
                0
            } else {
                (alloc - req) * 100 / alloc
            }
        })
        .sum::<u64>()
        / resources.len() as u64;
    let fraction = |r: &str| {
        let alloc = allocatable.get(r);
        if alloc == 0 {
            1.0
        } else {
            (requested.get(r) as f64 / alloc as f64).min(1.0)
        }
    };
    let std = (fraction("cpu") - fraction("memory")).abs() / 2.0;
    let balanced = ((1.0 - std) * 100.0).floor() as u64;
    least + balanced
}

/// The node for `pod`, or the aggregate message of why none fits (1.12, 1.15, 1.21–1.23). The
/// highest score wins; ties go to the node whose name sorts first.
pub fn choose(pod: &Pod, nodes: &[NodeView]) -> Result<String, String> {
    if nodes.is_empty() {
        return Err("no nodes available to schedule pods".into());
    }
    let mut feasible = Vec::new();
    let mut rejections = Vec::new();
    for view in nodes {
        match filter(pod, view) {
            Ok(()) => feasible.push(view),
            Err(r) => rejections.push(r),
        }
    }
    if let Some(best) = feasible
        .iter()
        .map(|v| (score(pod, v), std::cmp::Reverse(v.name())))
        .max()
    {
        return Ok(best.1.0.to_owned());
    }
    Err(fit_error(nodes.len(), &rejections))
}

/// `<count> <reason>` strings over every rejection, sorted as strings (1.21 step 3).
fn counted<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

/// kube-scheduler 1.35's message for a pod no node fits, with the DynamicResources and
/// DefaultPreemption post-filter parts (no preemption happens: every pod has the same priority
/// here, so a node rejected for resources or ports has no victims).
pub fn fit_error(nodes: usize, rejections: &[Rejection]) -> String {
    let first = counted(
        rejections
            .iter()
            .flat_map(|r| r.reasons.iter().map(String::as_str)),
    );
    let preemption = counted(rejections.iter().map(|r| {
        if r.resolvable {
            "No preemption victims found for incoming pod"
        } else {
            "Preemption is not helpful for scheduling"
        }
    }));
    format!(
        "0/{nodes} nodes are available: {first}. no new claims to deallocate, preemption: 0/{nodes} nodes are \
         available: {preemption}."
    )
}

/// The non-terminal pods of `pods` by the node they are bound to.
pub fn by_node<'a>(pods: impl Iterator<Item = &'a Pod>) -> BTreeMap<String, Vec<Pod>> {
    let mut out: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in pods {
        if podvisor_workloads::pods::is_finished(pod) {
            continue;
        }
        if let Some(node) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
        {
            out.entry(node).or_default().push(pod.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, cpu: &str, memory: &str, extra: serde_json::Value) -> NodeView {
        let mut n = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}},
        });
        merge(&mut n, extra);
        NodeView::new(serde_json::from_value(n).unwrap(), Vec::new())
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}))
            .unwrap()
    }

    fn cpu_pod(cpu: &str) -> Pod {
        pod(json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": cpu}}}]}))
    }

    #[test]
    fn requests_take_the_init_peak_with_sidecars_declared_before_it() {
        // Rule 1.19's example: a 1-cpu sidecar before a 2-cpu init container; 2 + 1 running.
        let p = pod(json!({
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
                {"name": "init", "resources": {"requests": {"cpu": "2"}}},
            ],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "2"}}},
                {"name": "b", "resources": {"requests": {"cpu": "1"}}},
            ],
            "overhead": {"cpu": "250m"},
        }));
        assert_eq!(pod_requests(&p, false).get("cpu"), 4250);
        let init_heavy = pod(json!({
            "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "5"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
        }));
        assert_eq!(pod_requests(&init_heavy, false).get("cpu"), 5000);
    }

    #[test]
    fn the_upstream_reference_message_for_three_nodes() {
        // Rule 1.23: one node lacks cpu, two fail the node selector.
        let nodes = [
            node("a", "1", "1Gi", json!({"metadata": {"labels": {"disk": "ssd"}}})),
            node("b", "8", "1Gi", json!({})),
            node("c", "8", "1Gi", json!({})),
        ];
        let p = pod(json!({
            "nodeSelector": {"disk": "ssd"},
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "2"}}}],
        }));
        assert_eq!(
            choose(&p, &nodes).unwrap_err(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. \
             no new claims to deallocate, preemption: 0/3 nodes are available: 1 No preemption victims found for \
             incoming pod, 2 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn the_first_failing_filter_decides_and_resources_list_every_shortage() {
        let cordoned = node(
            "a",
            "8",
            "8Gi",
            json!({"spec": {"unschedulable": true, "taints": [
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}}),
        );
        let tainted = node(
            "b",
            "8",
            "8Gi",
            json!({"spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}}),
        );
        let small = node("c", "100m", "1Mi", json!({}));
        let p = pod(
            json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}),
        );
        assert_eq!(
            filter(&p, &cordoned).unwrap_err().reasons,
            ["node(s) were unschedulable"]
        );
        assert_eq!(
            filter(&p, &tainted).unwrap_err().reasons,
            ["node(s) had untolerated taint(s)"]
        );
        assert_eq!(
            filter(&p, &small).unwrap_err().reasons,
            ["Insufficient cpu", "Insufficient memory"]
        );
        let tolerant = pod(json!({
            "tolerations": [{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}],
            "containers": [{"name": "a"}],
        }));
        assert_eq!(filter(&tolerant, &tainted), Ok(()));
        let everything = pod(json!({"tolerations": [{"operator": "Exists"}], "containers": [{"name": "a"}]}));
        assert_eq!(filter(&everything, &cordoned), Ok(()));
    }

    #[test]
    fn required_node_affinity_uses_every_operator() {
        let n = node(
            "n1",
            "8",
            "8Gi",
            json!({"metadata": {"labels": {"zone": "a", "gen": "5"}}}),
        );
        let with = |expr: serde_json::Value| {
            pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [expr]}}}, "containers": [{"name": "a"}]}),
            )
        };
        let fits = |expr| filter(&with(expr), &n).is_ok();
        assert!(fits(
            json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]})
        ));
        assert!(!fits(
            json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]})
        ));
        assert!(fits(
            json!({"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]})
        ));
        assert!(!fits(
            json!({"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["4"]}]})
        ));
        assert!(fits(
            json!({"matchExpressions": [{"key": "ssd", "operator": "DoesNotExist"}]})
        ));
        assert!(fits(
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})
        ));
        assert!(!fits(json!({})), "an empty term matches nothing");
    }

    #[test]
    fn host_ports_conflict_on_the_same_protocol_and_port() {
        let mut n = node("a", "8", "8Gi", json!({}));
        n.add(pod(
            json!({"containers": [{"name": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        ));
        let same = pod(
            json!({"containers": [{"name": "y", "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]}]}),
        );
        let udp = pod(
            json!({"containers": [{"name": "y", "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]}]}),
        );
        assert_eq!(
            filter(&same, &n).unwrap_err().reasons,
            ["node(s) didn't have free ports for the requested pod ports"]
        );
        assert_eq!(filter(&udp, &n), Ok(()));
    }

    #[test]
    fn pods_spread_to_the_least_allocated_node_with_a_name_tie_break() {
        let mut busy = node("a", "4", "8Gi", json!({}));
        busy.add(cpu_pod("3"));
        let idle = node("b", "4", "8Gi", json!({}));
        assert_eq!(choose(&cpu_pod("500m"), &[busy, idle.clone()]).unwrap(), "b");
        let twin = node("c", "4", "8Gi", json!({}));
        assert_eq!(choose(&cpu_pod("500m"), &[twin, idle]).unwrap(), "b");
        let mut full = node("d", "2", "8Gi", json!({}));
        full.node
            .status
            .as_mut()
            .unwrap()
            .allocatable
            .as_mut()
            .unwrap()
            .insert(
                "pods".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
            );
        full.add(cpu_pod("1"));
        assert_eq!(
            filter(&cpu_pod("100m"), &full).unwrap_err().reasons,
            ["Too many pods"]
        );
        assert_eq!(
            choose(&cpu_pod("1"), &[]).unwrap_err(),
            "no nodes available to schedule pods"
        );
    }
}
