//! The `kubernetes` Service in `default`: the API's own ClusterIP (the service CIDR's first
//! address, port 443) with hand-made Endpoints and an EndpointSlice pointing at the API's
//! listen address, as kube-apiserver keeps them.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use podvisor_core::corev1::Service;
use podvisor_core::discoveryv1::EndpointSlice;
use podvisor_store::ListOptions;
use tracing::{debug, warn};

use podvisor_apiserver::ServiceRanges;

use podvisor_store::{ObjectKey, Preconditions, Store, StoreError};
use serde_json::{Value, json};

/// Creates the `kubernetes` Service (ClusterIP `cluster_ip`, port 443) and points its
/// endpoints at `api`; an existing Service is kept and its endpoints follow `api`.
pub async fn ensure_kubernetes_service(
    store: &dyn Store,
    cluster_ip: Ipv4Addr,
    api: SocketAddr,
) -> Result<(), StoreError> {
    let now = podvisor_apiserver::meta::rfc3339(podvisor_apiserver::meta::now_millis());
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels,
                     "uid": podvisor_apiserver::meta::new_uid(), "creationTimestamp": now},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip.to_string(), "clusterIPs": [cluster_ip.to_string()],
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
                 "internalTrafficPolicy": "Cluster",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api.port()}]},
        "status": {"loadBalancer": {}},
    });
    match store
        .create(&ObjectKey::new("services", "default", "kubernetes"), service)
        .await
    {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e),
    }
    let ip = api.ip().to_string();
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
                     "creationTimestamp": now},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": api.port(), "protocol": "TCP"}]}],
    });
    put(
        store,
        ObjectKey::new("endpoints", "default", "kubernetes"),
        endpoints,
    )
    .await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "creationTimestamp": now,
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [{"name": "https", "port": api.port(), "protocol": "TCP"}],
    });
    put(
        store,
        ObjectKey::new("discovery.k8s.io/endpointslices", "default", "kubernetes"),
        slice,
    )
    .await
}

/// How often the node checks that the `kubernetes` Service still exists.
const KUBERNETES_SERVICE_CHECK: Duration = Duration::from_secs(3);

/// Puts the `kubernetes` Service back when it is deleted, within seconds, as kube-apiserver's
/// own controller does.
async fn keep_kubernetes_service(store: Arc<dyn Store>, cluster_ip: Ipv4Addr, api: SocketAddr) {
    let key = ObjectKey::new("services", "default", "kubernetes");
    loop {
        tokio::time::sleep(KUBERNETES_SERVICE_CHECK).await;
        if let Err(StoreError::NotFound { .. }) = store.get(&key).await
            && let Err(e) = ensure_kubernetes_service(&*store, cluster_ip, api).await
        {
            warn!(error = %e, "re-creating the kubernetes Service failed");
        }
    }
}

