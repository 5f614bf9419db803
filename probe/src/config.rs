//! The probe's configuration file (see `configs/probe.example.toml`), written for a site by
//! `rie-collector probe-config`. Parsing, then [`ProbeConfig::validate`], which resolves files
//! and returns everything the uplink needs; every error names the file and key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rie_proto::SiteId;
use rustls_pki_types::ServerName;
use serde::Deserialize;

use crate::checks::{ChecksConfig, LinkConfig, TargetConfig};
use crate::session::Target;
use rie_flow::simulate::SimulateConfig;

/// A probe config that cannot be used (exit code 2).
pub type ProbeConfigError = rie_common::ConfigFileError;

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
    pub spool: SpoolConfig,
    #[serde(default)]
    pub meter: MeterConfig,
    #[serde(default)]
    pub capture: CaptureConfig,
    /// The site's access links, as checks bind to them (`[[links]]`).
    #[serde(default)]
    pub links: Vec<LinkConfig>,
    /// Availability checks over each link (`[checks]`, `[[checks.targets]]`).
    #[serde(default)]
    pub checks: ChecksConfig,
    #[serde(default)]
    pub netflow: NetflowRelayConfig,
    /// sFlow relay (`[sflow]`): the router or switches send sFlow v5 to the probe.
    #[serde(default)]
    pub sflow: SflowRelayConfig,
    /// Simulated measurements, for demos and tests only: never on a real site.
    #[serde(default)]
    pub simulate: Option<SimulateConfig>,
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorLink {
    /// `host:port` of the collector's probe listener, when there is one collector...
    #[serde(default)]
    pub address: Option<String>,
    /// ...or the `host:port` of each collector (all on one database, any of them serves any
    /// site), tried in this order: the probe stays on the one that works and moves to the next
    /// when a connection fails (see `uplink`). Exactly one of `address` and `addresses`.
    #[serde(default)]
    pub addresses: Option<Vec<String>>,
    /// Name to verify in each collector's certificate; defaults to the host of each address.
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

/// Live capture.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Interfaces to capture on (both directions), e.g. ["eth1"] for the router's WAN side;
    /// empty: no capture.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Kernel receive buffer of each capture socket, in KiB: what absorbs a burst while the
    /// capture thread is busy. The kernel caps it at `net.core.rmem_max` (the probe warns).
    #[serde(default = "default_socket_buffer_kib")]
    pub socket_buffer_kib: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            socket_buffer_kib: default_socket_buffer_kib(),
        }
    }
}

fn default_socket_buffer_kib() -> usize {
    2048
}

impl CaptureConfig {
    pub fn settings(&self) -> crate::sources::capture::CaptureSettings {
        crate::sources::capture::CaptureSettings {
            interfaces: self.interfaces.clone(),
            socket_buffer: self.socket_buffer_kib * 1024,
        }
    }
}

/// NetFlow/IPFIX relay: the site router exports to the probe, which decodes, aggregates
/// (direction from `meter.site_prefixes`) and sends the result in its batches, spooled like
/// capture data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetflowRelayConfig {
    #[serde(default)]
    pub enabled: bool,
    /// UDP address the router exports to, e.g. "0.0.0.0:2055".
    #[serde(default = "default_netflow_listen")]
    pub listen: std::net::SocketAddr,
    /// How long `rie-probe check` waits for a datagram on that port.
    #[serde(default = "default_netflow_check_wait", with = "humantime_serde")]
    pub check_wait: Duration,
}

fn default_netflow_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 2055))
}
fn default_netflow_check_wait() -> Duration {
    Duration::from_secs(10)
}

/// sFlow v5 relay: the site's router or switches send sFlow to the probe, which sums the flow
/// samples (direction from `meter.site_prefixes`) into its batches, like the NetFlow relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SflowRelayConfig {
    #[serde(default)]
    pub enabled: bool,
    /// UDP address the agents send to, e.g. "0.0.0.0:6343".
    #[serde(default = "default_sflow_listen")]
    pub listen: std::net::SocketAddr,
}

fn default_sflow_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 6343))
}

impl Default for SflowRelayConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: default_sflow_listen(),
        }
    }
}

