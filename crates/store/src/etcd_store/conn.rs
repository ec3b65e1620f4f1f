//! The connection to etcd: one client per member endpoint, every call bounded by the request
//! timeout, and failover to the next endpoint when one cannot be reached.
//!
//! Requests go to one endpoint at a time (the preferred one) rather than being balanced over
//! all: a balancer keeps offering a dead member's endpoint and fails requests on it. A request
//! that could not even connect moves on to the next endpoint at once; a read (which changes
//! nothing) also moves on after any failure of the transport or of etcd's availability. A
//! write whose outcome is unknown (sent, then no answer) is never sent again: it fails with
//! [`StoreError::Unavailable`], and the next call starts at the next endpoint.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, KeyValue, Txn};

use super::keys::{Layout, prefix_end};
use super::{etcd_revision, header_revision, revision_of};
use crate::{ObjectKey, Result, StoreError};

/// The HTTP/2 keep-alive ping interval towards etcd: a connection that stops answering (a
/// member gone without closing its sockets) is noticed within this plus the request timeout.
/// etcd refuses pings more often than every 5 s by default.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// The largest response this store decodes (kube-apiserver's etcd client allows as much): a
/// list batch or a watch response of large objects is far over gRPC's default 4 MiB, and etcd
/// has no byte limit on a range.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// A key-value client of `c` that takes responses up to [`MAX_RESPONSE_BYTES`].
pub(super) fn kv(c: &Client) -> etcd_client::KvClient {
    c.kv_client().max_decoding_message_size(MAX_RESPONSE_BYTES)
}

/// A watch client of `c` that takes responses up to [`MAX_RESPONSE_BYTES`].
pub(super) fn watcher(c: &Client) -> etcd_client::WatchClient {
    c.watch_client().max_decoding_message_size(MAX_RESPONSE_BYTES)
}

/// An etcd call that failed, for [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
#[error("etcd {what} failed (endpoints {endpoints})")]
struct EtcdFailure {
    what: &'static str,
    endpoints: Arc<str>,
    #[source]
    source: etcd_client::Error,
}

/// Whether a call may be sent again after a failure whose outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Reads: sent again to the next endpoint after any transport or availability failure.
    Idempotent,
    /// Writes: sent again only when the request could not have reached etcd (no connection).
    Once,
}

/// What the store, its watches and its compactor share: the clients, the timeout, the layout.
#[derive(Clone)]
pub(crate) struct Conn {
    clients: Arc<[Client]>,
    /// The endpoint requests go to first.
    preferred: Arc<AtomicUsize>,
    pub(super) timeout: Duration,
    /// The endpoints, comma-separated, for error messages.
    pub(super) endpoints: Arc<str>,
    pub(super) layout: Layout,
}

/// Whether etcd answered that the revision asked for is compacted.
pub(super) fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("required revision has been compacted"))
}

/// Whether etcd refused a request as larger than it takes: past its `--max-request-bytes`
/// (`etcdserver: request is too large`) or past its gRPC message limit (that plus a little,
/// `ResourceExhausted`, `... larger than max (N vs. LIMIT)`). `Some(limit)` when etcd said it.
fn too_large(e: &etcd_client::Error) -> Option<Option<usize>> {
    let etcd_client::Error::GRpcStatus(s) = e else {
        return None;
    };
    if s.message().contains("request is too large") {
        return Some(None);
    }
    if s.code() == tonic::Code::ResourceExhausted {
        let limit = s
            .message()
            .rsplit_once("vs. ")
            .and_then(|(_, rest)| rest.trim_end_matches(')').trim().parse().ok());
        return Some(limit);
    }
    None
}

/// Whether the request failed to connect, so it never reached etcd.
fn is_connect_failure(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable
                && !s.message().starts_with("etcdserver:")
                && s.message().contains("connect")
        }
        _ => false,
    }
}

