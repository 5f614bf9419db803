//! A plan file as written (`rie-collector plan check FILE`): per role, only the values this
//! scope sets; what it leaves out comes from a wider scope, or from the defaults.
//!
//! ```toml
//! [primary]
//! interval = "10s"
//! attempts = 5
//! timeout = "1s"
//! max_loss_pct = 2.0
//! max_rtt_ms = 150
//! max_jitter_ms = 30
//! [[primary.targets]]
//! kind = "icmp"
//! target = "10.255.0.1"
//! name = "core-rennes"
//! ```

use std::time::Duration;

use rie_proto::LinkRole;
use serde::{Deserialize, Serialize};

use crate::checks::TargetConfig;

/// A plan file that cannot be used: names the key at fault and a right value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// Not TOML, or a key or value the format does not have (an unknown check kind included).
    #[error("{message}")]
    Parse { message: String },
    #[error("key `{key}` {message}")]
    Invalid { key: String, message: String },
}

impl PlanError {
    fn invalid(role: LinkRole, key: &str, message: impl Into<String>) -> Self {
        PlanError::Invalid {
            key: format!("{}.{key}", role.as_str()),
            message: message.into(),
        }
    }
}

/// One scope's plan: per role, the values it sets.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<RoleLayer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<RoleLayer>,
}

/// The values one scope sets for one link role; `None`: inherited.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleLayer {
    /// One sample per target and link per interval.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// A link of this role is degraded past this share of lost attempts, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_loss_pct: Option<f64>,
    /// ... past this average round-trip time, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rtt_ms: Option<u32>,
    /// ... past this jitter, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jitter_ms: Option<u32>,
    /// The whole list: a scope that sets targets replaces the wider scope's list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<TargetConfig>>,
}

impl PlanFile {
    /// Parses and validates plan text.
    ///
    /// # Errors
    /// [`PlanError::Parse`] with the line and column, or [`PlanError::Invalid`] naming the key.
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let file: Self = toml::from_str(text).map_err(|e| PlanError::Parse {
            message: match e.span() {
                Some(span) => {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("line {line}, column {column}: {}", e.message())
                }
                None => e.message().to_string(),
            },
        })?;
        file.validate()?;
        Ok(file)
    }

    pub fn role(&self, role: LinkRole) -> Option<&RoleLayer> {
        match role {
            LinkRole::Primary => self.primary.as_ref(),
            LinkRole::Backup => self.backup.as_ref(),
        }
    }

    /// Checks every value this file sets on its own (pure, no I/O). Timing rules that involve
    /// several values are checked once merged (`EffectivePlan::validate`).
    ///
    /// # Errors
    /// The first key at fault.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.primary.is_none() && self.backup.is_none() {
            return Err(PlanError::Invalid {
                key: "primary".into(),
                message: "is missing: a plan sets values for [primary] and/or [backup]; e.g. [primary] interval = \"10s\"".into(),
            });
        }
        for role in [LinkRole::Primary, LinkRole::Backup] {
            if let Some(r) = self.role(role) {
                r.validate(role)?;
            }
        }
        Ok(())
    }
}

impl RoleLayer {
    fn validate(&self, role: LinkRole) -> Result<(), PlanError> {
        if self.interval.is_some_and(|i| i < Duration::from_secs(1)) {
            return Err(PlanError::invalid(
                role,
                "interval",
                "must be at least 1s; e.g. \"10s\"",
            ));
        }
        if self.attempts.is_some_and(|a| !(1..=100).contains(&a)) {
            return Err(PlanError::invalid(
                role,
                "attempts",
                "must be between 1 and 100; e.g. 5",
            ));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(PlanError::invalid(
                role,
                "timeout",
                "must be above 0; e.g. \"1s\"",
            ));
        }
        if let Some(l) = self.max_loss_pct {
            if !(0.0..=100.0).contains(&l) {
                return Err(PlanError::invalid(
                    role,
                    "max_loss_pct",
                    "must be between 0 and 100 (percent); e.g. 2.0",
                ));
            }
        }
        if self.max_rtt_ms == Some(0) {
            return Err(PlanError::invalid(
                role,
                "max_rtt_ms",
                "must be above 0 (milliseconds); e.g. 150",
            ));
        }
        for (i, t) in self.targets.iter().flatten().enumerate() {
            let at = format!("targets[{i}]");
            if !t.links.is_empty() {
                return Err(PlanError::invalid(
                    role,
                    &format!("{at}.links"),
                    "is not allowed in a plan, which applies to every link of the role: remove it (a site-specific target belongs in a site:ID plan)",
                ));
            }
            t.parse()
                .map_err(|m| PlanError::invalid(role, &format!("{at}.target"), m))?;
            if self
                .targets
                .iter()
                .flatten()
                .take(i)
                .any(|o| o.label() == t.label() && o.kind == t.kind)
            {
                return Err(PlanError::invalid(
                    role,
                    &format!("{at}.name"),
                    format!(
                        "{} {:?} is listed twice; give each target once, or a distinct name",
                        t.kind.as_str(),
                        t.label()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key_and_a_fix() {
        let e = |text: &str| PlanFile::parse(text).unwrap_err().to_string();
        assert_eq!(
            e("[primary]\ninterval = \"500ms\"\n"),
            "key `primary.interval` must be at least 1s; e.g. \"10s\""
        );
        assert_eq!(
            e("[backup]\nattempts = 0\n"),
            "key `backup.attempts` must be between 1 and 100; e.g. 5"
        );
        let m = e("[primary]\n[[primary.targets]]\nkind = \"twamp\"\ntarget = \"x\"\n");
        assert!(
            m.contains("unknown variant `twamp`") && m.contains("line 3"),
            "{m}"
        );
        let m = e("[primary]\n[[primary.targets]]\nkind = \"icmp\"\ntarget = \"core\"\n");
        assert_eq!(
            m,
            "key `primary.targets[0].target` \"core\" is not an IP address; e.g. \"10.255.0.1\""
        );
        let m = e("[primary]\nintervall = \"10s\"\n");
        assert!(m.contains("unknown field `intervall`"), "{m}");
        assert!(e("").contains("key `primary` is missing"));
        let m = e("[primary]\n[[primary.targets]]\nkind = \"tcp\"\ntarget = \"10.0.0.1:443\"\nlinks = [\"S1-P\"]\n");
        assert!(
            m.starts_with("key `primary.targets[0].links` is not allowed"),
            "{m}"
        );
        assert_eq!(
            e("[primary]\nmax_loss_pct = 120.0\n"),
            "key `primary.max_loss_pct` must be between 0 and 100 (percent); e.g. 2.0"
        );
    }

    #[test]
    fn every_example_plan_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/plans");
        let mut found = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let f =
                    PlanFile::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(f.primary.is_some(), "{}", path.display());
                found += 1;
            }
        }
        assert!(found >= 1, "no *.toml in {}", dir.display());
    }

    #[test]
    fn a_partial_file_parses_and_round_trips() {
        let text = "[primary]\ninterval = \"30s\"\n[[primary.targets]]\nkind = \"dns\"\ntarget = \"10.255.0.53\"\nquery = \"rie.gouv.fr\"\n";
        let f = PlanFile::parse(text).unwrap();
        let p = f.primary.as_ref().unwrap();
        assert_eq!(p.interval, Some(Duration::from_secs(30)));
        assert_eq!(p.attempts, None);
        assert_eq!(p.targets.as_ref().unwrap().len(), 1);
        assert!(f.backup.is_none());
        let again = PlanFile::parse(&toml::to_string(&f).unwrap()).unwrap();
        assert_eq!(again, f);
    }
}