impl Default for NetflowRelayConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: default_netflow_listen(),
            check_wait: default_netflow_check_wait(),
        }
    }
}

/// The flow meter: the site's own prefixes (for traffic direction) and flow expiry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterConfig {
    /// The site's address ranges, e.g. ["10.42.0.0/16", "fd00:42::/48"]; traffic leaving them is
    /// outbound, entering them inbound.
    #[serde(default)]
    pub site_prefixes: Vec<ipnet::IpNet>,
    #[serde(default = "default_active_timeout", with = "humantime_serde")]
    pub active_timeout: Duration,
    #[serde(default = "default_inactive_timeout", with = "humantime_serde")]
    pub inactive_timeout: Duration,
    /// Flow table bound; past it the oldest flow is reported early and counted as an eviction.
    #[serde(default = "default_max_flows")]
    pub max_flows: usize,
    /// Remote prefixes (/24, /48) per minute sent as top talkers, by bytes; 0 sends none.
    #[serde(default = "default_top_talkers")]
    pub top_talkers: usize,
}

fn default_top_talkers() -> usize {
    10
}

impl Default for MeterConfig {
    fn default() -> Self {
        Self {
            site_prefixes: Vec::new(),
            active_timeout: default_active_timeout(),
            inactive_timeout: default_inactive_timeout(),
            max_flows: default_max_flows(),
            top_talkers: default_top_talkers(),
        }
    }
}

impl MeterConfig {
    pub fn table(&self) -> rie_flow::flow_table::FlowTableConfig {
        rie_flow::flow_table::FlowTableConfig {
            active_timeout: self.active_timeout,
            inactive_timeout: self.inactive_timeout,
            max_flows: self.max_flows,
            ..Default::default()
        }
    }
}

fn default_active_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_inactive_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_max_flows() -> usize {
    200_000
}

/// The disk spool where batches wait for the collector's acknowledgement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Defaults to `data_dir/spool`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Disk budget, MiB; past it the oldest batches are dropped (counted and logged). At one
    /// batch of a few kB every 10 s, 256 MiB holds weeks of outage.
    #[serde(default = "default_budget_mb")]
    pub budget_mb: u64,
    /// Most batches per second when sending a backlog after an outage.
    #[serde(default = "default_replay_rate")]
    pub replay_rate: f64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: None,
            budget_mb: default_budget_mb(),
            replay_rate: default_replay_rate(),
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
fn default_budget_mb() -> u64 {
    256
}
fn default_replay_rate() -> f64 {
    20.0
}

/// Everything needed to talk to the collectors, resolved and checked.
pub struct Resolved {
    /// One per configured collector address, in the configured order (never empty).
    pub targets: Vec<Target>,
    pub token: String,
    /// Check targets, parsed.
    pub checks: Vec<(TargetConfig, crate::checks::Target)>,
}

impl Resolved {
    /// The first configured collector (the preferred one), for one-shot commands and tests.
    pub fn preferred(&self) -> &Target {
        // `resolve` returns at least one target (an empty list is a config error).
        &self.targets[0]
    }
}

