//! Server-side apply as its clients see it: real kubectl (`apply --server-side`, conflicts and
//! `--force-conflicts`, a client-side apply migrating, `--show-managed-fields`, dry runs), raw
//! HTTP for kube-apiserver's exact refusals, and kube-rs `Patch::Apply`.
#![allow(
    clippy::disallowed_methods,
    reason = "synchronous test: kubectl runs as a process; the server has its own runtime"
)]

mod common;

use serde_json::{Value, json};

fn deployment(replicas: u32, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n{labels}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: nginx\n        image: nginx:1\n        command: [sleep, '3600']\n"
    )
}

fn get_json(s: &common::Server, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
    serde_json::from_str(&s.ok(&all)).unwrap()
}

/// The managedFields entry of `manager` with `operation`.
fn entry<'a>(object: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

#[test]
fn kubectl_server_side_apply_creates_changes_prunes_and_dry_runs() {
    need_kubectl!();
    let s = common::start();
    let out = s.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &deployment(1, "    app: web\n    tier: front"),
    );
    assert_eq!(out.trim(), "deployment.apps/web serverside-applied");
    let yaml = s.ok(&["get", "deployment", "web", "-o", "yaml", "--show-managed-fields"]);
    assert!(yaml.contains("manager: kubectl\n    operation: Apply"), "{yaml}");
    assert!(
        yaml.contains("f:replicas: {}") && yaml.contains("f:tier: {}"),
        "{yaml}"
    );
    assert!(yaml.contains("k:{\"name\":\"nginx\"}:"), "{yaml}");
    // Without the flag kubectl hides them.
    let plain = s.ok(&["get", "deployment", "web", "-o", "yaml"]);
    assert!(!plain.contains("managedFields"), "{plain}");

    // A change, and a dropped label: pruned, since nobody else owns it.
    s.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &deployment(2, "    app: web"),
    );
    let d = get_json(&s, &["deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["labels"], json!({"app": "web"}));
    let fields = &entry(&d, "kubectl", "Apply").unwrap()["fieldsV1"];
    assert!(
        fields["f:metadata"]["f:labels"].get("f:tier").is_none(),
        "{fields}"
    );

    // A server dry run answers and persists nothing.
    let out = s.ok_stdin(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        &deployment(7, "    app: web"),
    );
    assert!(out.contains("serverside-applied (server dry run)"), "{out}");
    let replicas = s.ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "2");

    // Applying the same configuration again is a no-op: the resourceVersion stays.
    let before = s.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    s.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &deployment(2, "    app: web"),
    );
    let after = s.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    assert_eq!(before, after);

    // Other writes are Updates under their manager: kubectl scale writes through `scale`.
    s.ok(&["label", "deployment", "web", "team=a"]);
    let d = get_json(&s, &["deployment", "web"]);
    let label = &entry(&d, "kubectl-label", "Update").unwrap()["fieldsV1"];
    assert_eq!(label, &json!({"f:metadata": {"f:labels": {"f:team": {}}}}));
}

