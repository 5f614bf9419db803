//! The probe fleet seen from the centre (`GET /api/v1/fleet`, `rie_fleet_probes`,
//! `rie_site_probe_spool_batches`): real `rie-probe` processes report their version, protocol
//! version and health; the collector shows exactly what each one has — its relay's datagram
//! and error counts, and the spool backlog a probe brings back after an outage, reported before
//! any of it is sent, then drained to zero. Sites whose probe never said hello count as `none`.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use rie_e2e::netflow::{mixed_pcap, softflowd};
use rie_e2e::{Collector, Probe};
use serde_json::{json, Value};

const SIM: &str = "seed = 4\nagents = 40\nprimary_link = \"S2-P\"\nincident_rate = 0.0";

fn entry(c: &Collector, site: &str) -> Value {
    c.get("/api/v1/fleet")["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == site)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Appends `extra` to the probe's config, under its `[collector]` table or as new tables.
fn config_with(p: &Probe, collector_keys: &str, tables: &str) {
    let text = std::fs::read_to_string(&p.config).unwrap();
    let text = text.replacen(
        "[collector]\n",
        &format!("[collector]\n{collector_keys}"),
        1,
    );
    std::fs::write(&p.config, format!("{text}\n{tables}")).unwrap();
}

#[test]
fn the_fleet_view_shows_each_probes_version_health_and_backlog() {
    let mut c = Collector::start();
    let version = env!("CARGO_PKG_VERSION");
    let protocol = rie_proto::PROTOCOL_VERSION.to_string();

    // S1 relays its router's NetFlow: n datagrams of softflowd's export and one that is not
    // NetFlow.
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("mixed.pcap");
    mixed_pcap(&pcap);
    let datagrams = softflowd(&pcap, "9", None);
    // Two free ports (both sockets held while choosing, so they differ).
    let (a, b) = (
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("127.0.0.1:0").unwrap(),
    );
    let (port, sflow_port) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    drop((a, b));
    let mut p1 = Probe::prepare(&c, "S1", "30s", None);
    config_with(
        &p1,
        "heartbeat_interval = \"1s\"\n",
        &format!(
            "[netflow]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n\n\
             [sflow]\nenabled = true\nlisten = \"127.0.0.1:{sflow_port}\"\n"
        ),
    );
    p1.spawn();
    p1.wait_status("the relay", Duration::from_secs(10), |s| {
        s["connected"] == true && s["netflow_datagrams"].as_u64() == Some(0)
    });
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in &datagrams {
        tx.send_to(d, ("127.0.0.1", port)).unwrap();
    }
    tx.send_to(&[0, 9, 0, 1, 0xff], ("127.0.0.1", port))
        .unwrap();
    // And two datagrams that are not sFlow to its sFlow relay.
    for _ in 0..2 {
        tx.send_to(&[0, 0, 0, 5, 0, 0], ("127.0.0.1", sflow_port))
            .unwrap();
    }
    let n = datagrams.len() as u64 + 1;
    p1.wait_status("the relays' counts", Duration::from_secs(10), |s| {
        s["netflow_datagrams"] == json!(n) && s["sflow_datagrams"] == json!(2)
    });
    c.wait_until("S1's relay counts", Duration::from_secs(15), |c| {
        let h = &entry(c, "S1")["health"];
        h["relay_datagrams"] == json!(n) && h["sflow_datagrams"] == json!(2)
    });
    let e = entry(&c, "S1");
    assert_eq!(
        (
            &e["probe_version"],
            &e["protocol_version"],
            &e["connected"],
            &e["health"]["relay_errors"],
            &e["health"]["sflow_errors"],
            &e["health"]["spool_batches"],
            &e["health"]["backlog_growing"],
            &e["health"]["capture_kernel_drops"],
        ),
        (
            &json!(version),
            &json!(rie_proto::PROTOCOL_VERSION),
            &json!(true),
            &json!(1),
            &json!(2),
            &json!(0),
            &json!(false),
            &Value::Null
        ),
        "{e}"
    );
    assert!(
        e["last_hello"].is_string() && e["health"]["at"].is_string(),
        "{e}"
    );
    assert!(e["clock_offset_ms"].as_i64().unwrap().abs() < 2_000, "{e}");

    // S2 produces batches while the collector is away: a backlog in its spool.
    let mut p2 = Probe::start(&c, "S2", "200ms", Some(SIM));
    c.wait_until("S2 connected", Duration::from_secs(15), |c| {
        entry(c, "S2")["health"]["spool_batches"] == json!(0)
    });
    c.kill9();
    p2.wait_status("a backlog", Duration::from_secs(15), |s| {
        s["spool"]["batches"].as_u64() >= Some(6)
    });
    assert_eq!(p2.terminate(), Some(0));
    let backlog = p2.status()["spool"]["batches"].as_u64().unwrap();
    // Back without a source, slowly replaying: the backlog is reported first, then drains.
    c.restart();
    p2.write_config("1h", None);
    config_with(
        &p2,
        "heartbeat_interval = \"1s\"\nmax_in_flight = 1\n",
        "[spool]\nreplay_rate = 2\n",
    );
    let hello_before = entry(&c, "S2")["last_hello"].clone();
    let stored = |c: &Collector| {
        c.get("/api/v1/sites/S2")["probe"]["batches_stored"]
            .as_u64()
            .unwrap()
    };
    let stored_before = stored(&c);
    p2.spawn();
    let mut seen: Vec<u64> = Vec::new();
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let e = entry(&c, "S2");
        // The state restored from the store is the one before the outage: wait for the hello.
        let fresh = e["last_hello"] != hello_before;
        if let Some(b) = e["health"]["spool_batches"].as_u64().filter(|_| fresh) {
            if seen.last() != Some(&b) {
                seen.push(b);
            }
            if b == 0 {
                break;
            }
        }
        assert!(Instant::now() < end, "S2 never drained: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first report is the backlog this connection had to send: the spool less what the
    // collector had stored before its crash without the probe hearing the ack (the welcome's
    // last stored sequence drops those), i.e. exactly the batches stored since.
    let first = seen[0];
    assert!(
        first <= backlog,
        "first report {first} of a spool of {backlog}"
    );
    c.wait_until(
        &format!("exactly {first} batches of S2 stored since the restart"),
        Duration::from_secs(5),
        |c| stored(c) - stored_before == first,
    );
    assert!(seen.windows(2).all(|w| w[1] < w[0]), "draining: {seen:?}");
    assert_eq!(entry(&c, "S2")["health"]["backlog_growing"], false);

    // Counts and filters: S3's probe never said hello.
    let f = c.get("/api/v1/fleet");
    assert_eq!(
        f["counts"],
        json!({
            "sites": 3,
            "by_probe_version": { version: 2, "none": 1 },
            "by_protocol_version": { protocol.as_str(): 2, "none": 1 },
            "by_plan_version": { "none": 3 },
            "reporting_health": 2,
            "with_backlog": 0,
            "backlog_growing": 0,
            "spool_batches": 0,
        })
    );
    let ids = |q: &str| -> Vec<String> {
        c.get(&format!("/api/v1/fleet?{q}"))["probes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("version=none"), ["S3"]);
    assert_eq!(ids(&format!("version={version}")), ["S1", "S2"]);
    assert_eq!(ids("backlog_over=0"), Vec::<String>::new());
    assert_eq!(ids(&format!("protocol_version={protocol}&limit=1")), ["S1"]);
    // Gauges: a few series by version, one backlog series per reporting site.
    assert_eq!(
        c.metric(&format!(
            "rie_fleet_probes{{probe_version=\"{version}\",protocol_version=\"{protocol}\"}}"
        )),
        2.0
    );
    assert_eq!(
        c.metric("rie_fleet_probes{probe_version=\"none\",protocol_version=\"none\"}"),
        1.0
    );
    assert_eq!(
        c.metric("rie_fleet_probes_by_plan{plan_version=\"none\"}"),
        3.0
    );
    let metrics = c.request("/metrics").call().unwrap().into_string().unwrap();
    let spool: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("rie_site_probe_spool_batches{"))
        .collect();
    assert_eq!(spool.len(), 2, "{spool:?}");
    assert!(spool.iter().all(|l| l.ends_with(" 0")), "{spool:?}");
    drop(p1);
}
