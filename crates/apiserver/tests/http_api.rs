//! Raw HTTP against the server: Status causes, stale updates, oversized and malformed bodies,
//! watch from a resourceVersion, bookmarks, 410 Expired after compaction, limit/continue.

mod common;

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
async fn request(url: &str, method: &str, path: &str, ct: &str, body: &[u8]) -> (u16, String) {
    let (code, _, body) = common::raw_request(url, method, path, ct, body).await;
    (code, body)
}

fn pod(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"containers":[{{"name":"c","image":"busybox","command":["sleep","1"]}}]}}}}"#
    )
}

#[test]
fn errors_conflicts_and_limits() {
    let s = common::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let base = "/api/v1/namespaces/default/pods";
        let (code, _) = request(&s.url, "POST", base, "application/json", pod("a").as_bytes()).await;
        assert_eq!(code, 201);
        let (code, body) = request(&s.url, "POST", base, "application/json", pod("a").as_bytes()).await;
        assert_eq!(code, 409, "{body}");
        assert!(body.contains("AlreadyExists"));
        let bad = pod("b").replace("\"name\":\"c\"", "\"name\":\"C_1\"");
        let (code, body) = request(&s.url, "POST", base, "application/json", bad.as_bytes()).await;
        assert_eq!(code, 422, "{body}");
        assert!(
            body.contains("\"field\":\"spec.containers[0].name\"") && body.contains("FieldValueInvalid"),
            "{body}"
        );
        let stale = pod("a").replace("\"name\":\"a\"", "\"name\":\"a\",\"resourceVersion\":\"1\"");
        let (code, body) = request(
            &s.url,
            "PUT",
            &format!("{base}/a"),
            "application/json",
            stale.as_bytes(),
        )
        .await;
        assert_eq!(code, 409, "{body}");
        assert!(body.contains("Conflict"));
        let (code, _) = request(&s.url, "POST", base, "application/json", b"{not json").await;
        assert_eq!(code, 400);
        let huge = vec![b' '; 4 * 1024 * 1024];
        let (code, _) = request(&s.url, "POST", base, "application/json", &huge).await;
        assert_eq!(code, 413);
        // A pod whose container never started has no log yet (kube-apiserver says the same).
        let (code, body) = request(&s.url, "GET", &format!("{base}/a/log"), "application/json", b"").await;
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("is waiting to start"), "{body}");
        for n in ["b", "c", "d"] {
            request(&s.url, "POST", base, "application/json", pod(n).as_bytes()).await;
        }
        let (code, body) = request(&s.url, "GET", &format!("{base}?limit=2"), "application/json", b"").await;
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 2);
        let token = v["metadata"]["continue"].as_str().unwrap().to_string();
        let (_, body) = request(
            &s.url,
            "GET",
            &format!("{base}?limit=2&continue={token}"),
            "application/json",
            b"",
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 2);
        assert!(v["metadata"].get("continue").is_none());
        let (code, _) = request(&s.url, "GET", "/readyz", "", b"").await;
        assert_eq!(code, 200);
    });
}

#[test]
fn watch_from_revision_bookmarks_and_expired() {
    let s = common::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let base = "/api/v1/namespaces/default/pods";
        let (_, body) = request(&s.url, "POST", base, "application/json", pod("a").as_bytes()).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let rv: u64 = v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        request(&s.url, "POST", base, "application/json", pod("b").as_bytes()).await;

        // Watch from rv: replays b, then a bookmark (interval 1 s in the harness).
        let mut lines = watch_lines(
            &s.url,
            &format!("{base}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=10"),
        )
        .await;
        let mut got = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !(got.contains("\"ADDED\"") && got.contains("BOOKMARK")) {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .expect("events in time")
                .unwrap()
                .unwrap();
            got.push_str(&line);
        }
        assert!(got.contains("\"name\":\"b\""), "{got}");
        assert!(!got.contains("\"name\":\"a\""), "{got}");

        s.store.compact(rv + 1).await.unwrap();
        let (code, body) = request(
            &s.url,
            "GET",
            &format!("{base}?watch=true&resourceVersion={rv}"),
            "",
            b"",
        )
        .await;
        assert_eq!(code, 200);
        assert!(
            body.contains("\"ERROR\"") && body.contains("\"code\":410") && body.contains("Expired"),
            "{body}"
        );
    });
}

