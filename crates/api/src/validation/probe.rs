//! Probe, lifecycle hook and handler validation of a container (`validateProbe`,
//! `validateLifecycle`, `validateHandler`, `validateHTTPGetAction` of kube-apiserver).

use podvisor_core::corev1::{Container, HTTPGetAction, Lifecycle, LifecycleHandler, Probe};
use podvisor_core::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::field::{FieldError, Path, Value};
use super::format;
use super::pod::{Errs, MORE_THAN_ONE_HANDLER, NON_NEGATIVE, s};

pub(super) fn validate_probes_and_lifecycle(c: &Container, grace: Option<i64>, p: &Path, errs: &mut Errs) {
    if let Some(lc) = &c.lifecycle {
        validate_lifecycle(lc, grace, &p.child("lifecycle"), errs);
    }
    if let Some(probe) = &c.liveness_probe {
        let pp = p.child("livenessProbe");
        validate_probe(probe, &pp, errs);
        require_success_threshold_one(probe, &pp, errs);
    }
    if let Some(probe) = &c.readiness_probe {
        let pp = p.child("readinessProbe");
        validate_probe(probe, &pp, errs);
        if let Some(t) = probe.termination_grace_period_seconds {
            errs.push(FieldError::invalid(
                pp.child("terminationGracePeriodSeconds").as_str(),
                Value::int(t),
                "must not be set for readinessProbes",
            ));
        }
    }
    if let Some(probe) = &c.startup_probe {
        let pp = p.child("startupProbe");
        validate_probe(probe, &pp, errs);
        require_success_threshold_one(probe, &pp, errs);
    }
}

fn require_success_threshold_one(probe: &Probe, p: &Path, errs: &mut Errs) {
    let st = probe.success_threshold.unwrap_or(0);
    if st != 1 {
        errs.push(FieldError::invalid(
            p.child("successThreshold").as_str(),
            Value::int(st),
            "must be 1",
        ));
    }
}

/// The handler fields common to probes and lifecycle hooks.
struct Handler<'a> {
    exec: Option<&'a podvisor_core::corev1::ExecAction>,
    http_get: Option<&'a HTTPGetAction>,
    tcp_port: Option<&'a IntOrString>,
    grpc_port: Option<i32>,
    sleep_seconds: Option<i64>,
}

/// Rules 2.15–2.18.
fn validate_probe(probe: &Probe, p: &Path, errs: &mut Errs) {
    let handler = Handler {
        exec: probe.exec.as_ref(),
        http_get: probe.http_get.as_ref(),
        tcp_port: probe.tcp_socket.as_ref().map(|t| &t.port),
        grpc_port: probe.grpc.as_ref().map(|g| g.port),
        sleep_seconds: None,
    };
    validate_handler(&handler, None, p, errs);
    for (field, v) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        let v = v.unwrap_or(0);
        if v < 0 {
            errs.push(FieldError::invalid(
                p.child(field).as_str(),
                Value::int(v),
                NON_NEGATIVE,
            ));
        }
    }
    if let Some(t) = probe.termination_grace_period_seconds
        && t <= 0
    {
        errs.push(FieldError::invalid(
            p.child("terminationGracePeriodSeconds").as_str(),
            Value::int(t),
            "must be greater than 0",
        ));
    }
}

/// Rules 2.22–2.23.
fn validate_lifecycle(lc: &Lifecycle, grace: Option<i64>, p: &Path, errs: &mut Errs) {
    for (field, hook) in [("postStart", &lc.post_start), ("preStop", &lc.pre_stop)] {
        if let Some(h) = hook {
            validate_handler(&lifecycle_handler(h), Some(grace), &p.child(field), errs);
        }
    }
}

fn lifecycle_handler(h: &LifecycleHandler) -> Handler<'_> {
    Handler {
        exec: h.exec.as_ref(),
        http_get: h.http_get.as_ref(),
        tcp_port: h.tcp_socket.as_ref().map(|t| &t.port),
        grpc_port: None,
        sleep_seconds: h.sleep.as_ref().map(|s| s.seconds),
    }
}

/// The exactly-one-handler rule, checked in kube's order exec, httpGet, tcpSocket, grpc, sleep.
/// `grace` is `Some(pod grace)` for lifecycle hooks, where sleep is allowed.
fn validate_handler(h: &Handler<'_>, grace: Option<Option<i64>>, p: &Path, errs: &mut Errs) {
    let mut count = 0;
    let mut take = |name: &str, errs: &mut Errs| -> bool {
        if count > 0 {
            errs.push(FieldError::forbidden(
                p.child(name).as_str(),
                MORE_THAN_ONE_HANDLER,
            ));
            false
        } else {
            count += 1;
            true
        }
    };
    if let Some(exec) = h.exec
        && take("exec", errs)
        && exec.command.as_ref().is_none_or(|c| c.is_empty())
    {
        errs.push(FieldError::required(
            p.child("exec").child("command").as_str(),
            "",
        ));
    }
    if let Some(http) = h.http_get
        && take("httpGet", errs)
    {
        validate_http_get(http, &p.child("httpGet"), errs);
    }
    if let Some(port) = h.tcp_port
        && take("tcpSocket", errs)
    {
        validate_port_num_or_name(port, &p.child("tcpSocket").child("port"), errs);
    }
    if let Some(port) = h.grpc_port
        && take("grpc", errs)
    {
        for m in format::is_valid_port_num(i64::from(port)) {
            errs.push(FieldError::invalid(
                p.child("grpc").child("port").as_str(),
                Value::int(port),
                m,
            ));
        }
    }
    if let Some(seconds) = h.sleep_seconds
        && take("sleep", errs)
    {
        // PodLifecycleSleepActionAllowZero is on by default from 1.33: 0 is allowed.
        if let Some(Some(grace)) = grace
            && (seconds < 0 || seconds > grace)
        {
            errs.push(FieldError::invalid(
                p.child("sleep").as_str(),
                Value::int(seconds),
                format!("must be non-negative and less than terminationGracePeriodSeconds ({grace})"),
            ));
        }
    }
    if count == 0 {
        errs.push(FieldError::required(p.as_str(), "must specify a handler type"));
    }
}

fn validate_http_get(http: &HTTPGetAction, p: &Path, errs: &mut Errs) {
    if s(&http.path).is_empty() {
        errs.push(FieldError::required(p.child("path").as_str(), ""));
    }
    validate_port_num_or_name(&http.port, &p.child("port"), errs);
    let scheme = s(&http.scheme);
    if scheme != "HTTP" && scheme != "HTTPS" {
        errs.push(FieldError::not_supported(
            p.child("scheme").as_str(),
            Value::str(scheme),
            &["HTTP", "HTTPS"],
        ));
    }
    for header in http.http_headers.iter().flatten() {
        for m in format::is_http_header_name(&header.name) {
            errs.push(FieldError::invalid(
                p.child("httpHeaders").as_str(),
                Value::str(&header.name),
                m,
            ));
        }
    }
}

pub(super) fn validate_port_num_or_name(port: &IntOrString, p: &Path, errs: &mut Errs) {
    match port {
        IntOrString::Int(i) => {
            for m in format::is_valid_port_num(i64::from(*i)) {
                errs.push(FieldError::invalid(p.as_str(), Value::int(*i), m));
            }
        }
        IntOrString::String(name) => {
            for m in format::is_valid_port_name(name) {
                errs.push(FieldError::invalid(p.as_str(), Value::str(name), m));
            }
        }
    }
}
