//! The Service datapath (kube-proxy's role, as its nftables mode): one `table ip <name>`
//! programmed from Services and their ready endpoints, replaced whole in one `nft -f -`
//! transaction at every change.
//!
//! - ClusterIP:port, from pods (nat `prerouting`) and from the node itself (nat `output`), is
//!   DNAT-ed to one ready endpoint, picked with `numgen random mod N`;
//! - `NodePort` ports answer on every local address of the node (`fib daddr type local`);
//! - a port with no ready endpoint is rejected (TCP reset / ICMP port unreachable) in the
//!   filter `input`, `forward` and `output` hooks, so clients see "connection refused";
//! - Service traffic is marked and masqueraded on the way out, so a pod reaching itself or a
//!   neighbour on the same bridge through a ClusterIP gets the replies back (hairpin). When the
//!   proxy knows the node's pod network ([`Proxy::with_local_pods`], kube-proxy's
//!   `--detect-local-mode=NodeCIDR`), a connection from a local pod to an endpoint on another
//!   node is not masqueraded: the endpoint sees the client pod's address, and the replies come
//!   back through the client's node (host-gw routes), which undoes the DNAT.
//!
//! [`follow`] watches Services and EndpointSlices through the API and keeps a [`follow::Datapath`]
//! (this, or the [`UserspaceProxy`] NodePort fallback when there is no root or no `nft`) and
//! the cluster DNS table in line with them. [`ruleset`] is pure, so the rules are unit
//! tested without privileges.
#![forbid(unsafe_code)]

pub mod follow;
pub mod userspace;

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::Stdio;

use podvisor_core::net::Ipv4Cidr;
pub use userspace::UserspaceProxy;

use tokio::io::AsyncWriteExt;

/// The mark that asks for masquerading (kube-proxy's `0x4000`).
const MASQ_MARK: &str = "0x00004000";

/// Why the rules could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `nft` could not be run.
    #[error("cannot run nft: {0}")]
    Spawn(#[source] std::io::Error),
    /// `nft` rejected the rules.
    #[error("nft failed: {stderr}")]
    Nft {
        /// What `nft` printed.
        stderr: String,
    },
}

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One Service as the datapath sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyService {
    /// `namespace/name`, for comments.
    pub id: String,
    /// The ClusterIP (none for headless Services, which get no rules).
    pub cluster_ip: Option<Ipv4Addr>,
    /// Its ports.
    pub ports: Vec<ProxyPort>,
}

/// One port of a Service, with the ready endpoints it goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyPort {
    /// As the Service spells it (`TCP`, `UDP` or `SCTP`); compared without regard to case.
    pub protocol: String,
    /// The Service port.
    pub port: u16,
    /// The node port, for `NodePort` Services.
    pub node_port: Option<u16>,
    /// Ready endpoints: address and target port.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

/// The whole `nft -f` script for `table`: deletes the old table and creates the new one in
/// the same transaction, so packets see either the old rules or the new ones.
pub fn ruleset(table: &str, services: &[ProxyService]) -> String {
    ruleset_with(table, None, services)
}

