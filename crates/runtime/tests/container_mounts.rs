//! Container mounts on real processes: each container sees exactly its mounts at their paths
//! (created in a shadow when the path does not exist on the host, read-only where asked), the
//! host filesystem is unchanged, the node's data directory is hidden, and exec sees the same.

mod support;

use std::fs;
use std::path::Path;

use podvisor_core::runtime::{ContainerExec, ContainerLaunch, ContainerRuntime, Mount};
use support::*;

fn mount(volume: &str, host: &Path, at: &str, read_only: bool) -> Mount {
    Mount {
        volume: volume.into(),
        host_path: host.to_path_buf(),
        container_path: at.into(),
        read_only,
        sensitive: false,
    }
}

async fn run(rt: &Rt, pod: &podvisor_core::corev1::Pod, mounts: Vec<Mount>) -> (i32, String) {
    let (report, log) = run_instance(rt, pod, 0, mounts).await;
    (report.status.code(), log)
}

/// Runs instance `restart` of the pod's only container to its end: its exit report and log.
async fn run_instance(
    rt: &Rt,
    pod: &podvisor_core::corev1::Pod,
    restart: i32,
    mounts: Vec<Mount>,
) -> (podvisor_core::ExitReport, String) {
    let container = pod
        .spec
        .as_ref()
        .map(|s| s.containers[0].clone())
        .unwrap_or_default();
    let started = rt
        .start(ContainerLaunch {
            pod: pod.clone(),
            pod_ip: None,
            container: container.clone(),
            restart_count: restart,
            mounts,
        })
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let report = within(30, started.exit).await;
    let path = rt
        .log_path(&uid(pod), &container.name, restart)
        .unwrap_or_else(|| panic!("no log path"));
    (report, log_text(&fs::read_to_string(path).unwrap_or_default()))
}

#[tokio::test]
#[ignore = "needs root"]
async fn a_container_sees_exactly_its_mounts_and_not_the_data_dir() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime(tmp.path(), false).await;
    let data = tmp.path().join("data");
    // Volume contents live under the data dir, as the kubelet layer puts them.
    let vol = data.join("volumes").join("work");
    fs::create_dir_all(&vol).unwrap();
    let conf = data.join("volumes").join("conf");
    fs::create_dir_all(&conf).unwrap();
    fs::write(conf.join("app.conf"), "mode=fast\n").unwrap();
    let top = format!("/podvisor-test-{}", unique());
    let script = format!(
        "exec 2>&1; echo hello > {top}/work/out && cat /etc/podvisor-test-app.conf && \
         cat {top}/conf/app.conf && (echo no 2>/dev/null > {top}/conf/x && echo WRITABLE || echo read-only) && \
         (ls {data} 2>&1 | wc -l) && (cat {vol}/out 2>&1 || true) && \
         (touch {data}/x 2>/dev/null && echo WRITABLE || echo hidden-read-only) && test -x /bin/sh && echo host-ok",
        data = data.display(),
        vol = vol.display(),
    );
    let pod = pod(
        "mounts",
        serde_json::json!([{ "name": "c", "image": "host", "command": ["sh", "-c", script] }]),
        serde_json::json!({}),
    );
    let mounts = vec![
        mount("work", &vol, &format!("{top}/work"), false),
        mount("conf", &conf, &format!("{top}/conf"), true),
        mount(
            "conf",
            &conf.join("app.conf"),
            "/etc/podvisor-test-app.conf",
            true,
        ),
    ];
    let (code, log) = run(&rt, &pod, mounts).await;
    assert_eq!(code, 0, "log: {log}");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "mode=fast", "subPath-style file mount: {log}");
    assert_eq!(lines[1], "mode=fast", "directory mount: {log}");
    assert_eq!(lines[2], "read-only", "{log}");
    assert_eq!(lines[3], "0", "the data dir is empty inside: {log}");
    assert!(
        lines[4].contains("No such file"),
        "the volume's host path is hidden: {log}"
    );
    assert_eq!(lines[5], "hidden-read-only", "the cover is read-only: {log}");
    assert_eq!(lines[6], "host-ok", "{log}");
    // The write went to the volume; the host filesystem got no new entries.
    assert_eq!(fs::read_to_string(vol.join("out")).unwrap(), "hello\n");
    assert!(!Path::new(&top).exists(), "{top} was created on the host");
    assert!(!Path::new("/etc/podvisor-test-app.conf").exists());
}

