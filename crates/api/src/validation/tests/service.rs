//! Service validation.

use super::*;

#[test]
fn service_valid_and_headless() {
    let s = svc(
        json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "dns", "port": 53, "protocol": "UDP"}]}),
    );
    assert_eq!(validate_service(&s), Ok(vec![]));
    let headless = svc(json!({"clusterIP": "None"}));
    assert_eq!(validate_service(&headless), Ok(vec![]));
    let with_ip = svc(json!({"clusterIP": "10.0.0.10", "ports": [{"port": 80}]}));
    assert_eq!(validate_service(&with_ip), Ok(vec![]));
}

#[test]
fn service_name_and_ports() {
    let v = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1web"},
    "spec": {"ports": [
        {"port": 80},
        {"name": "http", "port": 0, "protocol": "ICMP", "targetPort": 70000},
        {"name": "http", "port": 81, "targetPort": "Bad_Name"},
        {"name": "x", "port": 82, "nodePort": 30000}
    ]}});
    let mut s: Service = serde_json::from_value(v).expect("decodes");
    default_service(&mut s);
    assert_eq!(
        svc_errors(&s),
        [
            r#"metadata.name: Invalid value: "1web": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#,
            "spec.ports[0].name: Required value",
            "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            r#"spec.ports[1].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP""#,
            "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            r#"spec.ports[2].name: Duplicate value: "http""#,
            r#"spec.ports[2].targetPort: Invalid value: "Bad_Name": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#,
            "spec.ports[3].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
        ]
    );
}

#[test]
fn service_ports_required_unless_headless() {
    assert_eq!(svc_errors(&svc(json!({}))), ["spec.ports: Required value"]);
}

#[test]
fn service_selector_type_affinity_and_cluster_ip() {
    let s = svc(json!({
        "ports": [{"port": 80}],
        "selector": {"bad key!": "x".repeat(64)},
        "type": "Internal",
        "sessionAffinity": "Sticky",
        "clusterIP": "10.0.0.300"
    }));
    let errs = svc_errors(&s);
    assert_eq!(
        errs,
        [
            r#"spec.selector: Invalid value: "bad key!": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#.to_owned(),
            format!(r#"spec.selector: Invalid value: "{}": must be no more than 63 characters"#, "x".repeat(64)),
            r#"spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None""#.to_owned(),
            r#"spec.clusterIPs[0]: Invalid value: "10.0.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#.to_owned(),
            r#"spec.type: Unsupported value: "Internal": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#.to_owned(),
        ]
    );
}

#[test]
fn service_node_ports_and_headless_node_port() {
    let s = svc(json!({"type": "NodePort", "ports": [
        {"name": "a", "port": 80, "nodePort": 30080},
        {"name": "b", "port": 81, "nodePort": 30080},
        {"name": "c", "port": 82, "nodePort": 70000}
    ]}));
    assert_eq!(
        svc_errors(&s),
        [
            "spec.ports[1].nodePort: Duplicate value: 30080",
            "spec.ports[2].nodePort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        ]
    );
    let headless = svc(json!({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}));
    assert_eq!(
        svc_errors(&headless),
        [r#"spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort services"#]
    );
}
