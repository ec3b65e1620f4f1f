//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes strategic
//! merge patch with the merge keys of the served kinds.

use serde_json::{Map, Value};

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document has the wrong shape.
    #[error("invalid patch: {0}")]
    Invalid(String),
    /// A JSON patch path does not exist.
    #[error("the server rejected our request due to an error in our request: path {path} not found")]
    PathNotFound {
        /// The JSON pointer.
        path: String,
    },
    /// A JSON patch `test` operation failed.
    #[error("testing value {path} failed")]
    TestFailed {
        /// The JSON pointer.
        path: String,
    },
}

/// The three patch flavours (server-side apply is not served).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
}

impl PatchType {
    /// From a request's `Content-Type`.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            _ => None,
        }
    }
}

/// Applies a patch of `kind` to `target`.
pub fn apply(kind: PatchType, target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let mut out = target.clone();
    match kind {
        PatchType::Json => json_patch(&mut out, patch)?,
        PatchType::Merge => merge_patch(&mut out, patch),
        PatchType::Strategic => strategic(&mut out, patch, "")?,
    }
    Ok(out)
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(Vec<String>, String), PatchError> {
    if path.is_empty() {
        return Err(PatchError::Invalid("the root cannot be patched".into()));
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| PatchError::Invalid(format!("bad path {path}")))?;
    let mut parts: Vec<String> = rest.split('/').map(unescape).collect();
    let last = parts.pop().unwrap_or_default();
    Ok((parts, last))
}

fn parent_mut<'a>(doc: &'a mut Value, parts: &[String], path: &str) -> Result<&'a mut Value, PatchError> {
    let mut cur = doc;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m.get_mut(p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| PatchError::PathNotFound { path: path.into() })?;
    }
    Ok(cur)
}

fn get_at(doc: &Value, path: &str) -> Result<Value, PatchError> {
    doc.pointer(path)
        .cloned()
        .ok_or_else(|| PatchError::PathNotFound { path: path.into() })
}

fn remove_at(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let (parts, last) = split_pointer(path)?;
    let parent = parent_mut(doc, &parts, path)?;
    let nf = || PatchError::PathNotFound { path: path.into() };
    match parent {
        Value::Object(m) => m.remove(&last).ok_or_else(nf),
        Value::Array(a) => {
            let i = last.parse::<usize>().map_err(|_| nf())?;
            if i < a.len() { Ok(a.remove(i)) } else { Err(nf()) }
        }
        _ => Err(nf()),
    }
}

fn add_at(doc: &mut Value, path: &str, value: Value, replace: bool) -> Result<(), PatchError> {
    let (parts, last) = split_pointer(path)?;
    let parent = parent_mut(doc, &parts, path)?;
    let nf = || PatchError::PathNotFound { path: path.into() };
    match parent {
        Value::Object(m) => {
            if replace && !m.contains_key(&last) {
                return Err(nf());
            }
            m.insert(last, value);
        }
        Value::Array(a) => {
            if last == "-" && !replace {
                a.push(value);
            } else {
                let i = last.parse::<usize>().map_err(|_| nf())?;
                if replace {
                    *a.get_mut(i).ok_or_else(nf)? = value;
                } else if i <= a.len() {
                    a.insert(i, value);
                } else {
                    return Err(nf());
                }
            }
        }
        _ => return Err(nf()),
    }
    Ok(())
}

fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError::Invalid("a JSON patch must be an array".into()))?;
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::Invalid("missing path".into()))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| PatchError::Invalid(format!("missing value for {name}")))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| PatchError::Invalid(format!("missing from for {name}")))
        };
        match name {
            "add" => add_at(doc, path, value()?, false)?,
            "replace" => add_at(doc, path, value()?, true)?,
            "remove" => {
                remove_at(doc, path)?;
            }
            "move" => {
                let v = remove_at(doc, from()?)?;
                add_at(doc, path, v, false)?;
            }
            "copy" => {
                let v = get_at(doc, from()?)?;
                add_at(doc, path, v, false)?;
            }
            "test" => {
                if get_at(doc, path)? != value()? {
                    return Err(PatchError::TestFailed { path: path.into() });
                }
            }
            other => return Err(PatchError::Invalid(format!("unknown op {other:?}"))),
        }
    }
    Ok(())
}

/// RFC 7386: objects merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The merge key of a list field of the served kinds, `None` for lists that are replaced.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "containerStatuses"
        | "initContainerStatuses"
        | "ephemeralContainerStatuses"
        | "resourceClaims" => Some("name"),
        "ports" => {
            let has = |k: &str| items.iter().any(|i| i.get(k).is_some());
            if has("containerPort") {
                Some("containerPort")
            } else if has("port") {
                Some("port")
            } else {
                None
            }
        }
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "conditions" => Some("type"),
        "hostAliases" => Some("ip"),
        "ownerReferences" => Some("uid"),
        "podIPs" | "hostIPs" => Some("ip"),
        "addresses" if items.iter().any(|i| i.get("type").is_some()) => Some("type"),
        _ => None,
    }
}

