//! The paths of a group version's document: every served resource's operations as
//! kube-apiserver names them (`listCoreV1NamespacedPod`, `patchAppsV1NamespacedDeploymentScale`),
//! each with `x-kubernetes-action` and `x-kubernetes-group-version-kind`, and its parameters
//! inline on the operation (rule 8.1: kubectl reads a PATCH operation's own `fieldValidation`).

use serde_json::{Map, Value, json};

use super::schemas::{Components, GVK, REF_PREFIX};
use crate::resources::Resource;

/// What one operation takes and answers.
struct Op<'a> {
    /// kube-apiserver's verb in the operation id (`list`, `read`, `deletecollection`).
    verb: &'a str,
    /// `x-kubernetes-action`.
    action: &'a str,
    /// The group, version and kind of the body.
    gvk: (&'a str, &'a str, &'a str),
    /// The component of the request and response bodies.
    schema: Option<&'a str>,
    /// The operation id's suffix after the kind (`Status`, `ForAllNamespaces`).
    suffix: &'a str,
}

/// `apps` → `Apps`, `discovery.k8s.io` → `Discovery`, the core group → `Core`, as
/// kube-apiserver's operation ids spell a group.
fn group_word(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split(['.', '-'])
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

fn query(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
        "schema": {"type": kind, "uniqueItems": true}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
        "schema": {"type": "string", "uniqueItems": true}})
}

/// The query parameters of a write (create, replace, patch).
fn write_params() -> Vec<Value> {
    vec![
        query(
            "dryRun",
            "string",
            "When present (All), the write is checked and answered but not persisted.",
        ),
        query(
            "fieldManager",
            "string",
            "The name of the actor making the change.",
        ),
        query(
            "fieldValidation",
            "string",
            "What to do with unknown and duplicate fields: Ignore, Warn or Strict (a 400 naming them).",
        ),
    ]
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            "boolean",
            "Ask for BOOKMARK events in a watch.",
        ),
        query("continue", "string", "The continue token of the previous page."),
        query("fieldSelector", "string", "Restrict the objects by their fields."),
        query("labelSelector", "string", "Restrict the objects by their labels."),
        query("limit", "integer", "The most objects to return in one page."),
        query(
            "resourceVersion",
            "string",
            "The version of the state to list or watch from.",
        ),
        query(
            "resourceVersionMatch",
            "string",
            "How resourceVersion applies to a list.",
        ),
        query("timeoutSeconds", "integer", "How long a list or watch may last."),
        query("watch", "boolean", "Watch for changes instead of listing."),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        query(
            "dryRun",
            "string",
            "When present (All), the deletion is checked and answered but not persisted.",
        ),
        query(
            "gracePeriodSeconds",
            "integer",
            "Seconds before the object is deleted.",
        ),
        query(
            "propagationPolicy",
            "string",
            "Whether and how dependents are deleted: Orphan, Background or Foreground.",
        ),
    ]
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("{REF_PREFIX}{name}")})
}

fn content(schema: &Value, types: &[&str]) -> Value {
    Value::Object(
        types
            .iter()
            .map(|t| ((*t).to_owned(), json!({"schema": schema})))
            .collect(),
    )
}

