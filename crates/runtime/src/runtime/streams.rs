//! Into running pods: [`PodStreams`] (interactive exec, attach, port-forward) and
//! [`UsageSource`] for [`ProcessRuntime`]. The processes are started in `exec`, the byte
//! streams are `crate::stdio`'s, the counters `crate::usage`'s; this file ties them to the
//! running containers and sandboxes and to a session's lifetime.

use std::net::SocketAddr;
use std::os::fd::AsFd;

use podvisor_core::streams::{
    Duplex, PodStreams, Reader, Resize, Session, SessionEnd, StdioRequest, StreamError, TerminalSize, Writer,
};
use podvisor_core::usage::{UsageSample, UsageSource};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

use super::container_exec::exec_thread;
use super::*;
use crate::stdio::{FdStream, Keep};

/// How long connecting to a port inside a pod may take (loopback: refused or accepted at once
/// unless the listener's backlog is full).
const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn failed(e: impl std::fmt::Display) -> StreamError {
    StreamError::Failed(e.to_string())
}

impl ProcessRuntime {
    /// The running container `id`, or `NotFound`.
    fn running(&self, id: &str) -> Result<Arc<ContainerState>, StreamError> {
        lock(&self.inner.containers)
            .get(&ContainerId(id.to_string()))
            .cloned()
            .ok_or_else(|| StreamError::NotFound(id.to_string()))
    }
}

/// Applies sizes to the pty master `terminal`; the closure keeps `keep` alive.
fn resizer(terminal: Arc<OwnedFd>, keep: Option<Keep>) -> Resize {
    Box::new(move |size: TerminalSize| {
        let _ = &keep;
        if let Err(e) = crate::sys::pty::set_window_size(terminal.as_fd(), size.width, size.height) {
            tracing::debug!(error = %e, "terminal resize failed");
        }
    })
}

fn reader(fd: OwnedFd, keep: &Keep) -> Result<Reader, StreamError> {
    Ok(Box::pin(
        FdStream::new(fd).map_err(failed)?.keeping(keep.clone()).compat(),
    ))
}

fn writer(fd: OwnedFd, keep: &Keep) -> Result<Writer, StreamError> {
    Ok(Box::pin(
        FdStream::new(fd)
            .map_err(failed)?
            .keeping(keep.clone())
            .compat_write(),
    ))
}

/// A started exec as a [`Session`]. A task waits for the command, kills what it left (as
/// exec probes do) and reports the exit code; every part of the session holds a guard, and
/// when the last part is dropped before the end, the task kills the command's process tree.
fn exec_session(fds: exec::SessionFds) -> Result<Session, StreamError> {
    let exec::SessionFds {
        pid,
        pidfd,
        stdin,
        stdout,
        stderr,
        terminal,
    } = fds;
    let (detach_tx, detach_rx) = oneshot::channel::<()>();
    let (end_tx, end_rx) = oneshot::channel::<i32>();
    tokio::spawn(async move {
        let wait = process::wait_reap(pid, pidfd);
        tokio::pin!(wait);
        let status = tokio::select! {
            biased;
            status = &mut wait => status,
            _ = detach_rx => {
                // The client went away: nothing of the command may stay behind.
                process::kill_tree(pid);
                wait.await
            }
        };
        if process::kill_tree(pid) {
            process::reap_orphans();
        }
        let _ = end_tx.send(status.code());
    });
    // Dropping the last clone of the guard drops the sender: the task above kills.
    let guard: Keep = Arc::new(detach_tx);
    let session = Session {
        stdin: stdin.map(|fd| writer(fd, &guard)).transpose()?,
        stdout: stdout.map(|fd| reader(fd, &guard)).transpose()?,
        stderr: stderr.map(|fd| reader(fd, &guard)).transpose()?,
        resize: terminal.map(|t| resizer(Arc::new(t), Some(guard.clone()))),
        end: Box::pin(async move {
            let _guard = guard;
            match end_rx.await {
                Ok(code) => SessionEnd::Exited(code),
                Err(_) => SessionEnd::Failed("the runtime shut down before the command ended".into()),
            }
        }),
    };
    Ok(session)
}

#[async_trait::async_trait]
impl PodStreams for ProcessRuntime {
    async fn exec(
        &self,
        container_id: &str,
        command: Vec<String>,
        stdio: StdioRequest,
    ) -> Result<Session, StreamError> {
        let state = self.running(container_id)?;
        let cgroups = state.cgroup.open_join().map_err(failed)?;
        let tx = exec_thread(&state).map_err(StreamError::Failed)?;
        let (reply, answer) = oneshot::channel();
        let request = exec::SessionRequest {
            argv: command,
            stdio,
            cgroups,
            reply,
        };
        tx.send(exec::Request::Session(Box::new(request)))
            .map_err(|_| failed("exec thread gone"))?;
        let fds = answer
            .await
            .map_err(|_| failed("exec thread gone"))?
            .map_err(failed)?;
        exec_session(fds)
    }

