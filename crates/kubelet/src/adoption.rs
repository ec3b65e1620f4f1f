//! Taking over a pod that outlived the node's previous run (issue #18): the runtime's
//! [`AdoptedPod`] becomes the lifecycle model's [`Adopted`] instances (wall-clock times as
//! [`Time`]s) and a machine built with [`PodMachine::adopt`]; the exit futures of the
//! instances still running are handed back for the worker to watch like those of instances it
//! started.
//!
//! What it is not: it decides nothing about the pod (the lifecycle model does) and asks the
//! runtime nothing (the worker asks `ContainerRuntime::adopt` once, before anything else).

use podvisor_core::ContainerId;
use podvisor_core::corev1::Pod;
use podvisor_core::runtime::{AdoptedPod, AdoptedState, BoxFuture, ExitReport};
use podvisor_lifecycle::{Adopted, AdoptedExit, PodMachine, Time};

use crate::clock::Clock;

/// A running adopted instance's exit to watch: container name, instance, its exit.
pub(crate) type Exit = (String, ContainerId, BoxFuture<ExitReport>);

/// The machine for a pod of which `survivors` outlived the node's previous run (at `now`), and
/// the exits to watch of the instances still running. A sandbox without an IP of its own (host
/// network) has the node's address, `host_ip`, as a new one would.
pub(crate) fn machine(
    pod: &Pod,
    now: Time,
    survivors: AdoptedPod,
    host_ip: Option<&str>,
) -> (PodMachine, Vec<Exit>) {
    let mut adopted = Vec::with_capacity(survivors.containers.len());
    let mut exits = Vec::new();
    for c in survivors.containers {
        let ended = match c.state {
            AdoptedState::Running { exit } => {
                exits.push((c.name.clone(), c.id.clone(), exit));
                None
            }
            AdoptedState::Exited { report, finished_at } => Some(AdoptedExit {
                status: report.status,
                finished_at: Clock::wall(finished_at),
                message: report.message,
            }),
        };
        adopted.push(Adopted {
            name: c.name,
            id: c.id,
            restart_count: c.restart_count,
            started_at: Clock::wall(c.started_at),
            ended,
        });
    }
    let pod_ip = survivors.pod_ip.or_else(|| host_ip.map(str::to_owned));
    let machine = PodMachine::adopt(pod, now, pod_ip, &adopted);
    (machine, exits)
}
