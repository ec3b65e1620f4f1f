//! Behaviour of the stores through the `Store` trait: CRUD, preconditions, revisions, watch,
//! compaction and concurrency on both backends (each test runs once on a redb file and once
//! on a real etcd, in the modules `redb` and `etcd`); reopening and crash safety on redb.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use podvisor_store::{
    EtcdStore, EtcdStoreConfig, EventType, ListOptions, ObjectKey, Preconditions, RedbStore, RedbStoreConfig,
    Store, StoreError,
};
use podvisor_test_support::etcd::EtcdCluster;
use serde_json::{Value, json};

fn pod(name: &str, label: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "uid": format!("uid-{name}"), "labels": {"app": label}}})
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("pods", "default", name)
}

fn open(dir: &tempfile::TempDir) -> RedbStore {
    RedbStore::open(dir.path().join("store.redb")).expect("open store")
}

/// Which store a behaviour test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Redb,
    Etcd,
}

/// A store of one backend and what it lives in (a temporary directory, an etcd cluster).
struct Fixture {
    store: Arc<dyn Store>,
    _redb_dir: Option<tempfile::TempDir>,
    _etcd: Option<EtcdCluster>,
}

/// A fresh store: a new redb file, or a new one-member etcd (no automatic compaction).
async fn fresh(backend: Backend) -> Fixture {
    fresh_with(backend, podvisor_store::DEFAULT_MAX_OBJECT_BYTES).await
}

async fn fresh_with(backend: Backend, max_object_bytes: usize) -> Fixture {
    match backend {
        Backend::Redb => {
            let dir = tempfile::tempdir().unwrap();
            let config = RedbStoreConfig {
                max_object_bytes,
                ..Default::default()
            };
            let store = RedbStore::open_with(dir.path().join("store.redb"), config).expect("open store");
            Fixture {
                store: Arc::new(store),
                _redb_dir: Some(dir),
                _etcd: None,
            }
        }
        Backend::Etcd => {
            let cluster = EtcdCluster::start(1).await;
            let config = EtcdStoreConfig {
                endpoints: cluster.client_urls(),
                request_timeout: Duration::from_secs(5),
                compaction_interval: Duration::ZERO,
                max_object_bytes,
                ..Default::default()
            };
            let store = EtcdStore::connect(config).await.expect("connect to etcd");
            Fixture {
                store: Arc::new(store),
                _redb_dir: None,
                _etcd: Some(cluster),
            }
        }
    }
}

