//! Small async helpers shared by the HTTP and gRPC handlers: an optional deadline, and driving a
//! one-shot hyper connection inside the probe's own future (no spawned connection task).

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use tokio::time::Instant;

/// The deadline passed before the work finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// Runs `work` until `deadline`, or without limit when there is none (hooks).
pub(crate) async fn within<F: Future>(deadline: Option<Instant>, work: F) -> Result<F::Output, TimedOut> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| TimedOut),
        None => Ok(work.await),
    }
}

/// Polls `work` and the connection future `conn` together and returns `work`'s output.
///
/// The connection is polled in the caller's task instead of being spawned, so dropping the probe
/// drops the connection and closes its socket. If the connection ends first (the peer closed,
/// or sent garbage), `work` is polled on alone: hyper hands it the connection's error.
pub(crate) async fn drive<W: Future, C: Future>(work: W, conn: C) -> W::Output {
    let mut work = pin!(work);
    let mut conn = pin!(conn);
    let mut conn_done = false;
    poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(output);
        }
        if !conn_done && conn.as_mut().poll(cx).is_ready() {
            conn_done = true;
            return work.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await
}

/// An error and its sources, joined with `": "` (hyper's errors keep the useful part in the
/// source chain).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
