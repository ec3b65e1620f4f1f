//! What kube-controller-manager's workload controllers decide, as pure functions
//! (`shared/docs/controller-semantics.md`).
//!
//! Each controller is a *plan* function of the owner object, the objects it owns (as the
//! controller's caches list them) and the time: it returns what to create, scale, delete and
//! write as status, and the events to record. Equal inputs give equal plans, so the loops in
//! `podvisor-controllers` recompute on every change and carry a plan out through the API; the
//! rules are tested here without an API server, with proptest where there are invariants.
//!
//! - [`selector`]: label selectors; [`owner`]: controller references and claiming;
//!   [`pods`]: active, ready, available, deletion order, pods from templates;
//!   [`hash`]: the controller revision hash; [`event::Event`]: what a plan asks to record.
//! - [`replica_set`], [`deployment`]: ReplicaSets' pods; Deployments' ReplicaSets, rollouts and
//!   status (sections 2, 3).
//! - [`stateful_set`]: the StatefulSet controller (revisions, ordered pods, rolling updates).
//! - [`cron_job`]: the CronJob controller (rules 7.x), its schedules in [`cron_job::schedule`].
//! - [`daemon_set`]: the DaemonSet controller (rules 5.x), node eligibility in
//!   [`daemon_set::eligibility`](mod@daemon_set::eligibility), revisions in [`daemon_set::history`].
//! - [`job`]: the Job controller's plan and the TTL-after-finished decision (section 6).
//!
//! What it is not: no I/O, no clock (time is an argument), no randomness, no async.
#![forbid(unsafe_code)]

pub mod cron_job;
pub mod daemon_set;
pub mod deployment;
pub mod event;
pub mod hash;
pub mod job;
pub mod owner;
pub mod pods;
pub mod replica_set;
pub mod selector;
pub mod stateful_set;
