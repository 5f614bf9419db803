//! Shared vocabulary of rie-telemetry: the probe→collector wire protocol (frames and typed
//! messages, see `docs/protocol.md`), the domain types both sides speak (site and link ids,
//! flow aggregates, availability samples, link status) and reference geography.
//!
//! This crate has no async runtime in it, so that the probe, the collector, tests and tools can
//! all use it, and so that its golden fixtures pin the wire format independently of transport.
//!
//! May import no crate of ours: every other crate stands on it.

pub mod codec;
pub mod geo;
pub mod ids;
pub mod messages;
pub mod model;
pub mod port_class;
pub mod talkers;

pub use codec::{decode, encode, DecodeError, EncodeError, MAX_FRAME_LEN};
pub use ids::{IdError, LinkId, SiteId};
pub use messages::{
    Ack, Batch, Heartbeat, HeartbeatAck, Hello, Message, ProbeHealth, RefuseCode, Refused, Welcome,
    HEALTH_INTERVAL_MS, MIN_SUPPORTED_VERSION, PROTOCOL_VERSION,
};
pub use model::{
    AvailabilitySample, CheckKind, Direction, EpisodeKind, FlowAggregate, LinkRole, LinkStatus,
    SiteState, Technology,
};
pub use port_class::PortClass;
pub use talkers::TopTalker;
