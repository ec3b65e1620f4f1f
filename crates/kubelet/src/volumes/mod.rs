//! Pod volumes: what the kubelet's volume manager does for the volume types a process node can
//! serve, and the per-container mounts handed to the runtime.
//!
//! Each pod's volumes live in `<root>/<pod uid>/<type>/<volume>`:
//!
//! | type | contents | medium |
//! |---|---|---|
//! | `emptyDir` | empty, mode 0777, removed with the pod | disk, or tmpfs for `medium: Memory` (`sizeLimit` is the tmpfs size) |
//! | `configMap` | one file per key (or per `items` entry) | disk |
//! | `secret` | one file per key (or per `items` entry) | tmpfs: never written to disk |
//! | `downwardAPI` | pod fields and resources, one file per item | tmpfs |
//! | `projected` | the union of its configMap, secret and downwardAPI sources | tmpfs |
//! | `hostPath` | the host path itself, after its `type` check | — |
//!
//! ConfigMap, Secret, downward API and projected volumes are written like the kubelet's atomic
//! writer: the files go into a fresh hidden directory `..<timestamp>`, a `..data` symlink is
//! swapped to it with one `rename`, and each visible name is a symlink through `..data`. A
//! container therefore sees either the old or the new set of files, never a mix, and a
//! `subPath` mount (bound to the file itself) keeps the content it started with. These volumes
//! are mounted read-only, as the kubelet mounts them.
//!
//! Without mount isolation (the node does not run as root, so containers get no mount
//! namespace of their own) no mount can be honoured: `VolumeManager::unhonoured` says which,
//! Secret data is never written, and a container that mounts Secret data is refused
//! (`VolumeManager::mounts`) rather than started without it being isolated.
//!
//! A node that restarts clears what its previous run left, except the volumes of pods whose
//! containers outlived it (`VolumeManager::keeping`, issue #18): those stay as they are, and
//! setting such a pod up again mounts nothing twice and keeps every file.

mod files;
pub(crate) mod payload;

use files::*;
use payload::*;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use podvisor_core::corev1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, PodSpec, Secret, Volume, VolumeMount,
};
use podvisor_core::host::HostOps;
use podvisor_core::runtime::Mount;
use podvisor_core::{ConfigSource, quantity};

/// Where volumes live and whether containers can have mounts of their own.
#[derive(Clone, Debug)]
pub struct VolumeConfig {
    /// The directory for every pod's volumes (created mode 0700; it should be inside the
    /// runtime's data directory, which containers cannot see).
    pub root: PathBuf,
    /// Containers get their own mount namespace (the runtime runs as root), so mounts can be
    /// honoured and Secret data isolated.
    pub isolation: bool,
    /// Where tmpfs volumes are mounted and unmounted (`podvisor_runtime::LinuxHost` on a node).
    pub host: Arc<dyn HostOps>,
}

/// Files of one volume: path inside the volume → (content, mode).
type Payload = BTreeMap<String, (Vec<u8>, u32)>;

/// A volume could not be set up: the `FailedMount` event's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MountError(pub(crate) String);

/// Sets up, updates and removes pod volumes; see the module docs.
#[derive(Debug)]
pub struct VolumeManager {
    config: VolumeConfig,
    /// Shared by every pod's set-up, refresh and teardown; held alone by the sweep of what a
    /// previous run left ([`remove_pods_except`](Self::remove_pods_except)).
    sweep: tokio::sync::RwLock<()>,
    /// One operation at a time per pod: the pods' set-ups, refreshes and teardowns run side by
    /// side, so one pod waiting for its ConfigMap (the API, on an agent) or for an unmount
    /// holds up no other. An entry goes with its pod's teardown.
    pods: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A pod's turn at its volumes (see [`VolumeManager::turn`]).
struct Turn<'a> {
    _sweep: tokio::sync::RwLockReadGuard<'a, ()>,
    pod: tokio::sync::OwnedMutexGuard<()>,
}

const DEFAULT_MODE: i32 = 0o644;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    EmptyDir,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::EmptyDir => "empty-dir",
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
            Kind::DownwardApi => "downward-api",
            Kind::Projected => "projected",
        }
    }
}

fn kind_of(v: &Volume) -> Option<Kind> {
    if v.empty_dir.is_some() {
        Some(Kind::EmptyDir)
    } else if v.config_map.is_some() {
        Some(Kind::ConfigMap)
    } else if v.secret.is_some() {
        Some(Kind::Secret)
    } else if v.downward_api.is_some() {
        Some(Kind::DownwardApi)
    } else if v.projected.is_some() {
        Some(Kind::Projected)
    } else {
        None
    }
}

