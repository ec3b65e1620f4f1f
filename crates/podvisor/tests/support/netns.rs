//! A multi-host rig on one machine (root only): a test bridge in the root network namespace
//! with the address `10.201.X.1/24`, and N network namespaces ("hosts"), each with a veth into
//! the bridge as its `eth0` (`10.201.X.2`, `.3`, ...), loopback up, a default route via the
//! bridge address and IPv4 forwarding on. Everything goes when the rig is dropped, also when
//! a test panics: the namespaces (with them their veth ends) and the bridge.
//!
//! Processes run inside with `nsenter --net=/run/netns/<ns>` ([`Rig::command`]): it switches
//! only the network namespace, so the host's `/sys/fs/cgroup` stays visible (`ip netns exec`
//! remounts `/sys`, which hides it). Drop the processes before the rig.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The bridge and the namespaces of one test.
pub(crate) struct Rig {
    bridge: String,
    subnet: u8,
    hosts: Vec<String>,
}

/// Runs `ip` with `args`; panics with its output when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip` with `args`, whatever it says (cleanup).
fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Rig {
    /// A bridge and `hosts` namespaces, named after this process and a counter, so tests in
    /// parallel (and in other test binaries) each get their own.
    pub(crate) fn new(hosts: usize) -> Rig {
        assert!(hosts <= 200, "at most 200 hosts on a /24");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let subnet = u8::try_from((std::process::id() + n * 7) % 200 + 20).unwrap_or(20);
        let tag = format!("{subnet}");
        let mut rig = Rig {
            bridge: format!("pvtb{tag}"),
            subnet,
            hosts: Vec::new(),
        };
        // Leftovers of a run that was killed go first.
        for i in 0..hosts {
            ip_quiet(&["netns", "del", &format!("pvt{tag}h{i}")]);
        }
        ip_quiet(&["link", "del", &rig.bridge]);
        let gateway = format!("{}/24", rig.gateway());
        ip(&["link", "add", &rig.bridge, "type", "bridge"]);
        ip(&["addr", "add", &gateway, "dev", &rig.bridge]);
        ip(&["link", "set", &rig.bridge, "up"]);
        for i in 0..hosts {
            let ns = format!("pvt{tag}h{i}");
            ip(&["netns", "add", &ns]);
            // Pushed at once: dropped (and removed) if a later step fails.
            rig.hosts.push(ns.clone());
            let host_end = format!("pvt{tag}v{i}");
            ip(&[
                "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip(&["link", "set", &host_end, "master", &rig.bridge, "up"]);
            let address = format!("{}/24", rig.host_ip(i));
            ip(&["-n", &ns, "addr", "add", &address, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &rig.gateway().to_string(),
            ]);
            let forward = rig
                .command(i, "sh")
                .args(["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
                .status()
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(forward.success(), "ip_forward in {ns}");
        }
        rig
    }

    /// The bridge's address (`10.201.X.1`): the root namespace's, where a control plane
    /// listens.
    pub(crate) fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.subnet, 1)
    }

    /// Host `i`'s address.
    pub(crate) fn host_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.subnet, u8::try_from(i + 2).unwrap_or(255))
    }

    /// The number that names this rig (the X of `10.201.X.0/24`), for other names a test
    /// needs unique.
    pub(crate) fn tag(&self) -> u8 {
        self.subnet
    }

    /// `program` to run in host `i`'s network namespace.
    pub(crate) fn command(&self, i: usize, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.hosts[i]))
            .arg("--")
            .arg(program);
        command
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // The pairs go at once with their root ends (a namespace is destroyed asynchronously,
        // its veth end with it, only once nothing runs in it any more).
        for (i, ns) in self.hosts.iter().enumerate() {
            ip_quiet(&["link", "del", &format!("pvt{}v{i}", self.subnet)]);
            ip_quiet(&["netns", "del", ns]);
        }
        ip_quiet(&["link", "del", &self.bridge]);
    }
}

/// A ready HTTP server pod `web` on node `node` (python3's http.server on 8080, serving `www`,
/// its request log appended to `<www>.log`) behind the Service `web` (port 80).
pub(crate) fn web_behind_service(node: &str, www: &Path) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  terminationGracePeriodSeconds: 2
  containers:
  - name: http
    image: host
    command: [/bin/sh, -c, "exec /usr/bin/python3 -m http.server 8080 --directory {www} 2>>{www}.log"]
    readinessProbe:
      httpGet: {{path: /index.html, port: 8080}}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports:
  - {{port: 80, targetPort: 8080}}
"#,
        www = www.display()
    )
}
