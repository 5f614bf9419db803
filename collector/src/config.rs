//! Collector configuration: a TOML file (see `configs/collector.example.toml`) with a default
//! for every key, overridable by command-line flags and environment variables. Parsing and
//! validation are separate: [`CollectorConfig::validate`] does no I/O and names the key at fault
//! with an example of a right value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A configuration that cannot be used; the CLI exits with code 2 on it.
pub type ConfigError = rie_common::ConfigFileError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Where the embedded database lives (`rie.db`).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Directory holding `sites.csv` and `links.csv`.
    #[serde(default = "default_inventory")]
    pub inventory: PathBuf,
    #[serde(default)]
    pub probes: ProbesConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub sites: SiteThresholds,
    #[serde(default)]
    pub netflow: NetflowConfig,
    /// InfluxDB sink (off unless `influx.url` is set); see `sinks::influx`.
    #[serde(default)]
    pub influx: crate::sinks::influx::InfluxConfig,
    /// Cost model for indicators and finance reports (`configs/costs.toml`); the built-in
    /// defaults (the same values as that file) when absent.
    #[serde(default)]
    pub costs: Option<PathBuf>,
    /// Scale-out: members of the cluster and this collector's address; see `cluster`.
    #[serde(default)]
    pub cluster: crate::cluster::ClusterConfig,
    /// Where this configuration came from, for error messages.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbesConfig {
    /// Address the probe listener binds.
    #[serde(default = "default_probe_listen")]
    pub listen: SocketAddr,
    /// Address probes dial, written into the probe configs `probe-config` produces
    /// (`host:port`; the host must be in the server certificate).
    #[serde(default = "default_public_address")]
    pub public_address: String,
    /// Upper bound on simultaneous probe connections (the RIE has about 14,000 sites).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time allowed for the TLS handshake and the hello.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A connection with no frame for this long is closed (probes heartbeat well within it).
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest frame accepted, bytes.
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Directory written by `rie-collector pki init` (ca.pem, server.pem, server.key).
    #[serde(default = "default_pki_dir")]
    pub pki_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Capacity of the channel from connections to the store writer; when full, connections
    /// stop reading (backpressure reaches the probes through TCP).
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Most batches committed in one transaction (one fsync).
    #[serde(default = "default_commit_max")]
    pub commit_max_batches: usize,
    /// `[store.retention]`: how long minute, five-minute, hour and day rollups are kept.
    #[serde(default)]
    pub retention: crate::retention::RetentionConfig,
}

/// When a site counts as degraded or silent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteThresholds {
    /// No batch nor heartbeat for this long: the site is `silent`.
    #[serde(default = "default_silent_after", with = "humantime_serde")]
    pub silent_after: Duration,
    /// Loss on the active link at or above this ratio: `degraded`.
    #[serde(default = "default_degraded_loss")]
    pub degraded_loss_ratio: f64,
    /// Average RTT on the active link at or above this: `degraded`.
    #[serde(default = "default_degraded_rtt", with = "humantime_serde")]
    pub degraded_rtt: Duration,
    /// Check intervals in a row past a threshold (on one target) before a site is `degraded`
    /// (1: at once).
    #[serde(default = "default_degraded_after")]
    pub degraded_after: u32,
    /// A probe clock further than this from the collector's is flagged (API `clock_suspect`,
    /// log warning); timestamps are corrected by the measured offset either way.
    #[serde(default = "default_max_clock_offset", with = "humantime_serde")]
    pub max_clock_offset: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetflowConfig {
    /// UDP address for NetFlow v5/v9/IPFIX exported directly by routers; off when absent.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// How often the minute aggregates held in memory are committed to the store: the most a
    /// crash can lose (UDP has no acknowledgement, so exporters never resend).
    #[serde(default = "default_netflow_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Receive buffer asked of the kernel (capped by `net.core.rmem_max`): absorbs bursts
    /// while a commit runs.
    #[serde(default = "default_netflow_rcvbuf")]
    pub receive_buffer_bytes: usize,
    /// Exporters (address × observation domain) whose templates are kept in memory.
    #[serde(default = "default_netflow_exporters")]
    pub max_exporters: usize,
    /// Threads decoding datagrams, each owning a share of the exporters.
    #[serde(default = "default_netflow_threads")]
    pub decode_threads: usize,
    /// Top remote prefixes (IPv4 /24, IPv6 /48) kept per site and minute at each commit, like
    /// the probe's `[meter] top_talkers`; 0 keeps none. Needs the site's `site_prefixes`.
    #[serde(default = "default_netflow_top_talkers")]
    pub top_talkers: usize,
}

