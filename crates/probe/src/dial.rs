//! Probe sockets: every TCP, HTTP and gRPC probe connects through here, so that closing a probe
//! connection leaves no `TIME_WAIT` behind (`SO_LINGER` 0; the crate docs say why not 1 s).
//!
//! A probe connection is closed, never shut down first: [`ProbeStream`]'s `poll_shutdown` sends
//! nothing. Go's client closes a connection it will not reuse the same way (`close`, no
//! `shutdown`). hyper shuts a connection down when the server answers `Connection: close`: a
//! system call and a FIN, and a server-side `TIME_WAIT` if the FIN reaches the server before our
//! RST does.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Why a probe could not connect.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The host name did not resolve to any address.
    #[error("dial tcp: lookup {host}: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// What the resolver said.
        #[source]
        source: io::Error,
    },
    /// The name resolved, but to no address.
    #[error("dial tcp: lookup {host}: no such host")]
    NoAddress {
        /// The host name.
        host: String,
    },
    /// Connecting to `addr` failed (refused, unreachable, ...).
    #[error("dial tcp {addr}: connect: {source}")]
    Connect {
        /// The address tried last.
        addr: SocketAddr,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
}

/// Connects to `host:port` with a probe socket: `SO_LINGER` on with 0 s (closing sends a RST
/// and leaves no `TIME_WAIT`) and `TCP_NODELAY` (a small request must not wait for Nagle).
///
/// `host` is an IP address or a name, which is resolved; the addresses are tried in order. No
/// timeout of its own: callers bound it with their deadline, and dropping the future closes the
/// half-open socket.
pub async fn connect(host: &str, port: u16) -> Result<ProbeStream, DialError> {
    let (addr, socket) = dial(host, port, true).await?;
    TcpStream::from_std(socket.into())
        .map(ProbeStream)
        .map_err(|source| DialError::Connect { addr, source })
}

/// Connects to `host:port` as [`connect`] does and closes the connection at once (a RST): a
/// TCP probe's whole exchange. The socket never joins the runtime's reactor when the
/// handshake ends within the `connect` call, as it does to a local address.
pub async fn reach(host: &str, port: u16) -> Result<(), DialError> {
    dial(host, port, false).await.map(drop)
}

/// A connected probe socket to the first of `host`'s addresses that accepts, and that address.
async fn dial(host: &str, port: u16, nodelay: bool) -> Result<(SocketAddr, Socket), DialError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|source| DialError::Resolve {
                host: bare.to_owned(),
                source,
            })?
            .collect(),
    };
    let mut last = None;
    for addr in addrs {
        match connect_addr(addr, nodelay).await {
            Ok(socket) => return Ok((addr, socket)),
            Err(source) => last = Some(DialError::Connect { addr, source }),
        }
    }
    Err(last.unwrap_or_else(|| DialError::NoAddress {
        host: bare.to_owned(),
    }))
}

/// One connection attempt to one address with the probe socket options.
///
/// To a local address (loopback, a pod on this node's bridge) the kernel runs the whole
/// handshake, or the refusal, inside the non-blocking `connect` call, which still says "in
/// progress": the socket is then asked whether it has a peer (or an error) before anything
/// waits. Only a handshake still under way waits for the socket to become writable in the
/// reactor, as tokio's own connect does.
async fn connect_addr(addr: SocketAddr, nodelay: bool) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    // Why 0 and not the kubelet's 1 s: see the crate docs ("Sockets").
    socket.set_linger(Some(Duration::ZERO))?;
    if nodelay {
        socket.set_tcp_nodelay(true)?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => return Ok(socket),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    if socket.peer_addr().is_ok() {
        return Ok(socket);
    }
    if let Some(e) = socket.take_error()? {
        return Err(e);
    }
    let stream = TcpStream::from_std(socket.into())?;
    stream.writable().await?;
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    // Out of the reactor again: the caller registers what it keeps.
    Ok(Socket::from(stream.into_std()?))
}

/// A connected probe socket: reads and writes go to the socket; shutting it down sends nothing
/// (see the module docs). Dropping it closes the socket with a RST.
#[derive(Debug)]
pub struct ProbeStream(TcpStream);

impl AsyncRead for ProbeStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProbeStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    /// Nothing is sent: the connection ends when the stream is dropped.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn a_refused_local_port_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        match reach("127.0.0.1", port).await {
            Err(DialError::Connect { source, .. }) => {
                assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused, "{source}");
            }
            other => panic!("expected a refused connect, got {other:?}"),
        }
    }
}
