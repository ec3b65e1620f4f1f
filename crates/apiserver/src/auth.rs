//! Bearer-token authentication: which requests need a token and whether theirs is one we know.
//!
//! Like kube-apiserver with anonymous requests allowed for health checks (its
//! `system:public-info-viewer` role), a request without credentials may read `/livez`,
//! `/readyz` and `/healthz` (and their `/<check>` sub-paths); everything else needs
//! `Authorization: Bearer <token>`. A request that presents a token we do not know is rejected
//! on every path, as kube-apiserver rejects failed credentials before it considers anonymous
//! access. `/version`, public in kube-apiserver, stays behind the token here: off-host nothing
//! but health answers without it.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, header};
use podvisor_store::Store;

use crate::authz::{self, Role};
use crate::bootstrap_tokens::Validity;
use crate::status::ApiError;

/// Accepts requests carrying one of a fixed set of bearer tokens, and (with
/// [`Authenticator::with_agents`]) the agents' join tokens and node credentials.
///
/// Tokens are compared in constant time (for tokens of equal length), every known token
/// is compared on every request, so the time taken does not tell which one nearly matched.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Vec<(Vec<u8>, Role)>,
    /// The key nodes' credentials are signed with ([`node_token`]), and its text.
    node_key: Option<(ring::hmac::Key, String)>,
    /// Which join tokens (bootstrap tokens) are valid now.
    bootstrap: Option<Arc<Validity>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Accepts these bearer tokens as administrators (everything allowed); empty strings are
    /// ignored (they would match nothing).
    pub fn bearer_tokens(tokens: impl IntoIterator<Item = String>) -> Self {
        Authenticator {
            tokens: tokens
                .into_iter()
                .filter(|t| !t.is_empty())
                .map(|t| (t.into_bytes(), Role::Admin))
                .collect(),
            node_key: None,
            bootstrap: None,
        }
    }

    /// Also accepts the join tokens (bootstrap token Secrets, [`crate::bootstrap_tokens`]) of
    /// `store` while they are valid, and the node credentials signed with `node_key`
    /// ([`node_token`]) while the join token they were exchanged for is: each allowed what
    /// [`authz`] says. A revocation (a deleted Secret) takes effect within `recheck`.
    pub fn with_agents(mut self, store: Arc<dyn Store>, node_key: &str, recheck: Duration) -> Self {
        if !node_key.is_empty() {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, node_key.as_bytes());
            self.node_key = Some((key, node_key.to_owned()));
            self.bootstrap = Some(Arc::new(Validity::new(store, recheck)));
        }
        self
    }

    /// A cluster's credentials: the administrator's token of `pki`, the join tokens of `store`
    /// and the node credentials signed with `pki`'s node key.
    pub fn for_cluster(pki: &crate::pki::Pki, store: Arc<dyn Store>) -> Self {
        Authenticator::bearer_tokens([pki.token().to_owned()]).with_agents(
            store,
            pki.node_key(),
            crate::bootstrap_tokens::RECHECK,
        )
    }

    /// The key node credentials are signed with, when agents are accepted.
    pub fn node_key(&self) -> Option<&str> {
        self.node_key.as_ref().map(|(_, text)| text.as_str())
    }

    /// Decides whether a `method` request for `path` with these `headers` may proceed: the
    /// role of its token when it carries a known one whose role allows it, `None` when it asks
    /// anonymously for a health endpoint; else the 401 (unknown or missing credentials) or 403
    /// (not allowed) error.
    pub async fn check(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Option<Role>, ApiError> {
        match bearer_token(headers) {
            Some(token) => match self.role(token).await {
                Some(role) => {
                    let role = impersonated(role, headers)?;
                    authz::authorize(&role, method, path).map(|()| Some(role))
                }
                None => Err(ApiError::unauthorized()),
            },
            None if is_public(path) => Ok(None),
            None => Err(ApiError::unauthorized()),
        }
    }

    /// The role of the token presented: a node's credential, a join token, or one of the known
    /// tokens (compared with every one of them).
    async fn role(&self, presented: &str) -> Option<Role> {
        if let (Some((key, _)), Some(rest)) = (&self.node_key, presented.strip_prefix(NODE_TOKEN_PREFIX)) {
            let (signed, signature) = rest.rsplit_once(':')?;
            let (name, id) = signed.rsplit_once(':')?;
            let signature = hex_decode(signature)?;
            ring::hmac::verify(key, signed.as_bytes(), &signature).ok()?;
            // Only while the join token it was exchanged for is valid.
            self.bootstrap.as_ref()?.secret(id).await?;
            return Some(Role::Node(name.to_owned()));
        }
        if let (Some(bootstrap), Some((id, secret))) =
            (&self.bootstrap, crate::bootstrap_tokens::parse(presented))
        {
            let valid = bootstrap.secret(id).await?;
            return constant_time_eq(valid.as_bytes(), secret.as_bytes())
                .then(|| Role::Bootstrap(id.to_owned()));
        }
        let mut found = None;
        for (token, role) in &self.tokens {
            if constant_time_eq(token, presented.as_bytes()) {
                found = Some(role.clone());
            }
        }
        found
    }
}

