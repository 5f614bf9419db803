//! The flow table: one entry per 5-tuple, expired on inactivity (default 15 s), on age (active
//! timeout, default 60 s: long flows are reported in slices), and shortly after a TCP FIN or
//! RST. Bounded: when full, an expiry sweep runs and, if still full, the oldest entry is
//! evicted and counted, never silently lost. Time is the packets' own (capture timestamps), so
//! a replayed pcap behaves like the live traffic it recorded.
//!
//! Counting rule: a flow cut in slices by the active timeout counts once in `flows` (its first
//! slice) and its packets and bytes exactly once across the slices.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// The 5-tuple a flow is keyed by. ICMP flows use type and code as the destination "port"
/// (type × 256 + code), as NetFlow exporters do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// What the flow table needs from one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    pub key: FlowKey,
    /// IP-layer length: IPv4 total length, or IPv6 payload length plus its 40-byte header.
    pub ip_len: u32,
    /// TCP FIN or RST seen: the flow is ending.
    pub fin_or_rst: bool,
}

/// Why a flow record was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Inactive,
    Active,
    Fin,
    Evicted,
    Flush,
}

/// A finished (or sliced) flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRecord {
    pub key: FlowKey,
    pub first_ns: u64,
    pub last_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    /// A later slice of a flow already counted (active timeout): adds packets and bytes, not a flow.
    pub continuation: bool,
    pub reason: EndReason,
}

