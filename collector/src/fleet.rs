//! The probe fleet as the centre sees it: per probe, its version and protocol version, last
//! hello, clock offset and its last health report (spool backlog, capture drops, relay
//! errors), all from the live site states (`sites`: hellos and heartbeats update them, and
//! they are persisted with the site's state, so collectors sharing a database see each
//! other's probes once a batch of theirs is committed). Counts by version for the API and the
//! gauges, and the rule that says a probe's backlog "keeps growing".
//!
//! Owns those definitions; `api` serves them, `site_gauges` exports them. May import `sites`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::sites::SiteView;

/// Health reports in a row with a larger spool backlog than the one before, from which the
/// backlog is said to keep growing (reports come at least every minute: three minutes of
/// growth at least).
pub const GROWING_REPORTS: u32 = 3;

/// Whether this site's probe backlog keeps growing.
pub fn backlog_growing(v: &SiteView) -> bool {
    v.live.backlog_growth >= GROWING_REPORTS && v.live.health.is_some_and(|h| h.spool_batches > 0)
}

/// Counts over a set of sites: probes by version and by protocol version (`none` for a site
/// whose probe never said hello), and those reporting a backlog.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct FleetCounts {
    pub sites: u64,
    pub by_probe_version: BTreeMap<String, u64>,
    pub by_protocol_version: BTreeMap<String, u64>,
    /// Probes that sent a health report.
    pub reporting_health: u64,
    /// Of them, with unacknowledged batches in their spool.
    pub with_backlog: u64,
    pub backlog_growing: u64,
    /// Batches waiting in all those spools.
    pub spool_batches: u64,
}

impl FleetCounts {
    pub fn add(&mut self, v: &SiteView) {
        self.sites += 1;
        let version = v
            .live
            .probe_version
            .clone()
            .unwrap_or_else(|| "none".into());
        *self.by_probe_version.entry(version).or_default() += 1;
        let proto = v
            .live
            .protocol_version
            .map_or_else(|| "none".to_string(), |p| p.to_string());
        *self.by_protocol_version.entry(proto).or_default() += 1;
        if let Some(h) = v.live.health {
            self.reporting_health += 1;
            self.with_backlog += u64::from(h.spool_batches > 0);
            self.spool_batches += h.spool_batches;
        }
        self.backlog_growing += u64::from(backlog_growing(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites::SiteLive;
    use rie_proto::{ProbeHealth, SiteState};

    fn view(version: Option<&str>, backlog: Option<(u64, u32)>) -> SiteView {
        SiteView {
            state: SiteState::Up,
            state_since_ms: None,
            live: SiteLive {
                probe_version: version.map(String::from),
                protocol_version: version.map(|_| 1),
                health: backlog.map(|(b, _)| ProbeHealth {
                    spool_batches: b,
                    ..Default::default()
                }),
                backlog_growth: backlog.map_or(0, |(_, g)| g),
                ..Default::default()
            },
            connected: true,
            clock_suspect: false,
        }
    }

    #[test]
    fn counts_by_version_and_backlog() {
        let mut c = FleetCounts::default();
        for v in [
            view(Some("0.1.0"), Some((0, 0))),
            view(Some("0.1.0"), Some((40, 3))),
            view(Some("0.2.0"), Some((7, 2))),
            view(None, None),
        ] {
            c.add(&v);
        }
        let m = |kv: &[(&str, u64)]| kv.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(
            c,
            FleetCounts {
                sites: 4,
                by_probe_version: m(&[("0.1.0", 2), ("0.2.0", 1), ("none", 1)]),
                by_protocol_version: m(&[("1", 3), ("none", 1)]),
                reporting_health: 3,
                with_backlog: 2,
                backlog_growing: 1,
                spool_batches: 47,
            }
        );
    }
}
