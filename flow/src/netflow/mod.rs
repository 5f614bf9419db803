//! NetFlow v5, v9 and IPFIX decoding, shared by the probe (relay of the site router's export)
//! and the collector (routers exporting directly): datagrams in, [`FlowRecord`]s out, then
//! [`Aggregator`] sums them into the minute [`FlowAggregate`]s batches carry.
//!
//! Parsing is `netflow_parser`'s [`AutoScopedParser`]; this module owns what the crate leaves
//! to its caller:
//! - **Scope.** Templates are kept per exporter *address* and observation domain (IPFIX) or
//!   source id (v9). The parser is handed the address with port 0, so an exporter that
//!   restarts on another source port keeps its templates, and two routers reusing template
//!   ids never mix. The number of exporters tracked is [`DecoderConfig::max_exporters`]
//!   (default 20,000; the crate's default, 10,000, is below the RIE's 14,000 sites).
//! - **Template redefinition**: a template announced again replaces the old one (the crate
//!   keys by id within the scope); a restarting exporter is thus handled by its next announce.
//! - **Data before its template** is held by the crate's pending-flow cache, bounded per
//!   exporter ([`DecoderConfig::pending_*`]), and replayed when the template arrives.
//!   What the cache refuses comes back as a `NoTemplate` flowset and is counted as
//!   [`DecodeReason::NoTemplate`].
//! - **Counters.** The crate's common view has no byte or packet counters, so they are read
//!   from the version-specific fields: v5 `dOctets`/`dPkts`; v9/IPFIX `octetDeltaCount`
//!   (IN_BYTES), `postOctetDeltaCount` (OUT_BYTES), `initiatorOctets + responderOctets`
//!   (Cisco ASA NSEL, bidirectional), then the `*TotalCount` fields as a last resort; the
//!   same for packets.
//! - **Time.** v5 and v9 carry flow times as router uptime (ms); they are turned into wall
//!   clock with the header's `unix_secs` and `sys_up_time` (wrapping arithmetic: uptime is a
//!   32-bit counter that wraps after 49.7 days). IPFIX absolute times are used as they are
//!   (NTP-format ones shifted from 1900 to 1970); uptime-relative IPFIX times use
//!   `systemInitTimeMilliseconds` when the exporter sent it.
//! - **Sampling.** Announced sampling is corrected (packets and bytes multiplied) and the
//!   rate recorded in [`FlowRecord::sampling_rate`]: v5 header `sampling_interval` (low 14
//!   bits), v9/IPFIX `samplingInterval`/`samplerRandomInterval` in the record itself, or in
//!   an options record of the same exporter (kept per exporter and domain), and IPFIX
//!   `samplingPacketInterval`/`samplingPacketSpace`.

mod fast;
mod fields;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use netflow_parser::scoped_parser::AutoScopedParser;
use netflow_parser::template_store::TemplateStore;
use netflow_parser::{NetflowError, NetflowPacket, NetflowParser, PendingFlowsConfig};
use rie_proto::{Direction, FlowAggregate, PortClass};

pub use fields::Counters;

/// Limits of the decoder; the defaults fit a national collector (14,000 routers).
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    /// Exporter scopes (address × domain) whose templates are kept; the least recently seen
    /// goes first beyond this.
    pub max_exporters: usize,
    /// Template ids per exporter for which data may wait for its template.
    pub pending_templates: usize,
    /// Flowsets held per waiting template id.
    pub pending_per_template: usize,
    /// Bytes held per exporter while waiting for templates.
    pub pending_bytes: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            max_exporters: 20_000,
            // Worst case 64 KiB × 20,000 exporters if every one of them sent only
            // template-less data; in practice a few exporters restarting at a time.
            pending_templates: 8,
            pending_per_template: 32,
            pending_bytes: 64 * 1024,
        }
    }
}

/// Why a datagram, or part of it, could not be used: the `reason` label of
/// `rie_collector_decode_errors_total`. A bounded set, never input text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeReason {
    Empty,
    Truncated,
    UnsupportedVersion,
    Malformed,
    /// Data whose template never came and that the pending cache could not hold.
    NoTemplate,
    /// A datagram that would decode into more values than the per-message budget.
    OutputLimit,
    /// Trailing bytes after the last complete export packet of a datagram.
    TrailingBytes,
}

