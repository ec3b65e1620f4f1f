//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!`exists) and field selectors.

use serde_json::Value;

use crate::meta::field_value;

/// Why a selector did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector term is malformed.
    #[error("unable to parse requirement: {term}")]
    Label {
        /// The offending term.
        term: String,
    },
    /// A label selector's key or value is not a valid label key or value.
    #[error("unable to parse requirement: {field}: Invalid value: {value:?}: {detail}")]
    InvalidLabel {
        /// `key` or `values[i]`.
        field: String,
        /// The offending key or value.
        value: String,
        /// Why it is invalid (apimachinery's message).
        detail: String,
    },
    /// A field selector names a field this resource does not support.
    #[error("field label not supported: {field}")]
    UnsupportedField {
        /// The field.
        field: String,
    },
    /// A field selector term is malformed.
    #[error("invalid selector: '{term}'; can't understand '{term}'")]
    Field {
        /// The offending term.
        term: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    terms: Vec<(String, Op)>,
}

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn set(values: &str, term: &str) -> Result<Vec<String>, SelectorError> {
    let inner = values
        .trim()
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| SelectorError::Label { term: term.into() })?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

/// kube-apiserver's checks of a requirement: the key a qualified name, every value a label
/// value.
fn check_requirement(key: &str, op: &Op) -> Result<(), SelectorError> {
    use podvisor_api::validation::format::{is_label_value, is_qualified_name};
    if let Some(detail) = is_qualified_name(key).into_iter().next() {
        return Err(SelectorError::InvalidLabel {
            field: "key".into(),
            value: key.into(),
            detail,
        });
    }
    let values: &[String] = match op {
        Op::Eq(v) | Op::NotEq(v) => std::slice::from_ref(v),
        Op::In(vs) | Op::NotIn(vs) => vs,
        Op::Exists | Op::NotExists => &[],
    };
    for (i, v) in values.iter().enumerate() {
        if let Some(detail) = is_label_value(v).into_iter().next() {
            return Err(SelectorError::InvalidLabel {
                field: format!("values[{i}][{key}]"),
                value: v.clone(),
                detail,
            });
        }
    }
    Ok(())
}

impl LabelSelector {
    /// Parses `app=web,tier!=db,env in (a,b),!legacy`.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for term in split_terms(s) {
            let bad = || SelectorError::Label { term: term.clone() };
            let parsed = if let Some(key) = term.strip_prefix('!') {
                (key.trim().to_string(), Op::NotExists)
            } else if let Some((k, v)) = term.split_once("!=") {
                (k.trim().to_string(), Op::NotEq(v.trim().to_string()))
            } else if let Some((k, v)) = term.split_once("==") {
                (k.trim().to_string(), Op::Eq(v.trim().to_string()))
            } else if let Some((k, v)) = term.split_once('=') {
                (k.trim().to_string(), Op::Eq(v.trim().to_string()))
            } else if let Some((k, v)) = term.split_once(" notin ") {
                (k.trim().to_string(), Op::NotIn(set(v, &term)?))
            } else if let Some((k, v)) = term.split_once(" in ") {
                (k.trim().to_string(), Op::In(set(v, &term)?))
            } else if term.contains(char::is_whitespace) || term.contains(['(', ')', '<', '>']) {
                return Err(bad());
            } else {
                (term.clone(), Op::Exists)
            };
            if parsed.0.is_empty() {
                return Err(bad());
            }
            check_requirement(&parsed.0, &parsed.1)?;
            terms.push(parsed);
        }
        Ok(LabelSelector { terms })
    }

    /// Whether an object's `metadata.labels` match.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.get("metadata").and_then(|m| m.get("labels"));
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.terms.iter().all(|(key, op)| match op {
            Op::Eq(v) => get(key) == Some(v.as_str()),
            Op::NotEq(v) => get(key) != Some(v.as_str()),
            Op::In(vs) => get(key).is_some_and(|l| vs.iter().any(|v| v == l)),
            Op::NotIn(vs) => get(key).is_none_or(|l| vs.iter().all(|v| v != l)),
            Op::Exists => get(key).is_some(),
            Op::NotExists => get(key).is_none(),
        })
    }
}

/// A parsed field selector (`metadata.name=x,status.phase!=Running`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses a field selector for a resource whose kind selects on `supported` (its
    /// [strategy](crate::strategy::Strategy::field_selectors)'s) besides `metadata.name` and
    /// `metadata.namespace`, rejecting other fields like kube-apiserver.
    pub fn parse(s: &str, supported: &[&str]) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for term in split_terms(s) {
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(SelectorError::Field { term });
            };
            let field = field.trim();
            if field != "metadata.name" && field != "metadata.namespace" && !supported.contains(&field) {
                return Err(SelectorError::UnsupportedField { field: field.into() });
            }
            terms.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector { terms })
    }

    /// Whether an object's fields match.
    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(field, eq, value)| {
            // Events are stored in their core/v1 form (`crate::events`): the events.k8s.io
            // names select the same fields.
            let path = match field.as_str() {
                "source" => "source.component".to_string(),
                "reportingController" => "reportingComponent".to_string(),
                f => match f.strip_prefix("regarding.") {
                    Some(rest) => format!("involvedObject.{rest}"),
                    None => f.to_string(),
                },
            };
            (field_value(object, &path) == *value) == *eq
        })
    }
}

