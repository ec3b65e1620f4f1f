//! Every workload kind, a Pod and a ServiceAccount decoded from rich fixtures.

use super::fixtures::*;
use super::*;

#[test]
fn decodes_a_rich_deployment() {
    use k8s_openapi::api::apps::v1::Deployment;
    let (template, template_json) = rich_template();
    let mut metadata = meta("web");
    metadata.annotations = [("deployment.kubernetes.io/revision", "3")].p();
    metadata.owner_references = vec![pb!(pbmeta::OwnerReference {
        api_version: "example.com/v1",
        kind: "App",
        name: "web",
        uid: "1234-5678",
        controller: true,
        block_owner_deletion: true,
    })];
    metadata.finalizers = ["example.com/cleanup"].p();
    let d = pb!(apps::Deployment {
        metadata: metadata,
        spec: pb!(apps::DeploymentSpec {
            replicas: 3,
            selector: selector(),
            template: template,
            strategy: pb!(apps::DeploymentStrategy {
                r#type: "RollingUpdate",
                rolling_update: pb!(apps::RollingUpdateDeployment {
                    max_unavailable: int(0),
                    max_surge: string("25%"),
                }),
            }),
            min_ready_seconds: 5,
            revision_history_limit: 0,
            paused: true,
            progress_deadline_seconds: 600,
        }),
        status: pb!(apps::DeploymentStatus {
            replicas: 3,
            ready_replicas: 1
        }),
    });
    let mut metadata_json = meta_json("web");
    metadata_json["annotations"] = json!({"deployment.kubernetes.io/revision": "3"});
    metadata_json["ownerReferences"] = json!([{
        "apiVersion": "example.com/v1",
        "kind": "App",
        "name": "web",
        "uid": "1234-5678",
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    metadata_json["finalizers"] = json!(["example.com/cleanup"]);
    assert_converts::<Deployment, _>(
        d,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata_json,
            "spec": {
                "replicas": 3,
                "selector": selector_json(),
                "template": template_json,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
                "minReadySeconds": 5,
                "revisionHistoryLimit": 0,
                "paused": true,
                "progressDeadlineSeconds": 600,
            },
        }),
    );
}

#[test]
fn decodes_a_replica_set() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    let (template, template_json) = rich_template();
    let rs = pb!(apps::ReplicaSet {
        metadata: meta("web-5d4f"),
        spec: pb!(apps::ReplicaSetSpec {
            replicas: 0,
            min_ready_seconds: 10,
            selector: selector(),
            template: template,
        }),
    });
    assert_converts::<ReplicaSet, _>(
        rs,
        json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": meta_json("web-5d4f"),
            "spec": {"replicas": 0, "minReadySeconds": 10, "selector": selector_json(), "template": template_json},
        }),
    );
}

#[test]
fn decodes_a_stateful_set_with_claim_templates() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    let (template, template_json) = rich_template();
    let claim = pb!(pb::PersistentVolumeClaim {
        metadata: pb!(pbmeta::ObjectMeta {
            name: "data",
            labels: [("app", "db")]
        }),
        spec: pb!(pb::PersistentVolumeClaimSpec {
            access_modes: ["ReadWriteOnce"],
            resources: pb!(pb::VolumeResourceRequirements {
                requests: [("storage", "1Gi")]
            }),
            storage_class_name: "",
            volume_mode: "Filesystem",
        }),
    });
    let sts = pb!(apps::StatefulSet {
        metadata: meta("db"),
        spec: pb!(apps::StatefulSetSpec {
            replicas: 2,
            selector: selector(),
            template: template,
            volume_claim_templates: [claim],
            service_name: "db",
            pod_management_policy: "Parallel",
            update_strategy: pb!(apps::StatefulSetUpdateStrategy {
                r#type: "RollingUpdate",
                rolling_update: pb!(apps::RollingUpdateStatefulSetStrategy {
                    partition: 1,
                    max_unavailable: string("50%"),
                }),
            }),
            revision_history_limit: 5,
            min_ready_seconds: 3,
            persistent_volume_claim_retention_policy: pb!(
                apps::StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: "Delete",
                    when_scaled: "Retain",
                }
            ),
            ordinals: pb!(apps::StatefulSetOrdinals { start: 5 }),
        }),
    });
    assert_converts::<StatefulSet, _>(
        sts,
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta_json("db"),
            "spec": {
                "replicas": 2,
                "selector": selector_json(),
                "template": template_json,
                "volumeClaimTemplates": [{
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "data", "labels": {"app": "db"}},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                        "storageClassName": "",
                        "volumeMode": "Filesystem",
                    },
                }],
                "serviceName": "db",
                "podManagementPolicy": "Parallel",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1, "maxUnavailable": "50%"}},
                "revisionHistoryLimit": 5,
                "minReadySeconds": 3,
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
                "ordinals": {"start": 5},
            },
        }),
    );
}

#[test]
fn decodes_a_daemon_set() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let (template, template_json) = rich_template();
    let ds = pb!(apps::DaemonSet {
        metadata: meta("agent"),
        spec: pb!(apps::DaemonSetSpec {
            selector: selector(),
            template: template,
            update_strategy: pb!(apps::DaemonSetUpdateStrategy {
                r#type: "RollingUpdate",
                rolling_update: pb!(apps::RollingUpdateDaemonSet {
                    max_unavailable: int(1),
                    max_surge: int(0),
                }),
            }),
            min_ready_seconds: 2,
            revision_history_limit: 10,
        }),
        status: pb!(apps::DaemonSetStatus { number_ready: 4 }),
    });
    assert_converts::<DaemonSet, _>(
        ds,
        json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": meta_json("agent"),
            "spec": {
                "selector": selector_json(),
                "template": template_json,
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                "minReadySeconds": 2,
                "revisionHistoryLimit": 10,
            },
        }),
    );
}

