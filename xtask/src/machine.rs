//! What a test or benchmark run may leave on the machine, and a check that it left nothing.
//!
//! `cargo xtask test` and `cargo xtask bench` take a [`Snapshot`] before they start and compare
//! it with one taken at the end: every cgroup, network interface, named network namespace and
//! nftables table of podvisor's that is new, and every process that is new and either orphaned
//! by the tests or inside a podvisor cgroup, is a leftover, and the run fails naming it. xtask
//! makes itself the child subreaper ([`Snapshot::take_as_reaper`]), so whatever a test orphans
//! becomes xtask's child instead of PID 1's: an orphan is exactly a live child of xtask once its
//! steps have finished.
//! Only podvisor's own names count (cgroups and tables named `podvisor*`, interfaces named
//! `podvisor*`, `pv*` or `veth*`, and in the temporary directory the `podvisor*` entries and
//! the `.tmp*` ones the `tempfile` crate makes for the tests' temporary directories), so what the
//! machine's other users do between the two snapshots is not blamed on the tests. A temporary
//! directory whose removal failed on drop (`TempDir` drops its errors) shows up that way.
#![allow(
    clippy::disallowed_methods,
    reason = "xtask is synchronous: no tokio worker to block"
)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// What of podvisor's is on the machine at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    cgroups: BTreeSet<String>,
    links: BTreeSet<String>,
    netns: BTreeSet<String>,
    nft_tables: BTreeSet<String>,
    /// Entries of the temporary directory named as ours or as `tempfile`'s, as paths.
    temp_files: BTreeSet<String>,
    /// Every process on the machine (pid and start time, so a reused pid is a new process).
    processes: BTreeSet<(u32, u64)>,
}

/// Whether a cgroup or nftables table name is one of podvisor's.
fn ours(name: &str) -> bool {
    name.starts_with("podvisor")
}

/// Whether a network interface name is one podvisor's runtime or tests make.
fn our_link(name: &str) -> bool {
    name.starts_with("podvisor") || name.starts_with("pv") || name.starts_with("veth")
}

impl Snapshot {
    /// Makes this process the subreaper of everything it starts from now on (see the module
    /// docs), then reads the machine.
    pub(crate) fn take_as_reaper() -> Snapshot {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            eprintln!("==> leftover check: cannot become the child subreaper ({e}); orphans are not seen");
        }
        Snapshot::take()
    }

    /// Reads the machine now. Parts that cannot be read (no `nft`, no cgroup mount) are empty.
    pub(crate) fn take() -> Snapshot {
        Snapshot {
            cgroups: cgroups(),
            links: names_in(Path::new("/sys/class/net"), our_link),
            netns: names_in(Path::new("/run/netns"), |_| true),
            nft_tables: nft_tables(),
            temp_files: temp_files(&std::env::temp_dir()),
            processes: processes().into_iter().map(|p| (p.pid, p.start)).collect(),
        }
    }

    /// What is in `after` and was not in `self`, as lines for the user; empty when nothing was
    /// left. Waits up to `settle` for leftovers to go (teardown finishing in the background).
    pub(crate) fn leftovers(&self, settle: Duration) -> Vec<String> {
        let deadline = Instant::now() + settle;
        loop {
            reap_zombies();
            let found = self.compare(&Snapshot::take(), &processes());
            if found.is_empty() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn compare(&self, after: &Snapshot, processes: &[Process]) -> Vec<String> {
        let mut found = Vec::new();
        let new = |what: &str, before: &BTreeSet<String>, now: &BTreeSet<String>| {
            now.difference(before)
                .map(|name| format!("{what} {name}"))
                .collect::<Vec<_>>()
        };
        found.extend(new("cgroup", &self.cgroups, &after.cgroups));
        found.extend(new("network interface", &self.links, &after.links));
        found.extend(new("network namespace", &self.netns, &after.netns));
        found.extend(new("nftables table", &self.nft_tables, &after.nft_tables));
        found.extend(new("temporary file", &self.temp_files, &after.temp_files));
        let me = std::process::id();
        for process in processes {
            if self.processes.contains(&(process.pid, process.start)) {
                continue;
            }
            if process.ppid == me || process.cgroup.contains("podvisor") {
                let mut line = format!("process {} ({})", process.pid, process.cmdline);
                if process.ppid == me {
                    line.push_str(", orphaned");
                }
                if !process.cgroup.is_empty() {
                    let _ = write!(line, ", cgroup {}", process.cgroup);
                }
                found.push(line);
            }
        }
        found
    }
}

/// Reaps the orphans that already exited, so only live ones count.
fn reap_zombies() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// podvisor's cgroup directories: `podvisor*` directly under the v2 root or under a v1
/// controller's hierarchy (one level deeper), as paths relative to `/sys/fs/cgroup`.
fn cgroups() -> BTreeSet<String> {
    let root = Path::new("/sys/fs/cgroup");
    let mut found = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_dir() {
            continue;
        }
        if ours(&name) {
            found.insert(name);
        } else if let Ok(inner) = std::fs::read_dir(entry.path()) {
            for sub in inner.flatten() {
                let sub_name = sub.file_name().to_string_lossy().into_owned();
                if ours(&sub_name) && sub.path().is_dir() {
                    found.insert(format!("{name}/{sub_name}"));
                }
            }
        }
    }
    found
}

