//! Tests of the StatefulSet rules (section 4), with a simulated pod population.

use super::*;
use crate::hash;
use podvisor_core::appsv1::{
    RollingUpdateStatefulSetStrategy, StatefulSetOrdinals, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use podvisor_core::corev1::{Container, PodCondition, PodSpec, PodStatus};
use podvisor_core::k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use podvisor_core::metav1::ObjectMeta;
use podvisor_core::metav1::{LabelSelector, Time};
use proptest::prelude::*;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

/// StatefulSet `web` in `default` with `replicas`, defaults otherwise (as the API server stores
/// it: RollingUpdate with partition 0).
fn set(replicas: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("set-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            service_name: Some("web".into()),
            template: template("nginx:1"),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(0),
                    max_unavailable: None,
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn spec_mut(set: &mut StatefulSet) -> &mut StatefulSetSpec {
    set.spec.as_mut().unwrap()
}

/// A fake API: the set, its pods and revisions, and a clock, that carries plans out.
#[derive(Debug, Clone)]
struct World {
    set: StatefulSet,
    pods: BTreeMap<String, Pod>,
    revisions: Vec<ControllerRevision>,
    now: i64,
    next_uid: u64,
}

impl World {
    fn new(set: StatefulSet) -> Self {
        World {
            set,
            pods: BTreeMap::new(),
            revisions: Vec::new(),
            now: 1000,
            next_uid: 0,
        }
    }

    fn plan(&self) -> StatefulSetPlan {
        let pods: Vec<Pod> = self.pods.values().cloned().collect();
        plan(&self.set, &pods, &self.revisions, at(self.now))
    }

    /// Carries `plan` out as the shell would, every call succeeding.
    fn apply(&mut self, plan: &StatefulSetPlan) {
        if let Some(r) = &plan.create_revision {
            self.revisions.push(r.clone());
        }
        if let Some(b) = &plan.bump_revision {
            let r = self
                .revisions
                .iter_mut()
                .find(|r| r.metadata.name.as_deref() == Some(b.name.as_str()))
                .unwrap();
            r.revision = b.revision;
        }
        for pod in &plan.create {
            let mut pod = pod.clone();
            self.next_uid += 1;
            pod.metadata.uid = Some(format!("uid-{}", self.next_uid));
            pod.metadata.creation_timestamp = Some(Time(at(self.now)));
            pod.status = Some(PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            });
            let name = pod.metadata.name.clone().unwrap();
            assert!(self.pods.insert(name.clone(), pod).is_none(), "{name} exists");
        }
        for u in &plan.update {
            let pod = self.pods.get_mut(&u.name).unwrap();
            pod.metadata
                .labels
                .get_or_insert_default()
                .extend(u.labels.clone());
        }
        for d in &plan.delete {
            let pod = self.pods.get_mut(&d.name).unwrap();
            assert_eq!(pod.metadata.uid.as_deref(), Some(d.uid.as_str()));
            pod.metadata.deletion_timestamp = Some(Time(at(self.now)));
        }
        if let Some(s) = &plan.status {
            self.set.status = Some(s.clone());
        }
        self.revisions
            .retain(|r| !plan.delete_revisions.contains(r.metadata.name.as_ref().unwrap()));
    }

    fn sync(&mut self) -> StatefulSetPlan {
        let plan = self.plan();
        self.apply(&plan);
        plan
    }

    fn pod_mut(&mut self, name: &str) -> &mut Pod {
        self.pods.get_mut(name).unwrap()
    }

    /// The pod runs and is ready since now.
    fn ready(&mut self, name: &str) {
        let now = self.now;
        let status = self.pod_mut(name).status.get_or_insert_default();
        status.phase = Some("Running".into());
        status.conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(at(now))),
            ..Default::default()
        }]);
    }

    fn phase(&mut self, name: &str, phase: &str) {
        let status = self.pod_mut(name).status.get_or_insert_default();
        status.phase = Some(phase.into());
        status.conditions = None;
    }

    /// Terminating pods finish terminating.
    fn reap(&mut self) {
        self.pods.retain(|_, p| p.metadata.deletion_timestamp.is_none());
    }

    /// Syncs, lets terminating pods go and makes every pod ready (failed ones too: the user
    /// fixed them), a minute apart, until nothing changes.
    fn settle(&mut self) {
        for _ in 0..100 {
            self.now += 60;
            let plan = self.sync();
            let before = self.pods.clone();
            self.reap();
            let names: Vec<String> = self.pods.keys().cloned().collect();
            for n in names {
                if !running_and_ready(&self.pods[&n]) {
                    self.ready(&n);
                }
            }
            let quiet = plan.create.is_empty()
                && plan.delete.is_empty()
                && plan.update.is_empty()
                && plan.status.is_none();
            if quiet && before == self.pods {
                return;
            }
        }
        panic!("did not settle");
    }
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
}

