//! Deriving the complete `v1.PodStatus` from the machine's state (sections 10, 11, 14).

use podvisor_core::ContainerId;
use podvisor_core::corev1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    HostIP, Pod, PodCondition, PodIP, PodStatus,
};

use crate::Time;
use crate::backoff::go_duration;
use crate::machine::{PodMachine, Sandbox};
use crate::record::{Running, State, Terminated};
use crate::spec::{ContainerKind, RestartPolicy};

/// A pod phase (`status.phase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Accepted, but not every container has started yet.
    Pending,
    /// Bound and at least one container runs (or is restarting).
    Running,
    /// Every regular container exited 0 and none will restart.
    Succeeded,
    /// Every container stopped and at least one failed, or the pod was killed.
    Failed,
    /// The node cannot say.
    Unknown,
}

impl Phase {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Unknown => "Unknown",
        }
    }

    /// `Succeeded` or `Failed`: nothing can change it any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }

    /// Parses the API string.
    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "Pending" => Phase::Pending,
            "Running" => Phase::Running,
            "Succeeded" => Phase::Succeeded,
            "Failed" => Phase::Failed,
            "Unknown" => Phase::Unknown,
            _ => return None,
        })
    }
}

/// The condition types the kubelet owns and rewrites (rule 14.1); all others are kept as the
/// API has them.
pub const KUBELET_CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
    "PodScheduled",
];

/// The conditions others own (readiness gates, `DisruptionTarget`, ...), preserved as they are.
pub(crate) fn external_conditions(pod: &Pod) -> Vec<PodCondition> {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .collect()
}

pub(crate) fn terminated_from_api(t: &ContainerStateTerminated) -> Terminated {
    Terminated {
        id: t.container_id.as_deref().and_then(ContainerId::from_uri),
        exit_code: t.exit_code,
        signal: t.signal,
        reason: t.reason.clone().unwrap_or_default(),
        message: t.message.clone(),
        started_at: t.started_at.as_ref().map(Time::from_k8s),
        finished_at: t.finished_at.as_ref().map_or(Time::EPOCH, Time::from_k8s),
    }
}

fn terminated_to_api(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        container_id: t.id.as_ref().map(|id| id.uri()),
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(t.reason.clone()).filter(|r| !r.is_empty()),
        message: t.message.clone(),
        started_at: t.started_at.map(Time::to_k8s),
        finished_at: Some(t.finished_at.to_k8s()),
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()).filter(|r| !r.is_empty()),
            message,
        }),
        ..ContainerState::default()
    }
}

fn terminated_state(t: &Terminated) -> ContainerState {
    ContainerState {
        terminated: Some(terminated_to_api(t)),
        ..ContainerState::default()
    }
}

