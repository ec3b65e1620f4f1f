//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes strategic
//! merge patch with the merge keys of the served kinds.
//!
//! **Budgets.** A JSON patch has at most [`MAX_JSON_PATCH_OPERATIONS`] operations (413, as
//! kube-apiserver), and its `copy` operations may add at most [`MAX_COPY_BYTES`] in total (422,
//! as kube-apiserver's json-patch library's accumulated-copy limit): a small patch cannot build a
//! huge document. Merge and strategic merge patches only ever add what the patch holds, which the
//! body limit bounds. Strategic merge of keyed lists indexes the list once (O(n) per list).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::list_types::{ListStrategy, list_strategy};

/// kube-apiserver's `maxJSONPatchOperations`.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The most a JSON patch's `copy` operations may add, in encoded bytes (the request body
/// limit, as kube-apiserver configures its json-patch library).
pub const MAX_COPY_BYTES: usize = crate::body::MAX_BODY;

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
    /// A JSON patch has more operations than [`MAX_JSON_PATCH_OPERATIONS`].
    #[error("The allowed maximum operations in a JSON patch is {limit}, got {got}")]
    TooManyOperations {
        /// The operations in the patch.
        got: usize,
        /// The limit.
        limit: usize,
    },
    /// A JSON patch's `copy` operations would add more than [`MAX_COPY_BYTES`].
    #[error("Unable to copy, the accumulated size increase of copy is {size}, exceeding the limit {limit}")]
    CopyTooLarge {
        /// The accumulated size the copies would reach.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl PatchError {
    /// The HTTP status kube-apiserver answers with: 413 for too many operations, 422 for a copy
    /// budget exceeded, 400 for a malformed or inapplicable patch.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::TooManyOperations { .. } => 413,
            PatchError::CopyTooLarge { .. } => 422,
            _ => 400,
        }
    }
}

impl From<PatchError> for crate::status::ApiError {
    fn from(e: PatchError) -> Self {
        let mut error = crate::status::ApiError::bad_request(e.to_string());
        error.code = e.code();
        error.reason = match error.code {
            413 => "RequestEntityTooLarge",
            422 => "Invalid",
            _ => "BadRequest",
        };
        error
    }
}

/// The three patch flavours (server-side apply is `handlers/apply.rs` and `managed`).
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

/// [`apply`] on the blocking pool: a patch within its budgets can still take milliseconds of
/// CPU (megabytes copied, long lists merged), which must not stall the async workers that
/// answer everyone else.
pub async fn apply_off_workers(
    kind: PatchType,
    target: Value,
    patch: Value,
) -> Result<Value, crate::status::ApiError> {
    tokio::task::spawn_blocking(move || apply(kind, &target, &patch))
        .await
        .map_err(|e| crate::status::ApiError::internal(format!("applying the patch failed: {e}")))?
        .map_err(crate::status::ApiError::from)
}

