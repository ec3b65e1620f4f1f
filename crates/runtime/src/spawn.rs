//! Starting a container's main process (and an interactive exec's): what the child does between
//! its creation (with `clone3` inside its cgroup, in [`crate::sys`]) and exec: its session (and
//! controlling terminal, with `tty`), it joins the sandbox, a private
//! mount namespace with the container's mounts ([`crate::mounts`]), the working directory and
//! the user; and resolving the executable like the kubelet's runtime reports it.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sched::{CloneFlags, setns, unshare};

use crate::error::ResolveError;
use crate::mounts::MountPlan;

/// Finds the executable for `program` like runc: a name with a `/` is used as is (relative to
/// `cwd`), anything else is searched in `path_env`. The error texts match the kubelet's.
///
/// `view` maps a path in the container to where it is seen from here (through the container's
/// mounts, for a process that has not entered them yet).
pub(crate) fn resolve(
    program: &str,
    path_env: &str,
    cwd: &Path,
    view: &dyn Fn(&Path) -> PathBuf,
) -> Result<PathBuf, ResolveError> {
    let executable =
        |p: &Path| fs::metadata(view(p)).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.is_empty() {
        return Err(ResolveError::NotInPath {
            program: String::new(),
        });
    }
    if program.contains('/') {
        let p = if Path::new(program).is_absolute() {
            PathBuf::from(program)
        } else {
            cwd.join(program)
        };
        return match executable(&p) {
            Ok(true) => Ok(p),
            Ok(false) => Err(ResolveError::PermissionDenied {
                program: program.into(),
            }),
            Err(_) => Err(ResolveError::NoSuchFile {
                program: program.into(),
            }),
        };
    }
    for dir in path_env.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(program);
        if matches!(executable(&p), Ok(true)) {
            return Ok(if p.is_absolute() { p } else { cwd.join(p) });
        }
    }
    Err(ResolveError::NotInPath {
        program: program.into(),
    })
}

/// Sandbox namespaces to join (held open until `spawn` returns).
#[derive(Clone, Debug, Default)]
pub(crate) struct JoinFds {
    pub(crate) net: Option<Arc<OwnedFd>>,
    pub(crate) uts: Option<Arc<OwnedFd>>,
    pub(crate) ipc: Option<Arc<OwnedFd>>,
    pub(crate) mnt: Option<Arc<OwnedFd>>,
}

impl JoinFds {
    /// Copies at low numbers of the [parked](crate::sys::park) ones (held open until the spawn
    /// returns), so the child that joins them keeps only the low part of the node's table;
    /// where no copy can be made, the original.
    pub(crate) fn unparked(self) -> JoinFds {
        use std::os::fd::AsRawFd;
        let low = |fd: Option<Arc<OwnedFd>>| {
            fd.map(|fd| match fd.as_raw_fd() >= crate::sys::PARKED {
                // The lowest free number from 3 up (`F_DUPFD_CLOEXEC`).
                true => fd.try_clone().map_or(fd, Arc::new),
                false => fd,
            })
        };
        JoinFds {
            net: low(self.net),
            uts: low(self.uts),
            ipc: low(self.ipc),
            mnt: low(self.mnt),
        }
    }
}

/// The cgroups a new process must be in before it execs.
#[derive(Debug, Default)]
pub(crate) struct CgroupJoin {
    /// The cgroup v2 group's directory: the child is created inside it (`CLONE_INTO_CGROUP`).
    pub(crate) v2_dir: Option<OwnedFd>,
    /// That group's `cgroup.procs`, written by the child where `clone3` is not available
    /// (opened from `v2_dir` then).
    pub(crate) v2_procs: Option<OwnedFd>,
    /// cgroup v1 `tasks` files. The child, still single-threaded, writes `0` (itself) to each:
    /// moving one thread that is the caller skips the kernel's global threadgroup lock, whose
    /// write side waits for an RCU grace period (10-20 ms here) on every `cgroup.procs` write.
    pub(crate) v1_tasks: Vec<OwnedFd>,
}

/// Everything the child does before `exec`.
pub(crate) struct ChildSetup {
    pub(crate) cgroups: CgroupJoin,
    pub(crate) join: JoinFds,
    pub(crate) mounts: Option<MountPlan>,
    pub(crate) cwd: CString,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    /// Standard input is a terminal that becomes the new session's controlling terminal
    /// (`tty: true`).
    pub(crate) controlling_terminal: bool,
    /// The process leads a session of its own (a container's main process, an interactive
    /// exec, as runc's do); else it has only a process group of its own (an exec probe or
    /// hook, as the node ran them with posix_spawn: a session is also a scheduler autogroup
    /// the kernel makes and frees, at every probe).
    pub(crate) own_session: bool,
}

