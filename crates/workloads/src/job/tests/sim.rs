//! A simulated pod population: each step plans, applies the plan as the API server and the
//! shell would, lets the kubelet move pods along a seeded script, and advances time.

use proptest::prelude::*;

use super::{job, t};
use crate::job::*;
use crate::pods;
use podvisor_core::corev1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodStatus,
};
use podvisor_core::metav1::Time;

struct World {
    job: Job,
    pods: Vec<Pod>,
    now: i64,
    next_uid: usize,
    script: Vec<u8>,
    cursor: usize,
    /// What the script made of pods (failures include deletions by a user): (finish time,
    /// succeeded).
    outcomes: Vec<(i64, bool)>,
    /// The shell's back-off record, when it keeps one.
    backoff: Option<Backoff>,
    /// Whether a script roll of 3 deletes a running pod, as a user or an eviction would.
    disruptions: bool,
    /// `podReplacementPolicy: Failed`: a deleted pod fails when it stops, not when deleted.
    only_failed: bool,
    /// The pods deleted by the script.
    user_deleted: Vec<String>,
}

impl World {
    fn roll(&mut self) -> u8 {
        let b = self.script[self.cursor % self.script.len()];
        self.cursor += 1;
        b
    }

    fn finish(pod: &mut Pod, phase: &str, code: i32, at: i64) {
        // A deleted pod is killed at once (grace 0): it finished when it was deleted.
        let at = pod
            .metadata
            .deletion_timestamp
            .as_ref()
            .map_or(at, |d| d.0.as_second());
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "main".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: code,
                        finished_at: Some(Time(t(at))),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
    }

    fn plan(&self) -> JobPlan {
        match &self.backoff {
            Some(b) => plan_with_backoff(&self.job, &self.pods, t(self.now), b),
            None => plan(&self.job, &self.pods, t(self.now)),
        }
    }

