//! rie-collector: the central service that receives every RIE site probe's batches.
//!
//! Data path: `ingest::probe_stream` (one task per TLS connection) → bounded channel →
//! `store` (one writer thread: dedup, rollups, group commit, then acks) → `sites` (live state)
//! → `api` (HTTP JSON and `/metrics`). `run` wires them under one cancellation token.

pub mod api;
pub mod app;
pub mod cluster;
pub mod commit;
pub mod config;
pub mod episodes;
pub mod indicators;
pub mod ingest;
pub mod inventory;
pub mod metrics;
pub mod pki;
pub mod reports;
pub mod sinks;
pub mod site_gauges;
pub mod sites;
pub mod store;
pub mod stream_marks;

pub use app::{run, Running, StartError};
