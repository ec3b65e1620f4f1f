//! Recording fakes of the seams ([`crate::seams`]): one [`Machine`] plays the cgroups, the
//! processes and netlink, writes down every call in order (`log`) and can be told to fail a
//! step; its processes exit when a test says so or when a signal they do not ignore arrives.

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use nix::sys::signal::Signal;
use podvisor_core::ExitStatus;
use tokio::sync::watch;

use super::{Capabilities, Parts, ProcessRuntime, RuntimeConfig, lock};
use crate::cgroup::{CgroupError, CgroupVersion, Limits};
use crate::error::StartError;
use crate::network::{NetworkError, PodNet};
use crate::sandbox::{Holder, HolderError, HolderSpec};
use crate::seams::{CgroupOps, ContainerGroup, Namespaces, NetOps, ProcessOps};
use crate::spawn::{CgroupJoin, MainProcess, Spawned};

/// What to fail.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Failures {
    /// Creating (writing the limits of) a container's cgroup.
    pub(super) cgroup_write: bool,
    /// Spawning a container's process, with this error.
    pub(super) spawn: Option<io::ErrorKind>,
    /// The sandbox holder, with this errno.
    pub(super) holder: Option<nix::errno::Errno>,
    /// Setting up a pod's network.
    pub(super) pod_network: bool,
}

struct Process {
    exit: watch::Sender<Option<ExitStatus>>,
    /// Signals it ends by (SIGKILL always).
    ends_on: Vec<Signal>,
    group: Option<String>,
}

#[derive(Default)]
struct State {
    log: Vec<String>,
    processes: HashMap<i32, Process>,
    next_pid: i32,
    /// The cgroup created last (the next spawn's).
    group: Option<String>,
    /// OOM kills counted in every group (a fake group's count only grows).
    oom_kills: u64,
    ignore_term: bool,
    fail: Failures,
}

/// The fake machine.
#[derive(Clone, Default)]
pub(super) struct Machine {
    state: Arc<Mutex<State>>,
}

impl Machine {
    fn record(&self, entry: String) {
        lock(&self.state).log.push(entry);
    }

    /// Every call so far, in order.
    pub(super) fn log(&self) -> Vec<String> {
        lock(&self.state).log.clone()
    }

    pub(super) fn fail(&self, failures: Failures) {
        lock(&self.state).fail = failures;
    }

    /// Containers spawned from now on ignore SIGTERM (they end by SIGKILL only).
    pub(super) fn ignore_sigterm(&self) {
        lock(&self.state).ignore_term = true;
    }

    /// Counts one more OOM kill in the containers' cgroups.
    pub(super) fn oom(&self) {
        lock(&self.state).oom_kills += 1;
    }

    /// The last process spawned (container or holder).
    pub(super) fn last_pid(&self) -> i32 {
        lock(&self.state).next_pid + 1000 - 1
    }

    /// Ends process `pid` with `status`.
    pub(super) fn exit(&self, pid: i32, status: ExitStatus) {
        if let Some(p) = lock(&self.state).processes.get(&pid) {
            p.exit
                .send_if_modified(|s| s.is_none() && s.replace(status).is_none());
        }
    }

    fn new_process(&self, ends_on: Vec<Signal>) -> i32 {
        let mut st = lock(&self.state);
        let pid = 1000 + st.next_pid;
        st.next_pid += 1;
        let group = st.group.take();
        st.processes.insert(
            pid,
            Process {
                exit: watch::channel(None).0,
                ends_on,
                group,
            },
        );
        pid
    }

    fn deliver(&self, pid: i32, signal: Signal) {
        let ends = lock(&self.state)
            .processes
            .get(&pid)
            .is_some_and(|p| signal == Signal::SIGKILL || p.ends_on.contains(&signal));
        if ends {
            self.exit(pid, ExitStatus::Signaled(signal as i32));
        }
    }

