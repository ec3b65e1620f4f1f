//! Pod networking over netlink: the node bridge, a veth pair per pod, the pod's address,
//! loopback and default route. No `ip` processes are spawned.
//!
//! Pod networks are IPv4. The veth pair's two ends get no IPv6 link-local address (IPv6 stays
//! on, and the pod's loopback keeps `::1`): with one, every end's duplicate address detection
//! and multicast listener reports went to the bridge, which floods them to every other port,
//! so a burst of pods cost the kernel O(pods²) packets (a fifth of both cores while 1,000 pods
//! were deleted).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkFlags};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// Errors while programming the network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A netlink socket could not be opened (in the node's or the pod's namespace).
    #[error("netlink connection: {0}")]
    Connect(#[source] std::io::Error),
    /// The node has no netlink connection (it could not be opened at first use).
    #[error("no netlink connection")]
    NoConnection,
    /// The kernel refused a netlink request.
    #[error("{step}: {source}")]
    Netlink {
        /// What was being done (`create bridge podvisor0`, ...).
        step: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// A link that was just created could not be found.
    #[error("link {0} not found")]
    MissingLink(String),
    /// The bridge has no free port for another pod's veth (the kernel's `EXFULL`).
    #[error(
        "attach veth {0} to the bridge: the bridge is full (a Linux bridge takes {BRIDGE_PORTS} ports, \
         one per pod with a network of its own)"
    )]
    BridgeFull(String),
}

/// The most ports a Linux bridge takes (`BR_MAX_PORTS` less port 0, which is reserved): the
/// most pods with a network of their own one node runs.
pub const BRIDGE_PORTS: u32 = 1023;

type Result<T, E = NetworkError> = std::result::Result<T, E>;

fn nl(step: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let step = step.into();
    move |source| NetworkError::Netlink { step, source }
}

/// A netlink connection in the current thread's network namespace, driven by a tokio task.
pub(crate) fn connect() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Connect)?;
    tokio::spawn(conn);
    Ok(handle)
}

/// A netlink connection inside the network namespace `netns` (an fd of `/proc/<pid>/ns/net`).
/// The socket is created on a short-lived thread that joined the namespace; the socket keeps
/// that namespace after the thread is gone.
pub(crate) fn connect_in(netns: BorrowedFd<'_>) -> Result<Handle> {
    let runtime = tokio::runtime::Handle::current();
    let (conn, handle, _) = in_netns(netns, || {
        // The socket registers with the node's tokio runtime but lives in the pod's netns.
        let _entered = runtime.enter();
        rtnetlink::new_connection()
    })
    .map_err(NetworkError::Connect)?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Runs `f` on a short-lived thread that joined the network namespace `netns` (an fd of
/// `/proc/<pid>/ns/net`), and waits for it. Sockets `f` creates belong to that namespace for
/// their whole life, wherever they are used afterwards: how the runtime talks netlink inside a
/// pod and how port-forward connects to a pod's loopback. The caller's thread never changes
/// namespace.
pub(crate) fn in_netns<T: Send>(
    netns: BorrowedFd<'_>,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("netns thread panicked")))
    })
}

/// The index of link `name`, if it exists.
pub(crate) async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl(format!("get link {name}"))(e)),
    }
}

/// Creates the bridge with the gateway address if needed and sets it up. Returns its index.
pub(crate) async fn ensure_bridge(handle: &Handle, name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<u32> {
    let index = match link_index(handle, name).await? {
        Some(i) => i,
        None => {
            match handle.link().add(LinkBridge::new(name).build()).execute().await {
                Ok(()) => {}
                // Another runtime created it concurrently.
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
                Err(e) => return Err(nl(format!("create bridge {name}"))(e)),
            }
            link_index(handle, name)
                .await?
                .ok_or_else(|| NetworkError::MissingLink(name.into()))?
        }
    };
    let mut addrs = handle.address().get().set_link_index_filter(index).execute();
    let mut has = false;
    while let Some(msg) = addrs.try_next().await.map_err(nl("list bridge addresses"))? {
        has |= msg
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(ip)) if *ip == gateway));
    }
    if !has {
        match handle
            .address()
            .add(index, IpAddr::V4(gateway), prefix)
            .execute()
            .await
        {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
            Err(e) => return Err(nl(format!("add {gateway}/{prefix} to {name}"))(e)),
        }
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl("bridge up"))?;
    Ok(index)
}

/// What one pod's network is made of.
pub(crate) struct PodNet<'a> {
    pub(crate) host_veth: &'a str,
    pub(crate) ip: Ipv4Addr,
    pub(crate) prefix: u8,
    pub(crate) gateway: Ipv4Addr,
}

