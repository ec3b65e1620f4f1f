//! Exec probes (rules 4.13-4.15) and exec hooks (rule 8.4), run through the [`ContainerExec`]
//! seam, and the kubelet's `$(VAR)` expansion of probe commands.

use std::time::Duration;

use podvisor_core::corev1;
use podvisor_core::expansion;
use podvisor_core::runtime::{ContainerExec, ExecOutput, ExitStatus, HookResult};
use podvisor_core::{ProbeOutcome, ProbeResult, ProbeTarget};

use crate::output_text;

/// How much longer than its timeout an exec probe waits for the runtime to report the timeout
/// itself before giving up on it: the runtime kills the command at the timeout, and reaping it
/// takes a moment.
pub const EXEC_TIMEOUT_GRACE: Duration = Duration::from_secs(1);

/// Expands `$(VAR)` references in `command` from `env` (the container's static `env[].value`
/// entries; a later entry wins over an earlier one of the same name), as the kubelet does for
/// exec probes: `$$` is an escaped `$`, an unknown or unterminated reference stays as written.
pub fn expand_command(command: &[String], env: &[(String, String)]) -> Vec<String> {
    command.iter().map(|arg| expand(arg, env)).collect()
}

/// Expands one argument; see [`expand_command`].
fn expand(input: &str, env: &[(String, String)]) -> String {
    expansion::expand(input, |name| expansion::last_value(env, name))
}

/// Runs an exec probe: `exec.command`, expanded from `target.env`, inside the container, killed
/// after `timeout`. Exit 0 → `Success`, another exit or a timeout → `Failure`, with the combined
/// output (at most 10 KiB) as output; an exec that cannot run at all → a handler error.
pub async fn probe(
    exec: &dyn ContainerExec,
    action: &corev1::ExecAction,
    target: &ProbeTarget,
    timeout: Duration,
) -> ProbeResult {
    let command = expand_command(action.command.as_deref().unwrap_or_default(), &target.env);
    if command.is_empty() {
        return ProbeResult::errored("exec probe has an empty command");
    }
    let timed_out = || {
        ProbeResult::new(
            ProbeOutcome::Failure,
            format!("command {:?} timed out", command.join(" ")),
        )
    };
    let run = exec.exec(&target.container_id, &command, Some(timeout));
    match tokio::time::timeout(timeout + EXEC_TIMEOUT_GRACE, run).await {
        Err(_elapsed) => timed_out(),
        Ok(Err(error)) => ProbeResult::errored(error.to_string()),
        Ok(Ok(ExecOutput { timed_out: true, .. })) => timed_out(),
        Ok(Ok(ExecOutput { status, output, .. })) => {
            let outcome = if status == ExitStatus::Exited(0) {
                ProbeOutcome::Success
            } else {
                ProbeOutcome::Failure
            };
            ProbeResult::new(outcome, output_text(&output))
        }
    }
}

/// Runs an exec hook: the command as written (hooks get no `$(VAR)` expansion), with no
/// timeout. It succeeds iff the command exits 0.
pub async fn hook(exec: &dyn ContainerExec, action: &corev1::ExecAction, target: &ProbeTarget) -> HookResult {
    let command = action.command.clone().unwrap_or_default();
    match exec.exec(&target.container_id, &command, None).await {
        Ok(ExecOutput {
            status: ExitStatus::Exited(0),
            ..
        }) => HookResult::Succeeded,
        Ok(ExecOutput { status, output, .. }) => HookResult::Failed(format!(
            "Exec lifecycle hook ({command:?}) failed - error: command exited with code {}, message: {:?}",
            status.code(),
            output_text(&output)
        )),
        Err(error) => HookResult::Failed(format!(
            "Exec lifecycle hook ({command:?}) failed - error: {error}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![
            ("PORT".into(), "8080".into()),
            ("NAME".into(), "first".into()),
            ("NAME".into(), "second".into()),
        ]
    }

    fn one(input: &str) -> String {
        expand(input, &env())
    }

    #[test]
    fn expands_known_references() {
        assert_eq!(one("localhost:$(PORT)/x"), "localhost:8080/x");
        assert_eq!(one("$(NAME)"), "second");
        assert_eq!(one("$(PORT)$(PORT)"), "80808080");
    }
}
