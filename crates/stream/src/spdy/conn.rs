//! A server-side SPDY/3.1 connection: a reader task that validates the client's streams and
//! routes their frames, and a writer task that owns the outgoing header compression (so blocks
//! are compressed in wire order, rule 2.7).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::SpdyError;
use super::frame::{Frame, Headers, read_frame, rst};
use super::zlib::{Deflater, Inflater};

/// Frames buffered per stream before the reader waits (backpressure instead of flow control).
const STREAM_BUFFER: usize = 16;

/// What the client sent on one stream, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// A DATA payload (never empty).
    Data(Bytes),
    /// The client half-closed the stream (FIN): it sends no more.
    Fin,
    /// The client reset the stream, or the connection ended.
    Reset,
}

/// A stream the client opened, already validated (odd, increasing id); not yet replied to.
pub(crate) struct IncomingStream {
    pub(crate) headers: Headers,
    pub(crate) inbound: mpsc::Receiver<Inbound>,
    pub(crate) out: StreamOut,
}

impl IncomingStream {
    /// Says nothing the client sends on this stream matters (kubectl only FINs the error and
    /// output streams): its frames are dropped instead of buffered, so a client that sends
    /// there anyway cannot stall the connection.
    pub(crate) fn ignore_inbound(&mut self) {
        self.inbound.close();
    }

    /// The next thing the client sent; [`Inbound::Reset`] once the connection is gone.
    pub(crate) async fn recv(&mut self) -> Inbound {
        self.inbound.recv().await.unwrap_or(Inbound::Reset)
    }
}

/// Our side of one stream; every method returns false once the connection is gone.
#[derive(Clone, Debug)]
pub(crate) struct StreamOut {
    id: u32,
    tx: mpsc::Sender<Out>,
}

impl StreamOut {
    /// The stream's id.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    async fn send(&self, frame: Frame) -> bool {
        self.tx.send(Out::Frame(frame)).await.is_ok()
    }

    /// Accepts the stream: SYN_REPLY with an empty header block, no FIN (rule 2.4).
    pub(crate) async fn reply(&self) -> bool {
        self.send(Frame::SynReply {
            stream_id: self.id,
            fin: false,
            headers: Vec::new(),
        })
        .await
    }

    /// Sends bytes in one DATA frame (callers send at most [`crate::CHUNK`]).
    pub(crate) async fn data(&self, data: Bytes) -> bool {
        self.send(Frame::Data {
            stream_id: self.id,
            fin: false,
            data,
        })
        .await
    }

    /// Half-closes our side: an empty DATA frame with FIN (rule 2.5).
    pub(crate) async fn fin(&self) -> bool {
        self.send(Frame::Data {
            stream_id: self.id,
            fin: true,
            data: Bytes::new(),
        })
        .await
    }

    /// Resets the stream with a RST_STREAM status.
    pub(crate) async fn reset(&self, status: u32) -> bool {
        self.send(Frame::RstStream {
            stream_id: self.id,
            status,
        })
        .await
    }
}

#[derive(Debug)]
enum Out {
    Frame(Frame),
    /// GOAWAY, then shut our side of the connection down.
    GoAway,
}

/// A task aborted when its handle is dropped, so a connection's tasks never outlive it.
struct Task<T>(JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One SPDY connection, server side.
pub(crate) struct Conn {
    incoming: mpsc::Receiver<IncomingStream>,
    /// The client's side ended (seen by `next_stream`) before we closed ours.
    client_ended: bool,
    out: mpsc::Sender<Out>,
    reader: Task<Result<(), SpdyError>>,
    writer: Task<Result<(), SpdyError>>,
}

impl Conn {
    /// Starts serving `io`; at most `max_streams` streams may be open from the client's side
    /// at once (more are refused with REFUSED_STREAM).
    pub(crate) fn start<IO>(io: IO, idle: Duration, max_streams: usize) -> Self
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(64);
        let (incoming_tx, incoming) = mpsc::channel(16);
        let last_good = Arc::new(AtomicU32::new(0));
        let reader = Reader {
            out: out_tx.clone(),
            incoming: incoming_tx,
            idle,
            max_streams,
            last_good: last_good.clone(),
        };
        Self {
            incoming,
            client_ended: false,
            out: out_tx,
            reader: Task(crate::spawn(reader.run(rd))),
            writer: Task(crate::spawn(write_loop(wr, out_rx, last_good))),
        }
    }

    /// The next stream the client opens; `None` once the client's side ended (end of the
    /// connection, a protocol error, the idle timeout).
    pub(crate) async fn next_stream(&mut self) -> Option<IncomingStream> {
        let next = self.incoming.recv().await;
        // Only the reader's end closes the channel before `close`.
        self.client_ended |= next.is_none();
        next
    }

    /// Ends the connection (rule 2.5): GOAWAY, our side shut down, then waits at most
    /// `timeout` for the client to close its side. Returns how the client's side ended when
    /// that was before this call (a protocol error, the idle timeout); how a client goes
    /// after our GOAWAY (even mid-frame, as kubectl may when it exits) is its own business.
    pub(crate) async fn close(mut self, timeout: Duration) -> Result<(), SpdyError> {
        let ended_first = self.client_ended;
        // Streams the client opens from now on are refused by the dropped receiver.
        self.incoming.close();
        let _ = self.out.send(Out::GoAway).await;
        let wait = async {
            let _ = (&mut self.writer.0).await;
            (&mut self.reader.0).await
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(Err(e))) if ended_first => Err(e),
            _ => Ok(()),
        }
    }
}

