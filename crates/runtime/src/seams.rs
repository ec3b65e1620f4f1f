//! The seams between the runtime's orchestration and the machine, so the orchestration (start,
//! stop with grace then SIGKILL, sandbox creation and teardown, their failure paths) is
//! unit-tested without root: cgroups ([`CgroupOps`], [`ContainerGroup`]), processes
//! ([`ProcessOps`]: spawning, signals, exits, the sandbox holder) and netlink ([`NetOps`]).
//! The real implementations here are what [`ProcessRuntime::new`](crate::ProcessRuntime::new)
//! uses; the recording fakes are in `runtime/fakes.rs` (tests only).

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use nix::sys::signal::Signal;
use podvisor_core::ExitStatus;

use crate::cgroup::{CgroupError, Cgroups, ContainerCgroup, Limits};
use crate::error::{StartError, file_error};
use crate::network::{self, NetworkError, PodNet};
use crate::process;
use crate::sandbox::{self, Holder, HolderError, HolderSpec};
use crate::spawn::{self, CgroupJoin, MainProcess, MonitorLaunch, Monitored, Spawned};

/// A pod sandbox's namespaces (fds of the holder's `/proc/<pid>/ns/*`).
#[derive(Clone)]
pub(crate) struct Namespaces {
    pub(crate) net: Arc<OwnedFd>,
    pub(crate) uts: Arc<OwnedFd>,
    pub(crate) ipc: Arc<OwnedFd>,
    pub(crate) mnt: Arc<OwnedFd>,
}

/// The cgroup hierarchy under the runtime's parent.
pub(crate) trait CgroupOps: Send + Sync {
    /// Creates a container instance's groups with `limits`; also returns the controllers a
    /// limit was asked of that are not available.
    fn create(
        &self,
        pod_uid: &str,
        name: &str,
        limits: Limits,
    ) -> Result<(Box<dyn ContainerGroup>, Vec<&'static str>), CgroupError>;
    /// Removes a pod's groups (killing what is left in them); resolves once they are gone.
    fn remove_pod(&self, pod_uid: &str) -> BoxFuture<'static, ()>;
    /// Kills everything under the parent and removes the groups.
    fn cleanup_all(&self);
    /// [`cleanup_all`](Self::cleanup_all) for every pod but those in `keep`.
    fn remove_pods_except(&self, keep: &[String]);
    /// Removes the parent directories themselves.
    fn remove_bases(&self);
}

/// One container instance's groups.
pub(crate) trait ContainerGroup: Send + Sync {
    /// Opens what a new process needs to be created in (or join) the groups.
    fn open_join(&self) -> Result<CgroupJoin, StartError>;
    /// Whether the groups exist, and so hold every process of the container.
    fn tracks(&self) -> bool;
    /// The pids in the groups.
    fn pids(&self) -> Vec<i32>;
    /// SIGKILLs everything in the groups.
    fn kill_all(&self);
    /// How many processes of the groups the OOM killer has killed since they were made (a
    /// container's groups serve its instances one after the other: each compares the count
    /// at its end with the one at its start).
    fn oom_kills(&self) -> u64;
    /// Cumulative CPU time (ns) and working set (bytes), each where the groups have it.
    fn usage(&self) -> (Option<u64>, Option<u64>);
    /// Removes the groups (killing what is left in them) in the background; returns at once.
    fn remove(&self);
}

impl CgroupOps for Cgroups {
    fn create(
        &self,
        pod_uid: &str,
        name: &str,
        limits: Limits,
    ) -> Result<(Box<dyn ContainerGroup>, Vec<&'static str>), CgroupError> {
        let (group, missing) = Cgroups::create(self, pod_uid, name, limits)?;
        Ok((Box::new(group), missing))
    }
    fn remove_pod(&self, pod_uid: &str) -> BoxFuture<'static, ()> {
        let removed = Cgroups::remove_pod(self, pod_uid);
        Box::pin(async move {
            let _ = removed.await;
        })
    }
    fn remove_pods_except(&self, keep: &[String]) {
        Cgroups::remove_pods_except(self, keep);
    }
    fn cleanup_all(&self) {
        Cgroups::cleanup_all(self);
    }
    fn remove_bases(&self) {
        Cgroups::remove_bases(self);
    }
}

