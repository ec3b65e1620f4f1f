//! Tests of the StatefulSet rules (section 4), with a simulated pod population.

mod creation;
mod sim;
mod status;
mod updates;

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

fn update_template(w: &mut World, image: &str) {
    spec_mut(&mut w.set).template = template(image);
    w.set.metadata.generation = Some(w.set.metadata.generation.unwrap() + 1);
}
