//! Ephemeral containers (`kubectl debug`): kube-apiserver's `ValidatePodEphemeralContainersUpdate`
//! for writes through `pods/{name}/ephemeralcontainers`, and the rule that a pod is never
//! created with them (`streaming-and-apply.md` rules 5.2-5.4).
//!
//! What it checks: entries are only added (never removed or changed), names are DNS-1123 labels
//! unique across every container list, `image` is set, only the fields an ephemeral container
//! may have are set, no `subPath`, mounts name volumes of the pod, and `targetContainerName`
//! names a container or init container. Static (mirror) pods take none.

use std::collections::HashSet;

use podvisor_core::corev1::{EphemeralContainer, Pod};

use super::field::{FieldError, Path, ValidationErrors, Value, Warning};
use super::format;
use super::pod::{Errs, s};

/// The annotation a mirror pod (the API's copy of a static pod) carries.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// `spec.ephemeralContainers: Forbidden: cannot be set on create` for a pod created with any.
pub(super) fn create_errors(pod: &Pod, errs: &mut Errs) {
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
}

/// Validates `new`, which is `old` with its ephemeral containers as a write to the
/// `ephemeralcontainers` subresource left them (nothing else differs).
pub fn validate_ephemeral_containers_update(old: &Pod, new: &Pod) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = Vec::new();
    let path = Path::root("spec").child("ephemeralContainers");
    let is_mirror = new
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    if is_mirror {
        errs.push(FieldError::forbidden(
            "",
            "static pods do not support ephemeral containers",
        ));
        return ValidationErrors::new(errs).into_result(Vec::new());
    }
    let listed = |p: &Pod| -> Vec<EphemeralContainer> {
        p.spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.clone())
            .unwrap_or_default()
    };
    let (old_list, new_list) = (listed(old), listed(new));
    // Only additions: every existing entry is still there, unchanged (matched by name).
    for o in &old_list {
        match new_list.iter().find(|n| n.name == o.name) {
            None => errs.push(FieldError::forbidden(
                path.as_str(),
                format!(
                    "existing ephemeral containers \"{}\" may not be removed\n",
                    o.name
                ),
            )),
            Some(n) if n != o => {
                let (a, b) = (
                    serde_json::to_string(o).unwrap_or_default(),
                    serde_json::to_string(n).unwrap_or_default(),
                );
                errs.push(FieldError::forbidden(
                    path.as_str(),
                    format!(
                        "existing ephemeral containers \"{}\" may not be changed\n  old: {a}\n  new: {b}",
                        o.name
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let spec = new.spec.as_ref();
    let volumes: HashSet<&str> = spec
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    let others: Vec<&str> = spec
        .map(|s| {
            s.containers
                .iter()
                .map(|c| c.name.as_str())
                .chain(s.init_containers.iter().flatten().map(|c| c.name.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut seen: HashSet<&str> = others.iter().copied().collect();
    for (i, e) in new_list.iter().enumerate() {
        let at = path.index(i);
        ephemeral_errors(e, &at, &others, &volumes, &mut seen, &mut errs);
    }
    ValidationErrors::new(errs).into_result(Vec::new())
}

/// The fields an ephemeral container may set (upstream's allow-list); any other that is set
/// is forbidden.
fn set_fields_not_allowed(e: &EphemeralContainer) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |name: &'static str, set: bool| {
        if set {
            out.push(name);
        }
    };
    check("ports", e.ports.as_ref().is_some_and(|p| !p.is_empty()));
    check(
        "resources",
        e.resources.as_ref().is_some_and(|r| {
            r.limits.as_ref().is_some_and(|l| !l.is_empty())
                || r.requests.as_ref().is_some_and(|l| !l.is_empty())
                || r.claims.as_ref().is_some_and(|l| !l.is_empty())
        }),
    );
    check(
        "resizePolicy",
        e.resize_policy.as_ref().is_some_and(|p| !p.is_empty()),
    );
    check("lifecycle", e.lifecycle.is_some());
    check("livenessProbe", e.liveness_probe.is_some());
    check("readinessProbe", e.readiness_probe.is_some());
    check("startupProbe", e.startup_probe.is_some());
    check("restartPolicy", e.restart_policy.is_some());
    out
}

fn ephemeral_errors<'a>(
    e: &'a EphemeralContainer,
    at: &Path,
    others: &[&str],
    volumes: &HashSet<&str>,
    seen: &mut HashSet<&'a str>,
    errs: &mut Errs,
) {
    let name_path = at.child("name");
    if e.name.is_empty() {
        errs.push(FieldError::required(name_path.as_str(), ""));
    } else {
        for why in format::is_dns1123_label(&e.name) {
            errs.push(FieldError::invalid(name_path.as_str(), Value::str(&e.name), why));
        }
        if !seen.insert(e.name.as_str()) {
            errs.push(FieldError::duplicate(name_path.as_str(), Value::str(&e.name)));
        }
    }
    if s(&e.image).trim().is_empty() {
        errs.push(FieldError::required(at.child("image").as_str(), ""));
    }
    for field in set_fields_not_allowed(e) {
        errs.push(FieldError::forbidden(
            at.child(field).as_str(),
            "cannot be set for an Ephemeral Container",
        ));
    }
    for (j, m) in e.volume_mounts.iter().flatten().enumerate() {
        let mp = at.child("volumeMounts").index(j);
        if m.sub_path.as_deref().is_some_and(|p| !p.is_empty()) {
            errs.push(FieldError::forbidden(
                mp.child("subPath").as_str(),
                "cannot be set for an Ephemeral Container",
            ));
        }
        if m.sub_path_expr.as_deref().is_some_and(|p| !p.is_empty()) {
            errs.push(FieldError::forbidden(
                mp.child("subPathExpr").as_str(),
                "cannot be set for an Ephemeral Container",
            ));
        }
        if !volumes.contains(m.name.as_str()) {
            errs.push(FieldError::not_found(
                mp.child("name").as_str(),
                Value::str(&m.name),
            ));
        }
    }
    if let Some(target) = e.target_container_name.as_deref()
        && !others.contains(&target)
    {
        errs.push(FieldError::not_found(
            at.child("targetContainerName").as_str(),
            Value::str(target),
        ));
    }
}