/// Rule 11: one container's status.
fn container_status(m: &PodMachine, i: usize) -> ContainerStatus {
    let def = &m.def.containers[i];
    let rec = &m.records[i];
    let default_reason = if m.def.n_init > 0 && def.kind != ContainerKind::Ephemeral {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    let active = m.termination.is_none() && !m.finished;
    let last = |t: &Option<Terminated>| {
        t.as_ref().map(|t| ContainerState {
            terminated: Some(terminated_to_api(t)),
            ..ContainerState::default()
        })
    };
    let create_error = rec
        .create_error
        .as_ref()
        .map(|e| waiting(e.reason, Some(e.message.clone())));
    let (state, last_state, id) = match &rec.state {
        State::Absent | State::Starting { .. } if create_error.is_some() => (
            create_error.unwrap_or_default(),
            last(&rec.last_termination),
            None,
        ),
        State::Exited(t) if create_error.is_some() && active => (
            create_error.unwrap_or_default(),
            Some(terminated_state(t)),
            t.id.as_ref().map(|id| id.uri()),
        ),
        State::Absent => (waiting(default_reason, None), last(&rec.last_termination), None),
        // Rule 8.1: until its postStart hook returns, the start is still in progress.
        State::Starting { .. }
        | State::Running(Running {
            post_start_pending: true,
            ..
        }) => {
            let reason = if rec.restart_count == 0 {
                default_reason
            } else {
                ""
            };
            (waiting(reason, None), last(&rec.last_termination), None)
        }
        State::Running(r) => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(r.started_at.to_k8s()),
                }),
                ..ContainerState::default()
            },
            last(&rec.last_termination),
            Some(r.id.uri()),
        ),
        State::Exited(t) => {
            // Rule 11.4: the kubelet's "should be restarted" test reads the pod's restart policy
            // for every container, sidecars too (they keep their terminated state in a `Never`
            // pod), and leaves init containers that exited 0 alone.
            let will_restart = active
                && match def.kind {
                    ContainerKind::Init => t.exit_code != 0 && m.def.restart_policy != RestartPolicy::Never,
                    ContainerKind::Sidecar | ContainerKind::Regular => {
                        m.def.restart_policy.restarts(t.exit_code) || rec.pending_restart
                    }
                    ContainerKind::Ephemeral => false,
                };
            let id = t.id.as_ref().map(|id| id.uri());
            match (&rec.backoff_wait, &rec.start_error) {
                (Some((_, duration)), _) if will_restart => {
                    let message = format!(
                        "back-off {} restarting failed container={} pod={}",
                        go_duration(*duration),
                        def.name,
                        pod_ref(&m.pod)
                    );
                    (
                        waiting("CrashLoopBackOff", Some(message)),
                        Some(terminated_state(t)),
                        id,
                    )
                }
                (None, Some((reason, message))) if will_restart => (
                    waiting(reason, Some(message.clone())),
                    Some(terminated_state(t)),
                    id,
                ),
                _ => (terminated_state(t), last(&rec.last_termination), id),
            }
        }
    };
    let (ready, started) = match def.kind {
        ContainerKind::Init => (rec.exited().is_some_and(|t| t.exit_code == 0), rec.is_running()),
        // Never part of the pod's readiness (rule 5.5 of streaming-and-apply.md).
        ContainerKind::Ephemeral => (false, rec.is_running()),
        _ => (rec.ready(), rec.started()),
    };
    ContainerStatus {
        name: def.name.clone(),
        image: def.image.clone(),
        image_id: String::new(),
        container_id: id,
        ready,
        started: Some(started),
        restart_count: rec.restart_count,
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ..ContainerStatus::default()
    }
}

fn is_waiting(cs: &ContainerStatus) -> bool {
    cs.state.as_ref().is_some_and(|s| s.waiting.is_some())
}

fn is_terminated(cs: &ContainerStatus) -> bool {
    cs.state.as_ref().is_some_and(|s| s.terminated.is_some())
}

/// The kubelet's `hasPodInitialized`, on a finished pod's statuses: is there evidence that its
/// regular containers were ever started?
fn has_pod_initialized(m: &PodMachine, init: &[ContainerStatus], regular: &[ContainerStatus]) -> bool {
    if m.def.n_init == 0 {
        return true;
    }
    if regular
        .iter()
        .any(|cs| previous_termination(cs).is_some() || !is_waiting(cs))
    {
        return true;
    }
    let (Some(last), Some(def)) = (init.last(), m.def.containers.get(m.def.n_init - 1)) else {
        return false;
    };
    let exited_0 = |s: Option<&ContainerState>| {
        s.and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    };
    match def.kind {
        ContainerKind::Sidecar => {
            last.state.as_ref().is_some_and(|s| s.running.is_some()) && last.started == Some(true)
        }
        _ => exited_0(last.last_state.as_ref()) || exited_0(last.state.as_ref()),
    }
}

fn unknown_terminated() -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 137,
            reason: Some("ContainerStatusUnknown".into()),
            message: Some("The container could not be located when the pod was terminated".into()),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    }
}

