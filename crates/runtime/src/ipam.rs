//! Pod IP allocation from the pod CIDR, persisted in the data directory so that an address in
//! use is never handed out twice, also across node restarts.
//!
//! The gateway (first host address) belongs to the bridge. Allocation continues after the last
//! address handed out (round robin), so a released address is not reused at once.
//!
//! On disk (CNI host-local's layout): `<data dir>/ipam-<network>-<prefix>/` holds one file per
//! address in use, named by the address and holding the pod's UID, and `last`, the offset of
//! the last address handed out. An allocation writes one small file and a release removes it,
//! whatever the number of pods; the whole table rewritten at every change (a node before this
//! layout kept it in one file, `ipam-<network>-<prefix>.json`) cost O(pods) per pod, about a
//! quarter of a second of serialized work over a burst of 1,000 pods each way. Opening
//! converts such a file, so a newer node adopts an older node's pods with their addresses.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors of the allocator.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The pod CIDR is not `a.b.c.d/n` with 8 ≤ n ≤ 30.
    #[error("invalid pod CIDR {0:?}")]
    InvalidCidr(String),
    /// Every address is in use.
    #[error(
        "no free address left in {0}: every pod with a network of its own takes one (a /24 holds \
         253; a larger --pod-cidr holds more)"
    )]
    Exhausted(String),
    /// The state could not be read or written.
    #[error("ipam state {path}: {source}")]
    State {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An earlier node's state file holds something else than the allocator's state: starting
    /// empty would hand running pods' addresses out again.
    #[error("ipam state {path} is unreadable (remove it once no pod uses the network): {source}")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

type Result<T, E = IpamError> = std::result::Result<T, E>;

/// The pod network (the rule lives in `podvisor_core::net`).
pub use podvisor_core::net::Ipv4Cidr as Cidr;

/// Parses the pod CIDR.
pub fn parse_cidr(s: &str) -> Result<Cidr> {
    Cidr::parse(s).map_err(|_| IpamError::InvalidCidr(s.to_string()))
}

/// The addresses in use under `data_dir`, every pod network's, with the UIDs of their pods
/// (what a node's data directory says; for tests and tools).
pub fn allocations(data_dir: &Path) -> io::Result<Vec<(Ipv4Addr, String)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("ipam-") && entry.path().is_dir() {
            out.extend(read_addresses(&entry.path())?);
        }
    }
    Ok(out)
}

/// The address files in `dir`: `(address, pod UID)`.
fn read_addresses(dir: &Path) -> io::Result<Vec<(Ipv4Addr, String)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(ip) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        out.push((ip, fs::read_to_string(entry.path())?.trim().to_string()));
    }
    Ok(out)
}

/// An earlier node's state file (`ipam-<network>-<prefix>.json`).
#[derive(Default, Deserialize)]
struct Legacy {
    last: u32,
    /// Host offset → pod UID.
    used: BTreeMap<u32, String>,
}

/// The allocator. Not shared between processes: one node owns its data directory.
pub(crate) struct Ipam {
    cidr: Cidr,
    dir: PathBuf,
    last: u32,
    /// Host offset → pod UID.
    used: BTreeMap<u32, String>,
    /// Pod UID → host offset.
    by_uid: HashMap<String, u32>,
}

impl Ipam {
    pub(crate) fn open(cidr: Cidr, data_dir: PathBuf) -> Result<Self> {
        let name = format!("ipam-{}-{}", cidr.network(), cidr.prefix());
        let dir = data_dir.join(&name);
        let state_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IpamError::State { path, source }
        };
        fs::create_dir_all(&dir).map_err(state_err(&dir))?;
        let mut ipam = Ipam {
            cidr,
            dir,
            last: 0,
            used: BTreeMap::new(),
            by_uid: HashMap::new(),
        };
        let network = u32::from(cidr.network());
        for (ip, uid) in read_addresses(&ipam.dir).map_err(state_err(&ipam.dir))? {
            let off = u32::from(ip).wrapping_sub(network);
            if off < cidr.size() {
                ipam.insert(off, uid);
            }
        }
        ipam.last = fs::read_to_string(ipam.dir.join("last"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let legacy = data_dir.join(format!("{name}.json"));
        match fs::read(&legacy) {
            Ok(bytes) => {
                let old: Legacy = serde_json::from_slice(&bytes).map_err(|source| IpamError::Corrupt {
                    path: legacy.clone(),
                    source,
                })?;
                for (off, uid) in old.used {
                    if !ipam.used.contains_key(&off) && off < cidr.size() {
                        ipam.write_address(off, &uid)?;
                        ipam.insert(off, uid);
                    }
                }
                ipam.last = ipam.last.max(old.last);
                ipam.write_last();
                fs::remove_file(&legacy).map_err(state_err(&legacy))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(IpamError::State { path: legacy, source }),
        }
        Ok(ipam)
    }

    fn insert(&mut self, off: u32, uid: String) {
        self.by_uid.insert(uid.clone(), off);
        self.used.insert(off, uid);
    }

    fn address(&self, off: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()) + off)
    }

    fn write_address(&self, off: u32, uid: &str) -> Result<()> {
        let path = self.dir.join(self.address(off).to_string());
        fs::write(&path, uid).map_err(|source| IpamError::State { path, source })
    }

    /// Records the last address handed out. A hint for the round robin only: written in place
    /// (no new file per allocation), and a lost or torn write just starts the search elsewhere.
    fn write_last(&self) {
        let _ = fs::write(self.dir.join("last"), self.last.to_string());
    }

