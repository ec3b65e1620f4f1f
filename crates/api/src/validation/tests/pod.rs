//! Pod validation, rule by rule (k8s-semantics.md §2), pod updates, volumes and resources.

use super::*;

#[test]
fn a_defaulted_valid_pod_passes() {
    let p = pod(json!({
        "containers": [with(app("app"), json!({
            "ports": [{"name": "http", "containerPort": 8080}],
            "livenessProbe": {"httpGet": {"port": "http"}},
            "readinessProbe": {"tcpSocket": {"port": 8080}, "successThreshold": 3},
            "startupProbe": {"exec": {"command": ["true"]}},
            "lifecycle": {"preStop": {"sleep": {"seconds": 5}}, "postStart": {"exec": {"command": ["true"]}}}
        }))],
        "initContainers": [app("setup"), with(app("sidecar"), json!({
            "restartPolicy": "Always",
            "readinessProbe": {"grpc": {"port": 9090}}
        }))],
        "readinessGates": [{"conditionType": "example.com/ready"}],
        "hostname": "web-0",
        "activeDeadlineSeconds": 600
    }));
    assert_eq!(validate_pod(&p), Ok(vec![]));
}

#[test]
fn rule_2_1_containers_required() {
    assert_eq!(
        errors(&pod(json!({"containers": []}))),
        ["spec.containers: Required value"]
    );
}

#[test]
fn rule_2_2_restart_policy() {
    let p = pod(json!({"containers": [app("a")], "restartPolicy": "Sometimes"}));
    assert_eq!(
        errors(&p),
        [
            r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#
        ]
    );
}

#[test]
fn rule_2_3_negative_grace_period_is_a_warning_not_an_error() {
    let p = pod(json!({"containers": [app("a")], "terminationGracePeriodSeconds": -5}));
    let warnings = validate_pod(&p).expect("valid");
    let rendered: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "spec.terminationGracePeriodSeconds: must be >= 0; negative values are invalid and will be treated as 1"
        ]
    );
}

#[test]
fn rule_2_4_active_deadline_seconds_range() {
    for (v, want) in [
        (
            0,
            "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
        ),
        (
            2147483648_i64,
            "spec.activeDeadlineSeconds: Invalid value: 2147483648: must be between 1 and 2147483647, inclusive",
        ),
    ] {
        let p = pod(json!({"containers": [app("a")], "activeDeadlineSeconds": v}));
        assert_eq!(errors(&p), [want]);
    }
}

#[test]
fn rule_2_5_readiness_gates_are_qualified_names() {
    let p = pod(json!({"containers": [app("a")], "readinessGates": [{"conditionType": "bad gate"}]}));
    assert_eq!(
        errors(&p),
        [
            r#"spec.readinessGates[0].conditionType: Invalid value: "bad gate": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#
        ]
    );
}

