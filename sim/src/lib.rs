//! rie-sim: the national RIE simulated end to end, for a newcomer's first minute and for load
//! tests. It owns the `rie-sim` binary's two jobs:
//! - `demo`: generates an inventory, a PKI and a credential per site, starts the real
//!   collector and one simulated probe per site speaking the real protocol over TLS on
//!   loopback (the probes in a child `rie-sim demo-probes` process);
//! - `loadgen`: N simulated probes against a running collector, with a JSON report of
//!   batches/s, ack latency and losses.
//!
//! It sits on top of the others and may import them all: `rie-collector` (its `run`, store,
//! PKI and inventory), `rie-probe` (uplink, session, spool, producer), `rie-flow` (the seeded
//! measurement simulator), `rie-common` and `rie-proto`. Nothing of ours imports it.

pub mod api_flood;
pub mod demo;
pub mod fleet;
pub mod loadgen;
