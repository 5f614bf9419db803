//! The InfluxDB sink against real servers on loopback: known batches sent through the real
//! probe protocol come back from VictoriaMetrics (`/api/v2/write` path) and InfluxDB 1.x
//! (`/write` path) with exact values; a server stopped in the middle of a run, and a collector
//! restarted while the server is down, lose and duplicate nothing.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use rie_e2e::influx::{Influxd, VictoriaMetrics};
use rie_e2e::{send_ok, Collector, MINUTE};

use serde_json::{json, Value};

const S1_TAGS: [(&str, &str); 4] = [
    ("site", "S1"),
    ("ministry", "Intérieur"),
    ("departement", "35"),
    ("region", "Bretagne"),
];

fn v2_config(url: &str) -> String {
    format!(
        "[influx]\nurl = \"{url}\"\norg = \"rie\"\nbucket = \"telemetry\"\ntoken = \"secret\"\n\
         instance = \"test\"\nflush_interval = \"200ms\"\nretry_min = \"100ms\"\nretry_max = \"400ms\"\n\
         health_interval = \"1h\"\nsite_state_interval = \"1h\"\ntraffic_delay = \"1s\"\n"
    )
}

fn v1_config(url: &str) -> String {
    format!(
        "[influx]\nurl = \"{url}\"\napi = \"v1\"\ndatabase = \"rie\"\nretention_policy = \"autogen\"\n\
         instance = \"test\"\nflush_interval = \"200ms\"\nretry_min = \"100ms\"\nretry_max = \"400ms\"\n\
         health_interval = \"1h\"\nsite_state_interval = \"1h\"\ntraffic_delay = \"1s\"\n"
    )
}

fn tcp(minute: i64, flows: u64, packets: u64, bytes: u64) -> Value {
    json!({"minute": minute, "protocol": 6, "direction": "inbound", "flows": flows, "packets": packets, "bytes": bytes})
}

fn sample(link: &str, start: i64, sent: u32, received: u32, rtt_avg_us: u32) -> Value {
    json!({"link": link, "check": "icmp", "target": "10.255.0.1", "start": start, "interval_s": 60,
           "sent": sent, "received": received, "rtt_avg_us": rtt_avg_us, "rtt_max_us": rtt_avg_us * 2,
           "rtt_p95_us": rtt_avg_us + 500, "jitter_us": 1500})
}

fn batch(seq: u64, flows: Vec<Value>, samples: Vec<Value>) -> Value {
    json!({"seq": seq, "created_ms": MINUTE * 1000, "flows": flows, "samples": samples})
}

/// The first two batches: minute M in two batches (the point must carry the sum), UDP, a
/// second minute, and checks on both links.
fn first_batches() -> Vec<Value> {
    vec![
        batch(
            1,
            vec![
                tcp(MINUTE, 10, 1_000, 1_234_567),
                json!({"minute": MINUTE, "protocol": 17, "direction": "outbound", "flows": 2, "packets": 30, "bytes": 4_321}),
            ],
            vec![
                sample("S1-P", MINUTE, 10, 9, 12_000),
                sample("S1-B", MINUTE, 10, 10, 45_000),
            ],
        ),
        batch(
            2,
            vec![tcp(MINUTE, 5, 500, 100_000), tcp(MINUTE + 60, 1, 10, 1_000)],
            vec![sample("S1-P", MINUTE + 60, 20, 20, 11_000)],
        ),
    ]
}

/// Batch `seq` of the outage phases: its own minute, `seq` flows and `seq * 100` bytes.
fn later_batch(seq: u64) -> Value {
    let minute = MINUTE + 60 * (seq as i64);
    batch(
        seq,
        vec![tcp(minute, seq, seq * 10, seq * 100)],
        vec![sample("S1-P", minute, 10, 10, 10_000)],
    )
}