impl DecodeReason {
    pub const ALL: [DecodeReason; 7] = [
        DecodeReason::Empty,
        DecodeReason::Truncated,
        DecodeReason::UnsupportedVersion,
        DecodeReason::Malformed,
        DecodeReason::NoTemplate,
        DecodeReason::OutputLimit,
        DecodeReason::TrailingBytes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DecodeReason::Empty => "empty",
            DecodeReason::Truncated => "truncated",
            DecodeReason::UnsupportedVersion => "unsupported_version",
            DecodeReason::Malformed => "malformed",
            DecodeReason::NoTemplate => "no_template",
            DecodeReason::OutputLimit => "output_limit",
            DecodeReason::TrailingBytes => "trailing_bytes",
        }
    }

    fn of(e: &NetflowError) -> Self {
        match e {
            NetflowError::Incomplete { .. } => DecodeReason::Truncated,
            NetflowError::UnsupportedVersion { .. } | NetflowError::FilteredVersion { .. } => {
                DecodeReason::UnsupportedVersion
            }
            NetflowError::DecodedOutputLimitExceeded { .. } => DecodeReason::OutputLimit,
            _ => DecodeReason::Malformed,
        }
    }
}

/// The decoder could not be built (a limit of zero).
#[derive(Debug, thiserror::Error)]
#[error("NetFlow decoder configuration: {0}")]
pub struct DecoderConfigError(String);

/// One flow as exported, counters already corrected for sampling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    pub exporter: IpAddr,
    /// NetFlow version of the export (5, 9, 10 for IPFIX).
    pub version: u16,
    pub protocol: u8,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// Class of the service port, from the record's transport ports (`unknown` when a
    /// port-carrying protocol's record has no port fields).
    pub port_class: PortClass,
    /// Start of the flow (else its end, else the export time), Unix milliseconds.
    pub start_ms: i64,
    pub packets: u64,
    pub bytes: u64,
    /// Sampling correction applied (1 = unsampled).
    pub sampling_rate: u32,
}

/// What one datagram gave.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Version of the first export packet (0 when none could be read).
    pub version: u16,
    pub records: usize,
    /// Errors met (the records decoded before an error are kept).
    pub errors: Vec<DecodeReason>,
}

/// Stateful decoder: templates, pending data and announced sampling, per exporter.
#[derive(Debug)]
pub struct Decoder {
    parser: AutoScopedParser,
    /// Sampling announced in options records, per (exporter, domain / source id).
    sampling: HashMap<(IpAddr, u32), u32>,
    max_exporters: usize,
    /// Data sets of compiled templates, decoded without the crate ([`fast`]).
    fast: fast::FastPath,
    fast_path: bool,
    /// Datagrams the fast path decoded.
    fast_decoded: u64,
}

impl Decoder {
    /// Builds a decoder; `store` persists templates (the collector's SQLite table), so data
    /// right after a restart decodes without waiting for the exporter's next announce.
    ///
    /// # Errors
    /// [`DecoderConfigError`] when a limit is zero.
    pub fn new(
        cfg: &DecoderConfig,
        store: Option<Arc<dyn TemplateStore>>,
    ) -> Result<Self, DecoderConfigError> {
        let err = |e: netflow_parser::ConfigError| DecoderConfigError(e.to_string());
        let mut pending = PendingFlowsConfig::new(cfg.pending_templates);
        pending.max_entries_per_template = cfg.pending_per_template;
        pending.max_total_bytes = cfg.pending_bytes;
        pending.ttl = Some(std::time::Duration::from_secs(600));
        let mut builder = NetflowParser::builder()
            .with_pending_flows(pending)
            .with_allowed_versions(&[5, 9, 10]);
        if let Some(store) = store {
            builder = builder.with_template_store(store);
        }
        let parser = AutoScopedParser::try_with_builder(builder)
            .map_err(err)?
            .with_max_sources(cfg.max_exporters)
            .map_err(err)?;
        Ok(Self {
            parser,
            sampling: HashMap::new(),
            max_exporters: cfg.max_exporters,
            fast: fast::FastPath::new(cfg.max_exporters),
            fast_path: true,
            fast_decoded: 0,
        })
    }

