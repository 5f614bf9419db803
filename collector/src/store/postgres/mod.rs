//! The PostgreSQL backend: connection set-up (URL, password source, TLS through rustls), the
//! schema (`schema`, the same numbered migrations as SQLite's), the write side ([`PgStore`],
//! `write`) and the read queries (`read`, behind `store::Reader`).
//!
//! Owns: turning `[store.postgres]` into a `tokio_postgres::Config` and a TLS connector, the
//! writer's dedicated session, the readers' pool. May import `super` (the store contract and
//! config), `crate::metrics`, `rie-proto`; nothing above the store.
//!
//! The URL may carry a password: every error and log names the server by its masked URL
//! ([`PostgresConfig::masked_url`]), never by the URL itself, and `tokio_postgres::Error`
//! does not print connection parameters.
//!
//! TLS: `sslmode=verify-full` and `verify-ca` (which tokio-postgres does not parse) are taken
//! out of the URL and become `require` with a rustls connector that checks the chain against
//! `root_cert` (or the web PKI roots) and the host name. rustls always checks both, so
//! `verify-ca`, `require` and `prefer` are as strict as `verify-full` when TLS is used;
//! `disable` uses no TLS.

pub mod leader;
pub mod listen;
pub mod read;
pub mod schema;
pub mod write;

use std::sync::Arc;

pub use write::PgStore;

use super::config::PostgresConfig;
use super::StoreError;

pub use super::config::{parse_url, ParsedUrl};

/// The driver config with the password read from its source, and the TLS connector.
///
/// # Errors
/// [`StoreError::PgSetup`] naming the key (unreadable password file, unset variable, bad CA
/// bundle).
pub fn prepare(
    cfg: &PostgresConfig,
) -> Result<
    (
        tokio_postgres::Config,
        tokio_postgres_rustls::MakeRustlsConnect,
    ),
    StoreError,
> {
    let ParsedUrl { mut config, .. } = parse_url(&cfg.url).map_err(|e| StoreError::PgSetup {
        key: "store.postgres.url",
        message: format!("{}: {e}", cfg.masked_url()),
    })?;
    if let Some(path) = &cfg.password_file {
        let text = std::fs::read_to_string(path).map_err(|e| StoreError::PgSetup {
            key: "store.postgres.password_file",
            message: format!(
                "cannot read {}: {e}; create it (mode 0600) with the password of the database user",
                path.display()
            ),
        })?;
        config.password(text.trim_end_matches(['\n', '\r']));
    }
    if let Some(var) = &cfg.password_env {
        let value = std::env::var(var).map_err(|_| StoreError::PgSetup {
            key: "store.postgres.password_env",
            message: format!(
                "the environment variable {var} is not set; set it to the password of the database user"
            ),
        })?;
        config.password(value);
    }
    fail_fast(&mut config);
    Ok((config, tls(cfg)?))
}

/// Connect timeout per host when the URL sets none (`connect_timeout`): a host that swallows
/// SYNs (machine gone) must not stall the writer forever before the next host is tried.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// TCP keepalive idle time, interval and probes when the URL keeps the driver's defaults
/// (2 h idle): a session to a server that vanished without a reset (host down, partition)
/// is found dead in about 30 + 3 × 5 s and reopened, instead of hanging for hours.
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;
/// TCP_USER_TIMEOUT when the URL sets none: sent data unacknowledged by the peer's kernel for
/// this long ends the session. A COMMIT waiting for a synchronous standby is not affected
/// (its bytes were acknowledged): the wait is never cut short by the client, whose outcome
/// would otherwise be a commit reported done on the primary alone.
const TCP_USER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Timeouts that turn a dead server into an error within seconds, each only where the URL
/// left the driver's default.
fn fail_fast(config: &mut tokio_postgres::Config) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_keepalives()
        && config.get_keepalives_idle() == std::time::Duration::from_secs(7200)
    {
        config.keepalives_idle(KEEPALIVE_IDLE);
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVE_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVE_RETRIES);
        }
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
}

