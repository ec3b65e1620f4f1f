//! The self-subject reviews (`crate::reviews`) kubectl sends in protobuf: `kubectl auth
//! can-i` (`SelfSubjectAccessReview`, `SelfSubjectRulesReview`) and `kubectl auth whoami`
//! (`SelfSubjectReview`). Only what is asked is converted (the spec); a status sent is the
//! server's to fill.

use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::authorization::v1 as authz;
use serde_json::Value;

use super::fields::{Obj, object_meta};

fn review(
    api_version: &str,
    kind: &str,
    meta: Option<k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
) -> Obj {
    Obj::new()
        .set("apiVersion", Value::from(api_version))
        .set("kind", Value::from(kind))
        .msg("metadata", meta, object_meta)
}

pub(super) fn access(r: authz::SelfSubjectAccessReview) -> Value {
    review("authorization.k8s.io/v1", "SelfSubjectAccessReview", r.metadata)
        .msg("spec", r.spec, |spec| {
            Obj::new()
                .msg("resourceAttributes", spec.resource_attributes, |a| {
                    Obj::new()
                        .s("namespace", a.namespace)
                        .s("verb", a.verb)
                        .s("group", a.group)
                        .s("version", a.version)
                        .s("resource", a.resource)
                        .s("subresource", a.subresource)
                        .s("name", a.name)
                        .done()
                })
                .msg("nonResourceAttributes", spec.non_resource_attributes, |a| {
                    Obj::new().s("path", a.path).s("verb", a.verb).done()
                })
                .done()
        })
        .done()
}

pub(super) fn rules(r: authz::SelfSubjectRulesReview) -> Value {
    review("authorization.k8s.io/v1", "SelfSubjectRulesReview", r.metadata)
        .msg("spec", r.spec, |spec| {
            Obj::new().s("namespace", spec.namespace).done()
        })
        .done()
}

pub(super) fn subject(r: authn::SelfSubjectReview) -> Value {
    review("authentication.k8s.io/v1", "SelfSubjectReview", r.metadata).done()
}
