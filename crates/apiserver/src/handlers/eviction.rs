//! `pods/{name}/eviction`: deleting a pod through the Eviction API, as `kubectl drain` does
//! (kube-apiserver's `EvictionREST`, `cluster-semantics.md` §4B).
//!
//! The Eviction (`policy/v1`, or `v1beta1`) must name the pod of the URL (400 otherwise); a
//! missing pod is 404. The pod gets the condition `DisruptionTarget=True`, reason
//! `EvictionByEvictionAPI`, then is deleted with the Eviction's `deleteOptions` (its grace
//! period, else the pod's own); the answer is a `Status` of `Success` (201). The API server does
//! not wait for the pod to go.
//!
//! Not done: PodDisruptionBudgets (podvisor does not serve them yet), so no eviction is ever
//! refused with 429 for a budget.

use http::{Response, StatusCode};
use podvisor_store::{Preconditions, StoreError};
use serde_json::{Value, json};

use super::{Body, Ctx, json_response};
use crate::meta::{now_millis, rfc3339};
use crate::status::{ApiError, Result};

impl Ctx {
    /// Evicts the pod this request names.
    pub(super) async fn evict(&self, eviction: Value) -> Result<Response<Body>> {
        let name = self.name().to_owned();
        if let Some(named) = eviction.pointer("/metadata/name").and_then(Value::as_str)
            && named != name
        {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Eviction object",
            ));
        }
        let options = eviction
            .get("deleteOptions")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if !self.dry_run(&options) {
            self.mark_disruption_target(&name).await?;
        }
        self.delete(options).await?;
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Success", "code": 201});
        Ok(json_response(StatusCode::CREATED, &status, &[]))
    }

    /// Sets `DisruptionTarget=True` (reason `EvictionByEvictionAPI`) on the pod, retrying a
    /// lost race on the newer version; a pod already being deleted keeps what it has.
    async fn mark_disruption_target(&self, name: &str) -> Result<()> {
        for _ in 0..20 {
            let current = self
                .store()
                .get(&self.key(name))
                .await
                .map_err(|e| self.store_err(e))?;
            let mut pod = current.object;
            if !pod
                .pointer("/metadata/deletionTimestamp")
                .is_none_or(Value::is_null)
            {
                return Ok(());
            }
            set_condition(&mut pod);
            let pre = Preconditions {
                resource_version: Some(current.revision),
                uid: None,
            };
            match self.store().update(&self.key(name), pod, pre).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(self.store_err(e)),
            }
        }
        Err(ApiError::conflict(self.r(), name))
    }
}

/// Adds (or replaces) the `DisruptionTarget=True` condition of an eviction.
fn set_condition(pod: &mut Value) {
    let condition = json!({"type": "DisruptionTarget", "status": "True",
        "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting",
        "lastProbeTime": null, "lastTransitionTime": rfc3339(now_millis())});
    super::binding::set_condition(pod, condition);
}
