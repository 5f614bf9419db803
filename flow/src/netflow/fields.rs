//! Reads what a flow is worth from the version-specific fields of a v9 or IPFIX record:
//! counters (with their vendor variants), protocol, addresses, times and announced sampling.
//! Field numbers are IANA's (IPFIX information elements; v9 uses the same numbers below 128).

use std::net::IpAddr;

use netflow_parser::variable_versions::field_value::{DataNumber, DurationValue, FieldValue};
use netflow_parser::variable_versions::ipfix::lookup::{IANAIPFixField, IPFixField};
use netflow_parser::{IpfixFieldPair, V9FieldPair};

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_TO_UNIX_S: i64 = 2_208_988_800;

/// How a record's uptime stamps become wall clock.
#[derive(Debug, Clone, Copy)]
pub(super) enum Clock {
    /// v9: the header's wall clock and uptime at export.
    Uptime { now_ms: i64, uptime_ms: u32 },
}

/// What one record says, before sampling correction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub bytes: Option<u64>,
    pub packets: Option<u64>,
    pub protocol: Option<u8>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// Transport ports (IANA 7 and 11), when the record carries them.
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Announced sampling rate (> 1), when the record carries one.
    pub sampling: Option<u32>,
}

/// Raw values of the fields we use, by IANA element id, whatever the version.
#[derive(Default)]
pub(super) struct Raw {
    pub(super) octet_delta: Option<u64>,       // 1 (v9 IN_BYTES)
    pub(super) packet_delta: Option<u64>,      // 2 (v9 IN_PKTS)
    pub(super) post_octet: Option<u64>,        // 23 (v9 OUT_BYTES)
    pub(super) post_packet: Option<u64>,       // 24 (v9 OUT_PKTS)
    pub(super) octet_total: Option<u64>,       // 85
    pub(super) packet_total: Option<u64>,      // 86
    pub(super) initiator_octets: Option<u64>,  // 231
    pub(super) responder_octets: Option<u64>,  // 232
    pub(super) initiator_packets: Option<u64>, // 298
    pub(super) responder_packets: Option<u64>, // 299
    pub(super) sampling_interval: Option<u64>, // 34
    pub(super) sampler_random: Option<u64>,    // 50
    pub(super) packet_interval: Option<u64>,   // 305
    pub(super) packet_space: Option<u64>,      // 306
    pub(super) start_uptime: Option<u64>,      // 22
    pub(super) end_uptime: Option<u64>,        // 21
    pub(super) start_abs_ms: Option<i64>,      // 150, 152, 154, 156
    pub(super) end_abs_ms: Option<i64>,        // 151, 153, 155, 157
    pub(super) end_delta_us: Option<u64>,      // 159
    pub(super) init_ms: Option<i64>,           // 160
    pub(super) protocol: Option<u8>,
    pub(super) src: Option<IpAddr>,
    pub(super) dst: Option<IpAddr>,
    pub(super) sport: Option<u16>,
    pub(super) dport: Option<u16>,
}

impl Raw {
    /// Records one field by IANA id.
    fn set(&mut self, id: u16, v: &FieldValue) {
        let n = || num(v);
        match id {
            1 => self.octet_delta = n(),
            2 => self.packet_delta = n(),
            4 => self.protocol = n().and_then(|p| u8::try_from(p).ok()),
            7 => self.sport = n().and_then(|p| u16::try_from(p).ok()),
            11 => self.dport = n().and_then(|p| u16::try_from(p).ok()),
            8 | 27 => self.src = self.src.or(ip(v)),
            12 | 28 => self.dst = self.dst.or(ip(v)),
            21 => self.end_uptime = n(),
            22 => self.start_uptime = n(),
            23 => self.post_octet = n(),
            24 => self.post_packet = n(),
            34 => self.sampling_interval = n(),
            50 => self.sampler_random = n(),
            85 => self.octet_total = n(),
            86 => self.packet_total = n(),
            150 | 152 | 154 | 156 => self.start_abs_ms = abs_ms(v),
            151 | 153 | 155 | 157 => self.end_abs_ms = abs_ms(v),
            159 => self.end_delta_us = n(),
            160 => self.init_ms = abs_ms(v),
            231 => self.initiator_octets = n(),
            232 => self.responder_octets = n(),
            298 => self.initiator_packets = n(),
            299 => self.responder_packets = n(),
            305 => self.packet_interval = n(),
            306 => self.packet_space = n(),
            _ => {}
        }
    }

