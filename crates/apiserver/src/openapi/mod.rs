//! OpenAPI documents with the served kinds' real schemas, for kubectl (`explain`, field
//! validation, client-side apply's merge keys): `/openapi/v3` (the index, rule 8.2), one
//! OpenAPI 3.0 document per served group version, and `/openapi/v2` in protobuf (rule 8.3).
//!
//! **Where the content comes from.** The schemas are generated, never written by hand: the
//! build script (`build.rs`) runs k8s-openapi's `schemars` implementations (the same Kubernetes
//! types the workspace uses) into OpenAPI 3.0 `components.schemas`, with each kind's
//! `x-kubernetes-group-version-kind` from its `k8s_openapi::Resource` metadata and a list kind
//! per kind (`PodList`); the server binary includes that JSON, not schemars. At run time
//! (`schemas.rs`) each list field reached from a served kind's root gets its
//! `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-patch-strategy` and
//! `x-kubernetes-patch-merge-key` from `list_types.rs`, the one table of list semantics
//! (strategic merge reads it too), and `paths.rs` gives every served resource of
//! [`crate::resources::RESOURCES`] its operations as kube-apiserver names them, each with
//! `x-kubernetes-action` and `x-kubernetes-group-version-kind`, every write with an inline
//! `fieldValidation` parameter (rule 8.1: so kubectl leaves validation to the server, which
//! enforces `fieldValidation=Strict`, [`crate::body`]).
//!
//! The documents are made once, on the first request for any of them, and kept: each with the
//! SHA-512 of its bytes as the index's `hash`.
//!
//! **What it is not.** No protobuf form of the v3 documents (kubectl asks for JSON), no watch
//! paths (`/watch/...`, deprecated), no `x-kubernetes-map-type`, and no OpenAPI for the
//! review APIs (create-only, never validated by kubectl).

mod paths;
mod schemas;
mod v2;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::resources::{GROUPS, Resource};
use crate::status::ApiError;

/// Why the documents could not be made (a build that generated bad schemas).
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    /// The build script's schemas do not parse.
    #[error("the generated OpenAPI schemas do not parse")]
    Generated(#[source] serde_json::Error),
    /// A document does not encode.
    #[error("an OpenAPI document does not encode")]
    Encode(#[source] serde_json::Error),
}

/// The content type of `/openapi/v2` (gnostic's protobuf). Clients ask for
/// `...spec.v2@v1.0+protobuf`, but an `@` does not parse as a media type (Go's
/// `mime.ParseMediaType`, which client-go runs on every response), so the answer says `.v1.0`.
pub const V2_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Every document, encoded.
#[derive(Debug)]
struct Documents {
    /// `/openapi/v3`.
    index: Bytes,
    /// Each group version's document by its key (`api/v1`, `apis/apps/v1`).
    group_versions: BTreeMap<String, Bytes>,
    /// `/openapi/v2`.
    v2: Bytes,
}

fn documents() -> Result<&'static Documents, ApiError> {
    static DOCUMENTS: OnceLock<Result<Documents, String>> = OnceLock::new();
    DOCUMENTS
        .get_or_init(|| {
            build().map_err(|e| match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            })
        })
        .as_ref()
        .map_err(|e| ApiError::internal(e.clone()))
}

/// The served group versions, each as (`api/v1` or `apis/<g>/<v>`, group, version).
fn served_group_versions() -> Vec<(String, &'static str, &'static str)> {
    let mut out = vec![("api/v1".to_owned(), "", "v1")];
    out.extend(GROUPS.iter().map(|(g, v)| (format!("apis/{g}/{v}"), *g, *v)));
    out
}

fn build() -> Result<Documents, OpenApiError> {
    let components = schemas::Components::load()?;
    let mut group_versions = BTreeMap::new();
    let mut index = Map::new();
    for (key, group, version) in served_group_versions() {
        let doc = group_version_document(&components, group, version);
        let bytes = serde_json::to_vec(&doc).map_err(OpenApiError::Encode)?;
        let url = format!("/openapi/v3/{key}?hash={}", hash(&bytes));
        index.insert(key.clone(), json!({"serverRelativeURL": url}));
        group_versions.insert(key, Bytes::from(bytes));
    }
    let index = serde_json::to_vec(&json!({"paths": index})).map_err(OpenApiError::Encode)?;
    Ok(Documents {
        index: index.into(),
        group_versions,
        v2: v2::document(&components).into(),
    })
}

/// One group version's document: its resources' paths and the components they need.
fn group_version_document(components: &schemas::Components, group: &str, version: &str) -> Value {
    let resources = || Resource::in_group(group, version);
    let paths = paths::paths(resources(), components);
    let mut roots: Vec<String> = Vec::new();
    for r in resources() {
        roots.extend(components.of_resource(r).map(str::to_owned));
        let list = format!("{}List", r.kind);
        roots.extend(components.of(r.group, r.version, &list).map(str::to_owned));
    }
    // What the operations' bodies refer to (Scale, Eviction, Binding, Status, DeleteOptions).
    let mut referenced = Vec::new();
    collect_refs(&Value::Object(paths.clone()), &mut referenced);
    let schemas = components.closure(roots.iter().chain(&referenced).map(String::as_str));
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(r) if k == "$ref" => {
                        out.extend(r.strip_prefix(schemas::REF_PREFIX).map(str::to_owned));
                    }
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Uppercase hex SHA-512, as kube-apiserver's index hashes.
fn hash(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = ring::digest::digest(&ring::digest::SHA512, bytes);
    digest.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

/// The document at `path` (`/openapi/v3`, `/openapi/v3/<key>`, `/openapi/v2`) and its content
/// type; `None` for any other path (a group version not served is a 404).
pub(crate) fn serve(path: &str) -> Option<Result<(&'static str, Bytes), ApiError>> {
    let path = path.trim_end_matches('/');
    let answer = match path {
        "/openapi/v3" => index().map(|doc| ("application/json", doc)),
        "/openapi/v2" => v2().map(|doc| (V2_CONTENT_TYPE, doc)),
        _ => {
            let key = path.strip_prefix("/openapi/v3/")?;
            match group_version(key) {
                Ok(Some(doc)) => Ok(("application/json", doc)),
                Ok(None) => Err(ApiError::no_route(path)),
                Err(e) => Err(e),
            }
        }
    };
    Some(answer)
}

/// `/openapi/v3`.
pub fn index() -> Result<Bytes, ApiError> {
    Ok(documents()?.index.clone())
}

/// `/openapi/v3/<key>` (`api/v1`, `apis/apps/v1`); `None` for a group version not served.
pub fn group_version(key: &str) -> Result<Option<Bytes>, ApiError> {
    Ok(documents()?
        .group_versions
        .get(key.trim_end_matches('/'))
        .cloned())
}

/// `/openapi/v2`, gnostic's protobuf `Document`.
pub fn v2() -> Result<Bytes, ApiError> {
    Ok(documents()?.v2.clone())
}

#[cfg(test)]
mod tests;
