//! Jobs and CronJobs, rule by rule, asserting on the messages kube-apiserver prints.

use podvisor_core::batchv1::{CronJob, Job};

use super::*;
use crate::defaults::{default_cron_job, default_job};

fn template(restart: &str) -> J {
    json!({"spec": {"containers": [app("work")], "restartPolicy": restart}})
}

fn job_named(name: &str, spec: J) -> Job {
    let base = json!({"template": template("Never")});
    let v = json!({"metadata": {"name": name, "uid": "0a1b"}, "spec": with(base, spec)});
    let mut j: Job = serde_json::from_value(v).expect("test job decodes");
    default_job(&mut j);
    j
}

fn job(spec: J) -> Job {
    job_named("pi", spec)
}

fn messages<T>(r: Result<T, ValidationErrors>) -> Vec<String> {
    r.err().map(|e| e.messages()).unwrap_or_default()
}

#[test]
fn a_defaulted_valid_job_passes() {
    assert_eq!(validate_job(&job(json!({}))), Ok(vec![]));
}

#[test]
fn job_restart_policy_is_on_failure_or_never() {
    let j = job(json!({"template": {"spec": {"containers": [app("work")]}}}));
    assert_eq!(
        messages(validate_job(&j)),
        ["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
    );
    let j = job(json!({"template": template("OnFailure"),
        "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}}));
    assert_eq!(
        messages(validate_job(&j)),
        [
            "spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified"
        ]
    );
}

#[test]
fn job_numbers_are_non_negative() {
    let j = job(
        json!({"parallelism": -1, "completions": -2, "backoffLimit": -3, "activeDeadlineSeconds": -4, "ttlSecondsAfterFinished": -5}),
    );
    assert_eq!(
        messages(validate_job(&j)),
        [
            "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
            "spec.completions: Invalid value: -2: must be greater than or equal to 0",
            "spec.activeDeadlineSeconds: Invalid value: -4: must be greater than or equal to 0",
            "spec.backoffLimit: Invalid value: -3: must be greater than or equal to 0",
            "spec.ttlSecondsAfterFinished: Invalid value: -5: must be greater than or equal to 0",
        ]
    );
}

#[test]
fn indexed_jobs_need_completions_and_index_fields_need_indexed_mode() {
    let j = job(json!({"completionMode": "Indexed", "parallelism": 2}));
    assert_eq!(
        messages(validate_job(&j)),
        ["spec.completions: Required value: when completion mode is Indexed"]
    );
    let j = job(json!({"backoffLimitPerIndex": 1, "maxFailedIndexes": 1}));
    assert_eq!(
        messages(validate_job(&j)),
        [
            "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode",
            "spec.maxFailedIndexes: Invalid value: 1: requires indexed completion mode",
        ]
    );
    let j = job(json!({"completionMode": "Sometimes"}));
    assert_eq!(
        messages(validate_job(&j)),
        [
            "spec.completionMode: Unsupported value: \"Sometimes\": supported values: \"NonIndexed\", \"Indexed\""
        ]
    );
    let long = "a".repeat(62);
    let j = job_named(
        &long,
        json!({"completionMode": "Indexed", "completions": 10, "parallelism": 10}),
    );
    assert_eq!(
        messages(validate_job(&j)),
        [format!(
            "metadata.name: Invalid value: \"{long}\": will not able to create pod with invalid DNS label: {long}-9"
        )]
    );
}

#[test]
fn generated_selector_labels_must_be_the_jobs() {
    let j = job(
        json!({"template": {"metadata": {"labels": {"controller-uid": "someone-else"}}, "spec": {"containers": [app("work")], "restartPolicy": "Never"}}}),
    );
    assert_eq!(
        messages(validate_job(&j)),
        [
            "spec.template.metadata.labels[controller-uid]: Invalid value: {\"batch.kubernetes.io/controller-uid\":\"0a1b\",\"batch.kubernetes.io/job-name\":\"pi\",\"controller-uid\":\"someone-else\",\"job-name\":\"pi\"}: must be '0a1b'"
        ]
    );
    let mut no_uid: Job =
        serde_json::from_value(json!({"metadata": {"name": "pi"}, "spec": {"template": template("Never")}}))
            .expect("decodes");
    default_job(&mut no_uid);
    assert_eq!(messages(validate_job(&no_uid)), ["metadata.uid: Required value"]);
}

#[test]
fn manual_selectors_must_match_the_template() {
    let j = job(json!({"manualSelector": true, "selector": {"matchLabels": {"app": "x"}}}));
    assert_eq!(
        messages(validate_job(&j)),
        ["spec.template.metadata.labels: Invalid value: null: `selector` does not match template `labels`"]
    );
    let j = job(json!({"manualSelector": true}));
    assert_eq!(
        messages(validate_job(&j)),
        [
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: null: `selector` does not match template `labels`",
        ]
    );
}

#[test]
fn pod_failure_policy_rules() {
    let j = job(json!({"podFailurePolicy": {"rules": [
        {"action": "", "onExitCodes": {"operator": "In", "values": [0, 3, 2, 2], "containerName": "nope"}},
        {"action": "Retry", "onPodConditions": [{"type": "DisruptionTarget", "status": "Maybe"}]},
        {"action": "FailIndex", "onPodConditions": [{"type": "DisruptionTarget"}], "onExitCodes": {"operator": "NotIn", "values": [1]}},
        {"action": "Ignore"}
    ]}}));
    assert_eq!(
        messages(validate_job(&j)),
        [
            "spec.podFailurePolicy.rules[0].action: Required value: valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
            "spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: \"nope\": must be one of the container or initContainer names in the pod template",
            "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator",
            "spec.podFailurePolicy.rules[0].onExitCodes.values[3]: Duplicate value: 2",
            "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: [0,3,2,2]: must be ordered",
            "spec.podFailurePolicy.rules[1].action: Unsupported value: \"Retry\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\"",
            "spec.podFailurePolicy.rules[1].onPodConditions[0].status: Unsupported value: \"Maybe\": supported values: \"False\", \"True\", \"Unknown\"",
            "spec.podFailurePolicy.rules[2].action: Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set",
            "spec.podFailurePolicy.rules[2]: Invalid value: specifying both OnExitCodes and OnPodConditions is not supported",
            "spec.podFailurePolicy.rules[3]: Invalid value: specifying one of OnExitCodes and OnPodConditions is required",
        ]
    );
    let j = job(json!({"podFailurePolicy": {"rules": []}, "podReplacementPolicy": "TerminatingOrFailed"}));
    assert_eq!(
        messages(validate_job(&j)),
        [
            "spec.podReplacementPolicy: Unsupported value: \"TerminatingOrFailed\": supported values: \"Failed\""
        ]
    );
}

#[test]
fn success_policy_needs_indexed_and_valid_indexes() {
    let j = job(
        json!({"completionMode": "Indexed", "completions": 5, "parallelism": 5,
        "successPolicy": {"rules": [{"succeededIndexes": "0-2,2", "succeededCount": 7}, {}]}}),
    );
    assert_eq!(
        messages(validate_job(&j)),
        [
            "spec.successPolicy.rules[0].succeededIndexes: Invalid value: \"0-2,2\": error parsing succeededIndexes: non-increasing order, previous: 2, current: 2",
            "spec.successPolicy.rules[0].succeededCount: Invalid value: 7: must be less than or equal to 5 (the number of specified completions)",
            "spec.successPolicy.rules[0].succeededCount: Invalid value: 7: must be less than or equal to 0 (the number of indexes in the specified succeededIndexes field)",
            "spec.successPolicy.rules[1]: Required value: at least one of succeededCount or succeededIndexes must be specified",
        ]
    );
}

#[test]
fn job_updates() {
    let old = job(json!({"completions": 3}));
    let mut new = old.clone();
    if let Some(s) = new.spec.as_mut() {
        s.completions = Some(4);
        s.selector = Some(podvisor_core::metav1::LabelSelector {
            match_labels: Some(
                [
                    ("batch.kubernetes.io/controller-uid".to_owned(), "0a1b".to_owned()),
                    ("job-name".to_owned(), "pi".to_owned()),
                ]
                .into(),
            ),
            ..Default::default()
        });
    }
    assert_eq!(
        messages(validate_job_update(&old, &new)),
        [
            "spec.completions: Invalid value: 4: field is immutable",
            "spec.selector: Invalid value: {\"matchLabels\":{\"batch.kubernetes.io/controller-uid\":\"0a1b\",\"job-name\":\"pi\"}}: field is immutable",
        ]
    );
    // The template is immutable while running...
    let mut changed = old.clone();
    if let Some(pod) = changed.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.node_selector = Some([("zone".to_owned(), "a".to_owned())].into());
    }
    let msgs = messages(validate_job_update(&old, &changed));
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].starts_with("spec.template: Invalid value: {"), "{msgs:?}");
    assert!(msgs[0].ends_with("}: field is immutable"), "{msgs:?}");
    // ...but a suspended Job that never started may change its scheduling directives.
    let suspended = job(json!({"suspend": true}));
    let mut moved = suspended.clone();
    if let Some(pod) = moved.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.node_selector = Some([("zone".to_owned(), "a".to_owned())].into());
    }
    assert_eq!(validate_job_update(&suspended, &moved), Ok(vec![]));
    let mut reimaged = suspended.clone();
    if let Some(pod) = reimaged.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.containers[0].image = Some("other".into());
    }
    assert_eq!(messages(validate_job_update(&suspended, &reimaged)).len(), 1);
    // Indexed Jobs scale completions with parallelism.
    let indexed = job(json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3}));
    let mut scaled = indexed.clone();
    if let Some(s) = scaled.spec.as_mut() {
        s.completions = Some(5);
    }
    assert_eq!(
        messages(validate_job_update(&indexed, &scaled)),
        ["spec.completions: Invalid value: 5: can only be modified in tandem with spec.parallelism"]
    );
    if let Some(s) = scaled.spec.as_mut() {
        s.parallelism = Some(5);
    }
    assert_eq!(validate_job_update(&indexed, &scaled), Ok(vec![]));
}

