//! Exec in a container's context.
//!
//! Each container that is exec'd into gets one helper thread. The thread leaves the node's
//! filesystem context (`unshare(CLONE_FS)`, needed to join a mount namespace from a threaded
//! process) and joins the container's network, UTS, IPC and mount namespaces with `setns`,
//! which affects only that thread. Commands are then spawned from it with `crate::spawn`
//! (`clone3` on the node's memory, as posix_spawn does), and the child inherits the thread's
//! namespaces. Not with `std::process::Command`'s posix_spawn: its child copies the node's
//! whole descriptor table (about ten per pod) and closes every copy at its exec, at each
//! probe; `crate::spawn`'s takes only the low part (`sys::park`).
//!
//! An exec probe's or hook's command (`Request::Probe`) gets a process group of its own, its
//! output on one pipe, `/dev/null` as stdin, the container's user and directory; it does not
//! join the cgroup (it is short). Interactive exec (`kubectl exec`, `Request::Session`) is
//! spawned like a container's main process: created inside the container's cgroup, in a
//! session of its own, with the streams the client asked for, or a pty opened from this
//! thread (so the container's `/dev/pts`) as its controlling terminal.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use nix::sched::{CloneFlags, setns, unshare};
use podvisor_core::streams::StdioRequest;

use crate::error::ExecError;
use crate::spawn::CgroupJoin;

/// A container's context, as exec needs it.
pub(crate) struct ExecContext {
    /// (namespace fd, kind) to join, in order.
    pub(crate) namespaces: Vec<(Arc<OwnedFd>, CloneFlags)>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) cwd: PathBuf,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
}

/// What the helper thread returns for one probe request: the pid, its pidfd where the kernel
/// gave one, and the read end of the combined stdout+stderr pipe; or why not.
pub(crate) type Spawned = Result<(i32, Option<OwnedFd>, OwnedFd), ExecError>;

/// A command for the container's helper thread.
pub(crate) enum Request {
    /// An exec probe's (or hook's) command: stdin `/dev/null`, stdout and stderr combined.
    Probe {
        argv: Vec<String>,
        reply: tokio::sync::oneshot::Sender<Spawned>,
    },
    /// An interactive exec (`kubectl exec`).
    Session(Box<SessionRequest>),
}

/// An interactive exec: the streams the client asked for, the container's cgroups to join.
pub(crate) struct SessionRequest {
    pub(crate) argv: Vec<String>,
    pub(crate) stdio: StdioRequest,
    pub(crate) cgroups: CgroupJoin,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<SessionFds, ExecError>>,
}

/// A started interactive exec: its pid and the node's ends of the streams asked for.
pub(crate) struct SessionFds {
    pub(crate) pid: i32,
    pub(crate) pidfd: Option<OwnedFd>,
    pub(crate) stdin: Option<OwnedFd>,
    pub(crate) stdout: Option<OwnedFd>,
    pub(crate) stderr: Option<OwnedFd>,
    /// The pty master (with `tty`; stdout and stdin are duplicates of it).
    pub(crate) terminal: Option<OwnedFd>,
}

/// Starts the helper thread of one container; it ends when the sender is dropped.
pub(crate) fn start_thread(ctx: ExecContext) -> std::io::Result<mpsc::Sender<Request>> {
    let (tx, rx) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("podvisor-exec".into())
        .spawn(move || {
            let joined = join(&ctx);
            for req in rx {
                match req {
                    Request::Probe { argv, reply } => {
                        let result = match &joined {
                            Ok(()) => spawn_one(&ctx, &argv),
                            Err(e) => Err(e.clone()),
                        };
                        let _ = reply.send(result);
                    }
                    Request::Session(req) => {
                        let SessionRequest {
                            argv,
                            stdio,
                            cgroups,
                            reply,
                        } = *req;
                        let result = match &joined {
                            Ok(()) => spawn_session(&ctx, &argv, stdio, cgroups),
                            Err(e) => Err(e.clone()),
                        };
                        if let Err(Ok(abandoned)) = reply.send(result) {
                            // The caller went away meanwhile (its future was dropped).
                            abandon(abandoned);
                        }
                    }
                }
            }
        })?;
    Ok(tx)
}

fn join(ctx: &ExecContext) -> Result<(), ExecError> {
    if ctx.namespaces.is_empty() {
        return Ok(());
    }
    unshare(CloneFlags::CLONE_FS).map_err(ExecError::Unshare)?;
    for (fd, kind) in &ctx.namespaces {
        setns(fd.as_ref(), *kind).map_err(|source| ExecError::Setns { kind: *kind, source })?;
    }
    Ok(())
}

/// `argv`'s program as the container finds it (this thread is in its mount namespace).
fn resolve<'a>(ctx: &ExecContext, argv: &'a [String]) -> Result<(&'a String, PathBuf), ExecError> {
    let Some(program) = argv.first() else {
        return Err(ExecError::NoCommand);
    };
    let path_env = ctx
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(crate::env::DEFAULT_PATH, |(_, v)| v.as_str());
    let resolved = crate::spawn::resolve(program, path_env, &ctx.cwd, &|p| p.to_path_buf())?;
    Ok((program, resolved))
}

