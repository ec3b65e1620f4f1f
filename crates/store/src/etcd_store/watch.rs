//! Watch streams on etcd watches: one etcd watch (with previous key-values) per stream, on the
//! resource's key prefix; dropping the stream cancels the etcd watch.

use std::collections::VecDeque;

use etcd_client::{GetOptions, WatchOptions, WatchResponse};
use futures_util::StreamExt;

use super::conn::{Conn, Retry, is_compacted, kv, watcher};
use super::keys::{Layout, prefix_end};
use super::{etcd_revision, header_revision, revision_of};
use crate::object::{parse, stamp};
use crate::{EventType, Result, StoreError, WatchEvent, WatchStream};

/// Opens a watch of `resource` (in `namespace`) for changes after `from` (0: from now).
///
/// Like the redb store, a `from` that is compacted fails here, with [`StoreError::Expired`]: a
/// client that has seen the state at `from` cannot be told what changed since once etcd no
/// longer has that state. (etcd itself would still serve a watch from `from + 1` when exactly
/// `from + 1` is its compaction revision; this store is as strict as the redb one.)
pub(super) async fn open(
    conn: Conn,
    resource: &str,
    namespace: Option<&str>,
    from: u64,
) -> Result<WatchStream> {
    let prefix = conn.layout.prefix(resource, namespace);
    // etcd's start revision is inclusive; 0 is "from now". Revisions beyond etcd's range are
    // clamped to its largest: nothing ever comes from there.
    let start = if from == 0 {
        0
    } else {
        etcd_revision(from.saturating_add(1))
    };
    let options = WatchOptions::new()
        .with_range(prefix_end(prefix.as_bytes()))
        .with_prev_key()
        .with_start_revision(start);
    let mut stream = conn
        .call("a watch", Retry::Idempotent, |c| {
            let (prefix, options) = (prefix.clone(), options.clone());
            async move { watcher(&c).watch(prefix, Some(options)).await }
        })
        .await?;
    let mut state = State {
        layout: conn.layout.clone(),
        resource: resource.to_string(),
        namespace: namespace.map(str::to_string),
        last: from,
        pending: VecDeque::new(),
        failed: None,
        done: false,
        stream: None,
        endpoints: conn.endpoints.clone(),
    };
    // etcd answers a new watch with a `created` response (with the current revision) before
    // any event; anything else is handled as a stream response.
    let first = tokio::time::timeout(conn.timeout, stream.message())
        .await
        .map_err(|_| StoreError::Unavailable {
            message: format!(
                "etcd ({}) did not confirm a watch within {:?}",
                conn.endpoints, conn.timeout
            ),
        })?
        .map_err(|e| conn.fail("a watch", e))?;
    let current = match first {
        Some(resp) if resp.created() && !resp.canceled() => header_revision(resp.header())?,
        Some(resp) => {
            state.take(resp);
            0
        }
        None => {
            return Err(StoreError::Unavailable {
                message: format!("etcd ({}) closed a new watch", conn.endpoints),
            });
        }
    };
    if let Some(StoreError::Expired { requested, compacted }) = state.failed {
        return Err(StoreError::Expired { requested, compacted });
    }
    if from > 0 && from <= current && state.failed.is_none() {
        // Is the state at `from` still there? A range read at that revision says so at once
        // (etcd tells a watch from a compacted revision only some time after creating it).
        let key = conn.probe_key();
        let probe = GetOptions::new()
            .with_count_only()
            .with_revision(etcd_revision(from));
        let answer = conn
            .raw("a revision check", Retry::Idempotent, |c| {
                let (key, probe) = (key.clone(), probe.clone());
                async move { kv(&c).get(key, Some(probe)).await }
            })
            .await?;
        match answer {
            Ok(_) => {}
            Err(e) if is_compacted(&e) => {
                return Err(StoreError::Expired {
                    requested: from,
                    compacted: conn.compacted_above(from).await,
                });
            }
            Err(e) => return Err(conn.fail("a revision check", e)),
        }
    }
    state.stream = Some(stream);
    Ok(futures_util::stream::unfold(state, State::next).boxed())
}

