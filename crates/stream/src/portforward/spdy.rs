//! port-forward over SPDY (rules 3.3-3.4): an error and a data stream per client connection,
//! paired by `requestid`.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::compat::FuturesAsyncReadCompatExt;
use tracing::Instrument as _;

use super::PortForwardTarget;
use crate::spdy::{Conn, Inbound, IncomingStream, header, rst};
use crate::{CHUNK, Limits, ServeError};

/// A pair still waiting for its second stream.
struct Pending {
    port: u16,
    error: Option<IncomingStream>,
    data: Option<IncomingStream>,
    deadline: Instant,
}

pub(super) async fn serve<IO>(io: IO, target: PortForwardTarget, limits: &Limits) -> Result<(), ServeError>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let max_pairs = limits.max_port_forward_pairs;
    let mut conn = Conn::start(
        io,
        limits.idle_timeout,
        max_pairs.saturating_mul(2).saturating_add(2),
    );
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut pairs = JoinSet::new();
    loop {
        let next_deadline = pending.values().map(|p| p.deadline).min();
        tokio::select! {
            stream = conn.next_stream() => {
                let Some(stream) = stream else { break };
                let running = pending.len() + pairs.len();
                if let Some((error, data, port)) = add(&mut pending, stream, running, limits).await {
                    let span = tracing::debug_span!("port-forward", port, request = error.out.id());
                    pairs.spawn(pair(error, data, port, target.clone()).instrument(span));
                }
            }
            () = sleep_until_some(next_deadline) => {
                let now = Instant::now();
                let expired: Vec<String> =
                    pending.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| id.clone()).collect();
                for id in expired {
                    if let Some(p) = pending.remove(&id) {
                        time_out(&id, p, &target).await;
                    }
                }
            }
            Some(_) = pairs.join_next(), if !pairs.is_empty() => {}
        }
    }
    // The client's side ended: every pair goes with it.
    pairs.abort_all();
    conn.close(limits.close_timeout).await?;
    Ok(())
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Files a new stream (rule 3.3); returns a pair once both of its streams are there.
async fn add(
    pending: &mut HashMap<String, Pending>,
    stream: IncomingStream,
    running: usize,
    limits: &Limits,
) -> Option<(IncomingStream, IncomingStream, u16)> {
    let port = header(&stream.headers, "port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p > 0);
    let kind = header(&stream.headers, "streamtype")
        .filter(|t| *t == "error" || *t == "data")
        .map(str::to_owned);
    let (Some(port), Some(kind)) = (port, kind) else {
        stream.out.reset(rst::CANCEL).await;
        return None;
    };
    // Old clients send no requestid: error streams count by their id, data streams by id - 2.
    let request_id = match header(&stream.headers, "requestid") {
        Some(id) => id.to_owned(),
        None if kind == "error" => stream.out.id().to_string(),
        None => stream.out.id().saturating_sub(2).to_string(),
    };
    if !pending.contains_key(&request_id) && running >= limits.max_port_forward_pairs {
        stream.out.reset(rst::REFUSED_STREAM).await;
        return None;
    }
    let mut stream = stream;
    if kind == "error" {
        // kubectl only FINs the error stream; it is written, never read.
        stream.ignore_inbound();
    }
    stream.out.reply().await;
    let entry = pending.entry(request_id.clone()).or_insert_with(|| Pending {
        port,
        error: None,
        data: None,
        deadline: Instant::now() + limits.stream_creation_timeout,
    });
    let slot = if kind == "error" {
        &mut entry.error
    } else {
        &mut entry.data
    };
    if slot.is_some() {
        let text =
            format!("error processing stream for request {request_id}: {kind} stream already assigned");
        if let Some(error) = &entry.error {
            error.out.data(text.into()).await;
        }
        stream.out.reset(rst::PROTOCOL_ERROR).await;
        return None;
    }
    *slot = Some(stream);
    if entry.error.is_some() && entry.data.is_some() {
        let p = pending.remove(&request_id)?;
        return Some((p.error?, p.data?, p.port));
    }
    None
}

/// Rule 3.3: a pair incomplete after the stream creation timeout.
async fn time_out(request_id: &str, p: Pending, target: &PortForwardTarget) {
    if let Some(error) = &p.error {
        let text = format!(
            "(conn={}, request={request_id}) timed out waiting for streams",
            target.pod_name
        );
        error.out.data(text.into()).await;
        error.out.fin().await;
    }
    if let Some(data) = &p.data {
        data.out.reset(rst::CANCEL).await;
    }
}

/// Why one direction of a pair stopped early.
enum Stop {
    /// The client reset the data stream or left.
    Reset,
    /// The pod-side connection failed.
    Failed(std::io::Error),
}

/// Rule 3.4: connect, copy both ways, and always end the error stream.
async fn pair(error: IncomingStream, data: IncomingStream, port: u16, target: PortForwardTarget) {
    let out = data.out.clone();
    let mut data_in = data;
    match target.streams.port_forward(&target.pod_uid, port).await {
        Err(e) => {
            error.out.data(target.error_text(port, &e).into()).await;
            out.reset(rst::CANCEL).await;
        }
        Ok(conn) => {
            let (mut rd, mut wr) = tokio::io::split(conn.compat());
            let to_client = async {
                let mut buf = vec![0u8; CHUNK];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) => {
                            out.fin().await;
                            return Ok(());
                        }
                        Ok(n) => {
                            if !out.data(Bytes::copy_from_slice(&buf[..n])).await {
                                return Err(Stop::Reset);
                            }
                        }
                        Err(e) => return Err(Stop::Failed(e)),
                    }
                }
            };
            let to_pod = async {
                loop {
                    match data_in.recv().await {
                        Inbound::Data(bytes) => wr.write_all(&bytes).await.map_err(Stop::Failed)?,
                        Inbound::Fin => {
                            let _ = wr.shutdown().await;
                            return Ok(());
                        }
                        Inbound::Reset => return Err(Stop::Reset),
                    }
                }
            };
            if let Err(Stop::Failed(e)) = tokio::try_join!(to_client, to_pod) {
                error.out.data(target.error_text(port, &e).into()).await;
                out.reset(rst::CANCEL).await;
            }
        }
    }
    // kubectl waits for the error stream's end before it lets the connection go.
    error.out.fin().await;
}
