//! [`ProcessRuntime`]: the `ContainerRuntime` and `ContainerExec` implementation: its set-up,
//! state and the trait methods; pod sandboxes are in `pod_sandbox`, a container start's plan in
//! `plan` and its steps, exec and supervision in `container`, `PodStreams` and `UsageSource`
//! in `streams`. The machine is reached through
//! the seams of [`crate::seams`] only.

mod adopt;
mod container;
mod container_exec;
#[cfg(test)]
mod fakes;
mod monitored;
mod plan;
mod pod_sandbox;
mod streams;
mod supervision;
#[cfg(test)]
mod tests;

use container::*;
use supervision::*;

use std::collections::HashMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use podvisor_core::corev1;
use podvisor_core::runtime::{
    ContainerExec, ContainerLaunch, ContainerRuntime, ExecOutput, RuntimeError, Sandbox, SandboxConfig,
    Started,
};
use podvisor_core::{ContainerId, ExitReport, ExitStatus};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::cgroup::{CgroupVersion, Cgroups};
use crate::error::{SandboxError, StartError, file_error};
use crate::ipam::{Cidr, Ipam};
use crate::logs::{LogFile, Stream};
use crate::seams::{CgroupOps, ContainerGroup, Namespaces, NetOps, Netlink, ProcessOps, RealProcesses};
use crate::{exec, logs, mounts, network, process, sandbox, spawn};

/// Annotation with a pids limit for every container of the pod (`"100"`).
pub const PIDS_LIMIT_ANNOTATION: &str = "podvisor.io/pids-limit";
/// Per-container pids limit annotation prefix: `podvisor.io/pids-limit.<container>`.
pub const PIDS_LIMIT_CONTAINER_PREFIX: &str = "podvisor.io/pids-limit.";
/// Exec output cap (combined stdout and stderr), as for exec probes.
pub const EXEC_OUTPUT_LIMIT: usize = 10 * 1024;
/// How long a torn-down pod's veth may outlive it before it is deleted explicitly (the
/// kernel removes it with the pod's network namespace, normally within milliseconds).
const VETH_GRACE: Duration = Duration::from_secs(5);
/// Termination message file limit.
pub const TERMINATION_MESSAGE_LIMIT: u64 = 4096;

/// How the runtime is set up.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where pod files, logs and state go (`<data_dir>/pods/<ns>_<name>_<uid>/...`).
    pub data_dir: PathBuf,
    /// The pod CIDR (`10.88.0.0/16`); its first address is the bridge's (the gateway).
    pub pod_cidr: String,
    /// The node bridge (`podvisor0`).
    pub bridge_name: String,
    /// The node name, for `spec.nodeName` when the pod does not set it.
    pub node_name: String,
    /// Rotate a container log when it would grow past this many bytes.
    pub log_max_bytes: u64,
    /// Log files per instance, the current one included.
    pub log_max_files: u32,
    /// The cgroup directory name under each hierarchy (`podvisor`).
    pub cgroup_parent: String,
    /// Use cgroups when the machine allows it.
    pub use_cgroups: bool,
    /// Never create namespaces: every pod uses the host network (what happens without root).
    pub force_host_network: bool,
    /// The address host-network pods report; detected when `None`.
    pub node_ip: Option<String>,
    /// Adopt what a previous run left that still runs (sandboxes, container instances under
    /// their monitors) and kill and remove the rest (holders, monitors, veths, cgroups), at
    /// construction.
    pub cleanup_on_start: bool,
    /// The cluster DNS server: pods with `dnsPolicy: ClusterFirst` (the default) in their own
    /// network get it as their only nameserver, with the cluster search domains and
    /// `ndots:5`. `None` keeps the host's resolver configuration.
    pub cluster_dns: Option<Ipv4Addr>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            data_dir: PathBuf::from(".podvisor"),
            pod_cidr: "10.88.0.0/16".into(),
            bridge_name: "podvisor0".into(),
            node_name: "podvisor".into(),
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 5,
            cgroup_parent: "podvisor".into(),
            use_cgroups: true,
            force_host_network: false,
            node_ip: None,
            cleanup_on_start: true,
            cluster_dns: None,
        }
    }
}

