//! Field management as a client sees it in `metadata.managedFields` and in refusals.

use super::*;
use serde_json::json;

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-01T00:01:00Z";

fn writer(manager: &str) -> Writer<'_> {
    Writer {
        manager,
        api_version: "apps/v1",
        subresource: None,
        has_status: true,
    }
}

fn deployment(replicas: i64, labels: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}}}})
}

/// The managedFields entries of `object`, by manager and operation.
fn entry<'a>(object: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

fn managers(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["manager"].as_str().unwrap(),
                        e["operation"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn apply_ok(live: Option<&Value>, config: &Value, manager: &str, force: bool) -> Value {
    apply(live, config, &writer(manager), force, T1).unwrap().object
}

#[test]
fn a_create_is_an_update_that_owns_what_it_stored_but_not_the_servers_metadata() {
    let mut object = deployment(1, json!({"app": "web"}));
    object["metadata"]["uid"] = json!("u");
    object["metadata"]["resourceVersion"] = json!("5");
    object["status"] = json!({"replicas": 0});
    record_update(None, &mut object, &writer("kubectl-create"), T0).unwrap();
    let e = entry(&object, "kubectl-create", "Update").unwrap();
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["time"], T0);
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert!(e.get("subresource").is_none());
    assert_eq!(
        e["fieldsV1"],
        json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
    );
}

#[test]
fn an_update_takes_the_fields_it_changes_from_every_other_manager() {
    let mut created = deployment(1, json!({"app": "web"}));
    record_update(None, &mut created, &writer("creator"), T0).unwrap();
    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(3);
    record_update(Some(&created), &mut scaled, &writer("scaler"), T1).unwrap();
    assert_eq!(
        entry(&scaled, "scaler", "Update").unwrap()["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    let creator = &entry(&scaled, "creator", "Update").unwrap()["fieldsV1"];
    assert!(creator["f:spec"].get("f:replicas").is_none(), "{creator}");
    assert_eq!(entry(&scaled, "creator", "Update").unwrap()["time"], T0);
    // A write that changes nothing leaves the entries as they were.
    let mut same = scaled.clone();
    record_update(Some(&scaled), &mut same, &writer("other"), T1).unwrap();
    assert_eq!(same, scaled);
    // Removing the last field a manager owns removes its entry.
    let mut unlabelled = scaled.clone();
    unlabelled["metadata"].as_object_mut().unwrap().remove("labels");
    unlabelled["spec"] = json!({"replicas": 3});
    record_update(Some(&scaled), &mut unlabelled, &writer("scaler"), T1).unwrap();
    assert_eq!(managers(&unlabelled), ["scaler/Update"]);
}

#[test]
fn clients_may_rewrite_or_reset_managed_fields_through_an_update() {
    let mut created = deployment(1, json!({"app": "web"}));
    record_update(None, &mut created, &writer("creator"), T0).unwrap();
    // `[{}]` resets: only what this write changes is recorded.
    let mut reset = created.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    record_update(Some(&created), &mut reset, &writer("x"), T1).unwrap();
    assert!(reset["metadata"].get("managedFields").is_none(), "{reset}");
    // Entries a client writes replace the stored ones (kubectl's migration to apply).
    let mut moved = created.clone();
    moved["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
        "time": T0, "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]);
    record_update(Some(&created), &mut moved, &writer("kubectl"), T1).unwrap();
    assert_eq!(managers(&moved), ["kubectl/Apply"]);
    // Entries that do not decode are ignored: the stored ones stay.
    let mut garbage = created.clone();
    garbage["metadata"]["managedFields"] = json!([{"manager": "m", "operation": "Bogus"}]);
    record_update(Some(&created), &mut garbage, &writer("x"), T1).unwrap();
    assert_eq!(managers(&garbage), ["creator/Update"]);
}

#[test]
fn update_entries_are_capped_with_ancient_changes() {
    let mut object = deployment(1, json!({}));
    record_update(None, &mut object, &writer("creator"), "2026-01-01T00:00:00Z").unwrap();
    for i in 0..12 {
        let mut next = object.clone();
        next["metadata"]["labels"][format!("l{i}")] = json!("v");
        let time = format!("2026-01-01T01:{i:02}:00Z");
        record_update(Some(&object), &mut next, &writer(&format!("m{i}")), &time).unwrap();
        object = next;
    }
    let names = managers(&object);
    assert_eq!(names.len(), MAX_UPDATE_ENTRIES, "{names:?}");
    assert!(names.contains(&"ancient-changes/Update".to_string()));
    assert!(!names.contains(&"creator/Update".to_string()));
    assert!(names.contains(&"m11/Update".to_string()));
    let ancient = &entry(&object, "ancient-changes", "Update").unwrap()["fieldsV1"];
    assert!(
        ancient["f:spec"].get("f:replicas").is_some(),
        "the creator's fields: {ancient}"
    );
}

#[test]
fn apply_creates_and_owns_exactly_its_configuration() {
    let config = deployment(2, json!({"app": "web"}));
    let created = apply_ok(None, &config, "my-manager", false);
    assert_eq!(managers(&created), ["my-manager/Apply"]);
    let e = entry(&created, "my-manager", "Apply").unwrap();
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
    );
    assert_eq!(created["spec"]["replicas"], 2);
    // The same apply again changes nothing (7.8.6).
    let again = apply(
        Some(&created),
        &config,
        &writer("my-manager"),
        false,
        "2026-01-02T00:00:00Z",
    )
    .unwrap();
    assert!(!again.changed);
    assert_eq!(entry(&again.object, "my-manager", "Apply").unwrap()["time"], T1);
}

#[test]
fn a_conflict_names_the_manager_and_the_field_and_force_takes_it() {
    let live = apply_ok(None, &deployment(2, json!({"app": "web"})), "a", false);
    let e = apply(
        Some(&live),
        &deployment(3, json!({"app": "web"})),
        &writer("b"),
        false,
        T1,
    )
    .unwrap_err();
    assert_eq!(
        e,
        ManagedError::Conflicts(vec![Conflict {
            manager: "\"a\"".into(),
            field: ".spec.replicas".into()
        }])
    );
    assert_eq!(
        e.to_string(),
        "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"
    );
    // Equal values are shared, not conflicts.
    let shared = apply_ok(Some(&live), &deployment(2, json!({"app": "web"})), "b", false);
    for m in ["a", "b"] {
        assert!(entry(&shared, m, "Apply").unwrap()["fieldsV1"]["f:spec"]["f:replicas"].is_object());
    }
    // Removing another manager's field with a null is a conflict too.
    let mut unset = deployment(2, json!({"app": "web"}));
    unset["spec"]["replicas"] = Value::Null;
    let e = apply(Some(&live), &unset, &writer("b"), false, T1).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"
    );
    // Forced: b takes replicas from a.
    let forced = apply_ok(Some(&shared), &deployment(3, json!({"app": "web"})), "b", true);
    assert_eq!(forced["spec"]["replicas"], 3);
    assert!(
        entry(&forced, "a", "Apply").unwrap()["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none()
    );
}

#[test]
fn conflicts_with_updaters_name_their_version_and_several_are_listed_by_manager() {
    let mut live = deployment(1, json!({"app": "web", "tier": "x"}));
    record_update(None, &mut live, &writer("kubectl-client-side-apply"), T0).unwrap();
    let e = apply(
        Some(&live),
        &deployment(2, json!({"app": "web"})),
        &writer("kubectl"),
        false,
        T1,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    let e = apply(
        Some(&live),
        &deployment(2, json!({"app": "other"})),
        &writer("kubectl"),
        false,
        T1,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .metadata.labels.app\n- .spec.replicas"
    );
    let status = Writer {
        subresource: Some("status"),
        ..writer("node")
    };
    assert_eq!(
        Entry {
            manager: "node".into(),
            operation: Operation::Update,
            api_version: "v1".into(),
            time: None,
            subresource: status.subresource.map(str::to_string),
            set: FieldSet::default()
        }
        .describe(),
        "\"node\" with subresource \"status\" using v1"
    );
}

#[test]
fn prune_removes_what_the_applier_dropped_unless_someone_else_owns_it() {
    let first = deployment(2, json!({"app": "web", "a": "1", "b": "2"}));
    let live = apply_ok(None, &first, "me", false);
    // Someone else shares label b.
    let live = apply_ok(
        Some(&live),
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"b": "2"}}}),
        "other",
        false,
    );
    let second = deployment(2, json!({"app": "web"}));
    let pruned = apply_ok(Some(&live), &second, "me", false);
    assert_eq!(pruned["metadata"]["labels"], json!({"app": "web", "b": "2"}));
    // A dropped container goes with its fields.
    let mut two = deployment(2, json!({"app": "web"}));
    two["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "nginx", "image": "nginx:1"}, {"name": "sidecar", "image": "s:1"}]);
    let live = apply_ok(Some(&pruned), &two, "me", false);
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let one = apply_ok(Some(&live), &second, "me", false);
    assert_eq!(
        one["spec"]["template"]["spec"]["containers"],
        json!([{"name": "nginx", "image": "nginx:1"}])
    );
    // A field nobody applied (defaulted, or written by an update) is not pruned.
    let mut defaulted = one.clone();
    defaulted["spec"]["revisionHistoryLimit"] = json!(10);
    let kept = apply_ok(Some(&defaulted), &second, "me", false);
    assert_eq!(kept["spec"]["revisionHistoryLimit"], 10);
}

#[test]
fn set_lists_merge_by_value_and_are_owned_per_value() {
    let cm = |finalizers: Value| json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "finalizers": finalizers}});
    let live = apply_ok(None, &cm(json!(["a/x"])), "one", false);
    let live = apply_ok(Some(&live), &cm(json!(["b/y"])), "two", false);
    assert_eq!(live["metadata"]["finalizers"], json!(["a/x", "b/y"]));
    assert_eq!(
        entry(&live, "two", "Apply").unwrap()["fieldsV1"],
        json!({"f:metadata": {"f:finalizers": {"v:\"b/y\"": {}}}})
    );
    let live = apply_ok(Some(&live), &cm(json!([])), "one", false);
    assert_eq!(live["metadata"]["finalizers"], json!(["b/y"]));
}

