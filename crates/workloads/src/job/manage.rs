//! `manageJob` (rule 6.5): which pods to delete, which to create (with their completion
//! indexes, rule 6.3), and how long the re-creation back-off still holds creation (rule 6.7).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use podvisor_core::batchv1::Job;
use podvisor_core::corev1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use podvisor_core::k8s_openapi::jiff::Timestamp;

use super::indexes::{COMPLETION_INDEX, Intervals, completion_index};
use super::policy::{self, Action};
use super::{Config, INDEX_FAILURE_COUNT, INDEX_IGNORED_FAILURE_COUNT, TRACKING_FINALIZER};
use crate::owner::Owner;
use crate::pods::{self, PodName};

/// The environment variable Indexed Job containers read their index from (rule 6.3).
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The most pods one sync creates or deletes (`MaxPodCreateDeletePerSync`, rule 1.5).
pub const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
/// `names.MaxGeneratedNameLength` (rule 1.6).
const MAX_GENERATED_NAME_LENGTH: usize = 58;

/// What `manageJob` decided.
#[derive(Debug, Default)]
pub(super) struct Managed<'p> {
    /// Pods to delete (their tracking finalizer removed first, as `deleteJobPods` does).
    pub delete: Vec<&'p Pod>,
    /// Pods to create.
    pub create: Vec<Pod>,
    /// When the back-off that held creation passes.
    pub requeue_after: Option<Duration>,
}

/// The sync's view of the pods, shared by `manageJob` and the tracking.
pub(super) struct View<'p> {
    pub active: Vec<&'p Pod>,
    pub succeeded_indexes: Intervals,
    pub failed_indexes: Option<Intervals>,
    /// Per index, the failed pod whose finalizer stays until its replacement exists.
    pub delayed: BTreeMap<usize, &'p Pod>,
    /// What is left of the Job's re-creation back-off (rule 6.7).
    pub backoff_left: Duration,
}

/// `activePodsForRemoval`: for Indexed Jobs, first the pods without a valid index and all but
/// the most valuable pod of each repeated index; then, to reach `at_least`, the rest in the
/// rule 2.4 order without rank.
fn pods_for_removal<'p>(
    cfg: &Config<'_>,
    active: &[&'p Pod],
    at_least: usize,
    now: Timestamp,
) -> Vec<&'p Pod> {
    let (mut rm, mut left): (Vec<&Pod>, Vec<&Pod>) = (Vec::new(), Vec::new());
    if cfg.indexed {
        let mut by_index: BTreeMap<usize, Vec<&Pod>> = BTreeMap::new();
        for p in active {
            match completion_index(p) {
                Some(ix) if ix < cfg.completions_or_zero() => by_index.entry(ix).or_default().push(p),
                _ => rm.push(p),
            }
        }
        for mut same in by_index.into_values() {
            pods::sort_for_deletion(&mut same, &[], now);
            if let Some(keep) = same.pop() {
                left.push(keep);
            }
            rm.extend(same);
        }
    } else {
        left = active.to_vec();
    }
    if rm.len() < at_least {
        pods::sort_for_deletion(&mut left, &[], now);
        let more = at_least - rm.len();
        rm.extend(left.into_iter().take(more));
    }
    rm
}

/// `firstPendingIndexes`: the lowest `count` indexes below `completions` not succeeded, failed,
/// active, nor (when only failed pods are replaced) held by a terminating pod.
fn first_pending_indexes(cfg: &Config<'_>, pods: &[&Pod], view: &View<'_>, count: usize) -> Vec<usize> {
    let mut non_pending = view
        .succeeded_indexes
        .with(view.active.iter().filter_map(|p| completion_index(p)));
    if cfg.only_replace_failed {
        non_pending = non_pending.with(
            pods.iter()
                .filter(|p| pods::is_terminating(p))
                .filter_map(|p| completion_index(p)),
        );
    }
    if let Some(failed) = &view.failed_indexes {
        non_pending = non_pending.merge(failed);
    }
    let completions = cfg.completions_or_zero();
    let mut out = Vec::with_capacity(count.min(completions));
    let mut candidate = 0;
    for (first, last) in non_pending.iter() {
        while candidate < completions && out.len() < count && candidate < first {
            out.push(candidate);
            candidate += 1;
        }
        candidate = candidate.max(last + 1);
    }
    while candidate < completions && out.len() < count {
        out.push(candidate);
        candidate += 1;
    }
    out
}

fn annotation_count(pod: &Pod, key: &str) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(|v| i32::try_from(v).ok())
        .filter(|v| *v >= 0)
        .unwrap_or(0)
}

