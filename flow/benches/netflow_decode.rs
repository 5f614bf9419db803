//! NetFlow decode benchmark, one core: v9 and IPFIX export packets (30 records of a typical
//! 11-field template each, from 1,000 exporters) decoded and summed into minute aggregates by
//! the same `Decoder` + `Aggregator` the collector and the probe use. Then the same over real
//! UDP on loopback: a sender thread, a receiving socket with an 8 MiB buffer request, the
//! receiver decoding as it goes; reports records/s and datagrams lost.
//!
//! Run: `cargo bench -p rie-flow --bench netflow_decode` (figures in docs/performance.md);
//! `NETFLOW_BENCH_ONLY=memory` runs only the in-memory figures. The "with sites" figure adds
//! what the collector does per record since NetFlow has directions and top talkers: the
//! exporter's site looked up once per datagram, the direction against that site's two
//! prefixes, the record counted in the site's [`Talkers`].
//!
//! To offer the same paced stream to another collector (nfcapd, nfacctd), set
//! `NETFLOW_BENCH_SEND=HOST:PORT` (and optionally `NETFLOW_BENCH_RATE`, datagrams/s, default
//! 10000, `NETFLOW_BENCH_VERSION` 9 or 10, `NETFLOW_BENCH_SECONDS`, default 5): the bench
//! only sends, and prints how many records, packets and bytes it sent (templates included). `NETFLOW_BENCH_ONLY=memory` runs the in-memory part only (for profiling:
//! `NETFLOW_BENCH_ONLY=memory perf record -g target/release/deps/netflow_decode-*`).

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use ipnet::IpNet;
use rie_flow::aggregate::{direction_in, Talkers};
use rie_flow::netflow::{Aggregator, Decoder, DecoderConfig};
use rie_proto::Direction;

const RECORDS_PER_PACKET: u32 = 30;
const EXPORTERS: u32 = 1_000;

fn be16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_be_bytes());
}
fn be32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_be_bytes());
}

/// Fields: src/dst IPv4, src/dst port, protocol, tcp flags, bytes, packets, start, end, input.
const FIELDS_V9: [(u16, u16); 11] = [
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (1, 4),
    (2, 4),
    (22, 4),
    (21, 4),
    (10, 2),
];
/// IPFIX: same with 8-byte counters and absolute millisecond times.
const FIELDS_IPFIX: [(u16, u16); 11] = [
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (1, 8),
    (2, 8),
    (152, 8),
    (153, 8),
    (10, 4),
];

fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    be16(&mut v, id);
    be16(&mut v, (4 + body.len()) as u16);
    v.extend_from_slice(body);
    v
}

fn template_set(set_id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
    let mut b = Vec::new();
    be16(&mut b, 256);
    be16(&mut b, fields.len() as u16);
    for &(t, l) in fields {
        be16(&mut b, t);
        be16(&mut b, l);
    }
    set(set_id, &b)
}

fn records(fields: &[(u16, u16)], seed: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for r in 0..RECORDS_PER_PACKET {
        for &(t, l) in fields {
            let x: u64 = match t {
                4 => [6, 17, 1][(r % 3) as usize],
                1 => 1_500 + u64::from(r + seed) % 9_000,
                2 => 1 + u64::from(r) % 10,
                22 | 21 => 50_000,
                // Destination apart from the source, so that with site prefixes some
                // records go out, some come in, some are internal or transit.
                12 => u64::from(r * 13 + seed * 3 + 64),
                152 | 153 => 1_790_000_000_000,
                _ => u64::from(r * 7 + seed),
            };
            b.extend_from_slice(&x.to_be_bytes()[8 - l as usize..]);
        }
    }
    b
}

fn v9(seed: u32, with_template: bool) -> Vec<u8> {
    let mut v = Vec::new();
    be16(&mut v, 9);
    be16(&mut v, RECORDS_PER_PACKET as u16);
    be32(&mut v, 60_000);
    be32(&mut v, 1_790_000_000);
    be32(&mut v, seed);
    be32(&mut v, 0);
    if with_template {
        v.extend(template_set(0, &FIELDS_V9));
    }
    v.extend(set(256, &records(&FIELDS_V9, seed)));
    v
}

fn ipfix(seed: u32, with_template: bool) -> Vec<u8> {
    let mut sets = Vec::new();
    if with_template {
        sets.extend(template_set(2, &FIELDS_IPFIX));
    }
    sets.extend(set(256, &records(&FIELDS_IPFIX, seed)));
    let mut v = Vec::new();
    be16(&mut v, 10);
    be16(&mut v, (16 + sets.len()) as u16);
    be32(&mut v, 1_790_000_000);
    be32(&mut v, seed);
    be32(&mut v, 0);
    v.extend(sets);
    v
}

