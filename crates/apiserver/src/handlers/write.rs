//! The writing verbs: create, update (PUT), patch, delete and deletecollection, with
//! admission ([`crate::admission`]: shape, the kind's defaulting and validation, Service
//! address allocation) and dry runs; each kind's rules come from its strategy.

use super::apply::Ownership;
use super::*;
use crate::admission::{self, UpdatePart, UpdateTarget};
use crate::strategy::Propagation;

impl Ctx {
    /// What admission reads besides the object.
    fn admission(&self) -> admission::AdmissionContext<'_> {
        admission::AdmissionContext {
            store: self.store(),
            allocator: &self.state.allocator,
            namespace: self.target.namespace.as_deref(),
            field_validation: self.field_validation(),
            dry_run: self.dry_run(&Value::Null),
        }
    }

    /// [`admission::admit_shape`] with the request's namespace and field validation.
    pub(super) fn admit_shape(&self, object: Value) -> Result<(Value, Vec<String>)> {
        admission::admit_shape(
            self.r(),
            object,
            self.target.namespace.as_deref(),
            self.field_validation(),
        )
    }

    pub(super) async fn create(&self, object: Value) -> Result<Response<Body>> {
        self.create_as(object, &Ownership::Update).await
    }

    /// [`Ctx::create`], with the managedFields `ownership` says.
    pub(super) async fn create_as(&self, object: Value, ownership: &Ownership) -> Result<Response<Body>> {
        let r = self.r();
        // Held (for a Service with new addresses) until the object is stored.
        let mut admitted = admission::admit_create(r, object, &self.admission()).await?;
        let mut object = std::mem::take(&mut admitted.object);
        self.own(None, &mut object, ownership)?;
        let name = meta::str_at(&object, "metadata.name").unwrap_or("").to_string();
        if self.dry_run(&Value::Null) {
            return self.respond(StatusCode::CREATED, &object, &admitted.warnings);
        }
        let reserved = r.strategy.allocates_addresses().then(|| object.clone());
        let created = match self.store().create(&self.key(&name), object).await {
            Ok(created) => created,
            Err(e) => {
                // The addresses reserved for it are free again.
                if let Some(service) = reserved {
                    let ns = self.target.namespace.as_deref().unwrap_or("default");
                    crate::reservations::release(self.store(), &service, ns).await;
                }
                return Err(ApiError::from_store(e, r, &name));
            }
        };
        self.respond(StatusCode::CREATED, &created.object, &admitted.warnings)
    }

    /// Writes `new` over the stored `old` (revision `rev`), keeping server-owned fields.
    pub(super) async fn replace(
        &self,
        new: Value,
        old: &Value,
        rev: u64,
        warnings: Vec<String>,
    ) -> Result<Response<Body>> {
        let (stored, warnings) = self.replace_object(new, old, rev, warnings).await?;
        self.respond(StatusCode::OK, &stored, &warnings)
    }

    /// [`Ctx::replace`], answering the object as stored (or, in a dry run, as it would be)
    /// and the warnings.
    pub(super) async fn replace_object(
        &self,
        new: Value,
        old: &Value,
        rev: u64,
        warnings: Vec<String>,
    ) -> Result<(Value, Vec<String>)> {
        self.replace_object_as(new, old, rev, warnings, &Ownership::Update)
            .await
    }

    /// [`Ctx::replace_object`], with the managedFields `ownership` says.
    pub(super) async fn replace_object_as(
        &self,
        new: Value,
        old: &Value,
        rev: u64,
        mut warnings: Vec<String>,
        ownership: &Ownership,
    ) -> Result<(Value, Vec<String>)> {
        let r = self.r();
        let name = self.name().to_string();
        let target = UpdateTarget {
            name: &name,
            revision: rev,
            part: match self.target.sub.as_deref() {
                Some("status") => UpdatePart::Status,
                Some("finalize") => UpdatePart::Finalize,
                Some("ephemeralcontainers") => UpdatePart::EphemeralContainers,
                _ => UpdatePart::Object,
            },
        };
        let (mut new, more) = admission::admit_update(r, new, old, target)?;
        warnings.extend(more);
        self.own(Some(old), &mut new, ownership)?;
        // Removing the last finalizer of an object being deleted completes its deletion.
        let deleting = meta::str_at(&new, "metadata.deletionTimestamp").is_some();
        let finalizers_empty = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        let pre = Preconditions {
            resource_version: Some(rev),
            uid: None,
        };
        if self.dry_run(&Value::Null) {
            return Ok((new, warnings));
        }
        // A kind may have finalization of its own (a namespace's spec.finalizers, which the
        // namespace controller clears through `finalize`), or be removed by its node (pods).
        // A pod its node already let go (a zero grace period) goes with its last finalizer.
        let released = new
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            == Some(0);
        if deleting
            && finalizers_empty
            && !r.strategy.finalizing(&new)
            && (!r.strategy.removed_by_its_node() || released)
        {
            let gone = self
                .store()
                .delete(&self.key(&name), pre)
                .await
                .map_err(|e| self.store_err(e))?;
            return Ok((gone.object, warnings));
        }
        let updated = self
            .store()
            .update(&self.key(&name), new, pre)
            .await
            .map_err(|e| self.store_err(e))?;
        Ok((updated.object, warnings))
    }

    /// The stored object the request names.
    async fn current(&self) -> Result<podvisor_store::Versioned> {
        self.store()
            .get(&self.key(self.name()))
            .await
            .map_err(|e| self.store_err(e))
    }

    /// A body without a resourceVersion is an unconditional update: a race with another
    /// writer is retried on the newer version, as kube-apiserver does.
    pub(super) async fn update(&self, object: Value) -> Result<Response<Body>> {
        let (object, warnings) = self.admit_shape(object)?;
        let pinned = object.pointer("/metadata/resourceVersion").is_some();
        for _ in 0..5 {
            let cur = self.current().await?;
            match self
                .replace(object.clone(), &cur.object, cur.revision, warnings.clone())
                .await
            {
                Err(e) if e.code == 409 && !pinned => continue,
                other => return other,
            }
        }
        Err(ApiError::conflict(self.r(), self.name()))
    }

    pub(super) async fn patch(&self, kind: PatchType, patch: Value) -> Result<Response<Body>> {
        for _ in 0..5 {
            let cur = self.current().await?;
            // An object is patched as this resource shows it (events.k8s.io Events).
            let shown = self.outward(cur.object.clone());
            let mut patched = patch::apply_off_workers(kind, shown, patch.clone()).await?;
            // A patch without a resourceVersion applies to whatever is current.
            let pinned = patch.pointer("/metadata/resourceVersion").is_some();
            if !pinned && let Some(m) = metadata_mut(&mut patched) {
                m.insert("resourceVersion".into(), json!(cur.revision.to_string()));
            }
            let (patched, warnings) = self.admit_shape(patched)?;
            match self.replace(patched, &cur.object, cur.revision, warnings).await {
                Err(e) if e.code == 409 && !pinned => continue,
                other => return other,
            }
        }
        Err(ApiError::conflict(self.r(), self.name()))
    }

    pub(super) async fn delete(&self, options: Value) -> Result<Response<Body>> {
        let r = self.r();
        let name = self.name().to_string();
        let key = self.key(&name);
        r.strategy
            .check_delete(&name)
            .map_err(|why| ApiError::forbidden(r, &name, why))?;
        let crate::options::DeleteOptions {
            grace_period_seconds,
            precondition_resource_version: pre_rv,
            precondition_uid: pre_uid,
            propagation,
        } = crate::options::DeleteOptions::parse(&self.query, &options)?;
        let dry_run = self.dry_run(&options);
        for _ in 0..5 {
            let cur = self.store().get(&key).await.map_err(|e| self.store_err(e))?;
            let pre = Preconditions {
                resource_version: Some(cur.revision),
                uid: pre_uid.clone(),
            };
            if pre_rv.is_some_and(|rv| rv != cur.revision) {
                return Err(ApiError::conflict(r, &name));
            }
            // The garbage collector's finalizers for the propagation asked for (or the kind's).
            let gc_finalizers = gc_finalizers(&cur.object, propagation, r.strategy.default_propagation());
            let mut object = cur.object.clone();
            if let (Some(f), Some(m)) = (&gc_finalizers, metadata_mut(&mut object)) {
                m.insert("finalizers".into(), json!(f));
            }
            let o = &object;
            let has_finalizers = o
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            let grace = r.strategy.grace_period(grace_period_seconds, o);
            // A kind's own finalization (a namespace's spec.finalizers) comes first.
            if grace == 0 && !has_finalizers && !r.strategy.finalizing(o) {
                if dry_run {
                    return self.respond(StatusCode::OK, o, &[]);
                }
                match self.store().delete(&key, pre).await {
                    Ok(gone) => {
                        if r.strategy.allocates_addresses() {
                            let ns = self.target.namespace.as_deref().unwrap_or("default");
                            crate::reservations::release(self.store(), &gone.object, ns).await;
                        }
                        return self.respond(StatusCode::OK, &gone.object, &[]);
                    }
                    Err(StoreError::Conflict { .. }) if pre_uid.is_none() => continue,
                    Err(e) => return Err(self.store_err(e)),
                }
            }
            // Graceful: mark, and let the owner (the node, or whoever holds a finalizer) finish.
            let existing = o
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            if existing.is_some_and(|e| e <= grace) && gc_finalizers.is_none() {
                return self.respond(StatusCode::OK, o, &[]);
            }
            let mut marked = o.clone();
            if let Some(m) = metadata_mut(&mut marked)
                && existing.is_none_or(|e| e > grace)
            {
                m.insert(
                    "deletionTimestamp".into(),
                    json!(rfc3339(crate::options::deadline_millis(now_millis(), grace))),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            r.strategy.mark_deleting(&mut marked);
            if dry_run {
                return self.respond(StatusCode::OK, &marked, &[]);
            }
            match self.store().update(&key, marked, pre).await {
                Ok(v) => return self.respond(StatusCode::OK, &v.object, &[]),
                Err(StoreError::Conflict { .. }) if pre_uid.is_none() => continue,
                Err(e) => return Err(self.store_err(e)),
            }
        }
        Err(ApiError::conflict(r, &name))
    }

    pub(super) async fn delete_collection(&self, options: Value) -> Result<Response<Body>> {
        let list = self
            .store()
            .list(
                &self.r().store_key(),
                self.target.namespace.as_deref(),
                ListOptions {
                    predicate: Some(self.predicate()?),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.store_err(e))?;
        let mut items = Vec::new();
        for item in list.items {
            let name = meta::str_at(&item.object, "metadata.name")
                .unwrap_or("")
                .to_string();
            let ns = meta::str_at(&item.object, "metadata.namespace").map(str::to_string);
            let ctx = Ctx {
                state: self.state.clone(),
                target: Target {
                    resource: self.r(),
                    namespace: ns.or(self.target.namespace.clone()),
                    name: Some(name),
                    sub: None,
                },
                query: self.query.clone(),
                accept: "application/json".into(),
                user_agent: self.user_agent.clone(),
            };
            match ctx.delete(options.clone()).await {
                Ok(_) => items.push(self.outward(item.object)),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let mut out = json!({"kind": format!("{}List", self.r().kind), "apiVersion": self.r().api_version(), "metadata": {"resourceVersion": list.revision.to_string()}});
        out["items"] = Value::Array(items);
        Ok(json_response(StatusCode::OK, &out, &[]))
    }
}

/// The finalizer of the garbage collector (`orphan`).
pub(crate) const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer of foreground deletion (`foregroundDeletion`).
pub(crate) const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// The object's finalizers once a deletion with `asked` (or the kind's `default`) propagation
/// is applied, when they change: `orphan` for Orphan, `foregroundDeletion` for Foreground,
/// neither for Background (kube-apiserver's `deletionFinalizersForGarbageCollection`). Without
/// a propagation asked, a finalizer already there decides.
fn gc_finalizers(object: &Value, asked: Option<Propagation>, default: Propagation) -> Option<Vec<String>> {
    let current: Vec<String> = object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let has = |f: &str| current.iter().any(|c| c == f);
    let policy = asked.unwrap_or(if has(ORPHAN_FINALIZER) {
        Propagation::Orphan
    } else if has(FOREGROUND_FINALIZER) {
        Propagation::Foreground
    } else {
        default
    });
    let mut next: Vec<String> = current
        .iter()
        .filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER)
        .cloned()
        .collect();
    match policy {
        Propagation::Orphan => next.push(ORPHAN_FINALIZER.into()),
        Propagation::Foreground => next.push(FOREGROUND_FINALIZER.into()),
        Propagation::Background => {}
    }
    let same = next.len() == current.len() && next.iter().all(|f| has(f));
    (!same).then_some(next)
}
