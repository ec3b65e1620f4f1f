//! The workload kinds (apps/v1 Deployment, ReplicaSet, StatefulSet, DaemonSet,
//! ControllerRevision; batch/v1 Job, CronJob) and core/v1 ServiceAccount: defaulting and
//! validation from `podvisor-api`, `metadata.generation` bumped on spec changes, the `scale`
//! subresource's replicas, the garbage collector's default propagation, and kubectl's tables
//! (`pkg/printers/internalversion/printers.go`).

use podvisor_core::appsv1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use podvisor_core::batchv1::{CronJob, Job};
use podvisor_core::corev1::{PodTemplateSpec, ServiceAccount};
use podvisor_core::k8s_openapi::Metadata;
use podvisor_core::metav1::{LabelSelector, ObjectMeta};
use podvisor_workloads::selector;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Propagation, Rejection, Strategy, decode_as, typed, typed_row, untyped};
use crate::table::{Column, Row, age_at, created, or_none};

type Validated = Result<Vec<podvisor_api::validation::Warning>, podvisor_api::validation::ValidationErrors>;

/// One workload kind's rules: a table of functions over its `k8s-openapi` struct `K`.
pub struct Workload<K: 'static> {
    /// The API server's defaults.
    pub default: fn(&mut K),
    /// Validation of a create.
    pub validate: fn(&K) -> Validated,
    /// Validation of an update of the first by the second.
    pub validate_update: fn(&K, &K) -> Validated,
    /// Whether `metadata.generation` counts spec changes (and the annotations too:
    /// Deployments, whose rollbacks were annotations).
    pub generation: Generation,
    /// The deletion propagation when the client names none (rule 8.2).
    pub propagation: Propagation,
    /// `spec.replicas` is served as the `scale` subresource: the selector it reports.
    pub scale_selector: Option<fn(&K) -> Option<&LabelSelector>>,
    /// kubectl's columns.
    pub columns: fn() -> Vec<Column>,
    /// kubectl's cells at `now` (Unix milliseconds), without the name.
    pub cells: fn(&K, i64) -> Vec<String>,
}

impl<K> std::fmt::Debug for Workload<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload").finish_non_exhaustive()
    }
}

/// Which changes raise `metadata.generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Not tracked.
    None,
    /// `spec` changes.
    Spec,
    /// `spec` or `metadata.annotations` changes.
    SpecAndAnnotations,
}

