//! ControllerRevisions: created, numbered, trimmed, collisions (rule 5.7).

use super::*;

// === Rule 5.7: revisions ===

fn revision(ds: &DaemonSet, name: &str, number: i64, hash: &str) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(&[(REVISION_HASH, hash)])),
            ..Default::default()
        },
        data: Some(
            podvisor_core::k8s_openapi::apimachinery::pkg::runtime::RawExtension(
                serde_json::json!({"spec": {"template": {"n": name, "$patch": "replace"}}}),
            ),
        ),
        revision: number,
    }
    .with_owner(ds)
}

trait WithOwner {
    fn with_owner(self, ds: &DaemonSet) -> Self;
}

impl WithOwner for ControllerRevision {
    fn with_owner(mut self, ds: &DaemonSet) -> Self {
        self.metadata.owner_references = Some(vec![
            Owner {
                api_version: "apps/v1",
                kind: "DaemonSet",
                meta: &ds.metadata,
            }
            .controller_ref(),
        ]);
        self
    }
}

#[test]
fn revisions_are_created_numbered_and_trimmed() {
    let mut ds = daemon_set();
    spec_mut(&mut ds).revision_history_limit = Some(2);
    let old: Vec<ControllerRevision> = (1..=4)
        .map(|i| revision(&ds, &format!("agent-r{i}"), i, &format!("h{i}")))
        .collect();
    // A pod still carries h1: that revision stays.
    let pods = [pod_with_hash(&ds, "p", "n1", "h1", 0, Some(0))];
    let p = plan(
        &ds,
        &[node("n1", &[], &[])],
        &pods,
        &old,
        &FailedPodBackoff::default(),
        at(0),
    );
    let rev = p.revision.as_ref().unwrap();
    let hash = crate::hash::compute_hash(&ds.spec.as_ref().unwrap().template, None);
    assert_eq!(
        rev.metadata.name.as_deref(),
        Some(format!("agent-{hash}").as_str())
    );
    assert_eq!(rev.revision, 5);
    assert_eq!(rev.data.as_ref().unwrap().0, history::template_patch(&ds));
    assert_eq!(
        rev.data.as_ref().unwrap().0["spec"]["template"]["$patch"],
        "replace"
    );
    assert_eq!(rev.metadata.labels.as_ref().unwrap()["app"], "agent");
    assert_eq!(p.revisions_delete, ["agent-r2", "agent-r3"]);
    // The pod is of an older revision: rolling update replaces it.
    assert_eq!(deleted(&p), ["p"]);

    // The current revision exists with a low number: raised; duplicates merged.
    let mut cur = rev.clone();
    cur.revision = 2;
    let mut dup = rev.clone();
    dup.metadata.name = Some("agent-dup".into());
    dup.metadata.labels = Some(labels(&[(REVISION_HASH, "dup")]));
    dup.revision = 1;
    let others = [revision(&ds, "agent-r4", 4, "h4")];
    let revs = [cur, dup, others[0].clone()];
    let pods = [pod_with_hash(&ds, "q", "n1", "dup", 0, Some(0))];
    let p = plan(
        &ds,
        &[node("n1", &[], &[])],
        &pods,
        &revs,
        &FailedPodBackoff::default(),
        at(0),
    );
    assert_eq!(p.revision, None);
    assert_eq!(
        p.renumber,
        Some(RevisionNumber {
            name: format!("agent-{hash}"),
            revision: 5
        })
    );
    assert_eq!(p.revisions_delete, ["agent-dup"]);
    assert_eq!(
        p.relabel,
        [PodRelabel {
            name: "q".into(),
            hash: hash.clone()
        }]
    );
}

#[test]
fn a_hash_collision_bumps_the_collision_count() {
    let ds = daemon_set();
    let hash = crate::hash::compute_hash(&ds.spec.as_ref().unwrap().template, None);
    let clash = revision(&ds, &format!("agent-{hash}"), 1, &hash);
    let p = plan(
        &ds,
        &[node("n1", &[], &[])],
        &[],
        &[clash],
        &FailedPodBackoff::default(),
        at(0),
    );
    assert!(p.create.is_empty() && p.revision.is_none());
    assert_eq!(p.status.unwrap().collision_count, Some(1));
}