/// Creates the veth pair with its pod end in the pod's namespace as `eth0`, attaches the host
/// end to the bridge (index `bridge`, see [`ensure_bridge`]), gives `eth0` the pod IP, and sets loopback up and the default route.
/// Returns the host end's interface index.
pub(crate) async fn setup_pod(
    host: &Handle,
    bridge: u32,
    netns: BorrowedFd<'_>,
    net: &PodNet<'_>,
) -> Result<u32> {
    // A leftover pair of the same name (a sandbox re-created for the same pod) goes first.
    if let Some(old) = link_index(host, net.host_veth).await? {
        let _ = host.link().del(old).execute().await;
    }
    // The pod end is created inside the pod's namespace, already named eth0: moving a device
    // between namespaces afterwards costs the kernel 15-50 ms (it waits for RCU), creating it
    // there costs nothing extra.
    host.link()
        .add(veth_into(net.host_veth, "eth0", netns))
        .execute()
        .await
        .map_err(nl(format!("create veth {}", net.host_veth)))?;
    let host_index = link_index(host, net.host_veth)
        .await?
        .ok_or_else(|| NetworkError::MissingLink(net.host_veth.into()))?;
    without_link_local(host, host_index).await;
    host.link()
        .set(
            LinkUnspec::new_with_index(host_index)
                .controller(bridge)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(|e| match &e {
            rtnetlink::Error::NetlinkError(m) if m.raw_code().abs() == libc::EXFULL => {
                NetworkError::BridgeFull(net.host_veth.to_owned())
            }
            _ => nl("attach veth to the bridge")(e),
        })?;

    let pod = connect_in(netns)?;
    let lo = link_index(&pod, "lo")
        .await?
        .ok_or_else(|| NetworkError::MissingLink("lo".into()))?;
    pod.link()
        .set(LinkUnspec::new_with_index(lo).up().build())
        .execute()
        .await
        .map_err(nl("loopback up"))?;
    let eth = link_index(&pod, "eth0")
        .await?
        .ok_or_else(|| NetworkError::MissingLink("eth0".into()))?;
    without_link_local(&pod, eth).await;
    pod.address()
        .add(eth, IpAddr::V4(net.ip), net.prefix)
        .execute()
        .await
        .map_err(nl(format!("add {}/{} to eth0", net.ip, net.prefix)))?;
    pod.link()
        .set(LinkUnspec::new_with_index(eth).up().build())
        .execute()
        .await
        .map_err(nl("eth0 up"))?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(net.gateway)
        .output_interface(eth)
        .build();
    pod.route()
        .add(route)
        .execute()
        .await
        .map_err(nl("default route"))?;
    Ok(host_index)
}

/// Tells the kernel to give link `index` no IPv6 link-local address when it comes up (it must
/// be down). Best effort: a kernel without IPv6 refuses, and then there is nothing to stop.
async fn without_link_local(handle: &Handle, index: u32) {
    let none = LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
        In6AddrGenMode::None,
    )])]);
    let message = LinkUnspec::new_with_index(index)
        .append_extra_attribute(none)
        .build();
    if let Err(e) = handle.link().set(message).execute().await {
        tracing::debug!(error = %e, index, "IPv6 address generation left as it is");
    }
}

/// A veth pair `host` ↔ `peer` whose peer end is created in the namespace `netns`.
fn veth_into(host: &str, peer: &str, netns: BorrowedFd<'_>) -> rtnetlink::packet_route::link::LinkMessage {
    use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkInfo};
    let mut message = LinkVeth::new(host, peer).build();
    for attribute in &mut message.attributes {
        if let LinkAttribute::LinkInfo(infos) = attribute {
            for info in infos {
                if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = info {
                    peer.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
                }
            }
        }
    }
    message
}

/// Deletes the host end of a pod's veth pair (the pod end goes with it). Missing is fine.
pub(crate) async fn delete_veth(host: &Handle, name: &str) -> Result<()> {
    if let Some(index) = link_index(host, name).await? {
        match host.link().del(index).execute().await {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {}
            Err(e) => return Err(nl(format!("delete veth {name}"))(e)),
        }
    }
    Ok(())
}

/// Deletes a bridge (tests and cleanup use this). Missing is fine.
pub(crate) async fn delete_link(host: &Handle, name: &str) -> Result<()> {
    delete_veth(host, name).await
}

/// The first global IPv4 address of the node, for host-network pods.
pub(crate) async fn node_ipv4(host: &Handle) -> Option<Ipv4Addr> {
    let mut links = host.link().get().execute();
    let mut candidates = Vec::new();
    while let Ok(Some(link)) = links.try_next().await {
        let flags = link.header.flags;
        let is_ours = link.attributes.iter().any(|a| {
            matches!(a, LinkAttribute::IfName(n) if n.starts_with("pv") || n.starts_with("podvisor") || n.starts_with("veth"))
        });
        if flags.contains(LinkFlags::Loopback) || !flags.contains(LinkFlags::Up) || is_ours {
            continue;
        }
        candidates.push(link.header.index);
    }
    for index in candidates {
        let mut addrs = host.address().get().set_link_index_filter(index).execute();
        while let Ok(Some(msg)) = addrs.try_next().await {
            for a in &msg.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = a {
                    return Some(*ip);
                }
            }
        }
    }
    None
}
