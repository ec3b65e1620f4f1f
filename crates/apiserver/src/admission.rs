//! Admission as a library: what a create or an update goes through before it is stored, in
//! kube-apiserver's order, with each kind's rules from its [strategy](crate::strategy).
//!
//! [`admit_create`]: the body's kind and apiVersion checked, its fields decoded as the kind
//! (unknown fields by `fieldValidation`), the URL's namespace applied; the stored form; name
//! (or `generateName`), uid and creation time; the kind's defaulting and validation; what the
//! server owns on a new object (a pod's `Pending` status); Service addresses from the server's
//! [`Allocator`]; the namespace must exist and not be terminating. [`admit_update`]: the
//! status/spec split, name and resourceVersion checks, server-owned metadata kept, the kind's
//! defaulting and validation against the stored object.
//!
//! The HTTP verbs call these and then write; a test (or an in-process writer such as a future
//! scheduler or controller) can call them directly with a store and an allocator, and gets
//! the object a client's create would have stored, or the `Status` error it would have seen.

use podvisor_store::{ObjectKey, Store};
use serde_json::{Value, json};

use crate::alloc::{AllocFailure, Allocator};
use crate::body::{self, FieldValidation};
use crate::meta::{self, metadata_mut, now_millis, rfc3339};
use crate::resources::Resource;
use crate::status::{ApiError, Result};
use crate::strategy::Rejection;

/// What admission needs besides the object.
pub struct AdmissionContext<'a> {
    /// The store: stored Services (the allocation table) and namespaces are read from it.
    pub store: &'a dyn Store,
    /// The server's address allocator.
    pub allocator: &'a Allocator,
    /// The request's namespace (the URL's), for namespaced kinds.
    pub namespace: Option<&'a str>,
    /// How unknown fields are treated.
    pub field_validation: FieldValidation,
    /// A dry run: nothing is written, Service addresses are not reserved.
    pub dry_run: bool,
}

/// An admitted create: the object to store and the warnings to send. While it lives, the
/// allocator stays held if the object got addresses, so it is stored before another Service
/// is given any.
pub struct Admitted<'a> {
    /// The object, as it is to be stored.
    pub object: Value,
    /// `Warning` headers for the client.
    pub warnings: Vec<String>,
    _allocation: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl std::fmt::Debug for Admitted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("object", &self.object)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

/// A strategy's refusal of `name` as the `Status` a client sees.
fn rejected(resource: &Resource, name: &str, r: Rejection) -> ApiError {
    match r {
        Rejection::Invalid(e) => ApiError::invalid(resource, name, &e),
        Rejection::Malformed(m) => ApiError::bad_request(m),
    }
}

fn name_of(object: &Value) -> String {
    meta::str_at(object, "metadata.name").unwrap_or("").to_string()
}

