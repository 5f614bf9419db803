//! NetFlow exported straight to the collector reaches InfluxDB on its own: a site whose only
//! traffic comes from its router's NetFlow (no probe batch at all) gets its `site_traffic`
//! points with `source=netflow`, the direction decided against the inventory's
//! `site_prefixes`, exact values, and each point written once even though two NetFlow
//! commits touched its minute. Checked against VictoriaMetrics (`/api/v2/write`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rie_e2e::influx::VictoriaMetrics;
use rie_e2e::netflow::{data, inventory_with_prefixes, send_from, template, v9};
use rie_e2e::Collector;

/// Export time of the datagrams (router clock, Unix s) and the router's uptime then (ms).
const EXPORT_S: u32 = 1_790_000_130;
const UPTIME_MS: u32 = 500_000;

/// A v9 record of template 300: bytes, packets, protocol, first and last switched (uptime
/// ms), source and destination IPv4 address.
fn rec(bytes: u32, packets: u32, proto: u32, start_s: u32, src: [u8; 4], dst: [u8; 4]) -> Vec<u32> {
    let at = UPTIME_MS - (EXPORT_S - start_s) * 1000;
    vec![
        bytes,
        packets,
        proto,
        at,
        at,
        u32::from_be_bytes(src),
        u32::from_be_bytes(dst),
    ]
}

fn template_300() -> Vec<u8> {
    // IN_BYTES, IN_PKTS, PROTOCOL, FIRST_SWITCHED, LAST_SWITCHED, IPV4_SRC_ADDR, IPV4_DST_ADDR.
    template(
        0,
        300,
        &[(1, 4), (2, 4), (4, 4), (22, 4), (21, 4), (8, 4), (12, 4)],
    )
}

const SITE: [u8; 4] = [10, 1, 0, 5];
/// Minutes of the records: [M1, M1 + 60).
const M1: i64 = 1_790_000_040;

fn tags_of(dir: &str, proto: &str) -> Vec<(&'static str, String)> {
    vec![
        ("site", "S1".into()),
        ("ministry", "Intérieur".into()),
        ("departement", "35".into()),
        ("region", "Bretagne".into()),
        ("direction", dir.into()),
        ("protocol", proto.into()),
        ("source", "netflow".into()),
    ]
}

#[test]
fn netflow_only_site_minutes_reach_influx_once_with_exact_values() {
    let vm = VictoriaMetrics::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "[influx]\nurl = \"{}\"\norg = \"rie\"\nbucket = \"telemetry\"\ntoken = \"secret\"\n\
         instance = \"test\"\nflush_interval = \"200ms\"\nretry_min = \"100ms\"\nretry_max = \"400ms\"\n\
         health_interval = \"1h\"\nsite_state_interval = \"1h\"\ntraffic_delay = \"1s\"\n",
        vm.url()
    );
    let c = Collector::start_netflow_with_config(&inventory_with_prefixes(tmp.path()), &config);
    // What the sink writes at start (site states) is out before the NetFlow arrives.
    std::thread::sleep(Duration::from_millis(1500));
    c.wait_until("start-up points written", Duration::from_secs(10), |c| {
        c.metric("rie_collector_influx_points_buffered") == 0.0
    });
    let written_before = c.metric("rie_collector_influx_points_written_total");

    let m1 = M1 as u32;
    let to = c.netflow_addr.unwrap();
    // First commit: minute M1 outbound TCP (two flows), inbound UDP, transit UDP (unknown).
    send_from(
        [127, 0, 0, 2],
        to,
        &[v9(
            0,
            EXPORT_S,
            UPTIME_MS,
            &[
                template_300(),
                data(
                    300,
                    &[
                        rec(1_000, 10, 6, m1 + 5, SITE, [192, 0, 2, 9]),
                        rec(300, 3, 17, m1 + 20, [198, 51, 100, 1], SITE),
                        rec(77, 1, 17, m1 + 30, [172, 16, 0, 1], [172, 16, 0, 2]),
                    ],
                ),
            ],
        )],
    );
    // A later commit (flush_interval is 200 ms) adds to M1 and opens M1 + 60.
    std::thread::sleep(Duration::from_millis(600));
    send_from(
        [127, 0, 0, 2],
        to,
        &[v9(
            0,
            EXPORT_S,
            UPTIME_MS,
            &[data(
                300,
                &[
                    rec(500, 5, 6, m1 + 40, SITE, [192, 0, 2, 77]),
                    rec(4_000, 40, 6, m1 + 65, [203, 0, 113, 5], SITE),
                ],
            )],
        )],
    );

    let expected: [(&str, &str, &str, BTreeMap<i64, f64>); 6] = [
        ("bytes", "outbound", "tcp", BTreeMap::from([(M1, 1_500.0)])),
        ("flows", "outbound", "tcp", BTreeMap::from([(M1, 2.0)])),
        ("packets", "outbound", "tcp", BTreeMap::from([(M1, 15.0)])),
        ("bytes", "inbound", "udp", BTreeMap::from([(M1, 300.0)])),
        ("bytes", "unknown", "udp", BTreeMap::from([(M1, 77.0)])),
        (
            "bytes",
            "inbound",
            "tcp",
            BTreeMap::from([(M1 + 60, 4_000.0)]),
        ),
    ];
    let end = Instant::now() + Duration::from_secs(60);
    for (field, dir, proto, want) in &expected {
        let name = format!("site_traffic_{field}");
        let tags = tags_of(dir, proto);
        loop {
            let found: Vec<_> = vm
                .export(&name)
                .into_iter()
                .filter(|s| {
                    s.labels["__name__"] == name
                        && tags.iter().all(|(k, v)| s.labels.get(*k) == Some(v))
                })
                .collect();
            if found.len() == 1 && &found[0].points == want {
                break;
            }
            assert!(
                Instant::now() < end,
                "{name} {dir} {proto}: expected {want:?}, got {found:?}\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Every S1 traffic point is a NetFlow one: nothing from a probe, nothing else.
    let all: Vec<_> = vm
        .export("site_traffic_bytes")
        .into_iter()
        .filter(|s| s.labels.get("site").map(String::as_str) == Some("S1"))
        .collect();
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.iter().all(|s| s.labels["source"] == "netflow"));
    // Exactly once: four points (M1 outbound tcp, inbound udp, unknown udp; M1+60 inbound
    // tcp), though two commits touched M1; nothing more is written once they are due.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        c.metric("rie_collector_influx_points_written_total") - written_before,
        4.0
    );
    assert_eq!(c.metric("rie_collector_influx_points_buffered"), 0.0);
}
