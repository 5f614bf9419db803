//! Decoder tests on datagrams built byte by byte (layouts commented field by field), plus a
//! bounded random-input harness: no input may panic the decoder.

use super::*;
use std::net::Ipv4Addr;

const R1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1));
const R2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1));

fn be16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_be_bytes());
}
fn be32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_be_bytes());
}

/// v5: header (24 bytes) then 48-byte records of (protocol, packets, octets, first, last).
pub(crate) fn v5(
    sampling: u16,
    unix_secs: u32,
    uptime: u32,
    recs: &[(u8, u32, u32, u32, u32)],
) -> Vec<u8> {
    let mut v = Vec::new();
    be16(&mut v, 5); // version
    be16(&mut v, recs.len() as u16); // count
    be32(&mut v, uptime); // sys_up_time (ms)
    be32(&mut v, unix_secs); // unix_secs
    be32(&mut v, 0); // unix_nsecs
    be32(&mut v, 1); // flow_sequence
    v.push(0); // engine_type
    v.push(0); // engine_id
    be16(&mut v, sampling); // sampling mode (2 bits) + interval (14 bits)
    for &(proto, pkts, octets, first, last) in recs {
        v.extend_from_slice(&[10, 0, 1, 5]); // srcaddr
        v.extend_from_slice(&[192, 0, 2, 9]); // dstaddr
        v.extend_from_slice(&[0, 0, 0, 0]); // nexthop
        be16(&mut v, 1); // input
        be16(&mut v, 2); // output
        be32(&mut v, pkts); // dPkts
        be32(&mut v, octets); // dOctets
        be32(&mut v, first); // First (uptime ms)
        be32(&mut v, last); // Last (uptime ms)
        be16(&mut v, 40000); // srcport
        be16(&mut v, 443); // dstport
        v.push(0); // pad1
        v.push(0); // tcp_flags
        v.push(proto); // prot
        v.push(0); // tos
        be16(&mut v, 0); // src_as
        be16(&mut v, 0); // dst_as
        v.push(24); // src_mask
        v.push(24); // dst_mask
        be16(&mut v, 0); // pad2
    }
    v
}

/// v9 header (20 bytes) followed by the given flowsets.
pub(crate) fn v9(source_id: u32, unix_secs: u32, uptime: u32, flowsets: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    be16(&mut v, 9); // version
    be16(&mut v, flowsets.len() as u16); // count (records; informative)
    be32(&mut v, uptime); // sys_up_time
    be32(&mut v, unix_secs); // unix_secs
    be32(&mut v, 7); // sequence
    be32(&mut v, source_id); // source id
    for fs in flowsets {
        v.extend_from_slice(fs);
    }
    v
}

/// A template flowset (id 0 for v9, 2 for IPFIX) defining `id` with (type, length) fields.
pub(crate) fn template(set_id: u16, id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
    let mut v = Vec::new();
    be16(&mut v, set_id);
    be16(&mut v, (8 + 4 * fields.len()) as u16); // flowset length
    be16(&mut v, id); // template id
    be16(&mut v, fields.len() as u16); // field count
    for &(t, l) in fields {
        be16(&mut v, t); // field type
        be16(&mut v, l); // field length
    }
    v
}

/// A data flowset for template `id`: records of 4-byte big-endian values.
pub(crate) fn data(id: u16, recs: &[Vec<u32>]) -> Vec<u8> {
    let mut body = Vec::new();
    for r in recs {
        for &x in r {
            be32(&mut body, x);
        }
    }
    let mut v = Vec::new();
    be16(&mut v, id); // flowset id = template id
    be16(&mut v, (4 + body.len()) as u16); // length
    v.extend_from_slice(&body);
    v
}

/// IPFIX header (16 bytes) followed by sets.
pub(crate) fn ipfix(domain: u32, export_time: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let len: usize = 16 + sets.iter().map(Vec::len).sum::<usize>();
    let mut v = Vec::new();
    be16(&mut v, 10); // version
    be16(&mut v, len as u16); // message length
    be32(&mut v, export_time); // export time (s)
    be32(&mut v, 1); // sequence
    be32(&mut v, domain); // observation domain
    for s in sets {
        v.extend_from_slice(s);
    }
    v
}

