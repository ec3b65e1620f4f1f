//! Containers under a monitor (issue 18): what the node keeps on disk of an instance it
//! started under a monitor (`<restart>.state`, [`InstanceRecord`]), the monitor's exit record
//! (appended to the same file), how the node waits for such an instance's end, and how it
//! follows the log the monitor writes (for `kubectl logs -f` and attached clients).
//!
//! One file per instance, not two: the node appends the record (one line of JSON) once the
//! instance runs, the monitor appends the exit record when the main process ends, each in one
//! `write` (appends do not interleave), in whichever order they come; whichever is first
//! creates the file. A file created is an inode allocated, which on some file systems costs
//! far more than the write (ext4 without a journal scans the inodes deleted in the last minute
//! on each). Instances started by an older node have their exit record in `<restart>.exit`
//! (the record's `exit_path` says where); both layouts are read.
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
    /// The instance's cgroup name under its pod's (an earlier instance's, when it took that
    /// one's groups over) and its limits.
    pub(super) cgroup: String,
    /// The OOM kills the groups had counted when the instance started (absent from an older
    /// node's records, whose instances each had new groups).
    #[serde(default)]
    pub(super) oom_kills_before: u64,
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

/// `<dir>/<restart>.state`: the instance's record and, once it ended, its exit record.
pub(super) fn record_path(dir: &Path, restart: i32) -> PathBuf {
    dir.join(format!("{restart}.state"))
}

impl InstanceRecord {
    /// Appends the record, one line, to the instance's file next to its log (created unless
    /// the monitor's exit record came first).
    pub(super) fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let mut line = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        line.push(b'\n');
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .write_all(&line)
    }

    /// Reads a record this node knows how to adopt: the file's line of JSON (the whole file
    /// for an older node's).
    pub(super) fn read(path: &Path) -> Option<InstanceRecord> {
        let record: InstanceRecord = crate::small::parse(path, |text| {
            serde_json::from_str(text.lines().find(|l| l.starts_with('{'))?).ok()
        })?;
        (1..=RECORD_VERSION).contains(&record.version).then_some(record)
    }
}

/// The monitor's exit record: how the main process ended and when. It starts at the line
/// `podvisor-exit 1` (the file's first for an older node's `<restart>.exit`) and ends before
/// the instance's record or at the end.
pub(super) fn read_exit(path: &Path, pid: i32) -> Option<(ExitStatus, SystemTime)> {
    crate::small::parse(path, |text| parse_exit(text, pid))
}

/// Parses the exit record in `text` (see [`read_exit`]).
fn parse_exit(text: &str, pid: i32) -> Option<(ExitStatus, SystemTime)> {
    let mut lines = text.lines().skip_while(|l| *l != "podvisor-exit 1");
    lines.next()?;
    let mut status = None;
    let mut finished = None;
    for line in lines.take_while(|l| !l.starts_with('{')) {
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
    process::stat(pid).map(|s| s.start_ticks)
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
    /// Starts waiting for the monitor's end: [`MonitorWatch::gone`], polled beside the
    /// container's supervision in its task, reaps it at once when it is ours, so it is never
    /// left a zombie; `finish` then waits for that.
    pub(super) fn watch(self, procs: &Arc<dyn ProcessOps>) -> MonitorWatch {
        let MonitorHandle {
            pid,
            pidfd,
            own_child,
            exit_path,
        } = self;
        let gone: futures_util::future::BoxFuture<'static, ()> = if own_child {
            let wait = procs.wait_reap(pid, pidfd);
            Box::pin(async move {
                wait.await;
            })
        } else {
            let wait = procs.wait_gone(pid);
            Box::pin(async move {
                wait.await;
            })
        };
        MonitorWatch {
            pid,
            own_child,
            exit_path,
            gone: Some(gone),
        }
    }
}

/// A monitor whose end is being waited for.
pub(super) struct MonitorWatch {
    pid: i32,
    own_child: bool,
    exit_path: PathBuf,
    /// The wait for its end (its reaping, when it is ours); `None` once it ended.
    gone: Option<futures_util::future::BoxFuture<'static, ()>>,
}

