//! Process plumbing: pidfd exit waits, the child subreaper and the orphan reaper.
//!
//! Reaping rule: the runtime reaps the processes it started itself (their pids are in the
//! process-wide *owned* set from just before spawn until the owner reaped them, so nobody else
//! takes their status). Orphans re-parented to the node (it is a child subreaper) are reaped by
//! `reap_orphans`, which takes only zombie children that are *not* owned and whose process
//! group differs from the node's: processes started directly by other code in the node (which
//! keep the node's process group) are left to their owners, e.g. tokio's process driver.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use podvisor_core::ExitStatus;

use crate::sys::register;

static OWNED: OnceLock<Mutex<HashSet<i32>>> = OnceLock::new();

/// Raises this process's soft limit on open files (`RLIMIT_NOFILE`) to its hard limit (at most
/// the kernel's `fs.nr_open`), as Go programs and containerd do at start: the default soft
/// limit of 1024 is far below what a node serving connections, watches, logs and probes needs.
/// Returns the (previous, current) soft limit.
pub fn raise_open_file_limit() -> io::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    let nr_open = fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard);
    let target = hard.min(nr_open);
    if soft >= target {
        return Ok((soft, soft));
    }
    setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(io::Error::from)?;
    Ok((soft, target))
}

/// The most allocator arenas the node uses (glibc's default is 8 per core). Every arena keeps
/// its own freed memory: with one per thread that ever allocated under contention, a node that
/// ran 2,000 pods held 8 MB more than with two (measured by churning pods on a release node).
pub const ALLOCATOR_ARENAS: i32 = 2;

/// Makes the C allocator hand blocks of 128 KiB and more straight back to the system when they
/// are freed, and caps its arenas at [`ALLOCATOR_ARENAS`]. glibc otherwise raises its mmap
/// threshold after the first large free, then keeps freed large blocks in its per-thread
/// arenas: a node that served a few 1 MiB objects to a few threads held 3x its memory long
/// after (measured by the whole-node soak test). Call it before the node starts threads.
/// Returns whether the allocator took both settings (always false off glibc).
pub fn return_large_frees_to_the_system() -> bool {
    crate::sys::tune_allocator(ALLOCATOR_ARENAS)
}

/// Hands the allocator's free memory back to the system (`malloc_trim`): pages of freed
/// blocks between live ones, which glibc otherwise keeps for reuse in every arena. After 3,000
/// pods a release node held 4.6 MB of such pages (measured with gdb). Returns whether any
/// memory was released (always false off glibc).
pub fn release_free_memory() -> bool {
    crate::sys::trim_allocator()
}

/// Unmaps the node's executable code and read-only data (see [`RELEASE_START_UP_PAGES_AFTER`]);
/// returns the bytes of address space released. The next access maps a page again from the page
/// cache, so only what the process runs afterwards becomes resident again.
pub fn release_executable_pages() -> usize {
    crate::sys::release_executable_pages()
}

/// When the node releases its start-up's pages ([`release_start_up_pages`]).
///
/// Why: the node's resident memory counts every page of its executable it has touched, and
/// start-up touches much that it never runs again (flags, the store's opening, certificates, the
/// OpenAPI document, the dynamic relocations: 3 MB of a 21 MB node with no pods). The code that
/// runs afterwards is mapped again as it runs.
pub const RELEASE_START_UP_PAGES_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Calls [`release_executable_pages`] once, [`RELEASE_START_UP_PAGES_AFTER`] from now, on the
/// blocking pool.
pub fn release_start_up_pages() {
    tokio::spawn(async {
        tokio::time::sleep(RELEASE_START_UP_PAGES_AFTER).await;
        if let Ok(bytes) = tokio::task::spawn_blocking(release_executable_pages).await {
            tracing::debug!(
                bytes,
                "unmapped the executable's pages; what runs maps them again"
            );
        }
    });
}

