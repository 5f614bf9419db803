//! Decoder tests: a datagram exported by pmacctd's sfprobe plugin from captured traffic (a
//! real exporter's bytes), datagrams built byte by byte for what it does not send (Ethernet
//! headers with 802.1Q tags, IPv6, expanded samples, counters, bad lengths), commented field
//! by field, and a bounded random-input harness: no input may panic the decoder.

use super::*;
use std::net::Ipv4Addr;

const AGENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1));
const NOW: i64 = 1_790_000_000_000;

fn be32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_be_bytes());
}

/// `(format, body)` as a sample or record: format, length, body.
fn tagged(format: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    be32(&mut v, format);
    be32(&mut v, body.len() as u32);
    v.extend_from_slice(body);
    v
}

/// Datagram header: version 5, IPv4 agent 10.0.1.1, sub-agent, sequence, uptime, then the
/// samples.
fn datagram(sub_agent: u32, seq: u32, uptime: u32, samples: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    be32(&mut v, 5); // version
    be32(&mut v, 1); // agent address type: IPv4
    v.extend_from_slice(&[10, 0, 1, 1]); // agent address
    be32(&mut v, sub_agent); // sub-agent id
    be32(&mut v, seq); // datagram sequence
    be32(&mut v, uptime); // uptime (ms)
    be32(&mut v, samples.len() as u32); // number of samples
    for s in samples {
        v.extend_from_slice(s);
    }
    v
}

/// Raw packet header record (flow record format 1) of `header` (padded to 4 bytes).
fn raw_header(protocol: u32, frame_length: u32, header: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    be32(&mut v, protocol); // header protocol: 1 Ethernet, 11 IPv4, 12 IPv6
    be32(&mut v, frame_length); // frame length
    be32(&mut v, 4); // stripped (FCS)
    be32(&mut v, header.len() as u32); // header length
    v.extend_from_slice(header);
    while v.len() % 4 != 0 {
        v.push(0); // XDR padding
    }
    tagged(1, &v)
}

/// Flow sample (format 1): sequence, source id (type 0, ifIndex 3), rate, pool, drops,
/// input 3, output 4, then the records.
fn flow_sample(seq: u32, rate: u32, pool: u32, drops: u32, records: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    be32(&mut v, seq); // sample sequence
    be32(&mut v, 3); // source id: type 0 (ifIndex) << 24 | 3
    be32(&mut v, rate); // sampling rate
    be32(&mut v, pool); // sample pool
    be32(&mut v, drops); // drops
    be32(&mut v, 3); // input ifIndex
    be32(&mut v, 4); // output ifIndex
    be32(&mut v, records.len() as u32); // number of records
    for r in records {
        v.extend_from_slice(r);
    }
    tagged(1, &v)
}

/// An Ethernet frame with one 802.1Q tag (VLAN 100) carrying IPv4 TCP 10.1.0.5:40000 →
/// 192.0.2.9:443 with `payload` bytes, cut after `keep` bytes as an agent does.
fn vlan_tcp_frame(payload: usize, keep: usize) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .single_vlan(etherparse::VlanId::try_new(100).unwrap())
        .ipv4([10, 1, 0, 5], [192, 0, 2, 9], 64)
        .tcp(40_000, 443, 1, 1000)
        .write(&mut f, &vec![7u8; payload])
        .unwrap();
    f.truncate(keep);
    f
}

/// IPv6 UDP fd00::1:5353 → fd00::2:53 with `payload` bytes (a header starting at IPv6).
fn ipv6_udp(payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
        .udp(5353, 53)
        .write(&mut f, &vec![1u8; payload])
        .unwrap();
    f
}

