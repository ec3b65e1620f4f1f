//! Validation never panics, whatever the generated pod, Service or workload.

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

/// Keys of the workload kinds, so generated objects reach their validators' branches.
fn workload_key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "selector",
        "matchLabels",
        "matchExpressions",
        "key",
        "operator",
        "values",
        "labels",
        "metadata",
        "spec",
        "template",
        "containers",
        "restartPolicy",
        "replicas",
        "strategy",
        "updateStrategy",
        "type",
        "rollingUpdate",
        "maxUnavailable",
        "maxSurge",
        "partition",
        "podManagementPolicy",
        "volumeClaimTemplates",
        "persistentVolumeClaimRetentionPolicy",
        "whenDeleted",
        "completions",
        "parallelism",
        "completionMode",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
        "podFailurePolicy",
        "rules",
        "action",
        "onExitCodes",
        "onPodConditions",
        "status",
        "successPolicy",
        "succeededIndexes",
        "succeededCount",
        "suspend",
        "manualSelector",
        "managedBy",
        "schedule",
        "timeZone",
        "jobTemplate",
        "concurrencyPolicy",
        "name",
        "image",
        "command",
    ])
    .prop_map(str::to_owned)
}

fn arb_workload_json() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        (-3i64..200_000).prop_map(|i| json!(i)),
        any::<i32>().prop_map(|i| json!(i)),
        "[a-zA-Z0-9_./%: *,@=-]{0,16}".prop_map(J::String),
        prop::sample::select(vec![
            "In",
            "NotIn",
            "Exists",
            "Indexed",
            "NonIndexed",
            "RollingUpdate",
            "OnDelete",
            "Recreate",
            "Never",
            "OnFailure",
            "Always",
            "FailIndex",
            "Ignore",
            "25%",
            "0",
            "0-3,5",
            "UTC",
            "Europe/Berlin",
            "@every 1h",
            "TZ=UTC * * * * *",
        ])
        .prop_map(|s| J::String(s.to_owned())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
            prop::collection::btree_map(workload_key(), inner, 0..6)
                .prop_map(|m| J::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn validation_never_panics_on_generated_workloads(spec in arb_workload_json(), old_spec in arb_workload_json()) {
        use podvisor_core::appsv1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
        use podvisor_core::batchv1::{CronJob, Job};
        use crate::defaults::*;
        let obj = |kind: &str, spec: &J| json!({"kind": kind, "metadata": {"name": "w", "uid": "u"}, "spec": spec});
        if let (Ok(mut d), Ok(old)) = (serde_json::from_value::<Deployment>(obj("Deployment", &spec)), serde_json::from_value::<Deployment>(obj("Deployment", &old_spec))) {
            let _ = validate_deployment(&d);
            default_deployment(&mut d);
            let _ = validate_deployment(&d);
            let _ = validate_deployment_update(&old, &d);
        }
        if let (Ok(mut r), Ok(old)) = (serde_json::from_value::<ReplicaSet>(obj("ReplicaSet", &spec)), serde_json::from_value::<ReplicaSet>(obj("ReplicaSet", &old_spec))) {
            default_replica_set(&mut r);
            let _ = validate_replica_set(&r);
            let _ = validate_replica_set_update(&old, &r);
        }
        if let (Ok(mut s), Ok(old)) = (serde_json::from_value::<StatefulSet>(obj("StatefulSet", &spec)), serde_json::from_value::<StatefulSet>(obj("StatefulSet", &old_spec))) {
            let _ = validate_stateful_set(&s);
            default_stateful_set(&mut s);
            let _ = validate_stateful_set(&s);
            let _ = validate_stateful_set_update(&old, &s);
        }
        if let (Ok(mut d), Ok(old)) = (serde_json::from_value::<DaemonSet>(obj("DaemonSet", &spec)), serde_json::from_value::<DaemonSet>(obj("DaemonSet", &old_spec))) {
            default_daemon_set(&mut d);
            let _ = validate_daemon_set(&d);
            let _ = validate_daemon_set_update(&old, &d);
        }
        if let (Ok(mut j), Ok(mut old)) = (serde_json::from_value::<Job>(obj("Job", &spec)), serde_json::from_value::<Job>(obj("Job", &old_spec))) {
            let _ = validate_job(&j);
            default_job(&mut j);
            default_job(&mut old);
            let _ = validate_job(&j);
            let _ = validate_job_update(&old, &j);
        }
        if let (Ok(mut c), Ok(old)) = (serde_json::from_value::<CronJob>(obj("CronJob", &spec)), serde_json::from_value::<CronJob>(obj("CronJob", &old_spec))) {
            let _ = validate_cron_job(&c);
            default_cron_job(&mut c);
            let _ = validate_cron_job(&c);
            let _ = validate_cron_job_update(&old, &c);
        }
    }

    #[test]
    fn schedule_checking_never_panics(schedule in "\\PC{0,40}", cronish in "[0-9*/,?@a-zA-Z _=.+-]{0,30}") {
        for s in [&schedule, &cronish] {
            let v = json!({"metadata": {"name": "c"}, "spec": {"schedule": s, "timeZone": s, "jobTemplate": {}}});
            if let Ok(c) = serde_json::from_value::<podvisor_core::batchv1::CronJob>(v) {
                let _ = validate_cron_job(&c);
            }
        }
    }
}

fn small_str() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.%/-]{0,8}",
        prop::sample::select(vec![
            "app", "web", "In", "Exists", "NotIn", "x", "25%", "150%", "0", "-1"
        ])
        .prop_map(str::to_owned),
    ]
}