/// One `#[tokio::test]` per backend for each behaviour test `name(backend)`: `redb::name`
/// and `etcd::name`.
macro_rules! on_both_backends {
    ($( #[$attr:meta] $name:ident ),* $(,)?) => {
        mod redb {
            $( #[$attr] async fn $name() { super::$name(super::Backend::Redb).await } )*
        }
        mod etcd {
            $( #[$attr] async fn $name() { super::$name(super::Backend::Etcd).await } )*
        }
    };
}

on_both_backends!(
    #[tokio::test]
    crud_and_resource_versions,
    #[tokio::test]
    stale_resource_version_and_uid_conflict,
    #[tokio::test]
    list_filters_pages_and_reports_revision,
    #[tokio::test]
    watch_replays_history_then_streams_live,
    #[tokio::test]
    watch_from_compacted_revision_is_expired,
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    concurrent_writers_lose_no_update,
    #[tokio::test]
    a_watch_from_the_last_possible_revision_waits_without_panicking,
    #[tokio::test]
    objects_larger_than_the_limit_are_refused_and_nothing_is_written,
    #[tokio::test]
    modifications_carry_their_previous_version_live_and_replayed,
    #[tokio::test]
    stored_resource_versions_are_not_trusted,
    #[tokio::test]
    list_applies_the_predicate_before_the_limit,
);

async fn crud_and_resource_versions(backend: Backend) {
    let f = fresh(backend).await;
    let store = &f.store;
    let a = store.create(&key("a"), pod("a", "x")).await.unwrap();
    assert_eq!(a.object["metadata"]["resourceVersion"], a.revision.to_string());
    assert!(matches!(
        store.create(&key("a"), pod("a", "x")).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let got = store.get(&key("a")).await.unwrap();
    assert_eq!(got, a);
    let b = store
        .update(&key("a"), pod("a", "y"), Preconditions::default())
        .await
        .unwrap();
    assert!(b.revision > a.revision);
    assert_eq!(
        store.get(&key("a")).await.unwrap().object["metadata"]["labels"]["app"],
        "y"
    );
    let deleted = store.delete(&key("a"), Preconditions::default()).await.unwrap();
    assert!(deleted.revision > b.revision);
    assert!(matches!(
        store.get(&key("a")).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .update(&key("a"), pod("a", "z"), Preconditions::default())
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete(&key("a"), Preconditions::default()).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn stale_resource_version_and_uid_conflict(backend: Backend) {
    let f = fresh(backend).await;
    let store = &f.store;
    let a = store.create(&key("a"), pod("a", "x")).await.unwrap();
    store
        .update(
            &key("a"),
            pod("a", "y"),
            Preconditions {
                resource_version: Some(a.revision),
                uid: None,
            },
        )
        .await
        .unwrap();
    let stale = store
        .update(
            &key("a"),
            pod("a", "z"),
            Preconditions {
                resource_version: Some(a.revision),
                uid: None,
            },
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })), "{stale:?}");
    let wrong_uid = store
        .delete(
            &key("a"),
            Preconditions {
                resource_version: None,
                uid: Some("other".into()),
            },
        )
        .await;
    assert!(matches!(wrong_uid, Err(StoreError::Conflict { .. })));
    store.get(&key("a")).await.unwrap();
}

async fn list_filters_pages_and_reports_revision(backend: Backend) {
    let f = fresh(backend).await;
    let store = &f.store;
    for i in 0..5 {
        store
            .create(&key(&format!("p{i}")), pod(&format!("p{i}"), "x"))
            .await
            .unwrap();
    }
    store
        .create(&ObjectKey::new("pods", "other", "q"), pod("q", "x"))
        .await
        .unwrap();
    store
        .create(&ObjectKey::new("services", "default", "s"), pod("s", "x"))
        .await
        .unwrap();
    let all = store.list("pods", None, ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), 6);
    assert_eq!(all.revision, store.current_revision().await.unwrap());
    let ns = store
        .list("pods", Some("default"), ListOptions::default())
        .await
        .unwrap();
    assert_eq!(ns.items.len(), 5);
    let mut names = Vec::new();
    let mut options = ListOptions {
        limit: Some(2),
        ..Default::default()
    };
    loop {
        let page = store
            .list("pods", Some("default"), options.clone())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        names.extend(page.items.iter().map(|v| v.object["metadata"]["name"].clone()));
        match page.continue_after {
            Some(c) => options.continue_after = Some(c),
            None => break,
        }
    }
    assert_eq!(names, vec!["p0", "p1", "p2", "p3", "p4"]);
    let only_p3 = ListOptions {
        predicate: Some(std::sync::Arc::new(|v: &Value| v["metadata"]["name"] == "p3")),
        ..Default::default()
    };
    let filtered = store.list("pods", None, only_p3).await.unwrap();
    assert_eq!(filtered.items.len(), 1);
}

#[tokio::test]
async fn revisions_stay_monotonic_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let last = {
        let store = open(&dir);
        store.create(&key("a"), pod("a", "x")).await.unwrap();
        store.create(&key("b"), pod("b", "x")).await.unwrap().revision
    };
    let store = open(&dir);
    assert_eq!(store.current_revision().await.unwrap(), last);
    let c = store.create(&key("c"), pod("c", "x")).await.unwrap();
    assert!(c.revision > last);
    assert_eq!(store.get(&key("b")).await.unwrap().revision, last);
}

async fn watch_replays_history_then_streams_live(backend: Backend) {
    let f = fresh(backend).await;
    let store = &f.store;
    store
        .create(&ObjectKey::new("services", "default", "s0"), pod("s0", "x"))
        .await
        .unwrap();
    let a = store.create(&key("a"), pod("a", "x")).await.unwrap();
    store
        .update(&key("a"), pod("a", "y"), Preconditions::default())
        .await
        .unwrap();
    store
        .create(&ObjectKey::new("services", "default", "s"), pod("s", "x"))
        .await
        .unwrap();
    let mut watch = store
        .watch("pods", Some("default"), a.revision - 1)
        .await
        .unwrap();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!((first.kind, first.revision), (EventType::Added, a.revision));
    let second = watch.next().await.unwrap().unwrap();
    assert_eq!(second.kind, EventType::Modified);
    store.delete(&key("a"), Preconditions::default()).await.unwrap();
    let third = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("live event in time")
        .unwrap()
        .unwrap();
    assert_eq!(third.kind, EventType::Deleted);
    assert_eq!(
        third.object["metadata"]["resourceVersion"],
        third.revision.to_string()
    );

    // From 0: only what happens next.
    let mut live = store.watch("pods", None, 0).await.unwrap();
    let b = store.create(&key("b"), pod("b", "x")).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), live.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.revision, b.revision);
}

async fn watch_from_compacted_revision_is_expired(backend: Backend) {
    let f = fresh(backend).await;
    let store = &f.store;
    let a = store.create(&key("a"), pod("a", "x")).await.unwrap();
    let b = store.create(&key("b"), pod("b", "x")).await.unwrap();
    store.compact(b.revision).await.unwrap();
    let expired = store.watch("pods", None, a.revision).await;
    assert!(
        matches!(expired, Err(StoreError::Expired { .. })),
        "{:?}",
        expired.err()
    );
    // Watching from the compaction horizon still works.
    let mut ok = store.watch("pods", None, b.revision).await.unwrap();
    let c = store.create(&key("c"), pod("c", "x")).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), ok.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.unwrap().revision, c.revision);
}

