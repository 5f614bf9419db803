//! sFlow v5 decoding, shared by the collector (agents sending to `[sflow] listen`) and, like
//! NetFlow, usable by a relay: datagrams in, [`FlowRecord`]s (one per flow sample, already
//! scaled by the sampling rate) and [`CounterDelta`]s (interface counters since the previous
//! sample of the same interface) out. Pure: no socket, no clock (the caller passes the time of
//! reception, since sFlow carries none).
//!
//! Written here rather than taken from a crate: the sFlow crates found (`flowparser-sflow`,
//! `sflow-parser`) are young, decode records but not the sampled packet headers, and stop a
//! datagram at its first bad sample, where this decoder must keep the samples around it (see
//! below). Packet headers are decoded by `etherparse` (lax mode), as the probe's meter does.
//!
//! What is decoded (sFlow v5, <https://sflow.org/sflow_version_5.txt>, XDR, big-endian):
//! - the datagram header: version 5, agent address (IPv4 or IPv6), sub-agent id, datagram
//!   sequence, agent uptime (ms), number of samples;
//! - flow samples (format 1) and expanded flow samples (format 3): sample sequence, source id,
//!   sampling rate, sample pool, drops, then the records: **raw packet header** (format 1;
//!   header protocol 1 = Ethernet with 802.1Q/QinQ tags, 11 = IPv4, 12 = IPv6), or, when a
//!   sample carries no usable header, **sampled IPv4 / IPv6** (formats 3 and 4);
//! - counter samples (format 2) and expanded counter samples (format 4) with **generic
//!   interface counters** (counter record 1): ifIndex, ifSpeed, octets, errors, discards.
//!
//! Everything else (other enterprises, extended records, other counter blocks) is skipped by
//! its length, as the spec intends.
//!
//! Counting rules:
//! - **One flow sample = one [`FlowRecord`]** with `packets = sampling_rate` and
//!   `bytes = IP length × sampling_rate`: the IP length is read from the sampled IP header
//!   (IPv4 total length, IPv6 payload length + 40), the unit NetFlow octets and the probe's
//!   meter count, so sFlow sums with them. Non-IP frames (ARP, LLDP...) are counted in
//!   [`Decoded::non_ip_samples`] and left out.
//! - **Lost samples** are detected per agent, sub-agent and source: a gap in the sample
//!   sequence numbers ([`Decoded::lost_samples`]); the agent's own `drops` counter (samples
//!   it could not send) is reported as a delta ([`Decoded::agent_drops`]); the sample pool's
//!   delta ([`Decoded::pool_frames`]) is the number of frames the agent saw, to compare with
//!   the frames estimated from the samples received. Lost datagrams: gaps in the datagram
//!   sequence ([`Decoded::lost_datagrams`]).
//! - **Agent restart**: the datagram sequence or the uptime going backwards (not a wrap of
//!   the 32-bit uptime after 49.7 days) resets the state
//!   of that agent (sequences, pools, counter baselines) and is reported
//!   ([`Decoded::restarted`]): no negative or wrapped-looking delta is produced from it.
//! - **Counter wrap**: 64-bit octet counters filled from 32-bit ones by some agents wrap at
//!   2³², the 32-bit error and discard counters too; a smaller value with no restart is a
//!   wrap, and the delta is computed modulo the counter's width.
//!
//! Bounds and bad input (the decoder never panics; `fuzz/fuzz_targets/sflow_decode.rs`):
//! - nothing is allocated from a count in the datagram: the loops walk the bytes, so a
//!   datagram of N bytes does at most N/8 steps;
//! - a **sample that claims more bytes than the datagram holds** ends the datagram
//!   ([`DecodeReason::SampleOverrun`]): the samples before it are kept;
//! - a **record that claims more bytes than its sample holds** skips that sample
//!   ([`DecodeReason::RecordOverrun`]): the sample's length is known, so the samples after it
//!   are kept;
//! - agents tracked: [`DecoderConfig::max_agents`] (then the state of all is forgotten at
//!   once, like NetFlow's sampling table: a flood of spoofed agents costs bounded memory);
//!   sources per agent: [`DecoderConfig::max_sources_per_agent`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use rie_proto::PortClass;

