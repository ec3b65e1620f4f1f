//! [`ProcessRuntime`]: the `ContainerRuntime` and `ContainerExec` implementation.

use std::collections::HashMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
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

use crate::cgroup::{CgroupVersion, Cgroups, ContainerCgroup, Limits};
use crate::ipam::{Cidr, Ipam};
use crate::logs::{LogFile, Stream};
use crate::{env, exec, logs, mounts, network, process, sandbox, spawn};

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
    /// Kill and remove what a previous run left (holders, veths, cgroups) at construction.
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

struct Namespaces {
    net: Arc<OwnedFd>,
    uts: Arc<OwnedFd>,
    ipc: Arc<OwnedFd>,
    mnt: Arc<OwnedFd>,
}

struct SandboxState {
    pod_dir: PathBuf,
    holder: Option<i32>,
    namespaces: Option<Namespaces>,
    host_veth: Option<String>,
    /// The host end's interface index, once the pod network is set up.
    host_veth_index: Option<u32>,
    fate: watch::Sender<Fate>,
}

/// On-disk record of a sandbox, for cleanup after a node restart.
#[derive(Serialize, Deserialize)]
struct SandboxRecord {
    pod_uid: String,
    holder: Option<i32>,
    host_veth: Option<String>,
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
}

struct Inner {
    config: RuntimeConfig,
    caps: Capabilities,
    cgroups: Cgroups,
    cidr: Cidr,
    ipam: Mutex<Ipam>,
    sandboxes: Mutex<HashMap<String, SandboxState>>,
    containers: Mutex<HashMap<ContainerId, Arc<ContainerState>>>,
    /// The data directory's real path, hidden in every container's mount namespace.
    hidden_data_dir: Option<PathBuf>,
    /// Each container's mount namespace, kept for its next instance (pod UID, container name).
    mount_namespaces: Mutex<HashMap<(String, String), KeptMountNs>>,
    /// The log files being written, by path, for followers ([`ProcessRuntime::log_updates`]).
    live_logs: Mutex<HashMap<PathBuf, std::sync::Weak<Mutex<LogFile>>>>,
    next: AtomicU64,
    netlink: tokio::sync::OnceCell<Option<rtnetlink::Handle>>,
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
        m.namespace.clone().unwrap_or_else(|| "default".into()),
        m.name.clone().unwrap_or_default(),
        m.uid.clone().unwrap_or_default(),
    )
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
    /// and (with `cleanup_on_start`) removes what a previous run left behind.
    pub async fn new(config: RuntimeConfig) -> Result<Self, InitError> {
        let cidr = Cidr::parse(&config.pod_cidr)?;
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
        let root = nix::unistd::geteuid().is_root();
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
        let ipam = Ipam::open(cidr, config.data_dir.clone())?;
        let hidden_data_dir = fs::canonicalize(&config.data_dir).ok();
        process::spawn_orphan_reaper();
        let rt = ProcessRuntime {
            inner: Arc::new(Inner {
                config,
                caps,
                cgroups,
                cidr,
                ipam: Mutex::new(ipam),
                sandboxes: Mutex::new(HashMap::new()),
                containers: Mutex::new(HashMap::new()),
                hidden_data_dir,
                mount_namespaces: Mutex::new(HashMap::new()),
                live_logs: Mutex::new(HashMap::new()),
                next: AtomicU64::new(0),
                netlink: tokio::sync::OnceCell::new(),
                bridge: tokio::sync::Mutex::new(None),
            }),
        };
        if rt.inner.config.cleanup_on_start {
            rt.cleanup_stale().await;
        }
        Ok(rt)
    }

    /// Creates the node bridge with its gateway address now, rather than with the first pod
    /// sandbox, so services that listen on the gateway (cluster DNS) can bind it at start-up.
    /// Does nothing when pods use the host network.
    pub async fn ensure_pod_network(&self) -> Result<(), RuntimeError> {
        if !self.inner.caps.namespaces {
            return Ok(());
        }
        let Some(h) = self.netlink().await else {
            return Err(RuntimeError::Backend("no netlink connection".into()));
        };
        self.bridge_index(&h)
            .await
            .map(|_| ())
            .map_err(|e| RuntimeError::Backend(Box::new(e)))
    }

    /// The node bridge, created with its gateway address the first time (and again after a
    /// pod network failed, in case it was deleted).
    async fn bridge_index(&self, h: &rtnetlink::Handle) -> Result<u32, network::NetworkError> {
        let mut known = self.inner.bridge.lock().await;
        if let Some(index) = *known {
            return Ok(index);
        }
        let index = network::ensure_bridge(
            h,
            &self.inner.config.bridge_name,
            self.inner.cidr.gateway(),
            self.inner.cidr.prefix,
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
            None => match self.netlink().await {
                Some(h) => network::node_ipv4(&h).await.map(|ip| ip.to_string()),
                None => None,
            },
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
        let (ns, name, uid) = pod_name(pod);
        self.inner
            .config
            .data_dir
            .join("pods")
            .join(format!("{ns}_{name}_{uid}"))
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

    async fn netlink(&self) -> Option<rtnetlink::Handle> {
        self.inner
            .netlink
            .get_or_init(|| async {
                network::connect()
                    .map_err(|e| tracing::warn!(error = %e, "no netlink connection"))
                    .ok()
            })
            .await
            .clone()
    }

    /// Kills and removes what a previous run of the node left behind: sandbox holders (by
    /// their records in `<data_dir>/sandboxes`), their veths and addresses, and every cgroup
    /// under this runtime's cgroup parent. Called by `new` unless `cleanup_on_start` is off.
    pub async fn cleanup_stale(&self) {
        let dir = self.inner.config.data_dir.join("sandboxes");
        let live: Vec<String> = lock(&self.inner.sandboxes).keys().cloned().collect();
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                let Ok(bytes) = fs::read(e.path()) else { continue };
                let Ok(rec) = serde_json::from_slice::<SandboxRecord>(&bytes) else {
                    continue;
                };
                if live.contains(&rec.pod_uid) {
                    continue;
                }
                if let Some(pid) = rec.holder
                    && sandbox::is_holder(pid)
                {
                    process::kill_pid(pid);
                }
                if let (Some(veth), Some(h)) = (&rec.host_veth, self.netlink().await) {
                    let _ = network::delete_veth(&h, veth).await;
                }
                let _ = fs::remove_file(e.path());
            }
        }
        let _ = lock(&self.inner.ipam).retain(&|uid| live.iter().any(|l| l == uid));
        if live.is_empty() {
            self.inner.cgroups.cleanup_all();
        }
    }

    /// Kills every process in this runtime's cgroups and removes its cgroup parent directory
    /// in every hierarchy (for a node that shuts down for good, and for tests).
    pub fn remove_cgroup_parent(&self) {
        self.inner.cgroups.cleanup_all();
        self.inner.cgroups.remove_bases();
    }

    async fn teardown(&self, uid: &str, state: SandboxState, fate: Fate) {
        state.fate.send_replace(fate);
        drop(state.namespaces);
        if let Some(pid) = state.holder {
            process::kill_pid(pid);
            process::wait_gone(pid).await;
        }
        // The veth pair goes with the pod's network namespace, which the kernel destroys (in
        // batches, off this path) once the holder and every fd of it are gone: deleting it
        // here instead waited an RCU grace period per pod under the global rtnl lock (57 ms
        // each with 20 pods torn down at once), and even a lookup waits for that lock while
        // the kernel destroys namespaces. Should something keep the namespace alive, the host
        // end is deleted after a while (unless a new sandbox of the pod took its name).
        if let (Some(veth), Some(index)) = (state.host_veth.clone(), state.host_veth_index) {
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(VETH_GRACE).await;
                if let Some(h) = this.netlink().await
                    && let Ok(Some(now)) = network::link_index(&h, &veth).await
                    && now == index
                    && let Err(e) = network::delete_veth(&h, &veth).await
                {
                    tracing::warn!(error = %e, "deleting veth");
                }
            });
        }
        if let Err(e) = lock(&self.inner.ipam).release(uid) {
            tracing::warn!(error = %e, "releasing pod IP");
        }
        let _ = fs::remove_file(
            self.inner
                .config
                .data_dir
                .join("sandboxes")
                .join(format!("{uid}.json")),
        );
        let _ = &state.pod_dir;
    }

    async fn create_sandbox_inner(&self, pod: &corev1::Pod) -> Result<Sandbox, String> {
        let (_, _, uid) = pod_name(pod);
        if uid.is_empty() {
            return Err("pod has no metadata.uid".into());
        }
        let old = lock(&self.inner.sandboxes).remove(&uid);
        if let Some(old) = old {
            self.teardown(&uid, old, Fate::Removed).await;
        }
        let pod_dir = self.pod_dir_for(pod);
        fs::create_dir_all(&pod_dir).map_err(|e| format!("{}: {e}", pod_dir.display()))?;
        let wants_host = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let hostname = hostname_of(pod);
        let (fate_tx, fate_rx) = watch::channel(Fate::Alive);
        let mut warnings = Vec::new();
        if wants_host || !self.inner.caps.namespaces {
            if !wants_host {
                let why = if self.inner.caps.root {
                    "namespaces are disabled or unavailable"
                } else {
                    "the node does not run as root"
                };
                warnings.push(format!(
                    "pod uses the host network: {why}, so it gets no network, UTS or IPC namespace and no own IP"
                ));
                let policy = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.dns_policy.as_deref())
                    .unwrap_or("ClusterFirst");
                if policy == "ClusterFirst" {
                    warnings.push(format!(
                        "Service names will not resolve in this pod: dnsPolicy ClusterFirst needs the pod's own network namespace ({why}), so the pod keeps the host's resolver"
                    ));
                }
            }
            let ip = self.node_ip().await;
            lock(&self.inner.sandboxes).insert(
                uid,
                SandboxState {
                    pod_dir,
                    holder: None,
                    namespaces: None,
                    host_veth: None,
                    host_veth_index: None,
                    fate: fate_tx,
                },
            );
            return Ok(Sandbox {
                pod_ip: ip.or_else(|| Some("127.0.0.1".into())),
                host_network: true,
                warnings,
                lost: Box::pin(async { std::future::pending::<()>().await }),
            });
        }
        let ip = lock(&self.inner.ipam).allocate(&uid).map_err(|e| e.to_string())?;
        match self
            .create_netns_sandbox(pod, &uid, &pod_dir, &hostname, ip, fate_tx)
            .await
        {
            Ok(state) => {
                lock(&self.inner.sandboxes).insert(uid.clone(), state);
                let mut rx = fate_rx;
                Ok(Sandbox {
                    pod_ip: Some(ip.to_string()),
                    host_network: false,
                    warnings,
                    lost: Box::pin(async move {
                        loop {
                            let fate = *rx.borrow_and_update();
                            match fate {
                                Fate::Lost => return,
                                Fate::Removed => std::future::pending::<()>().await,
                                Fate::Alive => {}
                            }
                            if rx.changed().await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        }
                    }),
                })
            }
            Err(e) => {
                let _ = lock(&self.inner.ipam).release(&uid);
                Err(e)
            }
        }
    }

    async fn create_netns_sandbox(
        &self,
        pod: &corev1::Pod,
        uid: &str,
        pod_dir: &Path,
        hostname: &str,
        ip: Ipv4Addr,
        fate: watch::Sender<Fate>,
    ) -> Result<SandboxState, String> {
        let hosts = pod_dir.join("hosts");
        let resolv = pod_dir.join("resolv.conf");
        fs::write(&hosts, hosts_file(pod, hostname, &ip.to_string())).map_err(|e| format!("hosts: {e}"))?;
        fs::write(&resolv, resolv_file(pod, self.inner.config.cluster_dns))
            .map_err(|e| format!("resolv.conf: {e}"))?;
        let spec = sandbox::HolderSpec {
            hostname: hostname.to_string(),
            hosts: sandbox::cstring(&hosts).zip(sandbox::bind_target("/etc/hosts")),
            resolv: sandbox::cstring(&resolv).zip(sandbox::bind_target("/etc/resolv.conf")),
        };
        let holder = tokio::task::spawn_blocking(move || sandbox::spawn(&spec))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let pid = holder.pid;
        let open =
            |kind: &str| fs::File::open(format!("/proc/{pid}/ns/{kind}")).map(|f| Arc::new(OwnedFd::from(f)));
        let kill_holder = || {
            process::kill_pid(pid);
        };
        let namespaces = match (open("net"), open("uts"), open("ipc"), open("mnt")) {
            (Ok(net), Ok(uts), Ok(ipc), Ok(mnt)) => Namespaces { net, uts, ipc, mnt },
            _ => {
                kill_holder();
                return Err("cannot open the holder's namespaces".into());
            }
        };
        let host_veth = format!("pv{}", &short_hash(uid));
        let record = SandboxRecord {
            pod_uid: uid.to_string(),
            holder: Some(pid),
            host_veth: Some(host_veth.clone()),
        };
        let _ = fs::write(
            self.inner
                .config
                .data_dir
                .join("sandboxes")
                .join(format!("{uid}.json")),
            serde_json::to_vec(&record).unwrap_or_default(),
        );
        let pidfd = process::pidfd_open(pid).ok();
        // The holder's exit: reap it and report loss unless the sandbox was removed on purpose.
        let fate_watch = fate.clone();
        tokio::spawn(async move {
            process::wait_reap(pid, pidfd).await;
            fate_watch.send_if_modified(|f| {
                if *f == Fate::Alive {
                    *f = Fate::Lost;
                    true
                } else {
                    false
                }
            });
        });
        let net_result = match self.netlink().await {
            Some(h) => {
                let net = network::PodNet {
                    host_veth: &host_veth,
                    ip,
                    prefix: self.inner.cidr.prefix,
                    gateway: self.inner.cidr.gateway(),
                };
                let result = match self.bridge_index(&h).await {
                    Ok(bridge) => network::setup_pod(&h, bridge, namespaces.net.as_fd(), &net).await,
                    Err(e) => Err(e),
                };
                if result.is_err() {
                    *self.inner.bridge.lock().await = None;
                }
                result.map_err(|e| e.to_string())
            }
            None => Err("no netlink connection".into()),
        };
        let state = SandboxState {
            pod_dir: pod_dir.to_path_buf(),
            holder: Some(pid),
            namespaces: Some(namespaces),
            host_veth: Some(host_veth.clone()),
            host_veth_index: net_result.as_ref().ok().copied(),
            fate,
        };
        if let Err(e) = net_result {
            // Half set up: whatever was created goes now.
            if let Some(h) = self.netlink().await {
                let _ = network::delete_veth(&h, &host_veth).await;
            }
            self.teardown(uid, state, Fate::Removed).await;
            return Err(format!("pod network: {e}"));
        }
        Ok(state)
    }

    fn container_limits(pod: &corev1::Pod, c: &corev1::Container) -> Limits {
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        let get = |k: &str| limits.and_then(|l| l.get(k)).map(|q| q.0.clone());
        let ann = pod.metadata.annotations.as_ref();
        let pids = ann
            .and_then(|a| {
                a.get(&format!("{PIDS_LIMIT_CONTAINER_PREFIX}{}", c.name))
                    .or_else(|| a.get(PIDS_LIMIT_ANNOTATION))
            })
            .and_then(|v| v.trim().parse().ok());
        Limits {
            memory_bytes: get("memory").and_then(|q| podvisor_core::quantity::memory_bytes(&q)),
            cpu_millis: get("cpu").and_then(|q| podvisor_core::quantity::cpu_millis(&q)),
            pids,
        }
    }

    async fn start_inner(&self, launch: ContainerLaunch) -> Result<Started, String> {
        let ContainerLaunch {
            pod,
            pod_ip,
            container,
            restart_count,
            mounts,
        } = launch;
        // The container's mounts (only where it gets a mount namespace of its own), and how a
        // path inside it maps to the host before they are made.
        let mounts = if self.inner.caps.termination_message_path {
            mounts
        } else {
            Vec::new()
        };
        let view = |p: &Path| -> PathBuf {
            mounts
                .iter()
                .filter(|m| p.starts_with(&m.container_path))
                .max_by_key(|m| m.container_path.len())
                .map_or_else(
                    || p.to_path_buf(),
                    |m| {
                        let rest = p.strip_prefix(&m.container_path).unwrap_or(p);
                        if rest.as_os_str().is_empty() {
                            m.host_path.clone()
                        } else {
                            m.host_path.join(rest)
                        }
                    },
                )
        };
        let (_, _, uid) = pod_name(&pod);
        let hostname = if pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false) {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default()
        } else {
            hostname_of(&pod)
        };
        let source = env::FieldSource {
            pod: &pod,
            pod_ip: pod_ip.as_deref(),
            node_name: &self.inner.config.node_name,
        };
        let env = env::build(&container, &source, &hostname).map_err(|e| e.to_string())?;
        let argv = env::argv(&container, &env);
        let Some(program) = argv.first() else {
            return Err("no command given".into());
        };
        let cwd = PathBuf::from(
            container
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
        );
        if !view(&cwd).is_dir() {
            return Err(format!(
                "chdir to cwd ({:?}) set in config.json failed: no such file or directory",
                cwd.display().to_string()
            ));
        }
        let path_env = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or(env::DEFAULT_PATH, |(_, v)| v.as_str());
        let resolved = spawn::resolve(program, path_env, &cwd, &view)?;
        let sc = container.security_context.as_ref();
        let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
        let to_u32 = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
        let uid_run = to_u32(sc.and_then(|s| s.run_as_user).or(psc.and_then(|s| s.run_as_user)));
        let gid_run = to_u32(
            sc.and_then(|s| s.run_as_group)
                .or(psc.and_then(|s| s.run_as_group)),
        );

        // Files: log, termination message.
        let dir = self.pod_dir_for(&pod).join(&container.name);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        prune_old_instances(&dir, restart_count);
        let log_path = dir.join(format!("{restart_count}.log"));
        let log = LogFile::create(
            log_path.clone(),
            self.inner.config.log_max_bytes,
            self.inner.config.log_max_files,
        )
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log = Arc::new(Mutex::new(log));
        {
            let mut live = lock(&self.inner.live_logs);
            live.retain(|_, l| l.strong_count() > 0);
            live.insert(log_path.clone(), Arc::downgrade(&log));
        }
        // One file per container, emptied for each instance (a kept mount namespace has it
        // bound already).
        let term_host = dir.join("termination-log");
        termination_file(&term_host, uid_run, gid_run)
            .map_err(|e| format!("{}: {e}", term_host.display()))?;
        let term_path = container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        // Sandbox namespaces, and the holder whose mount table they start from.
        let (ns, holder) = lock(&self.inner.sandboxes).get(&uid).map_or((None, None), |s| {
            let ns = s
                .namespaces
                .as_ref()
                .map(|n| (n.net.clone(), n.uts.clone(), n.ipc.clone(), n.mnt.clone()));
            (ns, s.holder)
        });
        let key = (uid.clone(), container.name.clone());
        let mut kept_mnt: Option<Arc<OwnedFd>> = None;
        let mut origin = None;
        let mount_plan = if self.inner.caps.termination_message_path {
            let mut binds: Vec<mounts::BindSpec> = mounts
                .iter()
                .map(|m| mounts::BindSpec {
                    source: m.host_path.clone(),
                    target: m.container_path.clone(),
                    read_only: m.read_only,
                })
                .collect();
            // The termination-message file, unless a volume is mounted there.
            if Path::new(&term_path).is_absolute() && !binds.iter().any(|b| b.target == term_path) {
                binds.push(mounts::BindSpec {
                    source: term_host.clone(),
                    target: term_path.clone(),
                    read_only: false,
                });
            }
            origin = MountOrigin::of(&binds, ns.as_ref().map(|n| n.3.as_ref()));
            kept_mnt = lock(&self.inner.mount_namespaces)
                .get(&key)
                .filter(|k| origin.as_ref() == Some(&k.made_from))
                .map(|k| k.ns.clone());
            if kept_mnt.is_some() {
                None
            } else {
                let stage = self.inner.config.data_dir.join("rootfs");
                // The mounts of the namespace the container starts from: its sandbox's, or ours.
                let mountinfo = holder.map_or_else(
                    || "/proc/self/mountinfo".to_string(),
                    |pid| format!("/proc/{pid}/mountinfo"),
                );
                let mount_points = mounts::mount_points(&fs::read_to_string(mountinfo).unwrap_or_default());
                Some(mounts::MountPlan::prepare(
                    &binds,
                    self.inner.hidden_data_dir.as_deref(),
                    &stage,
                    &mount_points,
                )?)
            }
        } else {
            None
        };

        use std::os::fd::AsRawFd;
        let mut join = match &ns {
            Some((net, uts, ipc, mnt)) => spawn::JoinFds {
                net: Some(net.as_raw_fd()),
                uts: Some(uts.as_raw_fd()),
                ipc: Some(ipc.as_raw_fd()),
                mnt: Some(mnt.as_raw_fd()),
            },
            None => spawn::JoinFds::default(),
        };
        if let Some(kept) = &kept_mnt {
            // The predecessor's namespace, as it was made: joined, not copied.
            join.mnt = Some(kept.as_raw_fd());
        }

        // Cgroup.
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let cg_name = format!("{}-{restart_count}", container.name);
        let limits = Self::container_limits(&pod, &container);
        let (cgroup, missing) = self
            .inner
            .cgroups
            .create(&uid, &cg_name, limits)
            .map_err(|e| e.to_string())?;
        if !missing.is_empty() {
            tracing::warn!(container = %container.name, ?missing, "resource limits not enforced: controller unavailable");
        }
        let open_join = || -> Result<spawn::CgroupJoin, String> {
            let open = |p: &Path, write: bool| {
                fs::OpenOptions::new()
                    .read(!write)
                    .write(write)
                    .open(p)
                    .map(OwnedFd::from)
                    .map_err(|e| format!("{}: {e}", p.display()))
            };
            let (v2, v1) = cgroup.join_paths();
            let mut join = spawn::CgroupJoin::default();
            if let Some((dir, procs)) = v2 {
                join.v2_dir = Some(open(&dir, false)?);
                join.v2_procs = Some(open(&procs, true)?);
            }
            for tasks in v1 {
                join.v1_tasks.push(open(&tasks, true)?);
            }
            Ok(join)
        };
        let cgroups = match open_join() {
            Ok(join) => join,
            Err(e) => {
                cgroup.remove();
                return Err(e);
            }
        };
        let cwd_c = sandbox::cstring(&cwd).ok_or("working directory contains a NUL byte")?;
        let setup = spawn::ChildSetup {
            cgroups,
            join,
            mounts: mount_plan,
            cwd: cwd_c,
            uid: uid_run,
            gid: gid_run,
        };
        let (out_r, out_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        let (err_r, err_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        let spawned = {
            let mut owned = process::owned();
            let r = spawn::spawn(&resolved, &argv, &env, setup, out_w, err_w);
            if let Ok(s) = &r {
                owned.insert(s.pid);
            }
            r
        };
        let spawned = match spawned {
            Ok(x) => x,
            Err(e) => {
                cgroup.remove();
                return Err(match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        format!("exec: \"{program}\": executable file not found in $PATH")
                    }
                    std::io::ErrorKind::PermissionDenied => format!("exec: \"{program}\": permission denied"),
                    _ => format!("exec: \"{program}\": {e}"),
                });
            }
        };
        let pid = spawned.pid;
        let pidfd = spawned.pidfd.or_else(|| process::pidfd_open(pid).ok());

        // The container's own mount namespace (kept for its next instance), and its exec
        // context.
        let own_mnt = if !self.inner.caps.termination_message_path {
            None
        } else if kept_mnt.is_some() {
            kept_mnt.clone()
        } else {
            let opened = fs::File::open(format!("/proc/{pid}/ns/mnt"))
                .ok()
                .map(|f| Arc::new(OwnedFd::from(f)));
            if let (Some(made_from), Some(mnt)) = (origin, &opened) {
                let kept = KeptMountNs {
                    made_from,
                    ns: mnt.clone(),
                };
                lock(&self.inner.mount_namespaces).insert(key, kept);
            }
            opened
        };
        let mut namespaces = Vec::new();
        if let Some((net, uts, ipc, mnt)) = &ns {
            namespaces.push((net.clone(), CloneFlags::CLONE_NEWNET));
            namespaces.push((uts.clone(), CloneFlags::CLONE_NEWUTS));
            namespaces.push((ipc.clone(), CloneFlags::CLONE_NEWIPC));
            namespaces.push((own_mnt.unwrap_or_else(|| mnt.clone()), CloneFlags::CLONE_NEWNS));
        } else if let Some(mnt) = own_mnt {
            namespaces.push((mnt, CloneFlags::CLONE_NEWNS));
        }
        let exec_ctx = exec::ExecContext {
            namespaces,
            env,
            cwd,
            uid: uid_run,
            gid: gid_run,
        };

        let id = ContainerId(format!(
            "{}-{}-{restart_count}-{n}",
            short_hash(&uid),
            container.name
        ));
        let stop_signal = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.stop_signal.as_deref())
            .and_then(|s| {
                s.parse::<Signal>()
                    .ok()
                    .or_else(|| format!("SIG{s}").parse().ok())
            })
            .unwrap_or(Signal::SIGTERM);
        let (stop_tx, stop_rx) = watch::channel(None);
        let state = Arc::new(ContainerState {
            main_pid: pid,
            stop_signal,
            stop: stop_tx,
            exec_ctx: Mutex::new(Some(exec_ctx)),
            exec_tx: Mutex::new(None),
        });
        lock(&self.inner.containers).insert(id.clone(), state);

        let pumps = [
            pump_task(out_r, Stream::Stdout, log.clone()),
            pump_task(err_r, Stream::Stderr, log.clone()),
        ];
        let fallback = container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        let exit_id = id.clone();
        tokio::spawn(async move {
            let (status, killed) = supervise(pid, pidfd, stop_rx, &cgroup).await;
            kill_leftovers(pid, &cgroup, killed).await;
            for p in pumps {
                // Output of processes that escaped both group and cgroup is not waited for.
                let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
            }
            let status = if cgroup.oom_killed() {
                ExitStatus::OomKilled
            } else {
                status
            };
            let message = termination_message(&term_host, fallback, status, &log_path);
            // Forgotten before the exit is reported (no stop or exec may reach a pid that is
            // gone), but released after it, on the blocking pool: closing the container's
            // namespace fds can mean unmounting its whole mount namespace, which waits for RCU,
            // and the next instance has groups of its own (removing the pod removes what is left).
            let state = lock(&this.inner.containers).remove(&exit_id);
            let _ = tx.send(ExitReport { status, message });
            let released = tokio::task::spawn_blocking(move || {
                drop(state);
                cgroup.remove();
            });
            let _ = released.await;
        });
        let exit = Box::pin(async move {
            rx.await.unwrap_or(ExitReport {
                status: ExitStatus::Signaled(9),
                message: Some("the runtime shut down before the container ended".into()),
            })
        });
        Ok(Started { id, exit })
    }

    async fn exec_inner(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
        let err = |message: String| RuntimeError::Exec {
            id: id.clone(),
            message,
        };
        let state = lock(&self.inner.containers)
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound { id: id.clone() })?;
        let tx = {
            let mut slot = lock(&state.exec_tx);
            match &*slot {
                Some(tx) => tx.clone(),
                None => {
                    let ctx = lock(&state.exec_ctx)
                        .take()
                        .ok_or_else(|| err("exec context unavailable".into()))?;
                    let tx = exec::start_thread(ctx).map_err(|e| err(format!("exec thread: {e}")))?;
                    *slot = Some(tx.clone());
                    tx
                }
            }
        };
        let (reply, answer) = oneshot::channel();
        tx.send(exec::Request {
            argv: argv.to_vec(),
            reply,
        })
        .map_err(|_| err("exec thread gone".into()))?;
        let (pid, out) = answer
            .await
            .map_err(|_| err("exec thread gone".into()))?
            .map_err(err)?;
        let pidfd = process::pidfd_open(pid).ok();
        let reader = tokio::spawn(read_capped(out));
        let wait = process::wait_reap(pid, pidfd);
        tokio::pin!(wait);
        let (status, timed_out) = match timeout {
            Some(t) => match tokio::time::timeout(t, &mut wait).await {
                Ok(s) => (s, false),
                Err(_) => {
                    let _ = kill_tree(pid);
                    (wait.await, true)
                }
            },
            None => (wait.await, false),
        };
        // Like a container's end: nothing the command started outlives it.
        let left_processes = kill_tree(pid);
        let output = match tokio::time::timeout(Duration::from_secs(2), reader).await {
            Ok(Ok(o)) => o,
            _ => Vec::new(),
        };
        if left_processes {
            // They were reparented to the node: reap them now rather than at the next SIGCHLD.
            process::reap_orphans();
        }
        Ok(ExecOutput {
            status,
            output,
            timed_out,
        })
    }
}