impl ProbeConfig {
    /// Reads and parses the file.
    ///
    /// # Errors
    /// [`ProbeConfigError::Io`] or [`ProbeConfigError::Parse`] (with line and column).
    pub fn load(path: &Path) -> Result<Self, ProbeConfigError> {
        let mut cfg: Self = rie_common::read_toml(path)?;
        cfg.source = path.to_path_buf();
        Ok(cfg)
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.spool
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("spool"))
    }

    /// Files holding the token must be readable by the probe user only: says so in the log.
    pub fn warn_about_permissions(&self) {
        for (what, path) in self.secret_files() {
            if let Some(mode) = world_or_group_readable(&path) {
                tracing::warn!(file = %path.display(), mode = format!("{mode:o}"), "{what} holds the site's token but is readable by others: chmod 600");
            }
        }
    }

    /// Files that hold the token: the config itself when the token is inline, or token_file.
    pub fn secret_files(&self) -> Vec<(&'static str, PathBuf)> {
        let mut v = Vec::new();
        if self.collector.token.is_some() {
            v.push(("the probe config", self.source.clone()));
        }
        if let Some(f) = &self.collector.token_file {
            v.push(("token_file", f.clone()));
        }
        v
    }

    /// The configured collector addresses, in order, as written (empty when neither key is
    /// set; [`ProbeConfig::resolve`] refuses that).
    pub fn collector_addresses(&self) -> Vec<String> {
        match (&self.collector.address, &self.collector.addresses) {
            (Some(a), None) => vec![a.clone()],
            (None, Some(list)) => list.clone(),
            (Some(a), Some(list)) => std::iter::once(a.clone()).chain(list.clone()).collect(),
            (None, None) => Vec::new(),
        }
    }

    /// The collector addresses, checked: exactly one of `address` or a non-empty `addresses`,
    /// each `host:port`, none twice. Returns (address, host) pairs, in order.
    fn checked_addresses(&self) -> Result<Vec<(String, String)>, ProbeConfigError> {
        let c = &self.collector;
        let (key, list) = match (&c.address, &c.addresses) {
            (Some(a), None) => ("collector.address", vec![a.clone()]),
            (None, Some(list)) if list.is_empty() => {
                return Err(self.invalid(
                    "collector.addresses",
                    "is empty; list each collector's host:port, e.g. addresses = [\"collector-a.rie.gouv.fr:7443\", \"collector-b.rie.gouv.fr:7443\"]",
                ))
            }
            (None, Some(list)) => ("collector.addresses", list.clone()),
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    "collector.addresses",
                    "is set together with collector.address; keep one: address = \"host:port\" for one collector, or addresses = [\"a:7443\", \"b:7443\"] for several",
                ))
            }
            (None, None) => {
                return Err(self.invalid(
                    "collector.addresses",
                    "is missing; set addresses = [\"collector-a.rie.gouv.fr:7443\", \"collector-b.rie.gouv.fr:7443\"] (or address = \"host:port\" for one collector)",
                ))
            }
        };
        let mut out: Vec<(String, String)> = Vec::with_capacity(list.len());
        for (i, a) in list.iter().enumerate() {
            let Some((host, _)) = a
                .rsplit_once(':')
                .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            else {
                let which = if list.len() > 1 {
                    format!(" (entry {})", i + 1)
                } else {
                    String::new()
                };
                return Err(self.invalid(
                    key,
                    format!("{a:?}{which} is not host:port; e.g. \"collector.rie.gouv.fr:7443\""),
                ));
            };
            if out.iter().any(|(o, _)| o == a) {
                return Err(self.invalid(
                    key,
                    format!("{a:?} is listed twice; list each collector once"),
                ));
            }
            let host = host.trim_start_matches('[').trim_end_matches(']');
            out.push((a.clone(), host.to_string()));
        }
        Ok(out)
    }

    fn invalid(&self, key: &'static str, message: impl Into<String>) -> ProbeConfigError {
        ProbeConfigError::invalid(self.source.display().to_string(), key, message)
    }

    /// Checks values and loads the CA and token.
    ///
    /// # Errors
    /// [`ProbeConfigError::Invalid`] naming the key and a fix.
    pub fn resolve(&self) -> Result<Resolved, ProbeConfigError> {
        let c = &self.collector;
        if self.batch_interval < Duration::from_millis(100) {
            return Err(self.invalid("batch_interval", "must be at least 100ms; e.g. \"10s\""));
        }
        if c.max_in_flight == 0 {
            return Err(self.invalid("collector.max_in_flight", "must be at least 1; e.g. 8"));
        }
        if !(64..=1 << 20).contains(&self.capture.socket_buffer_kib) {
            return Err(self.invalid(
                "capture.socket_buffer_kib",
                "must be between 64 and 1048576 (KiB); e.g. 2048",
            ));
        }
        if self.spool.budget_mb < 16 {
            return Err(self.invalid("spool.budget_mb", "must be at least 16 (MiB); e.g. 256"));
        }
        if self.spool.replay_rate.is_nan() || self.spool.replay_rate < 1.0 {
            return Err(self.invalid(
                "spool.replay_rate",
                "must be at least 1 (batches per second); e.g. 20",
            ));
        }
        if c.reconnect_min > c.reconnect_max || c.reconnect_min.is_zero() {
            return Err(self.invalid(
                "collector.reconnect_min",
                "must be above 0 and not above reconnect_max; e.g. \"1s\"",
            ));
        }
        let addresses = self.checked_addresses()?;
        let mut server_names = Vec::with_capacity(addresses.len());
        for (_, host) in &addresses {
            let name = c.server_name.clone().unwrap_or_else(|| host.clone());
            let server_name = ServerName::try_from(name.clone()).map_err(|_| {
                self.invalid(
                    "collector.server_name",
                    format!(
                        "{name:?} is not a DNS name or IP address; e.g. \"collector.rie.gouv.fr\""
                    ),
                )
            })?;
            server_names.push(server_name);
        }
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
        let checks = self.resolve_checks()?;
        Ok(Resolved {
            targets: addresses
                .into_iter()
                .zip(server_names)
                .map(|((address, _), server_name)| Target {
                    address,
                    server_name,
                    tls: tls.clone(),
                    connect_timeout: c.connect_timeout,
                })
                .collect(),
            token,
            checks,
        })
    }

    /// Validates `[[links]]` and `[checks]`; returns the parsed targets.
    fn resolve_checks(
        &self,
    ) -> Result<Vec<(TargetConfig, crate::checks::Target)>, ProbeConfigError> {
        for (i, l) in self.links.iter().enumerate() {
            if self.links[..i].iter().any(|o| o.id == l.id) {
                return Err(self.invalid(
                    "links.id",
                    format!(
                        "link {} is listed twice; each [[links]] entry is one access link",
                        l.id
                    ),
                ));
            }
            if let Some(iface) = &l.interface {
                if iface.is_empty() || iface.len() > 15 || iface.contains('/') {
                    return Err(self.invalid(
                        "links.interface",
                        format!(
                            "{iface:?} (link {}) is not an interface name; e.g. \"eth1\"",
                            l.id
                        ),
                    ));
                }
            }
        }
        if self
            .links
            .iter()
            .filter(|l| l.role == rie_proto::LinkRole::Primary)
            .count()
            > 1
        {
            return Err(self.invalid("links.role", "only one link can be the primary"));
        }
        let c = &self.checks;
        // The same rules as a plan's (rie-plan), under `checks.`.
        if let Err((key, m)) = c.validate_timing() {
            return Err(ProbeConfigError::invalid(
                self.source.display().to_string(),
                match key {
                    "interval" => "checks.interval",
                    "attempts" => "checks.attempts",
                    _ => "checks.timeout",
                },
                m,
            ));
        }
        if !c.targets.is_empty() && self.links.is_empty() {
            return Err(self.invalid(
                "links",
                "checks need the site's links: add a [[links]] entry (id, role, interface) per access link",
            ));
        }
        let mut out = Vec::with_capacity(c.targets.len());
        for t in &c.targets {
            let parsed = t
                .parse()
                .map_err(|m| self.invalid("checks.targets.target", m))?;
            if let Some(unknown) = t
                .links
                .iter()
                .find(|id| self.links.iter().all(|l| &l.id != *id))
            {
                return Err(self.invalid(
                    "checks.targets.links",
                    format!("link {unknown} (target {}) is not in [[links]]", t.label()),
                ));
            }
            out.push((t.clone(), parsed));
        }
        Ok(out)
    }
}

