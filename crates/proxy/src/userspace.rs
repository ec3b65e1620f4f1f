//! The userspace fallback datapath: NodePorts served by a TCP proxy in the node itself, for
//! nodes that cannot program nftables (not root, or no `nft`).
//!
//! Each TCP NodePort gets a listener on all of the node's addresses; a connection goes to the
//! next ready endpoint (round robin) and bytes are copied both ways. With no ready endpoint the
//! connection is closed at once. ClusterIPs need the kernel datapath: a process cannot receive
//! traffic for an address no interface has without root.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::ProxyService;

type Endpoints = Arc<RwLock<Vec<(Ipv4Addr, u16)>>>;

/// Serves the TCP NodePorts of the Services it is given.
#[derive(Default)]
pub struct UserspaceProxy {
    listeners: HashMap<u16, (Endpoints, JoinHandle<()>)>,
}

impl UserspaceProxy {
    /// A proxy serving nothing yet.
    pub fn new() -> UserspaceProxy {
        UserspaceProxy::default()
    }

    /// The node ports it currently listens on.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.listeners.keys().copied().collect();
        ports.sort_unstable();
        ports
    }

    /// Listens on every TCP NodePort of `services` (and stops listening on the others), sending
    /// connections to the ports' current ready endpoints.
    pub async fn sync(&mut self, services: &[ProxyService]) {
        let mut wanted: HashMap<u16, Vec<(Ipv4Addr, u16)>> = HashMap::new();
        for port in services.iter().flat_map(|s| &s.ports) {
            if port.protocol.eq_ignore_ascii_case("tcp")
                && let Some(node_port) = port.node_port
            {
                wanted
                    .entry(node_port)
                    .or_default()
                    .extend(port.endpoints.iter().copied());
            }
        }
        self.listeners.retain(|port, (_, task)| {
            let keep = wanted.contains_key(port);
            if !keep {
                task.abort();
            }
            keep
        });
        for (port, endpoints) in wanted {
            if let Some((current, _)) = self.listeners.get(&port) {
                *current.write().unwrap_or_else(|e| e.into_inner()) = endpoints;
                continue;
            }
            let listener = match TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await {
                Ok(l) => l,
                Err(e) => {
                    warn!(port, error = %e, "cannot listen on a node port");
                    continue;
                }
            };
            let shared: Endpoints = Arc::new(RwLock::new(endpoints));
            let task = tokio::spawn(serve(listener, shared.clone()));
            self.listeners.insert(port, (shared, task));
        }
    }
}

impl Drop for UserspaceProxy {
    fn drop(&mut self) {
        for (_, task) in self.listeners.values() {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, endpoints: Endpoints) {
    let next = AtomicUsize::new(0);
    loop {
        let Ok((mut client, peer)) = listener.accept().await else {
            continue;
        };
        let target = {
            let list = endpoints.read().unwrap_or_else(|e| e.into_inner());
            if list.is_empty() {
                None
            } else {
                Some(list[next.fetch_add(1, Ordering::Relaxed) % list.len()])
            }
        };
        let Some((ip, port)) = target else {
            // No ready endpoint: close at once, as a rejected connection would.
            drop(client);
            continue;
        };
        tokio::spawn(async move {
            match TcpStream::connect((ip, port)).await {
                Ok(mut upstream) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(e) => debug!(%peer, error = %e, "node port endpoint unreachable"),
            }
        });
    }
}