/// What this machine lets the runtime do, detected at construction (for the node to report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The node runs as root (effective uid 0).
    pub root: bool,
    /// Pod sandboxes get their own network, UTS, IPC and mount namespaces.
    pub namespaces: bool,
    /// The cgroup interface in use.
    pub cgroup: CgroupVersion,
    /// Controllers limits are written to (`memory`, `cpu`, `pids`).
    pub cgroup_controllers: Vec<String>,
    /// `cgroup.kill` is available (cgroup v2, Linux 5.14+).
    pub cgroup_kill: bool,
    /// The node is a child subreaper (orphans of containers are reaped by it).
    pub subreaper: bool,
    /// Process exits are observed through pidfds (else a blocking `waitpid` per process).
    pub pidfd: bool,
    /// `terminationMessagePath` can be provided (needs a mount namespace per container).
    pub termination_message_path: bool,
}

/// Errors at construction.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The data directory could not be created.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The pod CIDR is invalid.
    #[error(transparent)]
    Ipam(#[from] crate::ipam::IpamError),
}

/// A sandbox's fate, for `Sandbox::lost`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Alive,
    Lost,
    Removed,
}

struct SandboxState {
    pod_dir: PathBuf,
    holder: Option<i32>,
    namespaces: Option<Namespaces>,
    host_veth: Option<String>,
    /// The host end's interface index, once the pod network is set up.
    host_veth_index: Option<u32>,
    fate: watch::Sender<Fate>,
    /// Each container's groups, kept empty between its instances (by container name).
    kept_groups: HashMap<String, KeptGroup>,
}

/// A container's cgroups and what using them for another instance needs. A restarted
/// container's next instance takes them over instead of making new ones (and its last one's
/// removed): each `mkdir` and `rmdir` of a group is the kernel's work under one global lock,
/// about a tenth of a restart on the development machine (a v1 memory group's the most).
/// Only groups without a memory limit are kept (`release_groups` says why).
pub(super) struct KeptGroup {
    pub(super) group: Arc<dyn ContainerGroup>,
    /// Their name under the pod's group: `<container>-<restart>` of the instance that made
    /// them.
    pub(super) name: String,
    pub(super) limits: crate::cgroup::Limits,
    /// The OOM kills they had counted when the instance using them started: its own are the
    /// count above this.
    pub(super) oom_kills: u64,
}

impl SandboxState {
    /// A sandbox in the node's network: no holder, namespaces or veth of its own.
    fn host_network(pod_dir: PathBuf, fate: watch::Sender<Fate>) -> SandboxState {
        SandboxState {
            pod_dir,
            holder: None,
            namespaces: None,
            host_veth: None,
            host_veth_index: None,
            fate,
            kept_groups: HashMap::new(),
        }
    }
}

/// On-disk record of a sandbox, for a restarted node to adopt it or clean it up.
#[derive(Serialize, Deserialize)]
struct SandboxRecord {
    pod_uid: String,
    holder: Option<i32>,
    host_veth: Option<String>,
    /// The pod's IP (`None` for the host network).
    #[serde(default)]
    pod_ip: Option<String>,
    /// The pod uses the host network: no holder, nothing to tear down but its containers.
    #[serde(default)]
    host_network: bool,
    /// `terminationGracePeriodSeconds`, for stopping it should the pod be gone meanwhile.
    #[serde(default)]
    grace_seconds: Option<i64>,
}

/// A container's mount namespace, reused by its next instance while what it was made from is
/// the same: the same binds of the same files (device and inode of each source) on top of the
/// same sandbox namespace. A restart then joins it instead of building it again.
struct KeptMountNs {
    made_from: MountOrigin,
    ns: Arc<OwnedFd>,
}

/// What a container's mount namespace was made from.
#[derive(PartialEq, Eq)]
struct MountOrigin {
    /// (source, target, read-only, device, inode) of each bind.
    binds: Vec<(PathBuf, String, bool, u64, u64)>,
    /// The inode of the sandbox's mount namespace it was copied from (`None`: the node's).
    base: Option<u64>,
}

