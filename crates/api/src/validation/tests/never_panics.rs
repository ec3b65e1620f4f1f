//! Validation never panics, whatever the generated pod or Service.

use super::*;

fn arb_json() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        (-70000i32..70000).prop_map(|i| json!(i)),
        "[a-zA-Z0-9_./: -]{0,12}".prop_map(J::String),
        prop_oneof![
            Just("None"),
            Just("Always"),
            Just("TCP"),
            Just("HTTP"),
            Just("http"),
            Just("ClusterIP")
        ]
        .prop_map(|s| J::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name"),
                    Just("image"),
                    Just("command"),
                    Just("ports"),
                    Just("containerPort"),
                    Just("hostPort"),
                    Just("protocol"),
                    Just("livenessProbe"),
                    Just("readinessProbe"),
                    Just("startupProbe"),
                    Just("exec"),
                    Just("httpGet"),
                    Just("tcpSocket"),
                    Just("grpc"),
                    Just("port"),
                    Just("path"),
                    Just("scheme"),
                    Just("lifecycle"),
                    Just("preStop"),
                    Just("postStart"),
                    Just("sleep"),
                    Just("seconds"),
                    Just("restartPolicy"),
                    Just("successThreshold"),
                    Just("periodSeconds"),
                    Just("targetPort"),
                    Just("nodePort"),
                    Just("selector"),
                    Just("type"),
                    Just("clusterIP"),
                    Just("clusterIPs"),
                    Just("terminationGracePeriodSeconds"),
                    Just("hostNetwork"),
                    Just("httpHeaders")
                ]
                .prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|m| J::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn validation_never_panics_on_generated_pods(
        containers in prop::collection::vec(arb_json(), 0..3),
        inits in prop::collection::vec(arb_json(), 0..2),
        spec_extra in arb_json(),
    ) {
        let mut spec = json!({"containers": containers, "initContainers": inits});
        if let (Some(s), J::Object(e)) = (spec.as_object_mut(), spec_extra) {
            for (k, v) in e {
                if k != "containers" {
                    s.insert(k, v);
                }
            }
        }
        let v = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec});
        if let Ok(mut p) = serde_json::from_value::<Pod>(v) {
            let before = p.clone();
            let _ = validate_pod(&p);
            default_pod(&mut p);
            let _ = validate_pod(&p);
            let _ = validate_pod_update(&before, &p);
        }
    }

    #[test]
    fn validation_never_panics_on_generated_services(spec in arb_json(), ports in prop::collection::vec(arb_json(), 0..3)) {
        let mut spec = spec;
        if let Some(s) = spec.as_object_mut() {
            s.insert("ports".into(), J::Array(ports));
        }
        let v = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": spec});
        if let Ok(mut s) = serde_json::from_value::<Service>(v) {
            let _ = validate_service(&s);
            default_service(&mut s);
            let _ = validate_service(&s);
        }
    }
}