impl ContainerGroup for ContainerCgroup {
    fn open_join(&self) -> Result<CgroupJoin, StartError> {
        let open = |p: &Path, write: bool| {
            fs::OpenOptions::new()
                .read(!write)
                .write(write)
                .open(p)
                .map(OwnedFd::from)
                .map_err(file_error(p))
        };
        let (v2, v1) = self.join_paths();
        let mut join = CgroupJoin::default();
        if let Some((dir, _)) = v2 {
            // Its `cgroup.procs` only where the child cannot be cloned into it
            // (`sys::clone::spawn` opens it then).
            join.v2_dir = Some(open(&dir, false)?);
        }
        for tasks in v1 {
            join.v1_tasks.push(open(&tasks, true)?);
        }
        Ok(join)
    }
    fn tracks(&self) -> bool {
        ContainerCgroup::tracks(self)
    }
    fn pids(&self) -> Vec<i32> {
        ContainerCgroup::pids(self)
    }
    fn kill_all(&self) {
        ContainerCgroup::kill_all(self);
    }
    fn oom_kills(&self) -> u64 {
        ContainerCgroup::oom_kills(self)
    }
    fn usage(&self) -> (Option<u64>, Option<u64>) {
        ContainerCgroup::usage(self)
    }
    fn remove(&self) {
        ContainerCgroup::remove(self);
    }
}

/// Processes: creating them, signalling them, waiting for and reaping them.
pub(crate) trait ProcessOps: Send + Sync {
    /// Creates a container's main process (see [`spawn::ChildSetup`]); the runtime owns it
    /// (for reaping) from its creation.
    fn spawn(&self, main: MainProcess<'_>) -> io::Result<Spawned>;
    /// Creates a container's main process under its monitor (issue 18), which is its parent;
    /// `Ok(None)` where monitors are not available (the caller then uses `spawn`).
    fn spawn_monitored(
        &self,
        main: &MainProcess<'_>,
        monitor: MonitorLaunch<'_>,
    ) -> io::Result<Option<Monitored>> {
        let _ = (main, monitor);
        Ok(None)
    }
    /// A pidfd for `pid`, where the kernel has them.
    fn pidfd(&self, pid: i32) -> Option<OwnedFd>;
    /// Waits until `pid` (one of ours) exits, reaps it and returns its status.
    fn wait_reap(&self, pid: i32, pidfd: Option<OwnedFd>) -> BoxFuture<'static, ExitStatus>;
    /// Waits (without reaping) until `pid` has exited.
    fn wait_gone(&self, pid: i32) -> BoxFuture<'static, bool>;
    /// Sends `signal` to one process.
    fn signal(&self, pid: i32, signal: Signal);
    /// Sends `signal` to a process group.
    fn signal_group(&self, pgid: i32, signal: Signal);
    /// SIGKILLs group `leader` and every remaining member of its group or session; whether
    /// there was anything to kill.
    fn kill_tree(&self, leader: i32) -> bool;
    /// The processes of group or session `leader`.
    fn group_members(&self, leader: i32) -> Vec<i32>;
    /// Reaps `pid` if it is an unowned zombie child.
    fn reap_if_child(&self, pid: i32);
    /// Reaps the zombie children of process group `pgid`.
    fn reap_group(&self, pgid: i32);
    /// Creates a sandbox holder (blocking).
    fn spawn_holder(&self, spec: &HolderSpec) -> Result<Holder, HolderError>;
    /// Opens the namespaces of process `pid`.
    fn namespaces_of(&self, pid: i32) -> io::Result<Namespaces>;
    /// Whether `pid` is a sandbox holder (for stale cleanup).
    fn is_holder(&self, pid: i32) -> bool;
}

/// The machine's processes.
pub(crate) struct RealProcesses;

impl ProcessOps for RealProcesses {
    fn spawn(&self, main: MainProcess<'_>) -> io::Result<Spawned> {
        let mut owned = process::owned();
        let spawned = spawn::spawn(main)?;
        owned.insert(spawned.pid);
        Ok(spawned)
    }
    fn spawn_monitored(
        &self,
        main: &MainProcess<'_>,
        monitor: MonitorLaunch<'_>,
    ) -> io::Result<Option<Monitored>> {
        crate::sys::spawn_monitored(main, monitor)
    }
    fn pidfd(&self, pid: i32) -> Option<OwnedFd> {
        process::pidfd_open(pid).ok()
    }
    fn wait_reap(&self, pid: i32, pidfd: Option<OwnedFd>) -> BoxFuture<'static, ExitStatus> {
        Box::pin(process::wait_reap(pid, pidfd))
    }
    fn wait_gone(&self, pid: i32) -> BoxFuture<'static, bool> {
        Box::pin(process::wait_gone(pid))
    }
    fn signal(&self, pid: i32, signal: Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
    fn signal_group(&self, pgid: i32, signal: Signal) {
        process::signal_group(pgid, signal);
    }
    fn kill_tree(&self, leader: i32) -> bool {
        process::kill_tree(leader)
    }
    fn group_members(&self, leader: i32) -> Vec<i32> {
        process::group_members(leader)
    }
    fn reap_if_child(&self, pid: i32) {
        process::reap_if_child(pid);
    }
    fn reap_group(&self, pgid: i32) {
        process::reap_group(pgid);
    }
    fn spawn_holder(&self, spec: &HolderSpec) -> Result<Holder, HolderError> {
        sandbox::spawn(spec)
    }
    fn namespaces_of(&self, pid: i32) -> io::Result<Namespaces> {
        let open = |kind: &str| {
            fs::File::open(format!("/proc/{pid}/ns/{kind}"))
                .map(|f| Arc::new(crate::sys::park(OwnedFd::from(f))))
        };
        Ok(Namespaces {
            net: open("net")?,
            uts: open("uts")?,
            ipc: open("ipc")?,
            mnt: open("mnt")?,
        })
    }
    fn is_holder(&self, pid: i32) -> bool {
        sandbox::is_holder(pid)
    }
}

