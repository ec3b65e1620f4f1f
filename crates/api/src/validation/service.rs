//! Service validation: the parts of `ValidateService` that matter to a single node.

use std::collections::HashSet;

use podvisor_core::corev1::{Service, ServiceSpec};

use super::field::{FieldError, Path, ValidationErrors, Value, Warning};
use super::format;
use super::meta::{NameRule, validate_object_meta};
use super::pod::validate_protocol;
use super::probe::validate_port_num_or_name;

fn s(o: &Option<String>) -> &str {
    o.as_deref().unwrap_or("")
}

/// Validate a service for creation, after [`crate::defaults::default_service`].
///
/// Covers metadata, ports (names, numbers, protocols, target ports, node ports, duplicates),
/// selector, type, session affinity and cluster IPs. Load-balancer, traffic-policy and
/// IP-family fields are not validated: podvisor does not implement them.
pub fn validate_service(svc: &Service) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = Vec::new();
    validate_object_meta(
        &svc.metadata,
        NameRule::Dns1035Label,
        &Path::root("metadata"),
        &mut errs,
    );
    let default_spec = ServiceSpec::default();
    let spec = svc.spec.as_ref().unwrap_or(&default_spec);
    validate_service_spec(spec, &Path::root("spec"), &mut errs);
    ValidationErrors::new(errs).into_result(Vec::new())
}

/// The effective cluster IPs: `clusterIPs`, or `[clusterIP]` when only that is set (the API
/// strategy syncs the two before validation).
fn cluster_ips(spec: &ServiceSpec) -> Vec<&str> {
    match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => match s(&spec.cluster_ip) {
            "" => Vec::new(),
            ip => vec![ip],
        },
    }
}