#[test]
fn rule_2_6_hostname_and_subdomain_are_dns_labels() {
    let p = pod(json!({"containers": [app("a")], "hostname": "Web", "subdomain": "a.b"}));
    assert_eq!(
        errors(&p),
        [
            format!(r#"spec.hostname: Invalid value: "Web": {DNS_LABEL_ERR}"#),
            r#"spec.subdomain: Invalid value: "a.b": must not contain dots"#.to_owned(),
        ]
    );
}

#[test]
fn rule_2_7_container_names() {
    let p = pod(json!({
        "containers": [with(app("a"), json!({"name": ""})), app("App"), app("app"), app("app")],
        "initContainers": [app("app")]
    }));
    assert_eq!(
        errors(&p),
        [
            "spec.containers[0].name: Required value".to_owned(),
            format!(r#"spec.containers[1].name: Invalid value: "App": {DNS_LABEL_ERR}"#),
            r#"spec.containers[3].name: Duplicate value: "app""#.to_owned(),
            r#"spec.initContainers[0].name: Duplicate value: "app""#.to_owned(),
        ]
    );
}

#[test]
fn rule_2_8_image_required() {
    let p = pod(json!({"containers": [with(app("a"), json!({"image": ""}))]}));
    assert_eq!(errors(&p), ["spec.containers[0].image: Required value"]);
    let p = pod(json!({"containers": [with(app("a"), json!({"image": " busybox"}))]}));
    assert_eq!(
        errors(&p),
        [
            r#"spec.containers[0].image: Invalid value: " busybox": must not have leading or trailing whitespace"#
        ]
    );
}

#[test]
fn rule_2_9_termination_message_and_pull_policies() {
    let p = pod(json!({"containers": [with(app("a"), json!({
        "terminationMessagePolicy": "Stdout", "imagePullPolicy": "Sometimes"
    }))]}));
    assert_eq!(
        errors(&p),
        [
            r#"spec.containers[0].terminationMessagePolicy: Unsupported value: "Stdout": supported values: "File", "FallbackToLogsOnError""#,
            r#"spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never""#,
        ]
    );
}

#[test]
fn rule_2_10_container_ports() {
    let p = pod(json!({"containers": [with(app("a"), json!({"ports": [
        {"name": "http", "containerPort": 80},
        {"name": "http", "containerPort": 81},
        {"name": "8080", "containerPort": 0},
        {"name": "a-very-long-port-name", "containerPort": 70000, "hostPort": -1, "protocol": "ICMP"},
        {"containerPort": 90, "hostPort": 9000},
    ]})), with(app("b"), json!({"ports": [{"containerPort": 91, "hostPort": 9000}]}))]}));
    assert_eq!(
        errors(&p),
        [
            r#"spec.containers[0].ports[1].name: Duplicate value: "http""#,
            r#"spec.containers[0].ports[2].name: Invalid value: "8080": must contain at least one letter (a-z)"#,
            "spec.containers[0].ports[2].containerPort: Required value",
            r#"spec.containers[0].ports[3].name: Invalid value: "a-very-long-port-name": must be no more than 15 characters"#,
            "spec.containers[0].ports[3].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[3].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive",
            r#"spec.containers[0].ports[3].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP""#,
            r#"spec.containers[1].ports[0].hostPort: Duplicate value: "TCP//9000""#,
        ]
    );
}

#[test]
fn rule_2_10_init_container_host_ports_are_checked_one_by_one() {
    let port = json!({"ports": [{"containerPort": 80, "hostPort": 8000}]});
    let p = pod(json!({
        "containers": [with(app("a"), port.clone())],
        "initContainers": [with(app("i"), port.clone()), with(app("j"), json!({"ports": [
            {"containerPort": 80, "hostPort": 8000}, {"containerPort": 81, "hostPort": 8000}
        ]}))]
    }));
    assert_eq!(
        errors(&p),
        [r#"spec.initContainers[1].ports[1].hostPort: Duplicate value: "TCP//8000""#]
    );
}

#[test]
fn rule_2_10_host_network_host_port_must_match() {
    let p = pod(
        json!({"hostNetwork": true, "containers": [with(app("a"), json!({"ports": [
            {"containerPort": 80, "hostPort": 8080}
        ]}))]}),
    );
    assert_eq!(
        errors(&p),
        [
            "spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` when `hostNetwork` is true"
        ]
    );
}

#[test]
fn rule_2_11_restart_policy_forbidden_on_regular_containers() {
    let p = pod(json!({"containers": [with(app("a"), json!({"restartPolicy": "Always"}))]}));
    assert_eq!(
        errors(&p),
        ["spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"]
    );
}

#[test]
fn rule_2_12_init_container_restart_policy_only_always() {
    let p = pod(
        json!({"containers": [app("a")], "initContainers": [with(app("i"), json!({"restartPolicy": "Never"}))]}),
    );
    assert_eq!(
        errors(&p),
        [r#"spec.initContainers[0].restartPolicy: Unsupported value: "Never": supported values: "Always""#]
    );
}

#[test]
fn rule_2_13_probes_and_lifecycle_forbidden_on_plain_init_containers() {
    let extra = json!({
        "lifecycle": {"preStop": {"exec": {"command": ["x"]}}},
        "livenessProbe": {"exec": {"command": ["x"]}},
        "readinessProbe": {"exec": {"command": ["x"]}},
        "startupProbe": {"exec": {"command": ["x"]}}
    });
    let p = pod(json!({"containers": [app("a")], "initContainers": [with(app("i"), extra.clone())]}));
    let want: Vec<String> = ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"]
        .iter()
        .map(|f| format!("spec.initContainers[0].{f}: Forbidden: may not be set for init containers without restartPolicy=Always"))
        .collect();
    assert_eq!(errors(&p), want);

    let sidecar = with(with(app("s"), extra), json!({"restartPolicy": "Always"}));
    let p = pod(json!({"containers": [app("a")], "initContainers": [sidecar]}));
    assert_eq!(errors(&p), Vec::<String>::new());
}

#[test]
fn rule_2_14_resize_policy_not_allowed_on_plain_init_containers() {
    let p = pod(
        json!({"containers": [app("a")], "initContainers": [with(app("i"), json!({
            "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]
        }))]}),
    );
    assert_eq!(
        errors(&p),
        [
            r#"spec.initContainers[0].resizePolicy: Invalid value: []core.ContainerResizePolicy{core.ContainerResizePolicy{ResourceName:"cpu", RestartPolicy:"NotRequired"}}: must not be set for init containers"#
        ]
    );
}

#[test]
fn rule_2_15_probe_needs_exactly_one_handler() {
    let p = pod(json!({"containers": [with(app("a"), json!({
        "livenessProbe": {"periodSeconds": 5},
        "readinessProbe": {"exec": {"command": ["x"]}, "httpGet": {"port": 80}, "tcpSocket": {"port": 80}, "grpc": {"port": 80}}
    }))]}));
    assert_eq!(
        errors(&p),
        [
            "spec.containers[0].livenessProbe: Required value: must specify a handler type",
            "spec.containers[0].readinessProbe.httpGet: Forbidden: may not specify more than 1 handler type",
            "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
            "spec.containers[0].readinessProbe.grpc: Forbidden: may not specify more than 1 handler type",
        ]
    );
}

#[test]
fn rule_2_16_probe_numbers_must_be_non_negative() {
    let p = pod(
        json!({"containers": [app("a"), with(app("b"), json!({"readinessProbe": {
            "exec": {"command": ["x"]}, "initialDelaySeconds": -1, "timeoutSeconds": -2,
            "periodSeconds": -1, "successThreshold": -4, "failureThreshold": -5
        }}))]}),
    );
    assert_eq!(
        errors(&p),
        [
            "spec.containers[1].readinessProbe.initialDelaySeconds: Invalid value: -1: must be greater than or equal to 0",
            "spec.containers[1].readinessProbe.timeoutSeconds: Invalid value: -2: must be greater than or equal to 0",
            "spec.containers[1].readinessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
            "spec.containers[1].readinessProbe.successThreshold: Invalid value: -4: must be greater than or equal to 0",
            "spec.containers[1].readinessProbe.failureThreshold: Invalid value: -5: must be greater than or equal to 0",
        ]
    );
}

#[test]
fn rule_2_17_liveness_and_startup_success_threshold_must_be_1() {
    let probe = json!({"exec": {"command": ["x"]}, "successThreshold": 2});
    let p = pod(json!({"containers": [with(app("a"), json!({
        "livenessProbe": probe.clone(), "startupProbe": probe.clone(), "readinessProbe": probe
    }))]}));
    assert_eq!(
        errors(&p),
        [
            "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
            "spec.containers[0].startupProbe.successThreshold: Invalid value: 2: must be 1",
        ]
    );
}

#[test]
fn rule_2_18_probe_termination_grace_period() {
    let p = pod(json!({"containers": [with(app("a"), json!({
        "livenessProbe": {"exec": {"command": ["x"]}, "terminationGracePeriodSeconds": 0},
        "readinessProbe": {"exec": {"command": ["x"]}, "terminationGracePeriodSeconds": 10}
    }))]}));
    assert_eq!(
        errors(&p),
        [
            "spec.containers[0].livenessProbe.terminationGracePeriodSeconds: Invalid value: 0: must be greater than 0",
            "spec.containers[0].readinessProbe.terminationGracePeriodSeconds: Invalid value: 10: must not be set for readinessProbes",
        ]
    );
}

#[test]
fn rule_2_19_exec_command_required() {
    let p = pod(json!({"containers": [with(app("a"), json!({"livenessProbe": {"exec": {}}}))]}));
    assert_eq!(
        errors(&p),
        ["spec.containers[0].livenessProbe.exec.command: Required value"]
    );
}

#[test]
fn rule_2_20_http_get() {
    let p = pod(
        json!({"containers": [with(app("a"), json!({"livenessProbe": {"httpGet": {
            "port": "8080", "scheme": "FTP", "httpHeaders": [{"name": "X Bad", "value": "v"}]
        }}}))]}),
    );
    assert_eq!(
        errors(&p),
        [
            r#"spec.containers[0].livenessProbe.httpGet.port: Invalid value: "8080": must contain at least one letter (a-z)"#,
            r#"spec.containers[0].livenessProbe.httpGet.scheme: Unsupported value: "FTP": supported values: "HTTP", "HTTPS""#,
            r#"spec.containers[0].livenessProbe.httpGet.httpHeaders: Invalid value: "X Bad": a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')"#,
        ]
    );
}

#[test]
fn rule_2_21_tcp_and_grpc_ports() {
    let p = pod(json!({"containers": [with(app("a"), json!({
        "livenessProbe": {"tcpSocket": {"port": 0}},
        "readinessProbe": {"grpc": {"port": 70000}}
    }))]}));
    assert_eq!(
        errors(&p),
        [
            "spec.containers[0].livenessProbe.tcpSocket.port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.containers[0].readinessProbe.grpc.port: Invalid value: 70000: must be between 1 and 65535, inclusive",
        ]
    );
}

#[test]
fn rule_2_22_lifecycle_hooks_need_exactly_one_handler() {
    let p = pod(json!({"containers": [with(app("a"), json!({"lifecycle": {
        "postStart": {},
        "preStop": {"exec": {"command": ["x"]}, "sleep": {"seconds": 1}}
    }}))]}));
    assert_eq!(
        errors(&p),
        [
            "spec.containers[0].lifecycle.postStart: Required value: must specify a handler type",
            "spec.containers[0].lifecycle.preStop.sleep: Forbidden: may not specify more than 1 handler type",
        ]
    );
}

#[test]
fn rule_2_23_sleep_seconds_within_pod_grace_period() {
    let p = pod(json!({"terminationGracePeriodSeconds": 10, "containers": [
        with(app("a"), json!({"lifecycle": {"preStop": {"sleep": {"seconds": 11}}}})),
        with(app("b"), json!({"lifecycle": {"preStop": {"sleep": {"seconds": -1}}}})),
        with(app("c"), json!({"lifecycle": {"preStop": {"sleep": {"seconds": 0}}}})),
    ]}));
    assert_eq!(
        errors(&p),
        [
            "spec.containers[0].lifecycle.preStop.sleep: Invalid value: 11: must be non-negative and less than terminationGracePeriodSeconds (10)",
            "spec.containers[1].lifecycle.preStop.sleep: Invalid value: -1: must be non-negative and less than terminationGracePeriodSeconds (10)",
        ]
    );
}

#[test]
fn podvisor_rule_command_required() {
    let p = pod(json!({
        "containers": [with(app("a"), json!({"command": []}))],
        "initContainers": [{"name": "i", "image": "busybox"}]
    }));
    assert_eq!(
        errors(&p),
        [
            format!("spec.containers[0].command: Required value: {COMMAND_REQUIRED_DETAIL}"),
            format!("spec.initContainers[0].command: Required value: {COMMAND_REQUIRED_DETAIL}"),
        ]
    );
}

#[test]
fn podvisor_rule_args_alone_are_the_command_line() {
    let p = pod(json!({
        "containers": [with(app("a"), json!({"command": null, "args": ["sleep", "100"]}))],
        "initContainers": [{"name": "i", "image": "busybox", "args": ["true"]}]
    }));
    assert_eq!(errors(&p), Vec::<String>::new());
}

#[test]
fn metadata_name_namespace_and_labels() {
    let v = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "Web_1", "namespace": "a.b", "labels": {"ok/app": "x y"}},
        "spec": {"containers": [app("a")]}});
    let mut p: Pod = serde_json::from_value(v).expect("decodes");
    default_pod(&mut p);
    assert_eq!(
        errors(&p),
        [
            r#"metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
            r#"metadata.namespace: Invalid value: "a.b": must not contain dots"#,
            r#"metadata.labels: Invalid value: "x y": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#,
        ]
    );
    let mut nameless = pod(json!({"containers": [app("a")]}));
    nameless.metadata.name = None;
    assert_eq!(
        errors(&nameless),
        ["metadata.name: Required value: name or generateName is required"]
    );
}

#[test]
fn undefaulted_pod_reports_required_fields() {
    let v = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [app("a")]}});
    let p: Pod = serde_json::from_value(v).expect("decodes");
    assert_eq!(
        errors(&p),
        [
            "spec.terminationGracePeriodSeconds: Required value",
            "spec.containers[0].terminationMessagePolicy: Required value",
            "spec.containers[0].imagePullPolicy: Required value",
            "spec.restartPolicy: Required value",
            "spec.dnsPolicy: Required value",
        ]
    );
}

