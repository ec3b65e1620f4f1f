//! Real kubectl against the server: apply, create, get (table, wide, yaml, json, selectors),
//! label, annotate, protobuf generator commands, invalid manifests, delete.

mod common;

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  containers:\n  - name: app\n    image: busybox\n    command: [sleep, '3600']\n";

#[test]
fn apply_get_label_annotate_delete() {
    need_kubectl!();
    let s = common::start();
    let out = s.ok_stdin(&["apply", "-f", "-"], POD);
    assert!(out.contains("pod/web created"), "{out}");
    let out = s.ok_stdin(&["apply", "-f", "-"], POD);
    assert!(out.contains("pod/web unchanged"), "{out}");
    let changed = POD.replace("{app: web}", "{app: web, tier: front}");
    let out = s.ok_stdin(&["apply", "-f", "-"], &changed);
    assert!(out.contains("pod/web configured"), "{out}");

    let table = s.ok(&["get", "pods"]);
    assert!(
        table.contains("NAME")
            && table.contains("READY")
            && table.contains("STATUS")
            && table.contains("RESTARTS")
            && table.contains("AGE"),
        "{table}"
    );
    assert!(table.contains("web"), "{table}");
    let wide = s.ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.contains("NODE") && wide.contains("NOMINATED NODE") && wide.contains("READINESS GATES"),
        "{wide}"
    );
    let yaml = s.ok(&["get", "pod", "web", "-o", "yaml"]);
    assert!(
        yaml.contains("tier: front") && yaml.contains("uid:") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    let json = s.ok(&["get", "po", "web", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["spec"]["containers"][0]["name"], "app");
    assert!(s.ok(&["get", "pods", "-l", "tier=front"]).contains("web"));
    assert!(!s.ok(&["get", "pods", "-l", "tier!=front"]).contains("web"));
    assert!(
        s.ok(&["get", "pods", "-l", "tier in (front,back)"])
            .contains("web")
    );
    assert!(
        s.ok(&["get", "pods", "--field-selector", "metadata.name=web"])
            .contains("web")
    );
    assert!(
        !s.ok(&["get", "pods", "--field-selector", "status.phase=Running"])
            .contains("web")
    );

    s.ok(&["label", "pod", "web", "color=blue"]);
    s.ok(&["annotate", "pod", "web", "note=hello"]);
    let yaml = s.ok(&["get", "pod", "web", "-o", "yaml"]);
    assert!(
        yaml.contains("color: blue") && yaml.contains("note: hello"),
        "{yaml}"
    );

    // No nodeName: deleted at once.
    let out = s.ok(&["delete", "pod", "web"]);
    assert!(out.contains("pod \"web\" deleted"), "{out}");
    let err = s.fails(&["get", "pod", "web"], None);
    assert!(err.contains("pods \"web\" not found"), "{err}");
}

#[test]
fn create_namespace_and_service_with_protobuf_bodies() {
    need_kubectl!();
    let s = common::start();
    assert!(
        s.ok(&["create", "namespace", "x"])
            .contains("namespace/x created")
    );
    assert!(
        s.ok(&["create", "service", "clusterip", "s", "--tcp=80:8080"])
            .contains("service/s created")
    );
    let svc = s.ok(&["get", "svc"]);
    assert!(
        svc.contains("CLUSTER-IP") && svc.contains("80/TCP") && svc.contains("ClusterIP"),
        "{svc}"
    );
    let ns = s.ok(&["get", "ns"]);
    assert!(
        ns.contains("default") && ns.contains("kube-system") && ns.contains("x") && ns.contains("Active"),
        "{ns}"
    );
    let err = s.fails(&["create", "namespace", "x"], None);
    assert!(
        err.contains("AlreadyExists") || err.contains("already exists"),
        "{err}"
    );
}

#[test]
fn invalid_manifests_show_kubernetes_errors() {
    need_kubectl!();
    let s = common::start();
    let bad = POD.replace("name: app", "name: App_1");
    let err = s.fails(&["create", "-f", "-"], Some(&bad));
    assert!(
        err.contains("The Pod \"web\" is invalid") && err.contains("spec.containers[0].name: Invalid value"),
        "{err}"
    );
    let unknown = POD.replace("image: busybox", "image: busybox\n    imagee: x");
    let err = s.fails(&["apply", "-f", "-"], Some(&unknown));
    assert!(
        err.contains("unknown field \"spec.containers[0].imagee\""),
        "{err}"
    );
}
