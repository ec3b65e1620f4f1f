//! One strategy per served kind: every rule of a kind that the verbs apply, in one place.
//!
//! kube-apiserver gives every resource a `RESTCreateStrategy`/`RESTUpdateStrategy`/... and a
//! table convertor; here a kind's [`Strategy`] carries the same decisions, and the verbs in
//! `handlers/` ask it instead of testing the resource's name:
//!
//! - **schema**: [`Strategy::decode_known`] decodes the wire object into the kind's
//!   `k8s-openapi` struct (type errors, unknown fields);
//! - **admission**: [`Strategy::default_and_validate`] (defaulting, then validation of a create
//!   or of an update against the stored object), [`Strategy::prepare_for_create`] (fields the
//!   server owns on a new object: a pod's `Pending` status), [`Strategy::prepare_for_update`]
//!   (what an update of the object keeps: a namespace's `spec.finalizers`),
//!   [`Strategy::allocates_addresses`]
//!   (a Service's ClusterIP and node ports); the order is [`crate::admission`]'s;
//! - **status/spec split**: a kind whose resource serves the `status` subresource has its
//!   status owned by it: the main resource keeps the stored status, `…/status` changes only it;
//! - **deletion**: [`Strategy::check_delete`], [`Strategy::grace_period`],
//!   [`Strategy::finalizing`], [`Strategy::mark_deleting`],
//!   [`Strategy::removed_by_its_node`];
//! - **reading**: [`Strategy::field_selectors`], [`Strategy::columns`] and [`Strategy::row`]
//!   (kubectl's table); [`Strategy::stored_under`], [`Strategy::stored`] and
//!   [`Strategy::shown`] for a version stored as another (events.k8s.io Events).
//!
//! Every method has the behaviour of a kind without that rule as its default, so a kind states
//! only what is particular to it. The strategies are registered once, in
//! [`crate::resources::RESOURCES`] (each [`Resource`](crate::resources::Resource) names its
//! strategy). Rules that need an object's fields decode it into the kind's `k8s-openapi`
//! struct ([`typed`], [`untyped`]); `serde_json::Value` is only the wire edge.

mod cluster;
mod config;
mod event;
mod namespace;
pub mod pod;
mod service;
mod workload;

use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use cluster::{EndpointSliceStrategy, EndpointsStrategy, LeaseStrategy, NodeStrategy};
pub use config::{ConfigMapStrategy, SecretStrategy};
pub use event::EventStrategy;
pub use namespace::NamespaceStrategy;
pub use pod::PodStrategy;
pub use service::ServiceStrategy;
pub use workload::{
    CONTROLLER_REVISIONS, CRON_JOBS, DAEMON_SETS, DEPLOYMENTS, JOBS, REPLICA_SETS, SERVICE_ACCOUNTS,
    STATEFUL_SETS, Workload,
};

/// What deleting an owner does to its dependents (`DeleteOptions.propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// The owner goes at once; the garbage collector deletes the dependents later.
    Background,
    /// The owner stays (finalizer `foregroundDeletion`) until its blocking dependents are gone.
    Foreground,
    /// The dependents stay, without the owner's reference (finalizer `orphan`).
    Orphan,
}

impl Propagation {
    /// The wire name (`Background`).
    pub fn parse(s: &str) -> Option<Propagation> {
        match s {
            "Background" => Some(Propagation::Background),
            "Foreground" => Some(Propagation::Foreground),
            "Orphan" => Some(Propagation::Orphan),
            _ => None,
        }
    }
}

use crate::table::{Column, Row};

/// Why a kind's rules refused an object.
#[derive(Debug)]
pub enum Rejection {
    /// Field errors (422 Invalid).
    Invalid(podvisor_api::validation::ValidationErrors),
    /// The object does not decode as its kind (400 BadRequest).
    Malformed(String),
}

impl From<podvisor_api::validation::ValidationErrors> for Rejection {
    fn from(e: podvisor_api::validation::ValidationErrors) -> Self {
        Rejection::Invalid(e)
    }
}

impl From<serde_json::Error> for Rejection {
    fn from(e: serde_json::Error) -> Self {
        Rejection::Malformed(e.to_string())
    }
}

