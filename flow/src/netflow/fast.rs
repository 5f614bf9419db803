//! The fast path of [`super::Decoder`]: v9 and IPFIX data sets decoded straight from the
//! datagram's bytes against *compiled* templates, the offsets and lengths of the few fields
//! the aggregation reads (counters, protocol, addresses, ports, times, sampling), every other
//! field skipped without being looked at. No allocation and no per-field value is built.
//!
//! Design constraints:
//! - **Same answers as the full parse.** A record decoded here goes through the same
//!   [`Raw::finish`] and [`super::push`] as one from `netflow_parser`; a template is only
//!   compiled when every field we read has a length whose meaning is certain (counters of 1,
//!   2, 4 or 8 bytes, 4- or 16-byte addresses, ...). Anything else (variable-length fields,
//!   zero-length fields, NTP or delta times, NSEL counters in v9) is left to the full parse.
//!   The differential test (`fast_path_equals_full_parse`) and the fuzz target hold the two
//!   paths to the same output.
//! - **The full parse owns the state.** A datagram takes the fast path only when *every*
//!   set in it is a data set of a compiled template and its layout is sound (set lengths add
//!   up to the datagram, no more records than the crate's per-set and per-message limits).
//!   Everything else — templates, options data (sampling), data before its template,
//!   malformed input — goes to `netflow_parser` as before, which keeps templates, held data
//!   and the template store. Templates are compiled only from datagrams the crate parsed
//!   without any error, so that a template the crate refused is never used here; a datagram
//!   of that scope with an error forgets the scope's compiled templates.
//! - **Bounded**: at most `max_scopes` exporter scopes (beyond: all forgotten, re-learnt at
//!   the next announce) and [`MAX_TEMPLATES_PER_SCOPE`] templates each (beyond: full parse).
//!
//! May import the parent module (records, `push`) and `fields` (the shared field reading).

use std::collections::HashMap;
use std::net::IpAddr;

use super::fields::Raw;
use super::{push, Decoded, FlowRecord};

/// Templates kept per exporter scope; more go to the full parse only.
pub(super) const MAX_TEMPLATES_PER_SCOPE: usize = 64;

/// The crate's limits (netflow_parser 1.0.6, `config.rs` and `output_budget.rs`): a data set
/// with more records, or a datagram with more field values, is left to it (it reports it).
const CRATE_MAX_RECORDS_PER_SET: usize = 1024;
const CRATE_MAX_VALUES_PER_MESSAGE: usize = 65_536;
const CRATE_MAX_FIELDS: usize = 10_000;

/// One field we read: where it starts in the record, its IANA id and length.
#[derive(Debug, Clone, Copy)]
struct Field {
    offset: u16,
    id: u16,
    len: u8,
}

/// A data template reduced to what the aggregation reads.
#[derive(Debug, Clone)]
struct Compiled {
    /// Bytes of one record (every field of the template).
    record_len: usize,
    /// Fields of the template, all counted for the crate's per-message value budget.
    field_count: usize,
    used: Box<[Field]>,
}

/// Exporter address, domain (IPFIX) or source id (v9), version.
type Scope = (IpAddr, u32, u16);

#[derive(Debug)]
pub(super) struct FastPath {
    scopes: HashMap<Scope, Vec<(u16, Compiled)>, foldhash::fast::RandomState>,
    max_scopes: usize,
}

fn be16(d: &[u8], i: usize) -> usize {
    usize::from(u16::from_be_bytes([d[i], d[i + 1]]))
}

fn be32(d: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])
}

/// Whether field `id` of `len` bytes can be read here with certainty, `None` when the field
/// is not one we read at all (skipped whatever its length).
fn readable(version: u16, id: u16, len: u16) -> Option<bool> {
    Some(match id {
        1 | 2 | 23 | 24 | 85 | 86 | 34 | 50 => matches!(len, 1 | 2 | 4 | 8),
        4 => len == 1,
        7 | 11 => len == 2,
        8 | 12 => len == 4,
        27 | 28 => len == 16,
        21 | 22 => len == 4,
        // Absolute times: IPFIX seconds and milliseconds only; the crate reads v9's as
        // something else, and NTP / delta / init times are rare: full parse.
        150 | 151 => version == 10 && len == 4,
        152 | 153 => version == 10 && len == 8,
        154..=157 | 159 | 160 => false,
        // NSEL and IPFIX-only counters and sampling elements: IPFIX with plain lengths.
        231 | 232 | 298 | 299 | 305 | 306 => version == 10 && matches!(len, 1 | 2 | 4 | 8),
        _ => return None,
    })
}

