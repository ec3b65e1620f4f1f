//! ConfigMaps and Secrets: validation from `podvisor-api` (immutability included), a Secret's
//! `stringData` folded into `data` and its type defaulted, and kubectl's tables.

use podvisor_core::corev1::{ConfigMap, Secret};
use serde_json::Value;

use super::{Rejection, Strategy, decode_as, typed, typed_row, untyped};
use crate::table::{Column, Row, created};

/// The ConfigMap strategy.
#[derive(Debug)]
pub struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    fn decode_known(&self, object: &Value) -> Result<(Value, Vec<String>), String> {
        decode_as::<ConfigMap>(object)
    }

    fn default_and_validate(
        &self,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<Vec<String>, Rejection> {
        let cm: ConfigMap = typed(object)?;
        match old {
            Some(old) => podvisor_api::validation::validate_config_map_update(&typed(old)?, &cm)?,
            None => podvisor_api::validation::validate_config_map(&cm)?,
        };
        Ok(Vec::new())
    }

    fn columns(&self) -> Vec<Column> {
        vec![Column::NAME, Column::text("Data", 0), Column::AGE]
    }

    fn row(&self, object: &Value, now: i64) -> Row {
        typed_row::<ConfigMap>(object, 3, |cm| {
            let count =
                cm.data.as_ref().map_or(0, |d| d.len()) + cm.binary_data.as_ref().map_or(0, |d| d.len());
            vec![
                cm.metadata.name.clone().unwrap_or_default(),
                count.to_string(),
                created(&cm.metadata, now),
            ]
        })
    }
}

/// The Secret strategy.
#[derive(Debug)]
pub struct SecretStrategy;

impl Strategy for SecretStrategy {
    fn decode_known(&self, object: &Value) -> Result<(Value, Vec<String>), String> {
        decode_as::<Secret>(object)
    }

    fn default_and_validate(
        &self,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<Vec<String>, Rejection> {
        let mut secret: Secret = typed(object)?;
        podvisor_api::validation::fold_string_data(&mut secret);
        podvisor_api::defaults::default_secret(&mut secret);
        match old {
            Some(old) => podvisor_api::validation::validate_secret_update(&typed(old)?, &secret)?,
            None => podvisor_api::validation::validate_secret(&secret)?,
        };
        *object = untyped(&secret)?;
        Ok(Vec::new())
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Type", 0),
            Column::text("Data", 0),
            Column::AGE,
        ]
    }

    fn row(&self, object: &Value, now: i64) -> Row {
        typed_row::<Secret>(object, 4, |secret| {
            vec![
                secret.metadata.name.clone().unwrap_or_default(),
                secret.type_.clone().unwrap_or_else(|| "Opaque".into()),
                secret.data.as_ref().map_or(0, |d| d.len()).to_string(),
                created(&secret.metadata, now),
            ]
        })
    }
}
