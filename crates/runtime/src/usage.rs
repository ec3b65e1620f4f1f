//! Resource usage counters as `kubectl top` needs them (rules 6.6 and 6.7 of the streaming
//! spec): a container's from its cgroup files, or, without a cgroup, summed over its
//! processes from `/proc`; the node's from `/proc/stat` and `/proc/meminfo`.
//!
//! The `/proc` figures are approximations: CPU is `utime + stime + cutime + cstime` of the
//! processes alive now (time of children that ended and were reaped by one of them is counted
//! through `cutime`/`cstime`; children reaped elsewhere are lost), and memory is their summed
//! RSS (shared pages counted once per process). Not here: rates (the metrics API turns two
//! samples into one) and which container is which (the runtime).

use std::ffi::CStr;
use std::fs;
use std::os::fd::OwnedFd;

use podvisor_core::usage::UsageSample;

use crate::process::{self, ProcStat};
use crate::small;

/// The value of `key` in a flat-keyed cgroup file (`cpu.stat`, `memory.stat`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn read_u64(dir: &OwnedFd, name: &CStr) -> Option<u64> {
    small::parse_in(dir, name, |text| text.trim().parse().ok())
}

// The group's directory is a descriptor the container's cgroup keeps (`ContainerCgroup`):
// each file is then one step from it, not a walk of the whole cgroupfs path.

/// Cumulative CPU of a cgroup v2 group: `cpu.stat` `usage_usec` × 1000.
pub(crate) fn v2_cpu_ns(dir: &OwnedFd) -> Option<u64> {
    small::parse_in(dir, c"cpu.stat", |text| keyed(text, "usage_usec")).map(|us| us.saturating_mul(1000))
}

/// Working set of a cgroup v2 group: `memory.current − memory.stat:inactive_file`, floored at 0.
pub(crate) fn v2_working_set(dir: &OwnedFd) -> Option<u64> {
    let current = read_u64(dir, c"memory.current")?;
    let inactive = small::parse_in(dir, c"memory.stat", |text| Some(keyed(text, "inactive_file")))?;
    Some(current.saturating_sub(inactive.unwrap_or(0)))
}

/// Working set of a cgroup v1 memory group: `memory.usage_in_bytes − total_inactive_file`.
pub(crate) fn v1_working_set(dir: &OwnedFd) -> Option<u64> {
    let usage = read_u64(dir, c"memory.usage_in_bytes")?;
    let inactive = small::parse_in(dir, c"memory.stat", |text| {
        Some(keyed(text, "total_inactive_file"))
    })?;
    Some(usage.saturating_sub(inactive.unwrap_or(0)))
}

fn clock_ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// The system's page size in bytes (4096 when it cannot be read).
pub(crate) fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(4096)
}

/// The approximate counters of processes `pids` from `/proc` (see the module docs); `None`
/// when none of them could be read.
pub(crate) fn processes(pids: &[i32]) -> Option<UsageSample> {
    let per_tick = 1_000_000_000 / clock_ticks_per_second();
    let page = page_size();
    let mut seen = false;
    let mut sample = UsageSample {
        cpu_ns: 0,
        working_set_bytes: 0,
    };
    for pid in pids {
        let Some(ProcStat {
            cpu_ticks: ticks,
            rss_pages: rss,
            ..
        }) = process::stat(*pid)
        else {
            continue;
        };
        seen = true;
        sample.cpu_ns = sample.cpu_ns.saturating_add(ticks.saturating_mul(per_tick));
        sample.working_set_bytes = sample.working_set_bytes.saturating_add(rss.saturating_mul(page));
    }
    seen.then_some(sample)
}

/// The node's non-idle CPU time from the first line of `/proc/stat`, in ticks: user, nice,
/// system, irq, softirq and steal (guest time is inside user and nice already).
fn non_idle_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(
        [0, 1, 2, 5, 6, 7]
            .into_iter()
            .map(at)
            .fold(0u64, u64::saturating_add),
    )
}

/// `MemTotal − MemAvailable` of `/proc/meminfo`, in bytes.
fn memory_in_use(meminfo: &str) -> Option<u64> {
    let kib = |key: &str| {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some(
        kib("MemTotal")?
            .saturating_sub(kib("MemAvailable")?)
            .saturating_mul(1024),
    )
}

/// The whole node's counters (rule 6.7): `/proc/stat` non-idle time and `MemTotal −
/// MemAvailable`.
pub(crate) fn node() -> Option<UsageSample> {
    let ticks = non_idle_ticks(&fs::read_to_string("/proc/stat").ok()?)?;
    let memory = memory_in_use(&fs::read_to_string("/proc/meminfo").ok()?)?;
    Some(UsageSample {
        cpu_ns: ticks.saturating_mul(1_000_000_000 / clock_ticks_per_second()),
        working_set_bytes: memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dir` opened as the container's cgroup opens its groups.
    fn open(dir: &tempfile::TempDir) -> OwnedFd {
        crate::cgroup::open_dir(dir.path()).unwrap_or_else(|| panic!("opening {}", dir.path().display()))
    }

    #[test]
    fn cgroup_v2_files_give_cpu_and_working_set() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        fs::write(dir.path().join("memory.current"), "10000\n").unwrap_or_else(|e| panic!("{e}"));
        fs::write(
            dir.path().join("memory.stat"),
            "anon 4000\nfile 6000\ninactive_file 2500\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let fd = open(&dir);
        assert_eq!(v2_cpu_ns(&fd), Some(1_500_000));
        assert_eq!(v2_working_set(&fd), Some(7500));
        // Floored at 0.
        fs::write(dir.path().join("memory.stat"), "inactive_file 20000\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v2_working_set(&fd), Some(0));
        assert_eq!(v1_working_set(&fd), None, "no v1 files here");
    }

    #[test]
    fn a_v1_memory_stat_longer_than_the_read_buffer_is_read_whole() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        fs::write(dir.path().join("memory.usage_in_bytes"), "10000\n").unwrap_or_else(|e| panic!("{e}"));
        let mut stat: String = (0..400).map(|i| format!("filler_{i} {i}\n")).collect();
        assert!(stat.len() > 4096, "the file must not fit the stack buffer");
        stat.push_str("total_inactive_file 2500\n");
        fs::write(dir.path().join("memory.stat"), stat).unwrap_or_else(|e| panic!("{e}"));
        let fd = open(&dir);
        assert_eq!(v1_working_set(&fd), Some(7500));
        assert_eq!(read_u64(&fd, c"memory.usage_in_bytes"), Some(10000));
        assert_eq!(read_u64(&fd, c"missing"), None);
    }

    #[test]
    fn node_cpu_is_non_idle_time_and_memory_is_total_less_available() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(non_idle_ticks(stat), Some(100 + 5 + 50 + 3 + 2 + 1));
        let meminfo = "MemTotal:       16000 kB\nMemFree:   1000 kB\nMemAvailable:    6000 kB\n";
        assert_eq!(memory_in_use(meminfo), Some(10000 * 1024));
        assert_eq!(memory_in_use("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn this_process_and_the_node_have_counters() {
        let me = processes(&[std::process::id() as i32]).unwrap_or_else(|| panic!("no /proc"));
        assert!(me.working_set_bytes > 0);
        assert_eq!(processes(&[i32::MAX]), None);
        let node = node().unwrap_or_else(|| panic!("no /proc"));
        assert!(node.cpu_ns > 0 && node.working_set_bytes > 0);
    }
}