/// Expected tcp/inbound bytes per minute for batches 1..=n.
fn expected_tcp_bytes(n: u64) -> BTreeMap<i64, f64> {
    let mut m = BTreeMap::from([(MINUTE, 1_334_567.0), (MINUTE + 60, 1_000.0)]);
    for seq in 3..=n {
        m.insert(MINUTE + 60 * seq as i64, (seq * 100) as f64);
    }
    m
}

fn wait_drained(c: &Collector) {
    c.wait_until("InfluxDB backlog drained", Duration::from_secs(60), |c| {
        c.metric("rie_collector_influx_points_buffered") == 0.0
            && c.metric("rie_collector_influx_points_written_total") > 0.0
    });
}

fn has_tags(labels: &BTreeMap<String, String>, tags: &[(&str, &str)]) -> bool {
    tags.iter()
        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
}

/// One VictoriaMetrics series by name and tags; asserts there is exactly one.
fn vm_series(vm: &VictoriaMetrics, name: &str, tags: &[(&str, &str)]) -> rie_e2e::influx::Series {
    let all: Vec<_> = vm
        .export(name)
        .into_iter()
        .filter(|s| s.labels["__name__"] == name && has_tags(&s.labels, tags))
        .collect();
    assert_eq!(all.len(), 1, "{name} {tags:?}: {all:?}");
    all.into_iter().next().unwrap()
}