#[test]
fn a_pod_with_several_mistakes_reports_all_of_them() {
    let p = pod(json!({
        "restartPolicy": "Sometimes",
        "activeDeadlineSeconds": 0,
        "containers": [
            with(app("app"), json!({"image": "", "livenessProbe": {"exec": {"command": ["x"]}, "periodSeconds": -1}})),
            with(app("app"), json!({"command": null}))
        ]
    }));
    let err = validate_pod(&p).expect_err("invalid");
    assert_eq!(err.len(), 6);
    assert_eq!(
        err.to_string(),
        format!(
            "[spec.containers[0].image: Required value, spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0, spec.containers[1].command: Required value: {COMMAND_REQUIRED_DETAIL}, spec.containers[1].name: Duplicate value: \"app\", spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\", spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive]"
        )
    );
    let kinds: Vec<ErrorKind> = err.errors().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            ErrorKind::Required,
            ErrorKind::Invalid,
            ErrorKind::Required,
            ErrorKind::Duplicate,
            ErrorKind::NotSupported,
            ErrorKind::Invalid
        ]
    );
    assert_eq!(err.errors()[1].value.as_deref(), Some("-1"));
    assert_eq!(err.errors()[3].value.as_deref(), Some("\"app\""));
}

const UPDATE_PREFIX: &str = "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

