//! Request options from the query string and `DeleteOptions` bodies, parsed strictly as
//! kube-apiserver does (a malformed number is 400 BadRequest, an unsupported
//! `propagationPolicy` 422 Invalid), and the arithmetic on them checked: no user-supplied
//! duration or revision can overflow.

use std::collections::HashMap;
use std::str::FromStr;

use podvisor_core::k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

use crate::status::{ApiError, Cause, Result};

/// The query string as a map (`application/x-www-form-urlencoded`: `+` is a space, `%XX`
/// escapes decoded, invalid UTF-8 replaced); a repeated key keeps its last value.
pub(crate) fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// An integer query parameter (`limit`, `timeoutSeconds`, `gracePeriodSeconds`): absent is
/// `None`, a value that is not a `T` is 400 BadRequest with Go's `strconv` message, as
/// kube-apiserver's parameter codec answers.
pub fn int_param<T: FromStr>(query: &HashMap<String, String>, name: &str) -> Result<Option<T>> {
    match query.get(name) {
        None => Ok(None),
        Some(v) => {
            v.trim().parse::<T>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))
            })
        }
    }
}

/// A resourceVersion from the query: empty or absent is 0 ("any"), otherwise a decimal `u64`
/// (kube-apiserver: 400 `invalid resource version` for anything else).
pub fn resource_version(query: &HashMap<String, String>) -> Result<u64> {
    match query.get("resourceVersion").map(String::as_str) {
        None | Some("") => Ok(0),
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v:?}"))),
    }
}

/// The `DeleteOptions` of a delete request: from the body when there is one, else from the
/// query (as kube-apiserver reads them), validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds` as the client sent it (for pods, see [`pod_grace_period`]).
    pub grace_period_seconds: Option<i64>,
    /// `preconditions.resourceVersion`.
    pub precondition_resource_version: Option<u64>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `propagationPolicy`, or the deprecated `orphanDependents` (true: Orphan, false:
    /// Background); `None` when the client named neither.
    pub propagation: Option<crate::strategy::Propagation>,
}

impl DeleteOptions {
    /// Parses and validates a delete request's options: `body` is the decoded body
    /// (`Value::Null` when empty).
    pub fn parse(query: &HashMap<String, String>, body: &Value) -> Result<DeleteOptions> {
        let options: metav1::DeleteOptions = if body.is_null() {
            metav1::DeleteOptions {
                grace_period_seconds: int_param(query, "gracePeriodSeconds")?,
                propagation_policy: query.get("propagationPolicy").cloned(),
                orphan_dependents: match query.get("orphanDependents").map(String::as_str) {
                    None => None,
                    Some("true" | "1") => Some(true),
                    Some("false" | "0") => Some(false),
                    Some(v) => {
                        return Err(ApiError::bad_request(format!(
                            "strconv.ParseBool: parsing {v:?}: invalid syntax"
                        )));
                    }
                },
                ..Default::default()
            }
        } else {
            serde_json::from_value(body.clone()).map_err(|e| {
                ApiError::bad_request(format!(
                    "DeleteOptions in version \"v1\" cannot be handled as a DeleteOptions: {e}"
                ))
            })?
        };
        let mut causes = Vec::new();
        if options.orphan_dependents.is_some() && options.propagation_policy.is_some() {
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!(
                    "Invalid value: {:?}: orphanDependents and deletionPropagation cannot be both set",
                    options.propagation_policy.as_deref().unwrap_or("")
                ),
                field: "propagationPolicy".into(),
            });
        }
        if let Some(p) = options.propagation_policy.as_deref()
            && !matches!(p, "Foreground" | "Background" | "Orphan")
        {
            causes.push(Cause {
                reason: "FieldValueNotSupported".into(),
                message: format!(
                    "Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                ),
                field: "propagationPolicy".into(),
            });
        }
        if !causes.is_empty() {
            return Err(invalid_delete_options(causes));
        }
        let preconditions = options.preconditions.unwrap_or_default();
        let precondition_resource_version = match preconditions.resource_version {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v:?}")))?,
            ),
        };
        let propagation = match (options.propagation_policy.as_deref(), options.orphan_dependents) {
            (Some(p), _) => crate::strategy::Propagation::parse(p),
            (None, Some(true)) => Some(crate::strategy::Propagation::Orphan),
            (None, Some(false)) => Some(crate::strategy::Propagation::Background),
            (None, None) => None,
        };
        Ok(DeleteOptions {
            grace_period_seconds: options.grace_period_seconds,
            precondition_resource_version,
            precondition_uid: preconditions.uid,
            propagation,
        })
    }
}

/// 422 Invalid for `DeleteOptions` (kube-apiserver: kind `DeleteOptions`, group
/// `meta.k8s.io`, no name).
fn invalid_delete_options(causes: Vec<Cause>) -> ApiError {
    let listed: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let joined = if listed.len() == 1 {
        listed.join("")
    } else {
        format!("[{}]", listed.join(", "))
    };
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("DeleteOptions.meta.k8s.io \"\" is invalid: {joined}"),
        details: Some(Box::new((
            "meta.k8s.io".into(),
            "DeleteOptions".into(),
            String::new(),
        ))),
        causes,
        continue_token: None,
    }
}

