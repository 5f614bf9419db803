//! HTTP(S) GET check: the time to a complete response status line, which must be 2xx or 3xx.
//! HTTPS is verified against the system's trust store. One request, no keep-alive: the check
//! measures what a user's first request costs.

use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{AttemptError, Binding};

pub use rie_plan::Url;

async fn resolve(url: &Url) -> Result<std::net::SocketAddr, AttemptError> {
    tokio::net::lookup_host((url.host.as_str(), url.port))
        .await?
        .next()
        .ok_or_else(|| AttemptError::Protocol(format!("{} does not resolve", url.host)))
}

pub async fn get(url: &Url, bind: &Binding) -> Result<(), AttemptError> {
    let addr = resolve(url).await?;
    let tcp = super::tcp::connect(addr, bind).await?;
    if url.tls {
        let name = ServerName::try_from(url.host.clone())
            .map_err(|e| AttemptError::Protocol(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await?;
        request(tls, url).await
    } else {
        request(tcp, url).await
    }
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, AttemptError> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // A certificate the store cannot parse is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(AttemptError::Protocol(
            "no trusted certificate authority in the system store (install ca-certificates)".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AttemptError::Protocol(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| Arc::new(cfg)).clone())
}

async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    url: &Url,
) -> Result<(), AttemptError> {
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rie-probe/{}\r\nConnection: close\r\n\r\n",
        url.path,
        url.host,
        env!("CARGO_PKG_VERSION")
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    status_ok(&buf)
}

/// Accepts a `HTTP/1.x 2xx` or `3xx` status line.
pub fn status_ok(head: &[u8]) -> Result<(), AttemptError> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (Some(v), Some(code)) = (parts.next(), parts.next()) else {
        return Err(AttemptError::Protocol("no HTTP status line".into()));
    };
    match code.parse::<u16>() {
        Ok(c) if v.starts_with("HTTP/1.") && (200..400).contains(&c) => Ok(()),
        Ok(c) if v.starts_with("HTTP/1.") => {
            Err(AttemptError::Protocol(format!("HTTP status {c}")))
        }
        _ => Err(AttemptError::Protocol(format!(
            "not an HTTP answer: {line:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_status_lines() {
        let u = Url::parse("https://portail.rie.gouv.fr/sante").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "portail.rie.gouv.fr", 443, "/sante")
        );
        let u = Url::parse("http://10.0.0.1:8080").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 8080, "/"));
        let u = Url::parse("http://[fd00::1]:81/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("fd00::1", 81));
        assert!(Url::parse("http://:80/").is_err());
        assert!(status_ok(b"HTTP/1.1 200 OK\r\n").is_ok());
        assert!(status_ok(b"HTTP/1.0 302 Found\r\n").is_ok());
        assert!(status_ok(b"HTTP/1.1 503 Busy\r\n")
            .unwrap_err()
            .to_string()
            .contains("503"));
        assert!(status_ok(b"SSH-2.0-OpenSSH\r\n").is_err());
    }
}