/// One operation object.
fn operation(r: &Resource, op: &Op<'_>, components: &Components) -> Value {
    let scope = if r.namespaced && op.suffix != "ForAllNamespaces" {
        "Namespaced"
    } else {
        ""
    };
    let (group, version, kind) = op.gvk;
    let gv_word = format!("{}{}", group_word(r.group), capitalized(r.version));
    let collection = if op.verb == "deletecollection" {
        "Collection"
    } else {
        ""
    };
    let verb = if op.verb == "deletecollection" {
        "delete"
    } else {
        op.verb
    };
    // `connectGet` is spelled around the group version: `connectCoreV1GetNamespacedPodExec`.
    let (verb, method) = match verb.strip_prefix("connect") {
        Some(method) if !method.is_empty() => ("connect", method),
        _ => (verb, ""),
    };
    let id = format!(
        "{verb}{gv_word}{method}{collection}{scope}{}{}",
        r.kind, op.suffix
    );
    let body = op
        .schema
        .map(schema_ref)
        .unwrap_or_else(|| json!({"type": "object"}));
    let answer = match op.action {
        "list" => components
            .of(r.group, r.version, &format!("{}List", r.kind))
            .map_or_else(|| json!({"type": "object"}), schema_ref),
        "delete" | "deletecollection" => components
            .of("", "v1", "Status")
            .map_or_else(|| json!({"type": "object"}), schema_ref),
        // Streams and logs answer text, not an object.
        "connect" => json!({"type": "string"}),
        _ if op.suffix == "Log" => json!({"type": "string"}),
        _ => body.clone(),
    };
    let mut out = json!({
        "operationId": id,
        "description": format!("{} {}", op.action, kind),
        "x-kubernetes-action": op.action,
        GVK: {"group": group, "version": version, "kind": kind},
        "responses": {
            if op.action == "post" { "201" } else { "200" }: {
                "description": "OK",
                "content": content(&answer, &["application/json", "application/yaml"]),
            },
            "401": {"description": "Unauthorized"},
        },
    });
    let params = match op.action {
        "list" => list_params(),
        "post" | "put" | "patch" => write_params(),
        "delete" | "deletecollection" => delete_params(),
        _ => Vec::new(),
    };
    if !params.is_empty() {
        out["parameters"] = Value::Array(params);
    }
    match op.action {
        "post" | "put" => {
            out["requestBody"] = json!({"required": true,
                "content": content(&body, &["application/json", "application/yaml"])});
        }
        "patch" => {
            let patch = json!({"type": "object", "description": "A JSON patch, merge patch, strategic merge patch or apply configuration."});
            let types = [
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml",
            ];
            out["requestBody"] = json!({"required": true, "content": content(&patch, &types)});
        }
        "delete" | "deletecollection" => {
            let options = schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions");
            out["requestBody"] = json!({"content": content(&options, &["application/json"])});
        }
        _ => {}
    }
    out
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The paths of the resources in `resources`, with the operations each serves.
pub(super) fn paths<'a>(
    resources: impl Iterator<Item = &'a Resource>,
    components: &Components,
) -> Map<String, Value> {
    let mut paths = Map::new();
    for r in resources {
        let own = (r.group, r.version, r.kind);
        let schema = components.of_resource(r);
        let op = |verb, action, suffix| Op {
            verb,
            action,
            gvk: own,
            schema,
            suffix,
        };
        let base = r.gv_path();
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let item = format!("{collection}/{{name}}");
        let scope_params = |named: bool| {
            let mut params = Vec::new();
            if named {
                params.push(path_param("name", &format!("The name of the {}.", r.kind)));
            }
            if r.namespaced {
                params.push(path_param("namespace", "The object's namespace."));
            }
            params.push(query("pretty", "string", "Indent the output."));
            Value::Array(params)
        };
        let entry = |named: bool, ops: Vec<(&str, Op<'_>)>| {
            let mut entry = Map::new();
            for (method, op) in ops {
                entry.insert(method.to_owned(), operation(r, &op, components));
            }
            entry.insert("parameters".into(), scope_params(named));
            Value::Object(entry)
        };
        paths.insert(
            collection.clone(),
            entry(
                false,
                vec![
                    ("get", op("list", "list", "")),
                    ("post", op("create", "post", "")),
                    ("delete", op("deletecollection", "deletecollection", "")),
                ],
            ),
        );
        paths.insert(
            item.clone(),
            entry(
                true,
                vec![
                    ("get", op("read", "get", "")),
                    ("put", op("replace", "put", "")),
                    ("patch", op("patch", "patch", "")),
                    ("delete", op("delete", "delete", "")),
                ],
            ),
        );
        if r.namespaced {
            let mut entry = Map::new();
            let all = op("list", "list", "ForAllNamespaces");
            entry.insert("get".into(), operation(r, &all, components));
            entry.insert(
                "parameters".into(),
                json!([query("pretty", "string", "Indent the output.")]),
            );
            paths.insert(format!("{base}/{}", r.plural), Value::Object(entry));
        }
        for sub in r.subresources {
            let path = format!("{item}/{sub}");
            let scale = components.of("autoscaling", "v1", "Scale");
            let ops = match *sub {
                "status" => vec![
                    ("get", op("read", "get", "Status")),
                    ("put", op("replace", "put", "Status")),
                    ("patch", op("patch", "patch", "Status")),
                ],
                "scale" => {
                    let scale_op = |verb, action| Op {
                        verb,
                        action,
                        gvk: ("autoscaling", "v1", "Scale"),
                        schema: scale,
                        suffix: "Scale",
                    };
                    vec![
                        ("get", scale_op("read", "get")),
                        ("put", scale_op("replace", "put")),
                        ("patch", scale_op("patch", "patch")),
                    ]
                }
                "binding" => vec![(
                    "post",
                    Op {
                        verb: "create",
                        action: "post",
                        gvk: ("", "v1", "Binding"),
                        schema: components.of("", "v1", "Binding"),
                        suffix: "Binding",
                    },
                )],
                "eviction" => vec![(
                    "post",
                    Op {
                        verb: "create",
                        action: "post",
                        gvk: ("policy", "v1", "Eviction"),
                        schema: components.of("policy", "v1", "Eviction"),
                        suffix: "Eviction",
                    },
                )],
                "finalize" => vec![("put", op("replace", "put", "Finalize"))],
                "log" => vec![("get", op("read", "get", "Log"))],
                "ephemeralcontainers" => vec![
                    ("get", op("read", "get", "Ephemeralcontainers")),
                    ("put", op("replace", "put", "Ephemeralcontainers")),
                    ("patch", op("patch", "patch", "Ephemeralcontainers")),
                ],
                sub @ ("exec" | "attach" | "portforward") => {
                    let (options, suffix) = match sub {
                        "exec" => ("PodExecOptions", "Exec"),
                        "attach" => ("PodAttachOptions", "Attach"),
                        _ => ("PodPortForwardOptions", "Portforward"),
                    };
                    let connect = |verb| Op {
                        verb,
                        action: "connect",
                        gvk: ("", "v1", options),
                        schema: None,
                        suffix,
                    };
                    vec![("get", connect("connectGet")), ("post", connect("connectPost"))]
                }
                // A subresource this table does not know yet gets no operations.
                _ => continue,
            };
            paths.insert(path, entry(true, ops));
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_spelled_as_kube_apiserver_spells_them() {
        assert_eq!(group_word(""), "Core");
        assert_eq!(group_word("apps"), "Apps");
        assert_eq!(group_word("discovery.k8s.io"), "Discovery");
        assert_eq!(group_word("rbac.authorization.k8s.io"), "RbacAuthorization");
    }

    #[test]
    fn streaming_subresources_are_connect_operations() {
        let components = Components::load().unwrap();
        let pods = crate::resources::Resource {
            subresources: &["exec", "attach", "portforward", "ephemeralcontainers"],
            ..*crate::resources::Resource::find("", "v1", "pods").unwrap()
        };
        let paths = paths(std::iter::once(&pods), &components);
        let exec = &paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"];
        assert_eq!(exec["get"]["operationId"], "connectCoreV1GetNamespacedPodExec");
        assert_eq!(exec["post"]["operationId"], "connectCoreV1PostNamespacedPodExec");
        assert_eq!(exec["post"]["x-kubernetes-action"], "connect");
        assert_eq!(exec["post"][GVK]["kind"], "PodExecOptions");
        let forward = &paths["/api/v1/namespaces/{namespace}/pods/{name}/portforward"];
        assert_eq!(
            forward["get"]["operationId"],
            "connectCoreV1GetNamespacedPodPortforward"
        );
        let ephemeral = &paths["/api/v1/namespaces/{namespace}/pods/{name}/ephemeralcontainers"];
        assert_eq!(
            ephemeral["patch"]["operationId"],
            "patchCoreV1NamespacedPodEphemeralcontainers"
        );
        assert_eq!(ephemeral["patch"][GVK]["kind"], "Pod");
    }
}
