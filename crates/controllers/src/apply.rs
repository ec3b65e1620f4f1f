//! Objects of manifest files created through the API, like `kubectl create -f`: the node's and
//! a server's `-f` flag. Each object goes to the resource discovery names for its kind, in its
//! namespace (`default` when it names none); an object that exists is left as it is.

use std::path::PathBuf;

use kube::api::{DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client};
use podvisor_api::manifest::{self, FieldValidation};
use serde_json::Value;

/// Creates every object of the manifest files in `paths` (files, or directories of `*.yaml`,
/// `*.yml`, `*.json`) through the API, like `kubectl create -f`; objects that exist are left as
/// they are. Returns one line per object (`pod/web created`, or why not).
pub async fn apply_paths(client: &Client, paths: &[PathBuf]) -> Vec<String> {
    let mut lines = Vec::new();
    for path in expand(paths) {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                lines.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let objects = match manifest::load(&text, FieldValidation::Strict) {
            Ok(objects) => objects,
            Err(e) => {
                lines.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        for object in objects {
            lines.push(create(client, object_to_value(object)).await);
        }
    }
    lines
}

/// The JSON of a loaded object (the typed kinds serialize with their `apiVersion` and `kind`).
fn object_to_value(object: manifest::Object) -> Value {
    let typed = match object {
        manifest::Object::Pod(p) => serde_json::to_value(p),
        manifest::Object::Service(s) => serde_json::to_value(s),
        manifest::Object::Namespace(n) => serde_json::to_value(n),
        manifest::Object::Other { value, .. } => return value,
    };
    typed.unwrap_or(Value::Null)
}

fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    files
}

/// Creates one object; returns a kubectl-like line.
async fn create(client: &Client, object: Value) -> String {
    let object: DynamicObject = match serde_json::from_value(object) {
        Ok(object) => object,
        Err(e) => return format!("an object cannot be read: {e}"),
    };
    let Some(types) = object.types.clone() else {
        return "an object has no apiVersion and kind".into();
    };
    let name = object.metadata.name.clone().unwrap_or_default();
    let label = format!("{}/{name}", types.kind.to_lowercase());
    let gvk = match GroupVersionKind::try_from(&types) {
        Ok(gvk) => gvk,
        Err(e) => return format!("{label}: {e}"),
    };
    let (resource, capabilities) = match kube::discovery::pinned_kind(client, &gvk).await {
        Ok(found) => found,
        Err(_) => return format!("{label}: kind {} is not served by this node", types.kind),
    };
    let api: Api<DynamicObject> = match capabilities.scope {
        kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &resource),
        kube::discovery::Scope::Namespaced => {
            let ns = object.metadata.namespace.as_deref().unwrap_or("default");
            Api::namespaced_with(client.clone(), ns, &resource)
        }
    };
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => format!("{label} created"),
        Err(kube::Error::Api(e)) if e.code == 409 => format!("{label} unchanged (it exists)"),
        Err(kube::Error::Api(e)) => format!("{label}: {}", e.message),
        Err(e) => format!("{label}: {e}"),
    }
}
