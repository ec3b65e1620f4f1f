//! The API's credentials off loopback: a CA, a serving certificate it signs, and a bearer
//! token, made on first start in `<data-dir>/pki/` and reused on later starts.
//!
//! Files: `ca.crt`, `ca.key`, `apiserver.crt`, `apiserver.key`, `token` (the administrator's),
//! `node-key` (signs the nodes' credentials; the agents' join tokens are bootstrap token
//! Secrets, [`crate::bootstrap_tokens`]). Keys and the token are
//! written mode 0600 (and put back to 0600 on every start) in a 0700 directory, so only the
//! node's user (root, for a real node) can read them. The CA is kept as long as both its files
//! exist, so clients that trust it keep working; the serving certificate is made again (with a
//! new key) when it does not verify against the CA for the address served, or expires within
//! 30 days. Keys are ECDSA P-256 (rcgen on ring); the token is 32 bytes from `/dev/urandom`,
//! hex-encoded.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The directory under the data dir that holds the credentials.
pub const PKI_DIR: &str = "pki";
/// The administrator's token file.
pub const TOKEN_FILE: &str = "token";
/// The file of the key nodes' credentials are signed with.
pub const NODE_KEY_FILE: &str = "node-key";
/// The CA's certificate and key files.
pub const CA_FILES: [&str; 2] = ["ca.crt", "ca.key"];
/// A serving certificate expiring sooner than this is made again at start.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a new CA is valid, in years.
const CA_YEARS: i32 = 10;
/// How long a new serving certificate is valid, in years (renewed at a start near its end).
const SERVING_YEARS: i32 = 1;

/// Why the credentials could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The directory could not be created or restricted.
    #[error("cannot create {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written or its mode set.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file does not hold what it should (remove the `pki` directory to start afresh; clients
    /// then need the new kubeconfig).
    #[error("{path} does not hold a valid {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// `PEM certificate`, `PEM private key`, `token`.
        what: &'static str,
    },
    /// Making a key or certificate failed.
    #[error("cannot generate the {what}")]
    Generate {
        /// `CA key`, `CA certificate`, `serving key`, `serving certificate`.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// No random bytes for the token.
    #[error("cannot read random bytes from /dev/urandom for the token")]
    Random(#[source] std::io::Error),
    /// rustls refused the certificates or key.
    #[error("cannot set up TLS with the certificates in {dir}")]
    Tls {
        /// The pki directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
}

/// This module's result type.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;

/// The API's CA, serving certificate and token, as loaded or made by [`Pki::load_or_create`].
pub struct Pki {
    dir: PathBuf,
    ca_pem: String,
    ca: CertificateDer<'static>,
    serving: CertificateDer<'static>,
    serving_key: PrivateKeyDer<'static>,
    token: String,
    node_key: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads the credentials from `<data_dir>/pki/`, making what is missing: a serving
    /// certificate valid for `ip` (plus 127.0.0.1, ::1, `localhost` and the host name).
    pub fn load_or_create(data_dir: &Path, ip: IpAddr) -> Result<Pki> {
        let dir = data_dir.join(PKI_DIR);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .and_then(|()| std::fs::set_permissions(&dir, Permissions::from_mode(0o700)))
            .map_err(|source| PkiError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        let (ca_pem, ca_key) = load_or_create_ca(&dir)?;
        let ca = parse_cert(&dir.join("ca.crt"), ca_pem.as_bytes())?;
        let serving = load_serving(&dir, &ca, ip)?;
        let (serving, serving_key) = match serving {
            Some(pair) => pair,
            None => create_serving(&dir, &ca_key, ip)?,
        };
        let token = load_or_create_token(&dir.join(TOKEN_FILE))?;
        let node_key = load_or_create_token(&dir.join(NODE_KEY_FILE))?;
        Ok(Pki {
            dir,
            ca_pem,
            ca,
            serving,
            serving_key,
            token,
            node_key,
        })
    }

    /// The key nodes' credentials are signed with; never leaves the servers.
    pub fn node_key(&self) -> &str {
        &self.node_key
    }

    /// The bearer token clients must send.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CA certificate in PEM, for clients to trust (`certificate-authority-data`).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The API server's TLS settings: the serving certificate and its key.
    pub fn server_config(&self) -> Result<rustls::ServerConfig> {
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_no_client_auth()
                    .with_single_cert(vec![self.serving.clone()], self.serving_key.clone_key())
            })
            .map_err(|source| PkiError::Tls {
                dir: self.dir.clone(),
                source,
            })
    }

    /// TLS settings for a client of the API that trusts the CA (the node's own client).
    pub fn client_config(&self) -> Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).map_err(|source| PkiError::Tls {
            dir: self.dir.clone(),
            source,
        })?;
        Ok(rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| PkiError::Tls {
                dir: self.dir.clone(),
                source,
            })?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS settings that accept any server certificate (its signatures still checked): for the API
/// server's requests to kubelets' self-signed endpoints, as kube-apiserver does without
/// `--kubelet-certificate-authority`; those requests prove themselves with a token instead.
pub fn unverified_client_config() -> rustls::ClientConfig {
    let provider = provider();
    let verifier = Arc::new(AnyServerCert(provider.clone()));
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| rustls::ClientConfig::builder_with_protocol_versions(rustls::DEFAULT_VERSIONS));
    builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

/// Accepts every certificate chain; checks handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The CA's parameters; the same every time, so a loaded CA key can issue certificates whose
/// issuer name and authority key identifier match the CA certificate on disk.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "podvisor-ca");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// The current year (to within a day at new year, which the validity margins absorb).
fn this_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    1970 + i32::try_from(secs / 31_556_952).unwrap_or(0)
}

