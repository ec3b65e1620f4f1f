//! Field sets: the fields of an object a manager owns, as `metadata.managedFields` records them
//! (FieldsV1, rule 7.6), computed from objects with the list semantics of [`crate::list_types`],
//! and the difference between two versions of an object (rule 7.8). Everything here is linear in
//! the size of the objects and sets it reads.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

use crate::list_types::{ListStrategy, list_strategy, map_keys};

/// Why a field set could not be computed or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FieldsError {
    /// An element of a map-type list lacks one of its key fields (and the schema gives it no
    /// default).
    #[error(
        "{path}: element {index}: associative list with keys has an element that omits key field {field:?}"
    )]
    MissingKey {
        /// The list.
        path: String,
        /// The element's position.
        index: usize,
        /// The key field.
        field: &'static str,
    },
    /// Two elements of a map- or set-type list have the same identity.
    #[error("{path}: duplicate entries for key {key}")]
    Duplicate {
        /// The list.
        path: String,
        /// The element's identity, as a path element (`[name="a"]`).
        key: String,
    },
    /// A FieldsV1 document is not a tree of objects with `f:`, `k:`, `v:`, `i:` or `.` keys.
    #[error("invalid FieldsV1: {0}")]
    Encoding(String),
}

/// One step of a field path (rule 7.6).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PathElement {
    /// `f:<name>`: a field of a struct or an entry of a map.
    Field(String),
    /// `k:<JSON object>`: an element of a map-type list, by its key fields (compact JSON, keys
    /// sorted).
    Key(String),
    /// `v:<JSON value>`: an element of a set-type list.
    Value(String),
    /// `i:<n>`: an element by its position.
    Index(usize),
}

impl PathElement {
    /// The FieldsV1 key: `f:name`, `k:{"name":"a"}`, `v:"x"`, `i:3`.
    pub(crate) fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(json) => format!("k:{json}"),
            PathElement::Value(json) => format!("v:{json}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(key: &str) -> Result<Self, FieldsError> {
        let bad = || FieldsError::Encoding(format!("unknown path element {key:?}"));
        let (kind, rest) = key.split_at_checked(2).ok_or_else(bad)?;
        let json = |rest: &str| serde_json::from_str::<Value>(rest).map_err(|_| bad());
        match kind {
            "f:" => Ok(PathElement::Field(rest.to_string())),
            "k:" => match json(rest)? {
                object @ Value::Object(_) => Ok(PathElement::Key(object.to_string())),
                _ => Err(bad()),
            },
            "v:" => Ok(PathElement::Value(json(rest)?.to_string())),
            "i:" => rest.parse().map(PathElement::Index).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }

    /// As rule 7.7 writes it in a path: `.name`, `[name="a"]`, `[="x"]`, `[3]`.
    fn display(&self) -> String {
        match self {
            PathElement::Field(name) => format!(".{name}"),
            PathElement::Key(json) => {
                let fields = match serde_json::from_str::<Value>(json) {
                    Ok(Value::Object(fields)) => fields,
                    _ => Map::new(),
                };
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", scalar_text(v)))
                    .collect();
                format!("[{}]", parts.join(","))
            }
            PathElement::Value(json) => {
                let v = serde_json::from_str::<Value>(json).unwrap_or(Value::Null);
                format!("[={}]", scalar_text(&v))
            }
            PathElement::Index(i) => format!("[{i}]"),
        }
    }
}

/// A value in a path string: strings quoted (as Go's `%q` does for printable text), the rest
/// as JSON.
fn scalar_text(v: &Value) -> String {
    v.to_string()
}

/// A path as rule 7.7 writes it: `.spec.containers[name="nginx"].image`.
pub(crate) fn path_string(path: &[PathElement]) -> String {
    path.iter().map(PathElement::display).collect()
}

/// A set of field paths, as a tree: `members` are the paths that end at this node's children,
/// `children` the sets below them (a node that is owned itself and has owned children is in
/// both). No child set is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// Whether the set has no path.
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds `path` (the empty path is not a field and is ignored).
    pub(crate) fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Whether `path` or any path below it is in the set.
    pub(crate) fn contains_or_below(&self, path: &[PathElement]) -> bool {
        match path {
            [] => !self.is_empty(),
            [last] => self.members.contains(last) || self.children.contains_key(last),
            [first, rest @ ..] => self
                .children
                .get(first)
                .is_some_and(|c| c.contains_or_below(rest)),
        }
    }