/// The lines of a watch request on `path` as they come.
async fn watch_lines(url: &str, path: &str) -> tokio::io::Lines<BufReader<tokio::net::TcpStream>> {
    let addr = url.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    BufReader::new(conn).lines()
}

/// The next line of `lines` that contains `what`, within 20 s.
async fn line_with(lines: &mut tokio::io::Lines<BufReader<tokio::net::TcpStream>>, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line with {what} in time"))
            .unwrap()
            .unwrap_or_else(|| panic!("the watch ended before a line with {what}"));
        if line.contains(what) {
            return line;
        }
    }
}

#[test]
fn bookmarks_pass_other_resources_changes_and_a_resumed_watch_misses_nothing() {
    let s = common::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cms = "/api/v1/namespaces/default/configmaps";
        let cm = |name: &str| {
            format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#)
        };
        let (code, body) = request(&s.url, "POST", cms, "application/json", cm("first").as_bytes()).await;
        assert_eq!(code, 201, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let first: u64 = v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let mut watch = watch_lines(
            &s.url,
            &format!("{cms}?watch=true&resourceVersion={first}&allowWatchBookmarks=true&timeoutSeconds=30"),
        )
        .await;
        // Changes of another resource only: the ConfigMaps' watch delivers none of them.
        let mut last_pod = 0;
        for n in ["a", "b", "c"] {
            let (code, body) = request(
                &s.url,
                "POST",
                "/api/v1/namespaces/default/pods",
                "application/json",
                pod(n).as_bytes(),
            )
            .await;
            assert_eq!(code, 201, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            last_pod = v["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
        }
        // A bookmark (interval 1 s in the harness) says the watch has seen up to the pods,
        // not only up to the last ConfigMap.
        let mark = loop {
            let line = line_with(&mut watch, "BOOKMARK").await;
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let rv: u64 = v["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            if rv >= last_pod {
                break rv;
            }
            assert!(rv >= first, "a bookmark never goes back: {rv} < {first}");
        };
        drop(watch);
        // Resumed from the bookmark: the next ConfigMap comes, and nothing from before it.
        let mut resumed = watch_lines(
            &s.url,
            &format!("{cms}?watch=true&resourceVersion={mark}&timeoutSeconds=30"),
        )
        .await;
        let (code, body) = request(&s.url, "POST", cms, "application/json", cm("second").as_bytes()).await;
        assert_eq!(code, 201, "{body}");
        let line = line_with(&mut resumed, "\"type\"").await;
        assert!(
            line.contains("\"ADDED\"") && line.contains("\"name\":\"second\""),
            "{line}"
        );
    });
}

#[test]
fn metrics_count_requests_and_open_watches() {
    use podvisor_apiserver::metrics::ApiMetrics;
    use prometheus_client::registry::Registry;

    let metrics = ApiMetrics::new();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let registry = std::sync::Arc::new(registry);
    let s = common::start_with(move |server| server.with_metrics(metrics, registry));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let base = "/api/v1/namespaces/default/pods";
        for n in ["a", "b"] {
            let (code, _) = request(&s.url, "POST", base, "application/json", pod(n).as_bytes()).await;
            assert_eq!(code, 201);
        }
        request(&s.url, "GET", base, "", b"").await;
        request(&s.url, "GET", &format!("{base}/a"), "", b"").await;
        request(&s.url, "GET", &format!("{base}/missing"), "", b"").await;

        // A watch stays open (bookmarks every second, so its end is noticed soon after).
        let addr = s.url.trim_start_matches("http://").to_string();
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let req = format!("GET {base}?watch=true&allowWatchBookmarks=true HTTP/1.1\r\nHost: x\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut lines = BufReader::new(conn).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
        assert!(matches!(first, Ok(Ok(Some(_)))), "the watch answered");

        let (code, text) = request(&s.url, "GET", "/metrics", "", b"").await;
        assert_eq!(code, 200);
        let labels = |verb: &str, scope: &str| {
            format!(r#"{{verb="{verb}",dry_run="",group="",version="v1",resource="pods",subresource="",scope="{scope}",component="apiserver""#)
        };
        for line in [
            "# TYPE apiserver_request_duration_seconds histogram".to_string(),
            format!("apiserver_request_duration_seconds_count{}}} 2", labels("POST", "resource")),
            format!(r#"apiserver_request_duration_seconds_bucket{},le="+Inf"}} 2"#, labels("POST", "resource")),
            format!("apiserver_request_duration_seconds_count{}}} 1", labels("LIST", "namespace")),
            format!(r#"apiserver_request_total{},code="200"}} 1"#, labels("GET", "resource")),
            format!(r#"apiserver_request_total{},code="404"}} 1"#, labels("GET", "resource")),
            r#"apiserver_longrunning_requests{verb="WATCH",group="",version="v1",resource="pods",subresource="",scope="namespace",component="apiserver"} 1"#.to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }

        // Once the client goes away, the watch is no longer counted and is recorded as done.
        drop(lines);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, text) = request(&s.url, "GET", "/metrics", "", b"").await;
            if text.contains(r#"apiserver_longrunning_requests{verb="WATCH",group="",version="v1",resource="pods",subresource="",scope="namespace",component="apiserver"} 0"#)
                && text.contains(r#"apiserver_request_total{verb="WATCH""#)
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the watch still counts as open:\n{text}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// `PUT namespaces/{name}/finalize` writes `spec.finalizers` (only it does), keeps the status,
/// checks the names, and removes a deleted namespace once no finalizer of either kind is left;
/// `namespaces/{name}/status` writes the conditions and nothing else.
#[tokio::test]
async fn namespace_finalize_and_status_subresources() {
    let s = common::start();
    {
        let json = "application/json";
        let send = |method: &'static str, path: String, body: serde_json::Value| {
            let url = s.url.clone();
            async move {
                let (code, body) = request(&url, method, &path, json, body.to_string().as_bytes()).await;
                let value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
                (code, value)
            }
        };
        let ns = |name: &str, finalizers: serde_json::Value| {
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
                "spec": {"finalizers": finalizers}, "status": {"phase": "Terminating"}})
        };
        let (code, _) = send(
            "POST",
            "/api/v1/namespaces".into(),
            ns("f", serde_json::json!([])),
        )
        .await;
        assert_eq!(code, 201);
        let finalize = "/api/v1/namespaces/f/finalize".to_string();

        // finalize writes spec.finalizers, never the status.
        let two = serde_json::json!(["kubernetes", "example.com/hold"]);
        let (code, v) = send("PUT", finalize.clone(), ns("f", two.clone())).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["spec"]["finalizers"], two);
        assert_eq!(v["status"]["phase"], "Active");
        // The namespace itself cannot change them.
        let (code, v) = send(
            "PUT",
            "/api/v1/namespaces/f".into(),
            ns("f", serde_json::json!([])),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(
            v["spec"]["finalizers"], two,
            "a plain update changed spec.finalizers"
        );

        // Bad names: 422 naming the field; a body of another kind: 400; other verbs: 405.
        let (code, v) = send(
            "PUT",
            finalize.clone(),
            ns("f", serde_json::json!(["kubernetes", "hold"])),
        )
        .await;
        assert_eq!(code, 422, "{v}");
        assert_eq!(v["details"]["causes"][0]["field"], "spec.finalizers[1]");
        assert_eq!(
            v["message"],
            "Namespace \"f\" is invalid: spec.finalizers[1]: Invalid value: \"hold\": name is neither a standard finalizer name nor is it fully qualified"
        );
        let (code, v) = send(
            "PUT",
            finalize.clone(),
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "f"}}),
        )
        .await;
        assert_eq!(code, 400, "{v}");
        let (code, v) = send("PUT", finalize.clone(), ns("other", serde_json::json!([]))).await;
        assert_eq!(code, 400, "{v}");
        for method in ["GET", "POST", "PATCH", "DELETE"] {
            let (code, v) = send(method, finalize.clone(), serde_json::json!({})).await;
            assert_eq!(code, 405, "{method}: {v}");
        }

        // status writes the conditions, not the finalizers.
        let mut status = ns("f", serde_json::json!([]));
        status["status"] = serde_json::json!({"phase": "Active", "conditions": [{"type": "NamespaceContentRemaining",
            "status": "True", "reason": "SomeResourcesRemain", "message": "Some resources are remaining: pods has 1 resource instances"}]});
        let (code, v) = send("PUT", "/api/v1/namespaces/f/status".into(), status).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["status"]["conditions"][0]["reason"], "SomeResourcesRemain");
        assert_eq!(v["spec"]["finalizers"], two);

        // Deleted, it stays while spec.finalizers remain, and goes when they are empty.
        let held = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "held", "finalizers": ["example.com/hold"]}});
        let (code, _) = send("POST", "/api/v1/namespaces/f/configmaps".into(), held.clone()).await;
        assert_eq!(code, 201);
        let (code, v) = send("DELETE", "/api/v1/namespaces/f".into(), serde_json::Value::Null).await;
        assert_eq!(
            (code, &v["status"]["phase"]),
            (200, &serde_json::json!("Terminating")),
            "{v}"
        );
        let (code, v) = send(
            "PUT",
            finalize.clone(),
            ns("f", serde_json::json!(["example.com/hold"])),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let (code, _) = send("GET", "/api/v1/namespaces/f".into(), serde_json::Value::Null).await;
        assert_eq!(code, 200, "removed while spec.finalizers remained");
        let (code, v) = send("PUT", finalize.clone(), ns("f", serde_json::json!([]))).await;
        assert_eq!(code, 200, "{v}");
        let (code, _) = send("GET", "/api/v1/namespaces/f".into(), serde_json::Value::Null).await;
        assert_eq!(code, 404, "the finalized namespace is still there");

        // metadata.finalizers hold it too, until they go.
        let mut g = ns("g", serde_json::json!([]));
        g["metadata"]["finalizers"] = serde_json::json!(["example.com/keep"]);
        let (code, _) = send("POST", "/api/v1/namespaces".into(), g.clone()).await;
        assert_eq!(code, 201);
        let (code, _) = send("POST", "/api/v1/namespaces/g/configmaps".into(), held).await;
        assert_eq!(code, 201);
        send("DELETE", "/api/v1/namespaces/g".into(), serde_json::Value::Null).await;
        let (code, v) = send("PUT", "/api/v1/namespaces/g/finalize".into(), g.clone()).await;
        assert_eq!(
            (code, &v["spec"]["finalizers"]),
            (200, &serde_json::json!([])),
            "{v}"
        );
        let (code, v) = send("GET", "/api/v1/namespaces/g".into(), serde_json::Value::Null).await;
        assert_eq!(
            (code, &v["status"]["phase"]),
            (200, &serde_json::json!("Terminating")),
            "{v}"
        );
        g["metadata"]["finalizers"] = serde_json::json!([]);
        let (code, v) = send("PUT", "/api/v1/namespaces/g".into(), g).await;
        assert_eq!(code, 200, "{v}");
        let (code, _) = send("GET", "/api/v1/namespaces/g".into(), serde_json::Value::Null).await;
        assert_eq!(code, 404, "the namespace stayed after its last finalizer went");
    }
}

