//! Bearer-token authentication: which requests need a token and whether theirs is one we know.
//!
//! Like kube-apiserver with anonymous requests allowed for health checks (its
//! `system:public-info-viewer` role), a request without credentials may read `/livez`,
//! `/readyz` and `/healthz` (and their `/<check>` sub-paths); everything else needs
//! `Authorization: Bearer <token>`. A request that presents a token we do not know is rejected
//! on every path, as kube-apiserver rejects failed credentials before it considers anonymous
//! access. `/version`, public in kube-apiserver, stays behind the token here: off-host nothing
//! but health answers without it.

use http::{HeaderMap, Method, header};

use crate::authz::{self, Role};
use crate::status::ApiError;

/// Accepts requests carrying one of a fixed set of bearer tokens.
///
/// Tokens are compared in constant time (for tokens of equal length), every known token
/// is compared on every request, so the time taken does not tell which one nearly matched.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Vec<(Vec<u8>, Role)>,
    /// The key nodes' credentials are signed with ([`node_token`]), and its text.
    node_key: Option<(ring::hmac::Key, String)>,
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
        }
    }

    /// Also accepts `join_token` as the agents' bootstrap credential and the node credentials
    /// signed with `node_key` ([`node_token`]), each allowed what [`authz`] says.
    pub fn with_agents(mut self, join_token: String, node_key: &str) -> Self {
        if !join_token.is_empty() {
            self.tokens.push((join_token.into_bytes(), Role::Bootstrap));
        }
        if !node_key.is_empty() {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, node_key.as_bytes());
            self.node_key = Some((key, node_key.to_owned()));
        }
        self
    }

    /// A cluster's credentials of `pki`: its administrator's token, the agents' join token and
    /// the node credentials signed with its node key.
    pub fn for_cluster(pki: &crate::pki::Pki) -> Self {
        Authenticator::bearer_tokens([pki.token().to_owned()])
            .with_agents(pki.join_token().to_owned(), pki.node_key())
    }

    /// The key node credentials are signed with, when agents are accepted.
    pub fn node_key(&self) -> Option<&str> {
        self.node_key.as_ref().map(|(_, text)| text.as_str())
    }

    /// Decides whether a `method` request for `path` with these `headers` may proceed: the
    /// role of its token when it carries a known one whose role allows it, `None` when it asks
    /// anonymously for a health endpoint; else the 401 (unknown or missing credentials) or 403
    /// (not allowed) error.
    pub fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<Option<Role>, ApiError> {
        match bearer_token(headers) {
            Some(token) => match self.role(token) {
                Some(role) => authz::authorize(&role, method, path).map(|()| Some(role)),
                None => Err(ApiError::unauthorized()),
            },
            None if is_public(path) => Ok(None),
            None => Err(ApiError::unauthorized()),
        }
    }

    /// The role of the token presented: a node's credential, or one of the known tokens
    /// (compared with every one of them).
    fn role(&self, presented: &str) -> Option<Role> {
        if let (Some((key, _)), Some(rest)) = (&self.node_key, presented.strip_prefix(NODE_TOKEN_PREFIX)) {
            let (name, signature) = rest.rsplit_once(':')?;
            let signature = hex_decode(signature)?;
            return ring::hmac::verify(key, name.as_bytes(), &signature)
                .ok()
                .map(|()| Role::Node(name.to_owned()));
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

/// How a node's credential starts: `podvisor-node:<node name>:<hex HMAC-SHA256 of the name>`.
const NODE_TOKEN_PREFIX: &str = "podvisor-node:";

/// The credential of the node `name`, signed with `node_key` (the cluster's shared key, never
/// given to agents): what a join token is exchanged for.
pub fn node_token(node_key: &str, name: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, node_key.as_bytes());
    let tag = ring::hmac::sign(&key, name.as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{NODE_TOKEN_PREFIX}{name}:{hex}")
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

    fn headers_owned(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(auth).unwrap_or_else(|e| panic!("{e}")),
        );
        h
    }

    fn headers(auth: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(a));
        }
        h
    }

    #[test]
    fn tokens_and_public_paths() {
        let auth = Authenticator::bearer_tokens(["s3cret".to_owned(), String::new()]);
        assert!(
            auth.check(&Method::GET, "/api/v1/pods", &headers(Some("Bearer s3cret")))
                .is_ok_and(|role| role == Some(Role::Admin))
        );
        assert!(
            auth.check(&Method::GET, "/api/v1/pods", &headers(Some("bearer s3cret")))
                .is_ok()
        );
        for bad in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Basic s3cret"),
            Some("Bearer "),
        ] {
            let e = auth
                .check(&Method::GET, "/api/v1/pods", &headers(bad))
                .unwrap_err();
            assert_eq!(e.code, 401, "{bad:?}");
        }
        for public in ["/livez", "/readyz/", "/healthz/ping"] {
            assert!(
                auth.check(&Method::GET, public, &headers(None)).is_ok(),
                "{public}"
            );
        }
        assert!(auth.check(&Method::GET, "/healthzz", &headers(None)).is_err());
        assert!(auth.check(&Method::GET, "/version", &headers(None)).is_err());
        // Wrong credentials are refused even where anonymous requests are allowed.
        assert!(
            auth.check(&Method::GET, "/readyz", &headers(Some("Bearer nope")))
                .is_err()
        );
    }

    #[test]
    fn node_credentials_are_signed_for_their_name_only() {
        let auth = Authenticator::bearer_tokens(["admin".to_owned()]).with_agents("join".to_owned(), "k3y");
        let token = node_token("k3y", "agent-a");
        let check = |t: &str| {
            auth.check(
                &Method::GET,
                "/api/v1/pods",
                &headers_owned(&format!("Bearer {t}")),
            )
        };
        assert_eq!(check(&token).ok().flatten(), Some(Role::Node("agent-a".into())));
        // Another name with the same signature, another key's signature, garbage: 401.
        let forged = token.replace("agent-a", "agent-b");
        let other_key = node_token("other", "agent-a");
        for bad in [
            forged.as_str(),
            other_key.as_str(),
            "podvisor-node:agent-a:zz",
            "podvisor-node:x",
        ] {
            assert_eq!(check(bad).map_err(|e| e.code).err(), Some(401), "{bad}");
        }
        // The join token is a bootstrap credential: it may not list pods.
        assert_eq!(check("join").map_err(|e| e.code).err(), Some(403));
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
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
