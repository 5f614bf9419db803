//! `[store]` of the collector config file: the backend (`sqlite`, the default, or `postgres`
//! with `[store.postgres]`), the commit stage's queue and group size, and `[store.retention]`
//! (`retention`). Validated here; `crate::config` only assembles.
//!
//! A PostgreSQL password never reaches a log or an error: every message names the server by
//! [`PostgresConfig::masked_url`].

use std::path::PathBuf;

use serde::Deserialize;

/// Which database holds the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One file, `rie.db` in `data_dir` (one collector).
    #[default]
    Sqlite,
    /// A PostgreSQL server (or a replicated cluster), shared by several collectors.
    Postgres,
}

/// `[store.postgres]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// libpq URL or key=value string; several hosts with `target_session_attrs=read-write`
    /// reach whichever is the primary. `sslmode` may be `disable`, `prefer`, `require`,
    /// `verify-ca` or `verify-full` (the last two: TLS checked against `root_cert`).
    pub url: String,
    /// File holding the password (first line; trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// PEM bundle of the CAs the server certificate must chain to (default: the web PKI roots).
    #[serde(default)]
    pub root_cert: Option<PathBuf>,
    /// Connections of the read pool (the writer has its own session).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_pool_size() -> usize {
    16
}

// The URL may carry a password: Debug prints the masked one.
impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.masked_url())
            .field("password_file", &self.password_file)
            .field("password_env", &self.password_env)
            .field("root_cert", &self.root_cert)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl PostgresConfig {
    /// The URL with any password (`user:PASSWORD@` or `password=PASSWORD`) replaced by `***`:
    /// the only form of it that may be printed.
    pub fn masked_url(&self) -> String {
        mask_url(&self.url)
    }
}