use crate::netflow::FlowRecord;

/// The `version` given to the [`FlowRecord`]s of sFlow samples: the sFlow version. Nothing
/// downstream keys on it (the aggregates carry the agent address as exporter).
pub const RECORD_VERSION: u16 = 5;

/// Limits of the decoder; the defaults fit a national collector (14,000 routers and their
/// switches).
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    /// Agents (address × sub-agent) whose sequences and counter baselines are kept.
    pub max_agents: usize,
    /// Sources (interfaces) per agent whose sample sequences and counters are kept.
    pub max_sources_per_agent: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            max_agents: 50_000,
            max_sources_per_agent: 1_024,
        }
    }
}

/// Why a datagram, or part of it, could not be used: the `reason` label of
/// `rie_collector_sflow_decode_errors_total`. A bounded set, never input text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeReason {
    Empty,
    /// Shorter than its header.
    Truncated,
    /// Not sFlow version 5.
    UnsupportedVersion,
    /// Agent address type neither 1 (IPv4) nor 2 (IPv6).
    BadAgentAddress,
    /// A sample longer than what is left of the datagram: the rest of it is lost.
    SampleOverrun,
    /// A record longer than what is left of its sample, or a sample body too short for its
    /// fixed fields: that sample is skipped, the others kept.
    RecordOverrun,
    /// A flow sample with no usable packet header or sampled IP record (nothing to count).
    NoPacketHeader,
}

impl DecodeReason {
    pub const ALL: [DecodeReason; 7] = [
        DecodeReason::Empty,
        DecodeReason::Truncated,
        DecodeReason::UnsupportedVersion,
        DecodeReason::BadAgentAddress,
        DecodeReason::SampleOverrun,
        DecodeReason::RecordOverrun,
        DecodeReason::NoPacketHeader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DecodeReason::Empty => "empty",
            DecodeReason::Truncated => "truncated",
            DecodeReason::UnsupportedVersion => "unsupported_version",
            DecodeReason::BadAgentAddress => "bad_agent_address",
            DecodeReason::SampleOverrun => "sample_overrun",
            DecodeReason::RecordOverrun => "record_overrun",
            DecodeReason::NoPacketHeader => "no_packet_header",
        }
    }
}

/// What one datagram gave, besides the records appended to the caller's vectors.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The agent address of the header, when the header could be read.
    pub agent: Option<IpAddr>,
    pub sub_agent: u32,
    /// Flow samples turned into records.
    pub flow_samples: u64,
    /// Counter samples read (a first sample of an interface gives a baseline, no delta).
    pub counter_samples: u64,
    /// Flow samples whose packet was not IP (ARP, LLDP...): left out.
    pub non_ip_samples: u64,
    /// Samples missing from the sample sequences since the previous datagram.
    pub lost_samples: u64,
    /// Samples the agent says it dropped itself (delta of its `drops` counters).
    pub agent_drops: u64,
    /// Frames the agent saw on its sampled sources since their previous sample (delta of the
    /// sample pools), for comparison with `flow_samples × rate`.
    pub pool_frames: u64,
    /// Datagrams missing from the agent's datagram sequence.
    pub lost_datagrams: u64,
    /// The agent restarted (sequence or uptime went backwards): its state was reset.
    pub restarted: bool,
    /// Errors met; what was decoded around them is kept.
    pub errors: Vec<DecodeReason>,
}

/// Interface counters of one counter sample, as a difference from the previous sample of the
/// same interface (agent × sub-agent × ifIndex). `interval_ms` is the agent's uptime between
/// the two samples' datagrams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterDelta {
    pub agent: IpAddr,
    pub sub_agent: u32,
    pub if_index: u32,
    /// Interface speed, bit/s, as the agent reports it now (0: unknown).
    pub if_speed: u64,
    pub interval_ms: u64,
    pub in_octets: u64,
    pub out_octets: u64,
    pub in_errors: u64,
    pub out_errors: u64,
    pub in_discards: u64,
    pub out_discards: u64,
}

/// Generic interface counters as read (counter record format 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct IfCounters {
    if_speed: u64,
    in_octets: u64,
    out_octets: u64,
    in_errors: u32,
    out_errors: u32,
    in_discards: u32,
    out_discards: u32,
}

