//! The etcd v3 backend: several API servers share one etcd cluster, as kube-apiserver does.
//!
//! **Layout.** One etcd key per object, laid out like kube-apiserver's (see the `keys` module):
//! `/registry/pods/default/web`, `/registry/nodes/n1`, `/registry/apps/deployments/ns/d`. The
//! value is the object's JSON without `metadata.resourceVersion`: the revision is etcd's
//! `mod_revision` of the key, stamped on every object this store returns.
//!
//! **Writes** are etcd transactions guarded by the key's revision: `create` puts only while the
//! key's `create_revision` is 0; `update` and `delete` read the object, check the
//! [`Preconditions`] and write only while the key's `mod_revision` is still the one read. A
//! write that loses a race to another writer reads again and retries (a bounded number of
//! times) unless it carries a resourceVersion precondition, which then fails with
//! [`StoreError::Conflict`].
//!
//! **Lists** read one etcd revision: the first page's, carried by [`ListOptions::revision`] (the
//! API server's continue token), so every page of a paginated list comes from one snapshot.
//! Once etcd has compacted that revision the list fails with [`StoreError::Expired`].
//!
//! **Watches** are etcd watches on the resource's key prefix with the previous key-value, so a
//! modification carries its previous object and a deletion the object's last state. A watch
//! from a compacted revision fails when it is opened; a watch that falls behind compaction, or
//! whose connection breaks, ends with an error.
//!
//! **Compaction** is etcd's: [`Store::compact`], and, like kube-apiserver's
//! `--etcd-compaction-interval`, a task that every interval compacts to the revision it saw at
//! the previous tick (several API servers doing so on one etcd is harmless).
//!
//! **Members.** One client per endpoint; requests go to one member and fail over to the next
//! (the `conn` module says when a request is sent again and when it is not).
//!
//! **What it is not.** It does not start, configure or secure etcd (plain `http://` endpoints,
//! no TLS, no authentication), and keeps no cache: every read is a linearizable etcd read.
//! Every etcd call is bounded by [`EtcdStoreConfig::request_timeout`]; one that does not answer
//! in time fails with [`StoreError::Unavailable`] (the outcome of such a write is unknown).

mod conn;
mod keys;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conn::{Conn, Retry, is_compacted};
use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse};
use serde_json::Value;

use crate::object::{check, parse, stamp, unstamp};
use crate::{
    DEFAULT_MAX_OBJECT_BYTES, ListOptions, ListResult, ObjectKey, Preconditions, Result, Store, StoreError,
    Versioned, WatchStream,
};
use keys::{Layout, prefix_end};

/// How many keys one etcd range request of a list reads at most.
const LIST_BATCH: usize = 500;

/// How often a write that lost a race to another writer (and has no resourceVersion
/// precondition) reads again and retries before failing with [`StoreError::Conflict`]
/// (kube-apiserver retries without a bound; a key this contended is a bug elsewhere).
const WRITE_ATTEMPTS: u32 = 64;

/// After this many lost races in a row a write waits a little (longer each time, at most
/// [`MAX_RACE_BACKOFF`]) before it tries again, so that writers racing in step fall out of it.
const RACES_BEFORE_BACKOFF: u32 = 4;
const MAX_RACE_BACKOFF: Duration = Duration::from_millis(20);

/// Where and how an [`EtcdStore`] reaches etcd.
#[derive(Debug, Clone)]
pub struct EtcdStoreConfig {
    /// The client URLs of the etcd members (`http://127.0.0.1:2379`). Requests go to one
    /// member at a time and move on to the next when it cannot be reached, so a cluster that
    /// keeps its quorum keeps answering when a member is gone.
    pub endpoints: Vec<String>,
    /// The key prefix of every object (kube-apiserver's `--etcd-prefix`), `/registry` by default.
    pub prefix: String,
    /// The longest any one etcd call may take (connecting included) before it fails with
    /// [`StoreError::Unavailable`].
    pub request_timeout: Duration,
    /// How often the automatic compactor runs (kube-apiserver's `--etcd-compaction-interval`,
    /// 5 minutes by default); each run compacts to the revision the previous run saw.
    /// `Duration::ZERO` turns it off.
    pub compaction_interval: Duration,
    /// The largest object, encoded as JSON, the store accepts; larger writes fail with
    /// [`StoreError::TooLarge`]. etcd's default request limit (1.5 MiB) by default.
    pub max_object_bytes: usize,
}

