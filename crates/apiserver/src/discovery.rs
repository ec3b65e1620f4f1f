//! Discovery (`/version`, `/api`, `/apis`, resource lists) and the minimal OpenAPI v3 documents
//! kubectl needs to hand field validation to the server.
//!
//! kubectl 1.32 asks OpenAPI v3 whether a kind's PATCH operation takes the `fieldValidation`
//! query parameter; if it does, kubectl skips client-side schema validation and sends
//! `fieldValidation=Strict`, which this server enforces. So each group version's document lists,
//! for every kind, its paths with the `x-kubernetes-group-version-kind` extension and that
//! parameter. Schemas are not served.

use serde_json::{Value, json};

use crate::resources::{GROUPS, RESOURCES, Resource, VERBS};

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
    let groups = GROUPS.iter().chain([&METRICS_GROUP]).map(|(g, v)| group(g, v));
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups.collect::<Vec<_>>()})
}

/// `metrics.k8s.io`, served by [`crate::resource_metrics`] rather than the store.
const METRICS_GROUP: (&str, &str) = ("metrics.k8s.io", "v1beta1");

/// `/apis/<group>`, `None` for a group not served.
pub fn api_group(name: &str) -> Option<Value> {
    let (g, v) = GROUPS.iter().chain([&METRICS_GROUP]).find(|(g, _)| *g == name)?;
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
    let resources: Vec<Value> = Resource::in_group(group, version)
        .flat_map(resource_entries)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// `/openapi/v3`: the index of group-version documents.
pub fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": "/openapi/v3/api/v1?hash=podvisor1"}),
    );
    for (g, v) in GROUPS {
        paths.insert(
            format!("apis/{g}/{v}"),
            json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash=podvisor1")}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<api/v1 | apis/g/v>`: paths of every kind with its PATCH parameters.
pub fn openapi_group_version(path: &str) -> Option<Value> {
    let (group, version) = match path.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => (String::new(), (*v).to_string()),
        ["apis", g, v] => ((*g).to_string(), (*v).to_string()),
        _ => return None,
    };
    let mut paths = serde_json::Map::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let params = json!([
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}}
        ]);
        let content = json!({
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/strategic-merge-patch+json": {"schema": {"type": "object"}}
        });
        let op = |action: &str| {
            json!({
                "operationId": format!("{action}{}", r.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
            })
        };
        let mut patch = op("patch");
        patch["requestBody"] = json!({"content": content, "required": true});
        let item = if r.namespaced {
            format!("{}/namespaces/{{namespace}}/{}/{{name}}", r.gv_path(), r.plural)
        } else {
            format!("{}/{}/{{name}}", r.gv_path(), r.plural)
        };
        paths.insert(
            item,
            json!({"get": op("get"), "put": op("put"), "patch": patch, "delete": op("delete")}),
        );
        let collection = if r.namespaced {
            format!("{}/namespaces/{{namespace}}/{}", r.gv_path(), r.plural)
        } else {
            format!("{}/{}", r.gv_path(), r.plural)
        };
        paths.insert(collection, json!({"get": op("list"), "post": op("post")}));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    }))
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
        let doc = openapi_group_version("apis/discovery.k8s.io/v1").unwrap();
        assert!(
            doc["paths"]
                .as_object()
                .unwrap()
                .keys()
                .any(|k| k.contains("endpointslices"))
        );
    }
}