    /// Decodes one UDP datagram from `exporter`, appending its flows to `out`. Never panics
    /// on input; what cannot be used is reported in [`Decoded::errors`].
    pub fn decode(
        &mut self,
        exporter: IpAddr,
        datagram: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Decoded {
        let mut d = Decoded::default();
        if datagram.is_empty() {
            d.errors.push(DecodeReason::Empty);
            return d;
        }
        if datagram.len() >= 2 {
            d.version = u16::from_be_bytes([datagram[0], datagram[1]]);
        }
        if !matches!(d.version, 5 | 9 | 10) {
            d.errors.push(DecodeReason::UnsupportedVersion);
            return d;
        }
        if truncated(d.version, datagram) {
            d.errors.push(DecodeReason::Truncated);
            return d;
        }
        if self.fast_path {
            let sampling = fast::FastPath::scope_of(exporter, datagram)
                .and_then(|(e, domain, _)| self.sampling.get(&(e, domain)).copied());
            if let Some(d) = self.fast.try_decode(exporter, datagram, sampling, out) {
                self.fast_decoded += 1;
                return d;
            }
        }
        // Port 0: the scope is the exporter's address, whatever its source port.
        let source = SocketAddr::new(exporter, 0);
        let result = self.parser.parse_from_source(source, datagram);
        let before = out.len();
        for packet in &result.packets {
            self.records_of(exporter, packet, out, &mut d.errors);
        }
        d.records = out.len() - before;
        if let Some(e) = &result.error {
            // A v5 datagram with padding after its records, or a second packet cut short.
            let reason = if result.packets.is_empty() {
                DecodeReason::of(e)
            } else {
                match DecodeReason::of(e) {
                    DecodeReason::Truncated | DecodeReason::Malformed => {
                        DecodeReason::TrailingBytes
                    }
                    r => r,
                }
            };
            d.errors.push(reason);
        }
        if self.fast_path && d.version != 5 {
            let clean = d.errors.is_empty() && result.packets.len() == 1;
            self.fast.learn(exporter, datagram, clean);
        }
        d
    }

    /// Turns the fast path ([`fast`]) off or on (on by default): the differential test and
    /// the fuzz target compare both paths on the same input.
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_path = on;
    }

    /// Datagrams decoded by the fast path so far.
    pub fn fast_decoded(&self) -> u64 {
        self.fast_decoded
    }

    /// Data templates compiled for the fast path, over all exporters.
    pub fn compiled_templates(&self) -> usize {
        self.fast.templates()
    }

    /// Held flowsets (data waiting for its template) over all exporters.
    pub fn pending_flowsets(&self) -> usize {
        let v9: usize = self
            .parser
            .v9_info()
            .iter()
            .map(|(_, i)| i.v9.pending_flow_count + i.ipfix.pending_flow_count)
            .sum();
        let ipfix: usize = self
            .parser
            .ipfix_info()
            .iter()
            .map(|(_, i)| i.v9.pending_flow_count + i.ipfix.pending_flow_count)
            .sum();
        v9 + ipfix
    }

    /// Exporter scopes currently tracked.
    pub fn exporters(&self) -> usize {
        self.parser.source_count()
    }

