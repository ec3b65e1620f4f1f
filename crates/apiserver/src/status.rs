//! Request failures as `metav1.Status` bodies, with kube-apiserver's reasons, codes and causes.

use podvisor_api::validation::ValidationErrors;
use podvisor_store::StoreError;
use serde_json::{Value, json};

use crate::resources::Resource;

/// One `details.causes` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: String,
    /// The human-readable message.
    pub message: String,
    /// The field path.
    pub field: String,
}

/// A failed API request, rendered as a `Status` with [`ApiError::to_status`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, `Expired`, ...
    pub reason: &'static str,
    /// The message kubectl prints.
    pub message: String,
    /// `details`: (group, kind, name).
    pub details: Option<Box<(String, String, String)>>,
    /// `details.causes`.
    pub causes: Vec<Cause>,
    /// `metadata.continue`: for an expired continue token, a token that continues the list
    /// from the same place in the current state.
    pub continue_token: Option<Box<str>>,
}

/// This module's result type.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            causes: Vec::new(),
            continue_token: None,
        }
    }

    fn with_details(mut self, resource: &Resource, name: &str) -> Self {
        self.details = Some(Box::new((
            resource.group.into(),
            resource.plural.into(),
            name.into(),
        )));
        self
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 NotFound for an object.
    pub fn not_found(resource: &Resource, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(resource)),
        )
        .with_details(resource, name)
    }

    /// 404 NotFound for a path that serves nothing. Like kube-apiserver's, its `details` are
    /// empty (no name: clients such as `kubectl debug` tell an unserved endpoint from a missing
    /// object by that); the message says what podvisor does not serve.
    pub fn no_route(path: &str) -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            format!(
                "the server could not find the requested resource (podvisor does not serve {})",
                unserved(path)
            ),
        );
        e.details = Some(Box::default());
        e
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(method: &str) -> Self {
        let mut e = Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        );
        e.details = Some(Box::default());
        e
    }

    /// 403 Forbidden for an object, as kube-apiserver's `NewForbidden`.
    pub fn forbidden(resource: &Resource, name: &str, why: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", qualified(resource)),
        )
        .with_details(resource, name)
    }

    /// 403 Forbidden with a message of its own (authorization refusals).
    pub fn forbidden_message(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 409 AlreadyExists.
    pub fn already_exists(resource: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(resource)),
        )
        .with_details(resource, name)
    }

    /// 409 Conflict for a stale resourceVersion or uid.
    pub fn conflict(resource: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(resource)
            ),
        )
        .with_details(resource, name)
    }

    /// 409 Conflict for a reason of the operation (`subresource` of `resource`), as
    /// kube-apiserver's `NewConflict` with an error.
    pub fn conflict_because(resource: &Resource, subresource: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {}/{subresource} \"{name}\": {why}",
                qualified(resource)
            ),
        )
        .with_details(resource, name)
    }

    /// 410 Expired: a resourceVersion older than the retained history.
    pub fn expired(requested: u64, compacted: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({compacted})"),
        )
    }

    /// 410 Expired for a continue token whose revision the store has compacted: the pages
    /// after it can no longer come from the first page's snapshot. With `inconsistent` (a token
    /// that continues from the same place in the current state) kube-apiserver's message
    /// offering it, in `metadata.continue`; without, its message for starting over.
    pub fn continue_expired(inconsistent: Option<String>) -> Self {
        const TOO_OLD: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter";
        match inconsistent {
            Some(token) => {
                let mut e = Self::new(
                    410,
                    "Expired",
                    format!(
                        "{TOO_OLD}, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."
                    ),
                );
                e.continue_token = Some(token.into());
                e
            }
            None => Self::new(410, "Expired", format!("{TOO_OLD}.")),
        }
    }

    /// 503 ServiceUnavailable: the store did not answer in time (etcd without a quorum or
    /// out of reach); the client may retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// 504 Timeout for a watch or read from a resourceVersion the store has not reached within
    /// the bounded wait (kube-apiserver's "Too large resource version", cause
    /// `ResourceVersionTooLarge`, retry after 1 s).
    pub fn too_large_resource_version(requested: u64, current: u64) -> Self {
        let mut e = Self::new(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {requested}, current: {current}"),
        );
        e.details = Some(Box::new((String::new(), String::new(), String::new())));
        e.causes = vec![Cause {
            reason: "ResourceVersionTooLarge".into(),
            message: "Too large resource version".into(),
            field: String::new(),
        }];
        e
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf ({content_type})"
            ),
        )
    }

    /// 422 Invalid, with one cause per field error.
    pub fn invalid(resource: &Resource, name: &str, errors: &ValidationErrors) -> Self {
        let list: Vec<String> = errors.errors().iter().map(|e| e.to_string()).collect();
        let joined = if list.len() == 1 {
            list.join("")
        } else {
            format!("[{}]", list.join(", "))
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {joined}",
                qualified_kind(resource.kind, resource.group)
            ),
        )
        .with_details(resource, name);
        e.details = Some(Box::new((
            resource.group.into(),
            resource.kind.into(),
            name.into(),
        )));
        e.causes = errors
            .errors()
            .iter()
            .map(|f| Cause {
                reason: f.kind.reason().to_string(),
                message: f
                    .to_string()
                    .strip_prefix(&format!("{}: ", f.path))
                    .unwrap_or("")
                    .to_string(),
                field: f.path.clone(),
            })
            .collect();
        e
    }

    /// 422 Invalid for one field, when no `ValidationErrors` exist (e.g. immutable metadata).
    pub fn invalid_field(resource: &Resource, name: &str, field: &str, reason: &str, message: &str) -> Self {
        Self::invalid_kind_field(resource.kind, resource.group, name, field, reason, message)
    }

    /// 422 Invalid for one field of a `kind` of `group` that is not a served resource's own
    /// (a `Scale`).
    pub fn invalid_kind_field(
        kind: &str,
        group: &str,
        name: &str,
        field: &str,
        reason: &str,
        message: &str,
    ) -> Self {
        let mut e = Self::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {field}: {message}",
                qualified_kind(kind, group)
            ),
        );
        e.details = Some(Box::new((group.into(), kind.into(), name.into())));
        e.causes = vec![Cause {
            reason: reason.into(),
            message: message.into(),
            field: field.into(),
        }];
        e
    }

    /// 401 Unauthorized: no or unknown credentials (kube-apiserver's body exactly).
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 501 NotImplemented.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(501, "NotImplemented", message)
    }

    /// Maps a store error on `resource`/`name` to its API error.
    pub fn from_store(e: StoreError, resource: &Resource, name: &str) -> Self {
        match e {
            StoreError::NotFound { .. } => Self::not_found(resource, name),
            StoreError::AlreadyExists { .. } => Self::already_exists(resource, name),
            StoreError::Conflict { .. } => Self::conflict(resource, name),
            StoreError::Expired { requested, compacted } => Self::expired(requested, compacted),
            StoreError::InvalidObject { reason } => Self::bad_request(reason),
            StoreError::TooLarge { size, limit, .. } => Self::new(
                413,
                "RequestEntityTooLarge",
                format!("Request entity too large: the object is {size} bytes, the limit is {limit}"),
            )
            .with_details(resource, name),
            StoreError::Unavailable { message } => {
                Self::unavailable(format!("storage unavailable: {message}"))
            }
            other => Self::internal(format!("storage error: {other}")),
        }
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": match &self.continue_token {
                Some(token) => json!({"continue": token}),
                None => json!({}),
            },
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            let (group, kind, name) = details.as_ref();
            let mut details = json!({});
            for (key, value) in [("name", name), ("group", group), ("kind", kind)] {
                if !value.is_empty() || (key != "group" && !kind.is_empty()) {
                    details[key] = json!(value);
                }
            }
            if !self.causes.is_empty() {
                details["causes"] = self
                    .causes
                    .iter()
                    .map(|c| {
                        let mut cause = json!({"reason": c.reason, "message": c.message});
                        if !c.field.is_empty() || self.reason == "Invalid" {
                            cause["field"] = json!(c.field);
                        }
                        cause
                    })
                    .collect();
            }
            if self.reason == "Timeout" {
                details["retryAfterSeconds"] = json!(1);
            }
            status["details"] = details;
        }
        status
    }
}

