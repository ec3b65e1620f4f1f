//! Authorization: what each credential's role may do.
//!
//! Two roles. The administrator's token (the kubeconfig a server or node writes) may do
//! everything, like `system:masters`. The agents' join token may do what a kubelet needs, in the
//! spirit of the `system:node` ClusterRole and the Node authorizer (kube-apiserver's
//! `plugin/pkg/auth/authorizer/node`): read the API (it needs pods, Services, endpoints,
//! ConfigMaps, Secrets, nodes and leases), register and update Nodes and their status, renew
//! Leases in `kube-node-lease`, write pods' status, create mirror pods, delete and evict pods,
//! and record Events. Anything else is refused with kube-apiserver's 403 `Forbidden` Status,
//! as user `system:podvisor-agent`.
//!
//! Not done: the Node authorizer's per-node narrowing (one agent writing only its own Node,
//! Lease and pods). All agents share one join token, so one agent's credential can write
//! another's Node; a per-node credential needs a bootstrap exchange (kubelet TLS bootstrap)
//! that podvisor does not have yet.

use http::Method;

use crate::status::ApiError;

/// Who a credential acts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything is allowed.
    Admin,
    /// What a kubelet needs (see the module docs).
    Node,
}

/// The user name 403 messages give for the agents' join token.
pub const NODE_USER: &str = "system:podvisor-agent";

/// What a request asks for, as kube-apiserver's `RequestInfo` reads it from the path.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    verb: &'static str,
    group: &'a str,
    namespace: Option<&'a str>,
    resource: &'a str,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

/// `Ok` when `role` may make a `method` request for `path`, else the 403 error.
pub fn authorize(role: Role, method: &Method, path: &str) -> Result<(), ApiError> {
    if role == Role::Admin {
        return Ok(());
    }
    let Some(request) = parse(method, path) else {
        // Discovery, version, OpenAPI, health and metrics documents: reading is allowed.
        return if method == Method::GET || method == Method::HEAD {
            Ok(())
        } else {
            Err(forbidden_path(method, path))
        };
    };
    if node_may(&request) {
        Ok(())
    } else {
        Err(forbidden(&request))
    }
}

/// The kubelet's permissions.
fn node_may(r: &Request<'_>) -> bool {
    if matches!(r.verb, "get" | "list" | "watch") {
        return true;
    }
    let sub = r.subresource.unwrap_or("");
    match (r.group, r.resource, sub) {
        ("", "nodes", "" | "status") => matches!(r.verb, "create" | "update" | "patch"),
        ("coordination.k8s.io", "leases", "") => {
            r.namespace == Some("kube-node-lease")
                && matches!(r.verb, "create" | "update" | "patch" | "delete")
        }
        ("", "pods", "status") => matches!(r.verb, "update" | "patch"),
        ("", "pods", "") => matches!(r.verb, "create" | "delete"),
        ("", "pods", "eviction") => r.verb == "create",
        ("" | "events.k8s.io", "events", "") => matches!(r.verb, "create" | "update" | "patch"),
        _ => false,
    }
}

/// Reads a resource request from its path; `None` for the non-resource paths.
fn parse<'a>(method: &Method, path: &'a str) -> Option<Request<'a>> {
    let path = path.trim_end_matches('/');
    let (group, rest) = if let Some(rest) = path.strip_prefix("/api/v1/") {
        ("", rest)
    } else {
        let rest = path.strip_prefix("/apis/")?;
        let mut parts = rest.splitn(3, '/');
        let group = parts.next()?;
        let _version = parts.next()?;
        (group, parts.next()?)
    };
    let mut parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let mut namespace = None;
    if parts.first() == Some(&"namespaces") && parts.len() > 1 {
        namespace = Some(parts[1]);
        // `namespaces/{name}/status` and `/finalize` are the namespace's own subresources.
        if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
            parts.drain(..2);
        }
    }
    let resource = *parts.first()?;
    let name = parts.get(1).copied();
    let subresource = parts.get(2).copied();
    if resource == "namespaces" {
        namespace = None;
    }
    let verb = match *method {
        Method::GET | Method::HEAD if name.is_none() => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if name.is_none() => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    };
    Some(Request {
        verb,
        group,
        namespace,
        resource,
        name,
        subresource,
    })
}

