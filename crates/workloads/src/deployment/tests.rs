//! Tests of the Deployment rules (section 3), and the rolling-update invariants on a simulated cluster.

use super::*;
use crate::replica_set;
use podvisor_core::appsv1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use podvisor_core::corev1::{Container, PodCondition, PodSpec, PodStatus};
use podvisor_core::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_core::metav1::Time;
use proptest::prelude::*;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn labels() -> BTreeMap<String, String> {
    [("app".to_string(), "web".to_string())].into()
}

fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString, image: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("d-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels()),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavailable),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
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
            },
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status: None,
    }
}

/// A simulated cluster: the Deployment, its ReplicaSets, their pods, and when each pod turns
/// ready; the ReplicaSet controller runs after every Deployment sync.
struct World {
    d: Deployment,
    rss: Vec<ReplicaSet>,
    pods: Vec<(Pod, i64)>,
    now: i64,
    next_uid: u64,
    events: Vec<Event>,
}

impl World {
    fn new(d: Deployment) -> World {
        World {
            d,
            rss: Vec::new(),
            pods: Vec::new(),
            now: 1_000,
            next_uid: 0,
            events: Vec::new(),
        }
    }

    fn uid(&mut self) -> String {
        self.next_uid += 1;
        format!("uid-{}", self.next_uid)
    }

    /// One Deployment sync, then one ReplicaSet sync each, with pods turning ready after
    /// `delay(n)` seconds.
    fn step(&mut self, delay: &mut impl FnMut() -> i64) {
        let now = at(self.now);
        let pods: Vec<&Pod> = self.pods.iter().map(|(p, _)| p).collect();
        let plan = plan(&self.d, &self.rss, &pods, now);
        if let Some(mut rs) = plan.create.clone() {
            rs.metadata.uid = Some(self.uid());
            rs.metadata.creation_timestamp = Some(Time(now));
            rs.metadata.generation = Some(1);
            self.rss.push(rs);
        }
        for u in &plan.update {
            let rs = self
                .rss
                .iter_mut()
                .find(|r| r.metadata.name == u.metadata.name)
                .unwrap();
            rs.spec.clone_from(&u.spec);
            rs.metadata.annotations.clone_from(&u.metadata.annotations);
        }
        self.rss.retain(|r| {
            !plan
                .delete
                .iter()
                .any(|(_, uid)| r.metadata.uid.as_ref() == Some(uid))
        });
        if let Some(st) = plan.status.clone() {
            self.d.status = Some(st);
        }
        if let Some(a) = plan.annotations.clone() {
            self.d.metadata.annotations = Some(a);
        }
        self.events.extend(plan.events);
        for i in 0..self.rss.len() {
            let uid = self.rss[i].metadata.uid.clone().unwrap();
            let owned: Vec<&Pod> = self
                .pods
                .iter()
                .map(|(p, _)| p)
                .filter(|p| owner::is_controlled_by(&p.metadata, &uid))
                .collect();
            let m = replica_set::manage(&self.rss[i], &owned, &[], now);
            let gone: Vec<String> = m.delete.iter().map(|p| p.metadata.uid.clone().unwrap()).collect();
            let create = m.create;
            self.pods
                .retain(|(p, _)| !gone.contains(p.metadata.uid.as_ref().unwrap()));
            for _ in 0..create {
                let mut p = replica_set::new_pod(&self.rss[i]);
                p.metadata.uid = Some(self.uid());
                p.metadata.name = Some(format!("pod-{}", self.next_uid));
                p.metadata.creation_timestamp = Some(Time(now));
                p.status = Some(PodStatus {
                    phase: Some("Pending".into()),
                    ..Default::default()
                });
                let ready_at = self.now + delay();
                self.pods.push((p, ready_at));
            }
            let owned: Vec<&Pod> = self
                .pods
                .iter()
                .map(|(p, _)| p)
                .filter(|p| owner::is_controlled_by(&p.metadata, &uid))
                .collect();
            if let Some(st) = replica_set::status(&self.rss[i], &owned, now, None) {
                self.rss[i].status = Some(st);
            }
        }
        self.now += 1;
        for (p, ready_at) in &mut self.pods {
            if *ready_at <= self.now && !pods::is_ready(p) {
                p.status = Some(PodStatus {
                    phase: Some("Running".into()),
                    conditions: Some(vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(at(self.now))),
                        ..Default::default()
                    }]),
                    ..Default::default()
                });
            }
        }
    }

    fn ready(&self) -> usize {
        self.pods.iter().filter(|(p, _)| pods::is_ready(p)).count()
    }

    fn complete(&self) -> bool {
        self.d
            .status
            .as_ref()
            .is_some_and(|st| status::stored_complete(&self.d) && st.replicas == Some(replicas(&self.d)))
    }

    fn set_image(&mut self, image: &str) {
        let spec = self.d.spec.as_mut().unwrap();
        spec.template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
        let g = self.d.metadata.generation.unwrap_or(1);
        self.d.metadata.generation = Some(g + 1);
    }
}