/// Reads one compiled field of a record into `raw`, as `fields::Raw::set` does from the
/// crate's value of the same bytes.
fn read(raw: &mut Raw, f: Field, rec: &[u8]) {
    let at = usize::from(f.offset);
    let b = &rec[at..at + usize::from(f.len)];
    let n = || Some(b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)));
    match f.id {
        1 => raw.octet_delta = n(),
        2 => raw.packet_delta = n(),
        4 => raw.protocol = Some(b[0]),
        7 => raw.sport = Some(u16::from_be_bytes([b[0], b[1]])),
        11 => raw.dport = Some(u16::from_be_bytes([b[0], b[1]])),
        8 | 27 => raw.src = raw.src.or_else(|| ip(b)),
        12 | 28 => raw.dst = raw.dst.or_else(|| ip(b)),
        21 => raw.end_uptime = n(),
        22 => raw.start_uptime = n(),
        23 => raw.post_octet = n(),
        24 => raw.post_packet = n(),
        34 => raw.sampling_interval = n(),
        50 => raw.sampler_random = n(),
        85 => raw.octet_total = n(),
        86 => raw.packet_total = n(),
        150 => raw.start_abs_ms = n().and_then(|s| s.checked_mul(1000)).and_then(to_i64),
        151 => raw.end_abs_ms = n().and_then(|s| s.checked_mul(1000)).and_then(to_i64),
        152 => raw.start_abs_ms = n().and_then(to_i64),
        153 => raw.end_abs_ms = n().and_then(to_i64),
        231 => raw.initiator_octets = n(),
        232 => raw.responder_octets = n(),
        298 => raw.initiator_packets = n(),
        299 => raw.responder_packets = n(),
        305 => raw.packet_interval = n(),
        306 => raw.packet_space = n(),
        _ => {}
    }
}

fn to_i64(v: u64) -> Option<i64> {
    i64::try_from(v).ok()
}