/// Whether the failure is of the transport or of etcd's availability (no leader, a timeout
/// inside etcd): another endpoint, or a later try, may succeed.
fn is_unavailable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let code = s.code();
            let transient = matches!(
                code,
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ) || (matches!(code, tonic::Code::Unknown | tonic::Code::Internal)
                // A member that went away mid-call, or an election under way, as gRPC or etcd
                // word it when the status code does not say so.
                && ["transport", "connection", "broken pipe", "leader", "timed out", "stream"]
                    .iter()
                    .any(|w| s.message().to_ascii_lowercase().contains(w)));
            transient && !is_compacted(e)
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

impl Conn {
    /// One client per endpoint (they connect lazily: nothing is sent yet).
    pub(super) async fn new(endpoints: &[String], timeout: Duration, layout: Layout) -> Result<Conn> {
        let names: Arc<str> = endpoints.join(",").into();
        if endpoints.is_empty() {
            return Err(StoreError::Unavailable {
                message: "no etcd endpoint is configured".into(),
            });
        }
        let mut clients = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let options = ConnectOptions::new()
                .with_connect_timeout(timeout)
                .with_keep_alive(KEEP_ALIVE_INTERVAL, timeout);
            let client = tokio::time::timeout(timeout, Client::connect([endpoint], Some(options)))
                .await
                .map_err(|_| StoreError::Unavailable {
                    message: format!("etcd at {endpoint} did not answer within {timeout:?}"),
                })?
                .map_err(|e| StoreError::Unavailable {
                    message: format!("cannot connect to etcd at {endpoint}: {e}"),
                })?;
            clients.push(client);
        }
        Ok(Conn {
            clients: clients.into(),
            preferred: Arc::new(AtomicUsize::new(0)),
            timeout,
            endpoints: names,
            layout,
        })
    }

    /// Moves away from endpoint `i` for the calls that follow (unless another call already did).
    fn avoid(&self, i: usize) {
        let next = (i + 1) % self.clients.len();
        let _ = self
            .preferred
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Runs one etcd call within the request timeout, from the preferred endpoint on, moving to
    /// the next endpoint as `retry` allows; the inner result is etcd's last answer.
    pub(super) async fn raw<T, F, Fut>(
        &self,
        what: &'static str,
        retry: Retry,
        mut call: F,
    ) -> Result<Result<T, etcd_client::Error>>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let first = self.preferred.load(Ordering::Relaxed);
        let n = self.clients.len();
        let mut last = None;
        for attempt in 0..n {
            let i = (first + attempt) % n;
            let client = self.clients[i].clone();
            match tokio::time::timeout_at(deadline, call(client)).await {
                Err(_) => {
                    self.avoid(i);
                    break;
                }
                Ok(Err(e)) => {
                    let again = match retry {
                        Retry::Idempotent => is_unavailable(&e),
                        Retry::Once => is_connect_failure(&e),
                    };
                    if !again {
                        return Ok(Err(e));
                    }
                    tracing::debug!(endpoint = i, error = %e, "etcd endpoint failed, trying the next");
                    self.avoid(i);
                    last = Some(e);
                }
                Ok(Ok(answer)) => return Ok(Ok(answer)),
            }
        }
        match last {
            Some(e) if tokio::time::Instant::now() < deadline => Ok(Err(e)),
            _ => Err(StoreError::Unavailable {
                message: format!(
                    "etcd ({}) did not answer {what} within {:?}",
                    self.endpoints, self.timeout
                ),
            }),
        }
    }

    /// Like [`Conn::raw`], with etcd's errors as [`StoreError`]s.
    pub(super) async fn call<T, F, Fut>(&self, what: &'static str, retry: Retry, call: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.raw(what, retry, call).await?.map_err(|e| self.fail(what, e))
    }

    /// An etcd error as a [`StoreError`]: [`StoreError::Unavailable`] for what a retry may
    /// cure (no leader, a timeout in etcd, a connection that failed), else a backend error.
    pub(super) fn fail(&self, what: &'static str, e: etcd_client::Error) -> StoreError {
        if is_unavailable(&e) {
            let detail = match &e {
                etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
                other => other.to_string(),
            };
            return StoreError::Unavailable {
                message: format!("etcd ({}) failed {what}: {detail}", self.endpoints),
            };
        }
        StoreError::backend(EtcdFailure {
            what,
            endpoints: self.endpoints.clone(),
            source: e,
        })
    }

    /// A key no object has (the prefix itself), for requests that only want a header.
    pub(super) fn probe_key(&self) -> String {
        self.layout.prefix("", None)
    }

    pub(super) async fn current_revision(&self) -> Result<u64> {
        let key = self.probe_key();
        let resp = self
            .call("a revision read", Retry::Idempotent, |c| {
                let key = key.clone();
                async move { kv(&c).get(key, Some(GetOptions::new().with_count_only())).await }
            })
            .await?;
        header_revision(resp.header())
    }

    pub(super) async fn compact(&self, revision: u64) -> Result<()> {
        let horizon = revision.min(self.current_revision().await?);
        if horizon == 0 {
            return Ok(());
        }
        let answer = self
            .raw("compaction", Retry::Idempotent, |c| async move {
                kv(&c).compact(etcd_revision(horizon), None).await
            })
            .await?;
        match answer {
            Ok(_) => {
                tracing::debug!(horizon, "etcd compacted");
                Ok(())
            }
            // Another server (or an earlier call) compacted as far already.
            Err(e) if is_compacted(&e) => Ok(()),
            Err(e) => Err(self.fail("compaction", e)),
        }
    }

    /// The revision etcd has compacted to, known to be above `below` (a revision etcd just
    /// answered as compacted). etcd tells it only to a watch from a compacted revision; if
    /// that watch does not tell in time, `below + 1` (a lower bound) is answered.
    pub(super) async fn compacted_above(&self, below: u64) -> u64 {
        let fallback = below.saturating_add(1);
        let prefix = self.probe_key();
        let options = etcd_client::WatchOptions::new()
            .with_range(prefix_end(prefix.as_bytes()))
            .with_start_revision(etcd_revision(below.max(1)));
        let client = self.clients[self.preferred.load(Ordering::Relaxed) % self.clients.len()].clone();
        let probe = async {
            let mut stream = watcher(&client).watch(prefix, Some(options)).await.ok()?;
            while let Some(resp) = stream.message().await.ok()? {
                if resp.compact_revision() > 0 {
                    return Some(revision_of(resp.compact_revision()));
                }
                if resp.canceled() {
                    return None;
                }
            }
            None
        };
        tokio::time::timeout(self.timeout, probe)
            .await
            .ok()
            .flatten()
            .unwrap_or(fallback)
    }

    pub(super) async fn get_kv(&self, key: &str) -> Result<Option<KeyValue>> {
        let mut resp = self
            .call("a read", Retry::Idempotent, |c| {
                let key = key.to_string();
                async move { kv(&c).get(key, None).await }
            })
            .await?;
        Ok(resp.take_kvs().into_iter().next())
    }

    /// Runs a write transaction; `key`, `size` and `limit` (the store's) describe the object
    /// for a too-large refusal, which etcd itself may answer below the store's limit.
    pub(super) async fn txn(
        &self,
        txn: Txn,
        key: &ObjectKey,
        size: usize,
        limit: usize,
    ) -> Result<etcd_client::TxnResponse> {
        let answer = self
            .raw("a write", Retry::Once, |c| {
                let txn = txn.clone();
                async move { kv(&c).txn(txn).await }
            })
            .await?;
        match answer {
            Ok(resp) => Ok(resp),
            Err(e) => match too_large(&e) {
                // etcd's own limit when it says it, else its default (which it most likely
                // has), never more than the object.
                Some(etcd_limit) => Err(StoreError::TooLarge {
                    key: key.clone(),
                    size,
                    limit: etcd_limit
                        .unwrap_or(crate::DEFAULT_MAX_OBJECT_BYTES)
                        .min(limit)
                        .min(size.saturating_sub(1)),
                }),
                None => Err(self.fail("a write", e)),
            },
        }
    }
}
