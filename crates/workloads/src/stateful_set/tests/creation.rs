//! Creation and scale-down: identity, ordinals, OrderedReady and Parallel, failed pods (rules 4.2, 4.5–4.8).

use super::*;

#[test]
fn first_sync_creates_the_revision_and_pod_0_with_its_identity() {
    let w = World::new(set(3));
    let plan = w.plan();
    let rev = plan.create_revision.as_ref().expect("a revision");
    let name = rev.metadata.name.clone().unwrap();
    let h = &rev.metadata.labels.as_ref().unwrap()[HASH_LABEL];
    assert_eq!(name, format!("web-{h}"));
    assert_eq!(rev.revision, 1);
    assert_eq!(rev.metadata.labels.as_ref().unwrap()["app"], "web");
    assert_eq!(
        rev.metadata.owner_references.as_ref().unwrap()[0].kind,
        "StatefulSet"
    );
    // The patch: spec.template with `$patch: replace`, nothing else.
    let data = &rev.data.as_ref().unwrap().0;
    assert_eq!(data.as_object().unwrap().len(), 1);
    assert_eq!(data["spec"].as_object().unwrap().len(), 1);
    assert_eq!(data["spec"]["template"]["$patch"], "replace");
    assert_eq!(
        data["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1"
    );
    assert_eq!(revision_template(rev), Some(template("nginx:1")));
    // The hash is of the patch bytes with the collision count.
    let bytes = serde_json::to_vec(data).unwrap();
    assert_eq!(*h, hash::hash_bytes(&bytes, Some(0)));

    assert_eq!(names(&plan.create), ["web-0"]);
    let pod = &plan.create[0];
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(label(pod, POD_NAME_LABEL), "web-0");
    assert_eq!(label(pod, POD_INDEX_LABEL), "0");
    assert_eq!(label(pod, REVISION_LABEL), name);
    assert_eq!(label(pod, "app"), "web");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.name.as_str(), owner.uid.as_str()), ("web", "set-uid"));
    assert_eq!(owner.controller, Some(true));

    assert_eq!(
        plan.events,
        [Event::normal(
            "SuccessfulCreate",
            "create Pod web-0 in StatefulSet web successful"
        )]
    );
    let status = plan.status.as_ref().unwrap();
    assert_eq!(status.current_revision.as_deref(), Some(name.as_str()));
    assert_eq!(status.update_revision.as_deref(), Some(name.as_str()));
    assert_eq!(status.collision_count, Some(0));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.replicas, 0);
}

#[test]
fn ordinals_start_at_spec_ordinals_start() {
    let mut s = set(2);
    spec_mut(&mut s).ordinals = Some(StatefulSetOrdinals { start: Some(5) });
    let mut w = World::new(s);
    w.settle();
    assert_eq!(w.pods.keys().collect::<Vec<_>>(), ["web-5", "web-6"]);
    assert_eq!(label(&w.pods["web-6"], POD_INDEX_LABEL), "6");
}

#[test]
fn ordered_ready_creates_the_next_pod_only_after_the_previous_is_running_ready_and_available() {
    let mut s = set(3);
    spec_mut(&mut s).min_ready_seconds = Some(10);
    let mut w = World::new(s);
    assert_eq!(names(&w.sync().create), ["web-0"]);
    // Pending: wait.
    let plan = w.sync();
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(10)));
    // Running and Ready, but not for minReadySeconds yet: wait.
    w.ready("web-0");
    w.now += 5;
    assert!(w.sync().create.is_empty());
    w.now += 5;
    assert_eq!(names(&w.sync().create), ["web-1"]);
    // Running but not Ready: wait.
    w.phase("web-1", "Running");
    w.now += 100;
    assert!(w.sync().create.is_empty());
    w.ready("web-1");
    w.now += 10;
    let plan = w.sync();
    assert_eq!(names(&plan.create), ["web-2"]);
    w.ready("web-2");
    w.now += 10;
    let plan = w.sync();
    assert_eq!(plan.status.as_ref().unwrap().available_replicas, Some(3));
    assert_eq!(plan.requeue_after, None);
}