    fn running_in(&self, group: &str) -> Vec<i32> {
        let st = lock(&self.state);
        let mut pids: Vec<i32> = st
            .processes
            .iter()
            .filter(|(_, p)| p.group.as_deref() == Some(group) && p.exit.borrow().is_none())
            .map(|(pid, _)| *pid)
            .collect();
        pids.sort_unstable();
        pids
    }

    /// A runtime on this machine (no root, cgroup v2, with or without pod namespaces).
    pub(super) fn runtime(&self, data_dir: &std::path::Path, namespaces: bool) -> ProcessRuntime {
        let config = RuntimeConfig {
            data_dir: data_dir.to_path_buf(),
            cleanup_on_start: false,
            ..RuntimeConfig::default()
        };
        let caps = Capabilities {
            root: false,
            namespaces,
            cgroup: CgroupVersion::V2,
            cgroup_controllers: vec!["memory".into(), "cpu".into(), "pids".into()],
            cgroup_kill: true,
            subreaper: false,
            pidfd: false,
            termination_message_path: false,
        };
        let parts = Parts {
            monitor: None,
            cgroups: Box::new(self.clone()),
            procs: Arc::new(self.clone()),
            net: Box::new(self.clone()),
        };
        ProcessRuntime::from_parts(config, caps, parts).unwrap_or_else(|e| panic!("{e}"))
    }
}

struct Group {
    machine: Machine,
    name: String,
}

impl CgroupOps for Machine {
    fn create(
        &self,
        pod_uid: &str,
        name: &str,
        limits: Limits,
    ) -> Result<(Box<dyn ContainerGroup>, Vec<&'static str>), CgroupError> {
        if lock(&self.state).fail.cgroup_write {
            return Err(CgroupError::Io {
                path: format!("/sys/fs/cgroup/podvisor/{pod_uid}/{name}/memory.max").into(),
                source: io::Error::from_raw_os_error(libc::EBUSY),
            });
        }
        self.record(format!("cgroup create {pod_uid}/{name} {limits:?}"));
        lock(&self.state).group = Some(name.to_string());
        let group = Group {
            machine: self.clone(),
            name: name.to_string(),
        };
        Ok((Box::new(group), Vec::new()))
    }
    fn remove_pod(&self, pod_uid: &str) -> BoxFuture<'static, ()> {
        self.record(format!("cgroup remove pod {pod_uid}"));
        Box::pin(std::future::ready(()))
    }
    fn cleanup_all(&self) {
        self.record("cgroup cleanup".into());
    }
    fn remove_pods_except(&self, keep: &[String]) {
        self.record(format!("cgroup cleanup except {keep:?}"));
    }
    fn remove_bases(&self) {
        self.record("cgroup remove bases".into());
    }
}

impl ContainerGroup for Group {
    fn open_join(&self) -> Result<CgroupJoin, StartError> {
        Ok(CgroupJoin::default())
    }
    fn tracks(&self) -> bool {
        true
    }
    fn pids(&self) -> Vec<i32> {
        self.machine.running_in(&self.name)
    }
    fn kill_all(&self) {
        self.machine.record(format!("cgroup kill {}", self.name));
        for pid in self.machine.running_in(&self.name) {
            self.machine.deliver(pid, Signal::SIGKILL);
        }
    }
    fn oom_kills(&self) -> u64 {
        lock(&self.machine.state).oom_kills
    }
    fn usage(&self) -> (Option<u64>, Option<u64>) {
        (None, None)
    }
    fn remove(&self) {
        self.machine.record(format!("cgroup remove {}", self.name));
    }
}

