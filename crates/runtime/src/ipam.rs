//! Pod IP allocation from the pod CIDR, persisted in the data directory so that an address in
//! use is never handed out twice, also across node restarts.
//!
//! The gateway (first host address) belongs to the bridge. Allocation continues after the last
//! address handed out (round robin), so a released address is not reused at once.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    /// The state file could not be read or written.
    #[error("ipam state {path}: {source}")]
    State {
        /// The state file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The state file holds something else than the allocator's state: starting empty would
    /// hand running pods' addresses out again.
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

#[derive(Default, Serialize, Deserialize)]
struct State {
    last: u32,
    /// Host offset → pod UID.
    used: BTreeMap<u32, String>,
}

/// The allocator. Not shared between processes: one node owns its data directory.
pub(crate) struct Ipam {
    cidr: Cidr,
    path: PathBuf,
    state: State,
}

impl Ipam {
    pub(crate) fn open(cidr: Cidr, dir: PathBuf) -> Result<Self> {
        let path = dir.join(format!("ipam-{}-{}.json", cidr.network(), cidr.prefix()));
        let state = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(state) => state,
                Err(source) => return Err(IpamError::Corrupt { path, source }),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => State::default(),
            Err(source) => return Err(IpamError::State { path, source }),
        };
        Ok(Ipam { cidr, path, state })
    }

    fn save(&self) -> Result<()> {
        let err = |source| IpamError::State {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self.path.with_extension("tmp");
        let bytes = serde_json::to_vec(&self.state).map_err(|e| err(io::Error::other(e)))?;
        fs::write(&tmp, bytes).map_err(err)?;
        fs::rename(&tmp, &self.path).map_err(err)
    }

    /// Allocates an address for `pod_uid` (the same one again if it already has one).
    pub(crate) fn allocate(&mut self, pod_uid: &str) -> Result<Ipv4Addr> {
        if let Some((off, _)) = self.state.used.iter().find(|(_, uid)| *uid == pod_uid) {
            return Ok(Ipv4Addr::from(u32::from(self.cidr.network()) + off));
        }
        // Host offsets 2 ..= size-2: not the network, the gateway or the broadcast address.
        let (first, last) = (2, self.cidr.size() - 2);
        let count = last - first + 1;
        let start = if self.state.last < first {
            0
        } else {
            self.state.last - first + 1
        };
        for i in 0..count {
            let off = first + (start + i) % count;
            if let std::collections::btree_map::Entry::Vacant(slot) = self.state.used.entry(off) {
                slot.insert(pod_uid.to_string());
                self.state.last = off;
                self.save()?;
                return Ok(Ipv4Addr::from(u32::from(self.cidr.network()) + off));
            }
        }
        Err(IpamError::Exhausted(self.cidr.to_string()))
    }

    /// Releases the address of `pod_uid`, if any.
    pub(crate) fn release(&mut self, pod_uid: &str) -> Result<()> {
        let before = self.state.used.len();
        self.state.used.retain(|_, uid| uid != pod_uid);
        if self.state.used.len() != before {
            self.save()
        } else {
            Ok(())
        }
    }

    /// Releases every address whose pod is not in `live`.
    pub(crate) fn retain(&mut self, live: &dyn Fn(&str) -> bool) -> Result<()> {
        self.state.used.retain(|_, uid| live(uid));
        self.save()
    }

    /// How many addresses are in use.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.state.used.len()
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
    fn a_corrupt_state_file_is_an_error_not_an_empty_allocator() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cidr = parse_cidr("10.9.0.0/29").unwrap_or_else(|e| panic!("{e}"));
        let mut ipam = Ipam::open(cidr, dir.path().into()).unwrap_or_else(|e| panic!("{e}"));
        ipam.allocate("a").unwrap_or_else(|e| panic!("{e}"));
        fs::write(&ipam.path, b"{not json").unwrap_or_else(|e| panic!("{e}"));
        match Ipam::open(cidr, dir.path().into()) {
            Err(e @ IpamError::Corrupt { .. }) => {
                assert!(e.to_string().contains("ipam-10.9.0.0-29.json"), "{e}");
            }
            Err(e) => panic!("another error: {e}"),
            Ok(reopened) => panic!("opened with {} in use", reopened.in_use()),
        }
    }
}
