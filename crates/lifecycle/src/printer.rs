//! The `kubectl get pods` row, computed as kube-apiserver's server-side pod printer does: a pure
//! function of the `Pod` and `now`, read by the API server's pod table
//! (`podvisor_apiserver::strategy::pod`), the node's terminal and tests that assert what kubectl
//! shows.
//!
//! kubectl asks the API server for a `Table` and shows its cells verbatim, so ours must match
//! upstream's cell for cell (k8s-semantics.md section 13).

use podvisor_core::corev1::{Container, ContainerStateTerminated, ContainerStatus, Pod, PodCondition};

use crate::Time;

/// The cells of one pod's `Table` row, as the exact texts kubectl shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRow {
    /// NAME: `metadata.name`.
    pub name: String,
    /// READY: `<ready>/<total>`, where total counts regular containers and sidecars.
    pub ready: String,
    /// STATUS: the phase, a pod or container reason, `Init:...`, `NotReady`, `Terminating`, ...
    pub status: String,
    /// RESTARTS: `<n>`, or `<n> (<duration> ago)` when the last restart time is known.
    pub restarts: String,
    /// AGE: time since `metadata.creationTimestamp`, or `<unknown>`.
    pub age: String,
    /// IP (wide): the pod's primary IP or `<none>`.
    pub ip: String,
    /// NODE (wide): `spec.nodeName` or `<none>`.
    pub node: String,
    /// NOMINATED NODE (wide): `status.nominatedNodeName` or `<none>`.
    pub nominated_node: String,
    /// READINESS GATES (wide): `<true>/<total>` or `<none>` when the pod has no gates.
    pub readiness_gates: String,
}

impl PodRow {
    /// The cells in the pod table's column order; the first five are the non-wide ones.
    pub fn cells(&self) -> [&str; 9] {
        [
            &self.name,
            &self.ready,
            &self.status,
            &self.restarts,
            &self.age,
            &self.ip,
            &self.node,
            &self.nominated_node,
            &self.readiness_gates,
        ]
    }
}

/// A `Table` row condition; kube-apiserver marks rows of finished pods with one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowCondition {
    /// Always `Completed`.
    pub type_: &'static str,
    /// Always `True`.
    pub status: &'static str,
    /// The terminal phase: `Succeeded` or `Failed`.
    pub reason: &'static str,
    /// A short human-readable sentence.
    pub message: &'static str,
}

/// The `Completed` row condition for a pod in a terminal phase, `None` for any other pod.
pub fn pod_row_condition(pod: &Pod) -> Option<RowCondition> {
    let (reason, message) = match phase(pod) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(RowCondition {
        type_: "Completed",
        status: "True",
        reason,
        message,
    })
}