fn ip(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// The template records of a template set body: `(template id, compiled or not)`, or `None`
/// when the body is not well formed. `ipfix` templates carry enterprise numbers.
fn templates_of(version: u16, body: &[u8]) -> Option<Vec<(u16, Option<Compiled>)>> {
    let mut out = Vec::new();
    let mut i = 0;
    // Set padding: fewer bytes than a template header.
    while i + 4 <= body.len() {
        let id = u16::try_from(be16(body, i)).ok()?;
        let count = be16(body, i + 2);
        i += 4;
        if count == 0 {
            // IPFIX withdrawal (v9 has none: a template of no field is refused).
            if version == 10 {
                out.push((id, None));
                continue;
            }
            return None;
        }
        let mut compilable = id >= 256 && count <= CRATE_MAX_FIELDS;
        let mut used = Vec::new();
        let mut offset = 0usize;
        for _ in 0..count {
            if i + 4 > body.len() {
                return None;
            }
            let raw_id = u16::try_from(be16(body, i)).ok()?;
            let len = u16::try_from(be16(body, i + 2)).ok()?;
            i += 4;
            let enterprise = version == 10 && raw_id & 0x8000 != 0;
            if enterprise {
                if i + 4 > body.len() {
                    return None;
                }
                // An enterprise element is never one the aggregation reads; enterprise
                // number 0 would be odd enough to leave to the full parse.
                compilable &= be32(body, i) != 0;
                i += 4;
            }
            if len == 0 || len == 65535 {
                compilable = false;
            } else if !enterprise {
                match readable(version, raw_id, len) {
                    Some(true) => used.push(Field {
                        offset: u16::try_from(offset).unwrap_or(u16::MAX),
                        id: raw_id,
                        len: u8::try_from(len).unwrap_or(0),
                    }),
                    Some(false) => compilable = false,
                    None => {}
                }
            }
            offset += usize::from(len);
        }
        compilable &= offset > 0 && offset <= usize::from(u16::MAX);
        out.push((
            id,
            compilable.then(|| Compiled {
                record_len: offset,
                field_count: count,
                used: used.into_boxed_slice(),
            }),
        ));
    }
    Some(out)
}

/// Ids declared by an options template set body (the id may have been a data template).
fn options_ids(version: u16, body: &[u8]) -> Option<Vec<u16>> {
    let mut out = Vec::new();
    let mut i = 0;
    if version == 9 {
        while i + 6 <= body.len() {
            let id = u16::try_from(be16(body, i)).ok()?;
            let len = be16(body, i + 2) + be16(body, i + 4);
            if id == 0 && len == 0 {
                break; // padding
            }
            i += 6 + len;
            out.push(id);
        }
    } else {
        while i + 6 <= body.len() {
            let id = u16::try_from(be16(body, i)).ok()?;
            let count = be16(body, i + 2);
            i += 6;
            out.push(id);
            for _ in 0..count {
                if i + 4 > body.len() {
                    return None;
                }
                let enterprise = be16(body, i) & 0x8000 != 0;
                i += if enterprise { 8 } else { 4 };
            }
        }
    }
    Some(out)
}

impl FastPath {
    pub(super) fn new(max_scopes: usize) -> Self {
        Self {
            scopes: HashMap::default(),
            max_scopes,
        }
    }

    /// Header layout: (version, header length, offset of the scope id).
    fn layout(d: &[u8]) -> Option<(u16, usize, usize)> {
        match d.get(..2)? {
            [0, 9] if d.len() >= 20 => Some((9, 20, 16)),
            // IPFIX: the message length must be the whole datagram here (several messages
            // per datagram, or trailing bytes: full parse).
            [0, 10] if d.len() >= 16 && be16(d, 2) == d.len() => Some((10, 16, 12)),
            _ => None,
        }
    }

    /// Decodes `d` if every set in it is data of a compiled template; `None` leaves the
    /// datagram to the full parse (nothing was appended to `out`).
    pub(super) fn try_decode(
        &self,
        exporter: IpAddr,
        d: &[u8],
        sampling: Option<u32>,
        out: &mut Vec<FlowRecord>,
    ) -> Option<Decoded> {
        let (version, header, scope_at) = Self::layout(d)?;
        let templates = self.scopes.get(&(exporter, be32(d, scope_at), version))?;
        let find = |id: u16| templates.iter().find(|(t, _)| *t == id).map(|(_, c)| c);
        // First pass: the layout is sound and every set known, within the crate's budgets.
        let mut i = header;
        let mut values = 0usize;
        while i < d.len() {
            if i + 4 > d.len() {
                return None;
            }
            let id = u16::try_from(be16(d, i)).ok()?;
            let len = be16(d, i + 2);
            if len < 4 || i + len > d.len() || id < 256 {
                return None;
            }
            let c = find(id)?;
            let records = (len - 4) / c.record_len;
            if records > CRATE_MAX_RECORDS_PER_SET {
                return None;
            }
            values += records * c.field_count;
            i += len;
        }
        // No set at all: the crate calls that malformed (v9) — let it say so.
        if header == d.len() || values > CRATE_MAX_VALUES_PER_MESSAGE {
            return None;
        }
        // Second pass: the records.
        let export_ms;
        let uptime;
        if version == 9 {
            export_ms = i64::from(be32(d, 8)) * 1000;
            uptime = Some((export_ms, be32(d, 4)));
        } else {
            export_ms = i64::from(be32(d, 4)) * 1000;
            uptime = None;
        }
        let before = out.len();
        let mut i = header;
        while i < d.len() {
            let id = u16::try_from(be16(d, i)).ok()?;
            let len = be16(d, i + 2);
            let c = find(id)?;
            let body = &d[i + 4..i + len];
            for rec in body.chunks_exact(c.record_len) {
                let mut raw = Raw::default();
                for &f in c.used.iter() {
                    read(&mut raw, f, rec);
                }
                push(
                    out,
                    exporter,
                    version,
                    raw.finish(uptime, export_ms),
                    sampling,
                    export_ms,
                );
            }
            i += len;
        }
        Some(Decoded {
            version,
            records: out.len() - before,
            errors: Vec::new(),
        })
    }

    /// The scope of a v9/IPFIX datagram, if its header is there.
    pub(super) fn scope_of(exporter: IpAddr, d: &[u8]) -> Option<Scope> {
        match d.get(..2)? {
            [0, 9] if d.len() >= 20 => Some((exporter, be32(d, 16), 9)),
            [0, 10] if d.len() >= 16 => Some((exporter, be32(d, 12), 10)),
            _ => None,
        }
    }

    /// After the full parse of `d`: compiles the templates it announced when the crate parsed
    /// it without error (`clean`), else forgets the scope's compiled templates.
    pub(super) fn learn(&mut self, exporter: IpAddr, d: &[u8], clean: bool) {
        let Some(scope) = Self::scope_of(exporter, d) else {
            return;
        };
        if !clean {
            self.scopes.remove(&scope);
            return;
        }
        let Some((version, header, _)) = Self::layout(d) else {
            self.scopes.remove(&scope);
            return;
        };
        let mut i = header;
        while i + 4 <= d.len() {
            let id = be16(d, i);
            let len = be16(d, i + 2);
            if len < 4 || i + len > d.len() {
                self.scopes.remove(&scope);
                return;
            }
            let body = &d[i + 4..i + len];
            let template_set = if version == 9 { 0 } else { 2 };
            let options_set = if version == 9 { 1 } else { 3 };
            if id == template_set {
                match templates_of(version, body) {
                    Some(list) => {
                        for (tid, compiled) in list {
                            self.set(scope, tid, compiled);
                        }
                    }
                    None => {
                        self.scopes.remove(&scope);
                        return;
                    }
                }
            } else if id == options_set {
                match options_ids(version, body) {
                    Some(ids) => {
                        for tid in ids {
                            self.set(scope, tid, None);
                        }
                    }
                    None => {
                        self.scopes.remove(&scope);
                        return;
                    }
                }
            }
            i += len;
        }
    }

    fn set(&mut self, scope: Scope, id: u16, compiled: Option<Compiled>) {
        if scope.2 == 10 && compiled.is_none() && (id == 2 || id == 3) {
            // IPFIX "withdraw all templates" of the scope.
            self.scopes.remove(&scope);
            return;
        }
        if compiled.is_some()
            && !self.scopes.contains_key(&scope)
            && self.scopes.len() >= self.max_scopes
        {
            self.scopes.clear();
        }
        let list = self.scopes.entry(scope).or_default();
        list.retain(|(t, _)| *t != id);
        if let Some(c) = compiled {
            if list.len() < MAX_TEMPLATES_PER_SCOPE {
                list.push((id, c));
            }
        }
    }

    /// Compiled templates over all scopes.
    pub(super) fn templates(&self) -> usize {
        self.scopes.values().map(Vec::len).sum()
    }
}
