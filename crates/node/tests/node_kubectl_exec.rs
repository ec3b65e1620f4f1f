//! The rest of the kubectl loop into a pod, with the real kubectl against an in-process node:
//! `exec` (exit codes, stdin to end-of-file, a terminal from a pty with its size), the same
//! over SPDY, `cp` both ways with a directory, `port-forward` with an HTTP request and
//! concurrent connections (tunnelled and over SPDY), `attach`, `debug` with an ephemeral
//! container, the Python client's and kube-rs's exec, and `kubectl run` with arguments only.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{RunningNode, require_kubectl};

/// Runs kubectl with `env`, `stdin` fed to it.
fn kubectl(node: &RunningNode, env: &[(&str, &str)], args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", &node.kubeconfig)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `argv` on a pty of `rows`×`cols` (Python's `pty`), typing `input` once it has run a
/// moment; it is killed once its terminal has shown `expect` (when given) or after 60 s.
/// Returns (exit code, -9 when killed; everything the terminal showed).
fn on_pty(
    node: &RunningNode,
    rows: u16,
    cols: u16,
    argv: &[&str],
    input: &str,
    expect: &str,
) -> (i32, String) {
    const DRIVER: &str = r#"
import fcntl, os, pty, select, signal, struct, sys, termios, time
rows, cols, text, expect = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[5], sys.argv[5:])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
out, sent, start = b"", False, time.time()
while True:
    if not sent and time.time() - start > 3:
        os.write(fd, text)
        sent = True
    if (expect and expect in out) or time.time() - start > 60:
        os.kill(pid, signal.SIGKILL)
        break
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status) & 0xff)
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", DRIVER, &rows.to_string(), &cols.to_string(), input, expect])
        .args(argv)
        .env("KUBECONFIG", &node.kubeconfig)
        .output()
        .expect("Debian's python3 runs");
    let code = match out.status.code() {
        Some(c) if c == (-9i32 & 0xff) => -9,
        Some(c) => c,
        None => -1,
    };
    (code, text(&out.stdout) + &text(&out.stderr))
}

/// Runs a command through the Python client's `stream`, then another's exit code.
const PYTHON_EXEC: &str = r#"
from kubernetes import client, config
from kubernetes.stream import stream
config.load_kube_config()
api = client.CoreV1Api()
out = stream(api.connect_get_namespaced_pod_exec, "shell", "default", container="app",
             command=["sh", "-c", "echo py-$((1+1))"], stderr=True, stdin=False, stdout=True, tty=False)
print("out: " + out.strip())
resp = stream(api.connect_get_namespaced_pod_exec, "shell", "default", container="app",
              command=["sh", "-c", "exit 4"], stderr=True, stdin=False, stdout=True, tty=False,
              _preload_content=False)
resp.run_forever(timeout=30)
print("returncode: %s" % resp.returncode)
"#;

/// kube-rs's `Api::exec`: stdout, and the status with the exit code.
async fn kube_rs_exec(node: &RunningNode) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, AttachParams};
    use tokio::io::AsyncReadExt;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&node.kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    let params = AttachParams::default().container("app").stderr(false);
    let mut attached = pods
        .exec(
            "shell",
            ["sh", "-c", "echo from kube-rs | tr a-z A-Z; exit 5"],
            &params,
        )
        .await
        .expect("kube-rs exec upgrades");
    let mut out = String::new();
    attached.stdout().unwrap().read_to_string(&mut out).await.unwrap();
    let status = attached.take_status().unwrap().await.unwrap();
    assert_eq!(out, "FROM KUBE-RS\n");
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"), "{status:?}");
    let code = status
        .details
        .and_then(|d| d.causes)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.message);
    assert_eq!(code.as_deref(), Some("5"));
}

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: shell}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: host, command: [sleep, '3600']}
  - name: echo
    image: host
    stdin: true
    command: [sed, -u, 's/^/got: /']
  - name: ticker
    image: host
    command: [sh, -c, 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done']
"#;

/// A pod serving `forwarded` on `port` from a directory under `dir` (the test's own, removed
/// with it).
fn web_pod(port: u16, dir: &Path) -> String {
    let site = dir.join("site");
    let site = site.display();
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: host
    command: [sh, -c, 'mkdir -p {site} && cd {site} && echo forwarded > index.html && exec python3 -m http.server {port}']
    readinessProbe: {{tcpSocket: {{port: {port}}}, periodSeconds: 1}}
"#
    )
}