/// Loads `ca.crt` and `ca.key`, or makes both when either is missing.
fn load_or_create_ca(dir: &Path) -> Result<(String, KeyPair)> {
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    if crt.exists() && key.exists() {
        restrict(&key)?;
        let pem = read(&crt)?;
        let key_pem = read(&key)?;
        let key_pair = KeyPair::from_pem(&key_pem).map_err(|_| PkiError::Invalid {
            path: key.clone(),
            what: "PEM private key",
        })?;
        return Ok((pem, key_pair));
    }
    let key_pair = KeyPair::generate().map_err(|source| PkiError::Generate {
        what: "CA key",
        source,
    })?;
    let mut params = ca_params();
    let year = this_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + CA_YEARS, 1, 1);
    let cert = params
        .self_signed(&key_pair)
        .map_err(|source| PkiError::Generate {
            what: "CA certificate",
            source,
        })?;
    write_file(&key, key_pair.serialize_pem().as_bytes(), 0o600)?;
    let pem = cert.pem();
    write_file(&crt, pem.as_bytes(), 0o644)?;
    // A new CA invalidates the serving certificate it did not sign.
    let _ = std::fs::remove_file(dir.join("apiserver.crt"));
    Ok((pem, key_pair))
}

/// The serving certificate and key on disk, if both load and the certificate verifies against
/// `ca` for `ip` until at least [`RENEW_BEFORE`] from now.
fn load_serving(
    dir: &Path,
    ca: &CertificateDer<'static>,
    ip: IpAddr,
) -> Result<Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>> {
    let (crt, key) = (dir.join("apiserver.crt"), dir.join("apiserver.key"));
    if !crt.exists() || !key.exists() {
        return Ok(None);
    }
    restrict(&key)?;
    let (Ok(cert), Ok(key_der)) = (
        CertificateDer::from_pem_slice(read(&crt)?.as_bytes()),
        PrivateKeyDer::from_pem_slice(read(&key)?.as_bytes()),
    ) else {
        return Ok(None);
    };
    Ok(serving_fits(ca, &cert, ip).then_some((cert, key_der)))
}

/// Whether `cert` chains to `ca` and is valid for `ip` now and [`RENEW_BEFORE`] from now.
fn serving_fits(ca: &CertificateDer<'static>, cert: &CertificateDer<'_>, ip: IpAddr) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    if roots.add(ca.clone()).is_err() {
        return false;
    }
    let Ok(verifier) =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build()
    else {
        return false;
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let name = ServerName::IpAddress(ip.into());
    [now, now + RENEW_BEFORE].into_iter().all(|at| {
        verifier
            .verify_server_cert(cert, &[], &name, &[], UnixTime::since_unix_epoch(at))
            .is_ok()
    })
}

/// Makes and writes a serving certificate for `ip` signed by the CA.
fn create_serving(
    dir: &Path,
    ca_key: &KeyPair,
    ip: IpAddr,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let key_pair = KeyPair::generate().map_err(|source| PkiError::Generate {
        what: "serving key",
        source,
    })?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "podvisor-apiserver");
    params.distinguished_name = name;
    params.subject_alt_names = subject_alt_names(ip);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let year = this_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 1 + SERVING_YEARS, 1, 1);
    let issuer = Issuer::new(ca_params(), ca_key);
    let cert = params
        .signed_by(&key_pair, &issuer)
        .map_err(|source| PkiError::Generate {
            what: "serving certificate",
            source,
        })?;
    write_file(
        &dir.join("apiserver.key"),
        key_pair.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(&dir.join("apiserver.crt"), cert.pem().as_bytes(), 0o644)?;
    let key_der = PrivateKeyDer::try_from(key_pair.serialize_der()).map_err(|_| PkiError::Invalid {
        path: dir.join("apiserver.key"),
        what: "PEM private key",
    })?;
    Ok((cert.der().clone(), key_der))
}