#[test]
fn rule_2_24_pod_updates() {
    let old = pod(json!({
        "containers": [app("a")],
        "initContainers": [app("i")],
        "activeDeadlineSeconds": 100,
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "schedulingGates": [{"name": "example.com/gate"}]
    }));

    // Allowed: images, lowering the deadline, adding tolerations, removing gates.
    let mut ok = old.clone();
    if let Some(s) = ok.spec.as_mut() {
        s.containers[0].image = Some("busybox:2".into());
        if let Some(i) = s.init_containers.as_mut() {
            i[0].image = Some("busybox:3".into());
        }
        s.active_deadline_seconds = Some(50);
        if let Some(t) = s.tolerations.as_mut() {
            t.push(Default::default());
            t[1].operator = Some("Exists".into());
        }
        s.scheduling_gates = None;
    }
    assert_eq!(validate_pod_update(&old, &ok), Ok(vec![]));

    // Everything else is Forbidden.
    let mut bad = old.clone();
    if let Some(s) = bad.spec.as_mut() {
        s.containers[0].command = Some(vec!["other".into()]);
        s.restart_policy = Some("Never".into());
    }
    let err = validate_pod_update(&old, &bad).expect_err("forbidden");
    let msgs = err.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        msgs[0],
        format!("{UPDATE_PREFIX}\n  spec.containers[0].command\n  spec.restartPolicy")
    );
    assert_eq!(err.errors()[0].kind, ErrorKind::Forbidden);

    let mut raise = old.clone();
    if let Some(s) = raise.spec.as_mut() {
        s.active_deadline_seconds = Some(200);
        s.tolerations = None;
        s.scheduling_gates = Some(vec![Default::default()]);
        if let Some(g) = s.scheduling_gates.as_mut() {
            g[0].name = "example.com/new".into();
        }
    }
    assert_eq!(
        validate_pod_update(&old, &raise).err().map(|e| e.messages()),
        Some(vec![
            "spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"
                .to_owned()
        ])
    );

    let mut unset = old.clone();
    if let Some(s) = unset.spec.as_mut() {
        s.active_deadline_seconds = None;
        s.tolerations = None;
        s.scheduling_gates = Some(vec![Default::default()]);
        if let Some(g) = s.scheduling_gates.as_mut() {
            g[0].name = "example.com/new".into();
        }
    }
    assert_eq!(
        validate_pod_update(&old, &unset).err().map(|e| e.messages()),
        Some(vec![
            "spec.activeDeadlineSeconds: Invalid value: null: must not update from a positive integer to nil value".to_owned(),
            "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds".to_owned(),
            "spec.schedulingGates[0].name: Forbidden: only deletion is allowed, but found new scheduling gate 'example.com/new'".to_owned(),
        ])
    );

    let mut more = old.clone();
    if let Some(s) = more.spec.as_mut() {
        s.containers.push(s.containers[0].clone());
        s.containers[1].name = "b".into();
    }
    assert_eq!(
        validate_pod_update(&old, &more).err().map(|e| e.messages()),
        Some(vec![
            "spec.containers: Forbidden: pod updates may not add or remove containers".to_owned()
        ])
    );

    let mut renamed = old.clone();
    renamed.metadata.name = Some("other".into());
    assert_eq!(
        validate_pod_update(&old, &renamed).err().map(|e| e.messages()),
        Some(vec![
            r#"metadata.name: Invalid value: "other": field is immutable"#.to_owned()
        ])
    );

    // A negative grace period may be fixed to 1.
    let neg = pod(json!({"containers": [app("a")], "terminationGracePeriodSeconds": -1}));
    let mut fixed = neg.clone();
    if let Some(s) = fixed.spec.as_mut() {
        s.termination_grace_period_seconds = Some(1);
    }
    assert_eq!(validate_pod_update(&neg, &fixed), Ok(vec![]));
}

