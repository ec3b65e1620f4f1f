//! `pods/{name}/binding`: assigning a pod to a node, as a scheduler does (kube-apiserver's
//! pod storage `BindingREST`: `assignPod` and `setPodHostAndAnnotations`).
//!
//! A Binding names the node in `target.name`; the pod gets it as `spec.nodeName`, the Binding's
//! annotations, and a `PodScheduled=True` condition. A pod already assigned, or being deleted,
//! is a 409 Conflict; the answer to a successful binding is a `Status` of `Success` (201).

use http::{Response, StatusCode};
use podvisor_store::{Preconditions, StoreError};
use serde_json::{Value, json};

use super::{Body, Ctx, json_response};
use crate::meta::{now_millis, rfc3339};
use crate::status::{ApiError, Result};

impl Ctx {
    /// Binds the pod this request names to the node `binding` targets.
    pub(super) async fn bind(&self, binding: Value) -> Result<Response<Body>> {
        let name = self.name().to_owned();
        if let Some(named) = binding.pointer("/metadata/name").and_then(Value::as_str)
            && named != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the binding ({named}) does not match the name of the pod ({name})"
            )));
        }
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if node.is_empty() {
            return Err(ApiError::invalid_field(
                self.r(),
                &name,
                "target.name",
                "FieldValueRequired",
                "Required value",
            ));
        }
        let conflict = |why: String| ApiError::conflict_because(self.r(), "binding", &name, &why);
        // The pod may change between reading and writing: a lost race is retried on the
        // newer version, whose checks then run again.
        for _ in 0..5 {
            let current = self
                .store()
                .get(&self.key(&name))
                .await
                .map_err(|e| self.store_err(e))?;
            let mut pod = current.object;
            if !pod
                .pointer("/metadata/deletionTimestamp")
                .is_none_or(Value::is_null)
            {
                return Err(conflict(format!(
                    "pod {name} is being deleted, cannot be assigned to a host"
                )));
            }
            let assigned = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !assigned.is_empty() {
                return Err(conflict(format!(
                    "pod {name} is already assigned to node \"{assigned}\""
                )));
            }
            pod["spec"]["nodeName"] = json!(node);
            if let Some(annotations) = binding
                .pointer("/metadata/annotations")
                .and_then(Value::as_object)
            {
                for (key, value) in annotations {
                    pod["metadata"]["annotations"][key] = value.clone();
                }
            }
            set_scheduled(&mut pod);
            let pre = Preconditions {
                resource_version: Some(current.revision),
                uid: None,
            };
            match self.store().update(&self.key(&name), pod, pre).await {
                Ok(_) => {
                    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success", "code": 201});
                    return Ok(json_response(StatusCode::CREATED, &status, &[]));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(self.store_err(e)),
            }
        }
        Err(ApiError::conflict(self.r(), &name))
    }
}

/// Adds (or sets) the `PodScheduled=True` condition.
fn set_scheduled(pod: &mut Value) {
    let now = rfc3339(now_millis());
    set_condition(
        pod,
        json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}),
    );
}

/// Adds `condition` to the pod's status, replacing one of the same type.
pub(super) fn set_condition(pod: &mut Value, condition: Value) {
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    match pod["status"]["conditions"].as_array_mut() {
        Some(conditions) => {
            conditions.retain(|c| c["type"] != condition["type"]);
            conditions.push(condition);
        }
        None => pod["status"]["conditions"] = json!([condition]),
    }
}
