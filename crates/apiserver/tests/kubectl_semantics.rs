//! Real kubectl against the server, for kube-apiserver semantics a user relies on: server-side
//! dry runs persist nothing, fresh pods have a status, errors carry `details`, events through
//! both APIs, defaulting, version, and namespace termination.
#![allow(
    clippy::disallowed_methods,
    reason = "synchronous test: kubectl runs as a process; the server has its own runtime"
)]

mod common;

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: NAME\nspec:\n  NODE\n  containers:\n  - name: app\n    image: busybox\n    command: [sleep, '3600']\n";

fn pod(name: &str, node: Option<&str>) -> String {
    let node = node.map_or(String::new(), |n| format!("nodeName: {n}"));
    POD.replace("NAME", name).replace("NODE", &node)
}

fn exists(s: &common::Server, args: &[&str]) -> bool {
    s.kubectl(args).status.success()
}

#[test]
fn server_dry_runs_persist_nothing() {
    need_kubectl!();
    let s = common::start();
    s.ok(&["create", "configmap", "a", "--from-literal=k=v"]);
    s.ok(&["create", "configmap", "b", "--from-literal=k=v"]);
    s.ok_stdin(&["create", "-f", "-"], &pod("loose", None));
    s.ok_stdin(&["create", "-f", "-"], &pod("bound", Some("n1")));
    s.ok(&["create", "namespace", "scratch"]);

    let out = s.ok(&["delete", "configmap", "a", "--dry-run=server"]);
    assert!(out.contains("configmap \"a\" deleted (server dry run)"), "{out}");
    assert!(
        exists(&s, &["get", "configmap", "a"]),
        "a dry-run delete removed the ConfigMap"
    );
    s.ok(&["delete", "pod", "loose", "--dry-run=server"]);
    assert!(
        exists(&s, &["get", "pod", "loose"]),
        "a dry-run delete removed the pod"
    );
    s.ok(&["delete", "pod", "bound", "--dry-run=server"]);
    let marked = s.ok(&[
        "get",
        "pod",
        "bound",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert_eq!(marked, "", "a dry-run graceful delete marked the pod");
    s.ok(&["delete", "namespace", "scratch", "--dry-run=server"]);
    let phase = s.ok(&["get", "namespace", "scratch", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Active", "a dry-run delete touched the namespace");
    s.ok(&["delete", "configmaps", "--all", "--dry-run=server"]);
    assert!(exists(&s, &["get", "configmap", "a"]) && exists(&s, &["get", "configmap", "b"]));
    // deletecollection itself.
    s.ok(&[
        "delete",
        "--raw",
        "/api/v1/namespaces/default/configmaps?dryRun=All",
    ]);
    assert!(exists(&s, &["get", "configmap", "a"]) && exists(&s, &["get", "configmap", "b"]));

    // A dry-run patch removing the last finalizer of an object being deleted keeps it.
    s.ok(&[
        "patch",
        "configmap",
        "a",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/keep"]}}"#,
    ]);
    s.ok(&["delete", "configmap", "a", "--wait=false"]);
    s.ok(&[
        "patch",
        "configmap",
        "a",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        "--dry-run=server",
    ]);
    let fins = s.ok(&["get", "configmap", "a", "-o", "jsonpath={.metadata.finalizers}"]);
    assert!(fins.contains("example.com/keep"), "{fins}");
    // Updates and creates in dry run too.
    s.ok(&["label", "configmap", "b", "x=y", "--dry-run=server"]);
    assert_eq!(
        s.ok(&["get", "configmap", "b", "-o", "jsonpath={.metadata.labels}"]),
        ""
    );
    s.ok(&["create", "configmap", "c", "--dry-run=server"]);
    assert!(!exists(&s, &["get", "configmap", "c"]));
    // And for real, the finalizer removal completes the deletion.
    s.ok(&[
        "patch",
        "configmap",
        "a",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(!exists(&s, &["get", "configmap", "a"]));
}

#[test]
fn new_pods_are_pending_with_their_qos_class() {
    need_kubectl!();
    let s = common::start();
    let with = |name: &str, resources: &str| {
        let manifest = pod(name, None).replace(
            "    command:",
            &format!("    resources: {resources}\n    command:"),
        );
        s.ok_stdin(&["create", "-f", "-"], &manifest);
        s.ok(&[
            "get",
            "pod",
            name,
            "-o",
            "jsonpath={.status.phase} {.status.qosClass}",
        ])
    };
    assert_eq!(with("plain", "{}"), "Pending BestEffort");
    assert_eq!(
        with("exact", "{limits: {cpu: 100m, memory: 64Mi}}"),
        "Pending Guaranteed"
    );
    assert_eq!(with("some", "{requests: {cpu: 100m}}"), "Pending Burstable");
    assert_eq!(
        with("storage-only", "{requests: {ephemeral-storage: 1Gi}}"),
        "Pending BestEffort"
    );
    let table = s.ok(&["get", "pods"]);
    let plain = table
        .lines()
        .find(|l| l.starts_with("plain "))
        .unwrap_or_default();
    assert_eq!(plain.split_whitespace().nth(2), Some("Pending"), "{table}");
}

#[test]
fn errors_carry_details_and_unserved_endpoints_say_so() {
    need_kubectl!();
    let s = common::start();
    s.ok_stdin(&["create", "-f", "-"], &pod("web", None));
    // kubectl debug patches pods/ephemeralcontainers; on a 404 it reads the Status's
    // details without a nil check: a missing pod's 404 names it, and kubectl says so.
    s.ok(&["debug", "web", "--image=busybox", "--container=dbg"]);
    let image = s.ok(&[
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.spec.ephemeralContainers[0].image}",
    ]);
    assert_eq!(image, "busybox");
    let out = s.kubectl(&["debug", "gone", "--image=busybox"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !err.contains("panic"), "{err}");
    assert!(err.contains("pods \"gone\" not found"), "{err}");
    // An endpoint not served says which.
    let out = s.kubectl(&["get", "--raw", "/api/v1/namespaces/default/pods/web/proxy"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("podvisor does not serve pods/proxy"), "{err}");
    let json = s.ok(&["get", "--raw", "/api/v1/namespaces/default/pods/web"]);
    assert!(json.contains("\"name\":\"web\""), "{json}");
    let out = s.kubectl(&["get", "--raw", "/api/v1/namespaces/default/pods/gone"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pods \"gone\" not found"), "{err}");
    let err = s.fails(&["delete", "namespace", "default"], None);
    assert!(
        err.contains("namespaces \"default\" is forbidden: this namespace may not be deleted"),
        "{err}"
    );
}

#[test]
fn defaults_for_secrets_and_services_and_one_version() {
    need_kubectl!();
    let s = common::start();
    // kubectl's generator sends protobuf, where the unset type is "".
    s.ok(&["create", "secret", "generic", "creds", "--from-literal=a=b"]);
    assert_eq!(
        s.ok(&["get", "secret", "creds", "-o", "jsonpath={.type}"]),
        "Opaque"
    );
    let table = s.ok(&["get", "secrets"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("creds ") && l.contains("Opaque")),
        "{table}"
    );
    s.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let spec = s.ok(&[
        "get",
        "service",
        "web",
        "-o",
        "jsonpath={.spec.ipFamilies} {.spec.ipFamilyPolicy} {.spec.internalTrafficPolicy}",
    ]);
    assert_eq!(spec, r#"["IPv4"] SingleStack Cluster"#);
    s.ok(&["create", "service", "nodeport", "np", "--tcp=80:8080"]);
    let policy = s.ok(&[
        "get",
        "service",
        "np",
        "-o",
        "jsonpath={.spec.externalTrafficPolicy}",
    ]);
    assert_eq!(policy, "Cluster");
    let version: serde_json::Value =
        serde_json::from_str(&s.ok(&["version", "-o", "json"])).expect("kubectl version -o json");
    let server = &version["serverVersion"];
    assert_eq!(server["gitVersion"], podvisor_apiserver::discovery::GIT_VERSION);
    assert!(
        server["gitVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.35.")),
        "{server}"
    );
    assert_eq!((&server["major"], &server["minor"]), (&"1".into(), &"35".into()));
}

const CORE_EVENT: &str = r#"
apiVersion: v1
kind: Event
metadata: {name: core-made}
involvedObject: {apiVersion: v1, kind: Pod, name: web, namespace: default}
reason: Pulled
message: made through core/v1
type: Normal
source: {component: kubelet, host: n1}
firstTimestamp: "2026-01-01T00:00:00Z"
lastTimestamp: "2026-01-01T00:00:00Z"
count: 1
"#;

const EVENTS_V1_EVENT: &str = r#"
apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: v1-made}
eventTime: "2026-01-01T00:00:01.000000Z"
regarding: {apiVersion: v1, kind: Pod, name: web, namespace: default}
reason: Scaled
action: Scaling
note: made through events.k8s.io
type: Warning
reportingController: example.com/controller
reportingInstance: controller-1
"#;

#[test]
fn events_are_one_set_of_objects_through_both_apis() {
    need_kubectl!();
    let s = common::start();
    s.ok_stdin(&["create", "-f", "-"], CORE_EVENT);
    s.ok_stdin(&["create", "-f", "-"], EVENTS_V1_EVENT);
    let v1 = s.ok(&["get", "events.v1.events.k8s.io", "-o", "name"]);
    assert!(v1.contains("core-made") && v1.contains("v1-made"), "{v1}");
    let note = s.ok(&[
        "get",
        "events.v1.events.k8s.io",
        "core-made",
        "-o",
        "jsonpath={.note}|{.regarding.name}|{.deprecatedSource.component}|{.deprecatedCount}",
    ]);
    assert_eq!(note, "made through core/v1|web|kubelet|1");
    let core = s.ok(&[
        "get",
        "events.v1.",
        "v1-made",
        "-o",
        "jsonpath={.message}|{.involvedObject.name}|{.reportingComponent}|{.reportingInstance}|{.action}",
    ]);
    assert_eq!(
        core,
        "made through events.k8s.io|web|example.com/controller|controller-1|Scaling"
    );
    let table = s.ok(&["get", "events"]);
    assert!(
        table.contains("made through events.k8s.io") && table.contains("pod/web"),
        "{table}"
    );
    // A patch through events.k8s.io shows through core.
    s.ok(&[
        "patch",
        "events.v1.events.k8s.io",
        "v1-made",
        "--type=merge",
        "-p",
        r#"{"note":"patched"}"#,
    ]);
    assert_eq!(
        s.ok(&["get", "events.v1.", "v1-made", "-o", "jsonpath={.message}"]),
        "patched"
    );
    let watched = s.ok(&[
        "get",
        "--raw",
        "/apis/events.k8s.io/v1/namespaces/default/events?watch=1&timeoutSeconds=1",
    ]);
    assert!(
        watched.contains(r#""note":"made through core/v1""#) && !watched.contains(r#""message":"#),
        "{watched}"
    );
    // Created through either API, events have a creation time to sort by.
    let sorted = s.ok(&[
        "get",
        "events",
        "--sort-by=.metadata.creationTimestamp",
        "-o",
        "name",
    ]);
    assert_eq!(sorted.lines().count(), 2, "{sorted}");
    let listed = s.ok(&["get", "events.v1.events.k8s.io"]);
    assert!(
        listed.contains("made through core/v1") && listed.contains("pod/web"),
        "{listed}"
    );
    // Selected by either version's field names.
    for selector in ["regarding.name=web", "involvedObject.name=web"] {
        let selected = s.ok(&[
            "get",
            "events.v1.events.k8s.io",
            "--field-selector",
            selector,
            "-o",
            "name",
        ]);
        assert_eq!(selected.lines().count(), 2, "{selector}: {selected}");
    }
    let by_controller = s.ok(&[
        "get",
        "events.v1.events.k8s.io",
        "--field-selector",
        "reportingController=example.com/controller",
        "-o",
        "name",
    ]);
    assert_eq!(by_controller.trim(), "event.events.k8s.io/v1-made");
    // Created through events.k8s.io/v1, an Event needs that version's fields.
    let bare = EVENTS_V1_EVENT
        .replace("v1-made", "bare")
        .replace("action: Scaling\n", "");
    let err = s.fails(&["create", "-f", "-"], Some(&bare));
    assert!(err.contains("action: Required value"), "{err}");
    s.ok(&["delete", "events.v1.events.k8s.io", "core-made"]);
    assert!(!exists(&s, &["get", "events.v1.", "core-made"]));
}

/// The API server's half of namespace termination; the namespace controller's (contents
/// deleted, conditions, the namespace removed) is tested in `podvisor-controllers`
/// (`in_process::a_deleted_namespace_terminates_its_contents_through_their_normal_paths`).
#[test]
fn a_deleted_namespace_is_terminating_and_refuses_creates() {
    need_kubectl!();
    let s = common::start();
    s.ok(&["create", "namespace", "t"]);
    s.ok(&["create", "-n", "t", "configmap", "plain"]);

    let out = s.ok(&["delete", "namespace", "t", "--wait=false"]);
    assert!(out.contains("namespace \"t\" deleted"), "{out}");
    let ns = s.ok(&[
        "get",
        "namespace",
        "t",
        "-o",
        "jsonpath={.status.phase} {.spec.finalizers}",
    ]);
    assert_eq!(ns, r#"Terminating ["kubernetes"]"#);
    let table = s.ok(&["get", "namespaces"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("t ") && l.contains("Terminating")),
        "{table}"
    );
    // Creates are refused while it terminates.
    let err = s.fails(&["create", "-n", "t", "configmap", "new"], None);
    assert!(
        err.contains("configmaps \"new\" is forbidden: unable to create new content in namespace t because it is being terminated"),
        "{err}"
    );
}