fn default_netflow_top_talkers() -> usize {
    10
}

fn default_netflow_flush() -> Duration {
    Duration::from_secs(5)
}
fn default_netflow_rcvbuf() -> usize {
    16 * 1024 * 1024
}
fn default_netflow_exporters() -> usize {
    20_000
}
fn default_netflow_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

impl Default for NetflowConfig {
    fn default() -> Self {
        Self {
            listen: None,
            flush_interval: default_netflow_flush(),
            receive_buffer_bytes: default_netflow_rcvbuf(),
            max_exporters: default_netflow_exporters(),
            decode_threads: default_netflow_threads(),
            top_talkers: default_netflow_top_talkers(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/rie-collector")
}
fn default_inventory() -> PathBuf {
    PathBuf::from("/etc/rie-collector/inventory")
}
fn default_pki_dir() -> PathBuf {
    PathBuf::from("/etc/rie-collector/pki")
}
fn default_probe_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7443))
}
fn default_public_address() -> String {
    "localhost:7443".into()
}
fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8480))
}
fn default_max_connections() -> usize {
    20_000
}
fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(90)
}
fn default_max_frame() -> usize {
    rie_proto::MAX_FRAME_LEN
}
fn default_queue() -> usize {
    4096
}
fn default_commit_max() -> usize {
    2048
}
fn default_silent_after() -> Duration {
    Duration::from_secs(35)
}
fn default_degraded_loss() -> f64 {
    0.05
}
fn default_degraded_rtt() -> Duration {
    Duration::from_millis(700)
}
fn default_degraded_after() -> u32 {
    2
}
fn default_max_clock_offset() -> Duration {
    Duration::from_secs(2)
}

impl Default for ProbesConfig {
    fn default() -> Self {
        Self {
            listen: default_probe_listen(),
            public_address: default_public_address(),
            max_connections: default_max_connections(),
            handshake_timeout: default_handshake_timeout(),
            idle_timeout: default_idle_timeout(),
            max_frame_bytes: default_max_frame(),
        }
    }
}
impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_api_listen(),
        }
    }
}
impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            pki_dir: default_pki_dir(),
        }
    }
}
impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            queue: default_queue(),
            commit_max_batches: default_commit_max(),
            retention: crate::retention::RetentionConfig::default(),
        }
    }
}
impl Default for SiteThresholds {
    fn default() -> Self {
        Self {
            silent_after: default_silent_after(),
            degraded_loss_ratio: default_degraded_loss(),
            degraded_rtt: default_degraded_rtt(),
            degraded_after: default_degraded_after(),
            max_clock_offset: default_max_clock_offset(),
        }
    }
}
impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            inventory: default_inventory(),
            probes: ProbesConfig::default(),
            api: ApiConfig::default(),
            tls: TlsConfig::default(),
            store: StoreConfig::default(),
            sites: SiteThresholds::default(),
            netflow: NetflowConfig::default(),
            influx: crate::sinks::influx::InfluxConfig::default(),
            costs: None,
            cluster: crate::cluster::ClusterConfig::default(),
            source: None,
        }
    }
}

