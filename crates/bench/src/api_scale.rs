//! `api-10k`: the node's API server (as in `api`) holding 10,000 pods: a list of all of them,
//! and one change fanned out to 1,000 watchers, each on its own connection. Floors, in the same
//! run: the same 10,000 pods encoded as one JSON list by a minimal hyper server and read over a
//! keep-alive loopback connection; one event line written to 1,000 loopback TCP connections
//! through a broadcast channel, until the last reader has it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};

use crate::api::{self, Client, Served, timed};
use crate::stats::{Floor, Goal, Percentiles, Row};

/// Sizes of one run.
pub(crate) struct Sizes {
    /// Pods stored and listed.
    pub(crate) pods: usize,
    /// Lists of all pods.
    pub(crate) lists: usize,
    /// Watchers of the fan-out, one connection each.
    pub(crate) watchers: usize,
    /// Changes fanned out.
    pub(crate) changes: usize,
}

const PODS: &str = "/api/v1/namespaces/default/pods";

/// Runs the benchmark.
pub(crate) async fn run(sizes: &Sizes) -> Result<Vec<Row>> {
    // Two sockets per watcher (both ends are in this process).
    podvisor_runtime::process::raise_open_file_limit().context("raising the open-file limit")?;
    let (_dir, served) = Served::start_on_redb("podvisor-bench-api-scale-").await?;
    let result = measure(&served, sizes).await;
    served.stop().await;
    let (list, items, fanout, event) = result?;

    let list_floor = list_floor(&items, sizes.lists).await?;
    let fanout_floor = fanout_floor(sizes.watchers, sizes.changes, event).await?;
    Ok(vec![
        Row {
            bench: "api-10k".into(),
            metric: format!("list {} pods", sizes.pods),
            unit: "ms",
            value: Percentiles::of_durations_ms(&list).context("no samples")?,
            floor: Some(Floor {
                name: "the same pods encoded as one JSON list by a minimal hyper server".into(),
                value: Percentiles::of_durations_ms(&list_floor).context("no floor samples")?,
            }),
            goal: Goal::None,
            note: Some("request sent → whole body read, over a keep-alive loopback connection".into()),
        },
        Row {
            bench: "api-10k".into(),
            metric: format!("watch fan-out to {}", sizes.watchers),
            unit: "ms",
            value: Percentiles::of_durations_ms(&fanout).context("no samples")?,
            floor: Some(Floor {
                name: format!(
                    "one event line broadcast to {} loopback TCP connections",
                    sizes.watchers
                ),
                value: Percentiles::of_durations_ms(&fanout_floor).context("no floor samples")?,
            }),
            goal: Goal::None,
            note: Some(
                "create sent → the last watcher has the ADDED event; the create's fsync is in it, not in the floor"
                    .into(),
            ),
        },
    ])
}

type Samples = Vec<Duration>;

/// Fills the server, lists, fans out. Returns the list and fan-out samples, the listed items
/// and one ADDED event line (for the floors).
async fn measure(served: &Served, sizes: &Sizes) -> Result<(Samples, Vec<Value>, Samples, Bytes)> {
    let mut client = Client::connect(served.addr).await?;
    api::create_pods(&mut client, sizes.pods).await?;
    let mut list = Vec::with_capacity(sizes.lists);
    let mut items = Vec::new();
    for _ in 0..sizes.lists {
        let (took, (status, body)) = timed(client.request(Method::GET, PODS, None)).await?;
        let mut decoded: Value = serde_json::from_slice(&body).context("decoding the list")?;
        let got = decoded["items"].take();
        let n = got.as_array().map_or(0, Vec::len);
        if status != StatusCode::OK || n != sizes.pods {
            bail!("list answered {status} with {n} items, expected {}", sizes.pods);
        }
        if let Value::Array(got) = got {
            items = got;
        }
        list.push(took);
    }
    let fanout = api::fan_out(served.addr, &mut client, sizes.watchers, sizes.changes).await?;
    let event = serde_json::to_vec(&serde_json::json!({"type": "ADDED", "object": items.first()}))
        .context("encoding an event")?;
    let mut line = event;
    line.push(b'\n');
    Ok((list, items, fanout, Bytes::from(line)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodList<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: Value,
    items: &'a [Value],
}

/// `lists` round trips to a hyper server that encodes `items` as a pod list on every request.
async fn list_floor(items: &[Value], lists: usize) -> Result<Samples> {
    let items: Arc<Vec<Value>> = Arc::new(items.to_vec());
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the floor server")?;
    let addr = listener.local_addr().context("the floor server's address")?;
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let items = items.clone();
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let items = items.clone();
                    async move {
                        let list = PodList {
                            kind: "PodList",
                            api_version: "v1",
                            metadata: serde_json::json!({"resourceVersion": "1"}),
                            items: &items,
                        };
                        let body = serde_json::to_vec(&list).unwrap_or_default();
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                    }
                }),
            ));
        }
    });
    let mut client = Client::connect(addr).await?;
    let mut samples = Vec::with_capacity(lists);
    for _ in 0..lists {
        let (took, (status, body)) = timed(client.request(Method::GET, "/", None)).await?;
        if status != StatusCode::OK || body.is_empty() {
            bail!("the floor server answered {status} with {} bytes", body.len());
        }
        samples.push(took);
    }
    server.abort();
    Ok(samples)
}

/// `changes` times: `event` written to `watchers` loopback connections (a writer task each,
/// fed by a broadcast channel), until the last reader has read the line.
async fn fanout_floor(watchers: usize, changes: usize, event: Bytes) -> Result<Samples> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the floor server")?;
    let addr = listener.local_addr().context("the floor server's address")?;
    let (events, _) = broadcast::channel::<Bytes>(16);
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<Instant>();
    let mut tasks = Vec::with_capacity(2 * watchers);
    for _ in 0..watchers {
        let stream = TcpStream::connect(addr).await.context("connecting")?;
        let (server_side, _) = listener.accept().await.context("accepting")?;
        let _ = server_side.set_nodelay(true);
        let mut subscription = events.subscribe();
        tasks.push(tokio::spawn(async move {
            let mut server_side = server_side;
            while let Ok(line) = subscription.recv().await {
                if server_side.write_all(&line).await.is_err() {
                    return;
                }
            }
        }));
        let seen_tx = seen_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(_)) = lines.next_line().await {
                let _ = seen_tx.send(Instant::now());
            }
        }));
    }
    let mut samples = Vec::with_capacity(changes);
    for _ in 0..changes {
        let start = Instant::now();
        events
            .send(event.clone())
            .map_err(|_| anyhow::anyhow!("no writer is listening"))?;
        let mut last = start;
        for _ in 0..watchers {
            let at = tokio::time::timeout(Duration::from_secs(10), seen.recv())
                .await
                .context("a floor reader did not get the line within 10 s")?
                .context("every floor reader ended")?;
            last = last.max(at);
        }
        samples.push(last - start);
    }
    for task in tasks {
        task.abort();
    }
    Ok(samples)
}