    fn records_of(
        &mut self,
        exporter: IpAddr,
        packet: &NetflowPacket,
        out: &mut Vec<FlowRecord>,
        errors: &mut Vec<DecodeReason>,
    ) {
        match packet {
            NetflowPacket::V5(v5) => {
                let h = &v5.header;
                // Top two bits: sampling mode; low 14: the interval (0 or 1 = unsampled).
                let rate = u32::from(h.sampling_interval & 0x3fff).max(1);
                let now_ms = i64::from(h.unix_secs) * 1000 + i64::from(h.unix_nsecs / 1_000_000);
                for r in &v5.flowsets {
                    let start_ms = uptime_to_wall(now_ms, h.sys_up_time, r.first);
                    out.push(FlowRecord {
                        exporter,
                        version: 5,
                        protocol: r.protocol_number,
                        src: Some(IpAddr::V4(r.src_addr)),
                        dst: Some(IpAddr::V4(r.dst_addr)),
                        port_class: PortClass::classify(r.protocol_number, r.src_port, r.dst_port),
                        start_ms,
                        packets: u64::from(r.d_pkts) * u64::from(rate),
                        bytes: u64::from(r.d_octets) * u64::from(rate),
                        sampling_rate: rate,
                    });
                }
            }
            NetflowPacket::V9(v9) => {
                use netflow_parser::variable_versions::v9::FlowSetBody;
                let h = &v9.header;
                let scope = (exporter, h.source_id);
                let now_ms = i64::from(h.unix_secs) * 1000;
                let clock = fields::Clock::Uptime {
                    now_ms,
                    uptime_ms: h.sys_up_time,
                };
                for fs in &v9.flowsets {
                    match &fs.body {
                        FlowSetBody::OptionsData(o) => {
                            for rec in &o.fields {
                                let c = fields::v9_counters(&rec.options_fields, clock);
                                self.note_sampling(scope, c.sampling);
                            }
                        }
                        FlowSetBody::Data(data) => {
                            let announced = self.sampling.get(&scope).copied();
                            for rec in &data.fields {
                                let c = fields::v9_counters(rec, clock);
                                push(out, exporter, 9, c, announced, now_ms);
                            }
                        }
                        FlowSetBody::NoTemplate(_) => errors.push(DecodeReason::NoTemplate),
                        _ => {}
                    }
                }
            }
            NetflowPacket::IPFix(ipfix) => {
                use netflow_parser::variable_versions::ipfix::FlowSetBody;
                let h = &ipfix.header;
                let scope = (exporter, h.observation_domain_id);
                let now_ms = i64::from(h.export_time) * 1000;
                for fs in &ipfix.flowsets {
                    match &fs.body {
                        FlowSetBody::OptionsData(o) => {
                            for rec in &o.fields {
                                let c = fields::ipfix_counters(rec, now_ms);
                                self.note_sampling(scope, c.sampling);
                            }
                        }
                        FlowSetBody::Data(data) => {
                            let announced = self.sampling.get(&scope).copied();
                            for rec in &data.fields {
                                let c = fields::ipfix_counters(rec, now_ms);
                                push(out, exporter, 10, c, announced, now_ms);
                            }
                        }
                        FlowSetBody::NoTemplate(_) => errors.push(DecodeReason::NoTemplate),
                        _ => {}
                    }
                }
            }
            _ => errors.push(DecodeReason::UnsupportedVersion),
        }
    }

    fn note_sampling(&mut self, scope: (IpAddr, u32), rate: Option<u32>) {
        let Some(rate) = rate else { return };
        if self.sampling.len() >= self.max_exporters && !self.sampling.contains_key(&scope) {
            // Bounded like the template scopes; the oldest announcements are the least useful.
            self.sampling.clear();
        }
        self.sampling.insert(scope, rate);
    }
}

/// A datagram shorter than its header, or than what its header announces (v5 record count,
/// IPFIX message length): cut in transit or by a bad exporter, reported as such rather than
/// as the parser's generic error.
fn truncated(version: u16, d: &[u8]) -> bool {
    let be16 = |i: usize| usize::from(u16::from_be_bytes([d[i], d[i + 1]]));
    match version {
        5 => d.len() < 24 || d.len() < 24 + 48 * be16(2),
        9 => d.len() < 20,
        10 => d.len() < 16 || d.len() < be16(2),
        _ => false,
    }
}

/// Wall-clock time of an uptime stamp `at_ms`, given the header's wall clock `now_ms` and
/// uptime `uptime_ms` at export. Wrapping: the uptime counter is 32 bits.
fn uptime_to_wall(now_ms: i64, uptime_ms: u32, at_ms: u32) -> i64 {
    now_ms - i64::from(uptime_ms.wrapping_sub(at_ms))
}