#[derive(Debug, Clone)]
pub struct FlowTableConfig {
    pub active_timeout: Duration,
    pub inactive_timeout: Duration,
    /// After a FIN or RST, the flow waits this long for the last packets of the close.
    pub fin_timeout: Duration,
    pub max_flows: usize,
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        Self {
            active_timeout: Duration::from_secs(60),
            inactive_timeout: Duration::from_secs(15),
            fin_timeout: Duration::from_secs(1),
            max_flows: 200_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    first_ns: u64,
    last_ns: u64,
    packets: u64,
    bytes: u64,
    continuation: bool,
    closing: bool,
}

pub struct FlowTable {
    cfg: FlowTableConfig,
    flows: HashMap<FlowKey, Entry>,
    out: Vec<FlowRecord>,
    next_sweep_ns: u64,
    pub evictions: u64,
}

const SWEEP_EVERY_NS: u64 = 1_000_000_000;

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

impl FlowTable {
    pub fn new(cfg: FlowTableConfig) -> Self {
        Self {
            flows: HashMap::with_capacity(cfg.max_flows.min(65_536)),
            cfg,
            out: Vec::new(),
            next_sweep_ns: 0,
            evictions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Counts one packet seen at `ts_ns` (Unix nanoseconds).
    pub fn observe(&mut self, ts_ns: u64, p: &PacketMeta) {
        if ts_ns >= self.next_sweep_ns {
            self.sweep(ts_ns);
            self.next_sweep_ns = ts_ns + SWEEP_EVERY_NS;
        }
        let active = ns(self.cfg.active_timeout);
        if let Some(e) = self.flows.get_mut(&p.key) {
            if ts_ns.saturating_sub(e.first_ns) >= active {
                // Report the slice so far; the flow goes on as a continuation.
                self.out.push(record(p.key, *e, EndReason::Active));
                *e = Entry {
                    first_ns: ts_ns,
                    last_ns: ts_ns,
                    packets: 0,
                    bytes: 0,
                    continuation: true,
                    closing: false,
                };
            }
            e.last_ns = e.last_ns.max(ts_ns);
            e.packets += 1;
            e.bytes += u64::from(p.ip_len);
            e.closing |= p.fin_or_rst;
            return;
        }
        if self.flows.len() >= self.cfg.max_flows {
            self.sweep(ts_ns);
            if self.flows.len() >= self.cfg.max_flows {
                self.evict_oldest();
            }
        }
        self.flows.insert(
            p.key,
            Entry {
                first_ns: ts_ns,
                last_ns: ts_ns,
                packets: 1,
                bytes: u64::from(p.ip_len),
                continuation: false,
                closing: p.fin_or_rst,
            },
        );
    }

    /// Expires flows idle past the inactive timeout, or closing and quiet past the FIN timeout.
    pub fn sweep(&mut self, now_ns: u64) {
        let inactive = ns(self.cfg.inactive_timeout);
        let fin = ns(self.cfg.fin_timeout);
        let out = &mut self.out;
        self.flows.retain(|k, e| {
            let idle = now_ns.saturating_sub(e.last_ns);
            let reason = if e.closing && idle >= fin {
                EndReason::Fin
            } else if idle >= inactive {
                EndReason::Inactive
            } else {
                return true;
            };
            out.push(record(*k, *e, reason));
            false
        });
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .flows
            .iter()
            .min_by_key(|(_, e)| e.last_ns)
            .map(|(k, e)| (*k, *e));
        if let Some((k, e)) = oldest {
            self.flows.remove(&k);
            self.out.push(record(k, e, EndReason::Evicted));
            self.evictions += 1;
        }
    }

    /// Ends every flow (end of a replay, shutdown).
    pub fn flush(&mut self) {
        for (k, e) in self.flows.drain() {
            self.out.push(record(k, e, EndReason::Flush));
        }
    }

    /// Records emitted since the last call.
    pub fn drain(&mut self) -> std::vec::Drain<'_, FlowRecord> {
        self.out.drain(..)
    }
}

fn record(key: FlowKey, e: Entry, reason: EndReason) -> FlowRecord {
    FlowRecord {
        key,
        first_ns: e.first_ns,
        last_ns: e.last_ns,
        packets: e.packets,
        bytes: e.bytes,
        continuation: e.continuation,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const S: u64 = 1_000_000_000;

    fn pkt(sport: u16, len: u32, fin: bool) -> PacketMeta {
        PacketMeta {
            key: FlowKey {
                src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                sport,
                dport: 443,
                proto: 6,
            },
            ip_len: len,
            fin_or_rst: fin,
        }
    }

    fn totals(recs: &[FlowRecord]) -> (u64, u64, u64) {
        recs.iter().fold((0, 0, 0), |(f, p, b), r| {
            (f + u64::from(!r.continuation), p + r.packets, b + r.bytes)
        })
    }

    #[test]
    fn a_long_flow_is_sliced_but_counted_once() {
        let mut t = FlowTable::new(FlowTableConfig::default());
        // One packet every 5 s for 200 s: slices at 60, 120, 180 s.
        for i in 0..40 {
            t.observe(i * 5 * S, &pkt(1000, 100, false));
        }
        t.flush();
        let recs: Vec<_> = t.drain().collect();
        assert_eq!(
            recs.iter()
                .filter(|r| r.reason == EndReason::Active)
                .count(),
            3
        );
        assert_eq!(totals(&recs), (1, 40, 4_000));
    }

    #[test]
    fn inactivity_and_fin_end_flows() {
        let mut t = FlowTable::new(FlowTableConfig::default());
        t.observe(0, &pkt(1, 60, false));
        t.observe(S, &pkt(2, 60, false));
        t.observe(S + 1, &pkt(2, 52, true));
        t.observe(S + 2, &pkt(2, 40, false)); // the last ACK of the close stays in the flow
        t.sweep(3 * S);
        let fin: Vec<_> = t.drain().collect();
        assert_eq!(fin.len(), 1);
        assert_eq!(
            (fin[0].reason, fin[0].packets, fin[0].bytes),
            (EndReason::Fin, 3, 152)
        );
        t.sweep(16 * S);
        let idle: Vec<_> = t.drain().collect();
        assert_eq!((idle.len(), idle[0].reason), (1, EndReason::Inactive));
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_evicts_the_oldest_and_counts_it() {
        let mut t = FlowTable::new(FlowTableConfig {
            max_flows: 3,
            ..FlowTableConfig::default()
        });
        for port in 0..5u16 {
            t.observe(u64::from(port), &pkt(port, 10, false));
        }
        assert_eq!((t.len(), t.evictions), (3, 2));
        t.flush();
        let recs: Vec<_> = t.drain().collect();
        assert_eq!(
            totals(&recs),
            (5, 5, 50),
            "nothing lost, evicted flows are reported"
        );
        let evicted: Vec<u16> = recs
            .iter()
            .filter(|r| r.reason == EndReason::Evicted)
            .map(|r| r.key.sport)
            .collect();
        assert_eq!(evicted, [0, 1]);
    }
}