/// Open streams of the client's: where to route their frames.
struct Open {
    tx: mpsc::Sender<Inbound>,
}

struct Reader {
    out: mpsc::Sender<Out>,
    incoming: mpsc::Sender<IncomingStream>,
    idle: Duration,
    max_streams: usize,
    last_good: Arc<AtomicU32>,
}

impl Reader {
    async fn run<R: AsyncRead>(self, rd: ReadHalf<R>) -> Result<(), SpdyError> {
        let mut rd = rd;
        let mut inflater = Inflater::new();
        let mut streams: HashMap<u32, Open> = HashMap::new();
        let mut last_id = 0u32;
        let mut going_away = false;
        loop {
            let frame = tokio::time::timeout(self.idle, read_frame(&mut rd, &mut inflater))
                .await
                .map_err(|_| SpdyError::Idle(self.idle))??;
            let Some(frame) = frame else { return Ok(()) };
            match frame {
                Frame::SynStream {
                    stream_id,
                    fin,
                    headers,
                    ..
                } => {
                    // Rule 2.3: client streams are odd and strictly increasing.
                    if stream_id % 2 == 0 || stream_id <= last_id {
                        self.rst(stream_id, rst::PROTOCOL_ERROR).await;
                        continue;
                    }
                    last_id = stream_id;
                    self.last_good.store(stream_id, Ordering::Relaxed);
                    streams.retain(|_, s| !s.tx.is_closed());
                    if going_away || streams.len() >= self.max_streams {
                        self.rst(stream_id, rst::REFUSED_STREAM).await;
                        continue;
                    }
                    let (tx, inbound) = mpsc::channel(STREAM_BUFFER);
                    if fin {
                        let _ = tx.try_send(Inbound::Fin);
                    }
                    let out = StreamOut {
                        id: stream_id,
                        tx: self.out.clone(),
                    };
                    if self
                        .incoming
                        .send(IncomingStream {
                            headers,
                            inbound,
                            out,
                        })
                        .await
                        .is_err()
                    {
                        // Nobody takes streams any more (the session is ending).
                        self.rst(stream_id, rst::REFUSED_STREAM).await;
                        continue;
                    }
                    streams.insert(stream_id, Open { tx });
                }
                Frame::Data { stream_id, fin, data } => match streams.get(&stream_id) {
                    Some(open) => {
                        if !data.is_empty() {
                            let _ = open.tx.send(Inbound::Data(data)).await;
                        }
                        if fin {
                            let _ = open.tx.send(Inbound::Fin).await;
                        }
                    }
                    // A stream we never saw; data for one we already forgot is dropped.
                    None if stream_id > last_id => self.rst(stream_id, rst::INVALID_STREAM).await,
                    None => {}
                },
                Frame::Headers {
                    stream_id, fin: true, ..
                } => {
                    if let Some(open) = streams.get(&stream_id) {
                        let _ = open.tx.send(Inbound::Fin).await;
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    if let Some(open) = streams.remove(&stream_id) {
                        let _ = open.tx.send(Inbound::Reset).await;
                    }
                }
                // Rule 2.9: echo every ping unchanged.
                Frame::Ping { id } => {
                    let _ = self.out.send(Out::Frame(Frame::Ping { id })).await;
                }
                Frame::GoAway { .. } => going_away = true,
                Frame::SynReply { .. } | Frame::Headers { .. } | Frame::Ignored => {}
            }
        }
    }

    async fn rst(&self, stream_id: u32, status: u32) {
        let _ = self
            .out
            .send(Out::Frame(Frame::RstStream { stream_id, status }))
            .await;
    }
}

async fn write_loop<W: AsyncWrite>(
    mut wr: WriteHalf<W>,
    mut rx: mpsc::Receiver<Out>,
    last_good: Arc<AtomicU32>,
) -> Result<(), SpdyError> {
    let mut deflater = Deflater::new();
    let mut buf = Vec::new();
    while let Some(out) = rx.recv().await {
        let frame = match out {
            Out::Frame(frame) => frame,
            Out::GoAway => {
                let last_good_stream_id = last_good.load(Ordering::Relaxed);
                super::frame::encode(
                    &Frame::GoAway {
                        last_good_stream_id,
                        status: 0,
                    },
                    &mut deflater,
                    &mut buf,
                )?;
                wr.write_all(&buf).await?;
                wr.flush().await?;
                wr.shutdown().await?;
                return Ok(());
            }
        };
        super::frame::encode(&frame, &mut deflater, &mut buf)?;
        wr.write_all(&buf).await?;
        buf.clear();
        if rx.is_empty() {
            wr.flush().await?;
        }
    }
    Ok(())
}
