//! sFlow input on datagrams built byte by byte, for what no exporter produces on demand:
//! - a record that claims more than its sample holds, and a sample that claims more than its
//!   datagram holds: counted per agent site and reason, the samples around them kept;
//! - garbage from one agent between good datagrams of another: counted, the other's data
//!   stored whole;
//! - agents and sources in no site: dropped, never stored, counted per source address with a
//!   bounded label set (64 addresses, then `other`);
//! - interface counter samples of the ifIndexes that `links.csv` maps to S1's links: octets,
//!   errors (across a 32-bit wrap), utilisation and speed per link; an unmapped ifIndex and an
//!   agent restart counted, no delta made up from them.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rie_e2e::{fixture, Collector};
use serde_json::Value;

fn be32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_be_bytes());
}

fn tagged(format: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    be32(&mut v, format); // sample or record format (enterprise 0)
    be32(&mut v, body.len() as u32); // length
    v.extend_from_slice(body);
    v
}

/// Datagram header (version 5, IPv4 agent, sub-agent 0, sequence, uptime ms) and samples.
fn datagram(agent: [u8; 4], seq: u32, uptime: u32, samples: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    be32(&mut v, 5); // version
    be32(&mut v, 1); // agent address type: IPv4
    v.extend_from_slice(&agent); // agent address
    be32(&mut v, 0); // sub-agent id
    be32(&mut v, seq); // datagram sequence
    be32(&mut v, uptime); // uptime (ms)
    be32(&mut v, samples.len() as u32); // number of samples
    for s in samples {
        v.extend_from_slice(s);
    }
    v
}

/// An Ethernet frame with ICMP echo 10.1.0.5 → 192.0.2.1, 84 IP bytes.
fn icmp_frame() -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 1, 0, 5], [192, 0, 2, 1], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut f, &[0u8; 56])
        .unwrap();
    f
}

/// Raw packet header record (format 1): Ethernet, frame length, stripped, header.
fn raw_header(frame: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    be32(&mut v, 1); // header protocol: Ethernet
    be32(&mut v, frame.len() as u32 + 4); // frame length (with FCS)
    be32(&mut v, 4); // stripped: the FCS
    be32(&mut v, frame.len() as u32); // header length
    v.extend_from_slice(frame);
    while v.len() % 4 != 0 {
        v.push(0); // XDR padding
    }
    tagged(1, &v)
}

/// Flow sample (format 1), 1-in-`rate`, source ifIndex 3, with `records`.
fn flow_sample(seq: u32, rate: u32, records: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    be32(&mut v, seq); // sample sequence
    be32(&mut v, 3); // source id: ifIndex 3
    be32(&mut v, rate); // sampling rate
    be32(&mut v, seq * rate); // sample pool
    be32(&mut v, 0); // drops
    be32(&mut v, 3); // input ifIndex
    be32(&mut v, 4); // output ifIndex
    be32(&mut v, records.len() as u32); // number of records
    for r in records {
        v.extend_from_slice(r);
    }
    tagged(1, &v)
}

fn good_sample(seq: u32, rate: u32) -> Vec<u8> {
    flow_sample(seq, rate, &[raw_header(&icmp_frame())])
}

/// Counter sample (format 2) with generic interface counters of `if_index` (1 Gbit/s).
fn counters(seq: u32, if_index: u32, in_octets: u64, out_octets: u64, in_errors: u32) -> Vec<u8> {
    let mut g = Vec::new();
    be32(&mut g, if_index); // ifIndex
    be32(&mut g, 6); // ifType
    g.extend_from_slice(&1_000_000_000u64.to_be_bytes()); // ifSpeed
    be32(&mut g, 1); // ifDirection
    be32(&mut g, 3); // ifStatus
    g.extend_from_slice(&in_octets.to_be_bytes()); // ifInOctets
    for x in [0u32, 0, 0, 0, in_errors, 0] {
        // in unicast, multicast, broadcast, discards, errors, unknown protos
        be32(&mut g, x);
    }
    g.extend_from_slice(&out_octets.to_be_bytes()); // ifOutOctets
    for x in [0u32, 0, 0, 7, 0, 0] {
        // out unicast, multicast, broadcast, discards, errors, promiscuous mode
        be32(&mut g, x);
    }
    let mut v = Vec::new();
    be32(&mut v, seq); // sample sequence
    be32(&mut v, if_index); // source id
    be32(&mut v, 1); // one record
    v.extend_from_slice(&tagged(1, &g));
    tagged(2, &v)
}