impl ProcessOps for Machine {
    fn spawn(&self, main: MainProcess<'_>) -> io::Result<Spawned> {
        let failure = lock(&self.state).fail.spawn;
        if let Some(kind) = failure {
            lock(&self.state).group = None;
            return Err(io::Error::from(kind));
        }
        let ends_on = if lock(&self.state).ignore_term {
            Vec::new()
        } else {
            vec![Signal::SIGTERM]
        };
        let pid = self.new_process(ends_on);
        self.record(format!(
            "spawn {pid} {} argv={:?} cwd={:?} uid={:?}",
            main.program.display(),
            main.argv,
            main.setup.cwd,
            main.setup.uid
        ));
        // The write ends of its output pipes close with `main`: the output ends at once.
        Ok(Spawned { pid, pidfd: None })
    }
    fn pidfd(&self, _pid: i32) -> Option<OwnedFd> {
        None
    }
    fn wait_reap(&self, pid: i32, _pidfd: Option<OwnedFd>) -> BoxFuture<'static, ExitStatus> {
        let rx = lock(&self.state).processes.get(&pid).map(|p| p.exit.subscribe());
        Box::pin(async move {
            let Some(mut rx) = rx else {
                return ExitStatus::Exited(-1);
            };
            match rx.wait_for(Option::is_some).await {
                Ok(status) => status.unwrap_or(ExitStatus::Exited(-1)),
                Err(_) => ExitStatus::Exited(-1),
            }
        })
    }
    fn wait_gone(&self, _pid: i32) -> BoxFuture<'static, bool> {
        Box::pin(async { true })
    }
    fn signal(&self, pid: i32, signal: Signal) {
        self.record(format!("signal {pid} {signal}"));
        self.deliver(pid, signal);
    }
    fn signal_group(&self, pgid: i32, signal: Signal) {
        self.record(format!("signal group {pgid} {signal}"));
        self.deliver(pgid, signal);
    }
    fn kill_tree(&self, leader: i32) -> bool {
        self.record(format!("kill tree {leader}"));
        self.deliver(leader, Signal::SIGKILL);
        true
    }
    fn group_members(&self, _leader: i32) -> Vec<i32> {
        Vec::new()
    }
    fn reap_if_child(&self, _pid: i32) {}
    fn reap_group(&self, _pgid: i32) {}
    fn spawn_holder(&self, spec: &HolderSpec) -> Result<Holder, HolderError> {
        if let Some(errno) = lock(&self.state).fail.holder {
            return Err(HolderError::Holder {
                step: "unshare namespaces",
                errno,
            });
        }
        let pid = self.new_process(Vec::new());
        self.record(format!("holder {pid} {}", spec.hostname));
        Ok(Holder { pid })
    }
    fn namespaces_of(&self, _pid: i32) -> io::Result<Namespaces> {
        let open = || std::fs::File::open("/dev/null").map(|f| Arc::new(OwnedFd::from(f)));
        Ok(Namespaces {
            net: open()?,
            uts: open()?,
            ipc: open()?,
            mnt: open()?,
        })
    }
    fn is_holder(&self, _pid: i32) -> bool {
        false
    }
}

#[async_trait::async_trait]
impl NetOps for Machine {
    async fn ensure_bridge(&self, name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<u32, NetworkError> {
        self.record(format!("bridge {name} {gateway}/{prefix}"));
        Ok(7)
    }
    async fn setup_pod(&self, bridge: u32, _netns: &OwnedFd, net: &PodNet<'_>) -> Result<u32, NetworkError> {
        if lock(&self.state).fail.pod_network {
            return Err(NetworkError::NoConnection);
        }
        self.record(format!(
            "pod network {} {}/{} on {bridge}",
            net.host_veth, net.ip, net.prefix
        ));
        Ok(9)
    }
    async fn delete_veth(&self, name: &str) -> Result<(), NetworkError> {
        self.record(format!("delete veth {name}"));
        Ok(())
    }
    async fn link_index(&self, _name: &str) -> Result<Option<u32>, NetworkError> {
        Ok(None)
    }
    async fn node_ipv4(&self) -> Option<Ipv4Addr> {
        Some(Ipv4Addr::new(192, 0, 2, 1))
    }
}
