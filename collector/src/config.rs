//! Collector configuration: a TOML file (see `configs/collector.example.toml`) with a default
//! for every key, overridable by command-line flags and environment variables. Parsing and
//! validation are separate: [`CollectorConfig::validate`] does no I/O and names the key at fault
//! with an example of a right value.
//!
//! Owns: the file's top level (`data_dir`, `inventory`, `costs`, `backup_prices`) and the assembly of the
//! sections; each section's type, defaults and checks live beside its component
//! (`ingest::probe_stream::ProbesConfig`, `ingest::netflow_udp::NetflowConfig`,
//! `store::StoreConfig`, `sites::SiteThresholds`, `api::ApiConfig`, `pki::TlsConfig`,
//! `sinks::influx::InfluxConfig`, `finance::FinanceConfig`). A removed `[cluster]` section is refused by name. May import those components'
//! config types; only `app` and `main` import it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A configuration that cannot be used; the CLI exits with code 2 on it.
pub type ConfigError = rie_common::ConfigFileError;

/// Why a config with the former `[cluster]` section (or any of its keys) is refused.
pub const CLUSTER_REMOVED: &str = "the [cluster] section was removed: run several collectors against one PostgreSQL database instead (store.backend = \"postgres\", store.postgres.url = \"...\"); probes dial one DNS name or TCP load balancer in front of the collectors; see docs/scaling.md";

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
    pub probes: crate::ingest::probe_stream::ProbesConfig,
    #[serde(default)]
    pub api: crate::api::ApiConfig,
    /// Who must authenticate (`[auth]`; see `auth`).
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    #[serde(default)]
    pub tls: crate::pki::TlsConfig,
    #[serde(default)]
    pub store: crate::store::StoreConfig,
    #[serde(default)]
    pub sites: crate::sites::SiteThresholds,
    #[serde(default)]
    pub netflow: crate::ingest::netflow_udp::NetflowConfig,
    /// sFlow v5 input (off unless `sflow.listen` is set); see `ingest::sflow_udp`.
    #[serde(default)]
    pub sflow: crate::ingest::sflow_udp::SflowConfig,
    /// InfluxDB sink (off unless `influx.url` is set); see `sinks::influx`.
    #[serde(default)]
    pub influx: crate::sinks::influx::InfluxConfig,
    /// The finance duty (figures of the current month to InfluxDB and Prometheus); see `finance`.
    #[serde(default)]
    pub finance: crate::finance::FinanceConfig,
    /// Cost model for indicators and finance reports (`configs/costs.toml`); the built-in
    /// defaults (the same values as that file) when absent.
    #[serde(default)]
    pub costs: Option<PathBuf>,
    /// Price catalogue of the resilience investment planner (`configs/backup-prices.toml`);
    /// the built-in copy of that file when absent.
    #[serde(default)]
    pub backup_prices: Option<PathBuf>,
    /// The removed `[cluster]` section, kept only to refuse it by name in [`Self::validate`].
    #[serde(default, rename = "cluster")]
    pub removed_cluster: Option<toml::Table>,
    /// Where this configuration came from, for error messages.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/rie-collector")
}
fn default_inventory() -> PathBuf {
    PathBuf::from("/etc/rie-collector/inventory")
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            inventory: default_inventory(),
            probes: Default::default(),
            api: Default::default(),
            auth: Default::default(),
            tls: Default::default(),
            store: Default::default(),
            sites: Default::default(),
            netflow: Default::default(),
            sflow: Default::default(),
            influx: crate::sinks::influx::InfluxConfig::default(),
            finance: Default::default(),
            costs: None,
            backup_prices: None,
            removed_cluster: None,
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
        if let Some(table) = &self.removed_cluster {
            let key = table
                .keys()
                .next()
                .map_or_else(|| "cluster".to_string(), |k| format!("cluster.{k}"));
            return Err(invalid(&key, CLUSTER_REMOVED.to_string()));
        }
        let checks = [
            self.probes.validate(),
            self.netflow.validate(),
            self.sflow.validate(),
            self.store.validate(),
            self.sites.validate(),
            self.influx.validate(),
            self.finance.validate(),
            self.api.validate(),
            self.auth.oidc.as_ref().map_or(Ok(()), |o| o.validate()),
            self.auth.validate(),
        ];
        for check in checks {
            check.map_err(|(key, message)| invalid(key, message))?;
        }
        Ok(())
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("rie.db")
    }
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
    fn a_removed_cluster_section_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("collector.toml");
        let check = |text: &str| {
            std::fs::write(&p, text).unwrap();
            CollectorConfig::load(&p)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        let file = p.display();
        assert_eq!(
            check("[cluster]\n"),
            format!("{file}: key `cluster`: the [cluster] section was removed: run several collectors against one PostgreSQL database instead (store.backend = \"postgres\", store.postgres.url = \"...\"); probes dial one DNS name or TCP load balancer in front of the collectors; see docs/scaling.md")
        );
        for key in [
            "members = []",
            "self = \"a:1\"",
            "api_members = []",
            "mark_lookup_timeout = \"2s\"",
        ] {
            let name = key.split(' ').next().unwrap();
            assert_eq!(
                check(&format!("[cluster]\n{key}\n")),
                format!("{file}: key `cluster.{name}`: {CLUSTER_REMOVED}")
            );
        }
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
}
