//! Typed messages of the probe→collector protocol (see `docs/protocol.md`).
//!
//! A connection is: probe sends [`Hello`]; collector answers [`Welcome`] or [`Refused`];
//! then the probe sends [`Batch`]es (each answered by an [`Ack`] once it is durably stored) and
//! [`Heartbeat`]s when it has nothing to send (answered by [`HeartbeatAck`]).
//! From version 2, the collector also sends a [`Plan`] (the site's effective check plan)
//! right after the welcome and whenever that plan changes; the probe answers each with
//! [`PlanApplied`] or [`PlanRefused`]. A version-1 probe is never sent a plan.
//!
//! Versioning: messages are MessagePack maps keyed by field name, so a peer ignores fields it
//! does not know and fills fields it does not receive from `#[serde(default)]`. A field added in
//! a later version must have a default; a field is never removed or renamed while a supported
//! version still sends it. [`PROTOCOL_VERSION`] is raised when meaning changes, and a collector
//! serves probes down to [`MIN_SUPPORTED_VERSION`], one version behind.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::SiteId;
use crate::model::{AvailabilitySample, FlowAggregate, LinkStatus};

/// Protocol version spoken by this build.
pub const PROTOCOL_VERSION: u16 = 2;

/// First version whose probes are sent [`Plan`]s.
pub const PLAN_VERSION: u16 = 2;

/// Oldest probe protocol version this build's collector still serves: one version behind, so
/// that 14,000 routers can be upgraded over months.
pub const MIN_SUPPORTED_VERSION: u16 = if PROTOCOL_VERSION > 1 {
    PROTOCOL_VERSION - 1
} else {
    1
};

/// Every frame carries exactly one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    Hello(Hello),
    Welcome(Welcome),
    Refused(Refused),
    Batch(Batch),
    Ack(Ack),
    Heartbeat(Heartbeat),
    HeartbeatAck(HeartbeatAck),
    /// Version 2: collector → probe.
    Plan(Plan),
    /// Version 2: probe → collector.
    PlanApplied(PlanApplied),
    /// Version 2: probe → collector.
    PlanRefused(PlanRefused),
}

impl Message {
    /// Short name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Welcome(_) => "welcome",
            Message::Refused(_) => "refused",
            Message::Batch(_) => "batch",
            Message::Ack(_) => "ack",
            Message::Heartbeat(_) => "heartbeat",
            Message::HeartbeatAck(_) => "heartbeat_ack",
            Message::Plan(_) => "plan",
            Message::PlanApplied(_) => "plan_applied",
            Message::PlanRefused(_) => "plan_refused",
        }
    }
}

/// First frame of a connection, from the probe.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u16,
    pub site: SiteId,
    /// The site's secret token; the collector keeps only its SHA-256.
    pub token: String,
    /// `rie-probe` version, for fleet upgrade tracking.
    pub probe_version: String,
    /// Probe wall clock at send time, Unix milliseconds, for offset estimation.
    pub probe_time_ms: i64,
    /// Identifies the probe's sequence stream. A probe keeps it with its sequence counter and
    /// draws a new one if that state is lost, so that restarting at sequence 1 never collides
    /// with batches already stored.
    pub stream: u64,
}

impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hello")
            .field("protocol_version", &self.protocol_version)
            .field("site", &self.site)
            .field("token", &"********")
            .field("probe_version", &self.probe_version)
            .field("probe_time_ms", &self.probe_time_ms)
            .field("stream", &self.stream)
            .finish()
    }
}

/// Collector's answer to an accepted hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Version the collector will speak on this connection (the probe's own).
    pub protocol_version: u16,
    /// Collector wall clock, Unix milliseconds.
    pub collector_time_ms: i64,
    /// Highest sequence of this (site, stream) already stored, so the probe can drop what it
    /// still holds up to there (its ack may have been lost in a crash).
    pub last_stored_seq: Option<u64>,
}

