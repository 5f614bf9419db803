//! Inputs of the collector: probe connections over TLS (`probe_stream`), NetFlow/IPFIX
//! exported directly by routers (`netflow_udp`, templates persisted by `netflow_templates`).
//!
//! Shared here: the checks every flow record passes before it reaches the store, so that each
//! input counts what it leaves out in the same metric.

pub mod netflow_templates;
pub mod netflow_udp;
pub mod probe_stream;

use rie_proto::FlowAggregate;

use crate::metrics::Metrics;

/// A flow aggregate ready for the `flow_minute` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRow {
    pub minute: i64,
    pub exporter: String,
    pub protocol: i64,
    pub direction: i64,
    pub port_class: rie_proto::PortClass,
    pub flows: i64,
    pub packets: i64,
    pub bytes: i64,
}

/// Checks one record; an unusable record is counted in `rie_collector_invalid_records_total`
/// and left out, while the rest of its batch is stored.
pub fn validate_flow(f: &FlowAggregate, metrics: &Metrics) -> Option<FlowRow> {
    let invalid = |reason: &str| {
        metrics.invalid_records.with_label_values(&[reason]).inc();
        None
    };
    let (Ok(flows), Ok(packets), Ok(bytes)) = (
        i64::try_from(f.flows),
        i64::try_from(f.packets),
        i64::try_from(f.bytes),
    ) else {
        return invalid("counter_overflow");
    };
    let exporter = match &f.exporter {
        None => String::new(),
        Some(e) => match e.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => return invalid("bad_exporter"),
        },
    };
    Some(FlowRow {
        // Records are minute aggregates; a misaligned start is floored rather than rejected.
        minute: f.minute.div_euclid(60) * 60,
        exporter,
        protocol: i64::from(f.protocol),
        direction: f.direction.as_i64(),
        port_class: f.port_class,
        flows,
        packets,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rie_proto::Direction;

    #[test]
    fn bad_records_are_counted_not_stored() {
        let m = Metrics::new();
        let mut f = FlowAggregate {
            minute: 125,
            protocol: 6,
            direction: Direction::Inbound,
            exporter: Some("10.0.0.1".into()),
            flows: 1,
            packets: 2,
            bytes: 3,
            sampling_rate: 1,
            port_class: rie_proto::PortClass::Unknown,
        };
        assert_eq!(validate_flow(&f, &m).unwrap().minute, 120);
        f.bytes = u64::MAX;
        assert_eq!(validate_flow(&f, &m), None);
        f.bytes = 3;
        f.exporter = Some("router".into());
        assert_eq!(validate_flow(&f, &m), None);
        let count = |r| m.invalid_records.with_label_values(&[r]).get();
        assert_eq!((count("counter_overflow"), count("bad_exporter")), (1, 1));
    }
}