/// `batch.kubernetes.io/job-index-failure-count` (0 when absent or not a valid int32).
pub(super) fn index_failure_count(pod: &Pod) -> i32 {
    annotation_count(pod, INDEX_FAILURE_COUNT)
}

/// The counted plus the ignored failures of the pod's index.
pub(super) fn index_absolute_failure_count(pod: &Pod) -> i32 {
    index_failure_count(pod).saturating_add(annotation_count(pod, INDEX_IGNORED_FAILURE_COUNT))
}

/// `podGenerateNameWithIndex`: `<job>-<i>-`, the Job name cut so the whole stays within 58.
pub fn generate_name_with_index(job: &str, index: usize) -> String {
    let suffix = format!("-{index}-");
    if job.len() + suffix.len() <= MAX_GENERATED_NAME_LENGTH {
        return format!("{job}{suffix}");
    }
    let mut cut = MAX_GENERATED_NAME_LENGTH
        .saturating_sub(suffix.len())
        .min(job.len());
    while !job.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &job[..cut])
}

/// A pod of `job` (rules 1.6, 6.3): the tracking finalizer; for an Indexed Job the index as
/// annotation and label, `JOB_COMPLETION_INDEX`, `spec.hostname` and `<job>-<i>-` as name
/// prefix; with `backoffLimitPerIndex`, the index's failure counts carried over from
/// `replaced`, the failed pod it replaces.
pub(super) fn new_pod(job: &Job, cfg: &Config<'_>, index: Option<usize>, replaced: Option<&Pod>) -> Pod {
    let name = job.metadata.name.as_deref().unwrap_or("");
    let mut template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.to_string());
    }
    let prefix = match index {
        None => pods::generate_name_prefix(name),
        Some(ix) => {
            let annotations = meta.annotations.get_or_insert_with(Default::default);
            annotations.insert(COMPLETION_INDEX.to_string(), ix.to_string());
            if cfg.per_index.is_some() {
                let (mut count, mut ignored) = (0, 0);
                if let Some(old) = replaced {
                    count = index_failure_count(old);
                    ignored = annotation_count(old, INDEX_IGNORED_FAILURE_COUNT);
                    let counts = cfg
                        .failure_policy
                        .and_then(|fp| policy::match_pod_failure_policy(fp, old))
                        .is_none_or(|a| a.counts());
                    if counts {
                        count = count.saturating_add(1);
                    } else {
                        ignored = ignored.saturating_add(1);
                    }
                }
                annotations.insert(INDEX_FAILURE_COUNT.to_string(), count.to_string());
                if ignored > 0 {
                    annotations.insert(INDEX_IGNORED_FAILURE_COUNT.to_string(), ignored.to_string());
                }
            }
            meta.labels
                .get_or_insert_with(Default::default)
                .insert(COMPLETION_INDEX.to_string(), ix.to_string());
            generate_name_with_index(name, ix)
        }
    };
    if let (Some(ix), Some(spec)) = (index, template.spec.as_mut()) {
        spec.hostname = Some(format!("{name}-{ix}"));
        let env = EnvVar {
            name: COMPLETION_INDEX_ENV.to_string(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let inits = spec.init_containers.iter_mut().flatten();
        for c in inits.chain(spec.containers.iter_mut()) {
            let vars = c.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == COMPLETION_INDEX_ENV) {
                vars.push(env.clone());
            }
        }
    }
    let owner = Owner {
        api_version: super::API_VERSION,
        kind: super::KIND,
        meta: &job.metadata,
    };
    pods::pod_from_template(
        &template,
        job.metadata.namespace.as_deref().unwrap_or("default"),
        owner.controller_ref(),
        PodName::Generate(&prefix),
    )
}