#[test]
fn the_first_apply_attributes_existing_fields_to_before_first_apply() {
    let live = deployment(1, json!({"app": "web"}));
    let e = apply(
        Some(&live),
        &deployment(5, json!({"app": "web"})),
        &writer("me"),
        false,
        T1,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
    let same = apply_ok(Some(&live), &deployment(1, json!({"app": "web"})), "me", false);
    assert_eq!(managers(&same), ["me/Apply", "before-first-apply/Update"]);
}

#[test]
fn kubectl_keeps_the_last_applied_annotation_and_takes_what_it_set_client_side() {
    let mut csa = deployment(1, json!({"app": "web"}));
    let annotation = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}});
    csa["metadata"]["annotations"] = json!({LAST_APPLIED: annotation.to_string()});
    record_update(None, &mut csa, &writer("kubectl-client-side-apply"), T0).unwrap();
    // Replicas is what the annotation and the object say: kubectl takes it silently.
    let mut config = deployment(1, json!({"app": "web"}));
    config["spec"]["replicas"] = json!(1);
    let applied = apply_ok(Some(&csa), &config, "kubectl", false);
    let synced: Value =
        serde_json::from_str(applied["metadata"]["annotations"][LAST_APPLIED].as_str().unwrap()).unwrap();
    assert_eq!(synced, config, "the annotation is the applied configuration");
    // Even to a new value: the client-side apply set it, so it is kubectl's.
    let rescaled = apply_ok(
        Some(&csa),
        &deployment(4, json!({"app": "web"})),
        "kubectl",
        false,
    );
    assert_eq!(rescaled["spec"]["replicas"], 4);
    // A field whose live value is no longer the annotation's still conflicts.
    let mut diverged = csa.clone();
    diverged["metadata"]["annotations"][LAST_APPLIED] = json!(json!({"spec": {"replicas": 2}}).to_string());
    let e = apply(
        Some(&diverged),
        &deployment(4, json!({"app": "web"})),
        &writer("kubectl"),
        false,
        T1,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    // Other managers leave the annotation alone.
    let other = apply_ok(Some(&csa), &config, "someone", false);
    assert_eq!(other["metadata"]["annotations"], csa["metadata"]["annotations"]);
}

