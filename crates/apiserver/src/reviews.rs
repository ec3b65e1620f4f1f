//! The self-subject reviews: who a request's credential is and what it may do, answered from
//! this server's own authentication ([`crate::auth`]) and authorization ([`crate::authz`]), so
//! `kubectl auth can-i` (with `--list`) and `kubectl auth whoami` tell the truth for the token
//! used (or the user impersonated with `--as`).
//!
//! - `authorization.k8s.io/v1` `SelfSubjectAccessReview`: `status.allowed` for one resource or
//!   non-resource request, by the role's rules ([`crate::authz::allows`]); `reason` says which
//!   role allowed it; a refusal has no reason and never `denied` (no rule denies, as in RBAC).
//! - `authorization.k8s.io/v1` `SelfSubjectRulesReview`: the role's rules in a namespace
//!   ([`crate::authz::Role::rules`]), the same table that decides requests.
//! - `authentication.k8s.io/v1` `SelfSubjectReview`: `status.userInfo` (username and groups).
//!
//! Without authentication (a server on loopback with no tokens, or the in-process handler)
//! every request is allowed: the access review says so, and the user is `system:anonymous`.
//!
//! Not here: `SubjectAccessReview` and `LocalSubjectAccessReview` (asking about other users),
//! `TokenReview`; a node's object-level restrictions (which pods are its own) are decided on
//! the object and so are not in the answer (a review about `pods/status` says yes).

use podvisor_core::k8s_openapi::api::{authentication::v1 as authn, authorization::v1 as authz_v1};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::authz::{self, Attributes, Role};
use crate::status::ApiError;

/// A review kind served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Review {
    /// `SelfSubjectAccessReview`.
    Access,
    /// `SelfSubjectRulesReview`.
    Rules,
    /// `SelfSubjectReview`.
    Subject,
}

/// The review resources: (group, version, plural, singular, kind, review).
const REVIEWS: &[(&str, &str, &str, &str, &str, Review)] = &[
    (
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        "SelfSubjectAccessReview",
        Review::Access,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        "SelfSubjectRulesReview",
        Review::Rules,
    ),
    (
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "selfsubjectreview",
        "SelfSubjectReview",
        Review::Subject,
    ),
];

/// The groups of the reviews, each with its one version, for discovery.
pub const GROUPS: &[(&str, &str)] = &[("authentication.k8s.io", "v1"), ("authorization.k8s.io", "v1")];

impl Review {
    /// The review a request path names (`/apis/authorization.k8s.io/v1/selfsubjectaccessreviews`).
    pub fn at(path: &str) -> Option<Review> {
        let rest = path.trim_end_matches('/').strip_prefix("/apis/")?;
        REVIEWS
            .iter()
            .find(|(g, v, plural, ..)| rest == format!("{g}/{v}/{plural}"))
            .map(|entry| entry.5)
    }
}

/// Discovery's entries for `group`/`version`, `None` for a group version without reviews.
pub fn resource_entries(group: &str, version: &str) -> Option<Vec<Value>> {
    let entries: Vec<Value> = REVIEWS
        .iter()
        .filter(|(g, v, ..)| *g == group && *v == version)
        .map(|(_, _, plural, singular, kind, _)| {
            json!({"name": plural, "singularName": singular, "namespaced": false, "kind": kind, "verbs": ["create"]})
        })
        .collect();
    (!entries.is_empty()).then_some(entries)
}

/// Decodes a review as its type, or the 400 kube-apiserver gives a body that does not decode.
fn decode<T: DeserializeOwned>(object: Value, kind: &str) -> Result<T, ApiError> {
    serde_json::from_value(object).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"v1\" cannot be handled as a {kind}: {e}"
        ))
    })
}

fn encode<T: Serialize>(review: &T) -> Result<Value, ApiError> {
    serde_json::to_value(review)
        .map_err(|e| ApiError::internal(format!("the review could not be encoded: {e}")))
}