#[test]
fn a_failed_pod_is_deleted_and_recreated_once_gone() {
    let mut w = World::new(set(2));
    w.settle();
    w.phase("web-0", "Failed");
    let plan = w.sync();
    assert_eq!(deleted(&plan), [("web-0", DeleteReason::Finished)]);
    assert!(plan.create.is_empty());
    assert_eq!(
        plan.events,
        [Event::normal(
            "SuccessfulDelete",
            "delete Pod web-0 in StatefulSet web successful"
        )]
    );
    // Still there, being deleted: not deleted again, not recreated, nothing else happens.
    let plan = w.sync();
    assert!(plan.delete.is_empty() && plan.create.is_empty());
    w.reap();
    assert_eq!(names(&w.sync().create), ["web-0"]);
    // Succeeded pods are recreated too.
    w.settle();
    w.phase("web-1", "Succeeded");
    assert_eq!(deleted(&w.sync()), [("web-1", DeleteReason::Finished)]);
}

#[test]
fn parallel_creates_and_deletes_at_once_and_caps_creates_per_plan() {
    let mut s = set(3);
    spec_mut(&mut s).pod_management_policy = Some("Parallel".into());
    let mut w = World::new(s);
    assert_eq!(names(&w.sync().create), ["web-0", "web-1", "web-2"]);
    // A failed pod is deleted without waiting for the others to be ready.
    w.phase("web-1", "Failed");
    let plan = w.sync();
    assert_eq!(deleted(&plan), [("web-1", DeleteReason::Finished)]);
    w.reap();
    assert_eq!(names(&w.sync().create), ["web-1"]);
    // Scale-down deletes every condemned pod at once, even unhealthy ones.
    spec_mut(&mut w.set).replicas = Some(1);
    let plan = w.sync();
    assert_eq!(
        deleted(&plan),
        [
            ("web-2", DeleteReason::ScaleDown),
            ("web-1", DeleteReason::ScaleDown)
        ]
    );

    let mut big = set(1200);
    spec_mut(&mut big).pod_management_policy = Some("Parallel".into());
    let first = super::plan(&big, &[], &[], at(0));
    assert_eq!(first.create.len(), MAX_BATCH_SIZE);
    assert_eq!(first.events.len(), MAX_BATCH_SIZE);
}

#[test]
fn ordered_scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
    let mut w = World::new(set(3));
    w.settle();
    spec_mut(&mut w.set).replicas = Some(1);
    let plan = w.sync();
    assert_eq!(deleted(&plan), [("web-2", DeleteReason::ScaleDown)]);
    // web-2 is terminating: wait for it.
    assert!(w.sync().delete.is_empty());
    w.reap();
    assert_eq!(deleted(&w.sync()), [("web-1", DeleteReason::ScaleDown)]);
    w.reap();
    let plan = w.sync();
    assert!(plan.delete.is_empty());
    assert_eq!(plan.status.as_ref().unwrap().replicas, 1);
}

#[test]
fn ordered_scale_down_waits_for_an_unhealthy_pod_unless_it_is_the_first_unhealthy() {
    let mut w = World::new(set(3));
    w.settle();
    spec_mut(&mut w.set).replicas = Some(1);
    // web-1 is the first unhealthy pod; web-2 is healthy: web-2 goes.
    w.phase("web-1", "Running");
    assert_eq!(deleted(&w.sync()), [("web-2", DeleteReason::ScaleDown)]);
    w.reap();
    // Now web-1 is both the highest and the first unhealthy: it goes.
    assert_eq!(deleted(&w.sync()), [("web-1", DeleteReason::ScaleDown)]);

    let mut w = World::new(set(3));
    w.settle();
    spec_mut(&mut w.set).replicas = Some(1);
    w.phase("web-1", "Pending");
    w.phase("web-2", "Pending");
    // web-2 is unhealthy but web-1 is the first unhealthy: blocked.
    assert!(w.sync().delete.is_empty());
}

#[test]
fn ordered_scale_down_waits_for_the_replicas_in_range() {
    let mut w = World::new(set(3));
    w.settle();
    spec_mut(&mut w.set).replicas = Some(2);
    w.phase("web-0", "Pending");
    assert!(w.sync().delete.is_empty());
}
