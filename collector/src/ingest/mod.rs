//! Inputs of the collector: probe connections over TLS (`probe_stream`), NetFlow/IPFIX
//! exported directly by routers (`netflow_udp`, templates persisted by `netflow_templates`),
//! sFlow v5 sent by switches and routers (`sflow_udp`).
//!
//! Inputs hand what they receive to the commit stage (`crate::commit`) and never write the
//! store themselves. May import: `commit`, `sites`, `store` (reads: credentials),
//! `inventory`, `metrics`, `rie-flow`.

pub mod netflow_templates;
pub mod netflow_udp;
pub mod probe_stream;
pub mod sflow_udp;
pub mod source_labels;
