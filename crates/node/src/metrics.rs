//! [`NodeMetrics`]: the node's one metrics registry, holding the pod workers' metrics
//! ([`KubeletMetrics`]) and the API server's ([`ApiMetrics`]), served at the API's `/metrics`.
//!
//! Without an API (no `--listen`) the metrics are still recorded but not served.

use std::sync::Arc;

use podvisor_apiserver::metrics::ApiMetrics;
use podvisor_kubelet::KubeletMetrics;
use prometheus_client::registry::Registry;

/// Every metric of a node, registered in one registry.
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    /// What the pod workers record (probes, pod starts, restarts, runtime operations).
    pub kubelet: KubeletMetrics,
    /// What the API server records (request latencies and counts, open watches).
    pub api: ApiMetrics,
    /// The registry holding both, for `/metrics`.
    pub registry: Arc<Registry>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics::new()
    }
}

impl NodeMetrics {
    /// Fresh metrics in a fresh registry.
    pub fn new() -> NodeMetrics {
        let kubelet = KubeletMetrics::new();
        let api = ApiMetrics::new();
        let mut registry = Registry::default();
        kubelet.register(&mut registry);
        api.register(&mut registry);
        NodeMetrics {
            kubelet,
            api,
            registry: Arc::new(registry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_registry_encodes_the_kubelet_metrics() {
        let metrics = NodeMetrics::new();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        // Labelled families appear once they have a series (tests/node_metrics.rs checks
        // those); the unlabelled metrics are there at once.
        for metric in [
            "# TYPE kubelet_pod_start_duration_seconds histogram",
            "# TYPE kubelet_started_pods counter",
        ] {
            assert!(text.contains(metric), "missing {metric}\n{text}");
        }
    }
}
