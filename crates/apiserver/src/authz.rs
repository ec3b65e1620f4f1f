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
//! **pods bound to it**, and record Events. Every user may ask what it may do and who it is
//! (the self-subject reviews, [`crate::reviews`]). Anything else is refused with
//! kube-apiserver's 403 `Forbidden` Status.
//!
//! Each role's permissions are a table of RBAC-shaped [`Rule`]s ([`Role::rules`]): requests are
//! decided by them, and `SelfSubjectRulesReview` lists them, so what `kubectl auth can-i --list`
//! shows is what is enforced. A fourth role, [`Role::User`], is any other user name, reached
//! only by impersonation ([`crate::auth`]).
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
    /// Any other user (only ever impersonated, [`crate::auth`]): what every authenticated user
    /// may do, like kube-apiserver's `system:basic-user` and `system:discovery` roles.
    User(String),
}

impl Role {
    /// The user name Kubernetes gives this credential.
    pub fn user(&self) -> String {
        match self {
            Role::Admin => "kubernetes-admin".into(),
            Role::Bootstrap(id) => format!("system:bootstrap:{id}"),
            Role::Node(name) => format!("system:node:{name}"),
            Role::User(name) => name.clone(),
        }
    }

    /// The groups Kubernetes puts this credential's user in.
    pub fn groups(&self) -> Vec<String> {
        let own = match self {
            Role::Admin => Some("system:masters"),
            Role::Bootstrap(_) => Some("system:bootstrappers"),
            Role::Node(_) => Some("system:nodes"),
            Role::User(_) => None,
        };
        own.into_iter()
            .chain(["system:authenticated"])
            .map(str::to_owned)
            .collect()
    }

    /// The role of a user name: the inverse of [`Role::user`].
    pub fn of_user(name: &str) -> Role {
        if name == "kubernetes-admin" {
            Role::Admin
        } else if let Some(node) = name.strip_prefix("system:node:") {
            Role::Node(node.to_owned())
        } else if let Some(id) = name.strip_prefix("system:bootstrap:") {
            Role::Bootstrap(id.to_owned())
        } else {
            Role::User(name.to_owned())
        }
    }

    /// What this role may do, as rules (the administrator: everything, one `*` rule).
    pub fn rules(&self) -> Vec<Rule> {
        let own: &[Rule] = match self {
            Role::Admin => return vec![ADMIN_RULE],
            Role::Bootstrap(_) => BOOTSTRAP_RULES,
            Role::Node(_) => NODE_RULES,
            Role::User(_) => &[],
        };
        own.iter().chain(EVERYONE_RULES).copied().collect()
    }
}

/// One permission, in the shape of an RBAC `PolicyRule`: the verbs allowed on the resources
/// (`pods`, `pods/status`, `*` for all) of one API group (`*` for all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The verbs (`get`, `create`, ...; `*` for all).
    pub verbs: &'static [&'static str],
    /// The API group (`""` for core, `*` for all).
    pub group: &'static str,
    /// The resources, with `/<subresource>` for a subresource.
    pub resources: &'static [&'static str],
    /// Only objects named as the node itself (its Node, its Lease): `resourceNames` of the
    /// node's name.
    pub own_name: bool,
    /// Only in this namespace.
    pub namespace: Option<&'static str>,
}

const ADMIN_RULE: Rule = Rule {
    verbs: &["*"],
    group: "*",
    resources: &["*"],
    own_name: false,
    namespace: None,
};

const fn rule(
    verbs: &'static [&'static str],
    group: &'static str,
    resources: &'static [&'static str],
) -> Rule {
    Rule {
        verbs,
        group,
        resources,
        own_name: false,
        namespace: None,
    }
}

const WRITE: &[&str] = &["create", "update", "patch"];

/// A kubelet's permissions (the `system:node` ClusterRole's spirit, NodeRestriction's own-name
/// rule; which pods are its own is checked on the object, [`node_may_write`]).
const NODE_RULES: &[Rule] = &[
    rule(&["get", "list", "watch"], "*", &["*"]),
    Rule {
        own_name: true,
        ..rule(WRITE, "", &["nodes", "nodes/status"])
    },
    Rule {
        own_name: true,
        namespace: Some("kube-node-lease"),
        ..rule(
            &["create", "update", "patch", "delete"],
            "coordination.k8s.io",
            &["leases"],
        )
    },
    rule(&["update", "patch"], "", &["pods/status"]),
    rule(&["delete"], "", &["pods"]),
    rule(&["create"], "", &["pods/eviction"]),
    rule(WRITE, "", &["events"]),
    rule(WRITE, "events.k8s.io", &["events"]),
];