impl Default for EtcdStoreConfig {
    fn default() -> Self {
        EtcdStoreConfig {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/registry".into(),
            request_timeout: Duration::from_secs(10),
            compaction_interval: Duration::from_secs(300),
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
        }
    }
}

/// A [`Store`] on an etcd v3 cluster. Cheap to clone; clones share the connection and the
/// compactor, which stops when the last clone is dropped (watch streams do not keep it).
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.conn.endpoints)
            .field("prefix", &self.inner.config.prefix)
            .finish()
    }
}

struct Inner {
    conn: Conn,
    config: EtcdStoreConfig,
    compactor: Option<tokio::task::AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(compactor) = &self.compactor {
            compactor.abort();
        }
    }
}

/// An etcd revision (always positive) as a store revision.
fn revision_of(rev: i64) -> u64 {
    u64::try_from(rev).unwrap_or(0)
}

/// A store revision as an etcd revision; revisions etcd cannot have are clamped to its largest.
fn etcd_revision(rev: u64) -> i64 {
    i64::try_from(rev).unwrap_or(i64::MAX)
}

/// The revision in an etcd response's header.
fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<u64> {
    header
        .map(|h| revision_of(h.revision()))
        .filter(|r| *r > 0)
        .ok_or_else(|| StoreError::InvalidObject {
            reason: "etcd answered without a revision".into(),
        })
}

/// The stored object of a key-value, stamped with its revision.
fn versioned(kv: &KeyValue) -> Result<Versioned> {
    let revision = revision_of(kv.mod_revision());
    let mut object = parse(kv.value())?;
    stamp(&mut object, revision)?;
    Ok(Versioned { object, revision })
}

/// The key-value a transaction's `else` branch read (the key's state after a lost race).
fn read_in_else(resp: &etcd_client::TxnResponse) -> Option<KeyValue> {
    resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
        _ => None,
    })
}

impl EtcdStore {
    /// Connects to etcd and checks that it answers (within the request timeout); starts the
    /// compactor when [`EtcdStoreConfig::compaction_interval`] is not zero.
    pub async fn connect(config: EtcdStoreConfig) -> Result<Self> {
        let conn = Conn::new(
            &config.endpoints,
            config.request_timeout,
            Layout::new(&config.prefix),
        )
        .await?;
        let endpoints = conn.endpoints.clone();
        // The client connects lazily: one read proves that etcd answers.
        conn.current_revision()
            .await
            .map_err(|e| StoreError::Unavailable {
                message: format!("etcd at {endpoints} is unreachable: {e}"),
            })?;
        let compactor = (!config.compaction_interval.is_zero())
            .then(|| spawn_compactor(conn.clone(), config.compaction_interval));
        Ok(EtcdStore {
            inner: Arc::new(Inner {
                conn,
                config,
                compactor,
            }),
        })
    }

    fn conn(&self) -> &Conn {
        &self.inner.conn
    }

    /// Checks an object for writing: a JSON object with a `metadata` map, not too large. Its
    /// bytes, to store, are without `metadata.resourceVersion`.
    fn encode(&self, key: &ObjectKey, object: &mut Value) -> Result<Vec<u8>> {
        stamp(object, 0)?;
        unstamp(object);
        let bytes = serde_json::to_vec(&object).map_err(|e| StoreError::InvalidObject {
            reason: e.to_string(),
        })?;
        let limit = self.inner.config.max_object_bytes;
        if bytes.len() > limit {
            return Err(StoreError::TooLarge {
                key: key.clone(),
                size: bytes.len(),
                limit,
            });
        }
        Ok(bytes)
    }

    /// The etcd key of an object. Names and namespaces never contain `/` (the API server
    /// validates them) and names are never empty: such a key could not be told apart from
    /// others, so no object can have it (`None`).
    fn etcd_key(&self, key: &ObjectKey) -> Option<String> {
        if key.name.is_empty() || key.name.contains('/') || key.namespace.contains('/') {
            return None;
        }
        Some(self.conn().layout.key(key))
    }

