//! rie-flow: what the probe and the collector compute from flows, as plain data in and out,
//! with no async runtime and no I/O (sockets, files and clocks belong to the callers).
//!
//! It owns:
//! - `netflow`: NetFlow v5, v9 and IPFIX decoding with per-exporter templates and sampling
//!   ([`netflow::Decoder`]), and the sum of its records into minute aggregates
//!   ([`netflow::Aggregator`]): the probe's relay and the collector's NetFlow input share it;
//! - `sflow`: sFlow v5 decoding (flow samples with their packet headers, interface counter
//!   samples) into the same flow records, with per-agent sequences and counter baselines
//!   ([`sflow::Decoder`]);
//! - `flow_table`: the bounded 5-tuple flow table with active, inactive and FIN/RST expiry,
//!   fed by the probe's live capture and pcap replay (their frame parsing stays in the probe);
//! - `aggregate`: flow records to a batch's minute aggregates per protocol, direction and
//!   port class, the site's prefixes deciding direction ([`aggregate::direction_in`]), and the
//!   top-talkers table ([`aggregate::Talkers`]) every input counts through;
//! - `simulate`: seeded, plausible measurements (traffic, link checks, incidents) for the
//!   demo, the load generator, benches and end-to-end tests.
//!
//! It may import only `rie-proto` and pure crates (`netflow_parser`, `etherparse`, `ipnet`, `rand`, `serde`,
//! `thiserror`): never tokio, nor `rie-probe`, `rie-collector` or `rie-common`.

pub mod aggregate;
pub mod flow_table;
pub mod netflow;
pub mod sflow;
pub mod simulate;