/// The encoded size of `v`, counted without allocating it.
fn encoded_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` into a counter cannot fail: there is no I/O and every key is a string.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// RFC 6902 through the `json-patch` crate, one operation at a time so that the budgets are
/// checked before an operation spends memory, with kube-apiserver's messages.
fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError::Invalid("a JSON patch must be an array".into()))?;
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            got: ops.len(),
            limit: MAX_JSON_PATCH_OPERATIONS,
        });
    }
    let ops = <json_patch::Patch as serde::Deserialize>::deserialize(patch)
        .map_err(|e| PatchError::Invalid(e.to_string()))?;
    let mut copied = 0usize;
    for op in &ops.0 {
        let path = op.path().as_str();
        if path.is_empty() {
            return Err(PatchError::Invalid("the root cannot be patched".into()));
        }
        let from = match op {
            json_patch::PatchOperation::Move(m) => Some(m.from.as_str()),
            json_patch::PatchOperation::Copy(c) => Some(c.from.as_str()),
            _ => None,
        };
        if let json_patch::PatchOperation::Copy(c) = op {
            let source = doc
                .pointer(c.from.as_str())
                .ok_or_else(|| PatchError::PathNotFound {
                    path: c.from.to_string(),
                })?;
            // Measured before it is cloned: the budget is checked before any memory is spent.
            copied = copied.saturating_add(encoded_len(source));
            if copied > MAX_COPY_BYTES {
                return Err(PatchError::CopyTooLarge {
                    size: copied,
                    limit: MAX_COPY_BYTES,
                });
            }
        }
        // The document is a copy that is dropped on error, so no undo is needed.
        json_patch::patch_unsafe(doc, std::slice::from_ref(op)).map_err(|e| match e.kind {
            json_patch::PatchErrorKind::TestFailed => PatchError::TestFailed { path: path.into() },
            json_patch::PatchErrorKind::InvalidFromPointer => PatchError::PathNotFound {
                path: from.unwrap_or(path).into(),
            },
            json_patch::PatchErrorKind::InvalidPointer => PatchError::PathNotFound { path: path.into() },
            other => PatchError::Invalid(other.to_string()),
        })?;
    }
    Ok(())
}

/// RFC 7386: objects merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

fn child_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// The identity of a scalar in a set or a merge key's value.
fn identity(v: &Value) -> String {
    v.to_string()
}

fn strategic(target: &mut Value, patch: &Value, path: &str) -> Result<(), PatchError> {
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
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Value::Array(del)) = (t.get_mut(list), v) {
                let del: HashSet<String> = del.iter().map(identity).collect();
                cur.retain(|x| !del.contains(&identity(x)));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        let field_path = child_path(path, k);
        match (t.get_mut(k), v) {
            (Some(Value::Array(cur)), Value::Array(items)) => match list_strategy(&field_path) {
                ListStrategy::MergeBy(key) => merge_list(cur, items, key, &field_path)?,
                ListStrategy::Set => {
                    let mut seen: HashSet<String> = cur.iter().map(identity).collect();
                    for i in items {
                        if seen.insert(identity(i)) {
                            cur.push(i.clone());
                        }
                    }
                }
                ListStrategy::Replace => *cur = items.clone(),
            },
            (Some(cur @ Value::Object(_)), Value::Object(_)) => strategic(cur, v, &field_path)?,
            _ => {
                let mut fresh = Value::Null;
                if v.is_object() {
                    strategic(&mut fresh, v, &field_path)?;
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

/// Merges `items` into `cur` by `key`: one index of `cur` built up front, so a patch of m items
/// into a list of n costs O(n + m), not O(n * m).
fn merge_list(cur: &mut Vec<Value>, items: &[Value], key: &str, path: &str) -> Result<(), PatchError> {
    let mut index: HashMap<String, usize> = HashMap::with_capacity(cur.len());
    for (i, c) in cur.iter().enumerate() {
        if let Some(id) = c.get(key) {
            index.entry(identity(id)).or_insert(i);
        }
    }
    let mut removed = vec![false; cur.len()];
    for item in items {
        let Some(id) = item.get(key) else {
            if item.get("$patch").and_then(Value::as_str) == Some("replace") {
                cur.clear();
                index.clear();
                removed.clear();
                continue;
            }
            return Err(PatchError::Invalid(format!(
                "map in list is missing its merge key {key:?}"
            )));
        };
        let id = identity(id);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (index.get(&id).copied(), delete) {
            (Some(i), true) => {
                if let Some(r) = removed.get_mut(i) {
                    *r = true;
                }
                index.remove(&id);
            }
            (None, true) => {}
            (Some(i), false) => {
                if let Some(slot) = cur.get_mut(i) {
                    strategic(slot, item, path)?;
                }
            }
            (None, false) => {
                let mut fresh = Value::Null;
                strategic(&mut fresh, item, path)?;
                index.insert(id, cur.len());
                cur.push(fresh);
                removed.push(false);
            }
        }
    }
    if removed.iter().any(|r| *r) {
        let mut flags = removed.into_iter();
        cur.retain(|_| !flags.next().unwrap_or(false));
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
        // kube-apiserver's messages, whatever applies the operations.
        let err = |patch: Value| {
            apply(PatchType::Json, &doc, &patch)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            err(json!([{"op": "replace", "path": "/metadata/x~1y", "value": 1}])),
            Err("the server rejected our request due to an error in our request: path /metadata/x~1y not found".into())
        );
        assert_eq!(
            err(json!([{"op": "move", "from": "/nope", "path": "/d"}])),
            Err(
                "the server rejected our request due to an error in our request: path /nope not found".into()
            )
        );
        assert_eq!(
            err(json!([{"op": "test", "path": "/list/0", "value": 9}])),
            Err("testing value /list/0 failed".into())
        );
        assert_eq!(
            err(json!([{"op": "add", "path": "", "value": 1}])),
            Err("invalid patch: the root cannot be patched".into())
        );
        assert!(
            err(json!([{"op": "frobnicate", "path": "/a"}])).is_err_and(|e| e.starts_with("invalid patch: "))
        );
        assert_eq!(
            err(json!([{"op": "add", "path": "/list/7", "value": 1}])).map_err(|e| e.contains("/list/7")),
            Err(true)
        );
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

    #[test]
    fn a_small_json_patch_cannot_build_a_huge_object() {
        let doc = json!({"data": {"k": "x".repeat(1024)}});
        // Each copy doubles /data: 30 of them would be 2^30 KiB.
        let ops: Vec<Value> = (0..30)
            .map(|i| json!({"op": "copy", "from": "/data", "path": format!("/data/c{i}")}))
            .collect();
        let e = apply(PatchType::Json, &doc, &Value::Array(ops)).unwrap_err();
        assert!(matches!(e, PatchError::CopyTooLarge { .. }), "{e}");
        assert_eq!(e.code(), 422);
        let many: Vec<Value> = (0..=MAX_JSON_PATCH_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "/data/k", "value": "x"}))
            .collect();
        let e = apply(PatchType::Json, &doc, &Value::Array(many)).unwrap_err();
        assert_eq!(e.code(), 413);
        // A few copies within the budget still work.
        let ok = apply(
            PatchType::Json,
            &doc,
            &json!([{"op": "copy", "from": "/data/k", "path": "/data/k2"}]),
        )
        .unwrap();
        assert_eq!(ok["data"]["k2"], doc["data"]["k"]);
    }

    #[test]
    fn strategic_merge_of_large_lists_is_linear() {
        let n = 20_000;
        let env: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("E{i}"), "value": "a"}))
            .collect();
        let doc = json!({"spec": {"containers": [{"name": "c", "env": env}]}});
        let mut patch_env: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("E{i}"), "value": "b"}))
            .collect();
        patch_env.push(json!({"name": "E0", "$patch": "delete"}));
        patch_env.push(json!({"name": "NEW", "value": "c"}));
        let patch = json!({"spec": {"containers": [{"name": "c", "env": patch_env}]}});
        let started = std::time::Instant::now();
        let out = apply(PatchType::Strategic, &doc, &patch).unwrap();
        // Quadratic merging took ~10 s at this size in a debug build; linear takes milliseconds.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let merged = out["spec"]["containers"][0]["env"].as_array().unwrap();
        assert_eq!(merged.len(), n);
        assert_eq!(merged[0], json!({"name": "E1", "value": "b"}));
        assert_eq!(merged[n - 1], json!({"name": "NEW", "value": "c"}));
    }

    #[test]
    fn pod_templates_merge_as_pods() {
        let doc = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "z"}]}}}});
        let out = apply(PatchType::Strategic, &doc, &patch).unwrap();
        assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["image"], "x");
        assert_eq!(out["spec"]["template"]["spec"]["containers"][1]["image"], "z");
        let cj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "A", "value": "1"}]}]}}}}}});
        let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "B", "value": "2"}]}]}}}}}});
        let out = apply(PatchType::Strategic, &cj, &patch).unwrap();
        let env = &out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env.as_array().unwrap().len(), 2, "{env}");
    }

    #[test]
    fn merge_keys_come_from_the_schema_path() {
        // Service ports merge by port; a list the schema does not key is replaced.
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}], "externalIPs": ["1.1.1.1"]}});
        let out = apply(
            PatchType::Strategic,
            &svc,
            &json!({"spec": {"ports": [{"port": 443, "name": "https"}], "externalIPs": ["2.2.2.2"]}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(out["spec"]["externalIPs"], json!(["2.2.2.2"]));
        // tolerations are atomic in the Pod schema even though their items have a "key".
        let pod = json!({"spec": {"tolerations": [{"key": "a"}]}});
        let out = apply(
            PatchType::Strategic,
            &pod,
            &json!({"spec": {"tolerations": [{"key": "b"}]}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "b"}]));
    }
}