impl MountOrigin {
    /// `None` when a source cannot be examined (then nothing is reused).
    fn of(binds: &[mounts::BindSpec], base: Option<&OwnedFd>) -> Option<MountOrigin> {
        use std::os::unix::fs::MetadataExt;
        let binds = binds
            .iter()
            .map(|b| {
                let meta = fs::metadata(&b.source).ok()?;
                Some((
                    b.source.clone(),
                    b.target.clone(),
                    b.read_only,
                    meta.dev(),
                    meta.ino(),
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        let base = match base {
            Some(fd) => Some(
                nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(fd))
                    .ok()?
                    .st_ino,
            ),
            None => None,
        };
        Some(MountOrigin { binds, base })
    }
}

struct ContainerState {
    main_pid: i32,
    stop_signal: Signal,
    stop: watch::Sender<Option<Instant>>,
    exec_ctx: Mutex<Option<exec::ExecContext>>,
    exec_tx: Mutex<Option<std::sync::mpsc::Sender<exec::Request>>>,
    /// The instance's cgroups (exec sessions join them; usage is read from them).
    cgroup: Arc<dyn ContainerGroup>,
    /// What attached clients get.
    attach: Attach,
}

/// A running container's main process as attach reaches it (rule 1.22).
struct Attach {
    /// The container's `stdin`, `stdinOnce` and `tty`.
    stdio: plan::StdioPlan,
    /// The runtime's end of the process's stdin, held open between attaches (`stdin: true`);
    /// with `stdinOnce` the first client that attaches with stdin takes it away, so its
    /// detaching closes the process's stdin.
    stdin: Mutex<Option<OwnedFd>>,
    /// The pty master (`tty: true`), for resizes.
    terminal: Option<Arc<OwnedFd>>,
    /// Stdout and stderr (a terminal's output is stdout) as they are read into the log.
    output: [Arc<crate::stdio::Fanout>; 2],
    /// Woken when a client attaches (a monitor's log is only followed while someone reads).
    interest: Arc<tokio::sync::Notify>,
    /// The main process's exit code, once it ended.
    exit: watch::Receiver<Option<i32>>,
}

struct Inner {
    config: RuntimeConfig,
    /// The container monitor's executable (issue 18); `None`: the node reads the output and
    /// reaps the main processes itself (the fakes, or where the monitor cannot be loaded).
    monitor: Option<crate::sys::MonitorProgram>,
    caps: Capabilities,
    cgroups: Box<dyn CgroupOps>,
    procs: Arc<dyn ProcessOps>,
    net: Box<dyn NetOps>,
    cidr: Cidr,
    ipam: Mutex<Ipam>,
    sandboxes: Mutex<HashMap<String, SandboxState>>,
    containers: Mutex<HashMap<ContainerId, Arc<ContainerState>>>,
    /// The data directory's real path, hidden in every container's mount namespace, and the
    /// empty directory bound over it.
    hidden_data_dir: Option<crate::mounts::Hidden>,
    /// Each container's mount namespace, kept for its next instance (pod UID, container name).
    mount_namespaces: Mutex<HashMap<(String, String), KeptMountNs>>,
    /// What survived the node's previous run, by pod UID, until the pod's worker takes it
    /// (`adopt.rs`).
    survivors: Mutex<HashMap<String, adopt::Survivor>>,
    /// Cancelled by [`ProcessRuntime::detach`]: supervision of monitored instances ends.
    detached: tokio_util::sync::CancellationToken,
    /// The log files being written, by path, for followers ([`ProcessRuntime::log_updates`]).
    live_logs: Mutex<HashMap<PathBuf, std::sync::Weak<Mutex<LogFile>>>>,
    next: AtomicU64,
    /// The node bridge's index once it is known to exist with its address. Checking and
    /// creating it is serialised (concurrent creations race in the kernel, EBUSY); the rest of
    /// a pod's network is then set up concurrently with other pods'.
    bridge: tokio::sync::Mutex<Option<u32>>,
}

/// The process runtime. Cheap to clone; clones share all state.
///
/// Construct it inside a tokio runtime (it spawns the orphan reaper and netlink tasks there).
#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime")
            .field("capabilities", &self.inner.caps)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> RuntimeError {
    RuntimeError::Backend(Box::new(e))
}

fn pod_name(pod: &corev1::Pod) -> (String, String, String) {
    let m = &pod.metadata;
    (
        podvisor_core::object::namespace_of(m).to_string(),
        m.name.clone().unwrap_or_default(),
        m.uid.clone().unwrap_or_default(),
    )
}

/// `<data_dir>/pods/<ns>_<name>_<uid>`: the pod's files.
fn pod_dir(data_dir: &Path, pod: &corev1::Pod) -> PathBuf {
    let (ns, name, uid) = pod_name(pod);
    data_dir.join("pods").join(format!("{ns}_{name}_{uid}"))
}

/// The data directory as every container's namespace hides it (see [`crate::mounts`]): its
/// real path and `<data_dir>/empty`, made empty and mode 555 here (no one but root writes
/// into it; its owner can still list it, which `std::fs::remove_dir_all` of the data
/// directory needs without root: at 000 it failed, and every unprivileged test's temporary
/// directory was left behind). `None` when the data directory has no real path (then there
/// is nothing to hide).
fn hidden_data_dir(data_dir: &Path) -> Result<Option<crate::mounts::Hidden>, InitError> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(dir) = fs::canonicalize(data_dir) else {
        return Ok(None);
    };
    let cover = dir.join("empty");
    let made = fs::create_dir_all(&cover)
        .and_then(|()| fs::set_permissions(&cover, fs::Permissions::from_mode(0o555)))
        .and_then(|()| match fs::read_dir(&cover)?.next() {
            None => Ok(()),
            Some(_) => Err(std::io::Error::other(
                "must be empty: it is what containers see of the data directory",
            )),
        });
    made.map_err(|source| InitError::DataDir {
        path: cover.clone(),
        source,
    })?;
    Ok(Some(crate::mounts::Hidden { dir, cover }))
}

/// The machine as the runtime reaches it (see [`crate::seams`]).
struct Parts {
    monitor: Option<crate::sys::MonitorProgram>,
    cgroups: Box<dyn CgroupOps>,
    procs: Arc<dyn ProcessOps>,
    net: Box<dyn NetOps>,
}

fn hostname_of(pod: &corev1::Pod) -> String {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone());
    let mut h = name.unwrap_or_else(|| "pod".into());
    h.truncate(63);
    h
}

impl ProcessRuntime {
    /// Detects what the machine allows, becomes a child subreaper, prepares the data directory
    /// and (with `cleanup_on_start`) adopts what a previous run left running and removes the rest.
    pub async fn new(config: RuntimeConfig) -> Result<Self, InitError> {
        crate::ipam::parse_cidr(&config.pod_cidr)?;
        let root = crate::is_root();
        let namespaces = root && !config.force_host_network && sandbox::namespaces_available();
        let cgroups = if config.use_cgroups {
            Cgroups::detect(&config.cgroup_parent)
        } else {
            Cgroups::disabled()
        };
        if cgroups.version == CgroupVersion::None {
            tracing::warn!("no usable cgroup hierarchy: containers run without resource limits");
        }
        let caps = Capabilities {
            root,
            namespaces,
            cgroup: cgroups.version,
            cgroup_controllers: cgroups.controllers.clone(),
            cgroup_kill: cgroups.cgroup_kill,
            subreaper: process::become_subreaper(),
            pidfd: process::pidfd_supported(),
            termination_message_path: root,
        };
        process::spawn_orphan_reaper();
        let monitor = match crate::sys::MonitorProgram::load() {
            Ok(program) => Some(program),
            Err(e) => {
                tracing::warn!(error = %e, "no container monitor: containers end with the node process");
                None
            }
        };
        let parts = Parts {
            monitor,
            cgroups: Box::new(cgroups),
            procs: Arc::new(RealProcesses),
            net: Box::new(Netlink::default()),
        };
        let rt = Self::from_parts(config, caps, parts)?;
        if rt.inner.config.cleanup_on_start {
            rt.recover().await;
        }
        Ok(rt)
    }

