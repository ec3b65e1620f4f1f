//! An agent's kubelet endpoint: its pods' logs, usage counters and exec, attach and
//! port-forward for the API servers
//! ([`podvisor_apiserver::kubelet`]), on HTTPS at its InternalIP with a self-signed certificate
//! made in `<data-dir>/kubelet/pki/`, reported in its Node's `status.daemonEndpoints`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use podvisor_apiserver::logs::LogSource;
use podvisor_core::corev1::Pod;
use podvisor_core::usage::UsageSource;
use podvisor_kubelet::output::NodeOutput;

/// What the endpoint needs.
pub(crate) struct Endpoint {
    /// The agent's client of the API (its pods are read through it).
    pub(crate) client: kube::Client,
    /// The token the API servers present.
    pub(crate) token: String,
    /// The agent's container logs.
    pub(crate) logs: Arc<dyn LogSource>,
    /// The agent's usage counters, for `kubectl top`.
    pub(crate) usage: Option<Arc<dyn UsageSource>>,
    /// Exec, attach and port-forward into the agent's pods.
    pub(crate) streams: Option<Arc<dyn podvisor_core::streams::PodStreams>>,
    /// The agent's data dir.
    pub(crate) data_dir: PathBuf,
    /// The agent's InternalIP.
    pub(crate) ip: String,
    /// The port to listen on (`0`: any free one).
    pub(crate) port: u16,
}

impl Endpoint {
    /// Binds and starts serving on `tasks`; the port served, or `None` (said on `output`) when
    /// it cannot be served, and the agent's pods' logs are then not reachable from the API.
    pub(crate) async fn start(
        self,
        tasks: &mut tokio::task::JoinSet<()>,
        output: &NodeOutput,
    ) -> Option<u16> {
        let Ok(ip) = self.ip.parse::<IpAddr>() else {
            output.notice(&format!(
                "no kubelet endpoint: `{}` is not an IP address",
                self.ip
            ));
            return None;
        };
        let tls = podvisor_apiserver::pki::Pki::load_or_create(&self.data_dir.join("kubelet"), ip)
            .and_then(|pki| pki.server_config());
        let tls = match tls {
            Ok(tls) => tls,
            Err(e) => {
                output.notice(&format!("no kubelet endpoint: {e}"));
                return None;
            }
        };
        let addr = SocketAddr::new(ip, self.port);
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                output.notice(&format!(
                    "no kubelet endpoint on {addr} ({e}): `kubectl logs` of this node's pods is not served"
                ));
                return None;
            }
        };
        let port = listener.local_addr().ok()?.port();
        let client = self.client;
        let pods: podvisor_apiserver::kubelet::PodReader = Arc::new(move |namespace, name| {
            let pods = kube::Api::<Pod>::namespaced(client.clone(), &namespace);
            Box::pin(async move {
                let pod = pods.get_opt(&name).await.ok()??;
                serde_json::to_value(pod).ok()
            })
        });
        let parts = podvisor_apiserver::kubelet::EndpointParts {
            token: self.token,
            pods,
            logs: self.logs,
            usage: self.usage,
            streams: self.streams,
        };
        tasks.spawn(podvisor_apiserver::kubelet::serve_endpoint(listener, tls, parts));
        Some(port)
    }
}