/// The volume carries Secret data.
fn sensitive(v: &Volume) -> bool {
    v.secret.is_some()
        || v.projected
            .as_ref()
            .is_some_and(|p| p.sources.iter().flatten().any(|s| s.secret.is_some()))
}

fn io_err(path: &Path, e: io::Error) -> String {
    format!("{}: {e}", path.display())
}

impl VolumeManager {
    /// A manager keeping volumes under `config.root`. Whatever a previous run left there
    /// (after a crash: tmpfs mounts with Secret data included) is unmounted and removed: pod
    /// volumes live while the node runs the pod, and a restarted node sets them up again.
    pub fn new(config: VolumeConfig) -> io::Result<VolumeManager> {
        VolumeManager::keeping(config, &[])
    }

    /// [`new`](Self::new), except that the volumes of the pods in `keep` (UIDs) stay exactly as
    /// a previous run left them, tmpfs mounts and content included: their containers outlived
    /// that run and still use them (issue #18). Setting such a pod up again (`setup`) mounts
    /// nothing twice and keeps every file; its volumes go with the pod as usual.
    pub fn keeping(config: VolumeConfig, keep: &[String]) -> io::Result<VolumeManager> {
        fs::create_dir_all(&config.root)?;
        fs::set_permissions(&config.root, fs::Permissions::from_mode(0o700))?;
        let root = fs::canonicalize(&config.root)?;
        remove_except(&root, config.host.as_ref(), keep);
        Ok(VolumeManager {
            config,
            sweep: tokio::sync::RwLock::new(()),
            pods: Mutex::default(),
        })
    }

    /// Unmounts and removes the volumes of every pod but those in `keep` (UIDs): the pods
    /// [`keeping`](Self::keeping) kept that were deleted while no node ran. Returns how many
    /// pods' volumes went.
    pub async fn remove_pods_except(&self, keep: &[String]) -> usize {
        let _sweep = self.sweep.write().await;
        match fs::canonicalize(&self.config.root) {
            Ok(root) => remove_except(&root, self.config.host.as_ref(), keep),
            Err(e) => {
                tracing::warn!(path = %self.config.root.display(), error = %e, "pod volumes not found");
                0
            }
        }
    }