/// The fixture inventory with S2 exporting from 127.0.0.2 and S1's links on ifIndex 3
/// (primary) and 4 (backup).
fn inventory(dir: &Path) -> PathBuf {
    let inv = dir.join("inventory-sflow");
    std::fs::create_dir_all(&inv).unwrap();
    let sites = std::fs::read_to_string(fixture("inventory/sites.csv")).unwrap();
    std::fs::write(
        inv.join("sites.csv"),
        sites.replace(",10.0.2.1\n", ",127.0.0.2\n"),
    )
    .unwrap();
    let links = std::fs::read_to_string(fixture("inventory/links.csv")).unwrap();
    let mut out = String::new();
    for (i, line) in links.lines().enumerate() {
        let extra = match (i, line.split(',').next().unwrap()) {
            (0, _) => ",sflow_ifindex",
            (_, "S1-P") => ",3",
            (_, "S1-B") => ",4",
            _ => ",",
        };
        out.push_str(line);
        out.push_str(extra);
        out.push('\n');
    }
    std::fs::write(inv.join("links.csv"), out).unwrap();
    inv
}

fn send_from(from: [u8; 4], to: SocketAddr, datagrams: &[Vec<u8>]) {
    let tx = UdpSocket::bind((IpAddr::from(from), 0)).unwrap();
    for d in datagrams {
        tx.send_to(d, to).unwrap();
    }
}

fn triple(v: &Value) -> (u64, u64, u64) {
    (
        v["flows"].as_u64().unwrap(),
        v["packets"].as_u64().unwrap(),
        v["bytes"].as_u64().unwrap(),
    )
}

