//! Starting a container's main process: the `pre_exec` hook that joins the sandbox, the
//! cgroup, a private mount namespace with the termination-message file, the working directory
//! and the user; and resolving the executable like the kubelet's runtime reports it.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};

/// Finds the executable for `program` like runc: a name with a `/` is used as is (relative to
/// `cwd`), anything else is searched in `path_env`. The error texts match the kubelet's.
pub(crate) fn resolve(program: &str, path_env: &str, cwd: &Path) -> Result<PathBuf, String> {
    let executable = |p: &Path| fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
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

/// The termination-message mount: `host` file bind-mounted at `target` in a private mount
/// namespace. When `target` does not exist, its directory is shadowed by a tmpfs that gets
/// bind mounts of the original entries (prepared in [`TermMount::prepare`]) plus the file.
pub(crate) struct TermMount {
    host: CString,
    target: CString,
    shadow: Option<Shadow>,
}

struct Shadow {
    dir: CString,
    /// A placeholder fd number reserved in the node. In the child (after `unshare`, so in the
    /// child's own mount namespace: a bind source must be in the caller's namespace) the
    /// original directory is opened and moved onto this number before the tmpfs hides it;
    /// entries are then bound from `/proc/self/fd/<n>/<name>`.
    slot: OwnedFd,
    /// (path in the shadowed dir, path through the original's fd, kind)
    entries: Vec<(CString, CString, EntryKind)>,
}

#[derive(Clone)]
enum EntryKind {
    Dir,
    File,
    Symlink(CString),
}

fn cs(p: &Path) -> Option<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).ok()
}

impl TermMount {
    /// Prepares everything the child needs (it must not allocate after fork).
    pub(crate) fn prepare(host: &Path, target: &str) -> Option<Self> {
        let target_path = Path::new(target);
        if !target_path.is_absolute() {
            return None;
        }
        let shadow = if target_path.exists() {
            None
        } else {
            let dir = target_path.parent()?;
            if !dir.is_dir() {
                return None;
            }
            let slot: OwnedFd = fs::File::open("/dev/null").ok()?.into();
            let via = PathBuf::from(format!("/proc/self/fd/{}", slot.as_raw_fd()));
            let mut entries = Vec::new();
            for e in fs::read_dir(dir).ok()?.flatten() {
                let ft = e.file_type().ok()?;
                let kind = if ft.is_symlink() {
                    EntryKind::Symlink(cs(&fs::read_link(e.path()).ok()?)?)
                } else if ft.is_dir() {
                    EntryKind::Dir
                } else if ft.is_file()
                    || ft.is_char_device()
                    || ft.is_block_device()
                    || ft.is_socket()
                    || ft.is_fifo()
                {
                    EntryKind::File
                } else {
                    continue;
                };
                entries.push((cs(&e.path())?, cs(&via.join(e.file_name()))?, kind));
            }
            Some(Shadow {
                dir: cs(dir)?,
                slot,
                entries,
            })
        };
        Some(TermMount {
            host: cs(host)?,
            target: cs(target_path)?,
            shadow,
        })
    }

    /// Runs in the forked child, after `unshare(CLONE_NEWNS)`.
    fn apply(&self) -> io::Result<()> {
        let none = None::<&std::ffi::CStr>;
        if let Some(s) = &self.shadow {
            let original = nix::fcntl::open(
                s.dir.as_c_str(),
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )?;
            nix::unistd::dup3(original, s.slot.as_raw_fd(), nix::fcntl::OFlag::O_CLOEXEC)?;
            let _ = nix::unistd::close(original);
            mount(
                Some(c"tmpfs"),
                s.dir.as_c_str(),
                Some(c"tmpfs"),
                MsFlags::MS_NOSUID,
                Some(c"mode=755"),
            )?;
            for (path, staged, kind) in &s.entries {
                // An entry that vanished since `prepare` is skipped.
                let created = match kind {
                    EntryKind::Symlink(to) => {
                        let _ = nix::unistd::symlinkat(to.as_c_str(), None, path.as_c_str());
                        continue;
                    }
                    EntryKind::Dir => {
                        nix::unistd::mkdir(path.as_c_str(), nix::sys::stat::Mode::from_bits_truncate(0o755))
                            .map_err(io::Error::from)
                    }
                    EntryKind::File => create_file(path),
                };
                if created.is_err() {
                    continue;
                }
                // Best effort: an entry that cannot be bound stays an empty placeholder.
                let _ = mount(
                    Some(staged.as_c_str()),
                    path.as_c_str(),
                    none,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    none,
                );
            }
            create_file(&self.target)?;
        }
        mount(
            Some(self.host.as_c_str()),
            self.target.as_c_str(),
            none,
            MsFlags::MS_BIND,
            none,
        )?;
        Ok(())
    }
}

fn create_file(path: &CString) -> io::Result<()> {
    let fd = nix::fcntl::open(
        path.as_c_str(),
        nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )?;
    let _ = nix::unistd::close(fd);
    Ok(())
}

/// Everything the child does before `exec`.
pub(crate) struct ChildSetup {
    pub(crate) cgroup_procs: Vec<std::os::fd::OwnedFd>,
    pub(crate) join: JoinFds,
    pub(crate) term: Option<TermMount>,
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
        term,
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
        if let Some(term) = &term {
            unshare(CloneFlags::CLONE_NEWNS)?;
            term.apply()?;
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
    // (setsid, write, setns, unshare, mount, chdir, set*id) on data prepared before the fork; it
    // does not allocate (nix passes the prepared `CStr`s straight through) or take locks.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(hook);
    }
    let child = cmd.spawn()?;
    Ok((child, cgroup_procs))
}
