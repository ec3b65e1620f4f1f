//! Nodes, Leases, Endpoints and EndpointSlices: objects written by the node and its
//! controllers, validated by their metadata, with kube-apiserver's tables.

use podvisor_core::k8s_openapi::api::{coordination, core, discovery};
use serde_json::Value;

use super::{Strategy, decode_as};
use crate::table::{Column, Row, age, arr, more, or_none, or_unknown, text};

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

    fn row(&self, o: &Value, now: i64) -> Row {
        let ready = arr(o, "status.conditions")
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
        let mut status = match ready.and_then(|c| c.get("status")).and_then(Value::as_str) {
            Some("True") => "Ready".to_string(),
            Some("False") => "NotReady".to_string(),
            _ => "Unknown".to_string(),
        };
        if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
            status.push_str(",SchedulingDisabled");
        }
        let roles: Vec<String> = o
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let addr = |t: &str| {
            arr(o, "status.addresses")
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) == Some(t))
                .and_then(|a| a.get("address"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Row::cells(vec![
            text(o, "metadata.name"),
            status,
            or_none(roles.join(",")),
            age(o, "metadata.creationTimestamp", now),
            text(o, "status.nodeInfo.kubeletVersion"),
            or_none(addr("InternalIP")),
            or_none(addr("ExternalIP")),
            or_unknown(text(o, "status.nodeInfo.osImage")),
            or_unknown(text(o, "status.nodeInfo.kernelVersion")),
            or_unknown(text(o, "status.nodeInfo.containerRuntimeVersion")),
        ])
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

    fn row(&self, o: &Value, now: i64) -> Row {
        Row::cells(vec![
            text(o, "metadata.name"),
            text(o, "spec.holderIdentity"),
            age(o, "metadata.creationTimestamp", now),
        ])
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

    fn row(&self, o: &Value, now: i64) -> Row {
        let mut list = Vec::new();
        for subset in arr(o, "subsets") {
            let ports: Vec<String> = arr(subset, "ports")
                .iter()
                .filter_map(|p| p.get("port"))
                .map(|p| p.to_string())
                .collect();
            for a in arr(subset, "addresses") {
                let ip = a.get("ip").and_then(Value::as_str).unwrap_or("");
                if ports.is_empty() {
                    list.push(ip.to_string());
                }
                for p in &ports {
                    list.push(format!("{ip}:{p}"));
                }
            }
        }
        Row::cells(vec![
            text(o, "metadata.name"),
            more(list),
            age(o, "metadata.creationTimestamp", now),
        ])
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

    fn row(&self, o: &Value, now: i64) -> Row {
        let ports: Vec<String> = arr(o, "ports")
            .iter()
            .filter_map(|p| p.get("port"))
            .map(|p| p.to_string())
            .collect();
        let addrs: Vec<String> = arr(o, "endpoints")
            .iter()
            .flat_map(|e| {
                arr(e, "addresses")
                    .iter()
                    .filter_map(|a| a.as_str().map(String::from))
            })
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
        Row::cells(vec![
            text(o, "metadata.name"),
            text(o, "addressType"),
            ports,
            addrs,
            age(o, "metadata.creationTimestamp", now),
        ])
    }
}
