//! Node IPAM, as kube-controller-manager's range allocator (`--allocate-node-cidrs`,
//! `--cluster-cidr`, `--node-cidr-mask-size`) does it: every Node without `spec.podCIDR` gets
//! the next free /24 of the cluster CIDR in `spec.podCIDR` and `spec.podCIDRs`; a node that
//! already has one keeps it and its range is marked used (also one a kubelet registered with
//! `--pod-cidr`); when no range is left the node gets a `CIDRNotAvailable` Warning event
//! (`Node <name> status is now: CIDRNotAvailable`) and is tried again when nodes change.
//!
//! Level-triggered from the Nodes' whole state: the used ranges are the podCIDRs the nodes
//! show, so a deleted node's range is free again (after the others, since candidates are
//! taken round robin from the last one handed out, as upstream's `cidrset` does). A range
//! that was patched but is not yet seen in the cache stays reserved, so a node never gets two.
//!
//! Not done: IPv6 and dual-stack (podvisor's pod network is IPv4), several cluster CIDRs, and
//! the cloud allocator. A podCIDR outside the cluster CIDR is left alone (upstream logs it as an
//! error too).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::events::Recorder;
use futures_util::FutureExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{EventType, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use podvisor_core::net::{Ipv4Cidr, node_pod_cidr as pod_cidr};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info};

use crate::events::publish;
use crate::watch::follow;

/// The prefix of each node's range (`--node-cidr-mask-size`, upstream's IPv4 default).
pub const NODE_MASK: u8 = 24;

/// The ranges of one cluster CIDR: which /24s are in use, and where the search goes on.
#[derive(Clone, Debug)]
struct RangeSet {
    cluster: Ipv4Cidr,
    used: BTreeSet<u32>,
    /// The index after the last range handed out.
    next: u32,
}

impl RangeSet {
    /// The /24s of `cluster`; a cluster CIDR smaller than a /24 has one range, itself.
    fn new(cluster: Ipv4Cidr) -> RangeSet {
        RangeSet {
            cluster,
            used: BTreeSet::new(),
            next: 0,
        }
    }

    fn mask(&self) -> u8 {
        NODE_MASK.max(self.cluster.prefix())
    }

    /// How many node ranges the cluster CIDR holds.
    fn len(&self) -> u32 {
        1 << (self.mask() - self.cluster.prefix())
    }

    fn range(&self, index: u32) -> Option<Ipv4Cidr> {
        let offset = index.checked_mul(1 << (32 - u32::from(self.mask())))?;
        Ipv4Cidr::parse(&format!("{}/{}", self.cluster.nth(offset)?, self.mask())).ok()
    }

    /// Marks every range `cidr` overlaps as used; `false` when it lies outside the cluster CIDR.
    fn occupy(&mut self, cidr: Ipv4Cidr) -> bool {
        let (start, end) = bounds(cidr);
        let (c_start, c_end) = bounds(self.cluster);
        if end < c_start || start > c_end {
            return false;
        }
        let shift = 32 - u32::from(self.mask());
        let first = (start.max(c_start) - c_start) >> shift;
        let last = (end.min(c_end) - c_start) >> shift;
        self.used.extend(first..=last);
        true
    }

    /// The next free range after the last one handed out (wrapping around), marked used.
    fn allocate_next(&mut self) -> Option<Ipv4Cidr> {
        let len = self.len();
        let index = (0..len)
            .map(|i| (self.next + i) % len)
            .find(|i| !self.used.contains(i))?;
        self.used.insert(index);
        self.next = (index + 1) % len;
        self.range(index)
    }

    /// Forgets every used range (the cursor stays), before the used ones are marked again.
    fn clear(&mut self) {
        self.used.clear();
    }
}

/// The first and last address of a network.
fn bounds(cidr: Ipv4Cidr) -> (u32, u32) {
    let start = u32::from(cidr.network());
    (start, start + (cidr.size() - 1))
}

/// Whether the node has a podCIDR at all (even one that does not parse or is IPv6: it is the
/// node's, not ours to replace).
fn has_pod_cidr(node: &Node) -> bool {
    node.spec.as_ref().is_some_and(|s| {
        s.pod_cidr.as_deref().is_some_and(|c| !c.is_empty())
            || s.pod_cidrs.as_ref().is_some_and(|c| !c.is_empty())
    })
}