/// What a watcher with a selector (`matches`) sees of a change, as kube-apiserver's watch cache
/// decides it: an object that starts matching arrives as ADDED, one that stops matching as
/// DELETED (its previous content, at the change's resourceVersion), one that keeps matching as
/// MODIFIED; changes it never matched are not sent. Without the previous version (compacted),
/// a matching object is MODIFIED and a non-matching one is not sent.
pub fn selected_event(
    event: podvisor_store::WatchEvent,
    matches: &dyn Fn(&Value) -> bool,
) -> Option<(&'static str, Value)> {
    use podvisor_store::EventType;
    let now = matches(&event.object);
    match event.kind {
        EventType::Added => now.then_some(("ADDED", event.object)),
        EventType::Deleted => now.then_some(("DELETED", event.object)),
        EventType::Modified => {
            let before = event.prev_object.as_ref().map(matches);
            match (now, before) {
                (true, Some(false)) => Some(("ADDED", event.object)),
                (true, _) => Some(("MODIFIED", event.object)),
                (false, Some(true)) => {
                    let mut last = event.prev_object?;
                    if let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.insert(
                            "resourceVersion".into(),
                            Value::String(event.revision.to_string()),
                        );
                    }
                    Some(("DELETED", last))
                }
                (false, _) => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::{EventStrategy, PodStrategy, Strategy};
    use serde_json::json;

    #[test]
    fn label_selector_operators() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("missing notin (x)", true),
            ("app=web,tier=back", false),
            ("", true),
        ] {
            assert_eq!(LabelSelector::parse(sel).unwrap().matches(&obj), want, "{sel}");
        }
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b").is_err());
        for garbage in [
            "x===y",
            "Bad Key=1",
            "a=b c",
            "app in (a b)",
            "-x=1",
            "a=%zz",
            "k=v!",
        ] {
            assert!(LabelSelector::parse(garbage).is_err(), "{garbage} accepted");
        }
        assert!(LabelSelector::parse("example.com/app=web-1,tier in (a, b-c)").is_ok());
    }

    #[test]
    fn field_selector_fields() {
        let pod = json!({"metadata": {"name": "a", "namespace": "d"}, "status": {"phase": "Running"}});
        let s = FieldSelector::parse(
            "metadata.name=a,status.phase!=Pending",
            PodStrategy.field_selectors(),
        )
        .unwrap();
        assert!(s.matches(&pod));
        assert!(
            FieldSelector::parse("spec.nodeName=", PodStrategy.field_selectors())
                .unwrap()
                .matches(&pod)
        );
        assert_eq!(
            FieldSelector::parse("spec.bogus=1", PodStrategy.field_selectors())
                .unwrap_err()
                .to_string(),
            "field label not supported: spec.bogus"
        );
        let ev = json!({"involvedObject": {"name": "a"}, "source": {"component": "kubelet"}});
        assert!(
            FieldSelector::parse(
                "involvedObject.name=a,source=kubelet",
                EventStrategy::CORE.field_selectors()
            )
            .unwrap()
            .matches(&ev)
        );
    }

    #[test]
    fn selector_watches_see_objects_enter_and_leave() {
        use podvisor_store::{EventType, ObjectKey, WatchEvent};
        let web =
            |rv: &str| json!({"metadata": {"name": "a", "resourceVersion": rv, "labels": {"app": "web"}}});
        let db =
            |rv: &str| json!({"metadata": {"name": "a", "resourceVersion": rv, "labels": {"app": "db"}}});
        let sel = LabelSelector::parse("app=web").unwrap();
        let matches = |o: &Value| sel.matches(o);
        let ev = |kind, object, prev_object| WatchEvent {
            kind,
            key: ObjectKey::new("pods", "default", "a"),
            object,
            revision: 9,
            prev_object,
        };
        let kind = |e: Option<(&'static str, Value)>| e.map(|(k, _)| k);
        assert_eq!(
            kind(selected_event(ev(EventType::Added, web("9"), None), &matches)),
            Some("ADDED")
        );
        assert_eq!(
            kind(selected_event(ev(EventType::Added, db("9"), None), &matches)),
            None
        );
        let left = selected_event(ev(EventType::Modified, db("9"), Some(web("8"))), &matches).unwrap();
        assert_eq!(left.0, "DELETED");
        assert_eq!(
            left.1["metadata"]["labels"]["app"], "web",
            "the last matching content"
        );
        assert_eq!(left.1["metadata"]["resourceVersion"], "9");
        assert_eq!(
            kind(selected_event(
                ev(EventType::Modified, web("9"), Some(db("8"))),
                &matches
            )),
            Some("ADDED")
        );
        assert_eq!(
            kind(selected_event(
                ev(EventType::Modified, web("9"), Some(web("8"))),
                &matches
            )),
            Some("MODIFIED")
        );
        assert_eq!(
            kind(selected_event(
                ev(EventType::Modified, db("9"), Some(db("8"))),
                &matches
            )),
            None
        );
        assert_eq!(
            kind(selected_event(ev(EventType::Modified, web("9"), None), &matches)),
            Some("MODIFIED")
        );
        assert_eq!(
            kind(selected_event(ev(EventType::Deleted, web("9"), None), &matches)),
            Some("DELETED")
        );
    }
}
