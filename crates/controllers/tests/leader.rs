//! Leader election against a real API server, in-process, with short timings: one candidate at
//! a time leads, a released Lease passes at once, a Lease taken over stops the old leader's
//! work, and `Controllers` with election write the two upstream Leases.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;
use kube::{Api, Client};
use podvisor_controllers::leader::{self, LeaderElectionConfig};
use podvisor_controllers::{Controllers, ControllersConfig};
use support::{eventually, server};
use tokio_util::sync::CancellationToken;

fn fast(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(200),
        ..LeaderElectionConfig::new("test-lease", identity)
    }
}

/// A candidate whose work counts how many of them lead at once (into `leading`) and records
/// that it led (into `led`).
fn candidate(
    client: &Client,
    identity: &str,
    token: &CancellationToken,
    leading: &Arc<AtomicUsize>,
    led: &Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    let (leading, led) = (leading.clone(), led.clone());
    tokio::spawn(leader::run(
        client.clone(),
        fast(identity),
        token.clone(),
        move |stop| {
            let (leading, led) = (leading.clone(), led.clone());
            async move {
                let now = leading.fetch_add(1, Ordering::SeqCst) + 1;
                assert_eq!(now, 1, "two leaders at once");
                led.fetch_add(1, Ordering::SeqCst);
                stop.cancelled().await;
                leading.fetch_sub(1, Ordering::SeqCst);
            }
        },
    ))
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("test-lease")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_released_lease_passes_at_once() {
    let (_dir, _server, client) = server().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let leading = Arc::new(AtomicUsize::new(0));
    let (led_a, led_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (token_a, token_b) = (CancellationToken::new(), CancellationToken::new());
    let a = candidate(&client, "a", &token_a, &leading, &led_a);
    eventually("a to lead", || async {
        (holder(&leases).await.as_deref() == Some("a")).then_some(())
    })
    .await;
    let b = candidate(&client, "b", &token_b, &leading, &led_b);
    // b keeps trying for longer than a lease duration while a renews: a stays the leader.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(holder(&leases).await.as_deref(), Some("a"));
    assert_eq!(led_b.load(Ordering::SeqCst), 0);
    let lease = leases.get("test-lease").await.unwrap_or_else(|e| panic!("{e}"));
    let spec = lease.spec.unwrap_or_default();
    assert_eq!(spec.lease_duration_seconds, Some(3));
    assert_eq!(spec.lease_transitions, Some(0));
    // a stops: it releases the Lease and b takes over well before a lease duration.
    let stopped = tokio::time::Instant::now();
    token_a.cancel();
    a.await.unwrap_or_else(|e| panic!("{e}"));
    eventually("b to lead", || async {
        (holder(&leases).await.as_deref() == Some("b")).then_some(())
    })
    .await;
    assert!(
        stopped.elapsed() < Duration::from_millis(2900),
        "b took over only after {:?}",
        stopped.elapsed()
    );
    eventually("b's work to start", || async {
        (led_b.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let spec = leases
        .get("test-lease")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .spec
        .unwrap_or_default();
    assert_eq!(spec.lease_transitions, Some(1));
    token_b.cancel();
    b.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(leading.load(Ordering::SeqCst), 0);
    assert_eq!(led_a.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_stops_its_work() {
    let (_dir, _server, client) = server().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let leading = Arc::new(AtomicUsize::new(0));
    let led = Arc::new(AtomicUsize::new(0));
    let token = CancellationToken::new();
    let a = candidate(&client, "a", &token, &leading, &led);
    eventually("a to lead", || async {
        (leading.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    // Someone else writes itself into the Lease (as a candidate that saw it expire would).
    let mut lease = leases.get("test-lease").await.unwrap_or_else(|e| panic!("{e}"));
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = Some("intruder".into());
    }
    leases
        .replace("test-lease", &PostParams::default(), &lease)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("a to stop leading", || async {
        (leading.load(Ordering::SeqCst) == 0).then_some(())
    })
    .await;
    // The intruder never renews: after a lease duration of silence, a takes the Lease back.
    eventually("a to lead again", || async {
        (led.load(Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    assert_eq!(holder(&leases).await.as_deref(), Some("a"));
    token.cancel();
    a.await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn controllers_with_election_hold_the_upstream_leases() {
    let (_dir, _server, client) = server().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let config = ControllersConfig {
        leader_election: Some(fast("server-1")),
        ..ControllersConfig::default()
    };
    let controllers = Controllers::spawn(&client, &config);
    for name in ["kube-controller-manager", "kube-scheduler"] {
        eventually(name, || async {
            let lease = leases.get_opt(name).await.ok().flatten()?;
            (lease.spec?.holder_identity.as_deref() == Some("server-1")).then_some(())
        })
        .await;
    }
    controllers.stop().await;
    // Stopping released both.
    for name in ["kube-controller-manager", "kube-scheduler"] {
        let spec = leases
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .spec
            .unwrap_or_default();
        assert_eq!(spec.holder_identity.as_deref(), Some(""), "{name}");
    }
}
