//! Nodes, Leases, Endpoints and EndpointSlices: objects written by the node and its
//! controllers, validated by their metadata, with kube-apiserver's tables.

use podvisor_core::k8s_openapi::api::{coordination, core, discovery};
use serde_json::Value;

use super::{Strategy, decode_as, typed_row};
use crate::table::{Column, Row, created, more, or_none, or_unknown};

/// The Node strategy.
#[derive(Debug)]
pub struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn decode_known(&self, object: &Value) -> Result<(Value, Vec<String>), String> {
        decode_as::<core::v1::Node>(object)
    }

    fn validates_only_metadata(&self) -> bool {
        true
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Status", 0),
            Column::text("Roles", 0),
            Column::AGE,
            Column::text("Version", 0),
            Column::text("Internal-IP", 1),
            Column::text("External-IP", 1),
            Column::text("OS-Image", 1),
            Column::text("Kernel-Version", 1),
            Column::text("Container-Runtime", 1),
        ]
    }

    fn row(&self, object: &Value, now: i64) -> Row {
        typed_row::<core::v1::Node>(object, 10, |node| {
            let status = node.status.as_ref();
            let ready = status
                .and_then(|s| s.conditions.as_deref())
                .unwrap_or_default()
                .iter()
                .find(|c| c.type_ == "Ready");
            // kubectl's rule: Ready when True, NotReady when False or Unknown, Unknown only
            // without a Ready condition.
            let mut shown = match ready.map(|c| c.status.as_str()) {
                Some("True") => "Ready".to_string(),
                Some(_) => "NotReady".to_string(),
                None => "Unknown".to_string(),
            };
            if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
                shown.push_str(",SchedulingDisabled");
            }
            let roles: Vec<&str> = node
                .metadata
                .labels
                .iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                .collect();
            let addr = |t: &str| {
                status
                    .and_then(|s| s.addresses.as_deref())
                    .unwrap_or_default()
                    .iter()
                    .find(|a| a.type_ == t)
                    .map(|a| a.address.clone())
                    .unwrap_or_default()
            };
            let info = status.and_then(|s| s.node_info.as_ref());
            let info_of =
                |f: fn(&core::v1::NodeSystemInfo) -> &String| info.map(f).cloned().unwrap_or_default();
            vec![
                node.metadata.name.clone().unwrap_or_default(),
                shown,
                or_none(roles.join(",")),
                created(&node.metadata, now),
                info_of(|i| &i.kubelet_version),
                or_none(addr("InternalIP")),
                or_none(addr("ExternalIP")),
                or_unknown(info_of(|i| &i.os_image)),
                or_unknown(info_of(|i| &i.kernel_version)),
                or_unknown(info_of(|i| &i.container_runtime_version)),
            ]
        })
    }
}

/// The Lease strategy.
#[derive(Debug)]
pub struct LeaseStrategy;

impl Strategy for LeaseStrategy {
    fn decode_known(&self, object: &Value) -> Result<(Value, Vec<String>), String> {
        decode_as::<coordination::v1::Lease>(object)
    }

    fn columns(&self) -> Vec<Column> {
        vec![Column::NAME, Column::text("Holder", 0), Column::AGE]
    }

    fn row(&self, object: &Value, now: i64) -> Row {
        typed_row::<coordination::v1::Lease>(object, 3, |lease| {
            vec![
                lease.metadata.name.clone().unwrap_or_default(),
                lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.clone())
                    .unwrap_or_default(),
                created(&lease.metadata, now),
            ]
        })
    }
}

/// The Endpoints strategy.
#[derive(Debug)]
pub struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    fn decode_known(&self, object: &Value) -> Result<(Value, Vec<String>), String> {
        decode_as::<core::v1::Endpoints>(object)
    }

    fn validates_only_metadata(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<Column> {
        vec![Column::NAME, Column::text("Endpoints", 0), Column::AGE]
    }

    fn row(&self, object: &Value, now: i64) -> Row {
        typed_row::<core::v1::Endpoints>(object, 3, |ep| {
            let mut list = Vec::new();
            for subset in ep.subsets.iter().flatten() {
                let ports: Vec<i32> = subset.ports.iter().flatten().map(|p| p.port).collect();
                for a in subset.addresses.iter().flatten() {
                    if ports.is_empty() {
                        list.push(a.ip.clone());
                    }
                    for p in &ports {
                        list.push(format!("{}:{p}", a.ip));
                    }
                }
            }
            vec![
                ep.metadata.name.clone().unwrap_or_default(),
                more(list),
                created(&ep.metadata, now),
            ]
        })
    }
}

/// The EndpointSlice strategy.
#[derive(Debug)]
pub struct EndpointSliceStrategy;

impl Strategy for EndpointSliceStrategy {
    fn decode_known(&self, object: &Value) -> Result<(Value, Vec<String>), String> {
        decode_as::<discovery::v1::EndpointSlice>(object)
    }

    fn validates_only_metadata(&self) -> bool {
        true
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["addressType"]
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("AddressType", 0),
            Column::text("Ports", 0),
            Column::text("Endpoints", 0),
            Column::AGE,
        ]
    }

    fn row(&self, object: &Value, now: i64) -> Row {
        typed_row::<discovery::v1::EndpointSlice>(object, 5, |slice| {
            let ports: Vec<String> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| p.port)
                .map(|p| p.to_string())
                .collect();
            let addrs: Vec<String> = slice
                .endpoints
                .iter()
                .flat_map(|e| e.addresses.iter().cloned())
                .collect();
            let ports = if ports.is_empty() {
                "<unset>".to_string()
            } else {
                ports.join(",")
            };
            let addrs = if addrs.is_empty() {
                "<unset>".to_string()
            } else {
                more(addrs)
            };
            vec![
                slice.metadata.name.clone().unwrap_or_default(),
                slice.address_type.clone(),
                ports,
                addrs,
                created(&slice.metadata, now),
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_whose_ready_condition_is_unknown_shows_not_ready() {
        let status = |ready: Option<&str>| {
            let conditions: Vec<Value> = ready
                .map(|s| serde_json::json!({"type": "Ready", "status": s}))
                .into_iter()
                .collect();
            let node = serde_json::json!({"metadata": {"name": "n"}, "status": {"conditions": conditions}});
            NodeStrategy.row(&node, 0).cells[1].clone()
        };
        assert_eq!(status(Some("True")), "Ready");
        assert_eq!(status(Some("False")), "NotReady");
        assert_eq!(status(Some("Unknown")), "NotReady");
        assert_eq!(status(None), "Unknown");
    }
}
