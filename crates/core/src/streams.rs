//! Into a running pod: exec, attach and port-forward as byte streams, the seam between what
//! runs containers (the process runtime implements [`PodStreams`]) and the wire protocols
//! that carry the streams to kubectl (`podvisor-stream`: WebSocket channels, SPDY/3.1).
//!
//! Nothing here knows a protocol or an HTTP request: a [`Session`] is a process's stdin,
//! stdout, stderr, terminal size and end; a forwarded port is one duplex byte stream.
//! The byte streams are `futures-io`'s traits, so this crate stays free of an async runtime;
//! tokio's types cross with `tokio_util::compat`.

use std::future::Future;
use std::pin::Pin;

use futures_io::{AsyncRead, AsyncWrite};

/// A readable byte stream (a process's stdout or stderr).
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// A writable byte stream (a process's stdin); closing it closes the process's stdin,
/// so the process reads end-of-file.
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// A byte stream both ways: a TCP connection to a port inside a pod.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// Which of a process's standard streams a session wires, as the request asked
/// (`stdin`, `stdout`, `stderr`, `tty` of `pods/exec` and `pods/attach`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StdioRequest {
    /// Give the client the process's stdin.
    pub stdin: bool,
    /// Give the client the process's stdout.
    pub stdout: bool,
    /// Give the client the process's stderr (never with `tty`: a terminal merges it into
    /// stdout).
    pub stderr: bool,
    /// Run the process on a terminal (a pty inside the container's namespaces).
    pub tty: bool,
}

/// A terminal's size in characters, as kubectl's resize messages carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The process exited with this code; a process killed by signal `n` reports `128 + n`.
    Exited(i32),
    /// The session could not go on (the container went away, the command could not run).
    Failed(String),
}

/// Applies a terminal size to a session's pty.
pub type Resize = Box<dyn Fn(TerminalSize) + Send + Sync>;

/// One running exec or attach: the ends the request asked for, and its end. Dropping it
/// detaches: an exec'd command that is still running is killed with everything it started;
/// an attached container keeps running.
pub struct Session {
    /// The process's stdin, when asked for (attach: only when the container has `stdin`).
    pub stdin: Option<Writer>,
    /// The process's stdout (with `tty`: the terminal's output).
    pub stdout: Option<Reader>,
    /// The process's stderr (never with `tty`).
    pub stderr: Option<Reader>,
    /// Resizes the terminal (with `tty` only).
    pub resize: Option<Resize>,
    /// Resolves when the process ended (exec) or the container's process ended (attach).
    /// Output written before the end is readable from `stdout`/`stderr` until their end.
    pub end: Pin<Box<dyn Future<Output = SessionEnd> + Send>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a stream could not be opened. Its text is what the client is shown.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// The container (or pod) does not run here now.
    #[error("container not found ({0})")]
    NotFound(String),
    /// The container exists but cannot take this request (e.g. attach stdin without `stdin: true`).
    #[error("{0}")]
    Unsupported(String),
    /// Starting or connecting failed.
    #[error("{0}")]
    Failed(String),
}

/// What a node offers into its running pods.
#[async_trait::async_trait]
pub trait PodStreams: Send + Sync {
    /// Runs `command` in running container `container_id` (the id in its status's
    /// `containerID`, without the scheme), in the container's context exactly as exec
    /// probes run (namespaces, cgroup, environment, user, working directory).
    async fn exec(
        &self,
        container_id: &str,
        command: Vec<String>,
        stdio: StdioRequest,
    ) -> Result<Session, StreamError>;

    /// Attaches to the main process of running container `container_id`: its output from
    /// now on, and its stdin when the container has `stdin: true`.
    async fn attach(&self, container_id: &str, stdio: StdioRequest) -> Result<Session, StreamError>;

    /// Connects to TCP `port` on the loopback address inside pod `pod_uid`'s network
    /// namespace (the host's, for a pod without one).
    async fn port_forward(&self, pod_uid: &str, port: u16) -> Result<Box<dyn Duplex>, StreamError>;
}
