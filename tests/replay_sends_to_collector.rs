//! `rie-probe replay --config` meters a capture and sends the minute aggregates to the collector
//! through the normal protocol: the collector's totals equal what the capture holds, per
//! protocol, exactly.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use etherparse::PacketBuilder;
use rie_e2e::{bin, replay_json, Capture, Collector};

#[test]
fn replayed_capture_reaches_the_collector_exactly() {
    let c = Collector::start();
    let cfg = c.probe_config("S3");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[meter]\nsite_prefixes = [\"10.1.0.0/16\"]\n");
    std::fs::write(&cfg, text).unwrap();

    let mut cap = Capture::new(1500);
    let t0 = 1_790_000_000_000_000u64;
    let eth = || PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut flows = 0;
    for i in 0..30u64 {
        // 30 flows over three minutes: TCP and UDP, out of and into the site.
        flows += 1;
        let (src, dst) = if i % 2 == 0 {
            ([10, 1, 0, 5], [192, 0, 2, 7])
        } else {
            ([192, 0, 2, 7], [10, 1, 0, 5])
        };
        for k in 0..(i % 4 + 1) {
            let mut f = Vec::new();
            let payload = vec![0u8; 100 + (i * 37 % 900) as usize];
            if i % 3 == 0 {
                eth()
                    .ipv4(src, dst, 64)
                    .udp(3000 + i as u16, 53)
                    .write(&mut f, &payload)
                    .unwrap();
                cap.frame(
                    t0 + i * 6_000_000 + k * 1_000,
                    &f,
                    Some((17, 20 + 8 + payload.len() as u64)),
                );
            } else {
                eth()
                    .ipv4(src, dst, 64)
                    .tcp(3000 + i as u16, 443, 1, 100)
                    .write(&mut f, &payload)
                    .unwrap();
                cap.frame(
                    t0 + i * 6_000_000 + k * 1_000,
                    &f,
                    Some((6, 20 + 20 + payload.len() as u64)),
                );
            }
        }
    }
    let pcap = c.dir.path().join("site.pcap");
    std::fs::write(&pcap, &cap.bytes).unwrap();

    let (_, stderr) = replay_json(&pcap, &["--config", cfg.to_str().unwrap()]);
    assert!(stderr.contains("sent to"), "{stderr}");

    let t = c.totals(Some("S3"));
    cap.assert_totals(flows, &t);
    let packets: u64 = cap.expected.values().map(|v| v.0).sum();
    // Three minutes of traffic land in three minute buckets: the first minute alone is smaller.
    let first =
        c.get("/api/v1/flows/totals?from=2026-09-21T14:13:00Z&to=2026-09-21T14:14:00Z&site=S3");
    assert!(
        first["packets"].as_u64().unwrap() > 0 && first["packets"].as_u64().unwrap() < packets,
        "{first}"
    );

    // A bad prefix in [meter] is a config error naming the key.
    let mut bad = std::fs::read_to_string(&cfg).unwrap();
    bad = bad.replace("10.1.0.0/16", "10.1.0.0/99");
    std::fs::write(&cfg, bad).unwrap();
    let out = Command::new(bin("rie-probe"))
        .args(["replay", "--config"])
        .arg(&cfg)
        .arg("--pcap")
        .arg(&pcap)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("site_prefixes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
