//! Two `podvisor server`s on one shared store, in-process (the store here is redb shared by
//! both; `crates/podvisor/tests/servers.rs` runs them as processes on etcd): they share the
//! cluster's credentials (one admin kubeconfig works against both), one of them leads the
//! control loops and the other takes over when it stops, and the agents' join token may do
//! only what a kubelet does.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use kube::api::PostParams;
use kube::{Api, Client};
use podvisor_controllers::leader::LeaderElectionConfig;
use podvisor_node::server::{self, ServerConfig};
use podvisor_store::Store;
use serde_json::json;
use support::eventually;
use tokio::sync::oneshot;

/// A running server: its stop signal and task.
struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), server::ServerError>>,
}

/// Starts a server named `identity` on `store`, with fast leader election; returns once its
/// kubeconfigs are written. Each server gets its own handle of the shared store (a server's
/// stop waits until its handle is dropped).
async fn start(store: &podvisor_store::RedbStore, dir: &Path, identity: &str) -> Running {
    let mut config = ServerConfig::new(dir, "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")));
    config.leader_election = LeaderElectionConfig {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(200),
        ..LeaderElectionConfig::new("", identity)
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready, is_ready) = oneshot::channel::<String>();
    let store: Arc<dyn Store> = Arc::new(store.clone());
    let task = tokio::spawn(async move {
        server::run(
            config,
            store,
            async {
                let _ = stopped.await;
            },
            |url| {
                let _ = ready.send(url.to_owned());
            },
        )
        .await
    });
    tokio::time::timeout(Duration::from_secs(20), is_ready)
        .await
        .unwrap_or_else(|_| panic!("server {identity} did not start"))
        .unwrap_or_else(|_| panic!("server {identity} failed to start"));
    Running { stop, task }
}

