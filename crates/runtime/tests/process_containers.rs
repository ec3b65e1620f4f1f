//! Containers as real processes: exit codes, environment, logs, termination messages, stop
//! with grace and SIGKILL of whole trees, cgroup limits, and exec.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use podvisor_core::ExitStatus;
use podvisor_core::runtime::{ContainerExec, ContainerRuntime, RuntimeError};
use podvisor_runtime::ProcessRuntime;
use serde_json::json;
use support::*;

fn sh(name: &str, script: &str) -> serde_json::Value {
    json!({ "name": name, "image": "none", "command": ["sh", "-c", script] })
}

#[tokio::test]
async fn exit_codes_and_signals() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let p = pod(
        "exits",
        json!([sh("three", "exit 3"), sh("killed", "kill -9 $$$$")]),
        json!({}),
    );
    let three = start(&rt, &p, 0, None).await;
    assert_eq!(within(10, three.exit).await.status, ExitStatus::Exited(3));
    let killed = start(&rt, &p, 1, None).await;
    let report = within(10, killed.exit).await;
    assert_eq!(
        report.status,
        ExitStatus::Signaled(9),
        "{}",
        read_log(&rt, &p, "killed")
    );
    assert_eq!(report.status.code(), 137);
}

#[tokio::test]
async fn missing_binary_is_a_start_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let p = pod(
        "missing",
        json!([{ "name": "c", "command": ["no-such-binary-xyz"] }]),
        json!({}),
    );
    let container = p
        .spec
        .as_ref()
        .map(|s| s.containers[0].clone())
        .unwrap_or_else(|| panic!());
    let err = rt
        .start(podvisor_core::runtime::ContainerLaunch {
            pod: p.clone(),
            pod_ip: None,
            container,
            restart_count: 0,
            mounts: Vec::new(),
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("started"));
    match err {
        RuntimeError::Start { message, .. } => {
            assert_eq!(
                message,
                "exec: \"no-such-binary-xyz\": executable file not found in $PATH"
            )
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn env_expansion_field_refs_and_working_dir() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let c = json!({
        "name": "env", "command": ["sh", "-c", "echo \"$@\" $POD $NS $UID_ $IP $NODE $LABEL $ANN; pwd", "sh"],
        "args": ["$(GREETING)", "$(MISSING)", "$$(GREETING)"],
        "workingDir": "/tmp",
        "env": [
            { "name": "WHO", "value": "world" },
            { "name": "GREETING", "value": "hello $(WHO)" },
            { "name": "POD", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
            { "name": "NS", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
            { "name": "UID_", "valueFrom": { "fieldRef": { "fieldPath": "metadata.uid" } } },
            { "name": "IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
            { "name": "NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
            { "name": "LABEL", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['app']" } } },
            { "name": "ANN", "valueFrom": { "fieldRef": { "fieldPath": "metadata.annotations['note']" } } }
        ]
    });
    let p = pod("envpod", json!([c]), json!({}));
    let s = start(&rt, &p, 0, Some("10.1.2.3".into())).await;
    assert_eq!(within(10, s.exit).await.status, ExitStatus::Exited(0));
    let text = log_text(&read_log(&rt, &p, "env"));
    let expected = format!(
        "hello world $(MISSING) $(GREETING) envpod ns1 {} 10.1.2.3 podvisor demo hi\n/tmp\n",
        uid(&p)
    );
    assert_eq!(text, expected);

    let bad = json!({ "name": "bad", "command": ["true"],
        "env": [{ "name": "X", "valueFrom": { "fieldRef": { "fieldPath": "status.hostIPs" } } }] });
    let p = pod("badenv", json!([bad]), json!({}));
    let container = p
        .spec
        .as_ref()
        .map(|s| s.containers[0].clone())
        .unwrap_or_else(|| panic!());
    let err = rt
        .start(podvisor_core::runtime::ContainerLaunch {
            pod: p.clone(),
            pod_ip: None,
            container,
            restart_count: 0,
            mounts: Vec::new(),
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("started"));
    assert!(err.to_string().contains("status.hostIPs"), "{err}");
}

#[tokio::test]
#[ignore = "needs root"]
async fn run_as_user() {
    require_root();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let c = json!({ "name": "user", "command": ["sh", "-c", "id -u; id -g"],
        "securityContext": { "runAsUser": 65534 } });
    let p = pod(
        "userpod",
        json!([c]),
        json!({ "securityContext": { "runAsGroup": 65533 } }),
    );
    let s = start(&rt, &p, 0, None).await;
    assert_eq!(within(10, s.exit).await.status, ExitStatus::Exited(0));
    assert_eq!(log_text(&read_log(&rt, &p, "user")), "65534\n65533\n");
}

#[tokio::test]
async fn logs_are_cri_with_streams_partial_lines_and_rotation() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let script = "echo out; echo err >&2; head -c 40000 /dev/zero | tr '\\0' a; echo; printf tail";
    let p = pod("logs", json!([sh("c", script)]), json!({}));
    let s = start(&rt, &p, 0, None).await;
    assert_eq!(within(10, s.exit).await.status, ExitStatus::Exited(0));
    let cri = read_log(&rt, &p, "c");
    let lines: Vec<&str> = cri.lines().collect();
    for l in &lines {
        let parts: Vec<&str> = l.splitn(4, ' ').collect();
        assert!(
            parts[0].ends_with('Z') && parts[0].contains('T') && parts[0].len() == 30,
            "{l}"
        );
        assert!(
            ["stdout", "stderr"].contains(&parts[1]) && ["F", "P"].contains(&parts[2]),
            "{l}"
        );
    }
    assert!(lines.iter().any(|l| l.contains(" stdout F out")));
    assert!(lines.iter().any(|l| l.contains(" stderr F err")));
    assert_eq!(
        lines.iter().filter(|l| l.contains(" stdout P ")).count(),
        3,
        "40000 bytes = 2 partial + 1 full, and the unterminated tail"
    );
    // Output that ends without a newline is a partial record, as containerd writes it. (The
    // last stdout record: stdout and stderr are read by separate readers, so a stderr record
    // may land after it.)
    let last_stdout = lines.iter().rev().find(|l| l.contains(" stdout "));
    assert!(
        last_stdout.is_some_and(|l| l.ends_with(" stdout P tail")),
        "{cri}"
    );
    assert!(cri.ends_with('\n'));

    // Rotation: 64 KiB files, 3 in total; a second instance keeps the first one's log.
    let big = "i=0; while [ $i -lt 3000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done";
    let p2 = pod("rotate", json!([sh("r", big)]), json!({}));
    let s = start(&rt, &p2, 0, None).await;
    assert_eq!(within(10, s.exit).await.status, ExitStatus::Exited(0));
    let path = rt.log_path(&uid(&p2), "r", 0).unwrap_or_else(|| panic!());
    let rotated = |n: u32| std::path::PathBuf::from(format!("{}.{n}", path.display()));
    assert!(rotated(1).exists() && rotated(2).exists() && !rotated(3).exists());
    assert!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) <= 64 * 1024);
    // The files the monitor made in rotating keep the log's mode.
    for file in [path.clone(), rotated(1)] {
        let mode = std::fs::metadata(&file).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o640), "{}", file.display());
    }
    assert!(
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains("line-2999-")
    );
    let container = p2
        .spec
        .as_ref()
        .map(|s| s.containers[0].clone())
        .unwrap_or_else(|| panic!());
    let second = rt
        .start(podvisor_core::runtime::ContainerLaunch {
            pod: p2.clone(),
            pod_ip: None,
            container,
            restart_count: 1,
            mounts: Vec::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    within(10, second.exit).await;
    assert!(path.exists(), "previous instance's log kept");
    assert!(rt.log_path(&uid(&p2), "r", 1).is_some_and(|p| p.exists()));
}

#[tokio::test]
async fn a_flood_of_output_never_blocks_the_container() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    // 32 MiB through stdout and stderr; a blocked pipe would hang it.
    let p = pod(
        "flood",
        json!([sh(
            "f",
            "head -c 16000000 /dev/zero | tr '\\0' 'x' | fold -w 100 & head -c 16000000 /dev/zero | tr '\\0' y | fold -w 100 >&2; wait"
        )]),
        json!({}),
    );
    let t = Instant::now();
    let s = start(&rt, &p, 0, None).await;
    assert_eq!(within(14, s.exit).await.status, ExitStatus::Exited(0));
    println!("32 MB of output logged in {:?}", t.elapsed());
}

#[tokio::test]
async fn termination_message_fallback_to_logs() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let fallback = json!({ "name": "fb", "command": ["sh", "-c", "i=0; while [ $i -lt 100 ]; do echo log-$i; i=$((i+1)); done; exit 2"],
        "terminationMessagePolicy": "FallbackToLogsOnError" });
    let p = pod("term", json!([fallback]), json!({}));
    let report = within(10, start(&rt, &p, 0, None).await.exit).await;
    let msg = report.message.unwrap_or_default();
    assert_eq!(msg.lines().count(), 80);
    assert!(msg.ends_with("log-99\n") && msg.len() <= 2048);
    // A log that ends without a newline gives its text as written.
    let unterminated = json!({ "name": "nonl", "command": ["sh", "-c", "printf DONE; false"],
        "terminationMessagePolicy": "FallbackToLogsOnError" });
    let p = pod("term-nonl", json!([unterminated]), json!({}));
    let report = within(10, start(&rt, &p, 0, None).await.exit).await;
    assert_eq!(report.status, ExitStatus::Exited(1));
    assert_eq!(report.message.as_deref(), Some("DONE"));
}

/// The termination-message file needs a per-container mount namespace, so root.
#[tokio::test]
#[ignore = "needs root"]
async fn termination_message_file_in_the_containers_mount_namespace() {
    require_root();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let file = json!({ "name": "f", "command": ["sh", "-c", "printf bye > /dev/termination-log; test -c /dev/null || exit 9"] });
    let custom = json!({ "name": "g", "command": ["sh", "-c", "printf custom > /tmp/pv-term-msg-test"],
        "terminationMessagePath": "/tmp/pv-term-msg-test" });
    let p = pod("term2", json!([file, custom]), json!({}));
    let report = within(10, start(&rt, &p, 0, None).await.exit).await;
    assert_eq!(report.status, ExitStatus::Exited(0));
    assert_eq!(report.message.as_deref(), Some("bye"));
    assert!(
        !std::path::Path::new("/dev/termination-log").exists(),
        "host /dev untouched"
    );
    let report = within(10, start(&rt, &p, 1, None).await.exit).await;
    assert_eq!(report.message.as_deref(), Some("custom"));
    assert!(
        !std::path::Path::new("/tmp/pv-term-msg-test").exists(),
        "host /tmp untouched"
    );
}

#[tokio::test]
async fn log_writes_are_notified_until_the_output_ends() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let p = pod(
        "notify",
        json!([sh("c", "sleep 0.3; echo one; sleep 0.3; echo two")]),
        json!({}),
    );
    let s = start(&rt, &p, 0, None).await;
    let path = rt.log_path(&uid(&p), "c", 0).unwrap_or_else(|| panic!("no log"));
    let mut updates = rt
        .log_updates(&path)
        .unwrap_or_else(|| panic!("a live log has updates"));
    within(5, updates.changed())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(read_log(&rt, &p, "c").contains(" stdout F one\n"));
    assert_eq!(within(10, s.exit).await.status, ExitStatus::Exited(0));
    // The writer goes with the output: a follower sees the end.
    while within(5, updates.changed()).await.is_ok() {}
    assert!(read_log(&rt, &p, "c").contains(" stdout F two\n"));
    assert!(
        rt.log_updates(&path).is_none(),
        "nothing writes a finished instance's log"
    );
}

#[tokio::test]
async fn log_and_termination_files_are_private() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let p = pod("modes", json!([sh("c", "echo secret")]), json!({}));
    let report = within(10, start(&rt, &p, 0, None).await.exit).await;
    assert_eq!(report.status, ExitStatus::Exited(0));
    let log = rt.log_path(&uid(&p), "c", 0).unwrap_or_else(|| panic!("no log"));
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .mode()
            & 0o777
    };
    assert_eq!(mode(&log), 0o640, "log mode");
    let term = log.with_file_name("termination-log");
    assert_eq!(mode(&term), 0o600, "termination-message file mode");
}

