//! Wire-level tests of the serve functions against hand-driven clients: a raw SPDY client on
//! the crate's own codec and a tungstenite client, over in-memory pipes.

mod spdy_wire;
mod ws_wire;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use podvisor_core::streams::{
    Duplex, PodStreams, Session, SessionEnd, StdioRequest, StreamError, TerminalSize,
};
use tokio::io::DuplexStream;
use tokio::sync::oneshot;
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

/// The test's ends of a hand-made session.
struct Harness {
    /// What the session's process reads as stdin.
    stdin: Option<DuplexStream>,
    /// What the session's process writes as stdout.
    stdout: Option<DuplexStream>,
    /// Every size the resize callback got.
    sizes: Arc<Mutex<Vec<TerminalSize>>>,
    /// Ends the session.
    end: oneshot::Sender<SessionEnd>,
}

fn session(stdio: StdioRequest) -> (Session, Harness) {
    let (stdin, stdin_test) = if stdio.stdin {
        let (a, b) = tokio::io::duplex(1 << 16);
        (Some(Box::pin(a.compat_write()) as _), Some(b))
    } else {
        (None, None)
    };
    let (stdout, stdout_test) = if stdio.stdout {
        let (a, b) = tokio::io::duplex(1 << 16);
        (Some(Box::pin(a.compat()) as _), Some(b))
    } else {
        (None, None)
    };
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let recorder = sizes.clone();
    let resize = stdio
        .tty
        .then(|| Box::new(move |size| recorder.lock().unwrap().push(size)) as podvisor_core::streams::Resize);
    let (end_tx, end_rx) = oneshot::channel();
    let end = Box::pin(async move { end_rx.await.unwrap_or(SessionEnd::Failed("dropped".into())) });
    let session = Session {
        stdin,
        stdout,
        stderr: None,
        resize,
        end,
    };
    (
        session,
        Harness {
            stdin: stdin_test,
            stdout: stdout_test,
            sizes,
            end: end_tx,
        },
    )
}

/// Forwards to 127.0.0.1 like a pod on the host network.
struct Loopback;

#[async_trait::async_trait]
impl PodStreams for Loopback {
    async fn exec(&self, _: &str, _: Vec<String>, _: StdioRequest) -> Result<Session, StreamError> {
        Err(StreamError::Unsupported("exec".into()))
    }

    async fn attach(&self, _: &str, _: StdioRequest) -> Result<Session, StreamError> {
        Err(StreamError::Unsupported("attach".into()))
    }

    async fn port_forward(&self, _: &str, port: u16) -> Result<Box<dyn Duplex>, StreamError> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| StreamError::Failed(e.to_string()))?;
        Ok(Box::new(tcp.compat()))
    }
}

fn target() -> crate::PortForwardTarget {
    crate::PortForwardTarget {
        streams: Arc::new(Loopback),
        pod_name: "x".into(),
        pod_uid: "uid-x".into(),
    }
}

/// A local echo server's port.
async fn echo_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = tcp.split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
            });
        }
    });
    port
}

fn short_limits() -> crate::Limits {
    crate::Limits {
        stream_creation_timeout: Duration::from_millis(300),
        close_timeout: Duration::from_secs(2),
        ..crate::Limits::default()
    }
}

/// Waits up to 5 s.
async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("in time")
}
