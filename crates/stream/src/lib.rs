//! The server side of the wire protocols of `pods/exec`, `pods/attach` and `pods/portforward`
//! (shared/docs/streaming-and-apply.md sections 1-4; rule numbers below are that document's):
//! WebSocket channels (`v5`/`v4`/`v4.base64`/`channel.k8s.io`/`base64.channel.k8s.io`),
//! SPDY/3.1 (exec protocols v1-v5 and `portforward.k8s.io`), SPDY tunnelled in WebSocket
//! messages (kubectl's port-forward since 1.31) and port-forward's WebSocket channel protocol.
//!
//! What it is **not**: it does not look up pods, pick containers or authorize — the API server
//! does all that before it calls in here — and it runs nothing itself: a session's process and
//! a forwarded port's connection come from [`podvisor_core::streams::PodStreams`]. It speaks
//! no HTTP either: it reads request headers (`http` types) and returns the headers of the
//! `101 Switching Protocols` answer; the caller writes that answer and hands over the upgraded
//! connection (any `AsyncRead + AsyncWrite`, e.g. hyper's `Upgraded` in `TokioIo`).
//!
//! Where to start, in the order the API server calls:
//! 1. [`ExecQuery::parse_exec`] / [`ExecQuery::parse_attach`] (rule 1.2, 1.3) and
//!    [`resolve_container`] — errors are texts for a 400 Status;
//! 2. [`negotiate_exec`] / [`negotiate_port_forward`] — an [`Upgrade`] (the protocol and the
//!    101's headers) or a [`Refusal`] (status code, message, headers), rules 1.4-1.7, 2.2,
//!    3.1, 3.6, 3.10; [`bearer_token`] gives a token offered as a subprotocol (1.21);
//! 3. [`serve_exec`] / [`serve_port_forward`] on the upgraded connection.
//!
//! Bounds: a WebSocket message or a SPDY frame carries at most 16 MiB ([`MAX_FRAME_PAYLOAD`]),
//! a SPDY header block decompresses to at most 1 MiB ([`MAX_HEADER_BLOCK`]); [`Limits`] holds
//! the timeouts (stream creation 30 s, idle 4 h) and the number of port-forward pairs open at
//! once per connection (1024). Peer input never panics: it ends the connection with an error.
//!
//! Cancel safety and shutdown: the serve functions own the connection and every task they
//! start (dropped with them); dropping a serve future drops the session, which kills an exec'd
//! command ([`podvisor_core::streams::Session`]). Each returns when the session has ended and
//! the connection is closed, or the client went away, or the idle timeout passed.

#![forbid(unsafe_code)]

mod exec;
mod negotiate;
mod portforward;
mod query;
mod resize;
mod spdy;
mod status;
mod ws;

use std::time::Duration;

pub use exec::serve_exec;
pub use negotiate::{
    ChannelProtocol, ExecProtocol, PortForwardProtocol, Refusal, SpdyVersion, Upgrade, bearer_token,
    negotiate_exec, negotiate_port_forward,
};
pub use portforward::{PortForwardTarget, serve_port_forward};
pub use query::{ExecQuery, QueryError, parse_ports, resolve_container};
pub use resize::{ResizeError, ResizeParser};
pub use spdy::SpdyError;

/// The largest WebSocket message and SPDY frame payload accepted (a SPDY length field cannot
/// say more than 2^24 - 1 anyway).
pub const MAX_FRAME_PAYLOAD: usize = 16 << 20;

/// The largest decompressed SPDY header block accepted.
pub const MAX_HEADER_BLOCK: usize = 1 << 20;

/// The largest chunk of process or port output sent as one message or frame (rule 1.18).
pub(crate) const CHUNK: usize = 32 << 10;

/// Timeouts and counts that bound one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long exec/attach over SPDY waits for the client's streams, and a port-forward pair
    /// for its second stream (upstream's `DefaultStreamCreationTimeout`, rules 2.4, 3.3).
    pub stream_creation_timeout: Duration,
    /// A connection on which the client sent nothing for this long is closed (rule 1.17).
    pub idle_timeout: Duration,
    /// How long to wait for the client's answer to our WebSocket Close or SPDY GOAWAY before
    /// dropping the connection (rule 1.16).
    pub close_timeout: Duration,
    /// Port-forward stream pairs open at once on one SPDY connection; more are refused.
    pub max_port_forward_pairs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            stream_creation_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(4 * 60 * 60),
            close_timeout: Duration::from_secs(10),
            max_port_forward_pairs: 1024,
        }
    }
}

/// Why serving an upgraded connection ended early. A session that could not start, or a
/// command that failed, is not an error here: the client is told on the error channel.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The WebSocket layer failed (a malformed or oversized frame, an I/O error).
    #[error("websocket: {0}")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The SPDY layer failed.
    #[error("spdy: {0}")]
    Spdy(#[from] SpdyError),
    /// The client broke the channel protocol (e.g. a malformed CLOSE message, rule 1.11).
    #[error("channel protocol error: {0}")]
    Protocol(String),
    /// The client did not open every expected stream in time (rule 2.4).
    #[error("timed out after {0:?} waiting for the client's streams")]
    StreamCreationTimeout(Duration),
    /// The client sent nothing for the idle timeout.
    #[error("connection idle for {0:?}")]
    Idle(Duration),
}

impl From<tokio_tungstenite::tungstenite::Error> for ServeError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::WebSocket(Box::new(e))
    }
}

/// Spawns a task of a connection in the caller's span (the API server's request), so its
/// events carry the pod and the request.
pub(crate) fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::Instrument as _;
    tokio::spawn(future.in_current_span())
}

/// Aborts a spawned task when dropped, so no task outlives the connection it serves.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests;
