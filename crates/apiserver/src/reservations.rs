//! Service addresses reserved in the store, so that API servers sharing one store never give
//! two Services the same ClusterIP or node port (kube-apiserver reserves them in etcd too:
//! allocation bitmaps, or `IPAddress` objects named by the address since 1.33).
//!
//! Each address a new Service gets is first created as an object named after it
//! (`ip-10.96.0.5`, `nodeport-30001`) under a resource the API does not serve; creating an
//! object is atomic in the store, so of two servers choosing the same address at once only one
//! gets it, and the other chooses again. A reservation is the Service's while that Service (same
//! namespace, name and uid) exists and still holds the address; one whose Service is gone (it
//! was deleted, its create failed, or it changed its addresses) is taken over once it is older
//! than [`STALE_AFTER_MS`], so a Service being created on another server right now keeps its
//! address. Deleting a Service, or failing to store it, releases its reservations at once
//! (`release`); the staleness rule covers a server that died in between.

use std::net::Ipv4Addr;

use podvisor_store::{ObjectKey, Preconditions, Store, StoreError};
use serde_json::{Value, json};

use crate::meta::now_millis;

/// The store resource of reservations (not served by the API).
pub const RESOURCE: &str = "podvisor.io/serviceaddresses";

/// A reservation older than this whose Service does not hold its address is free again.
pub const STALE_AFTER_MS: i64 = 30_000;

/// One address a Service holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Address {
    /// Its ClusterIP.
    Ip(Ipv4Addr),
    /// One of its node ports.
    NodePort(u16),
}

impl Address {
    fn name(self) -> String {
        match self {
            Address::Ip(ip) => format!("ip-{ip}"),
            Address::NodePort(port) => format!("nodeport-{port}"),
        }
    }

    /// Whether the Service `service` holds this address.
    fn held_by(self, service: &Value) -> bool {
        let spec = &service["spec"];
        match self {
            Address::Ip(ip) => spec["clusterIP"].as_str() == Some(ip.to_string().as_str()),
            Address::NodePort(port) => spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["nodePort"].as_u64() == Some(u64::from(port))),
        }
    }
}

