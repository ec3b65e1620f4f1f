//! Static pods from a directory of manifests, like the kubelet's `staticPodPath`: files added,
//! changed and removed are followed by polling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use podvisor_api::manifest::{self, FieldValidation, Object};
use podvisor_api::{defaults, validation};
use podvisor_core::corev1::Pod;

/// A problem with one manifest file; the file is skipped, everything else goes on.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML/JSON or has wrongly typed fields.
    #[error("{path}: {source}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: manifest::Error,
    },
    /// A pod in the file failed validation.
    #[error("{path}: Pod \"{name}\" is invalid: {errors}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The pod's name.
        name: String,
        /// Every validation error.
        errors: validation::ValidationErrors,
    },
    /// Two files define a pod with the same namespace and name.
    #[error("{path}: pod {namespace}/{name} is already defined in {other}")]
    Duplicate {
        /// The file that is skipped.
        path: PathBuf,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The file that defines it first.
        other: PathBuf,
    },
}

/// The pods a manifest directory defines, keyed by UID.
///
/// A pod's UID is derived from its file and content, so an edited manifest gives a new UID:
/// the old pod is terminated and the new one started, as the kubelet does for static pods.
#[derive(Debug, Default)]
pub struct StaticPods {
    dir: PathBuf,
    seen: BTreeMap<PathBuf, SystemTime>,
    pods: BTreeMap<String, Pod>,
}

/// What changed since the last scan.
#[derive(Debug, Default)]
pub struct Changes {
    /// Pods to start (new UIDs).
    pub added: Vec<Pod>,
    /// UIDs of pods to terminate.
    pub removed: Vec<String>,
    /// Files that could not be used, with why.
    pub errors: Vec<ManifestError>,
}

impl StaticPods {
    /// Follows the manifests in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> StaticPods {
        StaticPods {
            dir: dir.into(),
            ..StaticPods::default()
        }
    }

    /// Reads the directory again and returns what changed. Cheap when nothing did: files are
    /// re-read only when their modification time changes.
    pub fn scan(&mut self) -> Changes {
        let mut changes = Changes::default();
        let files = manifest_files(&self.dir);
        let modified: BTreeMap<PathBuf, SystemTime> = files
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    std::fs::metadata(p)
                        .and_then(|m| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                )
            })
            .collect();
        if modified == self.seen {
            return changes;
        }
        self.seen = modified;
        let mut next: BTreeMap<String, Pod> = BTreeMap::new();
        let mut names: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
        for path in files {
            let (pods, errors) = load_file(&path);
            changes.errors.extend(errors);
            for pod in pods {
                let key = (
                    pod.metadata.namespace.clone().unwrap_or_default(),
                    pod.metadata.name.clone().unwrap_or_default(),
                );
                if let Some(other) = names.get(&key) {
                    changes.errors.push(ManifestError::Duplicate {
                        path: path.clone(),
                        namespace: key.0,
                        name: key.1,
                        other: other.clone(),
                    });
                    continue;
                }
                names.insert(key, path.clone());
                next.insert(pod.metadata.uid.clone().unwrap_or_default(), pod);
            }
        }
        for uid in self.pods.keys() {
            if !next.contains_key(uid) {
                changes.removed.push(uid.clone());
            }
        }
        for (uid, pod) in &next {
            if !self.pods.contains_key(uid) {
                changes.added.push(pod.clone());
            }
        }
        self.pods = next;
        changes
    }

    /// The pods currently defined.
    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.values()
    }
}

fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
            !hidden && p.is_file() && matches!(ext, "yaml" | "yml" | "json")
        })
        .collect();
    files.sort();
    files
}

