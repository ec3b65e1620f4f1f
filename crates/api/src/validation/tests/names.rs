//! Object names per kind.

use super::*;

#[test]
fn names_of_every_kind_follow_their_rule() {
    use podvisor_core::metav1::ObjectMeta;
    let meta = |name: &str| ObjectMeta {
        name: Some(name.to_string()),
        ..Default::default()
    };
    let bad = |kind: &str, name: &str| {
        validate_metadata(kind, &meta(name))
            .err()
            .map(|e| e.messages())
            .unwrap_or_default()
    };
    for kind in ["Namespace", "Node", "Event", "Endpoints", "EndpointSlice"] {
        for name in ["a/b", "..", ".", "Upper", "nul\u{0}byte", "", "-x"] {
            assert!(!bad(kind, name).is_empty(), "{kind} {name:?} accepted");
        }
        assert!(
            !bad(kind, &"a".repeat(100_000)).is_empty(),
            "{kind} long name accepted"
        );
        assert!(bad(kind, "web-1").is_empty(), "{kind}");
    }
    // Namespaces are labels (no dots); the others subdomains.
    assert_eq!(
        bad("Namespace", "a.b"),
        vec!["metadata.name: Invalid value: \"a.b\": must not contain dots".to_string()]
    );
    assert!(bad("Node", "node-1.example.com").is_empty());
    assert_eq!(bad("Namespace", &"a".repeat(64)).len(), 1);
    assert!(
        bad("Node", &"a".repeat(64)).is_empty(),
        "subdomains may be 253 long"
    );
}