/// A join token's one permission besides everyone's.
const BOOTSTRAP_RULES: &[Rule] = &[rule(&["create"], "podvisor.io", &["nodecredentials"])];

/// What every authenticated user may do: ask about itself (`system:basic-user`).
const EVERYONE_RULES: &[Rule] = &[
    rule(
        &["create"],
        "authorization.k8s.io",
        &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
    ),
    rule(&["create"], "authentication.k8s.io", &["selfsubjectreviews"]),
];

impl Rule {
    /// Whether this rule, held by `role`, allows `r`. A rule's `*` matches anything; a
    /// request's `*` (a review asking about every verb) only a rule's `*`.
    fn allows(&self, role: &Role, r: &Attributes<'_>) -> bool {
        let resource = match r.subresource {
            Some(sub) if !sub.is_empty() => format!("{}/{sub}", r.resource),
            _ => r.resource.to_owned(),
        };
        let own = match role {
            Role::Node(node) => r.name.is_none_or(|name| name.is_empty() || name == node),
            _ => false,
        };
        // Into a pod (a WebSocket exec is a `get`): only a rule naming it, or one of all verbs.
        let into_pod = matches!(
            resource.as_str(),
            "pods/exec" | "pods/attach" | "pods/portforward"
        );
        let any_resource = self.resources.contains(&"*") && (!into_pod || self.verbs.contains(&"*"));
        (self.verbs.contains(&"*") || self.verbs.contains(&r.verb))
            && (self.group == "*" || self.group == r.group)
            && (any_resource || self.resources.contains(&resource.as_str()))
            && (!self.own_name || own)
            && self.namespace.is_none_or(|ns| r.namespace == Some(ns))
    }
}

/// Where a join token is exchanged for a node's credential.
pub const NODE_CREDENTIALS_PATH: &str = "/apis/podvisor.io/v1/nodecredentials";

/// What a request asks for, as kube-apiserver's `RequestInfo` reads it from the path (or a
/// `SubjectAccessReview`'s `resourceAttributes` say).
#[derive(Debug, PartialEq, Eq)]
pub struct Attributes<'a> {
    /// `get`, `list`, `create`, ... (`*` in a review).
    pub verb: &'a str,
    /// The API group, `""` for core.
    pub group: &'a str,
    /// The namespace, `None` for cluster-scoped requests.
    pub namespace: Option<&'a str>,
    /// The resource (`pods`).
    pub resource: &'a str,
    /// The object's name, if one is named.
    pub name: Option<&'a str>,
    /// The subresource (`status`).
    pub subresource: Option<&'a str>,
}

/// Whether `role` may make the resource request `r` (by the rules alone: what depends on the
/// object is [`node_may_write`]'s).
pub fn allows(role: &Role, r: &Attributes<'_>) -> bool {
    role.rules().iter().any(|rule| rule.allows(role, r))
}

/// Whether `role` may make a request for a non-resource path (discovery, OpenAPI, health,
/// metrics): the administrator anything, everyone else reading.
pub fn allows_path(role: &Role, verb: &str) -> bool {
    *role == Role::Admin || matches!(verb, "get" | "head")
}

/// `Ok` when `role` may make a `method` request for `path`, else the 403 error. What depends
/// on the object (whose node a pod is on, the name of a Node created) is checked once it is
/// read ([`node_may_write`]).
pub fn authorize(role: &Role, method: &Method, path: &str) -> Result<(), ApiError> {
    let Some(request) = parse(method, path) else {
        // Discovery, version, OpenAPI, health and metrics documents: reading is allowed.
        let verb = method.as_str().to_ascii_lowercase();
        return if allows_path(role, &verb) {
            Ok(())
        } else {
            Err(forbidden_path(role, method, path))
        };
    };
    if allows(role, &request) {
        Ok(())
    } else {
        Err(forbidden(role, &request))
    }
}

/// Reads a resource request from its path; `None` for the non-resource paths.
fn parse<'a>(method: &Method, path: &'a str) -> Option<Attributes<'a>> {
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
    Some(Attributes {
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
pub(crate) fn forbidden(role: &Role, r: &Attributes<'_>) -> ApiError {
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
            Attributes {
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
        // Never into a pod, whatever the verb (a WebSocket exec is a GET).
        for sub in ["exec", "attach", "portforward"] {
            let path = format!("/api/v1/namespaces/default/pods/web/{sub}");
            assert!(!allowed(Method::GET, &path), "{sub}");
            assert!(!allowed(Method::POST, &path), "{sub}");
            assert!(authorize(&Role::Admin, &Method::GET, &path).is_ok());
        }
        assert!(allowed(Method::GET, "/api/v1/namespaces/default/pods/web/log"));
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