fn deleted(plan: &StatefulSetPlan) -> Vec<(&str, DeleteReason)> {
    plan.delete.iter().map(|d| (d.name.as_str(), d.reason)).collect()
}

fn label<'a>(pod: &'a Pod, key: &str) -> &'a str {
    pod.metadata
        .labels
        .as_ref()
        .unwrap()
        .get(key)
        .map_or("", String::as_str)
}

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

fn update_template(w: &mut World, image: &str) {
    spec_mut(&mut w.set).template = template(image);
    w.set.metadata.generation = Some(w.set.metadata.generation.unwrap() + 1);
}

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

#[test]
fn identity_drift_is_repaired_by_an_update() {
    let mut w = World::new(set(2));
    w.settle();
    let labels = w.pod_mut("web-1").metadata.labels.as_mut().unwrap();
    labels.remove(POD_NAME_LABEL);
    labels.insert(POD_INDEX_LABEL.into(), "9".into());
    let plan = w.sync();
    assert_eq!(plan.update.len(), 1);
    let u = &plan.update[0];
    assert_eq!(u.name, "web-1");
    assert_eq!(u.uid, w.pods["web-1"].metadata.uid.clone().unwrap());
    assert_eq!(
        u.labels,
        BTreeMap::from([
            (POD_INDEX_LABEL.to_string(), "1".to_string()),
            (POD_NAME_LABEL.to_string(), "web-1".to_string())
        ])
    );
    assert_eq!(
        plan.events,
        [Event::normal(
            "SuccessfulUpdate",
            "update Pod web-1 in StatefulSet web successful"
        )]
    );
    assert!(w.sync().update.is_empty());
}

#[test]
fn status_is_written_only_when_it_changes_and_a_deleted_set_only_gets_status() {
    let mut w = World::new(set(2));
    w.settle();
    let plan = w.plan();
    assert_eq!(plan.status, None);
    assert!(plan.create.is_empty() && plan.delete.is_empty() && plan.update.is_empty());
    let status = w.set.status.clone().unwrap();
    assert_eq!(
        (status.replicas, status.ready_replicas, status.available_replicas),
        (2, Some(2), Some(2))
    );

    w.set.metadata.deletion_timestamp = Some(Time(at(w.now)));
    w.phase("web-1", "Failed");
    spec_mut(&mut w.set).replicas = Some(5);
    let plan = w.plan();
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.status.unwrap().ready_replicas, Some(1));
}

#[test]
fn pods_with_other_names_are_ignored() {
    let mut w = World::new(set(1));
    w.settle();
    for name in ["web-01", "webby-0", "web-x", "web-99999999999"] {
        let mut p = w.pods["web-0"].clone();
        p.metadata.name = Some(name.into());
        w.pods.insert(name.into(), p);
    }
    let plan = w.plan();
    assert!(plan.delete.is_empty() && plan.create.is_empty() && plan.status.is_none());
}

#[test]
fn failure_events_carry_the_error() {
    assert_eq!(
        pod_event(Verb::Create, "web-3", "web", Some("quota exceeded")),
        Event::warning(
            "FailedCreate",
            "create Pod web-3 in StatefulSet web failed error: quota exceeded"
        )
    );
    assert_eq!(
        pod_event(Verb::Delete, "web-3", "web", Some("boom")).reason,
        "FailedDelete"
    );
}

// The simulation: plans applied to a fake API while pods start after random delays, some
// fail, and the user scales and changes the template.

#[derive(Debug, Clone)]
enum Op {
    /// Advance the clock; pods started at least this long ago become Running and Ready.
    Tick(i64),
    /// The pod with this index (mod count) fails.
    Fail(usize),
    /// Scale to this many replicas.
    Scale(i32),
    /// A new template.
    Update,
    /// Terminating pods go away.
    Reap,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1i64..20).prop_map(Op::Tick),
        1 => any::<usize>().prop_map(Op::Fail),
        1 => (0i32..7).prop_map(Op::Scale),
        1 => Just(Op::Update),
        3 => Just(Op::Reap),
    ]
}

