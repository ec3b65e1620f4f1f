//! Services on this node: the service CIDR, cluster DNS's address, and the start of cluster DNS
//! and the Service datapath (nftables, or the userspace NodePort fallback), which follow
//! Services and EndpointSlices (`podvisor_proxy::follow`).

use std::net::{Ipv4Addr, SocketAddr};

use kube::Client;
use podvisor_apiserver::ServiceRanges;
use podvisor_proxy::follow::Datapath;
use tracing::warn;

/// What the node does for Services beyond the API objects.
#[derive(Clone, Debug)]
pub struct ServicesConfig {
    /// The service CIDR ClusterIPs come from (`10.96.0.0/16`).
    pub service_cidr: String,
    /// The nftables table the Service datapath owns (`podvisor`).
    pub nft_table: String,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            service_cidr: "10.96.0.0/16".into(),
            nft_table: "podvisor".into(),
        }
    }
}

/// The Service address ranges of `config`; an invalid CIDR is reported and the default used.
pub fn ranges(config: &ServicesConfig, output: &podvisor_kubelet::output::NodeOutput) -> ServiceRanges {
    ServiceRanges::with_cidr(&config.service_cidr).unwrap_or_else(|e| {
        output.notice(&format!("{e}; using {}", ServiceRanges::default().cidr()));
        ServiceRanges::default()
    })
}

/// The pod network's gateway (its first address: the node's bridge), where cluster DNS
/// listens when pods have their own network.
pub fn cluster_dns_address(config: &crate::NodeConfig) -> Option<Ipv4Addr> {
    if config.host_network_only || !crate::is_root() {
        return None;
    }
    let cidr = podvisor_core::net::Ipv4Cidr::parse(config.pod_cidr.as_deref()?).ok()?;
    (cidr.prefix() <= 30).then(|| cidr.first_host())
}

/// Starts what serves Services on this node, as tasks: cluster DNS and the Service datapath,
/// both following Services and EndpointSlices.
pub async fn start(
    tasks: &mut tokio::task::JoinSet<()>,
    client: Client,
    config: &crate::NodeConfig,
    output: &podvisor_kubelet::output::NodeOutput,
) {
    let table = podvisor_dns::DnsTable::default();
    let dns_ip = cluster_dns_address(config);
    let listen = SocketAddr::new(
        dns_ip.unwrap_or(Ipv4Addr::LOCALHOST).into(),
        if dns_ip.is_some() { 53 } else { 0 },
    );
    let upstream = std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|t| podvisor_dns::upstream_from_resolv_conf(&t, listen.ip()));
    match podvisor_dns::bind(listen, table.clone(), upstream).await {
        Ok((addr, server)) => {
            let note = if dns_ip.is_some() {
                ""
            } else {
                " (pods share the host network and keep the host's resolver)"
            };
            output.notice(&format!("cluster DNS on {addr}{note}"));
            tasks.spawn(async move {
                if let Err(e) = server.serve(std::future::pending()).await {
                    warn!(error = %e, "cluster DNS stopped");
                }
            });
        }
        Err(e) => output.notice(&format!("no cluster DNS: {e}")),
    }
    let proxy = if crate::is_root() && podvisor_proxy::Proxy::available().await {
        let mut proxy = podvisor_proxy::Proxy::new(config.services.nft_table.clone());
        if let Some(pods) = config
            .pod_cidr
            .as_deref()
            .and_then(|c| podvisor_core::net::Ipv4Cidr::parse(c).ok())
            && !config.host_network_only
        {
            proxy = proxy.with_local_pods(pods);
        }
        Datapath::kernel(proxy)
    } else {
        output.notice(
            "warning: no nftables datapath (needs root and nft): NodePorts are served by a userspace \
             proxy; ClusterIPs are not reachable",
        );
        Datapath::Userspace(podvisor_proxy::UserspaceProxy::new())
    };
    tasks.spawn(podvisor_proxy::follow::follow_services(client, table, proxy));
}