/// The addresses of a Service about to be stored.
pub(crate) fn addresses(service: &Value) -> Vec<Address> {
    let spec = &service["spec"];
    let mut out: Vec<Address> = spec["clusterIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .map(Address::Ip)
        .into_iter()
        .collect();
    for port in spec["ports"].as_array().into_iter().flatten() {
        if let Some(p) = port["nodePort"].as_u64().and_then(|p| u16::try_from(p).ok()) {
            out.push(Address::NodePort(p));
        }
    }
    out
}

/// Reserves every address of `service` (in `namespace`) for it; `Ok(Some(address))` names the first one
/// another Service holds (those before it stay reserved for this Service, which a retry finds
/// its own).
pub(crate) async fn reserve(
    store: &dyn Store,
    service: &Value,
    namespace: &str,
) -> Result<Option<Address>, StoreError> {
    let owner = json!({
        "namespace": namespace,
        "name": service["metadata"]["name"],
        "uid": service["metadata"]["uid"],
    });
    for address in addresses(service) {
        let key = ObjectKey::new(RESOURCE, "", address.name());
        let record =
            json!({"metadata": {"name": address.name()}, "service": owner, "reservedAt": now_millis()});
        match store.create(&key, record.clone()).await {
            Ok(_) => continue,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        let existing = match store.get(&key).await {
            Ok(existing) => existing,
            // Taken over and released meanwhile: choose again.
            Err(StoreError::NotFound { .. }) => return Ok(Some(address)),
            Err(e) => return Err(e),
        };
        if existing.object["service"] == owner {
            continue;
        }
        if in_use(store, &existing.object, address).await? {
            return Ok(Some(address));
        }
        let age = now_millis().saturating_sub(existing.object["reservedAt"].as_i64().unwrap_or(0));
        if age < STALE_AFTER_MS {
            return Ok(Some(address));
        }
        let pre = Preconditions {
            resource_version: Some(existing.revision),
            uid: None,
        };
        match store.update(&key, record, pre).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => return Ok(Some(address)),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Releases the reservations `service` holds (it was deleted, or its create failed), so its
/// addresses are free at once; reservations of another Service are left alone. Best effort: a
/// reservation left behind is taken over once stale.
pub(crate) async fn release(store: &dyn Store, service: &Value, namespace: &str) {
    for address in addresses(service) {
        let key = ObjectKey::new(RESOURCE, "", address.name());
        let Ok(existing) = store.get(&key).await else {
            continue;
        };
        let owner = &existing.object["service"];
        if owner["namespace"] != namespace || owner["uid"] != service["metadata"]["uid"] {
            continue;
        }
        let pre = Preconditions {
            resource_version: Some(existing.revision),
            uid: None,
        };
        if let Err(e) = store.delete(&key, pre).await {
            tracing::debug!(error = %e, key = %key, "releasing a Service address");
        }
    }
}

/// Whether the Service a reservation names still exists, is the same Service, and holds the
/// address.
async fn in_use(store: &dyn Store, reservation: &Value, address: Address) -> Result<bool, StoreError> {
    let owner = &reservation["service"];
    let (Some(ns), Some(name)) = (owner["namespace"].as_str(), owner["name"].as_str()) else {
        return Ok(false);
    };
    match store.get(&ObjectKey::new("services", ns, name)).await {
        Ok(service) => {
            Ok(service.object["metadata"]["uid"] == owner["uid"] && address.held_by(&service.object))
        }
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::alloc::{AllocFailure, Allocator, ServiceRanges};

    fn service(name: &str, spec: Value) -> Value {
        json!({"metadata": {"name": name, "uid": format!("uid-{name}")}, "spec": spec})
    }

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store =
            podvisor_store::RedbStore::open(dir.path().join("s.redb")).unwrap_or_else(|e| panic!("{e}"));
        (dir, Arc::new(store))
    }

    #[tokio::test]
    async fn two_servers_never_give_out_one_address() {
        let (_dir, store) = store();
        let ranges = ServiceRanges::with_cidr("10.96.0.0/24").unwrap_or_else(|e| panic!("{e}"));
        let (one, two) = (Allocator::new(ranges.clone()), Allocator::new(ranges));
        // Server one gives `a` its addresses; `a` is not stored yet when server two allocates.
        let mut a = service("a", json!({"type": "NodePort", "ports": [{"port": 80}]}));
        drop(
            one.allocate(store.as_ref(), &mut a, Some("default"))
                .await
                .unwrap_or_else(|_| panic!("a")),
        );
        let mut b = service("b", json!({"type": "NodePort", "ports": [{"port": 80}]}));
        drop(
            two.allocate(store.as_ref(), &mut b, Some("default"))
                .await
                .unwrap_or_else(|_| panic!("b")),
        );
        assert_eq!(a["spec"]["clusterIP"], "10.96.0.2");
        assert_eq!(b["spec"]["clusterIP"], "10.96.0.3");
        assert_ne!(
            a["spec"]["ports"][0]["nodePort"],
            b["spec"]["ports"][0]["nodePort"]
        );
        // Asking for `a`'s address explicitly on the other server is refused.
        let mut c = service("c", json!({"clusterIP": "10.96.0.2", "ports": [{"port": 80}]}));
        match two.allocate(store.as_ref(), &mut c, Some("default")).await {
            Err(AllocFailure::Refused(e)) => assert!(
                e.message.ends_with("provided IP is already allocated"),
                "{}",
                e.message
            ),
            _ => panic!("a reserved address given twice"),
        }
        // A dry run reserves nothing.
        let mut d = service("d", json!({"ports": [{"port": 80}]}));
        drop(
            two.allocate(store.as_ref(), &mut d, None)
                .await
                .unwrap_or_else(|_| panic!("d")),
        );
        assert!(d["spec"]["clusterIP"].is_string());
        let all = store
            .list(RESOURCE, None, Default::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.items.len(), 4, "a and b: an address and a node port each");
        assert!(all.items.iter().all(|r| r.object["service"]["name"] != "d"));
    }

    #[tokio::test]
    async fn a_released_address_is_free_at_once() {
        let (_dir, store) = store();
        let allocator =
            Allocator::new(ServiceRanges::with_cidr("10.96.0.0/24").unwrap_or_else(|e| panic!("{e}")));
        let mut a = service("a", json!({"clusterIP": "10.96.0.1", "ports": [{"port": 443}]}));
        drop(
            allocator
                .allocate(store.as_ref(), &mut a, Some("default"))
                .await
                .unwrap_or_else(|_| panic!("a")),
        );
        // A second Service of that name (deleted and made again) asks for the same address.
        let mut again = service("a", json!({"clusterIP": "10.96.0.1", "ports": [{"port": 443}]}));
        again["metadata"]["uid"] = json!("uid-a-again");
        assert!(
            allocator
                .allocate(store.as_ref(), &mut again.clone(), Some("default"))
                .await
                .is_err()
        );
        release(store.as_ref(), &a, "default").await;
        drop(
            allocator
                .allocate(store.as_ref(), &mut again, Some("default"))
                .await
                .unwrap_or_else(|_| panic!("again")),
        );
        // Releasing the old Service again leaves the new one's reservation alone.
        release(store.as_ref(), &a, "default").await;
        let held = store
            .get(&ObjectKey::new(RESOURCE, "", "ip-10.96.0.1"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(held.object["service"]["uid"], "uid-a-again");
    }

    #[tokio::test]
    async fn a_reservation_whose_service_is_gone_is_taken_over_when_old() {
        let (_dir, store) = store();
        let allocator =
            Allocator::new(ServiceRanges::with_cidr("10.96.0.0/24").unwrap_or_else(|e| panic!("{e}")));
        // A reservation left by a create that failed a minute ago.
        let old = json!({"metadata": {"name": "ip-10.96.0.2"},
            "service": {"namespace": "default", "name": "failed", "uid": "uid-failed"},
            "reservedAt": now_millis() - 60_000});
        store
            .create(&ObjectKey::new(RESOURCE, "", "ip-10.96.0.2"), old)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut s = service("s", json!({"ports": [{"port": 80}]}));
        drop(
            allocator
                .allocate(store.as_ref(), &mut s, Some("default"))
                .await
                .unwrap_or_else(|_| panic!("s")),
        );
        assert_eq!(s["spec"]["clusterIP"], "10.96.0.2");
        let taken = store
            .get(&ObjectKey::new(RESOURCE, "", "ip-10.96.0.2"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(taken.object["service"]["name"], "s");
    }
}