#[test]
fn templates_compare_without_the_hash_and_empty_objects() {
    let d = deployment(1, IntOrString::Int(1), IntOrString::Int(0), "v1");
    let a = d.spec.as_ref().unwrap().template.clone();
    let mut b = a.clone();
    b.metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(POD_TEMPLATE_HASH.into(), "x".into());
    b.spec.as_mut().unwrap().containers[0].resources = Some(Default::default());
    assert!(templates_equal(&a, &b));
    b.spec.as_mut().unwrap().containers[0].image = Some("v2".into());
    assert!(!templates_equal(&a, &b));
}

#[test]
fn fenceposts_resolve_as_upstream() {
    let pct = |s: &str| IntOrString::String(s.into());
    assert_eq!(
        resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 10),
        (3, 2)
    );
    assert_eq!(resolve_fenceposts(None, None, 1), (1, 0));
    assert_eq!(
        resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&pct("10%")), 3),
        (0, 1)
    );
    let d = deployment(1, pct("25%"), pct("25%"), "v1");
    assert_eq!((max_surge(&d), max_unavailable(&d)), (1, 0));
}

#[test]
fn a_new_deployment_creates_its_replica_set_and_rolls_to_completion() {
    let mut w = World::new(deployment(
        3,
        IntOrString::String("25%".into()),
        IntOrString::String("25%".into()),
        "v1",
    ));
    w.step(&mut || 2);
    assert_eq!(w.rss.len(), 1);
    let rs = &w.rss[0];
    let hash = rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH].clone();
    assert_eq!(rs.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
    assert_eq!(revision(rs), 1);
    assert_eq!(rs_replicas(rs), 3);
    assert_eq!(
        rs.spec.as_ref().unwrap().selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH],
        hash
    );
    assert_eq!(
        w.events[0].message,
        format!("Scaled up replica set web-{hash} to 3")
    );
    let progressing = status::progressing(&w.d).unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetCreated"));
    assert_eq!(w.d.metadata.annotations.as_ref().unwrap()[REVISION], "1");
    for _ in 0..10 {
        w.step(&mut || 2);
    }
    assert!(w.complete(), "{:?}", w.d.status);
    let st = w.d.status.as_ref().unwrap();
    let p = status::progressing(&w.d).unwrap();
    assert_eq!(p.reason.as_deref(), Some("NewReplicaSetAvailable"));
    assert_eq!(
        p.message.as_deref(),
        Some(format!("ReplicaSet \"web-{hash}\" has successfully progressed.").as_str())
    );
    let available = st
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Available")
        .unwrap();
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );
}

#[test]
fn a_template_change_rolls_over_and_rollback_reuses_the_old_replica_set() {
    let mut w = World::new(deployment(4, IntOrString::Int(1), IntOrString::Int(1), "v1"));
    for _ in 0..10 {
        w.step(&mut || 1);
    }
    w.set_image("v2");
    for _ in 0..30 {
        w.step(&mut || 1);
    }
    assert!(w.complete());
    assert_eq!(w.rss.len(), 2);
    let (new, old): (Vec<_>, Vec<_>) = w.rss.iter().partition(|rs| revision(rs) == 2);
    assert_eq!((rs_replicas(new[0]), rs_replicas(old[0])), (4, 0));
    assert!(
        w.events
            .iter()
            .any(|e| e.message.starts_with("Scaled down replica set") && e.message.ends_with("to 0 from 1"))
    );
    // Back to v1: the old ReplicaSet becomes the new one with revision 3; no third one.
    w.set_image("v1");
    for _ in 0..30 {
        w.step(&mut || 1);
    }
    assert!(w.complete());
    assert_eq!(w.rss.len(), 2);
    let back = w.rss.iter().find(|rs| revision(rs) == 3).unwrap();
    assert_eq!(back.metadata.annotations.as_ref().unwrap()[REVISION_HISTORY], "1");
    assert_eq!(rs_replicas(back), 4);
    assert_eq!(w.d.metadata.annotations.as_ref().unwrap()[REVISION], "3");
}