/// The kubelet's `TerminatePod` (rule 11.2): in a finished pod, a status that is not
/// terminated becomes `ContainerStatusUnknown` (137) only where a container may have run: the
/// regular containers once the pod has initialized, and the init containers up to the last
/// one that left its waiting state. Containers that never ran keep waiting (a `Never` pod that
/// failed in init shows its app containers `PodInitializing`). `ready` stays as generated: an
/// init container that exited 0 is ready (rule 3.12), nothing else is.
fn terminate_pod(m: &PodMachine, init: &mut [ContainerStatus], regular: &mut [ContainerStatus]) {
    if has_pod_initialized(m, init, regular) {
        for cs in regular.iter_mut().filter(|cs| !is_terminated(cs)) {
            cs.state = Some(unknown_terminated());
        }
    }
    let attempted = init
        .iter()
        .rposition(|cs| !is_waiting(cs) || previous_termination(cs).is_some())
        .map_or(init.len().min(1), |i| i + 1);
    for cs in init[..attempted].iter_mut().filter(|cs| !is_terminated(cs)) {
        cs.state = Some(unknown_terminated());
    }
    for cs in init.iter_mut().chain(regular.iter_mut()) {
        cs.started = Some(false);
    }
}

pub(crate) fn pod_ref(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        podvisor_core::object::namespace_of(m),
        m.uid.as_deref().unwrap_or_default()
    )
}

fn previous_termination(cs: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    cs.last_state.as_ref().and_then(|s| s.terminated.as_ref())
}

