//! `[store]` of the collector config file: the backend (`sqlite`, the default, or `postgres`
//! with `[store.postgres]`), the commit stage's queue and group size, and `[store.retention]`
//! (the tiers `retention` compacts). Validated here; `crate::config` only assembles.
//!
//! A PostgreSQL password never reaches a log or an error: every message names the server by
//! [`PostgresConfig::masked_url`].

use std::path::PathBuf;
use std::time::Duration;

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
    pub retention: RetentionConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            postgres: None,
            queue: default_queue(),
            commit_max_batches: default_commit_max(),
            retention: RetentionConfig::default(),
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

/// `[store.retention]`: how long each tier is kept and how the compaction job paces itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days of per-minute rows (the live window); older minutes are rolled into five-minute
    /// buckets. Before the five-minute tier existed this key was the whole fine tier (35).
    #[serde(default = "default_minute_days")]
    pub minute_days: u32,
    /// Days of fine rollups (minutes, then five-minute buckets); older ones become hours.
    #[serde(default = "default_fine_days")]
    pub fine_days: u32,
    /// Days of hourly rows; older hours are rolled into days.
    #[serde(default = "default_hour_days")]
    pub hour_days: u32,
    /// Years of daily rows; older days are deleted.
    #[serde(default = "default_day_years")]
    pub day_years: u32,
    /// Top talkers kept per site and bucket in the five-minute, hourly and daily tiers.
    #[serde(default = "default_top_talkers")]
    pub top_talkers: u32,
    /// How often the compaction job runs.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Source rows per compaction transaction (bounds how long the writer may wait).
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u32,
}

fn default_minute_days() -> u32 {
    2
}
fn default_fine_days() -> u32 {
    35
}
fn default_hour_days() -> u32 {
    400
}
fn default_day_years() -> u32 {
    5
}
fn default_top_talkers() -> u32 {
    10
}
fn default_interval() -> Duration {
    Duration::from_secs(600)
}
fn default_chunk_rows() -> u32 {
    // Measured: 1,000 keeps the writer's p99 commit near its baseline (docs/performance.md).
    1000
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            minute_days: default_minute_days(),
            fine_days: default_fine_days(),
            hour_days: default_hour_days(),
            day_years: default_day_years(),
            top_talkers: default_top_talkers(),
            interval: default_interval(),
            chunk_rows: default_chunk_rows(),
        }
    }
}

impl RetentionConfig {
    /// Checks the horizons are ordered; returns the offending key and the fix.
    ///
    /// # Errors
    /// `(key, message)` of the first invalid setting.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.minute_days < 1 {
            return Err((
                "store.retention.minute_days",
                "must be at least 1 (the commit stage and the InfluxDB sink \
                 still update the recent minutes); e.g. 2"
                    .into(),
            ));
        }
        if self.fine_days < self.minute_days {
            return Err((
                "store.retention.fine_days",
                format!(
                    "must be >= store.retention.minute_days ({m}). minute_days is now the \
                     per-minute live window (default 2) and fine_days the days of fine rollups \
                     (default 35, five-minute buckets after minute_days); a config written for \
                     {m} days of per-minute rows should say fine_days = {m} (and minute_days = 2)",
                    m = self.minute_days
                ),
            ));
        }
        if self.hour_days <= self.fine_days {
            return Err((
                "store.retention.hour_days",
                format!(
                    "must be more than store.retention.fine_days ({}); e.g. 400",
                    self.fine_days
                ),
            ));
        }
        if u64::from(self.day_years) * 365 <= u64::from(self.hour_days) {
            return Err((
                "store.retention.day_years",
                format!(
                    "must cover more than store.retention.hour_days ({} days); e.g. 5",
                    self.hour_days
                ),
            ));
        }
        if self.top_talkers == 0 || self.top_talkers > 1000 {
            return Err((
                "store.retention.top_talkers",
                "must be between 1 and 1000; e.g. 10".into(),
            ));
        }
        if self.chunk_rows == 0 || self.chunk_rows > 100_000 {
            return Err((
                "store.retention.chunk_rows",
                "must be between 1 and 100000; e.g. 1000".into(),
            ));
        }
        if self.interval < Duration::from_secs(1) {
            return Err((
                "store.retention.interval",
                "must be at least 1s; e.g. \"10m\"".into(),
            ));
        }
        Ok(())
    }

    /// Bucket starts (Unix seconds) below which minute rows become five-minute rows, those
    /// become hours, hours become days, and days are deleted, at `now` (Unix seconds). Each
    /// horizon is aligned to the bucket of the tier it fills, so a bucket is rolled whole.
    #[must_use]
    pub fn horizons(&self, now: i64) -> Horizons {
        let floor = |t: i64, b: i64| t.div_euclid(b) * b;
        Horizons {
            minute: floor(now - i64::from(self.minute_days) * 86_400, 300),
            fine: floor(now - i64::from(self.fine_days) * 86_400, 3600),
            hour: floor(now - i64::from(self.hour_days) * 86_400, 86_400),
            // Years of 365.25 days, at a day boundary.
            day: floor(now - i64::from(self.day_years) * 31_557_600, 86_400),
        }
    }
}

/// See [`RetentionConfig::horizons`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizons {
    pub minute: i64,
    pub fine: i64,
    pub hour: i64,
    pub day: i64,
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
