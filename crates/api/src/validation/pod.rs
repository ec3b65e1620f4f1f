//! Pod validation: `ValidatePodCreate` and `ValidatePodUpdate`, restricted to what a process node uses.

use std::collections::{BTreeMap, HashSet};

use podvisor_core::corev1::{Container, ContainerPort, Pod, PodSpec};

use super::field::{FieldError, Path, ValidationErrors, Value, Warning};
use super::format;
use super::meta::{NameRule, validate_object_meta};
use super::probe::validate_probes_and_lifecycle;

/// Detail of the podvisor-specific `command` rule: a host process has no image entrypoint, so
/// a container needs `command` or, run as the command line as for an image without an
/// ENTRYPOINT, `args` (`kubectl run x --image=busybox -- sleep 100` runs `sleep 100`).
pub const COMMAND_REQUIRED_DETAIL: &str = "podvisor runs containers as host processes and has no image entrypoint to fall back on; set command (or args)";

pub(super) const NON_NEGATIVE: &str = "must be greater than or equal to 0";
const INIT_FORBIDDEN: &str = "may not be set for init containers without restartPolicy=Always";
pub(super) const MORE_THAN_ONE_HANDLER: &str = "may not specify more than 1 handler type";

/// The fields `ValidatePodUpdate` lets a user change, as listed in its error message.
const UPDATABLE_POD_SPEC_FIELDS: &[&str] = &[
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];

pub(super) type Errs = Vec<FieldError>;

pub(super) fn s(o: &Option<String>) -> &str {
    o.as_deref().unwrap_or("")
}

/// Validate a pod for creation, after [`crate::defaults::default_pod`].
///
/// Every problem is collected. On success the (possibly empty) warnings are returned; they are
/// also available on their own from [`pod_warnings`].
pub fn validate_pod(pod: &Pod) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = pod_errors(pod);
    super::ephemeral::create_errors(pod, &mut errs);
    ValidationErrors::new(errs).into_result(pod_warnings(pod))
}

/// Warnings kube-apiserver would attach to this pod (rule 2.3: negative
/// `terminationGracePeriodSeconds`).
pub fn pod_warnings(pod: &Pod) -> Vec<Warning> {
    let mut out = Vec::new();
    if let Some(spec) = &pod.spec
        && spec.termination_grace_period_seconds.is_some_and(|g| g < 0)
    {
        out.push(Warning {
            path: "spec.terminationGracePeriodSeconds".to_owned(),
            message: "must be >= 0; negative values are invalid and will be treated as 1".to_owned(),
        });
    }
    out
}

