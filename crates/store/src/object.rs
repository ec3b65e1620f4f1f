//! What every backend does alike to a stored object: stamp its `metadata.resourceVersion`,
//! parse its stored JSON and check write preconditions against it.

use serde_json::Value;

use crate::{ObjectKey, Preconditions, Result, StoreError};

/// Sets `metadata.resourceVersion` to `revision`; the object must be a JSON object.
pub(crate) fn stamp(object: &mut Value, revision: u64) -> Result<()> {
    let map = object.as_object_mut().ok_or_else(|| StoreError::InvalidObject {
        reason: "not a JSON object".into(),
    })?;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let meta = meta.as_object_mut().ok_or_else(|| StoreError::InvalidObject {
        reason: "metadata is not a map".into(),
    })?;
    meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    Ok(())
}

/// Removes `metadata.resourceVersion`: a backend that keeps the revision beside the object
/// (etcd's `mod_revision`) stores the object without it and stamps it on every read.
pub(crate) fn unstamp(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
}

/// Parses a stored object.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::InvalidObject {
        reason: format!("stored JSON: {e}"),
    })
}

/// The object's `metadata.uid`.
pub(crate) fn uid_of(object: &Value) -> Option<&str> {
    object.get("metadata")?.get("uid")?.as_str()
}

/// Checks `pre` against the stored version (`revision`, `object`): [`StoreError::Conflict`]
/// when the resourceVersion or the uid differs.
pub(crate) fn check(key: &ObjectKey, pre: &Preconditions, revision: u64, object: &Value) -> Result<()> {
    if let Some(expected) = pre.resource_version
        && expected != revision
    {
        return Err(StoreError::Conflict {
            key: key.clone(),
            reason: format!("resourceVersion {expected} expected, {revision} stored"),
        });
    }
    if let Some(uid) = &pre.uid
        && uid_of(object) != Some(uid.as_str())
    {
        return Err(StoreError::Conflict {
            key: key.clone(),
            reason: format!("uid {uid} expected, {} stored", uid_of(object).unwrap_or("")),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_sets_resource_version_and_rejects_non_objects() {
        let mut v = serde_json::json!({"kind": "Pod"});
        stamp(&mut v, 7).unwrap();
        assert_eq!(v["metadata"]["resourceVersion"], "7");
        assert!(stamp(&mut Value::Null, 1).is_err());
        assert!(stamp(&mut serde_json::json!({"metadata": 3}), 1).is_err());
        unstamp(&mut v);
        assert_eq!(v, serde_json::json!({"kind": "Pod", "metadata": {}}));
    }

    #[test]
    fn preconditions_check_version_and_uid() {
        let key = ObjectKey::new("pods", "ns", "a");
        let obj = serde_json::json!({"metadata": {"uid": "u1"}});
        let ok = Preconditions {
            resource_version: Some(3),
            uid: Some("u1".into()),
        };
        assert!(check(&key, &ok, 3, &obj).is_ok());
        let bad_rv = Preconditions {
            resource_version: Some(2),
            uid: None,
        };
        assert!(matches!(
            check(&key, &bad_rv, 3, &obj),
            Err(StoreError::Conflict { .. })
        ));
        let bad_uid = Preconditions {
            resource_version: None,
            uid: Some("u2".into()),
        };
        assert!(matches!(
            check(&key, &bad_uid, 3, &obj),
            Err(StoreError::Conflict { .. })
        ));
    }
}