/// kube-apiserver's 403 for a resource request.
fn forbidden(r: &Request<'_>) -> ApiError {
    let qualified = if r.group.is_empty() {
        r.resource.to_owned()
    } else {
        format!("{}.{}", r.resource, r.group)
    };
    let subject = match r.name {
        Some(name) => format!("{qualified} \"{name}\" is forbidden"),
        None => format!("{qualified} is forbidden"),
    };
    let resource = match r.subresource {
        Some(sub) => format!("{}/{sub}", r.resource),
        None => r.resource.to_owned(),
    };
    let scope = match r.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_owned(),
    };
    let mut e = ApiError::forbidden_message(format!(
        "{subject}: User \"{NODE_USER}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        r.verb, r.group
    ));
    e.details = Some(Box::new((
        r.group.to_owned(),
        r.resource.to_owned(),
        r.name.unwrap_or("").to_owned(),
    )));
    e
}

/// kube-apiserver's 403 for a non-resource path.
fn forbidden_path(method: &Method, path: &str) -> ApiError {
    ApiError::forbidden_message(format!(
        "forbidden: User \"{NODE_USER}\" cannot {} path \"{path}\"",
        method.as_str().to_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(method: Method, path: &str) -> bool {
        authorize(Role::Node, &method, path).is_ok()
    }

    #[test]
    fn paths_are_read_like_kube_apiserver() {
        let r = parse(&Method::PUT, "/api/v1/namespaces/default/pods/web/status").unwrap();
        assert_eq!(
            r,
            Request {
                verb: "update",
                group: "",
                namespace: Some("default"),
                resource: "pods",
                name: Some("web"),
                subresource: Some("status"),
            }
        );
        let r = parse(&Method::PUT, "/api/v1/namespaces/dev/finalize").unwrap();
        assert_eq!(
            (r.resource, r.name, r.subresource),
            ("namespaces", Some("dev"), Some("finalize"))
        );
        assert_eq!(r.namespace, None);
        let r = parse(&Method::GET, "/apis/apps/v1/deployments").unwrap();
        assert_eq!(
            (r.verb, r.group, r.resource, r.namespace),
            ("list", "apps", "deployments", None)
        );
        assert_eq!(parse(&Method::GET, "/apis"), None);
        assert_eq!(parse(&Method::GET, "/version"), None);
    }

    #[test]
    fn the_join_token_may_do_what_a_kubelet_needs() {
        assert!(allowed(Method::GET, "/api/v1/pods"));
        assert!(allowed(Method::GET, "/api/v1/namespaces/default/secrets/db"));
        assert!(allowed(Method::GET, "/apis"));
        assert!(allowed(Method::POST, "/api/v1/nodes"));
        assert!(allowed(Method::PATCH, "/api/v1/nodes/agent-a/status"));
        assert!(allowed(
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/agent-a"
        ));
        assert!(allowed(
            Method::PATCH,
            "/api/v1/namespaces/default/pods/web/status"
        ));
        assert!(allowed(Method::DELETE, "/api/v1/namespaces/default/pods/web"));
        assert!(allowed(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events"
        ));
        assert!(allowed(Method::POST, "/api/v1/namespaces/default/events"));
    }

    #[test]
    fn the_join_token_may_not_do_the_rest() {
        assert!(!allowed(
            Method::POST,
            "/apis/apps/v1/namespaces/default/deployments"
        ));
        assert!(!allowed(Method::POST, "/api/v1/namespaces/default/secrets"));
        assert!(!allowed(Method::PUT, "/api/v1/namespaces/default/pods/web"));
        assert!(!allowed(Method::DELETE, "/api/v1/namespaces/default"));
        assert!(!allowed(Method::DELETE, "/api/v1/namespaces/default/pods"));
        assert!(!allowed(
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"
        ));
        assert!(!allowed(
            Method::POST,
            "/api/v1/namespaces/default/pods/web/binding"
        ));
        assert!(!allowed(Method::POST, "/api/v1/namespaces/default/services"));
        assert!(authorize(Role::Admin, &Method::DELETE, "/api/v1/namespaces/default").is_ok());
    }

    #[test]
    fn refusals_read_like_kube_apiserver() {
        let e = authorize(
            Role::Node,
            &Method::POST,
            "/apis/apps/v1/namespaces/default/deployments",
        )
        .unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(e.reason, "Forbidden");
        assert_eq!(
            e.message,
            "deployments.apps is forbidden: User \"system:podvisor-agent\" cannot create resource \
             \"deployments\" in API group \"apps\" in the namespace \"default\""
        );
        let e = authorize(Role::Node, &Method::DELETE, "/api/v1/namespaces/dev").unwrap_err();
        assert_eq!(
            e.message,
            "namespaces \"dev\" is forbidden: User \"system:podvisor-agent\" cannot delete resource \
             \"namespaces\" in API group \"\" at the cluster scope"
        );
        let e = authorize(
            Role::Node,
            &Method::POST,
            "/api/v1/namespaces/default/pods/web/binding",
        )
        .unwrap_err();
        assert!(
            e.message.contains("cannot create resource \"pods/binding\""),
            "{}",
            e.message
        );
    }
}