/// Polls until the series holds exactly `expected` (traffic points are written once their
/// minute is complete, `traffic_delay` after the last batch); returns it.
fn wait_series(
    c: &Collector,
    vm: &VictoriaMetrics,
    name: &str,
    tags: &[(&str, &str)],
    expected: &BTreeMap<i64, f64>,
) -> rie_e2e::influx::Series {
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let found: Vec<_> = vm
            .export(name)
            .into_iter()
            .filter(|s| s.labels["__name__"] == name && has_tags(&s.labels, tags))
            .collect();
        if found.len() == 1 && &found[0].points == expected {
            return found.into_iter().next().unwrap();
        }
        assert!(
            std::time::Instant::now() < end,
            "{name} {tags:?}: expected {expected:?}, got {found:?}\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tags<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    S1_TAGS
        .iter()
        .copied()
        .chain(extra.iter().copied())
        .collect()
}

#[test]
fn v2_victoriametrics_exact_values_through_an_outage() {
    let mut vm = VictoriaMetrics::start();
    let c = Collector::start_with_config(&v2_config(&vm.url()));
    let s1 = c.probe_config("S1");
    assert_eq!(send_ok(&s1, 1, &first_batches()), [(1, false), (2, false)]);
    wait_drained(&c);

    let tcp_tags = tags(&[
        ("direction", "inbound"),
        ("protocol", "tcp"),
        ("source", "capture"),
    ]);
    wait_series(
        &c,
        &vm,
        "site_traffic_bytes",
        &tcp_tags,
        &expected_tcp_bytes(2),
    );
    let flows = vm_series(&vm, "site_traffic_flows", &tcp_tags);
    assert_eq!(
        flows.points,
        BTreeMap::from([(MINUTE, 15.0), (MINUTE + 60, 1.0)])
    );
    let udp = vm_series(
        &vm,
        "site_traffic_packets",
        &tags(&[("direction", "outbound"), ("protocol", "udp")]),
    );
    assert_eq!(udp.points, BTreeMap::from([(MINUTE, 30.0)]));
    let p_tags = tags(&[
        ("link", "S1-P"),
        ("role", "primary"),
        ("technology", "fibre"),
        ("check", "icmp"),
    ]);
    let loss = vm_series(&vm, "link_check_loss_ratio", &p_tags);
    assert_eq!(
        loss.points,
        BTreeMap::from([(MINUTE, 0.1), (MINUTE + 60, 0.0)])
    );
    let rtt = vm_series(&vm, "link_check_rtt_avg_ms", &p_tags);
    assert_eq!(
        rtt.points,
        BTreeMap::from([(MINUTE, 12.0), (MINUTE + 60, 11.0)])
    );
    let b_tags = tags(&[("link", "S1-B"), ("role", "backup"), ("technology", "4g")]);
    let rtt_max = vm_series(&vm, "link_check_rtt_max_ms", &b_tags);
    assert_eq!(rtt_max.points, BTreeMap::from([(MINUTE, 90.0)]));

    // Outage in the middle of the run: batches keep coming and are acked by the collector.
    vm.stop();
    for seq in 3..=8 {
        assert_eq!(send_ok(&s1, 1, &[later_batch(seq)]), [(seq, false)]);
    }
    c.wait_until("a failed write", Duration::from_secs(30), |c| {
        c.metric("rie_collector_influx_write_errors_total") >= 1.0
    });
    for seq in 9..=12 {
        assert_eq!(send_ok(&s1, 1, &[later_batch(seq)]), [(seq, false)]);
    }
    // 10 traffic + 10 link points at least wait (site_state/collector points may add).
    c.wait_until("the outage backlog", Duration::from_secs(30), |c| {
        c.metric("rie_collector_influx_points_buffered") >= 20.0
    });
    assert!(c.metric("rie_collector_influx_points_retried_total") >= 1.0);
    vm.resume();
    let bytes = wait_series(
        &c,
        &vm,
        "site_traffic_bytes",
        &tcp_tags,
        &expected_tcp_bytes(12),
    );
    wait_drained(&c);
    assert_eq!(bytes.samples, 12, "one sample per minute, no duplicate");
    let sent = vm_series(&vm, "link_check_sent", &p_tags);
    assert_eq!(sent.samples, 12);
    assert_eq!(sent.points.values().sum::<f64>(), 10.0 + 20.0 + 10.0 * 10.0);
    assert_eq!(c.metric("rie_collector_influx_points_dropped_total"), 0.0);
}

#[test]
fn v2_backlog_survives_a_collector_restart_while_influx_is_down() {
    let mut vm = VictoriaMetrics::start();
    let mut c = Collector::start_with_config(&v2_config(&vm.url()));
    let s1 = c.probe_config("S1");
    send_ok(&s1, 1, &first_batches());
    let tcp_tags = tags(&[
        ("direction", "inbound"),
        ("protocol", "tcp"),
        ("source", "capture"),
    ]);
    wait_series(
        &c,
        &vm,
        "site_traffic_bytes",
        &tcp_tags,
        &expected_tcp_bytes(2),
    );
    vm.stop();
    for seq in 3..=6 {
        assert_eq!(send_ok(&s1, 1, &[later_batch(seq)]), [(seq, false)]);
    }
    c.wait_until("a failed write", Duration::from_secs(30), |c| {
        c.metric("rie_collector_influx_write_errors_total") >= 1.0
    });
    c.restart_gracefully();
    assert!(
        c.log().contains("InfluxDB backlog found on disk"),
        "{}",
        c.log()
    );
    c.wait_until("the backlog reloaded", Duration::from_secs(30), |c| {
        c.metric("rie_collector_influx_points_buffered") >= 8.0
    });
    // The restarted collector keeps taking batches while InfluxDB is still down.
    for seq in 7..=9 {
        assert_eq!(send_ok(&s1, 1, &[later_batch(seq)]), [(seq, false)]);
    }
    // And a SIGKILL once the backlog is on disk loses nothing either.
    c.wait_until(
        "a failed write after restart",
        Duration::from_secs(30),
        |c| {
            c.metric("rie_collector_influx_write_errors_total") >= 1.0
                && c.metric("rie_collector_influx_points_buffered") >= 18.0
        },
    );
    c.restart();
    vm.resume();
    let bytes = wait_series(
        &c,
        &vm,
        "site_traffic_bytes",
        &tcp_tags,
        &expected_tcp_bytes(9),
    );
    wait_drained(&c);
    assert_eq!(bytes.samples, 9);
    assert_eq!(c.metric("rie_collector_influx_points_dropped_total"), 0.0);
}

/// Polls until `q` returns `n` rows.
fn wait_rows(c: &Collector, db: &Influxd, q: &str, n: usize) {
    c.wait_until(&format!("{n} rows of {q}"), Duration::from_secs(60), |_| {
        db.rows("rie", q).len() == n
    });
}

#[test]
fn v1_influxdb_exact_values_through_an_outage() {
    let mut db = Influxd::start("rie");
    let c = Collector::start_with_config(&v1_config(&db.url()));
    let s1 = c.probe_config("S1");
    send_ok(&s1, 1, &first_batches());
    wait_rows(
        &c,
        &db,
        "SELECT bytes FROM site_traffic WHERE protocol = 'tcp'",
        2,
    );
    let rows = db.rows(
        "rie",
        "SELECT bytes, packets, flows FROM site_traffic WHERE site = 'S1' AND protocol = 'tcp' AND direction = 'inbound' AND source = 'capture'",
    );
    let got: Vec<(i64, i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["time"].as_i64().unwrap(),
                r["bytes"].as_i64().unwrap(),
                r["packets"].as_i64().unwrap(),
                r["flows"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [(MINUTE, 1_334_567, 1_500, 15), (MINUTE + 60, 1_000, 10, 1)]
    );
    let rows = db.rows(
        "rie",
        "SELECT * FROM link_check WHERE link = 'S1-P' ORDER BY time",
    );
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r["time"], json!(MINUTE));
    assert_eq!(
        (r["sent"].as_i64(), r["received"].as_i64()),
        (Some(10), Some(9))
    );
    assert_eq!(r["loss_ratio"].as_f64(), Some(0.1));
    assert_eq!(r["rtt_avg_ms"].as_f64(), Some(12.0));
    assert_eq!(r["rtt_p95_ms"].as_f64(), Some(12.5));
    assert_eq!(r["jitter_ms"].as_f64(), Some(1.5));
    assert_eq!(
        (
            r["ministry"].as_str(),
            r["region"].as_str(),
            r["role"].as_str(),
            r["technology"].as_str()
        ),
        (
            Some("Intérieur"),
            Some("Bretagne"),
            Some("primary"),
            Some("fibre")
        )
    );

    db.stop();
    for seq in 3..=10 {
        assert_eq!(send_ok(&s1, 1, &[later_batch(seq)]), [(seq, false)]);
    }
    // How many points are held at this moment depends on how far the sink got before the
    // stop (the suite runs on a loaded machine); what matters is checked after the restart:
    // every row, exactly once, nothing dropped.
    c.wait_until("a failed write", Duration::from_secs(60), |c| {
        c.metric("rie_collector_influx_write_errors_total") >= 1.0
            && c.metric("rie_collector_influx_points_buffered") >= 1.0
    });
    db.resume();
    wait_rows(
        &c,
        &db,
        "SELECT bytes FROM site_traffic WHERE protocol = 'tcp'",
        10,
    );
    wait_drained(&c);
    let rows = db.rows(
        "rie",
        "SELECT bytes FROM site_traffic WHERE site = 'S1' AND protocol = 'tcp' AND source = 'capture'",
    );
    let got: BTreeMap<i64, f64> = rows
        .iter()
        .map(|r| (r["time"].as_i64().unwrap(), r["bytes"].as_f64().unwrap()))
        .collect();
    assert_eq!(rows.len(), 10);
    assert_eq!(got, expected_tcp_bytes(10));
    let count = db.query(
        "rie",
        "SELECT count(sent) FROM link_check WHERE link = 'S1-P'",
    );
    assert_eq!(count["results"][0]["series"][0]["values"][0][1], json!(10));
    assert_eq!(c.metric("rie_collector_influx_points_dropped_total"), 0.0);
}

/// HTTPS through influxdb2's rustls client: with `influx.ca_cert` naming the collector PKI's CA
/// (which signed the server's certificate) points are written; without it, the server is not
/// trusted (the public roots do not know this CA) and points wait, counted as write errors.
#[test]
fn v2_over_https_trusts_only_the_configured_ca() {
    let pki = tempfile::tempdir().unwrap();
    rie_e2e::run_ok(
        std::process::Command::new(rie_e2e::bin("rie-collector"))
            .args(["pki", "init", "--dir"])
            .arg(pki.path()),
    );
    let vm = VictoriaMetrics::start_tls(
        &pki.path().join("server.pem"),
        &pki.path().join("server.key"),
    );
    let trusted = format!(
        "{}ca_cert = \"{}\"\n",
        v2_config(&vm.url()),
        pki.path().join("ca.pem").display()
    );
    let c = Collector::start_with_config(&trusted);
    let s1 = c.probe_config("S1");
    send_ok(&s1, 1, &first_batches());
    wait_drained(&c);
    assert_eq!(c.metric("rie_collector_influx_write_errors_total"), 0.0);

    let untrusted = Collector::start_with_config(&v2_config(&vm.url()));
    untrusted.wait_until("a refused certificate", Duration::from_secs(30), |c| {
        c.metric("rie_collector_influx_write_errors_total") >= 1.0
    });
    assert_eq!(
        untrusted.metric("rie_collector_influx_points_written_total"),
        0.0
    );
    assert!(untrusted.metric("rie_collector_influx_points_buffered") >= 1.0);
}

/// InfluxDB refusing some points of a request (here a field type conflict: `rtt_avg_ms`
/// already exists as an integer) writes the others; the sink counts the refused points, logs
/// InfluxDB's answer (which quotes the offending line), does not retry them, and goes on.
#[test]
fn v1_refused_points_are_counted_and_the_rest_written() {
    let db = Influxd::start("rie");
    ureq::post(&format!("{}/write?db=rie&precision=s", db.url()))
        .send_string("link_check,site=S2 rtt_avg_ms=1i 1790000040")
        .unwrap();
    let c = Collector::start_with_config(&v1_config(&db.url()));
    let s1 = c.probe_config("S1");
    // The primary answered nothing (no RTT fields: accepted); the backup has an RTT (refused).
    let silent_primary = json!({"link": "S1-P", "check": "icmp", "target": "10.255.0.1",
        "start": MINUTE, "interval_s": 60, "sent": 10, "received": 0});
    let b = batch(
        1,
        vec![tcp(MINUTE, 1, 10, 1_000)],
        vec![silent_primary, sample("S1-B", MINUTE, 10, 10, 45_000)],
    );
    assert_eq!(send_ok(&s1, 1, &[b]), [(1, false)]);
    wait_rows(
        &c,
        &db,
        "SELECT bytes FROM site_traffic WHERE site = 'S1'",
        1,
    );
    wait_drained(&c);
    let rows = db.rows(
        "rie",
        "SELECT sent, received, loss_ratio, link FROM link_check WHERE site = 'S1'",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["link"], json!("S1-P"));
    assert_eq!(
        (
            rows[0]["sent"].as_i64(),
            rows[0]["received"].as_i64(),
            rows[0]["loss_ratio"].as_f64()
        ),
        (Some(10), Some(0), Some(1.0))
    );
    assert_eq!(c.metric("rie_collector_influx_points_rejected_total"), 1.0);
    assert_eq!(c.metric("rie_collector_influx_points_retried_total"), 0.0);
    assert_eq!(c.metric("rie_collector_influx_points_dropped_total"), 0.0);
    let log = c.log();
    assert_eq!(log.matches("InfluxDB refused points").count(), 1, "{log}");
    assert!(log.contains("rtt_avg_ms"), "{log}");
}
