//! Recording events, as every control loop here does it: through kube-runtime's
//! [`Recorder`] (events.k8s.io, repeats folded into a series), a failure logged and otherwise
//! ignored, as upstream controllers do.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::debug;

/// Records an event about `regarding`; `action` is the upstream controller's action name.
pub(crate) async fn publish(
    recorder: &Recorder,
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, regarding).await {
        debug!(error = %e, reason, "recording an event failed");
    }
}

/// A pod's namespace (`default` when the object names none).
pub(crate) fn namespace(pod: &Pod) -> &str {
    podvisor_core::object::namespace_of(&pod.metadata)
}
