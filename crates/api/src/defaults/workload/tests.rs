//! Workload defaulting, kind by kind, from JSON manifests as users write them.

use serde_json::json;

use super::*;
use podvisor_core::batchv1::JobSpec;

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("test object decodes")
}

fn template() -> serde_json::Value {
    json!({"metadata": {"labels": {"app": "web"}},
           "spec": {"containers": [{"name": "app", "image": "busybox", "command": ["sleep", "1"]}]}})
}

fn pod_spec(t: &PodTemplateSpec) -> &PodSpec {
    t.spec.as_ref().expect("template spec")
}

#[test]
fn deployment_defaults() {
    let mut d: Deployment = from(
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()}}),
    );
    default_deployment(&mut d);
    let spec = d.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.progress_deadline_seconds, Some(600));
    let strategy = spec.strategy.as_ref().expect("strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let ru = strategy.rolling_update.as_ref().expect("rollingUpdate");
    assert_eq!(ru.max_unavailable, Some(IntOrString::String("25%".into())));
    assert_eq!(ru.max_surge, Some(IntOrString::String("25%".into())));
    let pod = pod_spec(&spec.template);
    assert_eq!(pod.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        pod.containers[0].termination_message_policy.as_deref(),
        Some("File")
    );

    let mut recreate: Deployment = from(json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}}));
    default_deployment(&mut recreate);
    let spec = recreate.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(0), "an explicit 0 is kept");
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.rolling_update.clone()),
        None
    );

    let mut partial: Deployment = from(json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0}}}}));
    default_deployment(&mut partial);
    let ru = partial
        .spec
        .and_then(|s| s.strategy)
        .and_then(|s| s.rolling_update)
        .expect("ru");
    assert_eq!(ru.max_surge, Some(IntOrString::Int(0)));
    assert_eq!(ru.max_unavailable, Some(IntOrString::String("25%".into())));
}

#[test]
fn replica_set_defaults() {
    let mut rs: ReplicaSet = from(json!({"spec": {"selector": {"matchLabels": {"app": "web"}}}}));
    default_replica_set(&mut rs);
    let spec = rs.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    let template = spec.template.as_ref().expect("a template is created");
    assert_eq!(pod_spec(template).dns_policy.as_deref(), Some("ClusterFirst"));
}

#[test]
fn stateful_set_defaults() {
    let mut set: StatefulSet = from(json!({"spec": {"serviceName": "db", "template": template(),
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}));
    default_stateful_set(&mut set);
    let spec = set.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
    let strategy = spec.update_strategy.as_ref().expect("updateStrategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let ru = strategy.rolling_update.as_ref().expect("rollingUpdate");
    assert_eq!(
        (ru.partition, ru.max_unavailable.clone()),
        (Some(0), Some(IntOrString::Int(1)))
    );
    let retention = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .expect("retention");
    assert_eq!(
        (
            retention.when_deleted.as_deref(),
            retention.when_scaled.as_deref()
        ),
        (Some("Retain"), Some("Retain"))
    );
    let claim = &spec.volume_claim_templates.as_ref().expect("claims")[0];
    assert_eq!(
        claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()),
        Some("Filesystem")
    );
    assert_eq!(
        claim.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );

    // A typed RollingUpdate without rollingUpdate gets none; OnDelete gets nothing.
    for (typed, want) in [("RollingUpdate", None), ("OnDelete", None)] {
        let mut set: StatefulSet = from(json!({"spec": {"updateStrategy": {"type": typed}}}));
        default_stateful_set(&mut set);
        let ru = set
            .spec
            .and_then(|s| s.update_strategy)
            .and_then(|s| s.rolling_update);
        assert_eq!(ru, want, "{typed}");
    }
    let mut set: StatefulSet = from(
        json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}}),
    );
    default_stateful_set(&mut set);
    let ru = set
        .spec
        .and_then(|s| s.update_strategy)
        .and_then(|s| s.rolling_update)
        .expect("ru");
    assert_eq!(
        (ru.partition, ru.max_unavailable),
        (Some(2), Some(IntOrString::Int(1)))
    );
}

