//! The Service datapath and cluster DNS following the API: Services and EndpointSlices through
//! reflectors (kube-runtime), and at every change (a burst is one pass) the DNS table and the
//! datapath rebuilt from their whole state (level-triggered), as kube-proxy does.

use std::net::Ipv4Addr;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tracing::{debug, warn};

use crate::{Proxy, ProxyPort, ProxyService, UserspaceProxy};

/// How Service traffic reaches endpoints.
pub enum Datapath {
    /// nftables rules in the kernel (ClusterIPs and NodePorts).
    Kernel(ProxyGuard),
    /// The fallback: NodePorts served by a proxy in the node.
    Userspace(UserspaceProxy),
}

impl std::fmt::Debug for Datapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Datapath::Kernel(_) => "Datapath::Kernel",
            Datapath::Userspace(_) => "Datapath::Userspace",
        })
    }
}

impl Datapath {
    /// The nftables datapath of `proxy`, whose table is removed when this is dropped.
    pub fn kernel(proxy: Proxy) -> Datapath {
        Datapath::Kernel(ProxyGuard(proxy))
    }
}

/// Removes the datapath's table when the node stops (the task holding it is dropped).
#[derive(Debug)]
pub struct ProxyGuard(Proxy);

impl Drop for ProxyGuard {
    fn drop(&mut self) {
        self.0.remove_blocking();
    }
}

/// How long a burst of changes is gathered before one rebuild.
const BATCH: Duration = Duration::from_millis(2);

/// Keeps the DNS table and the datapath in line with Services and EndpointSlices: rebuilt from
/// the reflectors' whole state at every change (level-triggered); the reflectors relist after
/// watch errors.
pub async fn follow_services(client: Client, table: podvisor_dns::DnsTable, mut proxy: Datapath) {
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let services_events = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(services_writer)
        .map(|e| e.is_ok_and(|e| !matches!(e, watcher::Event::Init | watcher::Event::InitApply(_))));
    let slices_events = watcher(Api::<EndpointSlice>::all(client), watcher::Config::default())
        .default_backoff()
        .reflect(slices_writer)
        .map(|e| e.is_ok_and(|e| !matches!(e, watcher::Event::Init | watcher::Event::InitApply(_))));
    let mut events = std::pin::pin!(futures_util::stream::select(services_events, slices_events));
    let mut last: Option<Vec<ProxyService>> = None;
    while let Some(changed) = events.next().await {
        if !changed {
            continue;
        }
        // Take whatever else is already queued, so a burst is one rebuild.
        while let Ok(Some(_)) = tokio::time::timeout(BATCH, events.next()).await {}
        if !(ready(&services) && ready(&slices)) {
            continue;
        }
        sync(&services, &slices, &table, &mut proxy, &mut last).await;
    }
    debug!("the Service watches ended");
}

/// Whether a cache has been filled by its first list.
fn ready<K: kube::Resource<DynamicType = ()> + Clone + 'static>(store: &Store<K>) -> bool {
    futures_util::FutureExt::now_or_never(store.wait_until_ready()).is_some()
}

async fn sync(
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    table: &podvisor_dns::DnsTable,
    proxy: &mut Datapath,
    last: &mut Option<Vec<ProxyService>>,
) {
    let services: Vec<Service> = services.state().iter().map(|s| (**s).clone()).collect();
    let slices: Vec<EndpointSlice> = slices.state().iter().map(|s| (**s).clone()).collect();
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
pub fn datapath(services: &[Service], slices: &[EndpointSlice]) -> (Vec<DnsRecord>, Vec<ProxyService>) {
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
        let ready = |e: &Endpoint| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
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
                // A ready endpoint with a hostname (a StatefulSet's pod) is also
                // `<hostname>.<svc>.<ns>.svc`: recorded under the name `<hostname>.<svc>`,
                // which no Service can have.
                let mut named: Vec<(String, Ipv4Addr)> = own
                    .iter()
                    .flat_map(|s| s.endpoints.iter())
                    .filter(|e| ready(e))
                    .filter_map(|e| Some((e.hostname.clone()?, e.addresses.first()?.parse().ok()?)))
                    .collect();
                named.sort();
                named.dedup_by(|a, b| a.0 == b.0);
                for (host, ip) in named {
                    records.push((ns.clone(), format!("{host}.{name}"), vec![ip]));
                }
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
            ports.push(ProxyPort {
                protocol,
                port: p,
                node_port,
                endpoints,
            });
        }
        proxied.push(ProxyService {
            id: format!("{ns}/{name}"),
            cluster_ip,
            ports,
        });
    }
    (records, proxied)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_headless_services_ready_endpoints_with_hostnames_get_names() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 80}]}
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "db-abc", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.88.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.88.0.6"], "hostname": "db-1", "conditions": {"ready": false}},
                {"addresses": ["10.88.0.7"], "conditions": {"ready": true}}
            ],
            "ports": [{"port": 80, "protocol": "TCP"}]
        }))
        .unwrap();
        let (records, _) = datapath(&[service], &[slice]);
        let ip = |a, b, c, d| Ipv4Addr::new(a, b, c, d);
        assert_eq!(
            records,
            vec![
                (
                    "default".into(),
                    "db".into(),
                    vec![ip(10, 88, 0, 5), ip(10, 88, 0, 7)]
                ),
                ("default".into(), "db-0.db".into(), vec![ip(10, 88, 0, 5)]),
            ]
        );
    }

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
        let mut proxy = UserspaceProxy::new();
        proxy.sync(&proxied).await;
        assert_eq!(proxy.ports(), [node_port], "{proxied:?}");
    }
}
