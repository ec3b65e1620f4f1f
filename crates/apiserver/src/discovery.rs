//! Discovery (`/version`, `/api`, `/apis`, resource lists). The OpenAPI documents are
//! [`crate::openapi`]'s.

use serde_json::{Value, json};

use crate::resources::{GROUPS, Resource, VERBS};

pub use podvisor_core::version::{GIT_VERSION, go_arch};

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "35",
        "gitVersion": GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("linux/{}", go_arch()),
    })
}

/// `/api`.
pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

fn group(name: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{name}/{version}"), "version": version});
    json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `/apis`.
pub fn api_group_list() -> Value {
    let groups = GROUPS
        .iter()
        .chain(crate::reviews::GROUPS)
        .chain([&METRICS_GROUP]);
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups.map(|(g, v)| group(g, v)).collect::<Vec<_>>()})
}

/// `metrics.k8s.io`, served by [`crate::resource_metrics`] rather than the store.
const METRICS_GROUP: (&str, &str) = ("metrics.k8s.io", "v1beta1");

/// `/apis/<group>`, `None` for a group not served.
pub fn api_group(name: &str) -> Option<Value> {
    let (g, v) = GROUPS
        .iter()
        .chain(crate::reviews::GROUPS)
        .chain([&METRICS_GROUP])
        .find(|(g, _)| *g == name)?;
    let mut out = group(g, v);
    out["kind"] = json!("APIGroup");
    out["apiVersion"] = json!("v1");
    Some(out)
}

fn resource_entries(r: &Resource) -> Vec<Value> {
    let mut out = vec![json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": VERBS,
        "shortNames": r.short_names,
        "categories": r.categories,
    })];
    for sub in r.subresources {
        let (verbs, kind): (&[&str], &str) = match *sub {
            "log" => (&["get"], "Pod"),
            "binding" => (&["create"], "Binding"),
            "eviction" => (&["create"], "Eviction"),
            "finalize" => (&["update"], r.kind),
            "exec" => (&["create", "get"], "PodExecOptions"),
            "attach" => (&["create", "get"], "PodAttachOptions"),
            "portforward" => (&["create", "get"], "PodPortForwardOptions"),
            _ => (&["get", "patch", "update"], r.kind),
        };
        let mut entry = json!({"name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": verbs});
        // An Eviction is a policy/v1 object (kubectl drain looks for this group and version),
        // a Scale an autoscaling/v1 one.
        if *sub == "eviction" {
            entry["group"] = json!("policy");
            entry["version"] = json!("v1");
        }
        if *sub == "scale" {
            entry["kind"] = json!("Scale");
            entry["group"] = json!("autoscaling");
            entry["version"] = json!("v1");
        }
        out.push(entry);
    }
    out
}

/// `/api/v1` or `/apis/<group>/<version>`, `None` for a group version not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources: Vec<Value> = Resource::in_group(group, version)
        .flat_map(resource_entries)
        .collect();
    if resources.is_empty() {
        resources = crate::reviews::resource_entries(group, version)?;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_resource_list_has_short_names_and_subresources() {
        let list = resource_list("", "v1").unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/status") && names.contains(&"pods/log"));
        let finalize = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "namespaces/finalize")
            .unwrap();
        assert_eq!(
            (&finalize["kind"], &finalize["verbs"]),
            (&json!("Namespace"), &json!(["update"]))
        );
        let pods = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert!(resource_list("apps", "v1").is_some());
        assert!(resource_list("apps", "v1beta1").is_none());
        assert!(api_group("events.k8s.io").is_some());
        // The review APIs are discovered like any group.
        let groups = api_group_list();
        let names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|g| g["name"].as_str())
            .collect();
        assert!(names.contains(&"authorization.k8s.io") && names.contains(&"authentication.k8s.io"));
        let reviews = resource_list("authorization.k8s.io", "v1").unwrap();
        assert_eq!(reviews["resources"][0]["kind"], "SelfSubjectAccessReview");
        assert_eq!(reviews["resources"][0]["verbs"], json!(["create"]));
        assert!(api_group("authentication.k8s.io").is_some());
    }
}
