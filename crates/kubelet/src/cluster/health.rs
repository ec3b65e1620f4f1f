//! The Node's conditions, measured: MemoryPressure, DiskPressure and PIDPressure from the
//! machine's free memory, the data dir's file system and the process table against the
//! kubelet's default hard-eviction thresholds, and Ready from whether the runtime can work
//! (its data dir writable). `cluster-semantics.md` §2.4 has the reasons and messages.
//!
//! [`measure`] reads the machine through [`HostOps`]; [`conditions`] is pure, so every threshold is tested without
//! filling a disk.

use std::path::Path;

use podvisor_core::host::HostOps;

/// `memory.available<100Mi`: the kubelet's default hard-eviction threshold for memory.
pub const MEMORY_AVAILABLE_MIN: u64 = 100 * 1024 * 1024;
/// `nodefs.available<10%`.
pub const NODEFS_AVAILABLE_MIN_PERCENT: u64 = 10;
/// `nodefs.inodesFree<5%`.
pub const NODEFS_INODES_FREE_MIN_PERCENT: u64 = 5;
/// `pid.available`: the kubelet has no default threshold for it; podvisor uses 5% of the
/// machine's pid limit, so a fork bomb shows on the Node before the machine stops forking.
pub const PIDS_AVAILABLE_MIN_PERCENT: u64 = 5;

/// What [`measure`] read; `None` where it could not be read (the condition stays False then, as
/// the kubelet's does for a signal it cannot observe).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measured {
    /// `MemAvailable` of `/proc/meminfo`, in bytes.
    pub memory_available: Option<u64>,
    /// The data dir's file system: (available bytes, size in bytes).
    pub nodefs_bytes: Option<(u64, u64)>,
    /// The data dir's file system: (free inodes, inodes).
    pub nodefs_inodes: Option<(u64, u64)>,
    /// (processes and threads now, the most the machine allows).
    pub pids: Option<(u64, u64)>,
    /// Why the runtime cannot work, if it cannot.
    pub runtime_error: Option<String>,
}

/// One condition as the Node shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `MemoryPressure`, `DiskPressure`, `PIDPressure` or `Ready`.
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: &'static str,
    /// The kubelet's reason.
    pub reason: &'static str,
    /// The kubelet's message.
    pub message: String,
}

fn below_percent(part: u64, whole: u64, percent: u64) -> bool {
    whole > 0 && u128::from(part) * 100 < u128::from(whole) * u128::from(percent)
}