    fn apply(&mut self, plan: &JobPlan) {
        if let Some(s) = &plan.status {
            self.job.status = Some(s.clone());
        }
        if let Some(b) = &mut self.backoff {
            *b = plan.backoff;
        }
        for r in &plan.remove_finalizers {
            if let Some(p) = self
                .pods
                .iter_mut()
                .find(|p| p.metadata.uid.as_deref() == Some(&r.uid))
            {
                p.metadata
                    .finalizers
                    .get_or_insert_with(Vec::new)
                    .retain(|f| f != TRACKING_FINALIZER);
            }
        }
        for r in &plan.delete {
            if let Some(p) = self
                .pods
                .iter_mut()
                .find(|p| p.metadata.uid.as_deref() == Some(&r.uid))
            {
                p.metadata.deletion_timestamp.get_or_insert(Time(t(self.now)));
                p.metadata.deletion_grace_period_seconds = Some(0);
            }
        }
        for c in &plan.create {
            let mut p = c.clone();
            self.next_uid += 1;
            let prefix = p.metadata.generate_name.clone().unwrap_or_default();
            p.metadata.name = Some(format!("{prefix}{:05}", self.next_uid));
            p.metadata.uid = Some(format!("u{}", self.next_uid));
            p.metadata.creation_timestamp = Some(Time(t(self.now)));
            p.status = Some(PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            });
            self.pods.push(p);
        }
        // The API server removes a deleted pod once it holds no finalizer and stopped.
        self.pods.retain(|p| {
            !(p.metadata.deletion_timestamp.is_some()
                && pods::is_finished(p)
                && p.metadata.finalizers.as_ref().is_none_or(Vec::is_empty))
        });
    }

    /// The kubelet: deleted pods are killed, pending ones start, running ones follow the
    /// script.
    fn kubelet(&mut self) {
        let now = self.now;
        for i in 0..self.pods.len() {
            let phase = pods::phase(&self.pods[i]).to_string();
            if self.pods[i].metadata.deletion_timestamp.is_some() {
                if !pods::is_finished(&self.pods[i]) {
                    Self::finish(&mut self.pods[i], "Failed", 137, now);
                    let uid = self.pods[i].metadata.uid.clone().unwrap_or_default();
                    if self.only_failed && self.user_deleted.contains(&uid) {
                        // Only now does the controller see a failure (finished when deleted).
                        self.outcomes
                            .push((finished_time(&self.pods[i]).as_second(), false));
                    }
                }
                continue;
            }
            match phase.as_str() {
                "Pending" => {
                    let st = self.pods[i].status.get_or_insert_with(Default::default);
                    st.phase = Some("Running".into());
                    st.conditions = Some(vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(t(now))),
                        ..Default::default()
                    }]);
                }
                "Running" => match self.roll() {
                    1 => {
                        Self::finish(&mut self.pods[i], "Succeeded", 0, now);
                        self.outcomes.push((now, true));
                    }
                    2 => {
                        Self::finish(&mut self.pods[i], "Failed", 1, now);
                        self.outcomes.push((now, false));
                    }
                    3 if self.disruptions => {
                        self.pods[i].metadata.deletion_timestamp = Some(Time(t(now)));
                        self.pods[i].metadata.deletion_grace_period_seconds = Some(0);
                        self.user_deleted
                            .push(self.pods[i].metadata.uid.clone().unwrap_or_default());
                        if !self.only_failed {
                            self.outcomes.push((now, false));
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        self.pods.retain(|p| {
            !(p.metadata.deletion_timestamp.is_some()
                && pods::is_finished(p)
                && p.metadata.finalizers.as_ref().is_none_or(Vec::is_empty))
        });
    }

    /// The earliest time a pod may be created: the back-off after the failures since the
    /// last success, computed independently from the script's record.
    fn earliest_creation(&self) -> i64 {
        let last_success = self.outcomes.iter().filter(|o| o.1).map(|o| o.0).max();
        let failures: Vec<i64> = self
            .outcomes
            .iter()
            .filter(|o| !o.1 && last_success.is_none_or(|s| o.0 > s))
            .map(|o| o.0)
            .collect();
        match failures.iter().max() {
            None => i64::MIN,
            Some(last) => {
                let n = u32::try_from(failures.len()).unwrap();
                let delay = 10i64.saturating_mul(1i64 << (n - 1).min(20)).min(600);
                last + delay
            }
        }
    }
}

fn conditions(j: &Job) -> Vec<(String, String, String)> {
    j.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .filter(|c| c.status == "True")
        .map(|c| {
            (
                c.type_.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
        .collect()
}

struct Case {
    parallelism: i32,
    completions: i32,
    backoff_limit: i32,
    indexed: bool,
    only_failed: bool,
    with_record: bool,
    disruptions: bool,
    script: Vec<u8>,
    steps: Vec<i64>,
}

fn run(c: Case) -> Result<(), TestCaseError> {
    let mut j = job(Some(c.parallelism), Some(c.completions));
    let spec = j.spec.as_mut().unwrap();
    spec.backoff_limit = Some(c.backoff_limit);
    if c.indexed {
        spec.completion_mode = Some("Indexed".into());
    }
    if c.only_failed {
        spec.pod_replacement_policy = Some("Failed".into());
    }
    let mut w = World {
        job: j,
        pods: Vec::new(),
        now: 1000,
        next_uid: 0,
        script: c.script,
        cursor: 0,
        outcomes: Vec::new(),
        backoff: c.with_record.then(Backoff::default),
        disruptions: c.disruptions,
        only_failed: c.only_failed,
        user_deleted: Vec::new(),
    };
    let (parallelism, completions, backoff_limit) = (c.parallelism, c.completions, c.backoff_limit);
    let mut finished = false;
    for step in 0..5000 {
        // Two syncs settle what one moment brings (the second counts what the first released);
        // a third has nothing left to write or do.
        for _ in 0..2 {
            let p = w.plan();
            if !p.create.is_empty() {
                prop_assert!(
                    w.now >= w.earliest_creation(),
                    "created at {} before the back-off passed at {}",
                    w.now,
                    w.earliest_creation()
                );
            }
            w.apply(&p);
        }
        let quiet = w.plan();
        prop_assert!(
            quiet.status.is_none()
                && quiet.create.is_empty()
                && quiet.delete.is_empty()
                && quiet.remove_finalizers.is_empty()
                && quiet.events.is_empty(),
            "a third sync still acts: {:?}",
            quiet
        );
        let active: Vec<&Pod> = w.pods.iter().filter(|p| pods::is_active(p)).collect();
        let limit = usize::try_from(parallelism).unwrap();
        prop_assert!(active.len() <= limit);
        if c.only_failed {
            let terminating = w.pods.iter().filter(|p| pods::is_terminating(p)).count();
            prop_assert!(active.len() + terminating <= limit, "a replacement did not wait");
        }
        if c.indexed {
            let mut ixs: Vec<usize> = active.iter().filter_map(|p| completion_index(p)).collect();
            prop_assert_eq!(ixs.len(), active.len());
            ixs.sort_unstable();
            ixs.dedup();
            prop_assert_eq!(ixs.len(), active.len(), "two active pods share an index");
        }
        let status = w.job.status.clone().unwrap_or_default();
        prop_assert!(status.succeeded.unwrap_or(0) <= completions);
        if is_finished(&w.job) {
            // Nothing is left held by the finalizer.
            prop_assert!(
                w.pods
                    .iter()
                    .all(|p| p.metadata.finalizers.as_ref().is_none_or(Vec::is_empty))
            );
            finished = true;
            break;
        }
        w.now += w_step(&c.steps, step);
        w.kubelet();
    }
    prop_assert!(finished, "the Job did not finish: {:?}", w.job.status);
    let status = w.job.status.clone().unwrap_or_default();
    let conds = conditions(&w.job);
    let types: Vec<&str> = conds.iter().map(|c| c.0.as_str()).collect();
    let cond = |t: &str, r: &str, m: &str| (t.to_string(), r.to_string(), m.to_string());
    if types.contains(&"Complete") {
        let msg = "Reached expected number of succeeded pods";
        prop_assert_eq!(&conds[0], &cond("SuccessCriteriaMet", "CompletionsReached", msg));
        prop_assert_eq!(&conds[1], &cond("Complete", "CompletionsReached", msg));
        prop_assert_eq!(status.succeeded, Some(completions));
        prop_assert!(status.failed.unwrap_or(0) <= backoff_limit);
        prop_assert!(status.completion_time.is_some());
    } else {
        let msg = "Job has reached the specified backoff limit";
        prop_assert_eq!(&conds[0], &cond("FailureTarget", "BackoffLimitExceeded", msg));
        prop_assert_eq!(&conds[1], &cond("Failed", "BackoffLimitExceeded", msg));
        prop_assert!(status.failed.unwrap_or(0) > backoff_limit);
        prop_assert!(status.succeeded.unwrap_or(0) < completions);
    }
    prop_assert_eq!(status.active, None);
    prop_assert_eq!(status.terminating, Some(0));
    let u = status.uncounted_terminated_pods.unwrap_or_default();
    prop_assert!(u.succeeded.is_none() && u.failed.is_none());
    Ok(())
}

fn w_step(steps: &[i64], step: usize) -> i64 {
    steps[step % steps.len()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Pods only succeed or fail; the plan judges the back-off from the pods alone.
    #[test]
    fn a_job_keeps_its_bounds_and_ends_with_the_right_reason(
        parallelism in 1i32..=4,
        completions in 1i32..=6,
        backoff_limit in 0i32..=4,
        indexed in any::<bool>(),
        only_failed in any::<bool>(),
        // 0: keeps running, 1: succeeds, 2: fails.
        script in proptest::collection::vec(0u8..3, 1..64)
            .prop_filter("some pod finishes", |s| s.iter().any(|b| *b != 0)),
        steps in proptest::collection::vec(1i64..=30, 1..16),
    ) {
        run(Case { parallelism, completions, backoff_limit, indexed, only_failed, with_record: false,
            disruptions: false, script, steps })?;
    }

    /// Running pods are also deleted (3); the shell keeps the back-off record, so a deleted
    /// pod that is gone still holds its replacement back.
    #[test]
    fn with_deletions_and_a_back_off_record_the_bounds_hold_too(
        parallelism in 1i32..=4,
        completions in 1i32..=6,
        backoff_limit in 0i32..=4,
        indexed in any::<bool>(),
        only_failed in any::<bool>(),
        script in proptest::collection::vec(0u8..4, 1..64)
            .prop_filter("some pod finishes", |s| s.iter().any(|b| *b != 0)),
        steps in proptest::collection::vec(1i64..=30, 1..16),
    ) {
        run(Case { parallelism, completions, backoff_limit, indexed, only_failed, with_record: true,
            disruptions: true, script, steps })?;
    }
}
