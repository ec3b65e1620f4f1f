//! The `kubernetes` Service in `default`: the API's own ClusterIP (the service CIDR's first
//! address, port 443) with hand-made Endpoints and an EndpointSlice pointing at the API's
//! listen address, as kube-apiserver keeps them.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

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
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            service_cidr: "10.96.0.0/16".into(),
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

/// Starts what serves Services on this node: the `kubernetes` Service now, then (as tasks)
/// cluster DNS and the Service datapath.
pub async fn start(
    _tasks: &mut tokio::task::JoinSet<()>,
    store: Arc<dyn Store>,
    _config: &crate::NodeConfig,
    ranges: &ServiceRanges,
    api: SocketAddr,
    output: &crate::output::NodeOutput,
) {
    if let Err(e) = ensure_kubernetes_service(&*store, ranges.first(), api).await {
        output.notice(&format!("cannot create the kubernetes Service: {e}"));
    }
}
