//! Namespaces: created `Active` with the `kubernetes` finalizer, never deleted while it
//! remains (the namespace controller, [`crate::namespaces`], empties and removes them), the
//! kept ones refused, marked `Terminating` when deleted.

use podvisor_core::corev1::Namespace;
use serde_json::{Value, json};

use super::{Rejection, Strategy, decode_as, typed_row};
use crate::table::{Column, Row, created};

/// The namespace strategy.
#[derive(Debug)]
pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn decode_known(&self, object: &Value) -> Result<(Value, Vec<String>), String> {
        decode_as::<Namespace>(object)
    }

    fn validates_only_metadata(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, object: &mut Value) -> Result<(), Rejection> {
        object["spec"] = json!({"finalizers": ["kubernetes"]});
        object["status"] = json!({"phase": "Active"});
        Ok(())
    }

    fn check_delete(&self, name: &str) -> Result<(), &'static str> {
        if crate::namespaces::IMMORTAL.contains(&name) {
            return Err("this namespace may not be deleted");
        }
        Ok(())
    }

    /// A namespace with `spec.finalizers` (`kubernetes`) terminates first: its contents are
    /// deleted by [`crate::namespaces`], which then removes it.
    fn finalizing(&self, object: &Value) -> bool {
        object
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
    }

    fn mark_deleting(&self, object: &mut Value) {
        object["status"]["phase"] = json!("Terminating");
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    fn columns(&self) -> Vec<Column> {
        vec![Column::NAME, Column::text("Status", 0), Column::AGE]
    }

    fn row(&self, object: &Value, now: i64) -> Row {
        typed_row::<Namespace>(object, 3, |ns| {
            vec![
                ns.metadata.name.clone().unwrap_or_default(),
                ns.status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Active".into()),
                created(&ns.metadata, now),
            ]
        })
    }
}
