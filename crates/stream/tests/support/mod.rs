//! A tiny API server for the streaming tests: hyper HTTP/1.1 with upgrades, just enough
//! discovery and one Running pod `x` for kubectl, and exec/portforward served by
//! `podvisor-stream` over a `PodStreams` that runs real local processes and connects real
//! local TCP ports.

#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use podvisor_core::streams::{Duplex, PodStreams, Session, SessionEnd, StdioRequest, StreamError};
use podvisor_stream::{
    ExecQuery, Limits, PortForwardTarget, Refusal, negotiate_exec, negotiate_port_forward, serve_exec,
    serve_port_forward,
};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

/// Runs exec'd commands as local processes; forwards to 127.0.0.1.
pub struct LocalProcesses;

#[async_trait::async_trait]
impl PodStreams for LocalProcesses {
    async fn exec(
        &self,
        _container: &str,
        command: Vec<String>,
        stdio: StdioRequest,
    ) -> Result<Session, StreamError> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| StreamError::Failed("no command".into()))?;
        let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(piped(stdio.stdin))
            .stdout(piped(stdio.stdout))
            .stderr(piped(stdio.stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| StreamError::Failed(format!("{program}: {e}")))?;
        let stdin = child.stdin.take().map(|w| Box::pin(w.compat_write()) as _);
        let stdout = child.stdout.take().map(|r| Box::pin(r.compat()) as _);
        let stderr = child.stderr.take().map(|r| Box::pin(r.compat()) as _);
        let end = Box::pin(async move {
            match child.wait().await {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    SessionEnd::Exited(
                        status
                            .code()
                            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
                    )
                }
                Err(e) => SessionEnd::Failed(e.to_string()),
            }
        });
        Ok(Session {
            stdin,
            stdout,
            stderr,
            resize: None,
            end,
        })
    }

    async fn attach(&self, _container: &str, _stdio: StdioRequest) -> Result<Session, StreamError> {
        Err(StreamError::Unsupported(
            "attach is not part of these tests".into(),
        ))
    }

    async fn port_forward(&self, _pod_uid: &str, port: u16) -> Result<Box<dyn Duplex>, StreamError> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| StreamError::Failed(format!("connecting to port {port}: {e}")))?;
        Ok(Box::new(stream.compat()))
    }
}

/// What the server saw: the protocols negotiated and how serving ended.
#[derive(Default)]
pub struct Seen {
    pub protocols: Mutex<Vec<String>>,
    pub served: Mutex<Vec<Result<(), String>>>,
}

pub struct Server {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let state = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: http://{addr}\n\
                 contexts:\n- name: t\n  context:\n    cluster: t\n    user: t\n    namespace: default\n\
                 current-context: t\nusers:\n- name: t\n  user: {{}}\n"
            ),
        )
        .unwrap();
        Self {
            addr,
            seen,
            kubeconfig,
            _dir: dir,
        }
    }

    /// kube-rs against this server.
    pub fn kube_client(&self) -> kube::Client {
        let config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// kubectl with this server's kubeconfig.
    pub fn kubectl(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env_remove("KUBECONFIG")
            .kill_on_drop(true);
        cmd
    }

    pub fn protocols(&self) -> Vec<String> {
        self.seen.protocols.lock().unwrap().clone()
    }

    /// Waits until `n` sessions were served, and returns how they ended.
    pub async fn served(&self, n: usize) -> Vec<Result<(), String>> {
        for _ in 0..200 {
            let served = self.seen.served.lock().unwrap().clone();
            if served.len() >= n {
                return served;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "fewer than {n} sessions ended: {:?}",
            self.seen.served.lock().unwrap()
        );
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn status_response(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "code": status.as_u16()}),
    )
}

fn refusal(r: Refusal) -> Response<Full<Bytes>> {
    let mut response = status_response(r.status, &r.message);
    for (name, value) in r.headers {
        response.headers_mut().append(name, value);
    }
    response
}

fn switching(headers: http::HeaderMap) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = headers;
    response
}

fn pod() -> serde_json::Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "x", "namespace": "default", "uid": "uid-x", "resourceVersion": "1"},
        "spec": {"containers": [{"name": "c", "image": "none"}]},
        "status": {"phase": "Running"},
    })
}

/// The defaults, but a shorter wait for a client's Close reply: kube-rs's port-forward never
/// sends one (it stops reading once it saw ours), so each such session would wait it out.
fn limits() -> Limits {
    Limits {
        close_timeout: Duration::from_secs(2),
        ..Limits::default()
    }
}

const POD: &str = "/api/v1/namespaces/default/pods/x";

async fn handle(seen: Arc<Seen>, mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    Ok(match path.as_str() {
        "/api" => json_response(
            StatusCode::OK,
            json!({"kind": "APIVersions", "versions": ["v1"],
                   "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        "/apis" => json_response(
            StatusCode::OK,
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        ),
        "/api/v1" => json_response(
            StatusCode::OK,
            json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                 "verbs": ["get", "list"], "shortNames": ["po"]},
                {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]},
                {"name": "pods/portforward", "singularName": "", "namespaced": true, "kind": "PodPortForwardOptions", "verbs": ["create", "get"]},
            ]}),
        ),
        POD => json_response(StatusCode::OK, pod()),
        p if p == format!("{POD}/exec") => {
            let exec = match ExecQuery::parse_exec(&query) {
                Ok(q) => q,
                Err(e) => return Ok(status_response(StatusCode::BAD_REQUEST, &e.to_string())),
            };
            let upgrade = match negotiate_exec(req.headers()) {
                Ok(u) => u,
                Err(r) => return Ok(refusal(r)),
            };
            seen.protocols
                .lock()
                .unwrap()
                .push(format!("{:?}", upgrade.protocol));
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let result = match on_upgrade.await {
                    Ok(upgraded) => {
                        let open = async move { LocalProcesses.exec("c", exec.command, exec.stdio).await };
                        serve_exec(
                            TokioIo::new(upgraded),
                            upgrade.protocol,
                            exec.stdio,
                            open,
                            &limits(),
                        )
                        .await
                        .map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                };
                seen.served.lock().unwrap().push(result);
            });
            switching(upgrade.headers)
        }
        p if p == format!("{POD}/portforward") => {
            let upgrade = match negotiate_port_forward(req.headers(), &query) {
                Ok(u) => u,
                Err(r) => return Ok(refusal(r)),
            };
            seen.protocols
                .lock()
                .unwrap()
                .push(format!("{:?}", upgrade.protocol));
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let target = PortForwardTarget {
                    streams: Arc::new(LocalProcesses),
                    pod_name: "x".into(),
                    pod_uid: "uid-x".into(),
                };
                let result = match on_upgrade.await {
                    Ok(upgraded) => {
                        serve_port_forward(TokioIo::new(upgraded), upgrade.protocol, target, &limits())
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                };
                seen.served.lock().unwrap().push(result);
            });
            switching(upgrade.headers)
        }
        other => status_response(StatusCode::NOT_FOUND, &format!("{other} not found")),
    })
}

/// A local TCP server that answers each connection's HTTP request with `hello <path>` and
/// echoes anything else it is sent after a line `ECHO\n`.
pub async fn http_server() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                if path == "/echo" {
                    let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                    let (mut rd, mut wr) = tcp.split();
                    let _ = tokio::io::copy(&mut rd, &mut wr).await;
                    return;
                }
                let body = format!("hello {path}");
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

/// Sends `GET path` to 127.0.0.1:`port` and returns the whole response.
pub async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    response
}