/// See [`PostgresConfig::masked_url`].
pub fn mask_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let auth_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..auth_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    // `password=...` in a URL query or a key=value string.
    let mut masked = String::with_capacity(out.len());
    let mut s = out.as_str();
    while let Some(i) = s.find("password=") {
        let before_ok = i == 0 || matches!(s.as_bytes()[i - 1], b'?' | b'&' | b' ');
        let value_start = i + "password=".len();
        masked.push_str(&s[..value_start]);
        if !before_ok {
            s = &s[value_start..];
            continue;
        }
        let tail = &s[value_start..];
        let end = tail.find(['&', ' ']).unwrap_or(tail.len());
        masked.push_str("***");
        s = &tail[end..];
    }
    masked.push_str(s);
    masked
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite` (default) or `postgres` (then `[store.postgres]` is required).
    #[serde(default)]
    pub backend: Backend,
    /// `[store.postgres]`.
    #[serde(default)]
    pub postgres: Option<PostgresConfig>,
    /// Capacity of the channel from the inputs to the commit stage; when full, connections
    /// stop reading (backpressure reaches the probes through TCP).
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Most batches committed in one transaction (one fsync).
    #[serde(default = "default_commit_max")]
    pub commit_max_batches: usize,
    /// `[store.retention]`: how long minute, five-minute, hour and day rollups are kept.
    #[serde(default)]
    pub retention: crate::store::retention::RetentionConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            postgres: None,
            queue: default_queue(),
            commit_max_batches: default_commit_max(),
            retention: crate::store::retention::RetentionConfig::default(),
        }
    }
}

fn default_queue() -> usize {
    4096
}

fn default_commit_max() -> usize {
    2048
}

impl StoreConfig {
    /// Checks values that parse but cannot work; `Err((key, message))` names the key in the
    /// collector's config file and a right value.
    ///
    /// # Errors
    /// The first key at fault.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.queue == 0 || self.commit_max_batches == 0 {
            return Err((
                "store.queue",
                "store.queue and store.commit_max_batches must be at least 1; e.g. 4096 and 2048"
                    .into(),
            ));
        }
        self.retention.validate()?;
        if self.backend == Backend::Postgres {
            let Some(pg) = &self.postgres else {
                return Err((
                    "store.postgres.url",
                    "store.backend = \"postgres\" needs [store.postgres] with a url, e.g. \
                     url = \"postgresql://rie@db1:5432,db2:5432/rie?target_session_attrs=read-write&sslmode=verify-full\""
                        .into(),
                ));
            };
            pg.validate()?;
        }
        Ok(())
    }
}

impl PostgresConfig {
    /// # Errors
    /// The key at fault and a fix.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.url.trim().is_empty() {
            return Err((
                "store.postgres.url",
                "store.postgres.url is empty; e.g. \"postgresql://rie@db1:5432/rie?sslmode=verify-full\""
                    .into(),
            ));
        }
        if let Err(e) = parse_url(&self.url) {
            return Err((
                "store.postgres.url",
                format!(
                    "store.postgres.url {}: {e}; e.g. \"postgresql://rie@db1:5432,db2:5432/rie?target_session_attrs=read-write&sslmode=verify-full\"",
                    self.masked_url()
                ),
            ));
        }
        if self.password_file.is_some() && self.password_env.is_some() {
            return Err((
                "store.postgres.password_file",
                "store.postgres.password_file and store.postgres.password_env are both set; keep one".into(),
            ));
        }
        if self.pool_size == 0 {
            return Err((
                "store.postgres.pool_size",
                "store.postgres.pool_size must be at least 1; e.g. 16".into(),
            ));
        }
        Ok(())
    }
}

/// What [`parse_url`] found: the driver's config and whether the URL asked for certificate
/// verification (`verify-ca`, `verify-full`).
pub struct ParsedUrl {
    pub config: tokio_postgres::Config,
    pub verify: bool,
}

/// Parses a libpq URL or key=value string, taking `sslmode=verify-ca|verify-full` out first.
///
/// # Errors
/// The driver's parse error (it never contains the password).
pub fn parse_url(url: &str) -> Result<ParsedUrl, tokio_postgres::Error> {
    let mut verify = false;
    let mut take = |kv: &str| -> bool {
        match kv {
            "sslmode=verify-full" | "sslmode=verify-ca" => {
                verify = true;
                false
            }
            _ => true,
        }
    };
    let cleaned = if url.contains("://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query.split('&').filter(|kv| take(kv)).collect();
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_string(),
        }
    } else {
        url.split_whitespace()
            .filter(|kv| take(kv))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut config: tokio_postgres::Config = cleaned.parse()?;
    if verify {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    Ok(ParsedUrl { config, verify })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(url: &str) -> PostgresConfig {
        PostgresConfig {
            url: url.into(),
            password_file: None,
            password_env: None,
            root_cert: None,
            pool_size: 16,
        }
    }

    #[test]
    fn passwords_are_masked_in_urls_and_key_value_strings() {
        assert_eq!(
            mask_url("postgresql://rie:s3cr%40t@db1:5432,db2:5432/rie?sslmode=verify-full"),
            "postgresql://rie:***@db1:5432,db2:5432/rie?sslmode=verify-full"
        );
        assert_eq!(
            mask_url("postgresql://rie@db1/rie?password=hunter2&sslmode=require"),
            "postgresql://rie@db1/rie?password=***&sslmode=require"
        );
        assert_eq!(
            mask_url("host=db1 user=rie password=hunter2 dbname=rie"),
            "host=db1 user=rie password=*** dbname=rie"
        );
        assert_eq!(
            mask_url("postgresql://rie@db1/rie"),
            "postgresql://rie@db1/rie"
        );
    }

    #[test]
    fn postgres_settings_are_checked_with_the_key_at_fault() {
        let toml_text = "backend = \"postgres\"";
        let cfg: StoreConfig = toml::from_str(toml_text).unwrap();
        assert_eq!(cfg.validate().unwrap_err().0, "store.postgres.url");
        let mut cfg = StoreConfig {
            backend: Backend::Postgres,
            postgres: Some(pg("postgresql://rie:pw@db1:5432,db2:5432/rie?target_session_attrs=read-write&sslmode=verify-full")),
            ..StoreConfig::default()
        };
        assert_eq!(cfg.validate(), Ok(()));
        if let Some(p) = cfg.postgres.as_mut() {
            p.password_file = Some("/etc/rie/pg-password".into());
            p.password_env = Some("RIE_PG_PASSWORD".into());
        }
        assert_eq!(
            cfg.validate().unwrap_err().0,
            "store.postgres.password_file"
        );
        cfg.postgres = Some(pg("postgresql://rie:pw@db1/rie?sslmode=sometimes"));
        let (key, msg) = cfg.validate().unwrap_err();
        assert_eq!(key, "store.postgres.url");
        assert!(!msg.contains("pw@"), "{msg}");
        assert!(msg.contains("rie:***@db1"), "{msg}");
        let parsed: StoreConfig = toml::from_str(
            "backend = \"postgres\"\n[postgres]\nurl = \"postgresql://rie@db1/rie\"\npassword_env = \"RIE_PG_PASSWORD\"\n",
        )
        .unwrap();
        assert_eq!(parsed.validate(), Ok(()));
        assert_eq!(parsed.postgres.map(|p| p.pool_size), Some(16));
    }
}
