//! SPDY exec and port-forward against a raw client written with the crate's codec.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use podvisor_core::streams::{SessionEnd, StdioRequest};
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use super::*;
use crate::negotiate::{ExecProtocol, PortForwardProtocol, SpdyVersion};
use crate::spdy::frame::{Frame, encode, read_frame};
use crate::spdy::zlib::{Deflater, Inflater};
use crate::spdy::{SpdyError, rst};
use crate::{ServeError, serve_exec, serve_port_forward};

struct Client {
    rd: ReadHalf<DuplexStream>,
    wr: WriteHalf<DuplexStream>,
    deflater: Deflater,
    inflater: Inflater,
}

impl Client {
    fn new(io: DuplexStream) -> Self {
        let (rd, wr) = tokio::io::split(io);
        Self {
            rd,
            wr,
            deflater: Deflater::new(),
            inflater: Inflater::new(),
        }
    }

    async fn send(&mut self, frame: Frame) {
        let mut buf = Vec::new();
        encode(&frame, &mut self.deflater, &mut buf).unwrap();
        self.wr.write_all(&buf).await.unwrap();
    }

    async fn syn(&mut self, stream_id: u32, headers: &[(&str, &str)]) {
        let headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let frame = Frame::SynStream {
            stream_id,
            associated_id: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers,
        };
        self.send(frame).await;
    }

    async fn recv(&mut self) -> Option<Frame> {
        within(read_frame(&mut self.rd, &mut self.inflater))
            .await
            .unwrap()
    }

    /// Reads frames until one matches, returning the ones skipped.
    async fn until(&mut self, wanted: &Frame) -> Vec<Frame> {
        let mut skipped = Vec::new();
        loop {
            match self.recv().await {
                Some(f) if &f == wanted => return skipped,
                Some(f) => skipped.push(f),
                None => panic!("connection ended waiting for {wanted:?}; got {skipped:?}"),
            }
        }
    }
}

fn data(stream_id: u32, bytes: &'static [u8]) -> Frame {
    Frame::Data {
        stream_id,
        fin: false,
        data: Bytes::from_static(bytes),
    }
}

fn fin(stream_id: u32) -> Frame {
    Frame::Data {
        stream_id,
        fin: true,
        data: Bytes::new(),
    }
}