fn pump_task(fd: OwnedFd, stream: Stream, log: Arc<Mutex<LogFile>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(pipe) => logs::pump(pipe, stream, log).await,
            Err(e) => tracing::warn!(error = %e, "cannot read container output"),
        }
    })
}

async fn read_capped(fd: OwnedFd) -> Vec<u8> {
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = EXEC_OUTPUT_LIMIT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    out
}

/// SIGKILLs a process group and every remaining member of it (by group or session), and says
/// whether there was anything to kill. When the group is already empty and the leader is gone,
/// `/proc` is not scanned (the common end of an exec probe).
fn kill_tree(leader: i32) -> bool {
    let group_gone = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(leader), Signal::SIGKILL)
        == Err(nix::errno::Errno::ESRCH);
    if group_gone && nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(leader))).is_err() {
        return false;
    }
    for p in process::group_members(leader) {
        process::kill_pid(p);
    }
    true
}

/// Waits for the main process, applying stop requests: the stop signal was sent by `stop`;
/// at the (possibly shortened) deadline everything of the container is SIGKILLed. Returns the
/// exit and the processes the cgroup held when they were killed (gone from it as soon as they
/// exit, so they are remembered for reaping).
async fn supervise(
    pid: i32,
    pidfd: Option<OwnedFd>,
    mut stop: watch::Receiver<Option<Instant>>,
    cgroup: &ContainerCgroup,
) -> (ExitStatus, Vec<i32>) {
    let wait = process::wait_reap(pid, pidfd);
    tokio::pin!(wait);
    let mut killed = false;
    let mut victims = Vec::new();
    loop {
        let deadline = if killed { None } else { *stop.borrow_and_update() };
        tokio::select! {
            status = &mut wait => return (status, victims),
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                victims = cgroup.pids();
                cgroup.kill_all();
                if cgroup.tracks() {
                    // Everything of the container is in its groups: no need to scan `/proc`.
                    process::signal_group(pid, Signal::SIGKILL);
                } else {
                    let _ = kill_tree(pid);
                }
                killed = true;
            }
            changed = stop.changed(), if !killed => {
                if changed.is_err() {
                    killed = true;
                }
            }
        }
    }
}