fn pod_errors(pod: &Pod) -> Errs {
    let mut errs = Vec::new();
    validate_object_meta(
        &pod.metadata,
        NameRule::Dns1123Subdomain,
        &Path::root("metadata"),
        &mut errs,
    );
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let spec_path = Path::root("spec");
    validate_pod_spec(spec, &spec_path, &mut errs);
    // Pod-only (not pod template) checks.
    for (list, name) in [
        (spec.containers.as_slice(), "containers"),
        (spec.init_containers.as_deref().unwrap_or(&[]), "initContainers"),
    ] {
        for (i, c) in list.iter().enumerate() {
            let image = s(&c.image);
            if image.trim() != image {
                errs.push(FieldError::invalid(
                    spec_path.child(name).index(i).child("image").as_str(),
                    Value::str(image),
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    errs
}

pub(super) fn validate_pod_spec(spec: &PodSpec, path: &Path, errs: &mut Errs) {
    if spec.termination_grace_period_seconds.is_none() {
        errs.push(FieldError::required(
            path.child("terminationGracePeriodSeconds").as_str(),
            "",
        ));
    }
    let grace = spec.termination_grace_period_seconds;
    let volumes = super::volume::validate_volumes(
        spec.volumes.as_deref().unwrap_or(&[]),
        &path.child("volumes"),
        errs,
    );
    for (field, containers) in [
        ("initContainers", spec.init_containers.as_deref().unwrap_or(&[])),
        ("containers", &spec.containers[..]),
    ] {
        for (i, c) in containers.iter().enumerate() {
            let p = path.child(field).index(i).child("volumeMounts");
            super::volume::validate_volume_mounts(c, &volumes, &p, errs);
            if let Some(r) = &c.resources {
                let rp = path.child(field).index(i).child("resources");
                super::quantity::validate_resource_list(r.limits.as_ref(), &rp.child("limits"), errs);
                super::quantity::validate_resource_list(r.requests.as_ref(), &rp.child("requests"), errs);
            }
        }
    }
    if let Some(r) = &spec.resources {
        let rp = path.child("resources");
        super::quantity::validate_resource_list(r.limits.as_ref(), &rp.child("limits"), errs);
        super::quantity::validate_resource_list(r.requests.as_ref(), &rp.child("requests"), errs);
    }
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if let Some(size) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) {
            let p = path
                .child("volumes")
                .index(i)
                .child("emptyDir")
                .child("sizeLimit");
            super::quantity::validate_non_negative(size, p.as_str(), errs);
        }
    }
    validate_containers(&spec.containers, grace, &path.child("containers"), errs);
    validate_init_containers(
        spec.init_containers.as_deref().unwrap_or(&[]),
        &spec.containers,
        grace,
        &path.child("initContainers"),
        errs,
    );
    validate_host_network(spec, path, errs);

    let rp_path = path.child("restartPolicy");
    match s(&spec.restart_policy) {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(FieldError::required(rp_path.as_str(), "")),
        other => errs.push(FieldError::not_supported(
            rp_path.as_str(),
            Value::str(other),
            &["Always", "OnFailure", "Never"],
        )),
    }

    let dns_path = path.child("dnsPolicy");
    match s(&spec.dns_policy) {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(FieldError::required(dns_path.as_str(), "")),
        other => errs.push(FieldError::not_supported(
            dns_path.as_str(),
            Value::str(other),
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }

    if let Some(sel) = &spec.node_selector {
        super::meta::validate_labels(sel, &path.child("nodeSelector"), errs);
    }

    for (i, gate) in spec.readiness_gates.iter().flatten().enumerate() {
        let p = path.child("readinessGates").index(i).child("conditionType");
        for m in format::is_qualified_name(&gate.condition_type) {
            errs.push(FieldError::invalid(
                p.as_str(),
                Value::str(&gate.condition_type),
                m,
            ));
        }
    }

    let mut seen_gates = HashSet::new();
    for (i, gate) in spec.scheduling_gates.iter().flatten().enumerate() {
        let p = path.child("schedulingGates").index(i);
        for m in format::is_qualified_name(&gate.name) {
            errs.push(FieldError::invalid(p.as_str(), Value::str(&gate.name), m));
        }
        if !seen_gates.insert(gate.name.as_str()) {
            errs.push(FieldError::duplicate(p.as_str(), Value::str(&gate.name)));
        }
    }

    if let Some(ads) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&ads)
    {
        errs.push(FieldError::invalid(
            path.child("activeDeadlineSeconds").as_str(),
            Value::int(ads),
            format::inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }

    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        let v = s(value);
        if !v.is_empty() {
            for m in format::is_dns1123_label(v) {
                errs.push(FieldError::invalid(path.child(field).as_str(), Value::str(v), m));
            }
        }
    }
}

/// Rules 2.7–2.11 for regular containers.
fn validate_containers(containers: &[Container], grace: Option<i64>, path: &Path, errs: &mut Errs) {
    if containers.is_empty() {
        errs.push(FieldError::required(path.as_str(), ""));
        return;
    }
    let mut names = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = path.index(i);
        validate_container_common(c, &p, errs);
        if !names.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(
                p.child("name").as_str(),
                Value::str(&c.name),
            ));
        }
        validate_probes_and_lifecycle(c, grace, &p, errs);
        if c.restart_policy.is_some() {
            errs.push(FieldError::forbidden(
                p.child("restartPolicy").as_str(),
                "may not be set for non-init containers",
            ));
        }
    }
    check_host_port_conflicts(containers.iter().enumerate(), path, errs);
}

/// Rules 2.12–2.14 for init containers (and sidecars).
fn validate_init_containers(
    inits: &[Container],
    regular: &[Container],
    grace: Option<i64>,
    path: &Path,
    errs: &mut Errs,
) {
    let mut names: HashSet<&str> = regular.iter().map(|c| c.name.as_str()).collect();
    for (i, c) in inits.iter().enumerate() {
        let p = path.index(i);
        validate_container_common(c, &p, errs);
        let mut sidecar = false;
        if let Some(rp) = &c.restart_policy {
            if rp == "Always" {
                sidecar = true;
            } else {
                errs.push(FieldError::not_supported(
                    p.child("restartPolicy").as_str(),
                    Value::str(rp),
                    &["Always"],
                ));
            }
        }
        if names.contains(c.name.as_str()) {
            errs.push(FieldError::duplicate(
                p.child("name").as_str(),
                Value::str(&c.name),
            ));
        } else if !c.name.is_empty() {
            names.insert(c.name.as_str());
        }
        // Init containers run one at a time, so each is checked on its own. (kube-apiserver
        // reports these at index 0 whatever the container's index; we report the real index.)
        check_host_port_conflicts(std::iter::once((i, c)), path, errs);
        if sidecar {
            validate_probes_and_lifecycle(c, grace, &p, errs);
        } else {
            for (field, set) in [
                ("lifecycle", c.lifecycle.is_some()),
                ("livenessProbe", c.liveness_probe.is_some()),
                ("readinessProbe", c.readiness_probe.is_some()),
                ("startupProbe", c.startup_probe.is_some()),
            ] {
                if set {
                    errs.push(FieldError::forbidden(p.child(field).as_str(), INIT_FORBIDDEN));
                }
            }
            if let Some(rp) = c.resize_policy.as_ref().filter(|r| !r.is_empty()) {
                let items: Vec<String> = rp
                    .iter()
                    .map(|r| {
                        format!(
                            "core.ContainerResizePolicy{{ResourceName:{}, RestartPolicy:{}}}",
                            super::field::go_quote(&r.resource_name),
                            super::field::go_quote(&r.restart_policy)
                        )
                    })
                    .collect();
                errs.push(FieldError::invalid(
                    p.child("resizePolicy").as_str(),
                    Value::raw(format!("[]core.ContainerResizePolicy{{{}}}", items.join(", "))),
                    "must not be set for init containers",
                ));
            }
        }
    }
}

fn validate_container_common(c: &Container, p: &Path, errs: &mut Errs) {
    let name_path = p.child("name");
    if c.name.is_empty() {
        errs.push(FieldError::required(name_path.as_str(), ""));
    } else {
        for m in format::is_dns1123_label(&c.name) {
            errs.push(FieldError::invalid(name_path.as_str(), Value::str(&c.name), m));
        }
    }
    if s(&c.image).is_empty() {
        errs.push(FieldError::required(p.child("image").as_str(), ""));
    }
    let empty = |v: &Option<Vec<String>>| v.as_ref().is_none_or(Vec::is_empty);
    if empty(&c.command) && empty(&c.args) {
        errs.push(FieldError::required(
            p.child("command").as_str(),
            COMMAND_REQUIRED_DETAIL,
        ));
    }
    let tmp = p.child("terminationMessagePolicy");
    match s(&c.termination_message_policy) {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(tmp.as_str(), "")),
        other => errs.push(FieldError::not_supported(
            tmp.as_str(),
            Value::str(other),
            &["File", "FallbackToLogsOnError"],
        )),
    }
    validate_container_ports(c.ports.as_deref().unwrap_or(&[]), &p.child("ports"), errs);
    let ipp = p.child("imagePullPolicy");
    match s(&c.image_pull_policy) {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(ipp.as_str(), "")),
        other => errs.push(FieldError::not_supported(
            ipp.as_str(),
            Value::str(other),
            &["Always", "IfNotPresent", "Never"],
        )),
    }
}