fn decoder() -> Decoder {
    Decoder::new(&DecoderConfig::default(), None).unwrap()
}

#[test]
fn v5_counters_times_and_sampling() {
    let mut d = decoder();
    let mut out = Vec::new();
    // Exported at 1_790_000_100 s with uptime 100_000 ms; flow started at uptime 40_000 →
    // 60 s before export.
    let dg = v5(
        0x4000 | 10,
        1_790_000_100,
        100_000,
        &[(6, 3, 400, 40_000, 90_000)],
    );
    let r = d.decode(R1, &dg, &mut out);
    assert_eq!((r.version, r.records, r.errors.len()), (5, 1, 0));
    let f = &out[0];
    assert_eq!(f.start_ms, 1_790_000_040_000);
    assert_eq!((f.packets, f.bytes, f.sampling_rate), (30, 4000, 10));
    assert_eq!(f.protocol, 6);
    // Ports 40000 -> 443 in the v5 record.
    assert_eq!(f.port_class, rie_proto::PortClass::Web);
}

#[test]
fn v5_uptime_wraps() {
    // Uptime wrapped since the flow began: 5 s after the wrap, flow began 10 s before it.
    assert_eq!(
        uptime_to_wall(100_000, 5_000, u32::MAX - 9_999),
        100_000 - 15_000
    );
}

#[test]
fn v9_template_then_data_and_held_data_replayed() {
    let mut d = decoder();
    let mut out = Vec::new();
    // Template 256: IN_BYTES(1,4) IN_PKTS(2,4) PROTOCOL(4,1→ padded as 4 here: we use 4)
    let t = template(0, 256, &[(1, 4), (2, 4), (4, 4), (22, 4), (21, 4)]);
    let rec = |b, p| vec![b, p, 17, 50_000, 55_000];
    // Data first: held, nothing out.
    let early = v9(1, 1_790_000_100, 60_000, &[data(256, &[rec(100, 1)])]);
    let r = d.decode(R1, &early, &mut out);
    assert_eq!(r.records, 0, "{r:?}");
    assert_eq!(d.pending_flowsets(), 1);
    // Template arrives with more data: both decode.
    let later = v9(
        1,
        1_790_000_100,
        60_000,
        &[t.clone(), data(256, &[rec(200, 2)])],
    );
    let r = d.decode(R1, &later, &mut out);
    assert_eq!(r.records, 2, "{r:?}");
    assert_eq!(d.pending_flowsets(), 0);
    let total: u64 = out.iter().map(|f| f.bytes).sum();
    assert_eq!(total, 300);
    // FIRST_SWITCHED 50_000 with uptime 60_000 at export: 10 s before.
    assert!(
        out.iter()
            .all(|f| f.start_ms == 1_790_000_090_000 && f.protocol == 17),
        "{out:?}"
    );
    // UDP without port fields in the template: the class cannot be known.
    assert!(out
        .iter()
        .all(|f| f.port_class == rie_proto::PortClass::Unknown));
}

#[test]
fn ipfix_transport_ports_give_the_port_class() {
    use rie_proto::PortClass;
    let mut d = decoder();
    let mut out = Vec::new();
    // octetDeltaCount(1) packetDeltaCount(2) protocolIdentifier(4) sourceTransportPort(7)
    // destinationTransportPort(11)
    let t = template(2, 402, &[(1, 4), (2, 4), (4, 4), (7, 4), (11, 4)]);
    let t2 = template(2, 403, &[(1, 4), (2, 4), (4, 4)]);
    let dg = ipfix(
        0,
        1_790_000_100,
        &[
            t,
            t2,
            data(
                402,
                &[vec![100, 1, 17, 53_000, 53], vec![200, 2, 6, 22, 50_000]],
            ),
            data(403, &[vec![84, 1, 1]]),
        ],
    );
    let r = d.decode(R1, &dg, &mut out);
    assert_eq!(r.records, 3, "{r:?}");
    let classes: Vec<_> = out.iter().map(|f| f.port_class).collect();
    assert_eq!(
        classes,
        vec![PortClass::Dns, PortClass::Remote, PortClass::None]
    );
}