#[test]
fn paused_deployments_scale_but_do_not_roll_out() {
    let mut w = World::new(deployment(2, IntOrString::Int(1), IntOrString::Int(0), "v1"));
    for _ in 0..8 {
        w.step(&mut || 1);
    }
    w.d.spec.as_mut().unwrap().paused = Some(true);
    w.set_image("v2");
    w.step(&mut || 1);
    let p = status::progressing(&w.d).unwrap();
    assert_eq!(
        (p.status.as_str(), p.reason.as_deref()),
        ("Unknown", Some("DeploymentPaused"))
    );
    w.d.spec.as_mut().unwrap().replicas = Some(5);
    for _ in 0..5 {
        w.step(&mut || 1);
    }
    assert_eq!(w.rss.len(), 1, "no new ReplicaSet while paused");
    assert_eq!(rs_replicas(&w.rss[0]), 5, "scaling still happens");
    w.d.spec.as_mut().unwrap().paused = Some(false);
    w.step(&mut || 1);
    assert!(w.events.iter().all(|e| e.reason == "ScalingReplicaSet"));
    for _ in 0..30 {
        w.step(&mut || 1);
    }
    assert!(w.complete());
    assert_eq!(w.rss.len(), 2);
}

#[test]
fn a_stalled_rollout_exceeds_its_progress_deadline() {
    let mut d = deployment(1, IntOrString::Int(1), IntOrString::Int(0), "v1");
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(30);
    let mut w = World::new(d);
    for _ in 0..40 {
        w.step(&mut || 1_000_000);
    }
    let p = status::progressing(&w.d).unwrap();
    assert_eq!(
        (p.status.as_str(), p.reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );
    assert!(
        p.message
            .as_deref()
            .unwrap()
            .ends_with("has timed out progressing.")
    );
}

#[test]
fn recreate_stops_every_old_pod_before_the_new_replica_set() {
    let mut d = deployment(3, IntOrString::Int(1), IntOrString::Int(0), "v1");
    d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    let mut w = World::new(d);
    for _ in 0..6 {
        w.step(&mut || 1);
    }
    assert!(w.complete());
    w.set_image("v2");
    let mut saw_gap = false;
    for _ in 0..20 {
        w.step(&mut || 1);
        let versions: std::collections::BTreeSet<_> = w
            .pods
            .iter()
            .map(|(p, _)| p.spec.as_ref().unwrap().containers[0].image.clone())
            .collect();
        assert!(
            versions.len() <= 1,
            "old and new pods never run together: {versions:?}"
        );
        saw_gap |= w.pods.is_empty();
    }
    assert!(saw_gap && w.complete());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Rule 3.8–3.9 as the issue states them: during a rolling update there are never more
    /// than replicas + maxSurge pods and never fewer than replicas − maxUnavailable ready.
    #[test]
    fn rolling_updates_keep_surge_and_availability(
        replicas in 1i32..12,
        surge in prop_oneof![(0i32..4).prop_map(IntOrString::Int), (0i32..=100).prop_map(|p| IntOrString::String(format!("{p}%")))],
        unavailable in prop_oneof![(0i32..4).prop_map(IntOrString::Int), (0i32..=100).prop_map(|p| IntOrString::String(format!("{p}%")))],
        delays in proptest::collection::vec(0i64..6, 64),
    ) {
        let d = deployment(replicas, surge, unavailable, "v1");
        let (s, u) = (max_surge(&d), max_unavailable(&d));
        let mut w = World::new(d);
        let mut i = 0usize;
        let mut delay = || { i += 1; delays[i % delays.len()] };
        for _ in 0..40 {
            w.step(&mut delay);
        }
        prop_assert!(w.complete(), "the first rollout completes");
        w.set_image("v2");
        for _ in 0..200 {
            w.step(&mut delay);
            let total = i32::try_from(w.pods.len()).unwrap();
            let ready = i32::try_from(w.ready()).unwrap();
            prop_assert!(total <= replicas + s, "{total} pods > {replicas} + {s}");
            prop_assert!(ready >= replicas - u, "{ready} ready < {replicas} - {u}");
            if w.complete() && w.d.status.as_ref().unwrap().updated_replicas == Some(replicas) {
                break;
            }
        }
        prop_assert!(w.complete(), "the rollout completes: {:?}", w.d.status);
        prop_assert!(w.pods.iter().all(|(p, _)| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("v2")));
    }
}
