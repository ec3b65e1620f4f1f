//! `api`: the node's API server (`podvisor_apiserver::ApiServer` over a `RedbStore`, which
//! fsyncs every commit) on loopback, driven over one keep-alive HTTP/1.1 connection: pod
//! create and get latency, a list of many pods, and the fan-out of one change to many
//! watchers. Floor: a request/response round trip on a keep-alive loopback connection to a
//! minimal hyper server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use podvisor_apiserver::{ApiServer, ApiServerConfig};
use podvisor_store::RedbStore;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::stats::{Floor, Goal, Percentiles, Row};

/// Sizes of one run.
pub(crate) struct Sizes {
    /// Pods created (and then fetched one by one, and listed).
    pub(crate) pods: usize,
    /// Lists of all pods.
    pub(crate) lists: usize,
    /// Watchers of the fan-out.
    pub(crate) watchers: usize,
    /// Changes fanned out.
    pub(crate) changes: usize,
}

/// One keep-alive HTTP/1.1 connection.
pub(crate) struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

impl Client {
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Client> {
        let stream = TcpStream::connect(addr).await.context("connecting")?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(conn);
        Ok(Client { sender, addr })
    }

    /// Sends a request; returns the status and the whole body.
    pub(crate) async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Bytes)> {
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading the response body")?
            .to_bytes();
        Ok((status, body))
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response<Incoming>> {
        self.sender.ready().await.context("connection not ready")?;
        let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(Full::new(bytes))
            .context("building the request")?;
        self.sender
            .send_request(request)
            .await
            .context("sending the request")
    }
}

/// Times `f` once.
pub(crate) async fn timed<T>(f: impl Future<Output = Result<T>>) -> Result<(Duration, T)> {
    let start = Instant::now();
    let out = f.await?;
    Ok((start.elapsed(), out))
}

pub(crate) fn pod_json(namespace: &str, name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bench"}},
        "spec": {"nodeName": "elsewhere", "containers": [{"name": "main", "image": "host", "command": ["sleep", "3600"]}]},
    })
}

/// An API server (`ApiServer` over a store, plain HTTP on loopback) serving in the background.
pub(crate) struct Served {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    stop: oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<std::result::Result<(), podvisor_apiserver::Error>>,
}

impl Served {
    /// Bootstraps an API server on `store` and serves it on a free loopback port.
    pub(crate) async fn start(store: Arc<dyn podvisor_store::Store>) -> Result<Served> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the API")?;
        let addr = listener.local_addr().context("the API's address")?;
        let server = ApiServer::new(store, ApiServerConfig::default());
        server.bootstrap().await.context("bootstrapping the API")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            server
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Served { addr, stop, serving })
    }

    /// [`start`](Self::start) on a new redb store in a temporary directory named from
    /// `prefix`, which goes when the returned directory is dropped.
    pub(crate) async fn start_on_redb(prefix: &str) -> Result<(tempfile::TempDir, Served)> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .context("creating the data directory")?;
        let store: Arc<dyn podvisor_store::Store> =
            Arc::new(RedbStore::open(dir.path().join("store.redb")).context("opening the store")?);
        let served = Served::start(store).await?;
        Ok((dir, served))
    }

    /// Stops serving (at most 15 s).
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(15), self.serving).await;
    }
}

/// Runs the API benchmark.
pub(crate) async fn run(sizes: &Sizes) -> Result<Vec<Row>> {
    let (_dir, served) = Served::start_on_redb("podvisor-bench-api-").await?;
    let result = measure(served.addr, sizes).await;
    served.stop().await;
    let (create, get, list, fanout) = result?;

    let floor = loopback_floor(sizes.pods.max(2000)).await?;
    let floor = Floor {
        name: "keep-alive loopback HTTP/1.1 round trip, minimal hyper server".into(),
        value: Percentiles::of_durations_ms(&floor).context("no floor samples")?,
    };
    let p99_goal = Goal::Ratio {
        p50: None,
        p99: Some(50.0),
    };
    Ok(vec![
        Row {
            bench: "api".into(),
            metric: "create pod".into(),
            unit: "ms",
            value: Percentiles::of_durations_ms(&create).context("no samples")?,
            floor: Some(floor.clone()),
            goal: p99_goal.clone(),
            note: Some("every create is a redb commit with fsync".into()),
        },
        Row {
            bench: "api".into(),
            metric: "get pod".into(),
            unit: "ms",
            value: Percentiles::of_durations_ms(&get).context("no samples")?,
            floor: Some(floor),
            goal: p99_goal,
            note: None,
        },
        Row {
            bench: "api".into(),
            metric: format!("list {} pods", sizes.pods),
            unit: "ms",
            value: Percentiles::of_durations_ms(&list).context("no samples")?,
            floor: None,
            goal: Goal::None,
            note: None,
        },
        Row {
            bench: "api".into(),
            metric: format!("watch fan-out to {}", sizes.watchers),
            unit: "ms",
            value: Percentiles::of_durations_ms(&fanout).context("no samples")?,
            floor: None,
            goal: Goal::None,
            note: Some("create sent → the last watcher has the ADDED event".into()),
        },
    ])
}