#[test]
fn a_conflict_between_managers_is_printed_by_kubectl_and_force_conflicts_wins() {
    need_kubectl!();
    let s = common::start();
    s.ok_stdin(
        &["apply", "--server-side", "--field-manager=alice", "-f", "-"],
        &deployment(1, "    app: web"),
    );
    let err = s.fails(
        &["apply", "--server-side", "--field-manager=bob", "-f", "-"],
        Some(&deployment(3, "    app: web")),
    );
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "kubectl's hint: {err}");
    s.ok_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=bob",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &deployment(3, "    app: web"),
    );
    let d = get_json(&s, &["deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    let alice = &entry(&d, "alice", "Apply").unwrap()["fieldsV1"];
    assert!(alice["f:spec"].get("f:replicas").is_none(), "{alice}");
    let bob = &entry(&d, "bob", "Apply").unwrap()["fieldsV1"];
    assert!(bob["f:spec"]["f:replicas"].is_object(), "{bob}");
    // The fields both applied with equal values are shared.
    assert!(alice["f:spec"]["f:template"].is_object() && bob["f:spec"]["f:template"].is_object());
}

#[test]
fn client_side_apply_then_server_side_apply_migrates_without_conflicts_or_warnings() {
    need_kubectl!();
    let s = common::start();
    s.ok_stdin(&["apply", "-f", "-"], &deployment(1, "    app: web"));
    let d = get_json(&s, &["deployment", "web"]);
    assert!(entry(&d, "kubectl-client-side-apply", "Update").is_some(), "{d}");
    // A client-side apply still works over its own earlier apply.
    s.ok_stdin(&["apply", "-f", "-"], &deployment(2, "    app: web"));
    let out = s.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        Some(&deployment(4, "    app: web")),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr, "", "no conflict and no warning");
    let d = get_json(&s, &["deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 4);
    let applied = &entry(&d, "kubectl", "Apply").unwrap()["fieldsV1"];
    assert!(applied["f:spec"]["f:replicas"].is_object(), "{applied}");
    // The annotation follows the server-side apply.
    let annotation = d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap();
    let last: Value = serde_json::from_str(annotation).unwrap();
    assert_eq!(last["spec"]["replicas"], 4, "{annotation}");
    // And back: a client-side apply over it works.
    s.ok_stdin(&["apply", "-f", "-"], &deployment(5, "    app: web"));
    let replicas = s.ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "5");
}

async fn request(s: &common::Server, method: &str, path: &str, ct: &str, body: &str) -> (u16, Value) {
    let (code, _, body) = common::raw_request(&s.url, method, path, ct, body.as_bytes()).await;
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

const APPLY: &str = "application/apply-patch+yaml";
const CM: &str = "/api/v1/namespaces/default/configmaps/cm";

#[test]
fn apply_over_http_has_kube_apiservers_codes_and_messages() {
    let s = common::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"},"data":{"a":"1"}}"#;
        // 7.2: fieldManager is required.
        let (code, body) = request(&s, "PATCH", CM, APPLY, cm).await;
        assert_eq!(code, 422, "{body}");
        assert_eq!(
            body["message"],
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        );
        let (code, body) = request(&s, "PATCH", &format!("{CM}?fieldManager={}", "m".repeat(129)), APPLY, cm).await;
        assert_eq!(code, 422, "{body}");
        // 7.1: the CBOR media type is not served.
        let (code, _) = request(&s, "PATCH", &format!("{CM}?fieldManager=a"), "application/apply-patch+cbor", cm).await;
        assert_eq!(code, 415);
        // 7.4: create (201), then apply over it (200), with managedFields in the answer.
        let (code, body) = request(&s, "PATCH", &format!("{CM}?fieldManager=a"), APPLY, cm).await;
        assert_eq!(code, 201, "{body}");
        assert_eq!(body["metadata"]["managedFields"][0]["manager"], "a");
        assert_eq!(body["metadata"]["managedFields"][0]["operation"], "Apply");
        assert_eq!(body["metadata"]["managedFields"][0]["fieldsV1"], json!({"f:data": {"f:a": {}}}));
        // YAML bodies too.
        let yaml = "{apiVersion: v1, kind: ConfigMap, metadata: {name: cm}, data: {b: '2'}}";
        let (code, body) = request(&s, "PATCH", &format!("{CM}?fieldManager=b"), APPLY, yaml).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["data"], json!({"a": "1", "b": "2"}));
        let block = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  b: '2'\n";
        let (code, body) = request(&s, "PATCH", &format!("{CM}?fieldManager=b"), APPLY, block).await;
        assert_eq!((code, &body["data"]), (200, &json!({"a": "1", "b": "2"})), "{body}");
        // 7.10: a conflict, exactly.
        let other = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"},"data":{"a":"9","b":"9"}}"#;
        let (code, body) = request(&s, "PATCH", &format!("{CM}?fieldManager=c&force=false"), APPLY, other).await;
        assert_eq!(code, 409, "{body}");
        assert_eq!(
            body,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Apply failed with 2 conflicts: conflicts with \"a\":\n- .data.a\nconflicts with \"b\":\n- .data.b",
                "reason": "Conflict", "code": 409,
                "details": {"causes": [
                    {"reason": "FieldManagerConflict", "message": "conflict with \"a\"", "field": ".data.a"},
                    {"reason": "FieldManagerConflict", "message": "conflict with \"b\"", "field": ".data.b"}]}})
        );
        let (code, body) = request(&s, "PATCH", &format!("{CM}?fieldManager=c&force=true"), APPLY, other).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["data"], json!({"a": "9", "b": "9"}));
        // 7.3: the body must match the endpoint.
        let wrong_version = r#"{"apiVersion":"v2","kind":"ConfigMap","metadata":{"name":"cm"}}"#;
        let (code, body) = request(&s, "PATCH", &format!("{CM}?fieldManager=a"), APPLY, wrong_version).await;
        assert_eq!(code, 400);
        assert_eq!(
            body["message"],
            "Incorrect version specified in apply patch. Specified patch version: v2, expected: v1"
        );
        let managed = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","managedFields":[]}}"#;
        let (code, body) = request(&s, "PATCH", &format!("{CM}?fieldManager=a"), APPLY, managed).await;
        assert_eq!((code, body["message"].as_str()), (400, Some("metadata.managedFields must be nil")));
        let renamed = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other"}}"#;
        let (code, body) = request(&s, "PATCH", &format!("{CM}?fieldManager=a"), APPLY, renamed).await;
        assert_eq!(code, 400);
        assert_eq!(
            body["message"],
            "the name of the object (other) does not match the name on the URL (cm)"
        );
        // 7.2: force only for apply.
        let (code, body) = request(&s, "PATCH", &format!("{CM}?force=true"), "application/merge-patch+json", "{}").await;
        assert_eq!(code, 422);
        assert_eq!(
            body["message"],
            "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
        );
        // A merge patch is an Update of its fieldManager, taking the field from its applier.
        let (code, body) = request(&s, "PATCH", &format!("{CM}?fieldManager=editor"), "application/merge-patch+json", r#"{"data":{"a":"10"}}"#).await;
        assert_eq!(code, 200, "{body}");
        let entries = body["metadata"]["managedFields"].as_array().unwrap();
        let editor = entries.iter().find(|e| e["manager"] == "editor").unwrap();
        assert_eq!((editor["operation"].as_str(), &editor["fieldsV1"]), (Some("Update"), &json!({"f:data": {"f:a": {}}})));
        let c = entries.iter().find(|e| e["manager"] == "c").unwrap();
        assert_eq!(c["fieldsV1"], json!({"f:data": {"f:b": {}}}));
        // A dry-run apply answers what it would store and stores nothing.
        let dry = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"},"data":{"z":"1"}}"#;
        let (code, body) = request(&s, "PATCH", &format!("{CM}?fieldManager=d&dryRun=All"), APPLY, dry).await;
        assert_eq!((code, &body["data"]["z"]), (200, &json!("1")));
        let (_, stored) = request(&s, "GET", CM, "application/json", "").await;
        assert!(stored["data"].get("z").is_none(), "{stored}");
        // An apply through a subresource does not create.
        let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"status":{"phase":"Running"}}"#;
        let (code, _) = request(&s, "PATCH", "/api/v1/namespaces/default/pods/p/status?fieldManager=a", APPLY, pod).await;
        assert_eq!(code, 404);
    });
}

