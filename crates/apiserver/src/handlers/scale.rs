//! `…/{name}/scale`: a workload's `spec.replicas` as an `autoscaling/v1` `Scale`
//! (kube-apiserver's `ScaleREST`), which `kubectl scale` reads and patches.
//!
//! GET answers the Scale of the stored object (`spec.replicas`, `status.replicas` and the
//! selector of its pods as a string); PUT and PATCH change only the object's `spec.replicas`,
//! through the object's own update (admission, generation, conflicts), preconditioned on the
//! Scale's `resourceVersion` when it names one.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{Body, Ctx, json_response};
use crate::meta::metadata_mut;
use crate::patch::{self, PatchType};
use crate::status::{ApiError, Result};

/// The request a `scale` subresource serves.
pub(super) enum ScaleRequest {
    /// GET.
    Get,
    /// PUT with a Scale.
    Replace(Value),
    /// PATCH of the Scale.
    Patch(PatchType, Value),
}

impl Ctx {
    /// The `Scale` of `object`.
    fn scale_of(&self, object: &Value) -> Value {
        let selector = self.r().strategy.scale_selector(object).flatten();
        let m = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let mut meta = json!({});
        for k in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
            if let Some(v) = m.get(k) {
                meta[k] = v.clone();
            }
        }
        let mut status =
            json!({"replicas": object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0)});
        if let Some(s) = selector {
            status["selector"] = json!(s);
        }
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
            "spec": {"replicas": object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
            "status": status})
    }

    /// Serves `scale` for a kind that has it.
    pub(super) async fn scale(&self, request: ScaleRequest) -> Result<Response<Body>> {
        for _ in 0..5 {
            let cur = self
                .store()
                .get(&self.key(self.name()))
                .await
                .map_err(|e| self.store_err(e))?;
            let scale = self.scale_of(&cur.object);
            let wanted = match &request {
                ScaleRequest::Get => return Ok(json_response(StatusCode::OK, &scale, &[])),
                ScaleRequest::Replace(body) => body.clone(),
                ScaleRequest::Patch(kind, p) => patch::apply_off_workers(*kind, scale, p.clone()).await?,
            };
            let pinned = wanted
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_owned);
            if let Some(rv) = &pinned
                && *rv != cur.revision.to_string()
                && matches!(request, ScaleRequest::Replace(_))
            {
                return Err(ApiError::conflict(self.r(), self.name()));
            }
            let replicas = wanted
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::invalid_kind_field(
                    "Scale",
                    "autoscaling",
                    self.name(),
                    "spec.replicas",
                    "FieldValueInvalid",
                    &format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                ));
            }
            let mut object = cur.object.clone();
            object["spec"]["replicas"] = json!(replicas);
            if let Some(m) = metadata_mut(&mut object) {
                m.insert("resourceVersion".into(), json!(cur.revision.to_string()));
            }
            match self
                .replace_object(object, &cur.object, cur.revision, Vec::new())
                .await
            {
                Ok((stored, warnings)) => {
                    return Ok(json_response(StatusCode::OK, &self.scale_of(&stored), &warnings));
                }
                Err(e) if e.code == 409 && pinned.is_none() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::conflict(self.r(), self.name()))
    }
}