/// Generic interface counters (counter record format 1, 88 bytes).
fn generic(if_index: u32, speed: u64, in_octets: u64, out_octets: u64, in_err: u32) -> Vec<u8> {
    let mut v = Vec::new();
    be32(&mut v, if_index); // ifIndex
    be32(&mut v, 6); // ifType: ethernetCsmacd
    v.extend_from_slice(&speed.to_be_bytes()); // ifSpeed (bit/s)
    be32(&mut v, 1); // ifDirection: full duplex
    be32(&mut v, 3); // ifStatus: admin up, oper up
    v.extend_from_slice(&in_octets.to_be_bytes()); // ifInOctets
    be32(&mut v, 10); // ifInUcastPkts
    be32(&mut v, 0); // ifInMulticastPkts
    be32(&mut v, 0); // ifInBroadcastPkts
    be32(&mut v, 2); // ifInDiscards
    be32(&mut v, in_err); // ifInErrors
    be32(&mut v, 0); // ifInUnknownProtos
    v.extend_from_slice(&out_octets.to_be_bytes()); // ifOutOctets
    be32(&mut v, 10); // ifOutUcastPkts
    be32(&mut v, 0); // ifOutMulticastPkts
    be32(&mut v, 0); // ifOutBroadcastPkts
    be32(&mut v, 1); // ifOutDiscards
    be32(&mut v, 5); // ifOutErrors
    be32(&mut v, 0); // ifPromiscuousMode
    assert_eq!(v.len(), 88);
    tagged(1, &v)
}

/// Counter sample (format 2): sequence, source id (ifIndex 3), records.
fn counter_sample(seq: u32, records: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    be32(&mut v, seq); // sample sequence
    be32(&mut v, 3); // source id
    be32(&mut v, records.len() as u32); // number of records
    for r in records {
        v.extend_from_slice(r);
    }
    tagged(2, &v)
}

fn decode(d: &mut Decoder, data: &[u8]) -> (Decoded, Vec<FlowRecord>, Vec<CounterDelta>) {
    let (mut f, mut c) = (Vec::new(), Vec::new());
    let r = d.decode(data, NOW, &mut f, &mut c);
    (r, f, c)
}