#[test]
fn exporters_reusing_a_template_id_do_not_mix() {
    let mut d = decoder();
    let mut out = Vec::new();
    // R1: 256 = bytes, packets. R2: 256 = packets, bytes (swapped layout).
    let a = v9(
        0,
        1_790_000_000,
        1_000,
        &[
            template(0, 256, &[(1, 4), (2, 4)]),
            data(256, &[vec![1000, 1]]),
        ],
    );
    let b = v9(
        0,
        1_790_000_000,
        1_000,
        &[
            template(0, 256, &[(2, 4), (1, 4)]),
            data(256, &[vec![2, 2000]]),
        ],
    );
    d.decode(R1, &a, &mut out);
    d.decode(R2, &b, &mut out);
    // Data again without templates: each exporter keeps its own layout.
    d.decode(
        R1,
        &v9(0, 1_790_000_000, 1_000, &[data(256, &[vec![1000, 1]])]),
        &mut out,
    );
    d.decode(
        R2,
        &v9(0, 1_790_000_000, 1_000, &[data(256, &[vec![2, 2000]])]),
        &mut out,
    );
    let of = |e| -> (u64, u64) {
        out.iter()
            .filter(|f| f.exporter == e)
            .fold((0, 0), |a, f| (a.0 + f.packets, a.1 + f.bytes))
    };
    assert_eq!(of(R1), (2, 2000));
    assert_eq!(of(R2), (4, 4000));
}

#[test]
fn restarting_exporter_redefines_a_template() {
    let mut d = decoder();
    let mut out = Vec::new();
    d.decode(
        R1,
        &v9(
            0,
            1_790_000_000,
            1_000,
            &[template(0, 300, &[(1, 4), (2, 4)])],
        ),
        &mut out,
    );
    // After a restart the same id means packets then bytes.
    d.decode(
        R1,
        &v9(
            0,
            1_790_000_000,
            10,
            &[
                template(0, 300, &[(2, 4), (1, 4)]),
                data(300, &[vec![3, 999]]),
            ],
        ),
        &mut out,
    );
    assert_eq!((out[0].packets, out[0].bytes), (3, 999));
}

#[test]
fn v9_options_record_announces_sampling() {
    let mut d = decoder();
    let mut out = Vec::new();
    // Options template 257 (flowset id 1): scope System(1, 4), option SAMPLING_INTERVAL(34, 4).
    let mut ot = Vec::new();
    be16(&mut ot, 1); // flowset id 1 = options template
    be16(&mut ot, 6 + 4 + 4 + 4 + 2); // length: id, scope len, opt len, 1 scope, 1 option, pad
    be16(&mut ot, 257); // template id
    be16(&mut ot, 4); // option scope length (bytes)
    be16(&mut ot, 4); // option length (bytes)
    be16(&mut ot, 1); // scope: System
    be16(&mut ot, 4);
    be16(&mut ot, 34); // SAMPLING_INTERVAL
    be16(&mut ot, 4);
    be16(&mut ot, 0); // padding
    let od = data(257, &[vec![0, 100]]);
    let t = template(0, 256, &[(1, 4), (2, 4)]);
    let dg = v9(
        0,
        1_790_000_000,
        1_000,
        &[ot, od, t, data(256, &[vec![50, 1]])],
    );
    let r = d.decode(R1, &dg, &mut out);
    assert_eq!(r.records, 1, "{r:?}");
    assert_eq!(
        (out[0].packets, out[0].bytes, out[0].sampling_rate),
        (100, 5000, 100)
    );
}

#[test]
fn ipfix_vendor_counters_and_absolute_times() {
    let mut d = decoder();
    let mut out = Vec::new();
    // initiatorOctets(231) responderOctets(232) initiatorPackets(298) responderPackets(299)
    // protocolIdentifier(4) flowStartSeconds(150)
    let t = template(
        2,
        400,
        &[(231, 4), (232, 4), (298, 4), (299, 4), (4, 4), (150, 4)],
    );
    let dg = ipfix(
        5,
        1_790_000_100,
        &[t, data(400, &[vec![100, 900, 2, 3, 6, 1_790_000_000]])],
    );
    let r = d.decode(R1, &dg, &mut out);
    assert_eq!(r.records, 1, "{r:?}");
    assert_eq!((out[0].packets, out[0].bytes), (5, 1000));
    assert_eq!(out[0].start_ms, 1_790_000_000_000);
    assert_eq!(out[0].version, 10);
}

