//! The Node object and its heartbeat: registration, conditions measured by [`super::health`],
//! the status written when it changes (or every [`NODE_STATUS_REPORT`]) and the node's Lease in
//! `kube-node-lease` renewed every [`HEARTBEAT`], as the kubelet's node status and node lease
//! controllers do.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time as KubeTime};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use podvisor_core::corev1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use podvisor_core::host::HostOps;
use podvisor_core::version::{GIT_VERSION, go_arch};
use podvisor_lifecycle::Time;
use tracing::{debug, warn};

use super::{health, is_api_error};
use crate::Clock;

/// How often the Lease is renewed and the Node's conditions measured.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// The node Lease's duration (the kubelet's default `nodeLeaseDurationSeconds`); it is renewed
/// every [`HEARTBEAT`], a quarter of it, as the kubelet renews.
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// How often the Node's status is written when nothing in it changed (the kubelet's
/// `nodeStatusReportFrequency`): with the Lease as the heartbeat, an unchanged status is not
/// rewritten every period.
pub const NODE_STATUS_REPORT: Duration = Duration::from_secs(5 * 60);

/// The namespace of the nodes' heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// What the Node object says about the machine.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    /// The node's name.
    pub name: String,
    /// Its address (`InternalIP`).
    pub address: Option<String>,
    /// The pod CIDR the node registers with (`--pod-cidr`); `None` registers none, and the
    /// control plane's node IPAM gives the node one ([`pod_cidr_from_api`]).
    pub pod_cidr: Option<String>,
    /// The node's data dir: its file system is the one DiskPressure watches, and the runtime
    /// is Ready while it can write there.
    pub data_dir: std::path::PathBuf,
    /// Labels beyond the well-known ones (`node-role.kubernetes.io/control-plane` for a node
    /// that runs the control plane).
    pub labels: BTreeMap<String, String>,
    /// The port of the node's kubelet endpoint (an agent's), reported in
    /// `status.daemonEndpoints` for the API servers to reach; `None` reports 0 (none).
    pub kubelet_port: Option<u16>,
    /// The pods the node takes (`--max-pods`, the kubelet's default [`DEFAULT_MAX_PODS`]): its
    /// `pods` capacity and allocatable, which the scheduler counts against.
    pub max_pods: u32,
}

/// The kubelet's default `--max-pods`.
pub const DEFAULT_MAX_PODS: u32 = 110;

/// Each condition's status and when it last changed, so `lastTransitionTime` moves only when
/// the status flips (`cluster-semantics.md` §2.4).
#[derive(Default)]
struct Transitions(HashMap<&'static str, (&'static str, KubeTime)>);

impl Transitions {
    /// The conditions as the Node shows them, heartbeats at `now`.
    fn conditions(&mut self, measured: &[health::Condition], now: &KubeTime) -> Vec<NodeCondition> {
        measured
            .iter()
            .map(|c| {
                let since = match self.0.get(c.type_) {
                    Some((status, since)) if *status == c.status => since.clone(),
                    _ => {
                        self.0.insert(c.type_, (c.status, now.clone()));
                        now.clone()
                    }
                };
                NodeCondition {
                    type_: c.type_.into(),
                    status: c.status.into(),
                    reason: Some(c.reason.to_string()),
                    message: Some(c.message.to_string()),
                    last_heartbeat_time: Some(now.clone()),
                    last_transition_time: Some(since),
                }
            })
            .collect()
    }
}

