//! The desired Endpoints object and EndpointSlices of one Service (rules 16.1-16.10).

use std::borrow::Borrow;
use std::collections::BTreeMap;

use podvisor_core::corev1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use podvisor_core::discoveryv1::{self, EndpointConditions, EndpointSlice};
use podvisor_core::metav1::{ObjectMeta, OwnerReference};

use crate::port::find_port;

/// The most addresses an Endpoints object holds (rule 16.7).
pub const MAX_ENDPOINTS: usize = 1000;
/// The most endpoints per EndpointSlice (the controller's default, rule 16.8).
pub const MAX_SLICE_ENDPOINTS: usize = 100;

const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming an EndpointSlice's controller.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The EndpointSlice controller's name in [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The store's resource key of EndpointSlices (`group/plural`).
pub const SLICES: &str = "discovery.k8s.io/endpointslices";
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// A pod's resolved ports for a Service: (port name, number, protocol), sorted.
type PortSet = Vec<(Option<String>, i32, String)>;

/// The Service ports `pod` serves, resolved (rule 16.6); ports it does not serve are left out.
fn resolved_ports(service_ports: &[podvisor_core::corev1::ServicePort], pod: &Pod) -> PortSet {
    let mut ports: PortSet = service_ports
        .iter()
        .filter_map(|sp| {
            let port = find_port(pod, sp)?;
            Some((
                sp.name.clone(),
                port,
                sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
            ))
        })
        .collect();
    ports.sort();
    ports
}

/// Whether `service` manages endpoints and selects `pod` (rule 16.1): a non-empty selector,
/// not `ExternalName`, same namespace, and every selector label present on the pod.
pub fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = managed_selector(service) else {
        return false;
    };
    if service.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn managed_selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// "Pod is ready": its `Ready` condition is present and `True` (rule 14.9).
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
        .or_else(|| status.pod_ips.as_ref()?.first().map(|p| p.ip.clone()))
}

/// Rule 16.2: finished pods and pods without an IP never count; terminating ones only when
/// `include_terminating`.
fn eligible(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) || pod_ip(pod).is_none() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

fn is_headless(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_none_or(|ip| ip == "None" || ip.is_empty())
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// Rule 16.3: the pod's hostname in the Service's DNS, when it asks for one.
fn hostname(service: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let subdomain_matches = spec.subdomain.is_some() && spec.subdomain == service.metadata.name;
    spec.hostname
        .clone()
        .filter(|h| !h.is_empty() && subdomain_matches)
}

fn labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

fn publish_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The pods `service` selects, sorted by name so results do not depend on input order.
fn selected<'a, P: Borrow<Pod>>(service: &Service, pods: &'a [P]) -> Vec<&'a Pod> {
    let mut pods: Vec<&Pod> = pods
        .iter()
        .map(Borrow::borrow)
        .filter(|p| selects(service, p))
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    pods
}

/// The Endpoints object the Endpoints controller keeps for `service`, or `None` when the
/// Service manages none (no selector, or `ExternalName`). `pods` are the Service namespace's
/// pods, owned or shared (a cache's `Arc<Pod>`s).
pub fn desired_endpoints<P: Borrow<Pod>>(service: &Service, pods: &[P]) -> Option<Endpoints> {
    managed_selector(service)?;
    let publish = publish_not_ready(service);
    let service_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    // Ports (sorted) → (ready, not ready) addresses.
    let mut subsets: BTreeMap<PortSet, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for pod in selected(service, pods) {
        if !eligible(pod, publish) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let ports = resolved_ports(&service_ports, pod);
        if ports.is_empty() && !service_ports.is_empty() {
            continue;
        }
        let address = EndpointAddress {
            ip,
            hostname: hostname(service, pod),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
        };
        let entry = subsets.entry(ports).or_default();
        if publish || is_pod_ready(pod) {
            entry.0.push(address);
        } else {
            entry.1.push(address);
        }
    }
    let app_protocols: BTreeMap<Option<String>, Option<String>> = service_ports
        .iter()
        .map(|p| (p.name.clone(), p.app_protocol.clone()))
        .collect();
    let mut result: Vec<EndpointSubset> = subsets
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            let ports: Vec<EndpointPort> = ports
                .into_iter()
                .map(|(name, port, protocol)| EndpointPort {
                    app_protocol: app_protocols.get(&name).cloned().flatten(),
                    name,
                    port,
                    protocol: Some(protocol),
                })
                .collect();
            EndpointSubset {
                addresses: Some(ready).filter(|v| !v.is_empty()),
                not_ready_addresses: Some(not_ready).filter(|v| !v.is_empty()),
                ports: Some(ports).filter(|v| !v.is_empty()),
            }
        })
        .collect();
    let mut annotations = BTreeMap::new();
    if truncate(&mut result) {
        annotations.insert(OVER_CAPACITY.to_owned(), "truncated".to_owned());
    }
    Some(Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels(service)).filter(|l| !l.is_empty()),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            ..ObjectMeta::default()
        },
        subsets: Some(result).filter(|s| !s.is_empty()),
    })
}

