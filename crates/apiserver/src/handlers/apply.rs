//! Server-side apply on the wire: `PATCH` with `application/apply-patch+yaml` on a resource or
//! its `status` (spec rules 7.1–7.4): the options checks, the body checks, create on apply
//! (201) or apply over the live object (200), and the `Status` of a conflict (7.10). The
//! algorithm is [`crate::managed`]; every other write records its Update through
//! [`Ctx::own`].

use super::*;
use crate::managed::{self, ManagedError, Writer};

/// The media type of an apply patch (rule 7.1; the CBOR one is not served).
pub(super) const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// Whether `content_type` is an apply patch.
pub(super) fn is_apply(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim() == APPLY_PATCH
}

/// How a write's managedFields come about.
pub(super) enum Ownership {
    /// An Update by the request's manager (7.9).
    Update,
    /// Computed by an apply: the entries to store (`None`: none).
    Applied(Option<Value>),
}

/// A 422 for the request's options (`CreateOptions`, `PatchOptions`, ...) as kube-apiserver's
/// `ValidatePatchOptions` words it.
fn invalid_options(options: &str, field: &str, reason: &str, message: &str) -> ApiError {
    ApiError::invalid_kind_field(options, "meta.k8s.io", "", field, reason, message)
}

impl Ctx {
    /// The manager of a non-apply write: `fieldManager`, else the User-Agent's prefix (7.5).
    fn manager(&self) -> String {
        managed::manager_of(
            self.query.get("fieldManager").map(String::as_str),
            self.user_agent.as_deref(),
        )
    }

    /// Checks a write's `fieldManager` and `force` (7.2): required for an apply, at most 128
    /// printable characters; `force` only for an apply.
    pub(super) fn check_write_options(&self, method: &Method, apply: bool) -> Result<()> {
        let options = match *method {
            Method::POST => "CreateOptions",
            Method::PUT => "UpdateOptions",
            Method::PATCH => "PatchOptions",
            _ => return Ok(()),
        };
        let manager = self.query.get("fieldManager").map_or("", String::as_str);
        if apply && manager.is_empty() {
            return Err(invalid_options(
                options,
                "fieldManager",
                "FieldValueRequired",
                "Required value: is required for apply patch",
            ));
        }
        if manager.len() > managed::MAX_MANAGER_LEN {
            return Err(invalid_options(
                options,
                "fieldManager",
                "FieldValueTooLong",
                &format!(
                    "Too long: may not be more than {} bytes",
                    managed::MAX_MANAGER_LEN
                ),
            ));
        }
        if let Some((i, c)) = manager.char_indices().find(|(_, c)| !managed::printable(*c)) {
            return Err(invalid_options(
                options,
                "fieldManager",
                "FieldValueInvalid",
                &format!(
                    "Invalid value: {}: invalid character U+{:04X} (at position {i})",
                    json!(manager),
                    u32::from(c)
                ),
            ));
        }
        if *method == Method::PATCH && !apply && self.query.contains_key("force") {
            return Err(invalid_options(
                options,
                "force",
                "FieldValueForbidden",
                "Forbidden: may not be specified for non-apply patch",
            ));
        }
        Ok(())
    }