/// Rule 10.2: the phase from the container statuses.
pub(crate) fn compute_phase(
    m: &PodMachine,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    pod_is_terminal: bool,
) -> Phase {
    // Sidecars not yet started count as initialisation under way, as regular init containers
    // that have not finished do (the kubelet's one `pendingInitialization`).
    let (mut pending_init, mut failed_init) = (0, 0);
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for (def, cs) in m.def.containers[..m.def.n_init].iter().zip(init_statuses) {
        let st = cs.state.clone().unwrap_or_default();
        if def.kind == ContainerKind::Sidecar {
            if st.running.is_some() {
                running += 1;
                if cs.started != Some(true) {
                    pending_init += 1;
                }
            } else if st.terminated.is_some() || (st.waiting.is_some() && previous_termination(cs).is_some())
            {
                // Ignored: a sidecar's exits never decide the phase.
            } else if st.waiting.is_some() {
                pending_init += 1;
                waiting += 1;
            } else {
                pending_init += 1;
                unknown += 1;
            }
            continue;
        }
        if let Some(t) = &st.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if st.running.is_some() {
            pending_init += 1;
        } else if st.waiting.is_some() {
            match previous_termination(cs) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                _ => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    for cs in statuses {
        let st = cs.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = &st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if st.waiting.is_some() {
            if previous_termination(cs).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    let policy = m.def.restart_policy;
    if failed_init > 0 && policy == RestartPolicy::Never {
        return Phase::Failed;
    }
    // The kubelet's HasAnyRegularContainerStarted: once a regular container shows Running or
    // Terminated, initialisation still under way (a sidecar not yet started, init containers
    // running again in a new sandbox) no longer makes the pod Pending.
    let regular_started = statuses.iter().any(|cs| {
        cs.state
            .as_ref()
            .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
    });
    if (pending_init > 0 && !regular_started) || waiting > 0 {
        return Phase::Pending;
    }
    if running > 0 && unknown == 0 {
        return Phase::Running;
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if pod_is_terminal {
            return if stopped == succeeded {
                Phase::Succeeded
            } else {
                Phase::Failed
            };
        }
        return match policy {
            RestartPolicy::Always => Phase::Running,
            _ if stopped == succeeded => Phase::Succeeded,
            RestartPolicy::Never => Phase::Failed,
            RestartPolicy::OnFailure => Phase::Running,
        };
    }
    Phase::Pending
}

/// The phase a pod ends with when it is torn down (rule 9.7 step 5 and the kubelet's
/// `TerminatePod`: a pod that never got anywhere ends `Failed`).
pub(crate) fn final_phase(m: &PodMachine) -> Phase {
    if let Some(p) = m.terminal_phase {
        return p;
    }
    let (init, regular) = container_statuses(m);
    match compute_phase(m, &init, &regular, true) {
        p @ (Phase::Succeeded | Phase::Failed) => p,
        _ => Phase::Failed,
    }
}

fn container_statuses(m: &PodMachine) -> (Vec<ContainerStatus>, Vec<ContainerStatus>) {
    let init = (0..m.def.n_init).map(|i| container_status(m, i)).collect();
    let mut regular: Vec<_> = m.def.regular().map(|i| container_status(m, i)).collect();
    regular.sort_by(|a, b| a.name.cmp(&b.name));
    (init, regular)
}

fn condition(type_: &str, status: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        ..PodCondition::default()
    }
}

/// Go's `fmt.Sprintf("%s", []string{...})`: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// Rule 14.5.
fn initialized(
    m: &PodMachine,
    init: &[ContainerStatus],
    regular: &[ContainerStatus],
    phase: Phase,
) -> PodCondition {
    if phase == Phase::Succeeded {
        return condition("Initialized", true, Some("PodCompleted"), None);
    }
    // Rule 14.5: running or terminated; one waiting in back-off does not count.
    let regular_started = regular.iter().any(|cs| {
        cs.state
            .as_ref()
            .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
    });
    if regular_started {
        return condition("Initialized", true, None, None);
    }
    let incomplete: Vec<&str> = m.def.containers[..m.def.n_init]
        .iter()
        .zip(init)
        .filter(|(def, cs)| match def.kind {
            ContainerKind::Sidecar => cs.started != Some(true),
            _ => !cs.ready,
        })
        .map(|(def, _)| def.name.as_str())
        .collect();
    if incomplete.is_empty() {
        condition("Initialized", true, None, None)
    } else {
        let message = format!("containers with incomplete status: {}", go_list(&incomplete));
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(message),
        )
    }
}

/// Rule 14.6, as (status, reason, message).
fn containers_ready(
    m: &PodMachine,
    init: &[ContainerStatus],
    regular: &[ContainerStatus],
    phase: Phase,
) -> PodCondition {
    if phase == Phase::Succeeded {
        return condition("ContainersReady", false, Some("PodCompleted"), None);
    }
    if phase == Phase::Failed {
        return condition("ContainersReady", false, Some("PodFailed"), None);
    }
    let sidecars = m.def.containers[..m.def.n_init]
        .iter()
        .zip(init)
        .filter(|(def, _)| def.kind == ContainerKind::Sidecar)
        .map(|(def, cs)| (def.name.as_str(), cs.ready));
    let regulars = m.def.containers[m.def.regular()].iter().map(|def| {
        let ready = regular
            .iter()
            .find(|cs| cs.name == def.name)
            .is_some_and(|cs| cs.ready);
        (def.name.as_str(), ready)
    });
    let unready: Vec<&str> = sidecars
        .chain(regulars)
        .filter(|(_, ready)| !ready)
        .map(|(name, _)| name)
        .collect();
    if unready.is_empty() {
        condition("ContainersReady", true, None, None)
    } else {
        let message = format!("containers with unready status: {}", go_list(&unready));
        condition(
            "ContainersReady",
            false,
            Some("ContainersNotReady"),
            Some(message),
        )
    }
}

/// Rule 14.7.
fn ready(m: &PodMachine, containers_ready: &PodCondition) -> PodCondition {
    if containers_ready.status != "True" {
        return PodCondition {
            type_: "Ready".into(),
            ..containers_ready.clone()
        };
    }
    let mut problems = Vec::new();
    for gate in &m.def.readiness_gates {
        match m.external_conditions.iter().find(|c| &c.type_ == gate) {
            None => problems.push(format!(
                "corresponding condition of pod readiness gate \"{gate}\" does not exist."
            )),
            Some(c) if c.status != "True" => problems.push(format!(
                "the status of pod readiness gate \"{gate}\" is not \"True\", but {}",
                c.status
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        condition("Ready", true, None, None)
    } else {
        condition(
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(problems.join(", ")),
        )
    }
}

/// Generates the whole status; `lastTransitionTime`s are kept from `m.status` where a
/// condition's status did not change (rule 14.2).
pub(crate) fn generate(m: &PodMachine) -> PodStatus {
    let (mut init, mut regular) = container_statuses(m);
    let computed = compute_phase(m, &init, &regular, false);
    let phase = match m.terminal_phase {
        Some(p) => p,
        None => computed,
    };
    let sandbox_ready = m.sandbox == Sandbox::Ready && !m.finished;
    let initialized = initialized(m, &init, &regular, phase);
    let containers_ready = containers_ready(m, &init, &regular, phase);
    let ready = ready(m, &containers_ready);
    let mut conditions = m.external_conditions.clone();
    conditions.push(condition("PodReadyToStartContainers", sandbox_ready, None, None));
    conditions.push(initialized);
    conditions.push(ready);
    conditions.push(containers_ready);
    conditions.push(condition("PodScheduled", true, None, None));
    if m.finished {
        terminate_pod(m, &mut init, &mut regular);
    }
    let previous = m.status.conditions.as_deref().unwrap_or_default();
    for c in conditions
        .iter_mut()
        .filter(|c| KUBELET_CONDITIONS.contains(&c.type_.as_str()))
    {
        let kept = previous
            .iter()
            .find(|p| p.type_ == c.type_ && p.status == c.status);
        c.last_transition_time = Some(match kept.and_then(|p| p.last_transition_time.clone()) {
            Some(t) => t,
            None => m.now.to_k8s(),
        });
    }
    PodStatus {
        phase: Some(phase.as_str().to_owned()),
        conditions: Some(conditions),
        reason: m.reason.clone(),
        message: m.message.clone(),
        host_ip: m.host_ip.clone(),
        host_ips: m.host_ip.clone().map(|ip| vec![HostIP { ip }]),
        pod_ip: m.pod_ip.clone(),
        pod_ips: m.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: Some(m.start_time.to_k8s()),
        init_container_statuses: Some(init).filter(|v| !v.is_empty()),
        container_statuses: Some(regular),
        ephemeral_container_statuses: Some(
            m.def
                .ephemeral()
                .map(|i| container_status(m, i))
                .collect::<Vec<_>>(),
        )
        .filter(|v| !v.is_empty()),
        qos_class: Some(qos_class(&m.pod).to_owned()),
        ..PodStatus::default()
    }
}

/// The pod's QoS class from its resources (`BestEffort`, `Burstable` or `Guaranteed`), as the
/// kubelet's `GetPodQOS` computes it: only non-zero cpu and memory amounts count; Guaranteed
/// needs cpu and memory limits on every container and requests equal to limits (a missing
/// request is the limit, as defaulting makes it, rule 1.7). kube-apiserver stores it at create.
pub fn qos_class(pod: &Pod) -> &'static str {
    use podvisor_core::quantity::{cpu_millis, memory_bytes};
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let amount = |name: &str,
                  q: &podvisor_core::k8s_openapi::apimachinery::pkg::api::resource::Quantity|
     -> Option<u64> {
        match name {
            "cpu" => cpu_millis(&q.0),
            "memory" => memory_bytes(&q.0),
            _ => None,
        }
        .filter(|v| *v > 0)
    };
    let mut requests: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    let mut limits = requests.clone();
    let mut guaranteed = true;
    for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
        let r = c.resources.as_ref();
        let mut limited = 0;
        for name in ["cpu", "memory"] {
            let limit = r
                .and_then(|r| r.limits.as_ref()?.get(name))
                .and_then(|q| amount(name, q));
            let request = r
                .and_then(|r| r.requests.as_ref()?.get(name))
                .map_or(limit, |q| amount(name, q));
            if let Some(l) = limit {
                *limits.entry(name).or_default() += l;
                limited += 1;
            }
            if let Some(q) = request {
                *requests.entry(name).or_default() += q;
            }
        }
        guaranteed &= limited == 2;
    }
    if requests.is_empty() && limits.is_empty() {
        "BestEffort"
    } else if guaranteed && requests == limits {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The status to publish for a pod whose node cannot report (its heartbeats stopped): the
/// phase becomes `Unknown` unless it is already terminal, and `Ready` turns `False`, as the node
/// lifecycle controller marks such pods. Everything else is kept as last reported.
pub fn node_unreachable(status: &PodStatus, now: Time) -> PodStatus {
    let mut status = status.clone();
    let terminal = status
        .phase
        .as_deref()
        .and_then(Phase::parse)
        .is_some_and(Phase::is_terminal);
    if !terminal {
        status.phase = Some(Phase::Unknown.as_str().to_owned());
    }
    for c in status
        .conditions
        .iter_mut()
        .flatten()
        .filter(|c| c.type_ == "Ready" && c.status != "False")
    {
        c.status = "False".into();
        c.last_transition_time = Some(now.to_k8s());
    }
    status
}
