//! The node's routes to other nodes' pod networks (host-gw, as flannel's backend of that name):
//! `<podCIDR> via <InternalIP>` in the main table of the node's network namespace, over
//! netlink. [`NodeRoutes`] implements the kubelet's [`PodRoutes`] seam.
//!
//! Its routes are recognised by their protocol ([`ROUTE_PROTOCOL`], `ip route show proto 201`)
//! and their metric, which is derived from the node's bridge name: two nodes on one machine
//! (tests, several agents in one namespace) each keep their own routes and never remove the
//! other's. Routes made by anyone else are never touched.
//!
//! It is not a routing daemon: nothing is announced, the nodes must share a link (or their
//! gateways must route the pod networks), as with flannel's host-gw.

use std::collections::BTreeSet;
use std::io;
use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use podvisor_core::host::PodRoutes;
use podvisor_core::net::Ipv4Cidr;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};

use crate::network::{self, NetworkError};

/// The routing protocol number of podvisor's routes (not one of iproute2's `rt_protos`).
pub const ROUTE_PROTOCOL: u8 = 201;

/// The main routing table.
const MAIN_TABLE: u8 = 254;

/// The routes of one node, programmed in the network namespace it runs in.
#[derive(Debug)]
pub struct NodeRoutes {
    metric: u32,
    handle: tokio::sync::OnceCell<Option<rtnetlink::Handle>>,
}

/// (pod network, gateway) of one route.
type Route = (Ipv4Cidr, Ipv4Addr);

impl NodeRoutes {
    /// The routes of the node whose pod network bridge is `bridge` (its metric comes from the
    /// name: 1000 to 60999).
    pub fn new(bridge: &str) -> NodeRoutes {
        NodeRoutes {
            metric: metric_of(bridge),
            handle: tokio::sync::OnceCell::new(),
        }
    }

    /// The metric this node's routes carry.
    pub fn metric(&self) -> u32 {
        self.metric
    }

    async fn handle(&self) -> Result<rtnetlink::Handle, NetworkError> {
        self.handle
            .get_or_init(|| async { network::connect().ok() })
            .await
            .clone()
            .ok_or(NetworkError::NoConnection)
    }

    /// The routes this node made, as the kernel has them.
    pub async fn current(&self) -> Result<Vec<Route>, NetworkError> {
        Ok(self
            .ours(&self.handle().await?)
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .collect())
    }

    async fn ours(&self, handle: &rtnetlink::Handle) -> Result<Vec<(Route, RouteMessage)>, NetworkError> {
        let mut routes = handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        let mut found = Vec::new();
        while let Some(msg) = routes.try_next().await.map_err(|source| NetworkError::Netlink {
            step: "list routes".into(),
            source,
        })? {
            if msg.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) || msg.header.table != MAIN_TABLE {
                continue;
            }
            let mut destination = None;
            let mut gateway = None;
            let mut metric = 0;
            for attribute in &msg.attributes {
                match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = Some(*ip),
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                    RouteAttribute::Priority(p) => metric = *p,
                    _ => {}
                }
            }
            let network = destination.unwrap_or(Ipv4Addr::UNSPECIFIED);
            let cidr = Ipv4Cidr::parse(&format!("{network}/{}", msg.header.destination_prefix_length));
            if metric == self.metric
                && let (Ok(cidr), Some(gateway)) = (cidr, gateway)
            {
                found.push(((cidr, gateway), msg));
            }
        }
        Ok(found)
    }

    /// Makes this node's routes exactly `wanted`.
    pub async fn sync_routes(&self, wanted: &[Route]) -> Result<(), NetworkError> {
        let handle = self.handle().await?;
        let wanted: BTreeSet<Route> = wanted.iter().copied().collect();
        let mut have = BTreeSet::new();
        let mut first_error = None;
        for (route, msg) in self.ours(&handle).await? {
            if wanted.contains(&route) {
                have.insert(route);
                continue;
            }
            match handle.route().del(msg).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => {}
                Err(source) => {
                    first_error.get_or_insert(NetworkError::Netlink {
                        step: format!("delete route {} via {}", route.0, route.1),
                        source,
                    });
                }
            }
        }
        for (cidr, gateway) in wanted.difference(&have) {
            let message = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(cidr.network(), cidr.prefix())
                .gateway(*gateway)
                .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
                .priority(self.metric)
                .build();
            // Replace: a route of ours to the same network through another node goes.
            if let Err(source) = handle.route().add(message).replace().execute().await {
                first_error.get_or_insert(NetworkError::Netlink {
                    step: format!("add route {cidr} via {gateway}"),
                    source,
                });
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl PodRoutes for NodeRoutes {
    async fn sync(&self, wanted: &[Route]) -> io::Result<()> {
        self.sync_routes(wanted).await.map_err(io::Error::other)
    }
}

/// A metric in 1000..61000 from a name (FNV-1a), the same on every run.
fn metric_of(name: &str) -> u32 {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    1000 + hash % 60_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_stable_per_bridge_and_in_range() {
        assert_eq!(metric_of("podvisor0"), metric_of("podvisor0"));
        assert_ne!(metric_of("podvisor0"), metric_of("pvaa0"));
        for name in ["", "a", "podvisor0", "a-very-long-bridge-name"] {
            assert!((1000..61_000).contains(&metric_of(name)), "{name}");
        }
    }

    /// Routes in the root namespace through a test bridge: added, replaced, removed, and a
    /// route of another node (another metric) left alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root"]
    async fn routes_follow_what_is_wanted_and_leave_others_alone() {
        assert!(crate::is_root(), "needs root");
        let n = std::process::id() % 200 + 20;
        let bridge = format!("pvrt{n}");
        let handle = network::connect().unwrap_or_else(|e| panic!("{e}"));
        network::ensure_bridge(&handle, &bridge, Ipv4Addr::new(10, 252, n as u8, 1), 24)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let cidr = |s: &str| Ipv4Cidr::parse(s).unwrap_or_else(|e| panic!("{e}"));
        let gw = |last| Ipv4Addr::new(10, 252, n as u8, last);
        let (a, b) = (
            cidr(&format!("10.253.{n}.0/24")),
            cidr(&format!("10.254.{n}.0/24")),
        );
        let mine = NodeRoutes::new(&bridge);
        let theirs = NodeRoutes::new(&format!("{bridge}x"));
        let result = async {
            theirs.sync_routes(&[(a, gw(9))]).await?;
            mine.sync_routes(&[(a, gw(2)), (b, gw(3))]).await?;
            let mut now = mine.current().await?;
            now.sort();
            assert_eq!(now, [(a, gw(2)), (b, gw(3))]);
            // b moves to another node, a goes.
            mine.sync_routes(&[(b, gw(4))]).await?;
            assert_eq!(mine.current().await?, [(b, gw(4))]);
            assert_eq!(
                theirs.current().await?,
                [(a, gw(9))],
                "another node's route stays"
            );
            mine.sync_routes(&[]).await?;
            theirs.sync_routes(&[]).await?;
            assert_eq!(mine.current().await?, []);
            Ok::<(), NetworkError>(())
        }
        .await;
        let _ = network::delete_link(&handle, &bridge).await;
        result.unwrap_or_else(|e| panic!("{e}"));
    }
}
