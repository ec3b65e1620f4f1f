//! `events.k8s.io/v1` Events are the core/v1 Events seen through another version, as in
//! kube-apiserver: one stored object (core form, store key `events`), converted field by field
//! on the way in and out (upstream's `pkg/apis/events/v1` conversion): `note` is `message`,
//! `regarding` is `involvedObject`, `deprecatedSource` is `source`, `reportingController` is
//! `reportingComponent`, `deprecated{First,Last}Timestamp` and `deprecatedCount` are
//! `firstTimestamp`, `lastTimestamp` and `count`; the rest keep their names.

use serde_json::{Map, Value};

/// Fields renamed between the two versions: (core/v1, events.k8s.io/v1).
const RENAMED: &[(&str, &str)] = &[
    ("message", "note"),
    ("involvedObject", "regarding"),
    ("source", "deprecatedSource"),
    ("reportingComponent", "reportingController"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Fields with the same name in both versions.
const SHARED: &[&str] = &[
    "metadata",
    "eventTime",
    "series",
    "reportingInstance",
    "action",
    "reason",
    "related",
    "type",
];

fn convert(object: &Value, api_version: &str, to_v1: bool) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::from(api_version));
    out.insert("kind".into(), Value::from("Event"));
    let Some(map) = object.as_object() else {
        return Value::Object(out);
    };
    for k in SHARED {
        if let Some(v) = map.get(*k).filter(|v| !v.is_null()) {
            out.insert((*k).into(), v.clone());
        }
    }
    for (core, v1) in RENAMED {
        let (from, to) = if to_v1 { (core, v1) } else { (v1, core) };
        if let Some(v) = map.get(*from).filter(|v| !v.is_null()) {
            out.insert((*to).into(), v.clone());
        }
    }
    Value::Object(out)
}

/// The core/v1 Event as `events.k8s.io/v1` shows it.
pub fn to_events_v1(core: &Value) -> Value {
    convert(core, "events.k8s.io/v1", true)
}

/// The `events.k8s.io/v1` Event as stored (core/v1).
pub fn to_core(v1: &Value) -> Value {
    convert(v1, "v1", false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_map_both_ways() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web"},
            "reason": "Started", "message": "Started container app", "type": "Normal",
            "source": {"component": "kubelet", "host": "n1"},
            "reportingComponent": "kubelet", "reportingInstance": "n1",
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:05Z", "count": 2,
        });
        let v1 = to_events_v1(&core);
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["note"], "Started container app");
        assert_eq!(v1["regarding"]["name"], "web");
        assert_eq!(v1["deprecatedSource"]["component"], "kubelet");
        assert_eq!(v1["reportingController"], "kubelet");
        assert_eq!(v1["deprecatedCount"], 2);
        assert_eq!(v1["deprecatedLastTimestamp"], "2026-01-01T00:00:05Z");
        assert!(v1.get("message").is_none() && v1.get("involvedObject").is_none());
        assert_eq!(to_core(&v1), core);
    }
}