/// Checks a body's kind and apiVersion, decodes its fields as the kind (`mode` for unknown
/// ones), applies the request's `namespace`; returns the stored form and the warnings.
pub fn admit_shape(
    resource: &Resource,
    mut object: Value,
    namespace: Option<&str>,
    mode: FieldValidation,
) -> Result<(Value, Vec<String>)> {
    let r = resource;
    let Some(map) = object.as_object_mut() else {
        return Err(ApiError::bad_request("the request body is not a JSON object"));
    };
    let kind = map
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or(r.kind)
        .to_string();
    let av = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| r.api_version());
    if kind != r.kind || av != r.api_version() {
        let mut e = ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            r.api_version()
        ));
        if kind != r.kind {
            e.message = format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                r.kind
            );
        }
        return Err(e);
    }
    map.insert("kind".into(), json!(r.kind));
    map.insert("apiVersion".into(), json!(av));
    let (mut object, warnings) = body::validate_fields(r, &object, mode)?;
    let meta = metadata_mut(&mut object).ok_or_else(|| ApiError::bad_request("metadata is not a map"))?;
    if r.namespaced {
        let url_ns = namespace.unwrap_or_default();
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(url_ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    // Empty lists and maps are absent, as Go's `omitempty` stores them: an owner's last
    // reference or an object's last finalizer removed leaves no `[]` behind.
    for key in ["ownerReferences", "finalizers", "labels", "annotations"] {
        let empty = match meta.get(key) {
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            meta.remove(key);
        }
    }
    Ok((r.strategy.stored(object), warnings))
}

/// Admits a create of `object` (a request body) as `resource`: see the [module](self).
pub async fn admit_create<'a>(
    resource: &'static Resource,
    object: Value,
    ctx: &AdmissionContext<'a>,
) -> Result<Admitted<'a>> {
    let r = resource;
    let (mut object, mut warnings) = admit_shape(r, object, ctx.namespace, ctx.field_validation)?;
    {
        let meta = metadata_mut(&mut object).ok_or_else(|| ApiError::bad_request("metadata is not a map"))?;
        let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        if name.is_empty() {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let generated = meta::generate_name(prefix);
                    meta.insert("name".into(), json!(generated));
                }
                _ => {
                    return Err(ApiError::invalid_field(
                        r,
                        "",
                        "metadata.name",
                        "FieldValueRequired",
                        "Required value: name or generateName is required",
                    ));
                }
            }
        }
        meta.insert("uid".into(), json!(meta::new_uid()));
        meta.insert("creationTimestamp".into(), json!(rfc3339(now_millis())));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("resourceVersion");
        meta.remove("selfLink");
        meta.remove("managedFields");
    }
    let name = name_of(&object);
    let strategy = r.strategy;
    warnings.extend(
        strategy
            .default_and_validate(&mut object, None)
            .map_err(|e| rejected(r, &name, e))?,
    );
    // A kind that counts its spec's generations starts at 1; others have none.
    if let Some(meta) = metadata_mut(&mut object) {
        meta.remove("generation");
    }
    if strategy.generation_changed(&object, &object).is_some()
        && let Some(meta) = metadata_mut(&mut object)
    {
        meta.insert("generation".into(), json!(1));
    }
    strategy
        .prepare_for_create(&mut object)
        .map_err(|e| rejected(r, &name, e))?;
    let allocation = if strategy.allocates_addresses() {
        let hold = ctx
            .allocator
            .allocate(
                ctx.store,
                &mut object,
                (!ctx.dry_run).then_some(ctx.namespace.unwrap_or("default")),
            )
            .await
            .map_err(|e| match e {
                AllocFailure::Store(e) => ApiError::from_store(e, r, &name),
                AllocFailure::Refused(e) => {
                    ApiError::invalid_field(r, &name, &e.field, "FieldValueInvalid", &e.message)
                }
            })?;
        Some(hold)
    } else {
        None
    };
    if let Some(sa) = strategy.service_account(&object).filter(|sa| sa != "default") {
        let ns = ctx.namespace.unwrap_or("default");
        if ctx
            .store
            .get(&ObjectKey::new("serviceaccounts", ns, &sa))
            .await
            .is_err()
        {
            return Err(ApiError::forbidden(
                r,
                &name,
                &format!("error looking up service account {ns}/{sa}: serviceaccount \"{sa}\" not found"),
            ));
        }
    }
    if r.namespaced {
        let ns = ctx.namespace.unwrap_or_default();
        let namespaces =
            Resource::find("", "v1", "namespaces").ok_or_else(|| ApiError::internal("no namespaces"))?;
        let Ok(namespace) = ctx.store.get(&ObjectKey::new("namespaces", "", ns)).await else {
            return Err(ApiError::not_found(namespaces, ns));
        };
        if crate::namespaces::terminating(&namespace.object) {
            return Err(crate::namespaces::refuse_create(r, &name, ns));
        }
    }
    Ok(Admitted {
        object,
        warnings,
        _allocation: allocation,
    })
}

/// Which write an update is: the object at the URL, its stored revision, and which part of it
/// the request writes.
#[derive(Debug, Clone, Copy)]
pub struct UpdateTarget<'a> {
    /// The URL's name.
    pub name: &'a str,
    /// The stored object's revision.
    pub revision: u64,
    /// The object itself or one of its subresources.
    pub part: UpdatePart,
}

/// The part of an object an update writes (kube-apiserver's update strategy of the resource or
/// of the subresource).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdatePart {
    /// The object (`PUT`/`PATCH` on its URL): the status stays, and whatever else its kind
    /// keeps ([`crate::strategy::Strategy::prepare_for_update`]).
    Object,
    /// `…/status`: only the status changes.
    Status,
    /// A namespace's `…/finalize`: everything but the status, `spec.finalizers` included.
    Finalize,
    /// A pod's `…/ephemeralcontainers`: only `spec.ephemeralContainers` changes (rule 5.1 of
    /// `streaming-and-apply.md`); whatever else the body changes is dropped.
    EphemeralContainers,
}

