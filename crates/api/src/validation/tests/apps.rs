//! Deployments, ReplicaSets, StatefulSets, DaemonSets and ControllerRevisions, rule by rule,
//! asserting on the messages kube-apiserver prints.

use podvisor_core::appsv1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use podvisor_core::corev1::ServiceAccount;

use super::*;
use crate::defaults::{default_daemon_set, default_deployment, default_replica_set, default_stateful_set};

fn template() -> J {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [app("app")]}})
}

fn deployment(spec: J) -> Deployment {
    let base = json!({"selector": {"matchLabels": {"app": "web"}}, "template": template()});
    let v = json!({"metadata": {"name": "web"}, "spec": with(base, spec)});
    let mut d: Deployment = serde_json::from_value(v).expect("test deployment decodes");
    default_deployment(&mut d);
    d
}

fn messages<T>(r: Result<T, ValidationErrors>) -> Vec<String> {
    r.err().map(|e| e.messages()).unwrap_or_default()
}

#[test]
fn a_defaulted_valid_deployment_passes() {
    assert_eq!(validate_deployment(&deployment(json!({}))), Ok(vec![]));
}

#[test]
fn deployment_selector_is_required_and_must_match_the_template() {
    let mut d = deployment(json!({}));
    if let Some(s) = d.spec.as_mut() {
        s.selector = Default::default();
    }
    assert_eq!(
        messages(validate_deployment(&d)),
        [
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`",
        ]
    );
    let d = deployment(json!({"selector": {"matchLabels": {"app": "other"}}}));
    assert_eq!(
        messages(validate_deployment(&d)),
        [
            "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`"
        ]
    );
    let d = deployment(json!({"selector": {"matchLabels": {}}}));
    assert_eq!(
        messages(validate_deployment(&d)),
        ["spec.selector: Invalid value: {}: empty selector is invalid for deployment"]
    );
    let d = deployment(json!({"selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}}));
    assert_eq!(
        messages(validate_deployment(&d)),
        [
            "spec.selector.matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator",
            "spec.selector: Invalid value: {\"matchExpressions\":[{\"key\":\"app\",\"operator\":\"Near\"}]}: invalid label selector",
        ]
    );
    let d = deployment(
        json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}}),
    );
    assert_eq!(validate_deployment(&d), Ok(vec![]));
}

#[test]
fn deployment_template_restart_policy_must_be_always() {
    let t = json!({"metadata": {"labels": {"app": "web"}},
                   "spec": {"containers": [app("app")], "restartPolicy": "OnFailure", "activeDeadlineSeconds": 5}});
    let d = deployment(json!({"template": t}));
    assert_eq!(
        messages(validate_deployment(&d)),
        [
            "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"",
            "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported",
        ]
    );
}

