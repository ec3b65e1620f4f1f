//! What the WebSocket protocols share: accepting the upgraded connection as a server with
//! bounded messages, channel messages (binary, or base64 text; rule 1.8), the normal close
//! (rule 1.16), and SPDY's byte pipe through binary messages (rule 3.7).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream::SplitStream;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::{MAX_FRAME_PAYLOAD, ServeError};

/// Takes over an upgraded connection as the WebSocket server (the 101 was written already).
pub(crate) async fn accept<IO>(io: IO) -> WebSocketStream<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_PAYLOAD))
        .max_frame_size(Some(MAX_FRAME_PAYLOAD));
    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
}

/// The Close frame of a normal end, code 1000 (rule 1.16).
pub(crate) fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// A message on `channel`: binary `[channel, data…]`, or text `'0'+channel` and base64.
pub(crate) fn channel_message(base64: bool, channel: u8, data: &[u8]) -> Message {
    if base64 {
        let mut text = String::with_capacity(1 + data.len().div_ceil(3) * 4);
        text.push(char::from(b'0'.wrapping_add(channel)));
        base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
        Message::Text(text.into())
    } else {
        let mut bytes = Vec::with_capacity(1 + data.len());
        bytes.push(channel);
        bytes.extend_from_slice(data);
        Message::Binary(bytes.into())
    }
}

/// What a client's message says on the channel protocol.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ChannelInput {
    /// Data (possibly empty) on a channel.
    Data(u8, Bytes),
    /// The client closed the connection (a Close frame).
    Closed,
    /// Nothing for us: pings, pongs, an empty message (rule 1.8).
    Nothing,
}

/// Reads one client message of the channel protocol.
pub(crate) fn parse_channel_message(base64: bool, message: Message) -> Result<ChannelInput, ServeError> {
    match message {
        Message::Binary(b) if !base64 => match b.first() {
            None => Ok(ChannelInput::Nothing),
            Some(&channel) => Ok(ChannelInput::Data(channel, b.slice(1..))),
        },
        Message::Text(t) if base64 => {
            let bytes = t.as_bytes();
            let Some(&first) = bytes.first() else {
                return Ok(ChannelInput::Nothing);
            };
            let data = base64::engine::general_purpose::STANDARD
                .decode(&bytes[1..])
                .map_err(|e| {
                    ServeError::Protocol(format!(
                        "invalid base64 on channel {}: {e}",
                        first.wrapping_sub(b'0')
                    ))
                })?;
            Ok(ChannelInput::Data(first.wrapping_sub(b'0'), data.into()))
        }
        Message::Binary(_) => Err(ServeError::Protocol(
            "binary message on a base64 channel protocol".into(),
        )),
        Message::Text(_) => Err(ServeError::Protocol(
            "text message on a binary channel protocol".into(),
        )),
        Message::Close(_) => Ok(ChannelInput::Closed),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(ChannelInput::Nothing),
    }
}

/// Writes the messages it is sent, flushing whenever it runs out; ends when every sender is
/// gone. One writer per connection keeps messages whole and in order.
pub(crate) async fn write_messages<S>(mut sink: S, mut rx: mpsc::Receiver<Message>) -> Result<(), ServeError>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    while let Some(message) = rx.recv().await {
        let closing = matches!(message, Message::Close(_));
        let mut result = sink.feed(message).await;
        if result.is_ok() && (closing || rx.is_empty()) {
            result = sink.flush().await;
        }
        match result {
            Ok(()) if !closing => {}
            Ok(()) => break,
            // The client closed first: nothing more can be sent (tungstenite queued the reply
            // to its Close itself; the flush below lets it out).
            Err(e) if peer_closed(&e) => break,
            Err(e) => return Err(e.into()),
        }
    }
    match sink.flush().await {
        Err(e) if !peer_closed(&e) => Err(e.into()),
        _ => Ok(()),
    }
}

fn peer_closed(e: &tungstenite::Error) -> bool {
    matches!(
        e,
        tungstenite::Error::ConnectionClosed
            | tungstenite::Error::AlreadyClosed
            | tungstenite::Error::Protocol(ProtocolError::SendAfterClosing)
    )
}

/// Sends our Close 1000 (or, when the client closed first, lets the automatic reply out) and
/// waits, bounded, until the writer flushed it.
pub(crate) async fn close_writer(
    tx: mpsc::Sender<Message>,
    writer: tokio::task::JoinHandle<Result<(), ServeError>>,
    timeout: Duration,
) -> Result<(), ServeError> {
    let _ = tx.send(normal_close()).await;
    drop(tx);
    match tokio::time::timeout(timeout, writer).await {
        Ok(Ok(Err(e))) => Err(e),
        _ => Ok(()),
    }
}

/// After our Close: reads until the client's Close reply or the end of the connection, at most
/// `timeout` (rule 1.16, step 4).
pub(crate) async fn await_close<IO>(stream: &mut SplitStream<WebSocketStream<IO>>, timeout: Duration)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let drain = async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}

/// A WebSocket as a byte pipe for tunnelled SPDY (rule 3.7): binary messages in, concatenated;
/// our writes out as binary messages; a Close is the end; a text message is an error.
pub(crate) struct WsBytes<IO> {
    ws: WebSocketStream<IO>,
    pending: Bytes,
    read_done: bool,
    closing: bool,
}

impl<IO> WsBytes<IO> {
    pub(crate) fn new(ws: WebSocketStream<IO>) -> Self {
        Self {
            ws,
            pending: Bytes::new(),
            read_done: false,
            closing: false,
        }
    }
}

fn io_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsBytes<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            if self.read_done {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => self.pending = b,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message in a SPDY tunnel",
                    )));
                }
                Some(Ok(Message::Close(_))) | None => self.read_done = true,
                Some(Ok(_)) => {}
                Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
                    self.read_done = true;
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsBytes<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_error)?;
        let n = buf.len().min(MAX_FRAME_PAYLOAD);
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(io_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closing {
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_error)?;
            // Code 1000: client-go reads only a normal closure as EOF (rule 3.7).
            Pin::new(&mut self.ws)
                .start_send(normal_close())
                .map_err(io_error)?;
            self.closing = true;
        }
        match ready!(Pin::new(&mut self.ws).poll_flush(cx)) {
            Ok(()) | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_messages_both_framings() {
        assert_eq!(
            channel_message(false, 1, b"hi"),
            Message::Binary(Bytes::from_static(b"\x01hi"))
        );
        assert_eq!(channel_message(true, 1, b"hi"), Message::Text("1aGk=".into()));
        assert_eq!(
            parse_channel_message(true, Message::Text("0aGk=".into())).unwrap(),
            ChannelInput::Data(0, Bytes::from_static(b"hi"))
        );
        assert_eq!(
            parse_channel_message(false, Message::Binary(Bytes::from_static(b"\x04{}"))).unwrap(),
            ChannelInput::Data(4, Bytes::from_static(b"{}"))
        );
        assert_eq!(
            parse_channel_message(false, Message::Binary(Bytes::new())).unwrap(),
            ChannelInput::Nothing
        );
        assert!(parse_channel_message(false, Message::Text("0".into())).is_err());
        assert!(parse_channel_message(true, Message::Text("0!!".into())).is_err());
        assert_eq!(
            parse_channel_message(false, normal_close()).unwrap(),
            ChannelInput::Closed
        );
    }
}