#[derive(Debug, Default)]
struct SourceState {
    /// (sample sequence, sample pool, drops) of the last flow sample.
    flow: Option<(u32, u32, u32)>,
    /// Last counter sample sequence of this source.
    counter_seq: Option<u32>,
}

#[derive(Debug, Default)]
struct AgentState {
    seq: u32,
    uptime_ms: u32,
    sources: HashMap<u32, SourceState>,
    /// Last generic counters per ifIndex, with the uptime of their datagram.
    counters: HashMap<u32, (IfCounters, u32)>,
}

/// Stateful decoder: sequences and counter baselines per agent.
#[derive(Debug)]
pub struct Decoder {
    agents: HashMap<(IpAddr, u32), AgentState>,
    cfg: DecoderConfig,
}

/// A read cursor over XDR data: every read is checked, none panics.
struct Xdr<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Xdr<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    fn left(&self) -> usize {
        self.data.len() - self.pos
    }
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let b = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(b)
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from(self.u32()?) << 32 | u64::from(self.u32()?))
    }
    /// An opaque field of `len` bytes, padded to 4 in the stream.
    fn opaque(&mut self, len: usize) -> Option<&'a [u8]> {
        let padded = len.checked_add(3)? & !3;
        self.bytes(padded).map(|b| &b[..len])
    }
    fn address(&mut self) -> Option<Option<IpAddr>> {
        match self.u32()? {
            1 => {
                let b = self.bytes(4)?;
                Some(Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))))
            }
            2 => {
                let b: [u8; 16] = self.bytes(16)?.try_into().ok()?;
                Some(Some(IpAddr::V6(Ipv6Addr::from(b))))
            }
            _ => Some(None),
        }
    }
    /// The next `(format, body)` of a sample or record list: `Err(())` when the announced
    /// length is more than what is left.
    fn tagged(&mut self) -> Option<Result<(u32, &'a [u8]), ()>> {
        let format = self.u32()?;
        let len = self.u32()? as usize;
        if len > self.left() {
            return Some(Err(()));
        }
        Some(self.bytes(len).map(|b| (format, b)).ok_or(()))
    }
}

/// What the packet header of a flow sample said.
struct Sampled {
    protocol: u8,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    ip_len: u64,
}

impl Decoder {
    /// A decoder with the given limits (zero limits are raised to 1).
    pub fn new(cfg: &DecoderConfig) -> Self {
        Self {
            agents: HashMap::new(),
            cfg: DecoderConfig {
                max_agents: cfg.max_agents.max(1),
                max_sources_per_agent: cfg.max_sources_per_agent.max(1),
            },
        }
    }

    /// Agents whose state is kept.
    pub fn agents(&self) -> usize {
        self.agents.len()
    }

    /// Decodes one datagram received at `now_ms` (Unix ms: the minute its samples count in),
    /// appending flow records to `flows` and counter deltas to `counters`. Never panics on
    /// input; what cannot be used is in [`Decoded::errors`].
    pub fn decode(
        &mut self,
        datagram: &[u8],
        now_ms: i64,
        flows: &mut Vec<FlowRecord>,
        counters: &mut Vec<CounterDelta>,
    ) -> Decoded {
        let mut d = Decoded::default();
        if datagram.is_empty() {
            d.errors.push(DecodeReason::Empty);
            return d;
        }
        let mut x = Xdr::new(datagram);
        let Some(version) = x.u32() else {
            d.errors.push(DecodeReason::Truncated);
            return d;
        };
        if version != 5 {
            d.errors.push(DecodeReason::UnsupportedVersion);
            return d;
        }
        let agent = match x.address() {
            None => {
                d.errors.push(DecodeReason::Truncated);
                return d;
            }
            Some(None) => {
                d.errors.push(DecodeReason::BadAgentAddress);
                return d;
            }
            Some(Some(a)) => a,
        };
        let (Some(sub_agent), Some(seq), Some(uptime), Some(_samples)) =
            (x.u32(), x.u32(), x.u32(), x.u32())
        else {
            d.errors.push(DecodeReason::Truncated);
            return d;
        };
        d.agent = Some(agent);
        d.sub_agent = sub_agent;
        let max_sources = self.cfg.max_sources_per_agent;
        let state = self.agent_state(agent, sub_agent, seq, uptime, &mut d);
        // Walk the samples by their lengths (the announced count is not trusted).
        while x.left() > 0 {
            let Some(tagged) = x.tagged() else {
                // Fewer than 8 bytes left: a cut sample header.
                d.errors.push(DecodeReason::SampleOverrun);
                break;
            };
            let Ok((format, body)) = tagged else {
                d.errors.push(DecodeReason::SampleOverrun);
                break;
            };
            let ok = match format {
                1 | 3 => flow_sample(
                    format == 3,
                    body,
                    agent,
                    now_ms,
                    state,
                    max_sources,
                    &mut d,
                    flows,
                ),
                2 | 4 => counter_sample(
                    format == 4,
                    body,
                    agent,
                    sub_agent,
                    uptime,
                    state,
                    max_sources,
                    &mut d,
                    counters,
                ),
                // Other enterprises' samples (and discarded-packet samples): skipped.
                _ => true,
            };
            if !ok {
                d.errors.push(DecodeReason::RecordOverrun);
            }
        }
        d
    }