type Samples = Vec<Duration>;

/// Creates `n` pods (`p0`...) in `default` one after the other, then gets each; the latencies
/// of both.
pub(crate) async fn create_get(client: &mut Client, n: usize) -> Result<(Samples, Samples)> {
    let base = "/api/v1/namespaces/default/pods";
    let create = create_pods(client, n).await?;
    let mut get = Vec::with_capacity(n);
    for i in 0..n {
        let path = format!("{base}/p{i}");
        let (took, (status, _)) = timed(client.request(Method::GET, &path, None)).await?;
        if status != StatusCode::OK {
            bail!("get answered {status}");
        }
        get.push(took);
    }
    Ok((create, get))
}

/// Creates `n` pods (`p0`...) in `default` one after the other; the latency of each.
pub(crate) async fn create_pods(client: &mut Client, n: usize) -> Result<Samples> {
    let base = "/api/v1/namespaces/default/pods";
    let mut create = Vec::with_capacity(n);
    for i in 0..n {
        let body = pod_json("default", &format!("p{i}"));
        let (took, (status, text)) = timed(client.request(Method::POST, base, Some(&body))).await?;
        if status != StatusCode::CREATED {
            bail!("create answered {status}: {}", String::from_utf8_lossy(&text));
        }
        create.push(took);
    }
    Ok(create)
}

async fn measure(addr: SocketAddr, sizes: &Sizes) -> Result<(Samples, Samples, Samples, Samples)> {
    let mut client = Client::connect(addr).await?;
    let base = "/api/v1/namespaces/default/pods";
    let (create, get) = create_get(&mut client, sizes.pods).await?;
    let mut list = Vec::with_capacity(sizes.lists);
    for _ in 0..sizes.lists {
        let (took, (status, body)) = timed(client.request(Method::GET, base, None)).await?;
        let items: serde_json::Value = serde_json::from_slice(&body).context("decoding the list")?;
        let n = items["items"].as_array().map_or(0, Vec::len);
        if status != StatusCode::OK || n != sizes.pods {
            bail!("list answered {status} with {n} items, expected {}", sizes.pods);
        }
        list.push(took);
    }
    let fanout = fan_out(addr, &mut client, sizes.watchers, sizes.changes).await?;
    Ok((create, get, list, fanout))
}

/// `watchers` watches of the (empty) kube-system pods; each created pod's ADDED event must
/// reach them all.
pub(crate) async fn fan_out(
    addr: SocketAddr,
    client: &mut Client,
    watchers: usize,
    changes: usize,
) -> Result<Samples> {
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(String, Instant)>();
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let mut watcher = Client::connect(addr).await?;
        let response = watcher
            .send(
                Method::GET,
                "/api/v1/namespaces/kube-system/pods?watch=true",
                None,
            )
            .await?;
        if response.status() != StatusCode::OK {
            bail!("watch answered {}", response.status());
        }
        let seen_tx = seen_tx.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = watcher;
            let mut body = response.into_body();
            let mut buf = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else { continue };
                buf.extend_from_slice(&data);
                while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&line) else {
                        continue;
                    };
                    if event["type"] == "ADDED"
                        && let Some(name) = event["object"]["metadata"]["name"].as_str()
                    {
                        let _ = seen_tx.send((name.to_owned(), Instant::now()));
                    }
                }
            }
        }));
    }
    // Let every watch register before the first change.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut samples = Vec::with_capacity(changes);
    for i in 0..changes {
        let name = format!("fan{i}");
        let start = Instant::now();
        let (status, _) = client
            .request(
                Method::POST,
                "/api/v1/namespaces/kube-system/pods",
                Some(&pod_json("kube-system", &name)),
            )
            .await?;
        if status != StatusCode::CREATED {
            bail!("create answered {status}");
        }
        let mut got = 0;
        let mut last = start;
        while got < watchers {
            let (seen_name, at) = tokio::time::timeout(Duration::from_secs(10), seen.recv())
                .await
                .context("a watcher did not see the change within 10 s")?
                .context("every watcher ended")?;
            if seen_name == name {
                got += 1;
                last = last.max(at);
            }
        }
        samples.push(last - start);
    }
    for task in tasks {
        task.abort();
    }
    Ok(samples)
}

/// Round trips to a minimal hyper server that answers `ok`, over one keep-alive connection.
pub(crate) async fn loopback_floor(n: usize) -> Result<Samples> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the floor server")?;
    let addr = listener.local_addr().context("the floor server's address")?;
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                }),
            ));
        }
    });
    let mut client = Client::connect(addr).await?;
    let mut samples = Vec::with_capacity(n);
    // A few round trips first, not measured.
    for i in 0..n + 20 {
        let (took, (status, _)) = timed(client.request(Method::GET, "/", None)).await?;
        if status != StatusCode::OK {
            bail!("the floor server answered {status}");
        }
        if i >= 20 {
            samples.push(took);
        }
    }
    server.abort();
    Ok(samples)
}
