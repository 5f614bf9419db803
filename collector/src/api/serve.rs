//! The API listener: plain HTTP on loopback, HTTPS (rustls) anywhere else, or plain HTTP
//! behind a TLS-terminating proxy that the operator names. Owns the `[api]` configuration,
//! the certificate reload (SIGHUP, or the files changing on disk: new handshakes use the new
//! certificate, open connections keep theirs), the security headers set on every answer, and
//! the proxy check.
//!
//! May import `pki` (certificate loading) and `metrics`; the routes come from the caller.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::pki::{self, PkiError};

/// How often the certificate files are checked for a change.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

/// How long open connections get to finish at shutdown.
const GRACE: Duration = Duration::from_secs(5);

/// Bytes of request headers accepted (names and values); more gets 431. A browser with a
/// session cookie sends about 1 kB.
pub const MAX_HEADERS: usize = 16 * 1024;

/// Bytes of request body accepted (the API is read-only: GETs carry none).
const MAX_BODY: usize = 64 * 1024;

/// `Strict-Transport-Security` under TLS: a year, subdomains included.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The status page loads its script, style and data from the collector itself, nothing inline,
/// nothing from elsewhere; no framing, no plugins, forms only to the collector.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

// --- configuration (`[api]` of the collector config file) ---

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    /// HTTPS certificate chain and key (PEM). Required to listen on anything but loopback,
    /// unless `behind_proxy`.
    #[serde(default)]
    pub tls: Option<ApiTls>,
    /// A TLS-terminating proxy is in front: plain HTTP is then accepted on any address, from
    /// the `trusted_proxies` only.
    #[serde(default)]
    pub behind_proxy: bool,
    /// Addresses of the proxies allowed to connect when `behind_proxy`.
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_api_listen(),
            tls: None,
            behind_proxy: false,
            trusted_proxies: Vec::new(),
        }
    }
}

fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8480))
}

impl ApiConfig {
    /// Checks the rules that keep the API from being served in clear over a network.
    ///
    /// # Errors
    /// The offending key and a message that says how to fix it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.behind_proxy && self.tls.is_some() {
            return Err((
                "api.behind_proxy",
                "is true while api.tls is set; choose one: TLS here (remove behind_proxy) or at the proxy (remove [api.tls])".into(),
            ));
        }
        if self.behind_proxy && self.trusted_proxies.is_empty() {
            return Err((
                "api.trusted_proxies",
                "is empty while api.behind_proxy = true; list the proxy's addresses, e.g. trusted_proxies = [\"10.0.0.5\"]".into(),
            ));
        }
        if self.tls.is_none() && !self.behind_proxy && !self.listen.ip().is_loopback() {
            return Err((
                "api.listen",
                format!(
                    "{} is not a loopback address and the API has no TLS; set [api.tls] cert and key (e.g. from `rie-collector pki init`), or api.behind_proxy = true with api.trusted_proxies when a TLS proxy is in front",
                    self.listen
                ),
            ));
        }
        Ok(())
    }
}

/// Loads the API's certificate; called at start-up so that a bad file stops the collector
/// with its name.
///
/// # Errors
/// [`PkiError`] naming the file.
pub fn load_tls(tls: &ApiTls) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    pki::server_config_from(&tls.cert, &tls.key, &[b"http/1.1"])
}

