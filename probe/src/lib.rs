//! rie-probe: runs on an RIE site router, measures what crosses the site's access links and
//! how available they are, and streams batches to the collector.
//!
//! Layout: `config` (the one file a technician edits), `sources/` (what produces measurements;
//! live capture, NetFlow and checks arrive with their issues, `simulate` feeds demos and load
//! tests), `sequence` (durable batch numbering), `session` (one authenticated TLS connection)
//! and `uplink` (reconnecting sender with acks). `run` wires them.

pub mod check;
pub mod cli;
pub mod config;
pub mod meter;
pub mod netflow;
pub mod runner;
pub mod session;
pub mod sources;
pub mod spool;
pub mod status;
pub mod uplink;

pub use config::{ProbeConfig, ProbeConfigError};
pub use runner::run;
