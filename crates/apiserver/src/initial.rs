//! Initial watch events shared by the watches that start from the same state: 500 watches of a
//! large list opened at once cost one encoded copy of it, not 500 (each watch holds a reference
//! until its client has taken the events).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::OnceCell;

/// The encoded ADDED events of one list, and the revision it reflects.
pub(crate) type Lines = (Arc<Vec<Bytes>>, u64);

/// One list being built or built: by what was asked and the store revision it was asked at.
type Entries = HashMap<(String, u64), Arc<OnceCell<Lines>>>;

/// Entries for the latest revision seen only: older ones are dropped whenever a newer revision
/// is asked for.
#[derive(Default)]
pub(crate) struct InitialLists {
    entries: Mutex<Entries>,
}

impl InitialLists {
    /// The initial events for `key` (resource, namespace, selectors, rendering) at store
    /// revision `current`: built once by `build` however many watches ask at the same time.
    pub(crate) async fn get_or_build<E, F, Fut>(
        &self,
        key: String,
        current: u64,
        build: F,
    ) -> Result<Lines, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Lines, E>>,
    {
        let cell = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries.retain(|(_, revision), _| *revision >= current);
            entries.entry((key, current)).or_default().clone()
        };
        cell.get_or_try_init(build).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_watches_share_one_list_and_a_new_revision_builds_afresh() {
        let lists = Arc::new(InitialLists::default());
        let builds = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (lists, builds) = (lists.clone(), builds.clone());
            tasks.push(tokio::spawn(async move {
                lists
                    .get_or_build("pods".into(), 7, || async move {
                        builds.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, ()>((Arc::new(vec![Bytes::from_static(b"x")]), 7))
                    })
                    .await
                    .unwrap()
            }));
        }
        let mut first: Option<Arc<Vec<Bytes>>> = None;
        for t in tasks {
            let (lines, rev) = t.await.unwrap();
            assert_eq!(rev, 7);
            if let Some(f) = &first {
                assert!(Arc::ptr_eq(f, &lines), "one shared copy");
            }
            first = Some(lines);
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        let (_, rev) = lists
            .get_or_build("pods".into(), 8, || async {
                Ok::<_, ()>((Arc::new(Vec::new()), 8))
            })
            .await
            .unwrap();
        assert_eq!(rev, 8);
        assert_eq!(
            lists.entries.lock().unwrap().len(),
            1,
            "the older revision was dropped"
        );
    }
}
