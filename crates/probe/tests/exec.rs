//! Exec probes and hooks through a fake `ContainerExec`, sleep hooks, and handler dispatch.

mod support;

use std::time::{Duration, Instant};

use podvisor_core::corev1;
use podvisor_core::runtime::HookResult;
use podvisor_core::{HookRunner, ProbeOutcome, ProbeResult, Prober};
use podvisor_probe::ProbeSet;
use support::*;

#[tokio::test]
async fn exit_zero_is_success_with_the_output() {
    let exec = FakeExec::new(Script::Exit(0, "all good\n"));
    let result = ProbeSet::new(exec.clone())
        .probe(&exec_probe(&["cat", "/tmp/healthy"]), &local(), ONE_SECOND)
        .await;
    assert_eq!(result, ProbeResult::new(ProbeOutcome::Success, "all good\n"));
    assert_eq!(
        exec.calls(),
        [(
            vec!["cat".to_owned(), "/tmp/healthy".to_owned()],
            Some(ONE_SECOND)
        )]
    );
}

#[tokio::test]
async fn non_zero_exit_is_a_failure_and_not_retried() {
    let exec = FakeExec::new(Script::Exit(1, "cat: /tmp/healthy: No such file or directory"));
    let result = ProbeSet::new(exec.clone())
        .probe(&exec_probe(&["cat", "/tmp/healthy"]), &local(), ONE_SECOND)
        .await;
    assert_eq!(
        result,
        ProbeResult::new(
            ProbeOutcome::Failure,
            "cat: /tmp/healthy: No such file or directory"
        )
    );
    assert_eq!(exec.count(), 1);
}

#[tokio::test]
async fn output_is_capped_at_10_kib() {
    let long: &'static str = Box::leak("y".repeat(50 * 1024).into_boxed_str());
    let exec = FakeExec::new(Script::Exit(2, long));
    let result = ProbeSet::new(exec)
        .probe(&exec_probe(&["yes"]), &local(), ONE_SECOND)
        .await;
    assert_eq!(result.outcome, ProbeOutcome::Failure);
    assert_eq!(result.output.len(), 10 * 1024);
}

#[tokio::test]
async fn a_timeout_reported_by_the_runtime_is_a_failure() {
    let exec = FakeExec::new(Script::TimedOut);
    let result = ProbeSet::new(exec.clone())
        .probe(&exec_probe(&["sleep", "10"]), &local(), ONE_SECOND)
        .await;
    assert_eq!(
        result,
        ProbeResult::new(ProbeOutcome::Failure, "command \"sleep 10\" timed out")
    );
    assert_eq!(exec.count(), 1);
}

#[tokio::test]
async fn an_exec_that_never_returns_is_cut_off_as_a_timeout_failure() {
    let exec = FakeExec::new(Script::Hang);
    let started = Instant::now();
    let result = ProbeSet::new(exec)
        .probe(&exec_probe(&["sleep", "10"]), &local(), ONE_SECOND)
        .await;
    let took = started.elapsed();
    assert_eq!(result.outcome, ProbeOutcome::Failure, "{result:?}");
    assert_eq!(result.error, None);
    assert!(took >= ONE_SECOND, "took {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn an_exec_error_is_retried_three_times_then_reported_as_an_error() {
    let exec = FakeExec::new(Script::Error);
    let result = ProbeSet::new(exec.clone())
        .probe(&exec_probe(&["/no/such/binary"]), &local(), ONE_SECOND)
        .await;
    assert_eq!(result.outcome, ProbeOutcome::Unknown);
    let error = result.error.expect("a handler error");
    assert!(error.contains("executable file not found"), "{error}");
    assert_eq!(exec.count(), 3);
}

#[tokio::test]
async fn commands_are_expanded_from_the_static_env() {
    let exec = FakeExec::new(Script::Exit(0, ""));
    let target = target(&[], &[("PORT", "8080"), ("DIR", "/data")]);
    ProbeSet::new(exec.clone())
        .probe(
            &exec_probe(&["check", "--port=$(PORT)", "$(DIR)/x", "$(NOPE)", "$$(PORT)"]),
            &target,
            ONE_SECOND,
        )
        .await;
    let (argv, _) = exec.calls().into_iter().next().expect("one call");
    assert_eq!(argv, ["check", "--port=8080", "/data/x", "$(NOPE)", "$(PORT)"]);
}

#[tokio::test]
async fn a_probe_without_a_handler_is_an_error() {
    let result = ProbeSet::new(FakeExec::new(Script::Exit(0, "")))
        .probe(&corev1::Probe::default(), &local(), ONE_SECOND)
        .await;
    assert_eq!(result.outcome, ProbeOutcome::Unknown);
    assert!(result.error.is_some());
}

fn exec_hook(command: &[&str]) -> corev1::LifecycleHandler {
    corev1::LifecycleHandler {
        exec: Some(corev1::ExecAction {
            command: Some(command.iter().map(|arg| (*arg).to_owned()).collect()),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn exec_hooks_have_no_timeout_and_no_expansion() {
    let exec = FakeExec::new(Script::Exit(0, ""));
    let target = target(&[], &[("PORT", "8080")]);
    let result = ProbeSet::new(exec.clone())
        .run_hook(&exec_hook(&["notify", "$(PORT)"]), &target)
        .await;
    assert_eq!(result, HookResult::Succeeded);
    assert_eq!(
        exec.calls(),
        [(vec!["notify".to_owned(), "$(PORT)".to_owned()], None)]
    );
}

#[tokio::test]
async fn exec_hooks_fail_on_a_non_zero_exit_or_an_error() {
    for script in [Script::Exit(3, "boom"), Script::Error] {
        let exec = FakeExec::new(script.clone());
        let result = ProbeSet::new(exec.clone())
            .run_hook(&exec_hook(&["notify"]), &local())
            .await;
        assert!(matches!(result, HookResult::Failed(_)), "{script:?}: {result:?}");
        assert_eq!(exec.count(), 1, "hooks are not retried");
    }
}

fn sleep_hook(seconds: i64) -> corev1::LifecycleHandler {
    corev1::LifecycleHandler {
        sleep: Some(corev1::SleepAction { seconds }),
        ..Default::default()
    }
}

#[tokio::test]
async fn sleep_hooks_sleep_and_can_be_cancelled() {
    let probes = ProbeSet::new(FakeExec::new(Script::Exit(0, "")));
    let started = Instant::now();
    assert_eq!(
        probes.run_hook(&sleep_hook(0), &local()).await,
        HookResult::Succeeded
    );
    assert!(started.elapsed() < Duration::from_millis(500));

    let started = Instant::now();
    assert_eq!(
        probes.run_hook(&sleep_hook(1), &local()).await,
        HookResult::Succeeded
    );
    assert!(started.elapsed() >= ONE_SECOND);

    // The caller cancels by dropping the future.
    let (handler, target) = (sleep_hook(3600), local());
    let long = probes.run_hook(&handler, &target);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), long)
            .await
            .is_err()
    );
}

#[test]
fn the_probe_set_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ProbeSet>();
}