    /// The state of an agent, after checking its datagram sequence and uptime.
    fn agent_state(
        &mut self,
        agent: IpAddr,
        sub_agent: u32,
        seq: u32,
        uptime: u32,
        d: &mut Decoded,
    ) -> &mut AgentState {
        let key = (agent, sub_agent);
        if self.agents.len() >= self.cfg.max_agents && !self.agents.contains_key(&key) {
            self.agents.clear();
        }
        let mut fresh = false;
        let state = self.agents.entry(key).or_insert_with(|| {
            fresh = true;
            AgentState::default()
        });
        if !fresh {
            let ahead = seq.wrapping_sub(state.seq);
            // Sequence or uptime backwards (not a wrap of the 32-bit counters): a restart.
            if ahead == 0 || ahead >= 1 << 31 || uptime_went_back(state.uptime_ms, uptime) {
                d.restarted = true;
                state.sources.clear();
                state.counters.clear();
            } else {
                d.lost_datagrams = u64::from(ahead - 1);
            }
        }
        state.seq = seq;
        state.uptime_ms = uptime;
        state
    }
}

/// The agent's uptime (ms, 32 bits) went backwards: a restart, unless it wrapped (after 49.7
/// days: from the last 10 minutes before 2³² to the first 10 minutes after).
fn uptime_went_back(before: u32, now: u32) -> bool {
    const WINDOW: u32 = 600_000;
    now < before && !(before > u32::MAX - WINDOW && now < WINDOW)
}

fn source(state: &mut AgentState, source_id: u32, max_sources: usize) -> &mut SourceState {
    if state.sources.len() >= max_sources && !state.sources.contains_key(&source_id) {
        state.sources.clear();
    }
    state.sources.entry(source_id).or_default()
}

