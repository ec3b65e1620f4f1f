//! Initial watch events shared by the watches that start from the same state: 500 watches of a
//! large list opened at once cost one encoded copy of it, not 500 (each watch holds a reference
//! until it ends). The list lives as long as a watch holds it: the last watch to end frees it
//! (a node that once served watches of a 10 MiB list does not keep that list afterwards).
//!
//! Live events likewise ([`EventLines`]): a change fanned out to 1,000 watches is encoded once.

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

/// How many encoded live events [`EventLines`] keeps.
const KEPT_EVENTS: usize = 64;

/// Live watch events encoded once: the watches of one resource with one rendering get the same
/// bytes for a change, so a change fanned out to 1,000 watches is encoded once, not 1,000
/// times. The revision and the object's namespace and name name the change, the event type (a
/// selector may turn MODIFIED into ADDED or DELETED) and the rendering the line. The last
/// [`KEPT_EVENTS`] lines are kept: a fan-out renders each change within moments.
#[derive(Default)]
pub(crate) struct EventLines {
    recent: Mutex<std::collections::VecDeque<EventLine>>,
}

/// One encoded event and what names it.
struct EventLine {
    revision: u64,
    namespace: String,
    name: String,
    kind: &'static str,
    rendering: Arc<str>,
    line: Bytes,
}

/// The namespace and name of an event's object.
fn object_key(object: &serde_json::Value) -> (&str, &str) {
    let field = |f: &str| {
        object
            .pointer(f)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
    };
    (field("/metadata/namespace"), field("/metadata/name"))
}

impl EventLines {
    /// The line for the event of `revision` and `kind` about `object`, rendered as
    /// `rendering`; `render` makes it when no watch has yet. A hit allocates nothing.
    pub(crate) fn get_or_render(
        &self,
        revision: u64,
        kind: &'static str,
        rendering: &Arc<str>,
        object: serde_json::Value,
        render: impl FnOnce(serde_json::Value) -> Bytes,
    ) -> Bytes {
        let (namespace, name) = object_key(&object);
        let found = {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent
                .iter()
                .rev()
                .find(|e| {
                    e.revision == revision
                        && e.kind == kind
                        && e.name == name
                        && e.namespace == namespace
                        && e.rendering == *rendering
                })
                .map(|e| e.line.clone())
        };
        if let Some(line) = found {
            return line;
        }
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        let line = render(object);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.push_back(EventLine {
            revision,
            namespace,
            name,
            kind,
            rendering: rendering.clone(),
            line: line.clone(),
        });
        while recent.len() > KEPT_EVENTS {
            recent.pop_front();
        }
        line
    }
}

#[cfg(test)]
mod event_lines_tests {
    use super::*;

    fn pod(name: &str) -> serde_json::Value {
        serde_json::json!({"metadata": {"namespace": "default", "name": name}})
    }

    #[test]
    fn a_change_is_rendered_once_per_rendering_and_kind() {
        let lines = EventLines::default();
        let json: Arc<str> = Arc::from("pods\0false");
        let table: Arc<str> = Arc::from("pods\0true");
        let renders = std::cell::Cell::new(0);
        let render = |text: &'static str| {
            renders.set(renders.get() + 1);
            Bytes::from_static(text.as_bytes())
        };
        for _ in 0..3 {
            assert_eq!(
                lines.get_or_render(7, "MODIFIED", &json, pod("a"), |_| render("a")),
                "a"
            );
        }
        assert_eq!(
            lines.get_or_render(7, "MODIFIED", &table, pod("a"), |_| render("b")),
            "b"
        );
        assert_eq!(
            lines.get_or_render(7, "DELETED", &json, pod("a"), |_| render("c")),
            "c"
        );
        assert_eq!(
            lines.get_or_render(8, "MODIFIED", &json, pod("a"), |_| render("d")),
            "d"
        );
        assert_eq!(
            lines.get_or_render(8, "MODIFIED", &json, pod("b"), |_| render("g")),
            "g"
        );
        assert_eq!(renders.get(), 5);
        // Only the newest are kept.
        for revision in 100..100 + KEPT_EVENTS as u64 {
            lines.get_or_render(revision, "ADDED", &json, pod("a"), |_| render("e"));
        }
        assert_eq!(
            lines.get_or_render(7, "MODIFIED", &json, pod("a"), |_| render("f")),
            "f"
        );
    }
}