    async fn attach(&self, container_id: &str, stdio: StdioRequest) -> Result<Session, StreamError> {
        let state = self.running(container_id)?;
        let point = &state.attach;
        let spec = point.stdio;
        // Attach streams keep nothing alive: the container runs on when a client detaches.
        let keep: Keep = Arc::new(());
        let stdin = if stdio.stdin {
            if !spec.stdin {
                return Err(StreamError::Unsupported(format!(
                    "container {container_id} does not have stdin: true in its spec; attach can only read its output"
                )));
            }
            let fd = {
                let mut kept = lock(&point.stdin);
                if spec.stdin_once {
                    // The first client takes the only end: its detaching closes the stdin.
                    kept.take()
                } else {
                    kept.as_ref()
                        .map(OwnedFd::try_clone)
                        .transpose()
                        .map_err(failed)?
                }
            };
            let fd = fd.ok_or_else(|| {
                StreamError::Unsupported(format!(
                    "the stdin of container {container_id} was closed when its first attached client detached (stdinOnce)"
                ))
            })?;
            Some(writer(fd, &keep)?)
        } else {
            None
        };
        let [out, err] = &point.output;
        let stdout: Option<Reader> = stdio.stdout.then(|| Box::pin(out.subscribe().compat()) as Reader);
        // A terminal has one output stream.
        let stderr: Option<Reader> =
            (stdio.stderr && !spec.tty).then(|| Box::pin(err.subscribe().compat()) as Reader);
        point.interest.notify_one();
        let resize = point.terminal.clone().map(|t| resizer(t, None));
        let mut exit = point.exit.clone();
        let end = Box::pin(async move {
            match exit.wait_for(Option::is_some).await.map(|code| *code) {
                Ok(Some(code)) => SessionEnd::Exited(code),
                _ => SessionEnd::Failed("the container's process is gone".into()),
            }
        });
        Ok(Session {
            stdin,
            stdout,
            stderr,
            resize,
            end,
        })
    }

    async fn port_forward(&self, pod_uid: &str, port: u16) -> Result<Box<dyn Duplex>, StreamError> {
        let netns = {
            let sandboxes = lock(&self.inner.sandboxes);
            let sandbox = sandboxes
                .get(pod_uid)
                .ok_or_else(|| StreamError::NotFound(format!("pod {pod_uid}")))?;
            sandbox.namespaces.as_ref().map(|n| n.net.clone())
        };
        let stream = match netns {
            // A pod on the host network: the host's loopback.
            None => connect_loopback(port).await,
            Some(net) => tokio::task::spawn_blocking(move || {
                crate::network::in_netns(net.as_fd(), || connect_loopback_blocking(port))
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .and_then(tokio::net::TcpStream::from_std),
        }
        .map_err(|e| {
            StreamError::Failed(format!(
                "failed to connect to localhost:{port} inside the pod's network namespace: {e}"
            ))
        })?;
        let _ = stream.set_nodelay(true);
        Ok(Box::new(stream.compat()))
    }
}

/// The loopback addresses tried in order, as CRI runtimes do: IPv4, then IPv6.
fn loopback(port: u16) -> [SocketAddr; 2] {
    [
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    ]
}

async fn connect_loopback(port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let [v4, v6] = loopback(port);
    match tokio::time::timeout(FORWARD_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(v4)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => tokio::net::TcpStream::connect(v6).await.map_err(|_| e),
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Connects from the calling thread (one that joined the pod's network namespace).
fn connect_loopback_blocking(port: u16) -> std::io::Result<std::net::TcpStream> {
    let [v4, v6] = loopback(port);
    let stream = std::net::TcpStream::connect_timeout(&v4, FORWARD_CONNECT_TIMEOUT)
        .or_else(|e| std::net::TcpStream::connect_timeout(&v6, FORWARD_CONNECT_TIMEOUT).map_err(|_| e))?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

impl UsageSource for ProcessRuntime {
    /// From the container's cgroup where it has one (v2 `cpu.stat`, the memory files); what
    /// the cgroup lacks is summed over its processes from `/proc` (an approximation, see
    /// `crate::usage`): those in the cgroup, or without one the main process's group and
    /// session.
    fn container_usage(&self, container_id: &str) -> Option<UsageSample> {
        let state = lock(&self.inner.containers)
            .get(&ContainerId(container_id.to_string()))
            .cloned()?;
        let (cpu, memory) = state.cgroup.usage();
        if let (Some(cpu_ns), Some(working_set_bytes)) = (cpu, memory) {
            return Some(UsageSample {
                cpu_ns,
                working_set_bytes,
            });
        }
        let mut pids = if state.cgroup.tracks() {
            state.cgroup.pids()
        } else {
            process::group_members(state.main_pid)
        };
        pids.push(state.main_pid);
        pids.sort_unstable();
        pids.dedup();
        let approx = crate::usage::processes(&pids)?;
        Some(UsageSample {
            cpu_ns: cpu.unwrap_or(approx.cpu_ns),
            working_set_bytes: memory.unwrap_or(approx.working_set_bytes),
        })
    }

    fn node_usage(&self) -> Option<UsageSample> {
        crate::usage::node()
    }

    /// Every supervised instance, started or adopted, until its exit is seen.
    fn running_containers(&self) -> Option<Vec<String>> {
        Some(
            lock(&self.inner.containers)
                .keys()
                .map(|id| id.0.clone())
                .collect(),
        )
    }
}
