//! One set of credentials for every API server of a cluster: the CA, the administrator's token
//! and the key of the nodes' credentials live in the shared store (the agents' join tokens are
//! Secrets there, [`crate::bootstrap_tokens`]), so a kubeconfig written by one server
//! works against every other and an agent may fail over between them.
//!
//! The first server to start makes them (its `<data-dir>/pki/`, [`crate::pki`]) and creates
//! the store object; a later server (or one that lost the race to create it) writes the stored
//! ones into its own `pki/` directory before binding, where [`crate::pki::Pki::load_or_create`]
//! signs the server's own serving certificate (for its own address) with the shared CA.
//!
//! The object is kept under a resource the API does not serve
//! (`podvisor.io/clustercredentials`, in etcd `/registry/podvisor.io/clustercredentials/cluster`):
//! no API request can read it; whoever can read the store can, as with every Secret.

use std::net::IpAddr;
use std::path::Path;

use podvisor_store::{ObjectKey, Store, StoreError};
use serde_json::{Value, json};

use crate::pki::{self, CA_FILES, NODE_KEY_FILE, PKI_DIR, Pki, PkiError, TOKEN_FILE};

/// The store resource holding the credentials (not served by the API).
pub const RESOURCE: &str = "podvisor.io/clustercredentials";

/// Why the shared credentials could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The store could not be read or written.
    #[error("cannot read or write the cluster's credentials in the store: {0}")]
    Store(#[from] StoreError),
    /// The local files could not be made, read or written.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The stored object lacks a file.
    #[error("the cluster's credentials in the store lack `{0}`")]
    Incomplete(&'static str),
}

/// The files shared, by name.
const SHARED: [&str; 4] = [CA_FILES[0], CA_FILES[1], TOKEN_FILE, NODE_KEY_FILE];

/// Makes `<data_dir>/pki/` hold the cluster's shared CA and tokens: the stored ones, or, when
/// none are stored yet, this server's own (made if missing), which are then stored.
pub async fn share(store: &dyn Store, data_dir: &Path, ip: IpAddr) -> Result<(), CredentialsError> {
    let key = ObjectKey::new(RESOURCE, "", "cluster");
    let dir = data_dir.join(PKI_DIR);
    // Two tries: a server that loses the race to store its own reads the winner's.
    for _ in 0..2 {
        match store.get(&key).await {
            Ok(stored) => return write_files(&dir, &stored.object),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Pki::load_or_create(data_dir, ip)?;
        let mut files = serde_json::Map::new();
        for name in SHARED {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).map_err(|source| PkiError::Read { path, source })?;
            files.insert(name.to_owned(), Value::String(text));
        }
        let object = json!({"metadata": {"name": "cluster"}, "files": files});
        match store.create(&key, object).await {
            Ok(_) => return Ok(()),
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let stored = store.get(&key).await?;
    write_files(&dir, &stored.object)
}

/// Writes the stored files into `dir` (mode 0600 for keys and tokens), leaving files that
/// already hold the same bytes alone.
fn write_files(dir: &Path, object: &Value) -> Result<(), CredentialsError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| PkiError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    for name in SHARED {
        let text = object["files"][name]
            .as_str()
            .ok_or(CredentialsError::Incomplete(name))?;
        let path = dir.join(name);
        if std::fs::read_to_string(&path).is_ok_and(|current| current == text) {
            continue;
        }
        let mode = if name == CA_FILES[0] { 0o644 } else { 0o600 };
        pki::write_file_with_mode(&path, text.as_bytes(), mode).map_err(|source| PkiError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_second_server_takes_the_first_ones_credentials() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store: Arc<dyn Store> = Arc::new(
            podvisor_store::RedbStore::open(dir.path().join("store.redb")).unwrap_or_else(|e| panic!("{e}")),
        );
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        let ip = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        share(&*store, &one, ip).await.unwrap_or_else(|e| panic!("{e}"));
        // The second server made its own credentials before it joined: they are replaced.
        Pki::load_or_create(&two, ip).unwrap_or_else(|e| panic!("{e}"));
        share(&*store, &two, IpAddr::V4(Ipv4Addr::new(10, 1, 2, 4)))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let first = Pki::load_or_create(&one, ip).unwrap_or_else(|e| panic!("{e}"));
        let second = Pki::load_or_create(&two, IpAddr::V4(Ipv4Addr::new(10, 1, 2, 4)))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.ca_pem(), second.ca_pem());
        assert_eq!(first.token(), second.token());
        assert_eq!(first.node_key(), second.node_key());
        assert_ne!(first.token(), first.node_key());
        // Each server's serving certificate is its own, signed by the shared CA: the second's
        // verifies with the first's trust.
        assert!(second.server_config().is_ok());
        let key = std::fs::read_to_string(two.join(PKI_DIR).join("ca.key")).unwrap_or_default();
        assert!(key.contains("PRIVATE KEY"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(two.join(PKI_DIR).join("node-key"))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
    }
}
