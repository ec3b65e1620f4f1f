//! Join tokens as Kubernetes bootstrap tokens: Secrets of type `bootstrap.kubernetes.io/token`
//! named `bootstrap-token-<id>` in `kube-system`, holding `token-id` (6 of `[a-z0-9]`),
//! `token-secret` (16 of `[a-z0-9]`) and `usage-bootstrap-authentication: "true"`, with an
//! optional RFC 3339 `expiration` — kubeadm's format, so the token is `<id>.<secret>`.
//!
//! A join token is valid while its Secret exists, says so and has not expired; deleting the
//! Secret revokes it, and with it every node credential that was exchanged for it (those name
//! the token's id). A server writes `join.kubeconfig` with the token of the Secret it made (the
//! first valid one labelled `podvisor.io/join-token`), or makes a new one when there is none, so
//! a revoked token is never handed out again. More tokens (one per agent, to revoke agents one
//! by one) are Secrets an administrator creates with kubectl.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use podvisor_store::{ListOptions, ObjectKey, Store, StoreError};
use serde_json::{Value, json};

use crate::meta::{new_uid, now_millis, rfc3339};

/// The Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Their namespace.
pub const NAMESPACE: &str = "kube-system";
/// The label of the join tokens servers make.
pub const JOIN_LABEL: &str = "podvisor.io/join-token";
/// How long a token's validity is remembered: a revocation takes effect within this.
pub const RECHECK: Duration = Duration::from_secs(10);

/// `(id, secret)` of a token shaped `<6 of [a-z0-9]>.<16 of [a-z0-9]>`.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok =
        |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// A Secret's `data` value, decoded.
fn data(secret: &Value, key: &str) -> Option<String> {
    let encoded = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    String::from_utf8(bytes).ok()
}

/// The token secret of the bootstrap token `id`, when its Secret is valid now.
async fn valid_secret(store: &dyn Store, id: &str) -> Result<Option<String>, StoreError> {
    let key = ObjectKey::new("secrets", NAMESPACE, format!("bootstrap-token-{id}"));
    let secret = match store.get(&key).await {
        Ok(found) => found.object,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(valid(&secret, id))
}

/// The token secret of a bootstrap token Secret for `id` that is valid now.
fn valid(secret: &Value, id: &str) -> Option<String> {
    let usable = secret["type"] == SECRET_TYPE
        && secret
            .pointer("/metadata/deletionTimestamp")
            .is_none_or(Value::is_null)
        && data(secret, "token-id").as_deref() == Some(id)
        && data(secret, "usage-bootstrap-authentication").as_deref() == Some("true");
    let expired = data(secret, "expiration")
        .is_some_and(|at| podvisor_core::rfc3339::parse(&at).is_none_or(|at| at <= now_millis()));
    if !usable || expired {
        return None;
    }
    data(secret, "token-secret").filter(|s| parse(&format!("{id}.{s}")).is_some())
}

/// The join token servers write into `join.kubeconfig`: the first valid bootstrap token
/// labelled [`JOIN_LABEL`], or a new one (a revoked one is never made again).
pub async fn ensure_join_token(store: &dyn Store) -> Result<String, StoreError> {
    let listed = store
        .list("secrets", Some(NAMESPACE), ListOptions::default())
        .await?;
    for item in &listed.items {
        let object = &item.object;
        if object
            .pointer(&format!("/metadata/labels/{}", JOIN_LABEL.replace('/', "~1")))
            .is_none()
        {
            continue;
        }
        if let Some(id) = data(object, "token-id")
            && let Some(secret) = valid(object, &id)
        {
            return Ok(format!("{id}.{secret}"));
        }
    }
    let random = new_uid().replace('-', "");
    let (id, secret) = (&random[..6], &random[6..22]);
    let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let object = json!({
        "apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": NAMESPACE,
            "uid": new_uid(), "creationTimestamp": rfc3339(now_millis()),
            "labels": {JOIN_LABEL: "true"}},
        "data": {"token-id": encode(id), "token-secret": encode(secret),
            "usage-bootstrap-authentication": encode("true"),
            "description": encode("podvisor agents' join token (join.kubeconfig)")},
    });
    let key = ObjectKey::new("secrets", NAMESPACE, format!("bootstrap-token-{id}"));
    store.create(&key, object).await?;
    Ok(format!("{id}.{secret}"))
}

/// Which bootstrap tokens are valid, read from the store and remembered for [`RECHECK`].
pub(crate) struct Validity {
    store: std::sync::Arc<dyn Store>,
    seen: Mutex<HashMap<String, (Option<String>, Instant)>>,
    recheck: Duration,
}

impl Validity {
    pub(crate) fn new(store: std::sync::Arc<dyn Store>, recheck: Duration) -> Self {
        Validity {
            store,
            seen: Mutex::new(HashMap::new()),
            recheck,
        }
    }

    /// The token secret of bootstrap token `id`, if valid (a store failure counts as not
    /// valid: the request is refused and may be retried).
    pub(crate) async fn secret(&self, id: &str) -> Option<String> {
        if let Ok(seen) = self.seen.lock()
            && let Some((secret, at)) = seen.get(id)
            && at.elapsed() < self.recheck
        {
            return secret.clone();
        }
        let secret = valid_secret(self.store.as_ref(), id).await.ok().flatten();
        if let Ok(mut seen) = self.seen.lock() {
            // Bounded: a flood of made-up ids cannot grow it past this.
            if seen.len() >= 1024 {
                seen.retain(|_, (_, at)| at.elapsed() < self.recheck);
            }
            if seen.len() < 1024 {
                seen.insert(id.to_owned(), (secret.clone(), Instant::now()));
            }
        }
        secret
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_join_token_is_made_once_and_revoked_by_deleting_its_secret() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store: Arc<dyn Store> = Arc::new(
            podvisor_store::RedbStore::open(dir.path().join("s.redb")).unwrap_or_else(|e| panic!("{e}")),
        );
        let token = ensure_join_token(store.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (id, secret) = parse(&token).unwrap_or_else(|| panic!("kubeadm's format: {token}"));
        assert_eq!(
            ensure_join_token(store.as_ref()).await.ok().as_deref(),
            Some(token.as_str())
        );
        let validity = Validity::new(store.clone(), Duration::ZERO);
        assert_eq!(validity.secret(id).await.as_deref(), Some(secret));
        assert_eq!(validity.secret("zzzzzz").await, None);
        let key = ObjectKey::new("secrets", NAMESPACE, format!("bootstrap-token-{id}"));
        store
            .delete(&key, Default::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(validity.secret(id).await, None, "revoked");
        // A new one is made; the revoked one never comes back.
        let next = ensure_join_token(store.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(next, token);
    }

    #[test]
    fn tokens_and_secrets_are_checked_like_kubeadms() {
        assert_eq!(
            parse("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        for bad in [
            "abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        let e = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut secret = json!({"type": SECRET_TYPE, "data": {"token-id": e("abcdef"),
            "token-secret": e("0123456789abcdef"), "usage-bootstrap-authentication": e("true")}});
        assert_eq!(valid(&secret, "abcdef").as_deref(), Some("0123456789abcdef"));
        assert_eq!(valid(&secret, "other1"), None);
        secret["data"]["expiration"] = e("2000-01-01T00:00:00Z").into();
        assert_eq!(valid(&secret, "abcdef"), None, "expired");
        secret["data"]["expiration"] = e("2999-01-01T00:00:00Z").into();
        assert!(valid(&secret, "abcdef").is_some());
        secret["data"]["usage-bootstrap-authentication"] = e("false").into();
        assert_eq!(valid(&secret, "abcdef"), None);
    }
}