fn apply(node: &RunningNode, dir: &Path, name: &str, manifest: &str) {
    let file = dir.join(name);
    std::fs::write(&file, manifest).unwrap();
    node.ok(&["apply", "-f", file.to_str().unwrap()]);
}

fn http_get(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("the forwarded port accepts");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `kubectl port-forward` running until dropped.
struct Forward(Child);

impl Forward {
    async fn start(node: &RunningNode, env: &[(&str, &str)], local: u16, remote: u16) -> Forward {
        let child = Command::new("kubectl")
            .args(["port-forward", "pod/web", &format!("{local}:{remote}")])
            .env("KUBECONFIG", &node.kubeconfig)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", local)).is_err() {
            assert!(
                Instant::now() < deadline,
                "port-forward never listened on {local}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Forward(child)
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_cp_port_forward_attach_and_debug() {
    require_kubectl();
    let dir = tempfile::tempdir().unwrap();
    let node = RunningNode::start(dir.path(), "10.88.72.0/24", "exec").await;
    // As root, `app` has a mount namespace of its own with a volume only it sees, which
    // `kubectl debug --target=app` shares.
    let shell = if support::is_root() {
        PODS.replace(
            "- {name: app, image: host, command: [sleep, '3600']}",
            "- {name: app, image: host, command: [sh, -c, 'echo seen-by-the-debugger > /debug-target/marker; exec sleep 3600'], \
             volumeMounts: [{name: scratch, mountPath: /debug-target}]}",
        ) + "  volumes: [{name: scratch, emptyDir: {}}]\n"
    } else {
        PODS.to_string()
    };
    apply(&node, dir.path(), "shell.yaml", &shell);
    let port = free_port();
    apply(&node, dir.path(), "web.yaml", &web_pod(port, dir.path()));
    for (pod, ready) in [("shell", "3/3"), ("web", "1/1")] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !node.kubectl(&["get", "pod", pod]).1.contains(ready) {
            assert!(
                Instant::now() < deadline,
                "{pod} never became ready:\n{}\n{}",
                node.kubectl(&["describe", "pod", pod]).1,
                node.kubectl(&["logs", pod, "--all-containers"]).1
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // exec: stdout, stderr and the exit code, over WebSocket (v5) and over SPDY.
    for env in [&[][..], &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")][..]] {
        let out = kubectl(
            &node,
            env,
            &[
                "exec",
                "shell",
                "-c",
                "app",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(3), "{env:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "out\n", "{env:?}");
        assert!(
            text(&out.stderr).starts_with("err\n"),
            "{env:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("command terminated with exit code 3"),
            "{env:?}"
        );
        // stdin to its end: `cat` ends when kubectl's input does.
        let out = kubectl(
            &node,
            env,
            &["exec", "-i", "shell", "-c", "app", "--", "cat"],
            Some(b"line one\nline two\n"),
        );
        assert!(out.status.success(), "{env:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "line one\nline two\n", "{env:?}");
    }
    // Errors come back as kubectl shows them upstream.
    let out = kubectl(&node, &[], &["exec", "shell", "-c", "nope", "--", "true"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("container nope is not valid for pod shell"),
        "{}",
        text(&out.stderr)
    );

    // exec -it: a terminal of the size kubectl's own terminal has.
    let (code, shown) = on_pty(
        &node,
        33,
        101,
        &["kubectl", "exec", "-it", "shell", "-c", "app", "--", "sh"],
        "tty; stty size; exit 7\n",
        "",
    );
    assert_eq!(code, 7, "{shown}");
    assert!(shown.contains("/dev/pts/"), "{shown}");
    assert!(shown.contains("33 101"), "{shown}");

    // cp: a directory into the pod and back.
    let src = dir.path().join("payload");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(src.join("sub/b.txt"), "beta\n").unwrap();
    let remote = format!("/tmp/podvisor-cp-{}", std::process::id());
    let _ = std::fs::remove_dir_all(&remote);
    node.ok(&[
        "cp",
        src.to_str().unwrap(),
        &format!("shell:{remote}"),
        "-c",
        "app",
    ]);
    let listed = node.ok(&[
        "exec",
        "shell",
        "-c",
        "app",
        "--",
        "cat",
        &format!("{remote}/sub/b.txt"),
    ]);
    assert_eq!(listed, "beta\n");
    let back = dir.path().join("back");
    node.ok(&[
        "cp",
        &format!("shell:{remote}"),
        back.to_str().unwrap(),
        "-c",
        "app",
    ]);
    assert_eq!(std::fs::read_to_string(back.join("a.txt")).unwrap(), "alpha\n");
    assert_eq!(std::fs::read_to_string(back.join("sub/b.txt")).unwrap(), "beta\n");
    let _ = std::fs::remove_dir_all(&remote);

    // port-forward: tunnelled SPDY in WebSocket (kubectl's default), then plain SPDY; an HTTP
    // request and 20 concurrent connections each.
    for env in [&[][..], &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")][..]] {
        let local = free_port();
        let _forward = Forward::start(&node, env, local, port).await;
        assert!(http_get(local).contains("forwarded"), "{env:?}");
        let answers: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..20).map(|_| s.spawn(|| http_get(local))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            answers
                .iter()
                .all(|a| a.contains("200") && a.contains("forwarded")),
            "{env:?}: {answers:?}"
        );
    }

    // attach: the output from now on; stdin to a container that takes it.
    let mut attach = Command::new("kubectl")
        .args(["attach", "shell", "-c", "ticker"])
        .env("KUBECONFIG", &node.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    let mut stdout = attach.stdout.take().unwrap();
    let n = stdout.read(&mut first).unwrap();
    assert!(text(&first[..n]).contains("tick"), "{}", text(&first[..n]));
    let _ = attach.kill();
    let _ = attach.wait();
    // (The terminal echoes what is typed; the container answers with a prefix.)
    let (code, shown) = on_pty(
        &node,
        24,
        80,
        &["kubectl", "attach", "-i", "shell", "-c", "echo"],
        "echo-me\n",
        "got: echo-me",
    );
    assert_eq!(code, -9, "attach runs until it is stopped: {shown}");
    assert!(shown.contains("got: echo-me"), "{shown}");

    // debug: an ephemeral container targeting `app`, run once, shown in the status.
    let (code, shown) = on_pty(
        &node,
        24,
        80,
        &[
            "kubectl",
            "debug",
            "-it",
            "shell",
            "--image=busybox",
            "--target=app",
            "--container=dbg",
            "--",
            "sh",
        ],
        "echo debug-$((40+2)); cat /debug-target/marker; exit 0\n",
        "",
    );
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("debug-42"), "{shown}");
    if support::is_root() {
        assert!(
            shown.contains("seen-by-the-debugger"),
            "the target's mounts: {shown}"
        );
    }
    let state = node
        .until(
            &[
                "get",
                "pod",
                "shell",
                "-o",
                "jsonpath={.status.ephemeralContainerStatuses[0].state}",
            ],
            30,
            |t| t.contains("terminated"),
        )
        .await;
    assert!(state.contains("\"exitCode\":0"), "{state}");
    let spec = node.ok(&[
        "get",
        "pod",
        "shell",
        "-o",
        "jsonpath={.spec.ephemeralContainers[0].targetContainerName}",
    ]);
    assert_eq!(spec, "app");

    // The Python client's exec stream (WebSocket v4.channel.k8s.io) and kube-rs's (v5).
    let python = Command::new("/usr/bin/python3")
        .args(["-c", PYTHON_EXEC])
        .env("KUBECONFIG", &node.kubeconfig)
        .output()
        .expect("Debian's python3 runs (`cargo xtask setup` installs python3-kubernetes)");
    assert!(python.status.success(), "{}", text(&python.stderr));
    assert_eq!(
        text(&python.stdout),
        "out: py-2\nreturncode: 4\n",
        "{}",
        text(&python.stderr)
    );
    kube_rs_exec(&node).await;

    // Arguments without a command are the command line (no image entrypoint to prepend).
    node.ok(&[
        "run",
        "argsonly",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "echo args-ran; sleep 3600",
    ]);
    node.until(&["logs", "argsonly"], 30, |t| t.contains("args-ran"))
        .await;
    let args = node.ok(&[
        "get",
        "pod",
        "argsonly",
        "-o",
        "jsonpath={.spec.containers[0].args}",
    ]);
    assert!(args.contains("args-ran"), "{args}");

    node.ok(&["delete", "pod", "shell", "web", "argsonly", "--wait=true"]);
    node.stop().await;
}
