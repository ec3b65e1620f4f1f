//! The orchestration against the recording fakes ([`super::fakes`]): start, stop with its
//! grace period then SIGKILL, sandbox creation and teardown, and what each failure becomes,
//! without root. (The real machine is tested in `tests/`, the root-only parts as root.)

use std::time::Duration;

use podvisor_core::runtime::{
    ContainerExec, ContainerLaunch, ContainerRuntime, RuntimeError, Sandbox, SandboxConfig, Started,
};
use podvisor_core::{ExitStatus, corev1};
use serde_json::json;
use tokio::time::Instant;

use super::ProcessRuntime;
use super::fakes::{Failures, Machine};

fn pod(host_network: bool) -> corev1::Pod {
    serde_json::from_value(json!({
        "metadata": { "name": "web", "namespace": "shop", "uid": "u-1" },
        "spec": {
            "hostNetwork": host_network,
            "containers": [{
                "name": "app",
                "command": ["/bin/sh", "-c", "sleep 1000"],
                "workingDir": "/",
                "resources": { "limits": { "memory": "64Mi" } },
            }],
        },
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// [`pod`] with no memory limit on its container (whose groups are then kept between its
/// instances).
fn unlimited_pod() -> corev1::Pod {
    let mut pod = pod(false);
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers[0].resources = None;
    }
    pod
}

fn launch(pod: &corev1::Pod, restart_count: i32) -> ContainerLaunch {
    ContainerLaunch {
        pod: pod.clone(),
        pod_ip: None,
        container: pod
            .spec
            .as_ref()
            .map(|s| s.containers[0].clone())
            .unwrap_or_else(|| panic!("no container")),
        restart_count,
        mounts: Vec::new(),
    }
}

/// A runtime on a fake machine that fails what `fail` says, in a fresh data directory.
fn machine(fail: Failures, namespaces: bool) -> (tempfile::TempDir, Machine, ProcessRuntime) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let m = Machine::default();
    m.fail(fail);
    let rt = m.runtime(dir.path(), namespaces);
    (dir, m, rt)
}

/// The message of a start that must fail.
fn start_error(result: Result<Started, RuntimeError>) -> String {
    match result {
        Err(RuntimeError::Start { name, message }) => {
            assert_eq!(name, "app");
            message
        }
        Err(other) => panic!("unexpected {other:?}"),
        Ok(_) => panic!("it started"),
    }
}

/// The message of a sandbox creation that must fail.
fn sandbox_error(result: Result<Sandbox, RuntimeError>) -> String {
    match result {
        Err(RuntimeError::Sandbox { pod, message }) => {
            assert_eq!(pod, "shop/web");
            message
        }
        Err(other) => panic!("unexpected {other:?}"),
        Ok(_) => panic!("it was created"),
    }
}

fn position(log: &[String], prefix: &str) -> usize {
    log.iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {log:#?}"))
}

#[tokio::test(start_paused = true)]
async fn a_start_spawns_the_plan_in_its_cgroup_and_reports_the_exit() {
    let (dir, m, rt) = machine(Failures::default(), false);
    let p = pod(false);
    let started = rt.start(launch(&p, 3)).await.unwrap_or_else(|e| panic!("{e}"));
    let pid = m.last_pid();
    let log = m.log();
    assert!(
        log[0].starts_with("cgroup create u-1/app-3 Limits { memory_bytes: Some(67108864)"),
        "{log:#?}"
    );
    assert_eq!(
        log[1],
        format!("spawn {pid} /bin/sh argv=[\"/bin/sh\", \"-c\", \"sleep 1000\"] cwd=\"/\" uid=None")
    );
    assert!(started.id.0.contains("-app-3-"), "{}", started.id.0);
    assert!(
        dir.path().join("pods/shop_web_u-1/app/3.log").is_file(),
        "the log file is made"
    );

    m.exit(pid, ExitStatus::Exited(3));
    let report = started.exit.await;
    assert_eq!(report.status, ExitStatus::Exited(3));
    assert_eq!(report.message, None);
    // The group goes once the exit is reported, and the instance is forgotten.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(m.log().last().map(String::as_str), Some("cgroup remove app-3"));
    assert!(matches!(
        rt.stop(&started.id, Duration::ZERO).await,
        Err(RuntimeError::NotFound { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_stop_signals_the_main_process_then_kills_the_cgroup_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let m = Machine::default();
    m.ignore_sigterm();
    let rt = m.runtime(dir.path(), false);
    let started = rt
        .start(launch(&pod(false), 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = m.last_pid();
    let t0 = Instant::now();
    rt.stop(&started.id, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.log().last(), Some(&format!("signal {pid} SIGTERM")));
    // A second, shorter stop brings the deadline forward; it sends no second signal.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !m.log().iter().any(|l| l.starts_with("cgroup kill")),
        "not before the deadline"
    );
    rt.stop(&started.id, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let report = started.exit.await;
    assert_eq!(report.status, ExitStatus::Signaled(9));
    assert_eq!(t0.elapsed().as_secs(), 6, "killed at the shortened deadline");
    let log = m.log();
    assert_eq!(
        log.iter().filter(|l| l.contains("SIGTERM")).count(),
        1,
        "{log:#?}"
    );
    assert!(position(&log, "cgroup kill app-0") < position(&log, &format!("signal group {pid} SIGKILL")));
}

#[tokio::test(start_paused = true)]
async fn a_process_that_ends_on_the_stop_signal_is_not_killed() {
    let (_dir, m, rt) = machine(Failures::default(), false);
    let started = rt
        .start(launch(&pod(false), 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    rt.stop(&started.id, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let t0 = Instant::now();
    assert_eq!(started.exit.await.status, ExitStatus::Signaled(15));
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert!(
        !m.log().iter().any(|l| l.starts_with("cgroup kill")),
        "{:#?}",
        m.log()
    );
}

#[tokio::test(start_paused = true)]
async fn an_oom_kill_in_the_cgroup_is_reported_as_oom_killed() {
    let (_dir, m, rt) = machine(Failures::default(), false);
    let started = rt
        .start(launch(&pod(false), 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    m.oom();
    m.exit(m.last_pid(), ExitStatus::Signaled(9));
    assert_eq!(started.exit.await.status, ExitStatus::OomKilled);
}

#[tokio::test]
async fn a_memory_limited_containers_restart_gets_new_groups() {
    let (_dir, m, rt) = machine(Failures::default(), false);
    rt.create_sandbox(SandboxConfig { pod: pod(false) })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = rt
        .start(launch(&pod(false), 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    m.exit(m.last_pid(), ExitStatus::Exited(1));
    assert_eq!(first.exit.await.status, ExitStatus::Exited(1));
    // What the first instance left charged to its memory group must not count against the
    // next one's limit: its groups go, the next instance gets its own.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !m.log().iter().any(|l| l == "cgroup remove app-0") {
        assert!(Instant::now() < deadline, "{:#?}", m.log());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = rt
        .start(launch(&pod(false), 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        m.log().iter().any(|l| l.starts_with("cgroup create u-1/app-1 ")),
        "{:#?}",
        m.log()
    );
    m.exit(m.last_pid(), ExitStatus::Exited(0));
    assert_eq!(second.exit.await.status, ExitStatus::Exited(0));
}

#[tokio::test]
async fn an_earlier_instances_oom_kill_is_not_the_next_ones() {
    let (_dir, m, rt) = machine(Failures::default(), false);
    rt.create_sandbox(SandboxConfig { pod: pod(false) })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = rt
        .start(launch(&unlimited_pod(), 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    m.oom();
    m.exit(m.last_pid(), ExitStatus::Signaled(9));
    assert_eq!(first.exit.await.status, ExitStatus::OomKilled);
    // The next instance runs in the same groups, whose count still says one OOM kill.
    let second = rt
        .start(launch(&unlimited_pod(), 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    m.exit(m.last_pid(), ExitStatus::Signaled(9));
    assert_eq!(second.exit.await.status, ExitStatus::Signaled(9));
    let third = rt
        .start(launch(&unlimited_pod(), 2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    m.oom();
    m.exit(m.last_pid(), ExitStatus::Signaled(9));
    assert_eq!(third.exit.await.status, ExitStatus::OomKilled);
    let creates = m.log().iter().filter(|l| l.starts_with("cgroup create")).count();
    assert_eq!(creates, 1, "{:#?}", m.log());
}

#[tokio::test]
async fn a_failed_cgroup_write_is_a_start_error_and_nothing_is_spawned() {
    let (_dir, m, rt) = machine(
        Failures {
            cgroup_write: true,
            ..Failures::default()
        },
        false,
    );
    assert_eq!(
        start_error(rt.start(launch(&pod(false), 0)).await),
        "cgroup /sys/fs/cgroup/podvisor/u-1/app-0/memory.max: Device or resource busy (os error 16)"
    );
    assert!(!m.log().iter().any(|l| l.starts_with("spawn")), "{:#?}", m.log());
}

#[tokio::test]
async fn a_failed_spawn_is_a_start_error_and_the_cgroup_is_removed() {
    let (_dir, m, rt) = machine(Failures::default(), false);
    for (kind, text) in [
        (
            std::io::ErrorKind::NotFound,
            "exec: \"/bin/sh\": executable file not found in $PATH",
        ),
        (
            std::io::ErrorKind::PermissionDenied,
            "exec: \"/bin/sh\": permission denied",
        ),
    ] {
        m.fail(Failures {
            spawn: Some(kind),
            ..Failures::default()
        });
        assert_eq!(start_error(rt.start(launch(&pod(false), 0)).await), text);
        assert_eq!(m.log().last().map(String::as_str), Some("cgroup remove app-0"));
    }
}

#[tokio::test]
async fn a_missing_working_directory_fails_before_any_cgroup_is_made() {
    let (_dir, m, rt) = machine(Failures::default(), false);
    let mut p = pod(false);
    if let Some(s) = p.spec.as_mut() {
        s.containers[0].working_dir = Some("/no/such/dir".into());
    }
    assert_eq!(
        start_error(rt.start(launch(&p, 0)).await),
        "chdir to cwd (\"/no/such/dir\") set in config.json failed: no such file or directory"
    );
    assert!(m.log().is_empty(), "{:#?}", m.log());
}

/// The pod UIDs holding an address, as the data directory says.
fn ipam_state(dir: &std::path::Path) -> String {
    crate::ipam::allocations(dir)
        .unwrap_or_else(|e| panic!("reading the IPAM state: {e}"))
        .into_iter()
        .map(|(ip, uid)| format!("{ip} {uid}\n"))
        .collect()
}

#[tokio::test]
async fn a_sandbox_gets_a_holder_an_ip_and_a_network_and_its_teardown_releases_them() {
    let (dir, m, rt) = machine(Failures::default(), true);
    let sandbox = rt
        .create_sandbox(SandboxConfig { pod: pod(false) })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let holder = m.last_pid();
    assert!(!sandbox.host_network);
    let ip = sandbox.pod_ip.clone().unwrap_or_default();
    assert!(ip.starts_with("10.88."), "{ip}");
    let log = m.log();
    assert_eq!(log[0], format!("holder {holder} web"));
    assert_eq!(log[1], "bridge podvisor0 10.88.0.1/16");
    assert!(
        log[2].starts_with("pod network pv") && log[2].ends_with(&format!(" {ip}/16 on 7")),
        "{log:#?}"
    );
    assert!(ipam_state(dir.path()).contains("u-1"));
    let hosts = std::fs::read_to_string(dir.path().join("pods/shop_web_u-1/hosts")).unwrap_or_default();
    assert!(hosts.contains(&format!("{ip}\tweb")), "{hosts}");

    // A container of the pod joins its namespaces and is started like any other.
    let started = rt
        .start(launch(&unlimited_pod(), 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    m.exit(m.last_pid(), ExitStatus::Exited(0));
    assert_eq!(started.exit.await.status, ExitStatus::Exited(0));
    // Its restart takes the first instance's groups over (kept empty in the sandbox), and
    // makes none.
    let restarted = rt
        .start(launch(&unlimited_pod(), 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    m.exit(m.last_pid(), ExitStatus::Exited(3));
    assert_eq!(restarted.exit.await.status, ExitStatus::Exited(3));
    let creates: Vec<String> = m
        .log()
        .into_iter()
        .filter(|l| l.starts_with("cgroup create"))
        .collect();
    assert_eq!(creates.len(), 1, "{creates:#?}");
    assert!(creates[0].starts_with("cgroup create u-1/app-0 "), "{creates:#?}");
    assert!(
        !m.log().iter().any(|l| l.starts_with("cgroup remove")),
        "{:#?}",
        m.log()
    );

    // The sandbox's teardown removes the kept groups, then the pod's.
    rt.remove_sandbox("u-1").await.unwrap_or_else(|e| panic!("{e}"));
    let log = m.log();
    assert!(log.contains(&format!("signal {holder} SIGKILL")), "{log:#?}");
    assert_eq!(log.last().map(String::as_str), Some("cgroup remove pod u-1"));
    assert!(
        position(&log, "cgroup remove app-0") < position(&log, "cgroup remove pod u-1"),
        "{log:#?}"
    );
    assert!(!ipam_state(dir.path()).contains("u-1"), "the IP is released");
    assert!(!dir.path().join("sandboxes/u-1.json").exists());
}

#[tokio::test]
async fn a_failed_pod_network_undoes_the_sandbox_and_says_why() {
    let (dir, m, rt) = machine(
        Failures {
            pod_network: true,
            ..Failures::default()
        },
        true,
    );
    assert_eq!(
        sandbox_error(rt.create_sandbox(SandboxConfig { pod: pod(false) }).await),
        "pod network: no netlink connection"
    );
    let holder = m.last_pid();
    let log = m.log();
    assert!(position(&log, "delete veth pv") < position(&log, &format!("signal {holder} SIGKILL")));
    assert!(!ipam_state(dir.path()).contains("u-1"), "the IP is released");
    assert!(!dir.path().join("sandboxes/u-1.json").exists());
}

#[tokio::test]
async fn a_failed_holder_is_a_sandbox_error_and_frees_the_ip() {
    let (dir, _m, rt) = machine(
        Failures {
            holder: Some(nix::errno::Errno::EPERM),
            ..Failures::default()
        },
        true,
    );
    assert_eq!(
        sandbox_error(rt.create_sandbox(SandboxConfig { pod: pod(false) }).await),
        "sandbox holder failed at unshare namespaces: EPERM: Operation not permitted"
    );
    assert!(!ipam_state(dir.path()).contains("u-1"));
}

#[tokio::test]
async fn the_holders_end_is_reported_as_sandbox_loss() {
    let (_dir, m, rt) = machine(Failures::default(), true);
    let sandbox = rt
        .create_sandbox(SandboxConfig { pod: pod(false) })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    m.exit(m.last_pid(), ExitStatus::Signaled(9));
    tokio::time::timeout(Duration::from_secs(5), sandbox.lost)
        .await
        .unwrap_or_else(|_| panic!("the loss was not reported"));
}

#[tokio::test]
async fn without_namespaces_a_sandbox_is_the_host_network_with_warnings() {
    let (_dir, m, rt) = machine(Failures::default(), false);
    let sandbox = rt
        .create_sandbox(SandboxConfig { pod: pod(false) })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(sandbox.host_network);
    assert_eq!(sandbox.pod_ip.as_deref(), Some("192.0.2.1"), "the node's address");
    assert_eq!(sandbox.warnings.len(), 2, "{:?}", sandbox.warnings);
    assert!(m.log().is_empty(), "no holder, no netlink: {:#?}", m.log());
    // Exec reaches only running instances.
    let missing = podvisor_core::ContainerId("nope".into());
    assert!(matches!(
        rt.exec(&missing, &["true".into()], None).await,
        Err(RuntimeError::NotFound { .. })
    ));
}

#[tokio::test]
async fn what_a_previous_run_left_and_cannot_be_adopted_is_removed_at_start() {
    let (dir, m, rt) = machine(Failures::default(), true);
    // A sandbox whose holder is gone (an older record without the newer fields, too).
    let record = dir.path().join("sandboxes/old.json");
    std::fs::write(&record, r#"{"pod_uid":"old","holder":null,"host_veth":"pvdead"}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    rt.recover().await;
    assert_eq!(m.log(), ["delete veth pvdead", "cgroup cleanup except []"]);
    assert!(!record.exists(), "the record goes with it");
    assert!(rt.survivors().is_empty(), "nothing to adopt");
}

/// The empty directory bound over the data directory in containers can be listed and removed
/// by the data directory's owner (at mode 000 `remove_dir_all` of an unprivileged node's data
/// directory failed), and a stray file in it stops the runtime's start, naming it.
#[test]
fn the_data_directorys_cover_is_empty_read_only_and_removable() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = tmp.path().join("data");
    let hidden = super::hidden_data_dir(&data).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        hidden.is_none(),
        "a data directory that does not exist has nothing to hide"
    );
    std::fs::create_dir(&data).unwrap_or_else(|e| panic!("{e}"));
    let hidden = super::hidden_data_dir(&data)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no cover"));
    let mode = std::fs::metadata(&hidden.cover)
        .unwrap_or_else(|e| panic!("{e}"))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o555);
    assert_eq!(std::fs::read_dir(&hidden.cover).map(|d| d.count()).ok(), Some(0));
    // A second start finds it as it left it.
    assert!(super::hidden_data_dir(&data).is_ok());
    std::fs::set_permissions(&hidden.cover, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(hidden.cover.join("stray"), "x").unwrap_or_else(|e| panic!("{e}"));
    let err = super::hidden_data_dir(&data)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("/empty: must be empty"), "{err}");
    // Mode 555 again: its owner makes it writable to take the stray file out.
    std::fs::set_permissions(&hidden.cover, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(hidden.cover.join("stray")).unwrap_or_else(|e| panic!("{e}"));
    assert!(super::hidden_data_dir(&data).is_ok());
    std::fs::remove_dir_all(&data).unwrap_or_else(|e| panic!("the data directory stays removable: {e}"));
}
