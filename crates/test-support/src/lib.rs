//! Test doubles for podvisor's seams, shared by the tests of every crate.
//!
//! - [`sim`]: a simulated node around one [`PodMachine`](podvisor_lifecycle::PodMachine) that
//!   answers its commands the way a well-behaved runtime would (each kind of answer can be
//!   switched off), so a test scripts only what matters to it.
//! - [`fakes`]: recording fakes for the node's seams (runtime, prober, hook runner, pod sink,
//!   ConfigMaps and Secrets, the host's mounts and figures),
//!   for testing the pod workers under paused tokio time.
//! - [`etcd`]: real etcd clusters (`/usr/bin/etcd` processes on loopback) for the etcd store's
//!   tests.
//!
//! This crate is for tests only: it appears only under `[dev-dependencies]` (the workspace's
//! tidy test checks this) and is never published. Apart from the [`etcd`] module, which spawns
//! etcd processes in a temporary directory and talks to them over loopback, it does no I/O and
//! reads no clock.
#![forbid(unsafe_code)]

pub mod etcd;
pub mod fakes;
pub mod sim;

pub use sim::{Auto, Sim, T0, c, pod};