#[test]
fn job_names_that_are_not_labels_warn() {
    let warnings = validate_job(&job_named("pi.v2", json!({}))).expect("valid");
    let rendered: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "metadata.name: this is used in Pod names and hostnames, which can result in surprising behavior; a DNS label is recommended: [must not contain dots]"
        ]
    );
}

fn cron_job_named(name: &str, spec: J) -> CronJob {
    let base =
        json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template("OnFailure")}}});
    let v = json!({"metadata": {"name": name}, "spec": with(base, spec)});
    let mut cj: CronJob = serde_json::from_value(v).expect("test cronjob decodes");
    default_cron_job(&mut cj);
    cj
}

fn cron_job(spec: J) -> CronJob {
    cron_job_named("tick", spec)
}

#[test]
fn a_defaulted_valid_cron_job_passes() {
    assert_eq!(validate_cron_job(&cron_job(json!({}))), Ok(vec![]));
    assert_eq!(
        validate_cron_job(&cron_job(
            json!({"schedule": "@every 90s", "timeZone": "Europe/Berlin"})
        )),
        Ok(vec![])
    );
}

#[test]
fn cron_job_names_leave_room_for_the_job_suffix() {
    let name = "c".repeat(53);
    assert_eq!(
        messages(validate_cron_job(&cron_job_named(&name, json!({})))),
        [format!(
            "metadata.name: Invalid value: \"{name}\": must be no more than 52 characters"
        )]
    );
    let old = cron_job_named(&name, json!({}));
    assert_eq!(validate_cron_job_update(&old, &old.clone()), Ok(vec![]));
}