/// Rule 2.10, except host-port conflicts.
fn validate_container_ports(ports: &[ContainerPort], path: &Path, errs: &mut Errs) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        let name = s(&port.name);
        if !name.is_empty() {
            let msgs = format::is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(FieldError::invalid(p.child("name").as_str(), Value::str(name), m));
                }
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(p.child("name").as_str(), Value::str(name)));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(p.child("containerPort").as_str(), ""));
        } else {
            for m in format::is_valid_port_num(i64::from(port.container_port)) {
                errs.push(FieldError::invalid(
                    p.child("containerPort").as_str(),
                    Value::int(port.container_port),
                    m,
                ));
            }
        }
        let host_port = port.host_port.unwrap_or(0);
        if host_port != 0 {
            for m in format::is_valid_port_num(i64::from(host_port)) {
                errs.push(FieldError::invalid(
                    p.child("hostPort").as_str(),
                    Value::int(host_port),
                    m,
                ));
            }
        }
        validate_protocol(&port.protocol, &p.child("protocol"), errs);
    }
}

pub(super) fn validate_protocol(protocol: &Option<String>, p: &Path, errs: &mut Errs) {
    match s(protocol) {
        "TCP" | "UDP" | "SCTP" => {}
        "" => errs.push(FieldError::required(p.as_str(), "")),
        other => errs.push(FieldError::not_supported(
            p.as_str(),
            Value::str(other),
            &["SCTP", "TCP", "UDP"],
        )),
    }
}

