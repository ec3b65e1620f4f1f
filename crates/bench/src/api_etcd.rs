//! `api-etcd`: the `api` benchmark's pod create and get latency on etcd beside redb: the same
//! `ApiServer` on an `EtcdStore` (one etcd member the benchmark starts in a temporary directory
//! and kills at the end) and on a `RedbStore`, each driven over one keep-alive HTTP/1.1
//! connection. Floors: for the etcd rows a raw etcd put and get of a pod-sized value through
//! `etcd-client` (one round trip each, the store's own client); for the redb rows the `api`
//! benchmark's loopback HTTP round trip.
//!
//! Not measured here: lists, watches and several members (a one-member etcd commits without
//! waiting for peers, so these are the latency floor of an etcd-backed API, not a cluster's).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use podvisor_store::{EtcdStore, EtcdStoreConfig, RedbStore, Store};

use crate::api::{Client, Served, create_get, loopback_floor, pod_json};
use crate::etcd::{Etcd, put_get_floor};
use crate::stats::{Floor, Goal, Percentiles, Row};

/// The etcd rows' goal: p99 at most this many raw etcd round trips (an API create is HTTP,
/// decoding, admission and one etcd transaction; a get one linearizable etcd read).
const ETCD_P99: f64 = 10.0;
/// The redb rows' goal, the `api` benchmark's.
const REDB_P99: f64 = 50.0;

/// Creates and gets `n` pods through an API server on `store`.
async fn through_api(store: Arc<dyn Store>, n: usize) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let served = Served::start(store).await?;
    let result = async {
        let mut client = Client::connect(served.addr).await?;
        create_get(&mut client, n).await
    }
    .await;
    served.stop().await;
    result
}

fn row(metric: &str, samples: &[Duration], floor: Floor, p99: f64, note: Option<String>) -> Result<Row> {
    Ok(Row {
        bench: "api-etcd".into(),
        metric: metric.into(),
        unit: "ms",
        value: Percentiles::of_durations_ms(samples).context("no samples")?,
        floor: Some(floor),
        goal: Goal::Ratio {
            p50: None,
            p99: Some(p99),
        },
        note,
    })
}

/// Runs `n` creates and gets on each store.
pub(crate) async fn run(n: usize) -> Result<Vec<Row>> {
    let etcd = Etcd::start().await?;
    let config = EtcdStoreConfig {
        endpoints: vec![etcd.url().to_owned()],
        compaction_interval: Duration::ZERO,
        ..EtcdStoreConfig::default()
    };
    let store = EtcdStore::connect(config)
        .await
        .context("connecting the etcd store")?;
    let (etcd_create, etcd_get) = through_api(Arc::new(store), n).await?;
    let value = pod_json("default", "p0").to_string();
    let (puts, gets) = put_get_floor(&etcd, n.max(200), value.as_bytes()).await?;
    drop(etcd);

    let dir = tempfile::Builder::new()
        .prefix("podvisor-bench-api-etcd-")
        .tempdir()
        .context("creating the data directory")?;
    let redb = RedbStore::open(dir.path().join("store.redb")).context("opening the store")?;
    let (redb_create, redb_get) = through_api(Arc::new(redb), n).await?;
    let http = loopback_floor(n.max(2000)).await?;

    let put_floor = Floor {
        name: "etcd put of a pod-sized value, etcd-client, one member".into(),
        value: Percentiles::of_durations_ms(&puts).context("no floor samples")?,
    };
    let get_floor = Floor {
        name: "etcd get, etcd-client, one member".into(),
        value: Percentiles::of_durations_ms(&gets).context("no floor samples")?,
    };
    let http_floor = Floor {
        name: "keep-alive loopback HTTP/1.1 round trip, minimal hyper server".into(),
        value: Percentiles::of_durations_ms(&http).context("no floor samples")?,
    };
    Ok(vec![
        row(
            "create pod, etcd",
            &etcd_create,
            put_floor,
            ETCD_P99,
            Some("one etcd member in a temp dir: an etcd commit is a WAL fsync".into()),
        )?,
        row("get pod, etcd", &etcd_get, get_floor, ETCD_P99, None)?,
        row(
            "create pod, redb",
            &redb_create,
            http_floor.clone(),
            REDB_P99,
            Some("every create is a redb commit with fsync".into()),
        )?,
        row("get pod, redb", &redb_get, http_floor, REDB_P99, None)?,
    ])
}
