//! Errors of the store, shared by every backend.

use crate::ObjectKey;

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed.
///
/// The first six variants are expected outcomes that an API server maps to HTTP status codes
/// (404, 409, 409, 410, 400, 413); [`StoreError::Unavailable`] is a backend that did not answer
/// in time (503: worth retrying); [`StoreError::Backend`] is everything else.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("object {key} not found")]
    NotFound {
        /// The key looked up.
        key: ObjectKey,
    },
    /// `create` found the key taken.
    #[error("object {key} already exists")]
    AlreadyExists {
        /// The key written.
        key: ObjectKey,
    },
    /// A precondition (resourceVersion or uid) did not hold.
    #[error("conflict on {key}: {reason}")]
    Conflict {
        /// The key written.
        key: ObjectKey,
        /// What did not match, e.g. `resourceVersion 5 expected, 7 stored`.
        reason: String,
    },
    /// The requested revision is older than the retained history.
    #[error("revision {requested} is compacted (oldest retained: {compacted})")]
    Expired {
        /// The revision asked for.
        requested: u64,
        /// History at or below this revision is gone.
        compacted: u64,
    },
    /// The object is not a JSON object with a `metadata` map, or a stored value is corrupt.
    #[error("invalid object: {reason}")]
    InvalidObject {
        /// What is wrong with it.
        reason: String,
    },
    /// The object, encoded, is larger than the store keeps (etcd's `--max-request-bytes`,
    /// 1.5 MiB by default); nothing was written.
    #[error("object {key} is too large: {size} bytes, the limit is {limit}")]
    TooLarge {
        /// The key written.
        key: ObjectKey,
        /// The encoded object's size in bytes.
        size: usize,
        /// The largest encoded object the store accepts.
        limit: usize,
    },
    /// The backend did not answer within its request timeout, or cannot be reached (an etcd
    /// cluster without a quorum, a broken connection); nothing is known of the outcome of a write.
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What did not answer, and for how long.
        message: String,
    },
    /// The backend failed (I/O, database, task join).
    #[error("store backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(e))
    }

    /// Whether opening failed because another holder has the database file open (and locked).
    pub fn is_locked(&self) -> bool {
        matches!(self, StoreError::Backend(e)
            if matches!(e.downcast_ref::<redb::Error>(), Some(redb::Error::DatabaseAlreadyOpen)))
    }
}
