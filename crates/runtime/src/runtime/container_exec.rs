//! Exec in a running container's context for probes and hooks (`ContainerExec`): each
//! container's exec helper thread, the command's output capped, and its end like a
//! container's (nothing it started outlives it).

use super::*;

impl ProcessRuntime {
    pub(super) async fn exec_inner(
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
        let tx = exec_thread(&state).map_err(err)?;
        let (reply, answer) = oneshot::channel();
        tx.send(exec::Request::Probe {
            argv: argv.to_vec(),
            reply,
        })
        .map_err(|_| err("exec thread gone".into()))?;
        let (pid, pidfd, out) = answer
            .await
            .map_err(|_| err("exec thread gone".into()))?
            .map_err(|e| err(e.to_string()))?;
        let pidfd = pidfd.or_else(|| process::pidfd_open(pid).ok());
        let reader = tokio::spawn(read_capped(out));
        let wait = process::wait_reap(pid, pidfd);
        tokio::pin!(wait);
        let (status, timed_out) = match timeout {
            Some(t) => match tokio::time::timeout(t, &mut wait).await {
                Ok(s) => (s, false),
                Err(_) => {
                    let _ = process::kill_tree(pid);
                    (wait.await, true)
                }
            },
            None => (wait.await, false),
        };
        // Like a container's end: nothing the command started outlives it.
        let left_processes = process::kill_tree(pid);
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

/// The container's exec helper thread, started at the first exec.
pub(super) fn exec_thread(state: &ContainerState) -> Result<std::sync::mpsc::Sender<exec::Request>, String> {
    let mut slot = lock(&state.exec_tx);
    if let Some(tx) = &*slot {
        return Ok(tx.clone());
    }
    let ctx = lock(&state.exec_ctx)
        .take()
        .ok_or_else(|| "exec context unavailable".to_string())?;
    let tx = exec::start_thread(ctx).map_err(|e| format!("exec thread: {e}"))?;
    *slot = Some(tx.clone());
    Ok(tx)
}

pub(super) async fn read_capped(fd: OwnedFd) -> Vec<u8> {
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