fn validate_service_spec(spec: &ServiceSpec, path: &Path, errs: &mut Vec<FieldError>) {
    let ty = s(&spec.type_);
    let ips = cluster_ips(spec);
    let headless = ips.as_slice() == ["None"];
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    let ports_path = path.child("ports");

    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(ports_path.as_str(), ""));
    }
    match ty {
        "LoadBalancer" if headless => errs.push(FieldError::invalid(
            path.child("clusterIPs").index(0).as_str(),
            Value::str("None"),
            "may not be set to 'None' for LoadBalancer services",
        )),
        "NodePort" if headless => errs.push(FieldError::invalid(
            path.child("clusterIPs").index(0).as_str(),
            Value::str("None"),
            "may not be set to 'None' for NodePort services",
        )),
        "ExternalName" => {
            if !ips.is_empty() {
                errs.push(FieldError::forbidden(
                    path.child("clusterIPs").as_str(),
                    "may not be set for ExternalName services",
                ));
            }
            let external = s(&spec.external_name);
            let cname = external.strip_suffix('.').unwrap_or(external);
            if cname.is_empty() {
                errs.push(FieldError::required(path.child("externalName").as_str(), ""));
            } else {
                for m in format::is_dns1123_subdomain(cname) {
                    errs.push(FieldError::invalid(
                        path.child("externalName").as_str(),
                        Value::str(cname),
                        m,
                    ));
                }
            }
        }
        _ => {}
    }

    let mut names = HashSet::new();
    let require_name = ports.len() > 1;
    for (i, port) in ports.iter().enumerate() {
        let p = ports_path.index(i);
        let name = s(&port.name);
        if require_name && name.is_empty() {
            errs.push(FieldError::required(p.child("name").as_str(), ""));
        } else if !name.is_empty() {
            for m in format::is_dns1123_label(name) {
                errs.push(FieldError::invalid(p.child("name").as_str(), Value::str(name), m));
            }
            if !names.insert(name) {
                errs.push(FieldError::duplicate(p.child("name").as_str(), Value::str(name)));
            }
        }
        for m in format::is_valid_port_num(i64::from(port.port)) {
            errs.push(FieldError::invalid(
                p.child("port").as_str(),
                Value::int(port.port),
                m,
            ));
        }
        validate_protocol(&port.protocol, &p.child("protocol"), errs);
        let target = port
            .target_port
            .clone()
            .unwrap_or(podvisor_core::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0));
        validate_port_num_or_name(&target, &p.child("targetPort"), errs);
        if let Some(app) = &port.app_protocol {
            for m in format::is_qualified_name(app) {
                errs.push(FieldError::invalid(
                    p.child("appProtocol").as_str(),
                    Value::str(app),
                    m,
                ));
            }
        }
    }

    if let Some(selector) = &spec.selector {
        super::meta::validate_labels(selector, &path.child("selector"), errs);
    }

    let sa_path = path.child("sessionAffinity");
    match s(&spec.session_affinity) {
        "" => errs.push(FieldError::required(sa_path.as_str(), "")),
        "ClientIP" | "None" => {}
        other => errs.push(FieldError::not_supported(
            sa_path.as_str(),
            Value::str(other),
            &["ClientIP", "None"],
        )),
    }
    if s(&spec.session_affinity) == "None" && spec.session_affinity_config.is_some() {
        errs.push(FieldError::forbidden(
            path.child("sessionAffinityConfig").as_str(),
            "must not be set when session affinity is None",
        ));
    }

    if ty != "ExternalName" {
        validate_cluster_ips(spec, &ips, path, errs);
    }

    let type_path = path.child("type");
    match ty {
        "" => errs.push(FieldError::required(type_path.as_str(), "")),
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" => {}
        other => errs.push(FieldError::not_supported(
            type_path.as_str(),
            Value::str(other),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }

    let mut node_ports = HashSet::new();
    let mut port_keys = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = ports_path.index(i);
        let node_port = port.node_port.unwrap_or(0);
        if node_port != 0 {
            if ty == "ClusterIP" {
                errs.push(FieldError::forbidden(
                    p.child("nodePort").as_str(),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else {
                for m in format::is_valid_port_num(i64::from(node_port)) {
                    errs.push(FieldError::invalid(
                        p.child("nodePort").as_str(),
                        Value::int(node_port),
                        m,
                    ));
                }
            }
            if !node_ports.insert((s(&port.protocol), node_port)) {
                errs.push(FieldError::duplicate(
                    p.child("nodePort").as_str(),
                    Value::int(node_port),
                ));
            }
        }
        if !port_keys.insert((s(&port.protocol), port.port)) {
            // Kubernetes prints the Go struct key here.
            errs.push(FieldError::duplicate(
                p.as_str(),
                Value::raw(format!(
                    "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    super::field::go_quote(s(&port.protocol)),
                    port.port
                )),
            ));
        }
    }
}

fn validate_cluster_ips(spec: &ServiceSpec, ips: &[&str], path: &Path, errs: &mut Vec<FieldError>) {
    let ips_path = path.child("clusterIPs");
    let cluster_ip = s(&spec.cluster_ip);
    let explicit = spec.cluster_ips.as_deref().unwrap_or(&[]);
    if !cluster_ip.is_empty() {
        if let Some(first) = explicit.first()
            && first != cluster_ip
        {
            errs.push(FieldError::invalid(
                ips_path.as_str(),
                go_slice(explicit),
                "first value must match `clusterIP`",
            ));
        }
    } else if !explicit.is_empty() {
        errs.push(FieldError::invalid(
            ips_path.as_str(),
            go_slice(explicit),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && *ip == "None" {
            if ips.len() > 1 {
                errs.push(FieldError::invalid(
                    ips_path.as_str(),
                    go_slice(ips),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        for m in format::is_valid_ip(ip) {
            errs.push(FieldError::invalid(ips_path.index(i).as_str(), Value::str(ip), m));
        }
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            ips_path.as_str(),
            go_slice(ips),
            "may only hold up to 2 values",
        ));
    }
}

/// Render a string list as Go's `%#v` of `[]string` does.
fn go_slice<S: AsRef<str>>(items: &[S]) -> Value {
    let quoted: Vec<String> = items.iter().map(|s| super::field::go_quote(s.as_ref())).collect();
    Value::raw(format!("[]string{{{}}}", quoted.join(", ")))
}
