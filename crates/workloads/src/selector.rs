//! `metav1.LabelSelector` matching (`matchLabels` and `matchExpressions` with `In`, `NotIn`,
//! `Exists`, `DoesNotExist`), as apimachinery's `LabelSelectorAsSelector` evaluates it.

use std::collections::BTreeMap;

use podvisor_core::metav1::LabelSelector;

/// Whether `selector` selects an object with `labels`. An empty selector (`{}`) selects
/// everything; an unknown operator selects nothing (the API server rejects it at validation).
pub fn matches(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_labels
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or(&[]);
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether `selector` selects nothing in particular (no labels and no expressions): the
/// Deployment and DaemonSet controllers refuse to act on it (rule 1.10).
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// The selector as a string (`app=web,tier in (edge,front)`), as `LabelSelectorAsSelector(..)
/// .String()` prints it: requirements sorted by key, values sorted.
pub fn to_string(selector: &LabelSelector) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in selector.match_labels.iter().flatten() {
        reqs.push((k.clone(), format!("{k}={v}")));
    }
    for e in selector.match_expressions.iter().flatten() {
        let mut values = e.values.clone().unwrap_or_default();
        values.sort();
        let k = &e.key;
        let text = match e.operator.as_str() {
            "In" => format!("{k} in ({})", values.join(",")),
            "NotIn" => format!("{k} notin ({})", values.join(",")),
            "Exists" => k.clone(),
            "DoesNotExist" => format!("!{k}"),
            op => format!("{k} {op} ({})", values.join(",")),
        };
        reqs.push((k.clone(), text));
    }
    reqs.sort();
    reqs.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use podvisor_core::metav1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn labels_and_expressions_must_all_hold() {
        let s = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["front", "edge"]),
                expr("canary", "DoesNotExist", &[]),
                expr("env", "NotIn", &["dev"]),
            ]),
        };
        assert!(matches(&s, Some(&labels(&[("app", "web"), ("tier", "edge")]))));
        assert!(!matches(&s, Some(&labels(&[("app", "web"), ("tier", "back")]))));
        assert!(!matches(
            &s,
            Some(&labels(&[("app", "web"), ("tier", "edge"), ("canary", "")]))
        ));
        assert!(!matches(
            &s,
            Some(&labels(&[("app", "web"), ("tier", "edge"), ("env", "dev")]))
        ));
        assert!(!matches(&s, Some(&labels(&[("tier", "edge")]))));
        assert!(!matches(&s, None));
        let exists = LabelSelector {
            match_expressions: Some(vec![expr("a", "Exists", &[])]),
            ..Default::default()
        };
        assert!(matches(&exists, Some(&labels(&[("a", "")]))));
        let bad = LabelSelector {
            match_expressions: Some(vec![expr("a", "Near", &[])]),
            ..Default::default()
        };
        assert!(!matches(&bad, Some(&labels(&[("a", "")]))));
    }

    #[test]
    fn selectors_print_as_kubectl_shows_them() {
        let s = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["front", "edge"]),
                expr("canary", "DoesNotExist", &[]),
                expr("env", "Exists", &[]),
            ]),
        };
        assert_eq!(to_string(&s), "app=web,!canary,env,tier in (edge,front)");
        assert_eq!(to_string(&LabelSelector::default()), "");
    }

    #[test]
    fn empty_selects_everything_and_is_reported_empty() {
        let s = LabelSelector::default();
        assert!(is_empty(&s));
        assert!(matches(&s, None));
        let s = LabelSelector {
            match_labels: Some(labels(&[("a", "b")])),
            ..Default::default()
        };
        assert!(!is_empty(&s));
    }
}
