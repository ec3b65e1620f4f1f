//! Services: defaulting and validation from `podvisor-api`, ClusterIP and node-port
//! allocation on create ([`crate::alloc`]), and kubectl's service table.

use podvisor_core::corev1::Service;
use serde_json::Value;

use super::{Rejection, Strategy, decode_as, typed, typed_row, untyped, warnings};
use crate::table::{Column, Row, created, or_none};

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

    fn row(&self, object: &Value, now: i64) -> Row {
        typed_row::<Service>(object, 7, |svc| {
            let spec = svc.spec.as_ref();
            let ty = spec.and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP");
            let external = if ty == "ExternalName" {
                spec.and_then(|s| s.external_name.clone()).unwrap_or_default()
            } else {
                let mut ips: Vec<String> = spec.and_then(|s| s.external_ips.clone()).unwrap_or_default();
                let ingress = svc
                    .status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref())
                    .and_then(|lb| lb.ingress.as_deref())
                    .unwrap_or_default();
                ips.extend(
                    ingress
                        .iter()
                        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone())),
                );
                if ips.is_empty() && ty == "LoadBalancer" {
                    "<pending>".into()
                } else {
                    ips.join(",")
                }
            };
            let ports: Vec<String> = spec
                .and_then(|s| s.ports.as_deref())
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let proto = p.protocol.as_deref().unwrap_or("TCP");
                    match p.node_port {
                        Some(np) if np != 0 => format!("{}:{np}/{proto}", p.port),
                        _ => format!("{}/{proto}", p.port),
                    }
                })
                .collect();
            let selector = spec
                .and_then(|s| s.selector.as_ref())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                svc.metadata.name.clone().unwrap_or_default(),
                ty.to_string(),
                or_none(spec.and_then(|s| s.cluster_ip.clone()).unwrap_or_default()),
                or_none(external),
                or_none(ports.join(",")),
                created(&svc.metadata, now),
                or_none(selector),
            ]
        })
    }
}