impl<K> Strategy for Workload<K>
where
    K: DeserializeOwned + Serialize + Send + Sync + Metadata<Ty = ObjectMeta> + 'static,
{
    fn decode_known(&self, object: &Value) -> Result<(Value, Vec<String>), String> {
        decode_as::<K>(object)
    }

    fn default_and_validate(
        &self,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<Vec<String>, Rejection> {
        let mut k: K = typed(object)?;
        (self.default)(&mut k);
        let warnings = match old {
            Some(old) => (self.validate_update)(&typed(old)?, &k)?,
            None => (self.validate)(&k)?,
        };
        let generation = object.pointer("/metadata/generation").cloned();
        *object = untyped(&k)?;
        if let (Some(g), Some(m)) = (
            generation,
            object.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            m.insert("generation".into(), g);
        }
        Ok(super::warnings(&warnings))
    }

    fn generation_changed(&self, new: &Value, old: &Value) -> Option<bool> {
        let spec = new.get("spec") != old.get("spec");
        match self.generation {
            Generation::None => None,
            Generation::Spec => Some(spec),
            Generation::SpecAndAnnotations => {
                Some(spec || new.pointer("/metadata/annotations") != old.pointer("/metadata/annotations"))
            }
        }
    }

    fn status_writes_annotations(&self) -> bool {
        self.generation == Generation::SpecAndAnnotations
    }

    fn default_propagation(&self) -> Propagation {
        self.propagation
    }

    fn scale_selector(&self, object: &Value) -> Option<Option<String>> {
        let f = self.scale_selector?;
        let k: K = typed(object).ok()?;
        Some(f(&k).map(selector::to_string))
    }

    fn columns(&self) -> Vec<Column> {
        let mut c = vec![Column::NAME];
        c.extend((self.columns)());
        c
    }

    fn row(&self, object: &Value, now: i64) -> Row {
        let n = self.columns().len();
        typed_row::<K>(object, n, |k| {
            let mut cells = vec![k.metadata().name.clone().unwrap_or_default()];
            cells.extend((self.cells)(k, now));
            cells
        })
    }
}

/// Kinds without defaults of their own.
fn no_defaults<K>(_: &mut K) {}

fn containers(t: Option<&PodTemplateSpec>) -> String {
    let spec = t.and_then(|t| t.spec.as_ref());
    or_none(spec.map_or_else(String::new, |s| {
        s.containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }))
}

fn images(t: Option<&PodTemplateSpec>) -> String {
    let spec = t.and_then(|t| t.spec.as_ref());
    or_none(spec.map_or_else(String::new, |s| {
        s.containers
            .iter()
            .map(|c| c.image.clone().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(",")
    }))
}

fn selector_cell(s: Option<&LabelSelector>) -> String {
    or_none(s.map(selector::to_string).unwrap_or_default())
}

fn millis(t: Option<&podvisor_core::metav1::Time>) -> Option<i64> {
    t.map(|t| t.0.as_millisecond())
}

fn n(v: Option<i32>) -> String {
    v.unwrap_or(0).to_string()
}

const fn wide(name: &'static str) -> Column {
    Column::text(name, 1)
}

/// The Deployment strategy.
pub static DEPLOYMENTS: Workload<Deployment> = Workload {
    default: podvisor_api::defaults::default_deployment,
    validate: podvisor_api::validation::validate_deployment,
    validate_update: podvisor_api::validation::validate_deployment_update,
    generation: Generation::SpecAndAnnotations,
    propagation: Propagation::Background,
    scale_selector: Some(|d| d.spec.as_ref().map(|s| &s.selector)),
    columns: || {
        vec![
            Column::text("Ready", 0),
            Column::text("Up-to-date", 0),
            Column::text("Available", 0),
            Column::AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ]
    },
    cells: |d, now| {
        let spec = d.spec.as_ref();
        let st = d.status.as_ref();
        vec![
            format!(
                "{}/{}",
                n(st.and_then(|s| s.ready_replicas)),
                n(spec.and_then(|s| s.replicas))
            ),
            n(st.and_then(|s| s.updated_replicas)),
            n(st.and_then(|s| s.available_replicas)),
            created(&d.metadata, now),
            containers(spec.map(|s| &s.template)),
            images(spec.map(|s| &s.template)),
            selector_cell(spec.map(|s| &s.selector)),
        ]
    },
};

/// The ReplicaSet strategy.
pub static REPLICA_SETS: Workload<ReplicaSet> = Workload {
    default: podvisor_api::defaults::default_replica_set,
    validate: podvisor_api::validation::validate_replica_set,
    validate_update: podvisor_api::validation::validate_replica_set_update,
    generation: Generation::Spec,
    propagation: Propagation::Background,
    scale_selector: Some(|r| r.spec.as_ref().map(|s| &s.selector)),
    columns: || {
        vec![
            Column::text("Desired", 0),
            Column::text("Current", 0),
            Column::text("Ready", 0),
            Column::AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ]
    },
    cells: |r, now| {
        let spec = r.spec.as_ref();
        let st = r.status.as_ref();
        let template = spec.and_then(|s| s.template.as_ref());
        vec![
            n(spec.and_then(|s| s.replicas)),
            st.map_or(0, |s| s.replicas).to_string(),
            n(st.and_then(|s| s.ready_replicas)),
            created(&r.metadata, now),
            containers(template),
            images(template),
            selector_cell(spec.map(|s| &s.selector)),
        ]
    },
};

/// The StatefulSet strategy.
pub static STATEFUL_SETS: Workload<StatefulSet> = Workload {
    default: podvisor_api::defaults::default_stateful_set,
    validate: podvisor_api::validation::validate_stateful_set,
    validate_update: podvisor_api::validation::validate_stateful_set_update,
    generation: Generation::Spec,
    propagation: Propagation::Background,
    scale_selector: Some(|s| s.spec.as_ref().map(|s| &s.selector)),
    columns: || {
        vec![
            Column::text("Ready", 0),
            Column::AGE,
            wide("Containers"),
            wide("Images"),
        ]
    },
    cells: |s, now| {
        let spec = s.spec.as_ref();
        vec![
            format!(
                "{}/{}",
                n(s.status.as_ref().and_then(|s| s.ready_replicas)),
                n(spec.and_then(|s| s.replicas))
            ),
            created(&s.metadata, now),
            containers(spec.map(|s| &s.template)),
            images(spec.map(|s| &s.template)),
        ]
    },
};

/// The DaemonSet strategy.
pub static DAEMON_SETS: Workload<DaemonSet> = Workload {
    default: podvisor_api::defaults::default_daemon_set,
    validate: podvisor_api::validation::validate_daemon_set,
    validate_update: podvisor_api::validation::validate_daemon_set_update,
    generation: Generation::Spec,
    propagation: Propagation::Background,
    scale_selector: None,
    columns: || {
        vec![
            Column::text("Desired", 0),
            Column::text("Current", 0),
            Column::text("Ready", 0),
            Column::text("Up-to-date", 0),
            Column::text("Available", 0),
            Column::text("Node Selector", 0),
            Column::AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ]
    },
    cells: |d, now| {
        let spec = d.spec.as_ref();
        let st = d.status.as_ref();
        let node_selector = spec
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.node_selector.as_ref())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        vec![
            st.map_or(0, |s| s.desired_number_scheduled).to_string(),
            st.map_or(0, |s| s.current_number_scheduled).to_string(),
            st.map_or(0, |s| s.number_ready).to_string(),
            n(st.and_then(|s| s.updated_number_scheduled)),
            n(st.and_then(|s| s.number_available)),
            or_none(node_selector),
            created(&d.metadata, now),
            containers(spec.map(|s| &s.template)),
            images(spec.map(|s| &s.template)),
            selector_cell(spec.map(|s| &s.selector)),
        ]
    },
};

/// The ControllerRevision strategy (written by the StatefulSet and DaemonSet controllers).
pub static CONTROLLER_REVISIONS: Workload<ControllerRevision> = Workload {
    default: no_defaults,
    validate: podvisor_api::validation::validate_controller_revision,
    validate_update: podvisor_api::validation::validate_controller_revision_update,
    generation: Generation::None,
    propagation: Propagation::Background,
    scale_selector: None,
    columns: || {
        vec![
            Column::text("Controller", 0),
            Column::text("Revision", 0),
            Column::AGE,
        ]
    },
    cells: |r, now| {
        let controller =
            podvisor_workloads::owner::controller_of(&r.metadata).map_or_else(String::new, |o| {
                let group = o.api_version.split_once('/').map_or("", |(g, _)| g);
                let kind = o.kind.to_lowercase();
                if group.is_empty() {
                    format!("{kind}/{}", o.name)
                } else {
                    format!("{kind}.{group}/{}", o.name)
                }
            });
        vec![
            or_none(controller),
            r.revision.to_string(),
            created(&r.metadata, now),
        ]
    },
};

/// The Job strategy. A Job's dependents are orphaned unless the client asks otherwise
/// (rule 8.2); kubectl always asks for background.
pub static JOBS: Workload<Job> = Workload {
    default: podvisor_api::defaults::default_job,
    validate: podvisor_api::validation::validate_job,
    validate_update: podvisor_api::validation::validate_job_update,
    generation: Generation::Spec,
    propagation: Propagation::Orphan,
    scale_selector: None,
    columns: || {
        vec![
            Column::text("Status", 0),
            Column::text("Completions", 0),
            Column::text("Duration", 0),
            Column::AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ]
    },
    cells: |j, now| {
        let spec = j.spec.as_ref();
        let st = j.status.as_ref();
        let has = |t: &str| {
            st.and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == t && c.status == "True"))
        };
        let status = if has("Complete") {
            "Complete"
        } else if has("Failed") {
            "Failed"
        } else if j.metadata.deletion_timestamp.is_some() {
            "Terminating"
        } else if has("FailureTarget") {
            "FailureTarget"
        } else if has("Suspended") {
            "Suspended"
        } else if has("SuccessCriteriaMet") {
            "SuccessCriteriaMet"
        } else {
            "Running"
        };
        let succeeded = n(st.and_then(|s| s.succeeded));
        let completions = match spec.and_then(|s| s.completions) {
            Some(c) => format!("{succeeded}/{c}"),
            None => match spec.and_then(|s| s.parallelism).unwrap_or(0) {
                p if p > 1 => format!("{succeeded}/1 of {p}"),
                _ => format!("{succeeded}/1"),
            },
        };
        let start = millis(st.and_then(|s| s.start_time.as_ref()));
        let duration = match (start, millis(st.and_then(|s| s.completion_time.as_ref()))) {
            (None, _) => String::new(),
            (Some(s), None) => age_at(Some(s), now),
            (Some(s), Some(c)) => age_at(Some(s), c),
        };
        vec![
            status.to_string(),
            completions,
            duration,
            created(&j.metadata, now),
            containers(spec.map(|s| &s.template)),
            images(spec.map(|s| &s.template)),
            selector_cell(spec.and_then(|s| s.selector.as_ref())),
        ]
    },
};