    /// A runtime on the given parts, with no detection and no clean-up.
    fn from_parts(config: RuntimeConfig, caps: Capabilities, parts: Parts) -> Result<Self, InitError> {
        let cidr = crate::ipam::parse_cidr(&config.pod_cidr)?;
        for dir in [
            config.data_dir.clone(),
            config.data_dir.join("pods"),
            config.data_dir.join("sandboxes"),
            config.data_dir.join("rootfs"),
        ] {
            fs::create_dir_all(&dir).map_err(|source| InitError::DataDir {
                path: dir.clone(),
                source,
            })?;
        }
        let ipam = Ipam::open(cidr, config.data_dir.clone())?;
        let hidden_data_dir = hidden_data_dir(&config.data_dir)?;
        Ok(ProcessRuntime {
            inner: Arc::new(Inner {
                config,
                caps,
                monitor: parts.monitor,
                cgroups: parts.cgroups,
                procs: parts.procs,
                net: parts.net,
                cidr,
                ipam: Mutex::new(ipam),
                sandboxes: Mutex::new(HashMap::new()),
                containers: Mutex::new(HashMap::new()),
                hidden_data_dir,
                mount_namespaces: Mutex::new(HashMap::new()),
                live_logs: Mutex::new(HashMap::new()),
                survivors: Mutex::new(HashMap::new()),
                detached: tokio_util::sync::CancellationToken::new(),
                next: AtomicU64::new(0),
                bridge: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Creates the node bridge with its gateway address now, rather than with the first pod
    /// sandbox, so services that listen on the gateway (cluster DNS) can bind it at start-up.
    /// Does nothing when pods use the host network.
    pub async fn ensure_pod_network(&self) -> Result<(), RuntimeError> {
        if !self.inner.caps.namespaces {
            return Ok(());
        }
        self.bridge_index()
            .await
            .map(|_| ())
            .map_err(|e| RuntimeError::Backend(Box::new(e)))
    }

    /// The node bridge, created with its gateway address the first time (and again after a
    /// pod network failed, in case it was deleted).
    async fn bridge_index(&self) -> Result<u32, network::NetworkError> {
        let mut known = self.inner.bridge.lock().await;
        if let Some(index) = *known {
            return Ok(index);
        }
        let index = self
            .inner
            .net
            .ensure_bridge(
                &self.inner.config.bridge_name,
                self.inner.cidr.first_host(),
                self.inner.cidr.prefix(),
            )
            .await?;
        *known = Some(index);
        Ok(index)
    }

    /// The node's address: the configured `node_ip`, else its first global IPv4 address.
    /// Host-network pods report it as their IP; the node reports it as `status.hostIP`.
    pub async fn node_ip(&self) -> Option<String> {
        match &self.inner.config.node_ip {
            Some(ip) => Some(ip.clone()),
            None => self.inner.net.node_ipv4().await.map(|ip| ip.to_string()),
        }
    }

    /// What the machine allows.
    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    /// The configuration in use.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    fn pod_dir_for(&self, pod: &corev1::Pod) -> PathBuf {
        pod_dir(&self.inner.config.data_dir, pod)
    }

    /// The log file of one container instance (`<restart>.log`; rotated files add `.1`,
    /// `.2`, ...), if that pod is or was on this node.
    pub fn log_path(&self, pod_uid: &str, container: &str, restart: i32) -> Option<PathBuf> {
        let dir = self.pod_dir_of(pod_uid)?;
        Some(dir.join(container).join(format!("{restart}.log")))
    }

    /// The directory of pod `pod_uid`'s files (`<data>/pods/<ns>_<name>_<uid>`), if it has one.
    fn pod_dir_of(&self, pod_uid: &str) -> Option<PathBuf> {
        if pod_uid.is_empty() {
            return None;
        }
        let pods = fs::read_dir(self.inner.config.data_dir.join("pods")).ok()?;
        let suffix = format!("_{pod_uid}");
        Some(
            pods.flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with(&suffix))?
                .path(),
        )
    }

    /// Notifications of writes to the log file at `path` (a [`log_path`](Self::log_path))
    /// while its instance's output is still being written: a follower reads on each change
    /// (the file may have been rotated since: a new file at the same path) and stops once the
    /// sender is gone. `None` when nothing writes it any more.
    pub fn log_updates(&self, path: &Path) -> Option<watch::Receiver<()>> {
        let log = lock(&self.inner.live_logs).get(path)?.upgrade()?;
        let updates = lock(&log).updates();
        Some(updates)
    }

    /// Lets go of every container running under a monitor, without stopping it: the node
    /// leaves its pods running (issue 18) and the next runtime on the same data directory
    /// adopts them. Their exits are no longer reported here; a node process that goes on (the
    /// benchmark's, a test's) must not use this runtime for them again.
    pub fn detach(&self) {
        self.inner.detached.cancel();
    }

    /// Kills every process in this runtime's cgroups and removes its cgroup parent directory
    /// in every hierarchy (for a node that shuts down for good, and for tests). Blocks while
    /// the killed processes exit (at most a few seconds): call it from the blocking pool.
    pub fn remove_cgroup_parent(&self) {
        self.inner.cgroups.cleanup_all();
        self.inner.cgroups.remove_bases();
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for ProcessRuntime {
    async fn create_sandbox(&self, config: SandboxConfig) -> Result<Sandbox, RuntimeError> {
        let (ns, name, _) = pod_name(&config.pod);
        self.create_sandbox_inner(&config.pod)
            .await
            .map_err(|e: SandboxError| RuntimeError::Sandbox {
                pod: format!("{ns}/{name}"),
                message: e.to_string(),
            })
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        let state = lock(&self.inner.sandboxes).remove(pod_uid);
        // The pod's kept mount namespaces go (released on the blocking pool: unmounting waits).
        let kept: Vec<KeptMountNs> = {
            let mut all = lock(&self.inner.mount_namespaces);
            let keys: Vec<_> = all.keys().filter(|(u, _)| u == pod_uid).cloned().collect();
            keys.into_iter().filter_map(|k| all.remove(&k)).collect()
        };
        if !kept.is_empty() {
            let _ = tokio::task::spawn_blocking(move || drop(kept)).await;
        }
        if let Some(state) = state {
            self.teardown(pod_uid, state, Fate::Removed).await;
        }
        self.inner.cgroups.remove_pod(pod_uid).await;
        Ok(())
    }

    async fn remove_pod(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        let Some(dir) = self.pod_dir_of(pod_uid) else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
        .map_err(backend)?
        .map_err(backend)
    }

    async fn adopt(&self, pod_uid: &str) -> Option<podvisor_core::runtime::AdoptedPod> {
        self.take_survivor(pod_uid)
    }

    async fn remove_pods_except(&self, keep: &[String]) -> Result<usize, RuntimeError> {
        let pods = self.inner.config.data_dir.join("pods");
        let mut keep: std::collections::HashSet<String> = keep.iter().cloned().collect();
        // Survivors of deleted pods stop gracefully first; their files go after them.
        self.stop_survivors_except(&keep);
        keep.extend(lock(&self.inner.sandboxes).keys().cloned());
        tokio::task::spawn_blocking(move || {
            let entries = match fs::read_dir(&pods) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            };
            let mut removed = 0;
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                // `<namespace>_<name>_<uid>`: neither a namespace nor a UID has `_`.
                let Some((_, uid)) = name.rsplit_once('_') else {
                    continue;
                };
                if !uid.is_empty() && !keep.contains(uid) && e.path().is_dir() {
                    fs::remove_dir_all(e.path())?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
        .map_err(backend)?
        .map_err(backend)
    }

    async fn start(&self, launch: ContainerLaunch) -> Result<Started, RuntimeError> {
        let name = launch.container.name.clone();
        self.start_inner(launch)
            .await
            .map_err(|e: StartError| RuntimeError::Start {
                name,
                message: e.to_string(),
            })
    }

    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError> {
        let state = lock(&self.inner.containers)
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound { id: id.clone() })?;
        let first = state.stop.borrow().is_none();
        if first {
            // The stop signal goes to the main process only, as a runtime signals a container's
            // PID 1; the rest go when it exits (`kill_leftovers`) or at the deadline.
            self.inner.procs.signal(state.main_pid, state.stop_signal);
        }
        let deadline = stop_deadline(Instant::now(), grace);
        state.stop.send_if_modified(|d| {
            if d.is_none_or(|d| deadline < d) {
                *d = Some(deadline);
                true
            } else {
                false
            }
        });
        Ok(())
    }
}

/// When a stop's grace period ends: `now + grace`, or, for a grace the clock cannot represent
/// (a probe's `terminationGracePeriodSeconds` near `i64::MAX`), a deadline 30 years away (as
/// tokio's "far future"), so a later, shorter stop can still bring it forward.
fn stop_deadline(now: Instant, grace: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);
    now.checked_add(grace.min(FAR))
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

#[async_trait::async_trait]
impl ContainerExec for ProcessRuntime {
    async fn exec(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
        self.exec_inner(id, argv, timeout).await
    }
}

/// Test and cleanup helper: deletes a network link (e.g. a test bridge) by name.
pub async fn delete_link(name: &str) -> Result<(), RuntimeError> {
    let h = network::connect().map_err(backend)?;
    network::delete_link(&h, name).await.map_err(backend)
}
