//! Outputs of the collector besides its own store and API: each sink receives what the store
//! writer committed (never before: a sink sees only data that is durable here) and keeps its
//! own backlog, so that a slow or absent destination never slows ingest.

pub mod influx;
pub mod line;