#[test]
fn daemon_set_defaults() {
    let mut ds: DaemonSet = from(json!({"spec": {"template": template()}}));
    default_daemon_set(&mut ds);
    let spec = ds.spec.as_ref().expect("spec");
    assert_eq!(spec.revision_history_limit, Some(10));
    let strategy = spec.update_strategy.as_ref().expect("strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let ru = strategy.rolling_update.as_ref().expect("ru");
    assert_eq!(
        (ru.max_unavailable.clone(), ru.max_surge.clone()),
        (Some(IntOrString::Int(1)), Some(IntOrString::Int(0)))
    );

    let mut on_delete: DaemonSet = from(json!({"spec": {"updateStrategy": {"type": "OnDelete"}}}));
    default_daemon_set(&mut on_delete);
    assert_eq!(
        on_delete
            .spec
            .and_then(|s| s.update_strategy)
            .and_then(|s| s.rolling_update),
        None
    );
}

fn job(spec: serde_json::Value) -> Job {
    let mut j: Job = from(json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": spec}));
    default_job(&mut j);
    j
}

fn job_spec(j: &Job) -> &JobSpec {
    j.spec.as_ref().expect("spec")
}

#[test]
fn job_completions_parallelism_and_scalars() {
    let j = job(json!({"template": template()}));
    let s = job_spec(&j);
    assert_eq!((s.completions, s.parallelism), (Some(1), Some(1)));
    assert_eq!(s.backoff_limit, Some(6));
    assert_eq!(s.completion_mode.as_deref(), Some("NonIndexed"));
    assert_eq!(s.suspend, Some(false));
    assert_eq!(s.manual_selector, Some(false));
    assert_eq!(s.pod_replacement_policy.as_deref(), Some("TerminatingOrFailed"));

    let j = job(json!({"parallelism": 3}));
    assert_eq!(
        (job_spec(&j).completions, job_spec(&j).parallelism),
        (None, Some(3))
    );
    let j = job(json!({"completions": 5}));
    assert_eq!(
        (job_spec(&j).completions, job_spec(&j).parallelism),
        (Some(5), Some(1))
    );

    let j = job(json!({"completionMode": "Indexed", "completions": 3, "backoffLimitPerIndex": 1}));
    assert_eq!(job_spec(&j).backoff_limit, Some(i32::MAX));

    let j = job(
        json!({"podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}),
    );
    let s = job_spec(&j);
    assert_eq!(s.pod_replacement_policy.as_deref(), Some("Failed"));
    let pattern = &s.pod_failure_policy.as_ref().expect("policy").rules[0]
        .on_pod_conditions
        .as_ref()
        .expect("patterns")[0];
    assert_eq!(pattern.status.as_deref(), Some("True"));
}

#[test]
fn job_selector_is_generated_from_the_uid() {
    let j = job(json!({"template": template()}));
    let s = job_spec(&j);
    let want_template: BTreeMap<String, String> = [
        ("app", "web"),
        ("batch.kubernetes.io/controller-uid", "u-1"),
        ("batch.kubernetes.io/job-name", "pi"),
        ("controller-uid", "u-1"),
        ("job-name", "pi"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(
        s.template.metadata.as_ref().and_then(|m| m.labels.clone()),
        Some(want_template)
    );
    let selector = s.selector.as_ref().expect("selector");
    assert_eq!(
        selector.match_labels,
        Some([("batch.kubernetes.io/controller-uid".to_owned(), "u-1".to_owned())].into())
    );
    // The template had labels: the Job's own are the user's template labels.
    assert_eq!(
        j.metadata.labels,
        Some([("app".to_owned(), "web".to_owned())].into())
    );

    // No template labels: the Job shows the generated ones.
    let j = job(json!({}));
    let labels = j.metadata.labels.expect("labels");
    assert_eq!(labels.len(), 4);
    assert_eq!(labels.get("job-name").map(String::as_str), Some("pi"));

    // Labels the user set are not overwritten (validation rejects wrong ones).
    let j = job(json!({"template": {"metadata": {"labels": {"job-name": "other"}}}}));
    let labels = job_spec(&j)
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("labels");
    assert_eq!(labels.get("job-name").map(String::as_str), Some("other"));
}

#[test]
fn manual_selector_leaves_the_selector_alone() {
    let j = job(
        json!({"manualSelector": true, "selector": {"matchLabels": {"app": "web"}}, "template": template()}),
    );
    let s = job_spec(&j);
    assert_eq!(
        s.selector.as_ref().and_then(|sel| sel.match_labels.clone()),
        Some([("app".to_owned(), "web".to_owned())].into())
    );
    let labels = s
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("labels");
    assert_eq!(labels.len(), 1);
}

#[test]
fn job_template_restart_policy_is_defaulted_like_any_pod() {
    // Upstream has no Job-specific default: the pod default `Always` applies, and validation
    // then rejects it (`Required value: valid values: "OnFailure", "Never"`).
    let j = job(json!({"template": template()}));
    assert_eq!(
        pod_spec(&job_spec(&j).template).restart_policy.as_deref(),
        Some("Always")
    );
}

#[test]
fn cron_job_defaults() {
    let mut cj: CronJob = from(
        json!({"metadata": {"name": "tick"}, "spec": {"schedule": "* * * * *",
        "jobTemplate": {"spec": {"template": template()}}}}),
    );
    default_cron_job(&mut cj);
    let spec = cj.spec.as_ref().expect("spec");
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Allow"));
    assert_eq!(spec.suspend, Some(false));
    assert_eq!(spec.successful_jobs_history_limit, Some(3));
    assert_eq!(spec.failed_jobs_history_limit, Some(1));
    let job_spec = spec.job_template.spec.as_ref().expect("job spec");
    assert_eq!(
        pod_spec(&job_spec.template).dns_policy.as_deref(),
        Some("ClusterFirst")
    );
    assert_eq!(
        job_spec.completions, None,
        "the Job's defaults are not the template's"
    );
    assert_eq!(job_spec.selector, None);
}