/// A rustls connector (ring provider, the workspace's one rustls) trusting `root_cert` or,
/// without it, the web PKI roots.
fn tls(cfg: &PostgresConfig) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls_pki_types::pem::PemObject;
    let bad = |message: String| StoreError::PgSetup {
        key: "store.postgres.root_cert",
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.root_cert {
        Some(path) => {
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| bad(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("{}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(bad(format!(
                    "{}: no PEM certificate found; give the CA bundle of the database servers",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// What to check when the server cannot be reached or refuses the login.
fn fix_hint(cfg: &PostgresConfig) -> String {
    let password = match (&cfg.password_file, &cfg.password_env) {
        (Some(_), _) => "the password in store.postgres.password_file",
        (_, Some(_)) => "the password in the variable named by store.postgres.password_env",
        _ => "store.postgres.password_file or password_env",
    };
    format!("check store.postgres.url (hosts, port, user, database) and {password}")
}

/// A connection error, naming the masked URL and the fix.
pub fn connect_error(cfg: &PostgresConfig, source: tokio_postgres::Error) -> StoreError {
    StoreError::PgConnect {
        url: cfg.masked_url(),
        fix: fix_hint(cfg),
        source,
    }
}

/// TCP keepalives on the client socket of a long-lived session (LISTEN, the leader lock): a
/// server that died without closing the socket is noticed in about 11 s (5 s idle, then 3
/// probes 2 s apart), not after the kernel's default two hours.
pub fn keepalives(config: &mut tokio_postgres::Config) {
    config
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(5))
        .keepalives_interval(std::time::Duration::from_secs(2))
        .keepalives_retries(3);
}

/// Opens one dedicated session (its connection task spawned on the current runtime): the
/// writer's, and for advisory locks or LISTEN.
///
/// # Errors
/// [`StoreError::PgSetup`], [`StoreError::PgConnect`] with the masked URL and the fix.
pub async fn connect(cfg: &PostgresConfig) -> Result<tokio_postgres::Client, StoreError> {
    let (config, tls) = prepare(cfg)?;
    let (client, connection) = config
        .connect(tls)
        .await
        .map_err(|e| connect_error(cfg, e))?;
    let url = cfg.masked_url();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(db = %url, error = %e, "PostgreSQL session ended");
        }
    });
    Ok(client)
}

/// The readers' pool (`pool_size` sessions, opened on demand, checked on reuse: a session
/// broken by a server restart or a failover is dropped, and its replacement connects through
/// the URL's hosts again, so it finds the new primary).
///
/// # Errors
/// [`StoreError::PgSetup`].
pub fn pool(cfg: &PostgresConfig) -> Result<deadpool_postgres::Pool, StoreError> {
    let (config, tls) = prepare(cfg)?;
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tls,
        deadpool_postgres::ManagerConfig {
            // `Verified` (an empty query on reuse) rather than `Fast` (only "was the session
            // seen closed?"): a session whose server vanished without a reset is caught before
            // a reader gets it.
            recycling_method: deadpool_postgres::RecyclingMethod::Verified,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(cfg.pool_size)
        .build()
        .map_err(|e| StoreError::PgSetup {
            key: "store.postgres.pool_size",
            message: e.to_string(),
        })
}

/// A pool error as a store error (a connection failure keeps the masked URL and the fix).
pub fn pool_error(cfg: &PostgresConfig, e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(source) => connect_error(cfg, source),
        other => StoreError::Pool(other.to_string()),
    }
}

/// What the store's tests on PostgreSQL share: a runtime for `Handle::block_on` and the config
/// of a `rie-testpg` server.
#[cfg(test)]
pub(crate) mod test_support {
    use super::PostgresConfig;

    pub(crate) fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
    }

    pub(crate) fn config(url: String) -> PostgresConfig {
        PostgresConfig {
            url,
            password_file: None,
            password_env: None,
            root_cert: None,
            pool_size: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_become_require_and_others_pass_through() {
        let p = parse_url(
            "postgresql://rie@db1:5432,db2:5433/rie?target_session_attrs=read-write&sslmode=verify-full",
        )
        .unwrap();
        assert!(p.verify);
        assert_eq!(
            p.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(p.config.get_ports(), &[5432, 5433]);
        assert_eq!(p.config.get_hosts().len(), 2);
        assert_eq!(
            p.config.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        let p = parse_url("host=db1 sslmode=verify-ca dbname=rie").unwrap();
        assert!(p.verify);
        assert_eq!(p.config.get_dbname(), Some("rie"));
        let p = parse_url("postgresql://rie@db1/rie?sslmode=disable").unwrap();
        assert!(!p.verify);
        assert_eq!(
            p.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        assert!(parse_url("postgresql://rie@db1/rie?sslmode=sometimes").is_err());
    }

    #[test]
    fn dead_servers_fail_fast_unless_the_url_says_otherwise() {
        let mut c = parse_url("postgresql://rie@db1,db2/rie").unwrap().config;
        fail_fast(&mut c);
        assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(c.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(c.get_keepalives_interval(), Some(KEEPALIVE_INTERVAL));
        assert_eq!(c.get_keepalives_retries(), Some(KEEPALIVE_RETRIES));
        assert_eq!(c.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        let mut c = parse_url(
            "postgresql://rie@db1/rie?connect_timeout=2&keepalives_idle=60&tcp_user_timeout=9",
        )
        .unwrap()
        .config;
        fail_fast(&mut c);
        assert_eq!(
            c.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(2))
        );
        assert_eq!(c.get_keepalives_idle(), std::time::Duration::from_secs(60));
        assert_eq!(c.get_keepalives_interval(), None);
        assert_eq!(
            c.get_tcp_user_timeout(),
            Some(&std::time::Duration::from_secs(9))
        );
    }
}