#[test]
fn ipfix_delta_counters_win_over_totals() {
    let mut d = decoder();
    let mut out = Vec::new();
    let t = template(2, 401, &[(85, 4), (1, 4), (86, 4), (2, 4)]);
    let dg = ipfix(
        0,
        1_790_000_100,
        &[t, data(401, &[vec![99_999, 10, 9_999, 1]])],
    );
    d.decode(R1, &dg, &mut out);
    assert_eq!((out[0].packets, out[0].bytes), (1, 10));
}

#[test]
fn bad_input_is_reported_not_fatal() {
    let mut d = decoder();
    let mut out = Vec::new();
    assert_eq!(
        d.decode(R1, &[], &mut out).errors,
        vec![DecodeReason::Empty]
    );
    assert_eq!(
        d.decode(R1, &[0, 42, 1, 2], &mut out).errors,
        vec![DecodeReason::UnsupportedVersion]
    );
    let good = v5(0, 1_790_000_000, 1_000, &[(6, 1, 40, 0, 0)]);
    let r = d.decode(R1, &good[..30], &mut out);
    assert_eq!((r.records, r.errors.is_empty()), (0, false), "{r:?}");
    assert!(out.is_empty());
}

#[test]
fn aggregator_sums_per_minute_protocol_and_exporter() {
    let mut a = Aggregator::default();
    let rec = |exporter, start_ms, protocol, bytes| FlowRecord {
        exporter,
        version: 9,
        protocol,
        src: None,
        dst: None,
        port_class: rie_proto::PortClass::Web,
        start_ms,
        packets: 1,
        bytes,
        sampling_rate: 1,
    };
    a.add(&rec(R1, 120_000, 6, 10), Direction::Unknown);
    a.add(&rec(R1, 179_999, 6, 20), Direction::Unknown);
    a.add(&rec(R1, 180_000, 6, 40), Direction::Unknown);
    a.add(&rec(R2, 120_000, 17, 80), Direction::Inbound);
    let out = a.take();
    let r1 = &out[&R1];
    assert_eq!(r1.len(), 2);
    assert_eq!((r1[0].minute, r1[0].flows, r1[0].bytes), (120, 2, 30));
    assert_eq!(r1[0].exporter.as_deref(), Some("10.0.1.1"));
    assert_eq!(out[&R2][0].direction, Direction::Inbound);
    assert!(a.is_empty());
}

/// Property: no byte string panics the decoder, whether random, a valid datagram with bytes
/// flipped, or a valid one cut anywhere; and the decoder keeps working afterwards. Bounded
/// (a few thousand cases) so that it runs in CI time; seeded so that a failure reproduces.
#[test]
fn arbitrary_bytes_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed_f10e);
    let mut d = decoder();
    let mut out = Vec::new();
    let seeds = [
        v5(
            0,
            1_790_000_000,
            1_000,
            &[(6, 1, 40, 0, 0), (17, 2, 80, 5, 9)],
        ),
        v9(
            3,
            1_790_000_000,
            1_000,
            &[
                template(0, 256, &[(1, 4), (2, 4), (4, 1)]),
                data(256, &[vec![1, 2]]),
            ],
        ),
        ipfix(
            3,
            1_790_000_000,
            &[
                template(2, 256, &[(1, 8), (2, 4), (153, 8)]),
                data(256, &[vec![0, 1, 2, 0, 5]]),
            ],
        ),
    ];
    for case in 0..6_000u32 {
        let mut dg = match case % 4 {
            0 => (0..rng.gen_range(0..300))
                .map(|_| rng.gen())
                .collect::<Vec<u8>>(),
            1 => {
                let mut s = seeds[rng.gen_range(0..seeds.len())].clone();
                for _ in 0..rng.gen_range(1..6) {
                    let i = rng.gen_range(0..s.len());
                    s[i] = rng.gen();
                }
                s
            }
            2 => {
                let s = &seeds[rng.gen_range(0..seeds.len())];
                s[..rng.gen_range(0..s.len())].to_vec()
            }
            _ => {
                // A valid header with random body: reaches the template and set parsers.
                let mut s = seeds[rng.gen_range(1..seeds.len())][..20].to_vec();
                s.extend((0..rng.gen_range(0..200)).map(|_| rng.gen::<u8>()));
                s
            }
        };
        if case % 7 == 0 {
            dg.truncate(dg.len().min(4));
        }
        let exporter = IpAddr::V4(Ipv4Addr::new(10, 9, (case % 3) as u8, 1));
        out.clear();
        let _ = d.decode(exporter, &dg, &mut out);
    }
    // Still decodes good data afterwards.
    out.clear();
    let r = d.decode(R1, &seeds[0], &mut out);
    assert_eq!(r.records, 2);
}