/// What a path that serves nothing asked for, for [`ApiError::no_route`]'s message:
/// `pods/ephemeralcontainers`, `deployments in apps/v1`, `the API group apps`, or the path.
fn unserved(path: &str) -> String {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        ["apis", g] => return format!("the API group {g}"),
        _ => return path.to_string(),
    };
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    if !crate::resources::RESOURCES
        .iter()
        .any(|r| r.group == group && r.version == version)
    {
        return format!("the API version {gv}");
    }
    let rest = match rest {
        ["namespaces", _, plural, more @ ..] => std::iter::once(*plural)
            .chain(more.iter().copied())
            .collect::<Vec<_>>(),
        other => other.to_vec(),
    };
    match rest.as_slice() {
        [plural, ..] if Resource::find(group, version, plural).is_none() => format!("{plural} in {gv}"),
        [plural, _, sub, ..] => format!("{plural}/{sub}"),
        _ => path.to_string(),
    }
}

/// `pods` or `endpointslices.discovery.k8s.io`, as kube-apiserver names resources in messages.
fn qualified(resource: &Resource) -> String {
    if resource.group.is_empty() {
        resource.plural.to_string()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

/// `Kind.group` as kube-apiserver names a kind in messages (`Deployment.apps`), `Kind` in the
/// core group.
fn qualified_kind(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_store_is_a_503_and_an_expired_continue_a_410() {
        let pods = Resource::find("", "v1", "pods").unwrap();
        let e = ApiError::from_store(
            StoreError::Unavailable {
                message: "etcd (http://127.0.0.1:2379) did not answer a read within 5s".into(),
            },
            pods,
            "web",
        );
        assert_eq!((e.code, e.reason), (503, "ServiceUnavailable"));
        assert!(e.message.contains("http://127.0.0.1:2379"), "{}", e.message);
        let s = ApiError::continue_expired(None).to_status();
        assert_eq!(s["code"], 410);
        assert_eq!(s["reason"], "Expired");
        assert_eq!(
            s["message"],
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."
        );
        assert_eq!(s["metadata"], json!({}));
        let s = ApiError::continue_expired(Some("tok".into())).to_status();
        assert_eq!(s["code"], 410);
        assert_eq!(s["metadata"]["continue"], "tok");
        assert!(s["message"].as_str().unwrap().contains(
            "or use the continue token in this response to retrieve the remainder of the results."
        ));
    }

    #[test]
    fn not_found_status_matches_kube_apiserver() {
        let pods = Resource::find("", "v1", "pods").unwrap();
        let s = ApiError::not_found(pods, "web").to_status();
        assert_eq!(s["message"], "pods \"web\" not found");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["kind"], "pods");
        let slices = Resource::find("discovery.k8s.io", "v1", "endpointslices").unwrap();
        let s = ApiError::already_exists(slices, "a").to_status();
        assert_eq!(
            s["message"],
            "endpointslices.discovery.k8s.io \"a\" already exists"
        );
        assert_eq!(s["details"]["group"], "discovery.k8s.io");
    }

    #[test]
    fn unserved_paths_say_what_is_not_served_with_empty_details() {
        let s = ApiError::no_route("/api/v1/namespaces/default/pods/web/ephemeralcontainers").to_status();
        assert_eq!(
            s["message"],
            "the server could not find the requested resource (podvisor does not serve pods/ephemeralcontainers)"
        );
        assert_eq!(s["details"], json!({}));
        let m = |p: &str| ApiError::no_route(p).message;
        assert!(
            m("/apis/apps/v1beta2/namespaces/x/deployments")
                .ends_with("(podvisor does not serve the API version apps/v1beta2)")
        );
        assert!(
            m("/api/v1/namespaces/x/replicationcontrollers")
                .ends_with("(podvisor does not serve replicationcontrollers in v1)")
        );
        assert!(
            m("/apis/discovery.k8s.io/v1/widgets")
                .ends_with("(podvisor does not serve widgets in discovery.k8s.io/v1)")
        );
        assert!(m("/apis/apps").ends_with("(podvisor does not serve the API group apps)"));
        assert!(m("/logs").ends_with("(podvisor does not serve /logs)"));
    }
}