/// Gives Nodes their pod CIDRs out of `cluster` until dropped.
pub async fn run(client: Client, cluster: Ipv4Cidr) {
    let (tx, mut touched) = mpsc::unbounded_channel();
    let (nodes, task) = follow(Api::<Node>::all(client.clone()), watcher::Config::default(), tx);
    // The follower ends with this task.
    let _follower = AbortOnDropHandle::new(tokio::spawn(task.boxed()));
    if nodes.wait_until_ready().await.is_err() {
        return;
    }
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "node-controller".into(),
            instance: None,
        },
    );
    let api = Api::<Node>::all(client);
    let mut ranges = RangeSet::new(cluster);
    // Node uid → the range patched onto it and not yet seen in the cache.
    let mut pending: BTreeMap<String, Ipv4Cidr> = BTreeMap::new();
    // Nodes told that no range is left (one event each until a range is found).
    let mut reported: HashSet<String> = HashSet::new();
    info!(%cluster, mask = NODE_MASK, "allocating node pod CIDRs");
    loop {
        let mut state = nodes.state();
        state.sort_by(|a, b| {
            (a.metadata.creation_timestamp.as_ref().map(|t| t.0), a.name_any())
                .cmp(&(b.metadata.creation_timestamp.as_ref().map(|t| t.0), b.name_any()))
        });
        ranges.clear();
        let uids: HashSet<String> = state.iter().filter_map(|n| n.uid()).collect();
        pending.retain(|uid, _| uids.contains(uid));
        for node in &state {
            if has_pod_cidr(node) {
                if let Some(uid) = node.uid() {
                    pending.remove(&uid);
                }
                match pod_cidr(node) {
                    Some(cidr) if ranges.occupy(cidr) => {}
                    other => debug!(node = %node.name_any(), cidr = ?other,
                        "the node's podCIDR is not in the cluster CIDR; left alone"),
                }
            }
        }
        for cidr in pending.values() {
            ranges.occupy(*cidr);
        }
        for node in state.iter().filter(|n| !has_pod_cidr(n)) {
            let (name, Some(uid)) = (node.name_any(), node.uid()) else {
                continue;
            };
            let cidr = match pending.get(&uid) {
                Some(cidr) => *cidr,
                None => match ranges.allocate_next() {
                    Some(cidr) => cidr,
                    None => {
                        if reported.insert(name.clone()) {
                            let note = format!("Node {name} status is now: CIDRNotAvailable");
                            info!(node = %name, %cluster, "no pod CIDR left for the node");
                            publish(
                                &recorder,
                                &node.object_ref(&()),
                                EventType::Warning,
                                "CIDRNotAvailable",
                                "CIDRNotAvailable",
                                note,
                            )
                            .await;
                        }
                        continue;
                    }
                },
            };
            reported.remove(&name);
            // Preconditioned on the version seen (409 otherwise): a node re-created or changed
            // meanwhile is looked at again on its own event.
            let patch = json!({
                "metadata": {"resourceVersion": node.resource_version()},
                "spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]},
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    info!(node = %name, %cidr, "assigned the node's pod CIDR");
                    pending.insert(uid, cidr);
                }
                Err(e) => debug!(error = %e, node = %name, "assigning the pod CIDR failed; next change"),
            }
        }
        if touched.recv().await.is_none() {
            return;
        }
        while touched.try_recv().is_ok() {}
    }
}

/// The range of `index` in `cluster` (for tests and docs: `10.88.0.0/16`, 1 → `10.88.1.0/24`).
pub fn nth_range(cluster: Ipv4Cidr, index: u32) -> Option<Ipv4Cidr> {
    RangeSet::new(cluster).range(index)
}

/// The first node range of `cluster`: the all-in-one node's own pod network.
pub fn first_range(cluster: Ipv4Cidr) -> Ipv4Cidr {
    nth_range(cluster, 0).unwrap_or(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        Ipv4Cidr::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn ranges_are_handed_out_round_robin_skipping_used_ones() {
        let mut set = RangeSet::new(cidr("10.88.0.0/22"));
        assert_eq!(set.len(), 4);
        assert!(set.occupy(cidr("10.88.1.0/24")));
        assert_eq!(set.allocate_next(), Some(cidr("10.88.0.0/24")));
        assert_eq!(set.allocate_next(), Some(cidr("10.88.2.0/24")));
        assert_eq!(set.allocate_next(), Some(cidr("10.88.3.0/24")));
        assert_eq!(set.allocate_next(), None, "full");
        // A freed range is found again once the others are taken, after the cursor.
        set.clear();
        assert!(set.occupy(cidr("10.88.0.0/24")));
        assert_eq!(set.allocate_next(), Some(cidr("10.88.1.0/24")));
    }

    #[test]
    fn a_wide_or_foreign_pod_cidr_marks_what_it_overlaps() {
        let mut set = RangeSet::new(cidr("10.88.0.0/16"));
        assert_eq!(set.len(), 256);
        assert!(!set.occupy(cidr("10.89.0.0/24")), "outside");
        assert!(set.occupy(cidr("10.88.0.0/23")), "two ranges");
        assert_eq!(set.allocate_next(), Some(cidr("10.88.2.0/24")));
        assert!(set.occupy(cidr("10.0.0.0/8")), "covers the whole cluster CIDR");
        assert_eq!(set.allocate_next(), None);
        let small = RangeSet::new(cidr("10.9.9.0/26"));
        assert_eq!(small.len(), 1);
        assert_eq!(first_range(cidr("10.9.9.0/26")), cidr("10.9.9.0/26"));
        assert_eq!(nth_range(cidr("10.88.0.0/16"), 255), Some(cidr("10.88.255.0/24")));
        assert_eq!(nth_range(cidr("10.88.0.0/16"), 256), None);
    }
}