/// The role a request acts as: its credential's, or with an `Impersonate-User` header (kubectl
/// `--as`), that user's, when the credential may impersonate (the administrator only, as
/// `system:masters` may). The user's role is read from its name ([`Role::of_user`]: a node's,
/// a join token's, the administrator's, or any other user's basic rights). Impersonating
/// groups, a uid or extra fields is refused: roles here follow from the user alone.
pub fn impersonated(role: Role, headers: &HeaderMap) -> Result<Role, ApiError> {
    let other = headers.keys().find(|k| {
        let k = k.as_str();
        k == "impersonate-group" || k == "impersonate-uid" || k.starts_with("impersonate-extra-")
    });
    let user = headers.get("impersonate-user");
    if user.is_none() && other.is_none() {
        return Ok(role);
    }
    let Some(user) = user.and_then(|u| u.to_str().ok()).filter(|u| !u.is_empty()) else {
        return Err(ApiError::bad_request(
            "requested impersonation without a user (Impersonate-User)",
        ));
    };
    if let Some(header) = other {
        return Err(ApiError::forbidden_message(format!(
            "impersonation with {header} is not supported: a user's permissions follow from its name alone"
        )));
    }
    if role != Role::Admin {
        let attributes = authz::Attributes {
            verb: "impersonate",
            group: "",
            namespace: None,
            resource: "users",
            name: Some(user),
            subresource: None,
        };
        return Err(authz::forbidden(&role, &attributes));
    }
    Ok(Role::of_user(user))
}

/// How a node's credential starts: `podvisor-node:<node name>:<join token id>:<hex HMAC-SHA256
/// of "<node name>:<join token id>">`.
const NODE_TOKEN_PREFIX: &str = "podvisor-node:";

/// The credential of the node `name` exchanged for the join token `join_id`, signed with
/// `node_key` (the cluster's shared key, never given to agents); valid while that join token
/// is.
pub fn node_token(node_key: &str, name: &str, join_id: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, node_key.as_bytes());
    let signed = format!("{name}:{join_id}");
    let tag = ring::hmac::sign(&key, signed.as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{NODE_TOKEN_PREFIX}{signed}:{hex}")
}

/// Bytes from lowercase or uppercase hex; `None` for anything else.
fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case, like
/// kube-apiserver), `None` without one or with an empty token (which counts as no credentials).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = value.split_whitespace();
    let scheme = parts.next()?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    parts.next().filter(|t| !t.is_empty())
}

/// The health endpoints, open to requests without credentials.
pub(crate) fn is_public(path: &str) -> bool {
    ["/livez", "/readyz", "/healthz"].iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest == "/" || rest.starts_with('/'))
    })
}

