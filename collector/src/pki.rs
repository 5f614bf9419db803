//! Certificates for the probe channel: `pki init` makes a private CA and the collector's server
//! certificate; the collector serves with them and probes verify the server against the CA.
//! Probes authenticate with per-site tokens (see `credentials`), not client certificates, so a
//! site can be re-enrolled by handing out one file.
//!
//! Owns the private CA, the server certificate and `TlsConfig` (`[tls]`). Imports no other
//! module of the crate.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0}: already exists; pass --force to replace the CA (every probe config must then be re-issued)")]
    Exists(PathBuf),
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error(
        "{file}: not a usable PEM {what}; run `rie-collector pki init --dir DIR` to create it"
    )]
    Pem { file: PathBuf, what: &'static str },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// Writes `data` to `path` with permission bits `mode`, fsynced. The bits are set even when
/// the file already exists (`OpenOptions::mode` alone applies to new files only), so that
/// re-issuing a secret never leaves it as readable as the file it replaced.
///
/// # Errors
/// I/O errors.
pub fn write_with_mode(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(data)?;
    f.sync_all()
}

fn write_file(path: &Path, data: &str, secret: bool) -> Result<(), PkiError> {
    write_with_mode(path, data.as_bytes(), if secret { 0o600 } else { 0o644 }).map_err(|source| {
        PkiError::Io {
            file: path.to_path_buf(),
            source,
        }
    })
}

/// Creates `ca.pem`, `ca.key`, `server.pem`, `server.key` in `dir`. `names` are the DNS names
/// and IP addresses probes use to reach the collector (loopback is always included).
///
/// # Errors
/// [`PkiError::Exists`] if a CA is there and `force` is false; I/O and generation errors.
pub fn init(dir: &Path, names: &[String], force: bool) -> Result<(), PkiError> {
    let ca_path = dir.join(CA_CERT);
    if ca_path.exists() && !force {
        return Err(PkiError::Exists(ca_path));
    }
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        file: dir.to_path_buf(),
        source,
    })?;
    let now = time::OffsetDateTime::now_utc();

    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "rie-telemetry probe CA");
    ca.distinguished_name
        .push(DnType::OrganizationName, "RIE telemetry");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(3650);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for n in names {
        if !sans.contains(n) {
            sans.push(n.clone());
        }
    }
    let mut server = CertificateParams::new(sans)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "rie-collector");
    server.not_before = now - time::Duration::days(1);
    server.not_after = now + time::Duration::days(825);
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;

    write_file(&dir.join(CA_KEY), &ca_key.serialize_pem(), true)?;
    write_file(&ca_path, &ca_cert.pem(), false)?;
    write_file(&dir.join(SERVER_KEY), &server_key.serialize_pem(), true)?;
    write_file(&dir.join(SERVER_CERT), &server_cert.pem(), false)
}

/// Reads the CA certificate as PEM text (it goes into probe configs).
///
/// # Errors
/// [`PkiError::Io`] when the file cannot be read.
pub fn ca_pem(dir: &Path) -> Result<String, PkiError> {
    let file = dir.join(CA_CERT);
    std::fs::read_to_string(&file).map_err(|source| PkiError::Io { file, source })
}

/// rustls server configuration from `server.pem` / `server.key`.
///
/// # Errors
/// [`PkiError::Pem`] when the files are missing or not PEM; [`PkiError::Tls`] when the key does
/// not match.
pub fn server_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    server_config_from(&dir.join(SERVER_CERT), &dir.join(SERVER_KEY), &[])
}

/// A TLS server configuration from a PEM certificate chain and its private key, offering
/// `alpn` (e.g. `http/1.1`; empty: no ALPN).
///
/// # Errors
/// [`PkiError`] naming the file that cannot be read or parsed.
pub fn server_config_from(
    cert_file: &Path,
    key_file: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let (cert_file, key_file) = (cert_file.to_path_buf(), key_file.to_path_buf());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_file)
        .and_then(Iterator::collect)
        .map_err(|_| PkiError::Pem {
            file: cert_file.clone(),
            what: "certificate",
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            file: cert_file,
            what: "certificate",
        });
    }
    let key = PrivateKeyDer::from_pem_file(&key_file).map_err(|_| PkiError::Pem {
        file: key_file,
        what: "private key",
    })?;
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    let mut cfg = cfg;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

// --- configuration (`[tls]` of the collector config file) ---

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Directory written by `rie-collector pki init` (ca.pem, server.pem, server.key).
    #[serde(default = "default_pki_dir")]
    pub pki_dir: PathBuf,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            pki_dir: default_pki_dir(),
        }
    }
}

fn default_pki_dir() -> PathBuf {
    PathBuf::from("/etc/rie-collector/pki")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_usable_files_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &["collector.rie.test".into()], false).unwrap();
        server_config(dir.path()).unwrap();
        assert!(ca_pem(dir.path())
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SERVER_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            init(dir.path(), &[], false),
            Err(PkiError::Exists(_))
        ));
    }
}