    /// Adds every path of `other`.
    pub(crate) fn union_with(&mut self, other: &FieldSet) {
        self.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            self.children.entry(pe.clone()).or_default().union_with(child);
        }
    }

    /// Removes every path of `other` (exactly those paths: what lies below a removed member
    /// stays).
    pub(crate) fn remove_all(&mut self, other: &FieldSet) {
        self.members.retain(|m| !other.members.contains(m));
        self.children.retain(|pe, child| {
            if let Some(o) = other.children.get(pe) {
                child.remove_all(o);
            }
            !child.is_empty()
        });
    }

    /// The paths of `self` that are not in `other`.
    pub(crate) fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.remove_all(other);
        out
    }

    /// The paths in both sets.
    pub(crate) fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, child)| {
                let both = child.intersection(other.children.get(pe)?);
                (!both.is_empty()).then(|| (pe.clone(), both))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Whether the path of the one element `pe` is in the set.
    pub(crate) fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    /// The set below `pe`, if any path goes through it.
    pub(crate) fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    /// Removes the field `pe` of this node and everything below it.
    pub(crate) fn remove_subtree(&mut self, pe: &PathElement) {
        self.members.remove(pe);
        self.children.remove(pe);
    }

    /// The set below the field `pe`, if any.
    pub(crate) fn child_mut(&mut self, pe: &PathElement) -> Option<&mut FieldSet> {
        self.children.get_mut(pe)
    }

    /// Drops the child `pe` if it became empty.
    pub(crate) fn prune_child(&mut self, pe: &PathElement) {
        if self.children.get(pe).is_some_and(FieldSet::is_empty) {
            self.children.remove(pe);
        }
    }

    /// Every path, a node's own members before its children's paths.
    pub(crate) fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        for m in &self.members {
            let mut path = prefix.clone();
            path.push(m.clone());
            out.push(path);
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The FieldsV1 document (rule 7.6): a leaf is `{}`; a member with children carries `"."`.
    pub(crate) fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        for m in &self.members {
            if !self.children.contains_key(m) {
                out.insert(m.encode(), Value::Object(Map::new()));
            }
        }
        for (pe, child) in &self.children {
            let mut encoded = match child.to_fields_v1() {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            if self.members.contains(pe) {
                encoded.insert(".".into(), Value::Object(Map::new()));
            }
            out.insert(pe.encode(), Value::Object(encoded));
        }
        Value::Object(out)
    }

    /// Reads a FieldsV1 document.
    pub(crate) fn from_fields_v1(doc: &Value) -> Result<FieldSet, FieldsError> {
        let Value::Object(map) = doc else {
            return Err(FieldsError::Encoding("a node is not an object".into()));
        };
        let mut set = FieldSet::default();
        for (key, child) in map {
            if key == "." {
                continue;
            }
            let pe = PathElement::decode(key)?;
            let Value::Object(inner) = child else {
                return Err(FieldsError::Encoding(format!("{key} is not an object")));
            };
            if inner.is_empty() || inner.contains_key(".") {
                set.members.insert(pe.clone());
            }
            let below = FieldSet::from_fields_v1(child)?;
            if !below.is_empty() {
                set.children.insert(pe, below);
            }
        }
        Ok(set)
    }
}

/// `spath` (field names from the root, list elements left out) extended by `field`.
pub(crate) fn child_spath(spath: &str, field: &str) -> String {
    if spath.is_empty() {
        field.to_string()
    } else {
        format!("{spath}.{field}")
    }
}

/// The identity of element `index` of the list at `spath` (rule 7.6): `k:` by its key fields for
/// a map-type list, `v:` by its value for a set, `i:` by its position otherwise.
pub(crate) fn element_of(spath: &str, index: usize, item: &Value) -> Result<PathElement, FieldsError> {
    match list_strategy(spath) {
        ListStrategy::MergeBy(merge_key) => {
            let mut fields = Map::new();
            for key in map_keys(spath, merge_key) {
                let value = match (item.get(key.field), key.default) {
                    (Some(v), _) if !v.is_null() => v.clone(),
                    (_, Some(default)) => Value::String(default.into()),
                    _ => {
                        return Err(FieldsError::MissingKey {
                            path: spath.to_string(),
                            index,
                            field: key.field,
                        });
                    }
                };
                fields.insert(key.field.into(), value);
            }
            Ok(PathElement::Key(Value::Object(fields).to_string()))
        }
        ListStrategy::Set => Ok(PathElement::Value(item.to_string())),
        ListStrategy::Replace => Ok(PathElement::Index(index)),
    }
}

/// The fields `object` sets, as server-side apply counts an applied configuration's (rule 7.8):
/// every scalar, atomic list, empty or null value, and element of a map- or set-type list.
/// Duplicate elements are an error.
pub(crate) fn set_of(object: &Value) -> Result<FieldSet, FieldsError> {
    let mut set = FieldSet::default();
    collect_set(object, "", &mut Vec::new(), &mut set)?;
    Ok(set)
}

fn collect_set(
    value: &Value,
    spath: &str,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
) -> Result<(), FieldsError> {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                path.push(PathElement::Field(k.clone()));
                if v.as_object().is_some_and(Map::is_empty) {
                    set.insert(path);
                }
                collect_set(v, &child_spath(spath, k), path, set)?;
                path.pop();
            }
        }
        Value::Array(items) => {
            if list_strategy(spath) == ListStrategy::Replace {
                set.insert(path);
                return Ok(());
            }
            let mut seen = HashSet::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let pe = element_of(spath, i, item)?;
                if !seen.insert(pe.clone()) {
                    return Err(FieldsError::Duplicate {
                        path: spath.to_string(),
                        key: pe.display(),
                    });
                }
                path.push(pe);
                collect_set(item, spath, path, set)?;
                set.insert(path);
                path.pop();
            }
        }
        _ => set.insert(path),
    }
    Ok(())
}