fn opt_int() -> impl Strategy<Value = J> {
    prop_oneof![Just(J::Null), (-3i64..200_001).prop_map(|i| json!(i))]
}

fn int_or_string() -> impl Strategy<Value = J> {
    prop_oneof![
        Just(J::Null),
        (-2i64..300).prop_map(|i| json!(i)),
        small_str().prop_map(J::String)
    ]
}

fn selector() -> impl Strategy<Value = J> {
    let req = (small_str(), small_str(), prop::collection::vec(small_str(), 0..3))
        .prop_map(|(k, op, vs)| json!({"key": k, "operator": op, "values": vs}));
    prop_oneof![
        Just(J::Null),
        (
            prop::collection::btree_map(small_str(), small_str(), 0..3),
            prop::collection::vec(req, 0..3)
        )
            .prop_map(|(ml, me)| json!({"matchLabels": ml, "matchExpressions": me})),
    ]
}

fn pod_template() -> impl Strategy<Value = J> {
    (
        prop::collection::btree_map(small_str(), small_str(), 0..3),
        prop::sample::select(vec!["Always", "OnFailure", "Never", "Sometimes"]),
        any::<bool>(),
    )
        .prop_map(|(labels, rp, ads)| {
            let mut spec =
                json!({"containers": [{"name": "c", "image": "i", "command": ["x"]}], "restartPolicy": rp});
            if ads {
                spec["activeDeadlineSeconds"] = json!(5);
            }
            json!({"metadata": {"labels": labels}, "spec": spec})
        })
}

/// Structurally valid workload specs with arbitrary values in the fields the validators check.
fn typed_workload_spec() -> impl Strategy<Value = J> {
    let apps = (
        selector(),
        pod_template(),
        (opt_int(), opt_int(), opt_int()),
        prop::sample::select(vec!["RollingUpdate", "Recreate", "OnDelete", "Other"]),
        (int_or_string(), int_or_string()),
        small_str(),
    );
    let batch = (
        (opt_int(), opt_int(), opt_int(), opt_int()),
        prop::sample::select(vec!["Indexed", "NonIndexed", "Odd"]),
        prop::collection::vec(
            (
                small_str(),
                small_str(),
                prop::collection::vec(-2i32..5, 0..4),
                prop::option::of(small_str()),
            ),
            0..3,
        ),
        prop::option::of(prop::collection::vec(
            (prop::option::of(-2i32..10), prop::option::of(small_str())),
            0..3,
        )),
        (small_str(), small_str()),
    );
    (apps, batch).prop_map(|((sel, template, (replicas, min_ready, partition), strategy, (mu, ms), name), ((completions, parallelism, per_index, max_failed), mode, rules, success, (schedule, tz)))| {
        let rules: Vec<J> = rules
            .into_iter()
            .map(|(action, op, values, cond)| {
                let mut rule = json!({"action": action, "onExitCodes": {"operator": op, "values": values}});
                if let Some(status) = cond {
                    rule["onPodConditions"] = json!([{"type": "DisruptionTarget", "status": status}]);
                }
                rule
            })
            .collect();
        let success = success.map(|rs| {
            let rules: Vec<J> = rs
                .into_iter()
                .map(|(count, idx)| json!({"succeededCount": count, "succeededIndexes": idx}))
                .collect();
            json!({"rules": rules})
        });
        let rolling = json!({"maxUnavailable": mu, "maxSurge": ms, "partition": partition});
        json!({
            "selector": sel, "template": template, "replicas": replicas, "minReadySeconds": min_ready,
            "strategy": {"type": strategy, "rollingUpdate": rolling},
            "updateStrategy": {"type": strategy, "rollingUpdate": rolling},
            "podManagementPolicy": name, "serviceName": name,
            "completions": completions, "parallelism": parallelism, "completionMode": mode,
            "backoffLimitPerIndex": per_index, "maxFailedIndexes": max_failed,
            "podFailurePolicy": {"rules": rules}, "successPolicy": success,
            "schedule": schedule, "timeZone": tz, "jobTemplate": {"spec": {"template": template, "completions": completions}},
        })
    })
}

