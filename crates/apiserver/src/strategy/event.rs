//! Events, core/v1 and events.k8s.io/v1: the second is the first converted
//! ([`crate::events`]), stored once; validation of a new Event from `podvisor-api` (with the
//! version's rules), and kube-apiserver's event table.

use std::borrow::Cow;

use podvisor_core::corev1::Event;
use serde_json::Value;

use super::{Rejection, Strategy, decode_as, typed, typed_row};
use crate::table::{Column, Row, age_at};

/// Events of one version: core/v1 ([`EventStrategy::CORE`]) or events.k8s.io/v1
/// ([`EventStrategy::V1`], core Events as that version shows them).
#[derive(Debug)]
pub struct EventStrategy {
    events_v1: bool,
}

impl EventStrategy {
    /// core/v1 Events.
    pub const CORE: EventStrategy = EventStrategy { events_v1: false };
    /// events.k8s.io/v1 Events.
    pub const V1: EventStrategy = EventStrategy { events_v1: true };
}

/// The fields both versions select on; the events.k8s.io names (`regarding.*`,
/// `reportingController`) select the same stored fields ([`crate::selectors`]).
const FIELD_SELECTORS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reportingController",
];

impl Strategy for EventStrategy {
    fn decode_known(&self, object: &Value) -> Result<(Value, Vec<String>), String> {
        if self.events_v1 {
            decode_as::<podvisor_core::k8s_openapi::api::events::v1::Event>(object)
        } else {
            decode_as::<Event>(object)
        }
    }

    fn validates_only_metadata(&self) -> bool {
        true
    }

    /// A new Event (stored form) is validated with its version's rules; updates are not.
    fn default_and_validate(
        &self,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<Vec<String>, Rejection> {
        if old.is_none() {
            let event: Event = typed(object)?;
            podvisor_api::validation::validate_event(&event, self.events_v1)?;
        }
        Ok(Vec::new())
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        FIELD_SELECTORS
    }

    fn columns(&self) -> Vec<Column> {
        columns()
    }

    /// Both versions' tables are made from the stored core/v1 form.
    fn row(&self, object: &Value, now: i64) -> Row {
        row(object, now)
    }

    fn stored_under(&self) -> Option<&'static str> {
        self.events_v1.then_some("events")
    }

    fn stored(&self, object: Value) -> Value {
        if self.events_v1 {
            crate::events::to_core(&object)
        } else {
            object
        }
    }

    fn shown<'o>(&self, object: &'o Value) -> Cow<'o, Value> {
        if self.events_v1 {
            Cow::Owned(crate::events::to_events_v1(object))
        } else {
            Cow::Borrowed(object)
        }
    }
}

fn columns() -> Vec<Column> {
    vec![
        Column::text("Last Seen", 0),
        Column::text("Type", 0),
        Column::text("Reason", 0),
        Column::text("Object", 0),
        Column::text("Subobject", 1),
        Column::text("Source", 1),
        Column::text("Message", 0),
        Column::text("First Seen", 1),
        Column::text("Count", 1),
        Column::text("Name", 1),
    ]
}

/// As kube-apiserver's event printer (the stored core/v1 form).
fn row(object: &Value, now: i64) -> Row {
    typed_row::<Event>(object, 10, |e| {
        let since = |millis: Option<i64>| millis.map(|t| age_at(Some(t), now));
        let first = since(e.first_timestamp.as_ref().map(|t| t.0.as_millisecond()))
            .or_else(|| since(e.event_time.as_ref().map(|t| t.0.as_millisecond())))
            .unwrap_or_else(|| "<unknown>".into());
        let mut last =
            since(e.last_timestamp.as_ref().map(|t| t.0.as_millisecond())).unwrap_or_else(|| first.clone());
        let mut count = e.count.unwrap_or(0);
        if let Some(series) = &e.series {
            last = age_at(
                series.last_observed_time.as_ref().map(|t| t.0.as_millisecond()),
                now,
            );
            count = series.count.unwrap_or(0);
        } else if count == 0 {
            count = 1;
        }
        let obj = &e.involved_object;
        let kind = obj.kind.clone().unwrap_or_default().to_lowercase();
        let object = match obj.name.as_deref().unwrap_or("") {
            "" => kind,
            n => format!("{kind}/{n}"),
        };
        let first_of = |a: Option<&String>, b: Option<&String>| {
            a.filter(|v| !v.is_empty()).or(b).cloned().unwrap_or_default()
        };
        let source = e.source.as_ref();
        let component = first_of(
            source.and_then(|s| s.component.as_ref()),
            e.reporting_component.as_ref(),
        );
        let instance = first_of(
            source.and_then(|s| s.host.as_ref()),
            e.reporting_instance.as_ref(),
        );
        let source = if instance.is_empty() {
            component
        } else {
            format!("{component}, {instance}")
        };
        vec![
            last,
            e.type_.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            object,
            obj.field_path.clone().unwrap_or_default(),
            source,
            e.message.as_deref().unwrap_or("").trim().to_string(),
            first,
            count.to_string(),
            e.metadata.name.clone().unwrap_or_default(),
        ]
    })
}
