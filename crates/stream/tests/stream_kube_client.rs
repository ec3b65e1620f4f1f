//! kube-rs (WebSocket v5 exec, WebSocket channel port-forward) against the crate served by a
//! real hyper server, with real processes and real TCP ports behind it.

mod support;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::AttachParams;
use support::{Server, http_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_exec_stdin_stdout_stderr_and_exit_code() {
    let server = Server::start().await;
    let pods: Api<Pod> = Api::namespaced(server.kube_client(), "default");
    let params = AttachParams::default().stdin(true).stdout(true).stderr(true);
    let mut process = pods
        .exec("x", ["sh", "-c", "cat; echo to-err >&2; exit 7"], &params)
        .await
        .expect("exec");
    let mut stdin = process.stdin().unwrap();
    let mut stdout = process.stdout().unwrap();
    let mut stderr = process.stderr().unwrap();
    let status = process.take_status().unwrap();
    stdin.write_all(b"from stdin\n").await.unwrap();
    // Shutting stdin down makes kube-rs send v5's CLOSE for channel 0 (rule 1.11): cat sees EOF.
    stdin.shutdown().await.unwrap();
    let mut out = String::new();
    stdout.read_to_string(&mut out).await.unwrap();
    let mut err = String::new();
    stderr.read_to_string(&mut err).await.unwrap();
    assert_eq!(out, "from stdin\n");
    assert_eq!(err, "to-err\n");
    let status = status.await.expect("a status on channel 3");
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let causes = status.details.unwrap().causes.unwrap();
    assert_eq!(causes[0].reason.as_deref(), Some("ExitCode"));
    assert_eq!(causes[0].message.as_deref(), Some("7"));
    process.join().await.unwrap();
    assert_eq!(server.protocols(), ["WebSocket(V5)"]);
    assert_eq!(server.served(1).await, [Ok(())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_exec_success_and_command_not_found() {
    let server = Server::start().await;
    let pods: Api<Pod> = Api::namespaced(server.kube_client(), "default");
    let params = AttachParams::default().stdin(false).stdout(true).stderr(false);
    let mut process = pods.exec("x", ["printf", "%s", "ok"], &params).await.unwrap();
    let mut out = String::new();
    process.stdout().unwrap().read_to_string(&mut out).await.unwrap();
    let status = process.take_status().unwrap().await.unwrap();
    assert_eq!(out, "ok");
    assert_eq!(status.status.as_deref(), Some("Success"));

    let mut process = pods.exec("x", ["/nonexistent/binary"], &params).await.unwrap();
    let status = process.take_status().unwrap().await.unwrap();
    assert_eq!(status.reason.as_deref(), Some("InternalError"));
    assert!(status.message.unwrap().contains("/nonexistent/binary"));
    assert_eq!(server.served(2).await, [Ok(()), Ok(())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_portforward_two_ports_to_local_servers() {
    let server = Server::start().await;
    let (a, b) = (http_server().await, http_server().await);
    let pods: Api<Pod> = Api::namespaced(server.kube_client(), "default");
    let mut forwarder = pods.portforward("x", &[a, b]).await.expect("portforward");
    let mut first = forwarder.take_stream(a).unwrap();
    let mut second = forwarder.take_stream(b).unwrap();
    first
        .write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    second
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The channel protocol has no per-port end (rule 3.12): read the answer by its length.
    let want = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello /one";
    let mut response = vec![0u8; want.len()];
    first.read_exact(&mut response).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&response), want);

    let mut head = [0u8; 19];
    second.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200 OK\r\n\r\n");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut rd, mut wr) = tokio::io::split(second);
    let sent = big.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&sent).await.unwrap();
        wr
    });
    let mut echoed = vec![0u8; big.len()];
    rd.read_exact(&mut echoed).await.unwrap();
    assert!(echoed == big, "the echo differs");

    // kube-rs closes the WebSocket once every writer is shut down; the session then ends.
    writer.await.unwrap().shutdown().await.unwrap();
    first.shutdown().await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), forwarder.join())
        .await
        .expect("the forwarder ends")
        .unwrap();
    assert_eq!(
        server.protocols(),
        [format!("WebSocket {{ base64: false, ports: [{a}, {b}] }}")]
    );
    assert_eq!(server.served(1).await, [Ok(())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_portforward_refused_port_reports_on_the_error_channel() {
    let server = Server::start().await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pods: Api<Pod> = Api::namespaced(server.kube_client(), "default");
    let mut forwarder = pods.portforward("x", &[closed]).await.expect("portforward");
    let mut stream = forwarder.take_stream(closed).unwrap();
    let error = forwarder.take_error(closed).unwrap();
    let message = tokio::time::timeout(std::time::Duration::from_secs(10), error)
        .await
        .unwrap()
        .unwrap();
    assert!(
        message.starts_with(&format!(
            "error forwarding port {closed} to pod x, uid uid-x: connecting to port {closed}"
        )),
        "{message}"
    );
    // Every port is done, so the server closes the WebSocket: the stream ends.
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    assert_eq!(server.served(1).await, [Ok(())]);
}