fn exporter(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

/// Time this thread has spent on a CPU (Linux `/proc/thread-self/schedstat`, first field, ns):
/// on a machine shared with other work, records per CPU-second is the per-core figure, while
/// records per wall-clock second also counts the time other processes had the core.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn in_memory(name: &str, make: fn(u32, bool) -> Vec<u8>) {
    let mut d = Decoder::new(&DecoderConfig::default(), None).expect("decoder");
    let mut agg = Aggregator::default();
    let mut out = Vec::new();
    for e in 0..EXPORTERS {
        d.decode(exporter(e), &make(e, true), &mut out);
    }
    let packets: Vec<Vec<u8>> = (0..64).map(|s| make(s, false)).collect();
    let rounds = 200u32;
    out.clear();
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    let mut n = 0u64;
    for round in 0..rounds {
        for e in 0..EXPORTERS {
            out.clear();
            let p = &packets[((round + e) % 64) as usize];
            d.decode(exporter(e), p, &mut out);
            for r in &out {
                agg.add(r, Direction::Unknown);
            }
            n += out.len() as u64;
        }
        if round % 50 == 49 {
            std::hint::black_box(agg.take());
        }
    }
    let s = start.elapsed().as_secs_f64();
    let cpu = match (cpu_start, thread_cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => f64::NAN,
    };
    assert_eq!(n, u64::from(rounds * EXPORTERS * RECORDS_PER_PACKET));
    println!(
        "{name}: decode + aggregate, {n} records from {EXPORTERS} exporters: {:.0} records/s of CPU time ({cpu:.2} s on CPU), {:.0} records/s of wall-clock time ({s:.2} s)",
        n as f64 / cpu,
        n as f64 / s,
    );
}

/// [`in_memory`] plus the collector's per-record work for directions and top talkers: one
/// site per exporter with two prefixes (an IPv4 /25 holding part of the generated addresses,
/// an IPv6 /48), looked up once per datagram in a map of 14,000 exporters.
fn in_memory_with_sites(name: &str, make: fn(u32, bool) -> Vec<u8>) {
    let mut d = Decoder::new(&DecoderConfig::default(), None).expect("decoder");
    let mut agg = Aggregator::default();
    let sites: HashMap<IpAddr, usize> = (0..14_000u32).map(|e| (exporter(e), e as usize)).collect();
    let prefixes: Vec<Vec<IpNet>> = (0..14_000u32)
        .map(|e| {
            vec![
                "0.0.0.0/25".parse().expect("prefix"),
                format!("fd52:4945:{:x}::/48", e & 0xffff)
                    .parse()
                    .expect("prefix"),
            ]
        })
        .collect();
    let mut talkers: HashMap<usize, Talkers> = HashMap::new();
    let mut out = Vec::new();
    for e in 0..EXPORTERS {
        d.decode(exporter(e), &make(e, true), &mut out);
    }
    let packets: Vec<Vec<u8>> = (0..64).map(|s| make(s, false)).collect();
    let rounds = 200u32;
    let start = Instant::now();
    let (mut n, mut known) = (0u64, 0u64);
    for round in 0..rounds {
        for e in 0..EXPORTERS {
            out.clear();
            let p = &packets[((round + e) % 64) as usize];
            let from = exporter(e);
            d.decode(from, p, &mut out);
            let idx = sites.get(&from).copied();
            let site_prefixes = idx.map_or(&[][..], |i| &prefixes[i][..]);
            for r in &out {
                let dir = direction_in(site_prefixes, r.src.as_ref(), r.dst.as_ref());
                agg.add(r, dir);
                if let (Some(i), Direction::Inbound | Direction::Outbound) = (idx, dir) {
                    known += 1;
                    talkers.entry(i).or_insert_with(|| Talkers::new(10)).add(
                        r.start_ms.div_euclid(60_000) * 60,
                        dir,
                        r.src,
                        r.dst,
                        r.bytes,
                        r.packets,
                    );
                }
            }
            n += out.len() as u64;
        }
        if round % 50 == 49 {
            std::hint::black_box(agg.take());
            for (_, mut t) in talkers.drain() {
                std::hint::black_box(t.take_top());
            }
        }
    }
    let s = start.elapsed().as_secs_f64();
    assert_eq!(n, u64::from(rounds * EXPORTERS * RECORDS_PER_PACKET));
    assert!(known > 0 && known < n, "directions: {known} of {n} known");
    println!(
        "{name}: decode + aggregate + direction + top talkers, {n} records ({:.0} % with a direction) from {EXPORTERS} exporters: {:.0} records/s ({:.2} s)",
        100.0 * known as f64 / n as f64,
        n as f64 / s,
        s
    );
}