/// Lists of scalars that merge as sets (`finalizers`).
fn is_primitive_set(field: &str) -> bool {
    field == "finalizers"
}

fn strategic(target: &mut Value, patch: &Value, field: &str) -> Result<(), PatchError> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = p.clone();
        clean.remove("$patch");
        *target = Value::Object(clean);
        return Ok(());
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return Ok(()) };
    let _ = field;
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Value::Array(del)) = (t.get_mut(list), v) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v) {
            (Some(Value::Array(cur)), Value::Array(items)) => {
                if let Some(key) = merge_key(k, items).or_else(|| merge_key(k, cur)) {
                    merge_list(cur, items, key)?;
                } else if is_primitive_set(k) {
                    for i in items {
                        if !cur.contains(i) {
                            cur.push(i.clone());
                        }
                    }
                } else {
                    *cur = items.clone();
                }
            }
            (Some(cur @ Value::Object(_)), Value::Object(_)) => strategic(cur, v, k)?,
            _ => {
                let mut fresh = Value::Null;
                if v.is_object() {
                    strategic(&mut fresh, v, k)?;
                } else if let Value::Array(items) = v {
                    fresh = Value::Array(
                        items
                            .iter()
                            .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                            .cloned()
                            .collect(),
                    );
                } else {
                    fresh = v.clone();
                }
                t.insert(k.clone(), fresh);
            }
        }
    }
    Ok(())
}

fn merge_list(cur: &mut Vec<Value>, items: &[Value], key: &str) -> Result<(), PatchError> {
    for item in items {
        let Some(id) = item.get(key).cloned() else {
            if item.get("$patch").and_then(Value::as_str) == Some("replace") {
                cur.clear();
                continue;
            }
            return Err(PatchError::Invalid(format!(
                "map in list is missing its merge key {key:?}"
            )));
        };
        let pos = cur.iter().position(|c| c.get(key) == Some(&id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                cur.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                if let Some(slot) = cur.get_mut(i) {
                    strategic(slot, item, key)?;
                }
            }
            (None, false) => {
                let mut fresh = Value::Null;
                strategic(&mut fresh, item, key)?;
                cur.push(fresh);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_ops() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2]});
        let patch = json!([
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "remove", "path": "/metadata/labels/a"},
            {"op": "add", "path": "/list/-", "value": 3},
            {"op": "replace", "path": "/list/0", "value": 0},
            {"op": "test", "path": "/list/1", "value": 2},
            {"op": "copy", "from": "/list/2", "path": "/c"},
            {"op": "move", "from": "/c", "path": "/d"}
        ]);
        let out = apply(PatchType::Json, &doc, &patch).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2"}}, "list": [0, 2, 3], "d": 3})
        );
        assert!(apply(PatchType::Json, &doc, &json!([{"op": "remove", "path": "/x"}])).is_err());
        assert!(apply(PatchType::Json, &doc, &json!({"op": "add"})).is_err());
        assert!(
            apply(
                PatchType::Json,
                &doc,
                &json!([{"op": "test", "path": "/list/0", "value": 9}])
            )
            .is_err()
        );
    }

    #[test]
    fn merge_patch_replaces_lists_and_deletes_nulls() {
        let doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        let out = apply(
            PatchType::Merge,
            &doc,
            &json!({"a": {"b": null, "d": 3}, "l": [3]}),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_merges_containers_by_name_and_ports_by_key() {
        let doc = json!({"spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}], "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "y"}
        ]}});
        let patch = json!({
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "spec": {"containers": [
                {"name": "a", "image": "x2", "env": [{"name": "F", "value": "2"}], "ports": [{"containerPort": 81}]},
                {"name": "b", "$patch": "delete"},
                {"name": "c", "image": "z"}
            ]}
        });
        let out = apply(PatchType::Strategic, &doc, &patch).unwrap();
        let cs = out["spec"]["containers"].as_array().unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0]["image"], "x2");
        assert_eq!(cs[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(cs[0]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(cs[1]["name"], "c");
        assert!(out.get("$setElementOrder/containers").is_none());
    }

    #[test]
    fn strategic_conditions_by_type_and_finalizers_as_set() {
        let doc = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}, "metadata": {"finalizers": ["a"]}});
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]}, "metadata": {"finalizers": ["b"]}});
        let out = apply(PatchType::Strategic, &doc, &patch).unwrap();
        assert_eq!(out["status"]["conditions"][0]["status"], "True");
        assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2);
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
    }
}