#[tokio::test]
async fn exec_v3_streams_resize_text_status_and_goaway() {
    let (server_io, client_io) = tokio::io::duplex(1 << 16);
    let stdio = StdioRequest {
        stdin: false,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let (session, mut harness) = session(stdio);
    let protocol = ExecProtocol::Spdy(SpdyVersion::V3);
    let server = tokio::spawn(async move {
        serve_exec(server_io, protocol, stdio, async { Ok(session) }, &short_limits()).await
    });
    let mut client = Client::new(client_io);
    client.syn(1, &[("streamtype", "error")]).await;
    client.syn(3, &[("streamtype", "stdout")]).await;
    client.syn(5, &[("streamtype", "resize")]).await;
    for id in [1, 3, 5] {
        assert_eq!(
            client.recv().await,
            Some(Frame::SynReply {
                stream_id: id,
                fin: false,
                headers: vec![]
            })
        );
    }
    client
        .send(data(5, b"{\"Width\":80,\"Height\":24}\n{\"Width\":"))
        .await;
    client.send(data(5, b"100,\"Height\":40}\n")).await;
    client.send(Frame::Ping { id: 7 }).await;
    assert_eq!(client.recv().await, Some(Frame::Ping { id: 7 }));
    let mut stdout = harness.stdout.take().unwrap();
    stdout.write_all(b"out").await.unwrap();
    assert_eq!(client.recv().await, Some(data(3, b"out")));
    drop(stdout);
    assert_eq!(client.recv().await, Some(fin(3)));
    harness.end.send(SessionEnd::Exited(2)).unwrap();
    assert_eq!(
        client.recv().await,
        Some(data(
            1,
            b"command terminated with non-zero exit code: exit status 2"
        ))
    );
    assert_eq!(client.recv().await, Some(fin(1)));
    assert_eq!(
        client.recv().await,
        Some(Frame::GoAway {
            last_good_stream_id: 5,
            status: 0
        })
    );
    assert_eq!(client.recv().await, None);
    drop(client);
    within(server).await.unwrap().unwrap();
    let sizes = harness.sizes.lock().unwrap().clone();
    assert_eq!(
        sizes,
        [
            TerminalSize {
                width: 80,
                height: 24
            },
            TerminalSize {
                width: 100,
                height: 40
            }
        ]
    );
}

#[tokio::test]
async fn exec_gives_up_when_streams_do_not_come() {
    let (server_io, client_io) = tokio::io::duplex(1 << 16);
    let stdio = StdioRequest {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: false,
    };
    let opened = Arc::new(AtomicBool::new(false));
    let flag = opened.clone();
    let open = async move {
        flag.store(true, Ordering::SeqCst);
        Err(podvisor_core::streams::StreamError::Failed("never".into()))
    };
    let protocol = ExecProtocol::Spdy(SpdyVersion::V4);
    let server =
        tokio::spawn(async move { serve_exec(server_io, protocol, stdio, open, &short_limits()).await });
    let mut client = Client::new(client_io);
    client.syn(1, &[("streamtype", "error")]).await;
    client.syn(3, &[("streamtype", "stdout")]).await;
    let result = within(server).await.unwrap();
    assert!(
        matches!(result, Err(ServeError::StreamCreationTimeout(_))),
        "{result:?}"
    );
    assert!(
        !opened.load(Ordering::SeqCst),
        "the session must not start without its streams"
    );
}

#[tokio::test]
async fn port_forward_pairs_validation_bounds_and_error_stream_end() {
    let (server_io, client_io) = tokio::io::duplex(1 << 16);
    let port = echo_server().await.to_string();
    let limits = crate::Limits {
        max_port_forward_pairs: 1,
        ..short_limits()
    };
    let server = tokio::spawn(async move {
        serve_port_forward(server_io, PortForwardProtocol::Spdy, target(), &limits).await
    });
    let mut client = Client::new(client_io);
    client
        .syn(1, &[("port", &port), ("requestid", "0"), ("streamtype", "error")])
        .await;
    client
        .syn(3, &[("port", &port), ("requestid", "0"), ("streamtype", "data")])
        .await;
    client
        .until(&Frame::SynReply {
            stream_id: 3,
            fin: false,
            headers: vec![],
        })
        .await;
    // Beyond the limit of open pairs.
    client
        .syn(5, &[("port", &port), ("requestid", "1"), ("streamtype", "error")])
        .await;
    assert_eq!(
        client.recv().await,
        Some(Frame::RstStream {
            stream_id: 5,
            status: rst::REFUSED_STREAM
        })
    );
    // Invalid streams (rule 3.3) and ids (rule 2.3).
    client
        .syn(7, &[("requestid", "2"), ("streamtype", "error")])
        .await;
    assert_eq!(
        client.recv().await,
        Some(Frame::RstStream {
            stream_id: 7,
            status: rst::CANCEL
        })
    );
    client.syn(9, &[("port", "0"), ("streamtype", "data")]).await;
    assert_eq!(
        client.recv().await,
        Some(Frame::RstStream {
            stream_id: 9,
            status: rst::CANCEL
        })
    );
    client.syn(10, &[("port", &port), ("streamtype", "data")]).await;
    assert_eq!(
        client.recv().await,
        Some(Frame::RstStream {
            stream_id: 10,
            status: rst::PROTOCOL_ERROR
        })
    );
    client.syn(3, &[("port", &port), ("streamtype", "data")]).await;
    assert_eq!(
        client.recv().await,
        Some(Frame::RstStream {
            stream_id: 3,
            status: rst::PROTOCOL_ERROR
        })
    );
    // SETTINGS and WINDOW_UPDATE are read and dropped (rule 2.8); data goes through the pair.
    client
        .wr
        .write_all(&[0x80, 3, 0, 4, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 7, 0, 1, 0, 0])
        .await
        .unwrap();
    client
        .wr
        .write_all(&[0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 3, 0, 1, 0, 0])
        .await
        .unwrap();
    client.send(fin(1)).await;
    client.send(data(3, b"ping through the pod")).await;
    assert_eq!(client.recv().await, Some(data(3, b"ping through the pod")));
    // kubectl's end of a connection: FIN, then RST of the data stream; the error stream ends.
    client.send(fin(3)).await;
    client
        .send(Frame::RstStream {
            stream_id: 3,
            status: rst::CANCEL,
        })
        .await;
    let skipped = client.until(&fin(1)).await;
    assert!(skipped.iter().all(|f| f == &fin(3)), "{skipped:?}");
    // The pair is gone, so a new one fits.
    client
        .syn(
            11,
            &[("port", &port), ("requestid", "3"), ("streamtype", "error")],
        )
        .await;
    assert_eq!(
        client.recv().await,
        Some(Frame::SynReply {
            stream_id: 11,
            fin: false,
            headers: vec![]
        })
    );
    drop(client);
    within(server).await.unwrap().unwrap();
}

#[tokio::test]
async fn port_forward_incomplete_pair_and_refused_port() {
    let (server_io, client_io) = tokio::io::duplex(1 << 16);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let server = tokio::spawn(async move {
        serve_port_forward(server_io, PortForwardProtocol::Spdy, target(), &short_limits()).await
    });
    let mut client = Client::new(client_io);
    // No requestid: an old client; the error stream's id is the request.
    client.syn(1, &[("port", "80"), ("streamtype", "error")]).await;
    client
        .until(&Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: vec![],
        })
        .await;
    assert_eq!(
        client.recv().await,
        Some(data(1, b"(conn=x, request=1) timed out waiting for streams"))
    );
    assert_eq!(client.recv().await, Some(fin(1)));
    client
        .syn(
            3,
            &[("port", &closed), ("requestid", "5"), ("streamtype", "error")],
        )
        .await;
    client
        .syn(
            5,
            &[("port", &closed), ("requestid", "5"), ("streamtype", "data")],
        )
        .await;
    let mut error = Vec::new();
    loop {
        match client.recv().await.unwrap() {
            Frame::Data {
                stream_id: 3,
                fin: false,
                data,
            } => error.extend_from_slice(&data),
            Frame::Data {
                stream_id: 3,
                fin: true,
                ..
            } => break,
            _ => {}
        }
    }
    let error = String::from_utf8(error).unwrap();
    assert!(
        error.starts_with(&format!("error forwarding port {closed} to pod x, uid uid-x: ")),
        "{error}"
    );
    drop(client);
    within(server).await.unwrap().unwrap();
}

#[tokio::test]
async fn oversized_header_block_ends_the_connection_with_an_error() {
    let (server_io, client_io) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        serve_port_forward(server_io, PortForwardProtocol::Spdy, target(), &short_limits()).await
    });
    let mut client = Client::new(client_io);
    let big = "a".repeat(crate::MAX_HEADER_BLOCK + 1);
    client
        .syn(1, &[("port", "80"), ("streamtype", "error"), ("x", &big)])
        .await;
    let result = within(server).await.unwrap();
    assert!(
        matches!(
            result,
            Err(ServeError::Spdy(SpdyError::HeaderBlockTooLarge { .. }))
        ),
        "{result:?}"
    );
}