/// How many arenas the C allocator has now (`None` off glibc): what
/// [`ALLOCATOR_ARENAS`] bounds.
pub fn allocator_arenas() -> Option<usize> {
    crate::sys::allocator_report().map(|r| r.matches("<heap nr=").count())
}

/// How often the node hands free allocator memory back ([`release_free_memory`]).
pub const RELEASE_FREE_MEMORY_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Calls [`release_free_memory`] every [`RELEASE_FREE_MEMORY_EVERY`], on the blocking pool
/// (it briefly locks each arena), until the runtime stops.
pub fn release_free_memory_periodically() {
    tokio::spawn(async {
        let mut every = tokio::time::interval(RELEASE_FREE_MEMORY_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if tokio::task::spawn_blocking(release_free_memory).await.is_err() {
                return;
            }
        }
    });
}

/// The owned set, locked. Hold the guard across `spawn` and the insertion of the new pid.
pub(crate) fn owned() -> MutexGuard<'static, HashSet<i32>> {
    let m = OWNED.get_or_init(|| Mutex::new(HashSet::new()));
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes the node a child subreaper, so orphaned descendants of containers become its children
/// (and can be reaped) instead of init's. Returns whether it worked.
pub(crate) fn become_subreaper() -> bool {
    nix::sys::prctl::set_child_subreaper(true).is_ok()
}

pub(crate) use crate::sys::pidfd_open;

/// Whether pidfds work here.
pub(crate) fn pidfd_supported() -> bool {
    pidfd_open(std::process::id() as i32).is_ok()
}

/// Waits until process `pid` (one of ours) has exited, reaps it and returns its status.
/// Uses the pidfd (no polling); without one, a blocking `waitpid` on the blocking pool.
/// The pid is removed from the owned set once reaped.
pub(crate) async fn wait_reap(pid: i32, pidfd: Option<OwnedFd>) -> ExitStatus {
    let status = match pidfd.and_then(|fd| register(fd).ok()) {
        Some(afd) => loop {
            if let Ok(mut guard) = afd.readable().await {
                match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => guard.clear_ready(),
                    other => break other,
                }
            } else {
                break waitpid(Pid::from_raw(pid), None);
            }
        },
        None => tokio::task::spawn_blocking(move || waitpid(Pid::from_raw(pid), None))
            .await
            .unwrap_or(Err(Errno::ECHILD)),
    };
    owned().remove(&pid);
    match status {
        Ok(WaitStatus::Exited(_, code)) => ExitStatus::Exited(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => ExitStatus::Signaled(sig as i32),
        // Someone else reaped it: the status is lost.
        _ => ExitStatus::Exited(-1),
    }
}

/// Waits (without reaping) until `pid` has exited, through a pidfd; `false` if it could not.
pub(crate) async fn wait_gone(pid: i32) -> bool {
    let Ok(fd) = pidfd_open(pid) else { return true };
    match register(fd) {
        Ok(afd) => afd.readable().await.is_ok(),
        Err(_) => false,
    }
}

/// One `/proc/<pid>/stat` entry.
#[derive(Clone, Copy, Debug)]
pub struct ProcStat {
    /// The process.
    pub pid: i32,
    /// Its state letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Its parent.
    pub ppid: i32,
    /// Its process group.
    pub pgrp: i32,
    /// Its session.
    pub session: i32,
    /// The major page faults it and its reaped children took (fields 12 and 13).
    pub major_faults: u64,
    /// When it started, in clock ticks since boot (field 22): with the pid, which process
    /// this is (a reused pid has another start).
    pub start_ticks: u64,
    /// The CPU it and its reaped children spent, in clock ticks (fields 14 to 17).
    pub cpu_ticks: u64,
    /// Its resident set, in pages (field 24).
    pub rss_pages: u64,
}

/// Process `pid`'s `/proc/<pid>/stat`, if it lives (a zombie has one too), read with one
/// `read`: the one parser of the file (the benchmark harness's too).
pub fn stat(pid: i32) -> Option<ProcStat> {
    crate::small::parse(Path::new(&format!("/proc/{pid}/stat")), |text| {
        parse_stat(pid, text)
    })
}