async fn concurrent_writers_lose_no_update(backend: Backend) {
    let f = fresh(backend).await;
    let store = &f.store;
    store
        .create(&key("counter"), json!({"metadata": {"name": "counter"}, "n": 0}))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                loop {
                    let cur = store.get(&key("counter")).await.unwrap();
                    let mut next = cur.object.clone();
                    next["n"] = json!(next["n"].as_u64().unwrap() + 1);
                    let pre = Preconditions {
                        resource_version: Some(cur.revision),
                        uid: None,
                    };
                    match store.update(&key("counter"), next, pre).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.get(&key("counter")).await.unwrap().object["n"], 40);
}

const CRASH_ENV: &str = "PODVISOR_STORE_CRASH_DIR";

/// The child side of [`reopen_after_crash_loses_nothing_acknowledged`]: creates objects as fast
/// as it can and reports each acknowledged write, until it is killed.
fn crash_child(dir: &str) -> ! {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = RedbStore::open(std::path::Path::new(dir).join("store.redb")).unwrap();
        for i in 0.. {
            let v = store
                .create(&key(&format!("p{i}")), pod(&format!("p{i}"), "x"))
                .await
                .unwrap();
            println!("ACK {} {}", i, v.revision);
        }
    });
    unreachable!("the child writes until it is killed")
}