#[test]
fn status_is_applied_through_its_subresource_and_json_patch_can_rewrite_managed_fields() {
    let s = common::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pods = "/api/v1/namespaces/default/pods";
        let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"x","command":["sleep","1"]}]}}"#;
        let (code, body) = request(&s, "POST", &format!("{pods}?fieldManager=creator"), "application/json", pod).await;
        assert_eq!(code, 201, "{body}");
        let creator = &body["metadata"]["managedFields"][0];
        assert_eq!(creator["manager"], "creator");
        assert!(creator["fieldsV1"].get("f:status").is_none(), "the main resource writes no status: {creator}");
        let status = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#;
        let (code, body) = request(&s, "PATCH", &format!("{pods}/p/status?fieldManager=kubelet"), APPLY, status).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"]["conditions"][0]["type"], "Ready");
        let entry = body["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["manager"] == "kubelet")
            .unwrap();
        assert_eq!(entry["subresource"], "status");
        assert_eq!(
            entry["fieldsV1"],
            json!({"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}}}})
        );
        // A JSON patch that tests the resourceVersion and replaces managedFields (kubectl's
        // migration to server-side apply) is stored as written.
        let rv = body["metadata"]["resourceVersion"].as_str().unwrap();
        let stale = json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
            {"op": "replace", "path": "/metadata/managedFields", "value": []}]);
        let (code, _) = request(&s, "PATCH", &format!("{pods}/p"), "application/json-patch+json", &stale.to_string()).await;
        assert_eq!(code, 400, "a failed test changes nothing");
        let only = json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}}}}}}]);
        let migrate = json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "replace", "path": "/metadata/managedFields", "value": only}]);
        let (code, body) = request(&s, "PATCH", &format!("{pods}/p"), "application/json-patch+json", &migrate.to_string()).await;
        assert_eq!(code, 200, "{body}");
        let entries = body["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0]["fieldsV1"], only[0]["fieldsV1"]);
    });
}

