//! The object side of server-side apply: merging an applied configuration into the live object
//! with the list semantics of [`crate::list_types`] (rule 7.8 step 1, 7.12), finding a field by
//! its path, and removing the fields a prune drops (step 3).

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, FieldsError, PathElement, child_spath, element_of};
use crate::list_types::{ListStrategy, list_strategy};

/// `live` ⊕ `config`: maps merge key by key, map- and set-type lists element by element (the
/// configuration's order for its elements, the live object's other elements kept in place),
/// everything else is the configuration's. A `null` in the configuration removes the field.
pub(crate) fn merge(live: Value, config: &Value) -> Result<Value, FieldsError> {
    merge_at(Some(live), config, "")
}

fn merge_at(live: Option<Value>, config: &Value, spath: &str) -> Result<Value, FieldsError> {
    match config {
        Value::Object(fields) => {
            let mut out = match live {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            for (k, v) in fields {
                let current = out.remove(k);
                if v.is_null() {
                    continue;
                }
                out.insert(k.clone(), merge_at(current, v, &child_spath(spath, k))?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) if list_strategy(spath) != ListStrategy::Replace => {
            let live_items = match live {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            merge_list(live_items, items, spath).map(Value::Array)
        }
        other => Ok(other.clone()),
    }
}

/// Merges two map- or set-type lists. Elements of the configuration keep its order; each
/// live element found in it is merged there; the live object's other elements stay where they
/// were relative to them.
fn merge_list(live: Vec<Value>, config: &[Value], spath: &str) -> Result<Vec<Value>, FieldsError> {
    let mut config_order = Vec::with_capacity(config.len());
    let mut config_items: HashMap<PathElement, &Value> = HashMap::with_capacity(config.len());
    for (i, item) in config.iter().enumerate() {
        let pe = element_of(spath, i, item)?;
        if config_items.insert(pe.clone(), item).is_some() {
            return Err(FieldsError::Duplicate {
                path: spath.to_string(),
                key: super::fieldset::path_string(std::slice::from_ref(&pe)),
            });
        }
        config_order.push(pe);
    }
    // Live elements without an identity, or repeating one, are kept as they are.
    let mut live_order = Vec::with_capacity(live.len());
    let mut live_items: HashMap<PathElement, Value> = HashMap::with_capacity(live.len());
    let mut unidentified = 0usize;
    for (i, item) in live.into_iter().enumerate() {
        let pe = match element_of(spath, i, &item) {
            Ok(pe) if !live_items.contains_key(&pe) => pe,
            _ => {
                unidentified += 1;
                PathElement::Index(usize::MAX - unidentified)
            }
        };
        live_order.push(pe.clone());
        live_items.insert(pe, item);
    }
    let in_config: HashSet<&PathElement> = config_order.iter().collect();
    let mut shared: VecDeque<&PathElement> = config_order
        .iter()
        .filter(|pe| live_items.contains_key(*pe))
        .collect();
    let mut next_shared = shared.pop_front();
    let mut out = Vec::with_capacity(config_order.len() + live_order.len());
    let (mut li, mut ci) = (0, 0);
    while li < live_order.len() || ci < config_order.len() {
        if let (Some(l), Some(c)) = (live_order.get(li), config_order.get(ci)) {
            if l == c {
                out.push(merge_element(live_items.remove(l), config_items[c], spath)?);
                li += 1;
                ci += 1;
                next_shared = shared.pop_front();
                continue;
            }
            // A live element the configuration places later: it is merged there.
            if in_config.contains(l) && next_shared.is_some_and(|n| n != l) {
                li += 1;
                continue;
            }
        }
        if let Some(l) = live_order.get(li)
            && !in_config.contains(l)
        {
            if let Some(item) = live_items.remove(l) {
                out.push(item);
            }
            li += 1;
            continue;
        }
        if let Some(c) = config_order.get(ci) {
            out.push(merge_element(live_items.remove(c), config_items[c], spath)?);
            ci += 1;
            if next_shared == Some(c) {
                next_shared = shared.pop_front();
            }
            continue;
        }
        // Only live elements already merged remain.
        li += 1;
    }
    Ok(out)
}

/// An element of a map-type list merges as an object; a set's element is its value.
fn merge_element(live: Option<Value>, config: &Value, spath: &str) -> Result<Value, FieldsError> {
    match list_strategy(spath) {
        ListStrategy::Set => Ok(config.clone()),
        _ => merge_at(live, config, spath),
    }
}

/// The values of `object` at the paths of `set` that it has, found in one walk guided by the
/// set (each list's elements identified once).
pub(crate) fn values_at<'v>(object: &'v Value, set: &FieldSet) -> HashMap<Vec<PathElement>, &'v Value> {
    let mut out = HashMap::new();
    collect_values(object, set, "", &mut Vec::new(), &mut out);
    out
}

fn collect_values<'v>(
    value: &'v Value,
    set: &FieldSet,
    spath: &str,
    path: &mut Vec<PathElement>,
    out: &mut HashMap<Vec<PathElement>, &'v Value>,
) {
    let mut visit = |pe: &PathElement, child: &'v Value, child_spath: &str| {
        path.push(pe.clone());
        if set.has_member(pe) {
            out.insert(path.clone(), child);
        }
        if let Some(below) = set.child(pe) {
            collect_values(child, below, child_spath, path, out);
        }
        path.pop();
    };
    match value {
        Value::Object(map) => {
            for (name, child) in map {
                let pe = PathElement::Field(name.clone());
                if set.has_member(&pe) || set.child(&pe).is_some() {
                    visit(&pe, child, &child_spath(spath, name));
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Ok(pe) = element_of(spath, i, item) {
                    visit(&pe, item, spath);
                }
            }
        }
        _ => {}
    }
}

/// Removes the fields at the paths of `set` from `object`, in one walk guided by the set, and
/// the maps and lists that this leaves empty (structured-merge-diff makes them null).
pub(crate) fn remove_all(object: &mut Value, set: &FieldSet) {
    remove_in(object, set, "");
}

/// Returns whether `value` was left empty by a removal.
fn remove_in(value: &mut Value, set: &FieldSet, spath: &str) -> bool {
    match value {
        Value::Object(map) => {
            let mut removed = false;
            map.retain(|name, child| {
                let pe = PathElement::Field(name.clone());
                let gone = set.has_member(&pe)
                    || set
                        .child(&pe)
                        .is_some_and(|below| remove_in(child, below, &child_spath(spath, name)));
                removed |= gone;
                !gone
            });
            removed && map.is_empty()
        }
        Value::Array(items) => {
            let mut removed = false;
            let mut index = 0;
            items.retain_mut(|item| {
                let i = index;
                index += 1;
                let Ok(pe) = element_of(spath, i, item) else {
                    return true;
                };
                let gone =
                    set.has_member(&pe) || set.child(&pe).is_some_and(|below| remove_in(item, below, spath));
                removed |= gone;
                !gone
            });
            removed && items.is_empty()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_merge_and_atomic_lists_are_replaced() {
        let live = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"tolerations": [{"key": "x"}], "replicas": 1}});
        let config = json!({"metadata": {"labels": {"a": "9"}}, "spec": {"tolerations": [{"key": "y"}], "paused": true, "replicas": null}});
        let merged = merge(live, &config).unwrap();
        assert_eq!(
            merged,
            json!({"metadata": {"labels": {"a": "9", "b": "2"}}, "spec": {"tolerations": [{"key": "y"}], "paused": true}})
        );
    }

    #[test]
    fn map_lists_merge_by_key_and_keep_the_configurations_order() {
        let live = json!({"spec": {"containers": [
            {"name": "a", "image": "1", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
            {"name": "b", "image": "1"},
            {"name": "c", "image": "1"}]}});
        let config = json!({"spec": {"containers": [
            {"name": "c", "image": "2"},
            {"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}]}});
        let merged = merge(live, &config).unwrap();
        let names: Vec<&str> = merged["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["b", "c", "a"]);
        let a = &merged["spec"]["containers"][2];
        assert_eq!(a["image"], "1", "kept from the live element");
        // The port without a protocol is the live TCP port (the key's default).
        assert_eq!(
            a["ports"],
            json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}])
        );
        assert_eq!(merged["spec"]["containers"][1]["image"], "2");
    }

    #[test]
    fn sets_union_and_duplicates_in_a_configuration_are_refused() {
        let live = json!({"metadata": {"finalizers": ["a", "b"]}});
        let merged = merge(live.clone(), &json!({"metadata": {"finalizers": ["c", "a"]}})).unwrap();
        assert_eq!(merged["metadata"]["finalizers"], json!(["c", "a", "b"]));
        let e = merge(live, &json!({"metadata": {"finalizers": ["c", "c"]}})).unwrap_err();
        assert!(matches!(e, FieldsError::Duplicate { .. }), "{e}");
    }

    #[test]
    fn values_at_and_remove_all_follow_paths_through_keyed_lists() {
        let mut object = json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["x", "y"]},
            "spec": {"containers": [{"name": "a", "image": "1", "env": [{"name": "E", "value": "v"}]}, {"name": "b"}]}});
        let path = |text: &str| -> Vec<PathElement> {
            text.split('/')
                .map(|s| match s.split_at(2) {
                    ("f:", n) => PathElement::Field(n.into()),
                    ("k:", k) => PathElement::Key(k.into()),
                    ("v:", v) => PathElement::Value(v.into()),
                    _ => unreachable!(),
                })
                .collect()
        };
        let set = |paths: &[&str]| {
            let mut set = FieldSet::default();
            for p in paths {
                set.insert(&path(p));
            }
            set
        };
        let env_value = r#"f:spec/f:containers/k:{"name":"a"}/f:env/k:{"name":"E"}/f:value"#;
        let image = r#"f:spec/f:containers/k:{"name":"a"}/f:image"#;
        let found = values_at(&object, &set(&[env_value, image, "f:metadata/f:nothing"]));
        assert_eq!(found.len(), 2);
        assert_eq!(found[&path(env_value)], &json!("v"));
        assert_eq!(found[&path(image)], &json!("1"));
        remove_all(
            &mut object,
            &set(&[
                env_value,
                "f:metadata/f:labels/f:a",
                r#"f:metadata/f:finalizers/v:"x""#,
            ]),
        );
        // The element, left with its key only, stays; emptied maps go.
        assert_eq!(object["spec"]["containers"][0]["env"], json!([{"name": "E"}]));
        assert!(object["metadata"].get("labels").is_none());
        assert_eq!(object["metadata"]["finalizers"], json!(["y"]));
        remove_all(&mut object, &set(&[r#"f:spec/f:containers/k:{"name":"b"}"#]));
        assert_eq!(object["spec"]["containers"].as_array().unwrap().len(), 1);
        // Paths that are not there change nothing.
        let before = object.clone();
        remove_all(
            &mut object,
            &set(&[r#"f:spec/f:containers/k:{"name":"zz"}/f:image"#, "f:nope"]),
        );
        assert_eq!(object, before);
    }

    #[test]
    fn removing_many_list_elements_is_one_pass() {
        let n = 20_000;
        let env: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("E{i}"), "value": "v"}))
            .collect();
        let mut object = json!({"spec": {"containers": [{"name": "c", "env": env}]}});
        let mut set = FieldSet::default();
        for i in 0..n {
            set.insert(&[
                PathElement::Field("spec".into()),
                PathElement::Field("containers".into()),
                PathElement::Key(r#"{"name":"c"}"#.into()),
                PathElement::Field("env".into()),
                PathElement::Key(json!({"name": format!("E{i}")}).to_string()),
            ]);
        }
        let started = std::time::Instant::now();
        remove_all(&mut object, &set);
        // One search per element took minutes at this size in a debug build; one walk, milliseconds.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(object, json!({"spec": {"containers": [{"name": "c"}]}}));
    }
}
