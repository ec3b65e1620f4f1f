//! Versioned object storage for the podvisor API server.
//!
//! **What it is.** The [`Store`] trait: Kubernetes objects as JSON, keyed by
//! (group/resource, namespace, name), every write stamped with the store's global, monotonic
//! revision, which is also the object's `metadata.resourceVersion`. Reads ([`Store::get`],
//! [`Store::list`] with limit/continue), writes with preconditions ([`Store::create`],
//! [`Store::update`], [`Store::delete`]), [`Store::watch`] from a revision (history replay, then
//! live events) and [`Store::compact`]. The trait mirrors etcd's model (revision = etcd
//! `mod_revision`, watch from a revision, compaction answered with [`StoreError::Expired`], i.e.
//! HTTP 410 Gone), and has two backends that callers cannot tell apart but for the points below.
//!
//! **[`RedbStore`]**, the default: one [redb](https://docs.rs/redb) file in the data directory,
//! for one API server. redb was chosen over SQLite because it is pure Rust (no C compiler step:
//! the workspace builds on two cores), it is ACID with copy-on-write B-trees and checksummed
//! commits, and with `Durability::Immediate` (its default, used here) every commit is fsynced
//! before it returns, so every acknowledged write survives a crash. SQL is not needed: the
//! access patterns are prefix scans over keys and a revision-ordered history table. It keeps
//! only the latest version of each object plus a bounded change history (for watch), not full
//! MVCC: a `list` with a continue token reads the current state, not a snapshot at the first
//! page's revision ([`ListOptions::revision`] is ignored).
//!
//! **[`EtcdStore`]**: an etcd v3 cluster, which several API servers can share. Keys are laid
//! out like kube-apiserver's (`/registry/pods/default/web`); see [`etcd_store`]. etcd keeps
//! every revision until compaction, so a `list` continued with [`ListOptions::revision`] reads
//! every page at the first page's revision: one consistent snapshot (or
//! [`StoreError::Expired`] once that revision is compacted). It needs a running etcd; it does
//! not start one.
//!
//! **What it is not.** It knows nothing of kinds, validation, defaulting, selectors' syntax or
//! HTTP: callers pass a predicate to [`Store::list`] and interpret objects themselves.
//!
//! **Where to start.** [`RedbStore::open`] or [`EtcdStore::connect`], then the [`Store`]
//! methods; [`key::ObjectKey`] names an object.
//!
//! **Cancel safety.** Every write runs to completion once started (on a blocking thread for
//! redb, in etcd for etcd): dropping the future of a write may or may not leave the write
//! applied, but never half-applied. Watch streams can be dropped at any time.
#![forbid(unsafe_code)]

pub mod error;
pub mod etcd_store;
pub mod key;
mod object;
pub mod redb_store;

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures_core::Stream;
use serde_json::Value;

pub use error::{Result, StoreError};
pub use etcd_store::{EtcdStore, EtcdStoreConfig};
pub use key::ObjectKey;
pub use redb_store::{Closed, DEFAULT_MAX_OBJECT_BYTES, RedbStore, RedbStoreConfig};

/// A stored object and the revision at which it was last written.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// The object, with `metadata.resourceVersion` set to [`Versioned::revision`].
    pub object: Value,
    /// The store revision of the write that produced this version.
    pub revision: u64,
}

/// A predicate on objects, applied by [`Store::list`] before `limit` counts them.
pub type Predicate = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// Options of [`Store::list`].
#[derive(Clone, Default)]
pub struct ListOptions {
    /// Only objects matching this predicate are returned (and counted against `limit`).
    pub predicate: Option<Predicate>,
    /// At most this many objects; `None` or `Some(0)` means no limit.
    pub limit: Option<usize>,
    /// Continue after this key (the [`ListResult::continue_after`] of a previous page).
    pub continue_after: Option<String>,
    /// Read the list at this store revision (the first page's [`ListResult::revision`], which
    /// continue tokens carry), so that every page comes from one snapshot; `None`: the current
    /// revision. [`EtcdStore`] honours it ([`StoreError::Expired`] once it is compacted);
    /// [`RedbStore`] keeps no old versions and ignores it: it reads the current state.
    pub revision: Option<u64>,
}

impl std::fmt::Debug for ListOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListOptions")
            .field("predicate", &self.predicate.is_some())
            .field("limit", &self.limit)
            .field("continue_after", &self.continue_after)
            .field("revision", &self.revision)
            .finish()
    }
}

