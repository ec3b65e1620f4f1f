//! Real etcd clusters for tests: [`EtcdCluster::start`] runs `/usr/bin/etcd` members on free
//! loopback ports, each with its data directory in one temporary directory, and kills them
//! when dropped.
//!
//! This is the one module of the crate that does I/O: it spawns processes, binds ports to find
//! free ones, and reads each member's `/health` over HTTP to know when the cluster answers.
//! `cargo xtask test` installs Debian's `etcd-server`, which provides `/usr/bin/etcd`; without
//! it, starting a cluster panics with that advice (tests that need etcd never skip).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The etcd binary Debian's `etcd-server` installs.
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// How long a new cluster may take to elect a leader and answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One member: its process (until stopped) and URLs.
#[derive(Debug)]
struct Member {
    child: Option<Child>,
    client_url: String,
    log: PathBuf,
}

/// A running etcd cluster of one or more members on loopback; every member is killed (and
/// reaped) when this is dropped, and its data goes with the temporary directory.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    // Dropped after the members (fields drop in order): the data directories outlive them.
    dir: tempfile::TempDir,
}

/// How often a cluster whose member exited while starting is started again on other ports.
const START_ATTEMPTS: usize = 3;

/// Why a cluster did not start: the message to panic with.
enum Failure {
    /// A member exited (most likely: its port was taken meanwhile).
    Exited(String),
    /// The members did not become healthy in time.
    TimedOut(String),
}

/// A listener on a loopback port the system chose: free until it is dropped.
fn free_listener() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port")
}

fn port_of(listener: &TcpListener) -> u16 {
    listener.local_addr().expect("a bound port").port()
}

/// Whether the member at `client_url` (`http://127.0.0.1:PORT`) answers `/health` with
/// `"health":"true"` (it has a leader and serves requests) within a second.
async fn healthy(client_url: &str) -> bool {
    let Some(addr) = client_url
        .strip_prefix("http://")
        .and_then(|a| a.parse::<SocketAddr>().ok())
    else {
        return false;
    };
    let check = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut body = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut body).await.ok()?;
        Some(String::from_utf8_lossy(&body).contains("\"health\":\"true\""))
    };
    tokio::time::timeout(Duration::from_secs(1), check)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The last lines of a member's log, for a failure message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl EtcdCluster {
    /// Starts a new cluster of `members` members (at least one) and waits until every member
    /// answers its health check.
    ///
    /// # Panics
    ///
    /// When `/usr/bin/etcd` is missing, or the cluster does not come up within 20 s, or its
    /// members exit while starting three times over (the members' log tails are in the
    /// message).
    pub async fn start(members: usize) -> EtcdCluster {
        assert!(
            Path::new(ETCD_BIN).exists(),
            "etcd is missing: `cargo xtask test` installs Debian's etcd-server ({ETCD_BIN})"
        );
        let members = members.max(1);
        // A port found free can be taken by someone else before etcd binds it: a member that
        // exits while starting is taken for that, and the cluster starts anew on other ports.
        let mut attempt = 1;
        loop {
            match Self::try_start(members).await {
                Ok(cluster) => return cluster,
                Err(Failure::Exited(_)) if attempt < START_ATTEMPTS => attempt += 1,
                Err(Failure::Exited(why) | Failure::TimedOut(why)) => panic!("{why}"),
            }
        }
    }

    async fn try_start(members: usize) -> Result<EtcdCluster, Failure> {
        static CLUSTERS: AtomicU64 = AtomicU64::new(0);
        let token = format!(
            "podvisor-test-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix("podvisor-etcd-")
            .tempdir()
            .expect("a temporary directory for etcd");
        // Every listener is held until all ports are chosen, so no two members share one.
        let listeners: Vec<TcpListener> = (0..2 * members).map(|_| free_listener()).collect();
        let ports: Vec<(u16, u16)> = listeners
            .chunks(2)
            .map(|pair| (port_of(&pair[0]), port_of(&pair[1])))
            .collect();
        drop(listeners);
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members: Vec::new(),
            dir,
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = cluster.dir.path().join(format!("m{i}.log"));
            let out = std::fs::File::create(&log).expect("an etcd log file");
            let err = out.try_clone().expect("an etcd log file");
            let child = Command::new(ETCD_BIN)
                .arg("--name")
                .arg(format!("m{i}"))
                .arg("--data-dir")
                .arg(cluster.dir.path().join(format!("m{i}.etcd")))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                // etcd's own timing: quicker elections look like lost leaders on a loaded
                // two-core machine, and a spurious election fails writes in flight.
                .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {ETCD_BIN}: {e}"));
            cluster.members.push(Member {
                child: Some(child),
                client_url,
                log,
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let mut all = true;
            for m in &cluster.members {
                all = all && healthy(&m.client_url).await;
            }
            if all {
                break;
            }
            let exited = cluster
                .members
                .iter_mut()
                .filter_map(|m| m.child.as_mut())
                .any(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() >= deadline {
                let logs: Vec<String> = cluster
                    .members
                    .iter()
                    .map(|m| format!("--- {}:\n{}", m.client_url, log_tail(&m.log)))
                    .collect();
                let why = format!(
                    "etcd ({members} members) did not become healthy within {START_TIMEOUT:?}{}:\n{}",
                    if exited { " (a member exited)" } else { "" },
                    logs.join("\n")
                );
                // Dropping the cluster kills the members that are left.
                return Err(if exited {
                    Failure::Exited(why)
                } else {
                    Failure::TimedOut(why)
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(cluster)
    }

    /// The client URLs of every member (stopped ones included), to connect with.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Kills member `i` (SIGKILL) and reaps it; the others go on. Stopping a stopped member
    /// does nothing.
    ///
    /// # Panics
    ///
    /// When there is no member `i`.
    pub fn stop_member(&mut self, i: usize) {
        let count = self.members.len();
        let member = self
            .members
            .get_mut(i)
            .unwrap_or_else(|| panic!("no etcd member {i} (the cluster has {count})"));
        if let Some(mut child) = member.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn pids(cluster: &EtcdCluster) -> Vec<u32> {
        cluster
            .members
            .iter()
            .filter_map(|m| m.child.as_ref().map(Child::id))
            .collect()
    }

    #[test]
    fn members_answer_until_stopped_and_leave_no_process_behind() {
        let rt = runtime();
        let mut cluster = rt.block_on(EtcdCluster::start(2));
        let urls = cluster.client_urls();
        assert_eq!(urls.len(), 2);
        assert_ne!(urls[0], urls[1]);
        for url in &urls {
            assert!(rt.block_on(healthy(url)), "{url}");
        }
        let all = pids(&cluster);
        assert_eq!(all.len(), 2);
        cluster.stop_member(1);
        assert!(!rt.block_on(healthy(&urls[1])));
        assert!(!Path::new(&format!("/proc/{}", all[1])).exists());
        cluster.stop_member(1);
        let dir = cluster.dir.path().to_path_buf();
        drop(cluster);
        assert!(!Path::new(&format!("/proc/{}", all[0])).exists());
        assert!(!dir.exists(), "the data directories go with the cluster");
    }
}