#[test]
fn bad_sflow_input_is_counted_and_isolated_and_counters_feed_link_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Collector::start_sharing_pki_on(
        &inventory(tmp.path()),
        &format!("[sflow]\nlisten = \"127.0.0.1:{port}\"\nflush_interval = \"200ms\"\n"),
        None,
    );
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let s1 = [10, 0, 1, 1];

    // S1 (by agent address): the middle sample's record claims 400 bytes its sample lacks.
    let mut bad_record = raw_header(&icmp_frame());
    bad_record[4..8].copy_from_slice(&400u32.to_be_bytes());
    let d1 = datagram(
        s1,
        1,
        1_000,
        &[
            good_sample(1, 100),
            flow_sample(2, 100, &[bad_record]),
            good_sample(3, 100),
        ],
    );
    // Then a sample that claims 10,000 bytes after a good one: the good one is kept.
    let mut cut = good_sample(5, 100);
    cut[4..8].copy_from_slice(&10_000u32.to_be_bytes());
    let d2 = datagram(s1, 2, 2_000, &[good_sample(4, 100), cut]);
    send_from([127, 0, 0, 1], to, &[d1, d2]);

    // S2 (by source address, its agent address is private to it): garbage between two good
    // datagrams.
    let s2_agent = [192, 168, 0, 1];
    send_from(
        [127, 0, 0, 2],
        to,
        &[
            datagram(s2_agent, 1, 1_000, &[good_sample(1, 10)]),
            vec![0, 0, 0, 9, 1, 2, 3],
            datagram(
                s2_agent,
                2,
                2_000,
                &[good_sample(2, 10), good_sample(3, 10)],
            ),
        ],
    );

    // No site: agent 10.9.9.9 from 127.0.0.1, then from 70 other addresses.
    let stranger = datagram([10, 9, 9, 9], 1, 1_000, &[good_sample(1, 1)]);
    send_from([127, 0, 0, 1], to, std::slice::from_ref(&stranger));
    for i in 1..=70u8 {
        send_from([127, 0, 1, i], to, std::slice::from_ref(&stranger));
    }

    // S1's counters: ifIndex 3 (S1-P) and 7 (no link) at 10 s, then 30 s later; ifIndex 3's
    // in_errors wraps at 2^32.
    let gb30s = 375_000_000; // 10 % of 1 Gbit/s over 30 s
    send_from(
        [127, 0, 0, 1],
        to,
        &[
            datagram(
                s1,
                3,
                10_000,
                &[
                    counters(1, 3, 1_000, 2_000, u32::MAX - 1),
                    counters(1, 7, 0, 0, 0),
                ],
            ),
            datagram(
                s1,
                4,
                40_000,
                &[
                    counters(2, 3, 1_000 + gb30s, 2_000 + gb30s / 2, 3),
                    counters(2, 7, 5, 5, 0),
                ],
            ),
            // The agent restarts: uptime back to 1 s; its first counters are a new baseline.
            datagram(s1, 1, 1_000, &[counters(1, 3, 10, 10, 0)]),
        ],
    );

    // S1: 1-in-100 ICMP of 84 IP bytes, three samples kept of five; S2: three 1-in-10.
    let s1_want = (3, 300, 3 * 84 * 100);
    let s2_want = (3, 30, 3 * 84 * 10);
    c.wait_until("S1 and S2 totals", Duration::from_secs(10), |c| {
        triple(&c.totals(Some("S1"))) == s1_want && triple(&c.totals(Some("S2"))) == s2_want
    });
    // Nothing of the strangers is stored.
    assert_eq!(
        triple(&c.totals(None)),
        (6, 330, s1_want.2 + s2_want.2),
        "{}",
        c.totals(None)
    );
    assert_eq!(triple(&c.totals(Some("unknown"))), (0, 0, 0));
    let err = |site: &str, reason: &str| {
        c.metric(&format!(
            "rie_collector_sflow_decode_errors_total{{reason=\"{reason}\",site=\"{site}\"}}"
        ))
    };
    assert_eq!(err("S1", "record_overrun"), 1.0);
    assert_eq!(err("S1", "sample_overrun"), 1.0);
    assert_eq!(err("S2", "unsupported_version"), 1.0);
    // Unknown sources: 127.0.0.1 and the first 63 of the others by address, the last 7 in
    // `other`.
    let unknown = |source: &str| {
        c.metric(&format!(
            "rie_collector_sflow_unknown_source_datagrams_total{{source=\"{source}\"}}"
        ))
    };
    assert_eq!(unknown("127.0.0.1"), 1.0);
    assert_eq!(unknown("127.0.1.63"), 1.0);
    assert_eq!(unknown("other"), 7.0);
    assert_eq!(
        c.metric("rie_collector_sflow_datagrams_total{site=\"unknown\"}"),
        71.0
    );
    assert_eq!(
        c.metric("rie_collector_sflow_datagrams_total{site=\"S1\"}"),
        5.0
    );
    assert_eq!(
        c.metric("rie_collector_sflow_datagrams_total{site=\"S2\"}"),
        3.0
    );
    assert_eq!(c.metric("rie_collector_sflow_flow_samples_total"), 6.0);
    assert_eq!(
        c.metric("rie_collector_flow_records_total{source=\"sflow\"}"),
        6.0
    );

    // Counters of S1-P: one delta (the first sample is a baseline, the restart another).
    let link = |name: &str, dir: &str| {
        c.metric(&format!(
            "rie_collector_sflow_{name}{{direction=\"{dir}\",link=\"S1-P\",site=\"S1\"}}"
        ))
    };
    assert_eq!(link("link_octets_total", "in"), gb30s as f64);
    assert_eq!(link("link_octets_total", "out"), (gb30s / 2) as f64);
    assert_eq!(link("link_errors_total", "in"), 5.0);
    assert_eq!(link("link_discards_total", "out"), 0.0);
    assert_eq!(link("link_utilisation_ratio", "in"), 0.1);
    assert_eq!(link("link_utilisation_ratio", "out"), 0.05);
    assert_eq!(
        c.metric("rie_collector_sflow_link_speed_bps{link=\"S1-P\",site=\"S1\"}"),
        1e9
    );
    assert_eq!(c.metric("rie_collector_sflow_counter_samples_total"), 5.0);
    assert_eq!(
        c.metric("rie_collector_sflow_unmapped_counter_samples_total"),
        1.0
    );
    assert_eq!(
        c.metric("rie_collector_sflow_agent_restarts_total{site=\"S1\"}"),
        1.0
    );
}

/// What the sFlow input holds in memory is committed on SIGTERM: with a flush interval longer
/// than the test, the samples reach the store only through the stop, and are there after the
/// restart, once.
#[test]
fn a_graceful_stop_commits_the_sflow_sums() {
    let tmp = tempfile::tempdir().unwrap();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = Collector::start_sharing_pki_on(
        &inventory(tmp.path()),
        &format!("[sflow]\nlisten = \"127.0.0.1:{port}\"\nflush_interval = \"1h\"\n"),
        None,
    );
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    send_from(
        [127, 0, 0, 1],
        to,
        &[datagram(
            [10, 0, 1, 1],
            1,
            1_000,
            &[good_sample(1, 50), good_sample(2, 50)],
        )],
    );
    c.wait_until("samples decoded", Duration::from_secs(10), |c| {
        c.metric("rie_collector_sflow_flow_samples_total") == 2.0
    });
    assert_eq!(triple(&c.totals(Some("S1"))), (0, 0, 0), "not flushed yet");
    c.restart_graceful();
    assert_eq!(triple(&c.totals(Some("S1"))), (2, 100, 2 * 84 * 50));
}
