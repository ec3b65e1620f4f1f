//! The real kubectl (1.32) against the crate served by a real hyper server with real processes
//! and TCP ports behind it: exec over WebSocket v5 and SPDY, port-forward over tunnelled SPDY
//! and plain SPDY. Without kubectl these fail saying so.

mod support;

use std::process::{Output, Stdio};
use std::time::Duration;

use support::{Server, http_get, http_server};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn kubectl_present() {
    let found = std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output();
    assert!(
        found.is_ok(),
        "kubectl is not installed: `cargo xtask setup` installs it"
    );
}

async fn run(mut cmd: tokio::process::Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl runs");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(data).await.unwrap();
        drop(pipe);
    }
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl finished")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn exec_exit_code(websockets: bool) {
    kubectl_present();
    let server = Server::start().await;
    let mut cmd = server.kubectl();
    if !websockets {
        cmd.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false");
    }
    cmd.args(["exec", "x", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    let out = run(cmd, None).await;
    assert_eq!(text(&out.stdout), "out\n", "stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("err\n"), "{stderr}");
    assert!(stderr.contains("command terminated with exit code 3"), "{stderr}");
    assert_eq!(out.status.code(), Some(3));
    // kubectl 1.32 already offers v5 first over SPDY too (rule 2.1), served as v4.
    let want = if websockets { "WebSocket(V5)" } else { "Spdy(V5)" };
    assert_eq!(server.protocols(), [want]);
    assert_eq!(server.served(1).await, [Ok(())]);
}

async fn exec_stdin(websockets: bool) {
    kubectl_present();
    let server = Server::start().await;
    let mut cmd = server.kubectl();
    if !websockets {
        cmd.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false");
    }
    cmd.args(["exec", "-i", "x", "--", "cat"]);
    // More than one chunk, so stdin's end arrives after real data.
    let mut data = b"data\n".to_vec();
    data.extend((0..100_000u32).map(|i| b'a' + (i % 26) as u8));
    let out = run(cmd, Some(&data)).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(out.stdout == data, "stdout differs: {} bytes", out.stdout.len());
    // kubectl 1.32 already offers v5 first over SPDY too (rule 2.1), served as v4.
    let want = if websockets { "WebSocket(V5)" } else { "Spdy(V5)" };
    assert_eq!(server.protocols(), [want]);
    assert_eq!(server.served(1).await, [Ok(())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_websocket_stdout_stderr_exit_code() {
    exec_exit_code(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_spdy_stdout_stderr_exit_code() {
    exec_exit_code(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_websocket_stdin_close_is_eof() {
    exec_stdin(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_spdy_stdin_fin_is_eof() {
    exec_stdin(false).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn port_forward(websockets: bool) {
    kubectl_present();
    let server = Server::start().await;
    let remote = http_server().await;
    let local = free_port();
    let mut cmd = server.kubectl();
    if !websockets {
        cmd.env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false");
    }
    cmd.args(["port-forward", "pod/x", &format!("{local}:{remote}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("Forwarding from 127.0.0.1") {
                return true;
            }
        }
        false
    });
    assert!(
        ready.await.unwrap_or(false),
        "kubectl port-forward did not get ready"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // Several connections at once, each its own stream pair.
    let requests = (0..8).map(|i| tokio::spawn(async move { (i, http_get(local, &format!("/r{i}")).await) }));
    for request in requests {
        let (i, response) = request.await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response:?}");
        assert!(response.ends_with(&format!("hello /r{i}")), "{response:?}");
    }
    // And again after those ended: the session goes on.
    let response = http_get(local, "/again").await;
    assert!(response.ends_with("hello /again"), "{response:?}");
    assert!(child.try_wait().unwrap().is_none(), "kubectl port-forward exited");
    child.kill().await.unwrap();
    let want = if websockets { "Tunnel" } else { "Spdy" };
    assert_eq!(server.protocols(), [want]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_tunnelled_spdy() {
    port_forward(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_plain_spdy() {
    port_forward(false).await;
}