#[test]
fn a_status_writer_owns_status_and_the_main_resource_does_not() {
    let mut live = deployment(1, json!({}));
    live["status"] = json!({"replicas": 0});
    let mut written = live.clone();
    written["status"]["replicas"] = json!(1);
    let status = Writer {
        subresource: Some("status"),
        ..writer("controller")
    };
    record_update(Some(&live), &mut written, &status, T1).unwrap();
    let e = entry(&written, "controller", "Update").unwrap();
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
    // An apply to the main resource with a status owns none of it.
    let mut config = deployment(1, json!({"app": "web"}));
    config["status"] = json!({"replicas": 9});
    let applied = apply_ok(None, &config, "me", false);
    assert!(
        entry(&applied, "me", "Apply").unwrap()["fieldsV1"]
            .get("f:status")
            .is_none()
    );
}

#[test]
fn apply_managers_are_bounded() {
    let mut live = apply_ok(None, &deployment(1, json!({})), "m0", false);
    for i in 1..MAX_APPLY_ENTRIES {
        live = apply_ok(Some(&live), &deployment(1, json!({})), &format!("m{i}"), false);
    }
    let e = apply(
        Some(&live),
        &deployment(1, json!({})),
        &writer("one-too-many"),
        false,
        T1,
    )
    .unwrap_err();
    assert!(matches!(e, ManagedError::TooManyAppliers { count } if count == MAX_APPLY_ENTRIES + 1));
    // An existing applier still applies.
    apply_ok(Some(&live), &deployment(1, json!({"x": "y"})), "m3", false);
}

