//! Pods: kube-apiserver's pod strategy (defaulting and validation from `podvisor-api`, a new
//! pod `Pending` with its QoS class, graceful deletion finished by the pod's node) and
//! kubectl's pod table ([`printer`]).

pub mod printer;

use podvisor_core::corev1::Pod;
use podvisor_lifecycle::Time;
use printer::{pod_columns, pod_row, pod_row_condition};
use serde_json::{Value, json};

use crate::strategy::{Rejection, Strategy, decode_as, typed, untyped, warnings};
use crate::table::{Column, Row};

/// The pod strategy.
#[derive(Debug)]
pub struct PodStrategy;

/// The annotation of a mirror pod (the API's copy of a kubelet's static pod).
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The annotation of podvisor's static pods in the API.
const STATIC_ANNOTATION: &str = "podvisor.io/static-manifest";

impl Strategy for PodStrategy {
    fn decode_known(&self, object: &Value) -> Result<(Value, Vec<String>), String> {
        decode_as::<Pod>(object)
    }

    fn default_and_validate(
        &self,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<Vec<String>, Rejection> {
        let mut pod: Pod = typed(object)?;
        podvisor_api::defaults::default_pod(&mut pod);
        if old.is_none() {
            // Admission on create (DefaultTolerationSeconds), before validation as upstream.
            podvisor_api::defaults::default_toleration_seconds(&mut pod);
            // ServiceAccount admission: a pod runs as `default` unless it names another;
            // mirror pods (and the node's static pods) are left as they are.
            let annotations = pod.metadata.annotations.as_ref();
            let mirror = annotations
                .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION) || a.contains_key(STATIC_ANNOTATION));
            if let Some(spec) = pod.spec.as_mut()
                && !mirror
                && spec.service_account_name.as_deref().unwrap_or("").is_empty()
            {
                spec.service_account_name = Some("default".into());
            }
            if let Some(spec) = pod.spec.as_mut()
                && spec.service_account.is_none()
            {
                spec.service_account.clone_from(&spec.service_account_name);
            }
        }
        let w = match old {
            Some(old) => podvisor_api::validation::validate_pod_update(&typed(old)?, &pod)?,
            None => podvisor_api::validation::validate_pod(&pod)?,
        };
        *object = untyped(&pod)?;
        Ok(warnings(&w))
    }

    fn default_and_validate_ephemeral(
        &self,
        object: &mut Value,
        old: &Value,
    ) -> Result<Vec<String>, Rejection> {
        let mut pod: Pod = typed(object)?;
        podvisor_api::defaults::default_pod(&mut pod);
        let w = podvisor_api::validation::validate_ephemeral_containers_update(&typed(old)?, &pod)?;
        *object = untyped(&pod)?;
        Ok(warnings(&w))
    }

    fn service_account(&self, object: &Value) -> Option<String> {
        let name = object
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)?;
        (!name.is_empty()).then(|| name.to_owned())
    }

    /// As kube-apiserver's pod strategy: a new pod is `Pending`, with its QoS class.
    fn prepare_for_create(&self, object: &mut Value) -> Result<(), Rejection> {
        let pod: Pod = typed(object)?;
        object["status"] = json!({"phase": "Pending", "qosClass": podvisor_lifecycle::qos_class(&pod)});
        Ok(())
    }

    fn grace_period(&self, requested: Option<i64>, object: &Value) -> i64 {
        crate::options::pod_grace_period(requested, object)
    }

    fn removed_by_its_node(&self) -> bool {
        true
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "status.phase",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    fn columns(&self) -> Vec<Column> {
        pod_columns().to_vec()
    }

    fn row(&self, object: &Value, now: i64) -> Row {
        let Ok(pod) = typed::<Pod>(object) else {
            let name = crate::table::text(object, "metadata.name");
            let mut cells = vec![name, String::new(), "Unknown".into()];
            cells.resize(9, String::new());
            return Row::cells(cells);
        };
        let r = pod_row(&pod, Time::from_millis(now));
        let mut row = Row::cells(r.cells().iter().map(|c| (*c).to_string()).collect());
        if let Some(c) = pod_row_condition(&pod) {
            row.conditions =
                vec![json!({"type": c.type_, "status": c.status, "reason": c.reason, "message": c.message})];
        }
        row
    }
}
