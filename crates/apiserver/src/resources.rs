//! The served resources: one static table that routing, discovery, OpenAPI and the verbs share,
//! and the registry of the kinds' rules: each entry names its [`Strategy`]. A new kind is one
//! more entry here plus its strategy (see [`crate::strategy`]).

use crate::strategy::{self, Strategy};

/// One served resource (a kind under one group/version).
#[derive(Debug, Clone, Copy)]
pub struct Resource {
    /// API group, `""` for the core group.
    pub group: &'static str,
    /// API version (`v1`).
    pub version: &'static str,
    /// Plural resource name in URLs (`pods`).
    pub plural: &'static str,
    /// Singular name (`pod`).
    pub singular: &'static str,
    /// Kind (`Pod`).
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// kubectl short names (`po`).
    pub short_names: &'static [&'static str],
    /// Subresources served (`status`), besides the object itself.
    pub subresources: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// The kind's rules.
    pub strategy: &'static dyn Strategy,
}

impl PartialEq for Resource {
    fn eq(&self, other: &Self) -> bool {
        (self.group, self.version, self.plural) == (other.group, other.version, other.plural)
    }
}

impl Eq for Resource {}

/// Every verb of a fully served resource, as discovery lists them.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The served resources.
pub const RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        subresources: &["status", "finalize"],
        categories: &[],
        strategy: &strategy::NamespaceStrategy,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        subresources: &[
            "status",
            "log",
            "binding",
            "eviction",
            "ephemeralcontainers",
            "exec",
            "attach",
            "portforward",
        ],
        categories: &["all"],
        strategy: &strategy::PodStrategy,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        subresources: &["status"],
        categories: &["all"],
        strategy: &strategy::ServiceStrategy,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        short_names: &["ep"],
        subresources: &[],
        categories: &[],
        strategy: &strategy::EndpointsStrategy,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        subresources: &[],
        categories: &[],
        strategy: &strategy::EventStrategy::CORE,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        subresources: &["status"],
        categories: &[],
        strategy: &strategy::NodeStrategy,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        subresources: &[],
        categories: &[],
        strategy: &strategy::ConfigMapStrategy,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        subresources: &[],
        categories: &[],
        strategy: &strategy::SecretStrategy,
    },
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        namespaced: true,
        short_names: &[],
        subresources: &[],
        categories: &[],
        strategy: &strategy::EndpointSliceStrategy,
    },
    Resource {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        subresources: &[],
        categories: &[],
        strategy: &strategy::EventStrategy::V1,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short_names: &[],
        subresources: &[],
        categories: &[],
        strategy: &strategy::LeaseStrategy,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        namespaced: true,
        short_names: &["sa"],
        subresources: &[],
        categories: &[],
        strategy: &strategy::SERVICE_ACCOUNTS,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        short_names: &["deploy"],
        subresources: &["status", "scale"],
        categories: &["all"],
        strategy: &strategy::DEPLOYMENTS,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        namespaced: true,
        short_names: &["rs"],
        subresources: &["status", "scale"],
        categories: &["all"],
        strategy: &strategy::REPLICA_SETS,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "statefulsets",
        singular: "statefulset",
        kind: "StatefulSet",
        namespaced: true,
        short_names: &["sts"],
        subresources: &["status", "scale"],
        categories: &["all"],
        strategy: &strategy::STATEFUL_SETS,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        namespaced: true,
        short_names: &["ds"],
        subresources: &["status"],
        categories: &["all"],
        strategy: &strategy::DAEMON_SETS,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        kind: "ControllerRevision",
        namespaced: true,
        short_names: &[],
        subresources: &[],
        categories: &[],
        strategy: &strategy::CONTROLLER_REVISIONS,
    },
    Resource {
        group: "batch",
        version: "v1",
        plural: "jobs",
        singular: "job",
        kind: "Job",
        namespaced: true,
        short_names: &[],
        subresources: &["status"],
        categories: &["all"],
        strategy: &strategy::JOBS,
    },
    Resource {
        group: "batch",
        version: "v1",
        plural: "cronjobs",
        singular: "cronjob",
        kind: "CronJob",
        namespaced: true,
        short_names: &["cj"],
        subresources: &["status"],
        categories: &["all"],
        strategy: &strategy::CRON_JOBS,
    },
];

/// The groups other than core, with their one version each.
pub const GROUPS: &[(&str, &str)] = &[
    ("apps", "v1"),
    ("batch", "v1"),
    ("discovery.k8s.io", "v1"),
    ("events.k8s.io", "v1"),
    ("coordination.k8s.io", "v1"),
];

impl Resource {
    /// Finds a served resource by group, version and plural.
    pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        RESOURCES
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// `v1` or `group/v1`, the objects' `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store's resource key (`pods`, `discovery.k8s.io/endpointslices`), or the one the
    /// kind is stored under as another version (events.k8s.io Events are the core Events,
    /// `crate::events`).
    pub fn store_key(&self) -> String {
        if let Some(key) = self.strategy.stored_under() {
            key.to_string()
        } else if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}/{}", self.group, self.plural)
        }
    }

    /// The URL prefix of the group version (`/api/v1`, `/apis/discovery.k8s.io/v1`).
    pub fn gv_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The resources served under one group version.
    pub fn in_group(group: &str, version: &str) -> impl Iterator<Item = &'static Resource> {
        let (group, version) = (group.to_string(), version.to_string());
        RESOURCES
            .iter()
            .filter(move |r| r.group == group && r.version == version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_keys() {
        let slices = Resource::find("discovery.k8s.io", "v1", "endpointslices").unwrap();
        assert_eq!(slices.api_version(), "discovery.k8s.io/v1");
        assert_eq!(slices.store_key(), "discovery.k8s.io/endpointslices");
        assert_eq!(Resource::find("", "v1", "pods").unwrap().store_key(), "pods");
        assert_eq!(Resource::find("", "v1", "secrets").unwrap().kind, "Secret");
        assert!(Resource::find("", "v1", "deployments").is_none());
        assert_eq!(Resource::in_group("", "v1").count(), 9);
        assert_eq!(
            Resource::find("apps", "v1", "deployments").unwrap().store_key(),
            "apps/deployments"
        );
        assert_eq!(
            Resource::find("coordination.k8s.io", "v1", "leases")
                .unwrap()
                .kind,
            "Lease"
        );
        let events = Resource::find("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(events.store_key(), "events", "one object for both versions");
    }
}