/// A JobSpec with every field set, and its JSON.
fn rich_job_spec() -> (batch::JobSpec, Value) {
    let (template, template_json) = rich_template();
    let m = pb!(batch::JobSpec {
        parallelism: 2,
        completions: 4,
        active_deadline_seconds: 3600i64,
        pod_failure_policy: pb!(batch::PodFailurePolicy {
            rules: [
                pb!(batch::PodFailurePolicyRule {
                    action: "FailJob",
                    on_exit_codes: pb!(batch::PodFailurePolicyOnExitCodesRequirement {
                        container_name: "app",
                        operator: "In",
                        values: [42, 43],
                    }),
                }),
                pb!(batch::PodFailurePolicyRule {
                    action: "Ignore",
                    on_pod_conditions: [pb!(batch::PodFailurePolicyOnPodConditionsPattern {
                        r#type: "DisruptionTarget",
                        status: "True",
                    })],
                }),
            ],
        }),
        success_policy: pb!(batch::SuccessPolicy {
            rules: [pb!(batch::SuccessPolicyRule {
                succeeded_indexes: "0-2",
                succeeded_count: 2
            })],
        }),
        backoff_limit: 0,
        backoff_limit_per_index: 1,
        max_failed_indexes: 2,
        selector: selector(),
        manual_selector: true,
        template: template,
        ttl_seconds_after_finished: 100,
        completion_mode: "Indexed",
        suspend: false,
        pod_replacement_policy: "Failed",
    });
    let j = json!({
        "parallelism": 2,
        "completions": 4,
        "activeDeadlineSeconds": 3600,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "app", "operator": "In", "values": [42, 43]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
        "successPolicy": {"rules": [{"succeededIndexes": "0-2", "succeededCount": 2}]},
        "backoffLimit": 0,
        "backoffLimitPerIndex": 1,
        "maxFailedIndexes": 2,
        "selector": selector_json(),
        "manualSelector": true,
        "template": template_json,
        "ttlSecondsAfterFinished": 100,
        "completionMode": "Indexed",
        "suspend": false,
        "podReplacementPolicy": "Failed",
    });
    (m, j)
}

#[test]
fn decodes_a_rich_job() {
    use k8s_openapi::api::batch::v1::Job;
    let (spec, spec_json) = rich_job_spec();
    let job = pb!(batch::Job {
        metadata: meta("pi"),
        spec: spec,
        status: pb!(batch::JobStatus {
            active: 1,
            succeeded: 2
        }),
    });
    assert_converts::<Job, _>(
        job,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta_json("pi"), "spec": spec_json}),
    );
}

#[test]
fn decodes_a_cron_job_with_a_full_job_template() {
    use k8s_openapi::api::batch::v1::CronJob;
    let (spec, spec_json) = rich_job_spec();
    let cj = pb!(batch::CronJob {
        metadata: meta("nightly"),
        spec: pb!(batch::CronJobSpec {
            schedule: "0 3 * * *",
            time_zone: "Europe/Berlin",
            starting_deadline_seconds: 200i64,
            concurrency_policy: "Forbid",
            suspend: true,
            job_template: pb!(batch::JobTemplateSpec {
                metadata: pb!(pbmeta::ObjectMeta {
                    labels: [("job", "nightly")]
                }),
                spec: spec,
            }),
            successful_jobs_history_limit: 0,
            failed_jobs_history_limit: 1,
        }),
    });
    assert_converts::<CronJob, _>(
        cj,
        json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta_json("nightly"),
            "spec": {
                "schedule": "0 3 * * *",
                "timeZone": "Europe/Berlin",
                "startingDeadlineSeconds": 200,
                "concurrencyPolicy": "Forbid",
                "suspend": true,
                "jobTemplate": {"metadata": {"labels": {"job": "nightly"}}, "spec": spec_json},
                "successfulJobsHistoryLimit": 0,
                "failedJobsHistoryLimit": 1,
            },
        }),
    );
}

#[test]
fn decodes_a_pod() {
    use k8s_openapi::api::core::v1::Pod;
    let (spec, spec_json) = rich_pod_spec();
    let pod = pb!(pb::Pod {
        metadata: pb!(pbmeta::ObjectMeta {
            generate_name: "debug-",
            namespace: "default"
        }),
        spec: spec,
        status: pb!(pb::PodStatus { phase: "Running" }),
    });
    assert_converts::<Pod, _>(
        pod,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "debug-", "namespace": "default"},
            "spec": spec_json,
        }),
    );
}

#[test]
fn decodes_a_service_account() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let sa = pb!(pb::ServiceAccount {
        metadata: meta("builder"),
        secrets: [pb!(pb::ObjectReference {
            name: "builder-token"
        })],
        image_pull_secrets: [pb!(pb::LocalObjectReference { name: "regcred" })],
        automount_service_account_token: false,
    });
    assert_converts::<ServiceAccount, _>(
        sa,
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta_json("builder"),
            "secrets": [{"name": "builder-token"}],
            "imagePullSecrets": [{"name": "regcred"}],
            "automountServiceAccountToken": false,
        }),
    );
}