/// RFC 7011 §8.1: a template record with no field withdraws the template; data for it
/// afterwards is held (not decoded with the stale layout), and a new definition decodes it.
#[test]
fn ipfix_template_withdrawal_stops_decoding_until_redefined() {
    let mut d = decoder();
    let mut out = Vec::new();
    let t = template(2, 500, &[(1, 4), (2, 4)]);
    d.decode(
        R1,
        &ipfix(0, 1_790_000_000, &[t, data(500, &[vec![10, 1]])]),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    // Withdrawal: set id 2, template 500, field count 0.
    let mut w = Vec::new();
    be16(&mut w, 2);
    be16(&mut w, 8);
    be16(&mut w, 500);
    be16(&mut w, 0);
    let r = d.decode(R1, &ipfix(0, 1_790_000_001, &[w]), &mut out);
    assert!(r.errors.is_empty(), "{r:?}");
    out.clear();
    let r = d.decode(
        R1,
        &ipfix(0, 1_790_000_002, &[data(500, &[vec![20, 2]])]),
        &mut out,
    );
    assert_eq!(r.records, 0, "withdrawn template must not decode: {r:?}");
    // Redefined with swapped fields: the held data decodes with the new layout.
    let t2 = template(2, 500, &[(2, 4), (1, 4)]);
    d.decode(R1, &ipfix(0, 1_790_000_003, &[t2]), &mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].packets, out[0].bytes), (20, 2));
}

#[test]
fn ipfix_packet_interval_sampling_in_the_record() {
    let mut d = decoder();
    let mut out = Vec::new();
    // samplingPacketInterval 1 of every (1 + samplingPacketSpace 9) packets: rate 10.
    let t = template(2, 600, &[(305, 4), (306, 4), (1, 4), (2, 4)]);
    d.decode(
        R1,
        &ipfix(0, 1_790_000_000, &[t, data(600, &[vec![1, 9, 100, 2]])]),
        &mut out,
    );
    assert_eq!(
        (out[0].packets, out[0].bytes, out[0].sampling_rate),
        (20, 1000, 10)
    );
}