/// The permission bits when group or others may read `path`.
pub fn world_or_group_readable(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
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
        let resolve_error = |address: &str, extra: &str| {
            std::fs::write(
                &p,
                format!("site_id = \"S1\"\n[collector]\naddress = \"{address}\"\ntoken = \"t\"\nca_cert = \"x\"\n{extra}"),
            )
            .unwrap();
            ProbeConfig::load(&p)
                .unwrap()
                .resolve()
                .err()
                .unwrap()
                .to_string()
        };
        let e = resolve_error("nope", "");
        assert!(e.contains("p.toml: key `collector.address`"), "{e}");
        let e = resolve_error("c:7443", "[capture]\nsocket_buffer_kib = 8\n");
        assert!(e.contains("key `capture.socket_buffer_kib`"), "{e}");
        std::fs::write(&p, "site_id = \"S 1\"\n").unwrap();
        let e = ProbeConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let secret = Secret("abc".into());
        assert_eq!(format!("{secret:?}"), "\"********\"");
    }

    /// Writes `[collector]` with `keys` plus a token and CA (a real PEM, so that `resolve` goes
    /// as far as the addresses) and resolves it.
    fn resolve_collector(keys: &str) -> (tempfile::TempDir, Result<Resolved, String>) {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca_pem();
        let p = dir.path().join("probe.toml");
        std::fs::write(
            &p,
            format!("site_id = \"S1\"\n[collector]\n{keys}\ntoken = \"t\"\nca_cert = \"\"\"\n{ca}\"\"\"\n"),
        )
        .unwrap();
        let r = ProbeConfig::load(&p)
            .unwrap()
            .resolve()
            .map_err(|e| e.to_string());
        (dir, r)
    }

    /// A self-signed CA certificate in PEM (its key was not kept: the probe only parses it).
    fn ca_pem() -> String {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ca.pem"))
            .unwrap()
    }

    #[test]
    fn addresses_are_a_list_in_order_each_named_by_its_host() {
        let (_d, r) = resolve_collector(
            "addresses = [\"collector-a.rie.example:7443\", \"10.0.0.2:7443\", \"[fd00::3]:7443\"]",
        );
        let r = r.unwrap();
        let got: Vec<(String, String)> = r
            .targets
            .iter()
            .map(|t| (t.address.clone(), t.server_name.to_str().into_owned()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "collector-a.rie.example:7443".into(),
                    "collector-a.rie.example".into()
                ),
                ("10.0.0.2:7443".into(), "10.0.0.2".into()),
                ("[fd00::3]:7443".into(), "fd00::3".into()),
            ]
        );
        assert_eq!(r.preferred().address, "collector-a.rie.example:7443");
        // server_name, when set, is checked in every collector's certificate.
        let (_d, r) = resolve_collector(
            "addresses = [\"10.0.0.1:7443\", \"10.0.0.2:7443\"]\nserver_name = \"collector.rie.example\"",
        );
        let names: Vec<String> = r
            .unwrap()
            .targets
            .iter()
            .map(|t| t.server_name.to_str().into_owned())
            .collect();
        assert_eq!(names, ["collector.rie.example", "collector.rie.example"]);
        // The single address of earlier files still works.
        let (_d, r) = resolve_collector("address = \"collector.rie.example:7443\"");
        let r = r.unwrap();
        assert_eq!(r.targets.len(), 1);
        assert_eq!(r.targets[0].server_name.to_str(), "collector.rie.example");
    }

    #[test]
    fn address_list_errors_name_file_key_and_fix() {
        let cases = [
            (
                "address = \"a:7443\"\naddresses = [\"b:7443\"]",
                "key `collector.addresses`",
                "keep one",
            ),
            ("addresses = []", "key `collector.addresses`", "is empty"),
            (
                "",
                "key `collector.addresses`",
                "is missing; set addresses = [",
            ),
            (
                "addresses = [\"a:7443\", \"b\"]",
                "key `collector.addresses`",
                "\"b\" (entry 2) is not host:port; e.g. \"collector.rie.gouv.fr:7443\"",
            ),
            (
                "addresses = [\"a:7443\", \"a:7443\"]",
                "key `collector.addresses`",
                "listed twice",
            ),
            (
                "address = \"a:70000\"",
                "key `collector.address`",
                "\"a:70000\" is not host:port",
            ),
            (
                "addresses = [\"a:7443\", \"bad name!:7443\"]",
                "key `collector.server_name`",
                "\"bad name!\" is not a DNS name",
            ),
        ];
        for (keys, key, fix) in cases {
            let (_d, r) = resolve_collector(keys);
            let e = r.err().unwrap_or_else(|| panic!("{keys:?} accepted"));
            assert!(e.contains("probe.toml: "), "{keys:?}: {e}");
            assert!(e.contains(key), "{keys:?}: {e}");
            assert!(e.contains(fix), "{keys:?}: {e}");
        }
    }
}
