//! The writing verbs: create, update (PUT), patch, delete and deletecollection, with
//! admission (shape, defaulting, validation, Service address allocation) and dry runs.

use super::*;

impl Ctx {
    /// Checks kind and apiVersion, applies the URL's namespace, and validates fields.
    pub(super) fn admit_shape(&self, mut object: Value) -> Result<(Value, Vec<String>)> {
        let r = self.r();
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
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                r.api_version()
            ))
            .with_kind_mismatch(&kind, r.kind));
        }
        map.insert("kind".into(), json!(r.kind));
        map.insert("apiVersion".into(), json!(av));
        let (mut object, warnings) = body::validate_fields(r, &object, self.field_validation())?;
        let meta = metadata_mut(&mut object).ok_or_else(|| ApiError::bad_request("metadata is not a map"))?;
        if r.namespaced {
            let url_ns = self.target.namespace.clone().unwrap_or_default();
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
        Ok((object, warnings))
    }

    /// Defaulting and validation of the typed kinds; returns validation warnings.
    pub(super) fn default_and_validate(
        &self,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<Vec<String>> {
        let r = self.r();
        let name = meta::str_at(object, "metadata.name").unwrap_or("").to_string();
        let bad = |e: serde_json::Error| ApiError::bad_request(e.to_string());
        let warnings = match (r.group, r.plural) {
            ("", "pods") => {
                let mut pod: Pod = serde_json::from_value(object.clone()).map_err(bad)?;
                podvisor_api::defaults::default_pod(&mut pod);
                let result = match old {
                    Some(o) => {
                        let old: Pod = serde_json::from_value(o.clone()).map_err(bad)?;
                        podvisor_api::validation::validate_pod_update(&old, &pod)
                    }
                    None => podvisor_api::validation::validate_pod(&pod),
                };
                let w = result.map_err(|e| ApiError::invalid(r, &name, &e))?;
                *object = serde_json::to_value(&pod).map_err(bad)?;
                w.iter().map(ToString::to_string).collect()
            }
            ("", "services") => {
                let mut svc: Service = serde_json::from_value(object.clone()).map_err(bad)?;
                podvisor_api::defaults::default_service(&mut svc);
                let w = podvisor_api::validation::validate_service(&svc)
                    .map_err(|e| ApiError::invalid(r, &name, &e))?;
                *object = serde_json::to_value(&svc).map_err(bad)?;
                w.iter().map(ToString::to_string).collect()
            }
            ("", "configmaps") => {
                let cm: ConfigMap = serde_json::from_value(object.clone()).map_err(bad)?;
                let result = match old {
                    Some(o) => {
                        let old: ConfigMap = serde_json::from_value(o.clone()).map_err(bad)?;
                        podvisor_api::validation::validate_config_map_update(&old, &cm)
                    }
                    None => podvisor_api::validation::validate_config_map(&cm),
                };
                result.map_err(|e| ApiError::invalid(r, &name, &e))?;
                Vec::new()
            }
            ("", "secrets") => {
                let mut secret: Secret = serde_json::from_value(object.clone()).map_err(bad)?;
                podvisor_api::validation::fold_string_data(&mut secret);
                podvisor_api::defaults::default_secret(&mut secret);
                let result = match old {
                    Some(o) => {
                        let old: Secret = serde_json::from_value(o.clone()).map_err(bad)?;
                        podvisor_api::validation::validate_secret_update(&old, &secret)
                    }
                    None => podvisor_api::validation::validate_secret(&secret),
                };
                result.map_err(|e| ApiError::invalid(r, &name, &e))?;
                *object = serde_json::to_value(&secret).map_err(bad)?;
                Vec::new()
            }
            (_, "events") if old.is_none() => {
                let event: podvisor_core::corev1::Event =
                    serde_json::from_value(object.clone()).map_err(bad)?;
                podvisor_api::validation::validate_event(&event, events::is_events_v1(r))
                    .map_err(|e| ApiError::invalid(r, &name, &e))?;
                Vec::new()
            }
            _ => Vec::new(),
        };
        Ok(warnings)
    }

    /// Gives a new Service its ClusterIP and node ports (`crate::alloc`); the stored Services
    /// are the allocation table.
    pub(super) async fn allocate_service_addresses(&self, object: &mut Value) -> Result<()> {
        let all = self
            .store()
            .list("services", None, ListOptions::default())
            .await
            .map_err(|e| self.store_err(e))?;
        let used = crate::alloc::InUse::from_services(all.items.iter().map(|v| &v.object));
        crate::alloc::allocate(&self.state.service_ranges, object, &used).map_err(|e| {
            let name = meta::str_at(object, "metadata.name").unwrap_or("");
            ApiError::invalid_field(self.r(), name, &e.field, "FieldValueInvalid", &e.message)
        })
    }

    pub(super) async fn create(&self, object: Value) -> Result<Response<Body>> {
        let (object, mut warnings) = self.admit_shape(object)?;
        let mut object = self.inward(object);
        let r = self.r();
        {
            let meta =
                metadata_mut(&mut object).ok_or_else(|| ApiError::bad_request("metadata is not a map"))?;
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
        if r.plural == "namespaces" && r.group.is_empty() {
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
        }
        warnings.extend(self.default_and_validate(&mut object, None)?);
        if r.group.is_empty() && r.plural == "pods" {
            // As kube-apiserver's pod strategy: a new pod is Pending, with its QoS class.
            let pod: Pod =
                serde_json::from_value(object.clone()).map_err(|e| ApiError::bad_request(e.to_string()))?;
            object["status"] = json!({"phase": "Pending", "qosClass": podvisor_lifecycle::qos_class(&pod)});
        }
        // Service creates are serialised from allocation to write, so two never get one address.
        let _allocating = if r.group.is_empty() && r.plural == "services" {
            let guard = SERVICE_ALLOCATION.lock().await;
            self.allocate_service_addresses(&mut object).await?;
            Some(guard)
        } else {
            None
        };
        if r.namespaced {
            let ns = self.target.namespace.clone().unwrap_or_default();
            let namespaces =
                Resource::find("", "v1", "namespaces").ok_or_else(|| ApiError::internal("no namespaces"))?;
            let Ok(namespace) = self
                .store()
                .get(&ObjectKey::new("namespaces", "", ns.as_str()))
                .await
            else {
                return Err(ApiError::not_found(namespaces, &ns));
            };
            if crate::namespaces::terminating(&namespace.object) {
                let name = meta::str_at(&object, "metadata.name").unwrap_or("");
                return Err(crate::namespaces::refuse_create(r, name, &ns));
            }
        }
        let name = meta::str_at(&object, "metadata.name").unwrap_or("").to_string();
        if self.dry_run(&Value::Null) {
            return self.respond(StatusCode::CREATED, &object, &warnings);
        }
        let created = self
            .store()
            .create(&self.key(&name), object)
            .await
            .map_err(|e| ApiError::from_store(e, r, &name))?;
        self.respond(StatusCode::CREATED, &created.object, &warnings)
    }

    /// Writes `new` over the stored `old` (revision `rev`), keeping server-owned fields.
    pub(super) async fn replace(
        &self,
        mut new: Value,
        old: &Value,
        rev: u64,
        mut warnings: Vec<String>,
    ) -> Result<Response<Body>> {
        let r = self.r();
        let name = self.name().to_string();
        let status_only = self.target.sub.as_deref() == Some("status");
        if status_only {
            let mut merged = old.clone();
            merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            new = merged;
        } else if r.subresources.contains(&"status")
            && let Some(status) = old.get("status")
        {
            new["status"] = status.clone();
        }
        if meta::str_at(&new, "metadata.name") != Some(name.as_str()) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let expected = meta::str_at(&new, "metadata.resourceVersion").and_then(|v| v.parse::<u64>().ok());
        if let Some(e) = expected
            && e != rev
        {
            return Err(ApiError::conflict(r, &name));
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
        if !status_only {
            warnings.extend(self.default_and_validate(&mut new, Some(old))?);
        }
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
            return self.respond(StatusCode::OK, &new, &warnings);
        }
        // A namespace also waits for its spec.finalizers (`crate::namespaces` clears them).
        let namespace_finalizers = r.group.is_empty()
            && r.plural == "namespaces"
            && new
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
        if deleting && finalizers_empty && !namespace_finalizers && r.plural != "pods" {
            let gone = self
                .store()
                .delete(&self.key(&name), pre)
                .await
                .map_err(|e| self.store_err(e))?;
            return self.respond(StatusCode::OK, &gone.object, &warnings);
        }
        let updated = self
            .store()
            .update(&self.key(&name), new, pre)
            .await
            .map_err(|e| self.store_err(e))?;
        self.respond(StatusCode::OK, &updated.object, &warnings)
    }

    pub(super) async fn update(&self, object: Value) -> Result<Response<Body>> {
        let (object, warnings) = self.admit_shape(object)?;
        let object = self.inward(object);
        let cur = self
            .store()
            .get(&self.key(self.name()))
            .await
            .map_err(|e| self.store_err(e))?;
        self.replace(object, &cur.object, cur.revision, warnings).await
    }

    pub(super) async fn patch(&self, kind: PatchType, patch: Value) -> Result<Response<Body>> {
        for _ in 0..5 {
            let cur = self
                .store()
                .get(&self.key(self.name()))
                .await
                .map_err(|e| self.store_err(e))?;
            // events.k8s.io Events are patched as that version shows them.
            let shown = events::is_events_v1(self.r()).then(|| events::to_events_v1(&cur.object));
            let mut patched =
                patch::apply_off_workers(kind, shown.unwrap_or_else(|| cur.object.clone()), patch.clone())
                    .await?;
            // A patch without a resourceVersion applies to whatever is current.
            let pinned = patch.pointer("/metadata/resourceVersion").is_some();
            if !pinned && let Some(m) = metadata_mut(&mut patched) {
                m.insert("resourceVersion".into(), json!(cur.revision.to_string()));
            }
            let (patched, warnings) = self.admit_shape(patched)?;
            let patched = self.inward(patched);
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
        let is_namespace = r.group.is_empty() && r.plural == "namespaces";
        if is_namespace && crate::namespaces::IMMORTAL.contains(&name.as_str()) {
            return Err(ApiError::forbidden(r, &name, "this namespace may not be deleted"));
        }
        let crate::options::DeleteOptions {
            grace_period_seconds,
            precondition_resource_version: pre_rv,
            precondition_uid: pre_uid,
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
            let o = &cur.object;
            let has_finalizers = o
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            let grace = if r.group.is_empty() && r.plural == "pods" {
                crate::options::pod_grace_period(grace_period_seconds, o)
            } else {
                0
            };
            // A namespace with spec.finalizers (`kubernetes`) terminates first: its contents are
            // deleted by `crate::namespaces`, which then removes it.
            let namespace_finalizers = is_namespace
                && o.pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|f| !f.is_empty());
            if grace == 0 && !has_finalizers && !namespace_finalizers {
                if dry_run {
                    return self.respond(StatusCode::OK, o, &[]);
                }
                match self.store().delete(&key, pre).await {
                    Ok(gone) => return self.respond(StatusCode::OK, &gone.object, &[]),
                    Err(StoreError::Conflict { .. }) if pre_uid.is_none() => continue,
                    Err(e) => return Err(self.store_err(e)),
                }
            }
            // Graceful: mark, and let the owner (the node, or whoever holds a finalizer) finish.
            let existing = o
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            if existing.is_some_and(|e| e <= grace) {
                return self.respond(StatusCode::OK, o, &[]);
            }
            let mut marked = o.clone();
            if let Some(m) = metadata_mut(&mut marked) {
                m.insert(
                    "deletionTimestamp".into(),
                    json!(rfc3339(crate::options::deadline_millis(now_millis(), grace))),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if is_namespace {
                marked["status"]["phase"] = json!("Terminating");
            }
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
            };
            match ctx.delete(options.clone()).await {
                Ok(_) => items.push(self.outward(item.object)),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let out = json!({"kind": format!("{}List", self.r().kind), "apiVersion": self.r().api_version(), "metadata": {"resourceVersion": list.revision.to_string()}, "items": items});
        Ok(json_response(StatusCode::OK, &out, &[]))
    }
}