    /// Waits for the pod's turn: no sweep running, and no other operation on this pod.
    async fn turn(&self, uid: &str) -> Turn<'_> {
        let sweep = self.sweep.read().await;
        let lock = Arc::clone(
            self.pods
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(uid.to_owned())
                .or_default(),
        );
        Turn {
            _sweep: sweep,
            pod: lock.lock_owned().await,
        }
    }

    fn volume_dir(&self, uid: &str, kind: Kind, name: &str) -> PathBuf {
        self.config.root.join(uid).join(kind.dir()).join(name)
    }

    fn uid(pod: &Pod) -> &str {
        pod.metadata.uid.as_deref().unwrap_or("")
    }

    fn volumes(pod: &Pod) -> &[Volume] {
        pod.spec
            .as_ref()
            .and_then(|s| s.volumes.as_deref())
            .unwrap_or(&[])
    }

    /// Prepares every volume of the pod (idempotent: a volume already there is refreshed).
    /// The first failure is returned as the `FailedMount` message; the caller retries.
    pub(crate) async fn setup(&self, pod: &Pod, source: Option<&dyn ConfigSource>) -> Result<(), MountError> {
        if Self::volumes(pod).is_empty() {
            return Ok(());
        }
        let _turn = self.turn(Self::uid(pod)).await;
        for v in Self::volumes(pod) {
            self.setup_one(pod, v, source).await.map_err(|e| {
                MountError(format!(
                    "MountVolume.SetUp failed for volume \"{}\" : {e}",
                    v.name
                ))
            })?;
        }
        Ok(())
    }

    /// Rewrites the pod's ConfigMap, Secret, downward API and projected volumes whose content
    /// changed (objects updated, labels or annotations changed). Failures keep the old content,
    /// as the kubelet does.
    pub(crate) async fn refresh(&self, pod: &Pod, source: Option<&dyn ConfigSource>) {
        let volumes = Self::volumes(pod);
        if !volumes
            .iter()
            .any(|v| matches!(kind_of(v), Some(k) if k != Kind::EmptyDir))
        {
            return;
        }
        let turn = self.turn(Self::uid(pod)).await;
        if !self.config.root.join(Self::uid(pod)).exists() {
            // Torn down meanwhile (a refresh that waited for the teardown's turn).
            self.release(Self::uid(pod), turn);
            return;
        }
        for v in volumes {
            if matches!(kind_of(v), Some(k) if k != Kind::EmptyDir)
                && let Err(e) = self.setup_one(pod, v, source).await
            {
                tracing::debug!(volume = %v.name, error = %e, "volume not refreshed");
            }
        }
    }

    async fn setup_one(
        &self,
        pod: &Pod,
        v: &Volume,
        source: Option<&dyn ConfigSource>,
    ) -> Result<(), String> {
        let uid = Self::uid(pod);
        let namespace = podvisor_core::object::namespace_of(&pod.metadata);
        if let Some(h) = &v.host_path {
            return check_host_path(&h.path, h.type_.as_deref().unwrap_or(""));
        }
        let Some(kind) = kind_of(v) else {
            return Err(format!(
                "volume type {} is not supported by podvisor",
                unsupported_field(v)
            ));
        };
        if !self.config.isolation && sensitive(v) {
            // Never written where it could not be isolated; containers mounting it are refused.
            return Ok(());
        }
        let dir = self.volume_dir(uid, kind, &v.name);
        let tmpfs_size = match kind {
            Kind::EmptyDir => {
                let e = v.empty_dir.as_ref();
                if e.and_then(|e| e.medium.as_deref()) == Some("Memory") {
                    Some(
                        e.and_then(|e| e.size_limit.as_ref())
                            .and_then(|q| quantity::memory_bytes(&q.0)),
                    )
                } else {
                    None
                }
            }
            Kind::ConfigMap => None,
            Kind::Secret | Kind::DownwardApi | Kind::Projected => Some(None),
        };
        // Build the content first: a missing object fails before anything is created.
        let payload = match kind {
            Kind::EmptyDir => None,
            Kind::ConfigMap => {
                let s = v.config_map.as_ref().ok_or("no configMap")?;
                let cm = get_config_map(source, namespace, &s.name).await?;
                let optional = s.optional.unwrap_or(false);
                Some(config_map_payload(
                    &s.name,
                    cm.as_ref(),
                    s.items.as_deref(),
                    s.default_mode,
                    optional,
                )?)
            }
            Kind::Secret => {
                let s = v.secret.as_ref().ok_or("no secret")?;
                let name = s.secret_name.clone().unwrap_or_default();
                let secret = get_secret(source, namespace, &name).await?;
                let optional = s.optional.unwrap_or(false);
                Some(secret_payload(
                    &name,
                    secret.as_ref(),
                    s.items.as_deref(),
                    s.default_mode,
                    optional,
                )?)
            }
            Kind::DownwardApi => {
                let d = v.downward_api.as_ref().ok_or("no downwardAPI")?;
                Some(downward_payload(
                    pod,
                    d.items.as_deref().unwrap_or(&[]),
                    d.default_mode,
                )?)
            }
            Kind::Projected => {
                let p = v.projected.as_ref().ok_or("no projected")?;
                let mut payload = Payload::new();
                for s in p.sources.iter().flatten() {
                    let part = if let Some(c) = &s.config_map {
                        let cm = get_config_map(source, namespace, &c.name).await?;
                        let optional = c.optional.unwrap_or(false);
                        config_map_payload(
                            &c.name,
                            cm.as_ref(),
                            c.items.as_deref(),
                            p.default_mode,
                            optional,
                        )?
                    } else if let Some(c) = &s.secret {
                        let secret = get_secret(source, namespace, &c.name).await?;
                        let optional = c.optional.unwrap_or(false);
                        secret_payload(
                            &c.name,
                            secret.as_ref(),
                            c.items.as_deref(),
                            p.default_mode,
                            optional,
                        )?
                    } else if let Some(d) = &s.downward_api {
                        downward_payload(pod, d.items.as_deref().unwrap_or(&[]), p.default_mode)?
                    } else {
                        return Err(
                            "projected volume sources other than configMap, secret and downwardAPI are not supported by podvisor"
                                .into(),
                        );
                    };
                    payload.extend(part);
                }
                Some(payload)
            }
        };
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        if let Some(size) = tmpfs_size
            && self.config.isolation
            && !self.config.host.is_mount_point(&dir)
        {
            self.config
                .host
                .mount_tmpfs(&dir, size)
                .map_err(|e| io_err(&dir, e))?;
        }
        match payload {
            None => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).map_err(|e| io_err(&dir, e))?
            }
            Some(payload) => {
                write_atomic(&dir, &payload).map_err(|e| io_err(&dir, e))?;
            }
        }
        Ok(())
    }

    /// The mounts of `container` (after `env` resolution, for `subPathExpr`), or why it cannot
    /// be created (`CreateContainerError`).
    pub(crate) fn mounts(&self, pod: &Pod, container: &Container) -> Result<Vec<Mount>, String> {
        let uid = Self::uid(pod);
        let mut mounts = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            let Some(v) = Self::volumes(pod).iter().find(|v| v.name == vm.name) else {
                return Err(format!("volume \"{}\" not found in the pod's volumes", vm.name));
            };
            if !self.config.isolation {
                if sensitive(v) {
                    return Err(format!(
                        "volume \"{}\" holds Secret data and cannot be mounted at {} in isolation: the node does not run as root, so containers get no mount namespace of their own",
                        v.name, vm.mount_path
                    ));
                }
                continue;
            }
            let (base, api_read_only) = match (kind_of(v), &v.host_path) {
                (Some(kind), _) => (self.volume_dir(uid, kind, &v.name), kind != Kind::EmptyDir),
                (None, Some(h)) => (PathBuf::from(&h.path), false),
                (None, None) => return Err(format!("volume \"{}\" has an unsupported type", v.name)),
            };
            let host_path = match sub_path(vm, container)? {
                None => base,
                Some(sub) => {
                    let p = base.join(&sub);
                    if fs::symlink_metadata(&p).is_err() {
                        if api_read_only {
                            return Err(format!("subPath {sub:?} does not exist in volume \"{}\"", v.name));
                        }
                        fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
                    }
                    let (real, real_base) = (fs::canonicalize(&p), fs::canonicalize(&base));
                    match (real, real_base) {
                        (Ok(real), Ok(real_base)) if real.starts_with(&real_base) => p,
                        _ => return Err(format!("subPath {sub:?} leads outside volume \"{}\"", v.name)),
                    }
                }
            };
            mounts.push(Mount {
                volume: v.name.clone(),
                host_path,
                container_path: vm.mount_path.clone(),
                read_only: vm.read_only.unwrap_or(false) || api_read_only,
                sensitive: sensitive(v),
            });
        }
        Ok(mounts)
    }

    /// Without isolation: which mounts are not honoured, as one warning for the pod.
    pub(crate) fn unhonoured(&self, pod: &Pod) -> Option<String> {
        if self.config.isolation {
            return None;
        }
        let spec: &PodSpec = pod.spec.as_ref()?;
        let list: Vec<String> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .flat_map(|c| {
                c.volume_mounts
                    .iter()
                    .flatten()
                    .map(move |m| format!("{}: {} at {}", c.name, m.name, m.mount_path))
            })
            .collect();
        (!list.is_empty()).then(|| {
            format!(
                "volume mounts are not honoured because the node does not run as root (containers get no mount namespace of their own): {}",
                list.join(", ")
            )
        })
    }

    /// Removes the pod's volumes (unmounting tmpfs ones). Called once nothing of the pod runs.
    pub(crate) async fn teardown(&self, uid: &str) {
        if uid.is_empty() {
            return;
        }
        let turn = self.turn(uid).await;
        let dir = self.config.root.join(uid);
        // Most pods have no volumes: one `stat`, and no trip to the blocking pool.
        if dir.exists() {
            let host = Arc::clone(&self.config.host);
            let owned = uid.to_owned();
            // An unmount waits for the kernel: on the blocking pool, not on a runtime worker.
            let _ =
                tokio::task::spawn_blocking(move || remove_pod_volumes(&dir, host.as_ref(), &owned)).await;
        }
        self.release(uid, turn);
    }

    /// Ends a turn on a pod whose volumes are gone: its lock goes too, unless another
    /// operation of the pod waits for it (and holds a clone).
    fn release(&self, uid: &str, turn: Turn<'_>) {
        let mut pods = self.pods.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's and the turn's.
        if pods.get(uid).is_some_and(|l| Arc::strong_count(l) <= 2) {
            pods.remove(uid);
        }
        drop(turn.pod);
    }
}

