//! Test support: real servers on 127.0.0.1 (HTTP, HTTPS, hanging, garbage, refusing), probe
//! targets and probe specs, and a fake `ContainerExec` (the layer above the runtime).

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use podvisor_core::corev1;
use podvisor_core::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_core::runtime::{ContainerExec, ExecOutput, ExitStatus, RuntimeError};
use podvisor_core::{ContainerId, ProbeTarget};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// What a test server saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: http::HeaderMap,
}

/// A reply a test server sends.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::default()
        }
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn redirect(status: u16, location: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: vec![("Location".into(), location.into())],
            body: Vec::new(),
        }
    }
}

type Handler = Arc<dyn Fn(&Seen, u16) -> Reply + Send + Sync>;

/// A running test HTTP server and what it received.
#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().map(|seen| seen.clone()).unwrap_or_default()
    }
}

/// An HTTP/1.1 server whose `handler` gets each request and the server's own port.
pub async fn http_server(handler: impl Fn(&Seen, u16) -> Reply + Send + Sync + 'static) -> Server {
    serve(Arc::new(handler), None).await
}

/// The same over TLS with a fresh self-signed certificate for `localhost`.
pub async fn https_server(handler: impl Fn(&Seen, u16) -> Reply + Send + Sync + 'static) -> Server {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    serve(Arc::new(handler), Some(acceptor)).await
}

async fn serve(handler: Handler, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = Server {
        addr,
        seen: seen.clone(),
    };
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            let seen = seen.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                    let record = Seen {
                        path: request
                            .uri()
                            .path_and_query()
                            .map(|path| path.to_string())
                            .unwrap_or_default(),
                        headers: request.headers().clone(),
                    };
                    if let Ok(mut seen) = seen.lock() {
                        seen.push(record.clone());
                    }
                    let reply = handler(&record, addr.port());
                    let mut response = hyper::Response::builder().status(reply.status);
                    for (name, value) in &reply.headers {
                        response = response.header(name, value);
                    }
                    let response = response
                        .body(Full::new(Bytes::from(reply.body)))
                        .expect("response");
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let builder = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    }
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                }
            });
        }
    });
    server
}

/// A server that accepts connections and never says anything; it holds them until the test ends.
pub async fn hanging_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// A server that answers every connection with pseudo-random bytes and closes it.
pub async fn garbage_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let mut seed: u32 = 0x9e37_79b9;
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut noise = Vec::with_capacity(512);
            for _ in 0..512 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                noise.push(seed.to_le_bytes()[0]);
            }
            noise.extend_from_slice(b"\r\n\r\n");
            let _ = stream.write_all(&noise).await;
            let _ = stream.shutdown().await;
        }
    });
    addr
}

/// A port on 127.0.0.1 that nothing listens on (bound once, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

/// A target on 127.0.0.1 with the given named ports and static env.
pub fn target(ports: &[(&str, u16)], env: &[(&str, &str)]) -> ProbeTarget {
    ProbeTarget {
        container_id: ContainerId("c1".to_owned()),
        pod_ip: "127.0.0.1".to_owned(),
        ports: ports
            .iter()
            .map(|(name, port)| corev1::ContainerPort {
                name: Some((*name).to_owned()),
                container_port: i32::from(*port),
                ..Default::default()
            })
            .collect(),
        env: env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
    }
}

/// A plain local target without ports or env.
pub fn local() -> ProbeTarget {
    target(&[], &[])
}

pub fn http_get(port: u16, path: &str) -> corev1::HTTPGetAction {
    corev1::HTTPGetAction {
        port: IntOrString::Int(i32::from(port)),
        path: Some(path.to_owned()),
        ..Default::default()
    }
}

pub fn header(name: &str, value: &str) -> corev1::HTTPHeader {
    corev1::HTTPHeader {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

pub fn http_probe(action: corev1::HTTPGetAction) -> corev1::Probe {
    corev1::Probe {
        http_get: Some(action),
        ..Default::default()
    }
}

pub fn tcp_probe(port: IntOrString) -> corev1::Probe {
    corev1::Probe {
        tcp_socket: Some(corev1::TCPSocketAction { port, host: None }),
        ..Default::default()
    }
}

pub fn exec_probe(command: &[&str]) -> corev1::Probe {
    corev1::Probe {
        exec: Some(corev1::ExecAction {
            command: Some(command.iter().map(|arg| (*arg).to_owned()).collect()),
        }),
        ..Default::default()
    }
}

pub const ONE_SECOND: Duration = Duration::from_secs(1);

/// What the fake exec does when called.
#[derive(Clone, Debug)]
pub enum Script {
    /// Exit with this code and output.
    Exit(i32, &'static str),
    /// Report that the timeout killed the command.
    TimedOut,
    /// Never return (the probe's own timeout must end it).
    Hang,
    /// Fail to run (the binary is missing).
    Error,
}

/// A `ContainerExec` that follows a script and records every call.
#[derive(Debug)]
pub struct FakeExec {
    pub script: Script,
    pub calls: Mutex<Vec<(Vec<String>, Option<Duration>)>>,
    pub count: AtomicUsize,
}

impl FakeExec {
    pub fn new(script: Script) -> Arc<FakeExec> {
        Arc::new(FakeExec {
            script,
            calls: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
        })
    }

    pub fn calls(&self) -> Vec<(Vec<String>, Option<Duration>)> {
        self.calls.lock().map(|calls| calls.clone()).unwrap_or_default()
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl ContainerExec for FakeExec {
    async fn exec(
        &self,
        id: &ContainerId,
        argv: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
        self.count.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut calls) = self.calls.lock() {
            calls.push((argv.to_vec(), timeout));
        }
        match &self.script {
            Script::Exit(code, output) => Ok(ExecOutput {
                status: ExitStatus::Exited(*code),
                output: output.as_bytes().to_vec(),
                timed_out: false,
            }),
            Script::TimedOut => Ok(ExecOutput {
                status: ExitStatus::Signaled(9),
                output: Vec::new(),
                timed_out: true,
            }),
            Script::Hang => {
                std::future::pending::<()>().await;
                unreachable!("pending never resolves")
            }
            Script::Error => Err(RuntimeError::Exec {
                id: id.clone(),
                message: "executable file not found in $PATH".to_owned(),
            }),
        }
    }
}

/// Counts sockets in TIME_WAIT whose local or remote port is `port` (IPv4 and IPv6 tables).
pub fn time_wait_on(port: u16) -> usize {
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port_of = |field: Option<&&str>| {
                field
                    .and_then(|address| address.rsplit(':').next())
                    .and_then(|hex| u16::from_str_radix(hex, 16).ok())
            };
            let local = port_of(fields.get(1));
            let remote = port_of(fields.get(2));
            if fields.get(3) == Some(&"06") && (local == Some(port) || remote == Some(port)) {
                count += 1;
            }
        }
    }
    count
}