/// A store process killed with SIGKILL in the middle of its writes (the test binary runs
/// itself as the writer) loses no write it acknowledged, and revisions go on after it.
#[test]
fn reopen_after_crash_loses_nothing_acknowledged() {
    use std::io::BufRead;
    if let Ok(dir) = std::env::var(CRASH_ENV) {
        crash_child(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "reopen_after_crash_loses_nothing_acknowledged",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acks: Vec<(u32, u64)> = Vec::new();
    let mut lines = std::io::BufReader::new(stdout).lines();
    // Kill it while it is writing: after 50 acknowledged writes, with more on the way.
    while acks.len() < 50 {
        let line = lines.next().expect("the child writes until killed").unwrap();
        if let Some((i, r)) = line.split("ACK ").nth(1).and_then(|l| l.split_once(' ')) {
            acks.push((i.parse().unwrap(), r.parse().unwrap()));
        }
    }
    child.kill().unwrap();
    // Acknowledgements already in the pipe count too.
    for line in lines.map_while(Result::ok) {
        if let Some((i, r)) = line.split("ACK ").nth(1).and_then(|l| l.split_once(' ')) {
            acks.push((i.parse().unwrap(), r.parse().unwrap()));
        }
    }
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "the child dies by SIGKILL");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = open(&dir);
        for (i, rev) in &acks {
            let got = store.get(&key(&format!("p{i}"))).await.unwrap();
            assert_eq!(got.revision, *rev);
        }
        let next = store.create(&key("after"), pod("after", "x")).await.unwrap();
        assert!(next.revision > acks.last().unwrap().1);
    });
}

async fn a_watch_from_the_last_possible_revision_waits_without_panicking(backend: Backend) {
    let f = fresh(backend).await;
    let store = &f.store;
    store.create(&key("a"), pod("a", "x")).await.unwrap();
    let mut watch = store.watch("pods", None, u64::MAX).await.unwrap();
    store.create(&key("b"), pod("b", "x")).await.unwrap();
    // Nothing is after u64::MAX: the stream stays open and silent.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), watch.next())
            .await
            .is_err()
    );
    let mut near = store.watch("pods", None, u64::MAX - 1).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), near.next())
            .await
            .is_err()
    );
}