    /// [`EtcdStore::etcd_key`] for reading or changing an object: an impossible key is one
    /// that is not there.
    fn existing_key(&self, key: &ObjectKey) -> Result<String> {
        self.etcd_key(key)
            .ok_or_else(|| StoreError::NotFound { key: key.clone() })
    }

    /// Update or delete: read, check `pre`, write while the key is unchanged; a lost race reads
    /// again. `bytes` is the new value (`None`: delete). Answers the state read and the
    /// revision of the write.
    async fn guarded_write(
        &self,
        key: &ObjectKey,
        bytes: Option<Vec<u8>>,
        pre: &Preconditions,
    ) -> Result<(Value, u64)> {
        let k = self.existing_key(key)?;
        let size = bytes.as_ref().map_or(0, Vec::len);
        let mut current = self.conn().get_kv(&k).await?;
        for attempt in 0..WRITE_ATTEMPTS {
            if attempt >= RACES_BEFORE_BACKOFF {
                let backoff = Duration::from_millis(u64::from(attempt - RACES_BEFORE_BACKOFF + 1));
                tokio::time::sleep(backoff.min(MAX_RACE_BACKOFF)).await;
            }
            let Some(kv) = current else {
                return Err(StoreError::NotFound { key: key.clone() });
            };
            let old = parse(kv.value())?;
            check(key, pre, revision_of(kv.mod_revision()), &old)?;
            let op = match &bytes {
                Some(b) => TxnOp::put(k.as_str(), b.clone(), None),
                None => TxnOp::delete(k.as_str(), None),
            };
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    k.as_str(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([op])
                .or_else([TxnOp::get(k.as_str(), None)]);
            let resp = self
                .conn()
                .txn(txn, key, size, self.inner.config.max_object_bytes)
                .await?;
            if resp.succeeded() {
                return Ok((old, header_revision(resp.header())?));
            }
            current = read_in_else(&resp);
        }
        Err(StoreError::Conflict {
            key: key.clone(),
            reason: format!("still written concurrently after {WRITE_ATTEMPTS} attempts"),
        })
    }
}

fn spawn_compactor(conn: Conn, interval: Duration) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: it only records the revision to compact to next time.
        let mut seen = 0;
        loop {
            ticker.tick().await;
            if seen > 0
                && let Err(e) = conn.compact(seen).await
            {
                tracing::warn!(revision = seen, error = %e, "etcd compaction failed");
            }
            match conn.current_revision().await {
                Ok(r) => seen = r,
                Err(e) => tracing::warn!(error = %e, "the etcd compactor could not read the revision"),
            }
        }
    })
    .abort_handle()
}