/// Equality whose running time depends only on the lengths, not on where the bytes differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(a).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    #[tokio::test]
    async fn tokens_and_public_paths() {
        let auth = Authenticator::bearer_tokens(["s3cret".to_owned(), String::new()]);
        let check = |path: &'static str, header: Option<&'static str>| {
            let auth = auth.clone();
            async move { auth.check(&Method::GET, path, &headers(header)).await }
        };
        assert_eq!(
            check("/api/v1/pods", Some("Bearer s3cret")).await.ok().flatten(),
            Some(Role::Admin)
        );
        assert!(check("/api/v1/pods", Some("bearer s3cret")).await.is_ok());
        for bad in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Basic s3cret"),
            Some("Bearer "),
        ] {
            assert_eq!(
                check("/api/v1/pods", bad).await.map_err(|e| e.code).err(),
                Some(401),
                "{bad:?}"
            );
        }
        for public in ["/livez", "/readyz/", "/healthz/ping"] {
            assert!(check(public, None).await.is_ok(), "{public}");
        }
        assert!(check("/healthzz", None).await.is_err());
        assert!(check("/version", None).await.is_err());
        // Wrong credentials are refused even where anonymous requests are allowed.
        assert!(check("/readyz", Some("Bearer nope")).await.is_err());
    }

    #[test]
    fn only_the_administrator_impersonates_and_only_users() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let node = Role::Node("agent-a".into());
        let code = |r: Result<Role, ApiError>| r.map_err(|e| e.code);
        assert_eq!(
            code(impersonated(node.clone(), &HeaderMap::new())),
            Ok(node.clone())
        );
        let as_node = with(&[("impersonate-user", "system:node:agent-b")]);
        assert_eq!(
            code(impersonated(Role::Admin, &as_node)),
            Ok(Role::Node("agent-b".into()))
        );
        let as_jane = with(&[("impersonate-user", "jane")]);
        assert_eq!(
            code(impersonated(Role::Admin, &as_jane)),
            Ok(Role::User("jane".into()))
        );
        let e = impersonated(node, &as_jane).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "users \"jane\" is forbidden: User \"system:node:agent-a\" cannot impersonate resource \
             \"users\" in API group \"\" at the cluster scope"
        );
        let groups = with(&[
            ("impersonate-user", "jane"),
            ("impersonate-group", "system:masters"),
        ]);
        assert_eq!(impersonated(Role::Admin, &groups).map_err(|e| e.code), Err(403));
        let no_user = with(&[("impersonate-group", "system:masters")]);
        assert_eq!(impersonated(Role::Admin, &no_user).map_err(|e| e.code), Err(400));
        // An impersonated user has every user's rights and no more.
        let jane = Role::User("jane".into());
        assert!(authz::authorize(&jane, &Method::GET, "/api/v1/pods").is_err());
        assert!(authz::authorize(&jane, &Method::GET, "/apis").is_ok());
        assert!(
            authz::authorize(
                &jane,
                &Method::POST,
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
            )
            .is_ok()
        );
    }

    #[tokio::test]
    async fn join_tokens_and_node_credentials_last_while_their_secret_does() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store: Arc<dyn Store> = Arc::new(
            podvisor_store::RedbStore::open(dir.path().join("s.redb")).unwrap_or_else(|e| panic!("{e}")),
        );
        let join = crate::bootstrap_tokens::ensure_join_token(store.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (id, _) = crate::bootstrap_tokens::parse(&join).unwrap_or_else(|| panic!("{join}"));
        let auth = Authenticator::bearer_tokens(["admin".to_owned()]).with_agents(
            store.clone(),
            "k3y",
            Duration::ZERO,
        );
        let check = |token: String| {
            let auth = auth.clone();
            async move {
                auth.check(
                    &Method::GET,
                    "/api/v1/pods",
                    &headers(Some(&format!("Bearer {token}"))),
                )
                .await
                .map_err(|e| e.code)
            }
        };
        let node = node_token("k3y", "agent-a", id);
        assert_eq!(check(node.clone()).await, Ok(Some(Role::Node("agent-a".into()))));
        // The join token itself only bootstraps: it may not list pods.
        assert_eq!(check(join.clone()).await, Err(403));
        // Another name with the same signature, another key's, another token id's, garbage: 401.
        for bad in [
            node.replace("agent-a", "agent-b"),
            node_token("other", "agent-a", id),
            node_token("k3y", "agent-a", "zzzzzz"),
            "podvisor-node:agent-a:zz".to_owned(),
            "abcdef.0123456789abcdef".to_owned(),
        ] {
            assert_eq!(check(bad.clone()).await, Err(401), "{bad}");
        }
        // Deleting the join token's Secret revokes it and every credential exchanged for it.
        let key = podvisor_store::ObjectKey::new("secrets", "kube-system", format!("bootstrap-token-{id}"));
        store
            .delete(&key, Default::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(check(join).await, Err(401));
        assert_eq!(check(node).await, Err(401));
    }

    #[test]
    fn unauthorized_status_matches_kube_apiserver() {
        let s = ApiError::unauthorized().to_status();
        assert_eq!(
            s,
            serde_json::json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"Unauthorized","reason":"Unauthorized","code":401})
        );
    }

    #[test]
    fn equal_length_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