/// Unmounts a pod's tmpfs volumes and removes its volume directory `dir`.
fn remove_pod_volumes(dir: &Path, host: &dyn HostOps, uid: &str) {
    for kind in [Kind::EmptyDir, Kind::Secret, Kind::DownwardApi, Kind::Projected] {
        for e in fs::read_dir(dir.join(kind.dir())).into_iter().flatten().flatten() {
            if host.is_mount_point(&e.path())
                && let Err(err) = host.unmount(&e.path())
            {
                tracing::warn!(path = %e.path().display(), error = %err, "could not unmount a pod volume");
            }
        }
    }
    if let Err(e) = fs::remove_dir_all(dir) {
        tracing::warn!(pod_uid = uid, error = %e, "could not remove the pod's volumes");
    }
}

/// Unmounts (deepest first) and removes everything under `root` that is not the directory of a
/// pod in `keep`; returns how many pod directories went.
fn remove_except(root: &Path, host: &dyn HostOps, keep: &[String]) -> usize {
    let kept = |p: &Path| {
        keep.iter()
            .any(|uid| !uid.is_empty() && p.starts_with(root.join(uid)))
    };
    let mut stale: Vec<PathBuf> = host
        .mount_points_under(root)
        .into_iter()
        .filter(|p| !kept(p))
        .collect();
    stale.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for mount_point in stale {
        if let Err(e) = host.unmount(&mount_point) {
            tracing::warn!(path = %mount_point.display(), error = %e, "could not unmount a volume left by a previous run");
        }
    }
    let mut removed = 0;
    for e in fs::read_dir(root).into_iter().flatten().flatten() {
        if !kept(&e.path()) && fs::remove_dir_all(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn unsupported_field(v: &Volume) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| {
            j.as_object()
                .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        })
        .unwrap_or_else(|| "(none)".into())
}

fn sub_path(vm: &VolumeMount, container: &Container) -> Result<Option<String>, String> {
    let raw = match (&vm.sub_path, &vm.sub_path_expr) {
        (Some(p), _) if !p.is_empty() => p.clone(),
        (_, Some(expr)) if !expr.is_empty() => {
            let vars: std::collections::HashMap<String, String> = container
                .env
                .iter()
                .flatten()
                .filter_map(|e| e.value.as_ref().map(|v| (e.name.clone(), v.replace("$$", "$"))))
                .collect();
            expand_vars(expr, &vars)
        }
        _ => return Ok(None),
    };
    let p = Path::new(&raw);
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("subPath {raw:?} must be a relative path without '..'"));
    }
    Ok(Some(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use podvisor_test_support::fakes::{FakeConfig, FakeHost, HostCall};

    fn payload(pairs: &[(&str, &str)]) -> Payload {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (v.as_bytes().to_vec(), 0o644)))
            .collect()
    }

    #[test]
    fn atomic_writer_swaps_data_and_keeps_visible_links() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert!(write_atomic(dir, &payload(&[("a", "1"), ("sub/b", "2")])).unwrap());
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(fs::read_link(dir.join("a")).unwrap(), Path::new("..data/a"));
        let first = fs::read_link(dir.join("..data")).unwrap();
        // The same content writes nothing.
        assert!(!write_atomic(dir, &payload(&[("a", "1"), ("sub/b", "2")])).unwrap());
        assert_eq!(fs::read_link(dir.join("..data")).unwrap(), first);
        // A change: new data dir, removed key's link gone, old data dir removed.
        assert!(write_atomic(dir, &payload(&[("a", "10"), ("c", "3")])).unwrap());
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "10");
        assert_eq!(fs::read_to_string(dir.join("c")).unwrap(), "3");
        assert!(fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(!dir.join(&first).exists());
        let entries: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("..2") && !n.starts_with("..1"))
            .collect();
        let mut entries = entries;
        entries.sort();
        assert_eq!(entries, ["..data", "a", "c"]);
    }

    #[test]
    fn downward_api_formats_maps_like_the_kubelet() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                         "labels": {"tier": "web", "app": "a \"quoted\""}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}}}]}
        }))
        .unwrap();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "tier", "fieldRef": {"fieldPath": "metadata.labels['tier']"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
            {"path": "cpu-m", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}}
        ]))
        .unwrap();
        let p = downward_payload(&pod, &items, None).unwrap();
        let text = |k: &str| String::from_utf8(p[k].0.clone()).unwrap();
        assert_eq!(text("labels"), "app=\"a \\\"quoted\\\"\"\ntier=\"web\"");
        assert_eq!(text("name"), "p");
        assert_eq!(text("tier"), "web");
        assert_eq!(text("mem"), "64");
        assert_eq!(text("cpu"), "1");
        assert_eq!(text("cpu-m"), "250");
    }

    #[test]
    fn host_path_types_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, "").unwrap();
        let f = file.display().to_string();
        let d = tmp.path().display().to_string();
        assert_eq!(
            check_host_path(&f, "Directory"),
            Err(format!("hostPath type check failed: {f} is not a directory"))
        );
        assert_eq!(
            check_host_path(&d, "File"),
            Err(format!("hostPath type check failed: {d} is not a file"))
        );
        assert_eq!(check_host_path(&f, "File"), Ok(()));
        let created = tmp.path().join("new/dir").display().to_string();
        assert_eq!(check_host_path(&created, "DirectoryOrCreate"), Ok(()));
        assert!(Path::new(&created).is_dir());
        let created_file = tmp.path().join("made").display().to_string();
        assert_eq!(check_host_path(&created_file, "FileOrCreate"), Ok(()));
        assert!(Path::new(&created_file).is_file());
    }

    #[test]
    fn missing_objects_and_keys_are_reported_like_the_kubelet() {
        let items: Vec<KeyToPath> =
            serde_json::from_value(serde_json::json!([{"key": "nope", "path": "x"}])).unwrap();
        assert_eq!(
            config_map_payload("cfg", None, None, None, false),
            Err("configmap \"cfg\" not found".into())
        );
        assert_eq!(
            config_map_payload("cfg", None, None, None, true),
            Ok(Payload::new())
        );
        let cm = ConfigMap::default();
        assert_eq!(
            config_map_payload("cfg", Some(&cm), Some(&items), None, false),
            Err("configmap references non-existent config key: nope".into())
        );
        let secret = Secret::default();
        assert_eq!(
            secret_payload("s", Some(&secret), Some(&items), None, false),
            Err("references non-existent secret key: nope".into())
        );
        assert_eq!(
            secret_payload("s", None, None, None, false),
            Err("secret \"s\" not found".into())
        );
    }

    #[tokio::test]
    async fn without_isolation_secret_mounts_are_refused_and_others_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let manager = VolumeManager::new(VolumeConfig {
            root: tmp.path().join("volumes"),
            isolation: false,
            host: Arc::new(FakeHost::default()),
        })
        .unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "initContainers": [{"name": "init", "volumeMounts": [{"name": "creds", "mountPath": "/secrets"}]}],
                "containers": [{"name": "app", "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
                "volumes": [{"name": "creds", "secret": {"secretName": "s"}}, {"name": "work", "emptyDir": {}}]
            }
        }))
        .unwrap();
        // The Secret is not looked up, let alone written: nothing could keep it isolated.
        manager.setup(&pod, None).await.unwrap();
        assert!(!tmp.path().join("volumes/u1/secret").exists());
        let spec = pod.spec.as_ref().unwrap();
        let refused = manager
            .mounts(&pod, &spec.init_containers.as_ref().unwrap()[0])
            .unwrap_err();
        assert!(
            refused.contains("volume \"creds\" holds Secret data"),
            "{refused}"
        );
        assert_eq!(manager.mounts(&pod, &spec.containers[0]).unwrap(), vec![]);
        assert_eq!(
            manager.unhonoured(&pod).unwrap(),
            "volume mounts are not honoured because the node does not run as root (containers get no mount namespace of their own): init: creds at /secrets, app: work at /work"
        );
    }

    #[tokio::test]
    async fn a_new_manager_removes_what_a_previous_run_left() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("volumes");
        fs::create_dir_all(root.join("old-uid/empty-dir/x")).unwrap();
        fs::write(root.join("old-uid/empty-dir/x/f"), "left over").unwrap();
        let manager = VolumeManager::new(VolumeConfig {
            root: root.clone(),
            isolation: false,
            host: Arc::new(FakeHost::default()),
        })
        .unwrap();
        assert!(!root.join("old-uid").exists());
        assert!(manager.config.root.is_dir());
    }

    fn isolated(root: &Path, host: &FakeHost) -> VolumeManager {
        VolumeManager::new(VolumeConfig {
            root: root.to_path_buf(),
            isolation: true,
            host: Arc::new(host.clone()),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn memory_volumes_are_tmpfs_mounted_once_and_unmounted_with_the_pod() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("volumes");
        let host = FakeHost::default();
        let manager = isolated(&root, &host);
        let config = FakeConfig::default();
        config.put_secret(serde_json::json!({
            "metadata": {"name": "s", "namespace": "ns"}, "data": {"password": "czNjcjN0"}
        }));
        config.put_config_map(serde_json::json!({
            "metadata": {"name": "cfg", "namespace": "ns"}, "data": {"k": "v"}
        }));
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "containers": [{"name": "app"}],
                "volumes": [
                    {"name": "creds", "secret": {"secretName": "s"}},
                    {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                    {"name": "disk", "emptyDir": {}},
                    {"name": "settings", "configMap": {"name": "cfg"}}
                ]
            }
        }))
        .unwrap();
        manager.setup(&pod, Some(&config)).await.unwrap();
        let secret = root.join("u1/secret/creds");
        let scratch = root.join("u1/empty-dir/scratch");
        let mounted = [(secret.clone(), None), (scratch.clone(), Some(64 << 20))];
        assert_eq!(host.mounted(), mounted.clone().into_iter().collect());
        assert_eq!(fs::read_to_string(secret.join("password")).unwrap(), "s3cr3t");
        assert_eq!(
            fs::read_to_string(root.join("u1/configmap/settings/k")).unwrap(),
            "v"
        );
        // Set up again (a retry) and refreshed: the mounts stay as they are.
        manager.setup(&pod, Some(&config)).await.unwrap();
        manager.refresh(&pod, Some(&config)).await;
        assert_eq!(host.calls().len(), 2, "{:?}", host.calls());
        manager.teardown("u1").await;
        assert!(host.mounted().is_empty());
        let unmounted: Vec<HostCall> = host.calls().split_off(2);
        assert_eq!(unmounted.len(), 2);
        for (dir, _) in mounted {
            assert!(unmounted.contains(&HostCall::Unmount { dir }));
        }
        assert!(!root.join("u1").exists());
    }

    /// ConfigMaps from `inner`, except `slow`, which never comes.
    struct Stuck(FakeConfig);

    #[async_trait::async_trait]
    impl ConfigSource for Stuck {
        async fn config_map(
            &self,
            namespace: &str,
            name: &str,
        ) -> Result<Option<ConfigMap>, podvisor_core::ConfigSourceError> {
            if name == "slow" {
                std::future::pending::<()>().await;
            }
            self.0.config_map(namespace, name).await
        }

        async fn secret(
            &self,
            namespace: &str,
            name: &str,
        ) -> Result<Option<Secret>, podvisor_core::ConfigSourceError> {
            self.0.secret(namespace, name).await
        }
    }

    fn pod_with_config_map(uid: &str, config_map: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": uid, "namespace": "ns", "uid": uid},
            "spec": {
                "containers": [{"name": "app"}],
                "volumes": [
                    {"name": "scratch", "emptyDir": {"medium": "Memory"}},
                    {"name": "settings", "configMap": {"name": config_map}}
                ]
            }
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_pod_waiting_for_its_config_map_holds_up_no_other_pods_volumes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("volumes");
        let host = FakeHost::default();
        let manager = Arc::new(isolated(&root, &host));
        let config = FakeConfig::default();
        config.put_config_map(serde_json::json!({
            "metadata": {"name": "fast", "namespace": "ns"}, "data": {"k": "v"}
        }));
        let source = Arc::new(Stuck(config));
        let stuck = {
            let (manager, source) = (Arc::clone(&manager), Arc::clone(&source));
            tokio::spawn(async move {
                let _ = manager
                    .setup(&pod_with_config_map("u1", "slow"), Some(source.as_ref()))
                    .await;
            })
        };
        // Let the first set-up take its turn and wait for its ConfigMap.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!stuck.is_finished());
        let other = async {
            manager
                .setup(&pod_with_config_map("u2", "fast"), Some(source.as_ref()))
                .await
                .unwrap();
            manager.teardown("u2").await;
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), other)
            .await
            .expect("the other pod's set-up and teardown waited for the stuck one");
        assert!(!root.join("u2").exists());
        assert_eq!(
            host.mounted(),
            [(root.join("u1/empty-dir/scratch"), None)].into_iter().collect()
        );
        // The finished pod's lock is gone; the waiting one's stays.
        let pods = manager.pods.lock().unwrap();
        assert_eq!(pods.keys().collect::<Vec<_>>(), ["u1"]);
        drop(pods);
        stuck.abort();
    }

    #[tokio::test]
    async fn a_refresh_after_the_teardown_leaves_no_lock_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("volumes");
        let host = FakeHost::default();
        let manager = isolated(&root, &host);
        let config = FakeConfig::default();
        config.put_config_map(serde_json::json!({
            "metadata": {"name": "fast", "namespace": "ns"}, "data": {"k": "v"}
        }));
        let pod = pod_with_config_map("u1", "fast");
        manager.setup(&pod, Some(&config)).await.unwrap();
        manager.teardown("u1").await;
        // A refresh the pod's worker had started before it ended.
        manager.refresh(&pod, Some(&config)).await;
        assert!(!root.join("u1").exists(), "the refresh made nothing again");
        assert!(manager.pods.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_tmpfs_mount_is_the_failed_mount_message() {
        let tmp = tempfile::tempdir().unwrap();
        let host = FakeHost::default();
        host.fail_mounts("Operation not permitted (os error 1)");
        let manager = isolated(&tmp.path().join("volumes"), &host);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{"name": "app"}],
                     "volumes": [{"name": "info", "downwardAPI": {"items": [
                         {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}
        }))
        .unwrap();
        let dir = tmp.path().join("volumes/u1/downward-api/info");
        assert_eq!(
            manager.setup(&pod, None).await,
            Err(MountError(format!(
                "MountVolume.SetUp failed for volume \"info\" : {}: Operation not permitted (os error 1)",
                dir.display()
            )))
        );
        assert!(!dir.join("name").exists(), "nothing written outside a tmpfs");
    }

    #[tokio::test]
    async fn a_new_manager_unmounts_what_a_previous_run_left_deepest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap().join("volumes");
        let outer = root.join("old-uid/secret/creds");
        let inner = outer.join("nested");
        fs::create_dir_all(&inner).unwrap();
        let host = FakeHost::default();
        host.leave_mounted(&outer);
        host.leave_mounted(&inner);
        host.leave_mounted(tmp.path());
        isolated(&root, &host);
        assert_eq!(
            host.calls(),
            [HostCall::Unmount { dir: inner }, HostCall::Unmount { dir: outer }]
        );
        assert_eq!(host.mounted().len(), 1, "only what is below the root");
        assert!(!root.join("old-uid").exists());
    }

    /// Issue #18: the volumes of a pod whose containers outlived the node stay as they are, and
    /// setting the pod up again neither mounts a second tmpfs nor loses a file.
    #[tokio::test]
    async fn a_kept_pods_volumes_survive_a_new_manager_and_a_new_setup() {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap().join("volumes");
        let scratch = root.join("u1/empty-dir/scratch");
        let disk = root.join("u1/empty-dir/disk");
        let creds = root.join("u1/secret/creds");
        let gone = root.join("old-uid/secret/creds");
        for dir in [&scratch, &disk, &creds, &gone] {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(scratch.join("state"), "in memory").unwrap();
        fs::write(disk.join("state"), "on disk").unwrap();
        let host = FakeHost::default();
        for dir in [&scratch, &creds, &gone] {
            host.leave_mounted(dir);
        }
        let manager = VolumeManager::keeping(
            VolumeConfig {
                root: root.clone(),
                isolation: true,
                host: Arc::new(host.clone()),
            },
            &["u1".to_owned()],
        )
        .unwrap();
        assert_eq!(
            host.calls(),
            [HostCall::Unmount { dir: gone }],
            "only the other pod's"
        );
        assert!(!root.join("old-uid").exists());
        let config = FakeConfig::default();
        config.put_secret(serde_json::json!({
            "metadata": {"name": "s", "namespace": "ns"}, "data": {"password": "czNjcjN0"}
        }));
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "containers": [{"name": "app"}],
                "volumes": [
                    {"name": "creds", "secret": {"secretName": "s"}},
                    {"name": "scratch", "emptyDir": {"medium": "Memory"}},
                    {"name": "disk", "emptyDir": {}}
                ]
            }
        }))
        .unwrap();
        manager.setup(&pod, Some(&config)).await.unwrap();
        assert_eq!(
            host.calls().len(),
            1,
            "no tmpfs mounted on top: {:?}",
            host.calls()
        );
        assert_eq!(fs::read_to_string(scratch.join("state")).unwrap(), "in memory");
        assert_eq!(fs::read_to_string(disk.join("state")).unwrap(), "on disk");
        assert_eq!(fs::read_to_string(creds.join("password")).unwrap(), "s3cr3t");
        // Deleted while no node ran: it goes when the node learns so.
        assert_eq!(manager.remove_pods_except(&["u2".to_owned()]).await, 1);
        assert!(host.mounted().is_empty());
        assert!(!root.join("u1").exists());
    }
}