/// After the main process ended: kill what remains of its group and cgroup, as the end of a
/// PID namespace would, wait until it is gone and reap it.
async fn kill_leftovers(pid: i32, cgroup: &ContainerCgroup, killed: Vec<i32>) {
    // A container's cgroup holds every process it started (none can leave it without root),
    // so where there is one, `/proc` is not scanned for its process group and session.
    let tracked = cgroup.tracks();
    // Those killed at the deadline have left the cgroup once they exited; wait for them too.
    // (The main process is reaped already.)
    let mut killed = killed;
    killed.retain(|p| *p != pid);
    for p in &killed {
        let _ = tokio::time::timeout(Duration::from_secs(1), process::wait_gone(*p)).await;
    }
    let mut seen: Vec<i32> = killed;
    for _ in 0..20 {
        let mut pids = cgroup.pids();
        if !tracked {
            pids.extend(process::group_members(pid));
        }
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            break;
        }
        cgroup.kill_all();
        if !tracked {
            // Without a cgroup the process group is what finds them. (With one, the group is
            // not signalled: once empty, the main process's number may be reused.)
            process::signal_group(pid, Signal::SIGKILL);
        }
        for p in &pids {
            process::kill_pid(*p);
        }
        for p in &pids {
            let _ = tokio::time::timeout(Duration::from_secs(1), process::wait_gone(*p)).await;
        }
        seen.extend(&pids);
    }
    // Every one has exited, so each zombie now belongs to the node (re-parented when its own
    // parent died) and is reaped here, before the exit is reported; so are other orphans of the
    // container's group. (Anything else is left to the SIGCHLD-driven orphan reaper.)
    for p in seen {
        process::reap_if_child(p);
    }
    process::reap_group(pid);
}