/// What changed from one version of an object to the next (rule 7.8): `changed` holds the
/// paths added or modified, `removed` those gone.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Paths added or given another value.
    pub(crate) changed: FieldSet,
    /// Paths removed.
    pub(crate) removed: FieldSet,
}

/// Fields every object of a kind has (Go value structs, and fields serialized without
/// `omitempty`, null when unset), which are therefore never added or removed themselves: only
/// their contents are.
const ALWAYS_PRESENT: &[&str] = &[
    "metadata",
    "spec",
    "status",
    "spec.template",
    "spec.template.metadata",
    "spec.template.spec",
    "spec.jobTemplate",
    "spec.jobTemplate.spec",
    "spec.jobTemplate.spec.template",
    "spec.jobTemplate.spec.template.metadata",
    "spec.jobTemplate.spec.template.spec",
    "spec.strategy",
    "spec.updateStrategy",
    "spec.selector",
    "spec.containers",
    "spec.template.spec.containers",
    "spec.jobTemplate.spec.template.spec.containers",
    "endpoints",
];

/// Compares two versions of an object, one walk over both. A list whose elements cannot be
/// identified (a missing key) counts as one field.
pub(crate) fn compare(old: &Value, new: &Value) -> Changes {
    let mut changes = Changes::default();
    compare_at(Some(old), Some(new), "", &mut Vec::new(), &mut changes);
    changes
}

#[derive(PartialEq)]
enum Shape {
    Map,
    List,
    Leaf,
}

fn shape(v: Option<&Value>) -> Option<Shape> {
    v.map(|v| match v {
        Value::Object(_) => Shape::Map,
        Value::Array(_) => Shape::List,
        _ => Shape::Leaf,
    })
}

