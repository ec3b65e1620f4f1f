//! `pods/ephemeralcontainers` writes (`streaming-and-apply.md` rules 5.2-5.4).

use super::*;

fn debugger(extra: J) -> J {
    with(
        json!({"name": "debugger", "image": "busybox", "targetContainerName": "a"}),
        extra,
    )
}

fn with_ephemeral(p: &Pod, list: J) -> Pod {
    let mut v = serde_json::to_value(p).unwrap();
    v["spec"]["ephemeralContainers"] = list;
    serde_json::from_value(v).unwrap()
}

fn update_errors(old: &Pod, new: &Pod) -> Vec<String> {
    validate_ephemeral_containers_update(old, new)
        .err()
        .map(|e| e.messages())
        .unwrap_or_default()
}

#[test]
fn a_pod_is_never_created_with_ephemeral_containers() {
    let p = with_ephemeral(
        &pod(json!({"containers": [app("a")]})),
        json!([debugger(json!({}))]),
    );
    assert!(
        errors(&p).contains(&"spec.ephemeralContainers: Forbidden: cannot be set on create".to_string()),
        "{:?}",
        errors(&p)
    );
}

#[test]
fn ephemeral_containers_are_added_never_removed_or_changed() {
    let old = pod(json!({"containers": [app("a")]}));
    let one = with_ephemeral(&old, json!([debugger(json!({}))]));
    assert_eq!(update_errors(&old, &one), Vec::<String>::new());
    let two = with_ephemeral(
        &old,
        json!([debugger(json!({})), debugger(json!({"name": "second"}))]),
    );
    assert_eq!(update_errors(&one, &two), Vec::<String>::new());

    let removed = update_errors(&two, &one);
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(
        removed[0].starts_with(
            "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"second\" may not be removed"
        ),
        "{removed:?}"
    );
    let changed = with_ephemeral(&old, json!([debugger(json!({"image": "alpine"}))]));
    let errs = update_errors(&one, &changed);
    assert!(
        errs[0].contains("existing ephemeral containers \"debugger\" may not be changed"),
        "{errs:?}"
    );
}

#[test]
fn an_ephemeral_container_has_only_the_allowed_fields() {
    let old = pod(json!({"containers": [app("a")], "volumes": [{"name": "data", "emptyDir": {}}]}));
    let bad = with_ephemeral(
        &old,
        json!([debugger(json!({
            "name": "a",
            "image": "",
            "ports": [{"containerPort": 80}],
            "readinessProbe": {"exec": {"command": ["true"]}},
            "volumeMounts": [{"name": "data", "mountPath": "/d", "subPath": "x"}, {"name": "nope", "mountPath": "/n"}],
            "targetContainerName": "missing",
            "resources": {}
        }))]),
    );
    let errs = update_errors(&old, &bad);
    assert_eq!(
        errs,
        [
            "spec.ephemeralContainers[0].name: Duplicate value: \"a\"",
            "spec.ephemeralContainers[0].image: Required value",
            "spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container",
            "spec.ephemeralContainers[0].readinessProbe: Forbidden: cannot be set for an Ephemeral Container",
            "spec.ephemeralContainers[0].volumeMounts[0].subPath: Forbidden: cannot be set for an Ephemeral Container",
            "spec.ephemeralContainers[0].volumeMounts[1].name: Not found: \"nope\"",
            "spec.ephemeralContainers[0].targetContainerName: Not found: \"missing\"",
        ]
    );
    // An empty `resources` (what kubectl debug sends) is not "set".
    let ok = with_ephemeral(&old, json!([debugger(json!({"resources": {}}))]));
    assert_eq!(update_errors(&old, &ok), Vec::<String>::new());
}

#[test]
fn a_mirror_pod_takes_no_ephemeral_containers() {
    let mut old = pod(json!({"containers": [app("a")]}));
    old.metadata.annotations = Some([("kubernetes.io/config.mirror".to_string(), "x".to_string())].into());
    let new = with_ephemeral(&old, json!([debugger(json!({}))]));
    let errs = update_errors(&old, &new);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].contains("static pods do not support ephemeral containers"),
        "{errs:?}"
    );
}