/// [`ruleset`] for a node whose own pods are `local_pods`: Service traffic from them to an
/// endpoint elsewhere keeps its source address; everything else is masqueraded as before.
pub fn ruleset_with(table: &str, local_pods: Option<Ipv4Cidr>, services: &[ProxyService]) -> String {
    let mut s = String::new();
    // Create-then-delete makes the delete succeed whether or not the table existed.
    let _ = writeln!(
        s,
        "table ip {table} {{}}\ndelete table ip {table}\ntable ip {table} {{"
    );
    let _ = writeln!(
        s,
        "  chain nat-prerouting {{ type nat hook prerouting priority -100; policy accept; jump services; }}"
    );
    let _ = writeln!(
        s,
        "  chain nat-output {{ type nat hook output priority -100; policy accept; jump services; }}"
    );
    let _ = writeln!(
        s,
        "  chain nat-postrouting {{ type nat hook postrouting priority 100; policy accept; meta mark & {MASQ_MARK} == {MASQ_MARK} masquerade; }}"
    );
    for hook in ["input", "forward", "output"] {
        let _ = writeln!(
            s,
            "  chain filter-{hook} {{ type filter hook {hook} priority -1; policy accept; ct state new jump no-endpoints; }}"
        );
    }
    let mut services_chain = String::new();
    let mut no_endpoints = String::new();
    let mut chains = String::new();
    for (si, svc) in services.iter().enumerate() {
        let Some(ip) = svc.cluster_ip else { continue };
        for (pi, port) in svc.ports.iter().enumerate() {
            let proto = port.protocol.to_ascii_lowercase();
            let comment = format!("comment \"{}:{}\"", svc.id.replace('"', ""), port.port);
            if port.endpoints.is_empty() {
                let reject = if proto == "tcp" {
                    "reject with tcp reset"
                } else {
                    "reject"
                };
                let _ = writeln!(
                    no_endpoints,
                    "    ip daddr {ip} {proto} dport {} {reject} {comment}",
                    port.port
                );
                if let Some(np) = port.node_port {
                    let _ = writeln!(
                        no_endpoints,
                        "    fib daddr type local {proto} dport {np} {reject} {comment}"
                    );
                }
                continue;
            }
            let chain = format!("svc-{si}-{pi}");
            let _ = writeln!(
                services_chain,
                "    ip daddr {ip} {proto} dport {} goto {chain} {comment}",
                port.port
            );
            if let Some(np) = port.node_port {
                let _ = writeln!(
                    services_chain,
                    "    fib daddr type local {proto} dport {np} goto {chain} {comment}"
                );
            }
            let targets: Vec<String> = (0..port.endpoints.len())
                .map(|ei| format!("{ei} : goto {chain}-{ei}"))
                .collect();
            let mark = match local_pods {
                None => format!("    meta mark set meta mark | {MASQ_MARK}\n"),
                Some(_) => String::new(),
            };
            let _ = writeln!(
                chains,
                "  chain {chain} {{\n{mark}    numgen random mod {} vmap {{ {} }}\n  }}",
                port.endpoints.len(),
                targets.join(", ")
            );
            for (ei, (eip, eport)) in port.endpoints.iter().enumerate() {
                let mark = match local_pods {
                    None => String::new(),
                    // A local endpoint: always (hairpin on the bridge). A remote one: unless
                    // the client is a pod of this node.
                    Some(pods) if pods.is_host(*eip) => format!("meta mark set meta mark | {MASQ_MARK}; "),
                    Some(pods) => format!("ip saddr != {pods} meta mark set meta mark | {MASQ_MARK}; "),
                };
                let _ = writeln!(
                    chains,
                    "  chain {chain}-{ei} {{ {mark}meta l4proto {proto} dnat to {eip}:{eport}; }}"
                );
            }
        }
    }
    let _ = writeln!(s, "  chain services {{\n{services_chain}  }}");
    let _ = writeln!(s, "  chain no-endpoints {{\n{no_endpoints}  }}");
    s.push_str(&chains);
    s.push_str("}\n");
    s
}

/// Programs one nftables table.
#[derive(Clone, Debug)]
pub struct Proxy {
    table: String,
    local_pods: Option<Ipv4Cidr>,
}

impl Proxy {
    /// A proxy owning `table ip <table>`.
    pub fn new(table: impl Into<String>) -> Proxy {
        Proxy {
            table: table.into(),
            local_pods: None,
        }
    }