/// The answer to a review by the user `role` (`None`: the server authenticates no one).
pub fn answer(review: Review, role: Option<&Role>, object: Value) -> Result<Value, ApiError> {
    match review {
        Review::Access => access(role, decode(object, "SelfSubjectAccessReview")?),
        Review::Rules => rules(role, decode(object, "SelfSubjectRulesReview")?),
        Review::Subject => {
            let mut answer: authn::SelfSubjectReview = decode(object, "SelfSubjectReview")?;
            let (username, groups) = match role {
                Some(role) => (role.user(), role.groups()),
                None => (
                    "system:anonymous".to_owned(),
                    vec!["system:unauthenticated".to_owned()],
                ),
            };
            answer.status = Some(authn::SelfSubjectReviewStatus {
                user_info: Some(authn::UserInfo {
                    username: Some(username),
                    groups: Some(groups),
                    ..Default::default()
                }),
            });
            encode(&answer)
        }
    }
}

fn access(role: Option<&Role>, mut review: authz_v1::SelfSubjectAccessReview) -> Result<Value, ApiError> {
    let spec = &review.spec;
    let allowed = match (&spec.resource_attributes, &spec.non_resource_attributes, role) {
        (Some(_), Some(_), _) | (None, None, _) => {
            return Err(ApiError::invalid_kind_field(
                "SelfSubjectAccessReview",
                "authorization.k8s.io",
                "",
                "spec.resourceAttributes",
                "FieldValueInvalid",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
        (_, _, None) => true,
        (Some(r), None, Some(role)) => {
            fn text(s: &Option<String>) -> &str {
                s.as_deref().unwrap_or("")
            }
            let attributes = Attributes {
                verb: text(&r.verb),
                group: text(&r.group),
                namespace: r.namespace.as_deref().filter(|ns| !ns.is_empty()),
                resource: text(&r.resource),
                name: r.name.as_deref().filter(|n| !n.is_empty()),
                subresource: r.subresource.as_deref().filter(|s| !s.is_empty()),
            };
            authz::allows(role, &attributes)
        }
        (None, Some(n), Some(role)) => authz::allows_path(role, n.verb.as_deref().unwrap_or("")),
    };
    let reason = match role {
        _ if !allowed => None,
        None => Some("podvisor: this server authenticates no one and allows every request".to_owned()),
        Some(Role::Admin) => {
            Some("podvisor: the administrator may do everything (system:masters)".to_owned())
        }
        Some(role) => Some(format!(
            "podvisor: allowed by the rules of user \"{}\"",
            role.user()
        )),
    };
    review.status = Some(authz_v1::SubjectAccessReviewStatus {
        allowed,
        reason,
        ..Default::default()
    });
    encode(&review)
}

fn rules(role: Option<&Role>, mut review: authz_v1::SelfSubjectRulesReview) -> Result<Value, ApiError> {
    let namespace = review.spec.namespace.clone().unwrap_or_default();
    if namespace.is_empty() {
        return Err(ApiError::bad_request("no namespace on request"));
    }
    let role = role.unwrap_or(&Role::Admin);
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let resource_rules = role
        .rules()
        .iter()
        .filter(|rule| rule.namespace.is_none_or(|ns| ns == namespace))
        .map(|rule| authz_v1::ResourceRule {
            verbs: strings(rule.verbs),
            api_groups: Some(vec![rule.group.to_owned()]),
            resources: Some(strings(rule.resources)),
            resource_names: match role {
                Role::Node(node) if rule.own_name => Some(vec![node.clone()]),
                _ => None,
            },
        })
        .collect();
    let path_verbs = if *role == Role::Admin {
        vec!["*"]
    } else {
        vec!["get"]
    };
    review.status = Some(authz_v1::SubjectRulesReviewStatus {
        resource_rules,
        non_resource_rules: vec![authz_v1::NonResourceRule {
            verbs: strings(&path_verbs),
            non_resource_urls: Some(vec!["*".to_owned()]),
        }],
        incomplete: false,
        evaluation_error: None,
    });
    encode(&review)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn can_i(role: Option<&Role>, attributes: Value) -> Value {
        let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes}});
        answer(Review::Access, role, review).unwrap()["status"].clone()
    }

    #[test]
    fn access_reviews_follow_the_rules_that_decide_requests() {
        let admin = can_i(Some(&Role::Admin), json!({"verb": "delete", "resource": "nodes"}));
        assert_eq!(admin["allowed"], true);
        assert!(admin["reason"].as_str().unwrap().contains("administrator"));
        let node = Role::Node("a".into());
        let create_pods = json!({"namespace": "default", "verb": "create", "resource": "pods"});
        assert_eq!(can_i(Some(&node), create_pods.clone())["allowed"], false);
        assert!(can_i(Some(&node), create_pods)["reason"].is_null());
        let list = json!({"namespace": "default", "verb": "list", "resource": "secrets"});
        assert_eq!(can_i(Some(&node), list)["allowed"], true);
        let own = json!({"verb": "patch", "resource": "nodes", "subresource": "status", "name": "a"});
        assert_eq!(can_i(Some(&node), own)["allowed"], true);
        let other = json!({"verb": "patch", "resource": "nodes", "subresource": "status", "name": "b"});
        assert_eq!(can_i(Some(&node), other)["allowed"], false);
        let lease = json!({"namespace": "kube-node-lease", "verb": "update", "group": "coordination.k8s.io", "resource": "leases", "name": "a"});
        assert_eq!(can_i(Some(&node), lease)["allowed"], true);
        let every = json!({"namespace": "default", "verb": "*", "group": "*", "resource": "*"});
        assert_eq!(can_i(Some(&node), every.clone())["allowed"], false);
        assert_eq!(can_i(Some(&Role::Admin), every)["allowed"], true);
        // Without authentication, everything is allowed, and the answer says why.
        let open = can_i(None, json!({"verb": "delete", "resource": "nodes"}));
        assert_eq!(open["allowed"], true);
        // Exactly one of the attributes.
        let neither = json!({"kind": "SelfSubjectAccessReview", "spec": {}});
        let e = answer(Review::Access, Some(&Role::Admin), neither).unwrap_err();
        assert_eq!(e.code, 422);
        let paths = json!({"spec": {"nonResourceAttributes": {"path": "/metrics", "verb": "get"}}});
        assert_eq!(
            answer(Review::Access, Some(&node), paths).unwrap()["status"]["allowed"],
            true
        );
        let bad = json!({"spec": {"resourceAttributes": {"verb": 3}}});
        assert_eq!(answer(Review::Access, Some(&node), bad).unwrap_err().code, 400);
    }

    #[test]
    fn rules_reviews_list_the_roles_rules_in_the_namespace() {
        let node = Role::Node("a".into());
        let review = |ns: &str| json!({"spec": {"namespace": ns}});
        let status = answer(Review::Rules, Some(&node), review("default")).unwrap()["status"].clone();
        let rules = status["resourceRules"].as_array().unwrap();
        assert!(
            rules.contains(&json!({"verbs": ["create", "update", "patch"], "apiGroups": [""],
            "resources": ["nodes", "nodes/status"], "resourceNames": ["a"]}))
        );
        assert!(
            !rules.iter().any(|r| r["resources"] == json!(["leases"])),
            "the lease rule is kube-node-lease's"
        );
        assert!(
            rules
                .iter()
                .any(|r| r["resources"] == json!(["selfsubjectaccessreviews", "selfsubjectrulesreviews"]))
        );
        let in_lease_ns = answer(Review::Rules, Some(&node), review("kube-node-lease")).unwrap();
        assert!(
            in_lease_ns["status"]["resourceRules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["resources"] == json!(["leases"]))
        );
        assert_eq!(
            status["nonResourceRules"],
            json!([{"verbs": ["get"], "nonResourceURLs": ["*"]}])
        );
        let admin = answer(Review::Rules, Some(&Role::Admin), review("default")).unwrap();
        assert_eq!(
            admin["status"]["resourceRules"],
            json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}])
        );
        assert_eq!(
            answer(Review::Rules, Some(&node), json!({"spec": {}}))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn subject_reviews_name_the_user_and_groups() {
        let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
        let node = answer(Review::Subject, Some(&Role::Node("a".into())), review.clone()).unwrap();
        assert_eq!(
            node["status"]["userInfo"],
            json!({"username": "system:node:a", "groups": ["system:nodes", "system:authenticated"]})
        );
        let anonymous = answer(Review::Subject, None, review).unwrap();
        assert_eq!(anonymous["status"]["userInfo"]["username"], "system:anonymous");
    }

    #[test]
    fn paths_name_the_reviews() {
        assert_eq!(
            Review::at("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"),
            Some(Review::Access)
        );
        assert_eq!(
            Review::at("/apis/authentication.k8s.io/v1/selfsubjectreviews/"),
            Some(Review::Subject)
        );
        assert_eq!(
            Review::at("/apis/authorization.k8s.io/v1/subjectaccessreviews"),
            None
        );
        assert_eq!(resource_entries("authorization.k8s.io", "v1").unwrap().len(), 2);
        assert!(resource_entries("apps", "v1").is_none());
    }
}
