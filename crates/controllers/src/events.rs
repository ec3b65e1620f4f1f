//! Recording events, as every control loop here does it: events.k8s.io/v1 Events, a repeat of
//! the same event (same object, type, reason, action and note) within 6 minutes folded into
//! the first one's `series`, a failure logged and otherwise ignored, as upstream controllers
//! do.
//!
//! kube-runtime's `Recorder` folds by object, reason and action only, so "Scaled up replica set
//! a to 3" and "... b to 1" would become one event counted twice; client-go's recorder keeps
//! events whose messages differ apart. This one does too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{EventType, Reporter};
use kube::{Api, Client};
use tokio::sync::Mutex;
use tracing::debug;

/// How long a repeat joins the first event's series (kube-runtime's and client-go's 6 min).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// The most distinct recent events remembered.
const MAX_REMEMBERED: usize = 4096;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    regarding: (String, String, String, String),
    type_: &'static str,
    reason: String,
    action: String,
    note: String,
}

struct Recorded {
    name: String,
    count: i32,
    last: Instant,
}

/// Records events as one controller (`Reporter`).
pub(crate) struct Recorder {
    client: Client,
    reporter: Reporter,
    recent: Mutex<HashMap<Key, Recorded>>,
}

impl Recorder {
    /// A recorder reporting as `reporter`.
    pub(crate) fn new(client: Client, reporter: Reporter) -> Recorder {
        Recorder {
            client,
            reporter,
            recent: Mutex::new(HashMap::new()),
        }
    }
}

fn now_micro() -> MicroTime {
    MicroTime(podvisor_core::k8s_openapi::jiff::Timestamp::now())
}

/// Records an event about `regarding`; `action` is the upstream controller's action name.
pub(crate) async fn publish(
    recorder: &Recorder,
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let type_ = match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    };
    let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
    let api: Api<Event> = Api::namespaced(recorder.client.clone(), &namespace);
    let key = Key {
        regarding: (
            regarding.kind.clone().unwrap_or_default(),
            namespace.clone(),
            regarding.name.clone().unwrap_or_default(),
            regarding.uid.clone().unwrap_or_default(),
        ),
        type_,
        reason: reason.to_owned(),
        action: action.to_owned(),
        note: note.clone(),
    };
    let mut recent = recorder.recent.lock().await;
    recent.retain(|_, r| r.last.elapsed() < SERIES_WINDOW);
    if let Some(r) = recent.get_mut(&key) {
        r.count += 1;
        r.last = Instant::now();
        let series = EventSeries {
            count: r.count,
            last_observed_time: now_micro(),
        };
        let patch = Patch::Merge(serde_json::json!({"series": series}));
        match api.patch(&r.name, &PatchParams::default(), &patch).await {
            Ok(_) => return,
            Err(e) => debug!(error = %e, reason, "updating an event's series failed; recording it anew"),
        }
    }
    let name = format!(
        "{}.{:x}",
        regarding.name.as_deref().unwrap_or("object"),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        action: Some(action.to_owned()),
        event_time: Some(now_micro()),
        note: Some(note),
        reason: Some(reason.to_owned()),
        regarding: Some(regarding.clone()),
        reporting_controller: Some(recorder.reporter.controller.clone()),
        reporting_instance: Some(
            recorder
                .reporter
                .instance
                .clone()
                .unwrap_or_else(|| recorder.reporter.controller.clone()),
        ),
        type_: Some(type_.to_owned()),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &event).await {
        Ok(_) => {
            if recent.len() >= MAX_REMEMBERED {
                recent.clear();
            }
            recent.insert(
                key,
                Recorded {
                    name,
                    count: 1,
                    last: Instant::now(),
                },
            );
        }
        Err(e) => debug!(error = %e, reason, "recording an event failed"),
    }
}

/// A pod's namespace (`default` when the object names none).
pub(crate) fn namespace(pod: &Pod) -> &str {
    podvisor_core::object::namespace_of(&pod.metadata)
}