#[test]
fn eviction_marks_the_pod_a_disruption_target_and_deletes_it() {
    let s = common::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let base = "/api/v1/namespaces/default/pods";
        // Bound to a node (an unbound pod is deleted at once, whatever the grace period).
        let bound = pod("e").replace(r#""spec":{"#, r#""spec":{"nodeName":"n1","#);
        let (code, _) = request(&s.url, "POST", base, "application/json", bound.as_bytes()).await;
        assert_eq!(code, 201);
        let eviction = |name: &str| {
            format!(
                r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{name}","namespace":"default"}},"deleteOptions":{{"gracePeriodSeconds":7}}}}"#
            )
        };
        // The Eviction must name the pod of the URL.
        let (code, body) = request(&s.url, "POST", &format!("{base}/e/eviction"), "application/json", eviction("x").as_bytes()).await;
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("name in URL does not match name in Eviction object"), "{body}");
        let (code, body) = request(&s.url, "POST", &format!("{base}/gone/eviction"), "application/json", eviction("gone").as_bytes()).await;
        assert_eq!(code, 404, "{body}");
        let (code, body) = request(&s.url, "POST", &format!("{base}/e/eviction"), "application/json", eviction("e").as_bytes()).await;
        assert_eq!(code, 201, "{body}");
        assert!(body.contains("\"status\":\"Success\""), "{body}");
        // The pod waits for its node to stop it within the Eviction's grace period.
        let (code, body) = request(&s.url, "GET", &format!("{base}/e"), "application/json", b"").await;
        assert_eq!(code, 200);
        let pod: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 7, "{body}");
        let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let target = conditions.iter().find(|c| c["type"] == "DisruptionTarget").cloned().unwrap_or_default();
        assert_eq!(target["status"], "True", "{body}");
        assert_eq!(target["reason"], "EvictionByEvictionAPI");
        assert_eq!(target["message"], "Eviction API: evicting");
        // Discovery names the subresource as kubectl drain looks for it.
        let (_, body) = request(&s.url, "GET", "/api/v1", "application/json", b"").await;
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        let entry = list["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods/eviction").cloned().unwrap();
        assert_eq!((entry["group"].as_str(), entry["version"].as_str(), entry["kind"].as_str()), (Some("policy"), Some("v1"), Some("Eviction")));
    });
}

