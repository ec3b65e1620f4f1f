//! What the kubelet asks of the machine outside its containers: the tmpfs mounts of pod volumes
//! and the figures the Node's conditions are measured from (free memory, the data dir's file
//! system, the process table). The seam between the kubelet (volume manager, node health) and
//! the process runtime, which implements it on Linux; a recording fake stands in for it in the
//! kubelet's tests, so tmpfs volumes and pressure conditions are tested without root or a full
//! disk. [`PodRoutes`] is the same kind of seam for the routes to other nodes' pod networks
//! (host-gw), which the kubelet's routes loop keeps and the runtime programs over netlink.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// A file system's usage, as `statvfs` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsUsage {
    /// Bytes available to unprivileged users.
    pub bytes_available: u64,
    /// The file system's size in bytes.
    pub bytes_total: u64,
    /// Free inodes.
    pub inodes_free: u64,
    /// Inodes in all; 0 where the file system has no fixed inode table (e.g. btrfs).
    pub inodes_total: u64,
}

/// The machine operations the kubelet needs besides containers.
pub trait HostOps: Send + Sync + std::fmt::Debug {
    /// Mounts a new tmpfs (`nosuid`, `nodev`, mode 0777) on `dir`, of `size` bytes when given.
    fn mount_tmpfs(&self, dir: &Path, size: Option<u64>) -> io::Result<()>;
    /// Detaches the mount on `dir` (lazily: it goes once nothing uses it any more).
    fn unmount(&self, dir: &Path) -> io::Result<()>;
    /// Whether something is mounted on `dir`.
    fn is_mount_point(&self, dir: &Path) -> bool;
    /// The mount points strictly below `root` (a canonical path), as the mount table lists them.
    fn mount_points_under(&self, root: &Path) -> Vec<PathBuf>;
    /// The usage of the file system holding `path`.
    fn fs_usage(&self, path: &Path) -> io::Result<FsUsage>;
    /// The memory available for new work (`MemAvailable`), in bytes.
    fn memory_available(&self) -> Option<u64>;
    /// (processes and threads now, the most the machine allows).
    fn pids(&self) -> Option<(u64, u64)>;
}

/// The node's routes to the pod networks of the other nodes of its cluster (host-gw: each
/// node's `spec.podCIDR` via its InternalIP).
#[async_trait::async_trait]
pub trait PodRoutes: Send + Sync + std::fmt::Debug {
    /// Makes this node's routes exactly `wanted` (pod network, gateway): missing ones are added,
    /// changed ones replaced, the others it made before removed. Routes it did not make are
    /// left alone.
    async fn sync(&self, wanted: &[(crate::net::Ipv4Cidr, Ipv4Addr)]) -> io::Result<()>;
}
