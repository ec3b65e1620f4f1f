//! Authorization: what each credential's role may do.
//!
//! Three roles. The administrator's token (the kubeconfig a server or node writes) may do
//! everything, like `system:masters`. The agents' join token (`join.kubeconfig`) is a bootstrap
//! token ([`crate::bootstrap_tokens`], user `system:bootstrap:<id>`, revoked by deleting its
//! Secret): it may read discovery and exchange itself for a node's own credential, as
//! kubelet TLS bootstrap exchanges a bootstrap token for a client certificate (any node name
//! may be asked for, as upstream's CSR approver allows bootstrappers). A node's credential
//! (user `system:node:<name>`) may do what a kubelet needs, in the spirit of the `system:node`
//! ClusterRole, the Node authorizer and NodeRestriction admission: read the API (pods,
//! Services, endpoints, ConfigMaps, Secrets, nodes, leases), create and update **its own** Node
//! and its status and its own Lease in `kube-node-lease`, write the status of, delete and evict
//! **pods bound to it**, and record Events. Anything else is refused with kube-apiserver's 403
//! `Forbidden` Status.
//!
//! Not done: the Node authorizer's graph, which also narrows a node's reads of Secrets and
//! ConfigMaps to those its pods use.

use http::Method;

use crate::status::ApiError;

/// Who a credential acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything is allowed.
    Admin,
    /// A join token (the bootstrap token of this id): discovery, and exchanging it for a node's
    /// own credential (`POST /apis/podvisor.io/v1/nodecredentials`, the analogue of kubelet TLS
    /// bootstrap).
    Bootstrap(String),
    /// The node of this name: what a kubelet needs, for itself (see the module docs).
    Node(String),
}

impl Role {
    /// The user name Kubernetes gives this credential.
    pub fn user(&self) -> String {
        match self {
            Role::Admin => "kubernetes-admin".into(),
            Role::Bootstrap(id) => format!("system:bootstrap:{id}"),
            Role::Node(name) => format!("system:node:{name}"),
        }
    }
}

/// Where a join token is exchanged for a node's credential.
pub const NODE_CREDENTIALS_PATH: &str = "/apis/podvisor.io/v1/nodecredentials";

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

/// `Ok` when `role` may make a `method` request for `path`, else the 403 error. What depends
/// on the object (whose node a pod is on, the name of a Node created) is checked once it is
/// read ([`node_may_write`]).
pub fn authorize(role: &Role, method: &Method, path: &str) -> Result<(), ApiError> {
    let node = match role {
        Role::Admin => return Ok(()),
        Role::Bootstrap(_)
            if path.trim_end_matches('/') == NODE_CREDENTIALS_PATH && method == Method::POST =>
        {
            return Ok(());
        }
        Role::Bootstrap(_) => None,
        Role::Node(name) => Some(name.as_str()),
    };
    let Some(request) = parse(method, path) else {
        // Discovery, version, OpenAPI, health and metrics documents: reading is allowed.
        return if method == Method::GET || method == Method::HEAD {
            Ok(())
        } else {
            Err(forbidden_path(role, method, path))
        };
    };
    match node {
        Some(node) if node_may(node, &request) => Ok(()),
        _ => Err(forbidden(role, &request)),
    }
}