async fn objects_larger_than_the_limit_are_refused_and_nothing_is_written(backend: Backend) {
    let f = fresh_with(backend, 4096).await;
    let store = &f.store;
    assert_eq!(RedbStoreConfig::default().max_object_bytes, 1536 * 1024);
    assert_eq!(EtcdStoreConfig::default().max_object_bytes, 1536 * 1024);
    let before = store.current_revision().await.unwrap();
    let mut big = pod("big", "x");
    big["data"] = json!("x".repeat(5000));
    match store.create(&key("big"), big.clone()).await {
        Err(StoreError::TooLarge { size, limit, .. }) => assert!(size > 5000 && limit == 4096),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(store.current_revision().await.unwrap(), before);
    let small = store.create(&key("big"), pod("big", "x")).await.unwrap();
    assert!(matches!(
        store.update(&key("big"), big, Preconditions::default()).await,
        Err(StoreError::TooLarge { .. })
    ));
    assert_eq!(store.get(&key("big")).await.unwrap(), small);
}

async fn modifications_carry_their_previous_version_live_and_replayed(backend: Backend) {
    let f = fresh(backend).await;
    let store = &f.store;
    let mut live = store.watch("pods", None, 0).await.unwrap();
    let a = store.create(&key("a"), pod("a", "x")).await.unwrap();
    store
        .update(&key("a"), pod("a", "y"), Preconditions::default())
        .await
        .unwrap();
    let added = live.next().await.unwrap().unwrap();
    assert_eq!(added.prev_object, None);
    let modified = live.next().await.unwrap().unwrap();
    let prev = modified.prev_object.expect("live previous version");
    assert_eq!(prev["metadata"]["labels"]["app"], "x");
    let mut replay = store.watch("pods", None, a.revision).await.unwrap();
    let replayed = replay.next().await.unwrap().unwrap();
    assert_eq!(replayed.kind, EventType::Modified);
    let prev = replayed.prev_object.expect("replayed previous version");
    assert_eq!(prev["metadata"]["resourceVersion"], a.revision.to_string());
    store
        .update(&key("a"), pod("a", "z"), Preconditions::default())
        .await
        .unwrap();
    store.compact(a.revision + 1).await.unwrap();
    let mut after = store.watch("pods", None, a.revision + 1).await.unwrap();
    let last = after.next().await.unwrap().unwrap();
    assert_eq!(last.kind, EventType::Modified);
    match backend {
        // Once the previous version's history entry is compacted away, a replay has none.
        Backend::Redb => assert_eq!(last.prev_object, None),
        // etcd keeps each key's latest version at the compaction revision: the previous
        // version (written at a.revision + 1) survives.
        Backend::Etcd => {
            let prev = last
                .prev_object
                .expect("etcd keeps the version at the compaction revision");
            assert_eq!(prev["metadata"]["labels"]["app"], "y");
            assert_eq!(prev["metadata"]["resourceVersion"], (a.revision + 1).to_string());
        }
    }
}

async fn stored_resource_versions_are_not_trusted(backend: Backend) {
    let f = fresh(backend).await;
    let store = &f.store;
    let mut claimed = pod("a", "x");
    claimed["metadata"]["resourceVersion"] = json!("999999");
    let a = store.create(&key("a"), claimed.clone()).await.unwrap();
    assert_ne!(a.revision, 999_999);
    assert_eq!(a.object["metadata"]["resourceVersion"], a.revision.to_string());
    assert_eq!(store.get(&key("a")).await.unwrap(), a);
    let b = store
        .update(&key("a"), claimed, Preconditions::default())
        .await
        .unwrap();
    assert!(b.revision > a.revision);
    let listed = store.list("pods", None, ListOptions::default()).await.unwrap();
    assert_eq!(listed.items, vec![b.clone()]);
    assert_eq!(
        listed.items[0].object["metadata"]["resourceVersion"],
        b.revision.to_string()
    );
    // Not a JSON object with a metadata map: refused, nothing written.
    let before = store.current_revision().await.unwrap();
    assert!(matches!(
        store.create(&key("bad"), json!([1, 2])).await,
        Err(StoreError::InvalidObject { .. })
    ));
    assert!(matches!(
        store.create(&key("bad"), json!({"metadata": "x"})).await,
        Err(StoreError::InvalidObject { .. })
    ));
    assert_eq!(store.current_revision().await.unwrap(), before);
}

async fn list_applies_the_predicate_before_the_limit(backend: Backend) {
    let f = fresh(backend).await;
    let store = &f.store;
    for i in 0..9 {
        let label = if i % 3 == 0 { "x" } else { "y" };
        store
            .create(&key(&format!("p{i}")), pod(&format!("p{i}"), label))
            .await
            .unwrap();
    }
    let only_x: podvisor_store::Predicate = Arc::new(|v: &Value| v["metadata"]["labels"]["app"] == "x");
    let first = store
        .list(
            "pods",
            Some("default"),
            ListOptions {
                predicate: Some(only_x.clone()),
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let names: Vec<_> = first
        .items
        .iter()
        .map(|v| v.object["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, vec!["p0", "p3"]);
    assert_eq!(first.remaining, Some(1));
    let second = store
        .list(
            "pods",
            Some("default"),
            ListOptions {
                predicate: Some(only_x),
                limit: Some(2),
                continue_after: first.continue_after.clone(),
                revision: Some(first.revision),
            },
        )
        .await
        .unwrap();
    let names: Vec<_> = second
        .items
        .iter()
        .map(|v| v.object["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, vec!["p6"]);
    assert_eq!(second.continue_after, None);
    assert_eq!(second.remaining, None);
}

/// A watch stream keeps the database open after the store itself is dropped; once the stream
/// goes too, the file can be opened again (what a node restarted in one process relies on).
#[tokio::test]
async fn the_file_is_closed_only_when_the_last_watch_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create(&key("a"), pod("a", "x")).await.unwrap();
    let watch = store.watch("pods", None, 0).await.unwrap();
    let closed = store.closed();
    drop(store);
    assert!(!closed.is_closed(), "the watch holds the database");
    let busy = RedbStore::open(dir.path().join("store.redb")).unwrap_err();
    assert!(busy.is_locked(), "{busy:?}");
    drop(watch);
    assert!(closed.is_closed());
    let again = open(&dir);
    assert!(again.get(&key("a")).await.is_ok());
}
