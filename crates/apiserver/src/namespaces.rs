//! Namespace termination, as kube-apiserver's namespace lifecycle admission and
//! kube-controller-manager's namespace controller do it together.
//!
//! Deleting a namespace marks it (`deletionTimestamp`, phase `Terminating`) while its
//! `spec.finalizers` hold `kubernetes`. Creates in it are refused (403). `run` then deletes
//! its contents through their normal paths (pods get their grace period and are removed by their
//! node, objects with finalizers wait for them), reports what remains in the namespace's
//! conditions, and once nothing is left removes the `kubernetes` finalizer and the namespace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use podvisor_store::{ListOptions, ObjectKey, Preconditions, StoreError};
use serde_json::{Value, json};

use crate::handlers::State;
use crate::meta::{self, now_millis, rfc3339};
use crate::resources::{RESOURCES, Resource};
use crate::status::{ApiError, Cause};

/// Namespaces that cannot be deleted.
pub const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

/// How often a terminating namespace is looked at again while its contents go away.
const RECHECK: Duration = Duration::from_secs(1);

/// Whether `namespace` is being terminated.
pub fn terminating(namespace: &Value) -> bool {
    namespace.pointer("/metadata/deletionTimestamp").is_some()
        || meta::str_at(namespace, "status.phase") == Some("Terminating")
}

/// The 403 for a create of `resource` `name` in the terminating namespace `ns`.
pub fn refuse_create(resource: &Resource, name: &str, ns: &str) -> ApiError {
    let mut e = ApiError::forbidden(
        resource,
        name,
        &format!("unable to create new content in namespace {ns} because it is being terminated"),
    );
    e.causes.push(Cause {
        reason: "NamespaceTerminating".into(),
        message: format!("namespace {ns} is being terminated"),
        field: "metadata.namespace".into(),
    });
    e
}

/// Finishes terminating namespaces until `state`'s shutdown.
pub(crate) async fn run(state: Arc<State>) {
    let store = state.store.clone();
    loop {
        let list = match store.list("namespaces", None, ListOptions::default()).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "listing namespaces failed");
                tokio::select! {
                    () = state.shutdown.cancelled() => return,
                    () = tokio::time::sleep(RECHECK) => continue,
                }
            }
        };
        let mut busy = false;
        for ns in list.items.iter().filter(|n| terminating(&n.object)) {
            busy = true;
            if let Err(e) = finalize(&state, &ns.object).await {
                tracing::debug!(error = %e, "terminating a namespace: trying again");
            }
        }
        // Idle: wait for a namespace to change. Busy: look again soon as well.
        let mut watch = store.watch("namespaces", None, list.revision).await.ok();
        let next_change = async {
            match watch.as_mut() {
                Some(w) => {
                    let _ = w.next().await;
                }
                None => tokio::time::sleep(RECHECK).await,
            }
        };
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = next_change => {}
            () = tokio::time::sleep(RECHECK), if busy => {}
        }
    }
}

/// One pass over a terminating namespace: delete what is left, record what remains, and remove
/// the namespace when nothing does.
async fn finalize(state: &Arc<State>, namespace: &Value) -> Result<(), ApiError> {
    let store = state.store.as_ref();
    let ns = meta::str_at(namespace, "metadata.name").unwrap_or("").to_string();
    let mut remaining: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut finalizers: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen_keys = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.namespaced) {
        let key = r.store_key();
        if seen_keys.contains(&key) {
            continue; // events.k8s.io Events are the core Events
        }
        let list = store
            .list(&key, Some(&ns), ListOptions::default())
            .await
            .map_err(|e| ApiError::from_store(e, r, ""))?;
        for item in &list.items {
            *remaining.entry(r.plural).or_default() += 1;
            for f in item
                .object
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                *finalizers.entry(f.to_string()).or_default() += 1;
            }
            if item.object.pointer("/metadata/deletionTimestamp").is_none() {
                let name = meta::str_at(&item.object, "metadata.name").unwrap_or("");
                match crate::handlers::delete_object(state, r, &ns, name).await {
                    Ok(()) => {}
                    Err(e) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        seen_keys.push(key);
    }
    let key = ObjectKey::new("namespaces", "", ns.as_str());
    let current = store.get(&key).await.map_err(store_err(&ns))?;
    let pre = Preconditions {
        resource_version: Some(current.revision),
        uid: None,
    };
    let mut object = current.object;
    if !remaining.is_empty() {
        let conditions = conditions(&remaining, &finalizers, &object);
        if object.pointer("/status/conditions") != Some(&conditions) {
            object["status"]["conditions"] = conditions;
            store.update(&key, object, pre).await.map_err(store_err(&ns))?;
        }
        return Ok(());
    }
    // Empty: the `kubernetes` finalizer is done; without other finalizers, the namespace goes.
    let others_hold = object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if others_hold {
        if object
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
        {
            object["spec"]["finalizers"] = json!([]);
            store.update(&key, object, pre).await.map_err(store_err(&ns))?;
        }
        return Ok(());
    }
    match store.delete(&key, pre).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(store_err(&ns)(e)),
    }
}

fn store_err(ns: &str) -> impl Fn(StoreError) -> ApiError + '_ {
    move |e| match Resource::find("", "v1", "namespaces") {
        Some(r) => ApiError::from_store(e, r, ns),
        None => ApiError::internal(e.to_string()),
    }
}

/// The namespace controller's conditions while content remains (its reasons and messages),
/// keeping each condition's transition time while its status is unchanged.
fn conditions(
    remaining: &BTreeMap<&str, usize>,
    finalizers: &BTreeMap<String, usize>,
    namespace: &Value,
) -> Value {
    let now = rfc3339(now_millis());
    let old = namespace.pointer("/status/conditions").and_then(Value::as_array);
    let condition = |type_: &str, held: bool, reason: &str, message: String| {
        let status = if held { "True" } else { "False" };
        let since = old
            .into_iter()
            .flatten()
            .find(|c| c["type"] == type_ && c["status"] == status)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now));
        json!({"type": type_, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
    };
    let content: Vec<String> = remaining
        .iter()
        .map(|(r, n)| format!("{r} has {n} resource instances"))
        .collect();
    let held: Vec<String> = finalizers
        .iter()
        .map(|(f, n)| format!("{f} in {n} resource instances"))
        .collect();
    json!([
        condition(
            "NamespaceContentRemaining",
            true,
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", content.join(", ")),
        ),
        if held.is_empty() {
            condition(
                "NamespaceFinalizersRemaining",
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".into(),
            )
        } else {
            condition(
                "NamespaceFinalizersRemaining",
                true,
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    held.join(", ")
                ),
            )
        },
    ])
}