/// The answer of [`Store::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct ListResult {
    /// The matching objects, ordered by key.
    pub items: Vec<Versioned>,
    /// The store revision this list reflects (its `metadata.resourceVersion`).
    pub revision: u64,
    /// When `limit` cut the list short: the opaque position to continue after.
    pub continue_after: Option<String>,
    /// When cut short: how many further objects match (an estimate is allowed).
    pub remaining: Option<u64>,
}

/// Preconditions of [`Store::update`] and [`Store::delete`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// The object's current revision must be exactly this.
    pub resource_version: Option<u64>,
    /// The object's `metadata.uid` must be exactly this.
    pub uid: Option<String>,
}

/// What happened to an object, as seen by [`Store::watch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object was updated.
    Modified,
    /// The object was deleted; the event carries its last state.
    Deleted,
}

impl EventType {
    /// The Kubernetes watch event type (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, in revision order.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// What happened.
    pub kind: EventType,
    /// The object's key.
    pub key: ObjectKey,
    /// The object after the change (for `Deleted`: its last state), with
    /// `metadata.resourceVersion` set to `revision`.
    pub object: Value,
    /// The revision of this change.
    pub revision: u64,
    /// For `Modified`: the object before this change, when the store still has it (always for
    /// live events; for replayed history while the previous version is not compacted). A
    /// selector watch needs it to tell an object that stopped matching (DELETED) or started
    /// matching (ADDED) from one that changed (MODIFIED).
    pub prev_object: Option<Value>,
}

/// A stream of watch events; it ends with an error (e.g. [`StoreError::Expired`] when the
/// watcher fell behind compaction) or when the store is closed.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// Versioned, watchable object storage.
///
/// `resource` is `"<group>/<resource>"` for grouped APIs and `"<resource>"` for the core group
/// (`"pods"`, `"discovery.k8s.io/endpointslices"`); `namespace` is `""` for cluster-scoped
/// objects. Objects are JSON objects with a `metadata` map; the store owns
/// `metadata.resourceVersion` and overwrites it on every write.
///
/// ```
/// # async fn demo() -> Result<(), podvisor_store::StoreError> {
/// use podvisor_store::{ObjectKey, RedbStore, Store};
/// let dir = tempfile::tempdir().unwrap();
/// let store = RedbStore::open(dir.path().join("store.redb"))?;
/// let key = ObjectKey::new("pods", "default", "web");
/// let created = store.create(&key, serde_json::json!({"metadata": {"name": "web"}})).await?;
/// let got = store.get(&key).await?;
/// assert_eq!(got.revision, created.revision);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
/// ```
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates an object; [`StoreError::AlreadyExists`] if the key is taken.
    async fn create(&self, key: &ObjectKey, object: Value) -> Result<Versioned>;

    /// Reads an object; [`StoreError::NotFound`] if absent.
    async fn get(&self, key: &ObjectKey) -> Result<Versioned>;

    /// Lists objects of a resource, in one namespace or (with `None`) all of them.
    async fn list(&self, resource: &str, namespace: Option<&str>, options: ListOptions)
    -> Result<ListResult>;

    /// Replaces an existing object; [`StoreError::Conflict`] if a precondition fails,
    /// [`StoreError::NotFound`] if absent.
    async fn update(&self, key: &ObjectKey, object: Value, preconditions: Preconditions)
    -> Result<Versioned>;

    /// Deletes an object and returns its last state, stamped with the deletion's revision.
    async fn delete(&self, key: &ObjectKey, preconditions: Preconditions) -> Result<Versioned>;

    /// Watches a resource (in one namespace or all) for changes after `from_revision`.
    ///
    /// History after `from_revision` is replayed first, then live changes follow. With
    /// `from_revision == 0` only changes after the current revision are sent. A revision older
    /// than the retained history fails with [`StoreError::Expired`].
    async fn watch(&self, resource: &str, namespace: Option<&str>, from_revision: u64)
    -> Result<WatchStream>;

    /// The store's current revision.
    async fn current_revision(&self) -> Result<u64>;

    /// A revision up to which every change has been handed to the live watch streams: a
    /// stream of this store that has nothing ready has delivered every change of its resource
    /// up to it (read before that stream is polled). What a watch's bookmarks can carry past
    /// its resource's own last change, as kube-apiserver's do, so that a client resuming a
    /// watch of a resource that rarely changes is not replayed the whole history since. `None`
    /// where the store cannot say (the default; etcd's watches are etcd's own).
    fn published_revision(&self) -> Option<u64> {
        None
    }

    /// Drops change history at and before `revision`; later watches from there fail with
    /// [`StoreError::Expired`].
    async fn compact(&self, revision: u64) -> Result<()>;
}
