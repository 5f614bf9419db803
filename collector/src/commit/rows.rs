//! Turning what inputs deliver into store rows, checking each record on the way: an unusable
//! record is counted in `rie_collector_invalid_records_total{reason}` and left out, while the
//! rest of its batch (or NetFlow flush) is stored. One place for every input, so that each
//! counts what it leaves out in the same metric.

use rie_proto::{AvailabilitySample, FlowAggregate, TopTalker};

use crate::metrics::Metrics;
use crate::store::{FlowRow, LinkRow, TalkerRow};

/// Checks one record; an unusable record is counted in `rie_collector_invalid_records_total`
/// and left out, while the rest of its batch is stored.
pub fn flow_row(site: &str, f: &FlowAggregate, metrics: &Metrics) -> Option<FlowRow> {
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
        site: site.to_string(),
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

/// A top talker: a usable prefix (kept truncated to its length), counters that fit.
pub fn talker_row(site: &str, t: &TopTalker, metrics: &Metrics) -> Option<TalkerRow> {
    let (Ok(net), Ok(bytes), Ok(packets)) = (
        t.prefix.parse::<ipnet::IpNet>(),
        i64::try_from(t.bytes),
        i64::try_from(t.packets),
    ) else {
        metrics
            .invalid_records
            .with_label_values(&["bad_top_talker"])
            .inc();
        return None;
    };
    Some(TalkerRow {
        minute: t.minute.div_euclid(60) * 60,
        site: site.to_string(),
        prefix: net.trunc().to_string(),
        bytes,
        packets,
    })
}

/// An availability sample of one of the site's links (`known_link`), into its minute.
pub fn link_row(
    site: &str,
    s: &AvailabilitySample,
    known_link: bool,
    metrics: &Metrics,
) -> Option<LinkRow> {
    if !known_link {
        metrics
            .invalid_records
            .with_label_values(&["unknown_link"])
            .inc();
        return None;
    }
    let received = s.received.min(s.sent);
    let (rtt_sum_us, rtt_n) = match s.rtt_avg_us {
        Some(avg) => (i64::from(avg) * i64::from(received), i64::from(received)),
        None => (0, 0),
    };
    Some(LinkRow {
        minute: s.start.div_euclid(60) * 60,
        site: site.to_string(),
        link: s.link.as_str().to_string(),
        sent: i64::from(s.sent),
        received: i64::from(received),
        rtt_sum_us,
        rtt_n,
        rtt_max_us: s.rtt_max_us.map(i64::from),
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
        assert_eq!(flow_row("S1", &f, &m).unwrap().minute, 120);
        f.bytes = u64::MAX;
        assert_eq!(flow_row("S1", &f, &m), None);
        f.bytes = 3;
        f.exporter = Some("router".into());
        assert_eq!(flow_row("S1", &f, &m), None);
        let count = |r| m.invalid_records.with_label_values(&[r]).get();
        assert_eq!((count("counter_overflow"), count("bad_exporter")), (1, 1));
    }
}
