//! [`LinuxHost`]: the kubelet's [`HostOps`] on this machine (tmpfs mounts through `mount(2)`,
//! the mount table from `/proc/self/mountinfo`, `statvfs`, `/proc/meminfo`, `/proc/loadavg`).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use podvisor_core::host::{FsUsage, HostOps};

use crate::mounts;

/// The machine itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxHost;

impl HostOps for LinuxHost {
    fn mount_tmpfs(&self, dir: &Path, size: Option<u64>) -> io::Result<()> {
        let options = match size {
            Some(bytes) => format!("mode=0777,size={bytes}"),
            None => "mode=0777".into(),
        };
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )?;
        Ok(())
    }

    fn unmount(&self, dir: &Path) -> io::Result<()> {
        umount2(dir, MntFlags::MNT_DETACH)?;
        Ok(())
    }

    fn is_mount_point(&self, dir: &Path) -> bool {
        match (fs::metadata(dir), dir.parent().map(fs::metadata)) {
            (Ok(d), Some(Ok(parent))) => d.dev() != parent.dev(),
            _ => false,
        }
    }

    fn mount_points_under(&self, root: &Path) -> Vec<PathBuf> {
        mounts::mount_points(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
            .into_iter()
            .filter(|p| p.starts_with(root) && p != root)
            .collect()
    }

    fn fs_usage(&self, path: &Path) -> io::Result<FsUsage> {
        let s = nix::sys::statvfs::statvfs(path)?;
        let unit = s.fragment_size();
        Ok(FsUsage {
            bytes_available: s.blocks_available().saturating_mul(unit),
            bytes_total: s.blocks().saturating_mul(unit),
            inodes_free: s.files_available(),
            inodes_total: s.files(),
        })
    }

    fn memory_available(&self) -> Option<u64> {
        fs::read_to_string("/proc/meminfo")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib.saturating_mul(1024))
    }

    fn pids(&self) -> Option<(u64, u64)> {
        // The fourth field of /proc/loadavg is "runnable/total" scheduling entities (threads).
        let threads = fs::read_to_string("/proc/loadavg").ok().and_then(|l| {
            l.split_whitespace()
                .nth(3)?
                .split_once('/')?
                .1
                .parse::<u64>()
                .ok()
        });
        let pid_max = fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        threads.zip(pid_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_reports_every_figure() {
        let dir = tempfile::tempdir().unwrap();
        let host = LinuxHost;
        assert!(host.memory_available().is_some_and(|a| a > 0));
        let usage = host.fs_usage(dir.path()).unwrap();
        assert!(
            usage.bytes_total > 0 && usage.bytes_available <= usage.bytes_total,
            "{usage:?}"
        );
        assert!(host.pids().is_some_and(|(used, max)| used > 0 && used < max));
        assert!(host.fs_usage(&dir.path().join("missing")).is_err());
        assert!(!host.is_mount_point(dir.path()));
        assert!(host.is_mount_point(Path::new("/proc")));
        assert!(host.mount_points_under(dir.path()).is_empty());
        let proc_mounts = host.mount_points_under(Path::new("/proc"));
        assert!(
            proc_mounts
                .iter()
                .all(|p| p.starts_with("/proc") && p != Path::new("/proc"))
        );
    }

    #[test]
    #[ignore = "needs root"]
    fn a_tmpfs_is_mounted_sized_listed_and_detached() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let target = root.join("vol");
        fs::create_dir(&target).unwrap();
        let host = LinuxHost;
        host.mount_tmpfs(&target, Some(1 << 20)).unwrap();
        assert!(host.is_mount_point(&target));
        assert_eq!(host.mount_points_under(&root), vec![target.clone()]);
        assert_eq!(host.fs_usage(&target).unwrap().bytes_total, 1 << 20);
        host.unmount(&target).unwrap();
        assert!(!host.is_mount_point(&target));
        assert!(host.mount_points_under(&root).is_empty());
    }
}