#[test]
fn kube_rs_patch_apply_creates_updates_conflicts_and_forces() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};
    let s = common::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = kube::Config::new(s.url.parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let cm = |value: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube"}, "data": {"key": value}})
        };
        let mine = PatchParams::apply("my-manager");
        let created = api.patch("kube", &mine, &Patch::Apply(cm("1"))).await.unwrap();
        assert_eq!(created.data.unwrap()["key"], "1");
        let fields = created.metadata.managed_fields.unwrap();
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].manager.as_deref(), Some("my-manager"));
        assert_eq!(fields[0].operation.as_deref(), Some("Apply"));
        let updated = api.patch("kube", &mine, &Patch::Apply(cm("2"))).await.unwrap();
        assert_eq!(updated.data.unwrap()["key"], "2");
        let theirs = PatchParams::apply("their-manager");
        let err = api.patch("kube", &theirs, &Patch::Apply(cm("3"))).await.unwrap_err();
        let kube::Error::Api(status) = err else {
            panic!("not an API error: {err}")
        };
        assert_eq!(status.code, 409);
        assert_eq!(
            status.message,
            "Apply failed with 1 conflict: conflict with \"my-manager\": .data.key"
        );
        let forced = api
            .patch("kube", &theirs.clone().force(), &Patch::Apply(cm("3")))
            .await
            .unwrap();
        assert_eq!(forced.data.unwrap()["key"], "3");
        let owners: Vec<String> = forced
            .metadata
            .managed_fields
            .unwrap()
            .into_iter()
            .filter_map(|e| e.manager)
            .collect();
        assert_eq!(owners, ["their-manager"], "my-manager owned nothing else");
    });
}

#[tokio::test]
async fn a_node_cannot_create_a_pod_through_apply_nor_apply_to_anothers() {
    use http_body_util::{BodyExt, Full};
    use podvisor_apiserver::authz::Role;
    use tower_service::Service;
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(podvisor_store::RedbStore::open(dir.path().join("store.redb")).unwrap());
    let server = podvisor_apiserver::ApiServer::new(store, podvisor_apiserver::ApiServerConfig::default());
    server.bootstrap().await.unwrap();
    let mut handler = server.handler();
    let mut send = async |role: Option<&str>, name: &str, node_name: &str| {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "x", "command": ["sleep", "1"]}]}});
        let mut req = http::Request::builder()
            .method("PATCH")
            .uri(format!("/api/v1/namespaces/default/pods/{name}?fieldManager=m"))
            .header("content-type", APPLY)
            .body(Full::new(bytes::Bytes::from(pod.to_string())))
            .unwrap();
        if let Some(node) = role {
            req.extensions_mut().insert(Role::Node(node.into()));
        }
        let resp = handler.call(req).await.unwrap();
        let code = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    };
    let (code, body) = send(Some("n1"), "p", "n1").await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("can only modify pods with spec.nodeName set to itself"),
        "{body}"
    );
    // An administrator's pod bound elsewhere: not n1's to apply to either.
    assert_eq!(send(None, "q", "n2").await.0, 201);
    assert_eq!(send(Some("n1"), "q", "n2").await.0, 403);
    // Bound to n1: n1 applies to it.
    assert_eq!(send(None, "r", "n1").await.0, 201);
    let (code, body) = send(Some("n1"), "r", "n1").await;
    assert_eq!(code, 200, "{body}");
}

#[test]
fn service_ports_are_keyed_by_port_and_protocol() {
    need_kubectl!();
    let s = common::start();
    let service = |ports: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: dns\nspec:\n  selector:\n    app: dns\n  ports:\n{ports}"
        )
    };
    let both = "  - name: dns\n    port: 53\n    protocol: UDP\n  - name: dns-tcp\n    port: 53\n";
    s.ok_stdin(&["apply", "--server-side", "-f", "-"], &service(both));
    let svc = get_json(&s, &["service", "dns"]);
    assert_eq!(svc["spec"]["ports"].as_array().unwrap().len(), 2, "{svc}");
    let ports = &entry(&svc, "kubectl", "Apply").unwrap()["fieldsV1"]["f:spec"]["f:ports"];
    assert!(
        ports["k:{\"port\":53,\"protocol\":\"UDP\"}"].is_object(),
        "{ports}"
    );
    assert!(
        ports["k:{\"port\":53,\"protocol\":\"TCP\"}"].is_object(),
        "defaulted protocol: {ports}"
    );
    // Dropping the TCP port prunes exactly that element.
    s.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &service("  - name: dns\n    port: 53\n    protocol: UDP\n"),
    );
    let svc = get_json(&s, &["service", "dns"]);
    let ports = svc["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "{svc}");
    assert_eq!(ports[0]["protocol"], "UDP");
}
