//! Flow meter benchmark: frames held in memory (no I/O) are parsed and counted in the flow
//! table, one core. Reports packets per second and the memory the table takes with 10,000
//! active flows (process RSS before and after filling it).
//!
//! Run: `cargo bench -p rie-probe --bench flow_meter` (figures in docs/performance.md).

use std::time::Instant;

use etherparse::PacketBuilder;
use rie_probe::meter::flow_table::{FlowTable, FlowTableConfig};
use rie_probe::meter::packet;

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
}
