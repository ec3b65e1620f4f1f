//! The served kinds' schemas: the build script's `components.schemas` (from k8s-openapi's
//! `schemars` output), annotated with each list field's merge semantics from
//! [`crate::list_types`], and the subset a group version's document needs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use super::OpenApiError;
use crate::list_types::{ListStrategy, list_strategy, map_keys};

/// A list field's strategy and, for a map-type list, all its key fields.
type Found = (ListStrategy, Vec<&'static str>);
use crate::resources::Resource;

/// The build script's output (`build.rs`): every schema reachable from a served kind.
static GENERATED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/schemas.json"));

/// The extension naming a top-level kind's group, version and kind (a list on schemas, an
/// object on operations).
pub(super) const GVK: &str = "x-kubernetes-group-version-kind";

/// Where a `$ref` points in an OpenAPI 3 document.
pub(super) const REF_PREFIX: &str = "#/components/schemas/";

/// How deep a kind's fields are followed for list annotations (a pod template in a Job
/// template in a CronJob is 12 levels down to a container's env).
const MAX_DEPTH: usize = 24;

/// Every component, annotated, by name.
#[derive(Debug)]
pub(super) struct Components {
    pub(super) schemas: BTreeMap<String, Value>,
    /// The component of each top-level kind, by (group, version, kind).
    by_gvk: HashMap<(String, String, String), String>,
    /// Fields that two paths gave different list semantics: (component, field).
    pub(super) conflicts: Vec<(String, String)>,
}

impl Components {
    /// The generated schemas with every served kind's list fields annotated.
    pub(super) fn load() -> Result<Self, OpenApiError> {
        let schemas: BTreeMap<String, Value> =
            serde_json::from_slice(GENERATED).map_err(OpenApiError::Generated)?;
        let mut by_gvk = HashMap::new();
        for (name, schema) in &schemas {
            for gvk in schema.get(GVK).and_then(Value::as_array).into_iter().flatten() {
                let part = |k: &str| gvk.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                by_gvk.insert((part("group"), part("version"), part("kind")), name.clone());
            }
        }
        let mut components = Components {
            schemas,
            by_gvk,
            conflicts: Vec::new(),
        };
        components.annotate_lists(crate::resources::RESOURCES);
        Ok(components)
    }

    /// The component name of a kind, if it has one.
    pub(super) fn of(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.by_gvk
            .get(&(group.to_owned(), version.to_owned(), kind.to_owned()))
            .map(String::as_str)
    }

    /// The component of a served resource's kind.
    pub(super) fn of_resource(&self, r: &Resource) -> Option<&str> {
        self.of(r.group, r.version, r.kind)
    }

    /// Walks every served kind from its root, with field paths as [`list_strategy`] reads them
    /// (`spec.template.spec.containers.env`), and marks each list field of a component with the
    /// strategy its path has. A component reached by several paths (a `PodSpec` in a Pod and in
    /// a Deployment) takes the first merge strategy found; a different one from another path
    /// is recorded in `conflicts` (the tests require none).
    fn annotate_lists(&mut self, resources: &[Resource]) {
        let mut found: BTreeMap<(String, String), Found> = BTreeMap::new();
        for r in resources {
            let Some(root) = self.of_resource(r).map(str::to_owned) else {
                continue;
            };
            let mut stack = Vec::new();
            self.walk(&root, "", &mut stack, &mut found);
        }
        for ((component, field), (strategy, keys)) in found {
            let Some(prop) = self
                .schemas
                .get_mut(&component)
                .and_then(|s| s.pointer_mut(&format!("/properties/{field}")))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let extensions = match strategy {
                ListStrategy::MergeBy(key) => json!({
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": keys,
                    "x-kubernetes-patch-strategy": "merge",
                    "x-kubernetes-patch-merge-key": key,
                }),
                ListStrategy::Set => json!({
                    "x-kubernetes-list-type": "set",
                    "x-kubernetes-patch-strategy": "merge",
                }),
                ListStrategy::Replace => continue,
            };
            if let Value::Object(extensions) = extensions {
                prop.extend(extensions);
            }
        }
    }

    fn walk(
        &mut self,
        component: &str,
        prefix: &str,
        stack: &mut Vec<String>,
        found: &mut BTreeMap<(String, String), Found>,
    ) {
        if stack.len() >= MAX_DEPTH || stack.iter().any(|c| c == component) {
            return;
        }
        let Some(properties) = self
            .schemas
            .get(component)
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
        else {
            return;
        };
        // (field, its path, the component to follow)
        let mut next = Vec::new();
        for (field, prop) in properties {
            let path = format!("{prefix}{field}");
            if prop.get("type").and_then(Value::as_str) == Some("array") {
                let strategy = list_strategy(&path);
                if strategy != ListStrategy::Replace {
                    let key = (component.to_owned(), field.clone());
                    match found.get(&key) {
                        Some((seen, _)) if *seen != strategy => {
                            self.conflicts.push(key);
                        }
                        Some(_) => {}
                        None => {
                            // Every key field of the list (`containerPort` and `protocol`).
                            let keys = match strategy {
                                ListStrategy::MergeBy(k) => {
                                    map_keys(&path, k).iter().map(|m| m.field).collect()
                                }
                                _ => Vec::new(),
                            };
                            found.insert(key, (strategy, keys));
                        }
                    }
                }
                if let Some(target) = prop.get("items").and_then(ref_of) {
                    next.push((path, target.to_owned()));
                }
            } else if let Some(target) = ref_of(prop) {
                next.push((path, target.to_owned()));
            }
        }
        stack.push(component.to_owned());
        for (path, target) in next {
            self.walk(&target, &format!("{path}."), stack, found);
        }
        stack.pop();
    }

    /// The components `roots` need: they and every component they refer to, transitively.
    pub(super) fn closure<'a>(&self, roots: impl IntoIterator<Item = &'a str>) -> Map<String, Value> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = roots.into_iter().map(str::to_owned).collect();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(schema) = self.schemas.get(&name) {
                refs(schema, &mut |target| todo.push(target.to_owned()));
            }
        }
        seen.into_iter()
            .filter_map(|name| self.schemas.get(&name).map(|s| (name, s.clone())))
            .collect()
    }
}

/// The component a field's schema refers to: `{"$ref"}` or `{"allOf": [{"$ref"}], ...}` (a
/// reference with a description of its own).
pub(super) fn ref_of(schema: &Value) -> Option<&str> {
    let reference = schema
        .get("$ref")
        .or_else(|| schema.get("allOf")?.get(0)?.get("$ref"))?;
    reference.as_str()?.strip_prefix(REF_PREFIX)
}

/// Calls `found` with every component `value` refers to.
fn refs(value: &Value, found: &mut impl FnMut(&str)) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(target) = r.strip_prefix(REF_PREFIX) {
                            found(target);
                        }
                    }
                    _ => refs(v, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}
