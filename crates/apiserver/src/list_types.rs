//! How the served kinds' lists merge: the one table of `patchStrategy`/`patchMergeKey` (and so
//! of `x-kubernetes-list-type`/`x-kubernetes-list-map-keys`) that strategic merge patch, server-side
//! apply and the OpenAPI documents all read. Fields not listed are atomic lists.
//!
//! Strategic merge keys a list by one field ([`ListStrategy::MergeBy`]); server-side apply and
//! `x-kubernetes-list-map-keys` identify an element by all of [`map_keys`] (a container's ports
//! by `containerPort` and `protocol`, so 53/TCP and 53/UDP are two elements).

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
    let path = pod_relative(path);
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

/// A workload's pod template has a pod's lists (a CronJob's, inside its Job template).
fn pod_relative(path: &str) -> &str {
    path.strip_prefix("spec.jobTemplate.spec.template.")
        .or_else(|| path.strip_prefix("spec.template."))
        .unwrap_or(path)
}

/// One key field of a map-type list, and the value an element without it is identified by
/// (the schema's default for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MapKey {
    /// The field's name.
    pub(crate) field: &'static str,
    /// Its default, as a string value, if the schema defaults it.
    pub(crate) default: Option<&'static str>,
}

const fn key(field: &'static str) -> MapKey {
    MapKey { field, default: None }
}

/// `protocol`, which defaults to `TCP` wherever it keys a list.
const PROTOCOL: MapKey = MapKey {
    field: "protocol",
    default: Some("TCP"),
};

/// The key fields (`x-kubernetes-list-map-keys`) of the map-type list at `path` whose merge key
/// is `merge_key`: the merge key, and the other fields where the upstream schema keys by more.
pub(crate) fn map_keys(path: &str, merge_key: &'static str) -> Vec<MapKey> {
    let pod_path = pod_relative(path);
    let container_ports = [
        "spec.containers.ports",
        "spec.initContainers.ports",
        "spec.ephemeralContainers.ports",
    ]
    .contains(&pod_path);
    match (pod_path, merge_key) {
        (_, "containerPort") if container_ports => vec![key("containerPort"), PROTOCOL],
        ("spec.ports", "port") => vec![key("port"), PROTOCOL],
        ("spec.topologySpreadConstraints", "topologyKey") => {
            vec![key("topologyKey"), key("whenUnsatisfiable")]
        }
        _ => vec![key(merge_key)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_have_a_pods_lists_and_ports_are_keyed_with_their_protocol() {
        assert_eq!(
            list_strategy("spec.template.spec.containers"),
            ListStrategy::MergeBy("name")
        );
        assert_eq!(
            list_strategy("spec.jobTemplate.spec.template.spec.containers.env"),
            ListStrategy::MergeBy("name")
        );
        assert_eq!(list_strategy("spec.tolerations"), ListStrategy::Replace);
        assert_eq!(list_strategy("metadata.finalizers"), ListStrategy::Set);
        let fields = |path, merge| map_keys(path, merge).iter().map(|k| k.field).collect::<Vec<_>>();
        assert_eq!(
            fields("spec.template.spec.containers.ports", "containerPort"),
            ["containerPort", "protocol"]
        );
        assert_eq!(fields("spec.ports", "port"), ["port", "protocol"]);
        assert_eq!(fields("spec.containers", "name"), ["name"]);
        assert_eq!(map_keys("spec.ports", "port")[1].default, Some("TCP"));
    }
}
