//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` package
//! does it for kube-controller-manager and kube-scheduler (`cluster-semantics.md` §3):
//!
//! - A candidate tries every `retry_period` (2 s) to take the Lease: it creates it when absent,
//!   and takes it over when its holder is empty or the record has not changed for
//!   `lease_duration` (15 s) **as observed in the candidate's own clock** (the holder's
//!   `renewTime` is not compared with our clock: clocks of two machines may disagree). A takeover
//!   sets `acquireTime` and counts `leaseTransitions`.
//! - The leader renews every `retry_period`; when no renewal succeeded for `renew_deadline`
//!   (10 s) it stops leading (its control loops are stopped before another candidate can take
//!   over, since `renew_deadline < lease_duration`) and becomes a candidate again.
//! - A leader that stops releases the Lease (empty holder, `leaseDurationSeconds: 1`), so the
//!   next leader takes over at its next try instead of after 15 s.
//!
//! Every write is an update with the read `resourceVersion`: of two candidates racing for the
//! same record, the API server lets exactly one win. `kubectl get leases -n kube-system` shows
//! the holder.
//!
//! Not done: client-go's `OnNewLeader` callbacks and the coordinated leader election
//! (`LeaseCandidate`) of Kubernetes 1.31+.

use std::future::Future;
use std::time::Duration;

use crate::events::Recorder;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::runtime::events::{EventType, Reporter};
use kube::{Api, Client, Resource};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Where and how a leader is elected (client-go's `LeaderElectionConfig` defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// The Lease's namespace (`kube-system`).
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This candidate's identity, shown as the Lease's holder: unique per process.
    pub identity: String,
    /// How long a holder's record stays valid without a renewal (`--leader-elect-lease-duration`).
    pub lease_duration: Duration,
    /// How long a leader keeps leading without a successful renewal
    /// (`--leader-elect-renew-deadline`).
    pub renew_deadline: Duration,
    /// How often candidates try and leaders renew (`--leader-elect-retry-period`).
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// Upstream's defaults (15 s, 10 s, 2 s) for the Lease `kube-system/<name>`, held as
    /// `identity`.
    pub fn new(name: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaderElectionConfig {
    /// The same election for the Lease `name`.
    pub fn named(&self, name: &str) -> Self {
        LeaderElectionConfig {
            name: name.into(),
            ..self.clone()
        }
    }
}

/// What a candidate saw of the Lease, and when (in its own clock).
struct Observed {
    /// The holder and renew time last seen: a change of either is a sign of life.
    record: (Option<String>, Option<MicroTime>),
    at: Instant,
}

/// Runs `lead` whenever this candidate holds the Lease, until `token` is cancelled.
///
/// `lead` gets a token that is cancelled when leadership is lost (or `token` is); the future it
/// returns must finish soon after, having stopped everything it started. Leadership is given up
/// once that future is done, and the Lease is released when `token` is cancelled while leading.
pub async fn run<F, Fut>(client: Client, config: LeaderElectionConfig, token: CancellationToken, mut lead: F)
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: config.name.clone(),
            instance: Some(config.identity.clone()),
        },
    );
    let mut observed: Option<Observed> = None;
    loop {
        // Candidate: try until the Lease is ours.
        loop {
            if token.is_cancelled() {
                return;
            }
            match try_acquire_or_renew(&leases, &config, &mut observed).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    debug!(error = %e, lease = %config.name, "leader election: cannot read or write the Lease")
                }
            }
            sleep_or_cancel(jittered(config.retry_period), &token).await;
        }
        info!(lease = %config.name, identity = %config.identity, "leader election: leading");
        announce(&leases, &recorder, &config, "became leader").await;
        let leading = token.child_token();
        let mut work = std::pin::pin!(lead(leading.clone()));
        let mut last_renew = Instant::now();
        let mut work_done = false;
        // Leader: renew every retry period, give up after the renew deadline.
        loop {
            tokio::select! {
                () = &mut work => { work_done = true; break; }
                () = tokio::time::sleep(config.retry_period) => {}
                () = token.cancelled() => break,
            }
            match try_acquire_or_renew(&leases, &config, &mut observed).await {
                Ok(true) => last_renew = Instant::now(),
                Ok(false) => {
                    warn!(lease = %config.name, "leader election: the Lease was taken over");
                    break;
                }
                Err(e) => debug!(error = %e, "leader election: renewal failed"),
            }
            if last_renew.elapsed() >= config.renew_deadline {
                warn!(lease = %config.name, "leader election: no renewal within the renew deadline");
                break;
            }
        }
        leading.cancel();
        if !work_done {
            work.await;
        }
        announce(&leases, &recorder, &config, "stopped leading").await;
        if token.is_cancelled() {
            release(&leases, &config).await;
            return;
        }
        info!(lease = %config.name, "leader election: stopped leading");
        // Whatever we saw last is stale now: watch the record for a whole lease duration again.
        observed = None;
    }
}