/// Empties (or creates) the termination-message file of a new instance: mode 0600, owned by
/// the user the container runs as when that is not the node's (with the group its process
/// gets), so only the container's user can write it.
fn termination_file(path: &Path, uid: Option<u32>, gid: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    if let Some(uid) = uid
        && uid != nix::unistd::geteuid().as_raw()
    {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid.unwrap_or(0)))?;
    }
    Ok(())
}

fn termination_message(host: &Path, fallback: bool, status: ExitStatus, log: &Path) -> Option<String> {
    use std::io::Read;
    let mut content = Vec::new();
    if let Ok(f) = fs::File::open(host) {
        let _ = f.take(TERMINATION_MESSAGE_LIMIT).read_to_end(&mut content);
    }
    if !content.is_empty() {
        return Some(String::from_utf8_lossy(&content).into_owned());
    }
    if fallback && status.code() != 0 {
        let tail = logs::tail(log, 80, 2048);
        if !tail.is_empty() {
            return Some(tail);
        }
    }
    None
}

/// Keeps the logs of this instance's predecessor (for `--previous`), removes older ones.
fn prune_old_instances(dir: &Path, restart: i32) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name.split('.').next().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if n < restart - 1 {
            let _ = if e.path().is_dir() {
                fs::remove_dir(e.path())
            } else {
                fs::remove_file(e.path())
            };
        }
    }
}