fn compare_at(
    old: Option<&Value>,
    new: Option<&Value>,
    spath: &str,
    path: &mut Vec<PathElement>,
    out: &mut Changes,
) {
    let shape = match (shape(old), shape(new)) {
        (Some(a), Some(b)) if a != b => Shape::Leaf,
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => return,
    };
    let empty = |v: Option<&Value>| match v {
        None => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    let granular = match shape {
        Shape::Map => !(empty(old) && empty(new)),
        Shape::List => {
            !(empty(old) && empty(new))
                && list_strategy(spath) != ListStrategy::Replace
                && compare_list(old, new, spath, path, out)
        }
        Shape::Leaf => false,
    };
    if shape == Shape::Map && granular {
        compare_map(old, new, spath, path, out);
    }
    if !granular {
        match (old, new) {
            (None, Some(_)) => out.changed.insert(path),
            (Some(_), None) => out.removed.insert(path),
            (Some(a), Some(b)) if a != b => out.changed.insert(path),
            _ => {}
        }
        return;
    }
    // A node that appears or disappears is itself added or removed, besides its fields.
    if path.is_empty()
        || (ALWAYS_PRESENT.contains(&spath) && matches!(path.last(), Some(PathElement::Field(_))))
    {
        return;
    }
    match (old, new) {
        (None, Some(_)) => out.changed.insert(path),
        (Some(_), None) => out.removed.insert(path),
        _ => {}
    }
}

fn compare_map(
    old: Option<&Value>,
    new: Option<&Value>,
    spath: &str,
    path: &mut Vec<PathElement>,
    out: &mut Changes,
) {
    let empty = Map::new();
    let old_map = old.and_then(Value::as_object).unwrap_or(&empty);
    let new_map = new.and_then(Value::as_object).unwrap_or(&empty);
    // `metadata.managedFields` is bookkeeping, never a field anyone owns: not walked at all.
    let skip = |k: &str| spath == "metadata" && k == "managedFields";
    for (k, nv) in new_map {
        if skip(k) {
            continue;
        }
        path.push(PathElement::Field(k.clone()));
        compare_at(old_map.get(k), Some(nv), &child_spath(spath, k), path, out);
        path.pop();
    }
    for (k, ov) in old_map {
        if skip(k) || new_map.contains_key(k) {
            continue;
        }
        path.push(PathElement::Field(k.clone()));
        compare_at(Some(ov), None, &child_spath(spath, k), path, out);
        path.pop();
    }
}

/// The elements of a list by identity, in order; later duplicates are left out. `None` when an
/// element cannot be identified.
fn index_list<'v>(
    items: &'v [Value],
    spath: &str,
) -> Option<(Vec<PathElement>, HashMap<PathElement, &'v Value>)> {
    let mut order = Vec::with_capacity(items.len());
    let mut by_id = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let pe = element_of(spath, i, item).ok()?;
        if by_id.contains_key(&pe) {
            continue;
        }
        by_id.insert(pe.clone(), item);
        order.push(pe);
    }
    Some((order, by_id))
}

fn items_of(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[][..], Vec::as_slice)
}

