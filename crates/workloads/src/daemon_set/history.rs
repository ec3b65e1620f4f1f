//! A DaemonSet's ControllerRevisions (rule 5.7): which one is current, the one to create when
//! none is, duplicates to merge, the revision number to raise, and old ones beyond
//! `revisionHistoryLimit`.

use podvisor_core::appsv1::{ControllerRevision, DaemonSet};
use podvisor_core::corev1::Pod;
use podvisor_core::k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use podvisor_core::metav1::ObjectMeta;
use serde_json::{Map, Value};

use crate::hash::compute_hash;
use crate::owner::Owner;

/// The label with a revision's hash, on the revision and on its pods.
pub const REVISION_HASH: &str = "controller-revision-hash";

/// The default `revisionHistoryLimit` (rule 5.1).
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// A revision whose number is raised to the newest (`revision` = max old + 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionNumber {
    /// The revision's name.
    pub name: String,
    /// Its new `revision`.
    pub revision: i64,
}

/// A pod whose `controller-revision-hash` label is set to the kept revision's hash (a merge
/// patch), when duplicate current revisions are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRelabel {
    /// The pod's name.
    pub name: String,
    /// The hash to write.
    pub hash: String,
}

/// What the history step decides.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum History {
    /// A revision name `<ds>-<hash>` is taken by another template: raise
    /// `status.collisionCount` and do nothing else.
    Collision,
    /// The current revision's hash and the changes to the revisions.
    Current {
        hash: String,
        create: Option<Box<ControllerRevision>>,
        renumber: Option<RevisionNumber>,
        duplicates: Vec<String>,
        relabel: Vec<PodRelabel>,
        /// Names of the revisions that are not current, with their revision number and hash.
        old: Vec<(String, i64, String)>,
    },
}

/// `getPatch`: `{"spec":{"template":{<template>,"$patch":"replace"}}}`.
pub fn template_patch(ds: &DaemonSet) -> Value {
    let template = ds
        .spec
        .as_ref()
        .map(|s| serde_json::to_value(&s.template).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    let mut template = match template {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    template.insert("$patch".into(), Value::String("replace".into()));
    let mut spec = Map::new();
    spec.insert("template".into(), Value::Object(template));
    let mut root = Map::new();
    root.insert("spec".into(), Value::Object(spec));
    Value::Object(root)
}

fn revision_hash(r: &ControllerRevision) -> String {
    r.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH))
        .cloned()
        // Upstream labels a revision without it with its name.
        .unwrap_or_else(|| r.metadata.name.clone().unwrap_or_default())
}

fn pod_hash(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH))
        .map(String::as_str)
}

/// `constructHistory` (rule 5.7) over the revisions `ds` controls and its pods.
pub(crate) fn construct(ds: &DaemonSet, revisions: &[ControllerRevision], pods: &[Pod]) -> History {
    let patch = template_patch(ds);
    let (current, old): (Vec<&ControllerRevision>, Vec<&ControllerRevision>) = revisions
        .iter()
        .partition(|r| r.data.as_ref().is_some_and(|d| d.0 == patch));
    let next = old
        .iter()
        .map(|r| r.revision)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let old_list = old
        .iter()
        .map(|r| {
            (
                r.metadata.name.clone().unwrap_or_default(),
                r.revision,
                revision_hash(r),
            )
        })
        .collect();
    let Some(keep) = current
        .iter()
        .copied()
        .reduce(|a, b| if b.revision >= a.revision { b } else { a })
    else {
        let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&template, collisions);
        let ds_name = ds.metadata.name.as_deref().unwrap_or("");
        let name = format!("{ds_name}-{hash}");
        if revisions
            .iter()
            .any(|r| r.metadata.name.as_deref() == Some(name.as_str()))
        {
            return History::Collision;
        }
        let mut labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
        labels.insert(REVISION_HASH.to_string(), hash.clone());
        let owner = Owner {
            api_version: "apps/v1",
            kind: "DaemonSet",
            meta: &ds.metadata,
        };
        let create = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: ds.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: ds.metadata.annotations.clone(),
                owner_references: Some(vec![owner.controller_ref()]),
                ..Default::default()
            },
            data: Some(RawExtension(patch)),
            revision: next,
        };
        return History::Current {
            hash,
            create: Some(Box::new(create)),
            renumber: None,
            duplicates: Vec::new(),
            relabel: Vec::new(),
            old: old_list,
        };
    };
    let hash = revision_hash(keep);
    let duplicates: Vec<String> = current
        .iter()
        .filter(|r| r.metadata.name != keep.metadata.name)
        .filter_map(|r| r.metadata.name.clone())
        .collect();
    let relabel = if duplicates.is_empty() {
        Vec::new()
    } else {
        pods.iter()
            .filter(|p| pod_hash(p) != Some(hash.as_str()))
            .map(|p| PodRelabel {
                name: p.metadata.name.clone().unwrap_or_default(),
                hash: hash.clone(),
            })
            .collect()
    };
    let renumber = (keep.revision < next).then(|| RevisionNumber {
        name: keep.metadata.name.clone().unwrap_or_default(),
        revision: next,
    });
    History::Current {
        hash,
        create: None,
        renumber,
        duplicates,
        relabel,
        old: old_list,
    }
}

/// `cleanupHistory`: old revisions beyond `limit`, lowest revision first, skipping any whose
/// hash a pod (even a deleted, finished one) still carries.
pub(crate) fn trim(old: &[(String, i64, String)], limit: i32, pods: &[Pod]) -> Vec<String> {
    let keep = usize::try_from(limit.max(0)).unwrap_or(0);
    let Some(mut to_kill) = old.len().checked_sub(keep).filter(|n| *n > 0) else {
        return Vec::new();
    };
    let live: std::collections::BTreeSet<&str> = pods.iter().filter_map(pod_hash).collect();
    let mut sorted: Vec<&(String, i64, String)> = old.iter().collect();
    sorted.sort_by_key(|(name, revision, _)| (*revision, name.clone()));
    let mut out = Vec::new();
    for (name, _, hash) in sorted {
        if to_kill == 0 {
            break;
        }
        if live.contains(hash.as_str()) {
            continue;
        }
        out.push(name.clone());
        to_kill -= 1;
    }
    out
}