/// The first datagram pmacctd 1.7.7 (`sfprobe` plugin, sampling 1, agent 127.0.0.1) exported
/// from a capture of pings on the loopback: 7 flow samples, each with an extended-switch
/// record (format 1001) and a raw header record of header protocol 11 (IPv4): ICMP echo of
/// 84 IP bytes, frame length 88 (the 4 FCS bytes it declares stripped).
#[test]
fn a_pmacctd_datagram_gives_one_record_per_sample_in_ip_bytes() {
    let data = include_bytes!("testdata/pmacctd_sfprobe_1.bin");
    let mut d = Decoder::new(&DecoderConfig::default());
    let (r, flows, counters) = decode(&mut d, data);
    assert_eq!(r.errors, vec![]);
    assert_eq!(r.agent, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!((r.sub_agent, r.flow_samples, r.counter_samples), (0, 7, 0));
    assert_eq!(
        (r.lost_samples, r.lost_datagrams, r.restarted),
        (0, 0, false)
    );
    assert!(counters.is_empty());
    assert_eq!(flows.len(), 7);
    for f in &flows {
        assert_eq!(
            (f.protocol, f.packets, f.bytes, f.sampling_rate, f.start_ms),
            (1, 1, 84, 1, NOW)
        );
        assert_eq!(f.src, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(f.port_class, PortClass::None);
        assert_eq!(f.exporter, IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
}

/// A counter sample pmacctd's sfprobe sends every 20 s (datagram 21, uptime 11 s, agent
/// 127.0.0.1): source 1 and no counter record at all. Read and counted; no delta.
#[test]
fn a_pmacctd_counter_sample_without_records_is_read() {
    let data = include_bytes!("testdata/pmacctd_sfprobe_counters.bin");
    let mut d = Decoder::new(&DecoderConfig::default());
    let (r, flows, counters) = decode(&mut d, data);
    assert_eq!(r.errors, vec![]);
    assert_eq!((r.counter_samples, r.flow_samples), (1, 0));
    assert!(flows.is_empty() && counters.is_empty());
}

#[test]
fn ethernet_with_vlan_and_ipv6_headers_are_decoded_and_scaled_by_the_rate() {
    let mut d = Decoder::new(&DecoderConfig::default());
    // TCP with 1,000 bytes of payload: IP length 1,040, header cut at 128 bytes as agents do.
    let eth = raw_header(1, 1_062, &vlan_tcp_frame(1000, 128));
    let v6 = raw_header(12, 1_000, &ipv6_udp(100));
    let data = datagram(
        7,
        1,
        5_000,
        &[
            flow_sample(1, 512, 512, 0, &[eth]),
            flow_sample(2, 512, 1024, 0, &[v6]),
        ],
    );
    let (r, flows, _) = decode(&mut d, &data);
    assert_eq!((r.errors.len(), r.flow_samples, r.sub_agent), (0, 2, 7));
    let tcp = &flows[0];
    assert_eq!(
        (tcp.protocol, tcp.packets, tcp.bytes, tcp.sampling_rate),
        (6, 512, 1_040 * 512, 512)
    );
    assert_eq!(tcp.src, Some("10.1.0.5".parse().unwrap()));
    assert_eq!(tcp.dst, Some("192.0.2.9".parse().unwrap()));
    assert_eq!(tcp.port_class, PortClass::classify(6, 40_000, 443));
    let udp = &flows[1];
    assert_eq!((udp.protocol, udp.packets, udp.bytes), (17, 512, 148 * 512));
    assert_eq!(udp.port_class, PortClass::classify(17, 5353, 53));
    // The pool moved by 512 between the two samples of source 3: nothing lost.
    assert_eq!((r.lost_samples, r.pool_frames, r.agent_drops), (0, 512, 0));
}

#[test]
fn an_expanded_flow_sample_and_a_sampled_ipv4_record_are_counted() {
    let mut body = Vec::new();
    for x in [1u32, 0, 3, 10, 10, 0, 0, 3, 0, 4] {
        // sequence, source type, source index, rate, pool, drops, input format/value,
        // output format/value
        be32(&mut body, x);
    }
    be32(&mut body, 1); // one record: sampled IPv4 (format 3)
    let mut ip = Vec::new();
    for x in [300u32, 17] {
        be32(&mut ip, x); // IP length, protocol
    }
    ip.extend_from_slice(&[10, 1, 0, 5, 10, 3, 0, 53]); // source, destination
    for x in [5000u32, 53, 0, 0] {
        be32(&mut ip, x); // source port, destination port, tcp flags, tos
    }
    body.extend_from_slice(&tagged(3, &ip));
    let data = datagram(0, 1, 0, &[tagged(3, &body)]);
    let mut d = Decoder::new(&DecoderConfig::default());
    let (r, flows, _) = decode(&mut d, &data);
    assert_eq!((r.errors.len(), r.flow_samples), (0, 1));
    assert_eq!(
        (flows[0].protocol, flows[0].packets, flows[0].bytes),
        (17, 10, 3_000)
    );
}

#[test]
fn arp_is_not_ip_traffic_and_is_left_out() {
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2; 6]);
    arp.extend_from_slice(&[0x08, 0x06]); // EtherType ARP
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0; 20]);
    let data = datagram(
        0,
        1,
        0,
        &[flow_sample(1, 1, 1, 0, &[raw_header(1, 64, &arp)])],
    );
    let mut d = Decoder::new(&DecoderConfig::default());
    let (r, flows, _) = decode(&mut d, &data);
    assert_eq!((r.errors.len(), r.non_ip_samples, flows.len()), (0, 1, 0));
}

