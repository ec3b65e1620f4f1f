//! What controllers read off pods (rule 0's terms: active, ready, available, terminating),
//! the order in which surplus pods are deleted (rule 2.4), and a pod made from a template
//! (rule 1.6).

use std::cmp::Reverse;
use std::collections::BTreeMap;

use podvisor_core::corev1::{Pod, PodTemplateSpec};
use podvisor_core::k8s_openapi::jiff::Timestamp;
use podvisor_core::metav1::{ObjectMeta, OwnerReference};

/// The annotation that ranks pods for scale-down (rule 2.4 step 4).
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The pod's phase (`""` before the node reported one).
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Whether the pod finished (`Succeeded` or `Failed`).
pub fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// `controller.IsPodActive`: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !is_finished(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// Being deleted and not finished.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !is_finished(pod)
}

/// When the pod's `Ready` condition last turned True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (c.status == "True").then(|| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod's `Ready` condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// `IsPodAvailable`: ready, for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
    }
}

/// The highest restart count of the pod's containers.
pub fn max_restarts(pod: &Pod) -> i32 {
    let status = pod.status.as_ref();
    let init = status
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or(&[]);
    let main = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or(&[]);
    init.iter()
        .chain(main)
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `floor(log2(now − t))` in nanoseconds, −1 when `t` is not before `now`: the logarithmic
/// buckets of rule 2.4 steps 6 and 8.
fn age_bucket(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d > 0 {
        i64::from(127 - d.leading_zeros())
    } else {
        -1
    }
}

/// The sort key of a pod for deletion (rule 2.4): smaller is deleted first.
type DeletionKey<'a> = (
    bool,
    u8,
    bool,
    i32,
    Reverse<usize>,
    i64,
    Reverse<i32>,
    i64,
    &'a str,
);

fn deletion_key<'p>(pod: &'p Pod, rank: usize, now: Timestamp) -> DeletionKey<'p> {
    let phase_order = match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let ready = ready_since(pod);
    // No ready time counts as the newest.
    let ready_bucket = match ready {
        Some(Some(t)) => age_bucket(t, now),
        _ => i64::MIN,
    };
    let created_bucket = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(i64::MIN, |t| age_bucket(t.0, now));
    (
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty()),
        phase_order,
        ready.is_some(),
        deletion_cost(pod),
        Reverse(rank),
        ready_bucket,
        Reverse(max_restarts(pod)),
        created_bucket,
        pod.metadata.uid.as_deref().unwrap_or(""),
    )
}

/// Orders `pods` most expendable first (rule 2.4, with logarithmic scale-down). A pod's rank is
/// the number of active pods of `related` (the pods of every ReplicaSet of the same
/// controller) on its node.
///
/// Deviation: upstream's comparison is not a total order (ties within a log bucket go by UID
/// for ready times but by the next step for equal times); Rust's sort needs one, so ties within
/// a bucket go to the restart count, then the creation bucket, then the UID.
pub fn sort_for_deletion(pods: &mut [&Pod], related: &[&Pod], now: Timestamp) {
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for p in related.iter().filter(|p| is_active(p)) {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let rank = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .and_then(|n| per_node.get(n).copied())
            .unwrap_or(0)
    };
    pods.sort_by_cached_key(|p| deletion_key(p, rank(p), now));
}

/// How a pod made from a template is named.
#[derive(Debug, Clone, Copy)]
pub enum PodName<'a> {
    /// `generateName: <prefix>`: the API server appends 5 random characters.
    Generate(&'a str),
    /// A fixed name (StatefulSet pods).
    Exact(&'a str),
}

/// A pod from `template` (rule 1.6): its labels, annotations, finalizers and spec, the
/// controller reference `owner`, in `namespace`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    owner: OwnerReference,
    name: PodName<'_>,
) -> Pod {
    let tm = template.metadata.clone().unwrap_or_default();
    let (name, generate_name) = match name {
        PodName::Generate(prefix) => (None, Some(prefix.to_string())),
        PodName::Exact(n) => (Some(n.to_string()), None),
    };
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name,
            namespace: Some(namespace.to_string()),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The `generateName` of a controller's pods: `<owner>-`, or the bare name when that is too
/// long to be a name prefix (rule 1.6).
pub fn generate_name_prefix(owner: &str) -> String {
    if owner.len() < 253 {
        format!("{owner}-")
    } else {
        owner.to_string()
    }
}

#[cfg(test)]
mod tests;