/// `ip` (unless it is the unspecified address), both loopback addresses, `localhost` and the
/// host name (when it is a valid DNS name).
fn subject_alt_names(ip: IpAddr) -> Vec<SanType> {
    let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
    if !ip.is_unspecified() && !ips.contains(&ip) {
        ips.insert(0, ip);
    }
    let mut sans: Vec<SanType> = ips.into_iter().map(SanType::IpAddress).collect();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_default();
    for name in ["localhost".to_owned(), host] {
        if name.is_empty()
            || sans
                .iter()
                .any(|s| matches!(s, SanType::DnsName(n) if n.as_str() == name))
        {
            continue;
        }
        if let Ok(dns) = name.try_into() {
            sans.push(SanType::DnsName(dns));
        }
    }
    sans
}

/// The token in `path`, or a new one written there.
fn load_or_create_token(path: &Path) -> Result<String> {
    if path.exists() {
        restrict(path)?;
        let token = read(path)?.trim().to_owned();
        if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(PkiError::Invalid {
                path: path.to_owned(),
                what: "token (32 or more printable characters)",
            });
        }
        return Ok(token);
    }
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(PkiError::Random)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_file(path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(token)
}

fn parse_cert(path: &Path, pem: &[u8]) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem).map_err(|_| PkiError::Invalid {
        path: path.to_owned(),
        what: "PEM certificate",
    })
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Puts a secret file back to mode 0600.
fn restrict(path: &Path) -> Result<()> {
    std::fs::set_permissions(path, Permissions::from_mode(0o600)).map_err(|source| PkiError::Write {
        path: path.to_owned(),
        source,
    })
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    write_file_with_mode(path, contents, mode).map_err(|source| PkiError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to `path` through a temporary file created with `mode` (so a secret is
/// never readable by others, not even briefly) and renamed into place.
pub fn write_file_with_mode(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(contents)?;
            f.sync_all()
        })?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secrets_are_private_and_reused_on_a_second_start() {
        let data = tempfile::tempdir().unwrap();
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let first = Pki::load_or_create(data.path(), ip).unwrap();
        let dir = data.path().join(PKI_DIR);
        assert_eq!(mode(&dir), 0o700);
        for secret in ["ca.key", "apiserver.key", "token"] {
            assert_eq!(mode(&dir.join(secret)), 0o600, "{secret}");
        }
        assert_eq!(first.token().len(), 64);
        assert!(first.server_config().is_ok() && first.client_config().is_ok());
        let files = |names: &[&str]| -> Vec<String> {
            names
                .iter()
                .map(|n| std::fs::read_to_string(dir.join(n)).unwrap())
                .collect()
        };
        let all = ["ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "token"];
        let before = files(&all);

        // A loosened mode is put back.
        std::fs::set_permissions(dir.join("token"), Permissions::from_mode(0o644)).unwrap();
        let second = Pki::load_or_create(data.path(), ip).unwrap();
        assert_eq!(files(&all), before, "a second start reuses everything");
        assert_eq!(second.token(), first.token());
        assert_eq!(mode(&dir.join("token")), 0o600);

        // Another address: the same CA and token, a new serving certificate for it.
        let other: IpAddr = "10.1.2.3".parse().unwrap();
        let third = Pki::load_or_create(data.path(), other).unwrap();
        assert_eq!(
            files(&["ca.crt", "ca.key", "token"]),
            before[..2]
                .iter()
                .chain(&before[4..])
                .cloned()
                .collect::<Vec<_>>()
        );
        assert_ne!(files(&["apiserver.crt"])[0], before[2]);
        assert!(serving_fits(&third.ca, &third.serving, other));
        assert!(serving_fits(
            &third.ca,
            &third.serving,
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        ));
        assert!(!serving_fits(&third.ca, &third.serving, ip));
        assert_eq!(third.ca_pem(), first.ca_pem());
    }

    #[test]
    fn a_corrupt_token_is_an_error_naming_the_file() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join(PKI_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "short").unwrap();
        let e = Pki::load_or_create(data.path(), IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap_err();
        assert!(e.to_string().contains("pki/token"), "{e}");
    }
}
