//! sFlow decode benchmark, one core: datagrams as a switch sends them (8 flow samples of
//! 1-in-1024, each a 128-byte Ethernet header with a VLAN tag and IPv4 TCP, plus one counter
//! sample with generic interface counters per 8 datagrams), from 1,000 agents, decoded and summed into minute aggregates by the
//! same `Decoder` + `Aggregator` the collector's sFlow input uses. Reports samples per second
//! of the thread's CPU time (`/proc/thread-self/schedstat`) and of wall-clock time.
//!
//! Run: `cargo bench -p rie-flow --bench sflow_decode` (figures in docs/performance.md).

use std::time::Instant;

use rie_flow::netflow::Aggregator;
use rie_flow::sflow::{Decoder, DecoderConfig};
use rie_proto::Direction;

const AGENTS: u32 = 1_000;
const SAMPLES_PER_DATAGRAM: u32 = 8;
const DATAGRAMS: u32 = 400_000;

fn be32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_be_bytes());
}

fn tagged(v: &mut Vec<u8>, format: u32, body: &[u8]) {
    be32(v, format);
    be32(v, body.len() as u32);
    v.extend_from_slice(body);
}

/// A 128-byte sampled header: Ethernet + 802.1Q + IPv4 + TCP of a 1,500-byte packet.
fn header(i: u32) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .single_vlan(etherparse::VlanId::try_new(100).expect("vlan"))
        .ipv4([10, 1, (i >> 8) as u8, i as u8], [192, 0, 2, 9], 64)
        .tcp(40_000 + (i % 1000) as u16, 443, 1, 1000)
        .write(&mut f, &[0u8; 1446])
        .expect("frame");
    f.truncate(128);
    f
}

fn datagram(agent: u32, seq: u32, headers: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    be32(&mut v, 5);
    be32(&mut v, 1);
    v.extend_from_slice(&(0x0a00_0000 | agent).to_be_bytes());
    be32(&mut v, 0);
    be32(&mut v, seq);
    be32(&mut v, seq * 1000);
    be32(
        &mut v,
        SAMPLES_PER_DATAGRAM + u32::from(seq.is_multiple_of(8)),
    );
    for s in 0..SAMPLES_PER_DATAGRAM {
        let h = &headers[((seq * SAMPLES_PER_DATAGRAM + s) % headers.len() as u32) as usize];
        let mut rec = Vec::new();
        for x in [1u32, 1522, 4, h.len() as u32] {
            be32(&mut rec, x);
        }
        rec.extend_from_slice(h);
        let mut body = Vec::new();
        let sample_seq = seq * SAMPLES_PER_DATAGRAM + s;
        for x in [sample_seq, 3, 1024, sample_seq * 1024, 0, 3, 4, 1] {
            be32(&mut body, x);
        }
        tagged(&mut body, 1, &rec);
        tagged(&mut v, 1, &body);
    }
    if seq.is_multiple_of(8) {
        let mut g = Vec::new();
        for x in [3u32, 6] {
            be32(&mut g, x);
        }
        g.extend_from_slice(&1_000_000_000u64.to_be_bytes());
        for x in [1u32, 3] {
            be32(&mut g, x);
        }
        g.extend_from_slice(&(u64::from(seq) * 1_000_000).to_be_bytes());
        g.extend_from_slice(&[0; 24]);
        g.extend_from_slice(&(u64::from(seq) * 500_000).to_be_bytes());
        g.extend_from_slice(&[0; 24]);
        let mut body = Vec::new();
        for x in [seq / 8, 3, 1] {
            be32(&mut body, x);
        }
        tagged(&mut body, 1, &g);
        tagged(&mut v, 2, &body);
    }
    v
}

fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn main() {
    let headers: Vec<Vec<u8>> = (0..4096).map(header).collect();
    // Eight datagrams per agent, replayed with their datagram sequence and uptime moved on
    // (4-byte writes) so that the agents never look restarted.
    let mut block: Vec<Vec<u8>> = (0..AGENTS * 8)
        .map(|i| datagram(i % AGENTS, 1 + i / AGENTS, &headers))
        .collect();
    let mut d = Decoder::new(&DecoderConfig::default());
    let mut agg = Aggregator::default();
    let (mut flows, mut counters) = (Vec::new(), Vec::new());
    let (mut samples, mut counter_samples, mut bytes) = (0u64, 0u64, 0u64);
    let cpu0 = thread_cpu_ns();
    let t0 = Instant::now();
    for n in 0..DATAGRAMS {
        let len = block.len();
        let dg = &mut block[(n as usize) % len];
        let seq = 1 + n / AGENTS;
        dg[16..20].copy_from_slice(&seq.to_be_bytes());
        dg[20..24].copy_from_slice(&(seq * 1000).to_be_bytes());
        let dg = &*dg;
        flows.clear();
        counters.clear();
        let r = d.decode(dg, 1_790_000_000_000, &mut flows, &mut counters);
        samples += r.flow_samples;
        counter_samples += r.counter_samples;
        assert!(r.errors.is_empty() && !r.restarted);
        bytes += dg.len() as u64;
        for f in &flows {
            agg.add(f, Direction::Unknown);
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = thread_cpu_ns()
        .zip(cpu0)
        .map(|(a, b)| (a - b) as f64 / 1e9)
        .unwrap_or(wall);
    let rows: usize = agg.take().values().map(Vec::len).sum();
    println!(
        "sflow decode+aggregate: {DATAGRAMS} datagrams ({:.0} MB), {samples} flow samples, \
         {counter_samples} counter samples, {rows} minute rows, {AGENTS} agents",
        bytes as f64 / 1e6
    );
    println!(
        "  {:.0} samples/s of CPU ({:.0} datagrams/s), {:.0} samples/s wall ({cpu:.2} s CPU, {wall:.2} s wall)",
        samples as f64 / cpu,
        f64::from(DATAGRAMS) / cpu,
        samples as f64 / wall
    );
}
