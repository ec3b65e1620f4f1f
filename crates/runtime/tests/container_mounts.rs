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
            restart_count: 0,
            mounts,
        })
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let report = within(30, started.exit).await;
    (
        report.status.code(),
        log_text(&read_log(rt, pod, &container.name)),
    )
}

#[tokio::test]
async fn a_container_sees_exactly_its_mounts_and_not_the_data_dir() {
    if skip_unless_root("a_container_sees_exactly_its_mounts_and_not_the_data_dir") {
        return;
    }
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
         (ls {data} 2>&1 | wc -l) && (cat {vol}/out 2>&1 || true) && test -x /bin/sh && echo host-ok",
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
    assert_eq!(lines[5], "host-ok", "{log}");
    // The write went to the volume; the host filesystem got no new entries.
    assert_eq!(fs::read_to_string(vol.join("out")).unwrap(), "hello\n");
    assert!(!Path::new(&top).exists(), "{top} was created on the host");
    assert!(!Path::new("/etc/podvisor-test-app.conf").exists());
}

#[tokio::test]
async fn exec_in_a_container_sees_its_mounts() {
    if skip_unless_root("exec_in_a_container_sees_its_mounts") {
        return;
    }
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
async fn the_shadowed_dev_has_the_hosts_devices() {
    if skip_unless_root("the_shadowed_dev_has_the_hosts_devices") {
        return;
    }
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
