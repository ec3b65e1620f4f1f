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
//! - [`job`]: the Job controller's plan and the TTL-after-finished decision (section 6).
//!
//! What it is not: no I/O, no clock (time is an argument), no randomness, no async.
#![forbid(unsafe_code)]

pub mod event;
pub mod hash;
pub mod job;
pub mod owner;
pub mod pods;
pub mod selector;
