//! [`ApiSink`]: the kubelet's status manager and event recorder. Pod status goes to
//! `pods/status` (the conditions others own kept as the API has them), Events are recorded with
//! repeats aggregated into a count, and a deleted pod's object is removed once it has stopped.

use std::collections::HashMap;

use kube::api::{DeleteParams, ObjectMeta, PostParams, Preconditions};
use kube::{Api, Client};
use podvisor_core::corev1::{Event as ApiEvent, EventSource, ObjectReference, Pod, PodStatus};
use podvisor_lifecycle::{Event, KUBELET_CONDITIONS, Time};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::is_api_error;
use crate::{PodSink, PodView};

/// How many distinct events the node aggregates repeats of at once (client-go's LRU size).
const EVENT_AGGREGATION_ENTRIES: usize = 4096;

/// How often a status write that lost a race is tried again on the newer object.
const STATUS_ATTEMPTS: usize = 5;

enum SinkMsg {
    Status {
        key: (String, String),
        uid: String,
        status: Box<PodStatus>,
        remove: bool,
    },
    Event {
        pod: Box<Pod>,
        event: Event,
        at: Time,
    },
}

/// The [`PodSink`] that writes to the API: pod status, Events, and the final removal of a
/// deleted pod once it has stopped. Writes happen on a background task, the newest status of
/// each pod winning, so the pod workers never wait for the API.
pub struct ApiSink {
    tx: mpsc::UnboundedSender<SinkMsg>,
    detached: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for ApiSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSink")
            .field("detached", &self.detached)
            .finish_non_exhaustive()
    }
}

impl ApiSink {
    /// A sink writing through `client` as node `node_name`, and the task that does the writing
    /// (spawn it).
    pub fn new(client: Client, node_name: String) -> (ApiSink, impl Future<Output = ()> + Send) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = ApiSink {
            tx,
            detached: std::sync::atomic::AtomicBool::new(false),
        };
        (sink, write_loop(client, node_name, rx))
    }

    /// Stops writing: what pods report from now on stays out of the API. The node detaches
    /// before it stops its pods at shutdown, so the API keeps them as they were running and a
    /// restarted node runs them again (restart counts continuing) instead of finding them
    /// terminated.
    pub fn detach(&self) {
        self.detached.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn attached(&self) -> bool {
        !self.detached.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn pod_key(pod: &Pod) -> (String, String) {
    (
        podvisor_core::object::namespace_of(&pod.metadata).to_owned(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

impl PodSink for ApiSink {
    fn status(&self, view: &PodView) {
        if !self.attached() {
            return;
        }
        let Some(status) = view.pod.status.clone() else {
            return;
        };
        let uid = view.pod.metadata.uid.clone().unwrap_or_default();
        let remove = view.finished && view.pod.metadata.deletion_timestamp.is_some();
        let _ = self.tx.send(SinkMsg::Status {
            key: pod_key(&view.pod),
            uid,
            status: Box::new(status),
            remove,
        });
    }

    fn event(&self, pod: &Pod, event: &Event, at: Time) {
        if !self.attached() {
            return;
        }
        let _ = self.tx.send(SinkMsg::Event {
            pod: Box::new(pod.clone()),
            event: event.clone(),
            at,
        });
    }
}

/// (pod uid, reason, message, field path): what makes two events repeats of each other.
type EventId = (String, String, String, String);

async fn write_loop(client: Client, node_name: String, mut rx: mpsc::UnboundedReceiver<SinkMsg>) {
    // Aggregated events: their object's name and count.
    let mut seen: HashMap<EventId, (String, i32)> = HashMap::new();
    let mut counter: u64 = 0;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        // Only the newest status of each pod matters.
        let mut statuses: HashMap<(String, String), (String, Box<PodStatus>, bool)> = HashMap::new();
        for msg in batch {
            match msg {
                SinkMsg::Status {
                    key,
                    uid,
                    status,
                    remove,
                } => {
                    let removed_before = statuses.get(&key).is_some_and(|e| e.2);
                    statuses.insert(key, (uid, status, removed_before || remove));
                }
                SinkMsg::Event { pod, event, at } => {
                    counter += 1;
                    record_event(&client, &node_name, &pod, &event, at, &mut seen, counter).await;
                }
            }
        }
        for ((ns, name), (uid, status, remove)) in statuses {
            let api = Api::<Pod>::namespaced(client.clone(), &ns);
            write_status(&api, &name, &uid, &status).await;
            if remove {
                // A removed pod's events are never aggregated again.
                seen.retain(|(pod_uid, ..), _| *pod_uid != uid);
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(&name, &params).await {
                    Ok(_) => {}
                    Err(e) if is_api_error(&e, 404) => {}
                    Err(e) => warn!(error = %e, pod = %name, "removing a terminated pod failed"),
                }
            }
        }
    }
}

/// Writes `status` as the status of pod `name` (if it is still the pod `uid`).
async fn write_status(api: &Api<Pod>, name: &str, uid: &str, status: &PodStatus) {
    for _ in 0..STATUS_ATTEMPTS {
        let mut current = match api.get_opt(name).await {
            Ok(Some(current)) => current,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, pod = %name, "reading a pod for its status failed");
                return;
            }
        };
        if current.metadata.uid.as_deref() != Some(uid) {
            return;
        }
        let mut status = status.clone();
        keep_foreign_conditions(current.status.as_ref(), &mut status);
        current.status = Some(status);
        match api.replace_status(name, &PostParams::default(), &current).await {
            Ok(_) => return,
            Err(e) if is_api_error(&e, 409) => continue,
            Err(e) if is_api_error(&e, 404) => return,
            Err(e) => {
                warn!(error = %e, pod = %name, "writing pod status failed");
                return;
            }
        }
    }
}

/// The kubelet owns [`KUBELET_CONDITIONS`]; every other condition (a readiness gate's,
/// `DisruptionTarget`) stays as the API has it.
fn keep_foreign_conditions(stored: Option<&PodStatus>, ours: &mut PodStatus) {
    let owned = |type_: &str| KUBELET_CONDITIONS.contains(&type_);
    let foreign = stored
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| !owned(&c.type_))
        .cloned();
    let mine = ours
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| owned(&c.type_));
    ours.conditions = Some(foreign.chain(mine).collect());
}