/// The Node's conditions from what was measured, in the kubelet's order (Ready last).
pub fn conditions(m: &Measured) -> Vec<Condition> {
    let pressure = |type_, under: bool, yes: (&'static str, &str), no: (&'static str, &str)| {
        let (status, (reason, message)) = if under { ("True", yes) } else { ("False", no) };
        Condition {
            type_,
            status,
            reason,
            message: message.to_owned(),
        }
    };
    let memory = m.memory_available.is_some_and(|a| a < MEMORY_AVAILABLE_MIN);
    let disk = m
        .nodefs_bytes
        .is_some_and(|(avail, size)| below_percent(avail, size, NODEFS_AVAILABLE_MIN_PERCENT))
        || m.nodefs_inodes
            .is_some_and(|(free, all)| below_percent(free, all, NODEFS_INODES_FREE_MIN_PERCENT));
    let pids = m
        .pids
        .is_some_and(|(used, max)| below_percent(max.saturating_sub(used), max, PIDS_AVAILABLE_MIN_PERCENT));
    let ready = match &m.runtime_error {
        None => Condition {
            type_: "Ready",
            status: "True",
            reason: "KubeletReady",
            message: "kubelet is posting ready status".into(),
        },
        Some(error) => Condition {
            type_: "Ready",
            status: "False",
            reason: "KubeletNotReady",
            message: format!("container runtime is down: {error}"),
        },
    };
    vec![
        pressure(
            "MemoryPressure",
            memory,
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
        ),
        pressure(
            "DiskPressure",
            disk,
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        pressure(
            "PIDPressure",
            pids,
            (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ),
        ready,
    ]
}

/// Reads the machine through `host`: memory, the file system holding `data_dir`, the process
/// table, and whether the runtime can write its data dir (a file created, synced and removed).
pub fn measure(host: &dyn HostOps, data_dir: &Path) -> Measured {
    let fs = host.fs_usage(data_dir).ok();
    Measured {
        memory_available: host.memory_available(),
        nodefs_bytes: fs.map(|s| (s.bytes_available, s.bytes_total)),
        nodefs_inodes: fs
            .filter(|s| s.inodes_total > 0)
            .map(|s| (s.inodes_free, s.inodes_total)),
        pids: host.pids(),
        runtime_error: runtime_error(data_dir),
    }
}

/// Whether the runtime can work: its data dir takes a new file.
fn runtime_error(data_dir: &Path) -> Option<String> {
    use std::io::Write;
    let probe = data_dir.join(".health");
    let written = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(b"ok")?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written
        .err()
        .map(|e| format!("cannot write the data dir {}: {e}", data_dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use podvisor_core::host::FsUsage;
    use podvisor_test_support::fakes::FakeHost;

    fn healthy() -> Measured {
        Measured {
            memory_available: Some(8 << 30),
            nodefs_bytes: Some((50 << 30, 100 << 30)),
            nodefs_inodes: Some((900_000, 1_000_000)),
            pids: Some((500, 32_768)),
            runtime_error: None,
        }
    }

    fn statuses(m: &Measured) -> Vec<(&'static str, &'static str, &'static str)> {
        conditions(m)
            .into_iter()
            .map(|c| (c.type_, c.status, c.reason))
            .collect()
    }

    #[test]
    fn a_healthy_machine_has_no_pressure_and_is_ready() {
        assert_eq!(
            statuses(&healthy()),
            [
                ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID"),
                ("Ready", "True", "KubeletReady"),
            ]
        );
    }

    #[test]
    fn each_threshold_turns_its_condition_true() {
        let mut m = healthy();
        m.memory_available = Some(MEMORY_AVAILABLE_MIN - 1);
        assert_eq!(
            statuses(&m)[0],
            ("MemoryPressure", "True", "KubeletHasInsufficientMemory")
        );
        m.memory_available = Some(MEMORY_AVAILABLE_MIN);
        assert_eq!(
            statuses(&m)[0].1,
            "False",
            "at the threshold there is no pressure"
        );

        let mut m = healthy();
        m.nodefs_bytes = Some((9, 100));
        assert_eq!(
            statuses(&m)[1],
            ("DiskPressure", "True", "KubeletHasDiskPressure")
        );
        m.nodefs_bytes = Some((10, 100));
        assert_eq!(statuses(&m)[1].1, "False");
        m.nodefs_inodes = Some((4, 100));
        assert_eq!(statuses(&m)[1].1, "True", "inodes count too");

        let mut m = healthy();
        m.pids = Some((32_000, 32_768));
        assert_eq!(
            statuses(&m)[2],
            ("PIDPressure", "True", "KubeletHasInsufficientPID")
        );

        let mut m = healthy();
        m.runtime_error = Some("cannot write the data dir /x: read-only".into());
        let ready = conditions(&m).pop().unwrap();
        assert_eq!((ready.status, ready.reason), ("False", "KubeletNotReady"));
        assert_eq!(
            ready.message,
            "container runtime is down: cannot write the data dir /x: read-only"
        );
    }

    #[test]
    fn what_cannot_be_read_is_no_pressure() {
        let m = Measured::default();
        assert!(conditions(&m)[..3].iter().all(|c| c.status == "False"));
    }

    fn usage((bytes_available, bytes_total): (u64, u64), (inodes_free, inodes_total): (u64, u64)) -> FsUsage {
        FsUsage {
            bytes_available,
            bytes_total,
            inodes_free,
            inodes_total,
        }
    }

    #[test]
    fn measuring_maps_the_host_figures_and_checks_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::default();
        host.set_memory_available(Some(64 << 20));
        host.set_pids(Some((500, 32_768)));
        host.set_fs_usage(Some(usage((5, 100), (90, 100))));
        let m = measure(&host, dir.path());
        assert_eq!(
            m,
            Measured {
                memory_available: Some(64 << 20),
                nodefs_bytes: Some((5, 100)),
                nodefs_inodes: Some((90, 100)),
                pids: Some((500, 32_768)),
                runtime_error: None,
            }
        );
        assert_eq!(
            statuses(&m)[..2],
            [
                ("MemoryPressure", "True", "KubeletHasInsufficientMemory"),
                ("DiskPressure", "True", "KubeletHasDiskPressure"),
            ]
        );
        // A file system without an inode table has no inode signal.
        host.set_fs_usage(Some(usage((50, 100), (0, 0))));
        let m = measure(&host, dir.path());
        assert_eq!((m.nodefs_bytes, m.nodefs_inodes), (Some((50, 100)), None));
        assert_eq!(statuses(&m)[1].1, "False");
        // What the host cannot read stays unmeasured.
        host.set_fs_usage(None);
        assert_eq!(measure(&host, dir.path()).nodefs_bytes, None);
        let gone = dir.path().join("missing");
        let error = measure(&host, &gone).runtime_error.unwrap_or_default();
        assert!(error.starts_with("cannot write the data dir"), "{error}");
    }
}
