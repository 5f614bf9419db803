//! A site's effective plan: the layers that apply to it (national, its ministry, its
//! département, itself), merged value by value (the narrowest scope that sets a value wins;
//! a value no layer sets takes its default), with the scope each value came from.
//!
//! Version and hash: every stored layer has a version from one increasing sequence, so the
//! effective plan's version, the highest of its layers', only ever grows for a site. Its hash
//! is the SHA-256 of its wire text (the merged plan as a complete plan file), which is what
//! the collector sends and the probe parses back with [`EffectivePlan::from_wire`].

use std::collections::BTreeMap;

use rie_proto::LinkRole;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::checks::{default_attempts, default_interval, default_timeout, ChecksConfig};
use crate::file::{PlanError, PlanFile, RoleLayer};
use crate::scope::Scope;

/// Loss, latency and jitter past which a link of the role is degraded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    pub max_loss_pct: f64,
    pub max_rtt_ms: u32,
    pub max_jitter_ms: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            max_loss_pct: 5.0,
            max_rtt_ms: 700,
            max_jitter_ms: 30,
        }
    }
}

/// Everything a role runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolePlan {
    pub checks: ChecksConfig,
    pub thresholds: Thresholds,
}

/// One stored plan that applies to a site.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub scope: Scope,
    pub version: u64,
    pub file: PlanFile,
}