    /// Knows the node's own pod network: connections from its pods to endpoints on other nodes
    /// keep their source address ([`ruleset_with`]).
    pub fn with_local_pods(mut self, pods: Ipv4Cidr) -> Proxy {
        self.local_pods = Some(pods);
        self
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Whether this machine can program nftables: root and an `nft` that runs. Also turns on
    /// IPv4 forwarding, which Service traffic between pods on the bridge needs.
    pub async fn available() -> bool {
        let ok = tokio::process::Command::new("nft")
            .args(["list", "tables"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if ok {
            let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
        }
        ok
    }

    /// Replaces the table with the rules for `services`, atomically.
    pub async fn sync(&self, services: &[ProxyService]) -> Result<()> {
        run_nft(&ruleset_with(&self.table, self.local_pods, services)).await
    }

    /// Removes the table (blocking; used at shutdown and from `Drop`).
    pub fn remove_blocking(&self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

async fn run_nft(script: &str) -> Result<()> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(Error::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await.map_err(Error::Spawn)?;
    }
    let out = child.wait_with_output().await.map_err(Error::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Nft {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(endpoints: Vec<(Ipv4Addr, u16)>) -> ProxyService {
        ProxyService {
            id: "default/web".into(),
            cluster_ip: Some(Ipv4Addr::new(10, 96, 0, 5)),
            ports: vec![ProxyPort {
                protocol: "TCP".into(),
                port: 80,
                node_port: Some(30080),
                endpoints,
            }],
        }
    }

    #[test]
    fn pods_of_this_node_reach_remote_endpoints_unmasqueraded() {
        let pods = Ipv4Cidr::parse("10.88.1.0/24").unwrap_or_else(|e| panic!("{e}"));
        let rules = ruleset_with(
            "pv",
            Some(pods),
            &[web(vec![
                (Ipv4Addr::new(10, 88, 1, 2), 8080),
                (Ipv4Addr::new(10, 88, 2, 3), 8080),
            ])],
        );
        assert!(
            rules.contains("  chain svc-0-0 {\n    numgen random mod 2"),
            "no mark for every connection: {rules}"
        );
        assert!(
            rules.contains(
                "chain svc-0-0-0 { meta mark set meta mark | 0x00004000; meta l4proto tcp dnat to 10.88.1.2:8080; }"
            ),
            "a local endpoint: hairpin masquerade: {rules}"
        );
        assert!(
            rules.contains(
                "chain svc-0-0-1 { ip saddr != 10.88.1.0/24 meta mark set meta mark | 0x00004000; meta l4proto tcp dnat to 10.88.2.3:8080; }"
            ),
            "a remote endpoint: only traffic not from this node's pods: {rules}"
        );
    }

    #[test]
    fn ready_endpoints_get_spread_dnat_rules() {
        let rules = ruleset(
            "pv",
            &[web(vec![
                (Ipv4Addr::new(10, 88, 0, 2), 8080),
                (Ipv4Addr::new(10, 88, 0, 3), 8080),
            ])],
        );
        assert!(
            rules.starts_with("table ip pv {}\ndelete table ip pv\ntable ip pv {"),
            "{rules}"
        );
        assert!(
            rules.contains("ip daddr 10.96.0.5 tcp dport 80 goto svc-0-0"),
            "{rules}"
        );
        assert!(
            rules.contains("fib daddr type local tcp dport 30080 goto svc-0-0"),
            "{rules}"
        );
        assert!(
            rules.contains("numgen random mod 2 vmap { 0 : goto svc-0-0-0, 1 : goto svc-0-0-1 }"),
            "{rules}"
        );
        assert!(
            rules.contains("meta l4proto tcp dnat to 10.88.0.3:8080"),
            "{rules}"
        );
        assert!(!rules.contains("reject with"), "{rules}");
    }

    #[test]
    fn a_port_without_ready_endpoints_is_rejected_and_headless_services_are_skipped() {
        let mut headless = web(vec![(Ipv4Addr::new(10, 88, 0, 2), 80)]);
        headless.cluster_ip = None;
        let rules = ruleset("pv", &[web(vec![]), headless]);
        assert!(
            rules.contains("ip daddr 10.96.0.5 tcp dport 80 reject with tcp reset"),
            "{rules}"
        );
        assert!(
            rules.contains("fib daddr type local tcp dport 30080 reject with tcp reset"),
            "{rules}"
        );
        assert!(!rules.contains("dnat"), "{rules}");
    }

    /// The script is accepted by the real `nft` (checked, not applied: `nft -c`), when root.
    #[tokio::test]
    #[ignore = "needs root"]
    async fn nft_accepts_the_ruleset() {
        assert!(
            Proxy::available().await,
            "needs root and nft (`cargo xtask test` installs nftables)"
        );
        let services = [
            web(vec![
                (Ipv4Addr::new(10, 88, 0, 2), 8080),
                (Ipv4Addr::new(10, 88, 1, 2), 8080),
            ]),
            web(vec![]),
        ];
        let pods = Ipv4Cidr::parse("10.88.0.0/24").ok();
        for rules in [
            ruleset("podvisor_check", &services),
            ruleset_with("podvisor_check", pods, &services),
        ] {
            check(rules).await;
        }
    }

    async fn check(rules: String) {
        let out = tokio::process::Command::new("nft")
            .args(["-c", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = out;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .await
            .unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "{}\n{rules}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
