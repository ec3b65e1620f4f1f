//! Where an API server is reached: binding its listener with the credentials its address
//! needs, and writing the kubeconfig clients use.
//!
//! Plain HTTP without authentication is served only on loopback. Any other address, or
//! loopback with TLS asked for, gets TLS with the data dir's CA and a bearer token ([`pki`]);
//! the kubeconfig then carries the CA and the token.
//!
//! [`pki`]: crate::pki

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::pki::{Pki, PkiError, write_file_with_mode};

/// Why the listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS credentials could not be loaded or made.
    #[error("cannot set up TLS for --listen {addr}")]
    Pki {
        /// The address.
        addr: SocketAddr,
        /// The cause (naming the file).
        #[source]
        source: PkiError,
    },
}

/// A bound API listener and how clients reach it.
pub struct Endpoint {
    /// The bound listener.
    pub listener: tokio::net::TcpListener,
    /// Its address (with the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The CA, serving certificate and token when the API serves TLS.
    pub pki: Option<Pki>,
    /// The API server's TLS settings (the serving certificate) when it serves TLS.
    pub server_tls: Option<rustls::ServerConfig>,
    /// The URL clients reach the API at (`http://127.0.0.1:PORT`, `https://ADDR`).
    pub url: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Binds `listen`. A loopback address is served over plain HTTP without authentication unless
/// `tls` is set; any other address (and loopback with `tls`) is served over TLS with a bearer
/// token, with the credentials of `<data_dir>/pki/` (made on first use).
pub async fn bind(data_dir: &Path, listen: SocketAddr, tls: bool) -> Result<Endpoint, SetupError> {
    let pki_error = |source| SetupError::Pki { addr: listen, source };
    let pki = if tls || !listen.ip().is_loopback() {
        Some(Pki::load_or_create(data_dir, client_ip(listen.ip())).map_err(pki_error)?)
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| SetupError::Listen { addr: listen, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| SetupError::Listen { addr: listen, source })?;
    // Clients reach a wildcard listener on loopback (the certificate names 127.0.0.1 and ::1).
    let target = SocketAddr::new(client_ip(addr.ip()), addr.port());
    let (url, server_tls) = match &pki {
        Some(pki) => (
            format!("https://{target}"),
            Some(pki.server_config().map_err(pki_error)?),
        ),
        None => (format!("http://{target}"), None),
    };
    Ok(Endpoint {
        listener,
        addr,
        pki,
        server_tls,
        url,
    })
}

/// The address clients use for a listener on `ip`: loopback for the unspecified address.
fn client_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// The kubeconfig text for a client of the API at `url`: with TLS, the cluster trusts the CA
/// (`certificate-authority-data`) and the user sends the token.
pub fn kubeconfig(url: &str, pki: Option<&Pki>) -> Result<String, serde_yaml_ng::Error> {
    kubeconfig_with(url, pki.map(|p| (p, p.token())))
}

/// The kubeconfig text for a client at `url` sending `token`, trusting `pki`'s CA.
fn kubeconfig_with(url: &str, credentials: Option<(&Pki, &str)>) -> Result<String, serde_yaml_ng::Error> {
    use base64::Engine as _;
    let mut cluster = json!({"server": url});
    let mut user = json!({});
    if let Some((pki, token)) = credentials {
        cluster["certificate-authority-data"] = base64::engine::general_purpose::STANDARD
            .encode(pki.ca_pem())
            .into();
        user["token"] = token.into();
    }
    serde_yaml_ng::to_string(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "podvisor", "cluster": cluster}],
        "contexts": [{"name": "podvisor", "context": {
            "cluster": "podvisor", "namespace": "default", "user": "podvisor"}}],
        "current-context": "podvisor",
        "users": [{"name": "podvisor", "user": user}],
    }))
}

/// Writes [`kubeconfig`] to `path`: mode 0600 when it carries the token (like the token
/// itself), 0644 otherwise.
pub fn write_kubeconfig(path: &Path, url: &str, pki: Option<&Pki>) -> std::io::Result<PathBuf> {
    let text = kubeconfig(url, pki).map_err(std::io::Error::other)?;
    let mode = if pki.is_some() { 0o600 } else { 0o644 };
    write_file_with_mode(path, text.as_bytes(), mode)?;
    Ok(path.to_owned())
}

/// Writes the agents' kubeconfig (`join.kubeconfig`, mode 0600): the CA and `join_token`, a
/// bootstrap token an agent exchanges for its node's credential ([`crate::authz`]).
pub fn write_join_kubeconfig(
    path: &Path,
    url: &str,
    pki: &Pki,
    join_token: &str,
) -> std::io::Result<PathBuf> {
    let text = kubeconfig_with(url, Some((pki, join_token))).map_err(std::io::Error::other)?;
    write_file_with_mode(path, text.as_bytes(), 0o600)?;
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_kubeconfig_names_the_server_and_an_empty_user() {
        let text = kubeconfig("http://127.0.0.1:6443", None).unwrap();
        let value: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(value["clusters"][0]["cluster"]["server"], "http://127.0.0.1:6443");
        assert_eq!(value["current-context"], "podvisor");
        assert_eq!(value["contexts"][0]["context"]["namespace"], "default");
        assert_eq!(value["users"][0]["user"], json!({}));
    }

    #[test]
    fn a_tls_kubeconfig_carries_the_ca_and_the_token_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        let path = dir.path().join("kubeconfig");
        write_kubeconfig(&path, "https://127.0.0.1:6443", Some(&pki)).unwrap();
        let value: serde_json::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(value["users"][0]["user"]["token"], pki.token());
        use base64::Engine as _;
        let ca = value["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap();
        let ca = base64::engine::general_purpose::STANDARD.decode(ca).unwrap();
        assert_eq!(ca, pki.ca_pem().as_bytes());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