#[tokio::test]
#[ignore = "needs root"]
async fn exec_in_a_container_sees_its_mounts() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime(tmp.path(), false).await;
    let data = tmp.path().join("data");
    let vol = data.join("volumes").join("v");
    fs::create_dir_all(&vol).unwrap();
    fs::write(vol.join("ready"), "yes").unwrap();
    let top = format!("/podvisor-test-{}", unique());
    let pod = pod(
        "exec-mounts",
        serde_json::json!([{ "name": "c", "image": "host", "command": ["sleep", "30"] }]),
        serde_json::json!({}),
    );
    let sandbox = sandbox(&rt, &pod).await;
    let container = pod
        .spec
        .as_ref()
        .map(|s| s.containers[0].clone())
        .unwrap_or_default();
    let started = rt
        .start(ContainerLaunch {
            pod: pod.clone(),
            pod_ip: sandbox.pod_ip.clone(),
            container,
            restart_count: 0,
            mounts: vec![mount("v", &vol, &format!("{top}/v"), false)],
        })
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let argv = vec!["cat".to_string(), format!("{top}/v/ready")];
    let out = within(10, rt.exec(&started.id, &argv, None)).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.output), "yes");
    rt.stop(&started.id, std::time::Duration::from_secs(2))
        .await
        .unwrap();
    within(30, started.exit).await;
    rt.remove_sandbox(&uid(&pod)).await.unwrap();
}

#[tokio::test]
#[ignore = "needs root"]
async fn the_shadowed_dev_has_the_hosts_devices() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime(tmp.path(), false).await;
    // /dev/termination-log does not exist on the host, so /dev is shadowed: its devices are
    // re-created as nodes and its directories bound back.
    let stat = "stat -c '%n %F %a %t:%T %U:%G' /dev/null /dev/zero /dev/urandom /dev/tty /dev/pts /dev/shm";
    let script = format!(
        "exec 2>&1; {stat} && echo x > /dev/null && head -c 3 /dev/zero | wc -c && test -f /dev/termination-log && echo term-ok"
    );
    let pod = pod(
        "dev",
        serde_json::json!([{ "name": "c", "image": "host", "command": ["sh", "-c", script] }]),
        serde_json::json!({}),
    );
    let (code, log) = run(&rt, &pod, Vec::new()).await;
    assert_eq!(code, 0, "log: {log}");
    let host = std::process::Command::new("sh")
        .args(["-c", stat])
        .output()
        .unwrap();
    let host = String::from_utf8_lossy(&host.stdout).into_owned();
    assert_eq!(log, format!("{host}3\nterm-ok\n"), "inside vs host");
    assert!(!Path::new("/dev/termination-log").exists());
}

#[tokio::test]
#[ignore = "needs root"]
async fn a_restart_reuses_the_mount_namespace_until_a_source_changes() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime(tmp.path(), false).await;
    let conf = tmp.path().join("data").join("volumes").join("conf");
    fs::create_dir_all(&conf).unwrap();
    fs::write(conf.join("app.conf"), "v1\n").unwrap();
    let target = format!("/etc/podvisor-test-{}.conf", unique());
    // Only the first instance writes a termination message: a file not emptied between
    // instances would give the second one the first one's message.
    let once = tmp.path().join("wrote-once");
    let script = format!(
        "readlink /proc/self/ns/mnt; cat {target}; [ -e {o} ] || {{ printf first > /dev/termination-log; touch {o}; }}",
        o = once.display()
    );
    let pod = pod(
        "reuse",
        serde_json::json!([{ "name": "c", "image": "host", "command": ["sh", "-c", script] }]),
        serde_json::json!({}),
    );
    let mounts = || vec![mount("conf", &conf.join("app.conf"), &target, true)];
    let (report1, first) = run_instance(&rt, &pod, 0, mounts()).await;
    let (report2, second) = run_instance(&rt, &pod, 1, mounts()).await;
    assert_eq!(
        (report1.status.code(), report2.status.code()),
        (0, 0),
        "{first}{second}"
    );
    let (msg1, msg2) = (report1.message, report2.message);
    let ns = |log: &str| log.lines().next().unwrap_or_default().to_string();
    assert_eq!(first.lines().nth(1), Some("v1"), "{first}");
    assert_eq!(ns(&first), ns(&second), "the restart joined the kept namespace");
    assert_eq!(second.lines().nth(1), Some("v1"), "{second}");
    // Each instance's termination message is its own (the file is emptied in between).
    assert_eq!(msg1.as_deref(), Some("first"));
    assert_eq!(
        msg2.unwrap_or_default(),
        "",
        "the second instance wrote no message"
    );
    // The file is replaced (new inode, as a ConfigMap update of a subPath does): the next
    // instance gets a namespace made afresh, with the new content.
    let next = conf.join("app.conf.new");
    fs::write(&next, "v2\n").unwrap();
    fs::rename(&next, conf.join("app.conf")).unwrap();
    let (report3, third) = run_instance(&rt, &pod, 2, mounts()).await;
    assert_eq!(report3.status.code(), 0, "{third}");
    assert_ne!(ns(&third), ns(&first), "{third}");
    assert_eq!(third.lines().nth(1), Some("v2"), "{third}");
    rt.remove_sandbox(&uid(&pod)).await.unwrap();
    assert!(!Path::new(&target).exists(), "{target} was created on the host");
}
