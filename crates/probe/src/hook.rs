//! Lifecycle hooks (rules 8.4-8.8): exec, HTTP GET, sleep; a `tcpSocket` handler always fails.

use std::time::Duration;

use podvisor_core::ProbeTarget;
use podvisor_core::corev1;
use podvisor_core::runtime::{ContainerExec, HookResult};

use crate::exec;

pub use podvisor_core::probe::HookWarning;

/// Runs `handler` against `target`, in the kubelet's order: exec, httpGet, sleep; anything else
/// (a `tcpSocket` handler, or none) is an invalid handler and fails.
///
/// No timeout: the caller bounds a hook by dropping this future (a `sleep` hook then ends early).
pub async fn run(
    exec: &dyn ContainerExec,
    handler: &corev1::LifecycleHandler,
    target: &ProbeTarget,
) -> (HookResult, Option<HookWarning>) {
    if let Some(action) = &handler.exec {
        return (exec::hook(exec, action, target).await, None);
    }
    if let Some(action) = &handler.http_get {
        return http_hook(action, target).await;
    }
    if let Some(action) = &handler.sleep {
        return (sleep(action).await, None);
    }
    let kind = if handler.tcp_socket.is_some() {
        "tcpSocket"
    } else {
        "no action"
    };
    (
        HookResult::Failed(format!(
            "invalid handler: {kind} is not a supported lifecycle hook action"
        )),
        None,
    )
}

/// A `sleep` hook: waits `seconds` (0 or less returns at once).
pub async fn sleep(action: &corev1::SleepAction) -> HookResult {
    let seconds = u64::try_from(action.seconds).unwrap_or(0);
    if seconds > 0 {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
    HookResult::Succeeded
}

#[cfg(feature = "http")]
async fn http_hook(
    action: &corev1::HTTPGetAction,
    target: &ProbeTarget,
) -> (HookResult, Option<HookWarning>) {
    crate::http::hook(action, target).await
}

#[cfg(not(feature = "http"))]
async fn http_hook(
    _action: &corev1::HTTPGetAction,
    _target: &ProbeTarget,
) -> (HookResult, Option<HookWarning>) {
    (
        HookResult::Failed(
            "httpGet lifecycle hooks are not compiled into this node (feature `http`)".to_owned(),
        ),
        None,
    )
}