/// A validator's warnings as the `Warning` headers carry them.
pub(crate) fn warnings(w: &[podvisor_api::validation::Warning]) -> Vec<String> {
    w.iter().map(ToString::to_string).collect()
}

/// The object as its kind's struct.
pub fn typed<K: DeserializeOwned>(object: &Value) -> Result<K, Rejection> {
    Ok(K::deserialize(object)?)
}

/// The kind's struct as a wire object.
pub fn untyped<K: Serialize>(object: &K) -> Result<Value, Rejection> {
    Ok(serde_json::to_value(object)?)
}

/// A kind's rules (see the [module](self)). Object-safe: the verbs hold `&dyn Strategy`.
pub trait Strategy: Send + Sync + std::fmt::Debug {
    /// Decodes `object` as the kind's struct and back: the object as the kind knows it and the
    /// paths of the fields it does not know. `Err` is the decoder's message (a type error).
    fn decode_known(&self, object: &Value) -> Result<(Value, Vec<String>), String>;

    /// Whether the kind's only validation is its metadata (name by the kind's rule, labels,
    /// annotations), checked when the object is decoded. Kinds validated whole check their
    /// metadata in [`Strategy::default_and_validate`].
    fn validates_only_metadata(&self) -> bool {
        false
    }

    /// Defaulting and validation of a create (`old` is `None`) or of an update of `old`;
    /// returns the validators' warnings.
    fn default_and_validate(
        &self,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<Vec<String>, Rejection> {
        let _ = (object, old);
        Ok(Vec::new())
    }

    /// Defaulting and validation of a write to `ephemeralcontainers` (pods only): `object` is
    /// `old` with its ephemeral containers replaced.
    fn default_and_validate_ephemeral(
        &self,
        object: &mut Value,
        old: &Value,
    ) -> Result<Vec<String>, Rejection> {
        self.default_and_validate(object, Some(old))
    }

    /// Sets what the server owns on a new, valid object (after defaulting and validation).
    fn prepare_for_create(&self, object: &mut Value) -> Result<(), Rejection> {
        let _ = object;
        Ok(())
    }

    /// Keeps in `new`, an update of the object itself, what only a subresource may change
    /// (besides the status, which every kind with a `status` subresource keeps): a
    /// namespace's `spec.finalizers`, which only `finalize` writes.
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        let _ = (new, old);
    }

    /// Whether the update of `old` to `new` raises `metadata.generation`; `None` for a kind
    /// that does not track generations (a new object of a tracking kind starts at 1).
    fn generation_changed(&self, new: &Value, old: &Value) -> Option<bool> {
        let _ = (new, old);
        None
    }

    /// The deletion propagation when the client names none (rule 8.2 of the controller
    /// semantics: Background, the generic store's default).
    fn default_propagation(&self) -> Propagation {
        Propagation::Background
    }

    /// For a kind serving the `scale` subresource: the selector of `object`'s pods as the
    /// `Scale` reports it (`None` inside when it has none); `None` for other kinds.
    fn scale_selector(&self, object: &Value) -> Option<Option<String>> {
        let _ = object;
        None
    }

    /// Whether a `status` write also writes `metadata.annotations` (a Deployment's: its
    /// controller records the revision there through `…/status`, so the generation stays).
    fn status_writes_annotations(&self) -> bool {
        false
    }

    /// The ServiceAccount a new object runs as, which must exist (pods); `default` is
    /// not checked, as the ServiceAccount controller may not have made it yet.
    fn service_account(&self, object: &Value) -> Option<String> {
        let _ = object;
        None
    }

    /// Whether a new object gets addresses from the server's allocator (Services).
    fn allocates_addresses(&self) -> bool {
        false
    }