async fn client(kubeconfig: &Path) -> Client {
    podvisor_node::api::join(kubeconfig)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn holder(client: &Client, lease: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get_opt(lease)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

/// `kubeconfig` with the server URL of `other` (the same credentials, another server).
fn pointed_at(kubeconfig: &Path, other: &Path, out: &Path) {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let url = |text: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_owned))
            .unwrap_or_else(|| panic!("no server in {text}"))
    };
    let (mine, theirs) = (read(kubeconfig), read(other));
    std::fs::write(out, mine.replace(&url(&mine), &url(&theirs))).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_credentials_and_one_leads_at_a_time() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store =
        podvisor_store::RedbStore::open(dir.path().join("store.redb")).unwrap_or_else(|e| panic!("{e}"));
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let first = start(&store, &one, "server-one").await;
    let second = start(&store, &two, "server-two").await;
    for file in ["kubeconfig", "join.kubeconfig"] {
        assert!(two.join(file).exists(), "{file}");
    }
    // The first server's admin kubeconfig, pointed at the second server, is accepted there.
    let crossed = dir.path().join("crossed.kubeconfig");
    pointed_at(&one.join("kubeconfig"), &two.join("kubeconfig"), &crossed);
    let (admin_one, admin_two) = (client(&one.join("kubeconfig")).await, client(&crossed).await);
    let namespaces = Api::<Namespace>::all(admin_two.clone())
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        namespaces
            .items
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("kube-node-lease"))
    );
    // One leader for both Leases, the first server to start.
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        let h = eventually(lease, || holder(&admin_two, lease)).await;
        assert_eq!(h, "server-one", "{lease}");
    }
    // The leader stops: it releases its Leases, the other server takes them over.
    let _ = first.stop.send(());
    first
        .task
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    drop(admin_one);
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        eventually(lease, || async {
            (holder(&admin_two, lease).await.as_deref() == Some("server-two")).then_some(())
        })
        .await;
    }
    let _ = second.stop.send(());
    second
        .task
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_token_does_what_a_kubelet_does_and_no_more() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store =
        podvisor_store::RedbStore::open(dir.path().join("store.redb")).unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("server");
    let running = start(&store, &data, "server-one").await;
    let join = data.join("join.kubeconfig");
    let forbidden = |result: Result<Node, kube::Error>| match result {
        Err(kube::Error::Api(e)) => (e.code, e.message),
        other => panic!("allowed: {other:?}"),
    };
    let node = |name: &str| -> Node {
        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap_or_else(|e| panic!("{e}"))
    };
    // The join token itself only bootstraps: it may not even register a Node.
    let bootstrap = client(&join).await;
    let (code, message) = forbidden(
        Api::<Node>::all(bootstrap)
            .create(&PostParams::default(), &node("agent-a"))
            .await,
    );
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("User \"system:bootstrap:"), "{message}");
    // Exchanged for agent-a's own credential: a kubelet's requests for itself.
    let (agent, kubelet_token) = podvisor_node::api::join_as_node(&join, "agent-a")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        kubelet_token.is_some(),
        "the servers' token for agent-a's kubelet endpoint"
    );
    let nodes = Api::<Node>::all(agent.clone());
    nodes
        .create(&PostParams::default(), &node("agent-a"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Api::<k8s_openapi::api::core::v1::Pod>::all(agent.clone())
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Another node's Node is not its to write (NodeRestriction's words).
    let (code, message) = forbidden(nodes.create(&PostParams::default(), &node("agent-b")).await);
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "nodes \"agent-b\" is forbidden: node \"agent-a\" is not allowed to modify node \"agent-b\""
    );
    // Nor a pod bound to another node, nor a Secret.
    let admin = client(&data.join("kubeconfig")).await;
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({"metadata": {"name": "elsewhere"},
        "spec": {"nodeName": "agent-b", "containers": [{"name": "c", "image": "x", "command": ["sleep", "1"]}]}}))
    .unwrap_or_else(|e| panic!("{e}"));
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(admin, "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match Api::<k8s_openapi::api::core::v1::Pod>::namespaced(agent.clone(), "default")
        .delete("elsewhere", &Default::default())
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(
            e.message,
            "pods \"elsewhere\" is forbidden: node \"agent-a\" can only modify pods with spec.nodeName set to itself"
        ),
        other => panic!("another node's pod deleted: {other:?}"),
    }
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "stolen"}})).unwrap_or_else(|e| panic!("{e}"));
    match Api::<Secret>::namespaced(agent.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403);
            assert_eq!(e.reason, "Forbidden");
            assert_eq!(
                e.message,
                "secrets is forbidden: User \"system:node:agent-a\" cannot create resource \"secrets\" \
                 in API group \"\" in the namespace \"default\""
            );
        }
        other => panic!("a Secret created with the join token: {other:?}"),
    }
    // A wrong token is refused with 401.
    let forged = dir.path().join("forged.kubeconfig");
    let text = std::fs::read_to_string(data.join("join.kubeconfig")).unwrap_or_default();
    let token = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        // YAML quotes a token that could read as a number (`'323271.…'`).
        .map(|t| t.trim_matches(['\'', '"']))
        .unwrap_or_else(|| panic!("no token in the join kubeconfig"))
        .to_owned();
    std::fs::write(&forged, text.replace(&token, &"f".repeat(64))).unwrap_or_else(|e| panic!("{e}"));
    match Api::<Node>::all(client(&forged).await)
        .list(&Default::default())
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 401),
        other => panic!("a forged token was accepted: {other:?}"),
    }
    // Revoking the join token (deleting its bootstrap token Secret, as with kubeadm's) refuses
    // it and every node credential exchanged for it, within the re-check period.
    let id = token.split('.').next().unwrap_or_default().to_owned();
    let admin = client(&data.join("kubeconfig")).await;
    Api::<Secret>::namespaced(admin, "kube-system")
        .delete(&format!("bootstrap-token-{id}"), &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match nodes.get("agent-a").await {
            Err(kube::Error::Api(e)) if e.code == 401 => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "a revoked node credential still works: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match podvisor_node::api::join_as_node(&join, "agent-c").await {
        Err(e) => assert!(e.to_string().contains("refused its token"), "{e}"),
        Ok(_) => panic!("a revoked join token was exchanged"),
    }
    let _ = running.stop.send(());
    running
        .task
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
}
