//! Updates and history: RollingUpdate with partition, OnDelete, revisions, rollback, trimming, collisions (rules 4.4, 4.9–4.11).

use super::*;

#[test]
fn rolling_update_replaces_one_pod_at_a_time_from_the_highest_ordinal() {
    let mut w = World::new(set(3));
    w.settle();
    let old = w.set.status.as_ref().unwrap().current_revision.clone().unwrap();
    update_template(&mut w, "nginx:2");
    let plan = w.sync();
    let new = plan
        .create_revision
        .as_ref()
        .unwrap()
        .metadata
        .name
        .clone()
        .unwrap();
    assert_eq!(plan.create_revision.as_ref().unwrap().revision, 2);
    assert_eq!(deleted(&plan), [("web-2", DeleteReason::Update)]);
    let status = plan.status.as_ref().unwrap();
    assert_eq!(status.current_revision.as_deref(), Some(old.as_str()));
    assert_eq!(status.update_revision.as_deref(), Some(new.as_str()));
    // Upstream counts the pod it just deleted out of currentReplicas.
    assert_eq!(status.current_replicas, Some(2));
    assert_eq!(status.observed_generation, Some(2));
    // Terminating: wait; gone: recreated at the new revision from the new template.
    assert!(w.sync().delete.is_empty());
    w.reap();
    let plan = w.sync();
    assert_eq!(names(&plan.create), ["web-2"]);
    assert_eq!(label(&plan.create[0], REVISION_LABEL), new);
    assert_eq!(
        plan.create[0].spec.as_ref().unwrap().containers[0]
            .image
            .as_deref(),
        Some("nginx:2")
    );
    // Not ready yet: the update waits.
    assert!(w.sync().delete.is_empty());
    w.ready("web-2");
    assert_eq!(deleted(&w.sync()), [("web-1", DeleteReason::Update)]);
    w.settle();
    // Rule 4.11: done, the update revision becomes current.
    let status = w.set.status.as_ref().unwrap();
    assert_eq!(status.current_revision.as_deref(), Some(new.as_str()));
    assert_eq!(status.current_replicas, Some(3));
    assert_eq!(status.updated_replicas, Some(3));
    assert!(w.pods.values().all(|p| label(p, REVISION_LABEL) == new));
}

#[test]
fn rolling_update_never_touches_ordinals_below_the_partition() {
    let mut s = set(3);
    spec_mut(&mut s)
        .update_strategy
        .as_mut()
        .unwrap()
        .rolling_update
        .as_mut()
        .unwrap()
        .partition = Some(2);
    let mut w = World::new(s);
    w.settle();
    let old = w.set.status.as_ref().unwrap().current_revision.clone().unwrap();
    update_template(&mut w, "nginx:2");
    w.settle();
    assert_eq!(
        label(&w.pods["web-2"], REVISION_LABEL),
        w.set.status.as_ref().unwrap().update_revision.as_deref().unwrap()
    );
    assert_eq!(label(&w.pods["web-0"], REVISION_LABEL), old);
    assert_eq!(label(&w.pods["web-1"], REVISION_LABEL), old);
    let status = w.set.status.clone().unwrap();
    assert_eq!(
        (status.current_replicas, status.updated_replicas),
        (Some(2), Some(1))
    );
    assert_eq!(status.current_revision.as_deref(), Some(old.as_str()));
    // A pod below the partition that is deleted comes back at the current revision, with the
    // current revision's template.
    w.phase("web-0", "Failed");
    w.sync();
    w.reap();
    let plan = w.sync();
    assert_eq!(label(&plan.create[0], REVISION_LABEL), old);
    assert_eq!(
        plan.create[0].spec.as_ref().unwrap().containers[0]
            .image
            .as_deref(),
        Some("nginx:1")
    );
}

#[test]
fn on_delete_never_deletes_for_updates_and_recreates_at_the_update_revision() {
    let mut s = set(2);
    spec_mut(&mut s).update_strategy = Some(StatefulSetUpdateStrategy {
        type_: Some("OnDelete".into()),
        rolling_update: None,
    });
    let mut w = World::new(s);
    w.settle();
    let old = w.set.status.as_ref().unwrap().current_revision.clone().unwrap();
    update_template(&mut w, "nginx:2");
    let plan = w.sync();
    assert!(plan.delete.is_empty());
    let new = plan.update_revision.clone();
    // The user deletes web-0: it comes back at the update revision.
    w.pod_mut("web-0").metadata.deletion_timestamp = Some(Time(at(w.now)));
    w.reap();
    let plan = w.sync();
    assert_eq!(label(&plan.create[0], REVISION_LABEL), new);
    w.pod_mut("web-1").metadata.deletion_timestamp = Some(Time(at(w.now)));
    w.settle();
    // Rule 4.10: currentRevision is not advanced under OnDelete in 1.32–1.35.
    let status = w.set.status.as_ref().unwrap();
    assert_eq!(status.updated_replicas, Some(2));
    assert_eq!(status.current_revision.as_deref(), Some(old.as_str()));
}

