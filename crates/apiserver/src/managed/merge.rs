//! The object side of server-side apply: merging an applied configuration into the live object
//! with the list semantics of [`crate::list_types`] (rule 7.8 step 1, 7.12), finding a field by
//! its path, and removing the fields a prune drops (step 3).

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{Map, Value};

use super::fieldset::{FieldsError, PathElement, child_spath, element_of};
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
                let merged = merge_at(live_items.remove(l), config_items[c], spath)?;
                out.push(merged);
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
            let merged = merge_at(live_items.remove(c), config_items[c], spath)?;
            out.push(merged);
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

/// The value at `path` in `object`.
pub(crate) fn locate<'v>(object: &'v Value, path: &[PathElement]) -> Option<&'v Value> {
    let mut spath = String::new();
    let mut at = object;
    for pe in path {
        at = match pe {
            PathElement::Field(name) => {
                spath = child_spath(&spath, name);
                at.get(name)?
            }
            PathElement::Index(i) => at.as_array()?.get(*i)?,
            PathElement::Key(_) | PathElement::Value(_) => {
                let items = at.as_array()?;
                let i = position(items, &spath, pe)?;
                items.get(i)?
            }
        };
    }
    Some(at)
}

fn position(items: &[Value], spath: &str, pe: &PathElement) -> Option<usize> {
    items
        .iter()
        .enumerate()
        .position(|(i, item)| element_of(spath, i, item).is_ok_and(|id| &id == pe))
}

/// Removes the field at `path` from `object`, and the maps and lists that it leaves empty (a
/// removed field's parents become null, as structured-merge-diff removes them).
pub(crate) fn remove(object: &mut Value, path: &[PathElement]) {
    remove_at(object, path, "");
}

/// Returns whether `value` is left empty by the removal.
fn remove_at(value: &mut Value, path: &[PathElement], spath: &str) -> bool {
    let Some((pe, rest)) = path.split_first() else {
        return false;
    };
    match (value, pe) {
        (Value::Object(map), PathElement::Field(name)) => {
            let child_path = child_spath(spath, name);
            let gone = rest.is_empty()
                || map
                    .get_mut(name)
                    .is_some_and(|child| remove_at(child, rest, &child_path));
            if gone && map.remove(name).is_some() {
                map.is_empty()
            } else {
                false
            }
        }
        (Value::Array(items), pe) => {
            let index = match pe {
                PathElement::Index(i) => Some(*i).filter(|i| *i < items.len()),
                PathElement::Field(_) => None,
                _ => position(items, spath, pe),
            };
            match index {
                Some(i) => {
                    let gone =
                        rest.is_empty() || items.get_mut(i).is_some_and(|item| remove_at(item, rest, spath));
                    if gone {
                        items.remove(i);
                        items.is_empty()
                    } else {
                        false
                    }
                }
                None => false,
            }
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
    fn locate_and_remove_follow_paths_through_keyed_lists() {
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
        let env_value = path(r#"f:spec/f:containers/k:{"name":"a"}/f:env/k:{"name":"E"}/f:value"#);
        assert_eq!(locate(&object, &env_value), Some(&json!("v")));
        remove(&mut object, &env_value);
        // The element, left with its key only, stays; emptied maps go.
        assert_eq!(object["spec"]["containers"][0]["env"], json!([{"name": "E"}]));
        remove(&mut object, &path("f:metadata/f:labels/f:a"));
        assert!(object["metadata"].get("labels").is_none());
        remove(&mut object, &path(r#"f:metadata/f:finalizers/v:"x""#));
        assert_eq!(object["metadata"]["finalizers"], json!(["y"]));
        remove(&mut object, &path(r#"f:spec/f:containers/k:{"name":"b"}"#));
        assert_eq!(object["spec"]["containers"].as_array().unwrap().len(), 1);
        // A path that is not there changes nothing.
        let before = object.clone();
        remove(
            &mut object,
            &path(r#"f:spec/f:containers/k:{"name":"zz"}/f:image"#),
        );
        assert_eq!(object, before);
    }
}
