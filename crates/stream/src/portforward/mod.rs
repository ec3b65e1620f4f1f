//! Serving port-forward on an upgraded connection (section 3): SPDY stream pairs, the same
//! tunnelled in WebSocket messages, or the WebSocket channel protocol.

mod spdy;
mod websocket;

use std::sync::Arc;

use podvisor_core::streams::PodStreams;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::negotiate::PortForwardProtocol;
use crate::{Limits, ServeError, ws};

/// The pod whose ports are forwarded, and what connects to them.
#[derive(Clone)]
pub struct PortForwardTarget {
    /// Connects to a port inside the pod (`PodStreams::port_forward`).
    pub streams: Arc<dyn PodStreams>,
    /// The pod's name, for error messages.
    pub pod_name: String,
    /// The pod's uid: what `port_forward` takes, and in error messages.
    pub pod_uid: String,
}

impl std::fmt::Debug for PortForwardTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortForwardTarget")
            .field("pod_name", &self.pod_name)
            .field("pod_uid", &self.pod_uid)
            .finish_non_exhaustive()
    }
}

impl PortForwardTarget {
    /// The text the client is shown when forwarding `port` failed (rule 3.4).
    fn error_text(&self, port: u16, error: &dyn std::fmt::Display) -> String {
        format!(
            "error forwarding port {port} to pod {}, uid {}: {error}",
            self.pod_name, self.pod_uid
        )
    }
}

/// Serves port-forward on `io`, the connection upgraded with `protocol` (from
/// [`crate::negotiate_port_forward`]). Over SPDY (plain or tunnelled) every client connection
/// is a stream pair and any number come and go (at most [`Limits::max_port_forward_pairs`] at
/// once); over the channel protocol each port of the query gets one connection for the whole
/// session. Returns when the client closed the connection, or (channel protocol) when every
/// port's connection ended.
pub async fn serve_port_forward<IO>(
    io: IO,
    protocol: PortForwardProtocol,
    target: PortForwardTarget,
    limits: &Limits,
) -> Result<(), ServeError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    match protocol {
        PortForwardProtocol::Spdy => spdy::serve(io, target, limits).await,
        // Rule 3.6: no inner HTTP upgrade, SPDY frames right after the WebSocket handshake.
        PortForwardProtocol::Tunnel => {
            spdy::serve(ws::WsBytes::new(ws::accept(io).await), target, limits).await
        }
        PortForwardProtocol::WebSocket { base64, ports } => {
            websocket::serve(io, base64, ports, target, limits).await
        }
    }
}
