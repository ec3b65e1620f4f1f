//! Manifests in, valid objects out: loading, defaulting and validation of Kubernetes objects.
//!
//! This crate is podvisor's front door for user-supplied objects. It turns YAML or JSON text
//! into typed objects ([`manifest`]), fills in API-server defaults ([`defaults`]) and checks
//! them with kube-apiserver's rules, field paths and messages ([`validation`]): Pods, Services,
//! ConfigMaps, Secrets, Events, ServiceAccounts and the workload kinds (Deployments,
//! ReplicaSets, StatefulSets, DaemonSets, ControllerRevisions, Jobs, CronJobs). The order is
//! always the apiserver's: load, default, validate.
//!
//! It is **not** an API server: it does no I/O, stores nothing, serves no HTTP and knows nothing
//! of admission, authentication or watch. Those live in the API-server crate, which puts
//! [`validation::ValidationErrors`] into `Status.details.causes`. It also does not run or
//! supervise anything; the pod lifecycle is `podvisor-lifecycle`'s job. Only the kinds a
//! process node uses are typed (Pod, Service, Namespace); other kinds pass through untouched.
//!
//! Start with [`manifest::load`], then [`defaults::default_pod`] and
//! [`validation::validate_pod`]:
//!
//! ```
//! use podvisor_api::{defaults, manifest, validation};
//!
//! let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n\
//!             spec:\n  containers:\n  - {name: app, image: busybox, command: [sleep, '1']}\n";
//! let objects = manifest::load(text, manifest::FieldValidation::Strict)?;
//! let manifest::Object::Pod(mut pod) = objects.into_iter().next().expect("one object") else {
//!     panic!("not a pod");
//! };
//! defaults::default_pod(&mut pod);
//! let warnings = validation::validate_pod(&pod)?;
//! assert!(warnings.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod defaults;
pub mod manifest;
pub mod validation;
