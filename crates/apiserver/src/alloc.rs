//! Service address allocation: ClusterIPs from the service CIDR and node ports from the
//! node-port range, as kube-apiserver's allocators do, with the stored Services as the
//! allocation table (so a deleted Service's addresses are free again at once), each address
//! reserved in the store for servers sharing it ([`crate::reservations`]).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use podvisor_core::net::Ipv4Cidr;
use serde_json::{Value, json};

use crate::reservations::Address;

/// How often an allocation chooses again when other servers reserved its choices first.
const MAX_RESERVATION_TRIES: usize = 32;

/// The address ranges Services are given addresses from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRanges {
    /// The service CIDR.
    cidr: Ipv4Cidr,
    /// The node-port range (`30000-32767`).
    pub node_ports: RangeInclusive<u16>,
}

impl Default for ServiceRanges {
    fn default() -> Self {
        ServiceRanges {
            cidr: Ipv4Cidr::constant(Ipv4Addr::new(10, 96, 0, 0), 16),
            node_ports: 30000..=32767,
        }
    }
}

/// A service CIDR that is not `a.b.c.d/n` with `n` in 8..=30.
#[derive(Debug, thiserror::Error)]
#[error("invalid service CIDR {cidr:?}: expected an IPv4 CIDR such as 10.96.0.0/16 with a prefix of 8 to 30")]
pub struct CidrError {
    /// What was given.
    pub cidr: String,
}

impl ServiceRanges {
    /// Ranges with the service CIDR `cidr` (`10.96.0.0/16`) and the default node-port range.
    pub fn with_cidr(cidr: &str) -> Result<ServiceRanges, CidrError> {
        Ok(ServiceRanges {
            cidr: Ipv4Cidr::parse(cidr).map_err(|_| CidrError { cidr: cidr.into() })?,
            node_ports: 30000..=32767,
        })
    }

    /// The CIDR as text.
    pub fn cidr(&self) -> String {
        self.cidr.to_string()
    }

    /// The first usable address (`10.96.0.1`), which the `kubernetes` Service takes.
    pub fn first(&self) -> Ipv4Addr {
        self.cidr.first_host()
    }

    /// Whether `ip` is a usable address of the range (not the network or broadcast address).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.cidr.is_host(ip)
    }
}

/// A server's Service address allocator: its ranges, and the lock that serialises a Service's
/// allocation with its write, so two Services never get one address. One per API server (two
/// servers in a process do not wait for each other); the stored Services are the table.
#[derive(Debug)]
pub struct Allocator {
    ranges: ServiceRanges,
    lock: tokio::sync::Mutex<()>,
}

impl Allocator {
    /// An allocator over `ranges`.
    pub fn new(ranges: ServiceRanges) -> Allocator {
        Allocator {
            ranges,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The ranges addresses come from.
    pub fn ranges(&self) -> &ServiceRanges {
        &self.ranges
    }

    /// Gives the new Service `object` its addresses ([`allocate`]), the stored Services in
    /// `store` being what is taken, and, unless `reserve_in` is `None` (a dry run), reserves
    /// them in the store for the Service in that namespace ([`crate::reservations`]), choosing
    /// again when another server's Service got one first. The returned guard holds the
    /// allocator: keep it until the Service is stored (or refused), so no other Service of this
    /// server is given the same addresses.
    pub(crate) async fn allocate(
        &self,
        store: &dyn podvisor_store::Store,
        object: &mut Value,
        reserve_in: Option<&str>,
    ) -> Result<tokio::sync::MutexGuard<'_, ()>, AllocFailure> {
        let hold = self.lock.lock().await;
        let all = store
            .list("services", None, podvisor_store::ListOptions::default())
            .await
            .map_err(AllocFailure::Store)?;
        let mut used = InUse::from_services(all.items.iter().map(|v| &v.object));
        for _ in 0..MAX_RESERVATION_TRIES {
            let mut candidate = object.clone();
            allocate(&self.ranges, &mut candidate, &used).map_err(AllocFailure::Refused)?;
            let Some(namespace) = reserve_in else {
                *object = candidate;
                return Ok(hold);
            };
            // An address reserved by another server's Service counts as used; an explicitly
            // requested one is then refused as taken by the next `allocate`.
            match crate::reservations::reserve(store, &candidate, namespace)
                .await
                .map_err(AllocFailure::Store)?
            {
                None => {
                    *object = candidate;
                    return Ok(hold);
                }
                Some(Address::Ip(ip)) => {
                    used.ips.insert(ip);
                }
                Some(Address::NodePort(port)) => {
                    used.node_ports.insert(port);
                }
            }
        }
        Err(AllocFailure::Refused(AllocError {
            field: "spec.clusterIPs".into(),
            message: "Internal error: failed to allocate a serviceIP: too many concurrent allocations".into(),
        }))
    }
}

/// Why [`Allocator::allocate`] gave no addresses.
#[derive(Debug)]
pub(crate) enum AllocFailure {
    /// The stored Services could not be read.
    Store(podvisor_store::StoreError),
    /// The Service's request cannot be met.
    Refused(AllocError),
}

/// Why a Service's requested address cannot be given to it: the field and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllocError {
    pub(crate) field: String,
    pub(crate) message: String,
}

