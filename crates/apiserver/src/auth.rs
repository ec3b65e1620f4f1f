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
        }
    }

    /// Also accepts `token` as the agents' credential: only what a kubelet needs is allowed
    /// ([`authz`]).
    pub fn with_node_token(mut self, token: String) -> Self {
        if !token.is_empty() {
            self.tokens.push((token.into_bytes(), Role::Node));
        }
        self
    }

    /// Decides whether a `method` request for `path` with these `headers` may proceed: `Ok` if
    /// it carries a known token whose role allows it, or asks anonymously for a health
    /// endpoint; else the 401 (unknown or missing credentials) or 403 (not allowed) error.
    pub fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        match bearer_token(headers) {
            Some(token) => match self.role(token.as_bytes()) {
                Some(role) => authz::authorize(role, method, path),
                None => Err(ApiError::unauthorized()),
            },
            None if is_public(path) => Ok(()),
            None => Err(ApiError::unauthorized()),
        }
    }

    /// The role of the token presented, comparing it with every known token.
    fn role(&self, presented: &[u8]) -> Option<Role> {
        let mut found = None;
        for (token, role) in &self.tokens {
            if constant_time_eq(token, presented) {
                found = Some(*role);
            }
        }
        found
    }
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
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
                .is_ok()
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