/// An interactive exec, started like a container's main process (`clone3` straight into the
/// container's cgroup, its own session, the container's user and directory) from this thread,
/// whose namespaces it inherits. Streams the client did not ask for are `/dev/null`; with
/// `tty` a pty opened here (so in the container's `/dev/pts`) is all three and the process's
/// controlling terminal.
fn spawn_session(
    ctx: &ExecContext,
    argv: &[String],
    stdio: StdioRequest,
    cgroups: CgroupJoin,
) -> Result<SessionFds, ExecError> {
    let (program, resolved) = resolve(ctx, argv)?;
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ExecError::Pipe);
    let terminal_error = |e: std::io::Error| ExecError::Terminal {
        message: e.to_string(),
    };
    let null = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(terminal_error)
    };
    let mut fds = SessionFds {
        pid: 0,
        pidfd: None,
        stdin: None,
        stdout: None,
        stderr: None,
        terminal: None,
    };
    let child: [Option<OwnedFd>; 3];
    if stdio.tty {
        let (master, slave) = crate::sys::pty::open().map_err(terminal_error)?;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(terminal_error);
        fds.stdout = Some(dup(&master)?);
        fds.stdin = if stdio.stdin { Some(dup(&master)?) } else { None };
        fds.terminal = Some(master);
        child = [Some(dup(&slave)?), Some(dup(&slave)?), Some(slave)];
    } else {
        let stdin = if stdio.stdin {
            let (r, w) = pipe()?;
            fds.stdin = Some(w);
            Some(r)
        } else {
            None
        };
        let output = |wanted: bool, ours: &mut Option<OwnedFd>| -> Result<OwnedFd, ExecError> {
            if wanted {
                let (r, w) = pipe()?;
                *ours = Some(r);
                Ok(w)
            } else {
                null()
            }
        };
        let stdout = output(stdio.stdout, &mut fds.stdout)?;
        let stderr = output(stdio.stderr, &mut fds.stderr)?;
        child = [stdin, Some(stdout), Some(stderr)];
    }
    let [stdin, stdout, stderr] = child;
    let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
        return Err(ExecError::Pipe(nix::errno::Errno::EBADF));
    };
    let main = crate::spawn::MainProcess {
        program: &resolved,
        argv,
        env: &ctx.env,
        setup: child_setup(ctx, program, cgroups, stdio.tty)?,
        stdin,
        stdout,
        stderr,
    };
    let spawned = spawn_owned(program, main)?;
    fds.pid = spawned.pid;
    fds.pidfd = spawned.pidfd;
    // The child's ends (the pty slave among them) were closed when `main` was consumed, so
    // the node's ends see EOF once the session's processes are gone.
    Ok(fds)
}

/// Kills and reaps a session nobody took: nothing of it may stay behind or stay owned.
fn abandon(fds: SessionFds) {
    crate::process::kill_tree(fds.pid);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(fds.pid), None);
    crate::process::owned().remove(&fds.pid);
    if crate::process::kill_tree(fds.pid) {
        crate::process::reap_orphans();
    }
}

fn spawn_one(ctx: &ExecContext, argv: &[String]) -> Spawned {
    let (program, resolved) = resolve(ctx, argv)?;
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ExecError::Pipe)?;
    let write_dup = write_end
        .try_clone()
        .map_err(|e| ExecError::Pipe(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    let setup = crate::spawn::ChildSetup {
        own_session: false,
        ..child_setup(ctx, program, CgroupJoin::default(), false)?
    };
    let main = crate::spawn::MainProcess {
        program: &resolved,
        argv,
        env: &ctx.env,
        setup,
        stdin: None,
        stdout: write_end,
        stderr: write_dup,
    };
    // `main`, and with it the pipe's write ends, is consumed: EOF comes when the command's
    // processes are gone.
    let spawned = spawn_owned(program, main)?;
    Ok((spawned.pid, spawned.pidfd, read_end))
}

/// Spawns `main` and registers it as the node's own child (reaped by its waiter, not by the
/// orphan reaper), under the registry's lock so no reaper sees it before.
fn spawn_owned(
    program: &str,
    main: crate::spawn::MainProcess<'_>,
) -> Result<crate::spawn::Spawned, ExecError> {
    let mut owned = crate::process::owned();
    let spawned = crate::spawn::spawn(main).map_err(|e| ExecError::Spawn {
        program: program.to_owned(),
        message: e.to_string(),
    })?;
    owned.insert(spawned.pid);
    Ok(spawned)
}

/// What a command's child does before its exec: it leads a session of its own with the
/// container's directory and user, in the namespaces this thread joined (it is created in
/// them), in `cgroups`, with `terminal` as its controlling terminal.
fn child_setup(
    ctx: &ExecContext,
    program: &str,
    cgroups: CgroupJoin,
    terminal: bool,
) -> Result<crate::spawn::ChildSetup, ExecError> {
    let cwd = crate::sandbox::cstring(&ctx.cwd).ok_or_else(|| ExecError::Spawn {
        program: program.to_owned(),
        message: "NUL in working directory".into(),
    })?;
    Ok(crate::spawn::ChildSetup {
        cgroups,
        join: crate::spawn::JoinFds::default(),
        mounts: None,
        cwd,
        uid: ctx.uid,
        gid: ctx.gid,
        controlling_terminal: terminal,
        own_session: true,
    })
}