/// One (expanded) flow sample: `false` when its body is cut short.
#[allow(clippy::too_many_arguments)]
fn flow_sample(
    expanded: bool,
    body: &[u8],
    agent: IpAddr,
    now_ms: i64,
    state: &mut AgentState,
    max_sources: usize,
    d: &mut Decoded,
    flows: &mut Vec<FlowRecord>,
) -> bool {
    let mut x = Xdr::new(body);
    let fixed = (|| {
        let seq = x.u32()?;
        let source_id = if expanded {
            // source_id_type, source_id_index
            let t = x.u32()?;
            let i = x.u32()?;
            t.wrapping_shl(24) ^ i
        } else {
            x.u32()?
        };
        let rate = x.u32()?;
        let pool = x.u32()?;
        let drops = x.u32()?;
        // input, output interfaces (expanded: format and value each).
        x.bytes(if expanded { 16 } else { 8 })?;
        let _records = x.u32()?;
        Some((seq, source_id, rate, pool, drops))
    })();
    let Some((seq, source_id, rate, pool, drops)) = fixed else {
        return false;
    };
    // Records first: a sample with a record overrun is skipped whole (nothing counted).
    let mut sampled = None;
    let mut non_ip = false;
    while x.left() > 0 {
        let Some(Ok((format, rec))) = x.tagged() else {
            return false;
        };
        match format {
            1 if sampled.is_none() => match raw_header(rec) {
                Some(Some(s)) => sampled = Some(s),
                Some(None) => non_ip = true,
                None => return false,
            },
            3 | 4 if sampled.is_none() => {
                // Sampled IPv4 / IPv6 only stands in for a missing raw header.
                sampled = sampled_ip(format == 4, rec);
                if sampled.is_none() {
                    return false;
                }
            }
            _ => {}
        }
    }
    let src = source(state, source_id, max_sources);
    if let Some((prev_seq, prev_pool, prev_drops)) = src.flow {
        let ahead = seq.wrapping_sub(prev_seq);
        if ahead > 0 && ahead < 1 << 31 {
            d.lost_samples += u64::from(ahead - 1);
            d.pool_frames += u64::from(pool.wrapping_sub(prev_pool));
            d.agent_drops += u64::from(drops.wrapping_sub(prev_drops));
        }
    }
    src.flow = Some((seq, pool, drops));
    let rate = rate.max(1);
    match sampled {
        Some(s) => {
            d.flow_samples += 1;
            flows.push(FlowRecord {
                exporter: agent,
                version: RECORD_VERSION,
                protocol: s.protocol,
                src: Some(s.src),
                dst: Some(s.dst),
                port_class: PortClass::classify(s.protocol, s.sport, s.dport),
                start_ms: now_ms,
                packets: u64::from(rate),
                bytes: s.ip_len.saturating_mul(u64::from(rate)),
                sampling_rate: rate,
            });
        }
        None if non_ip => d.non_ip_samples += 1,
        None => d.errors.push(DecodeReason::NoPacketHeader),
    }
    true
}

/// A raw packet header record: `None` when cut short, `Some(None)` for a non-IP packet or a
/// header protocol not decoded.
fn raw_header(rec: &[u8]) -> Option<Option<Sampled>> {
    let mut x = Xdr::new(rec);
    let protocol = x.u32()?;
    let _frame_length = x.u32()?;
    let _stripped = x.u32()?;
    let len = x.u32()? as usize;
    let header = x.opaque(len)?;
    let packet = match protocol {
        1 => LaxSlicedPacket::from_ethernet(header).ok(),
        11 => Some(LaxSlicedPacket::from_ether_type(EtherType::IPV4, header)),
        12 => Some(LaxSlicedPacket::from_ether_type(EtherType::IPV6, header)),
        _ => None,
    };
    Some(packet.and_then(|p| ip_of(&p)))
}

fn ip_of(p: &LaxSlicedPacket<'_>) -> Option<Sampled> {
    let (src, dst, ip_len, protocol) = match p.net.as_ref()? {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                u64::from(h.total_len()),
                v4.payload().ip_number.0,
            )
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                u64::from(h.payload_length()) + 40,
                v6.payload().ip_number.0,
            )
        }
        LaxNetSlice::Arp(_) => return None,
    };
    let (sport, dport) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        // ICMP and the rest: no ports (port class `none` for ICMP).
        _ => (0, 0),
    };
    Some(Sampled {
        protocol,
        src,
        dst,
        sport,
        dport,
        ip_len,
    })
}

/// Sampled IPv4 (format 3) or IPv6 (format 4) record.
fn sampled_ip(v6: bool, rec: &[u8]) -> Option<Sampled> {
    let mut x = Xdr::new(rec);
    let length = x.u32()?;
    let protocol = x.u32()?;
    let (src, dst) = if v6 {
        let s: [u8; 16] = x.bytes(16)?.try_into().ok()?;
        let t: [u8; 16] = x.bytes(16)?.try_into().ok()?;
        (IpAddr::V6(s.into()), IpAddr::V6(t.into()))
    } else {
        let s: [u8; 4] = x.bytes(4)?.try_into().ok()?;
        let t: [u8; 4] = x.bytes(4)?.try_into().ok()?;
        (IpAddr::V4(s.into()), IpAddr::V4(t.into()))
    };
    let sport = x.u32()?;
    let dport = x.u32()?;
    Some(Sampled {
        protocol: u8::try_from(protocol).unwrap_or(0),
        src,
        dst,
        sport: u16::try_from(sport).unwrap_or(0),
        dport: u16::try_from(dport).unwrap_or(0),
        ip_len: u64::from(length),
    })
}