#[test]
fn cron_job_schedule_rules() {
    let cases = [
        ("", "spec.schedule: Required value"),
        (
            "every minute",
            "spec.schedule: Invalid value: \"every minute\": expected exactly 5 fields, found 2: [every minute]",
        ),
        (
            "61 * * * *",
            "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
        ),
        (
            "@sometimes",
            "spec.schedule: Invalid value: \"@sometimes\": unrecognized descriptor: @sometimes",
        ),
    ];
    for (schedule, want) in cases {
        assert_eq!(
            messages(validate_cron_job(&cron_job(json!({"schedule": schedule})))),
            [want],
            "{schedule:?}"
        );
    }
    assert_eq!(
        messages(validate_cron_job(&cron_job(
            json!({"schedule": "CRON_TZ=UTC 0 * * * *"})
        ))),
        [
            "spec.schedule: Invalid value: \"CRON_TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
        ]
    );
    // An existing TZ= schedule may stay on update, not together with timeZone.
    let old = cron_job(json!({"schedule": "TZ=UTC 0 * * * *"}));
    let kept = cron_job(json!({"schedule": "TZ=UTC 5 * * * *"}));
    assert_eq!(validate_cron_job_update(&old, &kept), Ok(vec![]));
    let both = cron_job(json!({"schedule": "TZ=UTC 5 * * * *", "timeZone": "UTC"}));
    assert_eq!(
        messages(validate_cron_job_update(&old, &both)),
        [
            "spec.schedule: Invalid value: \"TZ=UTC 5 * * * *\": cannot use both timeZone field and TZ or CRON_TZ in schedule"
        ]
    );
}

#[test]
fn cron_job_time_zones() {
    let cases = [
        (
            "",
            "spec.timeZone: Invalid value: \"\": timeZone must be nil or non-empty string",
        ),
        (
            "Mars/Olympus_Mons",
            "spec.timeZone: Invalid value: \"Mars/Olympus_Mons\": unknown time zone Mars/Olympus_Mons",
        ),
        (
            "../etc/passwd",
            "spec.timeZone: Invalid value: \"../etc/passwd\": unknown time zone ../etc/passwd",
        ),
        (
            "local",
            "spec.timeZone: Invalid value: \"local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ),
    ];
    for (tz, want) in cases {
        let msgs = messages(validate_cron_job(&cron_job(json!({"timeZone": tz}))));
        assert_eq!(msgs.first().map(String::as_str), Some(want), "{tz:?}: {msgs:?}");
    }
}

#[test]
fn cron_job_template_and_policy_rules() {
    let cj = cron_job(
        json!({"concurrencyPolicy": "Sometimes", "startingDeadlineSeconds": -1,
        "successfulJobsHistoryLimit": -1, "failedJobsHistoryLimit": -1,
        "jobTemplate": {"spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}},
            "template": template("Always")}}}),
    );
    assert_eq!(
        messages(validate_cron_job(&cj)),
        [
            "spec.startingDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0",
            "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
            "spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
            "spec.jobTemplate.spec.selector: Invalid value: {\"matchLabels\":{\"a\":\"b\"}}: `selector` will be auto-generated",
            "spec.jobTemplate.spec.manualSelector: Unsupported value: true: supported values: \"nil\", \"false\"",
            "spec.successfulJobsHistoryLimit: Invalid value: -1: must be greater than or equal to 0",
            "spec.failedJobsHistoryLimit: Invalid value: -1: must be greater than or equal to 0",
        ]
    );
}
