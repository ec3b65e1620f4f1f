//! The pod sandbox holder: a child of the node that owns the pod's network, UTS, IPC and mount
//! namespaces (the pause container's role).
//!
//! Design: the node clones it (in `crate::sys`) sharing the node's memory until it executes the
//! pause program (`CLONE_VM | CLONE_VFORK`, as posix_spawn does: a fork copied the node's page
//! tables, a tenth of the node's CPU in a burst of 1,000 pods), or forks it where that is not
//! available or the program cannot be executed; the child (single-threaded, so it only makes raw
//! syscalls on data prepared before the clone, its signal handlers reset) closes every inherited
//! fd, starts its own session, names itself `podvisor-pause`, unshares
//! `CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNS`, makes its mounts private,
//! bind-mounts the pod's `hosts` and `resolv.conf` over `/etc`, sets the hostname, and then executes the monitor's program
//! (`sys::monitor`, from its memfd) in its `pause` mode, which reports readiness on the pipe and
//! sleeps in `pause()` forever: executed, the holder shares no page with the node, where a forked
//! process would keep a copy of every page the node writes afterwards (~2 MB each beside a busy
//! node). Without the monitor's program the forked child reports and sleeps itself. The namespaces
//! live as long as the holder (and anything joined to them); killing it tears the sandbox down, and
//! its pidfd turning readable is how loss is noticed. This was chosen over named netns files
//! (`ip netns` style bind mounts) because it needs no bind-mount bookkeeping in `/run` and a crash of
//! the node cannot leave mounts behind, only a process that the next start adopts or kills.

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::Path;

use nix::sched::{CloneFlags, unshare};

/// Errors while creating a holder.
#[derive(Debug, thiserror::Error)]
pub enum HolderError {
    /// A system call in the node failed.
    #[error("{step}: {source}")]
    Node {
        /// What was being done.
        step: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The holder failed while setting itself up.
    #[error("sandbox holder failed at {step}: {errno}")]
    Holder {
        /// The step that failed in the holder.
        step: &'static str,
        /// The errno it reported.
        errno: nix::errno::Errno,
    },
}

pub(crate) const STEPS: [&str; 9] = [
    "ready",
    "setsid",
    "unshare namespaces",
    "make mounts private",
    "bind /etc/hosts",
    "bind /etc/resolv.conf",
    "sethostname",
    "open /dev/null",
    "exec the pause program",
];

/// What the holder sets up.
pub(crate) struct HolderSpec {
    pub(crate) hostname: String,
    /// (source file, target path) bind mounts.
    pub(crate) hosts: Option<(CString, CString)>,
    pub(crate) resolv: Option<(CString, CString)>,
    /// The monitor's executable (a descriptor of [`crate::sys::MonitorProgram`]), which the
    /// holder executes in its `pause` mode once set up, so it shares no memory with the node;
    /// without one the holder is forked and waits as it is.
    pub(crate) program: Option<i32>,
}

/// A holder that is ready: its pid and pidfd.
pub(crate) struct Holder {
    pub(crate) pid: i32,
}

/// Where a bind mount over `target` must really go (`/etc/resolv.conf` is often a symlink).
pub(crate) fn bind_target(target: &str) -> Option<CString> {
    let real = fs::canonicalize(target).ok()?;
    if !real.is_file() {
        return None;
    }
    CString::new(real.into_os_string().into_encoded_bytes()).ok()
}

pub(crate) fn cstring(p: &Path) -> Option<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).ok()
}

pub(crate) use crate::sys::spawn_holder as spawn;

/// Whether `pid` is a sandbox holder (by its process name), for stale cleanup.
pub(crate) fn is_holder(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "podvisor-pause")
}

/// Checks that namespaces can be created here (in a throwaway thread).
pub(crate) fn namespaces_available() -> bool {
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC).is_ok()
    })
    .join()
    .unwrap_or(false)
}