/// A record that claims more than its sample holds skips that sample only; a sample that
/// claims more than the datagram holds ends the datagram, the samples before it kept.
#[test]
fn overruns_skip_what_they_cover_and_keep_the_rest() {
    let good = |seq| flow_sample(seq, 1, seq, 0, &[raw_header(11, 88, &ipv4_icmp())]);
    // Second sample: its record says 400 bytes, the sample holds far fewer.
    let mut bad_record = raw_header(11, 88, &ipv4_icmp());
    bad_record[4..8].copy_from_slice(&400u32.to_be_bytes());
    let bad = flow_sample(2, 1, 2, 0, &[bad_record]);
    let data = datagram(0, 1, 0, &[good(1), bad, good(3)]);
    let mut d = Decoder::new(&DecoderConfig::default());
    let (r, flows, _) = decode(&mut d, &data);
    assert_eq!(r.errors, vec![DecodeReason::RecordOverrun]);
    assert_eq!((r.flow_samples, flows.len()), (2, 2));

    // Third sample: length 10,000 in a datagram of a few hundred bytes.
    let mut cut = good(6);
    cut[4..8].copy_from_slice(&10_000u32.to_be_bytes());
    let data = datagram(0, 2, 0, &[good(4), good(5), cut, good(7)]);
    let (r, flows, _) = decode(&mut d, &data);
    assert_eq!(r.errors, vec![DecodeReason::SampleOverrun]);
    assert_eq!(flows.len(), 2);
    // A datagram cut in its header, and a foreign version.
    let (r, ..) = decode(&mut d, &data[..20]);
    assert_eq!(r.errors, vec![DecodeReason::Truncated]);
    let (r, ..) = decode(&mut d, &[0, 0, 0, 4, 0, 0, 0, 1]);
    assert_eq!(r.errors, vec![DecodeReason::UnsupportedVersion]);
    let (r, ..) = decode(&mut d, &[]);
    assert_eq!(r.errors, vec![DecodeReason::Empty]);
}

fn ipv4_icmp() -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 1, 0, 5], [192, 0, 2, 1], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut f, &[0u8; 56])
        .unwrap();
    f
}

#[test]
fn sequence_gaps_drops_and_restarts_are_reported() {
    let s =
        |seq, pool, drops| flow_sample(seq, 10, pool, drops, &[raw_header(11, 88, &ipv4_icmp())]);
    let mut d = Decoder::new(&DecoderConfig::default());
    let (r, ..) = decode(&mut d, &datagram(0, 1, 1_000, &[s(1, 10, 0)]));
    assert_eq!(
        (r.lost_samples, r.lost_datagrams, r.restarted),
        (0, 0, false)
    );
    // Datagrams 2 and 3 lost; samples 2..4 with them; the agent dropped 2 itself.
    let (r, ..) = decode(&mut d, &datagram(0, 4, 2_000, &[s(5, 50, 2)]));
    assert_eq!(
        (
            r.lost_samples,
            r.lost_datagrams,
            r.pool_frames,
            r.agent_drops
        ),
        (3, 2, 40, 2)
    );
    // Another sub-agent of the same address has its own sequence.
    let (r, ..) = decode(&mut d, &datagram(1, 1, 2_000, &[s(1, 10, 0)]));
    assert_eq!((r.lost_datagrams, r.restarted), (0, false));
    // The agent restarts: sequence and uptime start again; no gap is invented.
    let (r, ..) = decode(&mut d, &datagram(0, 1, 100, &[s(1, 10, 0)]));
    assert_eq!(
        (r.lost_samples, r.lost_datagrams, r.restarted),
        (0, 0, true)
    );
    // The 32-bit uptime wraps after 49.7 days, the sequence goes on: not a restart.
    decode(&mut d, &datagram(0, 2, u32::MAX - 1_000, &[]));
    let (r, ..) = decode(&mut d, &datagram(0, 3, 4_000, &[]));
    assert_eq!((r.lost_datagrams, r.restarted), (0, false));
    // The 32-bit datagram sequence wraps: not a restart.
    decode(&mut d, &datagram(0, u32::MAX, 200, &[]));
    let (r, ..) = decode(&mut d, &datagram(0, 0, 300, &[]));
    assert_eq!((r.lost_datagrams, r.restarted), (0, false));
}

