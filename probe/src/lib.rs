//! rie-probe: runs on an RIE site router, measures what crosses the site's access links and
//! how available they are, and streams batches to the collector.
//!
//! Layout: `config` (the one file a technician edits), `sources/` (traffic: live capture and
//! the NetFlow relay), `meter/` (frame parsing and pcap replay into `rie-flow`'s flow table), `checks/` (ICMP/TCP/DNS/HTTP availability checks bound to each link), `links`
//! (interface and default-route state, failover detection), `spool` (crash-safe disk queue),
//! `session` (one authenticated TLS connection) and `uplink` (reconnecting sender with acks).
//! `plan` (the check plan the collector pushes: checked, kept next to the spool, applied live).
//! `runner` wires them; `check` and `status` serve the technician.
//!
//! May import `rie-proto`, `rie-common` and `rie-flow`; never the collector.

pub mod check;
pub mod checks;
pub mod config;
pub mod links;
pub mod meter;
pub mod plan;
pub mod runner;
pub mod session;
pub mod sources;
pub mod spool;
pub mod status;
pub mod uplink;

pub use config::{ProbeConfig, ProbeConfigError};
pub use runner::run;
