//! `meta.k8s.io/v1` `Table` responses with kube-apiserver's columns for every served kind.
//!
//! Pods use `podvisor-lifecycle`'s printer (the same cells the node computes); other kinds
//! follow kube-apiserver's printers.

use podvisor_core::corev1::Pod;
use podvisor_lifecycle::Time;
use podvisor_lifecycle::printer::{human_duration, pod_columns, pod_row, pod_row_condition};
use serde_json::{Value, json};

use crate::meta::{parse_rfc3339, str_at};
use crate::resources::Resource;

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// A `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// From the `includeObject` query parameter.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

type Column = (&'static str, &'static str, &'static str, u8);

fn columns(resource: &Resource) -> Vec<Column> {
    const NAME: Column = ("Name", "string", "name", 0);
    const AGE: Column = ("Age", "string", "", 0);
    match (resource.group, resource.plural) {
        ("", "services") => vec![
            NAME,
            ("Type", "string", "", 0),
            ("Cluster-IP", "string", "", 0),
            ("External-IP", "string", "", 0),
            ("Port(s)", "string", "", 0),
            AGE,
            ("Selector", "string", "", 1),
        ],
        ("", "endpoints") => vec![NAME, ("Endpoints", "string", "", 0), AGE],
        ("", "namespaces") => vec![NAME, ("Status", "string", "", 0), AGE],
        ("", "configmaps") => vec![NAME, ("Data", "string", "", 0), AGE],
        ("", "secrets") => vec![NAME, ("Type", "string", "", 0), ("Data", "string", "", 0), AGE],
        (_, "events") => vec![
            ("Last Seen", "string", "", 0),
            ("Type", "string", "", 0),
            ("Reason", "string", "", 0),
            ("Object", "string", "", 0),
            ("Subobject", "string", "", 1),
            ("Source", "string", "", 1),
            ("Message", "string", "", 0),
            ("First Seen", "string", "", 1),
            ("Count", "string", "", 1),
            ("Name", "string", "", 1),
        ],
        ("", "nodes") => vec![
            NAME,
            ("Status", "string", "", 0),
            ("Roles", "string", "", 0),
            AGE,
            ("Version", "string", "", 0),
            ("Internal-IP", "string", "", 1),
            ("External-IP", "string", "", 1),
            ("OS-Image", "string", "", 1),
            ("Kernel-Version", "string", "", 1),
            ("Container-Runtime", "string", "", 1),
        ],
        ("coordination.k8s.io", "leases") => vec![NAME, ("Holder", "string", "", 0), AGE],
        (_, "endpointslices") => vec![
            NAME,
            ("AddressType", "string", "", 0),
            ("Ports", "string", "", 0),
            ("Endpoints", "string", "", 0),
            AGE,
        ],
        _ => vec![NAME, AGE],
    }
}

fn age(object: &Value, path: &str, now: i64) -> String {
    match str_at(object, path).and_then(parse_rfc3339) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

fn s(object: &Value, path: &str) -> String {
    str_at(object, path).unwrap_or("").to_string()
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

fn or_unknown(v: String) -> String {
    if v.is_empty() { "<unknown>".into() } else { v }
}

fn more(list: Vec<String>) -> String {
    if list.is_empty() {
        return "<none>".into();
    }
    let shown = list.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if list.len() > 3 {
        format!("{shown} + {} more...", list.len() - 3)
    } else {
        shown
    }
}

fn arr<'a>(object: &'a Value, path: &str) -> &'a [Value] {
    path.split('.')
        .try_fold(object, |v, p| v.get(p))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn cells(resource: &Resource, o: &Value, now: i64) -> Vec<Value> {
    let name = s(o, "metadata.name");
    let created = age(o, "metadata.creationTimestamp", now);
    let out: Vec<String> = match (resource.group, resource.plural) {
        ("", "services") => {
            let ty = str_at(o, "spec.type").unwrap_or("ClusterIP").to_string();
            let external = if ty == "ExternalName" {
                s(o, "spec.externalName")
            } else {
                let mut ips: Vec<String> = arr(o, "spec.externalIPs")
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                ips.extend(arr(o, "status.loadBalancer.ingress").iter().filter_map(|i| {
                    i.get("ip")
                        .or_else(|| i.get("hostname"))
                        .and_then(Value::as_str)
                        .map(String::from)
                }));
                if ips.is_empty() && ty == "LoadBalancer" {
                    "<pending>".into()
                } else {
                    ips.join(",")
                }
            };
            let ports: Vec<String> = arr(o, "spec.ports")
                .iter()
                .map(|p| {
                    let port = p.get("port").map(|v| v.to_string()).unwrap_or_default();
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64) {
                        Some(np) if np != 0 => format!("{port}:{np}/{proto}"),
                        _ => format!("{port}/{proto}"),
                    }
                })
                .collect();
            let selector = o
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                ty,
                or_none(s(o, "spec.clusterIP")),
                or_none(external),
                or_none(ports.join(",")),
                created,
                or_none(selector),
            ]
        }
        ("", "endpoints") => {
            let mut list = Vec::new();
            for subset in arr(o, "subsets") {
                let ports: Vec<String> = arr(subset, "ports")
                    .iter()
                    .filter_map(|p| p.get("port"))
                    .map(|p| p.to_string())
                    .collect();
                for a in arr(subset, "addresses") {
                    let ip = a.get("ip").and_then(Value::as_str).unwrap_or("");
                    if ports.is_empty() {
                        list.push(ip.to_string());
                    }
                    for p in &ports {
                        list.push(format!("{ip}:{p}"));
                    }
                }
            }
            vec![name, more(list), created]
        }
        ("", "configmaps") => {
            let count = |k: &str| o.pointer(k).and_then(Value::as_object).map_or(0, |m| m.len());
            vec![name, (count("/data") + count("/binaryData")).to_string(), created]
        }
        ("", "secrets") => {
            let count = o
                .pointer("/data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
            vec![
                name,
                str_at(o, "type").unwrap_or("Opaque").to_string(),
                count.to_string(),
                created,
            ]
        }
        ("", "namespaces") => vec![
            name,
            str_at(o, "status.phase").unwrap_or("Active").to_string(),
            created,
        ],
        (_, "events") => {
            // As kube-apiserver's event printer (the stored core/v1 form).
            let since = |path: &str| {
                str_at(o, path)
                    .and_then(parse_rfc3339)
                    .map(|t| human_duration(now - t))
            };
            let first = since("firstTimestamp")
                .or_else(|| since("eventTime"))
                .unwrap_or_else(|| "<unknown>".into());
            let mut last = since("lastTimestamp").unwrap_or_else(|| first.clone());
            let mut count = o.get("count").and_then(Value::as_i64).unwrap_or(0);
            if let Some(series) = o.get("series").filter(|v| v.is_object()) {
                last = since("series.lastObservedTime").unwrap_or_else(|| "<unknown>".into());
                count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
            } else if count == 0 {
                count = 1;
            }
            let obj = o.get("involvedObject").cloned().unwrap_or(Value::Null);
            let kind = s(&obj, "kind").to_lowercase();
            let object = match s(&obj, "name") {
                n if n.is_empty() => kind,
                n => format!("{kind}/{n}"),
            };
            let first_of = |a: &str, b: &str| {
                let v = s(o, a);
                if v.is_empty() { s(o, b) } else { v }
            };
            let component = first_of("source.component", "reportingComponent");
            let instance = first_of("source.host", "reportingInstance");
            let source = if instance.is_empty() {
                component
            } else {
                format!("{component}, {instance}")
            };
            vec![
                last,
                s(o, "type"),
                s(o, "reason"),
                object,
                s(&obj, "fieldPath"),
                source,
                s(o, "message").trim().to_string(),
                first,
                count.to_string(),
                name,
            ]
        }
        ("", "nodes") => {
            let ready = arr(o, "status.conditions")
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
            let mut status = match ready.and_then(|c| c.get("status")).and_then(Value::as_str) {
                Some("True") => "Ready".to_string(),
                Some("False") => "NotReady".to_string(),
                _ => "Unknown".to_string(),
            };
            if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<String> = o
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            let addr = |t: &str| {
                arr(o, "status.addresses")
                    .iter()
                    .find(|a| a.get("type").and_then(Value::as_str) == Some(t))
                    .and_then(|a| a.get("address"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            vec![
                name,
                status,
                or_none(roles.join(",")),
                created,
                s(o, "status.nodeInfo.kubeletVersion"),
                or_none(addr("InternalIP")),
                or_none(addr("ExternalIP")),
                or_unknown(s(o, "status.nodeInfo.osImage")),
                or_unknown(s(o, "status.nodeInfo.kernelVersion")),
                or_unknown(s(o, "status.nodeInfo.containerRuntimeVersion")),
            ]
        }
        ("coordination.k8s.io", "leases") => vec![name, s(o, "spec.holderIdentity"), created],
        (_, "endpointslices") => {
            let ports: Vec<String> = arr(o, "ports")
                .iter()
                .filter_map(|p| p.get("port"))
                .map(|p| p.to_string())
                .collect();
            let addrs: Vec<String> = arr(o, "endpoints")
                .iter()
                .flat_map(|e| {
                    arr(e, "addresses")
                        .iter()
                        .filter_map(|a| a.as_str().map(String::from))
                })
                .collect();
            let ports = if ports.is_empty() {
                "<unset>".to_string()
            } else {
                ports.join(",")
            };
            let addrs = if addrs.is_empty() {
                "<unset>".to_string()
            } else {
                more(addrs)
            };
            vec![name, s(o, "addressType"), ports, addrs, created]
        }
        _ => vec![name, created],
    };
    out.into_iter().map(Value::String).collect()
}

fn row_object(object: &Value, include: IncludeObject) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(object.clone()),
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object.get("metadata").cloned().unwrap_or(Value::Null),
        })),
    }
}

