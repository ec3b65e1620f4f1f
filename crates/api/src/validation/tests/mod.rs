//! Rule-by-rule tests for validation, asserting on rendered messages: pods (`pod`), Services
//! (`service`), the workload kinds (`apps`, `batch`), names and quantities of every kind (`names`), and never-panic properties over
//! generated input (`never_panics`). The helpers below build defaulted objects and render
//! their errors.

mod apps;
mod batch;
mod ephemeral;
mod names;
mod never_panics;
mod pod;
mod service;

use proptest::prelude::*;
use serde_json::{Value as J, json};

use super::*;
use crate::defaults::{default_pod, default_service};
use podvisor_core::corev1::{Pod, Service};

fn app(name: &str) -> J {
    json!({"name": name, "image": "busybox", "command": ["sleep", "3600"]})
}

fn with(mut base: J, extra: J) -> J {
    if let (Some(b), J::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

fn pod(spec: J) -> Pod {
    let v = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": spec});
    let mut p: Pod = serde_json::from_value(v).expect("test pod decodes");
    default_pod(&mut p);
    p
}

fn errors(p: &Pod) -> Vec<String> {
    validate_pod(p).err().map(|e| e.messages()).unwrap_or_default()
}

fn svc(spec: J) -> Service {
    let v = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec});
    let mut s: Service = serde_json::from_value(v).expect("test service decodes");
    default_service(&mut s);
    s
}

fn svc_errors(s: &Service) -> Vec<String> {
    validate_service(s)
        .err()
        .map(|e| e.messages())
        .unwrap_or_default()
}

const DNS_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
