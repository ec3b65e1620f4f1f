//! Namespaces: created `Active` with the `kubernetes` finalizer, never deleted while it
//! remains (the namespace controller of `podvisor-controllers` empties them and removes it
//! through the `finalize` subresource, the only write that changes `spec.finalizers`), the
//! kept ones refused, marked `Terminating` when deleted.

use podvisor_core::corev1::Namespace;
use serde_json::{Value, json};

use super::{Rejection, Strategy, decode_as, typed, typed_row};
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

    /// `spec.finalizers` are standard or qualified names (what `finalize` may write).
    fn default_and_validate(
        &self,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<Vec<String>, Rejection> {
        let _ = old;
        let namespace: Namespace = typed(object)?;
        let finalizers = namespace.spec.and_then(|s| s.finalizers).unwrap_or_default();
        podvisor_api::validation::validate_namespace_finalizers(&finalizers)?;
        Ok(Vec::new())
    }

    fn prepare_for_create(&self, object: &mut Value) -> Result<(), Rejection> {
        object["spec"] = json!({"finalizers": ["kubernetes"]});
        object["status"] = json!({"phase": "Active"});
        Ok(())
    }

    /// Only `finalize` changes `spec.finalizers`.
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        let Some(object) = new.as_object_mut() else {
            return;
        };
        let spec = object.entry("spec").or_insert_with(|| json!({}));
        if !spec.is_object() {
            *spec = json!({});
        }
        if let Some(spec) = spec.as_object_mut() {
            match old.pointer("/spec/finalizers") {
                Some(kept) => spec.insert("finalizers".into(), kept.clone()),
                None => spec.remove("finalizers"),
            };
        }
    }

    fn check_delete(&self, name: &str) -> Result<(), &'static str> {
        if crate::namespaces::IMMORTAL.contains(&name) {
            return Err("this namespace may not be deleted");
        }
        Ok(())
    }

    /// A namespace with `spec.finalizers` (`kubernetes`) terminates first: the namespace
    /// controller deletes its contents, then removes its finalizer through `finalize`.
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
