//! exec and attach over the WebSocket channel protocol (rules 1.8-1.18).

use std::future::Future;

use futures_util::StreamExt;
use podvisor_core::streams::{Session, StdioRequest, StreamError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{feed_stdin, pump};
use crate::negotiate::ChannelProtocol;
use crate::resize::ResizeParser;
use crate::status::{self, Outcome};
use crate::ws::{self, ChannelInput};
use crate::{AbortOnDrop, Limits, ServeError};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

pub(super) async fn serve<IO, F>(
    io: IO,
    protocol: ChannelProtocol,
    stdio: StdioRequest,
    open: F,
    limits: &Limits,
) -> Result<(), ServeError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    F: Future<Output = Result<Session, StreamError>> + Send,
{
    let base64 = protocol.base64();
    let (sink, mut stream) = ws::accept(io).await.split();
    let (tx, rx) = mpsc::channel::<Message>(32);
    let writer = crate::spawn(ws::write_messages(sink, rx));
    let _abort_writer = AbortOnDrop(writer.abort_handle());

    // Rule 1.9: an empty message on the lowest channel the client reads.
    let first = if stdio.stdout {
        STDOUT
    } else if stdio.stderr {
        STDERR
    } else {
        ERROR
    };
    let _ = tx.send(ws::channel_message(base64, first, &[])).await;

    let outcome = match open.await {
        Err(e) => Err(e),
        Ok(session) => match run(session, &mut stream, &tx, protocol, limits).await? {
            Some(end) => Ok(end),
            // The client went away: nothing to tell it; answer its Close.
            None => return ws::close_writer(tx, writer, limits.close_timeout).await,
        },
    };
    finish(tx, writer, &mut stream, protocol, &outcome, limits).await
}

/// Wires the session to the channels until it ended (`Some`) or the client left (`None`).
async fn run<S>(
    mut session: Session,
    stream: &mut S,
    tx: &mpsc::Sender<Message>,
    protocol: ChannelProtocol,
    limits: &Limits,
) -> Result<Option<podvisor_core::streams::SessionEnd>, ServeError>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let base64 = protocol.base64();
    let (mut stdin_tx, stdin_task) = match session.stdin.take() {
        Some(writer) => {
            let (stdin_tx, stdin_rx) = mpsc::channel(16);
            (
                Some(stdin_tx),
                Some(AbortOnDrop(
                    crate::spawn(feed_stdin(writer, stdin_rx)).abort_handle(),
                )),
            )
        }
        None => (None, None),
    };
    let send_on = |channel: u8| {
        move |bytes: bytes::Bytes| async move {
            tx.send(ws::channel_message(base64, channel, &bytes))
                .await
                .is_ok()
        }
    };
    let outputs = futures_util::future::join(
        pump(session.stdout.take(), send_on(STDOUT)),
        pump(session.stderr.take(), send_on(STDERR)),
    );
    let finished = futures_util::future::join(session.end, outputs);
    tokio::pin!(finished);
    let mut resize = ResizeParser::new();
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let end = loop {
        tokio::select! {
            (end, _) = &mut finished => break end,
            message = stream.next() => {
                idle.as_mut().reset(Instant::now() + limits.idle_timeout);
                let input = match message {
                    Some(Ok(m)) => ws::parse_channel_message(base64, m)?,
                    // Rule 1.16: a connection gone without a Close is gone all the same.
                    None | Some(Err(_)) => ChannelInput::Closed,
                };
                match input {
                    ChannelInput::Closed => return Ok(None),
                    ChannelInput::Nothing => {}
                    ChannelInput::Data(STDIN, data) => {
                        if let Some(stdin) = &stdin_tx
                            && !data.is_empty()
                            && stdin.send(data).await.is_err()
                        {
                            stdin_tx = None;
                        }
                    }
                    ChannelInput::Data(RESIZE, data) => {
                        let sizes = resize.push(&data).map_err(|e| ServeError::Protocol(e.to_string()))?;
                        if let Some(apply) = &session.resize {
                            sizes.into_iter().for_each(apply);
                        }
                    }
                    // Rule 1.11: v5's CLOSE of a channel; only stdin can be closed by the client.
                    ChannelInput::Data(CLOSE, data) if protocol == ChannelProtocol::V5 => match data[..] {
                        [STDIN] => stdin_tx = None,
                        [channel] if channel <= RESIZE => {}
                        _ => return Err(ServeError::Protocol(format!("invalid CLOSE message {:?}", &data[..]))),
                    },
                    // Rule 1.8: anything else is discarded.
                    ChannelInput::Data(..) => {}
                }
            }
            () = &mut idle => return Err(ServeError::Idle(limits.idle_timeout)),
        }
    };
    drop(stdin_tx);
    drop(stdin_task);
    Ok(Some(end))
}

/// Rule 1.16: the status on channel 3, Close 1000, then the client's Close, bounded.
async fn finish<S>(
    tx: mpsc::Sender<Message>,
    writer: tokio::task::JoinHandle<Result<(), ServeError>>,
    stream: &mut futures_util::stream::SplitStream<tokio_tungstenite::WebSocketStream<S>>,
    protocol: ChannelProtocol,
    outcome: &Outcome,
    limits: &Limits,
) -> Result<(), ServeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let status = if protocol.json_status() {
        Some(status::json(outcome))
    } else {
        status::text(outcome)
    };
    if let Some(status) = status {
        let _ = tx
            .send(ws::channel_message(protocol.base64(), ERROR, &status))
            .await;
    }
    ws::close_writer(tx, writer, limits.close_timeout).await?;
    ws::await_close(stream, limits.close_timeout).await;
    Ok(())
}
