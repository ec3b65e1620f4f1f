//! A Job's `podFailurePolicy` and `successPolicy` (`validatePodFailurePolicy`,
//! `validateSuccessPolicy`), as v1.35 with its paths and messages.

use std::collections::HashSet;

use podvisor_core::batchv1::{JobSpec, PodFailurePolicyRule, SuccessPolicy};

use super::field::{FieldError, Path, Value};
use super::format;
use super::pod::{Errs, s};
use super::template::{non_negative, template_spec};

const MAX_POD_FAILURE_POLICY_RULES: usize = 20;
const MAX_EXIT_CODE_VALUES: usize = 255;
const MAX_POD_CONDITION_PATTERNS: usize = 20;
const MAX_SUCCEEDED_INDEXES: usize = 64 * 1024;
const MAX_SUCCESS_POLICY_RULES: usize = 20;

/// A Go `%q` of a string list: `["a" "b"]`.
fn go_list(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| super::field::go_quote(v)).collect();
    format!("[{}]", quoted.join(" "))
}

pub(super) fn pod_failure_policy_errors(spec: &JobSpec, path: &Path, errs: &mut Errs) {
    let Some(policy) = &spec.pod_failure_policy else {
        return;
    };
    let rules_path = path.child("rules");
    if policy.rules.len() > MAX_POD_FAILURE_POLICY_RULES {
        errs.push(FieldError::too_many(
            rules_path.as_str(),
            policy.rules.len(),
            MAX_POD_FAILURE_POLICY_RULES,
        ));
    }
    let pod = template_spec(&spec.template);
    let names: HashSet<&str> = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .map(|c| c.name.as_str())
        .collect();
    for (i, rule) in policy.rules.iter().enumerate() {
        pod_failure_rule_errors(spec, rule, &rules_path.index(i), &names, errs);
    }
}

fn pod_failure_rule_errors(
    spec: &JobSpec,
    rule: &PodFailurePolicyRule,
    path: &Path,
    names: &HashSet<&str>,
    errs: &mut Errs,
) {
    const ACTIONS: &[&str] = &["Count", "FailIndex", "FailJob", "Ignore"];
    let ap = path.child("action");
    match rule.action.as_str() {
        "" => errs.push(FieldError::required(
            ap.as_str(),
            format!("valid values: {}", go_list(ACTIONS)),
        )),
        "FailIndex" => {
            if spec.backoff_limit_per_index.is_none() {
                errs.push(FieldError::invalid(
                    ap.as_str(),
                    Value::str("FailIndex"),
                    "requires the backoffLimitPerIndex to be set",
                ));
            }
        }
        a if ACTIONS.contains(&a) => {}
        other => errs.push(FieldError::not_supported(ap.as_str(), Value::str(other), ACTIONS)),
    }
    if let Some(codes) = &rule.on_exit_codes {
        let p = path.child("onExitCodes");
        let op = p.child("operator");
        match codes.operator.as_str() {
            "" => errs.push(FieldError::required(
                op.as_str(),
                format!("valid values: {}", go_list(&["In", "NotIn"])),
            )),
            "In" | "NotIn" => {}
            other => errs.push(FieldError::not_supported(
                op.as_str(),
                Value::str(other),
                &["In", "NotIn"],
            )),
        }
        if let Some(name) = &codes.container_name
            && !names.contains(name.as_str())
        {
            errs.push(FieldError::invalid(
                p.child("containerName").as_str(),
                Value::str(name),
                "must be one of the container or initContainer names in the pod template",
            ));
        }
        let vp = p.child("values");
        if codes.values.is_empty() {
            errs.push(FieldError::invalid(
                vp.as_str(),
                Value::json(&codes.values),
                "at least one value is required",
            ));
        } else if codes.values.len() > MAX_EXIT_CODE_VALUES {
            errs.push(FieldError::too_many(
                vp.as_str(),
                codes.values.len(),
                MAX_EXIT_CODE_VALUES,
            ));
        }
        let mut seen = HashSet::new();
        for (j, v) in codes.values.iter().enumerate() {
            let p = vp.index(j);
            if codes.operator == "In" && *v == 0 {
                errs.push(FieldError::invalid(
                    p.as_str(),
                    Value::int(0),
                    "must not be 0 for the In operator",
                ));
            }
            if !seen.insert(*v) {
                errs.push(FieldError::duplicate(p.as_str(), Value::int(*v)));
            }
        }
        if codes.values.windows(2).any(|w| w[0] > w[1]) {
            errs.push(FieldError::invalid(
                vp.as_str(),
                Value::json(&codes.values),
                "must be ordered",
            ));
        }
    }
    let patterns = rule.on_pod_conditions.as_deref().unwrap_or(&[]);
    if !patterns.is_empty() {
        let p = path.child("onPodConditions");
        if patterns.len() > MAX_POD_CONDITION_PATTERNS {
            errs.push(FieldError::too_many(
                p.as_str(),
                patterns.len(),
                MAX_POD_CONDITION_PATTERNS,
            ));
        }
        for (j, pattern) in patterns.iter().enumerate() {
            let pp = p.index(j);
            for m in format::is_qualified_name(&pattern.type_) {
                errs.push(FieldError::invalid(
                    pp.child("type").as_str(),
                    Value::str(&pattern.type_),
                    m,
                ));
            }
            let sp = pp.child("status");
            const STATUSES: &[&str] = &["False", "True", "Unknown"];
            match s(&pattern.status) {
                "" => errs.push(FieldError::required(
                    sp.as_str(),
                    format!("valid values: {}", go_list(STATUSES)),
                )),
                st if STATUSES.contains(&st) => {}
                other => errs.push(FieldError::not_supported(
                    sp.as_str(),
                    Value::str(other),
                    STATUSES,
                )),
            }
        }
    }
    match (rule.on_exit_codes.is_some(), !patterns.is_empty()) {
        (true, true) => errs.push(FieldError::invalid_omitted(
            path.as_str(),
            "specifying both OnExitCodes and OnPodConditions is not supported",
        )),
        (false, false) => errs.push(FieldError::invalid_omitted(
            path.as_str(),
            "specifying one of OnExitCodes and OnPodConditions is required",
        )),
        _ => {}
    }
}