/// Registers the Node object and renews its Lease every [`HEARTBEAT`], until dropped; the
/// Node's status (its conditions measured through `host`) is written when it changed, or every
/// [`NODE_STATUS_REPORT`] otherwise, as the kubelet does.
///
/// The Lease is renewed by a loop of its own, which never waits for the status's measurements
/// or writes (a stalled disk or a slow status write must not make a healthy node Unknown), and
/// each renewal is bounded by [`HEARTBEAT`].
pub async fn heartbeat(client: Client, facts: NodeFacts, clock: Clock, host: Arc<dyn HostOps>) {
    let lease = async {
        loop {
            let renewal = renew_lease(&client, &facts.name, clock.now());
            if tokio::time::timeout(HEARTBEAT, renewal).await.is_err() {
                warn!(node = %facts.name, "renewing the node Lease took longer than {HEARTBEAT:?}");
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    };
    tokio::join!(lease, report_status(&client, &facts, clock, host));
}

/// Registers the Node and writes its status when it changed, or every
/// [`NODE_STATUS_REPORT`]; measures every [`HEARTBEAT`].
async fn report_status(client: &Client, facts: &NodeFacts, clock: Clock, host: Arc<dyn HostOps>) {
    let nodes = Api::<Node>::all(client.clone());
    let mut transitions = Transitions::default();
    let mut reported: Option<tokio::time::Instant> = None;
    loop {
        let now = clock.now();
        // Measured off the async workers: the runtime check syncs a file to disk.
        let (data_dir, host) = (facts.data_dir.clone(), host.clone());
        let measured = tokio::task::spawn_blocking(move || health::measure(host.as_ref(), &data_dir))
            .await
            .unwrap_or_else(|e| health::Measured {
                runtime_error: Some(format!("measuring the node failed: {e}")),
                ..Default::default()
            });
        let conditions = transitions.conditions(&health::conditions(&measured), &now.to_k8s());
        let status = node_status(facts, conditions);
        match nodes.get_opt(&facts.name).await {
            Ok(Some(mut current)) => {
                if status_report_due(current.status.as_ref(), &status, reported.map(|at| at.elapsed())) {
                    current.status = Some(status);
                    match nodes
                        .replace_status(&facts.name, &PostParams::default(), &current)
                        .await
                    {
                        Ok(_) => reported = Some(tokio::time::Instant::now()),
                        Err(e) => debug!(error = %e, "node status update failed; retrying next period"),
                    }
                }
            }
            Ok(None) => match nodes
                .create(&PostParams::default(), &new_node(facts, status))
                .await
            {
                // Written with the status it was created with: the next period compares.
                Ok(_) => reported = Some(tokio::time::Instant::now()),
                Err(e) => warn!(error = %e, "registering the node failed"),
            },
            Err(e) => warn!(error = %e, "reading the node failed"),
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}

/// Why a node has no pod CIDR from the API.
#[derive(Debug, thiserror::Error)]
pub enum PodCidrError {
    /// The Node could not be read or registered.
    #[error("registering node {node}: {source}")]
    Register {
        /// The node.
        node: String,
        /// The API's answer.
        #[source]
        source: kube::Error,
    },
    /// No range came within the wait.
    #[error(
        "node {node} got no spec.podCIDR within {}s: is the control plane allocating node pod \
         CIDRs (podvisor node --cluster-cidr)? Or start the agent with --pod-cidr",
        waited.as_secs()
    )]
    Timeout {
        /// The node.
        node: String,
        /// How long it waited.
        waited: Duration,
    },
    /// The node's range is not an IPv4 network pods can use.
    #[error("node {node} has spec.podCIDR {cidr:?}, not an IPv4 CIDR with a prefix of 8 to 30")]
    Invalid {
        /// The node.
        node: String,
        /// What the Node says.
        cidr: String,
    },
}

/// Registers the Node as `facts` describe it, unless it exists (the heartbeat writes its
/// measured conditions next).
pub async fn register(client: &Client, facts: &NodeFacts) -> Result<(), kube::Error> {
    let nodes = Api::<Node>::all(client.clone());
    if nodes.get_opt(&facts.name).await?.is_some() {
        return Ok(());
    }
    match nodes
        .create(
            &PostParams::default(),
            &new_node(facts, node_status(facts, Vec::new())),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_api_error(&e, 409) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Registers the Node (without a pod CIDR, unless `facts` has one) if it does not exist yet,
/// then waits at most `wait` for its `spec.podCIDR`, which the control plane's node IPAM sets,
/// as a kubelet without `--pod-cidr` waits for it. A node that already has one (a restart)
/// gets it at once.
pub async fn pod_cidr_from_api(
    client: &Client,
    facts: &NodeFacts,
    wait: Duration,
) -> Result<podvisor_core::net::Ipv4Cidr, PodCidrError> {
    let nodes = Api::<Node>::all(client.clone());
    let register_error = |source| PodCidrError::Register {
        node: facts.name.clone(),
        source,
    };
    register(client, facts).await.map_err(register_error)?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut told = false;
    loop {
        let node = nodes.get_opt(&facts.name).await.map_err(register_error)?;
        let cidr = node
            .and_then(|n| n.spec)
            .and_then(|s| s.pod_cidr.or_else(|| s.pod_cidrs?.into_iter().next()))
            .filter(|c| !c.is_empty());
        if let Some(cidr) = cidr {
            return podvisor_core::net::Ipv4Cidr::parse(&cidr).map_err(|_| PodCidrError::Invalid {
                node: facts.name.clone(),
                cidr,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(PodCidrError::Timeout {
                node: facts.name.clone(),
                waited: wait,
            });
        }
        if !told {
            tracing::info!(node = %facts.name, "waiting for the node's pod CIDR from the control plane (node IPAM)");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The Node object the kubelet registers.
fn new_node(facts: &NodeFacts, status: NodeStatus) -> Node {
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", facts.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", go_arch()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    labels.extend(facts.labels.clone());
    Node {
        metadata: ObjectMeta {
            name: Some(facts.name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: facts.pod_cidr.clone(),
            pod_cidrs: facts.pod_cidr.clone().map(|c| vec![c]),
            ..Default::default()
        }),
        status: Some(status),
    }
}

/// Whether the Node's status must be written: it changed (beyond its heartbeat times), or
/// [`NODE_STATUS_REPORT`] passed since it was last written (`since_last`, `None` if never).
fn status_report_due(stored: Option<&NodeStatus>, new: &NodeStatus, since_last: Option<Duration>) -> bool {
    since_last.is_none_or(|d| d >= NODE_STATUS_REPORT)
        || stored.map(without_heartbeats) != Some(without_heartbeats(new))
}

/// A Node status without its conditions' `lastHeartbeatTime`s, to tell a change from a renewal.
fn without_heartbeats(status: &NodeStatus) -> NodeStatus {
    let mut status = status.clone();
    for c in status.conditions.iter_mut().flatten() {
        c.last_heartbeat_time = None;
    }
    status
}

/// The owner reference of the Node `node`, when it is registered.
async fn node_owner(client: &Client, node: &str) -> Option<OwnerReference> {
    let uid = Api::<Node>::all(client.clone())
        .get_opt(node)
        .await
        .ok()??
        .metadata
        .uid?;
    Some(OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.to_owned(),
        uid,
        ..Default::default()
    })
}

/// Creates or renews the node's Lease (`kube-node-lease/<node>`), owned by the Node object.
async fn renew_lease(client: &Client, node: &str, now: Time) {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    let renew = MicroTime(
        k8s_openapi::jiff::Timestamp::from_millisecond(now.as_millis())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    );
    let leases = Api::<Lease>::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let result = match leases.get_opt(node).await {
        Ok(Some(mut lease)) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.renew_time = Some(renew);
            spec.holder_identity = Some(node.to_owned());
            // A Lease made before its Node was registered gets its owner once the Node exists.
            if lease.metadata.owner_references.as_ref().is_none_or(Vec::is_empty) {
                lease.metadata.owner_references = node_owner(client, node).await.map(|o| vec![o]);
            }
            leases.replace(node, &PostParams::default(), &lease).await
        }
        Ok(None) => {
            let owner = node_owner(client, node).await;
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node.to_owned()),
                    namespace: Some(NODE_LEASE_NAMESPACE.into()),
                    owner_references: owner.map(|o| vec![o]),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.to_owned()),
                    lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                    renew_time: Some(renew),
                    ..Default::default()
                }),
            };
            leases.create(&PostParams::default(), &lease).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => {}
        Err(e) if is_api_error(&e, 409) => debug!("the node lease changed meanwhile; renewed next period"),
        Err(e) => warn!(error = %e, "renewing the node lease failed; retrying next period"),
    }
}

/// The first line of a file that identifies the machine, or empty when it cannot be read
/// (`product_uuid` is root's only).
fn machine_identity(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn node_status(facts: &NodeFacts, conditions: Vec<NodeCondition>) -> NodeStatus {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_else(|| "0".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", cpus.to_string()),
        ("memory", format!("{memory_kib}Ki")),
        ("pods", facts.max_pods.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Quantity(v)))
    .collect();
    let mut addresses = vec![NodeAddress {
        type_: "Hostname".into(),
        address: facts.name.clone(),
    }];
    if let Some(ip) = &facts.address {
        addresses.insert(
            0,
            NodeAddress {
                type_: "InternalIP".into(),
                address: ip.clone(),
            },
        );
    }
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        addresses: Some(addresses),
        conditions: Some(conditions),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            boot_id: machine_identity("/proc/sys/kernel/random/boot_id"),
            container_runtime_version: "podvisor://0.1.0".into(),
            kernel_version: kernel,
            kube_proxy_version: String::new(),
            kubelet_version: GIT_VERSION.into(),
            machine_id: machine_identity("/etc/machine-id"),
            operating_system: "linux".into(),
            os_image: "podvisor process node".into(),
            system_uuid: machine_identity("/sys/class/dmi/id/product_uuid"),
            ..Default::default()
        }),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: facts.kubelet_port.map_or(0, i32::from),
            }),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: i64) -> KubeTime {
        Time::from_millis(t * 1000).to_k8s()
    }

    #[test]
    fn an_unchanged_node_status_is_written_every_five_minutes_a_changed_one_at_once() {
        let facts = NodeFacts {
            name: "n".into(),
            address: None,
            pod_cidr: Some("10.88.0.0/16".into()),
            data_dir: "/nowhere".into(),
            labels: BTreeMap::new(),
            kubelet_port: None,
            max_pods: DEFAULT_MAX_PODS,
        };
        let healthy = health::conditions(&health::Measured::default());
        let mut transitions = Transitions::default();
        let mut conditions = |t| transitions.conditions(&healthy, &at(t));
        let stored = node_status(&facts, conditions(10));
        let pods = |status: &NodeStatus| {
            let quantity =
                |m: &Option<BTreeMap<String, Quantity>>| m.as_ref().and_then(|m| m.get("pods")).cloned();
            (quantity(&status.capacity), quantity(&status.allocatable))
        };
        let default = Some(Quantity("110".into()));
        assert_eq!(
            pods(&stored),
            (default.clone(), default),
            "the kubelet's default --max-pods"
        );
        let bigger = NodeFacts {
            max_pods: 1000,
            ..facts.clone()
        };
        let thousand = Some(Quantity("1000".into()));
        assert_eq!(
            pods(&node_status(&bigger, conditions(10))),
            (thousand.clone(), thousand)
        );
        let renewed = node_status(&facts, conditions(20));
        let minute = Some(Duration::from_secs(60));
        assert!(
            !status_report_due(Some(&stored), &renewed, minute),
            "only the heartbeat moved"
        );
        assert!(status_report_due(
            Some(&stored),
            &renewed,
            Some(NODE_STATUS_REPORT)
        ));
        assert!(status_report_due(Some(&stored), &renewed, None), "never written");
        let moved = NodeFacts {
            address: Some("192.0.2.1".into()),
            ..facts
        };
        let changed = node_status(&moved, conditions(20));
        assert!(
            status_report_due(Some(&stored), &changed, minute),
            "a changed status is written at once"
        );
    }

    #[test]
    fn a_condition_changes_its_transition_time_only_when_its_status_flips() {
        let mut m = health::Measured::default();
        let mut transitions = Transitions::default();
        let first = transitions.conditions(&health::conditions(&m), &at(1));
        m.runtime_error = Some("disk gone".into());
        let second = transitions.conditions(&health::conditions(&m), &at(2));
        let third = transitions.conditions(&health::conditions(&m), &at(3));
        let times = |v: &[NodeCondition], i: usize| {
            (
                v[i].last_transition_time.clone(),
                v[i].last_heartbeat_time.clone(),
            )
        };
        assert_eq!(times(&first, 3), (Some(at(1)), Some(at(1))));
        assert_eq!(second[3].status, "False");
        assert_eq!(
            times(&second, 3),
            (Some(at(2)), Some(at(2))),
            "Ready flipped at t2"
        );
        assert_eq!(times(&third, 3), (Some(at(2)), Some(at(3))));
        assert_eq!(
            times(&third, 0),
            (Some(at(1)), Some(at(3))),
            "MemoryPressure never flipped"
        );
    }
}