/// `period` stretched by a random factor in [1, 2.2), as client-go's acquire loop waits
/// (jitter 1.2), so candidates started together do not keep colliding.
fn jittered(period: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // A randomly keyed hash of the time is random enough to spread candidates.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let fraction = (hasher.finish() % 1000) as f64 / 1000.0;
    period.mul_f64(1.0 + 1.2 * fraction)
}

/// Records the `LeaderElection` event `<identity> <what>` on the Lease (3.9).
async fn announce(leases: &Api<Lease>, recorder: &Recorder, config: &LeaderElectionConfig, what: &str) {
    let Ok(Some(lease)) = leases.get_opt(&config.name).await else {
        return;
    };
    crate::events::publish(
        recorder,
        &lease.object_ref(&()),
        EventType::Normal,
        "LeaderElection",
        "LeaderElection",
        format!("{} {what}", config.identity),
    )
    .await;
}

/// Sleeps `period`, or less when `token` is cancelled.
async fn sleep_or_cancel(period: Duration, token: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(period) => {}
        () = token.cancelled() => {}
    }
}

/// One try: `Ok(true)` when this candidate holds the Lease after it.
async fn try_acquire_or_renew(
    leases: &Api<Lease>,
    config: &LeaderElectionConfig,
    observed: &mut Option<Observed>,
) -> kube::Result<bool> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let Some(current) = leases.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(record(config, now.clone(), now, 0)),
        };
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = current.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let record_now = (holder.clone(), spec.renew_time.clone());
    let seen_at = match observed {
        Some(o) if o.record == record_now => o.at,
        _ => {
            let at = Instant::now();
            *observed = Some(Observed {
                record: record_now,
                at,
            });
            at
        }
    };
    let mine = holder.as_deref() == Some(config.identity.as_str());
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(config.lease_duration, Duration::from_secs);
    if !mine && holder.is_some() && seen_at.elapsed() < duration {
        return Ok(false);
    }
    let (acquired, transitions) = if mine {
        (
            spec.acquire_time.clone().unwrap_or_else(|| now.clone()),
            spec.lease_transitions.unwrap_or(0),
        )
    } else {
        (now.clone(), spec.lease_transitions.unwrap_or(0).saturating_add(1))
    };
    let mut next = current;
    next.spec = Some(record(config, acquired, now, transitions));
    match leases.replace(&config.name, &PostParams::default(), &next).await {
        Ok(written) => {
            let spec = written.spec.unwrap_or_default();
            *observed = Some(Observed {
                record: (spec.holder_identity, spec.renew_time),
                at: Instant::now(),
            });
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The Lease spec of `config`'s candidate holding it.
fn record(
    config: &LeaderElectionConfig,
    acquired: MicroTime,
    renewed: MicroTime,
    transitions: i32,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: i32::try_from(config.lease_duration.as_secs()).ok(),
        acquire_time: Some(acquired),
        renew_time: Some(renewed),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// Gives the Lease up (client-go's `ReleaseOnCancel`): an empty holder and a one-second
/// duration, so the next candidate takes over at once. Best effort: a failure only means the
/// next leader waits for the lease duration.
async fn release(leases: &Api<Lease>, config: &LeaderElectionConfig) {
    let Ok(Some(mut lease)) = leases.get_opt(&config.name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = Some(String::new());
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
    match leases.replace(&config.name, &PostParams::default(), &lease).await {
        Ok(_) => info!(lease = %config.name, "leader election: released the Lease"),
        Err(e) => debug!(error = %e, "leader election: cannot release the Lease"),
    }
}