/// Keep only the fields `kind` has, so each validator sees only its own.
fn for_kind(kind: &str, spec: &J) -> J {
    let keep: &[&str] = match kind {
        "Deployment" => &["selector", "template", "replicas", "minReadySeconds", "strategy"],
        "ReplicaSet" => &["selector", "template", "replicas", "minReadySeconds"],
        "StatefulSet" => &[
            "selector",
            "template",
            "replicas",
            "minReadySeconds",
            "updateStrategy",
            "podManagementPolicy",
            "serviceName",
        ],
        "DaemonSet" => &["selector", "template", "minReadySeconds", "updateStrategy"],
        "Job" => &[
            "selector",
            "template",
            "completions",
            "parallelism",
            "completionMode",
            "backoffLimitPerIndex",
            "maxFailedIndexes",
            "podFailurePolicy",
            "successPolicy",
        ],
        _ => &["schedule", "timeZone", "jobTemplate"],
    };
    let mut out = serde_json::Map::new();
    if let J::Object(m) = spec {
        for (k, v) in m {
            if keep.contains(&k.as_str()) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    let mut spec = J::Object(out);
    if (kind == "DaemonSet" || kind == "StatefulSet")
        && let Some(ru) = spec
            .pointer_mut("/updateStrategy/rollingUpdate")
            .and_then(J::as_object_mut)
    {
        ru.remove(if kind == "DaemonSet" {
            "partition"
        } else {
            "maxSurge"
        });
    }
    if let Some(ru) = spec
        .pointer_mut("/strategy/rollingUpdate")
        .and_then(J::as_object_mut)
    {
        ru.remove("partition");
    }
    spec
}

proptest! {
    #[test]
    fn validation_never_panics_on_typed_workloads(spec in typed_workload_spec(), old in typed_workload_spec()) {
        use podvisor_core::appsv1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
        use podvisor_core::batchv1::{CronJob, Job};
        use crate::defaults::*;
        let decode = |kind: &str, spec: &J| json!({"metadata": {"name": "w", "uid": "u"}, "spec": for_kind(kind, spec)});
        let mut d: Deployment = serde_json::from_value(decode("Deployment", &spec)).expect("typed deployment decodes");
        let mut od: Deployment = serde_json::from_value(decode("Deployment", &old)).expect("typed deployment decodes");
        default_deployment(&mut d);
        default_deployment(&mut od);
        let _ = validate_deployment(&d);
        let _ = validate_deployment_update(&od, &d);
        let mut r: ReplicaSet = serde_json::from_value(decode("ReplicaSet", &spec)).expect("typed replicaset decodes");
        default_replica_set(&mut r);
        let _ = validate_replica_set(&r);
        let mut s: StatefulSet = serde_json::from_value(decode("StatefulSet", &spec)).expect("typed statefulset decodes");
        let mut os: StatefulSet = serde_json::from_value(decode("StatefulSet", &old)).expect("typed statefulset decodes");
        default_stateful_set(&mut s);
        default_stateful_set(&mut os);
        let _ = validate_stateful_set(&s);
        let _ = validate_stateful_set_update(&os, &s);
        let mut ds: DaemonSet = serde_json::from_value(decode("DaemonSet", &spec)).expect("typed daemonset decodes");
        default_daemon_set(&mut ds);
        let _ = validate_daemon_set(&ds);
        let mut j: Job = serde_json::from_value(decode("Job", &spec)).expect("typed job decodes");
        let mut oj: Job = serde_json::from_value(decode("Job", &old)).expect("typed job decodes");
        default_job(&mut j);
        default_job(&mut oj);
        let _ = validate_job(&j);
        let _ = validate_job_update(&oj, &j);
        let mut c: CronJob = serde_json::from_value(decode("CronJob", &spec)).expect("typed cronjob decodes");
        let mut oc: CronJob = serde_json::from_value(decode("CronJob", &old)).expect("typed cronjob decodes");
        default_cron_job(&mut c);
        default_cron_job(&mut oc);
        let _ = validate_cron_job(&c);
        let _ = validate_cron_job_update(&oc, &c);
    }
}