/// Checks the invariants of one plan against the world it was made from.
fn check(w: &World, plan: &StatefulSetPlan, parallel: bool, partition: i64) {
    let spec = w.set.spec.as_ref().unwrap();
    let start = i64::from(spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0));
    let end = start + i64::from(spec.replicas.unwrap());
    let ord = |name: &str| name.strip_prefix("web-").unwrap().parse::<i64>().unwrap();
    let pod_at = |o: i64| w.pods.get(&format!("web-{o}"));
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let up = |p: &Pod| healthy(p) && pods::is_available(p, min_ready, at(w.now));
    for created in &plan.create {
        let n = ord(created.metadata.name.as_deref().unwrap());
        assert!((start..end).contains(&n));
        // Pods below the partition come back at the current revision.
        let want = if n < start + partition {
            &plan.current_revision
        } else {
            &plan.update_revision
        };
        assert_eq!(label(created, REVISION_LABEL), want);
        if !parallel {
            for lower in start..n {
                assert!(
                    pod_at(lower).is_some_and(up),
                    "web-{n} created while web-{lower} is not up"
                );
            }
        }
    }
    let updates: Vec<i64> = plan
        .delete
        .iter()
        .filter(|d| d.reason == DeleteReason::Update)
        .map(|d| ord(&d.name))
        .collect();
    for &n in &updates {
        assert!(n >= start + partition, "web-{n} is below the partition");
        // One at a time: every pod above it was replaced and is Running and Ready.
        for above in n + 1..end {
            let p = pod_at(above);
            assert!(
                p.is_some_and(healthy),
                "web-{n} replaced while web-{above} is down"
            );
            assert_eq!(
                p.map(|p| label(p, REVISION_LABEL)),
                Some(plan.update_revision.as_str())
            );
        }
    }
    // maxUnavailable is 1 with the gate off.
    assert!(updates.len() <= 1);
    let scale_downs: Vec<i64> = plan
        .delete
        .iter()
        .filter(|d| d.reason == DeleteReason::ScaleDown)
        .map(|d| ord(&d.name))
        .collect();
    for &n in &scale_downs {
        assert!(!(start..end).contains(&n));
    }
    if !parallel {
        assert!(
            plan.create.len() + plan.delete.len() <= 1,
            "one action per sync: {plan:?}"
        );
        if !updates.is_empty() {
            // Everything else is up, so at most maxUnavailable (1) pod is down after it.
            for o in start..end {
                assert!(pod_at(o).is_some_and(up), "web-{o} is down during an update");
            }
        }
        if let Some(&n) = scale_downs.first() {
            // The highest pod goes first.
            assert!(w.pods.keys().map(|k| ord(k)).all(|o| o <= n));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn simulated_population_keeps_the_ordering_and_partition_invariants(
        parallel in any::<bool>(),
        start in 0i32..3,
        replicas in 0i32..6,
        partition in 0i32..4,
        min_ready in 0i32..3,
        delays in proptest::collection::vec(0i64..15, 64),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let mut s = set(replicas);
        let spec = spec_mut(&mut s);
        spec.ordinals = Some(StatefulSetOrdinals { start: Some(start) });
        spec.min_ready_seconds = Some(min_ready);
        spec.update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().partition = Some(partition);
        if parallel {
            spec.pod_management_policy = Some("Parallel".into());
        }
        let mut w = World::new(s);
        let mut images = 1;
        for (step, op) in ops.into_iter().enumerate() {
            let plan = w.plan();
            check(&w, &plan, parallel, i64::from(partition));
            w.apply(&plan);
            match op {
                Op::Tick(d) => {
                    w.now += d;
                    let names: Vec<String> = w.pods.keys().cloned().collect();
                    for (i, n) in names.iter().enumerate() {
                        let p = &w.pods[n];
                        let born = p.metadata.creation_timestamp.as_ref().unwrap().0.as_second();
                        let delay = delays[(i + step) % delays.len()];
                        if pods::phase(p) == "Pending" && born + delay <= w.now {
                            w.ready(n);
                        }
                    }
                }
                Op::Fail(i) => {
                    let names: Vec<String> = w.pods.keys().cloned().collect();
                    if !names.is_empty() {
                        let n = &names[i % names.len()];
                        w.phase(n, "Failed");
                    }
                }
                Op::Scale(r) => spec_mut(&mut w.set).replicas = Some(r),
                Op::Update => {
                    images += 1;
                    update_template(&mut w, &format!("nginx:{images}"));
                }
                Op::Reap => w.reap(),
            }
        }
        // Liveness: once pods start and stay up, the set converges on its spec.
        w.settle();
        let spec = w.set.spec.clone().unwrap();
        let (start, replicas) = (i64::from(start), i64::from(spec.replicas.unwrap()));
        let want: Vec<String> = (start..start + replicas).map(|o| format!("web-{o}")).collect();
        prop_assert_eq!(w.pods.keys().cloned().collect::<Vec<_>>(), want);
        prop_assert!(w.pods.values().all(healthy));
        let status = w.set.status.clone().unwrap();
        prop_assert_eq!(i64::from(status.replicas), replicas);
        if partition == 0 {
            prop_assert_eq!(status.current_revision, status.update_revision.clone());
            let update = status.update_revision.unwrap();
            prop_assert!(w.pods.values().all(|p| label(p, REVISION_LABEL) == update));
        }
    }
}