/// Why a hello was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefuseCode {
    UnsupportedVersion,
    UnknownSite,
    BadToken,
    Overloaded,
    /// A code this build does not know (a newer collector's, or the `redirect` of the removed
    /// sharded cluster); the text reason still explains it.
    #[serde(other)]
    Other,
}

/// Collector's answer to a refused hello; the connection is closed right after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub code: RefuseCode,
    /// Human-readable reason with the fix, shown to the technician by `rie-probe`.
    pub reason: String,
    // A `redirect` field (`host:port`, sharded cluster) was sent by some version-1 collectors
    // with the `redirect` code; it was optional and left out when empty, so removing it leaves
    // the encoding of every other refusal unchanged, and a frame that still carries it decodes
    // (unknown fields are ignored) as a refusal with code `Other`.
}

/// One interval of measurements from a probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Strictly increasing per (site, stream), starting at 1.
    pub seq: u64,
    /// Probe wall clock when the batch was closed, Unix milliseconds.
    pub created_ms: i64,
    #[serde(default)]
    pub flows: Vec<FlowAggregate>,
    #[serde(default)]
    pub samples: Vec<AvailabilitySample>,
    #[serde(default)]
    pub links: Vec<LinkStatus>,
    /// Top remote prefixes by bytes per minute (capture meter only; added after v1).
    #[serde(default)]
    pub top_talkers: Vec<crate::talkers::TopTalker>,
}

/// The batch `seq` is durably stored (or had been already: `duplicate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub seq: u64,
    #[serde(default)]
    pub duplicate: bool,
}

/// Sent by the probe when it has had nothing to send for a while, and at least every
/// [`HEALTH_INTERVAL_MS`] with its [`ProbeHealth`] (added after v1: a v1 collector ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub probe_time_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<ProbeHealth>,
}

/// How often a probe reports its health, at least (milliseconds).
pub const HEALTH_INTERVAL_MS: i64 = 60_000;

/// What the central fleet view needs of a probe, beyond its hello: the spool backlog and the
/// losses of its measurement sources (what `rie-probe status` shows locally). Counters are
/// since the probe's start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeHealth {
    /// Batches waiting in the spool for an acknowledgement.
    pub spool_batches: u64,
    pub spool_bytes: u64,
    /// Probe clock of the oldest of them, Unix ms.
    #[serde(default)]
    pub spool_oldest_ms: Option<i64>,
    /// Batches the spool gave up (budget exceeded, unreadable).
    #[serde(default)]
    pub spool_dropped: u64,
    /// Frames the kernel dropped because the capture could not keep up (None: no capture, or
    /// not known).
    #[serde(default)]
    pub capture_kernel_drops: Option<u64>,
    /// NetFlow datagrams relayed from the router, and those that failed to decode (None: no
    /// relay).
    #[serde(default)]
    pub relay_datagrams: Option<u64>,
    #[serde(default)]
    pub relay_errors: Option<u64>,
    /// The same for the sFlow relay.
    #[serde(default)]
    pub sflow_datagrams: Option<u64>,
    #[serde(default)]
    pub sflow_errors: Option<u64>,
}

/// Echoes the heartbeat's clock with the collector's, so either side can estimate offset and
/// round-trip time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    pub probe_time_ms: i64,
    pub collector_time_ms: i64,
}

/// The site's effective check plan (version 2, collector → probe): a complete plan file in
/// TOML (`rie-plan`'s format), so that a probe validates it with the same code as
/// `rie-collector plan check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Increases with every change of the site's plan.
    pub version: u64,
    /// SHA-256 (hex) of `toml`.
    pub hash: String,
    pub toml: String,
}

/// The probe runs plan `version` (and keeps it for its next start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanApplied {
    pub version: u64,
    pub hash: String,
}

/// The probe cannot run plan `version` (unknown check kind, interface missing, undecodable):
/// it keeps the plan it ran before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRefused {
    pub version: u64,
    /// What is wrong and the fix, shown in the collector's API.
    pub reason: String,
}
