//! Real kubectl against the OpenAPI documents: `explain` from the v3 schemas, a `kind: List`
//! applied with default (strict) validation through the v2 definitions, server-side strict
//! validation of a single object, and `create -f` unchanged.

mod common;

const LIST: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings}
  data: {a: "1"}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web}
  spec:
    selector: {matchLabels: {app: web}}
    template:
      metadata: {labels: {app: web}}
      spec:
        containers: [{name: app, image: busybox, command: [sleep, "3600"]}]
"#;

#[test]
fn explain_reads_the_served_schemas() {
    need_kubectl!();
    let s = common::start();
    let out = s.ok(&["explain", "pod.spec.containers"]);
    assert!(out.contains("KIND:       Pod"), "{out}");
    assert!(out.contains("FIELD: containers <[]Container>"), "{out}");
    assert!(out.contains("List of containers belonging to the pod"), "{out}");
    assert!(out.contains("name\t<string> -required-"), "{out}");
    assert!(out.contains("env\t<[]EnvVar>"), "{out}");
    let out = s.ok(&["explain", "deployment.spec.strategy", "--recursive"]);
    assert!(out.contains("GROUP:      apps"), "{out}");
    assert!(out.contains("FIELD: strategy <DeploymentStrategy>"), "{out}");
    // Nested fields, recursively: rollingUpdate's own fields and the enum-like type.
    for field in [
        "rollingUpdate\t<RollingUpdateDeployment>",
        "maxSurge\t<IntOrString>",
        "maxUnavailable",
        "type\t<string>",
    ] {
        assert!(out.contains(field), "no {field:?} in {out}");
    }
    // A kind of another group and a cluster-scoped one.
    assert!(
        s.ok(&["explain", "cronjob.spec.jobTemplate.spec.template.spec"])
            .contains("restartPolicy")
    );
    assert!(s.ok(&["explain", "node.spec"]).contains("podCIDR"));
    let missing = s.fails(&["explain", "pod.spec.nosuchfield"], None);
    assert!(missing.contains("nosuchfield"), "{missing}");
}

#[test]
fn a_list_is_validated_and_applied() {
    need_kubectl!();
    let s = common::start();
    let out = s.ok_stdin(&["apply", "-f", "-"], LIST);
    assert!(out.contains("configmap/settings created"), "{out}");
    assert!(out.contains("deployment.apps/web created"), "{out}");
    assert!(
        s.ok(&["get", "deployment", "web", "-o", "name"])
            .contains("deployment.apps/web")
    );
    // A List's items are validated client-side against /openapi/v2's definitions.
    let typo = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: y}\n  dataa: {a: b}\n";
    let err = s.fails(&["apply", "-f", "-"], Some(typo));
    assert!(
        err.contains("unknown field \"dataa\" in io.k8s.api.core.v1.ConfigMap"),
        "{err}"
    );
    assert!(s.fails(&["get", "configmap", "y"], None).contains("not found"));
}

#[test]
fn strict_validation_is_the_servers_and_create_still_works() {
    need_kubectl!();
    let s = common::start();
    let unknown = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\nspec: {foo: 1}\n";
    let err = s.fails(&["apply", "--validate=strict", "-f", "-"], Some(unknown));
    assert!(
        err.contains("Error from server (BadRequest)")
            && err.contains(
                "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"spec\""
            ),
        "{err}"
    );
    let nested = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  foo: 1\n  selector: {matchLabels: {app: d}}\n  template:\n    metadata: {labels: {app: d}}\n    spec:\n      containers: [{name: app, image: busybox, command: [sleep, '1']}]\n";
    let err = s.fails(&["apply", "-f", "-"], Some(nested));
    assert!(
        err.contains(
            "error when creating \"STDIN\": Deployment in version \"v1\" cannot be handled as a Deployment: \
             strict decoding error: unknown field \"spec.foo\""
        ),
        "{err}"
    );
    // Warn: created, with the server's warning.
    let out = s.kubectl_stdin(&["apply", "--validate=warn", "-f", "-"], Some(nested));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("unknown field \"spec.foo\""), "{stderr}");
    let ok = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: b}\n";
    assert!(
        s.ok_stdin(&["create", "-f", "-"], ok)
            .contains("configmap/plain created")
    );
}

/// A Deployment whose one container has `env`.
fn deployment(env: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: merged}}\nspec:\n  selector: {{matchLabels: {{app: m}}}}\n  template:\n    metadata: {{labels: {{app: m}}}}\n    spec:\n      containers:\n      - name: app\n        image: busybox\n        command: [sleep, '3600']\n        env: {env}\n"
    )
}

#[test]
fn client_side_apply_merges_lists_by_the_documents_merge_keys() {
    need_kubectl!();
    let s = common::start();
    s.ok_stdin(
        &["apply", "-f", "-"],
        &deployment("[{name: A, value: '1'}, {name: B, value: '2'}]"),
    );
    // The second apply is a strategic merge patch kubectl computes from the apps/v1 document's
    // patch strategies and merge keys: B removed by name, C added.
    let out = s.kubectl_stdin(
        &["apply", "-f", "-", "-v=6"],
        Some(&deployment("[{name: A, value: '1'}, {name: C, value: '3'}]")),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("/openapi/v3/apis/apps/v1?hash="),
        "kubectl read the apps/v1 document: {log}"
    );
    assert!(log.contains("PATCH"), "{log}");
    let env = s.ok(&[
        "get",
        "deployment",
        "merged",
        "-o",
        "jsonpath={range .spec.template.spec.containers[0].env[*]}{.name}={.value} {end}",
    ]);
    assert_eq!(env.trim(), "A=1 C=3");
}