/// Creates `key` as `object`, or replaces its content (keeping its metadata) when it differs.
async fn put(store: &dyn Store, key: ObjectKey, mut object: Value) -> Result<(), StoreError> {
    match store.get(&key).await {
        Ok(current) => {
            let same = ["subsets", "endpoints", "ports"]
                .iter()
                .all(|k| current.object.get(*k) == object.get(*k));
            if same {
                return Ok(());
            }
            object["metadata"] = current.object["metadata"].clone();
            store
                .update(&key, object, Preconditions::default())
                .await
                .map(|_| ())
        }
        Err(StoreError::NotFound { .. }) => {
            object["metadata"]["uid"] = json!(podvisor_apiserver::meta::new_uid());
            store.create(&key, object).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

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
pub fn ranges(config: &ServicesConfig, output: &crate::output::NodeOutput) -> ServiceRanges {
    ServiceRanges::with_cidr(&config.service_cidr).unwrap_or_else(|e| {
        output.notice(&format!("{e}; using {}", ServiceRanges::default().cidr()));
        ServiceRanges::default()
    })
}

/// The pod network's gateway (its first address: the node's bridge), where cluster DNS
/// listens when pods have their own network.
pub fn cluster_dns_address(config: &crate::NodeConfig) -> Option<Ipv4Addr> {
    if config.host_network_only || !is_root() {
        return None;
    }
    let (ip, prefix) = config.pod_cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 30)?;
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    Some(Ipv4Addr::from((u32::from(ip) & mask) + 1))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Starts what serves Services on this node: the `kubernetes` Service now, then (as tasks)
/// cluster DNS and the Service datapath, both following Services and EndpointSlices.
pub async fn start(
    tasks: &mut tokio::task::JoinSet<()>,
    store: Arc<dyn Store>,
    config: &crate::NodeConfig,
    ranges: &ServiceRanges,
    api: SocketAddr,
    output: &crate::output::NodeOutput,
) {
    if let Err(e) = ensure_kubernetes_service(&*store, ranges.first(), api).await {
        output.notice(&format!("cannot create the kubernetes Service: {e}"));
    }
    tasks.spawn(keep_kubernetes_service(store.clone(), ranges.first(), api));
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
    let proxy = if is_root() && podvisor_proxy::Proxy::available().await {
        Datapath::Kernel(ProxyGuard(podvisor_proxy::Proxy::new(
            config.services.nft_table.clone(),
        )))
    } else {
        output.notice(
            "warning: no nftables datapath (needs root and nft): NodePorts are served by a userspace \
             proxy; ClusterIPs are not reachable",
        );
        Datapath::Userspace(podvisor_proxy::UserspaceProxy::new())
    };
    tasks.spawn(follow_services(store, table, proxy));
}

/// How Service traffic reaches endpoints.
enum Datapath {
    /// nftables rules in the kernel (ClusterIPs and NodePorts).
    Kernel(ProxyGuard),
    /// The fallback: NodePorts served by a proxy in the node.
    Userspace(podvisor_proxy::UserspaceProxy),
}

/// Removes the datapath's table when the node stops (the task holding it is dropped).
struct ProxyGuard(podvisor_proxy::Proxy);

impl Drop for ProxyGuard {
    fn drop(&mut self) {
        self.0.remove_blocking();
    }
}

/// Keeps the DNS table and the datapath in line with Services and EndpointSlices: rebuilt
/// from a full list at every change (level-triggered), relisting after watch errors.
async fn follow_services(store: Arc<dyn Store>, table: podvisor_dns::DnsTable, mut proxy: Datapath) {
    let mut last: Option<Vec<podvisor_proxy::ProxyService>> = None;
    loop {
        let Ok(revision) = store.current_revision().await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let (Ok(services), Ok(slices)) = (
            store.watch("services", None, revision).await,
            store.watch(SLICES, None, revision).await,
        ) else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        sync(&*store, &table, &mut proxy, &mut last).await;
        let mut events = futures_util::stream::select(services, slices);
        while let Some(Ok(_)) = events.next().await {
            // Take whatever else is already queued, so a burst is one rebuild.
            while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(2), events.next()).await {}
            sync(&*store, &table, &mut proxy, &mut last).await;
        }
        debug!("service watch ended; relisting");
    }
}

const SLICES: &str = "discovery.k8s.io/endpointslices";

async fn sync(
    store: &dyn Store,
    table: &podvisor_dns::DnsTable,
    proxy: &mut Datapath,
    last: &mut Option<Vec<podvisor_proxy::ProxyService>>,
) {
    let (Ok(services), Ok(slices)) = (
        store.list("services", None, ListOptions::default()).await,
        store.list(SLICES, None, ListOptions::default()).await,
    ) else {
        return;
    };
    let services: Vec<Service> = services
        .items
        .into_iter()
        .filter_map(|v| serde_json::from_value(v.object).ok())
        .collect();
    let slices: Vec<EndpointSlice> = slices
        .items
        .into_iter()
        .filter_map(|v| serde_json::from_value(v.object).ok())
        .collect();
    let (records, proxied) = datapath(&services, &slices);
    table.replace(records);
    if last.as_ref() == Some(&proxied) {
        return;
    }
    match proxy {
        Datapath::Kernel(guard) => match guard.0.sync(&proxied).await {
            Ok(()) => *last = Some(proxied),
            Err(e) => warn!(error = %e, "cannot program the Service datapath"),
        },
        Datapath::Userspace(userspace) => {
            userspace.sync(&proxied).await;
            *last = Some(proxied);
        }
    }
}

/// One DNS name: namespace, Service, addresses.
pub type DnsRecord = (String, String, Vec<Ipv4Addr>);

/// DNS records and datapath Services from Services and their EndpointSlices (ready endpoints
/// only).
pub fn datapath(
    services: &[Service],
    slices: &[EndpointSlice],
) -> (Vec<DnsRecord>, Vec<podvisor_proxy::ProxyService>) {
    let mut records = Vec::new();
    let mut proxied = Vec::new();
    for svc in services {
        let (Some(ns), Some(name)) = (svc.metadata.namespace.clone(), svc.metadata.name.clone()) else {
            continue;
        };
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let own: Vec<&EndpointSlice> = slices
            .iter()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(ns.as_str())
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("kubernetes.io/service-name"))
                        == Some(&name)
            })
            .collect();
        let ready = |e: &podvisor_core::discoveryv1::Endpoint| {
            e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
        };
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        match cluster_ip {
            Some(ip) => records.push((ns.clone(), name.clone(), vec![ip])),
            None => {
                let mut ips: Vec<Ipv4Addr> = own
                    .iter()
                    .flat_map(|s| s.endpoints.iter())
                    .filter(|e| ready(e))
                    .filter_map(|e| e.addresses.first()?.parse().ok())
                    .collect();
                ips.sort();
                ips.dedup();
                records.push((ns.clone(), name.clone(), ips));
            }
        }
        let mut ports = Vec::new();
        for port in spec.ports.iter().flatten() {
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
            let mut endpoints = Vec::new();
            for slice in &own {
                let Some(target) = slice.ports.iter().flatten().find(|p| {
                    p.name.as_deref().unwrap_or("") == port.name.as_deref().unwrap_or("")
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                }) else {
                    continue;
                };
                let Some(tport) = target.port.and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                for e in slice.endpoints.iter().filter(|e| ready(e)) {
                    if let Some(ip) = e.addresses.first().and_then(|a| a.parse().ok()) {
                        endpoints.push((ip, tport));
                    }
                }
            }
            endpoints.sort();
            endpoints.dedup();
            let (Ok(p), node_port) = (
                u16::try_from(port.port),
                port.node_port.and_then(|p| u16::try_from(p).ok()),
            ) else {
                continue;
            };
            ports.push(podvisor_proxy::ProxyPort {
                protocol,
                port: p,
                node_port,
                endpoints,
            });
        }
        proxied.push(podvisor_proxy::ProxyService {
            id: format!("{ns}/{name}"),
            cluster_ip,
            ports,
        });
    }
    (records, proxied)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the API stores for a NodePort Service and its slice (protocols as defaulted).
    fn objects(node_port: u16) -> (Service, EndpointSlice) {
        let service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.30", "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080,
                    "nodePort": node_port}]}
        }));
        let slice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }));
        match (service, slice) {
            (Ok(s), Ok(e)) => (s, e),
            (s, e) => panic!("{:?} {:?}", s.err(), e.err()),
        }
    }

    #[tokio::test]
    async fn the_userspace_fallback_listens_on_the_node_ports_the_node_passes() {
        let node_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let (service, slice) = objects(node_port);
        let (_, proxied) = datapath(&[service], &[slice]);
        let mut proxy = podvisor_proxy::UserspaceProxy::new();
        proxy.sync(&proxied).await;
        assert_eq!(proxy.ports(), [node_port], "{proxied:?}");
    }
}
