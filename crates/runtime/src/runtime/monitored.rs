//! Containers under a monitor (issue 18): what the node keeps on disk of an instance it
//! started under a monitor (`<restart>.state`, [`InstanceRecord`]), the monitor's exit record
//! (`<restart>.exit`), how the node waits for such an instance's end, and how it follows the
//! log the monitor writes (for `kubectl logs -f` and attached clients).
//!
//! The node and a monitor share no channel: the node watches the main process and the
//! monitor through pidfds and reads the files the monitor writes. So a node that restarts (or
//! a newer node) takes an instance over from the files and the process table alone
//! (`adopt.rs`).

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::*;
use crate::stdio::Fanout;

/// The version of [`InstanceRecord`] and of the monitor's invocation this node writes; a node
/// adopts instances recorded with this version or an older one it knows.
pub(super) const RECORD_VERSION: u32 = 1;

/// What the node records of an instance it started under a monitor, when it started it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct InstanceRecord {
    pub(super) version: u32,
    pub(super) id: String,
    pub(super) pod_uid: String,
    pub(super) container: String,
    pub(super) restart_count: i32,
    /// The main process and the monitor, each with its start time in clock ticks since boot
    /// (`/proc/<pid>/stat`), so a reused pid is never taken for them.
    pub(super) pid: i32,
    pub(super) pid_start: u64,
    pub(super) monitor_pid: i32,
    pub(super) monitor_start: u64,
    /// When the instance started, in milliseconds since the epoch.
    pub(super) started_at_ms: i64,
    /// The instance's cgroup name under its pod's and its limits.
    pub(super) cgroup: String,
    pub(super) memory_bytes: Option<u64>,
    pub(super) cpu_millis: Option<u64>,
    pub(super) pids: Option<u64>,
    pub(super) log_path: PathBuf,
    pub(super) exit_path: PathBuf,
    pub(super) termination_file: PathBuf,
    pub(super) fallback_to_logs: bool,
    pub(super) stop_signal: i32,
    pub(super) stdin: bool,
    pub(super) stdin_once: bool,
    pub(super) tty: bool,
    /// What exec joins: the sandbox namespaces (`net`, `uts`, `ipc`, `mnt`) and whether the
    /// container has a mount namespace of its own (the main process's).
    pub(super) join: Vec<String>,
    pub(super) own_mount_namespace: bool,
    pub(super) env: Vec<(String, String)>,
    pub(super) cwd: PathBuf,
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
}

/// `<dir>/<restart>.state` and `<dir>/<restart>.exit`.
pub(super) fn record_paths(dir: &Path, restart: i32) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{restart}.state")),
        dir.join(format!("{restart}.exit")),
    )
}

impl InstanceRecord {
    /// Writes the record next to the instance's log (a new file renamed into place).
    pub(super) fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("state.tmp");
        fs::write(&tmp, serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        fs::rename(&tmp, path)
    }

    /// Reads a record this node knows how to adopt.
    pub(super) fn read(path: &Path) -> Option<InstanceRecord> {
        let bytes = fs::read(path).ok()?;
        let record: InstanceRecord = serde_json::from_slice(&bytes).ok()?;
        (1..=RECORD_VERSION).contains(&record.version).then_some(record)
    }
}

