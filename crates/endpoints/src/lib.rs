//! Service endpoints from pod readiness: what the Endpoints and EndpointSlice controllers
//! compute (`shared/docs/k8s-semantics.md` section 16).
//!
//! [`desired_endpoints`] and [`desired_slices`] are pure functions of a Service and the pods of
//! its namespace: ready pods go into `addresses` (or `ready: true` endpoints), not-ready ones
//! into `notReadyAddresses`, terminating and finished pods are left out as the controllers do,
//! named target ports are resolved per pod. Equal inputs give equal outputs, so a controller
//! loop can recompute from the store on every change and write only when the result differs.
//!
//! What it is not: no store, no watch, no I/O. The controller loop around these functions, the
//! ClusterIP allocator, DNS and the datapath are separate parts of the node.
#![forbid(unsafe_code)]

mod desired;
mod port;

pub use desired::{
    MANAGED_BY, MANAGED_BY_LABEL, MAX_ENDPOINTS, MAX_SLICE_ENDPOINTS, SLICES, desired_endpoints,
    desired_slices, is_pod_ready, selects,
};
pub use port::find_port;
