//! Offline input: pcap and pcapng files read with `pcap-parser` (pure Rust), each packet handed
//! to the flow meter with its capture timestamp. Ethernet (VLAN tags included), Linux cooked
//! (SLL, SLL2) and raw IP link types are understood; other frames are counted as skipped.

use std::collections::BTreeMap;
use std::path::Path;

use pcap_parser::data::{get_packetdata, PacketData};
use pcap_parser::{Block, Linktype, PcapBlockOwned, PcapError};
use rie_flow::flow_table::{FlowRecord, FlowTable, FlowTableConfig, PacketMeta};
use serde::Serialize;

use super::packet;

#[derive(Debug, thiserror::Error)]
pub enum PcapReadError {
    #[error("{file}: {message}")]
    Read { file: String, message: String },
}

/// Counters of a replay, by protocol: the `--summary json` output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    pub by_protocol: BTreeMap<String, Counts>,
    /// Frames that carried no IP packet (ARP...), or that could not be read.
    pub skipped_frames: u64,
    pub evictions: u64,
}

impl Summary {
    pub fn add(&mut self, r: &FlowRecord) {
        let flows = u64::from(!r.continuation);
        self.flows += flows;
        self.packets += r.packets;
        self.bytes += r.bytes;
        let c = self.by_protocol.entry(r.key.proto.to_string()).or_default();
        c.flows += flows;
        c.packets += r.packets;
        c.bytes += r.bytes;
    }
}

/// Reads every packet of a pcap or pcapng file, in order, calling `each(ts_ns, meta)` for IP
/// packets; returns the number of frames skipped.
///
/// # Errors
/// [`PcapReadError`] when the file is unreadable or not a capture.
pub fn read_file(
    path: &Path,
    mut each: impl FnMut(u64, &PacketMeta),
) -> Result<u64, PcapReadError> {
    let err = |message: String| PcapReadError::Read {
        file: path.display().to_string(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut reader = pcap_parser::create_reader(1 << 20, file)
        .map_err(|e| err(format!("not a pcap or pcapng file ({e:?})")))?;
    let mut skipped = 0u64;
    let mut legacy: Option<(Linktype, bool)> = None;
    // pcapng: link type and timestamp units per interface.
    let mut interfaces: Vec<(Linktype, u64)> = Vec::new();
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                let item = match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy = Some((h.network, h.is_nanosecond_precision()));
                        None
                    }
                    PcapBlockOwned::Legacy(b) => legacy.map(|(lt, nanos)| {
                        let frac = u64::from(b.ts_usec) * if nanos { 1 } else { 1_000 };
                        (
                            lt,
                            u64::from(b.ts_sec) * 1_000_000_000 + frac,
                            b.data,
                            b.caplen as usize,
                        )
                    }),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        let units = ts_units(idb.if_tsresol);
                        interfaces.push((idb.linktype, units));
                        None
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        interfaces.get(epb.if_id as usize).map(|(lt, units)| {
                            let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let ns = u128::from(ts) * 1_000_000_000 / u128::from(*units);
                            (*lt, ns as u64, epb.data, epb.caplen as usize)
                        })
                    }
                    PcapBlockOwned::NG(_) => None,
                };
                if let Some((lt, ts_ns, data, caplen)) = item {
                    let meta = match get_packetdata(data, lt, caplen.min(data.len())) {
                        Some(PacketData::L2(frame)) => packet::from_ethernet(frame),
                        Some(PacketData::L3(ether_type, payload)) => {
                            packet::from_ether_type(ether_type, payload)
                        }
                        _ => None,
                    };
                    match meta {
                        Some(m) => each(ts_ns, &m),
                        None => skipped += 1,
                    }
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                reader
                    .refill()
                    .map_err(|e| err(format!("truncated or unreadable ({e:?})")))?;
            }
            Err(e) => return Err(err(format!("unreadable block ({e:?})"))),
        }
    }
    Ok(skipped)
}

/// Timestamp units per second from a pcapng `if_tsresol` (default 10^-6).
fn ts_units(tsresol: u8) -> u64 {
    let exp = u32::from(tsresol & 0x7f);
    let units = if tsresol & 0x80 == 0 {
        10u64.checked_pow(exp)
    } else {
        1u64.checked_shl(exp)
    };
    units.filter(|u| *u > 0).unwrap_or(1_000_000)
}

/// Runs a capture file through a flow table and sums what comes out.
///
/// # Errors
/// As [`read_file`].
pub fn replay(
    path: &Path,
    cfg: FlowTableConfig,
    mut on_record: impl FnMut(&FlowRecord),
) -> Result<Summary, PcapReadError> {
    let mut table = FlowTable::new(cfg);
    let mut summary = Summary::default();
    let skipped = read_file(path, |ts, m| {
        table.observe(ts, m);
        for r in table.drain() {
            summary.add(&r);
            on_record(&r);
        }
    })?;
    table.flush();
    for r in table.drain() {
        summary.add(&r);
        on_record(&r);
    }
    summary.skipped_frames = skipped;
    summary.evictions = table.evictions;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_timestamp_units() {
        assert_eq!(ts_units(6), 1_000_000);
        assert_eq!(ts_units(9), 1_000_000_000);
        assert_eq!(ts_units(0x80 | 10), 1024);
    }
}