/// The monitor's exit record: how the main process ended and when.
pub(super) fn read_exit(path: &Path, pid: i32) -> Option<(ExitStatus, SystemTime)> {
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    if lines.next()? != "podvisor-exit 1" {
        return None;
    }
    let mut status = None;
    let mut finished = None;
    for line in lines {
        let (key, value) = line.split_once(' ')?;
        match key {
            "pid" if value.parse::<i32>().ok()? != pid => return None,
            "exited" => status = Some(ExitStatus::Exited(value.parse().ok()?)),
            "signaled" => status = Some(ExitStatus::Signaled(value.parse().ok()?)),
            "finished" => {
                let nanos: u64 = value.parse().ok()?;
                finished = Some(UNIX_EPOCH + Duration::from_nanos(nanos));
            }
            _ => {}
        }
    }
    Some((status?, finished?))
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22), if it
/// lives (a zombie still has one).
pub(super) fn start_ticks(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

/// Milliseconds since the epoch.
pub(super) fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Who reads an instance's output and reaps its main process.
pub(super) enum Owner {
    /// The node: it reads the output into the log itself (`logs::pump`) and reaps the main
    /// process (no monitor on this machine, or the runtime's fakes).
    Node {
        stdout: OwnedFd,
        stderr: Option<OwnedFd>,
    },
    /// A monitor: the node waits for the main process's end through a pidfd, then for the
    /// monitor's, and reads the exit record.
    Monitor(MonitorHandle),
}

/// The node's handle on an instance's monitor.
pub(super) struct MonitorHandle {
    pub(super) pid: i32,
    pub(super) pidfd: Option<OwnedFd>,
    /// Started by this node (its child, reaped here) rather than adopted.
    pub(super) own_child: bool,
    pub(super) exit_path: PathBuf,
}

impl MonitorHandle {
    /// Starts waiting for the monitor's end (reaping it at once when it is ours, so it is
    /// never left a zombie); `finish` then waits for that.
    pub(super) fn watch(self, procs: &Arc<dyn ProcessOps>) -> MonitorWatch {
        let MonitorHandle {
            pid,
            pidfd,
            own_child,
            exit_path,
        } = self;
        let gone = if own_child {
            let wait = procs.wait_reap(pid, pidfd);
            tokio::spawn(async move {
                wait.await;
            })
        } else {
            let wait = procs.wait_gone(pid);
            tokio::spawn(async move {
                wait.await;
            })
        };
        MonitorWatch {
            pid,
            own_child,
            exit_path,
            gone,
        }
    }
}

/// A monitor whose end is being waited for.
pub(super) struct MonitorWatch {
    pid: i32,
    own_child: bool,
    exit_path: PathBuf,
    gone: tokio::task::JoinHandle<()>,
}

impl MonitorWatch {
    /// Waits for the monitor to leave once the main process and its leftovers are gone (it
    /// drains what is left in the pipes first), then reads the exit record. `tracked`: the
    /// container's cgroup held all its processes, so nothing can keep the pipes open and the
    /// wait is bounded only against a stuck machine (30 s); otherwise a process that escaped
    /// may hold them, and the wait is 2 s.
    pub(super) async fn finish(self, main_pid: i32, tracked: bool) -> ExitStatus {
        let MonitorWatch {
            pid,
            own_child,
            exit_path,
            gone,
        } = self;
        let bound = Duration::from_secs(if tracked { 30 } else { 2 });
        let gone = tokio::time::timeout(bound, gone).await.is_ok();
        if !gone && own_child {
            // Something that escaped the container's groups holds its output: the orphan
            // reaper takes the monitor once it leaves.
            process::owned().remove(&pid);
        }
        match read_exit(&exit_path, main_pid) {
            Some((status, _)) => status,
            None => {
                tracing::warn!(path = %exit_path.display(), "the container's monitor left no exit record");
                ExitStatus::Exited(-1)
            }
        }
    }
}

/// Follows a monitored instance's log for those who want it, and only while someone does:
/// `kubectl logs -f` (the log's update notifications) and attached clients (the output's
/// fan-outs, fed with the bytes of the new records). `interest` wakes it when a follower or
/// client arrives. When `done` is cancelled (the monitor has written everything), it passes
/// over the file once more for those still reading and returns.
pub(super) async fn follow_log(
    path: PathBuf,
    log: Arc<Mutex<LogFile>>,
    output: [Arc<Fanout>; 2],
    interest: Arc<Notify>,
    done: tokio_util::sync::CancellationToken,
) {
    let identity = |path: &Path| {
        fs::metadata(path).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.len(), m.ino())
        })
    };
    // The file as the instance started: a follower hears of what is written after that.
    let mut last = identity(&path);
    let mut tail: Option<logs::read::Tail> = None;
    let mut last_pass = false;
    loop {
        let followers = lock(&log).followers();
        let attached = output.iter().any(|o| o.subscribers() > 0);
        if !followers && !attached {
            if last_pass {
                return;
            }
            tail = None;
            tokio::select! {
                () = interest.notified() => {}
                () = done.cancelled() => return,
            }
            continue;
        }
        let now = identity(&path);
        if now != last {
            last = now;
            if followers {
                lock(&log).notify();
            }
        }
        if attached {
            let t = tail.get_or_insert_with(|| logs::read::Tail::at_end(path.clone()));
            for (stream, bytes) in t.read() {
                let i = usize::from(stream == podvisor_core::logs::LogStream::Stderr);
                output[i].send(&bytes);
            }
        } else {
            tail = None;
        }
        if last_pass {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(if attached { 20 } else { 50 })) => {}
            () = interest.notified() => {}
            () = done.cancelled() => last_pass = true,
        }
    }
}
