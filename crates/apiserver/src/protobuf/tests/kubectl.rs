//! Bodies captured from real kubectl: converted as kubectl's own JSON, whole metadata, no panics on mangled bytes, accepted by the server's strategies, `kubectl debug` pods.

use super::*;

/// Bodies real kubectl (v1.32) sent, each beside what `--dry-run=client -o json` prints for the
/// same command: Go's JSON encoding of the very object it encoded in protobuf. The CronJob that
/// `--from=cronjob/nightly` copied was served as the JSON of [`rich_job_spec`]'s template, so
/// that body carries a whole PodSpec with every zero value Go writes.
const KUBECTL_BODIES: &[(&str, &[u8], &str)] = &[
    (
        "kubectl create deployment web --image=x -- sleep 1",
        include_bytes!("../testdata/deployment-web.pb"),
        include_str!("../testdata/deployment-web.json"),
    ),
    (
        "kubectl create deployment multi --image=nginx --image=redis --replicas=3 --port=8080",
        include_bytes!("../testdata/deployment-multi.pb"),
        include_str!("../testdata/deployment-multi.json"),
    ),
    (
        "kubectl create job pi --image=perl -- perl -e 'print 1'",
        include_bytes!("../testdata/job-pi.pb"),
        include_str!("../testdata/job-pi.json"),
    ),
    (
        "kubectl create cronjob tick --image=busybox --schedule='*/1 * * * *' --restart=OnFailure -- date",
        include_bytes!("../testdata/cronjob-tick.pb"),
        include_str!("../testdata/cronjob-tick.json"),
    ),
    (
        "kubectl create job manual --from=cronjob/nightly",
        include_bytes!("../testdata/job-from-cronjob.pb"),
        include_str!("../testdata/job-from-cronjob.json"),
    ),
    (
        // The same, from a CronJob whose jobTemplate is that one with every string, number and
        // bool zeroed (quantities "0"): what Go keeps in JSON shows which fields are pointers
        // or lack omitempty.
        "kubectl create job zeroed --from=cronjob/nightly",
        include_bytes!("../testdata/job-from-zeroed-cronjob.pb"),
        include_str!("../testdata/job-from-zeroed-cronjob.json"),
    ),
    (
        // The rest of what a PodSpec carries (v1.32's fields): OS, scheduling gates, resource
        // claims, SELinux/Windows/AppArmor options, volume devices, nfs/csi/ephemeral/image
        // volumes, cluster trust bundles; served as is and zeroed.
        "kubectl create job extra --from=cronjob/nightly",
        include_bytes!("../testdata/job-from-cronjob-extra.pb"),
        include_str!("../testdata/job-from-cronjob-extra.json"),
    ),
    (
        "kubectl create job extra-zeroed --from=cronjob/nightly",
        include_bytes!("../testdata/job-from-zeroed-cronjob-extra.pb"),
        include_str!("../testdata/job-from-zeroed-cronjob-extra.json"),
    ),
    (
        "kubectl create namespace x",
        include_bytes!("../testdata/namespace-x.pb"),
        include_str!("../testdata/namespace-x.json"),
    ),
    (
        "kubectl create service clusterip s --tcp=80:8080 --tcp=443:https",
        include_bytes!("../testdata/service-clusterip.pb"),
        include_str!("../testdata/service-clusterip.json"),
    ),
    (
        "kubectl create service nodeport np --tcp=80:8080 --node-port=30080",
        include_bytes!("../testdata/service-nodeport.pb"),
        include_str!("../testdata/service-nodeport.json"),
    ),
    (
        "kubectl create service externalname ex --external-name=example.com",
        include_bytes!("../testdata/service-externalname.pb"),
        include_str!("../testdata/service-externalname.json"),
    ),
    (
        "kubectl create service clusterip h --clusterip=None --tcp=53:53",
        include_bytes!("../testdata/service-headless.pb"),
        include_str!("../testdata/service-headless.json"),
    ),
    (
        "kubectl create configmap c --from-literal=a=b --from-literal=mode=fast",
        include_bytes!("../testdata/configmap-c.pb"),
        include_str!("../testdata/configmap-c.json"),
    ),
    (
        "kubectl create secret generic s --from-literal=password=hunter2 --type=Opaque",
        include_bytes!("../testdata/secret-generic.pb"),
        include_str!("../testdata/secret-generic.json"),
    ),
    (
        "kubectl create secret docker-registry reg --docker-server=r.example --docker-username=u --docker-password=p",
        include_bytes!("../testdata/secret-docker.pb"),
        include_str!("../testdata/secret-docker.json"),
    ),
    (
        "kubectl create serviceaccount builder",
        include_bytes!("../testdata/serviceaccount-builder.pb"),
        include_str!("../testdata/serviceaccount-builder.json"),
    ),
];