/// Admits `new` (already through [`admit_shape`]) over the stored `old`: the status/spec split
/// (a resource with a `status` subresource keeps the stored status, and its `status` changes
/// only that), the name and resourceVersion checks (409), server-owned metadata kept, then the
/// kind's defaulting and validation of the update. Returns the object to store and the
/// validators' warnings.
pub fn admit_update(
    resource: &Resource,
    mut new: Value,
    old: &Value,
    target: UpdateTarget<'_>,
) -> Result<(Value, Vec<String>)> {
    let r = resource;
    let name = target.name;
    if target.part == UpdatePart::Status {
        let mut merged = old.clone();
        merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
        if r.strategy.status_writes_annotations()
            && let (Some(m), Some(a)) = (metadata_mut(&mut merged), new.pointer("/metadata/annotations"))
        {
            m.insert("annotations".into(), a.clone());
        }
        new = merged;
    } else if target.part == UpdatePart::EphemeralContainers {
        let mut merged = old.clone();
        match new.pointer("/spec/ephemeralContainers") {
            Some(list) => merged["spec"]["ephemeralContainers"] = list.clone(),
            None => {
                if let Some(spec) = merged.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("ephemeralContainers");
                }
            }
        }
        // The body's resourceVersion is its precondition.
        if let (Some(m), Some(rv)) = (
            metadata_mut(&mut merged),
            new.pointer("/metadata/resourceVersion"),
        ) {
            m.insert("resourceVersion".into(), rv.clone());
        }
        new = merged;
    } else if r.subresources.contains(&"status")
        && let Some(status) = old.get("status")
    {
        new["status"] = status.clone();
    }
    if target.part == UpdatePart::Object {
        r.strategy.prepare_for_update(&mut new, old);
    }
    if meta::str_at(&new, "metadata.name") != Some(name) {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    let expected = meta::str_at(&new, "metadata.resourceVersion").and_then(|v| v.parse::<u64>().ok());
    if let Some(e) = expected
        && e != target.revision
    {
        return Err(ApiError::conflict(r, name));
    }
    if let (Some(m), Some(om)) = (metadata_mut(&mut new), old.get("metadata")) {
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match om.get(k) {
                Some(v) => m.insert(k.into(), v.clone()),
                None => m.remove(k),
            };
        }
    }
    let warnings = if target.part == UpdatePart::Status {
        Vec::new()
    } else if target.part == UpdatePart::EphemeralContainers {
        r.strategy
            .default_and_validate_ephemeral(&mut new, old)
            .map_err(|e| rejected(r, name, e))?
    } else {
        r.strategy
            .default_and_validate(&mut new, Some(old))
            .map_err(|e| rejected(r, name, e))?
    };
    // `metadata.generation` is the server's: raised by a change of what the kind counts.
    let old_generation = old.pointer("/metadata/generation").and_then(Value::as_i64);
    let generation = match r.strategy.generation_changed(&new, old) {
        Some(changed) if target.part != UpdatePart::Status => {
            Some(old_generation.unwrap_or(1) + i64::from(changed))
        }
        _ => old_generation,
    };
    if let Some(m) = metadata_mut(&mut new) {
        match generation {
            Some(g) => m.insert("generation".into(), json!(g)),
            None => m.remove("generation"),
        };
    }
    Ok((new, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use podvisor_store::{ListOptions, RedbStore};
    use std::sync::Arc;

    async fn store_with_namespace(ns: &str) -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path().join("store.redb")).unwrap());
        store
            .create(
                &ObjectKey::new("namespaces", "", ns),
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "status": {"phase": "Active"}}),
            )
            .await
            .unwrap();
        (dir, store)
    }

    fn ctx<'a>(store: &'a dyn Store, allocator: &'a Allocator) -> AdmissionContext<'a> {
        AdmissionContext {
            store,
            allocator,
            namespace: Some("default"),
            field_validation: FieldValidation::Strict,
            dry_run: false,
        }
    }

    #[tokio::test]
    async fn a_pod_is_defaulted_validated_and_pending_as_a_library_call() {
        let (_dir, store) = store_with_namespace("default").await;
        let allocator = Allocator::new(crate::alloc::ServiceRanges::default());
        let pods = Resource::find("", "v1", "pods").unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "c", "image": "x", "command": ["sleep", "1"]}]}});
        let admitted = admit_create(pods, pod, &ctx(store.as_ref(), &allocator))
            .await
            .unwrap();
        let o = &admitted.object;
        assert_eq!(o["metadata"]["namespace"], "default");
        assert!(o["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
        assert_eq!(o["spec"]["restartPolicy"], "Always", "defaulted");
        assert_eq!(o["status"], json!({"phase": "Pending", "qosClass": "BestEffort"}));
        // Validation: a process pod needs a command; the field path is the API's.
        let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"},
            "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let e = admit_create(pods, bad, &ctx(store.as_ref(), &allocator))
            .await
            .unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(e.causes[0].field, "spec.containers[0].command");
        // Admission writes nothing.
        let listed = store.list("pods", None, ListOptions::default()).await.unwrap();
        assert!(listed.items.is_empty());
    }

    #[tokio::test]
    async fn services_get_addresses_from_their_own_servers_allocator() {
        let (_dir, store) = store_with_namespace("default").await;
        let services = Resource::find("", "v1", "services").unwrap();
        let svc = |name: &str| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"ports": [{"port": 80}]}})
        };
        let a = Allocator::new(crate::alloc::ServiceRanges::with_cidr("10.100.0.0/24").unwrap());
        let b = Allocator::new(crate::alloc::ServiceRanges::with_cidr("10.200.0.0/24").unwrap());
        // Each allocator holds only its own lock: admitting through `a` while a `b`
        // admission is held does not wait.
        let held = admit_create(services, svc("x"), &ctx(store.as_ref(), &b))
            .await
            .unwrap();
        assert_eq!(held.object["spec"]["clusterIP"], "10.200.0.2");
        let other = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            admit_create(services, svc("y"), &ctx(store.as_ref(), &a)),
        )
        .await
        .expect("another server's allocator does not wait")
        .unwrap();
        assert_eq!(other.object["spec"]["clusterIP"], "10.100.0.2");
        // The same allocator waits until the held admission is stored or dropped.
        let b_ctx = ctx(store.as_ref(), &b);
        let same = admit_create(services, svc("z"), &b_ctx);
        tokio::pin!(same);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(100), &mut same)
                .await
                .is_err(),
            "a second allocation from one server waits for the first"
        );
        store
            .create(&ObjectKey::new("services", "default", "x"), held.object.clone())
            .await
            .unwrap();
        drop(held);
        let z = same.await.unwrap();
        assert_eq!(
            z.object["spec"]["clusterIP"], "10.200.0.3",
            "x's address is taken"
        );
    }

    #[tokio::test]
    async fn creates_need_a_live_namespace_and_updates_keep_the_status() {
        let (_dir, store) = store_with_namespace("default").await;
        let allocator = Allocator::new(crate::alloc::ServiceRanges::default());
        let cms = Resource::find("", "v1", "configmaps").unwrap();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let mut elsewhere = ctx(store.as_ref(), &allocator);
        elsewhere.namespace = Some("missing");
        let e = admit_create(cms, cm, &elsewhere).await.unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (404, "namespaces \"missing\" not found")
        );
        let pods = Resource::find("", "v1", "pods").unwrap();
        let mut old = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "x", "command": ["a"]}]}});
        pods.strategy.default_and_validate(&mut old, None).unwrap();
        old["status"] = json!({"phase": "Running"});
        let mut new = old.clone();
        new["status"] = json!({"phase": "Failed"});
        new["metadata"]["uid"] = json!("changed");
        let target = UpdateTarget {
            name: "p",
            revision: 3,
            part: UpdatePart::Object,
        };
        let (stored, _) = admit_update(pods, new.clone(), &old, target).unwrap();
        assert_eq!(
            stored["status"]["phase"], "Running",
            "the main resource keeps the status"
        );
        assert_eq!(stored["metadata"]["uid"], "u", "the server owns the uid");
        let status = UpdateTarget {
            part: UpdatePart::Status,
            ..target
        };
        let (stored, _) = admit_update(pods, new.clone(), &old, status).unwrap();
        assert_eq!(stored["status"]["phase"], "Failed");
        new["metadata"]["resourceVersion"] = json!("2");
        assert_eq!(admit_update(pods, new, &old, target).unwrap_err().code, 409);
    }
}