#[test]
fn counters_give_deltas_across_wraps_and_a_restart_starts_a_new_baseline() {
    let mut d = Decoder::new(&DecoderConfig::default());
    let gb = 1_000_000_000;
    let c = |seq, in_oct, out_oct, in_err| {
        counter_sample(seq, &[generic(3, gb, in_oct, out_oct, in_err)])
    };
    // First sample: a baseline, no delta.
    let (r, _, deltas) = decode(
        &mut d,
        &datagram(
            0,
            1,
            10_000,
            &[c(1, 4_294_967_000, 5_000_000_000, 4_294_967_290)],
        ),
    );
    assert_eq!((r.counter_samples, deltas.len()), (1, 0));
    // 30 s later: in_octets wrapped at 2^32 (a 32-bit counter in the 64-bit field), out_octets
    // is a real 64-bit counter, in_errors wrapped at 2^32.
    let (_, _, deltas) = decode(
        &mut d,
        &datagram(0, 2, 40_000, &[c(2, 1_000, 5_000_375_000, 10)]),
    );
    assert_eq!(
        deltas,
        vec![CounterDelta {
            agent: AGENT,
            sub_agent: 0,
            if_index: 3,
            if_speed: gb,
            interval_ms: 30_000,
            in_octets: 296 + 1_000,
            out_octets: 375_000,
            in_errors: 6 + 10,
            out_errors: 0,
            in_discards: 0,
            out_discards: 0,
        }]
    );
    // The agent restarts (uptime back to 5 s): counters start from zero again, no delta.
    let (r, _, deltas) = decode(&mut d, &datagram(0, 1, 5_000, &[c(1, 100, 100, 0)]));
    assert_eq!((r.restarted, deltas.len()), (true, 0));
    let (_, _, deltas) = decode(&mut d, &datagram(0, 2, 35_000, &[c(2, 600, 300, 1)]));
    assert_eq!(
        (
            deltas[0].in_octets,
            deltas[0].out_octets,
            deltas[0].in_errors,
            deltas[0].interval_ms
        ),
        (500, 200, 1, 30_000)
    );
}

#[test]
fn the_agent_table_is_bounded() {
    let mut d = Decoder::new(&DecoderConfig {
        max_agents: 4,
        max_sources_per_agent: 2,
    });
    for sub in 0..10 {
        decode(&mut d, &datagram(sub, 1, 0, &[]));
        assert!(d.agents() <= 4);
    }
}

/// Random bytes, and random corruptions of valid datagrams, never panic the decoder.
#[test]
fn arbitrary_bytes_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5f10_0005);
    let mut d = Decoder::new(&DecoderConfig {
        max_agents: 16,
        max_sources_per_agent: 4,
    });
    let seeds = [
        include_bytes!("testdata/pmacctd_sfprobe_1.bin").to_vec(),
        datagram(
            1,
            2,
            3,
            &[
                flow_sample(
                    1,
                    5,
                    5,
                    0,
                    &[raw_header(1, 1_062, &vlan_tcp_frame(1000, 128))],
                ),
                counter_sample(1, &[generic(3, 1, 2, 3, 4)]),
            ],
        ),
    ];
    for i in 0..20_000 {
        let mut data = if i % 4 == 0 {
            (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect()
        } else {
            seeds[i % seeds.len()].clone()
        };
        for _ in 0..rng.gen_range(1..6) {
            if data.is_empty() {
                break;
            }
            let at = rng.gen_range(0..data.len());
            data[at] = rng.gen();
        }
        if rng.gen_bool(0.2) {
            let cut = rng.gen_range(0..=data.len());
            data.truncate(cut);
        }
        let (mut f, mut c) = (Vec::new(), Vec::new());
        let _ = d.decode(&data, NOW, &mut f, &mut c);
    }
}
