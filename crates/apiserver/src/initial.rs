//! Initial watch events shared by the watches that start from the same state: 500 watches of a
//! large list opened at once cost one encoded copy of it, not 500 (each watch holds a reference
//! until it ends). The list lives as long as a watch holds it: the last watch to end frees it
//! (a node that once served watches of a 10 MiB list does not keep that list afterwards).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

/// The encoded ADDED events of one list, and the revision it reflects.
pub(crate) type Lines = (Arc<Vec<Bytes>>, u64);

/// One list: the events while some watch holds them, and their revision. Locked while the list
/// is built, so the watches that ask meanwhile wait for it instead of building their own.
type Slot = Arc<tokio::sync::Mutex<(Weak<Vec<Bytes>>, u64)>>;

/// One list by what was asked and the store revision it was asked at.
type Entries = HashMap<(String, u64), Slot>;

/// Entries for the latest revision seen only: older ones are dropped whenever a newer revision
/// is asked for, and lists no watch holds any more whenever any list is asked for.
#[derive(Default)]
pub(crate) struct InitialLists {
    entries: Mutex<Entries>,
}

impl InitialLists {
    /// The initial events for `key` (resource, namespace, selectors, rendering) at store
    /// revision `current`: built once by `build` however many watches ask while one holds it.
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
        let slot = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries.retain(|(_, revision), slot| *revision >= current && in_use(slot));
            entries.entry((key, current)).or_default().clone()
        };
        let mut held = slot.lock().await;
        if let Some(lines) = held.0.upgrade() {
            return Ok((lines, held.1));
        }
        let (lines, revision) = build().await?;
        *held = (Arc::downgrade(&lines), revision);
        Ok((lines, revision))
    }
}

/// Whether a list is being built or some watch still holds it.
fn in_use(slot: &Slot) -> bool {
    slot.try_lock().map_or(true, |held| held.0.strong_count() > 0)
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

    #[tokio::test]
    async fn a_list_is_shared_while_a_watch_holds_it_and_freed_when_none_does() {
        let lists = InitialLists::default();
        let big = || async { Ok::<_, ()>((Arc::new(vec![Bytes::from(vec![b'x'; 1 << 20])]), 3)) };
        let (first, _) = lists.get_or_build("maps".into(), 3, big).await.unwrap();
        let unused = || async { Err::<Lines, _>("a held list is not built again") };
        let (second, rev) = lists.get_or_build("maps".into(), 3, unused).await.unwrap();
        assert!(Arc::ptr_eq(&first, &second), "a later watch shares the held list");
        assert_eq!(rev, 3);
        let freed = Arc::downgrade(&first);
        drop((first, second));
        assert!(
            freed.upgrade().is_none(),
            "no watch holds the list: its memory is freed"
        );
        let (third, _) = lists.get_or_build("maps".into(), 3, big).await.unwrap();
        assert_eq!(third.len(), 1, "built again when asked again");
        drop(third);
        lists
            .get_or_build("pods".into(), 3, || async {
                Ok::<_, ()>((Arc::new(Vec::new()), 3))
            })
            .await
            .unwrap();
        assert_eq!(
            lists.entries.lock().unwrap().len(),
            1,
            "entries of lists no watch holds go"
        );
    }
}