/// The grace period a pod's deletion gets (kube-apiserver's pod strategy): the requested
/// period, else the pod's `terminationGracePeriodSeconds` (30 when unset); 0 for a pod not
/// bound to a node or already finished; and a negative period becomes 1 s, so `-1` never
/// force-deletes.
pub fn pod_grace_period(requested: Option<i64>, pod: &Value) -> i64 {
    let period = requested
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    let unscheduled = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if unscheduled || finished {
        0
    } else if period < 0 {
        1
    } else {
        period
    }
}

/// The latest time an RFC 3339 timestamp with a four-digit year can name, in milliseconds
/// (9999-12-31T23:59:59Z): later deadlines are clamped to it, so every client can parse them.
const MAX_TIMESTAMP_MILLIS: i64 = 253_402_300_799_000;

/// `now + grace` seconds in milliseconds, saturating at 9999-12-31T23:59:59Z.
pub fn deadline_millis(now_millis: i64, grace_seconds: i64) -> i64 {
    now_millis
        .saturating_add(grace_seconds.saturating_mul(1000))
        .min(MAX_TIMESTAMP_MILLIS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_decoding() {
        let q = parse_query(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&bad=%zz&x=1&x=2",
        ));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["watch"], "1");
        assert_eq!(q["bad"], "%zz", "an invalid escape stays as written");
        assert_eq!(q["x"], "2");
        assert!(parse_query(None).is_empty());
    }

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn malformed_numbers_are_bad_requests() {
        assert_eq!(int_param::<i64>(&q(&[("limit", "5")]), "limit").unwrap(), Some(5));
        assert_eq!(int_param::<i64>(&q(&[]), "limit").unwrap(), None);
        let e = int_param::<i64>(&q(&[("limit", "abc")]), "limit").unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(e.message, "strconv.ParseInt: parsing \"abc\": invalid syntax");
        assert_eq!(
            int_param::<i64>(&q(&[("t", "99999999999999999999")]), "t")
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            resource_version(&q(&[("resourceVersion", "x")]))
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(resource_version(&q(&[("resourceVersion", "")])).unwrap(), 0);
    }

    #[test]
    fn delete_options_come_from_the_body_or_the_query_and_are_validated() {
        let o = DeleteOptions::parse(&q(&[("gracePeriodSeconds", "7")]), &Value::Null).unwrap();
        assert_eq!(o.grace_period_seconds, Some(7));
        let o = DeleteOptions::parse(
            &q(&[]),
            &json!({"gracePeriodSeconds": 3, "preconditions": {"resourceVersion": "12", "uid": "u"}}),
        )
        .unwrap();
        assert_eq!(
            (
                o.grace_period_seconds,
                o.precondition_resource_version,
                o.precondition_uid.as_deref()
            ),
            (Some(3), Some(12), Some("u"))
        );
        let e = DeleteOptions::parse(&q(&[("propagationPolicy", "Sideways")]), &Value::Null).unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(
            e.message,
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Sideways\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
        );
        assert_eq!(e.causes[0].field, "propagationPolicy");
        assert_eq!(
            DeleteOptions::parse(&q(&[("gracePeriodSeconds", "soon")]), &Value::Null)
                .unwrap_err()
                .code,
            400
        );
        // Larger than an int64: the body does not decode.
        let e = DeleteOptions::parse(&q(&[]), &json!({"gracePeriodSeconds": 1e30})).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(DeleteOptions::parse(&q(&[("propagationPolicy", "Background")]), &Value::Null).is_ok());
    }

    #[test]
    fn pod_grace_follows_the_pod_strategy() {
        let bound = json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 20}});
        assert_eq!(pod_grace_period(None, &bound), 20);
        assert_eq!(pod_grace_period(Some(5), &bound), 5);
        assert_eq!(pod_grace_period(Some(0), &bound), 0);
        assert_eq!(pod_grace_period(Some(-1), &bound), 1, "negative becomes 1 s");
        assert_eq!(pod_grace_period(Some(i64::MIN), &bound), 1);
        assert_eq!(pod_grace_period(Some(i64::MAX), &bound), i64::MAX);
        assert_eq!(pod_grace_period(Some(5), &json!({"spec": {}})), 0, "unscheduled");
        let done = json!({"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}});
        assert_eq!(pod_grace_period(Some(5), &done), 0);
    }

    #[test]
    fn deadlines_saturate_at_the_last_four_digit_year() {
        assert_eq!(deadline_millis(1_000, 2), 3_000);
        let far = deadline_millis(crate::meta::now_millis(), i64::MAX);
        assert_eq!(crate::meta::rfc3339(far), "9999-12-31T23:59:59Z");
    }
}
