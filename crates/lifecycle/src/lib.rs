//! The pure pod lifecycle state machine of a kubelet: inputs in, commands and `PodStatus` out.
//!
//! [`PodMachine`] reproduces what the kubelet decides for one pod: the sandbox, init containers
//! one at a time, sidecars, app containers, probes with their timing and thresholds, restarts
//! with CrashLoopBackOff, lifecycle hooks, graceful termination, `activeDeadlineSeconds`, and
//! the complete status (phase, conditions, container states and reasons) that follows from all
//! of it. After a node restart it takes a pod over from its last status
//! ([`PodMachine::new`]) or, when its sandbox and containers survived, adopts them
//! ([`PodMachine::adopt`]). [`printer`] turns a pod into the cells `kubectl get pods` shows (the API server's pod
//! table adds the columns).
//!
//! What it is not: it does no I/O, spawns nothing, has no async and never reads a clock or a
//! random number. Time is an input ([`Time`], given with every [`PodMachine::step`]); the
//! node's pod worker executes the returned [`Command`]s and feeds back what happened as
//! [`Input`]s. Its dependency closure has no tokio, hyper, nix or tonic.
//!
//! Start at [`PodMachine::step`]; the rules it follows are numbered in
//! `shared/docs/k8s-semantics.md`, and the tests in `tests/rules.rs` are named after them.
#![forbid(unsafe_code)]

mod backoff;
mod command;
mod input;
mod machine;
pub mod printer;
mod probe_worker;
mod record;
mod spec;
mod status;
mod time;

pub use backoff::{
    CAP as BACKOFF_CAP, INITIAL as BACKOFF_INITIAL, RESET_AFTER as BACKOFF_RESET, go_duration,
};
pub use command::{Command, Event, EventType};
pub use input::Input;
pub use machine::{Adopted, AdoptedExit, MIN_KILL_GRACE, PodMachine};
pub use probe_worker::ProbeValue;
pub use spec::{ContainerKind, RestartPolicy};
pub use status::{KUBELET_CONDITIONS, Phase, node_unreachable, qos_class};
pub use time::Time;
