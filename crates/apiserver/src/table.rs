//! `meta.k8s.io/v1` `Table` responses with kube-apiserver's columns for every served kind.
//!
//! The columns and cells are each kind's ([`crate::strategy::Strategy::columns`] and
//! [`crate::strategy::Strategy::row`]), as kube-apiserver's printers make them; this module
//! assembles the `Table` and the helpers the kinds' printers share.

use crate::strategy::pod::printer::human_duration;
use serde_json::{Value, json};

use crate::meta::str_at;
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

/// One column of a kind's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The header kubectl shows (`Name`).
    pub name: &'static str,
    /// `string`, `integer`, ...
    pub type_: &'static str,
    /// `name` for the object's name column, else empty.
    pub format: &'static str,
    /// What the column means.
    pub description: &'static str,
    /// 0: always shown; 1: with `-o wide`.
    pub priority: u8,
}

impl Column {
    /// The object's name.
    pub const NAME: Column = Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: "Name",
        priority: 0,
    };
    /// The object's age.
    pub const AGE: Column = Column::text("Age", 0);

    /// A string column described by its name.
    pub const fn text(name: &'static str, priority: u8) -> Column {
        Column {
            name,
            type_: "string",
            format: "",
            description: name,
            priority,
        }
    }
}

/// One row of a kind's table: its cells and the conditions kubectl reads (a pod's
/// `Completed` rows are greyed by them).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    /// The cells, one per column.
    pub cells: Vec<String>,
    /// The row's conditions, as the Table's JSON.
    pub conditions: Vec<Value>,
}

impl Row {
    /// A row of `cells` without conditions.
    pub fn cells(cells: Vec<String>) -> Row {
        Row {
            cells,
            conditions: Vec::new(),
        }
    }
}

/// The age at `now` of a time in Unix milliseconds (`5m`), `<unknown>` without one.
pub(crate) fn age_at(then: Option<i64>, now: i64) -> String {
    then.map_or_else(|| "<unknown>".into(), |t| human_duration(now.saturating_sub(t)))
}

/// The age of an object (its creation timestamp) at `now`.
pub(crate) fn created(meta: &podvisor_core::metav1::ObjectMeta, now: i64) -> String {
    age_at(
        meta.creation_timestamp.as_ref().map(|t| t.0.as_millisecond()),
        now,
    )
}

/// The string at the dotted `path`, empty if absent.
pub(crate) fn text(object: &Value, path: &str) -> String {
    str_at(object, path).unwrap_or("").to_string()
}

pub(crate) fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

pub(crate) fn or_unknown(v: String) -> String {
    if v.is_empty() { "<unknown>".into() } else { v }
}

/// Up to three items, then `+ N more...`; `<none>` for none.
pub(crate) fn more(list: Vec<String>) -> String {
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
    let Row { cells, conditions } = resource.strategy.row(object, now);
    let mut row = json!({"cells": cells});
    if !conditions.is_empty() {
        row["conditions"] = Value::Array(conditions);
    }
    if let Some(o) = row_object(object, include) {
        row["object"] = o;
    }
    row
}

/// A `Table` of `objects` with `resource`'s columns (its [strategy](crate::strategy)'s);
/// `resource_version` and `continue_` go into its list metadata.
pub fn table(
    resource: &Resource,
    objects: &[Value],
    resource_version: &str,
    continue_: Option<&str>,
    include: IncludeObject,
    now: i64,
) -> Value {
    let defs: Vec<Value> = resource
        .strategy
        .columns()
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
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
