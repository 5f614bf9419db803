//! `[influx]` configuration: [`InfluxConfig`] with its defaults, the write API
//! ([`InfluxApi`]), secrets that `Debug` never prints ([`Secret`]), and pure validation whose
//! errors name the config key (`influx.url`, `influx.org`...).
//!
//! Depends on nothing else of the sink.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Which write endpoint to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InfluxApi {
    /// InfluxDB 2.x `/api/v2/write?org=&bucket=` with `Authorization: Token`.
    #[default]
    V2,
    /// InfluxDB 1.x (and 3.x compatibility) `/write?db=&rp=` with optional basic auth.
    V1,
}

/// A secret that `Debug` never prints.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// `[influx]` section of the collector configuration. The sink is off unless `url` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// Base URL of InfluxDB, e.g. `https://influx.rie.gouv.fr:8086`.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub api: InfluxApi,
    /// PEM file of the CA that signed InfluxDB's certificate (https). When set, it is the only
    /// trust anchor (the public web roots are not used): see docs/dependencies.md for why.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// v2: organisation and bucket.
    #[serde(default)]
    pub org: String,
    #[serde(default)]
    pub bucket: String,
    /// v2: API token (`Authorization: Token ...`).
    #[serde(default)]
    pub token: Secret,
    /// v1: database and optional retention policy.
    #[serde(default)]
    pub database: String,
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// v1: optional basic-auth credentials.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Secret,
    /// Value of the `instance` tag of the `collector` measurement (several collectors write
    /// to one InfluxDB).
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Most points per write request.
    #[serde(default = "default_batch_points")]
    pub batch_points: usize,
    /// A partial batch is sent after this long.
    #[serde(default = "default_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Time allowed for one write request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Lines kept in memory before overflowing to disk.
    #[serde(default = "default_memory_points")]
    pub memory_points: usize,
    /// Largest size of the disk backlog, MiB; past it the oldest points are dropped (loudly).
    #[serde(default = "default_disk_budget")]
    pub disk_budget_mb: u64,
    /// Retry delay after the first failure, doubled at each failure up to `retry_max`, with
    /// jitter (50-100 % of the delay) so that collectors do not retry in step.
    #[serde(default = "default_retry_min", with = "humantime_serde")]
    pub retry_min: Duration,
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// A minute's `site_traffic` point is written once the minute has ended and no batch has
    /// added to it for this long (one write per minute, not one per batch: servers that keep
    /// an arbitrary sample among equal timestamps, like VictoriaMetrics, then see one value).
    /// Probes deliver a minute within one batch interval after it ends: keep this above it.
    #[serde(default = "default_traffic_delay", with = "humantime_serde")]
    pub traffic_delay: Duration,
    /// Every site's state is written this often (and on every change).
    #[serde(default = "default_site_state_interval", with = "humantime_serde")]
    pub site_state_interval: Duration,
    /// Collector health point period; also how often state changes are looked for.
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub health_interval: Duration,
}

fn default_instance() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "collector".into())
}
fn default_batch_points() -> usize {
    5_000
}
fn default_flush() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_memory_points() -> usize {
    100_000
}
fn default_disk_budget() -> u64 {
    1_024
}
fn default_retry_min() -> Duration {
    Duration::from_millis(500)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(30)
}
fn default_traffic_delay() -> Duration {
    Duration::from_secs(20)
}
fn default_site_state_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_health_interval() -> Duration {
    Duration::from_secs(10)
}

impl Default for InfluxConfig {
    fn default() -> Self {
        Self {
            url: None,
            ca_cert: None,
            api: InfluxApi::default(),
            org: String::new(),
            bucket: String::new(),
            token: Secret::default(),
            database: String::new(),
            retention_policy: None,
            username: None,
            password: Secret::default(),
            instance: default_instance(),
            batch_points: default_batch_points(),
            flush_interval: default_flush(),
            timeout: default_timeout(),
            memory_points: default_memory_points(),
            disk_budget_mb: default_disk_budget(),
            retry_min: default_retry_min(),
            retry_max: default_retry_max(),
            traffic_delay: default_traffic_delay(),
            site_state_interval: default_site_state_interval(),
            health_interval: default_health_interval(),
        }
    }
}

impl InfluxConfig {
    /// Pure checks; the error is `(key, message with a right value)`.
    ///
    /// # Errors
    /// The first key at fault.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err((
                    "influx.url",
                    format!(
                        "{url:?} is not an http(s) URL; e.g. \"https://influx.rie.gouv.fr:8086\""
                    ),
                ))
            }
        }
        match self.api {
            InfluxApi::V2 if self.org.is_empty() => {
                return Err((
                    "influx.org",
                    "required with api = \"v2\"; e.g. \"rie\"".into(),
                ))
            }
            InfluxApi::V2 if self.bucket.is_empty() => {
                return Err((
                    "influx.bucket",
                    "required with api = \"v2\"; e.g. \"telemetry\"".into(),
                ))
            }
            InfluxApi::V1 if self.database.is_empty() => {
                return Err((
                    "influx.database",
                    "required with api = \"v1\"; e.g. \"rie\"".into(),
                ))
            }
            _ => {}
        }
        if self.instance.is_empty() {
            return Err((
                "influx.instance",
                "must not be empty; e.g. \"collector-1\"".into(),
            ));
        }
        if !(1..=100_000).contains(&self.batch_points) {
            return Err((
                "influx.batch_points",
                "must be between 1 and 100000; e.g. 5000".into(),
            ));
        }
        if self.memory_points < self.batch_points {
            return Err((
                "influx.memory_points",
                format!("must be at least batch_points ({})", self.batch_points),
            ));
        }
        if self.disk_budget_mb == 0 {
            return Err((
                "influx.disk_budget_mb",
                "must be at least 1; e.g. 1024".into(),
            ));
        }
        if self.retry_min.is_zero() || self.retry_max < self.retry_min {
            return Err((
                "influx.retry_max",
                "retry_min must be > 0 and retry_max >= retry_min; e.g. \"500ms\" and \"30s\""
                    .into(),
            ));
        }
        for (key, d) in [
            ("influx.flush_interval", self.flush_interval),
            ("influx.timeout", self.timeout),
        ] {
            if d < Duration::from_millis(10) {
                return Err((key, "must be at least 10ms; e.g. \"1s\"".into()));
            }
        }
        for (key, d) in [
            ("influx.site_state_interval", self.site_state_interval),
            ("influx.health_interval", self.health_interval),
        ] {
            if d < Duration::from_secs(1) {
                return Err((key, "must be at least 1s; e.g. \"10s\"".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_key() {
        let mut c = InfluxConfig {
            url: Some("ftp://x".into()),
            ..InfluxConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "influx.url");
        c.url = Some("http://127.0.0.1:8086".into());
        assert_eq!(c.validate().unwrap_err().0, "influx.org");
        c.api = InfluxApi::V1;
        assert_eq!(c.validate().unwrap_err().0, "influx.database");
        c.database = "rie".into();
        c.validate().unwrap();
        c.memory_points = 1;
        assert_eq!(c.validate().unwrap_err().0, "influx.memory_points");
        assert!(!format!("{:?}", Secret("hunter2".into())).contains("hunter2"));
    }
}
