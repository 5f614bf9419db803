//! Domain types carried in batches and used across the system: what a probe measured
//! (flow aggregates, availability samples, link status) and the vocabulary of sites and links
//! (roles, access technologies, site states).
//!
//! Wire compatibility: every field added after protocol version 1 must carry
//! `#[serde(default)]`, so that a collector can decode batches from probes one version behind.

use serde::{Deserialize, Serialize};

use crate::ids::LinkId;
pub use crate::port_class::PortClass;

/// Role of an access link at its site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkRole {
    Primary,
    Backup,
}

impl LinkRole {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkRole::Primary => "primary",
            LinkRole::Backup => "backup",
        }
    }
}

/// Access technology of a link; drives plausible bandwidths, prices and failure modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Technology {
    Fibre,
    Xdsl,
    #[serde(rename = "4g")]
    FourG,
    #[serde(rename = "5g")]
    FiveG,
    Satellite,
}

impl Technology {
    pub const ALL: [Technology; 5] = [
        Technology::Fibre,
        Technology::Xdsl,
        Technology::FourG,
        Technology::FiveG,
        Technology::Satellite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Technology::Fibre => "fibre",
            Technology::Xdsl => "xdsl",
            Technology::FourG => "4g",
            Technology::FiveG => "5g",
            Technology::Satellite => "satellite",
        }
    }

    /// Parses the inventory spelling (`fibre`, `xdsl`, `4g`, `5g`, `satellite`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// State of a site as the NOC sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteState {
    /// Primary link carries traffic and checks are within thresholds.
    Up,
    /// Reachable, but loss or latency is past the configured thresholds.
    Degraded,
    /// Primary failed; the backup link carries the traffic.
    OnBackup,
    /// No link reaches the core.
    Down,
    /// The probe has stopped reporting (not, by itself, proof that the site is down).
    Silent,
    /// The probe has never reported since the inventory was loaded.
    Unknown,
}

impl SiteState {
    pub const ALL: [SiteState; 6] = [
        SiteState::Up,
        SiteState::Degraded,
        SiteState::OnBackup,
        SiteState::Down,
        SiteState::Silent,
        SiteState::Unknown,
    ];

    /// The documented, stable numeric code (`rie_site_state`, InfluxDB `state_code`, the
    /// status page's digits): 0 up, 1 degraded, 2 on_backup, 3 down, 4 silent, 5 unknown.
    pub fn code(self) -> u8 {
        match self {
            SiteState::Up => 0,
            SiteState::Degraded => 1,
            SiteState::OnBackup => 2,
            SiteState::Down => 3,
            SiteState::Silent => 4,
            SiteState::Unknown => 5,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SiteState::Up => "up",
            SiteState::Degraded => "degraded",
            SiteState::OnBackup => "on_backup",
            SiteState::Down => "down",
            SiteState::Silent => "silent",
            SiteState::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Traffic direction relative to the site's own prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
    /// Neither or both ends belong to the site (transit, or no prefixes configured).
    Unknown,
}

impl Direction {
    pub fn as_i64(self) -> i64 {
        match self {
            Direction::Inbound => 1,
            Direction::Outbound => 2,
            Direction::Unknown => 0,
        }
    }
}

/// Traffic of one site for one minute, one IP protocol and one direction, as counted by the
/// probe (capture) or relayed from the site router (NetFlow). Counters are already corrected for
/// sampling; `sampling_rate` records the correction that was applied (1 = unsampled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowAggregate {
    /// Start of the minute, Unix seconds, a multiple of 60.
    pub minute: i64,
    /// IANA protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6...).
    pub protocol: u8,
    pub direction: Direction,
    /// Address of the NetFlow exporter when the data was relayed from a router, else `None`.
    #[serde(default)]
    pub exporter: Option<String>,
    pub flows: u64,
    pub packets: u64,
    /// Bytes at the IP layer (IP total length), the unit NetFlow uses.
    pub bytes: u64,
    #[serde(default = "one")]
    pub sampling_rate: u32,
    /// Class of the service port (see `port_class`); `unknown` from probes that predate it.
    #[serde(default)]
    pub port_class: PortClass,
}

fn one() -> u32 {
    1
}

/// Kind of availability check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Icmp,
    Tcp,
    Dns,
    Http,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Icmp => "icmp",
            CheckKind::Tcp => "tcp",
            CheckKind::Dns => "dns",
            CheckKind::Http => "http",
        }
    }
}

/// Outcome of one check towards one target over one link, for one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailabilitySample {
    pub link: LinkId,
    pub check: CheckKind,
    pub target: String,
    /// Start of the interval, Unix seconds (probe clock, corrected by the collector).
    pub start: i64,
    pub interval_s: u32,
    /// Probes sent and answers received during the interval.
    pub sent: u32,
    pub received: u32,
    #[serde(default)]
    pub rtt_min_us: Option<u32>,
    #[serde(default)]
    pub rtt_avg_us: Option<u32>,
    #[serde(default)]
    pub rtt_max_us: Option<u32>,
    #[serde(default)]
    pub rtt_p95_us: Option<u32>,
    #[serde(default)]
    pub jitter_us: Option<u32>,
}

impl AvailabilitySample {
    /// Share of probes lost, 0.0 to 1.0; a sample that sent nothing counts as total loss
    /// because it proves nothing about the link.
    pub fn loss_ratio(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        1.0 - f64::from(self.received.min(self.sent)) / f64::from(self.sent)
    }
}

/// State of one access link as the probe sees it from the router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub link: LinkId,
    /// Interface up and the link reaches the core.
    pub up: bool,
    /// The link carries the default route (and so the site's traffic).
    pub active: bool,
    /// When the probe last saw `up` or `active` change, Unix milliseconds (probe clock).
    #[serde(default)]
    pub changed_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_their_inventory_spelling() {
        for t in Technology::ALL {
            assert_eq!(Technology::parse(t.as_str()), Some(t));
        }
        for s in SiteState::ALL {
            assert_eq!(SiteState::parse(s.as_str()), Some(s));
        }
        assert_eq!(Technology::parse("adsl"), None);
    }

    #[test]
    fn loss_ratio_treats_no_probe_as_total_loss() {
        let mut s = AvailabilitySample {
            link: LinkId::new("L1").unwrap(),
            check: CheckKind::Icmp,
            target: "core".into(),
            start: 0,
            interval_s: 10,
            sent: 10,
            received: 7,
            rtt_min_us: None,
            rtt_avg_us: None,
            rtt_max_us: None,
            rtt_p95_us: None,
            jitter_us: None,
        };
        assert!((s.loss_ratio() - 0.3).abs() < 1e-9);
        s.sent = 0;
        assert_eq!(s.loss_ratio(), 1.0);
    }
}

/// Kinds of episode of a site (the collector's `episodes.kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EpisodeKind {
    Outage,
    Failover,
    Degraded,
    Silent,
}

impl EpisodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EpisodeKind::Outage => "outage",
            EpisodeKind::Failover => "failover",
            EpisodeKind::Degraded => "degraded",
            EpisodeKind::Silent => "silent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Outage, Self::Failover, Self::Degraded, Self::Silent]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// The episode a site in `state` is living, if any.
    pub fn of_state(state: SiteState) -> Option<Self> {
        match state {
            SiteState::Down => Some(Self::Outage),
            SiteState::OnBackup => Some(Self::Failover),
            SiteState::Degraded => Some(Self::Degraded),
            _ => None,
        }
    }
}
