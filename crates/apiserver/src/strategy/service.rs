//! Services: defaulting and validation from `podvisor-api`, ClusterIP and node-port
//! allocation on create ([`crate::alloc`]), and kubectl's service table.

use podvisor_core::corev1::Service;
use serde_json::Value;

use super::{Rejection, Strategy, decode_as, typed, untyped, warnings};
use crate::meta::str_at;
use crate::table::{Column, Row, age, arr, or_none, text};

/// The service strategy.
#[derive(Debug)]
pub struct ServiceStrategy;

impl Strategy for ServiceStrategy {
    fn decode_known(&self, object: &Value) -> Result<(Value, Vec<String>), String> {
        decode_as::<Service>(object)
    }

    fn default_and_validate(
        &self,
        object: &mut Value,
        _old: Option<&Value>,
    ) -> Result<Vec<String>, Rejection> {
        let mut svc: Service = typed(object)?;
        podvisor_api::defaults::default_service(&mut svc);
        let w = podvisor_api::validation::validate_service(&svc)?;
        *object = untyped(&svc)?;
        Ok(warnings(&w))
    }

    fn allocates_addresses(&self) -> bool {
        true
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Type", 0),
            Column::text("Cluster-IP", 0),
            Column::text("External-IP", 0),
            Column::text("Port(s)", 0),
            Column::AGE,
            Column::text("Selector", 1),
        ]
    }

    fn row(&self, o: &Value, now: i64) -> Row {
        let ty = str_at(o, "spec.type").unwrap_or("ClusterIP").to_string();
        let external = if ty == "ExternalName" {
            text(o, "spec.externalName")
        } else {
            let mut ips: Vec<String> = arr(o, "spec.externalIPs")
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            ips.extend(arr(o, "status.loadBalancer.ingress").iter().filter_map(|i| {
                i.get("ip")
                    .or_else(|| i.get("hostname"))
                    .and_then(Value::as_str)
                    .map(String::from)
            }));
            if ips.is_empty() && ty == "LoadBalancer" {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        };
        let ports: Vec<String> = arr(o, "spec.ports")
            .iter()
            .map(|p| {
                let port = p.get("port").map(|v| v.to_string()).unwrap_or_default();
                let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                match p.get("nodePort").and_then(Value::as_i64) {
                    Some(np) if np != 0 => format!("{port}:{np}/{proto}"),
                    _ => format!("{port}/{proto}"),
                }
            })
            .collect();
        let selector = o
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        Row::cells(vec![
            text(o, "metadata.name"),
            ty,
            or_none(text(o, "spec.clusterIP")),
            or_none(external),
            or_none(ports.join(",")),
            age(o, "metadata.creationTimestamp", now),
            or_none(selector),
        ])
    }
}
