//! The API server on etcd: paginated lists are one snapshot and an expired continue token is
//! kube-apiserver's 410 (with a token for the inconsistent remainder); two API servers on one etcd see each other's writes (reads and
//! watches); an etcd that is gone is a 503.

mod common;

use std::time::Duration;

use podvisor_test_support::etcd::EtcdCluster;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const BASE: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}})
        .to_string()
        .into_bytes()
}

async fn request(url: &str, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let (code, _, body) = common::raw_request(url, method, path, "application/json", body).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"));
    (code, v)
}

fn names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn paginated_lists_are_one_snapshot_and_expire_with_410() {
    let rt = runtime();
    let cluster = rt.block_on(EtcdCluster::start(1));
    let s = common::start_on_etcd(cluster.client_urls());
    rt.block_on(async {
        for i in 0..5 {
            let (code, body) = request(&s.url, "POST", BASE, &configmap(&format!("c{i}"))).await;
            assert_eq!(code, 201, "{body}");
        }
        let (code, first) = request(&s.url, "GET", &format!("{BASE}?limit=2"), b"").await;
        assert_eq!(code, 200, "{first}");
        assert_eq!(names(&first), ["c0", "c1"]);
        assert_eq!(first["metadata"]["remainingItemCount"], 3);
        let rv = first["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        let token = first["metadata"]["continue"].as_str().unwrap().to_string();
        // Between pages: one deleted, one added.
        let (code, _) = request(&s.url, "DELETE", &format!("{BASE}/c2"), b"").await;
        assert_eq!(code, 200);
        let (code, _) = request(&s.url, "POST", BASE, &configmap("c25")).await;
        assert_eq!(code, 201);
        let (code, second) = request(&s.url, "GET", &format!("{BASE}?limit=2&continue={token}"), b"").await;
        assert_eq!(code, 200, "{second}");
        assert_eq!(names(&second), ["c2", "c3"], "the first page's snapshot");
        assert_eq!(second["metadata"]["resourceVersion"], rv.as_str());
        let token2 = second["metadata"]["continue"].as_str().unwrap().to_string();
        let (_, third) = request(&s.url, "GET", &format!("{BASE}?limit=2&continue={token2}"), b"").await;
        assert_eq!(names(&third), ["c4"]);
        assert!(third["metadata"].get("continue").is_none());
        // Once etcd compacts past the first page's revision, its token is too old.
        let current = s.store.current_revision().await.unwrap();
        s.store.compact(current).await.unwrap();
        let (code, status) = request(&s.url, "GET", &format!("{BASE}?limit=2&continue={token}"), b"").await;
        assert_eq!(code, 410, "{status}");
        assert_eq!(status["reason"], "Expired");
        assert!(
            status["message"].as_str().unwrap().starts_with(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response"
            ),
            "{status}"
        );
        // The token it offers goes on after the same key, in the current state.
        let inconsistent = status["metadata"]["continue"].as_str().unwrap().to_string();
        let (code, rest) = request(&s.url, "GET", &format!("{BASE}?limit=2&continue={inconsistent}"), b"").await;
        assert_eq!(code, 200, "{rest}");
        assert_eq!(names(&rest), ["c25", "c3"]);
        assert_eq!(
            rest["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap(),
            current
        );
        let token3 = rest["metadata"]["continue"].as_str().unwrap().to_string();
        let (_, last) = request(&s.url, "GET", &format!("{BASE}?limit=2&continue={token3}"), b"").await;
        assert_eq!(names(&last), ["c4"]);
        // A new list works and shows the changes.
        let (_, now) = request(&s.url, "GET", BASE, b"").await;
        assert_eq!(names(&now), ["c0", "c1", "c25", "c3", "c4"]);
    });
}

/// Reads one watch event line from a chunked watch response.
async fn next_line(reader: &mut BufReader<tokio::net::TcpStream>) -> String {
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
            .await
            .expect("a watch event in time")
            .unwrap();
        assert!(n > 0, "the watch ended");
        if line.trim_start().starts_with('{') {
            return line;
        }
    }
}

#[test]
fn two_api_servers_on_one_etcd_see_each_others_writes() {
    let rt = runtime();
    let cluster = rt.block_on(EtcdCluster::start(1));
    let a = common::start_on_etcd(cluster.client_urls());
    let b = common::start_on_etcd(cluster.client_urls());
    rt.block_on(async {
        // A watch on server b, from now.
        let addr = b.url.trim_start_matches("http://").to_string();
        let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut reader = BufReader::new(stream);
        reader
            .get_mut()
            .write_all(
                format!("GET {BASE}?watch=true&resourceVersion=0 HTTP/1.1\r\nHost: {addr}\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let (code, created) = request(&a.url, "POST", BASE, &configmap("shared")).await;
        assert_eq!(code, 201, "{created}");
        let line = next_line(&mut reader).await;
        let event: Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(event["type"], "ADDED");
        assert_eq!(event["object"]["metadata"]["name"], "shared");
        assert_eq!(
            event["object"]["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
        let (code, got) = request(&b.url, "GET", &format!("{BASE}/shared"), b"").await;
        assert_eq!(code, 200);
        assert_eq!(got["metadata"]["uid"], created["metadata"]["uid"]);
        // A stale write through b of what a changed is a conflict.
        let mut changed = created.clone();
        changed["data"]["k"] = json!("v2");
        let (code, _) = request(
            &a.url,
            "PUT",
            &format!("{BASE}/shared"),
            changed.to_string().as_bytes(),
        )
        .await;
        assert_eq!(code, 200);
        let line = next_line(&mut reader).await;
        let event: Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(event["type"], "MODIFIED");
        let (code, status) = request(
            &b.url,
            "PUT",
            &format!("{BASE}/shared"),
            created.to_string().as_bytes(),
        )
        .await;
        assert_eq!(code, 409, "{status}");
        assert_eq!(status["reason"], "Conflict");
    });
}

#[test]
fn an_etcd_that_is_gone_is_a_503() {
    let rt = runtime();
    let mut cluster = rt.block_on(EtcdCluster::start(1));
    let s = common::start_on_etcd(cluster.client_urls());
    rt.block_on(async {
        let (code, _) = request(&s.url, "POST", BASE, &configmap("a")).await;
        assert_eq!(code, 201);
        cluster.stop_member(0);
        let (code, status) = request(&s.url, "GET", &format!("{BASE}/a"), b"").await;
        assert_eq!(code, 503, "{status}");
        assert_eq!(status["reason"], "ServiceUnavailable");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .contains(&cluster.client_urls()[0]),
            "{status}"
        );
    });
}
