//! Tests for manifest loading.

use super::*;
use proptest::prelude::*;

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: app\n    image: busybox\n";

#[test]
fn loads_multi_document_yaml_skipping_empty_documents() {
    let text = format!(
        "---\n{POD}---\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  ports: [{{port: 80}}]\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: ns}}\n"
    );
    let objs = load(&text, FieldValidation::Ignore).expect("loads");
    let kinds: Vec<&str> = objs.iter().map(Object::kind).collect();
    assert_eq!(kinds, ["Pod", "Service", "Deployment", "Namespace"]);
    match &objs[2] {
        Object::Other {
            api_version, value, ..
        } => {
            assert_eq!(api_version, "apps/v1");
            assert_eq!(value["metadata"]["name"], "d");
        }
        other => panic!("unexpected {other:?}"),
    }
    match &objs[0] {
        Object::Pod(p) => assert_eq!(p.metadata.name.as_deref(), Some("web")),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn loads_json_object_and_lists_including_typed_lists_inside_yaml() {
    let json = r#"{"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[]}},
        {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}]}"#;
    let objs = load(json, FieldValidation::Strict).expect("loads");
    assert_eq!(
        objs.iter().map(Object::kind).collect::<Vec<_>>(),
        ["Pod", "ConfigMap"]
    );

    let yaml = "apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: a}\n  spec: {containers: []}\n";
    let objs = load(yaml, FieldValidation::Strict).expect("loads");
    assert!(matches!(&objs[..], [Object::Pod(_)]));
}

#[test]
fn unknown_fields_are_ignored_by_default_and_reported_in_strict_mode() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  creationTimestamp: null\nbogus: 1\nspec:\n  containers:\n  - nmae: typo\n    name: app\n    ports:\n    - containerPort: 80\n      hostPrt: 1\n";
    assert!(load(text, FieldValidation::Ignore).is_ok());
    let err = load(text, FieldValidation::Strict).expect_err("strict fails");
    match &err {
        Error::UnknownFields { fields, kind, .. } => {
            assert_eq!(kind, "Pod");
            assert_eq!(
                fields,
                &[
                    "bogus",
                    "spec.containers[0].nmae",
                    "spec.containers[0].ports[0].hostPrt"
                ]
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "document 0 (Pod): strict decoding error: unknown field \"bogus\", unknown field \"spec.containers[0].nmae\", unknown field \"spec.containers[0].ports[0].hostPrt\""
    );
}

#[test]
fn decode_errors_name_the_field() {
    let text = format!("{POD}    ports:\n    - containerPort: eighty\n");
    let err = load(&text, FieldValidation::Ignore).expect_err("bad type");
    assert_eq!(
        err.to_string(),
        "document 0 (Pod): spec.containers[0].ports[0].containerPort: invalid type: string \"eighty\", expected i32"
    );
    // A wrong type deep in a list of maps, behind a key with a dot in it.
    let env = "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    a.b/c: [1]\n";
    let err = load(env, FieldValidation::Ignore).expect_err("bad label");
    assert_eq!(
        err.to_string(),
        "document 0 (Pod): metadata.labels.a.b/c: invalid type: sequence, expected a string"
    );
    // Like kube-apiserver, a missing container name decodes as "" and is left to validation.
    let missing = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: x\n";
    let objs = load(missing, FieldValidation::Strict).expect("loads");
    assert!(
        matches!(&objs[..], [Object::Pod(p)] if p.spec.as_ref().is_some_and(|s| s.containers[0].name.is_empty()))
    );
}

#[test]
fn syntax_and_shape_errors_carry_context() {
    let err = load("a: [1\n", FieldValidation::Ignore).expect_err("syntax");
    assert!(matches!(err, Error::Yaml { document: 0, .. }), "{err:?}");
    assert!(err.to_string().contains("line"), "{err}");

    let err = load("{\"kind\": ", FieldValidation::Ignore).expect_err("json syntax");
    assert!(matches!(err, Error::Json { .. }));
    assert!(err.to_string().contains("line 1"), "{err}");

    let err = load(&format!("{POD}---\n- 1\n"), FieldValidation::Ignore).expect_err("array");
    assert_eq!(err.to_string(), "document 1: expected an object, found array");

    let err = load("kind: Pod\n", FieldValidation::Ignore).expect_err("no apiVersion");
    assert_eq!(
        err.to_string(),
        "document 0: Object 'apiVersion' is missing or not a string"
    );

    let err = load(
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1}\n",
        FieldValidation::Ignore,
    )
    .expect_err("item without kind");
    assert_eq!(
        err.to_string(),
        "document 0, item 0: Object 'kind' is missing or not a string"
    );

    let err = load("apiVersion: v2\nkind: Pod\n", FieldValidation::Ignore);
    assert!(matches!(err.as_deref(), Ok([Object::Other { .. }])));
}

proptest! {
    #[test]
    fn loading_never_panics_on_arbitrary_text(text in ".*") {
        let _ = load(&text, FieldValidation::Strict);
        let _ = load_json(&text, FieldValidation::Ignore);
    }

    #[test]
    fn loading_never_panics_on_yamlish_text(text in "[a-zA-Z:{}\\[\\], \n\\-\"0-9#&*!|>']{0,200}") {
        let _ = load(&text, FieldValidation::Strict);
        let _ = load(&format!("apiVersion: v1\nkind: Pod\n{text}"), FieldValidation::Strict);
    }
}
