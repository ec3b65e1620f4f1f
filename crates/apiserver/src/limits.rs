//! The server's budgets: connections, time to send a request's headers, idle keep-alive
//! connections, TLS handshakes, requests in flight, and the wait for a resourceVersion the store
//! has not reached.
//!
//! The defaults are kube-apiserver's where it has one: `--max-requests-inflight` 400,
//! `--max-mutating-requests-inflight` 200 (answered with 429 and `Retry-After: 1`; watches and
//! followed logs are long-running and exempt, as are health checks), a 32 s header-read and a 90 s
//! idle timeout (its HTTP server's `ReadHeaderTimeout` and `IdleTimeout`; a connection that
//! never sends a byte, TLS or not, is closed after the header-read timeout), and a 3 s wait for
//! a future resourceVersion (its watch cache's). kube-apiserver has no connection cap;
//! podvisor caps connections (1024 by default) so idle sockets cannot exhaust its file
//! descriptors.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::handlers::Body;

/// The server's limits (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; further connections are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Non-mutating requests (GET, LIST) in flight at once; more get 429.
    pub max_requests_inflight: usize,
    /// Mutating requests (POST, PUT, PATCH, DELETE) in flight at once; more get 429.
    pub max_mutating_requests_inflight: usize,
    /// How long a client may take to send its first request's headers after connecting (and
    /// any request's headers once it started sending them).
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight after its last response.
    pub idle_timeout: Duration,
    /// How long a TLS client may take to complete the handshake.
    pub tls_handshake_timeout: Duration,
    /// How long a watch from a resourceVersion the store has not reached waits for it before
    /// it is answered with 504 "Too large resource version".
    pub too_large_resource_version_wait: Duration,
    /// How long a watch's buffer (16 events) may stay full, its client taking nothing, before
    /// the watch is ended (the client re-lists, as after kube-apiserver drops a slow watcher).
    pub stalled_watch_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            header_read_timeout: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(90),
            tls_handshake_timeout: Duration::from_secs(10),
            too_large_resource_version_wait: Duration::from_secs(3),
            stalled_watch_timeout: Duration::from_secs(30),
        }
    }
}

/// The in-flight budgets of one server.
#[derive(Debug)]
pub(crate) struct InFlight {
    read_only: Arc<Semaphore>,
    mutating: Arc<Semaphore>,
}

/// What a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// Not limited: health checks and long-running requests (watches, followed logs).
    Exempt,
    /// `max-requests-inflight`.
    ReadOnly,
    /// `max-mutating-requests-inflight`.
    Mutating,
}

impl Budget {
    /// Classifies a request as kube-apiserver's max-in-flight filter does.
    pub(crate) fn of(method: &Method, path: &str, query: Option<&str>) -> Budget {
        let health = ["/livez", "/readyz", "/healthz"]
            .iter()
            .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')));
        let flag = |name: &str| {
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .any(|(k, v)| k == name && matches!(&*v, "true" | "1"))
        };
        let long_running = flag("watch") || (path.ends_with("/log") && flag("follow"));
        if health || long_running {
            Budget::Exempt
        } else if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            Budget::ReadOnly
        } else {
            Budget::Mutating
        }
    }
}

impl InFlight {
    pub(crate) fn new(limits: &Limits) -> InFlight {
        InFlight {
            read_only: Arc::new(Semaphore::new(limits.max_requests_inflight)),
            mutating: Arc::new(Semaphore::new(limits.max_mutating_requests_inflight)),
        }
    }

    /// A permit for a request of `budget`, held until its response is sent; `Err` when the
    /// budget is spent (answer with [`too_many_requests`]).
    pub(crate) fn admit(&self, budget: Budget) -> Result<Option<OwnedSemaphorePermit>, Spent> {
        let semaphore = match budget {
            Budget::Exempt => return Ok(None),
            Budget::ReadOnly => &self.read_only,
            Budget::Mutating => &self.mutating,
        };
        semaphore.clone().try_acquire_owned().map(Some).map_err(|_| Spent)
    }
}

/// An in-flight budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spent;

