//! exec and attach over SPDY/3.1 (rules 2.3-2.5): one stream per standard stream, named by its
//! `streamtype` header, plus the error stream and (tty, v3 and later) the resize stream.

use std::future::Future;

use podvisor_core::streams::{Session, SessionEnd, StdioRequest, StreamError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{feed_stdin, pump};
use crate::negotiate::SpdyVersion;
use crate::resize::ResizeParser;
use crate::spdy::{Conn, Inbound, IncomingStream, rst};
use crate::status::{self, Outcome};
use crate::{AbortOnDrop, Limits, ServeError};

/// The streams of one session, by type.
#[derive(Default)]
struct Streams {
    error: Option<IncomingStream>,
    stdin: Option<IncomingStream>,
    stdout: Option<IncomingStream>,
    stderr: Option<IncomingStream>,
    resize: Option<IncomingStream>,
}

impl Streams {
    fn slot(&mut self, streamtype: &str) -> Option<&mut Option<IncomingStream>> {
        match streamtype {
            "error" => Some(&mut self.error),
            "stdin" => Some(&mut self.stdin),
            "stdout" => Some(&mut self.stdout),
            "stderr" => Some(&mut self.stderr),
            "resize" => Some(&mut self.resize),
            _ => None,
        }
    }
}

pub(super) async fn serve<IO, F>(
    io: IO,
    version: SpdyVersion,
    stdio: StdioRequest,
    open: F,
    limits: &Limits,
) -> Result<(), ServeError>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
    F: Future<Output = Result<Session, StreamError>> + Send,
{
    // At most the five stream types are ever open.
    let mut conn = Conn::start(io, limits.idle_timeout, 5);
    // Rule 2.4: 1 + stdin + stdout + stderr + resize (tty, v3 and later).
    let expected = 1
        + usize::from(stdio.stdin)
        + usize::from(stdio.stdout)
        + usize::from(stdio.stderr)
        + usize::from(stdio.tty && version >= SpdyVersion::V3);
    let mut streams = Streams::default();
    let mut received = 0;
    let deadline = Instant::now() + limits.stream_creation_timeout;
    while received < expected {
        let stream = tokio::select! {
            stream = conn.next_stream() => stream,
            () = tokio::time::sleep_until(deadline) => {
                // Upstream drops the connection; so do we (dropping `conn`).
                return Err(ServeError::StreamCreationTimeout(limits.stream_creation_timeout));
            }
        };
        let Some(stream) = stream else {
            // The client went away (or broke the protocol: that error is returned).
            return Ok(conn.close(limits.close_timeout).await?);
        };
        let streamtype = crate::spdy::header(&stream.headers, "streamtype")
            .unwrap_or_default()
            .to_owned();
        let mut stream = stream;
        if !matches!(streamtype.as_str(), "stdin" | "resize") {
            stream.ignore_inbound();
        }
        match streams.slot(&streamtype) {
            Some(slot) if slot.is_none() => {
                stream.out.reply().await;
                *slot = Some(stream);
                received += 1;
            }
            Some(_) => {
                stream.out.reset(rst::PROTOCOL_ERROR).await;
            }
            // Rule 2.4: an unknown type is accepted and ignored.
            None => {
                stream.out.reply().await;
            }
        }
    }

    let outcome = match open.await {
        Err(e) => Err(e),
        Ok(session) => match run(session, &mut streams, &mut conn).await {
            Some(end) => Ok(end),
            None => return Ok(conn.close(limits.close_timeout).await?),
        },
    };
    if let Some(error) = &streams.error {
        let status = if version >= SpdyVersion::V4 {
            Some(status::json(&outcome))
        } else {
            status::text(&outcome)
        };
        if let Some(status) = status {
            error.out.data(status.into()).await;
        }
        error.out.fin().await;
    }
    report(&outcome);
    conn.close(limits.close_timeout).await?;
    Ok(())
}

fn report(outcome: &Outcome) {
    tracing::debug!(?outcome, "exec session over SPDY ended");
}

/// Wires the session to the streams until it ended (`Some`) or the client left (`None`).
async fn run(mut session: Session, streams: &mut Streams, conn: &mut Conn) -> Option<SessionEnd> {
    let _stdin_task = match (session.stdin.take(), streams.stdin.take()) {
        (Some(writer), Some(mut stream)) => {
            let (tx, rx) = mpsc::channel(16);
            let forward = async move {
                // Rule 2.5: FIN (or a reset) on the stdin stream is stdin's end.
                while let Inbound::Data(data) = stream.recv().await {
                    if tx.send(data).await.is_err() {
                        break;
                    }
                }
            };
            let feed = crate::spawn(feed_stdin(writer, rx));
            let forward = crate::spawn(forward);
            Some((
                AbortOnDrop(feed.abort_handle()),
                AbortOnDrop(forward.abort_handle()),
            ))
        }
        _ => None,
    };
    let _resize_task = match (session.resize.take(), streams.resize.take()) {
        (Some(apply), Some(mut stream)) => {
            let task = async move {
                let mut parser = ResizeParser::new();
                while let Inbound::Data(data) = stream.recv().await {
                    match parser.push(&data) {
                        Ok(sizes) => sizes.into_iter().for_each(&apply),
                        Err(e) => {
                            tracing::debug!(error = %e, "bad resize stream");
                            stream.out.reset(rst::PROTOCOL_ERROR).await;
                            return;
                        }
                    }
                }
            };
            Some(AbortOnDrop(crate::spawn(task).abort_handle()))
        }
        _ => None,
    };
    let output = |stream: Option<&IncomingStream>| {
        let out = stream.map(|s| s.out.clone());
        move |reader| async move {
            let Some(out) = out else { return };
            pump(reader, |bytes| {
                let out = out.clone();
                async move { out.data(bytes).await }
            })
            .await;
            // Rule 2.5: FIN after the last byte.
            out.fin().await;
        }
    };
    let outputs = futures_util::future::join(
        output(streams.stdout.as_ref())(session.stdout.take()),
        output(streams.stderr.as_ref())(session.stderr.take()),
    );
    let finished = futures_util::future::join(session.end, outputs);
    tokio::pin!(finished);
    loop {
        tokio::select! {
            (end, _) = &mut finished => return Some(end),
            stream = conn.next_stream() => match stream {
                // No stream is expected any more.
                Some(extra) => { extra.out.reset(rst::REFUSED_STREAM).await; }
                None => return None,
            },
        }
    }
}
