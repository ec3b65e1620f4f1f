//! Static pods follow their manifest directory: files added, changed and removed.

use podvisor_kubelet::static_pods::StaticPods;

fn write(dir: &std::path::Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
    // Make sure the modification time moves even on coarse-grained file systems.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
    let f = std::fs::File::options().write(true).open(dir.join(file)).unwrap();
    f.set_modified(later).unwrap();
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - {name: app, image: host, command: [sleep, '60']}\n";

#[test]
fn added_changed_and_removed_files_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let mut pods = StaticPods::new(dir.path());
    assert!(pods.scan().added.is_empty());

    write(dir.path(), "web.yaml", POD);
    let changes = pods.scan();
    assert_eq!(changes.added.len(), 1);
    let pod = &changes.added[0];
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(
        pod.spec.as_ref().unwrap().restart_policy.as_deref(),
        Some("Always"),
        "defaulted"
    );
    let uid = pod.metadata.uid.clone().unwrap();

    let unchanged = pods.scan();
    assert!(unchanged.added.is_empty() && unchanged.removed.is_empty());

    write(dir.path(), "web.yaml", &POD.replace("'60'", "'120'"));
    let changes = pods.scan();
    assert_eq!(
        changes.removed,
        std::slice::from_ref(&uid),
        "an edited manifest replaces the pod"
    );
    assert_eq!(changes.added.len(), 1);
    let new_uid = changes.added[0].metadata.uid.clone().unwrap();
    assert_ne!(new_uid, uid);

    std::fs::remove_file(dir.path().join("web.yaml")).unwrap();
    assert_eq!(pods.scan().removed, [new_uid]);
}

#[test]
fn bad_files_are_reported_and_do_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yaml", POD);
    write(
        dir.path(),
        "broken.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: Bad}\nspec:\n  containers:\n  - {name: app, image: host}\n",
    );
    write(dir.path(), "dup.yml", POD);
    write(dir.path(), "notes.txt", "not a manifest");
    let mut pods = StaticPods::new(dir.path());
    let changes = pods.scan();
    assert_eq!(changes.added.len(), 1);
    let errors: Vec<String> = changes.errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("broken.yaml") && e.contains("spec.containers[0].command: Required value"))
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("dup.yml") && e.contains("already defined"))
    );
}

#[test]
fn the_same_manifest_gives_the_same_uid() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "web.yaml", POD);
    let a = StaticPods::new(dir.path()).scan().added[0].metadata.uid.clone();
    let b = StaticPods::new(dir.path()).scan().added[0].metadata.uid.clone();
    assert_eq!(a, b, "a node restart finds the same pods");
}