#[test]
fn rolling_back_bumps_the_equal_older_revision_and_trims_history() {
    let mut s = set(1);
    spec_mut(&mut s).revision_history_limit = Some(1);
    let mut w = World::new(s);
    w.settle();
    let first = w.set.status.as_ref().unwrap().current_revision.clone().unwrap();
    update_template(&mut w, "nginx:2");
    w.settle();
    update_template(&mut w, "nginx:1");
    let plan = w.sync();
    assert!(plan.create_revision.is_none());
    assert_eq!(
        plan.bump_revision,
        Some(RevisionBump {
            name: first.clone(),
            revision: 3
        })
    );
    assert_eq!(plan.update_revision, first);
    w.settle();
    assert_eq!(
        w.revisions.len(),
        2,
        "the limit keeps one revision beside the live one"
    );
    update_template(&mut w, "nginx:3");
    w.settle();
    update_template(&mut w, "nginx:4");
    w.settle();
    let images: Vec<String> = w
        .revisions
        .iter()
        .map(|r| {
            revision_template(r).unwrap().spec.unwrap().containers[0]
                .image
                .clone()
                .unwrap()
        })
        .collect();
    assert_eq!(images, ["nginx:3", "nginx:4"]);
}

#[test]
fn history_trimming_spares_current_update_and_pod_revisions() {
    let s = set(0);
    let rev = |n: i64| ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("web-r{n}")),
            ..Default::default()
        },
        data: Some(RawExtension(revision_data(&template(&format!("img:{n}"))))),
        revision: n,
    };
    let revisions: Vec<ControllerRevision> = (1..=13).map(rev).collect();
    let mut in_use = Pod::default();
    in_use.metadata.name = Some("web-7".into());
    in_use.metadata.labels = Some([(REVISION_LABEL.to_string(), "web-r1".to_string())].into());
    let plan = plan(&s, &[in_use], &revisions, at(0));
    // 13 old revisions, one in use by a pod, plus the new update revision (not yet in the
    // list): 12 trimmable, the limit keeps 10.
    assert!(plan.create_revision.is_some());
    assert_eq!(plan.delete_revisions, ["web-r2", "web-r3"]);
}

#[test]
fn without_rolling_update_pods_below_current_replicas_keep_the_current_revision() {
    let mut s = set(3);
    spec_mut(&mut s).update_strategy.as_mut().unwrap().rolling_update = None;
    let mut w = World::new(s);
    w.settle();
    let old = w.set.status.as_ref().unwrap().current_revision.clone().unwrap();
    update_template(&mut w, "nginx:2");
    // The walk starts at the top (no partition): web-2 goes first.
    assert_eq!(deleted(&w.sync()), [("web-2", DeleteReason::Update)]);
    // status.currentReplicas is now 2: a missing web-1 would come back at the current revision,
    // a missing web-2 at the update revision.
    w.reap();
    w.pod_mut("web-1").metadata.deletion_timestamp = Some(Time(at(w.now)));
    w.reap();
    let plan = w.sync();
    assert_eq!(names(&plan.create), ["web-1"]);
    assert_eq!(label(&plan.create[0], REVISION_LABEL), old);
}

#[test]
fn a_current_revision_without_a_template_counts_as_absent() {
    let mut w = World::new(set(1));
    w.settle();
    let current = w.set.status.as_ref().unwrap().current_revision.clone().unwrap();
    update_template(&mut w, "nginx:2");
    for r in &mut w.revisions {
        if r.metadata.name.as_deref() == Some(current.as_str()) {
            r.data = Some(RawExtension(serde_json::json!({"spec": 7})));
        }
    }
    let plan = w.plan();
    assert_eq!(plan.current_revision, plan.update_revision);
    assert_eq!(deleted(&plan), [("web-0", DeleteReason::Update)]);
}

#[test]
fn a_name_collision_bumps_the_collision_count() {
    let w = World::new(set(1));
    let first = w.plan();
    let name = first.update_revision.clone();
    // A revision with our name but other data.
    let mut other = first.create_revision.clone().unwrap();
    other.data = Some(RawExtension(revision_data(&template("other"))));
    let plan = plan(&w.set, &[], &[other], at(0));
    let rev = plan.create_revision.as_ref().unwrap();
    assert_ne!(rev.metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(rev.revision, 2);
    assert_eq!(plan.status.as_ref().unwrap().collision_count, Some(1));
}