    /// Refuses the deletion of `name` (a namespace that must always exist): the reason.
    fn check_delete(&self, name: &str) -> Result<(), &'static str> {
        let _ = name;
        Ok(())
    }

    /// The grace period a deletion gives `object`, `requested` being the client's; 0 deletes
    /// at once (once no finalizer remains).
    fn grace_period(&self, requested: Option<i64>, object: &Value) -> i64 {
        let _ = (requested, object);
        0
    }

    /// Whether `object` has finalization of its own still to do before it can go (a
    /// namespace's `spec.finalizers`), besides `metadata.finalizers`.
    fn finalizing(&self, object: &Value) -> bool {
        let _ = object;
        false
    }

    /// What marking `object` for deletion changes besides its deletion timestamp and grace.
    fn mark_deleting(&self, object: &mut Value) {
        let _ = object;
    }

    /// Whether an object marked for deletion is removed by the node running it (pods, once
    /// stopped) rather than when its last finalizer goes.
    fn removed_by_its_node(&self) -> bool {
        false
    }

    /// The fields field selectors may name, besides `metadata.name` and `metadata.namespace`.
    fn field_selectors(&self) -> &'static [&'static str] {
        &[]
    }

    /// kubectl's table columns.
    fn columns(&self) -> Vec<Column> {
        vec![Column::NAME, Column::AGE]
    }

    /// kubectl's table row of `object` at `now` (Unix milliseconds).
    fn row(&self, object: &Value, now: i64) -> Row {
        typed_row::<Metadata>(object, 2, |o| {
            vec![
                o.metadata.name.clone().unwrap_or_default(),
                crate::table::created(&o.metadata, now),
            ]
        })
    }

    /// The store key of the resource this one is stored as (a version stored as another), if
    /// not its own.
    fn stored_under(&self) -> Option<&'static str> {
        None
    }

    /// A request's object as stored (a version stored as another is converted).
    fn stored(&self, object: Value) -> Value {
        object
    }

    /// A stored object as this resource shows it (borrowed when shown as stored).
    fn shown<'o>(&self, object: &'o Value) -> Cow<'o, Value> {
        Cow::Borrowed(object)
    }
}

/// Any object, as far as its metadata.
#[derive(serde::Deserialize)]
struct Metadata {
    #[serde(default)]
    metadata: podvisor_core::metav1::ObjectMeta,
}

/// A table row from `object` decoded as the kind's struct `K` (`cells` makes it); an object
/// that does not decode shows its name and empty cells (`columns` of them).
pub(crate) fn typed_row<K: DeserializeOwned>(
    object: &Value,
    columns: usize,
    cells: impl FnOnce(&K) -> Vec<String>,
) -> Row {
    match typed::<K>(object) {
        Ok(k) => Row::cells(cells(&k)),
        Err(_) => {
            let mut c = vec![crate::table::text(object, "metadata.name")];
            c.resize(columns, String::new());
            Row::cells(c)
        }
    }
}

/// [`Strategy::decode_known`] for a kind whose wire form is `K`: decodes into `K`, serialises
/// back, and lists the fields `K` dropped. Fields that serialise away when empty
/// (`labels: {}`) or are null are not unknown.
pub fn decode_as<K: DeserializeOwned + Serialize>(object: &Value) -> Result<(Value, Vec<String>), String> {
    let typed = K::deserialize(object).map_err(|e| e.to_string())?;
    let known = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    unknown_fields(object, &known, "", &mut unknown);
    Ok((known, unknown))
}

