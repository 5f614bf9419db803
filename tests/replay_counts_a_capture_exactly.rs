//! `rie-probe replay` on a capture this test writes itself: IPv4 and IPv6, TCP with its close,
//! UDP, ICMP, 802.1Q-tagged frames, ARP, frames cut by the snap length, and a flow longer than
//! the active timeout. The expected numbers come from what the test wrote, not from the meter.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use rie_e2e::{bin, eth, replay_json, Capture};

fn write(b: etherparse::PacketBuilderStep<etherparse::UdpHeader>, payload: usize) -> Vec<u8> {
    let mut out = Vec::new();
    b.write(&mut out, &vec![7u8; payload]).unwrap();
    out
}

#[test]
fn replay_summary_matches_what_was_captured() {
    let mut cap = Capture::new(256);
    let t0 = 1_790_000_000_000_000u64;
    let mut flows = 0u64;

    // A TCP exchange with its close (FIN both ways, last ACK), IPv4.
    flows += 2;
    for (i, (fwd, payload, fin)) in [
        (true, 0, false),
        (false, 0, false),
        (true, 300, false),
        (false, 1400, false),
        (true, 0, true),
        (false, 0, true),
        (true, 0, false),
    ]
    .into_iter()
    .enumerate()
    {
        let (src, dst, sp, dp) = if fwd {
            ([10, 1, 0, 5], [10, 2, 0, 9], 40_001, 443)
        } else {
            ([10, 2, 0, 9], [10, 1, 0, 5], 443, 40_001)
        };
        let b = eth().ipv4(src, dst, 64).tcp(sp, dp, 1, 1000);
        let b = if fin { b.fin() } else { b };
        let mut f = Vec::new();
        b.write(&mut f, &vec![1u8; payload]).unwrap();
        cap.frame(
            t0 + i as u64 * 1_000,
            &f,
            Some((6, 20 + 20 + payload as u64)),
        );
    }

    // DNS over UDP, IPv4, 802.1Q-tagged.
    flows += 2;
    let vlan = etherparse::VlanId::try_new(100).unwrap();
    let q = write(
        eth()
            .single_vlan(vlan)
            .ipv4([10, 1, 0, 5], [10, 3, 0, 53], 64)
            .udp(5353, 53),
        40,
    );
    let a = write(
        eth()
            .single_vlan(vlan)
            .ipv4([10, 3, 0, 53], [10, 1, 0, 5], 64)
            .udp(53, 5353),
        120,
    );
    cap.frame(t0 + 10_000, &q, Some((17, 20 + 8 + 40)));
    cap.frame(t0 + 11_000, &a, Some((17, 20 + 8 + 120)));

    // A large UDP datagram cut by the snap length: counted at its IP length.
    flows += 1;
    let big = write(
        eth()
            .ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .udp(9000, 9001),
        1200,
    );
    cap.frame(t0 + 12_000, &big, Some((17, 40 + 8 + 1200)));

    // Ping, IPv4: request and reply are two flows.
    flows += 2;
    for (i, (src, dst)) in [
        ([10, 1, 0, 5], [10, 2, 0, 1]),
        ([10, 2, 0, 1], [10, 1, 0, 5]),
    ]
    .into_iter()
    .enumerate()
    {
        cap.icmp_echo(t0 + 20_000 + i as u64, src, dst, 7, 1);
    }

    // ARP: no IP, skipped.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    cap.frame(t0 + 30_000, &arp, None);

    // A stream lasting 150 s, one packet every 2 s: sliced by the 60 s active timeout, one flow.
    flows += 1;
    for i in 0..75u64 {
        let f = write(
            eth().ipv4([10, 1, 0, 5], [10, 9, 0, 1], 64).udp(6000, 6001),
            500,
        );
        cap.frame(t0 + 40_000 + i * 2_000_000, &f, Some((17, 20 + 8 + 500)));
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.pcap");
    std::fs::write(&path, &cap.bytes).unwrap();
    let (s, _) = replay_json(&path, &[]);

    cap.assert_totals(flows, &s);
    assert_eq!(s["skipped_frames"], 1);

    // Not a capture: a clear error, exit code 2.
    std::fs::write(&path, b"definitely not a pcap").unwrap();
    let out = Command::new(bin("rie-probe"))
        .args(["replay", "--pcap"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("capture.pcap: not a pcap or pcapng file")
    );
}