fn row(resource: &Resource, object: &Value, now: i64, include: IncludeObject) -> Value {
    let mut row = if resource.group.is_empty() && resource.plural == "pods" {
        match serde_json::from_value::<Pod>(object.clone()) {
            Ok(pod) => {
                let r = pod_row(&pod, Time::from_millis(now));
                let mut row = json!({"cells": r.cells()});
                if let Some(c) = pod_row_condition(&pod) {
                    row["conditions"] = json!([{"type": c.type_, "status": c.status, "reason": c.reason, "message": c.message}]);
                }
                row
            }
            Err(_) => json!({"cells": [s(object, "metadata.name"), "", "Unknown", "", "", "", "", "", ""]}),
        }
    } else {
        json!({"cells": cells(resource, object, now)})
    };
    if let Some(o) = row_object(object, include) {
        row["object"] = o;
    }
    row
}

/// A `Table` of `objects` with `resource`'s columns; `resource_version` and `continue_` go into
/// its list metadata.
pub fn table(
    resource: &Resource,
    objects: &[Value],
    resource_version: &str,
    continue_: Option<&str>,
    include: IncludeObject,
    now: i64,
) -> Value {
    let defs: Vec<Value> = if resource.group.is_empty() && resource.plural == "pods" {
        pod_columns()
            .iter()
            .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
            .collect()
    } else {
        columns(resource)
            .into_iter()
            .map(|(name, ty, format, priority)| json!({"name": name, "type": ty, "format": format, "description": name, "priority": priority}))
            .collect()
    };
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_ {
        metadata["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": defs,
        "rows": objects.iter().map(|o| row(resource, o, now, include)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_and_pod_rows() {
        let svc = Resource::find("", "v1", "services").unwrap();
        let obj = json!({"metadata": {"name": "web", "creationTimestamp": "1970-01-01T00:00:00Z"}, "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.1", "ports": [{"port": 80, "protocol": "TCP"}]}});
        let t = table(svc, &[obj], "5", None, IncludeObject::None, 60_000);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "ClusterIP",
                "10.0.0.1",
                "<none>",
                "80/TCP",
                "60s",
                "<none>"
            ])
        );
        assert!(t["rows"][0].get("object").is_none());
        let pods = Resource::find("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "p", "creationTimestamp": "1970-01-01T00:00:00Z"}, "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}});
        let t = table(pods, &[pod], "5", None, IncludeObject::Metadata, 1000);
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["rows"][0]["cells"][0], "p");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }
}