#[test]
fn manager_names_come_from_field_manager_or_the_user_agent() {
    assert_eq!(manager_of(Some("mine"), Some("kubectl/v1.32")), "mine");
    assert_eq!(manager_of(None, Some("kubectl/v1.32.0 (linux/amd64)")), "kubectl");
    assert_eq!(manager_of(Some(""), Some("a\u{7}b/1")), "ab");
    assert_eq!(manager_of(None, Some(&"x".repeat(300))).len(), MAX_MANAGER_LEN);
    assert_eq!(manager_of(None, None), "");
}

#[test]
fn managed_fields_written_by_a_client_are_bounded_too() {
    let mut created = deployment(1, json!({}));
    record_update(None, &mut created, &writer("creator"), T0).unwrap();
    let many: Vec<Value> = (0..=MAX_APPLY_ENTRIES)
        .map(|i| {
            json!({"manager": format!("m{i}"), "operation": "Apply", "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}})
        })
        .collect();
    let mut grown = created.clone();
    grown["metadata"]["managedFields"] = Value::Array(many);
    let e = record_update(Some(&created), &mut grown, &writer("x"), T1).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "Too many: {}: must have at most {MAX_APPLY_ENTRIES} apply managers",
            MAX_APPLY_ENTRIES + 1
        )
    );
}

mod generated {
    //! Generated objects and configurations: no input panics, and an apply is idempotent.
    use super::*;
    use proptest::prelude::*;

    /// JSON biased toward the names with list semantics and managedFields' own shape.
    fn value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("spec".to_string()),
            Just("metadata".to_string()),
            Just("containers".to_string()),
            Just("name".to_string()),
            Just("ports".to_string()),
            Just("containerPort".to_string()),
            Just("protocol".to_string()),
            Just("finalizers".to_string()),
            Just("labels".to_string()),
            Just("managedFields".to_string()),
            "[a-c]{1,2}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0i64..3).prop_map(Value::from),
            prop_oneof![Just("a".to_string()), Just("TCP".to_string()), "[a-c]{0,2}"].prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 48, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::hash_map(key.clone(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn object() -> impl Strategy<Value = Value> {
        (value(), value()).prop_map(|(metadata, spec)| {
            let mut o = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": spec});
            o["metadata"] = match metadata {
                Value::Object(mut m) => {
                    m.insert("name".into(), json!("web"));
                    Value::Object(m)
                }
                _ => json!({"name": "web"}),
            };
            o
        })
    }

    proptest! {
        #[test]
        fn applies_never_panic_and_are_idempotent(
            live in object(),
            config in object(),
            manager in prop_oneof![Just("kubectl"), Just("a"), Just("b")],
            force in any::<bool>(),
        ) {
            let live = Some(&live).filter(|l| !l["spec"].is_null());
            let Ok(first) = apply(live, &config, &writer(manager), force, T0) else {
                return Ok(());
            };
            // An apply that owns nothing leaves no trace; the next one then attributes the
            // object to before-first-apply (7.14), as kube-apiserver does.
            if first.object["metadata"].get("managedFields").is_none() {
                return Ok(());
            }
            let again = apply(Some(&first.object), &config, &writer(manager), false, T1);
            match again {
                Ok(again) => prop_assert!(!again.changed, "{} then {}", first.object, again.object),
                Err(e) => prop_assert!(false, "the same apply again failed: {e}"),
            }
        }

        #[test]
        fn updates_never_panic_and_leave_decodable_entries(old in object(), new in object()) {
            let mut created = old.clone();
            record_update(None, &mut created, &writer("c"), T0).ok();
            let mut written = new.clone();
            if record_update(Some(&created), &mut written, &writer("u"), T1).is_ok() {
                let entries = entries_of(&written).ok().flatten();
                prop_assert!(written["metadata"].get("managedFields").is_none() || entries.is_some());
            }
        }
    }
}
