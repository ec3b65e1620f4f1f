//! Generated hostile input for every parser a request reaches: bodies (JSON, YAML, protobuf),
//! patches (JSON, merge, strategic), label and field selectors, DeleteOptions, query numbers.
//! Each gets an answer (a value or an error with a 4xx code), never a panic, and the patch
//! budgets hold. Coverage-free generation from the grammars; `PROPTEST_CASES` sets the count.

use std::collections::HashMap;

use bytes::Bytes;
use podvisor_apiserver::body::{self, FieldValidation};
use podvisor_apiserver::options::{self, DeleteOptions};
use podvisor_apiserver::patch::{self, PatchType};
use podvisor_apiserver::resources::RESOURCES;
use podvisor_apiserver::selectors::{FieldSelector, LabelSelector};
use proptest::prelude::*;
use serde_json::Value;

/// Arbitrary JSON, keys biased toward the names the handlers look at.
fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("metadata".to_string()),
        Just("name".to_string()),
        Just("spec".to_string()),
        Just("containers".to_string()),
        Just("env".to_string()),
        Just("ports".to_string()),
        Just("$patch".to_string()),
        Just("finalizers".to_string()),
        "[a-z$/]{0,6}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![Just("delete".to_string()), Just("replace".to_string()), ".{0,8}"]
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::hash_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON patch operations on plausible paths.
fn json_patch() -> impl Strategy<Value = Value> {
    let path = prop_oneof![
        Just(String::new()),
        Just("/".to_string()),
        Just("/metadata".to_string()),
        Just("/metadata/name".to_string()),
        Just("/spec/containers/0".to_string()),
        Just("/spec/containers/-".to_string()),
        Just("/a/~1b/~0c".to_string()),
        Just("/x/99999999999999999999".to_string()),
        "(/[a-z0-9~-]{0,4}){0,4}",
    ];
    let op = prop_oneof![
        Just("add"),
        Just("remove"),
        Just("replace"),
        Just("move"),
        Just("copy"),
        Just("test"),
        Just("bogus")
    ];
    prop::collection::vec(
        (op, path.clone(), path, json()).prop_map(|(op, path, from, value)| {
            serde_json::json!({"op": op, "path": path, "from": from, "value": value})
        }),
        0..12,
    )
    .prop_map(Value::Array)
}

fn selector_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("=".to_string()),
        Just("==".to_string()),
        Just("!=".to_string()),
        Just(" in ".to_string()),
        Just(" notin ".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(",".to_string()),
        Just("!".to_string()),
        Just("metadata.name".to_string()),
        "[a-zA-Z0-9./_-]{0,6}",
        ".{0,3}",
    ];
    prop::collection::vec(piece, 0..10).prop_map(|p| p.concat())
}

proptest! {
    #[test]
    fn patches_answer_and_stay_within_budget(target in json(), merge in json(), ops in json_patch()) {
        for (kind, p) in [(PatchType::Merge, &merge), (PatchType::Strategic, &merge), (PatchType::Json, &ops)] {
            match patch::apply(kind, &target, p) {
                Ok(out) => {
                    let grown = serde_json::to_vec(&out).map_or(0, |v| v.len());
                    let base = serde_json::to_vec(&target).map_or(0, |v| v.len())
                        + serde_json::to_vec(p).map_or(0, |v| v.len());
                    // Nothing but the patch's own bytes and the copy budget can add size.
                    prop_assert!(grown <= base + patch::MAX_COPY_BYTES, "{grown} from {base}");
                }
                Err(e) => prop_assert!(matches!(e.code(), 400 | 413 | 422)),
            }
        }
    }

    #[test]
    fn selectors_parse_or_fail_cleanly(text in selector_text(), object in json()) {
        if let Ok(s) = LabelSelector::parse(&text) {
            let _ = s.matches(&object);
        }
        for r in RESOURCES {
            if let Ok(s) = FieldSelector::parse(&text, r.strategy.field_selectors()) {
                let _ = s.matches(&object);
            }
        }
    }

    #[test]
    fn bodies_decode_or_fail_with_400(bytes in prop::collection::vec(any::<u8>(), 0..256), doc in json()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let text = serde_json::to_vec(&doc).unwrap_or_default();
        for ct in ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf", "text/plain"] {
            for input in [bytes.clone(), text.clone()] {
                for mode in [FieldValidation::Strict, FieldValidation::Warn] {
                    if let Err(e) = rt.block_on(body::decode_request(ct, Bytes::from(input.clone()), mode)) {
                        prop_assert!(matches!(e.code, 400 | 415), "{ct}: {} {}", e.code, e.message);
                    }
                }
            }
        }
        for r in RESOURCES {
            if let Err(e) = body::validate_fields(r, &doc, FieldValidation::Strict) {
                prop_assert!(matches!(e.code, 400 | 422), "{}: {}", e.code, e.message);
            }
        }
        let _ = body::yaml_depth(&bytes);
        let _ = body::first_duplicate_key(&bytes);
    }

    #[test]
    fn options_parse_or_fail_with_4xx(value in ".{0,24}", options_body in json(), grace in any::<Option<i64>>(), pod in json()) {
        let mut query = HashMap::new();
        for name in ["gracePeriodSeconds", "propagationPolicy", "orphanDependents", "limit", "timeoutSeconds", "resourceVersion"] {
            query.insert(name.to_string(), value.clone());
        }
        for q in [&query, &HashMap::new()] {
            for b in [&options_body, &Value::Null] {
                if let Err(e) = DeleteOptions::parse(q, b) {
                    prop_assert!(matches!(e.code, 400 | 422));
                }
            }
            let _ = options::int_param::<i64>(q, "limit");
            let _ = options::resource_version(q);
        }
        let g = options::pod_grace_period(grace, &pod);
        prop_assert!(g >= 0);
        let deadline = options::deadline_millis(podvisor_apiserver::meta::now_millis(), g);
        prop_assert_eq!(podvisor_apiserver::meta::rfc3339(deadline).len(), 20);
    }
}
