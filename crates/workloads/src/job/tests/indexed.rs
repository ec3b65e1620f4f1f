//! Indexed Jobs: indexes on pods, completed and failed indexes, `successPolicy`, `backoffLimitPerIndex`.

use super::*;

#[test]
fn indexed_pods_carry_their_index_everywhere() {
    let p = plan(&indexed_job(2, 4), &[], t(0));
    assert_eq!(p.create.len(), 2);
    for (ix, c) in p.create.iter().enumerate() {
        let m = &c.metadata;
        assert_eq!(m.generate_name.as_deref(), Some(format!("pi-{ix}-").as_str()));
        assert_eq!(m.annotations.as_ref().unwrap()[COMPLETION_INDEX], ix.to_string());
        assert_eq!(m.labels.as_ref().unwrap()[COMPLETION_INDEX], ix.to_string());
        let spec = c.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("pi-{ix}").as_str()));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, "JOB_COMPLETION_INDEX");
        assert_eq!(
            env.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.labels['batch.kubernetes.io/job-completion-index']"
        );
    }
    let long = "j".repeat(60);
    assert_eq!(
        generate_name_with_index(&long, 12),
        format!("{}-12-", "j".repeat(54))
    );
}

#[test]
fn indexed_jobs_fill_the_lowest_pending_indexes_and_record_completed_ones() {
    let mut j = indexed_job(3, 8);
    status(&mut j).completed_indexes = Some("0".into());
    status(&mut j).succeeded = Some(1);
    let pods = [
        indexed(exited(pod("s1", "Succeeded"), 0, 3), 1),
        indexed(exited(pod("s3", "Succeeded"), 0, 3), 3),
        indexed(exited(pod("s4", "Succeeded"), 0, 3), 4),
        indexed(pod("r2", "Running"), 2),
    ];
    let p = plan(&j, &pods, t(10));
    let s = p.status.unwrap();
    assert_eq!(s.completed_indexes.as_deref(), Some("0,1,3,4"));
    assert_eq!(s.succeeded, Some(4));
    assert_eq!(uncounted(&s).0, Vec::<String>::new());
    let ixs: Vec<&str> = p
        .create
        .iter()
        .map(|c| c.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX].as_str())
        .collect();
    assert_eq!(ixs, ["5", "6"]);
}

#[test]
fn repeated_and_out_of_range_indexes_are_deleted() {
    let j = indexed_job(3, 3);
    let pods = [
        indexed(pod("a", "Pending"), 0),
        indexed(ready(pod("b", "Running")), 0),
        indexed(pod("c", "Running"), 7),
        pod("d", "Running"),
    ];
    let p = plan(&j, &pods, t(10));
    let mut d = names(&p.delete);
    d.sort();
    assert_eq!(d, ["a", "c", "d"]);
    assert!(p.create.is_empty());
}

#[test]
fn a_success_policy_ends_an_indexed_job_early() {
    let mut j = indexed_job(3, 5);
    spec(&mut j).success_policy = Some(SuccessPolicy {
        rules: vec![SuccessPolicyRule {
            succeeded_indexes: Some("0,1".into()),
            succeeded_count: None,
        }],
    });
    let pods = [
        indexed(exited(pod("a", "Succeeded"), 0, 3), 0),
        indexed(exited(pod("b", "Succeeded"), 0, 3), 1),
        indexed(pod("c", "Running"), 2),
    ];
    let p = plan(&j, &pods, t(10));
    let s = p.status.unwrap();
    assert_eq!(
        cond_says(&s, "SuccessCriteriaMet"),
        says("True", "SuccessPolicy", "Matched rules at index 0")
    );
    assert_eq!(names(&p.delete), ["c"]);
    // The lingering pod is not counted as failed.
    assert_eq!(uncounted(&s).1, Vec::<String>::new());
    assert!(cond(&s, "Complete").is_none());
}

#[test]
fn backoff_limit_per_index_fails_indexes_and_then_the_job() {
    let mut j = indexed_job(2, 2);
    spec(&mut j).backoff_limit_per_index = Some(1);
    status(&mut j).start_time = Some(Time(t(0)));
    // Index 0 failed for the first time: replaced after its own back-off, with the count.
    let first = indexed(exited(pod("a", "Failed"), 1, 100), 0);
    let other = indexed(pod("b", "Running"), 1);
    let p = plan(&j, &[first.clone(), other.clone()], t(105));
    assert!(p.create.is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(5)));
    // Its finalizer stays until the replacement exists.
    assert!(p.remove_finalizers.is_empty());
    let p = plan(&j, &[first.clone(), other.clone()], t(111));
    assert_eq!(p.create.len(), 1);
    let annotations = p.create[0].metadata.annotations.clone().unwrap();
    assert_eq!(annotations[INDEX_FAILURE_COUNT], "1");
    assert_eq!(annotations[COMPLETION_INDEX], "0");
    assert_eq!(p.status.unwrap().failed_indexes.as_deref(), Some(""));

    // The replacement fails too: index 0 has failed, the other then succeeds.
    let mut second = indexed(exited(pod("a2", "Failed"), 1, 200), 0);
    second
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(INDEX_FAILURE_COUNT.into(), "1".into());
    let first = no_finalizer(first);
    let p = plan(&j, &[first.clone(), second.clone(), other], t(210));
    let s = p.status.unwrap();
    assert_eq!(s.failed_indexes.as_deref(), Some("0"));
    assert!(cond(&s, "FailureTarget").is_none());
    let done = indexed(exited(pod("b", "Succeeded"), 0, 220), 1);
    let p = plan(&j, &[first, second, done], t(230));
    assert_eq!(
        cond_says(p.status.as_ref().unwrap(), "FailureTarget"),
        says("True", "FailedIndexes", "Job has failed indexes")
    );
}
