//! What the controllers' tests share: a real API server on a fresh store with a client of its
//! in-process handler, and a bounded wait.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use podvisor_apiserver::{ApiServer, ApiServerConfig};

/// An API server on a fresh store, and a client of its in-process handler.
pub(crate) async fn server() -> (tempfile::TempDir, ApiServer, Client) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store =
        podvisor_store::RedbStore::open(dir.path().join("store.redb")).unwrap_or_else(|e| panic!("{e}"));
    let server = ApiServer::new(Arc::new(store), ApiServerConfig::default());
    server.bootstrap().await.unwrap_or_else(|e| panic!("{e}"));
    let client = Client::new(server.handler(), "default");
    (dir, server, client)
}

/// Polls `check` every 20 ms until it returns `Some`, for at most 20 s.
pub(crate) async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