/// Parses a `/proc/<pid>/stat` line.
fn parse_stat(pid: i32, text: &str) -> Option<ProcStat> {
    // The command name may contain spaces and parentheses: parse after the last ')'.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let mut f = rest.split(' ');
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    let session = f.next()?.parse().ok()?;
    // Fields 7 to 11 lie between the session (6) and the major faults (12 and 13).
    f.nth(4)?;
    let mut major_faults = 0u64;
    for _ in 12..=13 {
        major_faults = major_faults.saturating_add(f.next()?.parse().unwrap_or(0));
    }
    let mut cpu_ticks = 0u64;
    for _ in 14..=17 {
        // Signed in the kernel's format; never negative in practice.
        cpu_ticks = cpu_ticks.saturating_add(f.next()?.parse().unwrap_or(0));
    }
    // Fields 18 to 21 lie between them and the start time (22); the size (23) before the RSS.
    let start_ticks = f.nth(4)?.parse().ok()?;
    let rss_pages = f.nth(1)?.parse().unwrap_or(0);
    Some(ProcStat {
        pid,
        state,
        ppid,
        pgrp,
        session,
        major_faults,
        start_ticks,
        cpu_ticks,
        rss_pages,
    })
}

/// Every process on the machine.
pub(crate) fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter_map(stat)
        .collect()
}

/// This process's children that nobody owns: from `/proc/self/task/*/children` (no scan of
/// every process), or, where the kernel does not provide those files, from a scan of `/proc`.
/// Owned ones (every running container and sandbox holder) are left out before their `stat`
/// is read.
fn unowned_children() -> Vec<ProcStat> {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return all_processes();
    };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        match fs::read_to_string(task.path().join("children")) {
            Ok(list) => pids.extend(list.split_whitespace().filter_map(|p| p.parse::<i32>().ok())),
            Err(_) => return all_processes(),
        }
    }
    pids.sort_unstable();
    pids.dedup();
    {
        let owned = owned();
        pids.retain(|p| !owned.contains(p));
    }
    pids.into_iter().filter_map(stat).collect()
}

/// Reaps zombie children that nobody owns and that are not in the node's process group.
pub(crate) fn reap_orphans() -> usize {
    let me = std::process::id() as i32;
    let my_pgrp = nix::unistd::getpgrp().as_raw();
    let mut reaped = 0;
    let candidates: Vec<ProcStat> = unowned_children()
        .into_iter()
        .filter(|p| p.ppid == me && p.state == 'Z' && p.pgrp != my_pgrp)
        .collect();
    if candidates.is_empty() {
        return 0;
    }
    let owned = owned();
    for p in candidates {
        if owned.contains(&p.pid) {
            continue;
        }
        if matches!(waitpid(Pid::from_raw(p.pid), Some(WaitPidFlag::WNOHANG)), Ok(s) if s != WaitStatus::StillAlive)
        {
            reaped += 1;
        }
    }
    reaped
}

/// Reaps the zombie children of process group `pgid` (a container's, whose leader was
/// already reaped by its owner): one `waitpid` each, no `/proc` reading.
///
/// Each zombie is looked at first without reaping it, and one that is owned (the group's
/// number taken again by a process of ours after the group died) is left to its owner.
pub(crate) fn reap_group(pgid: i32) {
    use nix::sys::wait::{Id, waitid};
    let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    while let Ok(status) = waitid(Id::PGid(Pid::from_raw(pgid)), peek) {
        let Some(pid) = status.pid() else { break };
        if owned().contains(&pid.as_raw()) {
            break;
        }
        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    }
}

