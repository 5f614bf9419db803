//! `rie-probe replay --config` meters a capture and sends the minute aggregates to the collector
//! through the normal protocol: the collector's totals equal what the capture holds, per
//! protocol and per service-port class, exactly.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;

use rie_e2e::{bin, eth, replay_json, Capture, Collector};

#[test]
fn replayed_capture_reaches_the_collector_exactly() {
    let c = Collector::start();
    let cfg = c.probe_config("S3");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[meter]\nsite_prefixes = [\"10.1.0.0/16\"]\n");
    std::fs::write(&cfg, text).unwrap();

    let mut cap = Capture::new(1500);
    let t0 = 1_790_000_000_000_000u64;
    let mut flows = 0;
    // Expected (flows, packets, bytes) per port class, from what the test writes.
    let mut classes: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for i in 0..30u64 {
        // 30 flows over three minutes: TCP and UDP, out of and into the site.
        flows += 1;
        let (src, dst) = if i % 2 == 0 {
            ([10, 1, 0, 5], [192, 0, 2, 7])
        } else {
            ([192, 0, 2, 7], [10, 1, 0, 5])
        };
        let class = classes
            .entry(if i % 3 == 0 { "dns" } else { "web" })
            .or_default();
        class.0 += 1;
        for k in 0..(i % 4 + 1) {
            let mut f = Vec::new();
            let payload = vec![0u8; 100 + (i * 37 % 900) as usize];
            class.1 += 1;
            class.2 += if i % 3 == 0 { 28 } else { 40 } + payload.len() as u64;
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
    // An RTP stream (UDP 20000 -> 20002) of 100 s, one packet a second: sliced by the 60 s
    // active timeout, still one flow; class voip.
    flows += 1;
    for k in 0..100u64 {
        let mut f = Vec::new();
        eth()
            .ipv4([10, 1, 0, 6], [198, 51, 100, 8], 64)
            .udp(20_000, 20_002)
            .write(&mut f, &[0u8; 172])
            .unwrap();
        cap.frame(t0 + 500_000 + k * 1_000_000, &f, Some((17, 20 + 8 + 172)));
    }
    classes.insert("voip", (1, 100, 100 * 200));
    // Ping request and reply: two flows without ports, class none.
    flows += 2;
    for (k, (src, dst)) in [
        ([10, 1, 0, 5], [192, 0, 2, 7]),
        ([192, 0, 2, 7], [10, 1, 0, 5]),
    ]
    .into_iter()
    .enumerate()
    {
        cap.icmp_echo(t0 + 700_000 + k as u64, src, dst, 7, 1);
    }
    classes.insert("none", (2, 2, 168));
    // iperf3-like TCP to 5201: class other.
    flows += 1;
    for k in 0..3u64 {
        let mut f = Vec::new();
        eth()
            .ipv4([10, 1, 0, 5], [192, 0, 2, 9], 64)
            .tcp(45_000, 5201, 1, 100)
            .write(&mut f, &[0u8; 960])
            .unwrap();
        cap.frame(t0 + 800_000 + k, &f, Some((6, 1000)));
    }
    classes.insert("other", (1, 3, 3000));

    let pcap = c.dir.path().join("site.pcap");
    std::fs::write(&pcap, &cap.bytes).unwrap();

    let (_, stderr) = replay_json(&pcap, &["--config", cfg.to_str().unwrap()]);
    assert!(stderr.contains("sent to"), "{stderr}");

    let t = c.totals(Some("S3"));
    cap.assert_totals(flows, &t);
    // Top talkers (remote /24s, default top 10 per minute): every flow but the RTP stream talks
    // to 192.0.2.0/24, the RTP stream to 198.51.100.0/24; here both are in the top, so their
    // sum is the totals.
    let (tb, tp) = (t["bytes"].as_u64().unwrap(), t["packets"].as_u64().unwrap());
    let mut want = vec![
        serde_json::json!({"prefix": "192.0.2.0/24", "bytes": tb - 20_000, "packets": tp - 100}),
        serde_json::json!({"prefix": "198.51.100.0/24", "bytes": 20_000, "packets": 100}),
    ];
    want.sort_by_key(|v| std::cmp::Reverse(v["bytes"].as_u64().unwrap()));
    let talkers =
        c.get("/api/v1/sites/S3/top_talkers?from=2026-09-21T00:00:00Z&to=2026-09-22T00:00:00Z");
    assert_eq!(talkers, serde_json::Value::Array(want.clone()), "{talkers}");
    let one = c.get(
        "/api/v1/sites/S3/top_talkers?from=2026-09-21T00:00:00Z&to=2026-09-22T00:00:00Z&limit=1",
    );
    assert_eq!(one, serde_json::Value::Array(want[..1].to_vec()), "{one}");

    // The split by port class is exactly what was written, and sums exactly to the totals.
    let by_class = t["by_port_class"].as_object().unwrap();
    let got: BTreeMap<&str, (u64, u64, u64)> = by_class
        .iter()
        .map(|(k, v)| {
            let n = |f: &str| v[f].as_u64().unwrap();
            (k.as_str(), (n("flows"), n("packets"), n("bytes")))
        })
        .collect();
    assert_eq!(got, classes, "{t}");
    let sum = |i: usize| -> u64 { got.values().map(|c| [c.0, c.1, c.2][i]).sum() };
    assert_eq!(
        (sum(0), sum(1), sum(2)),
        (
            t["flows"].as_u64().unwrap(),
            t["packets"].as_u64().unwrap(),
            t["bytes"].as_u64().unwrap()
        )
    );
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