/// Sends `total` datagrams paced at `rate` per second (in bursts of 100, as a busy exporter
/// fleet does) and decodes them as they come.
fn over_udp(name: &str, make: fn(u32, bool) -> Vec<u8>, rate: u32) {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    sock.set_recv_buffer_size(8 * 1024 * 1024).expect("rcvbuf");
    let granted = sock.recv_buffer_size().unwrap_or(0);
    sock.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .expect("addr")
            .into(),
    )
    .expect("bind");
    let rx: UdpSocket = sock.into();
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let to = rx.local_addr().expect("addr");
    let total: u32 = rate * 5;
    let sender = std::thread::spawn(move || {
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        tx.send_to(&make(0, true), to).expect("send");
        std::thread::sleep(Duration::from_millis(50));
        let packets: Vec<Vec<u8>> = (0..64).map(|s| make(s, false)).collect();
        let start = Instant::now();
        for i in 0..total {
            if i % 100 == 0 {
                let due = start + Duration::from_secs_f64(f64::from(i) / f64::from(rate));
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            tx.send_to(&packets[(i % 64) as usize], to).expect("send");
        }
        start.elapsed()
    });
    let mut d = Decoder::new(&DecoderConfig::default(), None).expect("decoder");
    let mut agg = Aggregator::default();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let mut datagrams = 0u64;
    let mut records = 0u64;
    let mut first = None;
    let mut last = Instant::now();
    while let Ok((n, from)) = rx.recv_from(&mut buf) {
        first.get_or_insert_with(Instant::now);
        last = Instant::now();
        out.clear();
        d.decode(from.ip(), &buf[..n], &mut out);
        for r in &out {
            agg.add(r, Direction::Unknown);
        }
        datagrams += 1;
        records += out.len() as u64;
    }
    let send_time = sender.join().expect("sender");
    let s = first.map_or(0.0, |f| (last - f).as_secs_f64());
    let lost = u64::from(total) + 1 - datagrams;
    println!(
        "{name} over UDP loopback at {rate} datagrams/s ({} records/s offered): sent {} in {:.2} s, received {datagrams} (lost {lost}), {records} records in {s:.2} s = {:.0} records/s; receive buffer granted {granted} bytes",
        rate * RECORDS_PER_PACKET,
        total + 1,
        send_time.as_secs_f64(),
        records as f64 / s
    );
}

/// Sends the paced stream to an external collector; prints what was sent.
fn send_only(to: &str) {
    let rate: u32 = std::env::var("NETFLOW_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let make: fn(u32, bool) -> Vec<u8> = match std::env::var("NETFLOW_BENCH_VERSION").as_deref() {
        Ok("10") => ipfix,
        _ => v9,
    };
    // 64 observation domains (source ids), so that a collector spreading exporters over
    // threads can use them; templates for each first.
    let with_domain = |mut p: Vec<u8>, domain: u32| {
        let at = if p[1] == 9 { 16 } else { 12 };
        p[at..at + 4].copy_from_slice(&domain.to_be_bytes());
        p
    };
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for d in 0..64 {
        tx.send_to(&with_domain(make(0, true), d), to)
            .expect("send");
    }
    std::thread::sleep(Duration::from_millis(50));
    let packets: Vec<Vec<u8>> = (0..64).map(|s| with_domain(make(s, false), s)).collect();
    let seconds: u32 = std::env::var("NETFLOW_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let total = rate * seconds;
    // What the records carry (see `records`): bytes 1,500 + (r + seed) % 9,000, packets
    // 1 + r % 10; the template datagrams have seed 0, data datagram i has seed i % 64.
    let sums = |seed: u32| {
        (0..RECORDS_PER_PACKET).fold((0u64, 0u64), |(p, b), r| {
            (
                p + 1 + u64::from(r) % 10,
                b + 1_500 + u64::from(r + seed) % 9_000,
            )
        })
    };
    let (mut sent_packets, mut sent_bytes) = (0u64, 0u64);
    for _ in 0..64 {
        let (p, b) = sums(0);
        sent_packets += p;
        sent_bytes += b;
    }
    for i in 0..total {
        let (p, b) = sums(i % 64);
        sent_packets += p;
        sent_bytes += b;
    }
    let start = Instant::now();
    for i in 0..total {
        if i % 100 == 0 {
            let due = start + Duration::from_secs_f64(f64::from(i) / f64::from(rate));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        tx.send_to(&packets[(i % 64) as usize], to).expect("send");
    }
    println!(
        "sent {} datagrams, {} records (+64 template datagrams with {} records each) to {to} in {:.2} s; with the templates' records: {} records, {sent_packets} packets, {sent_bytes} bytes",
        total,
        u64::from(total) * u64::from(RECORDS_PER_PACKET),
        RECORDS_PER_PACKET,
        start.elapsed().as_secs_f64(),
        (u64::from(total) + 64) * u64::from(RECORDS_PER_PACKET),
    );
}

fn main() {
    if let Ok(to) = std::env::var("NETFLOW_BENCH_SEND") {
        send_only(&to);
        return;
    }
    in_memory("NetFlow v9", v9);
    in_memory_with_sites("NetFlow v9", v9);
    in_memory("IPFIX", ipfix);
    in_memory_with_sites("IPFIX", ipfix);
    if std::env::var("NETFLOW_BENCH_ONLY").as_deref() == Ok("memory") {
        return;
    }
    for rate in [10_000, 20_000, 40_000] {
        over_udp("NetFlow v9", v9, rate);
        over_udp("IPFIX", ipfix, rate);
    }
}