/// Computes the row `kubectl get pods [-o wide]` shows for `pod` at time `now` (rules 13.1–13.7).
pub fn pod_row(pod: &Pod, now: Time) -> PodRow {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let containers: &[Container] = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let init_specs: &[Container] = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    let init_statuses: &[ContainerStatus] = status
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or_default();
    let statuses: &[ContainerStatus] = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let conditions: &[PodCondition] = status.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let status_reason = status.and_then(|s| s.reason.as_deref()).unwrap_or("");

    // Rule 13.1: start from the phase, overridden by a pod-level reason or a scheduling gate.
    let mut reason = if status_reason.is_empty() {
        phase(pod).to_owned()
    } else {
        status_reason.to_owned()
    };
    if conditions
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"))
    {
        reason = "SchedulingGated".to_owned();
    }
    let total = containers.len() + init_specs.iter().filter(|c| is_sidecar(c)).count();
    let mut ready = 0usize;

    // Rule 13.2: the init pass stops at the first init container that has not finished.
    let mut init_restarts = Restarts::default();
    let mut sidecar_restarts = Restarts::default();
    let mut initializing = false;
    for (i, cs) in init_statuses.iter().enumerate() {
        init_restarts.add(cs);
        let sidecar = init_specs
            .iter()
            .find(|c| c.name == cs.name)
            .is_some_and(is_sidecar);
        if sidecar {
            sidecar_restarts.add(cs);
        }
        let state = cs.state.as_ref();
        let terminated = state.and_then(|s| s.terminated.as_ref());
        let waiting = state
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref())
            .unwrap_or("");
        if terminated.is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if sidecar && cs.started == Some(true) {
            if cs.ready {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            format!("Init:{}", terminated_reason(t))
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            format!("Init:{waiting}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    // Rules 13.3–13.5: the main pass, unless the pod is still initializing.
    let restarts = if !initializing || condition_is_true_first(conditions, "Initialized") {
        let mut restarts = sidecar_restarts;
        let mut has_running = false;
        // Statuses are sorted by name, so walking backwards leaves the first name's reason.
        for cs in statuses.iter().rev() {
            restarts.add(cs);
            let state = cs.state.as_ref();
            let waiting = state
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                .unwrap_or("");
            let terminated = state.and_then(|s| s.terminated.as_ref());
            let running = state.is_some_and(|s| s.running.is_some());
            if !waiting.is_empty() {
                reason = waiting.to_owned();
            } else if let Some(t) = terminated {
                reason = terminated_reason(t);
            } else if cs.ready && running {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_owned();
        }
        restarts
    } else {
        init_restarts
    };

    // Rule 13.6: deletion overrides everything.
    if pod.metadata.deletion_timestamp.is_some() {
        if status_reason == "NodeLost" {
            reason = "Unknown".to_owned();
        } else if !matches!(phase(pod), "Succeeded" | "Failed") {
            reason = "Terminating".to_owned();
        }
    }

    // Rule 13.7: the cells.
    let restarts_cell = match restarts.last {
        Some(last) if restarts.count != 0 => {
            format!("{} ({} ago)", restarts.count, since(now, last))
        }
        _ => restarts.count.to_string(),
    };
    let age = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or_else(|| "<unknown>".to_owned(), |t| since(now, Time::from_k8s(t)));

    PodRow {
        name: pod.metadata.name.clone().unwrap_or_default(),
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts: restarts_cell,
        age,
        ip: or_none(primary_ip(pod)),
        node: or_none(spec.and_then(|s| s.node_name.as_deref()).unwrap_or("")),
        nominated_node: or_none(
            status
                .and_then(|s| s.nominated_node_name.as_deref())
                .unwrap_or(""),
        ),
        readiness_gates: readiness_gates(pod, conditions),
    }
}

/// Formats a signed duration in milliseconds the way kubectl's AGE column does (rule 13.8).
///
/// It keeps two or three significant figures: `45s`, `2m5s`, `12m`, `3h20m`, `30h`, `3d4h`,
/// `200d`, `2y30d`, `9y`. Durations up to two seconds in the past (clock skew) print as `0s`;
/// anything more negative prints as `<invalid>`.
pub fn human_duration(millis: i64) -> String {
    // Whole seconds, truncated towards zero: -1.9s counts as -1s.
    let secs = millis / 1000;
    if secs < -1 {
        return "<invalid>".to_owned();
    }
    if secs < 0 {
        return "0s".to_owned();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return with_part(minutes, "m", secs % 60, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_part(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 8 * 24 {
        return with_part(days, "d", hours % 24, "h");
    }
    if hours < 2 * 365 * 24 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 8 * 365 * 24 {
        return with_part(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

/// `<big><unit>` followed by `<small><small_unit>` unless the small part is zero.
fn with_part(big: i64, unit: &str, small: i64, small_unit: &str) -> String {
    if small == 0 {
        format!("{big}{unit}")
    } else {
        format!("{big}{unit}{small}{small_unit}")
    }
}

/// `human_duration(now - then)`.
fn since(now: Time, then: Time) -> String {
    human_duration(now.as_millis().saturating_sub(then.as_millis()))
}

/// Restarts counted over some containers, with the latest time one of them last terminated.
#[derive(Clone, Copy, Debug, Default)]
struct Restarts {
    count: i64,
    last: Option<Time>,
}

impl Restarts {
    fn add(&mut self, cs: &ContainerStatus) {
        self.count += i64::from(cs.restart_count);
        let finished = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.finished_at.as_ref())
            .map(Time::from_k8s);
        self.last = self.last.max(finished);
    }
}

/// A sidecar is an init container that is restarted for the pod's whole life.
fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The terminated reason, or `Signal:<n>` / `ExitCode:<code>` when the runtime gave none.
fn terminated_reason(t: &ContainerStateTerminated) -> String {
    match t.reason.as_deref() {
        Some(r) if !r.is_empty() => r.to_owned(),
        _ => match t.signal {
            Some(sig) if sig != 0 => format!("Signal:{sig}"),
            _ => format!("ExitCode:{}", t.exit_code),
        },
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Whether the first condition of type `type_` is `True` (later duplicates are ignored).
fn condition_is_true_first(conditions: &[PodCondition], type_: &str) -> bool {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .is_some_and(|c| c.status == "True")
}

/// The primary pod IP. kube-apiserver converts to its internal type first, where a non-empty
/// `podIP` takes precedence over `podIPs[0]`; they agree whenever the kubelet set both.
fn primary_ip(pod: &Pod) -> &str {
    let Some(status) = pod.status.as_ref() else {
        return "";
    };
    match status.pod_ip.as_deref() {
        Some(ip) if !ip.is_empty() => ip,
        _ => status
            .pod_ips
            .as_deref()
            .and_then(<[_]>::first)
            .map_or("", |ip| ip.ip.as_str()),
    }
}

fn readiness_gates(pod: &Pod, conditions: &[PodCondition]) -> String {
    let gates = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_deref())
        .unwrap_or_default();
    if gates.is_empty() {
        return "<none>".to_owned();
    }
    let passing = gates
        .iter()
        .filter(|g| condition_is_true_first(conditions, &g.condition_type))
        .count();
    format!("{passing}/{}", gates.len())
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use podvisor_core::metav1;
    use serde_json::{Value, json};

    use super::*;

    const NOW: &str = "2025-06-01T12:00:00Z";

    fn at(rfc3339: &str) -> Time {
        let t: metav1::Time = serde_json::from_value(json!(rfc3339)).unwrap();
        Time::from_k8s(&t)
    }

    fn now() -> Time {
        at(NOW)
    }

    /// A pod created ten minutes before [`NOW`] with the given spec and status.
    fn pod(spec: Value, status: Value) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-0",
                "namespace": "default",
                "uid": "5d2a6a0e-0000-4000-8000-000000000001",
                "creationTimestamp": "2025-06-01T11:50:00Z",
            },
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn container(name: &str) -> Value {
        json!({ "name": name, "image": "busybox" })
    }

    fn sidecar(name: &str) -> Value {
        json!({ "name": name, "image": "envoy", "restartPolicy": "Always" })
    }

    fn running(name: &str, ready: bool) -> Value {
        json!({
            "name": name, "image": "busybox", "imageID": "", "ready": ready, "restartCount": 0,
            "started": true,
            "state": { "running": { "startedAt": "2025-06-01T11:51:00Z" } },
        })
    }

    fn waiting(name: &str, reason: &str) -> Value {
        json!({
            "name": name, "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "started": false,
            "state": { "waiting": { "reason": reason } },
        })
    }

    fn terminated(name: &str, exit_code: i32, reason: Option<&str>, signal: Option<i32>) -> Value {
        let mut t = json!({
            "exitCode": exit_code,
            "startedAt": "2025-06-01T11:51:00Z",
            "finishedAt": "2025-06-01T11:52:00Z",
        });
        if let Some(r) = reason {
            t["reason"] = json!(r);
        }
        if let Some(s) = signal {
            t["signal"] = json!(s);
        }
        json!({
            "name": name, "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "started": false,
            "state": { "terminated": t },
        })
    }

    /// Sets `restartCount` and a previous termination that finished at `finished_at`.
    fn restarted(mut status: Value, count: i32, finished_at: &str) -> Value {
        status["restartCount"] = json!(count);
        status["lastState"] = json!({ "terminated": {
            "exitCode": 1, "reason": "Error",
            "startedAt": "2025-06-01T11:50:30Z", "finishedAt": finished_at,
        }});
        status
    }

    fn cond(type_: &str, status: bool) -> Value {
        json!({ "type": type_, "status": if status { "True" } else { "False" } })
    }

    fn row(p: &Pod) -> PodRow {
        pod_row(p, now())
    }

    #[test]
    fn rule_13_1_phase_pod_reason_and_scheduling_gate() {
        let one = json!({ "containers": [container("app")] });
        let cases = [
            (
                "pending, nothing reported",
                json!({ "phase": "Pending" }),
                "Pending",
            ),
            (
                "evicted",
                json!({ "phase": "Failed", "reason": "Evicted", "message": "low on memory" }),
                "Evicted",
            ),
            (
                "deadline exceeded",
                json!({ "phase": "Failed", "reason": "DeadlineExceeded" }),
                "DeadlineExceeded",
            ),
            (
                "scheduling gated",
                json!({ "phase": "Pending", "conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                }]}),
                "SchedulingGated",
            ),
            (
                "unschedulable is not a gate",
                json!({ "phase": "Pending", "conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                }]}),
                "Pending",
            ),
            ("no phase yet", json!({}), ""),
        ];
        for (what, status, want) in cases {
            let r = row(&pod(one.clone(), status));
            assert_eq!(r.status, want, "{what}");
            assert_eq!(r.ready, "0/1", "{what}");
            assert_eq!(r.restarts, "0", "{what}");
        }
    }

    #[test]
    fn rule_13_1_total_counts_containers_and_sidecars() {
        let spec = json!({
            "initContainers": [container("migrate"), sidecar("proxy")],
            "containers": [container("app"), container("worker")],
        });
        let r = row(&pod(spec, json!({ "phase": "Pending" })));
        assert_eq!(r.ready, "0/3");
    }

    #[test]
    fn rule_13_2_init_pass_shows_init_progress() {
        let spec = json!({
            "initContainers": [container("init-a"), container("init-b")],
            "containers": [container("app")],
        });
        let app = waiting("app", "PodInitializing");
        let done = terminated("init-a", 0, Some("Completed"), None);
        let cases = [
            (
                "first init running",
                json!([running("init-a", false), waiting("init-b", "PodInitializing")]),
                "Init:0/2",
            ),
            (
                "first init created, no reason",
                json!([{ "name": "init-a", "image": "busybox", "imageID": "", "ready": false,
                         "restartCount": 0, "state": { "waiting": {} } },
                       waiting("init-b", "PodInitializing")]),
                "Init:0/2",
            ),
            (
                "second init waiting to start",
                json!([done.clone(), waiting("init-b", "PodInitializing")]),
                "Init:1/2",
            ),
            (
                "second init running",
                json!([done.clone(), running("init-b", false)]),
                "Init:1/2",
            ),
            (
                "crash looping",
                json!([
                    waiting("init-a", "CrashLoopBackOff"),
                    waiting("init-b", "PodInitializing")
                ]),
                "Init:CrashLoopBackOff",
            ),
            (
                "image pull",
                json!([done.clone(), waiting("init-b", "ErrImagePull")]),
                "Init:ErrImagePull",
            ),
            (
                "failed with reason",
                json!([
                    terminated("init-a", 1, Some("Error"), None),
                    waiting("init-b", "PodInitializing")
                ]),
                "Init:Error",
            ),
            (
                "oom killed",
                json!([
                    terminated("init-a", 137, Some("OOMKilled"), None),
                    waiting("init-b", "PodInitializing")
                ]),
                "Init:OOMKilled",
            ),
            (
                "failed without reason",
                json!([
                    terminated("init-a", 3, None, None),
                    waiting("init-b", "PodInitializing")
                ]),
                "Init:ExitCode:3",
            ),
            (
                "killed by a signal without reason",
                json!([
                    terminated("init-a", 137, None, Some(9)),
                    waiting("init-b", "PodInitializing")
                ]),
                "Init:Signal:9",
            ),
            (
                "stops at the first unfinished one",
                json!([
                    running("init-a", false),
                    terminated("init-b", 1, Some("Error"), None)
                ]),
                "Init:0/2",
            ),
        ];
        for (what, inits, want) in cases {
            let status = json!({
                "phase": "Pending",
                "conditions": [cond("Initialized", false), cond("Ready", false)],
                "initContainerStatuses": inits,
                "containerStatuses": [app.clone()],
            });
            let r = row(&pod(spec.clone(), status));
            assert_eq!(r.status, want, "{what}");
            assert_eq!(r.ready, "0/1", "{what}");
        }
    }

    #[test]
    fn rule_13_2_started_sidecars_count_as_ready_and_are_passed() {
        let spec = json!({
            "initContainers": [sidecar("proxy"), container("migrate")],
            "containers": [container("app")],
        });
        let cases = [
            ("started and ready", running("proxy", true), "Init:1/2", "1/2"),
            ("started, not ready", running("proxy", false), "Init:1/2", "0/2"),
            (
                "not started yet",
                json!({ "name": "proxy", "image": "envoy", "imageID": "", "ready": false,
                        "restartCount": 0, "started": false,
                        "state": { "running": { "startedAt": "2025-06-01T11:51:00Z" } } }),
                "Init:0/2",
                "0/2",
            ),
        ];
        for (what, proxy, want_status, want_ready) in cases {
            let status = json!({
                "phase": "Pending",
                "conditions": [cond("Initialized", false)],
                "initContainerStatuses": [proxy, running("migrate", false)],
                "containerStatuses": [waiting("app", "PodInitializing")],
            });
            let r = row(&pod(spec.clone(), status));
            assert_eq!(r.status, want_status, "{what}");
            assert_eq!(r.ready, want_ready, "{what}");
        }
    }

    #[test]
    fn rule_13_2_init_restarts_show_when_last_restarted() {
        let spec = json!({
            "initContainers": [container("init-a")],
            "containers": [container("app")],
        });
        let status = json!({
            "phase": "Pending",
            "conditions": [cond("Initialized", false)],
            "initContainerStatuses": [
                restarted(waiting("init-a", "CrashLoopBackOff"), 3, "2025-06-01T11:59:48Z"),
            ],
            "containerStatuses": [waiting("app", "PodInitializing")],
        });
        let r = row(&pod(spec, status));
        assert_eq!(r.status, "Init:CrashLoopBackOff");
        assert_eq!(r.restarts, "3 (12s ago)");
    }

    #[test]
    fn rule_13_3_main_pass_shows_container_reasons() {
        let two = json!({ "containers": [container("app"), container("log")] });
        let running_pod = |statuses: Value| {
            json!({
                "phase": "Running",
                "conditions": [cond("Initialized", true), cond("Ready", false)],
                "containerStatuses": statuses,
            })
        };
        let cases = [
            (
                "creating",
                json!({ "phase": "Pending", "containerStatuses": [
                    waiting("app", "ContainerCreating"), waiting("log", "ContainerCreating"),
                ]}),
                "ContainerCreating",
                "0/2",
            ),
            (
                "all ready",
                json!({
                    "phase": "Running",
                    "conditions": [cond("Initialized", true), cond("Ready", true)],
                    "containerStatuses": [running("app", true), running("log", true)],
                }),
                "Running",
                "2/2",
            ),
            (
                "crash looping",
                running_pod(json!([waiting("app", "CrashLoopBackOff"), running("log", true)])),
                "CrashLoopBackOff",
                "1/2",
            ),
            (
                "error",
                running_pod(json!([
                    running("app", true),
                    terminated("log", 2, Some("Error"), None)
                ])),
                "Error",
                "1/2",
            ),
            (
                "exit code without reason",
                running_pod(json!([running("app", true), terminated("log", 1, None, None)])),
                "ExitCode:1",
                "1/2",
            ),
            (
                "signal without reason",
                running_pod(json!([
                    running("app", true),
                    terminated("log", 143, Some(""), Some(15))
                ])),
                "Signal:15",
                "1/2",
            ),
            (
                "all completed",
                json!({
                    "phase": "Succeeded",
                    "conditions": [cond("Initialized", true), cond("Ready", false)],
                    "containerStatuses": [
                        terminated("app", 0, Some("Completed"), None),
                        terminated("log", 0, Some("Completed"), None),
                    ],
                }),
                "Completed",
                "0/2",
            ),
            (
                "one completed, one still serving, pod ready",
                json!({
                    "phase": "Running",
                    "conditions": [cond("Initialized", true), cond("Ready", true)],
                    "containerStatuses": [
                        terminated("app", 0, Some("Completed"), None),
                        running("log", true),
                    ],
                }),
                "Running",
                "1/2",
            ),
            (
                "one completed, one still serving, pod not ready",
                running_pod(json!([
                    terminated("app", 0, Some("Completed"), None),
                    running("log", true)
                ])),
                "NotReady",
                "1/2",
            ),
            (
                "one completed, the other running but not ready",
                running_pod(json!([
                    terminated("app", 0, Some("Completed"), None),
                    running("log", false)
                ])),
                "Completed",
                "0/2",
            ),
        ];
        for (what, status, want_status, want_ready) in cases {
            let r = row(&pod(two.clone(), status));
            assert_eq!(r.status, want_status, "{what}");
            assert_eq!(r.ready, want_ready, "{what}");
        }
    }

    #[test]
    fn rule_13_3_restarts_count_sidecars_and_containers_not_finished_inits() {
        let spec = json!({
            "initContainers": [container("migrate"), sidecar("proxy")],
            "containers": [container("app"), container("log")],
        });
        let status = json!({
            "phase": "Running",
            "conditions": [cond("Initialized", true), cond("Ready", true)],
            "initContainerStatuses": [
                restarted(terminated("migrate", 0, Some("Completed"), None), 5, "2025-06-01T11:59:59Z"),
                restarted(running("proxy", true), 1, "2025-06-01T11:40:00Z"),
            ],
            "containerStatuses": [
                restarted(running("app", true), 2, "2025-06-01T11:59:15Z"),
                running("log", true),
            ],
        });
        let r = row(&pod(spec, status));
        assert_eq!(r.status, "Running");
        assert_eq!(r.ready, "3/3");
        // The regular init container's 5 restarts and its later date are not counted.
        assert_eq!(r.restarts, "3 (45s ago)");
    }

    #[test]
    fn rule_13_4_alphabetically_first_reason_wins() {
        let spec = json!({ "containers": [container("b-worker"), container("a-web"), container("c-log")] });
        let cases = [
            (
                "waiting before terminated",
                json!([
                    waiting("a-web", "CrashLoopBackOff"),
                    terminated("b-worker", 1, Some("Error"), None),
                    running("c-log", true),
                ]),
                "CrashLoopBackOff",
                "1/3",
            ),
            (
                "terminated before waiting",
                json!([
                    terminated("a-web", 137, Some("OOMKilled"), None),
                    waiting("b-worker", "ImagePullBackOff"),
                    running("c-log", true),
                ]),
                "OOMKilled",
                "1/3",
            ),
            (
                "running but not ready keeps the phase",
                json!([
                    running("a-web", false),
                    running("b-worker", true),
                    running("c-log", true)
                ]),
                "Running",
                "2/3",
            ),
        ];
        for (what, statuses, want_status, want_ready) in cases {
            let status = json!({
                "phase": "Running",
                "conditions": [cond("Initialized", true), cond("Ready", false)],
                "containerStatuses": statuses,
            });
            let r = row(&pod(spec.clone(), status));
            assert_eq!(r.status, want_status, "{what}");
            assert_eq!(r.ready, want_ready, "{what}");
        }
    }

    #[test]
    fn rule_13_5_main_pass_runs_only_when_initialized() {
        let spec = json!({
            "initContainers": [container("init-a")],
            "containers": [container("app")],
        });
        let inits = json!([restarted(running("init-a", false), 2, "2025-06-01T11:58:00Z")]);
        let app = restarted(running("app", true), 1, "2025-06-01T11:59:00Z");
        let crashing = restarted(waiting("app", "CrashLoopBackOff"), 1, "2025-06-01T11:59:00Z");
        let cases = [
            (
                "not initialized: init pass only",
                false,
                app.clone(),
                "Init:0/1",
                "0/1",
                "2 (2m ago)",
            ),
            // Initialized stays True when init containers re-run (sandbox re-created): READY and
            // RESTARTS come from the main pass, and a ready container leaves the init reason.
            (
                "initialized, app ready",
                true,
                app,
                "Init:0/1",
                "1/1",
                "1 (60s ago)",
            ),
            (
                "initialized, app crashing",
                true,
                crashing,
                "CrashLoopBackOff",
                "0/1",
                "1 (60s ago)",
            ),
        ];
        for (what, initialized, app, want_status, want_ready, want_restarts) in cases {
            let status = json!({
                "phase": "Running",
                "conditions": [cond("Initialized", initialized), cond("Ready", true)],
                "initContainerStatuses": inits.clone(),
                "containerStatuses": [app],
            });
            let r = row(&pod(spec.clone(), status));
            assert_eq!(r.status, want_status, "{what}");
            assert_eq!(r.ready, want_ready, "{what}");
            assert_eq!(r.restarts, want_restarts, "{what}");
        }
    }

    #[test]
    fn rule_13_6_deletion_shows_terminating_or_unknown() {
        let cases = [
            (
                "running",
                json!({ "phase": "Running", "containerStatuses": [running("app", true)] }),
                "Terminating",
            ),
            (
                "crash looping",
                json!({ "phase": "Running", "containerStatuses": [waiting("app", "CrashLoopBackOff")] }),
                "Terminating",
            ),
            (
                "pending",
                json!({ "phase": "Pending", "containerStatuses": [waiting("app", "ContainerCreating")] }),
                "Terminating",
            ),
            (
                "node lost",
                json!({ "phase": "Running", "reason": "NodeLost",
                        "containerStatuses": [running("app", true)] }),
                "Unknown",
            ),
            (
                "succeeded",
                json!({ "phase": "Succeeded",
                        "containerStatuses": [terminated("app", 0, Some("Completed"), None)] }),
                "Completed",
            ),
            (
                "failed",
                json!({ "phase": "Failed",
                        "containerStatuses": [terminated("app", 1, Some("Error"), None)] }),
                "Error",
            ),
        ];
        for (what, status, want) in cases {
            let mut p = pod(json!({ "containers": [container("app")] }), status);
            p.metadata.deletion_timestamp = Some(now().to_k8s());
            assert_eq!(row(&p).status, want, "{what}");
        }
    }

    #[test]
    fn rule_13_7_cells() {
        let spec = json!({
            "nodeName": "node-a",
            "containers": [container("app")],
            "readinessGates": [
                { "conditionType": "example.com/lb-ready" },
                { "conditionType": "example.com/feature" },
            ],
        });
        let status = json!({
            "phase": "Running",
            "podIP": "10.1.0.7",
            "podIPs": [{ "ip": "10.1.0.7" }, { "ip": "fd00::7" }],
            "conditions": [
                cond("Initialized", true),
                cond("Ready", false),
                cond("example.com/lb-ready", true),
                cond("example.com/feature", false),
            ],
            "containerStatuses": [running("app", true)],
        });
        let r = row(&pod(spec, status));
        assert_eq!(
            r,
            PodRow {
                name: "web-0".into(),
                ready: "1/1".into(),
                status: "Running".into(),
                restarts: "0".into(),
                age: "10m".into(),
                ip: "10.1.0.7".into(),
                node: "node-a".into(),
                nominated_node: "<none>".into(),
                readiness_gates: "1/2".into(),
            }
        );
        assert_eq!(r.cells()[..5], ["web-0", "1/1", "Running", "0", "10m"]);

        // Nothing assigned yet.
        let mut bare = pod(
            json!({ "containers": [container("app")] }),
            json!({ "phase": "Pending", "nominatedNodeName": "node-b" }),
        );
        bare.metadata.creation_timestamp = None;
        let r = row(&bare);
        assert_eq!(r.age, "<unknown>");
        assert_eq!(r.ip, "<none>");
        assert_eq!(r.node, "<none>");
        assert_eq!(r.nominated_node, "node-b");
        assert_eq!(r.readiness_gates, "<none>");

        // Only podIPs set; a gate whose condition is missing counts as not passing.
        let p = pod(
            json!({ "containers": [container("app")],
                    "readinessGates": [{ "conditionType": "example.com/lb-ready" }] }),
            json!({ "phase": "Running", "podIPs": [{ "ip": "fd00::9" }] }),
        );
        let r = row(&p);
        assert_eq!(r.ip, "fd00::9");
        assert_eq!(r.readiness_gates, "0/1");

        // A restart count with no recorded termination time shows the bare count.
        let p = pod(
            json!({ "containers": [container("app")] }),
            json!({ "phase": "Running", "containerStatuses": [{
                "name": "app", "image": "busybox", "imageID": "", "ready": true,
                "restartCount": 4, "started": true,
                "state": { "running": { "startedAt": "2025-06-01T11:51:00Z" } },
            }]}),
        );
        assert_eq!(row(&p).restarts, "4");

        // A creation time in the future (clock skew) shows 0s or <invalid>.
        let mut skewed = pod(json!({ "containers": [container("app")] }), json!({}));
        skewed.metadata.creation_timestamp = Some(at("2025-06-01T12:00:01Z").to_k8s());
        assert_eq!(row(&skewed).age, "0s");
        skewed.metadata.creation_timestamp = Some(at("2025-06-01T12:00:05Z").to_k8s());
        assert_eq!(row(&skewed).age, "<invalid>");
    }

    #[test]
    fn rule_13_7_row_condition_marks_finished_pods() {
        let spec = json!({ "containers": [container("app")] });
        let done = pod_row_condition(&pod(spec.clone(), json!({ "phase": "Succeeded" })));
        assert_eq!(
            done.map(|c| (c.type_, c.status, c.reason)),
            Some(("Completed", "True", "Succeeded"))
        );
        let failed = pod_row_condition(&pod(spec.clone(), json!({ "phase": "Failed" })));
        assert_eq!(failed.map(|c| c.reason), Some("Failed"));
        assert_eq!(pod_row_condition(&pod(spec, json!({ "phase": "Running" }))), None);
    }

    #[test]
    fn rule_13_8_human_duration() {
        const S: i64 = 1000;
        const M: i64 = 60 * S;
        const H: i64 = 60 * M;
        const D: i64 = 24 * H;
        const Y: i64 = 365 * D;
        let cases = [
            (-2 * S, "<invalid>"),
            (-1999, "0s"),
            (-S, "0s"),
            (-999, "0s"),
            (0, "0s"),
            (999, "0s"),
            (S, "1s"),
            (59 * S, "59s"),
            (119 * S + 999, "119s"),
            (2 * M, "2m"),
            (2 * M + 5 * S, "2m5s"),
            (9 * M + 59 * S, "9m59s"),
            (10 * M, "10m"),
            (10 * M + 30 * S, "10m"),
            (179 * M, "179m"),
            (3 * H, "3h"),
            (3 * H + 20 * M, "3h20m"),
            (7 * H + 59 * M, "7h59m"),
            (8 * H, "8h"),
            (8 * H + 30 * M, "8h"),
            (47 * H + 59 * M, "47h"),
            (48 * H, "2d"),
            (3 * D + 4 * H, "3d4h"),
            (7 * D + 23 * H, "7d23h"),
            (8 * D, "8d"),
            (8 * D + 5 * H, "8d"),
            (729 * D, "729d"),
            (2 * Y, "2y"),
            (2 * Y + 30 * D, "2y30d"),
            (7 * Y + 364 * D, "7y364d"),
            (8 * Y, "8y"),
            (9 * Y + 100 * D, "9y"),
            (i64::MAX, "292471208y"),
        ];
        for (millis, want) in cases {
            assert_eq!(human_duration(millis), want, "{millis}ms");
        }
    }
}
