//! rie-collector: the central service that receives every RIE site probe's batches and the
//! NetFlow and sFlow of routers and switches, stores them, and serves the NOC, technicians and finance.
//!
//! Floors, top to bottom (a module imports only modules below it; `docs/architecture.md`):
//! - `main` (CLI) → `app` (wiring, start/stop under one cancellation token) → `config`
//!   (assembles each component's config);
//! - `ingest` (`probe_stream`, `netflow_udp`, `sflow_udp`), `api` (every HTTP route), `sinks` (InfluxDB);
//! - `commit`: the one writer. Every input reaches the store through it (one group commit),
//!   then one fan-out of what was committed: dedup marks, live site state, episodes, acks, sinks;
//! - `auth` (roles, tokens, the gate of every route), `episodes` (rules), `sites` (live
//!   state), `fleet` (the probes' versions and health, from that state), `plans` (check plans
//!   per scope, pushed to probes, their status), `site_gauges`,
//!   `indicators`, `reports`;
//! - `store` (the `Store` interface, its contract, SQLite or PostgreSQL, one schema), `inventory`,
//!   `metrics`, `pki`.
//!
//! Depends on `rie-proto`, `rie-common`, `rie-plan` and `rie-flow`; never on `rie-probe` or `rie-sim`.

pub mod api;
pub mod app;
pub mod auth;
pub mod commit;
pub mod config;
pub mod duties;
pub mod episodes;
pub mod finance;
pub mod fleet;
pub mod indicators;
pub mod ingest;
pub mod inventory;
pub mod metrics;
pub mod pki;
pub mod plans;
pub mod reports;
pub mod sinks;
pub mod site_gauges;
pub mod sites;
pub mod store;

pub use app::{is_user_start_error, run, Running, StartError};