/// Compares a map- or set-type list element by element; `false` (nothing recorded) when an
/// element cannot be identified, so the caller compares the list whole.
fn compare_list(
    old: Option<&Value>,
    new: Option<&Value>,
    spath: &str,
    path: &mut Vec<PathElement>,
    out: &mut Changes,
) -> bool {
    let (Some((old_order, old_items)), Some((new_order, new_items))) =
        (index_list(items_of(old), spath), index_list(items_of(new), spath))
    else {
        return false;
    };
    for pe in &new_order {
        path.push(pe.clone());
        compare_at(
            old_items.get(pe).copied(),
            new_items.get(pe).copied(),
            spath,
            path,
            out,
        );
        path.pop();
    }
    for pe in &old_order {
        if !new_items.contains_key(pe) {
            path.push(pe.clone());
            compare_at(old_items.get(pe).copied(), None, spath, path, out);
            path.pop();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    #[test]
    fn fields_v1_encodes_leaves_members_with_children_and_list_elements() {
        let config = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}}}});
        let set = set_of(&config).unwrap();
        let doc = set.to_fields_v1();
        assert_eq!(
            doc,
            json!({"f:apiVersion": {}, "f:kind": {},
                "f:metadata": {"f:labels": {"f:app": {}}, "f:name": {}},
                "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
        );
        // The wire form of rule 7.6, character for character (keys sorted).
        let spec_only = doc["f:spec"].to_string();
        assert_eq!(
            spec_only,
            r#"{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{}}}}}}"#
        );
        // Decoding gives the same set back.
        assert_eq!(FieldSet::from_fields_v1(&doc).unwrap(), set);
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"k:[1]": {}})).is_err());
    }

    #[test]
    fn sets_are_v_elements_and_ports_are_keyed_with_their_defaulted_protocol() {
        let pod = json!({"metadata": {"finalizers": ["a/b"]},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 53}, {"containerPort": 53, "protocol": "UDP"}]}],
                     "tolerations": [{"key": "k"}]}});
        let set = set_of(&pod).unwrap();
        let doc = set.to_fields_v1();
        assert_eq!(doc["f:metadata"]["f:finalizers"], json!({"v:\"a/b\"": {}}));
        let ports = &doc["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:ports"];
        assert_eq!(
            ports,
            &json!({"k:{\"containerPort\":53,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}},
                    "k:{\"containerPort\":53,\"protocol\":\"UDP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}})
        );
        // An atomic list is one leaf.
        assert_eq!(doc["f:spec"]["f:tolerations"], json!({}));
        // Duplicates and missing keys are errors in a configuration.
        let dup = json!({"spec": {"containers": [{"name": "c"}, {"name": "c"}]}});
        assert_eq!(
            set_of(&dup).unwrap_err().to_string(),
            r#"spec.containers: duplicate entries for key [name="c"]"#
        );
        let nameless = json!({"spec": {"containers": [{"image": "x"}]}});
        assert!(matches!(
            set_of(&nameless),
            Err(FieldsError::MissingKey { field: "name", .. })
        ));
    }

    #[test]
    fn paths_print_as_rule_7_7() {
        let path = [
            f("spec"),
            f("containers"),
            PathElement::Key(r#"{"name":"nginx"}"#.into()),
            f("image"),
        ];
        assert_eq!(path_string(&path), r#".spec.containers[name="nginx"].image"#);
        assert_eq!(
            path_string(&[f("metadata"), f("finalizers"), PathElement::Value("\"x\"".into())]),
            r#".metadata.finalizers[="x"]"#
        );
        assert_eq!(
            path_string(&[PathElement::Key(
                r#"{"containerPort":80,"protocol":"TCP"}"#.into()
            )]),
            r#"[containerPort=80,protocol="TCP"]"#
        );
        assert_eq!(path_string(&[f("a"), PathElement::Index(3)]), ".a[3]");
    }

    #[test]
    fn set_algebra() {
        let a = set_of(&json!({"a": 1, "b": {"c": 1, "d": 2}})).unwrap();
        let b = set_of(&json!({"b": {"d": 3}, "e": 1})).unwrap();
        let both = a.intersection(&b);
        assert_eq!(both.paths(), vec![vec![f("b"), f("d")]]);
        let only_a = a.difference(&b);
        assert_eq!(only_a.paths(), vec![vec![f("a")], vec![f("b"), f("c")]]);
        let mut all = a.clone();
        all.union_with(&b);
        assert_eq!(all.paths().len(), 4);
        assert!(all.contains(&[f("b"), f("c")]));
        assert!(!all.contains(&[f("b")]));
        assert!(all.contains_or_below(&[f("b")]));
        all.remove_all(&a);
        assert_eq!(all.paths(), vec![vec![f("e")]]);
    }

    #[test]
    fn compare_finds_added_modified_and_removed_fields_and_new_elements() {
        let old = json!({"metadata": {"name": "x", "labels": {"a": "1"}, "managedFields": [{"manager": "m"}]},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}}});
        let new = json!({"metadata": {"name": "x", "annotations": {"n": "v"}, "managedFields": []},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "c", "image": "2"}]}}}});
        let c = compare(&old, &new);
        let changed = c.changed.to_fields_v1();
        assert_eq!(
            changed,
            json!({"f:metadata": {"f:annotations": {".": {}, "f:n": {}}},
                "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
        );
        assert_eq!(
            c.removed.to_fields_v1(),
            json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}},
                "f:spec": {"f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"b\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
        );
        // No change, no paths; an object created from nothing has no "." on its spec.
        assert_eq!(compare(&old, &old), Changes::default());
        let created = compare(&json!({}), &json!({"spec": {"a": 1}, "data": {"k": "v"}}));
        assert_eq!(
            created.changed.to_fields_v1(),
            json!({"f:spec": {"f:a": {}}, "f:data": {".": {}, "f:k": {}}})
        );
    }
}
