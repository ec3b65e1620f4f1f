//! Starting a container's main process: the `pre_exec` hook that joins the sandbox, the
//! cgroup, a private mount namespace with the container's mounts ([`crate::mounts`]), the
//! working directory and the user; and resolving the executable like the kubelet's runtime reports it.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sched::{CloneFlags, setns, unshare};

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
) -> Result<PathBuf, String> {
    let executable =
        |p: &Path| fs::metadata(view(p)).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.is_empty() {
        return Err("exec: \"\": executable file not found in $PATH".into());
    }
    if program.contains('/') {
        let p = if Path::new(program).is_absolute() {
            PathBuf::from(program)
        } else {
            cwd.join(program)
        };
        return match executable(&p) {
            Ok(true) => Ok(p),
            Ok(false) => Err(format!("exec: \"{program}\": permission denied")),
            Err(_) => Err(format!(
                "exec: \"{program}\": stat {program}: no such file or directory"
            )),
        };
    }
    for dir in path_env.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(program);
        if matches!(executable(&p), Ok(true)) {
            return Ok(if p.is_absolute() { p } else { cwd.join(p) });
        }
    }
    Err(format!("exec: \"{program}\": executable file not found in $PATH"))
}

/// Sandbox namespaces to join (raw fds that stay open until `spawn` returns).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct JoinFds {
    pub(crate) net: Option<i32>,
    pub(crate) uts: Option<i32>,
    pub(crate) ipc: Option<i32>,
    pub(crate) mnt: Option<i32>,
}

/// Everything the child does before `exec`.
pub(crate) struct ChildSetup {
    pub(crate) cgroup_procs: Vec<std::os::fd::OwnedFd>,
    pub(crate) join: JoinFds,
    pub(crate) mounts: Option<MountPlan>,
    pub(crate) cwd: CString,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
}

/// Spawns the container's main process with the setup hook. The fork path is used (a
/// `pre_exec` hook disables posix_spawn); exec probes use the fast path instead (see `exec`).
pub(crate) fn spawn(
    program: &Path,
    argv: &[String],
    env: &[(String, String)],
    setup: ChildSetup,
    stdout: Stdio,
    stderr: Stdio,
) -> io::Result<(Child, Vec<std::os::fd::OwnedFd>)> {
    let mut cmd = Command::new(program);
    if let Some(arg0) = argv.first() {
        cmd.arg0(arg0);
    }
    cmd.args(argv.iter().skip(1))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let procs: Vec<i32> = setup.cgroup_procs.iter().map(|f| f.as_raw_fd()).collect();
    let ChildSetup {
        cgroup_procs,
        join,
        mounts,
        cwd,
        uid,
        gid,
    } = setup;
    let hook = move || -> io::Result<()> {
        nix::unistd::setsid()?;
        for fd in &procs {
            nix::unistd::write(
                // SAFETY: the fd is open in the parent until spawn returns, so in the child too.
                #[allow(unsafe_code)]
                unsafe {
                    std::os::fd::BorrowedFd::borrow_raw(*fd)
                },
                b"0",
            )?;
        }
        for (fd, flag) in [
            (join.net, CloneFlags::CLONE_NEWNET),
            (join.uts, CloneFlags::CLONE_NEWUTS),
            (join.ipc, CloneFlags::CLONE_NEWIPC),
            (join.mnt, CloneFlags::CLONE_NEWNS),
        ] {
            if let Some(fd) = fd {
                // SAFETY: as above, the namespace fd outlives the child's use of it.
                #[allow(unsafe_code)]
                let ns = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                setns(ns, flag)?;
            }
        }
        if let Some(mounts) = &mounts {
            unshare(CloneFlags::CLONE_NEWNS)?;
            mounts.apply()?;
        }
        nix::unistd::chdir(cwd.as_c_str())?;
        if let Some(gid) = gid.or(uid.map(|_| 0)) {
            nix::unistd::setgroups(&[])?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(gid))?;
        }
        if let Some(uid) = uid {
            nix::unistd::setuid(nix::unistd::Uid::from_raw(uid))?;
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec in the child and only makes system calls
    // (setsid, write, setns, unshare, mount, mkdir, open, symlinkat, chroot, chdir, set*id) on
    // data prepared before the fork; it
    // does not allocate (nix passes the prepared `CStr`s straight through) or take locks.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(hook);
    }
    let child = cmd.spawn()?;
    Ok((child, cgroup_procs))
}