/// A container running as another user owns its termination-message file and can write it;
/// its log stays the node's.
#[tokio::test]
#[ignore = "needs root"]
async fn a_container_of_another_user_owns_its_termination_message_file() {
    use std::os::unix::fs::MetadataExt;
    require_root();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let c = json!({ "name": "u", "command": ["sh", "-c", "printf by-1234 > /dev/termination-log"],
        "securityContext": { "runAsUser": 1234, "runAsGroup": 2345 } });
    let p = pod("modes-user", json!([c]), json!({}));
    let report = within(10, start(&rt, &p, 0, None).await.exit).await;
    assert_eq!(report.status, ExitStatus::Exited(0));
    assert_eq!(report.message.as_deref(), Some("by-1234"));
    let log = rt.log_path(&uid(&p), "u", 0).unwrap_or_else(|| panic!("no log"));
    let term = std::fs::metadata(log.with_file_name("termination-log")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((term.uid(), term.gid(), term.mode() & 0o777), (1234, 2345, 0o600));
    let log = std::fs::metadata(&log).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((log.uid(), log.mode() & 0o777), (0, 0o640));
}

#[tokio::test]
async fn stop_signal_goes_to_the_main_process_only() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    // A helper in the container's process group says when it gets TERM; the main process
    // takes a second to exit after its own TERM, so a helper signalled too would say so.
    let script = "sh -c 'trap \"echo helper-term; exit 0\" TERM; echo helper-up; while :; do sleep 0.1; done' & \
                  trap 'echo main-term; sleep 1; exit 0' TERM; while :; do sleep 0.1; done";
    let p = pod("stop-main", json!([sh("m", script)]), json!({}));
    let s = start(&rt, &p, 0, None).await;
    let t = Instant::now();
    while !read_log(&rt, &p, "m").contains("helper-up") && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rt.stop(&s.id, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let report = within(15, s.exit).await;
    let log = read_log(&rt, &p, "m");
    assert_eq!(report.status, ExitStatus::Exited(0), "{log}");
    assert!(log.contains("main-term"), "{log}");
    assert!(
        !log.contains("helper-term"),
        "only the main process gets the stop signal: {log}"
    );
    // The helper went with the main process, long before the grace period ended.
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn stop_escalates_to_sigkill_for_the_whole_tree() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    // The main shell ignores TERM, and so do its child and grandchild (SIG_IGN is inherited);
    // the grandchild is in a new session, outside the process group.
    let pids = dir.path().join("pids");
    let child = dir.path().join("child.sh");
    std::fs::write(
        &child,
        format!(
            "echo $$ >> {p}\nsetsid sleep 60 &\necho $! >> {p}\nwhile :; do sleep 1; done\n",
            p = pids.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // `$$$$` is `$$` after Kubernetes' `$(VAR)` expansion.
    let script = format!(
        "trap '' TERM; echo $$$$ >> {p}; sh {c} & while :; do sleep 1; done",
        p = pids.display(),
        c = child.display()
    );
    let p = pod("stubborn", json!([sh("s", &script)]), json!({}));
    let s = start(&rt, &p, 0, None).await;
    let t = Instant::now();
    let all = pids_in(&pids, 3).await;
    assert_eq!(all.len(), 3, "three processes started");
    rt.stop(&s.id, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A second stop with a shorter grace shortens the wait.
    rt.stop(&s.id, Duration::from_millis(700))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let report = within(10, s.exit).await;
    let waited = t.elapsed();
    assert_eq!(report.status, ExitStatus::Signaled(9));
    assert!(waited >= Duration::from_millis(600), "grace honoured: {waited:?}");
    let has_cgroup = rt.capabilities().cgroup != podvisor_runtime::CgroupVersion::None;
    // all = [main shell, child shell, the child's setsid'd sleep]. Without a cgroup the setsid'd
    // sleep escapes the container's process group (nothing can find it: it is killed here so
    // the test leaves nothing behind); with one, it must be gone too.
    for (i, pid) in all.iter().enumerate() {
        if has_cgroup || i != 2 {
            assert!(!exists(*pid), "pid {pid} (#{i} of {all:?}) still exists");
        } else if let Some(&escaped) = all.get(2) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(escaped),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
    assert!(matches!(
        rt.stop(&s.id, Duration::ZERO).await,
        Err(RuntimeError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_grace_period_near_i64_max_does_not_panic_and_a_shorter_stop_still_kills() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let p = pod(
        "huge-grace",
        json!([sh("s", "trap '' TERM; while :; do sleep 1; done")]),
        json!({}),
    );
    let s = start(&rt, &p, 0, None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // What a probe's terminationGracePeriodSeconds of i64::MAX becomes in the lifecycle model.
    let huge = Duration::from_secs(u64::try_from(i64::MAX).unwrap_or(u64::MAX));
    rt.stop(&s.id, huge).await.unwrap_or_else(|e| panic!("{e}"));
    rt.stop(&s.id, Duration::MAX)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    rt.stop(&s.id, Duration::from_millis(100))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(within(10, s.exit).await.status, ExitStatus::Signaled(9));
}

/// The pids a container's script appends to `file`, once there are `n` (or what is there after
/// 5 s).
async fn pids_in(file: &std::path::Path, n: usize) -> Vec<i32> {
    let t = Instant::now();
    let mut pids = Vec::new();
    while pids.len() < n && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        pids = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
    }
    pids
}

/// The state letter of `pid` in `/proc/<pid>/stat` (`Z` for a zombie); `None` once it is gone.
fn state(pid: i32) -> Option<char> {
    support::stat_fields(pid).first()?.chars().next()
}

/// A container's orphans are reaped by its monitor as they end (it wakes on `SIGCHLD`), not at
/// a periodic tick: none stays a zombie for long. Four orphans end a quarter of a second apart
/// while the main process runs on; with a one-second tick, one would wait most of a second.
#[tokio::test]
async fn a_containers_orphans_are_reaped_as_they_end() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let pids = dir.path().join("orphans");
    let script = format!(
        "for t in 0.3 0.55 0.8 1.05; do (sleep $t & echo $! >> {p}); done; exec sleep 60",
        p = pids.display()
    );
    let p = pod("orphans", json!([sh("o", &script)]), json!({}));
    let s = start(&rt, &p, 0, None).await;
    let mut left = pids_in(&pids, 4).await;
    assert_eq!(left.len(), 4, "four orphans started");
    let t = Instant::now();
    let mut zombie_since = std::collections::HashMap::new();
    let mut longest = Duration::ZERO;
    while !left.is_empty() && t.elapsed() < Duration::from_secs(10) {
        left.retain(|&pid| match state(pid) {
            Some('Z') => {
                zombie_since.entry(pid).or_insert_with(Instant::now);
                true
            }
            Some(_) => true,
            None => {
                if let Some(since) = zombie_since.get(&pid) {
                    longest = longest.max(since.elapsed());
                }
                false
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rt.stop(&s.id, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    within(10, s.exit).await;
    assert!(left.is_empty(), "orphans {left:?} not reaped within 10 s");
    assert!(
        longest < Duration::from_millis(300),
        "an orphan stayed a zombie for {longest:?}"
    );
}

#[tokio::test]
async fn leftovers_are_killed_when_the_main_process_exits() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let pidfile = dir.path().join("bg");
    let p = pod(
        "leftover",
        json!([sh(
            "l",
            &format!("sleep 60 & echo $! > {}; exit 0", pidfile.display())
        )]),
        json!({}),
    );
    let report = within(10, start(&rt, &p, 0, None).await.exit).await;
    assert_eq!(report.status, ExitStatus::Exited(0));
    let bg: i32 = std::fs::read_to_string(&pidfile)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(bg > 0 && !exists(bg), "background sleep {bg} killed and reaped");
}

/// A host-network runtime (as root) that can limit memory, in a fresh directory.
async fn memory_limited_runtime() -> (tempfile::TempDir, Rt) {
    require_root();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    assert!(
        rt.capabilities().cgroup_controllers.iter().any(|c| c == "memory"),
        "needs the memory cgroup controller"
    );
    (dir, rt)
}

#[tokio::test]
#[ignore = "needs root"]
async fn memory_limit_kill_is_oom_killed() {
    let (_dir, rt) = memory_limited_runtime().await;
    let c = json!({ "name": "hog", "command": ["python3", "-c", "x = bytearray(200 * 1024 * 1024); print(len(x))"],
        "resources": { "limits": { "memory": "32Mi" } } });
    let p = pod("oom", json!([c]), json!({}));
    let report = within(14, start(&rt, &p, 0, None).await.exit).await;
    assert_eq!(report.status, ExitStatus::OomKilled);
    assert_eq!(report.status.code(), 137);
}

/// Starts two instances of a container, the first ending at once (through `first`), the
/// second printing its cgroups; returns their reports and the second's output.
async fn two_instances(
    rt: &ProcessRuntime,
    dir: &std::path::Path,
    name: &str,
    first: &str,
    limits: serde_json::Value,
) -> (ExitStatus, ExitStatus, String) {
    let marker = dir.join(format!("{name}-ran"));
    let script = format!(
        "if [ -e {m} ]; then cat /proc/self/cgroup; exit 0; fi; touch {m}; {first}",
        m = marker.display()
    );
    let c = json!({ "name": "app", "command": ["sh", "-c", script], "resources": limits });
    let p = pod(name, json!([c]), json!({}));
    sandbox(rt, &p).await;
    let one = within(14, start_instance(rt, &p, 0, None, 0).await.exit).await;
    let two = within(14, start_instance(rt, &p, 0, None, 1).await.exit).await;
    let text = log_text(&read_instance_log(rt, &p, "app", 1));
    rt.remove_sandbox(&uid(&p))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (one.status, two.status, text)
}

/// The lines of `/proc/self/cgroup` output that name a group of pod `name`'s container.
fn container_groups<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.contains(&format!("uid-{name}-")))
        .collect()
}

#[tokio::test]
#[ignore = "needs root"]
async fn a_restart_runs_in_its_containers_groups() {
    require_root();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let (one, two, text) = two_instances(&rt, dir.path(), "regroup", "exit 3", json!({})).await;
    assert_eq!((one, two), (ExitStatus::Exited(3), ExitStatus::Exited(0)));
    let groups = container_groups(&text, "regroup");
    assert!(!groups.is_empty(), "{text}");
    assert!(
        groups.iter().all(|l| l.ends_with("/app-0")),
        "the first instance's groups: {text}"
    );
}

#[tokio::test]
#[ignore = "needs root"]
async fn a_memory_limited_restart_gets_new_groups_without_the_last_ones_oom_kill() {
    let (dir, rt) = memory_limited_runtime().await;
    let hog = "python3 -c 'x = bytearray(200 * 1024 * 1024)'";
    let limits = json!({ "limits": { "memory": "32Mi" } });
    let (one, two, text) = two_instances(&rt, dir.path(), "oomrestart", hog, limits).await;
    assert_eq!((one, two), (ExitStatus::OomKilled, ExitStatus::Exited(0)));
    let groups = container_groups(&text, "oomrestart");
    assert!(!groups.is_empty(), "{text}");
    assert!(
        groups.iter().all(|l| l.ends_with("/app-1")),
        "groups of its own: {text}"
    );
}

#[tokio::test]
#[ignore = "needs root"]
async fn pids_limit() {
    require_root();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    assert!(
        rt.capabilities().cgroup_controllers.iter().any(|c| c == "pids"),
        "needs the pids cgroup controller"
    );
    let script = "ok=0; for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & [ $? -eq 0 ] && ok=$((ok+1)); done; sleep 0.5; n=$(jobs -p | wc -l); echo started=$n";
    let mut p = pod("pids", json!([sh("p", script)]), json!({}));
    p.metadata
        .annotations
        .get_or_insert_default()
        .insert(podvisor_runtime::PIDS_LIMIT_ANNOTATION.into(), "4".into());
    let _ = within(14, start(&rt, &p, 0, None).await.exit).await;
    let text = log_text(&read_log(&rt, &p, "p"));
    let started: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("started="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(99);
    assert!(
        started < 10 || text.contains("fork"),
        "pids limit enforced: {text}"
    );
}

#[tokio::test]
async fn exec_output_exit_code_timeout_and_missing_binary() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let c = json!({ "name": "app", "command": ["sleep", "60"], "workingDir": "/tmp", "env": [{ "name": "FOO", "value": "bar" }] });
    let p = pod("exec", json!([c]), json!({}));
    let s = start(&rt, &p, 0, None).await;
    let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let out = rt
        .exec(
            &s.id,
            &argv(&["sh", "-c", "echo $FOO; pwd; echo e >&2; exit 4"]),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status, ExitStatus::Exited(4));
    assert_eq!(String::from_utf8_lossy(&out.output), "bar\n/tmp\ne\n");
    assert!(!out.timed_out);

    let big = rt
        .exec(&s.id, &argv(&["sh", "-c", "head -c 100000 /dev/zero"]), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(big.output.len(), podvisor_runtime::EXEC_OUTPUT_LIMIT);

    let pidfile = dir.path().join("child");
    let t = Instant::now();
    let slow = rt
        .exec(
            &s.id,
            &argv(&[
                "sh",
                "-c",
                &format!("sleep 30 & echo $! > {}; sleep 30", pidfile.display()),
            ]),
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(slow.timed_out && t.elapsed() < Duration::from_secs(5));
    let child: i32 = std::fs::read_to_string(&pidfile)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(child > 0 && !exists(child), "exec'd tree killed");

    match rt.exec(&s.id, &argv(&["no-such-binary-xyz"]), None).await {
        Err(RuntimeError::Exec { message, .. }) => {
            assert!(message.contains("executable file not found"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }

    // Rough spawn latency of exec (fast path from the helper thread).
    let n = 30;
    let t = Instant::now();
    for _ in 0..n {
        let _ = rt.exec(&s.id, &argv(&["/bin/true"]), None).await;
    }
    println!("exec /bin/true round trip: {:?} on average", t.elapsed() / n);

    rt.stop(&s.id, Duration::from_secs(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(within(10, s.exit).await.status, ExitStatus::Signaled(15));
    assert!(matches!(
        rt.exec(&s.id, &argv(&["true"]), None).await,
        Err(RuntimeError::NotFound { .. })
    ));
}

/// The numbers of this process's open descriptors and what each is (`/proc/self/fd`).
fn own_fds() -> Vec<(i32, String)> {
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse().ok()?;
            Some((n, std::fs::read_link(e.path()).ok()?.display().to_string()))
        })
        .collect()
}

/// A container, and an exec probe's command in it, is given its standard streams and no other
/// descriptor of the node's, also when the node's low numbers are all taken; what the node
/// holds for a running container (its pidfd, its log) sits at 1,024 and up, out of the part of
/// the table a new process's clone copies (`sys::park`). An exec probe's command has a process
/// group of its own, in the node's session.
#[tokio::test]
async fn containers_inherit_no_descriptor_and_the_node_parks_the_ones_it_keeps() {
    // As the node does at start: under the default soft limit of 1,024 open files nothing can
    // be parked (a descriptor stays where it is), nor can the crowd below be opened.
    podvisor_runtime::process::raise_open_file_limit().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime(dir.path(), true).await;
    let listing = |name: &str| sh(name, "exec ls /proc/self/fd");
    let p = pod(
        "fds",
        json!([
            listing("first"),
            sh("sleeper", "echo $$$$; exec sleep 30"),
            listing("crowded")
        ]),
        json!({}),
    );
    let first = within(10, start(&rt, &p, 0, None).await.exit).await;
    assert_eq!(first.status, ExitStatus::Exited(0));
    // `ls` opens the directory it lists as its fourth descriptor.
    assert_eq!(log_text(&read_log(&rt, &p, "first")), "0\n1\n2\n3\n");

    let sleeper = start(&rt, &p, 1, None).await;
    let log = rt
        .log_path(&uid(&p), "sleeper", 0)
        .unwrap_or_else(|| panic!("no log path"));
    let mut pid = String::new();
    for _ in 0..100 {
        pid = log_text(&std::fs::read_to_string(&log).unwrap_or_default())
            .trim()
            .to_owned();
        if !pid.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = own_fds();
    let pidfd = held.iter().find(|(n, what)| {
        what == "anon_inode:[pidfd]"
            && std::fs::read_to_string(format!("/proc/self/fdinfo/{n}"))
                .is_ok_and(|info| info.lines().any(|l| l == format!("Pid:\t{pid}")))
    });
    assert!(
        pidfd.is_some_and(|(n, _)| *n >= 1024),
        "the main process {pid}'s pidfd: {pidfd:?}"
    );
    let log_fd = held.iter().find(|(_, what)| *what == log.display().to_string());
    assert!(log_fd.is_some_and(|(n, _)| *n >= 1024), "its log: {log_fd:?}");

    let probe = || async {
        let argv = [
            "sh",
            "-c",
            "echo $$ $(ps -o pgid= -o sid= -p $$); ls /proc/self/fd",
        ]
        .map(String::from);
        let out = rt
            .exec(&sleeper.id, &argv, Some(Duration::from_secs(10)))
            .await
            .unwrap_or_else(|e| panic!("exec: {e}"));
        assert_eq!(out.status, ExitStatus::Exited(0));
        let text = String::from_utf8_lossy(&out.output).into_owned();
        let (ids, fds) = text.split_once('\n').unwrap_or_else(|| panic!("{text}"));
        let ids: Vec<&str> = ids.split_whitespace().collect();
        assert_eq!(ids[0], ids[1], "its own process group: {text}");
        let node_session = stat_fields(std::process::id() as i32)[3].clone();
        assert_eq!(ids[2], node_session, "the node's session: {text}");
        assert_eq!(fds, "0\n1\n2\n3\n");
    };
    probe().await;

    // Every low number taken: what the next container is given comes from above them.
    let crowd: Vec<std::fs::File> = (0..1100)
        .map(|_| std::fs::File::open("/dev/null").unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let crowded = within(10, start(&rt, &p, 2, None).await.exit).await;
    probe().await;
    drop(crowd);
    assert_eq!(crowded.status, ExitStatus::Exited(0));
    assert_eq!(log_text(&read_log(&rt, &p, "crowded")), "0\n1\n2\n3\n");
    rt.stop(&sleeper.id, Duration::from_secs(1))
        .await
        .unwrap_or_else(|e| panic!("stop: {e}"));
    within(10, sleeper.exit).await;
}