/// `manageJob` (rule 6.5) for a Job that is neither finished nor being deleted. `succeeded` is
/// the sync's count of successes, `terminating` its count of terminating pods.
pub(super) fn manage<'p>(
    job: &Job,
    cfg: &Config<'_>,
    pods: &[&'p Pod],
    view: &View<'p>,
    succeeded: usize,
    terminating: usize,
    now: Timestamp,
) -> Managed<'p> {
    let active = view.active.len();
    if cfg.suspended {
        return Managed {
            delete: pods_for_removal(cfg, &view.active, active, now),
            ..Default::default()
        };
    }
    let want = match cfg.completions {
        None if succeeded > 0 => active,
        None => cfg.parallelism,
        Some(c) => c.saturating_sub(succeeded).min(cfg.parallelism),
    };
    let mut delete = pods_for_removal(cfg, &view.active, active.saturating_sub(want), now);
    if !delete.is_empty() {
        // A deletion sync never also creates.
        delete.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
        return Managed {
            delete,
            ..Default::default()
        };
    }
    let held = if cfg.only_replace_failed { terminating } else { 0 };
    let diff = want.saturating_sub(held).saturating_sub(active);
    if diff == 0 {
        return Managed::default();
    }
    if cfg.per_index.is_none() && !view.backoff_left.is_zero() {
        return Managed {
            requeue_after: Some(view.backoff_left),
            ..Default::default()
        };
    }
    let diff = diff.min(MAX_POD_CREATE_DELETE_PER_SYNC);
    if !cfg.indexed {
        return Managed {
            create: (0..diff).map(|_| new_pod(job, cfg, None, None)).collect(),
            ..Default::default()
        };
    }
    let mut indexes = first_pending_indexes(cfg, pods, view, diff);
    let mut requeue_after = None;
    if cfg.per_index.is_some() {
        // Each index waits for its own back-off, counted from its last failed pod.
        let wait = |ix: &usize| {
            view.delayed.get(ix).map_or(Duration::ZERO, |p| {
                let n = usize::try_from(index_absolute_failure_count(p)).unwrap_or(0) + 1;
                policy::remaining(n, policy::finished_time(p), now)
            })
        };
        requeue_after = indexes.iter().map(wait).filter(|d| !d.is_zero()).min();
        indexes.retain(|ix| wait(ix).is_zero());
    }
    Managed {
        create: indexes
            .into_iter()
            .map(|ix| new_pod(job, cfg, Some(ix), view.delayed.get(&ix).copied()))
            .collect(),
        delete: Vec::new(),
        requeue_after,
    }
}

/// Whether the Job fails because of container restarts (rule 6.6): `restartPolicy: OnFailure`
/// and the restarts of its `Pending`/`Running` pods reach `backoffLimit` (any, when it is 0).
pub(super) fn past_backoff_limit_on_failure(job: &Job, cfg: &Config<'_>, pods: &[&Pod]) -> bool {
    let on_failure = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    if !on_failure {
        return false;
    }
    let restarts: i64 = pods
        .iter()
        .filter(|p| matches!(pods::phase(p), "Running" | "Pending"))
        .flat_map(|p| {
            let s = p.status.as_ref();
            let init = s
                .and_then(|s| s.init_container_statuses.as_deref())
                .unwrap_or(&[]);
            let main = s.and_then(|s| s.container_statuses.as_deref()).unwrap_or(&[]);
            init.iter().chain(main).map(|c| i64::from(c.restart_count))
        })
        .sum();
    if cfg.backoff_limit == 0 {
        restarts > 0
    } else {
        restarts >= i64::from(cfg.backoff_limit)
    }
}

/// The per-index pods whose finalizer removal waits for a replacement
/// (`getPodsWithDelayedDeletionPerIndex`): per index not succeeded, failed nor active, the
/// failed pod with the highest failure count, latest finished on ties.
pub(super) fn delayed_per_index<'p>(
    cfg: &Config<'_>,
    pods: &[&'p Pod],
    active: &[&Pod],
    succeeded: &Intervals,
    failed: &Intervals,
) -> BTreeMap<usize, &'p Pod> {
    let active_ix: BTreeSet<usize> = active.iter().filter_map(|p| completion_index(p)).collect();
    let mut out: BTreeMap<usize, &Pod> = BTreeMap::new();
    for p in pods {
        let Some(ix) = cfg.valid_index(p) else { continue };
        if !super::has_finalizer(p)
            || !cfg.is_pod_failed(p)
            || succeeded.has(ix)
            || failed.has(ix)
            || active_ix.contains(&ix)
        {
            continue;
        }
        let replace = out.get(&ix).is_none_or(|last| {
            index_absolute_failure_count(last) <= index_absolute_failure_count(p)
                && policy::finished_time(p) >= policy::finished_time(last)
        });
        if replace {
            out.insert(ix, p);
        }
    }
    out
}

/// `isIndexFailed`: the pod failed and matched `FailIndex`, or counted and its index had
/// already failed `backoffLimitPerIndex` times.
pub(super) fn is_index_failed(cfg: &Config<'_>, pod: &Pod, per_index: i32) -> bool {
    if !cfg.is_pod_failed(pod) {
        return false;
    }
    let action = cfg
        .failure_policy
        .and_then(|fp| policy::match_pod_failure_policy(fp, pod));
    if action == Some(Action::FailIndex) {
        return true;
    }
    action.is_none_or(|a| a.counts()) && index_failure_count(pod) >= per_index
}