    /// The request as a managedFields writer of `api_version`.
    fn writer<'a>(&'a self, manager: &'a str, api_version: &'a str) -> Writer<'a> {
        Writer {
            manager,
            api_version,
            subresource: self.target.sub.as_deref(),
            has_status: self.r().subresources.contains(&"status"),
        }
    }

    /// Sets `new`'s managedFields for a write over `old` (`None`: a create), as `ownership`
    /// says.
    pub(super) fn own(&self, old: Option<&Value>, new: &mut Value, ownership: &Ownership) -> Result<()> {
        match ownership {
            Ownership::Update => {
                let manager = self.manager();
                let api_version = self.r().api_version();
                let writer = self.writer(&manager, &api_version);
                managed::record_update(old, new, &writer, &rfc3339(now_millis()))
                    .map_err(|e| self.managed_error(e))
            }
            Ownership::Applied(entries) => {
                if let Some(m) = metadata_mut(new) {
                    match entries {
                        Some(e) => m.insert("managedFields".into(), e.clone()),
                        None => m.remove("managedFields"),
                    };
                }
                Ok(())
            }
        }
    }

    /// A [`ManagedError`] as the `Status` a client sees: 409 with one cause per field for
    /// conflicts (7.10), 422 for too many managers, 400 for a configuration that cannot be
    /// merged.
    fn managed_error(&self, e: ManagedError) -> ApiError {
        match &e {
            ManagedError::Conflicts(conflicts) => {
                let mut error = ApiError::bad_request(e.to_string());
                error.code = 409;
                error.reason = "Conflict";
                error.details = Some(Box::default());
                error.causes = conflicts
                    .iter()
                    .map(|c| crate::status::Cause {
                        reason: "FieldManagerConflict".into(),
                        message: format!("conflict with {}", c.manager),
                        field: c.field.clone(),
                    })
                    .collect();
                error
            }
            ManagedError::TooManyAppliers { .. } => ApiError::invalid_field(
                self.r(),
                self.name(),
                "metadata.managedFields",
                "FieldValueTooMany",
                &e.to_string(),
            ),
            ManagedError::Fields(f) => ApiError::bad_request(format!(
                "failed to create typed patch object ({}, Kind={}) {}: {f}",
                self.r().api_version(),
                self.r().kind,
                self.name()
            )),
        }
    }

    /// Checks an applied configuration against the URL (7.3) and fills in its name.
    fn check_config(&self, config: &mut Value) -> Result<()> {
        let r = self.r();
        let Some(map) = config.as_object_mut() else {
            return Err(ApiError::bad_request("the apply patch is not an object"));
        };
        let expected = r.api_version();
        let version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if version != expected {
            return Err(ApiError::bad_request(format!(
                "Incorrect version specified in apply patch. Specified patch version: {version}, expected: {expected}"
            )));
        }
        let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind != r.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                r.kind
            )));
        }
        let meta = map
            .entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("metadata is not a map"))?;
        if meta.get("managedFields").is_some_and(|m| !m.is_null()) {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        let url_name = self.name();
        match meta.get("name").and_then(Value::as_str) {
            Some(name) if name != url_name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({name}) does not match the name on the URL ({url_name})"
                )));
            }
            Some(_) => {}
            None => {
                meta.insert("name".into(), json!(url_name));
            }
        }
        if let (Some(ns), Some(url_ns)) = (
            meta.get("namespace").and_then(Value::as_str),
            self.target.namespace.as_deref(),
        ) && !ns.is_empty()
            && ns != url_ns
        {
            return Err(ApiError::bad_request(format!(
                "the namespace of the object ({ns}) does not match the namespace on the URL ({url_ns})"
            )));
        }
        Ok(())
    }

    /// `PATCH` with an apply patch (the options already checked by
    /// [`Ctx::check_write_options`]); `node` is the requesting node's name, whose creates
    /// NodeRestriction checks as a `POST`'s.
    pub(super) async fn apply(&self, bytes: Bytes, node: Option<&str>) -> Result<Response<Body>> {
        let force = match self.query.get("force").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid value for force: {other:?} (true or false)"
                )));
            }
        };
        // kubectl and kube-rs send JSON; anything else goes through the bounded YAML decoder.
        let mut config = match serde_json::from_slice::<Value>(&bytes) {
            Ok(config) => config,
            Err(_) => body::decode_request("application/yaml", bytes, FieldValidation::Ignore).await?,
        };
        self.check_config(&mut config)?;
        let manager = self.query.get("fieldManager").cloned().unwrap_or_default();
        let api_version = self.r().api_version();
        let writer = self.writer(&manager, &api_version);
        let pinned = config.pointer("/metadata/resourceVersion").is_some();
        for _ in 0..5 {
            let now = rfc3339(now_millis());
            match self.store().get(&self.key(self.name())).await {
                Ok(cur) => {
                    let shown = self.outward(cur.object.clone());
                    let applied = managed::apply(Some(&shown), &config, &writer, force, &now)
                        .map_err(|e| self.managed_error(e))?;
                    // 7.8.6: nothing changes, nothing is written.
                    if !applied.changed {
                        return self.respond(StatusCode::OK, &shown, &[]);
                    }
                    let entries = applied.object.pointer("/metadata/managedFields").cloned();
                    let (object, warnings) = self.admit_shape(applied.object)?;
                    let ownership = Ownership::Applied(entries);
                    match self
                        .replace_object_as(object, &cur.object, cur.revision, warnings, &ownership)
                        .await
                    {
                        Ok((stored, warnings)) => return self.respond(StatusCode::OK, &stored, &warnings),
                        Err(e) if e.code == 409 && e.causes.is_empty() && !pinned => continue,
                        Err(e) => return Err(e),
                    }
                }
                // 7.4: an apply creates (not through a subresource).
                Err(StoreError::NotFound { .. }) if self.target.sub.is_none() => {
                    if let Some(node) = node {
                        crate::authz::node_may_write(node, &self.r().store_key(), self.name(), None)?;
                    }
                    let applied = managed::apply(None, &config, &writer, force, &now)
                        .map_err(|e| self.managed_error(e))?;
                    let entries = applied.object.pointer("/metadata/managedFields").cloned();
                    match self.create_as(applied.object, &Ownership::Applied(entries)).await {
                        Err(e) if e.reason == "AlreadyExists" => continue,
                        other => return other,
                    }
                }
                Err(e) => return Err(self.store_err(e)),
            }
        }
        Err(ApiError::conflict(self.r(), self.name()))
    }
}