    /// Allocates an address for `pod_uid` (the same one again if it already has one).
    pub(crate) fn allocate(&mut self, pod_uid: &str) -> Result<Ipv4Addr> {
        if let Some(&off) = self.by_uid.get(pod_uid) {
            return Ok(self.address(off));
        }
        // Host offsets 2 ..= size-2: not the network, the gateway or the broadcast address.
        let (first, last) = (2, self.cidr.size() - 2);
        let count = last - first + 1;
        let start = if self.last < first {
            0
        } else {
            self.last - first + 1
        };
        for i in 0..count {
            let off = first + (start + i) % count;
            if !self.used.contains_key(&off) {
                self.write_address(off, pod_uid)?;
                self.insert(off, pod_uid.to_string());
                self.last = off;
                self.write_last();
                return Ok(self.address(off));
            }
        }
        Err(IpamError::Exhausted(self.cidr.to_string()))
    }

    /// Releases the address of `pod_uid`, if any.
    pub(crate) fn release(&mut self, pod_uid: &str) -> Result<()> {
        let Some(off) = self.by_uid.remove(pod_uid) else {
            return Ok(());
        };
        self.used.remove(&off);
        let path = self.dir.join(self.address(off).to_string());
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(IpamError::State { path, source: e }),
            _ => Ok(()),
        }
    }

    /// Releases every address whose pod is not in `live`.
    pub(crate) fn retain(&mut self, live: &dyn Fn(&str) -> bool) -> Result<()> {
        let gone: Vec<String> = self.by_uid.keys().filter(|uid| !live(uid)).cloned().collect();
        for uid in gone {
            self.release(&uid)?;
        }
        Ok(())
    }

    /// How many addresses are in use.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_without_reuse_and_persists() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cidr = parse_cidr("10.9.0.77/29").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cidr.network(), Ipv4Addr::new(10, 9, 0, 72));
        assert_eq!(cidr.first_host(), Ipv4Addr::new(10, 9, 0, 73));
        let mut ipam = Ipam::open(cidr, dir.path().into()).unwrap_or_else(|e| panic!("{e}"));
        let a = ipam.allocate("a").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 74));
        assert_eq!(ipam.allocate("a").ok(), Some(a));
        let b = ipam.allocate("b").unwrap_or_else(|e| panic!("{e}"));
        ipam.release("a").unwrap_or_else(|e| panic!("{e}"));
        let c = ipam.allocate("c").unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(c, a);
        assert_ne!(c, b);
        let reopened = Ipam::open(cidr, dir.path().into()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reopened.in_use(), 2);
        let mut ipam = reopened;
        for uid in ["d", "e", "f"] {
            let _ = ipam.allocate(uid);
        }
        assert!(matches!(ipam.allocate("g"), Err(IpamError::Exhausted(_))));
        assert!(parse_cidr("10.0.0.0/31").is_err());
        assert!(parse_cidr("nonsense").is_err());
    }

    #[test]
    fn one_file_per_address_and_an_earlier_nodes_table_is_converted() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cidr = parse_cidr("10.9.0.0/24").unwrap_or_else(|e| panic!("{e}"));
        // What a node before the per-address layout left: two pods' addresses.
        let legacy = dir.path().join("ipam-10.9.0.0-24.json");
        fs::write(&legacy, br#"{"last":7,"used":{"5":"old-a","7":"old-b"}}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut ipam = Ipam::open(cidr, dir.path().into()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!legacy.exists(), "the old table is converted and removed");
        assert_eq!(
            ipam.allocate("old-b").ok(),
            Some(Ipv4Addr::new(10, 9, 0, 7)),
            "kept"
        );
        // The round robin goes on after the old table's last address.
        assert_eq!(ipam.allocate("new").ok(), Some(Ipv4Addr::new(10, 9, 0, 8)));
        let mut on_disk = allocations(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        on_disk.sort();
        assert_eq!(
            on_disk,
            vec![
                (Ipv4Addr::new(10, 9, 0, 5), "old-a".to_string()),
                (Ipv4Addr::new(10, 9, 0, 7), "old-b".to_string()),
                (Ipv4Addr::new(10, 9, 0, 8), "new".to_string()),
            ]
        );
        ipam.release("old-a").unwrap_or_else(|e| panic!("{e}"));
        ipam.retain(&|uid| uid != "new").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            allocations(dir.path()).unwrap_or_else(|e| panic!("{e}")),
            vec![(Ipv4Addr::new(10, 9, 0, 7), "old-b".to_string())]
        );
        // A new allocator on the same directory has what is on disk, and goes on after 8.
        let mut reopened = Ipam::open(cidr, dir.path().into()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reopened.in_use(), 1);
        assert_eq!(reopened.allocate("next").ok(), Some(Ipv4Addr::new(10, 9, 0, 9)));
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_not_an_empty_allocator() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cidr = parse_cidr("10.9.0.0/29").unwrap_or_else(|e| panic!("{e}"));
        fs::write(dir.path().join("ipam-10.9.0.0-29.json"), b"{not json").unwrap_or_else(|e| panic!("{e}"));
        match Ipam::open(cidr, dir.path().into()) {
            Err(e @ IpamError::Corrupt { .. }) => {
                assert!(e.to_string().contains("ipam-10.9.0.0-29.json"), "{e}");
            }
            Err(e) => panic!("another error: {e}"),
            Ok(reopened) => panic!("opened with {} in use", reopened.in_use()),
        }
    }
}