/// kube-apiserver's answer when a budget is spent: 429, `Retry-After: 1`, a plain-text body.
pub(crate) fn too_many_requests() -> Response<Body> {
    let body = http_body_util::Full::new(bytes::Bytes::from_static(
        b"Too many requests, please try again later.\n",
    ))
    .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The requests in flight on one connection; a connection with none is idle.
#[derive(Debug, Clone, Default)]
pub(crate) struct Busy(Arc<AtomicUsize>);

/// Counts one request in flight until dropped (with its response body).
#[derive(Debug)]
pub(crate) struct BusyGuard(Arc<AtomicUsize>);

impl Busy {
    /// Marks a request in flight until the guard is dropped.
    pub(crate) fn enter(&self) -> BusyGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        BusyGuard(self.0.clone())
    }

    fn idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps `guard` until `response`'s body is sent (or dropped); the body's size hint is kept, so
/// a sized response still gets its `Content-Length`.
pub(crate) fn hold_until_sent(response: Response<Body>, guard: BusyGuard) -> Response<Body> {
    response.map(move |inner| Held { inner, _guard: guard }.boxed())
}

/// A response body holding a [`BusyGuard`].
struct Held {
    inner: Body,
    _guard: BusyGuard,
}

impl hyper::body::Body for Held {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's byte stream with its time limits: closed (reads fail with `TimedOut`) when no
/// byte arrives for `header_read_timeout` after connecting, or when it has no request in flight
/// and neither reads nor writes anything for `idle_timeout`. Below TLS, so a handshake that
/// never completes is covered too.
pub(crate) struct Timed<S> {
    inner: S,
    busy: Busy,
    deadline: Pin<Box<Sleep>>,
    idle_timeout: Duration,
}

impl<S> Timed<S> {
    pub(crate) fn new(inner: S, busy: Busy, limits: &Limits) -> Self {
        Timed {
            inner,
            busy,
            deadline: Box::pin(tokio::time::sleep(limits.header_read_timeout)),
            idle_timeout: limits.idle_timeout,
        }
    }

    fn touch(&mut self) {
        let now = Instant::now();
        let at = now
            .checked_add(self.idle_timeout)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400));
        self.deadline.as_mut().reset(at);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                while this.deadline.as_mut().poll(cx).is_ready() {
                    if this.busy.idle() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "connection idle for too long",
                        )));
                    }
                    // A request is in flight (a watch): not idle, look again later.
                    this.touch();
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_like_kube_apiserver_max_inflight() {
        let pods = "/api/v1/namespaces/default/pods";
        assert_eq!(Budget::of(&Method::GET, pods, None), Budget::ReadOnly);
        assert_eq!(Budget::of(&Method::GET, pods, Some("watch=true")), Budget::Exempt);
        // Decoded as the handler decodes it: an escaped `watch` is still a watch.
        assert_eq!(
            Budget::of(&Method::GET, pods, Some("w%61tch=%74rue")),
            Budget::Exempt
        );
        assert_eq!(
            Budget::of(&Method::GET, pods, Some("watch=false")),
            Budget::ReadOnly
        );
        assert_eq!(Budget::of(&Method::POST, pods, None), Budget::Mutating);
        assert_eq!(Budget::of(&Method::DELETE, pods, None), Budget::Mutating);
        assert_eq!(Budget::of(&Method::GET, "/readyz", None), Budget::Exempt);
        assert_eq!(
            Budget::of(&Method::GET, &format!("{pods}/a/log"), Some("follow=true")),
            Budget::Exempt
        );
    }

    #[test]
    fn a_spent_budget_is_429_with_retry_after() {
        let limits = Limits {
            max_requests_inflight: 1,
            max_mutating_requests_inflight: 1,
            ..Limits::default()
        };
        let inflight = InFlight::new(&limits);
        let held = inflight.admit(Budget::ReadOnly).unwrap();
        assert_eq!(inflight.admit(Budget::ReadOnly).unwrap_err(), Spent);
        let refused = too_many_requests();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        assert!(inflight.admit(Budget::Mutating).is_ok(), "separate budgets");
        assert!(inflight.admit(Budget::Exempt).unwrap().is_none());
        drop(held);
        assert!(inflight.admit(Budget::ReadOnly).is_ok());
    }

    #[tokio::test]
    async fn a_busy_connection_outlives_its_deadline_and_an_idle_one_does_not() {
        use tokio::io::AsyncReadExt;
        let limits = Limits {
            header_read_timeout: Duration::from_millis(20),
            // Beyond what the clock can add: must not spin or panic.
            idle_timeout: Duration::MAX,
            ..Limits::default()
        };
        let (_client, server) = tokio::io::duplex(64);
        let busy = Busy::default();
        let request = busy.enter();
        let mut timed = Timed::new(server, busy.clone(), &limits);
        let mut buf = [0u8; 8];
        // In flight: the deadline passes and the read keeps waiting.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), timed.read(&mut buf))
                .await
                .is_err()
        );
        drop(request);
        let limits = Limits {
            header_read_timeout: Duration::from_millis(20),
            ..Limits::default()
        };
        let (_client, server) = tokio::io::duplex(64);
        let mut idle = Timed::new(server, Busy::default(), &limits);
        let err = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