/// A data record (a flow, not an options record) becomes a [`FlowRecord`]; records without
/// any counter field (template-less garbage, or a non-flow record) are left out.
fn push(
    out: &mut Vec<FlowRecord>,
    exporter: IpAddr,
    version: u16,
    c: Counters,
    announced: Option<u32>,
    export_ms: i64,
) {
    if c.bytes.is_none() && c.packets.is_none() {
        return;
    }
    let rate = c.sampling.or(announced).unwrap_or(1).max(1);
    let protocol = c.protocol.unwrap_or(0);
    let port_class = match (c.sport, c.dport) {
        (Some(s), Some(d)) => PortClass::classify(protocol, s, d),
        // No ports in the record: a portless protocol is still `none`.
        _ => match PortClass::classify(protocol, 0, 0) {
            PortClass::None => PortClass::None,
            _ => PortClass::Unknown,
        },
    };
    out.push(FlowRecord {
        exporter,
        version,
        protocol,
        src: c.src,
        dst: c.dst,
        port_class,
        start_ms: c.start_ms.or(c.end_ms).unwrap_or(export_ms),
        packets: c.packets.unwrap_or(0).saturating_mul(u64::from(rate)),
        bytes: c.bytes.unwrap_or(0).saturating_mul(u64::from(rate)),
        sampling_rate: rate,
    });
}

/// Sums flow records into per-minute aggregates (minute of the flow's start, protocol,
/// direction, exporter, sampling rate) until taken.
///
/// A hash map, not an ordered one: [`Aggregator::add`] runs once per flow record (over a
/// million a second on the collector) and a B-tree search over the 6-field key was 12 % of
/// the decode benchmark; [`Aggregator::take`] sorts once per flush instead. The hasher is
/// foldhash with a per-process random seed (the key holds exporter-chosen values, so a fixed
/// seed would let an exporter aim for collisions); std's SipHash costs more per record.
#[derive(Debug, Default)]
pub struct Aggregator {
    sums: HashMap<AggKey, (u64, u64, u64), foldhash::fast::RandomState>,
}

type AggKey = (i64, u8, Direction, IpAddr, u32, PortClass);

impl Aggregator {
    /// Adds one record; `direction` is decided by the caller (the probe knows its site's
    /// prefixes, the collector does not).
    pub fn add(&mut self, r: &FlowRecord, direction: Direction) {
        let minute = r.start_ms.div_euclid(60_000) * 60;
        let e = self
            .sums
            .entry((
                minute,
                r.protocol,
                direction,
                r.exporter,
                r.sampling_rate,
                r.port_class,
            ))
            .or_default();
        e.0 += 1;
        e.1 = e.1.saturating_add(r.packets);
        e.2 = e.2.saturating_add(r.bytes);
    }

    /// Puts back an aggregate taken earlier (its commit failed), summing with what came since.
    pub fn restore(&mut self, exporter: IpAddr, a: &FlowAggregate) {
        let e = self
            .sums
            .entry((
                a.minute,
                a.protocol,
                a.direction,
                exporter,
                a.sampling_rate,
                a.port_class,
            ))
            .or_default();
        e.0 = e.0.saturating_add(a.flows);
        e.1 = e.1.saturating_add(a.packets);
        e.2 = e.2.saturating_add(a.bytes);
    }

    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    pub fn len(&self) -> usize {
        self.sums.len()
    }

    /// Everything summed so far, grouped by exporter; the aggregator starts again empty.
    pub fn take(&mut self) -> BTreeMap<IpAddr, Vec<FlowAggregate>> {
        let mut out: BTreeMap<IpAddr, Vec<FlowAggregate>> = BTreeMap::new();
        let mut sums: Vec<_> = std::mem::take(&mut self.sums).into_iter().collect();
        // Same order as before the map was hashed: callers and tests see a stable order.
        sums.sort_unstable_by_key(|(key, _)| *key);
        for ((minute, protocol, direction, exporter, rate, port_class), (flows, packets, bytes)) in
            sums
        {
            out.entry(exporter).or_default().push(FlowAggregate {
                minute,
                protocol,
                direction,
                exporter: Some(exporter.to_string()),
                flows,
                packets,
                bytes,
                sampling_rate: rate,
                port_class,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests;