/// How often at most the orphan reaper scans. Every exec probe's exit raises SIGCHLD; scanning
/// on each one cost more CPU than the probes themselves at a few hundred execs per second.
/// Signals that arrive in between are coalesced into the next scan.
const REAP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Reaps orphans when SIGCHLD arrives (at most every [`REAP_INTERVAL`]), for as long as the
/// tokio runtime lives.
pub(crate) fn spawn_orphan_reaper() {
    let Ok(mut sig) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) else {
        tracing::warn!("cannot listen for SIGCHLD; orphans are reaped only when their container ends");
        return;
    };
    tokio::spawn(async move {
        // The scan waits out the interval first: it reads a file per thread of the node, and
        // the exit that raised the signal is being handled right then (a restart, a
        // container's end) on the node's other threads.
        while sig.recv().await.is_some() {
            tokio::time::sleep(REAP_INTERVAL).await;
            reap_orphans();
        }
    });
}

/// The processes of group or session `leader` (a container's or exec's main pid), excluding
/// the node itself.
pub(crate) fn group_members(leader: i32) -> Vec<i32> {
    let me = std::process::id() as i32;
    all_processes()
        .into_iter()
        .filter(|p| p.pid != me && p.state != 'Z' && (p.pgrp == leader || p.session == leader))
        .map(|p| p.pid)
        .collect()
}

/// Sends `signal` to process group `pgid`, ignoring "no such process".
pub(crate) fn signal_group(pgid: i32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pgid), signal);
}

/// SIGKILLs one pid, ignoring errors.
pub(crate) fn kill_pid(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Reaps `pid` if it is a zombie child of ours (after it was killed) that nobody owns.
pub(crate) fn reap_if_child(pid: i32) {
    if owned().contains(&pid) {
        return;
    }
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

/// SIGKILLs a process group and every remaining member of it (by group or session), and says
/// whether there was anything to kill. When the group is already empty and the leader is gone,
/// `/proc` is not scanned (the common end of an exec probe).
pub(crate) fn kill_tree(leader: i32) -> bool {
    let group_gone = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(leader), Signal::SIGKILL)
        == Err(nix::errno::Errno::ESRCH);
    if group_gone && nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(leader))).is_err() {
        return false;
    }
    for p in group_members(leader) {
        kill_pid(p);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_an_odd_name_gives_its_fields_and_start_time() {
        let line = "42 (a (b) c) S 1 40 41 0 -1 4194560 100 0 5 6 7 3 2 1 20 0 1 0 98765 1000000 250 18446744073709551615\n";
        let stat = parse_stat(42, line).unwrap_or_else(|| panic!("{line}"));
        assert_eq!((stat.state, stat.ppid, stat.pgrp, stat.session), ('S', 1, 40, 41));
        assert_eq!(stat.start_ticks, 98765);
        assert_eq!((stat.cpu_ticks, stat.rss_pages), (7 + 3 + 2 + 1, 250));
        assert_eq!(stat.major_faults, 5 + 6);
        assert!(parse_stat(42, "42 (cut) S 1 40 41 0").is_none());
        assert!(parse_stat(42, "garbage").is_none());
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a plain test thread
    fn a_sleeping_child_reads_as_asleep_with_this_process_as_its_parent() {
        let _children = crate::TEST_CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen = stat(pid).unwrap_or_else(|| panic!("no stat of {pid}"));
        while seen.state != 'S' && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            seen = stat(pid).unwrap_or_else(|| panic!("no stat of {pid}"));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(seen.state, 'S', "{seen:?}");
        assert_eq!(u32::try_from(seen.ppid), Ok(std::process::id()));
        assert!(stat(i32::MAX).is_none());
    }

    #[test]
    fn this_process_has_a_start_time() {
        let pid = i32::try_from(std::process::id()).unwrap_or_else(|e| panic!("{e}"));
        let first = stat(pid).unwrap_or_else(|| panic!("no stat for {pid}"));
        assert_eq!(first.pid, pid);
        assert!(first.start_ticks > 0);
        assert_eq!(
            stat(pid).map(|s| s.start_ticks),
            Some(first.start_ticks),
            "the same process"
        );
    }
}
