//! The probe's configuration file (see `configs/probe.example.toml`), written for a site by
//! `rie-collector probe-config`. Parsing, then [`ProbeConfig::validate`], which resolves files
//! and returns everything the uplink needs; every error names the file and key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rie_proto::SiteId;
use rustls_pki_types::ServerName;
use serde::Deserialize;

use crate::session::Target;
use crate::sources::simulate::SimulateConfig;

#[derive(Debug, thiserror::Error)]
pub enum ProbeConfigError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        key: &'static str,
        message: String,
    },
}

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"********\"")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// This site's id in the national inventory, e.g. "S00042".
    pub site_id: SiteId,
    /// Where the probe keeps its sequence state (and, later, its spool).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// How often a batch is closed and sent.
    #[serde(default = "default_batch_interval", with = "humantime_serde")]
    pub batch_interval: Duration,
    pub collector: CollectorLink,
    #[serde(default)]
    pub buffer: BufferConfig,
    /// Simulated measurements, for demos and tests only: never on a real site.
    #[serde(default)]
    pub simulate: Option<SimulateConfig>,
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorLink {
    /// `host:port` of the collector's probe listener.
    pub address: String,
    /// Name to verify in the collector's certificate; defaults to the host of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// CA certificate, PEM text (as written by `probe-config`)...
    #[serde(default)]
    pub ca_cert: Option<String>,
    /// ...or a path to it.
    #[serde(default)]
    pub ca_cert_file: Option<PathBuf>,
    /// The site's secret token...
    #[serde(default)]
    pub token: Option<Secret>,
    /// ...or a file holding it (readable by the probe user only).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default = "default_reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// With nothing to send for this long, the probe sends a heartbeat.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Batches sent but not yet acknowledged, at most.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
}

/// In-memory hold of unacknowledged batches until the disk spool lands; past the limit the
/// oldest batch is dropped and counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    #[serde(default = "default_max_batches")]
    pub max_batches: usize,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            max_batches: default_max_batches(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/rie-probe")
}
fn default_batch_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_reconnect_min() -> Duration {
    Duration::from_secs(1)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(60)
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(15)
}
fn default_in_flight() -> usize {
    8
}
fn default_max_batches() -> usize {
    // One day at the default interval.
    8_640
}

/// Everything needed to talk to the collector, resolved and checked.
pub struct Resolved {
    pub target: Target,
    pub token: String,
}

impl ProbeConfig {
    /// Reads and parses the file.
    ///
    /// # Errors
    /// [`ProbeConfigError::Io`] or [`ProbeConfigError::Parse`] (with line and column).
    pub fn load(path: &Path) -> Result<Self, ProbeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProbeConfigError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| ProbeConfigError::Parse {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.source = path.to_path_buf();
        Ok(cfg)
    }

    fn invalid(&self, key: &'static str, message: impl Into<String>) -> ProbeConfigError {
        ProbeConfigError::Invalid {
            file: self.source.clone(),
            key,
            message: message.into(),
        }
    }

    /// Checks values and loads the CA and token.
    ///
    /// # Errors
    /// [`ProbeConfigError::Invalid`] naming the key and a fix.
    pub fn resolve(&self) -> Result<Resolved, ProbeConfigError> {
        let c = &self.collector;
        if self.batch_interval < Duration::from_secs(1) {
            return Err(self.invalid("batch_interval", "must be at least 1s; e.g. \"10s\""));
        }
        if c.max_in_flight == 0 || self.buffer.max_batches == 0 {
            return Err(self.invalid(
                "collector.max_in_flight",
                "max_in_flight and buffer.max_batches must be at least 1",
            ));
        }
        if c.reconnect_min > c.reconnect_max || c.reconnect_min.is_zero() {
            return Err(self.invalid(
                "collector.reconnect_min",
                "must be above 0 and not above reconnect_max; e.g. \"1s\"",
            ));
        }
        let Some((host, _)) = c
            .address
            .rsplit_once(':')
            .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        else {
            return Err(self.invalid(
                "collector.address",
                format!(
                    "{:?} is not host:port; e.g. \"collector.rie.gouv.fr:7443\"",
                    c.address
                ),
            ));
        };
        let name = c.server_name.clone().unwrap_or_else(|| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        });
        let server_name = ServerName::try_from(name.clone()).map_err(|_| {
            self.invalid(
                "collector.server_name",
                format!("{name:?} is not a DNS name or IP address"),
            )
        })?;
        let pem = match (&c.ca_cert, &c.ca_cert_file) {
            (Some(p), None) => p.clone().into_bytes(),
            (None, Some(f)) => std::fs::read(f).map_err(|e| {
                self.invalid(
                    "collector.ca_cert_file",
                    format!("cannot read {}: {e}", f.display()),
                )
            })?,
            _ => {
                return Err(self.invalid(
                    "collector.ca_cert",
                    "set exactly one of ca_cert (PEM text) or ca_cert_file",
                ))
            }
        };
        let tls =
            crate::session::client_tls(&pem).map_err(|m| self.invalid("collector.ca_cert", m))?;
        let token = match (&c.token, &c.token_file) {
            (Some(t), None) => t.0.trim().to_string(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| {
                    self.invalid(
                        "collector.token_file",
                        format!("cannot read {}: {e}", f.display()),
                    )
                })?
                .trim()
                .to_string(),
            _ => {
                return Err(
                    self.invalid("collector.token", "set exactly one of token or token_file")
                )
            }
        };
        if token.is_empty() {
            return Err(self.invalid(
                "collector.token",
                "is empty; use the token written by `rie-collector probe-config`",
            ));
        }
        Ok(Resolved {
            target: Target {
                address: c.address.clone(),
                server_name,
                tls,
                connect_timeout: c.connect_timeout,
            },
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut found = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("probe") && name.ends_with(".toml") {
                let cfg = ProbeConfig::load(&path).unwrap();
                assert_eq!(cfg.batch_interval, Duration::from_secs(10));
                found += 1;
            }
        }
        assert!(found >= 1, "no probe*.toml in {}", dir.display());
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(
            &p,
            "site_id = \"S1\"\n[collector]\naddress = \"nope\"\ntoken = \"t\"\nca_cert = \"x\"\n",
        )
        .unwrap();
        let e = ProbeConfig::load(&p)
            .unwrap()
            .resolve()
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("p.toml: key `collector.address`"), "{e}");
        std::fs::write(&p, "site_id = \"S 1\"\n").unwrap();
        let e = ProbeConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let secret = Secret("abc".into());
        assert_eq!(format!("{secret:?}"), "\"********\"");
    }
}