async fn record_event(
    client: &Client,
    node_name: &str,
    pod: &Pod,
    event: &Event,
    at: Time,
    seen: &mut HashMap<EventId, (String, i32)>,
    counter: u64,
) {
    let (namespace, pod_name) = pod_key(pod);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let field_path = event.field_path.clone().unwrap_or_default();
    let when = at.to_k8s();
    let api = Api::<ApiEvent>::namespaced(client.clone(), &namespace);
    let id = (
        uid.clone(),
        event.reason.to_owned(),
        event.message.clone(),
        field_path.clone(),
    );
    if let Some((name, count)) = seen.get_mut(&id)
        && let Ok(Some(mut current)) = api.get_opt(name).await
    {
        *count += 1;
        current.count = Some(*count);
        current.last_timestamp = Some(when.clone());
        if api.replace(name, &PostParams::default(), &current).await.is_ok() {
            return;
        }
    }
    let name = format!("{pod_name}.{:x}{:08x}", at.as_millis(), counter);
    let object = ApiEvent {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(namespace),
            name: Some(pod_name),
            uid: Some(uid),
            field_path: (!field_path.is_empty()).then_some(field_path),
            ..Default::default()
        },
        reason: Some(event.reason.to_owned()),
        message: Some(event.message.clone()),
        type_: Some(event.type_.as_str().to_owned()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(node_name.to_owned()),
        }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node_name.to_owned()),
        first_timestamp: Some(when.clone()),
        last_timestamp: Some(when),
        count: Some(1),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => {
            // Bounded like client-go's event aggregation cache (4096 entries): when it is full
            // it starts afresh, and a repeat of a forgotten event starts a new Event object.
            if seen.len() >= EVENT_AGGREGATION_ENTRIES {
                seen.clear();
            }
            seen.insert(id, (name, 1));
        }
        Err(e) => debug!(error = %e, "recording an event failed"),
    }
}
