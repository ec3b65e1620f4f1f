//! port-forward over the WebSocket channel protocol (rules 3.10-3.12): port `i` is data on
//! channel `2i` and errors on `2i+1`, each first carrying the port, little-endian.

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::compat::FuturesAsyncReadCompatExt;
use tracing::Instrument as _;

use super::PortForwardTarget;
use crate::ws::{self, ChannelInput};
use crate::{AbortOnDrop, CHUNK, Limits, ServeError};

pub(super) async fn serve<IO>(
    io: IO,
    base64: bool,
    ports: Vec<u16>,
    target: PortForwardTarget,
    limits: &Limits,
) -> Result<(), ServeError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    if ports.len() > crate::query::MAX_PORTS {
        // Channel 2i+1 must fit in a byte; negotiate_port_forward never yields more.
        return Err(ServeError::Protocol(format!(
            "at most {} ports can be forwarded on one connection, got {}",
            crate::query::MAX_PORTS,
            ports.len()
        )));
    }
    let (sink, mut stream) = ws::accept(io).await.split();
    let (tx, rx) = mpsc::channel::<Message>(32);
    let writer = crate::spawn(ws::write_messages(sink, rx));
    let _abort_writer = AbortOnDrop(writer.abort_handle());

    // Rule 3.11: every channel first carries its port.
    for (i, port) in ports.iter().enumerate() {
        let channel = (2 * i) as u8;
        let _ = tx
            .send(ws::channel_message(base64, channel, &port.to_le_bytes()))
            .await;
        let _ = tx
            .send(ws::channel_message(base64, channel + 1, &port.to_le_bytes()))
            .await;
    }
    // Rule 3.12: one pod-side connection per port, opened now.
    let mut to_pods = Vec::with_capacity(ports.len());
    let mut running = JoinSet::new();
    for (i, port) in ports.iter().enumerate() {
        let (to_pod, from_client) = mpsc::channel::<Bytes>(16);
        to_pods.push(Some(to_pod));
        let span = tracing::debug_span!("port-forward", port = *port);
        running.spawn(forward(i, *port, from_client, tx.clone(), base64, target.clone()).instrument(span));
    }

    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            message = stream.next() => {
                idle.as_mut().reset(Instant::now() + limits.idle_timeout);
                let input = match message {
                    Some(Ok(m)) => ws::parse_channel_message(base64, m)?,
                    None | Some(Err(_)) => ChannelInput::Closed,
                };
                match input {
                    // The client has no half-close: its Close ends the session.
                    ChannelInput::Closed => {
                        drop(to_pods);
                        return ws::close_writer(tx, writer, limits.close_timeout).await;
                    }
                    ChannelInput::Nothing => {}
                    ChannelInput::Data(channel, data) => {
                        let slot = if channel % 2 == 0 { to_pods.get_mut(usize::from(channel / 2)) } else { None };
                        if let Some(slot) = slot
                            && let Some(to_pod) = slot
                            && !data.is_empty()
                            && to_pod.send(data).await.is_err()
                        {
                            *slot = None;
                        }
                    }
                }
            }
            done = running.join_next() => {
                if done.is_none() {
                    break;
                }
            }
            () = &mut idle => return Err(ServeError::Idle(limits.idle_timeout)),
        }
    }
    // Every port is done: Close 1000 (rule 3.12), then the client's answer, bounded.
    drop(to_pods);
    ws::close_writer(tx, writer, limits.close_timeout).await?;
    ws::await_close(&mut stream, limits.close_timeout).await;
    Ok(())
}

/// One port's connection for the session: pod output to channel `2i`, the client's channel `2i`
/// to the pod, a failure's text to channel `2i+1`.
async fn forward(
    i: usize,
    port: u16,
    mut from_client: mpsc::Receiver<Bytes>,
    tx: mpsc::Sender<Message>,
    base64: bool,
    target: PortForwardTarget,
) {
    let (data, errors) = ((2 * i) as u8, (2 * i + 1) as u8);
    let conn = match target.streams.port_forward(&target.pod_uid, port).await {
        Ok(conn) => conn,
        Err(e) => {
            let _ = tx
                .send(ws::channel_message(
                    base64,
                    errors,
                    target.error_text(port, &e).as_bytes(),
                ))
                .await;
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(conn.compat());
    let to_client = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    if tx
                        .send(ws::channel_message(base64, data, &buf[..n]))
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    };
    let to_pod = async {
        while let Some(bytes) = from_client.recv().await {
            wr.write_all(&bytes).await?;
        }
        let _ = wr.shutdown().await;
        // The client is gone; the pod's side decides when the port is done.
        std::future::pending::<()>().await;
        Ok::<(), std::io::Error>(())
    };
    // The port is done when the pod's side closes or fails.
    let result = tokio::select! {
        r = to_client => r,
        r = to_pod => r,
    };
    if let Err(e) = result {
        let _ = tx
            .send(ws::channel_message(
                base64,
                errors,
                target.error_text(port, &e).as_bytes(),
            ))
            .await;
    }
}