/// Serves `app` on `listener` until `shutdown`, with TLS when `tls` is given (its config
/// already loaded by [`load_tls`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    cfg: ApiConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) {
    let secure = tls.is_some();
    let proxies = Arc::new(cfg.behind_proxy.then_some(cfg.trusted_proxies.clone()));
    let app = app
        .layer(axum::middleware::from_fn(limit_headers))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(move |req, next| {
            security_headers(secure, req, next)
        }))
        .layer(axum::middleware::from_fn(move |req, next| {
            only_from_proxies(proxies.clone(), req, next)
        }))
        .into_make_service_with_connect_info::<SocketAddr>();
    let (Some(server_config), Some(files)) = (tls, cfg.tls) else {
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = serve.await {
            error!(error = %e, "API server failed");
        }
        return;
    };
    let rustls = RustlsConfig::from_config(server_config);
    tokio::spawn(reload(rustls.clone(), files, shutdown.clone()));
    let handle = axum_server::Handle::new();
    let stop = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stop.graceful_shutdown(Some(GRACE));
    });
    let server = match listener
        .into_std()
        .and_then(|l| axum_server::from_tcp_rustls(l, rustls))
    {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "API server failed");
            return;
        }
    };
    if let Err(e) = server.handle(handle).serve(app).await {
        error!(error = %e, "API server failed");
    }
}

/// Reloads the certificate on SIGHUP and when either file's modification time changes. A
/// file that does not load (half-written, wrong key) is logged and the current certificate
/// stays; the next change or SIGHUP tries again.
async fn reload(rustls: RustlsConfig, files: ApiTls, shutdown: CancellationToken) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "no SIGHUP handler; the API certificate reloads on file change only");
            None
        }
    };
    let stamp = |f: &ApiTls| (mtime(&f.cert), mtime(&f.key));
    let mut seen = stamp(&files);
    let mut poll = tokio::time::interval(RELOAD_POLL);
    loop {
        let why = tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => "SIGHUP",
            _ = poll.tick() => {
                let now = stamp(&files);
                if now == seen {
                    continue;
                }
                seen = now;
                "file change"
            }
        };
        match load_tls(&files) {
            Ok(cfg) => {
                rustls.reload_from_config(cfg);
                info!(cert = %files.cert.display(), why, "API certificate reloaded");
            }
            Err(e) => warn!(error = %e, why, "API certificate not reloaded; the current one stays"),
        }
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Security headers on every answer: content type sniffing off, no referrer, no framing, the
/// status page's content policy, and HSTS under TLS.
async fn security_headers(secure: bool, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    if secure {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    res
}

/// Refuses requests whose headers exceed [`MAX_HEADERS`] before any route sees them.
async fn limit_headers(req: Request, next: Next) -> Response {
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if size > MAX_HEADERS {
        return (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request headers too large\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// Behind a proxy, only the proxies may connect: anyone else would bypass its TLS.
async fn only_from_proxies(
    proxies: Arc<Option<Vec<IpAddr>>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(allowed) = proxies.as_ref() {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if !peer.is_some_and(|p| allowed.contains(&p)) {
            return (
                StatusCode::FORBIDDEN,
                "connect through the TLS proxy (api.trusted_proxies)\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(listen: &str) -> ApiConfig {
        ApiConfig {
            listen: listen.parse().unwrap(),
            ..ApiConfig::default()
        }
    }

    #[test]
    fn clear_text_only_on_loopback_or_behind_a_named_proxy() {
        assert!(cfg("127.0.0.1:8480").validate().is_ok());
        assert!(cfg("[::1]:8480").validate().is_ok());
        let (key, msg) = cfg("0.0.0.0:8480").validate().unwrap_err();
        assert_eq!(key, "api.listen");
        assert!(
            msg.contains("[api.tls]") && msg.contains("behind_proxy"),
            "{msg}"
        );
        let mut c = cfg("10.1.2.3:8480");
        c.tls = Some(ApiTls {
            cert: "c.pem".into(),
            key: "k.pem".into(),
        });
        assert!(c.validate().is_ok());
        let mut p = cfg("0.0.0.0:8480");
        p.behind_proxy = true;
        assert_eq!(p.validate().unwrap_err().0, "api.trusted_proxies");
        p.trusted_proxies = vec!["10.0.0.5".parse().unwrap()];
        assert!(p.validate().is_ok());
        c.behind_proxy = true;
        c.trusted_proxies = p.trusted_proxies.clone();
        assert_eq!(c.validate().unwrap_err().0, "api.behind_proxy");
    }
}
