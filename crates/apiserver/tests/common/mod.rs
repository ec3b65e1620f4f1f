//! Shared harness: an API server on 127.0.0.1:0 with a temp data dir and a kubeconfig.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use podvisor_apiserver::{ApiServer, ApiServerConfig};
use podvisor_store::RedbStore;

/// A running server; dropping it shuts the server down.
pub struct Server {
    pub url: String,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn podvisor_store::Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn start() -> Server {
    start_with(|server| server)
}

/// Like [`start`], with `configure` applied to the server before it serves.
pub fn start_with(configure: impl FnOnce(ApiServer) -> ApiServer + Send + 'static) -> Server {
    start_on(
        |dir| Box::pin(async move { Arc::new(RedbStore::open(dir.join("store.redb")).unwrap()) as _ }),
        configure,
    )
}

/// A server on the etcd members at `endpoints` (one of several API servers sharing them).
pub fn start_on_etcd(endpoints: Vec<String>) -> Server {
    start_on(
        move |_| {
            Box::pin(async move {
                let config = podvisor_store::EtcdStoreConfig {
                    endpoints,
                    request_timeout: std::time::Duration::from_secs(3),
                    compaction_interval: std::time::Duration::ZERO,
                    ..Default::default()
                };
                Arc::new(podvisor_store::EtcdStore::connect(config).await.unwrap()) as _
            })
        },
        |server| server,
    )
}

type StoreFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Arc<dyn podvisor_store::Store>> + Send>>;

/// A server on the store `make` opens in the data directory, inside the server's runtime (a
/// network store's connection lives there).
fn start_on(
    make: impl FnOnce(PathBuf) -> StoreFuture + Send + 'static,
    configure: impl FnOnce(ApiServer) -> ApiServer + Send + 'static,
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server_store = make(data).await;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let config = ApiServerConfig {
                bookmark_interval: std::time::Duration::from_secs(1),
                ..Default::default()
            };
            let server = configure(ApiServer::new(server_store.clone(), config));
            server.bootstrap().await.unwrap();
            addr_tx
                .send((listener.local_addr().unwrap(), server_store))
                .unwrap();
            server
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
    });
    let (addr, store) = addr_rx.recv().unwrap();
    let url = format!("http://{addr}");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: podvisor\n  cluster:\n    server: {url}\ncontexts:\n- name: podvisor\n  context:\n    cluster: podvisor\n    user: podvisor\n    namespace: default\ncurrent-context: podvisor\nusers:\n- name: podvisor\n  user: {{}}\n"),
    )
    .unwrap();
    Server {
        url,
        kubeconfig,
        dir,
        store,
        stop: Some(tx),
        thread: Some(thread),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The kubectl binary, or `None` (`need_kubectl!` then fails the test with the reason).
pub fn kubectl_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|p| p.join("kubectl"))
        .find(|p| p.is_file())
}

/// Fails the test, with the reason, when kubectl is absent (never a silent pass):
/// `cargo xtask test` installs it (Debian's `kubernetes-client`).
#[macro_export]
macro_rules! need_kubectl {
    () => {
        assert!(
            common::kubectl_path().is_some(),
            "needs kubectl: not found on PATH (`cargo xtask test` installs Debian's kubernetes-client)"
        );
    };
}

impl Server {
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .args(args);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        } else {
            drop(child.stdin.take());
        }
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies a manifest from stdin and asserts success.
    pub fn ok_stdin(&self, args: &[&str], input: &str) -> String {
        let out = self.kubectl_stdin(args, Some(input));
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str], input: Option<&str>) -> String {
        let out = self.kubectl_stdin(args, input);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, headers, body). A server
/// that drops the connection (a panicking handler) gives status 0.
pub async fn raw_request(
    url: &str,
    method: &str,
    path: &str,
    ct: &str,
    body: &[u8],
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (code, headers.to_string(), body.to_string())
}