/// The CronJob strategy.
pub static CRON_JOBS: Workload<CronJob> = Workload {
    default: podvisor_api::defaults::default_cron_job,
    validate: podvisor_api::validation::validate_cron_job,
    validate_update: podvisor_api::validation::validate_cron_job_update,
    generation: Generation::Spec,
    propagation: Propagation::Background,
    scale_selector: None,
    columns: || {
        vec![
            Column::text("Schedule", 0),
            Column::text("Timezone", 0),
            Column::text("Suspend", 0),
            Column::text("Active", 0),
            Column::text("Last Schedule", 0),
            Column::AGE,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ]
    },
    cells: |c, now| {
        let spec = c.spec.as_ref();
        let st = c.status.as_ref();
        let job = spec.and_then(|s| s.job_template.spec.as_ref());
        let last = millis(st.and_then(|s| s.last_schedule_time.as_ref()));
        vec![
            spec.map(|s| s.schedule.clone()).unwrap_or_default(),
            or_none(spec.and_then(|s| s.time_zone.clone()).unwrap_or_default()),
            if spec.and_then(|s| s.suspend) == Some(true) {
                "True"
            } else {
                "False"
            }
            .to_string(),
            st.and_then(|s| s.active.as_ref()).map_or(0, Vec::len).to_string(),
            last.map_or_else(|| "<none>".into(), |l| age_at(Some(l), now)),
            created(&c.metadata, now),
            containers(job.map(|j| &j.template)),
            images(job.map(|j| &j.template)),
            selector_cell(job.and_then(|j| j.selector.as_ref())),
        ]
    },
};

/// The ServiceAccount strategy.
pub static SERVICE_ACCOUNTS: Workload<ServiceAccount> = Workload {
    default: no_defaults,
    validate: podvisor_api::validation::validate_service_account,
    validate_update: podvisor_api::validation::validate_service_account_update,
    generation: Generation::None,
    propagation: Propagation::Background,
    scale_selector: None,
    columns: || vec![Column::text("Secrets", 0), Column::AGE],
    cells: |s, now| {
        vec![
            s.secrets.as_ref().map_or(0, Vec::len).to_string(),
            created(&s.metadata, now),
        ]
    },
};
