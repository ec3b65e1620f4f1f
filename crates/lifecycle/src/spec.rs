//! What the model reads from the pod spec, normalised once (defaults applied, lookups cached).

use std::time::Duration;

use podvisor_core::ProbeKind;
use podvisor_core::corev1::{Container, EphemeralContainer, Pod, Probe};
use podvisor_core::probe::ProbeTiming;

/// The pod's `restartPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RestartPolicy {
    /// Restart every exited container.
    Always,
    /// Restart containers that exited non-zero.
    OnFailure,
    /// Never restart (sidecars aside).
    Never,
}

impl RestartPolicy {
    pub(crate) fn parse(s: Option<&str>) -> RestartPolicy {
        match s {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    /// Rule 7.1 step 5: should a regular container that exited with `exit_code` start again?
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// Which list a container is in and how it behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    /// A regular init container: runs once to completion, in order.
    Init,
    /// An init container with `restartPolicy: Always`: starts in order, keeps running.
    Sidecar,
    /// An app container (`spec.containers`).
    Regular,
    /// An ephemeral container (`spec.ephemeralContainers`, added through the
    /// `ephemeralcontainers` subresource): started once when it appears, never restarted, no
    /// probes or hooks, not part of the pod's readiness or phase.
    Ephemeral,
}

/// A probe's timing, with the API defaults applied to zero values (rule 1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProbeParams {
    pub(crate) initial_delay_secs: i64,
    pub(crate) period: Duration,
    pub(crate) timeout: Duration,
    pub(crate) success_threshold: u32,
    pub(crate) failure_threshold: u32,
    /// Probe-level `terminationGracePeriodSeconds` (liveness and startup only).
    pub(crate) termination_grace_secs: Option<i64>,
}

impl ProbeParams {
    fn from_probe(p: &Probe) -> ProbeParams {
        // The API's defaults (rule 1.3); a negative value, which validation rejects, counts as
        // unset here too.
        let (given, default) = (ProbeTiming::of(p), ProbeTiming::DEFAULT);
        let positive = |v: i32, default: i32| {
            u32::try_from(v)
                .ok()
                .filter(|v| *v > 0)
                .unwrap_or(default.unsigned_abs())
        };
        let secs = |v: i32, default: i32| Duration::from_secs(u64::from(positive(v, default)));
        ProbeParams {
            initial_delay_secs: i64::from(p.initial_delay_seconds.unwrap_or(0).max(0)),
            period: secs(given.period_seconds, default.period_seconds),
            timeout: secs(given.timeout_seconds, default.timeout_seconds),
            success_threshold: positive(given.success_threshold, default.success_threshold),
            failure_threshold: positive(given.failure_threshold, default.failure_threshold),
            termination_grace_secs: p.termination_grace_period_seconds,
        }
    }
}

/// One container of the pod, as the model needs it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ContainerDef {
    pub(crate) name: String,
    pub(crate) kind: ContainerKind,
    pub(crate) image: String,
    /// Probes, indexed by [`probe_index`].
    pub(crate) probes: [Option<ProbeParams>; 3],
    pub(crate) has_post_start: bool,
    pub(crate) has_pre_stop: bool,
    pub(crate) field_path: String,
}

/// Index of a probe kind in [`ContainerDef::probes`].
pub(crate) fn probe_index(kind: ProbeKind) -> usize {
    match kind {
        ProbeKind::Readiness => 0,
        ProbeKind::Liveness => 1,
        ProbeKind::Startup => 2,
    }
}

impl ContainerDef {
    fn new(c: &Container, kind: ContainerKind) -> ContainerDef {
        let probes_allowed = kind != ContainerKind::Init;
        let params = |p: &Option<Probe>| p.as_ref().filter(|_| probes_allowed).map(ProbeParams::from_probe);
        let lifecycle = c.lifecycle.as_ref().filter(|_| probes_allowed);
        let list = if kind == ContainerKind::Regular {
            "containers"
        } else {
            "initContainers"
        };
        ContainerDef {
            name: c.name.clone(),
            kind,
            image: c.image.clone().unwrap_or_default(),
            probes: [
                params(&c.readiness_probe),
                params(&c.liveness_probe),
                params(&c.startup_probe),
            ],
            has_post_start: lifecycle.is_some_and(|l| l.post_start.is_some()),
            has_pre_stop: lifecycle.is_some_and(|l| l.pre_stop.is_some()),
            field_path: format!("spec.{list}{{{}}}", c.name),
        }
    }

    fn ephemeral(c: &EphemeralContainer) -> ContainerDef {
        ContainerDef {
            name: c.name.clone(),
            kind: ContainerKind::Ephemeral,
            image: c.image.clone().unwrap_or_default(),
            probes: [None, None, None],
            has_post_start: false,
            has_pre_stop: false,
            field_path: format!("spec.ephemeralContainers{{{}}}", c.name),
        }
    }

    pub(crate) fn probe(&self, kind: ProbeKind) -> Option<&ProbeParams> {
        self.probes[probe_index(kind)].as_ref()
    }
}

/// The pod-level settings the model reads.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PodDef {
    pub(crate) restart_policy: RestartPolicy,
    /// `terminationGracePeriodSeconds`, negative values treated as 1 (rule 2.3).
    pub(crate) grace_secs: i64,
    pub(crate) active_deadline_secs: Option<i64>,
    pub(crate) readiness_gates: Vec<String>,
    pub(crate) host_network: bool,
    /// Init containers (spec order), then regular containers (spec order), then ephemeral
    /// containers (in the order they were added).
    pub(crate) containers: Vec<ContainerDef>,
    pub(crate) n_init: usize,
    /// Where the ephemeral containers start in `containers`.
    pub(crate) n_app_end: usize,
    pub(crate) has_sidecars: bool,
}

impl PodDef {
    pub(crate) fn new(pod: &Pod) -> PodDef {
        let spec = pod.spec.clone().unwrap_or_default();
        let mut containers = Vec::new();
        for c in spec.init_containers.iter().flatten() {
            let kind = if c.restart_policy.as_deref() == Some("Always") {
                ContainerKind::Sidecar
            } else {
                ContainerKind::Init
            };
            containers.push(ContainerDef::new(c, kind));
        }
        let n_init = containers.len();
        for c in &spec.containers {
            containers.push(ContainerDef::new(c, ContainerKind::Regular));
        }
        let n_app_end = containers.len();
        for c in spec.ephemeral_containers.iter().flatten() {
            containers.push(ContainerDef::ephemeral(c));
        }
        let grace = spec.termination_grace_period_seconds.unwrap_or(30);
        PodDef {
            restart_policy: RestartPolicy::parse(spec.restart_policy.as_deref()),
            grace_secs: if grace < 0 { 1 } else { grace },
            active_deadline_secs: spec.active_deadline_seconds,
            readiness_gates: spec
                .readiness_gates
                .iter()
                .flatten()
                .map(|g| g.condition_type.clone())
                .collect(),
            host_network: spec.host_network.unwrap_or(false),
            has_sidecars: containers.iter().any(|c| c.kind == ContainerKind::Sidecar),
            containers,
            n_init,
            n_app_end,
        }
    }

    /// The indices of the regular containers.
    pub(crate) fn regular(&self) -> std::ops::Range<usize> {
        self.n_init..self.n_app_end
    }

    /// The indices of the ephemeral containers.
    pub(crate) fn ephemeral(&self) -> std::ops::Range<usize> {
        self.n_app_end..self.containers.len()
    }
}