/// The fast path (compiled templates, `fast.rs`) gives exactly what the full parse gives:
/// two decoders, one with the fast path off, fed the same stream of random templates (fields
/// from a palette of the ones we read, at right and odd lengths, plus fields we skip and
/// enterprise ones), data sets (several per datagram, padding, cut short), options records
/// announcing sampling, withdrawals, and random corruption. Seeded; the fast path must have
/// served a good share of the data datagrams for the comparison to mean something.
#[test]
fn fast_path_equals_full_parse() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xfa57_0a7e);
    let mut fast = decoder();
    let mut full = decoder();
    full.set_fast_path(false);
    const PALETTE: [(u16, &[u16]); 24] = [
        (1, &[4, 8, 3]),
        (2, &[4, 8, 2]),
        (4, &[1, 2]),
        (7, &[2, 4]),
        (11, &[2]),
        (8, &[4, 16]),
        (12, &[4]),
        (27, &[16]),
        (28, &[16, 4]),
        (21, &[4, 8]),
        (22, &[4]),
        (23, &[4, 8]),
        (24, &[4]),
        (34, &[4, 2]),
        (50, &[4]),
        (85, &[8]),
        (152, &[8, 4]),
        (153, &[8]),
        (150, &[4]),
        (231, &[8]),
        (305, &[4]),
        (306, &[4]),
        (10, &[2, 4]),
        (6, &[1]),
    ];
    let (mut fast_served, mut data_datagrams, mut records) = (0u64, 0u64, 0u64);
    let mut layouts: HashMap<(IpAddr, bool, u32, u16), usize> = HashMap::new();
    for case in 0..20_000u32 {
        let ipfix_v = rng.gen_bool(0.5);
        let domain = rng.gen_range(0..3u32);
        let tid = 256 + rng.gen_range(0..4u16);
        let exporter = if rng.gen_bool(0.5) { R1 } else { R2 };
        let key = (exporter, ipfix_v, domain, tid);
        let mut sets = Vec::new();
        let mut with_template = !layouts.contains_key(&key) || rng.gen_ratio(1, 20);
        if with_template {
            let n = rng.gen_range(1..10);
            let mut fields = Vec::new();
            let mut len = 0usize;
            for _ in 0..n {
                let (id, lens) = PALETTE[rng.gen_range(0..PALETTE.len())];
                // Mostly the usual length (the first); sometimes an odd one.
                let l = if rng.gen_ratio(1, 40) {
                    lens[rng.gen_range(0..lens.len())]
                } else {
                    lens[0]
                };
                fields.push((id, l));
                len += usize::from(l);
            }
            let mut t = template(if ipfix_v { 2 } else { 0 }, tid, &fields);
            if ipfix_v && rng.gen_ratio(1, 10) {
                // One enterprise field (PEN 9, 2 bytes) at the end.
                t.extend_from_slice(&[0x80, 0x01, 0, 2, 0, 0, 0, 9]);
                let l = (t.len() as u16).to_be_bytes();
                t[2..4].copy_from_slice(&l);
                len += 2;
            }
            layouts.insert(key, len);
            sets.push(t);
        }
        if ipfix_v && rng.gen_ratio(1, 200) {
            // Withdrawal of the template.
            let mut w = Vec::new();
            be16(&mut w, 2);
            be16(&mut w, 8);
            be16(&mut w, tid);
            be16(&mut w, 0);
            sets.push(w);
            layouts.remove(&key);
            with_template = true;
        }
        if !ipfix_v && rng.gen_ratio(1, 50) {
            // Sampling announced in an options template + record (v9, id 300).
            sets.push(vec![0, 1, 0, 16, 1, 44, 0, 4, 0, 4, 0, 1, 0, 4, 0, 34, 0, 4][..].to_vec());
            sets.truncate(sets.len());
            let mut o = vec![1, 44, 0, 12];
            o.extend_from_slice(&[0, 0, 0, 0]);
            o.extend_from_slice(&(rng.gen_range(1..100u32)).to_be_bytes());
            sets.push(o);
            with_template = true;
        }
        for _ in 0..rng.gen_range(1..4) {
            let Some(&len) = layouts.get(&key) else { break };
            let n = rng.gen_range(0..40);
            let mut body: Vec<u8> = (0..len * n).map(|_| rng.gen()).collect();
            body.extend((0..rng.gen_range(0..4)).map(|_| 0u8));
            let mut s = Vec::new();
            be16(&mut s, tid);
            be16(&mut s, (4 + body.len()) as u16);
            s.extend_from_slice(&body);
            sets.push(s);
        }
        let mut dg = if ipfix_v {
            ipfix(domain, 1_790_000_000 + case, &sets)
        } else {
            v9(domain, 1_790_000_000 + case, 60_000 + case, &sets)
        };
        if rng.gen_ratio(1, 30) {
            let i = rng.gen_range(0..dg.len());
            dg[i] = rng.gen();
        }
        if rng.gen_ratio(1, 30) {
            dg.truncate(rng.gen_range(0..dg.len()));
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let ra = fast.decode(exporter, &dg, &mut a);
        let rb = full.decode(exporter, &dg, &mut b);
        assert_eq!(ra, rb, "case {case}: {dg:?}");
        assert_eq!(a, b, "case {case}: {dg:?}");
        if !with_template {
            data_datagrams += 1;
        }
        if fast.fast_decoded() > fast_served {
            fast_served = fast.fast_decoded();
            records += a.len() as u64;
        }
    }
    assert!(
        // A corrupted datagram makes its scope forget its templates until re-announced (1 in
        // 20 datagrams here), and v9 templates with absolute times are not compiled.
        fast_served * 4 > data_datagrams,
        "fast path served {fast_served} of {data_datagrams} data-only datagrams"
    );
    assert!(records > 10_000, "{records} records through the fast path");
}