/// The node's network links, over netlink.
#[async_trait::async_trait]
pub(crate) trait NetOps: Send + Sync {
    /// The node bridge's index, created with its gateway address when missing.
    async fn ensure_bridge(&self, name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<u32, NetworkError>;
    /// The pod's veth pair, address and routes; returns the host end's index.
    async fn setup_pod(&self, bridge: u32, netns: &OwnedFd, net: &PodNet<'_>) -> Result<u32, NetworkError>;
    /// Deletes a veth (by its host end).
    async fn delete_veth(&self, name: &str) -> Result<(), NetworkError>;
    /// The index of a link, if it exists.
    async fn link_index(&self, name: &str) -> Result<Option<u32>, NetworkError>;
    /// The node's first global IPv4 address.
    async fn node_ipv4(&self) -> Option<Ipv4Addr>;
}

/// Netlink in the node's network namespace, connected at first use.
#[derive(Default)]
pub(crate) struct Netlink {
    handle: tokio::sync::OnceCell<Option<rtnetlink::Handle>>,
}

impl Netlink {
    async fn handle(&self) -> Result<rtnetlink::Handle, NetworkError> {
        self.handle
            .get_or_init(|| async {
                network::connect()
                    .map_err(|e| tracing::warn!(error = %e, "no netlink connection"))
                    .ok()
            })
            .await
            .clone()
            .ok_or(NetworkError::NoConnection)
    }
}

#[async_trait::async_trait]
impl NetOps for Netlink {
    async fn ensure_bridge(&self, name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<u32, NetworkError> {
        network::ensure_bridge(&self.handle().await?, name, gateway, prefix).await
    }
    async fn setup_pod(&self, bridge: u32, netns: &OwnedFd, net: &PodNet<'_>) -> Result<u32, NetworkError> {
        network::setup_pod(&self.handle().await?, bridge, netns.as_fd(), net).await
    }
    async fn delete_veth(&self, name: &str) -> Result<(), NetworkError> {
        network::delete_veth(&self.handle().await?, name).await
    }
    async fn link_index(&self, name: &str) -> Result<Option<u32>, NetworkError> {
        network::link_index(&self.handle().await?, name).await
    }
    async fn node_ipv4(&self) -> Option<Ipv4Addr> {
        network::node_ipv4(&self.handle().await.ok()?).await
    }
}
