//! Serving exec and attach on an upgraded connection: the session's stdio over WebSocket
//! channels (section 1) or SPDY streams (section 2), then its end on the error channel.

mod spdy;
mod websocket;

use std::future::Future;

use bytes::Bytes;
use podvisor_core::streams::{Reader, Session, StdioRequest, StreamError, Writer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::compat::{FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt};

use crate::negotiate::ExecProtocol;
use crate::{CHUNK, Limits, ServeError};

/// Serves one exec or attach session on `io` (attach speaks exactly exec's protocols), the connection upgraded with `protocol` (from
/// [`crate::negotiate_exec`]). `open` starts the session (typically
/// `PodStreams::exec`/`attach` with `stdio`); it is awaited only once the client's streams are
/// there, as the kubelet does. When the session cannot start, the client is told why on the
/// error channel and this returns `Ok`.
///
/// Returns once the session ended and its status went out (rules 1.16, 2.5), or when the
/// client went away (the session is then dropped: an exec'd command is killed).
pub async fn serve_exec<IO, F>(
    io: IO,
    protocol: ExecProtocol,
    stdio: StdioRequest,
    open: F,
    limits: &Limits,
) -> Result<(), ServeError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    F: Future<Output = Result<Session, StreamError>> + Send,
{
    match protocol {
        ExecProtocol::WebSocket(channels) => websocket::serve(io, channels, stdio, open, limits).await,
        ExecProtocol::Spdy(version) => spdy::serve(io, version, stdio, open, limits).await,
    }
}

/// Reads a process's output in chunks of at most [`CHUNK`] and hands each to `send` at once
/// (rule 1.18); stops at the end of the output, a read error, or when `send` says the client is
/// gone (false).
async fn pump<F, Fut>(reader: Option<Reader>, mut send: F)
where
    F: FnMut(Bytes) -> Fut,
    Fut: Future<Output = bool>,
{
    let Some(reader) = reader else { return };
    let mut reader = reader.compat();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !send(Bytes::copy_from_slice(&buf[..n])).await {
                    return;
                }
            }
        }
    }
}

/// Writes what arrives to the process's stdin; when every sender is gone (the client
/// half-closed stdin, or went away), closes stdin so the process reads end-of-file.
async fn feed_stdin(writer: Writer, mut rx: mpsc::Receiver<Bytes>) {
    let mut writer = writer.compat_write();
    while let Some(bytes) = rx.recv().await {
        if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
}