/// One (expanded) counter sample: `false` when its body is cut short.
#[allow(clippy::too_many_arguments)]
fn counter_sample(
    expanded: bool,
    body: &[u8],
    agent: IpAddr,
    sub_agent: u32,
    uptime: u32,
    state: &mut AgentState,
    max_sources: usize,
    d: &mut Decoded,
    out: &mut Vec<CounterDelta>,
) -> bool {
    let mut x = Xdr::new(body);
    let fixed = (|| {
        let seq = x.u32()?;
        let source_id = if expanded {
            let t = x.u32()?;
            let i = x.u32()?;
            t.wrapping_shl(24) ^ i
        } else {
            x.u32()?
        };
        let _records = x.u32()?;
        Some((seq, source_id))
    })();
    let Some((seq, source_id)) = fixed else {
        return false;
    };
    let mut generic = Vec::new();
    while x.left() > 0 {
        let Some(Ok((format, rec))) = x.tagged() else {
            return false;
        };
        if format == 1 {
            match generic_counters(rec) {
                Some(c) => generic.push(c),
                None => return false,
            }
        }
    }
    d.counter_samples += 1;
    let src = source(state, source_id, max_sources);
    // A counter sample sequence that did not move forward: the source was reset.
    let reset = src
        .counter_seq
        .is_some_and(|prev| seq.wrapping_sub(prev) == 0 || seq.wrapping_sub(prev) >= 1 << 31);
    src.counter_seq = Some(seq);
    for (if_index, now) in generic {
        if state.counters.len() >= max_sources && !state.counters.contains_key(&if_index) {
            state.counters.clear();
        }
        let prev = state.counters.insert(if_index, (now, uptime));
        let Some((before, at)) = prev.filter(|_| !reset) else {
            continue;
        };
        out.push(CounterDelta {
            agent,
            sub_agent,
            if_index,
            if_speed: now.if_speed,
            interval_ms: u64::from(uptime.wrapping_sub(at)),
            in_octets: delta64(before.in_octets, now.in_octets),
            out_octets: delta64(before.out_octets, now.out_octets),
            in_errors: delta32(before.in_errors, now.in_errors),
            out_errors: delta32(before.out_errors, now.out_errors),
            in_discards: delta32(before.in_discards, now.in_discards),
            out_discards: delta32(before.out_discards, now.out_discards),
        });
    }
    true
}

/// Generic interface counters (counter record format 1, 88 bytes), with their ifIndex.
fn generic_counters(rec: &[u8]) -> Option<(u32, IfCounters)> {
    let mut x = Xdr::new(rec);
    let if_index = x.u32()?;
    let _if_type = x.u32()?;
    let if_speed = x.u64()?;
    let _direction = x.u32()?;
    let _status = x.u32()?;
    let in_octets = x.u64()?;
    x.bytes(12)?; // in unicast, multicast, broadcast packets
    let in_discards = x.u32()?;
    let in_errors = x.u32()?;
    let _unknown_protos = x.u32()?;
    let out_octets = x.u64()?;
    x.bytes(12)?; // out unicast, multicast, broadcast packets
    let out_discards = x.u32()?;
    let out_errors = x.u32()?;
    let _promiscuous = x.u32()?;
    Some((
        if_index,
        IfCounters {
            if_speed,
            in_octets,
            out_octets,
            in_errors,
            out_errors,
            in_discards,
            out_discards,
        },
    ))
}

/// Difference of a 32-bit counter (wraps at 2³²).
fn delta32(before: u32, now: u32) -> u64 {
    u64::from(now.wrapping_sub(before))
}

/// Difference of a 64-bit octet counter; a smaller value whose previous one fitted 32 bits is
/// a 32-bit counter that wrapped (agents that fill the 64-bit field from `ifInOctets`).
fn delta64(before: u64, now: u64) -> u64 {
    if now >= before {
        now - before
    } else if before <= u64::from(u32::MAX) {
        (now + (1 << 32)).saturating_sub(before)
    } else {
        now.wrapping_sub(before)
    }
}

#[cfg(test)]
mod tests;