#[test]
fn workloads_count_generations_serve_scale_and_keep_their_dependents_on_request() {
    let s = common::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap();
        let base = "/apis/apps/v1/namespaces/default/deployments";
        let deploy = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","generation":7},
            "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},
            "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"x","command":["sleep","1"]}]}}}}"#;
        let (code, body) = request(&s.url, "POST", base, "application/json", deploy.as_bytes()).await;
        assert_eq!(code, 201, "{body}");
        assert_eq!(json(&body)["metadata"]["generation"], 1, "the server owns the generation: {body}");
        // A spec change is a new generation; a status write or a label is not.
        let merge = "application/merge-patch+json";
        let (code, body) = request(&s.url, "PATCH", &format!("{base}/web"), merge, br#"{"metadata":{"labels":{"a":"b"}}}"#).await;
        assert_eq!((code, &json(&body)["metadata"]["generation"]), (200, &serde_json::json!(1)), "{body}");
        let (_, body) = request(&s.url, "PATCH", &format!("{base}/web/status"), merge, br#"{"status":{"replicas":2}}"#).await;
        assert_eq!(json(&body)["metadata"]["generation"], 1, "{body}");
        let (_, body) = request(&s.url, "PATCH", &format!("{base}/web"), merge, br#"{"spec":{"paused":true}}"#).await;
        assert_eq!(json(&body)["metadata"]["generation"], 2, "{body}");
        // Deployments count annotation changes too (rollbacks were annotations).
        let (_, body) = request(&s.url, "PATCH", &format!("{base}/web"), merge, br#"{"metadata":{"annotations":{"x":"y"}}}"#).await;
        assert_eq!(json(&body)["metadata"]["generation"], 3, "{body}");

        // Defaults and validation are kube-apiserver's.
        let (_, body) = request(&s.url, "GET", &format!("{base}/web"), "application/json", b"").await;
        let stored = json(&body);
        assert_eq!(stored["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%", "{body}");
        assert_eq!(stored["spec"]["revisionHistoryLimit"], 10, "{body}");
        let bad = deploy.replace(r#""labels":{"app":"web"}},"spec":{"containers""#, r#""labels":{"app":"other"}},"spec":{"containers""#);
        let bad = bad.replace(r#""name":"web","generation":7"#, r#""name":"bad""#);
        let (code, body) = request(&s.url, "POST", base, "application/json", bad.as_bytes()).await;
        assert_eq!(code, 422, "{body}");
        assert!(body.contains(r#"Deployment.apps \"bad\" is invalid: spec.template.metadata.labels: Invalid value"#), "{body}");
        assert!(body.contains("`selector` does not match template `labels`"), "{body}");

        // The scale subresource: an autoscaling/v1 Scale over spec.replicas.
        let (code, body) = request(&s.url, "GET", &format!("{base}/web/scale"), "application/json", b"").await;
        assert_eq!(code, 200, "{body}");
        let scale = json(&body);
        assert_eq!((&scale["kind"], &scale["apiVersion"]), (&serde_json::json!("Scale"), &serde_json::json!("autoscaling/v1")));
        assert_eq!((&scale["spec"]["replicas"], &scale["status"]["replicas"]), (&serde_json::json!(2), &serde_json::json!(2)));
        assert_eq!(scale["status"]["selector"], "app=web");
        let (code, body) = request(&s.url, "PATCH", &format!("{base}/web/scale"), merge, br#"{"spec":{"replicas":5}}"#).await;
        assert_eq!((code, &json(&body)["spec"]["replicas"]), (200, &serde_json::json!(5)), "{body}");
        let (_, body) = request(&s.url, "GET", &format!("{base}/web"), "application/json", b"").await;
        assert_eq!((&json(&body)["spec"]["replicas"], &json(&body)["metadata"]["generation"]), (&serde_json::json!(5), &serde_json::json!(4)));
        let (code, body) = request(&s.url, "PATCH", &format!("{base}/web/scale"), merge, br#"{"spec":{"replicas":-1}}"#).await;
        assert_eq!(code, 422, "{body}");
        assert!(body.contains(r#"Scale.autoscaling \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"#), "{body}");
        let (_, body) = request(&s.url, "GET", "/apis/apps/v1", "application/json", b"").await;
        let list = json(&body);
        let entry = list["resources"].as_array().unwrap().iter().find(|r| r["name"] == "deployments/scale").cloned().unwrap();
        assert_eq!((entry["group"].as_str(), entry["kind"].as_str()), (Some("autoscaling"), Some("Scale")));

        // Orphan and Foreground keep the owner with the garbage collector's finalizer; a
        // Job's default is Orphan, a Deployment's Background.
        let (code, body) = request(&s.url, "DELETE", &format!("{base}/web?propagationPolicy=Orphan"), "application/json", b"").await;
        assert_eq!(code, 200, "{body}");
        let gone = json(&body);
        assert_eq!(gone["metadata"]["finalizers"], serde_json::json!(["orphan"]), "{body}");
        assert!(gone["metadata"]["deletionTimestamp"].is_string(), "{body}");
        let (code, body) = request(&s.url, "DELETE", &format!("{base}/web?propagationPolicy=Foreground"), "application/json", b"").await;
        assert_eq!(code, 200);
        assert_eq!(json(&body)["metadata"]["finalizers"], serde_json::json!(["foregroundDeletion"]), "the last policy asked wins: {body}");
        let (code, body) = request(&s.url, "PATCH", &format!("{base}/web"), merge, br#"{"metadata":{"finalizers":null}}"#).await;
        assert_eq!(code, 200, "{body}");
        let (code, _) = request(&s.url, "GET", &format!("{base}/web"), "application/json", b"").await;
        assert_eq!(code, 404, "removing the last finalizer completes the deletion");
        let (code, body) = request(&s.url, "POST", base, "application/json", deploy.as_bytes()).await;
        assert_eq!(code, 201, "{body}");
        let (code, _) = request(&s.url, "DELETE", &format!("{base}/web"), "application/json", b"").await;
        assert_eq!(code, 200);
        let (code, _) = request(&s.url, "GET", &format!("{base}/web"), "application/json", b"").await;
        assert_eq!(code, 404, "a Deployment's default is Background: gone at once");
        // ServiceAccount admission: pods run as `default`; another must exist.
        let pods = "/api/v1/namespaces/default/pods";
        let (code, body) = request(&s.url, "POST", pods, "application/json", pod("sa").as_bytes()).await;
        assert_eq!(code, 201, "{body}");
        assert_eq!(json(&body)["spec"]["serviceAccountName"], "default", "{body}");
        let named = pod("robot").replace(r#""spec":{"#, r#""spec":{"serviceAccountName":"robot","#);
        let (code, body) = request(&s.url, "POST", pods, "application/json", named.as_bytes()).await;
        assert_eq!(code, 403, "{body}");
        assert!(body.contains(r#"pods \"robot\" is forbidden: error looking up service account default/robot: serviceaccount \"robot\" not found"#), "{body}");
        let sa = r#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"robot"}}"#;
        let (code, _) = request(&s.url, "POST", "/api/v1/namespaces/default/serviceaccounts", "application/json", sa.as_bytes()).await;
        assert_eq!(code, 201);
        let (code, body) = request(&s.url, "POST", pods, "application/json", named.as_bytes()).await;
        assert_eq!(code, 201, "{body}");
        let jobs = "/apis/batch/v1/namespaces/default/jobs";
        let job = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j"},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"x","command":["true"]}]}}}}"#;
        let (code, body) = request(&s.url, "POST", jobs, "application/json", job.as_bytes()).await;
        assert_eq!(code, 201, "{body}");
        let (_, body) = request(&s.url, "DELETE", &format!("{jobs}/j"), "application/json", b"").await;
        assert_eq!(json(&body)["metadata"]["finalizers"], serde_json::json!(["orphan"]), "{body}");
    });
}