/// Loads, defaults and validates every pod of one file. Kinds other than Pod are ignored; the
/// valid pods of a file are returned even when others in it are invalid.
pub fn load_file(path: &Path) -> (Vec<Pod>, Vec<ManifestError>) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(source) => {
            return (
                Vec::new(),
                vec![ManifestError::Read {
                    path: path.to_owned(),
                    source,
                }],
            );
        }
    };
    let objects = match manifest::load(&text, FieldValidation::Strict) {
        Ok(objects) => objects,
        Err(source) => {
            return (
                Vec::new(),
                vec![ManifestError::Load {
                    path: path.to_owned(),
                    source,
                }],
            );
        }
    };
    let mut pods = Vec::new();
    let mut errors = Vec::new();
    for object in objects {
        let Object::Pod(pod) = object else { continue };
        let mut pod = *pod;
        defaults::default_pod(&mut pod);
        if pod.metadata.namespace.as_deref().unwrap_or_default().is_empty() {
            pod.metadata.namespace = Some("default".into());
        }
        if let Err(e) = validation::validate_pod(&pod) {
            errors.push(ManifestError::Invalid {
                path: path.to_owned(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                errors: e,
            });
            continue;
        }
        let content = serde_json::to_string(&pod).unwrap_or_default();
        pod.metadata.uid = Some(static_uid(path, &content));
        pods.push(pod);
    }
    (pods, errors)
}

/// A stable UID for a static pod: FNV-1a over the file path and the pod's content, formatted
/// like a UUID.
fn static_uid(path: &Path, content: &str) -> String {
    let mut h1: u64 = 0xcbf2_9ce4_8422_2325;
    let mut h2: u64 = 0x8422_2325_cbf2_9ce4;
    for b in path.to_string_lossy().bytes().chain([0]).chain(content.bytes()) {
        h1 = (h1 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        h2 = (h2 ^ u64::from(b.rotate_left(3))).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let hex = format!("{h1:016x}{h2:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The annotation that marks a pod made from a static manifest, with the manifest's hash.
pub const STATIC_POD_ANNOTATION: &str = "podvisor.io/static-manifest";

/// Keeps the API's pods in line with the static manifests: a pod per manifest (marked with
/// [`STATIC_POD_ANNOTATION`]); an edited manifest's pod is deleted and created again; a removed
/// manifest's pod is deleted (gracefully). Returns whether everything is in line.
pub async fn sync_to_api(
    client: &Client,
    desired: &[Pod],
    previous: &mut BTreeMap<(String, String), String>,
) -> bool {
    let mut converged = true;
    let mut now: BTreeMap<(String, String), String> = BTreeMap::new();
    let hash_of = |pod: &Pod| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(STATIC_POD_ANNOTATION))
            .cloned()
    };
    for pod in desired {
        let ns = podvisor_core::object::namespace_of(&pod.metadata).to_string();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let hash = pod.metadata.uid.clone().unwrap_or_default();
        now.insert((ns.clone(), name.clone()), hash.clone());
        let api = Api::<Pod>::namespaced(client.clone(), &ns);
        match api.get_opt(&name).await {
            Ok(None) => {
                let mut object = pod.clone();
                object.metadata.uid = None;
                object.metadata.creation_timestamp = None;
                object
                    .metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(STATIC_POD_ANNOTATION.into(), hash);
                if api.create(&PostParams::default(), &object).await.is_err() {
                    converged = false;
                }
            }
            Ok(Some(existing)) => {
                if hash_of(&existing).as_deref() != Some(hash.as_str()) {
                    converged = false;
                    if existing.metadata.deletion_timestamp.is_none()
                        && let Err(e) = api.delete(&name, &DeleteParams::default()).await
                    {
                        tracing::warn!(pod = %name, error = %e, "deleting a static pod whose manifest changed");
                    }
                }
            }
            Err(_) => converged = false,
        }
    }
    for ((ns, name), hash) in previous.iter() {
        if now.contains_key(&(ns.clone(), name.clone())) {
            continue;
        }
        let api = Api::<Pod>::namespaced(client.clone(), ns);
        if let Ok(Some(existing)) = api.get_opt(name).await {
            let ours = hash_of(&existing).as_deref() == Some(hash.as_str());
            if ours
                && existing.metadata.deletion_timestamp.is_none()
                && let Err(e) = api.delete(name, &DeleteParams::default()).await
            {
                tracing::warn!(pod = %name, error = %e, "deleting a static pod whose manifest is gone");
                converged = false;
            }
        }
    }
    *previous = now;
    converged
}
