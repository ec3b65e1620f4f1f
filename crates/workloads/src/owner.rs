//! Controller references and claiming (rules 1.1–1.3): who controls an object, and what a
//! controller does with each object of its dependent kind in its namespace: keep, adopt,
//! release or ignore it.

use podvisor_core::metav1::{LabelSelector, ObjectMeta, OwnerReference};

use crate::selector;

/// The owner an object's controller reference names, as a controller knows itself.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// `apps/v1`, `batch/v1`.
    pub api_version: &'a str,
    /// `ReplicaSet`, `Deployment`, ...
    pub kind: &'a str,
    /// The owner's metadata (name, namespace, UID, deletion timestamp).
    pub meta: &'a ObjectMeta,
}

impl Owner<'_> {
    /// The owner's UID (`""` for an owner not yet stored).
    pub fn uid(&self) -> &str {
        self.meta.uid.as_deref().unwrap_or("")
    }

    /// The owner's name.
    pub fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or("")
    }

    /// Whether the owner is being deleted.
    pub fn deleting(&self) -> bool {
        self.meta.deletion_timestamp.is_some()
    }

    /// The controller reference an object it creates carries (rule 1.1).
    pub fn controller_ref(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.to_string(),
            kind: self.kind.to_string(),
            name: self.name().to_string(),
            uid: self.uid().to_string(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// The object's controller reference (the one entry with `controller: true`), if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// Whether `meta`'s controller is the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// What a controller does with one object of its dependent kind (rule 1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours and selected: keep it.
    Owned,
    /// An orphan we select: patch our controller reference onto it.
    Adopt,
    /// Ours but no longer selected: patch our reference off it.
    Release,
    /// Someone else's, or not ours to take.
    Ignore,
}

/// The claim `owner` with `selector` makes on an object with `meta` (rule 1.3): a controlled
/// object is kept while selected (even while the owner is deleted), released when not
/// (unless the owner is being deleted); an orphan is adopted only by a live owner, when
/// selected, not itself being deleted, and in the owner's namespace.
pub fn claim(owner: Owner<'_>, selector: &LabelSelector, meta: &ObjectMeta) -> Claim {
    let selected = selector::matches(selector, meta.labels.as_ref());
    match controller_of(meta) {
        Some(r) if r.uid != owner.uid() => Claim::Ignore,
        Some(_) if selected => Claim::Owned,
        Some(_) if owner.deleting() => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner.deleting()
            || !selected
            || meta.deletion_timestamp.is_some()
            || meta.namespace != owner.meta.namespace =>
        {
            Claim::Ignore
        }
        None => Claim::Adopt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podvisor_core::metav1::Time;

    fn meta(labels: &[(&str, &str)], controller: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            namespace: Some("default".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            owner_references: controller.map(|uid| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "rs".into(),
                    uid: uid.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn claims_follow_the_controller_reference_and_the_selector() {
        let owner_meta = ObjectMeta {
            name: Some("rs".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            ..Default::default()
        };
        let owner = Owner {
            api_version: "apps/v1",
            kind: "ReplicaSet",
            meta: &owner_meta,
        };
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        };
        assert_eq!(
            claim(owner, &sel, &meta(&[("app", "web")], Some("u1"))),
            Claim::Owned
        );
        assert_eq!(
            claim(owner, &sel, &meta(&[("app", "db")], Some("u1"))),
            Claim::Release
        );
        assert_eq!(
            claim(owner, &sel, &meta(&[("app", "web")], Some("u2"))),
            Claim::Ignore
        );
        assert_eq!(claim(owner, &sel, &meta(&[("app", "web")], None)), Claim::Adopt);
        assert_eq!(claim(owner, &sel, &meta(&[("app", "db")], None)), Claim::Ignore);
        let mut deleting_pod = meta(&[("app", "web")], None);
        deleting_pod.deletion_timestamp = Some(Time(Default::default()));
        assert_eq!(claim(owner, &sel, &deleting_pod), Claim::Ignore);
        let mut elsewhere = meta(&[("app", "web")], None);
        elsewhere.namespace = Some("other".into());
        assert_eq!(claim(owner, &sel, &elsewhere), Claim::Ignore);

        let mut deleting_owner = owner_meta.clone();
        deleting_owner.deletion_timestamp = Some(Time(Default::default()));
        let owner = Owner {
            meta: &deleting_owner,
            ..owner
        };
        assert_eq!(
            claim(owner, &sel, &meta(&[("app", "web")], Some("u1"))),
            Claim::Owned
        );
        assert_eq!(
            claim(owner, &sel, &meta(&[("app", "db")], Some("u1"))),
            Claim::Ignore
        );
        assert_eq!(claim(owner, &sel, &meta(&[("app", "web")], None)), Claim::Ignore);
        let r = owner.controller_ref();
        assert_eq!((r.controller, r.block_owner_deletion), (Some(true), Some(true)));
        assert_eq!((r.kind.as_str(), r.uid.as_str()), ("ReplicaSet", "u1"));
    }
}
