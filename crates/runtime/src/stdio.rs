//! A process's standard streams as async byte streams: [`FdStream`] reads and writes a pipe
//! end or a pty master through tokio's reactor, and [`Fanout`] copies a container's output to
//! the clients attached to it.
//!
//! Nothing here buffers without bound: an `FdStream` reads only as fast as its reader asks,
//! so a process blocks on a full pipe (back-pressure), and each attached client has a bounded
//! queue; a client that falls behind is dropped (its stream ends) rather than slowing down the
//! container's log. Not here: the log file itself (`logs`), sessions and their ends
//! (`runtime/streams.rs`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

/// How many chunks (of at most one pipe read, 64 KiB) an attached client may be behind.
pub(crate) const SUBSCRIBER_CHUNKS: usize = 16;

/// Something a stream keeps alive for as long as it lives (a session's kill-on-drop guard).
pub(crate) type Keep = Arc<dyn std::any::Any + Send + Sync>;

/// One end of a pipe or a pty master, non-blocking, registered with tokio. Reading gives EOF
/// at the pipe's end and also on `EIO`, which is how a pty master reports that every slave is
/// closed (the processes on the terminal are gone). Shutting the writer down closes the fd:
/// the process reads end-of-file on its stdin.
pub(crate) struct FdStream {
    fd: Option<AsyncFd<OwnedFd>>,
    _keep: Option<Keep>,
}

impl FdStream {
    /// Takes `fd` over (making it non-blocking; it must be the only user of its open file
    /// description's blocking mode, as a pipe end or a duplicate of a pty master is here).
    pub(crate) fn new(fd: OwnedFd) -> io::Result<FdStream> {
        let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok(FdStream {
            fd: Some(crate::sys::register(fd)?),
            _keep: None,
        })
    }

    /// The same stream, keeping `keep` alive until it is dropped.
    pub(crate) fn keeping(mut self, keep: Keep) -> FdStream {
        self._keep = Some(keep);
        self
    }
}

impl AsyncRead for FdStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let Some(fd) = &self.fd else {
            return Poll::Ready(Ok(()));
        };
        loop {
            let mut guard = ready!(fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard
                .try_io(|fd| nix::unistd::read(fd.get_ref().as_raw_fd(), unfilled).map_err(io::Error::from))
            {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for FdStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let Some(fd) = &self.fd else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        loop {
            let mut guard = ready!(fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.fd = None;
        Poll::Ready(Ok(()))
    }
}

/// The output of one of a container's streams, copied to every attached client as it is read
/// (from the moment the client attached). Each client has a queue of [`SUBSCRIBER_CHUNKS`];
/// one whose queue is full is dropped, so the log never waits for a client.
#[derive(Default)]
pub(crate) struct Fanout {
    state: Mutex<FanoutState>,
}

#[derive(Default)]
struct FanoutState {
    subscribers: Vec<mpsc::Sender<Vec<u8>>>,
    /// The output has ended: new subscribers get EOF at once.
    ended: bool,
}

impl Fanout {
    fn lock(&self) -> std::sync::MutexGuard<'_, FanoutState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new client: the output read from now on, until the output ends or the client falls
    /// behind.
    pub(crate) fn subscribe(&self) -> FanoutReader {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_CHUNKS);
        let mut state = self.lock();
        if !state.ended {
            state.subscribers.push(tx);
        }
        FanoutReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }

    /// Copies `chunk` to every client; drops those that are full or gone.
    pub(crate) fn send(&self, chunk: &[u8]) {
        let mut state = self.lock();
        if state.subscribers.is_empty() {
            return;
        }
        state.subscribers.retain(|s| match s.try_send(chunk.to_vec()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!("an attached client fell behind the container's output; detached");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// The output ended: every client reads EOF after what it was sent.
    pub(crate) fn end(&self) {
        let mut state = self.lock();
        state.ended = true;
        state.subscribers.clear();
    }

    /// How many clients are attached.
    pub(crate) fn subscribers(&self) -> usize {
        self.lock().subscribers.len()
    }
}

/// One attached client's copy of a stream (see [`Fanout`]).
pub(crate) struct FanoutReader {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl AsyncRead for FanoutReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at >= this.chunk.len() {
            match ready!(this.rx.poll_recv(cx)) {
                Some(chunk) => {
                    this.chunk = chunk;
                    this.at = 0;
                }
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(this.chunk.len() - this.at);
        buf.put_slice(&this.chunk[this.at..this.at + n]);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn pipe() -> (FdStream, FdStream) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap_or_else(|e| panic!("{e}"));
        (
            FdStream::new(r).unwrap_or_else(|e| panic!("{e}")),
            FdStream::new(w).unwrap_or_else(|e| panic!("{e}")),
        )
    }

    #[tokio::test]
    async fn a_pipe_carries_bytes_and_shutdown_is_eof() {
        let (mut r, mut w) = pipe();
        w.write_all(b"hello").await.unwrap_or_else(|e| panic!("{e}"));
        w.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, b"hello");
    }

    #[tokio::test]
    async fn a_full_pipe_makes_the_writer_wait_instead_of_buffering() {
        let (mut r, mut w) = pipe();
        let big = vec![7u8; 1024 * 1024];
        let writer = tokio::spawn(async move {
            w.write_all(&big).await.unwrap_or_else(|e| panic!("{e}"));
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !writer.is_finished(),
            "1 MiB cannot fit a pipe: the writer must be waiting"
        );
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.len(), 1024 * 1024);
        writer.await.unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn a_fanout_copies_to_every_client_and_drops_a_slow_one() {
        let out = Fanout::default();
        out.send(b"before");
        let mut fast = out.subscribe();
        let slow = out.subscribe();
        assert_eq!(out.subscribers(), 2);
        let mut got = Vec::new();
        for i in 0..SUBSCRIBER_CHUNKS + 1 {
            out.send(format!("{i},").as_bytes());
            let mut buf = [0u8; 64];
            let n = fast.read(&mut buf).await.unwrap_or_else(|e| panic!("{e}"));
            got.extend_from_slice(&buf[..n]);
        }
        // The slow one never read: its queue filled up and it was dropped.
        assert_eq!(out.subscribers(), 1);
        out.end();
        let mut rest = Vec::new();
        fast.read_to_end(&mut rest)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let expected: String = (0..SUBSCRIBER_CHUNKS + 1).map(|i| format!("{i},")).collect();
        assert_eq!(
            String::from_utf8_lossy(&got),
            expected,
            "nothing from before it attached"
        );
        assert!(rest.is_empty());
        // The slow one gets what it had queued, then EOF.
        let mut slow = slow;
        let mut queued = Vec::new();
        slow.read_to_end(&mut queued)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            queued.len(),
            expected.len() - format!("{SUBSCRIBER_CHUNKS},").len()
        );
        // After the end, a new client reads EOF at once.
        let mut late = out.subscribe();
        let mut none = Vec::new();
        late.read_to_end(&mut none)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(none.is_empty());
    }
}
