//! How the served kinds' lists merge: the one table of `patchStrategy`/`patchMergeKey` (and so
//! of `x-kubernetes-list-type`/`x-kubernetes-list-map-keys`) that strategic merge patch, server-side
//! apply and the OpenAPI documents all read. Fields not listed are atomic lists.

/// How strategic merge treats a list, from the served kinds' schemas (`patchStrategy` and
/// `patchMergeKey` of k8s.io/api): lists without a merge strategy are replaced whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListStrategy {
    /// Replaced by the patch's list.
    Replace,
    /// Objects merged by the value of this key.
    MergeBy(&'static str),
    /// Scalars merged as a set.
    Set,
}

/// The strategy of the list at `path` (field names from the object's root, list indices left
/// out: `spec.containers.env`).
pub(crate) fn list_strategy(path: &str) -> ListStrategy {
    use ListStrategy::{MergeBy, Replace, Set};
    // A workload's pod template has a pod's lists (a CronJob's, inside its Job template).
    let path = path
        .strip_prefix("spec.jobTemplate.spec.template.")
        .or_else(|| path.strip_prefix("spec.template."))
        .unwrap_or(path);
    let in_container = [
        "spec.containers.",
        "spec.initContainers.",
        "spec.ephemeralContainers.",
    ]
    .iter()
    .find_map(|prefix| path.strip_prefix(prefix));
    if let Some(field) = in_container {
        return match field {
            "env" => MergeBy("name"),
            "ports" => MergeBy("containerPort"),
            "volumeMounts" => MergeBy("mountPath"),
            "volumeDevices" => MergeBy("devicePath"),
            _ => Replace,
        };
    }
    match path {
        "metadata.finalizers" | "spec.podCIDRs" => Set,
        "metadata.ownerReferences" => MergeBy("uid"),
        "spec.containers"
        | "spec.initContainers"
        | "spec.ephemeralContainers"
        | "spec.volumes"
        | "spec.imagePullSecrets"
        | "spec.resourceClaims"
        | "spec.schedulingGates" => MergeBy("name"),
        "spec.hostAliases" | "status.podIPs" | "status.hostIPs" => MergeBy("ip"),
        "spec.topologySpreadConstraints" => MergeBy("topologyKey"),
        // Service ports.
        "spec.ports" => MergeBy("port"),
        "status.conditions" | "status.addresses" => MergeBy("type"),
        _ => Replace,
    }
}
