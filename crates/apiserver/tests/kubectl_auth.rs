//! Real kubectl asking who it is and what it may do (`auth whoami`, `auth can-i`, `--list`,
//! `--as`), with the administrator's token, a node's credential and a join token: the answers
//! are the server's own authentication and authorization.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use podvisor_apiserver::auth::{Authenticator, node_token};
use podvisor_apiserver::{ApiServer, ApiServerConfig};

/// A server on TLS (kubectl sends credentials only over TLS) with the cluster's credentials:
/// the administrator's token (in the kubeconfig), join tokens and node credentials.
struct Server {
    kubeconfig: PathBuf,
    admin: String,
    node_key: String,
    join: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let store: Arc<dyn podvisor_store::Store> =
                Arc::new(podvisor_store::RedbStore::open(data.join("store.redb")).unwrap());
            let endpoint = podvisor_apiserver::setup::bind(&data, "127.0.0.1:0".parse().unwrap(), true)
                .await
                .unwrap();
            let pki = endpoint.pki.unwrap();
            let server = ApiServer::new(store.clone(), ApiServerConfig::default())
                .with_tls(endpoint.server_tls.unwrap())
                .with_authenticator(Authenticator::for_cluster(&pki, store.clone()));
            server.bootstrap().await.unwrap();
            let join = podvisor_apiserver::bootstrap_tokens::ensure_join_token(store.as_ref())
                .await
                .unwrap();
            let kubeconfig = podvisor_apiserver::setup::write_kubeconfig(
                &data.join("kubeconfig"),
                &endpoint.url,
                Some(&pki),
            )
            .unwrap();
            ready_tx
                .send((
                    kubeconfig,
                    pki.token().to_owned(),
                    pki.node_key().to_owned(),
                    join,
                ))
                .unwrap();
            server
                .serve(endpoint.listener, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
    });
    let (kubeconfig, admin, node_key, join) = ready_rx.recv().unwrap();
    Server {
        kubeconfig,
        admin,
        node_key,
        join,
        stop: Some(tx),
        thread: Some(thread),
        _dir: dir,
    }
}

/// kubectl with `token`: (exit success, stdout, stderr).
fn run(s: &Server, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", s._dir.path())
        .arg("--token")
        .arg(token)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("spawn kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_administrator_may_do_everything_and_says_who_it_is() {
    need_kubectl!();
    let s = start();
    let admin = s.admin.as_str();
    for what in [
        &["create", "pods"][..],
        &["delete", "nodes"],
        &["*", "*"],
        &["get", "/metrics"],
    ] {
        let mut args = vec!["auth", "can-i"];
        args.extend_from_slice(what);
        let (ok, out, err) = run(&s, admin, &args);
        assert_eq!((ok, out.as_str()), (true, "yes"), "{what:?}: {err}");
    }
    let (ok, out, err) = run(&s, admin, &["auth", "whoami"]);
    assert!(ok, "{err}");
    assert!(out.contains("kubernetes-admin"), "{out}");
    assert!(out.contains("[system:masters system:authenticated]"), "{out}");
    let (ok, out, err) = run(&s, admin, &["auth", "can-i", "--list"]);
    assert!(ok, "{err}");
    let all = out.lines().find(|l| l.starts_with("*.*")).unwrap_or_default();
    assert!(all.contains("[*]"), "{out}");
    // A wrong token is not anybody.
    let (ok, _, err) = run(&s, "wrong", &["auth", "whoami"]);
    assert!(!ok && err.contains("Unauthorized"), "{err}");
}

#[test]
fn a_node_may_do_what_a_kubelet_needs_and_no_more() {
    need_kubectl!();
    let s = start();
    let (id, _) = s.join.split_once('.').unwrap();
    let node = node_token(&s.node_key, "node-a", id);
    let can_i = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        let (ok, out, err) = run(&s, &node, &all);
        assert!(out == "yes" || out == "no", "{out} {err}");
        assert_eq!(ok, out == "yes", "kubectl exits 0 only for yes");
        out
    };
    assert_eq!(can_i(&["create", "pods"]), "no");
    assert_eq!(can_i(&["delete", "nodes"]), "no");
    assert_eq!(can_i(&["list", "secrets"]), "yes");
    assert_eq!(can_i(&["update", "nodes/node-a"]), "yes");
    assert_eq!(can_i(&["update", "nodes/node-b"]), "no");
    assert_eq!(can_i(&["patch", "nodes/node-a", "--subresource=status"]), "yes");
    assert_eq!(
        can_i(&["update", "leases/node-a", "-n", "kube-node-lease"]),
        "yes"
    );
    assert_eq!(can_i(&["update", "leases/node-a", "-n", "default"]), "no");
    // What the answers say is what the server does.
    let (ok, _, err) = run(&s, &node, &["create", "configmap", "x"]);
    assert!(!ok && err.contains("forbidden"), "{err}");
    let (ok, out, err) = run(&s, &node, &["auth", "whoami"]);
    assert!(ok, "{err}");
    assert!(out.contains("system:node:node-a"), "{out}");
    assert!(out.contains("[system:nodes system:authenticated]"), "{out}");
    let (ok, out, err) = run(&s, &node, &["auth", "can-i", "--list"]);
    assert!(ok, "{err}");
    let own = out
        .lines()
        .find(|l| l.starts_with("nodes/status "))
        .unwrap_or_default();
    assert!(
        own.contains("[node-a]") && own.contains("[create update patch]"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("*.*") && l.contains("[get list watch]")),
        "{out}"
    );
    assert!(
        !out.contains("leases.coordination.k8s.io"),
        "only in kube-node-lease: {out}"
    );
    let (_, out, _) = run(&s, &node, &["auth", "can-i", "--list", "-n", "kube-node-lease"]);
    assert!(out.contains("leases.coordination.k8s.io"), "{out}");
    // A node may not impersonate.
    let (ok, _, err) = run(&s, &node, &["get", "pods", "--as=jane"]);
    assert!(!ok, "{err}");
    assert!(err.contains("cannot impersonate resource \"users\""), "{err}");
}

#[test]
fn the_join_token_only_bootstraps_and_the_administrator_may_impersonate() {
    need_kubectl!();
    let s = start();
    let (admin, join) = (s.admin.as_str(), s.join.as_str());
    let (id, _) = join.split_once('.').unwrap();
    let (ok, out, err) = run(&s, join, &["auth", "whoami"]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("system:bootstrap:{id}")), "{out}");
    let (ok, out, _) = run(&s, join, &["auth", "can-i", "list", "pods"]);
    assert_eq!((ok, out.as_str()), (false, "no"));
    // The administrator asking as someone else gets that user's answers.
    let as_node = ["--as=system:node:node-a", "auth", "can-i"];
    let ask = |what: &[&str]| run(&s, admin, &[&as_node[..], what].concat()).1;
    assert_eq!(ask(&["delete", "nodes"]), "no");
    assert_eq!(ask(&["list", "pods"]), "yes");
    let (ok, out, err) = run(&s, admin, &["--as=jane", "auth", "whoami"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("jane") && out.contains("[system:authenticated]"),
        "{out}"
    );
    let (ok, out, _) = run(&s, admin, &["--as=jane", "auth", "can-i", "get", "pods"]);
    assert_eq!((ok, out.as_str()), (false, "no"));
    let (ok, _, err) = run(&s, admin, &["--as=jane", "get", "pods"]);
    assert!(
        !ok && err.contains("User \"jane\" cannot list resource \"pods\""),
        "{err}"
    );
}