/// What the stored Services already hold.
#[derive(Default)]
pub(crate) struct InUse {
    pub(crate) ips: HashSet<Ipv4Addr>,
    pub(crate) node_ports: HashSet<u16>,
}

impl InUse {
    /// The addresses held by `services` (stored Service objects), except the one named `skip`.
    pub(crate) fn from_services<'a>(services: impl IntoIterator<Item = &'a Value>) -> InUse {
        let mut used = InUse::default();
        for svc in services {
            let spec = &svc["spec"];
            if let Some(ip) = spec["clusterIP"].as_str().and_then(|s| s.parse().ok()) {
                used.ips.insert(ip);
            }
            for port in spec["ports"].as_array().into_iter().flatten() {
                if let Some(p) = port["nodePort"].as_u64().and_then(|p| u16::try_from(p).ok()) {
                    used.node_ports.insert(p);
                }
            }
        }
        used
    }
}

/// Gives the new Service `object` its ClusterIP (unless headless, `ExternalName` or an
/// explicit free address in range) and, for `NodePort`/`LoadBalancer`, its node ports.
pub(crate) fn allocate(ranges: &ServiceRanges, object: &mut Value, used: &InUse) -> Result<(), AllocError> {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty == "ExternalName" {
        return Ok(());
    }
    let requested = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ip = match requested.as_str() {
        "None" => None,
        "" => {
            let size = ranges.cidr.size();
            // Sequential from the second address: the first is the `kubernetes` Service's.
            let free = (2..size - 1)
                .filter_map(|o| ranges.cidr.nth(o))
                .find(|ip| !used.ips.contains(ip))
                .ok_or_else(|| AllocError {
                    field: "spec.clusterIPs".into(),
                    message: format!(
                        "Internal error: failed to allocate a serviceIP: range is full ({})",
                        ranges.cidr()
                    ),
                })?;
            Some(free)
        }
        text => {
            let invalid = |why: String| AllocError {
                field: "spec.clusterIPs".into(),
                message: format!(
                    "Invalid value: []string{{\"{text}\"}}: failed to allocate IP {text}: {why}"
                ),
            };
            let ip: Ipv4Addr = text
                .parse()
                .map_err(|_| invalid("must be a valid IPv4 address".into()))?;
            if !ranges.contains(ip) {
                return Err(invalid(format!(
                    "provided IP is not in the valid range. The range of valid IPs is {}",
                    ranges.cidr()
                )));
            }
            if used.ips.contains(&ip) {
                return Err(invalid("provided IP is already allocated".into()));
            }
            Some(ip)
        }
    };
    if let Some(ip) = ip {
        spec.insert("clusterIP".into(), json!(ip.to_string()));
        spec.insert("clusterIPs".into(), json!([ip.to_string()]));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        let mut taken = used.node_ports.clone();
        let (lo, hi) = (*ranges.node_ports.start(), *ranges.node_ports.end());
        let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        // Explicit node ports first, so an automatic one never takes a port asked for later.
        for (i, port) in ports.iter().enumerate() {
            let Some(p) = port.get("nodePort").and_then(Value::as_u64).filter(|p| *p != 0) else {
                continue;
            };
            let invalid = |why: String| AllocError {
                field: format!("spec.ports[{i}].nodePort"),
                message: format!("Invalid value: {p}: {why}"),
            };
            let p16 = u16::try_from(p)
                .ok()
                .filter(|p| (lo..=hi).contains(p))
                .ok_or_else(|| {
                    invalid(format!(
                        "provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
                    ))
                })?;
            if !taken.insert(p16) {
                return Err(invalid("provided port is already allocated".into()));
            }
        }
        for (i, port) in ports.iter_mut().enumerate() {
            if port
                .get("nodePort")
                .and_then(Value::as_u64)
                .is_some_and(|p| p != 0)
            {
                continue;
            }
            let free = (lo..=hi).find(|p| !taken.contains(p)).ok_or_else(|| AllocError {
                field: format!("spec.ports[{i}].nodePort"),
                message: "Internal error: failed to allocate a nodePort: range is full".into(),
            })?;
            taken.insert(free);
            port["nodePort"] = json!(free);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s"}, "spec": spec})
    }

    #[test]
    fn cluster_ips_come_from_the_cidr_and_skip_held_ones() {
        let ranges = ServiceRanges::default();
        let mut a = svc(json!({"type": "ClusterIP"}));
        allocate(&ranges, &mut a, &InUse::default()).unwrap();
        assert_eq!(a["spec"]["clusterIP"], "10.96.0.2");
        assert_eq!(a["spec"]["clusterIPs"], json!(["10.96.0.2"]));
        let used = InUse::from_services([&a]);
        let mut b = svc(json!({}));
        allocate(&ranges, &mut b, &used).unwrap();
        assert_eq!(b["spec"]["clusterIP"], "10.96.0.3");
        // Released: once `a` is gone its address is free again.
        let mut c = svc(json!({}));
        allocate(&ranges, &mut c, &InUse::from_services([&b])).unwrap();
        assert_eq!(c["spec"]["clusterIP"], "10.96.0.2");
    }

    #[test]
    fn headless_and_external_name_get_no_address() {
        let ranges = ServiceRanges::default();
        let mut h = svc(json!({"clusterIP": "None"}));
        allocate(&ranges, &mut h, &InUse::default()).unwrap();
        assert_eq!(h["spec"]["clusterIP"], "None");
        let mut e = svc(json!({"type": "ExternalName", "externalName": "example.com"}));
        allocate(&ranges, &mut e, &InUse::default()).unwrap();
        assert!(e["spec"].get("clusterIP").is_none());
    }

    #[test]
    fn explicit_cluster_ips_are_honoured_when_free_and_in_range() {
        let ranges = ServiceRanges::with_cidr("10.100.0.0/24").unwrap();
        let mut ok = svc(json!({"clusterIP": "10.100.0.50"}));
        allocate(&ranges, &mut ok, &InUse::default()).unwrap();
        assert_eq!(ok["spec"]["clusterIPs"], json!(["10.100.0.50"]));
        let used = InUse::from_services([&ok]);
        let err = allocate(&ranges, &mut svc(json!({"clusterIP": "10.100.0.50"})), &used).unwrap_err();
        assert_eq!(err.field, "spec.clusterIPs");
        assert!(
            err.message.ends_with("provided IP is already allocated"),
            "{err:?}"
        );
        let err = allocate(&ranges, &mut svc(json!({"clusterIP": "10.96.0.5"})), &used).unwrap_err();
        assert!(
            err.message
                .contains("not in the valid range. The range of valid IPs is 10.100.0.0/24")
        );
        assert!(ServiceRanges::with_cidr("10.96.0.0").is_err());
        assert!(ServiceRanges::with_cidr("10.96.0.0/31").is_err());
    }

    #[test]
    fn node_ports_are_allocated_and_explicit_ones_checked() {
        let ranges = ServiceRanges::default();
        let mut a =
            svc(json!({"type": "NodePort", "ports": [{"port": 80}, {"port": 81, "nodePort": 30000}]}));
        allocate(&ranges, &mut a, &InUse::default()).unwrap();
        assert_eq!(a["spec"]["ports"][0]["nodePort"], 30001);
        assert_eq!(a["spec"]["ports"][1]["nodePort"], 30000);
        let used = InUse::from_services([&a]);
        let mut b = svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}]}));
        let err = allocate(&ranges, &mut b, &used).unwrap_err();
        assert_eq!(err.field, "spec.ports[0].nodePort");
        assert_eq!(
            err.message,
            "Invalid value: 30001: provided port is already allocated"
        );
        let mut c = svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}));
        let err = allocate(&ranges, &mut c, &used).unwrap_err();
        assert!(
            err.message.contains("The range of valid ports is 30000-32767"),
            "{err:?}"
        );
        // ClusterIP Services get no node port.
        let mut d = svc(json!({"ports": [{"port": 80}]}));
        allocate(&ranges, &mut d, &used).unwrap();
        assert!(d["spec"]["ports"][0].get("nodePort").is_none());
    }
}