pub(super) fn success_policy_errors(spec: &JobSpec, policy: &SuccessPolicy, path: &Path, errs: &mut Errs) {
    let rp = path.child("rules");
    if policy.rules.is_empty() {
        errs.push(FieldError::required(
            rp.as_str(),
            "at least one rules must be specified when the successPolicy is specified",
        ));
    }
    if policy.rules.len() > MAX_SUCCESS_POLICY_RULES {
        errs.push(FieldError::too_many(
            rp.as_str(),
            policy.rules.len(),
            MAX_SUCCESS_POLICY_RULES,
        ));
    }
    let completions = spec.completions.unwrap_or(0);
    for (i, rule) in policy.rules.iter().enumerate() {
        let p = rp.index(i);
        if rule.succeeded_count.is_none() && rule.succeeded_indexes.is_none() {
            errs.push(FieldError::required(
                p.as_str(),
                "at least one of succeededCount or succeededIndexes must be specified",
            ));
        }
        let mut total = 0i64;
        if let Some(indexes) = &rule.succeeded_indexes {
            let ip = p.child("succeededIndexes");
            if indexes.len() > MAX_SUCCEEDED_INDEXES {
                errs.push(FieldError::too_long(ip.as_str(), MAX_SUCCEEDED_INDEXES));
            }
            match indexes_total(indexes, completions) {
                Ok(t) => total = t,
                Err(e) => errs.push(FieldError::invalid(
                    ip.as_str(),
                    Value::str(indexes),
                    format!("error parsing succeededIndexes: {e}"),
                )),
            }
        }
        if let Some(count) = rule.succeeded_count {
            let cp = p.child("succeededCount");
            non_negative(i64::from(count), &cp, errs);
            if count > completions {
                errs.push(FieldError::invalid(
                    cp.as_str(),
                    Value::int(count),
                    format!(
                        "must be less than or equal to {completions} (the number of specified completions)"
                    ),
                ));
            }
            if rule.succeeded_indexes.is_some() && i64::from(count) > total {
                errs.push(FieldError::invalid(
                    cp.as_str(),
                    Value::int(count),
                    format!(
                        "must be less than or equal to {total} (the number of indexes in the specified succeededIndexes field)"
                    ),
                ));
            }
        }
    }
}

/// `validateIndexesFormat`: the number of indexes in `1,3-5,7`, all below `completions` and
/// increasing.
fn indexes_total(indexes: &str, completions: i32) -> Result<i64, String> {
    if indexes.is_empty() {
        return Ok(0);
    }
    let mut last: Option<i64> = None;
    let mut total = 0i64;
    for interval in indexes.split(',') {
        let (x, y) = index_interval(interval, completions)?;
        if let Some(l) = last
            && l >= x
        {
            return Err(format!("non-increasing order, previous: {l}, current: {x}"));
        }
        total = total.saturating_add(y - x + 1);
        last = Some(y);
    }
    Ok(total)
}

fn index_interval(interval: &str, completions: i32) -> Result<(i64, i64), String> {
    let limits: Vec<&str> = interval.split('-').collect();
    if limits.len() > 2 {
        return Err(format!(
            "the fragment {} violates the requirement that an index interval can have at most two parts separated by '-'",
            super::field::go_quote(interval)
        ));
    }
    let parse = |v: &str| -> Result<i64, String> {
        let n = v.parse::<i64>().map_err(|_| {
            format!(
                "cannot convert string to integer for index: {}",
                super::field::go_quote(v)
            )
        })?;
        if n >= i64::from(completions) {
            return Err(format!("too large index: {}", super::field::go_quote(v)));
        }
        Ok(n)
    };
    let x = parse(limits.first().copied().unwrap_or(""))?;
    match limits.get(1) {
        None => Ok((x, x)),
        Some(high) => {
            let y = parse(high)?;
            if x >= y {
                return Err(format!("non-increasing order, previous: {x}, current: {y}"));
            }
            Ok((x, y))
        }
    }
}
