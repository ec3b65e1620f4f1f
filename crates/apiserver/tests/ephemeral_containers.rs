//! `pods/{name}/ephemeralcontainers` over raw HTTP, as `kubectl debug` uses it: GET gives the
//! pod, a strategic-merge PATCH and a PUT add containers and change nothing else, the
//! validation of rules 5.2-5.4 of `streaming-and-apply.md`, and a 404 that carries `details`
//! (kubectl dereferences `details.name`).

mod common;

use serde_json::{Value, json};

async fn send(url: &str, method: &str, path: &str, ct: &str, body: Value) -> (u16, Value) {
    let (code, _, body) = common::raw_request(url, method, path, ct, body.to_string().as_bytes()).await;
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const SMP: &str = "application/strategic-merge-patch+json";
const JSON: &str = "application/json";

#[tokio::test]
async fn ephemeral_containers_are_added_through_their_subresource_only() {
    let s = common::start();
    let url = s.url.clone();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}]}});

    // Rule 5.2: never on create.
    let mut with = pod.clone();
    with["spec"]["ephemeralContainers"] = json!([{"name": "d", "image": "busybox"}]);
    let (code, body) = send(&url, "POST", PODS, JSON, with).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("spec.ephemeralContainers: Forbidden: cannot be set on create"),
        "{body}"
    );

    let (code, _) = send(&url, "POST", PODS, JSON, pod).await;
    assert_eq!(code, 201);
    let sub = format!("{PODS}/web/ephemeralcontainers");

    // GET is the whole pod.
    let (code, got) = send(&url, "GET", &sub, JSON, Value::Null).await;
    assert_eq!((code, got["kind"].as_str()), (200, Some("Pod")));

    // What kubectl debug sends; a label in the same patch is dropped.
    let patch = json!({"metadata": {"labels": {"sneaky": "yes"}}, "spec": {"ephemeralContainers": [{
        "image": "busybox", "name": "debugger-abc", "resources": {}, "stdin": true,
        "targetContainerName": "app", "terminationMessagePolicy": "File", "tty": true}]}});
    let (code, out) = send(&url, "PATCH", &sub, SMP, patch).await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["kind"], "Pod");
    assert_eq!(out["spec"]["ephemeralContainers"][0]["name"], "debugger-abc");
    assert_eq!(out["spec"]["ephemeralContainers"][0]["imagePullPolicy"], "Always");
    assert_eq!(
        out["spec"]["ephemeralContainers"][0]["terminationMessagePath"],
        "/dev/termination-log"
    );
    assert!(out["metadata"]["labels"].get("sneaky").is_none(), "{out}");

    // A second one by PUT of the whole pod.
    let mut put = out.clone();
    put["spec"]["ephemeralContainers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "second", "image": "busybox"}));
    let (code, out) = send(&url, "PUT", &sub, JSON, put).await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["spec"]["ephemeralContainers"].as_array().unwrap().len(), 2);

    // Rule 5.3: existing ones may not be removed.
    let mut removed = out.clone();
    removed["spec"]["ephemeralContainers"] = json!([out["spec"]["ephemeralContainers"][0]]);
    let (code, body) = send(&url, "PUT", &sub, JSON, removed).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("existing ephemeral containers \"second\" may not be removed"),
        "{body}"
    );

    // Rule 5.4: only the allowed fields.
    let patch = json!({"spec": {"ephemeralContainers": [{"name": "probe", "image": "busybox",
        "readinessProbe": {"exec": {"command": ["true"]}}}]}});
    let (code, body) = send(&url, "PATCH", &sub, SMP, patch).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains(
            "spec.ephemeralContainers[2].readinessProbe: Forbidden: cannot be set for an Ephemeral Container"
        ),
        "{body}"
    );

    // The pod itself may not change them.
    let patch = json!({"spec": {"ephemeralContainers": [{"name": "third", "image": "busybox"}]}});
    let (code, body) = send(&url, "PATCH", &format!("{PODS}/web"), SMP, patch).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("pod updates may not change fields"),
        "{body}"
    );

    // Rule 5.7: a missing pod's 404 names it in `details`.
    let patch = json!({"spec": {"ephemeralContainers": [{"name": "d", "image": "busybox"}]}});
    let (code, body) = send(
        &url,
        "PATCH",
        &format!("{PODS}/missing/ephemeralcontainers"),
        SMP,
        patch,
    )
    .await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["details"]["name"], "missing", "{body}");
    assert_eq!(body["details"]["kind"], "pods", "{body}");
}