#[async_trait]
impl Store for EtcdStore {
    async fn create(&self, key: &ObjectKey, mut object: Value) -> Result<Versioned> {
        let k = self.etcd_key(key).ok_or_else(|| StoreError::InvalidObject {
            reason: format!("{key} cannot be stored: names are not empty and have no '/'"),
        })?;
        let bytes = self.encode(key, &mut object)?;
        let size = bytes.len();
        let txn = Txn::new()
            .when([Compare::create_revision(k.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k.as_str(), bytes, None)]);
        let resp = self
            .conn()
            .txn(txn, key, size, self.inner.config.max_object_bytes)
            .await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists { key: key.clone() });
        }
        let revision = header_revision(resp.header())?;
        stamp(&mut object, revision)?;
        Ok(Versioned { object, revision })
    }

    async fn get(&self, key: &ObjectKey) -> Result<Versioned> {
        let k = self.existing_key(key)?;
        match self.conn().get_kv(&k).await? {
            Some(kv) => versioned(&kv),
            None => Err(StoreError::NotFound { key: key.clone() }),
        }
    }

    async fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
        options: ListOptions,
    ) -> Result<ListResult> {
        let conn = self.conn();
        let prefix = conn.layout.prefix(resource, namespace);
        let end = prefix_end(prefix.as_bytes());
        let limit = options.limit.filter(|l| *l > 0);
        let mut start: Vec<u8> = match &options.continue_after {
            // The next key after the last one returned.
            Some(after) if after.starts_with(&prefix) => [after.as_bytes(), b"\0"].concat(),
            _ => prefix.clone().into_bytes(),
        };
        // 0: the first request reads the current revision, and the rest that one.
        let mut revision = options.revision.unwrap_or(0);
        let mut items = Vec::new();
        // The etcd key of the last item, where a next page continues.
        let mut last_item = None;
        let mut cut = None;
        loop {
            let wanted = limit.map_or(LIST_BATCH, |l| l.saturating_sub(items.len()));
            // Without a predicate every key counts, so no more than the page is read.
            let batch = if options.predicate.is_some() {
                LIST_BATCH
            } else {
                wanted.clamp(1, LIST_BATCH)
            };
            let mut get = GetOptions::new()
                .with_range(end.clone())
                .with_limit(i64::try_from(batch).unwrap_or(i64::MAX));
            if revision > 0 {
                get = get.with_revision(etcd_revision(revision));
            }
            let from = start.clone();
            let read = conn.raw("a list", Retry::Idempotent, |c| {
                let (from, get) = (from.clone(), get.clone());
                async move { conn::kv(&c).get(from, Some(get)).await }
            });
            let mut resp = match read.await? {
                Ok(resp) => resp,
                Err(e) if is_compacted(&e) => {
                    return Err(StoreError::Expired {
                        requested: revision,
                        compacted: conn.compacted_above(revision).await,
                    });
                }
                Err(e) => return Err(conn.fail("a list", e)),
            };
            if revision == 0 {
                revision = header_revision(resp.header())?;
            }
            let more = resp.more();
            // Keys from `start` to the end of the range at this revision, this batch included.
            let count = revision_of(resp.count());
            let kvs = resp.take_kvs();
            let Some(last) = kvs.last().map(|kv| kv.key().to_vec()) else {
                break;
            };
            let batch_len = kvs.len() as u64;
            let mut rest = kvs.into_iter();
            for kv in rest.by_ref() {
                if conn.layout.parse(resource, namespace, kv.key()).is_none() {
                    continue;
                }
                let v = versioned(&kv)?;
                if let Some(p) = &options.predicate
                    && !p(&v.object)
                {
                    continue;
                }
                items.push(v);
                last_item = Some(kv.key().to_vec());
                if limit.is_some_and(|l| items.len() >= l) {
                    break;
                }
            }
            if limit.is_some_and(|l| items.len() >= l) {
                // The page is full: is there more, and how much (exact unless the range goes
                // on beyond this batch under a predicate)?
                let matching = rest
                    .filter(|kv| {
                        conn.layout.parse(resource, namespace, kv.key()).is_some()
                            && options
                                .predicate
                                .as_ref()
                                .is_none_or(|p| versioned(kv).is_ok_and(|v| p(&v.object)))
                    })
                    .count() as u64;
                // Beyond this batch the keys are only counted: every one of them may match.
                let beyond = if more { count.saturating_sub(batch_len) } else { 0 };
                let remaining = matching + beyond;
                if remaining > 0 {
                    cut = Some(remaining);
                }
                break;
            }
            if !more {
                break;
            }
            start = [last.as_slice(), b"\0"].concat();
        }
        let continue_after = match cut {
            Some(_) => last_item.map(|k| String::from_utf8_lossy(&k).into_owned()),
            None => None,
        };
        Ok(ListResult {
            items,
            revision,
            remaining: continue_after.as_ref().and(cut),
            continue_after,
        })
    }

    async fn update(
        &self,
        key: &ObjectKey,
        mut object: Value,
        preconditions: Preconditions,
    ) -> Result<Versioned> {
        let bytes = self.encode(key, &mut object)?;
        let (_, revision) = self.guarded_write(key, Some(bytes), &preconditions).await?;
        stamp(&mut object, revision)?;
        Ok(Versioned { object, revision })
    }

    async fn delete(&self, key: &ObjectKey, preconditions: Preconditions) -> Result<Versioned> {
        let (mut object, revision) = self.guarded_write(key, None, &preconditions).await?;
        stamp(&mut object, revision)?;
        Ok(Versioned { object, revision })
    }

    async fn watch(
        &self,
        resource: &str,
        namespace: Option<&str>,
        from_revision: u64,
    ) -> Result<WatchStream> {
        watch::open(self.conn().clone(), resource, namespace, from_revision).await
    }

    async fn current_revision(&self) -> Result<u64> {
        self.conn().current_revision().await
    }

    async fn compact(&self, revision: u64) -> Result<()> {
        self.conn().compact(revision).await
    }
}
