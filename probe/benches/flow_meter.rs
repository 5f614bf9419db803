//! Flow meter benchmark: frames held in memory (no I/O) are parsed and counted in the flow
//! table, one core. Reports packets per second and the memory the table takes with 10,000
//! active flows (process RSS before and after filling it). Then the step after the table: flow
//! records summed into minute aggregates (`Aggregator::add`, which classifies the service port
//! and counts the remote /24 for the top talkers) in records per second, and the
//! classification alone.
//!
//! Run: `cargo bench -p rie-probe --bench flow_meter` (figures in docs/performance.md).

use std::time::Instant;

use etherparse::PacketBuilder;
use rie_flow::aggregate::{Aggregator, Prefixes};
use rie_flow::flow_table::{EndReason, FlowKey, FlowRecord, FlowTable, FlowTableConfig};
use rie_probe::meter::packet;
use rie_proto::PortClass;

const FLOWS: u32 = 10_000;
const PACKETS: u64 = 5_000_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").trim().to_string())
            })
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    // A mix of frames: TCP (70 %), UDP (25 %), ICMP (5 %), IPv4 and IPv6, 10,000 flows.
    let frames: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| {
            let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
            let (a, b) = ((i >> 8) as u8, i as u8);
            let mut f = Vec::new();
            match i % 20 {
                0 => eth
                    .ipv4([10, 1, a, b], [10, 2, 0, 1], 64)
                    .icmpv4_echo_request(1, 1)
                    .write(&mut f, &[0u8; 56]),
                1..=5 => eth
                    .ipv4([10, 1, a, b], [10, 3, 0, 53], 64)
                    .udp(1024 + (i % 50_000) as u16, 53)
                    .write(&mut f, &[0u8; 80]),
                6..=9 => eth
                    .ipv6(
                        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, a, b],
                        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                        64,
                    )
                    .tcp(40_000, 443, 1, 1000)
                    .write(&mut f, &[0u8; 1200]),
                _ => eth
                    .ipv4([10, 1, a, b], [10, 4, 0, 1], 64)
                    .tcp(1024 + (i % 60_000) as u16, 443, 1, 1000)
                    .write(&mut f, &[0u8; 600]),
            }
            .expect("build frame");
            f
        })
        .collect();
    let rss_before = rss_kib();
    let mut table = FlowTable::new(FlowTableConfig::default());
    let mut out = 0u64;
    let start = Instant::now();
    let ts0 = 1_790_000_000_000_000_000u64;
    for n in 0..PACKETS {
        let f = &frames[(n % u64::from(FLOWS)) as usize];
        // 1 µs apart: 5 s of traffic, no flow idles out, all 10,000 stay active.
        if let Some(m) = packet::from_ethernet(f) {
            table.observe(ts0 + n * 1_000, &m);
        }
        out += table.drain().count() as u64;
    }
    let dt = start.elapsed();
    let rss_after = rss_kib();
    println!(
        "flow_meter: {PACKETS} packets in {:.3} s = {:.0} packets/s on one core; {} active flows, {out} records emitted; RSS {} KiB before the table, {} KiB with it (+{} KiB)",
        dt.as_secs_f64(),
        PACKETS as f64 / dt.as_secs_f64(),
        table.len(),
        rss_before,
        rss_after,
        rss_after.saturating_sub(rss_before)
    );

    aggregation();
}

/// Records per second through the aggregator (direction, port class, minute sums), and the
/// port classification alone, over the same record mix.
fn aggregation() {
    const RECORDS: u64 = 2_000_000;
    let records: Vec<FlowRecord> = (0..FLOWS)
        .map(|i| {
            let (proto, sport, dport) = match i % 20 {
                0 => (1, 0, 0),
                1..=5 => (17, 1024 + i as u16, 53),
                6..=7 => (17, 20_000 + i as u16, 20_002),
                8..=9 => (6, 40_000, 5201),
                _ => (6, 1024 + i as u16, 443),
            };
            FlowRecord {
                key: FlowKey {
                    src: std::net::IpAddr::from([10, 1, (i >> 8) as u8, i as u8]),
                    dst: std::net::IpAddr::from([192, 0, 2, (i % 200) as u8]),
                    sport,
                    dport,
                    proto,
                },
                first_ns: 1_790_000_000_000_000_000 + u64::from(i) * 1_000_000,
                last_ns: 1_790_000_000_000_000_000 + u64::from(i) * 1_000_000,
                packets: 3,
                bytes: 1800,
                continuation: false,
                reason: EndReason::Inactive,
            }
        })
        .collect();
    let prefixes = Prefixes(vec!["10.1.0.0/16".parse().expect("prefix")]);
    let mut agg = Aggregator::new(prefixes).with_top_talkers(10);
    let start = Instant::now();
    let mut rows = 0usize;
    for n in 0..RECORDS {
        agg.add(&records[(n % u64::from(FLOWS)) as usize]);
        if n % 100_000 == 99_999 {
            rows += agg.take().len() + agg.take_top_talkers().len();
        }
    }
    let dt = start.elapsed();
    println!(
        "aggregate: {RECORDS} flow records in {:.3} s = {:.0} records/s on one core, with port classes and top-10 talkers ({rows} aggregates and talkers)",
        dt.as_secs_f64(),
        RECORDS as f64 / dt.as_secs_f64()
    );
    let start = Instant::now();
    let mut web = 0u64;
    for n in 0..RECORDS * 10 {
        let k = &records[(n % u64::from(FLOWS)) as usize].key;
        let c = PortClass::classify(
            std::hint::black_box(k.proto),
            std::hint::black_box(k.sport),
            k.dport,
        );
        web += u64::from(c == PortClass::Web);
    }
    let dt = start.elapsed();
    println!(
        "port_class: {} classifications in {:.3} s = {:.1} ns each ({web} web)",
        RECORDS * 10,
        dt.as_secs_f64(),
        dt.as_nanos() as f64 / (RECORDS * 10) as f64
    );
}