/// What Go's JSON has that the conversion leaves out: `creationTimestamp: null` (the zero
/// time) and the empty `status`.
fn without_zero_time_and_status(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|k, v| !(k == "creationTimestamp" && v.is_null()));
        m.values_mut().for_each(without_zero_time_and_status);
    } else if let Value::Array(a) = v {
        a.iter_mut().for_each(without_zero_time_and_status);
    }
}

#[test]
fn decodes_what_kubectl_sends_as_kubectl_would_send_it_in_json() {
    for (command, body, json_text) in KUBECTL_BODIES {
        let mut expected: Value = serde_json::from_str(json_text).unwrap();
        without_zero_time_and_status(&mut expected);
        // Go's zero status (`{}`, a Service's `{"loadBalancer": {}}`): dropped by the conversion.
        if let Some(status) = expected.as_object_mut().and_then(|m| m.remove("status")) {
            assert!(only_empty_objects(&status), "{command}: {status}");
        }
        let got = decode(body).unwrap();
        assert_eq!(
            differences(&got, &expected, "$"),
            Vec::<String>::new(),
            "{command}"
        );
    }
}

fn only_empty_objects(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.values().all(only_empty_objects))
}

/// The paths at which two JSON values differ, to make a failing comparison readable.
fn differences(got: &Value, want: &Value, path: &str) -> Vec<String> {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let keys: std::collections::BTreeSet<&String> = g.keys().chain(w.keys()).collect();
            keys.into_iter()
                .flat_map(|k| match (g.get(k), w.get(k)) {
                    (Some(a), Some(b)) => differences(a, b, &format!("{path}.{k}")),
                    (a, b) => vec![format!("{path}.{k}: got {a:?}, want {b:?}")],
                })
                .collect()
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => g
            .iter()
            .zip(w)
            .enumerate()
            .flat_map(|(i, (a, b))| differences(a, b, &format!("{path}[{i}]")))
            .collect(),
        _ if got == want => Vec::new(),
        _ => vec![format!("{path}: got {got}, want {want}")],
    }
}

#[test]
fn decodes_the_whole_object_metadata() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let cm = pb!(pb::ConfigMap {
        metadata: pb!(pbmeta::ObjectMeta {
            name: "c",
            generate_name: "c-",
            namespace: "ns",
            uid: "9b2f",
            resource_version: "42",
            generation: 3i64,
            creation_timestamp: pb!(pbmeta::Time {
                seconds: 1_709_251_199i64,
                nanos: 5
            }),
            deletion_timestamp: pb!(pbmeta::Time {
                seconds: 1_709_251_200i64
            }),
            deletion_grace_period_seconds: 0i64,
            labels: [("a", "1")],
            annotations: [("b", "2")],
            finalizers: ["f"],
            managed_fields: [pb!(pbmeta::ManagedFieldsEntry { manager: "kubectl" })],
        }),
    });
    assert_converts::<ConfigMap, _>(
        cm,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "c",
                "generateName": "c-",
                "namespace": "ns",
                "uid": "9b2f",
                "resourceVersion": "42",
                "generation": 3,
                "creationTimestamp": "2024-02-29T23:59:59Z",
                "deletionTimestamp": "2024-03-01T00:00:00Z",
                "deletionGracePeriodSeconds": 0,
                "labels": {"a": "1"},
                "annotations": {"b": "2"},
                "finalizers": ["f"],
            },
        }),
    );
    // Go's zero time is an empty message: JSON's null, absent here.
    let zero = pb!(pb::ConfigMap {
        metadata: pb!(pbmeta::ObjectMeta {
            name: "z",
            creation_timestamp: pbmeta::Time::default()
        }),
    });
    let v = decode(&envelope("v1", "ConfigMap", zero.encode_to_vec())).unwrap();
    assert_eq!(v["metadata"], json!({"name": "z"}));
}