impl ChildSetup {
    /// The highest descriptor number the child uses (its groups', its namespaces', its mount
    /// plan's), or -1: a child on the node's descriptor table keeps the numbers up to it
    /// (`sys::clone`).
    pub(crate) fn max_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        let groups = &self.cgroups;
        let join = &self.join;
        let single = [groups.v2_dir.as_ref(), groups.v2_procs.as_ref()]
            .into_iter()
            .chain(groups.v1_tasks.iter().map(Some))
            .chain([&join.net, &join.uts, &join.ipc, &join.mnt].map(|fd| fd.as_deref()))
            .flatten()
            .map(AsRawFd::as_raw_fd);
        single
            .chain(self.mounts.as_ref().map(MountPlan::max_fd))
            .max()
            .unwrap_or(-1)
    }
}

/// A container's main process to create.
pub(crate) struct MainProcess<'a> {
    /// The executable.
    pub(crate) program: &'a Path,
    /// Its arguments, `argv[0]` included.
    pub(crate) argv: &'a [String],
    pub(crate) env: &'a [(String, String)],
    /// What the child does before exec.
    pub(crate) setup: ChildSetup,
    /// Its stdin (`/dev/null` when `None`).
    pub(crate) stdin: Option<OwnedFd>,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
}

/// The monitor a main process is started under (issue 18): it is the process's parent and
/// writes its log and exit record (`sys/monitor/program.rs`).
pub(crate) struct MonitorLaunch<'a> {
    pub(crate) program: &'a crate::sys::MonitorProgram,
    /// The instance's log file (created already) and its rotation.
    pub(crate) log: &'a Path,
    pub(crate) max_bytes: u64,
    pub(crate) max_files: u32,
    /// Where the exit record goes.
    pub(crate) exit: &'a Path,
    /// The reading ends the monitor copies into the log: stdout (or the pty master) and
    /// stderr (`None` with a terminal). The monitor gets copies; the caller closes its own.
    pub(crate) stdout: &'a OwnedFd,
    pub(crate) stderr: Option<&'a OwnedFd>,
    /// A descriptor the monitor holds open for the instance's life (the writing end of a
    /// `stdin: true` container's stdin), so a node restart does not close it.
    pub(crate) keep: Option<&'a OwnedFd>,
}

/// A main process started under its monitor.
pub(crate) struct Monitored {
    /// The main process; its pidfd is the node's own (`pidfd_open`), `None` if it ended
    /// before that.
    pub(crate) main: Spawned,
    /// The monitor, the node's child (reaped by the node; a node that restarts finds it by
    /// its pid).
    pub(crate) monitor: Spawned,
}

/// A process started by [`spawn`].
pub(crate) struct Spawned {
    pub(crate) pid: i32,
    /// Its pidfd when `clone3` returned one.
    pub(crate) pidfd: Option<OwnedFd>,
}

/// The child's side: session, cgroups, namespaces, mounts, directory and user. Only system
/// calls on data prepared before the fork (it runs between fork and exec).
pub(crate) fn setup_child(setup: &ChildSetup, in_v2_group: bool) -> io::Result<()> {
    if setup.own_session {
        nix::unistd::setsid()?;
    } else {
        nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0))?;
    }
    if setup.controlling_terminal {
        crate::sys::pty::stdin_becomes_controlling_terminal()?;
    }
    if !in_v2_group && let Some(procs) = &setup.cgroups.v2_procs {
        nix::unistd::write(procs, b"0")?;
    }
    for tasks in &setup.cgroups.v1_tasks {
        nix::unistd::write(tasks, b"0")?;
    }
    let join = &setup.join;
    for (fd, flag) in [
        (&join.net, CloneFlags::CLONE_NEWNET),
        (&join.uts, CloneFlags::CLONE_NEWUTS),
        (&join.ipc, CloneFlags::CLONE_NEWIPC),
        (&join.mnt, CloneFlags::CLONE_NEWNS),
    ] {
        if let Some(fd) = fd {
            setns(fd.as_ref(), flag)?;
        }
    }
    if let Some(mounts) = &setup.mounts {
        unshare(CloneFlags::CLONE_NEWNS)?;
        mounts.apply()?;
    }
    nix::unistd::chdir(setup.cwd.as_c_str())?;
    if let Some(gid) = setup.gid.or(setup.uid.map(|_| 0)) {
        nix::unistd::setgroups(&[])?;
        nix::unistd::setgid(nix::unistd::Gid::from_raw(gid))?;
    }
    if let Some(uid) = setup.uid {
        nix::unistd::setuid(nix::unistd::Uid::from_raw(uid))?;
    }
    crate::sys::close_on_exec_from(3);
    Ok(())
}

pub(crate) use crate::sys::spawn;