fn short_hash(s: &str) -> String {
    // FNV-1a, 40 bits: short enough for interface names (15 bytes).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:010x}", h & 0xff_ffff_ffff)
}

fn hosts_file(pod: &corev1::Pod, hostname: &str, ip: &str) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file (podvisor).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    let spec = pod.spec.as_ref();
    let fqdn = match (
        spec.and_then(|s| s.subdomain.as_deref()),
        pod.metadata.namespace.as_deref(),
    ) {
        (Some(sub), ns) => format!("{hostname}.{sub}.{}.svc.cluster.local\t", ns.unwrap_or("default")),
        _ => String::new(),
    };
    s.push_str(&format!("{ip}\t{fqdn}{hostname}\n"));
    for alias in spec.and_then(|s| s.host_aliases.as_ref()).into_iter().flatten() {
        s.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{}\n",
            alias.ip,
            alias.hostnames.clone().unwrap_or_default().join("\t")
        ));
    }
    s
}

/// The pod's resolv.conf: the cluster DNS with the cluster search domains for `ClusterFirst`
/// (and `ClusterFirstWithHostNet`) when there is one, else the host's; then `dnsConfig`.
fn resolv_file(pod: &corev1::Pod, cluster_dns: Option<Ipv4Addr>) -> String {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let mut servers = Vec::new();
    let mut searches = Vec::new();
    let mut options = Vec::new();
    if let (Some(dns), "ClusterFirst" | "ClusterFirstWithHostNet") = (cluster_dns, policy) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        servers.push(dns.to_string());
        searches.extend([
            format!("{ns}.svc.cluster.local"),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ]);
        options.push("ndots:5".to_string());
    } else if policy != "None" {
        for line in fs::read_to_string("/etc/resolv.conf").unwrap_or_default().lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => servers.extend(words.map(str::to_string)),
                Some("search") => searches.extend(words.map(str::to_string)),
                Some("options") => options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
    }
    if let Some(cfg) = spec.and_then(|s| s.dns_config.as_ref()) {
        servers.extend(cfg.nameservers.clone().unwrap_or_default());
        searches.extend(cfg.searches.clone().unwrap_or_default());
        for o in cfg.options.iter().flatten() {
            if let Some(name) = &o.name {
                options.push(match &o.value {
                    Some(v) => format!("{name}:{v}"),
                    None => name.clone(),
                });
            }
        }
    }
    let mut s = String::new();
    if !searches.is_empty() {
        s.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for ns in servers {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    if !options.is_empty() {
        s.push_str(&format!("options {}\n", options.join(" ")));
    }
    s
}

#[async_trait::async_trait]
impl ContainerRuntime for ProcessRuntime {
    async fn create_sandbox(&self, config: SandboxConfig) -> Result<Sandbox, RuntimeError> {
        let (ns, name, _) = pod_name(&config.pod);
        self.create_sandbox_inner(&config.pod)
            .await
            .map_err(|message| RuntimeError::Sandbox {
                pod: format!("{ns}/{name}"),
                message,
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
        let this = self.clone();
        let uid = pod_uid.to_string();
        let _ = tokio::task::spawn_blocking(move || this.inner.cgroups.remove_pod(&uid)).await;
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

    async fn remove_pods_except(&self, keep: &[String]) -> Result<usize, RuntimeError> {
        let pods = self.inner.config.data_dir.join("pods");
        let keep: std::collections::HashSet<String> = keep.iter().cloned().collect();
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
            .map_err(|message| RuntimeError::Start { name, message })
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
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(state.main_pid), state.stop_signal);
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
