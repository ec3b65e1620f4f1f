//! The pod network across nodes (host-gw): a loop that watches the Nodes and keeps, for every
//! other node with a `spec.podCIDR` and an `InternalIP`, the route `<podCIDR> via <InternalIP>`
//! on this node, through the [`PodRoutes`] seam (the runtime programs them over netlink).
//! Routes of nodes that are gone or changed go; at the end the caller clears them.
//!
//! Nodes on the same machine as this one (the same InternalIP) are skipped: their pod networks
//! are already this kernel's. This is not a routing protocol: the nodes must share a link (or
//! the network between them must route the pod networks), as with flannel's host-gw backend.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use podvisor_core::corev1::Node;
use podvisor_core::host::PodRoutes;
use podvisor_core::net::{Ipv4Cidr, node_internal_ip as internal_ip, node_pod_cidr as pod_cidr};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

/// How long a failed sync waits before it is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// The routes node `me` needs to the others' pod networks, sorted: every other node with a pod
/// CIDR and an InternalIP, except those on the same machine (same address) or with this
/// node's own pod CIDR.
pub fn desired_routes<'a>(me: &str, nodes: impl IntoIterator<Item = &'a Node>) -> Vec<(Ipv4Cidr, Ipv4Addr)> {
    let nodes: Vec<&Node> = nodes.into_iter().collect();
    let mine = nodes.iter().find(|n| n.name_any() == me);
    let (my_ip, my_cidr) = (mine.and_then(|n| internal_ip(n)), mine.and_then(|n| pod_cidr(n)));
    let mut routes: Vec<(Ipv4Cidr, Ipv4Addr)> = nodes
        .iter()
        .filter(|n| n.name_any() != me)
        .filter_map(|n| Some((pod_cidr(n)?, internal_ip(n)?)))
        .filter(|(cidr, ip)| Some(*ip) != my_ip && Some(*cidr) != my_cidr && !ip.is_unspecified())
        .collect();
    routes.sort();
    // Two nodes claiming one pod CIDR: the first address wins, deterministically.
    routes.dedup_by_key(|r| r.0);
    routes
}

/// Watches the Nodes through `client` and keeps node `me`'s routes to the other nodes' pod
/// networks in line, until dropped. Failed syncs are retried every 5 s.
pub async fn follow_routes(client: Client, me: String, routes: Arc<dyn PodRoutes>) {
    let (reader, writer) = reflector::store::<Node>();
    let changed = Arc::new(Notify::new());
    let notify = changed.clone();
    let stream = watcher(Api::<Node>::all(client), watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let follower = async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                    notify.notify_one();
                }
                Ok(_) => {}
                Err(e) => debug!(error = %e, "node watch failed; relisting after a back-off"),
            }
        }
    };
    tokio::select! {
        () = follower => {}
        () = keep(&reader, &me, routes.as_ref(), &changed) => {}
    }
}

/// Syncs at every change (and after a failure, every [`RETRY`]).
async fn keep(reader: &Store<Node>, me: &str, routes: &dyn PodRoutes, changed: &Notify) {
    if reader.wait_until_ready().await.is_err() {
        return;
    }
    let mut applied: Option<Vec<(Ipv4Cidr, Ipv4Addr)>> = None;
    loop {
        let state = reader.state();
        let wanted = desired_routes(me, state.iter().map(|n| n.as_ref()));
        if applied.as_ref() != Some(&wanted) {
            match routes.sync(&wanted).await {
                Ok(()) => {
                    let list: Vec<String> = wanted.iter().map(|(c, ip)| format!("{c} via {ip}")).collect();
                    info!(routes = ?list, "routes to the other nodes' pod networks");
                    applied = Some(wanted);
                }
                Err(e) => {
                    warn!(error = %e, "programming the routes to other nodes' pod networks failed; retrying");
                    applied = None;
                }
            }
        }
        if applied.is_some() {
            changed.notified().await;
        } else {
            let _ = tokio::time::timeout(RETRY, changed.notified()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        let mut node = json!({"metadata": {"name": name}});
        if let Some(cidr) = cidr {
            node["spec"] = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
        }
        if let Some(ip) = ip {
            node["status"] = json!({"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]});
        }
        serde_json::from_value(node).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_other_node_with_a_range_and_an_address_is_routed_through_it() {
        let nodes = [
            node("me", Some("10.88.0.0/24"), Some("192.0.2.1")),
            node("b", Some("10.88.2.0/24"), Some("192.0.2.3")),
            node("a", Some("10.88.1.0/24"), Some("192.0.2.2")),
            node("waiting", None, Some("192.0.2.4")),
            node("no-address", Some("10.88.5.0/24"), None),
            node("same-host", Some("10.88.6.0/24"), Some("192.0.2.1")),
            node("same-range", Some("10.88.0.0/24"), Some("192.0.2.7")),
            node("ipv6", Some("fd00::/64"), Some("192.0.2.8")),
        ];
        let cidr = |s: &str| Ipv4Cidr::parse(s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            desired_routes("me", &nodes),
            [
                (cidr("10.88.1.0/24"), Ipv4Addr::new(192, 0, 2, 2)),
                (cidr("10.88.2.0/24"), Ipv4Addr::new(192, 0, 2, 3)),
            ]
        );
        // Before this node is registered (or got its range), every other node is routed.
        assert_eq!(desired_routes("unknown", &nodes[1..3]).len(), 2);
        assert_eq!(desired_routes("me", &nodes[..1]), []);
    }
}