/// One watch stream's state: events of the last etcd response not yet delivered, then the
/// error that ends the stream, if any.
struct State {
    layout: Layout,
    resource: String,
    namespace: Option<String>,
    /// The last revision delivered (or asked to start after).
    last: u64,
    pending: VecDeque<WatchEvent>,
    /// Delivered after `pending`, then the stream ends.
    failed: Option<StoreError>,
    done: bool,
    stream: Option<etcd_client::WatchStream>,
    endpoints: std::sync::Arc<str>,
}

impl State {
    async fn next(mut self) -> Option<(Result<WatchEvent>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last = event.revision;
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            if let Some(e) = self.failed.take() {
                self.done = true;
                // Cancels the etcd watch now rather than when the stream is dropped.
                self.stream = None;
                return Some((Err(e), self));
            }
            let Some(stream) = self.stream.as_mut() else {
                self.done = true;
                continue;
            };
            match stream.message().await {
                Ok(Some(resp)) => self.take(resp),
                Ok(None) => {
                    self.failed = Some(StoreError::Unavailable {
                        message: format!("etcd ({}) ended the watch stream", self.endpoints),
                    });
                }
                Err(e) => {
                    self.failed = Some(StoreError::Unavailable {
                        message: format!("the etcd watch stream ({}) broke: {e}", self.endpoints),
                    });
                }
            }
        }
    }

    /// Takes one etcd watch response: its events into `pending`, a cancellation into `failed`.
    fn take(&mut self, resp: WatchResponse) {
        if self.failed.is_some() {
            return;
        }
        if resp.compact_revision() > 0 {
            // The watcher fell behind compaction (or started before it).
            self.failed = Some(StoreError::Expired {
                requested: self.pending.back().map_or(self.last, |e| e.revision),
                compacted: revision_of(resp.compact_revision()),
            });
            return;
        }
        if resp.canceled() {
            self.failed = Some(StoreError::Unavailable {
                message: format!(
                    "etcd ({}) canceled the watch: {}",
                    self.endpoints,
                    resp.cancel_reason()
                ),
            });
            return;
        }
        for event in resp.events() {
            match self.convert(event) {
                Ok(Some(e)) => self.pending.push_back(e),
                Ok(None) => {}
                Err(e) => {
                    self.failed = Some(e);
                    return;
                }
            }
        }
    }

    /// An etcd event as a watch event; `None` for keys outside the watched resource and
    /// namespace, and revisions not after the start.
    fn convert(&self, event: &etcd_client::Event) -> Result<Option<WatchEvent>> {
        let Some(kv) = event.kv() else {
            return Ok(None);
        };
        let Some(key) = self
            .layout
            .parse(&self.resource, self.namespace.as_deref(), kv.key())
        else {
            return Ok(None);
        };
        let revision = revision_of(kv.mod_revision());
        if revision <= self.pending.back().map_or(self.last, |e| e.revision) {
            return Ok(None);
        }
        let (kind, object, prev_object) = match event.event_type() {
            etcd_client::EventType::Put => {
                let mut object = parse(kv.value())?;
                stamp(&mut object, revision)?;
                if kv.create_revision() == kv.mod_revision() {
                    (EventType::Added, object, None)
                } else {
                    let prev = match event.prev_kv() {
                        Some(p) => {
                            let mut prev = parse(p.value())?;
                            stamp(&mut prev, revision_of(p.mod_revision()))?;
                            Some(prev)
                        }
                        None => None,
                    };
                    (EventType::Modified, object, prev)
                }
            }
            etcd_client::EventType::Delete => {
                // A deletion carries the object's last state; etcd drops it only when that
                // state is compacted, and then the deletion cannot be told in full.
                let Some(prev) = event.prev_kv() else {
                    return Err(StoreError::Expired {
                        requested: self.last,
                        compacted: revision.saturating_sub(1),
                    });
                };
                let mut object = parse(prev.value())?;
                stamp(&mut object, revision)?;
                (EventType::Deleted, object, None)
            }
        };
        Ok(Some(WatchEvent {
            kind,
            key,
            object,
            revision,
            prev_object,
        }))
    }
}
