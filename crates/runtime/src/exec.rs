//! Exec in a container's context on the posix_spawn fast path.
//!
//! Each container that is exec'd into gets one helper thread. The thread leaves the node's
//! filesystem context (`unshare(CLONE_FS)`, needed to join a mount namespace from a threaded
//! process) and joins the container's network, UTS, IPC and mount namespaces with `setns`,
//! which affects only that thread. Commands are then spawned from it with plain
//! `std::process::Command` (no `pre_exec` hook), so std uses posix_spawn (vfork + exec) and
//! the child inherits the thread's namespaces. Setting a user (`runAsUser`) makes std fall back
//! to fork; that is the only slow case.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;

use nix::sched::{CloneFlags, setns, unshare};

use crate::error::ExecError;

/// A container's context, as exec needs it.
pub(crate) struct ExecContext {
    /// (namespace fd, kind) to join, in order.
    pub(crate) namespaces: Vec<(Arc<OwnedFd>, CloneFlags)>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) cwd: PathBuf,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
}

/// What the helper thread returns for one request: the pid and the read end of the combined
/// stdout+stderr pipe, or why not.
pub(crate) type Spawned = Result<(i32, OwnedFd), ExecError>;

pub(crate) struct Request {
    pub(crate) argv: Vec<String>,
    pub(crate) reply: tokio::sync::oneshot::Sender<Spawned>,
}

/// Starts the helper thread of one container; it ends when the sender is dropped.
pub(crate) fn start_thread(ctx: ExecContext) -> std::io::Result<mpsc::Sender<Request>> {
    let (tx, rx) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("podvisor-exec".into())
        .spawn(move || {
            let joined = join(&ctx);
            for req in rx {
                let result = match &joined {
                    Ok(()) => spawn_one(&ctx, &req.argv),
                    Err(e) => Err(e.clone()),
                };
                let _ = req.reply.send(result);
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

fn spawn_one(ctx: &ExecContext, argv: &[String]) -> Spawned {
    let Some(program) = argv.first() else {
        return Err(ExecError::NoCommand);
    };
    let path_env = ctx
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(crate::env::DEFAULT_PATH, |(_, v)| v.as_str());
    let resolved = crate::spawn::resolve(program, path_env, &ctx.cwd, &|p| p.to_path_buf())?;
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ExecError::Pipe)?;
    let write_dup = write_end
        .try_clone()
        .map_err(|e| ExecError::Pipe(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    let mut cmd = Command::new(&resolved);
    cmd.arg0(program)
        .args(&argv[1..])
        .env_clear()
        .envs(ctx.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&ctx.cwd)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::from(write_dup));
    if let Some(gid) = ctx.gid.or(ctx.uid.map(|_| 0)) {
        cmd.gid(gid);
    }
    if let Some(uid) = ctx.uid {
        cmd.uid(uid);
    }
    let mut owned = crate::process::owned();
    let child = cmd.spawn().map_err(|e| ExecError::Spawn {
        program: program.clone(),
        message: e.to_string(),
    })?;
    let pid = child.id() as i32;
    owned.insert(pid);
    drop(owned);
    // `cmd` (and with it the pipe's write ends) is dropped here, so EOF comes when the
    // command's processes are gone.
    drop(cmd);
    Ok((pid, read_end))
}