    pub(super) fn finish(self, uptime: Option<(i64, u32)>, export_ms: i64) -> Counters {
        let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
        // Delta counters first (what was seen since the last export); the totals only when
        // nothing else is there, since they repeat what earlier exports of the flow counted.
        let bytes = self
            .octet_delta
            .or(self.post_octet)
            .or(sum(self.initiator_octets, self.responder_octets))
            .or(self.octet_total);
        let packets = self
            .packet_delta
            .or(self.post_packet)
            .or(sum(self.initiator_packets, self.responder_packets))
            .or(self.packet_total);
        let sampling = match (self.packet_interval, self.packet_space) {
            // Systematic count-based sampling: `interval` packets taken out of
            // `interval + space`.
            (Some(i), Some(s)) if i > 0 => Some(i.saturating_add(s) / i),
            _ => self.sampling_interval.or(self.sampler_random),
        }
        .and_then(|r| u32::try_from(r).ok())
        .filter(|&r| r > 1);
        let from_uptime = |t: Option<u64>| -> Option<i64> {
            let t = u32::try_from(t?).ok()?;
            match (uptime, self.init_ms) {
                (Some((now_ms, up)), _) => Some(super::uptime_to_wall(now_ms, up, t)),
                (None, Some(init)) => Some(init + i64::from(t)),
                (None, None) => None,
            }
        };
        let end_ms = self
            .end_abs_ms
            .or_else(|| from_uptime(self.end_uptime))
            .or(self
                .end_delta_us
                .and_then(|d| i64::try_from(d / 1000).ok())
                .map(|d| export_ms - d));
        Counters {
            bytes,
            packets,
            protocol: self.protocol,
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
            start_ms: self.start_abs_ms.or_else(|| from_uptime(self.start_uptime)),
            end_ms,
            sampling,
        }
    }
}

/// A numeric value, including the odd-length ones the crate leaves as raw bytes (big-endian,
/// at most 8 bytes; wider is not a counter we can use).
fn num(v: &FieldValue) -> Option<u64> {
    match v {
        FieldValue::Vec(b) | FieldValue::DataNumber(DataNumber::Vec(b)) if b.len() <= 8 => {
            Some(b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
        }
        // Straight to the wide reading (this runs for every field of every record); only the
        // crate's protocol enum needs its own conversion.
        FieldValue::ProtocolType(p) => Some(u64::from(u8::from(*p))),
        _ => v.as_u64(),
    }
}

fn ip(v: &FieldValue) -> Option<IpAddr> {
    match v {
        FieldValue::Ip4Addr(a) => Some(IpAddr::V4(*a)),
        FieldValue::Ip6Addr(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// Absolute time in Unix milliseconds (NTP-format values are shifted from 1900).
fn abs_ms(v: &FieldValue) -> Option<i64> {
    let ms = i64::try_from(v.as_u64()?).ok()?;
    match v {
        FieldValue::Duration(DurationValue::MicrosNtp { .. } | DurationValue::NanosNtp { .. }) => {
            Some(ms - NTP_TO_UNIX_S * 1000)
        }
        _ => Some(ms),
    }
}

/// Counters of a v9 data or options record.
pub(super) fn v9_counters(rec: &[V9FieldPair], clock: Clock) -> Counters {
    let mut raw = Raw::default();
    for (field, value) in rec {
        // v9 numbers follow IANA's; FIRST/LAST_SWITCHED (22/21) are uptimes.
        let id: u16 = (*field).into();
        raw.set(id, value);
    }
    let Clock::Uptime { now_ms, uptime_ms } = clock;
    raw.finish(Some((now_ms, uptime_ms)), now_ms)
}

/// Counters of an IPFIX data or options record (IANA elements; enterprise ones ignored).
pub(super) fn ipfix_counters(rec: &[IpfixFieldPair], export_ms: i64) -> Counters {
    let mut raw = Raw::default();
    for (field, value) in rec {
        let IPFixField::IANA(f) = field else { continue };
        if let Some(id) = iana_id(f) {
            raw.set(id, value);
        }
    }
    raw.finish(None, export_ms)
}

/// IANA id of the elements [`Raw::set`] reads (the crate's enum has no numeric conversion).
fn iana_id(f: &IANAIPFixField) -> Option<u16> {
    use IANAIPFixField as F;
    Some(match f {
        F::OctetDeltaCount => 1,
        F::PacketDeltaCount => 2,
        F::ProtocolIdentifier => 4,
        F::SourceTransportPort => 7,
        F::SourceIpv4address => 8,
        F::DestinationTransportPort => 11,
        F::DestinationIpv4address => 12,
        F::FlowEndSysUpTime => 21,
        F::FlowStartSysUpTime => 22,
        F::PostOctetDeltaCount => 23,
        F::PostPacketDeltaCount => 24,
        F::SourceIpv6address => 27,
        F::DestinationIpv6address => 28,
        F::SamplingInterval => 34,
        F::SamplerRandomInterval => 50,
        F::OctetTotalCount => 85,
        F::PacketTotalCount => 86,
        F::FlowStartSeconds => 150,
        F::FlowEndSeconds => 151,
        F::FlowStartMilliseconds => 152,
        F::FlowEndMilliseconds => 153,
        F::FlowStartMicroseconds => 154,
        F::FlowEndMicroseconds => 155,
        F::FlowStartNanoseconds => 156,
        F::FlowEndNanoseconds => 157,
        F::FlowEndDeltaMicroseconds => 159,
        F::SystemInitTimeMilliseconds => 160,
        F::InitiatorOctets => 231,
        F::ResponderOctets => 232,
        F::InitiatorPackets => 298,
        F::ResponderPackets => 299,
        F::SamplingPacketInterval => 305,
        F::SamplingPacketSpace => 306,
        F::Unknown(n) => *n,
        _ => return None,
    })
}