/// Rule 16.7: at most [`MAX_ENDPOINTS`] addresses, ready ones kept first, the cut spread over
/// the subsets in proportion to their size. Returns whether anything was cut.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let ready: Vec<usize> = subsets.iter().map(|s| count(&s.addresses)).collect();
    let not_ready: Vec<usize> = subsets.iter().map(|s| count(&s.not_ready_addresses)).collect();
    let (ready_total, not_ready_total) = (ready.iter().sum::<usize>(), not_ready.iter().sum::<usize>());
    if ready_total + not_ready_total <= MAX_ENDPOINTS {
        return false;
    }
    let keep_ready = proportional(&ready, ready_total.min(MAX_ENDPOINTS));
    let keep_not_ready = proportional(&not_ready, MAX_ENDPOINTS - ready_total.min(MAX_ENDPOINTS));
    for ((subset, r), nr) in subsets.iter_mut().zip(keep_ready).zip(keep_not_ready) {
        if let Some(a) = subset.addresses.as_mut() {
            a.truncate(r);
        }
        if let Some(a) = subset.not_ready_addresses.as_mut() {
            a.truncate(nr);
        }
    }
    true
}

/// Splits `keep` over `counts` in proportion to them (never more than a count).
fn proportional(counts: &[usize], keep: usize) -> Vec<usize> {
    let total: usize = counts.iter().sum();
    if total <= keep {
        return counts.to_vec();
    }
    let mut out: Vec<usize> = counts.iter().map(|c| c * keep / total).collect();
    let mut left = keep - out.iter().sum::<usize>();
    for (o, c) in out.iter_mut().zip(counts) {
        if left > 0 && *o < *c {
            *o += 1;
            left -= 1;
        }
    }
    out
}

/// The EndpointSlices the EndpointSlice controller keeps for `service` (rules 16.8-16.10):
/// grouped by the set of resolved ports, at most [`MAX_SLICE_ENDPOINTS`] endpoints each, with
/// `ready`, `serving` and `terminating` conditions. Empty when the Service manages none.
pub fn desired_slices<P: Borrow<Pod>>(service: &Service, pods: &[P]) -> Vec<EndpointSlice> {
    if managed_selector(service).is_none() {
        return Vec::new();
    }
    let svc_name = service.metadata.name.clone().unwrap_or_default();
    let publish = publish_not_ready(service);
    let service_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut groups: BTreeMap<PortSet, Vec<discoveryv1::Endpoint>> = BTreeMap::new();
    for pod in selected(service, pods) {
        if !eligible(pod, true) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let ports = resolved_ports(&service_ports, pod);
        let serving = is_pod_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let endpoint = discoveryv1::Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(publish || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname(service, pod),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
            ..discoveryv1::Endpoint::default()
        };
        groups.entry(ports).or_default().push(endpoint);
    }
    let app_protocols: BTreeMap<Option<String>, Option<String>> = service_ports
        .iter()
        .map(|p| (p.name.clone(), p.app_protocol.clone()))
        .collect();
    let mut slice_labels = labels(service);
    slice_labels.insert(SERVICE_NAME_LABEL.into(), svc_name.clone());
    slice_labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc_name.clone(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let mut slices = Vec::new();
    for (ports, mut endpoints) in groups {
        endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        let key: String = ports
            .iter()
            .map(|(n, p, proto)| format!("{n:?}/{p}/{proto};"))
            .collect();
        let slice_ports: Vec<discoveryv1::EndpointPort> = ports
            .into_iter()
            .map(|(name, port, protocol)| discoveryv1::EndpointPort {
                app_protocol: app_protocols.get(&name).cloned().flatten(),
                name,
                port: Some(port),
                protocol: Some(protocol),
            })
            .collect();
        for (i, chunk) in endpoints.chunks(MAX_SLICE_ENDPOINTS).enumerate() {
            slices.push(EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{svc_name}-{:08x}-{i}", fnv32(&key))),
                    namespace: service.metadata.namespace.clone(),
                    labels: Some(slice_labels.clone()),
                    owner_references: Some(vec![owner.clone()]),
                    ..ObjectMeta::default()
                },
                address_type: "IPv4".into(),
                endpoints: chunk.to_vec(),
                ports: Some(slice_ports.clone()),
            });
        }
    }
    slices
}

/// FNV-1a, 32 bits: a stable short name suffix for a port set.
fn fnv32(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}
