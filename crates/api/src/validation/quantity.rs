//! `resource.Quantity` values: the grammar kube-apiserver parses them with, and the
//! non-negative rule of container resources and `emptyDir.sizeLimit`.

use std::collections::BTreeMap;

use podvisor_core::k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::field::{FieldError, Path, Value};

use podvisor_core::quantity::QUANTITY_FORMAT;

/// Whether `q` is a quantity (the grammar of `podvisor_core::quantity::parse`: an optionally
/// signed decimal number with at least one digit, then nothing, a binary-SI suffix (`Ki` ..
/// `Ei`), a decimal-SI suffix (`n u m k M G T P E`) or a decimal exponent (`e3`, `E-2`)).
/// Returns its sign (`true` when negative) if it is one.
pub fn parse_quantity(q: &str) -> Option<bool> {
    podvisor_core::quantity::parse(q).ok().map(|q| q.is_negative())
}

/// Checks one quantity that must be non-negative, at `path`.
pub(crate) fn validate_non_negative(q: &Quantity, path: &str, errs: &mut Vec<FieldError>) {
    match parse_quantity(&q.0) {
        None => errs.push(FieldError::invalid(path, Value::str(&q.0), QUANTITY_FORMAT)),
        Some(true) => errs.push(FieldError::invalid(
            path,
            Value::str(&q.0),
            "must be greater than or equal to 0",
        )),
        Some(false) => {}
    }
}

/// Checks `limits` or `requests` of a container's resources (`path` is
/// `spec.containers[0].resources.limits`; entries are `...limits[memory]`).
pub(crate) fn validate_resource_list(
    list: Option<&BTreeMap<String, Quantity>>,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    for (name, q) in list.into_iter().flatten() {
        validate_non_negative(q, &format!("{}[{name}]", path.as_str()), errs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quantity_grammar() {
        for ok in [
            "1", "0.5", ".5", "500m", "64Mi", "1e3", "1E-2", "+2", "12Ki", "3n", "0",
        ] {
            assert_eq!(parse_quantity(ok), Some(false), "{ok}");
        }
        for neg in ["-1", "-0.5Gi"] {
            assert_eq!(parse_quantity(neg), Some(true), "{neg}");
        }
        assert_eq!(parse_quantity("-0"), Some(false));
        for bad in ["", "abc", "1.2.3", "1Kb", "Mi", "1e", "- 1", "1 Mi", "1mi", "."] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
    }
}