#[test]
fn volumes_are_defaulted_and_validated_with_their_field_paths() {
    let ok = pod(json!({
        "containers": [with(app("a"), json!({"volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}))],
        "volumes": [{"name": "cfg", "configMap": {"name": "settings"}}, {"name": "h", "hostPath": {"path": "/srv"}}]
    }));
    assert!(errors(&ok).is_empty(), "{:?}", errors(&ok));
    let volumes = ok.spec.as_ref().unwrap().volumes.clone().unwrap();
    assert_eq!(volumes[0].config_map.as_ref().unwrap().default_mode, Some(0o644));
    assert_eq!(volumes[1].host_path.as_ref().unwrap().type_.as_deref(), Some(""));
    let bad = pod(json!({
        "containers": [with(app("a"), json!({"volumeMounts": [
            {"name": "gone", "mountPath": "/x"},
            {"name": "cfg", "mountPath": "/x"},
            {"name": "cfg", "mountPath": "/y", "subPath": "../up"}
        ]}))],
        "volumes": [
            {"name": "cfg", "configMap": {"name": "settings", "items": [{"key": "k", "path": "/abs"}], "defaultMode": 1024}},
            {"name": "cfg", "emptyDir": {}},
            {"name": "two", "emptyDir": {}, "secret": {"secretName": "s"}},
            {"name": "none"},
            {"name": "h", "hostPath": {"path": "/srv", "type": "Dir"}}
        ]
    }));
    assert_eq!(
        errors(&bad),
        [
            r#"spec.volumes[0].configMap.items[0].path: Invalid value: "/abs": must be a relative path"#,
            "spec.volumes[0].configMap.defaultMode: Invalid value: 1024: must be a number between 0 and 0777 (octal), both inclusive",
            r#"spec.volumes[1].name: Duplicate value: "cfg""#,
            "spec.volumes[2].secret: Forbidden: may not specify more than 1 volume type",
            "spec.volumes[3]: Required value: must specify a volume type",
            r#"spec.volumes[4].hostPath.type: Unsupported value: "Dir": supported values: "", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice""#,
            r#"spec.containers[0].volumeMounts[0].name: Not found: "gone""#,
            r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/x": must be unique"#,
            r#"spec.containers[0].volumeMounts[2].subPath: Invalid value: "../up": must not contain '..'"#,
        ]
    );
}

#[test]
fn quantities_follow_the_grammar_and_resources_are_non_negative() {
    let p = pod(json!({
        "containers": [with(app("a"), json!({"resources": {
            "limits": {"memory": "abc", "cpu": "500m"},
            "requests": {"memory": "-1", "cpu": "1"}
        }}))],
        "initContainers": [with(app("i"), json!({"resources": {"limits": {"cpu": "1.2.3"}}}))],
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "-5Mi"}}]
    }));
    let msgs = errors(&p);
    let format =
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
    for want in [
        format!("spec.containers[0].resources.limits[memory]: Invalid value: \"abc\": {format}"),
        "spec.containers[0].resources.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0".to_string(),
        format!("spec.initContainers[0].resources.limits[cpu]: Invalid value: \"1.2.3\": {format}"),
        "spec.volumes[0].emptyDir.sizeLimit: Invalid value: \"-5Mi\": must be greater than or equal to 0".to_string(),
    ] {
        assert!(msgs.contains(&want), "missing {want}\n{msgs:#?}");
    }
    // Defaulting copied the init container's limit to its request: both are reported.
    assert_eq!(msgs.len(), 5, "{msgs:#?}");
    let fine = pod(
        json!({"containers": [with(app("a"), json!({"resources": {"limits": {"memory": "64Mi", "cpu": "0.5"}}}))]}),
    );
    assert_eq!(errors(&fine), Vec::<String>::new());
}
