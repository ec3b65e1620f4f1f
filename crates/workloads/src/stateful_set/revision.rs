//! ControllerRevisions of a StatefulSet (rule 4.4): the patch a revision holds, its name and
//! hash, which revision is current and which is the update, and the history to trim.

use std::collections::BTreeSet;

use podvisor_core::appsv1::{ControllerRevision, StatefulSet};
use podvisor_core::corev1::PodTemplateSpec;
use podvisor_core::k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use podvisor_core::metav1::ObjectMeta;
use serde_json::Value;

use super::{Params, RevisionBump, owner};
use crate::hash;

/// The label holding a ControllerRevision's hash (rule 4.4).
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// A revision's name is `<set>-<hash>` with the set's name cut to this many bytes (rule 4.4).
const MAX_REVISION_PREFIX: usize = 223;

/// A revision's `data` as upstream's `getPatch` builds it: a strategic-merge patch holding only
/// `spec.template`, marked `$patch: replace` (rule 4.4).
pub fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| Value::Object(Default::default()));
    if let Value::Object(m) = &mut t {
        m.insert("$patch".into(), Value::String("replace".into()));
    }
    serde_json::json!({ "spec": { "template": t } })
}

/// The pod template a revision holds, if its data is a patch as [`revision_data`] writes.
pub fn revision_template(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = revision.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// `<set>-<hash>` with the set's name cut to 223 bytes (rule 4.4).
fn revision_name(set: &str, hash: &str) -> String {
    let mut cut = set.len().min(MAX_REVISION_PREFIX);
    while !set.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hash}", &set[..cut])
}

/// The outcome of rule 4.4 for this sync.
pub(super) struct Revisions {
    pub(super) current: String,
    pub(super) update: String,
    /// The current revision's template when it differs from the spec's.
    pub(super) current_template: Option<PodTemplateSpec>,
    pub(super) collision_count: i32,
    pub(super) create: Option<ControllerRevision>,
    pub(super) bump: Option<RevisionBump>,
}

/// `getStatefulSetRevisions`: the update revision (reused, renumbered or new) and the current
/// one (the revision named in status, or the update revision).
pub(super) fn choose_revisions(
    set: &StatefulSet,
    p: &Params<'_>,
    revisions: &[&ControllerRevision],
) -> Revisions {
    let data = revision_data(p.template);
    let next = revisions.last().map_or(1, |r| r.revision.saturating_add(1));
    let status = set.status.as_ref();
    let mut collision_count = status.and_then(|s| s.collision_count).unwrap_or(0);
    let equal = revisions
        .iter()
        .rev()
        .find(|r| r.data.as_ref().is_some_and(|d| d.0 == data));
    let (update, create, bump) = match equal {
        Some(r)
            if revisions
                .last()
                .is_some_and(|l| l.metadata.name == r.metadata.name) =>
        {
            (r.metadata.name.clone().unwrap_or_default(), None, None)
        }
        Some(r) => {
            let name = r.metadata.name.clone().unwrap_or_default();
            let bump = RevisionBump {
                name: name.clone(),
                revision: next,
            };
            (name, None, Some(bump))
        }
        None => {
            let bytes = serde_json::to_vec(&data).unwrap_or_default();
            // A known revision with our name holds other data: a hash collision. Upstream learns
            // this from AlreadyExists; each try takes a fresh count, so a free name turns up
            // within len + 1 tries.
            let mut h = hash::hash_bytes(&bytes, Some(collision_count));
            for _ in 0..revisions.len() {
                let name = revision_name(p.name, &h);
                if !revisions
                    .iter()
                    .any(|r| r.metadata.name.as_deref() == Some(&name))
                {
                    break;
                }
                collision_count = collision_count.wrapping_add(1);
                h = hash::hash_bytes(&bytes, Some(collision_count));
            }
            let name = revision_name(p.name, &h);
            (
                name.clone(),
                Some(new_revision(set, p, name, h, data, next)),
                None,
            )
        }
    };
    let stored_current = status.and_then(|s| s.current_revision.as_deref());
    let current = revisions
        .iter()
        .filter(|r| r.metadata.name.as_deref() != Some(update.as_str()))
        .find(|r| stored_current.is_some_and(|c| r.metadata.name.as_deref() == Some(c)))
        .and_then(|r| Some((r.metadata.name.clone()?, revision_template(r)?)));
    let (current, current_template) = match current {
        Some((name, template)) => (name, Some(template)),
        None => (update.clone(), None),
    };
    Revisions {
        current,
        update,
        current_template,
        collision_count,
        create,
        bump,
    }
}

/// `newRevision`: labelled with the template's labels and the hash, annotated with the set's
/// annotations, controlled by the set.
fn new_revision(
    set: &StatefulSet,
    p: &Params<'_>,
    name: String,
    hash: String,
    data: Value,
    revision: i64,
) -> ControllerRevision {
    let mut labels = p
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.to_string(), hash);
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(p.namespace.to_string()),
            labels: Some(labels),
            annotations: set.metadata.annotations.clone().filter(|a| !a.is_empty()),
            owner_references: Some(vec![owner(set).controller_ref()]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// `truncateHistory`: revisions beyond `revisionHistoryLimit`, lowest first, never the current
/// or update revision nor one a pod is labelled with (rule 4.4).
pub(super) fn trim_history(
    p: &Params<'_>,
    sorted: &[&ControllerRevision],
    live: &BTreeSet<&str>,
) -> Vec<String> {
    let history: Vec<&str> = sorted
        .iter()
        .filter_map(|r| r.metadata.name.as_deref())
        .filter(|n| !live.contains(n))
        .collect();
    let excess = history.len().saturating_sub(p.history_limit);
    history.into_iter().take(excess).map(str::to_string).collect()
}