/// The values names under a role, in the order of [`EffectivePlan::sources`].
pub const VALUES: [&str; 7] = [
    "interval",
    "attempts",
    "timeout",
    "max_loss_pct",
    "max_rtt_ms",
    "max_jitter_ms",
    "targets",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectivePlan {
    /// The highest version among the layers merged (0: none).
    pub version: u64,
    pub primary: RolePlan,
    pub backup: RolePlan,
    /// `primary.interval` → `national`, `ministry:Intérieur`, … or `default`.
    pub sources: BTreeMap<String, String>,
}

impl EffectivePlan {
    /// Merges `layers` (any order: they are ranked by scope, then version).
    pub fn merge(layers: &[&Layer]) -> Self {
        let mut ordered: Vec<&&Layer> = layers.iter().collect();
        ordered.sort_by_key(|l| (l.scope.rank(), l.version));
        let mut sources = BTreeMap::new();
        let mut role_plan = |role: LinkRole| {
            let mut merged = RoleLayer::default();
            let mut src: BTreeMap<&str, String> =
                VALUES.iter().map(|v| (*v, "default".to_string())).collect();
            for l in &ordered {
                let Some(r) = l.file.role(role) else { continue };
                let from = l.scope.to_string();
                macro_rules! take {
                    ($f:ident) => {
                        if r.$f.is_some() {
                            merged.$f = r.$f.clone();
                            src.insert(stringify!($f), from.clone());
                        }
                    };
                }
                take!(interval);
                take!(attempts);
                take!(timeout);
                take!(max_loss_pct);
                take!(max_rtt_ms);
                take!(max_jitter_ms);
                take!(targets);
            }
            for (k, v) in src {
                sources.insert(format!("{}.{k}", role.as_str()), v);
            }
            complete(&merged)
        };
        let primary = role_plan(LinkRole::Primary);
        let backup = role_plan(LinkRole::Backup);
        Self {
            version: layers.iter().map(|l| l.version).max().unwrap_or(0),
            primary,
            backup,
            sources,
        }
    }

    /// Parses what the collector sent (a complete plan file): the probe's side.
    ///
    /// # Errors
    /// As [`PlanFile::parse`] and [`EffectivePlan::validate`].
    pub fn from_wire(text: &str, version: u64) -> Result<Self, PlanError> {
        let file = PlanFile::parse(text)?;
        let layer = Layer {
            scope: Scope::National,
            version,
            file,
        };
        let plan = Self::merge(&[&layer]);
        plan.validate()?;
        Ok(plan)
    }

    pub fn role(&self, role: LinkRole) -> &RolePlan {
        match role {
            LinkRole::Primary => &self.primary,
            LinkRole::Backup => &self.backup,
        }
    }

    /// Rules between values that may come from different scopes (the timeout's attempts fit
    /// in the interval).
    ///
    /// # Errors
    /// The first key at fault, with the scopes the values came from.
    pub fn validate(&self) -> Result<(), PlanError> {
        for role in [LinkRole::Primary, LinkRole::Backup] {
            if let Err((key, m)) = self.role(role).checks.validate_timing() {
                let from = |k: &str| {
                    self.sources
                        .get(&format!("{}.{k}", role.as_str()))
                        .cloned()
                        .unwrap_or_default()
                };
                return Err(PlanError::Invalid {
                    key: format!("{}.{key}", role.as_str()),
                    message: format!(
                        "{m} (interval from {}, attempts from {}, timeout from {})",
                        from("interval"),
                        from("attempts"),
                        from("timeout")
                    ),
                });
            }
        }
        Ok(())
    }

    /// The merged plan as a complete plan file: what is sent to the probe.
    pub fn wire_text(&self) -> String {
        let layer = |r: &RolePlan| RoleLayer {
            interval: Some(r.checks.interval),
            attempts: Some(r.checks.attempts),
            timeout: Some(r.checks.timeout),
            max_loss_pct: Some(r.thresholds.max_loss_pct),
            max_rtt_ms: Some(r.thresholds.max_rtt_ms),
            max_jitter_ms: Some(r.thresholds.max_jitter_ms),
            targets: Some(r.checks.targets.clone()),
        };
        let file = PlanFile {
            primary: Some(layer(&self.primary)),
            backup: Some(layer(&self.backup)),
        };
        // Plain data (strings, numbers, durations as text): serialising cannot fail.
        toml::to_string(&file).unwrap_or_default()
    }

    /// SHA-256 of the wire text, hex.
    pub fn hash(&self) -> String {
        content_hash(&self.wire_text())
    }
}

/// SHA-256 of `text`, hex: the content hash of a stored plan file and of a wire text.
pub fn content_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn complete(r: &RoleLayer) -> RolePlan {
    let d = Thresholds::default();
    RolePlan {
        checks: ChecksConfig {
            interval: r.interval.unwrap_or_else(default_interval),
            attempts: r.attempts.unwrap_or_else(default_attempts),
            timeout: r.timeout.unwrap_or_else(default_timeout),
            targets: r.targets.clone().unwrap_or_default(),
        },
        thresholds: Thresholds {
            max_loss_pct: r.max_loss_pct.unwrap_or(d.max_loss_pct),
            max_rtt_ms: r.max_rtt_ms.unwrap_or(d.max_rtt_ms),
            max_jitter_ms: r.max_jitter_ms.unwrap_or(d.max_jitter_ms),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn layer(scope: &str, version: u64, text: &str) -> Layer {
        Layer {
            scope: Scope::parse(scope).unwrap(),
            version,
            file: PlanFile::parse(text).unwrap(),
        }
    }

    #[test]
    fn narrower_scopes_override_value_by_value_and_say_so() {
        let national = layer(
            "national",
            1,
            "[primary]\ninterval = \"10s\"\nmax_rtt_ms = 100\n[[primary.targets]]\nkind = \"icmp\"\ntarget = \"10.255.0.1\"\n",
        );
        let ministry = layer("ministry:Intérieur", 3, "[primary]\ninterval = \"30s\"\n");
        let site = layer("site:S1", 2, "[backup]\nattempts = 3\n");
        // Given in any order.
        let p = EffectivePlan::merge(&[&site, &national, &ministry]);
        assert_eq!(p.version, 3);
        assert_eq!(p.primary.checks.interval, Duration::from_secs(30));
        assert_eq!(p.primary.thresholds.max_rtt_ms, 100);
        assert_eq!(p.primary.checks.targets.len(), 1);
        assert_eq!(p.backup.checks.attempts, 3);
        assert_eq!(p.backup.checks.targets.len(), 0);
        let src = |k: &str| p.sources[k].as_str();
        assert_eq!(src("primary.interval"), "ministry:Intérieur");
        assert_eq!(src("primary.max_rtt_ms"), "national");
        assert_eq!(src("primary.targets"), "national");
        assert_eq!(src("primary.attempts"), "default");
        assert_eq!(src("backup.attempts"), "site:S1");
        assert_eq!(p.sources.len(), 14);
        // The wire text parses back to the same values, and its hash is stable.
        let back = EffectivePlan::from_wire(&p.wire_text(), p.version).unwrap();
        assert_eq!(back.primary, p.primary);
        assert_eq!(back.backup, p.backup);
        assert_eq!(back.hash(), p.hash());
        assert_eq!(p.hash().len(), 64);
    }

    #[test]
    fn values_from_different_scopes_are_checked_together() {
        let national = layer("national", 1, "[primary]\ntimeout = \"5s\"\n");
        let site = layer("site:S1", 2, "[primary]\ninterval = \"5s\"\n");
        let e = EffectivePlan::merge(&[&national, &site])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("key `primary.timeout` must be above 0 and leave the attempts room"),
            "{e}"
        );
        assert!(
            e.contains("interval from site:S1, attempts from default, timeout from national"),
            "{e}"
        );
    }
}
