//! A one-member etcd for the benchmarks that measure podvisor on etcd: `/usr/bin/etcd` (Debian's
//! `etcd-server`, which `cargo xtask bench` installs) on free loopback ports with its data in a
//! temporary directory, killed and reaped when dropped, so a run leaves nothing behind.
//!
//! Also the etcd floors: a raw put/get round trip and put → watch event latency through
//! `etcd-client`, the same client the store uses. Not a cluster launcher (the tests' is in
//! `podvisor-test-support`, a dev-only crate) and no TLS or authentication.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use etcd_client::{Client, ConnectOptions, EventType, WatchOptions};

/// The etcd binary Debian's `etcd-server` installs.
const ETCD_BIN: &str = "/usr/bin/etcd";
/// How long a new member may take to elect itself and answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest one floor request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A running single-member etcd; killed (and its data removed) when dropped.
pub(crate) struct Etcd {
    child: Child,
    url: String,
    // Dropped after the member is killed (in `drop`): the data directory outlives it.
    dir: tempfile::TempDir,
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a loopback port")?;
    Ok(listener.local_addr().context("a bound port")?.port())
}

impl Etcd {
    /// Starts the member and waits until it answers a read.
    pub(crate) async fn start() -> Result<Etcd> {
        if !Path::new(ETCD_BIN).exists() {
            bail!("{ETCD_BIN} is missing: `cargo xtask bench` installs Debian's etcd-server");
        }
        let dir = tempfile::Builder::new()
            .prefix("podvisor-bench-etcd-")
            .tempdir()
            .context("creating etcd's data directory")?;
        let (client, peer) = (free_port()?, free_port()?);
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).context("etcd's log file")?;
        let child = Command::new(ETCD_BIN)
            .args(["--name", "bench"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("bench={peer_url}")])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().context("etcd's log file")?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {ETCD_BIN}"))?;
        let mut etcd = Etcd { child, url, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if etcd.answers().await {
                return Ok(etcd);
            }
            if let Ok(Some(status)) = etcd.child.try_wait() {
                bail!("etcd exited with {status} at start:\n{}", etcd.log_tail());
            }
            if Instant::now() >= deadline {
                bail!(
                    "etcd did not answer within {START_TIMEOUT:?}:\n{}",
                    etcd.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The client URL (`http://127.0.0.1:PORT`).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// A client of this member.
    pub(crate) async fn client(&self) -> Result<Client> {
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        Client::connect([self.url.as_str()], Some(options))
            .await
            .context("connecting to etcd")
    }

    /// Whether a read succeeds.
    async fn answers(&self) -> bool {
        let Ok(mut client) = self.client().await else {
            return false;
        };
        tokio::time::timeout(Duration::from_secs(1), client.get("/health-probe", None))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The raw etcd floor of a create and a get: `n` puts of `value` under distinct keys, then `n`
/// gets of them, each one round trip of one client; returns (puts, gets).
pub(crate) async fn put_get_floor(
    etcd: &Etcd,
    n: usize,
    value: &[u8],
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let mut client = etcd.client().await?;
    let key = |i: usize| format!("/bench-floor/put-get/{i}");
    let mut puts = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        client.put(key(i), value, None).await.context("etcd put")?;
        puts.push(start.elapsed());
    }
    let mut gets = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        let got = client.get(key(i), None).await.context("etcd get")?;
        gets.push(start.elapsed());
        if got.kvs().len() != 1 {
            bail!("etcd get of {} found {} keys", key(i), got.kvs().len());
        }
    }
    Ok((puts, gets))
}

/// The raw etcd floor of watch latency: `n` puts of `value` to one key by one client, each
/// timed until a watch of the key's prefix on a second client delivers it.
pub(crate) async fn watch_floor(etcd: &Etcd, n: usize, value: &[u8]) -> Result<Vec<Duration>> {
    let mut writer = etcd.client().await?;
    let mut watcher = etcd.client().await?;
    let prefix = "/bench-floor/watch/";
    let mut events = watcher
        .watch(prefix, Some(WatchOptions::new().with_prefix()))
        .await
        .context("opening an etcd watch")?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        let put = writer
            .put(format!("{prefix}key"), value, None)
            .await
            .context("etcd put")?;
        let revision = put.header().map_or(0, |h| h.revision());
        // Until the event of this very put arrives.
        'seen: loop {
            let response = tokio::time::timeout(REQUEST_TIMEOUT, events.message())
                .await
                .with_context(|| format!("no etcd watch event for put {i} within {REQUEST_TIMEOUT:?}"))?
                .context("etcd watch")?
                .context("the etcd watch ended")?;
            for event in response.events() {
                let at = event.kv().map_or(0, |kv| kv.mod_revision());
                if event.event_type() == EventType::Put && at >= revision {
                    break 'seen;
                }
            }
        }
        samples.push(start.elapsed());
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_member_serves_the_floors_and_is_gone_once_dropped() {
        let etcd = Etcd::start().await.unwrap();
        let (puts, gets) = put_get_floor(&etcd, 3, b"value").await.unwrap();
        assert_eq!((puts.len(), gets.len()), (3, 3));
        assert_eq!(watch_floor(&etcd, 3, b"value").await.unwrap().len(), 3);
        let pid = etcd.child.id();
        let dir = etcd.dir.path().to_owned();
        drop(etcd);
        // Killed and reaped, and its data removed.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        assert!(!dir.exists());
    }
}