/// The kubelet's permissions, as far as the path tells.
fn node_may(node: &str, r: &Request<'_>) -> bool {
    // Into a pod: never a node's (a WebSocket exec is a GET).
    if r.resource == "pods" && matches!(r.subresource, Some("exec" | "attach" | "portforward")) {
        return false;
    }
    if matches!(r.verb, "get" | "list" | "watch") {
        return true;
    }
    let sub = r.subresource.unwrap_or("");
    // A named Node or Lease must be the node's own (a create names it in its body).
    let own = r.name.is_none_or(|name| name == node);
    match (r.group, r.resource, sub) {
        ("", "nodes", "" | "status") => own && matches!(r.verb, "create" | "update" | "patch"),
        ("coordination.k8s.io", "leases", "") => {
            own && r.namespace == Some("kube-node-lease")
                && matches!(r.verb, "create" | "update" | "patch" | "delete")
        }
        ("", "pods", "status") => matches!(r.verb, "update" | "patch"),
        ("", "pods", "") => r.verb == "delete",
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

/// What a node may write, seen in the object: `Ok` for anything but a node's writes of Nodes,
/// node Leases and pods; for those, the Node or Lease must be its own and the pod bound to it
/// (kube-apiserver's NodeRestriction admission, with its messages).
pub fn node_may_write(
    node: &str,
    resource: &str,
    name: &str,
    pod_node: Option<&str>,
) -> Result<(), ApiError> {
    let refuse = |plural: &str, why: String| {
        let mut e = ApiError::forbidden_message(format!("{plural} \"{name}\" is forbidden: {why}"));
        e.details = Some(Box::new((String::new(), plural.to_owned(), name.to_owned())));
        e
    };
    match resource {
        "nodes" if name != node => Err(refuse(
            "nodes",
            format!("node \"{node}\" is not allowed to modify node \"{name}\""),
        )),
        "coordination.k8s.io/leases" if name != node => Err(refuse(
            "leases.coordination.k8s.io",
            format!("node \"{node}\" can only access node lease with the same name as the requesting node"),
        )),
        "pods" if pod_node != Some(node) => Err(refuse(
            "pods",
            format!("node \"{node}\" can only modify pods with spec.nodeName set to itself"),
        )),
        _ => Ok(()),
    }
}

/// kube-apiserver's 403 for a resource request.
fn forbidden(role: &Role, r: &Request<'_>) -> ApiError {
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
        "{subject}: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        role.user(),
        r.verb,
        r.group
    ));
    e.details = Some(Box::new((
        r.group.to_owned(),
        r.resource.to_owned(),
        r.name.unwrap_or("").to_owned(),
    )));
    e
}

/// kube-apiserver's 403 for a non-resource path.
fn forbidden_path(role: &Role, method: &Method, path: &str) -> ApiError {
    ApiError::forbidden_message(format!(
        "forbidden: User \"{}\" cannot {} path \"{path}\"",
        role.user(),
        method.as_str().to_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(method: Method, path: &str) -> bool {
        authorize(&Role::Node("agent-a".into()), &method, path).is_ok()
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
        assert!(authorize(&Role::Admin, &Method::DELETE, "/api/v1/namespaces/default").is_ok());
        // The join token itself may only read discovery and ask for a node's credential.
        let join = Role::Bootstrap("abcdef".into());
        assert!(authorize(&join, &Method::POST, NODE_CREDENTIALS_PATH).is_ok());
        assert!(authorize(&join, &Method::GET, "/api").is_ok());
        assert!(authorize(&join, &Method::GET, "/api/v1/pods").is_err());
        assert!(authorize(&join, &Method::POST, "/api/v1/nodes").is_err());
    }

    #[test]
    fn refusals_read_like_kube_apiserver() {
        let node = Role::Node("agent-a".into());
        let e = authorize(
            &node,
            &Method::POST,
            "/apis/apps/v1/namespaces/default/deployments",
        )
        .unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(e.reason, "Forbidden");
        assert_eq!(
            e.message,
            "deployments.apps is forbidden: User \"system:node:agent-a\" cannot create resource \
             \"deployments\" in API group \"apps\" in the namespace \"default\""
        );
        let e = authorize(&node, &Method::DELETE, "/api/v1/namespaces/dev").unwrap_err();
        assert_eq!(
            e.message,
            "namespaces \"dev\" is forbidden: User \"system:node:agent-a\" cannot delete resource \
             \"namespaces\" in API group \"\" at the cluster scope"
        );
        let e = authorize(
            &node,
            &Method::POST,
            "/api/v1/namespaces/default/pods/web/binding",
        )
        .unwrap_err();
        assert!(
            e.message.contains("cannot create resource \"pods/binding\""),
            "{}",
            e.message
        );
        // What the object tells: only its own Node and Lease, only pods bound to it.
        let e = node_may_write("agent-a", "pods", "web", Some("agent-b")).unwrap_err();
        assert_eq!(
            e.message,
            "pods \"web\" is forbidden: node \"agent-a\" can only modify pods with spec.nodeName set to itself"
        );
        assert!(node_may_write("agent-a", "pods", "web", Some("agent-a")).is_ok());
        assert!(node_may_write("agent-a", "pods", "web", None).is_err());
        assert!(node_may_write("agent-a", "nodes", "agent-b", None).is_err());
        assert!(node_may_write("agent-a", "nodes", "agent-a", None).is_ok());
        assert!(node_may_write("agent-a", "coordination.k8s.io/leases", "agent-b", None).is_err());
        assert!(node_may_write("agent-a", "events", "x", None).is_ok());
    }
}
