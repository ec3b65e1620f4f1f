//! WebSocket exec and port-forward against a tungstenite client.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use podvisor_core::streams::{SessionEnd, StdioRequest};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::*;
use crate::negotiate::{ChannelProtocol, ExecProtocol, PortForwardProtocol};
use crate::{ServeError, serve_exec, serve_port_forward};

async fn client(io: DuplexStream) -> WebSocketStream<DuplexStream> {
    WebSocketStream::from_raw_socket(io, Role::Client, None).await
}

async fn next(ws: &mut WebSocketStream<DuplexStream>) -> Message {
    within(ws.next()).await.expect("a message").expect("no error")
}

fn binary(bytes: &[u8]) -> Message {
    Message::Binary(Bytes::copy_from_slice(bytes))
}

/// Starts an exec session of `protocol` on a pipe; returns the client and the session's ends.
async fn exec(
    protocol: ChannelProtocol,
    stdio: StdioRequest,
) -> (
    WebSocketStream<DuplexStream>,
    Harness,
    tokio::task::JoinHandle<Result<(), ServeError>>,
) {
    let (server_io, client_io) = tokio::io::duplex(1 << 16);
    let (session, harness) = session(stdio);
    let server = tokio::spawn(async move {
        serve_exec(
            server_io,
            ExecProtocol::WebSocket(protocol),
            stdio,
            async { Ok(session) },
            &short_limits(),
        )
        .await
    });
    (client(client_io).await, harness, server)
}

#[tokio::test]
async fn v5_stdio_resize_close_status_and_close_1000() {
    let stdio = StdioRequest {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let (mut ws, mut harness, server) = exec(ChannelProtocol::V5, stdio).await;
    // Rule 1.9: an empty stdout message first.
    assert_eq!(next(&mut ws).await, binary(&[1]));
    ws.send(binary(b"\x04{\"Width\":80,\"Height\":24}\n"))
        .await
        .unwrap();
    ws.send(binary(b"\x00hello")).await.unwrap();
    let mut stdin = harness.stdin.take().unwrap();
    let mut got = [0u8; 5];
    within(stdin.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"hello");
    // Rule 1.11: CLOSE of stdin reaches the process as end-of-file.
    ws.send(binary(&[255, 0])).await.unwrap();
    let mut rest = Vec::new();
    within(stdin.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    // Pings are answered while the session runs (rule 1.17).
    ws.send(Message::Ping(Bytes::from_static(b"p"))).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::Pong(Bytes::from_static(b"p")));
    let mut stdout = harness.stdout.take().unwrap();
    stdout.write_all(b"out").await.unwrap();
    assert_eq!(next(&mut ws).await, binary(b"\x01out"));
    drop(stdout);
    harness.end.send(SessionEnd::Exited(0)).unwrap();
    let Message::Binary(status) = next(&mut ws).await else {
        panic!("status")
    };
    assert_eq!(status[0], 3);
    let status: Value = serde_json::from_slice(&status[1..]).unwrap();
    assert_eq!(status, serde_json::json!({"metadata": {}, "status": "Success"}));
    let Message::Close(Some(close)) = next(&mut ws).await else {
        panic!("close")
    };
    assert_eq!(close.code, CloseCode::Normal);
    // Our reply completes the closing handshake; the server then returns.
    while ws.next().await.is_some() {}
    within(server).await.unwrap().unwrap();
    assert_eq!(
        harness.sizes.lock().unwrap().as_slice(),
        [TerminalSize {
            width: 80,
            height: 24
        }]
    );
}

#[tokio::test]
async fn v4_base64_frames_are_text() {
    let stdio = StdioRequest {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: false,
    };
    let (mut ws, mut harness, server) = exec(ChannelProtocol::V4Base64, stdio).await;
    assert_eq!(next(&mut ws).await, Message::Text("1".into()));
    ws.send(Message::Text("0aGk=".into())).await.unwrap();
    let mut got = [0u8; 2];
    within(harness.stdin.as_mut().unwrap().read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(&got, b"hi");
    // No CLOSE in v4: a 255 message is just an unknown channel.
    ws.send(Message::Text(
        format!("{}AA==", char::from(b'0'.wrapping_add(255))).into(),
    ))
    .await
    .unwrap();
    harness.stdout.as_mut().unwrap().write_all(b"yo").await.unwrap();
    assert_eq!(next(&mut ws).await, Message::Text("1eW8=".into()));
    drop(harness.stdout.take());
    harness.end.send(SessionEnd::Exited(4)).unwrap();
    let Message::Text(status) = next(&mut ws).await else {
        panic!("status")
    };
    assert!(status.starts_with('3'));
    let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &status[1..]).unwrap();
    let status: Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "4");
    drop(ws);
    within(server).await.unwrap().unwrap();
}

#[tokio::test]
async fn channel_k8s_io_status_is_text_on_failure_only() {
    let stdio = StdioRequest {
        stdin: false,
        stdout: true,
        stderr: false,
        tty: false,
    };
    let (mut ws, harness, server) = exec(ChannelProtocol::V1, stdio).await;
    assert_eq!(next(&mut ws).await, binary(&[1]));
    drop(harness.stdout);
    harness
        .end
        .send(SessionEnd::Failed("container gone".into()))
        .unwrap();
    assert_eq!(
        next(&mut ws).await,
        binary(b"\x03Internal error occurred: error executing command in container: container gone")
    );
    assert!(matches!(next(&mut ws).await, Message::Close(_)));
    drop(ws);
    within(server).await.unwrap().unwrap();

    let (mut ws, harness, server) = exec(ChannelProtocol::V1, stdio).await;
    assert_eq!(next(&mut ws).await, binary(&[1]));
    drop(harness.stdout);
    harness.end.send(SessionEnd::Exited(0)).unwrap();
    assert!(
        matches!(next(&mut ws).await, Message::Close(_)),
        "no status on success"
    );
    drop(ws);
    within(server).await.unwrap().unwrap();
}

#[tokio::test]
async fn malformed_close_is_a_protocol_error() {
    let stdio = StdioRequest {
        stdin: true,
        stdout: false,
        stderr: false,
        tty: false,
    };
    let (mut ws, _harness, server) = exec(ChannelProtocol::V5, stdio).await;
    // Neither stdout nor stderr: the first message is on the error channel.
    assert_eq!(next(&mut ws).await, binary(&[3]));
    ws.send(binary(&[255, 0, 0])).await.unwrap();
    let result = within(server).await.unwrap();
    assert!(matches!(result, Err(ServeError::Protocol(_))), "{result:?}");
}

#[tokio::test]
async fn port_forward_channels_carry_the_port_first() {
    let (server_io, client_io) = tokio::io::duplex(1 << 16);
    let port = echo_server().await;
    let protocol = PortForwardProtocol::WebSocket {
        base64: false,
        ports: vec![port],
    };
    let server =
        tokio::spawn(async move { serve_port_forward(server_io, protocol, target(), &short_limits()).await });
    let mut ws = client(client_io).await;
    let le = port.to_le_bytes();
    assert_eq!(next(&mut ws).await, binary(&[0, le[0], le[1]]));
    assert_eq!(next(&mut ws).await, binary(&[1, le[0], le[1]]));
    ws.send(binary(b"\x00echo me")).await.unwrap();
    assert_eq!(next(&mut ws).await, binary(b"\x00echo me"));
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    within(server).await.unwrap().unwrap();
}