#[test]
fn deployment_template_gets_the_pod_spec_rules_at_its_path() {
    let t = json!({"metadata": {"labels": {"app": "web", "bad key!": "x"}},
                   "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    let d = deployment(json!({"selector": {"matchLabels": {"app": "web"}}, "template": t}));
    let msgs = messages(validate_deployment(&d));
    assert!(
        msgs.iter()
            .any(|m| m
                .starts_with("spec.template.labels: Invalid value: \"bad key!\": name part must consist of")),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&format!(
            "spec.template.spec.containers[0].command: Required value: {COMMAND_REQUIRED_DETAIL}"
        )),
        "{msgs:?}"
    );
}

#[test]
fn deployment_strategy_rules() {
    let d = deployment(json!({"strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}));
    assert_eq!(
        messages(validate_deployment(&d)),
        ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]
    );
    let d = deployment(json!({"strategy": {"rollingUpdate": {"maxUnavailable": "150%", "maxSurge": "x"}}}));
    assert_eq!(
        messages(validate_deployment(&d)),
        [
            "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"x\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%",
        ]
    );
    let d = deployment(json!({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}));
    assert_eq!(
        messages(validate_deployment(&d)),
        ["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]
    );
    let d = deployment(json!({"strategy": {"type": "BlueGreen"}}));
    assert_eq!(
        messages(validate_deployment(&d)),
        [
            "spec.strategy: Unsupported value: {\"Type\":\"BlueGreen\",\"RollingUpdate\":null}: supported values: \"Recreate\", \"RollingUpdate\""
        ]
    );
}

#[test]
fn deployment_numbers() {
    let d = deployment(json!({"replicas": -1, "minReadySeconds": 700, "revisionHistoryLimit": -2}));
    assert_eq!(
        messages(validate_deployment(&d)),
        [
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.revisionHistoryLimit: Invalid value: -2: must be greater than or equal to 0",
            "spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds",
        ]
    );
}

#[test]
fn deployment_selector_is_immutable() {
    let old = deployment(json!({}));
    let new = deployment(json!({"selector": {"matchLabels": {"app": "web", "tier": "x"}},
        "template": {"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": {"containers": [app("app")]}}}));
    assert_eq!(
        messages(validate_deployment_update(&old, &new)),
        [
            "spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"tier\":\"x\"}}: field is immutable"
        ]
    );
    let scaled = deployment(json!({"replicas": 5}));
    assert_eq!(validate_deployment_update(&old, &scaled), Ok(vec![]));
    let mut renamed = old.clone();
    renamed.metadata.name = Some("api".into());
    assert_eq!(
        messages(validate_deployment_update(&old, &renamed)),
        ["metadata.name: Invalid value: \"api\": field is immutable"]
    );
}

#[test]
fn deployment_template_warnings_are_returned() {
    let t = json!({"metadata": {"labels": {"app": "web"}},
                   "spec": {"containers": [app("app")], "terminationGracePeriodSeconds": -1}});
    let warnings = validate_deployment(&deployment(json!({"template": t}))).expect("valid");
    let rendered: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "spec.template.spec.terminationGracePeriodSeconds: must be >= 0; negative values are invalid and will be treated as 1"
        ]
    );
}

fn replica_set(spec: J) -> ReplicaSet {
    let base = json!({"selector": {"matchLabels": {"app": "web"}}, "template": template()});
    let v = json!({"metadata": {"name": "web-1"}, "spec": with(base, spec)});
    let mut rs: ReplicaSet = serde_json::from_value(v).expect("test replicaset decodes");
    default_replica_set(&mut rs);
    rs
}

#[test]
fn replica_set_rules() {
    assert_eq!(validate_replica_set(&replica_set(json!({}))), Ok(vec![]));
    let rs = replica_set(json!({"replicas": -3, "selector": {"matchLabels": {}}}));
    assert_eq!(
        messages(validate_replica_set(&rs)),
        [
            "spec.replicas: Invalid value: -3: must be greater than or equal to 0",
            "spec.selector: Invalid value: {}: empty selector is invalid for deployment",
        ]
    );
    let old = replica_set(json!({}));
    let new = replica_set(
        json!({"selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "app", "operator": "Exists"}]}}),
    );
    assert_eq!(
        messages(validate_replica_set_update(&old, &new)),
        [
            "spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\"},\"matchExpressions\":[{\"key\":\"app\",\"operator\":\"Exists\"}]}: field is immutable"
        ]
    );
}

fn stateful_set(name: &str, spec: J) -> StatefulSet {
    let base =
        json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(), "serviceName": "web"});
    let v = json!({"metadata": {"name": name}, "spec": with(base, spec)});
    let mut set: StatefulSet = serde_json::from_value(v).expect("test statefulset decodes");
    default_stateful_set(&mut set);
    set
}

#[test]
fn stateful_set_rules() {
    assert_eq!(validate_stateful_set(&stateful_set("db", json!({}))), Ok(vec![]));
    let set = stateful_set(
        "db.example",
        json!({"podManagementPolicy": "Random", "serviceName": "Web_1",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "partition": -1}}}),
    );
    let msgs = messages(validate_stateful_set(&set));
    assert_eq!(
        msgs,
        [
            "metadata.name: Invalid value: \"db.example\": must not contain dots".to_owned(),
            "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'".to_owned(),
            "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or equal to 0".to_owned(),
            "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: cannot be 0".to_owned(),
            format!("spec.serviceName: Invalid value: \"Web_1\": {DNS_LABEL_ERR}"),
        ]
    );
    let set = stateful_set(
        "db",
        json!({"updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}}}),
    );
    assert_eq!(
        messages(validate_stateful_set(&set)),
        [
            "spec.updateStrategy.rollingUpdate: Invalid value: {\"Partition\":1,\"MaxUnavailable\":null}: only allowed for updateStrategy 'RollingUpdate'"
        ]
    );
    let set = stateful_set(
        "db",
        json!({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Keep"}}),
    );
    assert_eq!(
        messages(validate_stateful_set(&set)),
        [
            "spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: \"Keep\": supported values: \"Retain\", \"Delete\""
        ]
    );
}

#[test]
fn stateful_set_claim_templates_provide_volumes_and_identity_is_the_controllers() {
    let t = json!({"metadata": {"labels": {"app": "web"}},
        "spec": {"hostname": "Not_A_Label", "containers": [with(app("app"), json!({"volumeMounts": [{"name": "data", "mountPath": "/data"}]}))]}});
    let set = stateful_set(
        "db",
        json!({"template": t,
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}),
    );
    assert_eq!(validate_stateful_set(&set), Ok(vec![]));
}

#[test]
fn stateful_set_updates_only_change_the_allowed_fields() {
    let old = stateful_set("db", json!({}));
    let new = stateful_set(
        "db",
        json!({"replicas": 3, "minReadySeconds": 5, "revisionHistoryLimit": 2,
        "updateStrategy": {"type": "OnDelete"}, "ordinals": {"start": 1}}),
    );
    assert_eq!(validate_stateful_set_update(&old, &new), Ok(vec![]));
    let new = stateful_set(
        "db",
        json!({"serviceName": "other", "podManagementPolicy": "Parallel"}),
    );
    assert_eq!(
        messages(validate_stateful_set_update(&old, &new)),
        [
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        ]
    );
}

fn daemon_set(spec: J) -> DaemonSet {
    let base = json!({"selector": {"matchLabels": {"app": "web"}}, "template": template()});
    let v = json!({"metadata": {"name": "agent"}, "spec": with(base, spec)});
    let mut ds: DaemonSet = serde_json::from_value(v).expect("test daemonset decodes");
    default_daemon_set(&mut ds);
    ds
}

#[test]
fn daemon_set_rules() {
    assert_eq!(validate_daemon_set(&daemon_set(json!({}))), Ok(vec![]));
    let ds = daemon_set(json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}));
    assert_eq!(
        messages(validate_daemon_set(&ds)),
        ["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
    );
    let ds =
        daemon_set(json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": 1, "maxSurge": "10%"}}}));
    assert_eq!(
        messages(validate_daemon_set(&ds)),
        [
            "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: \"10%\": may not be set when maxUnavailable is non-zero"
        ]
    );
    let ds = daemon_set(json!({"updateStrategy": {"type": "Surge"}}));
    assert_eq!(
        messages(validate_daemon_set(&ds)),
        [
            "spec.updateStrategy: Unsupported value: {\"Type\":\"Surge\",\"RollingUpdate\":null}: supported values: \"RollingUpdate\", \"OnDelete\""
        ]
    );
    let mut ds = daemon_set(json!({}));
    if let Some(s) = ds.spec.as_mut() {
        s.selector = Default::default();
    }
    assert_eq!(
        messages(validate_daemon_set(&ds)),
        [
            "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`"
        ]
    );
    let old = daemon_set(json!({}));
    let new = daemon_set(json!({"selector": {"matchLabels": {"app": "web", "x": "y"}}}));
    assert_eq!(
        messages(validate_daemon_set_update(&old, &new)),
        [
            "spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"x\":\"y\"}}: field is immutable",
            "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`",
        ]
    );
}

#[test]
fn controller_revisions() {
    let cr = |v: J| -> ControllerRevision { serde_json::from_value(v).expect("decodes") };
    let ok = cr(json!({"metadata": {"name": "web-1"}, "revision": 1, "data": {"spec": {}}}));
    assert_eq!(validate_controller_revision(&ok), Ok(vec![]));
    let bad = cr(json!({"metadata": {"name": "web-1"}, "revision": -1}));
    assert_eq!(
        messages(validate_controller_revision(&bad)),
        [
            "revision: Invalid value: -1: must be greater than or equal to 0",
            "data: Required value: data is mandatory",
        ]
    );
    let list = cr(json!({"metadata": {"name": "web-1"}, "revision": 1, "data": [1]}));
    assert_eq!(
        messages(validate_controller_revision(&list)),
        ["data: Required value: data must be a valid JSON object"]
    );
    let changed = cr(json!({"metadata": {"name": "web-1"}, "revision": 2, "data": {"spec": {"a": 1}}}));
    assert_eq!(
        messages(validate_controller_revision_update(&ok, &changed)),
        ["data: Invalid value: {\"spec\":{\"a\":1}}: field is immutable"]
    );
}

#[test]
fn service_accounts_are_metadata_only() {
    let sa = |name: &str| -> ServiceAccount {
        serde_json::from_value(json!({"metadata": {"name": name}, "automountServiceAccountToken": false}))
            .expect("decodes")
    };
    assert_eq!(validate_service_account(&sa("builder")), Ok(vec![]));
    let msgs = messages(validate_service_account(&sa("Builder")));
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0].starts_with("metadata.name: Invalid value: \"Builder\": a lowercase RFC 1123 subdomain"),
        "{msgs:?}"
    );
    assert_eq!(
        messages(validate_service_account_update(&sa("builder"), &sa("deployer"))),
        ["metadata.name: Invalid value: \"deployer\": field is immutable"]
    );
}

#[test]
fn deployment_and_replica_set_names_that_are_not_labels_warn() {
    let want = [
        "metadata.name: this is used in Pod names and hostnames, which can result in surprising behavior; a DNS label is recommended: [must not contain dots]",
    ];
    let mut d = deployment(json!({}));
    d.metadata.name = Some("web.v2".into());
    let rendered: Vec<String> = validate_deployment(&d)
        .expect("valid")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(rendered, want);
    let mut rs = replica_set(json!({}));
    rs.metadata.name = Some("web.v2".into());
    let rendered: Vec<String> = validate_replica_set(&rs)
        .expect("valid")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(rendered, want);
}