fn unknown_fields(original: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (original, known) {
        (Value::Object(o), Value::Object(k)) => {
            for (key, v) in o {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => unknown_fields(v, kv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(o), Value::Array(k)) => {
            for (i, (a, b)) in o.iter().zip(k).enumerate() {
                unknown_fields(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{RESOURCES, Resource};
    use serde_json::json;

    #[test]
    fn every_served_resource_has_its_own_strategy() {
        for r in RESOURCES {
            // The strategy decodes the resource's own kind: a `kind` it does not know as a
            // field would be reported unknown, the object's own fields never are.
            let (_, unknown) = r
                .strategy
                .decode_known(
                    &json!({"apiVersion": r.api_version(), "kind": r.kind, "metadata": {"name": "a"}}),
                )
                .unwrap_or_else(|e| panic!("{}: {e}", r.plural));
            assert!(unknown.is_empty(), "{}: {unknown:?}", r.plural);
            assert!(!r.strategy.columns().is_empty(), "{}", r.plural);
        }
    }

    #[test]
    fn field_selectors_are_the_kinds() {
        let pods = Resource::find("", "v1", "pods").unwrap();
        assert!(pods.strategy.field_selectors().contains(&"spec.nodeName"));
        let cms = Resource::find("", "v1", "configmaps").unwrap();
        assert!(cms.strategy.field_selectors().is_empty());
    }

    /// The cells kubectl shows for `object` of the resource `plural` at one minute past its
    /// creation.
    fn cells(group: &str, plural: &str, mut object: Value) -> Vec<String> {
        object["metadata"]["creationTimestamp"] = json!("1970-01-01T00:00:00Z");
        let r = Resource::find(group, "v1", plural).unwrap();
        let row = r.strategy.row(&object, 60_000);
        assert_eq!(
            row.cells.len(),
            r.strategy.columns().len(),
            "{plural}: one cell per column"
        );
        row.cells
    }

    #[test]
    fn table_rows_are_the_kinds_printers() {
        let node = json!({"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
                "nodeInfo": {"kubeletVersion": "v1.35.0", "osImage": "Linux", "kernelVersion": "6.1",
                    "containerRuntimeVersion": "podvisor://0.1", "architecture": "amd64", "bootID": "",
                    "kubeProxyVersion": "", "machineID": "", "operatingSystem": "linux", "systemUUID": ""}}});
        assert_eq!(
            cells("", "nodes", node),
            [
                "n",
                "Ready,SchedulingDisabled",
                "control-plane",
                "60s",
                "v1.35.0",
                "10.0.0.5",
                "<none>",
                "Linux",
                "6.1",
                "podvisor://0.1"
            ]
        );
        let ep = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.1.0.2"}, {"ip": "10.1.0.3"}], "ports": [{"port": 80}]}]});
        assert_eq!(
            cells("", "endpoints", ep),
            ["web", "10.1.0.2:80,10.1.0.3:80", "60s"]
        );
        let slice = json!({"metadata": {"name": "web-x"}, "addressType": "IPv4", "ports": [{"port": 80}],
            "endpoints": [{"addresses": ["a"]}, {"addresses": ["b", "c"]}, {"addresses": ["d"]}]});
        assert_eq!(
            cells("discovery.k8s.io", "endpointslices", slice),
            ["web-x", "IPv4", "80", "a,b,c + 1 more...", "60s"]
        );
        let event = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "web"},
            "reason": "Started", "type": "Normal", "message": " Started ", "count": 2,
            "source": {"component": "kubelet", "host": "node1"},
            "firstTimestamp": "1970-01-01T00:00:00Z", "lastTimestamp": "1970-01-01T00:00:30Z"});
        let want = [
            "30s",
            "Normal",
            "Started",
            "pod/web",
            "",
            "kubelet, node1",
            "Started",
            "60s",
            "2",
            "e",
        ];
        assert_eq!(cells("", "events", event.clone()), want);
        assert_eq!(
            cells("events.k8s.io", "events", event),
            want,
            "both versions show the stored form"
        );
        let secret = json!({"metadata": {"name": "s"}, "data": {"a": "eA==", "b": "eA=="}});
        assert_eq!(cells("", "secrets", secret), ["s", "Opaque", "2", "60s"]);
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "x"}, "binaryData": {"b": "eA=="}});
        assert_eq!(cells("", "configmaps", cm), ["c", "2", "60s"]);
        assert_eq!(
            cells("", "namespaces", json!({"metadata": {"name": "ns"}})),
            ["ns", "Active", "60s"]
        );
        let lease = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "node1"}});
        assert_eq!(
            cells("coordination.k8s.io", "leases", lease),
            ["l", "node1", "60s"]
        );
        // An object its kind cannot decode still shows its name.
        let broken = json!({"metadata": {"name": "x"}, "data": 5});
        assert_eq!(cells("", "configmaps", broken), ["x", "", ""]);
    }

    #[test]
    fn unknown_fields_are_listed_with_their_paths() {
        let (known, unknown) = decode_as::<podvisor_core::corev1::ConfigMap>(
            &json!({"metadata": {"name": "a", "labelz": {}}, "data": {"k": "v"}, "x": null}),
        )
        .unwrap();
        assert_eq!(unknown, vec!["metadata.labelz".to_string()]);
        assert_eq!(known["data"]["k"], "v");
        assert!(decode_as::<podvisor_core::corev1::ConfigMap>(&json!({"data": 1})).is_err());
    }
}
