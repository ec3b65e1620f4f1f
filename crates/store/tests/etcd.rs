//! What only the etcd backend does: lists that are one snapshot across pages, kube-apiserver's
//! key layout, several stores on one etcd, a cluster that loses a member, compaction by the
//! automatic compactor, and failures that end watches or calls instead of hanging.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use podvisor_store::{EtcdStore, EtcdStoreConfig, ListOptions, ObjectKey, Preconditions, Store, StoreError};
use podvisor_test_support::etcd::EtcdCluster;
use serde_json::{Value, json};

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")}})
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("pods", "default", name)
}

fn config(cluster: &EtcdCluster) -> EtcdStoreConfig {
    EtcdStoreConfig {
        endpoints: cluster.client_urls(),
        request_timeout: Duration::from_secs(5),
        compaction_interval: Duration::ZERO,
        ..Default::default()
    }
}

async fn connect(cluster: &EtcdCluster) -> EtcdStore {
    EtcdStore::connect(config(cluster))
        .await
        .expect("connect to etcd")
}

fn names(items: &[podvisor_store::Versioned]) -> Vec<String> {
    items
        .iter()
        .map(|v| v.object["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Pages read after the first one show the first page's snapshot, whatever was written since.
#[tokio::test]
async fn a_paginated_list_is_one_snapshot() {
    let cluster = EtcdCluster::start(1).await;
    let store = connect(&cluster).await;
    for i in 0..5 {
        store
            .create(&key(&format!("p{i}")), pod(&format!("p{i}")))
            .await
            .unwrap();
    }
    let page = |continue_after: Option<String>, revision: Option<u64>| ListOptions {
        limit: Some(2),
        continue_after,
        revision,
        ..Default::default()
    };
    let first = store.list("pods", None, page(None, None)).await.unwrap();
    assert_eq!(names(&first.items), ["p0", "p1"]);
    assert_eq!(first.remaining, Some(3));
    // Between pages: one object deleted, one modified, one added after the cut.
    store.delete(&key("p2"), Preconditions::default()).await.unwrap();
    let mut changed = pod("p3");
    changed["spec"] = json!({"changed": true});
    store
        .update(&key("p3"), changed, Preconditions::default())
        .await
        .unwrap();
    store.create(&key("p5"), pod("p5")).await.unwrap();
    let second = store
        .list(
            "pods",
            None,
            page(first.continue_after.clone(), Some(first.revision)),
        )
        .await
        .unwrap();
    assert_eq!(second.revision, first.revision);
    assert_eq!(names(&second.items), ["p2", "p3"]);
    assert!(second.items.iter().all(|v| v.object.get("spec").is_none()));
    assert!(second.items.iter().all(|v| v.revision <= first.revision));
    let third = store
        .list(
            "pods",
            None,
            page(second.continue_after.clone(), Some(first.revision)),
        )
        .await
        .unwrap();
    assert_eq!(names(&third.items), ["p4"]);
    assert_eq!(third.continue_after, None);
    // A new list sees the changes.
    let now = store.list("pods", None, ListOptions::default()).await.unwrap();
    assert_eq!(names(&now.items), ["p0", "p1", "p3", "p4", "p5"]);
    assert!(now.revision > first.revision);
}

/// A continue token whose revision etcd has compacted: Expired, with the compacted revision.
#[tokio::test]
async fn a_continue_at_a_compacted_revision_is_expired() {
    let cluster = EtcdCluster::start(1).await;
    let store = connect(&cluster).await;
    for i in 0..3 {
        store
            .create(&key(&format!("p{i}")), pod(&format!("p{i}")))
            .await
            .unwrap();
    }
    let first = store
        .list(
            "pods",
            None,
            ListOptions {
                limit: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let later = store.create(&key("p9"), pod("p9")).await.unwrap();
    store.compact(later.revision).await.unwrap();
    let next = store
        .list(
            "pods",
            None,
            ListOptions {
                limit: Some(1),
                continue_after: first.continue_after.clone(),
                revision: Some(first.revision),
                ..Default::default()
            },
        )
        .await;
    match next {
        Err(StoreError::Expired { requested, compacted }) => {
            assert_eq!(requested, first.revision);
            assert_eq!(compacted, later.revision);
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    // Compacting to the revision itself keeps it readable.
    let at_later = store
        .list(
            "pods",
            None,
            ListOptions {
                revision: Some(later.revision),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(at_later.items.len(), 4);
}

/// The keys are kube-apiserver's, as `etcdctl get --prefix` shows them; the values carry no
/// resourceVersion (etcd's mod_revision is the one).
#[tokio::test]
async fn keys_are_laid_out_like_kube_apiservers() {
    let cluster = EtcdCluster::start(1).await;
    let store = connect(&cluster).await;
    store.create(&key("web"), pod("web")).await.unwrap();
    store
        .create(&ObjectKey::new("pods", "kube-system", "dns"), pod("dns"))
        .await
        .unwrap();
    store
        .create(
            &ObjectKey::new("nodes", "", "n1"),
            json!({"metadata": {"name": "n1"}}),
        )
        .await
        .unwrap();
    store
        .create(
            &ObjectKey::new("apps/deployments", "default", "d"),
            json!({"metadata": {"name": "d"}}),
        )
        .await
        .unwrap();
    store
        .create(&ObjectKey::new("pods2", "default", "x"), pod("x"))
        .await
        .unwrap();
    let etcdctl = |args: &[&str]| {
        let out = std::process::Command::new("/usr/bin/etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", cluster.client_urls().join(",")))
            .args(args)
            .output()
            .expect("run etcdctl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let keys = etcdctl(&["get", "--prefix", "/registry/", "--keys-only"]);
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        keys,
        [
            "/registry/apps/deployments/default/d",
            "/registry/nodes/n1",
            "/registry/pods/default/web",
            "/registry/pods/kube-system/dns",
            "/registry/pods2/default/x",
        ]
    );
    let value = etcdctl(&["get", "/registry/pods/default/web", "--print-value-only"]);
    let stored: Value = serde_json::from_str(value.trim()).unwrap();
    assert_eq!(stored["metadata"]["name"], "web");
    assert!(stored["metadata"].get("resourceVersion").is_none());
    // Listing pods sees neither pods2 nor other resources; one namespace only its own.
    let all = store.list("pods", None, ListOptions::default()).await.unwrap();
    assert_eq!(names(&all.items), ["web", "dns"]);
    let system = store
        .list("pods", Some("kube-system"), ListOptions::default())
        .await
        .unwrap();
    assert_eq!(names(&system.items), ["dns"]);
    let nodes = store.list("nodes", None, ListOptions::default()).await.unwrap();
    assert_eq!(names(&nodes.items), ["n1"]);
    assert_eq!(
        store
            .get(&ObjectKey::new("apps/deployments", "default", "d"))
            .await
            .unwrap()
            .object["metadata"]["name"],
        "d"
    );
}

/// Two stores (two API servers) on one etcd: a write through one is seen by a watch through
/// the other, and their concurrent writes without preconditions all land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_share_one_etcd() {
    let cluster = EtcdCluster::start(1).await;
    let a = connect(&cluster).await;
    let b = connect(&cluster).await;
    let mut watch = b.watch("pods", Some("default"), 0).await.unwrap();
    let created = a.create(&key("web"), pod("web")).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the other store's watch sees the write")
        .unwrap()
        .unwrap();
    assert_eq!(event.revision, created.revision);
    assert_eq!(event.object, created.object);
    assert_eq!(b.get(&key("web")).await.unwrap(), created);
    assert!(matches!(
        b.create(&key("web"), pod("web")).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let stores: Vec<Arc<dyn Store>> = vec![Arc::new(a.clone()), Arc::new(b.clone())];
    let mut tasks = Vec::new();
    for (i, store) in stores.into_iter().cycle().take(4).enumerate() {
        tasks.push(tokio::spawn(async move {
            for n in 0..10 {
                let mut next = pod("web");
                next["writer"] = json!(format!("{i}-{n}"));
                store
                    .update(&key("web"), next, Preconditions::default())
                    .await
                    .expect("an update without preconditions retries a lost race");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut seen = 0;
    while seen < 40 {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("every update reaches the watch")
            .unwrap()
            .unwrap();
        assert_eq!(event.kind, podvisor_store::EventType::Modified);
        assert!(event.prev_object.is_some());
        seen += 1;
    }
    assert_eq!(a.current_revision().await.unwrap(), created.revision + 40);
}

/// With three members, one killed: the store keeps writing and reading (after at most a leader
/// election), through the members that are left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_on_when_one_of_three_members_stops() {
    let mut cluster = EtcdCluster::start(3).await;
    let store = connect(&cluster).await;
    let before = store.create(&key("before"), pod("before")).await.unwrap();
    cluster.stop_member(0);
    // The first write may meet a leader election or the dead member's connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match store.create(&key("after-0"), pod("after-0")).await {
            Ok(_) => break,
            Err(StoreError::Unavailable { message }) if tokio::time::Instant::now() < deadline => {
                eprintln!("retrying after: {message}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(StoreError::AlreadyExists { .. }) => break,
            Err(e) => panic!("no write went through after a member stopped: {e:?}"),
        }
    }
    // Every later write goes through too; one may still meet an election (a loaded machine
    // can make a member miss heartbeats), which is an Unavailable a client retries.
    for i in 1..10 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match store
                .create(&key(&format!("after-{i}")), pod(&format!("after-{i}")))
                .await
            {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => break,
                Err(StoreError::Unavailable { message }) if tokio::time::Instant::now() < deadline => {
                    eprintln!("write {i} retrying after: {message}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("write {i} with one member down: {e}"),
            }
        }
    }
    let list = store.list("pods", None, ListOptions::default()).await.unwrap();
    assert_eq!(list.items.len(), 11);
    assert_eq!(store.get(&key("before")).await.unwrap(), before);
}

/// A watch whose etcd goes away ends with an error rather than hanging.
#[tokio::test]
async fn a_watch_ends_with_an_error_when_etcd_goes_away() {
    let mut cluster = EtcdCluster::start(1).await;
    let store = connect(&cluster).await;
    let mut watch = store.watch("pods", None, 0).await.unwrap();
    cluster.stop_member(0);
    let end = tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .expect("the watch ends instead of hanging");
    match end {
        Some(Err(StoreError::Unavailable { .. })) => {}
        other => panic!("expected an Unavailable error, got {other:?}"),
    }
    assert!(watch.next().await.is_none(), "nothing after the error");
    // Calls fail within the request timeout, naming etcd.
    let started = tokio::time::Instant::now();
    let err = store.get(&key("a")).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Connecting to nothing fails within the timeout, naming the endpoints.
#[tokio::test]
async fn connecting_to_no_etcd_fails_naming_the_endpoints() {
    // A port that was free a moment ago: nobody listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = tokio::time::Instant::now();
    let err = EtcdStore::connect(EtcdStoreConfig {
        endpoints: vec![endpoint.clone()],
        request_timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    match err {
        StoreError::Unavailable { message } => assert!(message.contains(&endpoint), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let none = EtcdStore::connect(EtcdStoreConfig {
        endpoints: Vec::new(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(none, StoreError::Unavailable { .. }));
}

/// The automatic compactor compacts to the revision it saw one interval earlier, and stops
/// with the store.
#[tokio::test]
async fn the_compactor_compacts_each_interval_and_stops_with_the_store() {
    let cluster = EtcdCluster::start(1).await;
    let store = EtcdStore::connect(EtcdStoreConfig {
        compaction_interval: Duration::from_millis(300),
        ..config(&cluster)
    })
    .await
    .unwrap();
    let first = store.create(&key("a"), pod("a")).await.unwrap();
    store.create(&key("b"), pod("b")).await.unwrap();
    // Within a few intervals the revision of `a` is compacted away.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match store.watch("pods", None, first.revision).await {
            Err(StoreError::Expired { requested, compacted }) => {
                assert_eq!(requested, first.revision);
                assert!(compacted > first.revision);
                break;
            }
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("the compactor did not compact in time: {:?}", other.err()),
        }
    }
    // Once the store is gone, nothing compacts any more.
    let observer = connect(&cluster).await;
    drop(store);
    let kept = observer.create(&key("c"), pod("c")).await.unwrap();
    observer.create(&key("d"), pod("d")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at_kept = observer
        .list(
            "pods",
            None,
            ListOptions {
                revision: Some(kept.revision),
                ..Default::default()
            },
        )
        .await
        .expect("no compaction after the store is dropped");
    assert_eq!(names(&at_kept.items), ["a", "b", "c"]);
    let mut watch = observer.watch("pods", None, kept.revision - 1).await.unwrap();
    assert_eq!(watch.next().await.unwrap().unwrap().revision, kept.revision);
}

/// A resource's watch sees only its own keys, ADDED/MODIFIED/DELETED with etcd's revisions,
/// and a deletion carries the last state stamped with the deletion's revision.
#[tokio::test]
async fn watch_events_follow_etcd_revisions() {
    let cluster = EtcdCluster::start(1).await;
    let store = connect(&cluster).await;
    let mut watch = store.watch("pods", Some("default"), 0).await.unwrap();
    store
        .create(&ObjectKey::new("pods", "other", "o"), pod("o"))
        .await
        .unwrap();
    store
        .create(&ObjectKey::new("pods2", "default", "x"), pod("x"))
        .await
        .unwrap();
    let a = store.create(&key("a"), pod("a")).await.unwrap();
    let mut changed = pod("a");
    changed["spec"] = json!({"n": 1});
    let b = store
        .update(
            &key("a"),
            changed,
            Preconditions {
                resource_version: Some(a.revision),
                uid: Some("uid-a".into()),
            },
        )
        .await
        .unwrap();
    let d = store.delete(&key("a"), Preconditions::default()).await.unwrap();
    assert_eq!(d.object["spec"]["n"], 1);
    assert_eq!(d.object["metadata"]["resourceVersion"], d.revision.to_string());
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(
            tokio::time::timeout(Duration::from_secs(10), watch.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    use podvisor_store::EventType::*;
    let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.revision)).collect();
    assert_eq!(
        kinds,
        [(Added, a.revision), (Modified, b.revision), (Deleted, d.revision)]
    );
    assert_eq!(events[0].object, a.object);
    assert_eq!(events[1].object, b.object);
    assert_eq!(events[1].prev_object.as_ref(), Some(&a.object));
    assert_eq!(events[2].object, d.object);
    assert!(
        events
            .iter()
            .all(|e| e.key.name == "a" && e.key.namespace == "default")
    );
}

/// etcd's count of its watchers, from its `/metrics` (a blocking read of a few kilobytes).
fn etcd_watchers(client_url: &str) -> u64 {
    use std::io::{Read, Write};
    let addr = client_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .map(|n| n as u64)
        .expect("etcd reports its watchers")
}

/// Dropping a watch stream cancels its etcd watch: etcd's watchers go back to none.
#[tokio::test]
async fn dropping_a_watch_cancels_it_in_etcd() {
    let cluster = EtcdCluster::start(1).await;
    let url = cluster.client_urls()[0].clone();
    let store = connect(&cluster).await;
    let a = store.create(&key("a"), pod("a")).await.unwrap();
    let mut watches = Vec::new();
    for from in [0, a.revision - 1, a.revision] {
        watches.push(store.watch("pods", None, from).await.unwrap());
    }
    assert_eq!(etcd_watchers(&url), 3);
    // The one from before `a` replays it.
    let replayed = watches[1].next().await.unwrap().unwrap();
    assert_eq!(replayed.revision, a.revision);
    drop(watches);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while etcd_watchers(&url) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "etcd still has {} watchers",
            etcd_watchers(&url)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A name or namespace with a `/` (which the API server never lets through) could alias
/// another object's key: the store refuses to create it and finds nothing there.
#[tokio::test]
async fn names_with_a_slash_never_alias_other_keys() {
    let cluster = EtcdCluster::start(1).await;
    let store = connect(&cluster).await;
    store
        .create(&ObjectKey::new("pods", "a", "b"), pod("b"))
        .await
        .unwrap();
    let alias = ObjectKey::new("pods", "", "a/b");
    assert!(matches!(
        store.get(&alias).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete(&alias, Preconditions::default()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.update(&alias, pod("b"), Preconditions::default()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.create(&alias, pod("b")).await,
        Err(StoreError::InvalidObject { .. })
    ));
    assert!(matches!(
        store.create(&ObjectKey::new("pods", "a/x", "y"), pod("y")).await,
        Err(StoreError::InvalidObject { .. })
    ));
    assert!(matches!(
        store.create(&ObjectKey::new("pods", "a", ""), pod("")).await,
        Err(StoreError::InvalidObject { .. })
    ));
    assert!(store.get(&ObjectKey::new("pods", "a", "b")).await.is_ok());
    let cluster_scoped = store
        .list("pods", Some(""), ListOptions::default())
        .await
        .unwrap();
    assert!(cluster_scoped.items.is_empty());
}

/// An object under the store's limit but over etcd's own (`--max-request-bytes`, 1.5 MiB by
/// default) is refused as too large too, and nothing is written.
#[tokio::test]
async fn etcds_own_request_limit_is_too_large() {
    let cluster = EtcdCluster::start(1).await;
    let store = EtcdStore::connect(EtcdStoreConfig {
        max_object_bytes: 8 * 1024 * 1024,
        ..config(&cluster)
    })
    .await
    .unwrap();
    let before = store.current_revision().await.unwrap();
    // Past etcd's request limit, and past its gRPC message limit (2 MiB).
    for size in [1800 * 1024, 3 * 1024 * 1024] {
        let mut big = pod("big");
        big["data"] = json!("x".repeat(size));
        match store.create(&key("big"), big).await {
            Err(StoreError::TooLarge { size: s, limit, .. }) => {
                assert!(s > size, "{s}");
                assert!(limit < s && limit <= 8 * 1024 * 1024, "{limit}");
            }
            other => panic!("expected TooLarge for {size} bytes, got {other:?}"),
        }
    }
    assert_eq!(store.current_revision().await.unwrap(), before);
    assert!(matches!(
        store.get(&key("big")).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Lists and watch replays of large objects go past gRPC's default 4 MiB message limit.
#[tokio::test]
async fn lists_and_watches_of_large_objects_pass_grpcs_default_message_limit() {
    let cluster = EtcdCluster::start(1).await;
    let store = connect(&cluster).await;
    let before = store.current_revision().await.unwrap();
    let big = "x".repeat(1000 * 1024);
    for i in 0..6 {
        let mut p = pod(&format!("p{i}"));
        p["data"] = json!(big);
        store.create(&key(&format!("p{i}")), p).await.unwrap();
    }
    let list = store.list("pods", None, ListOptions::default()).await.unwrap();
    assert_eq!(list.items.len(), 6);
    let mut watch = store.watch("pods", None, before).await.unwrap();
    for i in 0..6 {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(event.object["metadata"]["name"], format!("p{i}"));
    }
}
