//! Events on create, as kube-apiserver validates them (`ValidateEventCreate`): the legacy rules
//! for every Event, and the strict ones for Events created through `events.k8s.io/v1`. The
//! Event is checked in its stored core/v1 form, so field paths are core's, except that
//! `reportingController` keeps the name of the version it was sent in.

use podvisor_core::corev1::Event;

use super::field::{FieldError, Path, ValidationErrors, Value, Warning};
use super::format::is_qualified_name;
use super::meta::{NameRule, validate_object_meta};

/// The most characters of `reportingInstance`, `action` and `reason`.
const SHORT_LIMIT: usize = 128;
/// The most characters of `note` (`message`).
const NOTE_LIMIT: usize = 1024;

/// Validates a new Event. `events_v1` says it came through `events.k8s.io/v1` (strict rules).
pub fn validate_event(event: &Event, events_v1: bool) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = Vec::new();
    let ns = event.metadata.namespace.as_deref().unwrap_or("");
    let involved_ns = event.involved_object.namespace.as_deref().unwrap_or("");
    let controller_field = if events_v1 {
        "reportingController"
    } else {
        "reportingComponent"
    };
    let mismatch = || {
        FieldError::invalid(
            "involvedObject.namespace",
            Value::str(involved_ns),
            "does not match event.namespace",
        )
    };
    if event.event_time.is_none() {
        // An old-style Event: its namespace and its object's must agree.
        let agree = if involved_ns.is_empty() {
            ns.is_empty() || ns == "default"
        } else {
            ns == involved_ns
        };
        if !agree {
            errs.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(mismatch());
        }
        let controller = event.reporting_component.as_deref().unwrap_or("");
        if controller.is_empty() {
            errs.push(FieldError::required(controller_field, ""));
        }
        for msg in is_qualified_name(controller) {
            errs.push(FieldError::invalid(controller_field, Value::str(controller), msg));
        }
        for (field, value) in [
            ("reportingInstance", &event.reporting_instance),
            ("action", &event.action),
            ("reason", &event.reason),
        ] {
            let value = value.as_deref().unwrap_or("");
            if value.is_empty() {
                errs.push(FieldError::required(field, ""));
            }
            if value.chars().count() > SHORT_LIMIT {
                errs.push(FieldError::invalid(
                    field,
                    Value::str(""),
                    format!("can have at most {SHORT_LIMIT} characters"),
                ));
            }
        }
        if event.message.as_deref().unwrap_or("").chars().count() > NOTE_LIMIT {
            errs.push(FieldError::invalid(
                "message",
                Value::str(""),
                format!("can have at most {NOTE_LIMIT} characters"),
            ));
        }
    }
    if events_v1 {
        validate_object_meta(
            &event.metadata,
            NameRule::Dns1123Subdomain,
            &Path::root("metadata"),
            &mut errs,
        );
        if let Some(series) = &event.series {
            if series.count.unwrap_or(0) < 2 {
                errs.push(FieldError::invalid(
                    "series.count",
                    Value::str(""),
                    "should be at least 2",
                ));
            }
            if series.last_observed_time.is_none() {
                errs.push(FieldError::required("series.lastObservedTime", ""));
            }
        }
        if event.event_time.is_none() {
            errs.push(FieldError::required("eventTime", ""));
        }
        let type_ = event.type_.as_deref().unwrap_or("");
        if type_ != "Normal" && type_ != "Warning" {
            errs.push(FieldError::invalid(
                "type",
                Value::str(""),
                format!("has invalid value: {type_}"),
            ));
        }
        let unset = |field: &str| FieldError::invalid(field, Value::str(""), "needs to be unset");
        if event.first_timestamp.is_some() {
            errs.push(unset("firstTimestamp"));
        }
        if event.last_timestamp.is_some() {
            errs.push(unset("lastTimestamp"));
        }
        if event.count.unwrap_or(0) != 0 {
            errs.push(unset("count"));
        }
        let source = event.source.as_ref();
        if source.is_some_and(|s| {
            s.component.as_deref().is_some_and(|c| !c.is_empty())
                || s.host.as_deref().is_some_and(|h| !h.is_empty())
        }) {
            errs.push(unset("source"));
        }
    }
    ValidationErrors::new(errs).into_result(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(v: serde_json::Value) -> Event {
        serde_json::from_value(v).expect("an Event")
    }

    #[test]
    fn an_events_v1_event_needs_its_new_fields() {
        let e = event(json!({
            "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
            "type": "Sometimes", "count": 3,
        }));
        let errs = validate_event(&e, true).unwrap_err().messages();
        for expected in [
            "eventTime: Required value",
            "type: Invalid value: \"\": has invalid value: Sometimes",
            "count: Invalid value: \"\": needs to be unset",
        ] {
            assert!(errs.iter().any(|m| m == expected), "{expected} in {errs:?}");
        }
        let e = event(json!({
            "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
            "type": "Normal",
        }));
        let errs = validate_event(&e, true).unwrap_err().messages();
        for expected in [
            "reportingController: Required value",
            "reportingInstance: Required value",
            "action: Required value",
            "reason: Required value",
        ] {
            assert!(errs.iter().any(|m| m == expected), "{expected} in {errs:?}");
        }
    }

    #[test]
    fn an_old_style_event_only_needs_matching_namespaces() {
        let ok = event(json!({
            "metadata": {"name": "e", "namespace": "apps"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "apps"},
            "reason": "Started", "message": "m", "type": "Normal",
            "source": {"component": "kubelet"}, "count": 1,
        }));
        assert!(validate_event(&ok, false).is_ok());
        let bad = event(json!({
            "metadata": {"name": "e", "namespace": "apps"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "other"},
        }));
        let errs = validate_event(&bad, false).unwrap_err().messages();
        assert_eq!(
            errs,
            ["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"]
        );
    }
}