fn check_host_port_conflicts<'a>(
    containers: impl Iterator<Item = (usize, &'a Container)>,
    path: &Path,
    errs: &mut Errs,
) {
    let mut seen = HashSet::new();
    for (ci, c) in containers {
        for (pi, port) in c.ports.iter().flatten().enumerate() {
            let host_port = port.host_port.unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key = format!("{}/{}/{}", s(&port.protocol), s(&port.host_ip), host_port);
            if seen.contains(&key) {
                errs.push(FieldError::duplicate(
                    path.index(ci).child("ports").index(pi).child("hostPort").as_str(),
                    Value::str(&key),
                ));
            } else {
                seen.insert(key);
            }
        }
    }
}

fn validate_host_network(spec: &PodSpec, path: &Path, errs: &mut Errs) {
    if spec.host_network != Some(true) {
        return;
    }
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, port) in c.ports.iter().flatten().enumerate() {
            let hp = port.host_port.unwrap_or(0);
            if hp != port.container_port {
                errs.push(FieldError::invalid(
                    path.child("containers")
                        .index(i)
                        .child("ports")
                        .index(j)
                        .child("hostPort")
                        .as_str(),
                    Value::int(hp),
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
}

/// Validate an update of `old` to `new` (rule 2.24), the way `ValidatePodUpdate` does.
///
/// `new` is validated as a whole first (as on create); then only container and init-container
/// `image`, `activeDeadlineSeconds` (set, or lowered, staying positive), `tolerations`
/// (additions) and `schedulingGates` (removals) may differ from `old`. Any other spec change is
/// one `Forbidden` error at `spec` whose detail starts with kube-apiserver's message and is
/// followed by a list of the changed fields (podvisor's own format, not Go's `cmp.Diff`).
pub fn validate_pod_update(old: &Pod, new: &Pod) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = Vec::new();
    for (field, o, n) in [
        ("name", &old.metadata.name, &new.metadata.name),
        ("namespace", &old.metadata.namespace, &new.metadata.namespace),
    ] {
        if o != n {
            errs.push(FieldError::invalid(
                Path::root("metadata").child(field).as_str(),
                Value::str(s(n)),
                "field is immutable",
            ));
        }
    }
    errs.extend(pod_errors(new));
    update_errors(old, new, &mut errs);
    ValidationErrors::new(errs).into_result(pod_warnings(new))
}

fn update_errors(old: &Pod, new: &Pod, errs: &mut Errs) {
    let default_spec = PodSpec::default();
    let old_spec = old.spec.as_ref().unwrap_or(&default_spec);
    let new_spec = new.spec.as_ref().unwrap_or(&default_spec);
    let spec_path = Path::root("spec");

    for (field, o, n) in [
        (
            "containers",
            old_spec.containers.as_slice(),
            new_spec.containers.as_slice(),
        ),
        (
            "initContainers",
            old_spec.init_containers.as_deref().unwrap_or(&[]),
            new_spec.init_containers.as_deref().unwrap_or(&[]),
        ),
    ] {
        if o.len() != n.len() {
            errs.push(FieldError::forbidden(
                spec_path.child(field).as_str(),
                "pod updates may not add or remove containers",
            ));
            return;
        }
    }

    let ads_path = spec_path.child("activeDeadlineSeconds");
    match (old_spec.active_deadline_seconds, new_spec.active_deadline_seconds) {
        (_, Some(n)) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(FieldError::invalid(
                ads_path.as_str(),
                Value::int(n),
                format::inclusive_range_error(0, i64::from(i32::MAX)),
            ));
            return;
        }
        (Some(o), Some(n)) if o < n => {
            errs.push(FieldError::invalid(
                ads_path.as_str(),
                Value::int(n),
                "must be less than or equal to previous value",
            ));
            return;
        }
        (Some(_), None) => errs.push(FieldError::invalid(
            ads_path.as_str(),
            Value::null(),
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }

    // Tolerations: every old toleration must still be there (tolerationSeconds may change).
    let new_tols = new_spec.tolerations.as_deref().unwrap_or(&[]);
    for old_tol in old_spec.tolerations.iter().flatten() {
        let found = new_tols.iter().any(|t| {
            let mut o = old_tol.clone();
            o.toleration_seconds = t.toleration_seconds;
            &o == t
        });
        if !found {
            errs.push(FieldError::forbidden(
                spec_path.child("tolerations").as_str(),
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }

    // Scheduling gates: removals only.
    let old_gates: HashSet<&str> = old_spec
        .scheduling_gates
        .iter()
        .flatten()
        .map(|g| g.name.as_str())
        .collect();
    for (i, gate) in new_spec.scheduling_gates.iter().flatten().enumerate() {
        if !old_gates.contains(gate.name.as_str()) {
            errs.push(FieldError::forbidden(
                spec_path.child("schedulingGates").index(i).child("name").as_str(),
                format!(
                    "only deletion is allowed, but found new scheduling gate '{}'",
                    gate.name
                ),
            ));
        }
    }

    // Munge the mutable fields back to their old values and compare the rest.
    let mut munged = new_spec.clone();
    for (c, o) in munged.containers.iter_mut().zip(&old_spec.containers) {
        c.image.clone_from(&o.image);
    }
    if let (Some(new_inits), Some(old_inits)) =
        (munged.init_containers.as_mut(), old_spec.init_containers.as_ref())
    {
        for (c, o) in new_inits.iter_mut().zip(old_inits) {
            c.image.clone_from(&o.image);
        }
    }
    munged.active_deadline_seconds = old_spec.active_deadline_seconds;
    munged.scheduling_gates.clone_from(&old_spec.scheduling_gates);
    munged.tolerations.clone_from(&old_spec.tolerations);
    if old_spec.termination_grace_period_seconds.is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old_spec.termination_grace_period_seconds;
    }
    let (Ok(old_json), Ok(new_json)) = (serde_json::to_value(old_spec), serde_json::to_value(&munged)) else {
        return;
    };
    if old_json != new_json {
        let mut changed = Vec::new();
        diff_paths(&old_json, &new_json, Path::root("spec"), &mut changed);
        let mut detail = format!(
            "pod updates may not change fields other than {}",
            UPDATABLE_POD_SPEC_FIELDS.join(",")
        );
        for c in changed {
            detail.push_str("\n  ");
            detail.push_str(&c);
        }
        errs.push(FieldError::forbidden(spec_path.as_str(), detail));
    }
}

/// The JSON paths where `a` and `b` differ, most specific first-found.
fn diff_paths(a: &serde_json::Value, b: &serde_json::Value, path: Path, out: &mut Vec<String>) {
    use serde_json::Value as J;
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            let keys: BTreeMap<&String, ()> = x.keys().chain(y.keys()).map(|k| (k, ())).collect();
            for k in keys.keys() {
                match (x.get(*k), y.get(*k)) {
                    (Some(va), Some(vb)) => diff_paths(va, vb, path.child(k), out),
                    (None, None) => {}
                    _ => out.push(path.child(k).to_string()),
                }
            }
        }
        (J::Array(x), J::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff_paths(va, vb, path.index(i), out);
            }
        }
        _ => {
            if a != b {
                out.push(path.to_string());
            }
        }
    }
}