impl MonitorWatch {
    /// Resolves when the monitor has ended (and is reaped, when ours); never again after
    /// that. Cancel-safe: the wait stays in the watch.
    pub(super) async fn gone(&mut self) {
        match &mut self.gone {
            Some(wait) => {
                wait.await;
                self.gone = None;
            }
            None => std::future::pending().await,
        }
    }

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
        let gone = match gone {
            None => true,
            Some(wait) => tokio::time::timeout(bound, wait).await.is_ok(),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pid: i32) -> InstanceRecord {
        InstanceRecord {
            version: RECORD_VERSION,
            id: "c-1".into(),
            pod_uid: "u-1".into(),
            container: "main".into(),
            restart_count: 0,
            pid,
            pid_start: 7,
            monitor_pid: pid - 1,
            monitor_start: 6,
            started_at_ms: 1_000,
            cgroup: "main-0".into(),
            oom_kills_before: 0,
            memory_bytes: None,
            cpu_millis: None,
            pids: None,
            log_path: "/x/0.log".into(),
            exit_path: "/x/0.state".into(),
            termination_file: "/x/termination-log".into(),
            fallback_to_logs: false,
            stop_signal: 15,
            stdin: false,
            stdin_once: false,
            tty: false,
            join: vec!["net".into()],
            own_mount_namespace: false,
            env: vec![("A".into(), "a b {c}".into())],
            cwd: "/".into(),
            uid: None,
            gid: None,
        }
    }

    /// What the monitor appends when main process `pid` exited with `code`.
    fn exit_block(pid: i32, code: i32) -> String {
        format!("podvisor-exit 1\npid {pid}\nexited {code}\nfinished 2000000000\n")
    }

    fn append(path: &Path, text: &str) {
        use std::io::Write;
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn the_record_and_the_exit_share_a_file_in_either_order() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let finished = UNIX_EPOCH + Duration::from_secs(2);
        // The node first, then the monitor.
        let first = record_path(dir.path(), 0);
        record(42).write(&first).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_exit(&first, 42), None, "no exit yet");
        append(&first, &exit_block(42, 3));
        // The monitor first (the container ended at once), then the node.
        let second = record_path(dir.path(), 1);
        append(&second, &exit_block(42, 3));
        record(42).write(&second).unwrap_or_else(|e| panic!("{e}"));
        for path in [&first, &second] {
            let read = InstanceRecord::read(path).unwrap_or_else(|| panic!("{}", path.display()));
            assert_eq!((read.pid, read.env.clone()), (42, record(42).env));
            assert_eq!(read_exit(path, 42), Some((ExitStatus::Exited(3), finished)));
            // Another instance's pid is not taken for this one's.
            assert_eq!(read_exit(path, 43), None);
        }
    }

    #[test]
    fn an_older_nodes_record_and_exit_files_are_read() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = dir.path().join("0.state");
        let exit = dir.path().join("0.exit");
        // As the node before wrote them: the JSON alone, the exit record in a file of its own.
        fs::write(&state, serde_json::to_vec(&record(42)).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        fs::write(
            &exit,
            "podvisor-exit 1\npid 42\nsignaled 9\nfinished 2000000000\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(InstanceRecord::read(&state).map(|r| r.pid), Some(42));
        assert_eq!(read_exit(&state, 42), None);
        assert_eq!(
            read_exit(&exit, 42),
            Some((ExitStatus::Signaled(9), UNIX_EPOCH + Duration::from_secs(2)))
        );
    }

    #[test]
    fn an_exit_record_cut_short_is_no_exit() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = record_path(dir.path(), 0);
        record(42).write(&path).unwrap_or_else(|e| panic!("{e}"));
        append(&path, "podvisor-exit 1\npid 42\nexited 0\n");
        assert_eq!(read_exit(&path, 42), None);
        assert!(InstanceRecord::read(&path).is_some());
    }
}