const SERVED: &[(&str, &str)] = &[
    ("v1", "Namespace"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "ServiceAccount"),
    ("v1", "Pod"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
];

proptest::proptest! {
    /// Any bytes as any converted kind: an object or an error, never a panic.
    #[test]
    fn arbitrary_objects_decode_or_fail(
        kind in 0..SERVED.len(),
        raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
    ) {
        let (api_version, kind) = SERVED[kind];
        if let Ok(v) = decode(&envelope(api_version, kind, raw)) {
            proptest::prop_assert_eq!(&v["kind"], kind);
        }
    }

    /// A real body with a byte changed: an object or an error, never a panic.
    #[test]
    fn mangled_kubectl_bodies_decode_or_fail(
        which in 0..KUBECTL_BODIES.len(),
        at in 0usize..4096,
        byte in proptest::prelude::any::<u8>(),
    ) {
        let mut body = KUBECTL_BODIES[which].1.to_vec();
        let i = at % body.len();
        body[i] = byte;
        let _ = decode(&body);
    }
}

/// kubectl's generated bodies, converted, are objects the server's own strategies know
/// field by field; those of a process node's kind (with commands) also pass defaulting and
/// validation of a create. `deployment-multi` names no command (a process node refuses it) and
/// `job-from-cronjob` is a deliberately odd template (an `Always` restart policy in a Job).
#[test]
fn kubectl_generated_bodies_pass_the_server_strategies() {
    use crate::strategy::{self, Strategy};
    let cases: [(&[u8], &dyn Strategy, bool); 6] = [
        (
            include_bytes!("../testdata/deployment-web.pb"),
            &strategy::DEPLOYMENTS,
            true,
        ),
        (
            include_bytes!("../testdata/deployment-multi.pb"),
            &strategy::DEPLOYMENTS,
            false,
        ),
        (include_bytes!("../testdata/job-pi.pb"), &strategy::JOBS, true),
        (
            include_bytes!("../testdata/cronjob-tick.pb"),
            &strategy::CRON_JOBS,
            true,
        ),
        (
            include_bytes!("../testdata/job-from-cronjob.pb"),
            &strategy::JOBS,
            false,
        ),
        (
            include_bytes!("../testdata/serviceaccount-builder.pb"),
            &strategy::SERVICE_ACCOUNTS,
            true,
        ),
    ];
    for (body, strategy, valid) in cases {
        let mut object = decode(body).unwrap();
        object["metadata"]["namespace"] = json!("default");
        // Admission gives a new object its UID before defaulting (a Job's selector uses it).
        object["metadata"]["uid"] = json!("0f1e2d3c-0000-4000-8000-000000000001");
        let (_, unknown) = strategy.decode_known(&object).unwrap();
        assert_eq!(unknown, Vec::<String>::new(), "{object}");
        match strategy.default_and_validate(&mut object, None) {
            Ok(_) => assert!(valid, "{object}"),
            Err(crate::strategy::Rejection::Invalid(e)) if !valid => assert!(!e.errors().is_empty()),
            Err(e) => panic!("{e:?}: {object}"),
        }
    }
}

/// The pods `kubectl debug` (v1.32) creates in protobuf: a copy of a pod with a debug container
/// (`--copy-to`), and a node debugging pod (`node/n1`: host namespaces, the host's root, a
/// toleration of everything). `kubectl debug` has no `--dry-run`, so the JSON is written out;
/// both pass the Pod strategy.
#[test]
fn decodes_kubectl_debug_pods() {
    use crate::strategy::{PodStrategy, Strategy};
    let copy = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-debug", "namespace": "default"},
        "spec": {"containers": [
            {"name": "app", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}},
            {
                "name": "dbg",
                "image": "busybox",
                "command": ["sleep", "1"],
                "resources": {},
                "terminationMessagePolicy": "File",
            },
        ]},
    });
    let node = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "node-debugger-n1-872jc"},
        "spec": {
            "containers": [{
                "name": "debugger",
                "image": "busybox",
                "command": ["sleep", "1"],
                "resources": {},
                "terminationMessagePolicy": "File",
                "volumeMounts": [{"name": "host-root", "mountPath": "/host"}],
            }],
            "hostIPC": true,
            "hostNetwork": true,
            "hostPID": true,
            "nodeName": "n1",
            "restartPolicy": "Never",
            "tolerations": [{"operator": "Exists"}],
            "volumes": [{"name": "host-root", "hostPath": {"path": "/"}}],
        },
    });
    let cases: [(&[u8], Value, bool); 2] = [
        (include_bytes!("../testdata/pod-debug-copy.pb"), copy, false),
        (include_bytes!("../testdata/pod-debug-node.pb"), node, true),
    ];
    for (body, expected, valid) in cases {
        let mut got = decode(body).unwrap();
        assert_eq!(differences(&got, &expected, "$"), Vec::<String>::new());
        got["metadata"]["namespace"] = json!("default");
        let (_, unknown) = PodStrategy.decode_known(&got).unwrap();
        assert_eq!(unknown, Vec::<String>::new());
        if valid && let Err(e) = PodStrategy.default_and_validate(&mut got, None) {
            panic!("{e:?}: {got}");
        }
    }
}