impl CollectorConfig {
    /// Reads and parses a TOML file (not yet validated).
    ///
    /// # Errors
    /// [`ConfigError::Io`] or [`ConfigError::Parse`] naming the file and position.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: Self = rie_common::read_toml(path)?;
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Checks values that parse but cannot work. Pure: no file is opened.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key and a right value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let file = self
            .source
            .as_ref()
            .map_or_else(|| "command line".to_string(), |p| p.display().to_string());
        let invalid = |key: &str, message: String| ConfigError::invalid(file.clone(), key, message);
        if let Err(e) = self.cluster.validate() {
            return Err(invalid(e.key, e.message));
        }
        if self.probes.max_connections == 0 {
            return Err(invalid(
                "probes.max_connections",
                "must be at least 1; e.g. 20000".into(),
            ));
        }
        if !(1024..=rie_proto::MAX_FRAME_LEN).contains(&self.probes.max_frame_bytes) {
            return Err(invalid(
                "probes.max_frame_bytes",
                format!("must be between 1024 and {}", rie_proto::MAX_FRAME_LEN),
            ));
        }
        if split_host_port(&self.probes.public_address).is_none() {
            return Err(invalid(
                "probes.public_address",
                format!(
                    "{:?} is not host:port; e.g. \"collector.rie.gouv.fr:7443\"",
                    self.probes.public_address
                ),
            ));
        }
        if self.netflow.max_exporters < 1 {
            return Err(invalid(
                "netflow.max_exporters",
                "must be at least 1; e.g. 20000 (one per router, with room)".into(),
            ));
        }
        if !(1..=64).contains(&self.netflow.decode_threads) {
            return Err(invalid(
                "netflow.decode_threads",
                "must be between 1 and 64; e.g. 4".into(),
            ));
        }
        if self.netflow.top_talkers > 1000 {
            return Err(invalid(
                "netflow.top_talkers",
                "must be at most 1000 (0 keeps none); e.g. 10".into(),
            ));
        }
        if self.netflow.flush_interval < Duration::from_millis(100) {
            return Err(invalid(
                "netflow.flush_interval",
                "must be at least 100ms; e.g. \"5s\"".into(),
            ));
        }
        if self.store.queue == 0 || self.store.commit_max_batches == 0 {
            return Err(invalid(
                "store",
                "queue and commit_max_batches must be at least 1".into(),
            ));
        }
        if let Err((key, msg)) = self.store.retention.validate() {
            return Err(invalid(key, msg));
        }
        if !(0.0..=1.0).contains(&self.sites.degraded_loss_ratio)
            || self.sites.degraded_loss_ratio == 0.0
        {
            return Err(invalid(
                "sites.degraded_loss_ratio",
                "must be in ]0, 1]; e.g. 0.05".into(),
            ));
        }
        if self.sites.degraded_after == 0 {
            return Err(invalid(
                "sites.degraded_after",
                "must be at least 1 (batches in a row); e.g. 2".into(),
            ));
        }
        if self.sites.silent_after < Duration::from_secs(1) {
            return Err(invalid(
                "sites.silent_after",
                "must be at least 1s; e.g. \"35s\"".into(),
            ));
        }
        self.influx
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        Ok(())
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("rie.db")
    }
}

/// Splits `host:port` (with `[v6]:port` support); `None` when malformed.
pub fn split_host_port(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_configs_parse_and_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut found = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("collector") && name.ends_with(".toml") {
                let cfg = CollectorConfig::load(&path).unwrap();
                cfg.validate().unwrap();
                found += 1;
            }
        }
        assert!(found >= 1, "no collector*.toml found in {}", dir.display());
    }

    #[test]
    fn errors_name_file_position_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "data_dir = \"/x\"\n[probes]\nlisten = \"nowhere\"\n").unwrap();
        let e = CollectorConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("line 3"), "{e}");
        std::fs::write(&p, "[probes]\nmax_conections = 5\n").unwrap();
        let e = CollectorConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("max_conections") && e.contains("line 2"), "{e}");
        std::fs::write(&p, "[probes]\npublic_address = \"nope\"\n").unwrap();
        let e = CollectorConfig::load(&p)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `probes.public_address`"), "{e}");
        std::fs::write(&p, "[store.retention]\nminute_days = 35\nhour_days = 30\n").unwrap();
        let e = CollectorConfig::load(&p)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `store.retention.hour_days`"), "{e}");
        // A config written for 60 days of per-minute rows, from before the five-minute tier.
        std::fs::write(&p, "[store.retention]\nminute_days = 60\n").unwrap();
        let e = CollectorConfig::load(&p)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key `store.retention.fine_days`") && e.contains("fine_days = 60"),
            "{e}"
        );
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("a.b:7443"), Some(("a.b".into(), 7443)));
        assert_eq!(split_host_port("[::1]:7443"), Some(("::1".into(), 7443)));
        assert_eq!(split_host_port("a.b"), None);
    }
}