fn names_in(dir: &Path, keep: impl Fn(&str) -> bool) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| keep(name))
                .collect()
        })
        .unwrap_or_default()
}

/// The entries of `dir` named as ours (`podvisor*`, as the benchmarks' node directories) or as
/// the `tempfile` crate names what it makes (`.tmp` and random characters), as paths.
fn temp_files(dir: &Path) -> BTreeSet<String> {
    names_in(dir, |name| name.starts_with(".tmp") || ours(name))
        .into_iter()
        .map(|name| dir.join(name).display().to_string())
        .collect()
}

/// podvisor's nftables tables (`table ip podvisor...` lines of `nft list tables`).
fn nft_tables() -> BTreeSet<String> {
    let Ok(out) = Command::new("nft").args(["list", "tables"]).output() else {
        return BTreeSet::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let name = line.split_whitespace().last()?;
            ours(name).then(|| line.trim().to_owned())
        })
        .collect()
}

struct Process {
    pid: u32,
    ppid: u32,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    start: u64,
    cgroup: String,
    cmdline: String,
}

fn processes() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            if pid == me {
                return None;
            }
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The command name may hold spaces and parentheses: fields follow the last ')'.
            let rest = stat.get(stat.rfind(')')? + 2..)?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // `rest` starts at field 3 (state): ppid is field 4, starttime field 22.
            let ppid = fields.get(1)?.parse().ok()?;
            let start = fields.get(19)?.parse().ok()?;
            if fields.first() == Some(&"Z") {
                return None;
            }
            let cgroup = std::fs::read_to_string(entry.path().join("cgroup"))
                .unwrap_or_default()
                .lines()
                .find(|l| l.contains("podvisor"))
                .map(|l| l.rsplit(':').next().unwrap_or(l).to_owned())
                .unwrap_or_default();
            let cmdline = std::fs::read(entry.path().join("cmdline"))
                .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " ").trim().to_owned())
                .unwrap_or_default();
            Some(Process {
                pid,
                ppid,
                start,
                cgroup,
                cmdline,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_cgroup_link_or_table_of_ours_is_a_leftover_and_others_are_not() {
        let before = Snapshot::default();
        let mut after = Snapshot::default();
        after.cgroups.insert("podvisor-e2e-1234".into());
        after.links.insert("pvt12x3".into());
        after.nft_tables.insert("table ip podvisor_svc_1".into());
        after.temp_files.insert("/tmp/.tmpAbC123".into());
        let found = before.compare(&after, &[]);
        assert!(
            found.contains(&"cgroup podvisor-e2e-1234".to_owned()),
            "{found:?}"
        );
        assert!(
            found.contains(&"network interface pvt12x3".to_owned()),
            "{found:?}"
        );
        assert!(
            found.contains(&"nftables table table ip podvisor_svc_1".to_owned()),
            "{found:?}"
        );
        assert!(
            found.contains(&"temporary file /tmp/.tmpAbC123".to_owned()),
            "{found:?}"
        );
        // What was there before is not blamed.
        assert!(after.compare(&after, &[]).is_empty());
    }

    /// A temporary directory that was not removed is found; other names are not ours.
    #[test]
    fn a_tempfile_entry_left_in_the_temporary_directory_is_seen() {
        let parent = std::env::temp_dir().join(format!("podvisor-xtask-{}", std::process::id()));
        let kept = parent.join(".tmpAbC123");
        let bench = parent.join("podvisor-bench-XyZ");
        std::fs::create_dir_all(&kept).unwrap();
        std::fs::create_dir_all(&bench).unwrap();
        std::fs::write(parent.join("someone-elses"), "").unwrap();
        let found = temp_files(&parent);
        std::fs::remove_dir_all(&parent).unwrap();
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [kept.display().to_string(), bench.display().to_string()]
        );
    }

    #[test]
    fn a_new_orphan_or_a_process_in_our_cgroup_is_a_leftover() {
        let process = |pid, ppid, cgroup: &str| Process {
            pid,
            ppid,
            start: 7,
            cgroup: cgroup.into(),
            cmdline: "sleep 3600".into(),
        };
        let mut before = Snapshot::default();
        before.processes.insert((10, 7));
        let me = std::process::id();
        let now = [
            process(10, me, ""),                       // there before: not blamed
            process(11, me, ""),                       // new, orphaned onto xtask
            process(12, 5, "/podvisor-e2e-1/pod/ctr"), // new, in our cgroup
            process(13, 1, "/user.slice"),             // new, someone else's
        ];
        let found = before.compare(&Snapshot::default(), &now);
        assert_eq!(
            found,
            [
                "process 11 (sleep 3600), orphaned",
                "process 12 (sleep 3600), cgroup /podvisor-e2e-1/pod/ctr",
            ]
        );
        assert!(our_link("veth1") && our_link("podvisor0") && !our_link("eth0"));
    }
}
