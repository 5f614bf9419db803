//! `rie-sim loadgen` against a real collector: every batch the simulated probes produce is
//! acknowledged and stored, and the report says so with the collector's own count.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use rie_e2e::{bin, loadgen_command, run_ok, Collector};
use serde_json::Value;

#[test]
fn loadgen_counts_match_the_collector() {
    let c = Collector::start();
    let d = c.dir.path();
    let out = run_ok(
        loadgen_command(&c)
            .args(["--probes", "3"])
            .args(["--interval", "1s", "--duration", "6s", "--warmup", "2s"])
            .args(["--metrics", &c.url("/metrics")]),
    );
    let r: Value = serde_json::from_str(&out).unwrap();
    let produced = r["batches_produced"].as_u64().unwrap();
    // 3 probes, one batch a second for 6 s (first at a random offset within the first second).
    assert!((15..=21).contains(&produced), "{r}");
    assert_eq!(r["batches_acked"].as_u64(), Some(produced), "{r}");
    assert_eq!(r["batches_unacked"].as_u64(), Some(0), "{r}");
    assert_eq!(r["batches_stored"].as_u64(), Some(produced), "{r}");
    assert_eq!(
        c.metric("rie_collector_probe_batches_total") as u64,
        produced
    );
    let lat = &r["ack_latency_ms"];
    let warm = &r["ack_latency_ms_warmup"];
    assert_eq!(
        lat["count"].as_u64().unwrap() + warm["count"].as_u64().unwrap(),
        produced
    );
    assert!(lat["p50"].as_f64().unwrap() <= lat["p99"].as_f64().unwrap());
    assert!(lat["p99"].as_f64().unwrap() <= lat["max"].as_f64().unwrap());

    // More probes than the inventory has sites: a clear error.
    let o = Command::new(bin("rie-sim"))
        .args([
            "loadgen",
            "--probes",
            "4",
            "--address",
            "127.0.0.1:1",
            "--ca",
        ])
        .arg(d.join("pki/ca.pem"))
        .arg("--data-dir")
        .arg(d.join("data"))
        .arg("--inventory")
        .arg(d.join("inventory"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("has only 3 sites"), "{err}");
}

/// Two collectors on one PostgreSQL: `--collector A,B` spreads the simulated probes over both
/// (probe i starts on the (i mod 2)-th), `--collector-config` issues the tokens in that
/// database, and the report's stored count is summed over both collectors' metrics.
#[test]
fn loadgen_spreads_over_two_collectors_on_one_database() {
    let pg = rie_testpg::PgServer::start();
    let cfg = format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\n",
        pg.url()
    );
    let a = Collector::start_sharing_pki(&cfg, None);
    let b = Collector::start_sharing_pki(&cfg, Some(&a));
    let d = a.dir.path();
    let out = run_ok(
        Command::new(bin("rie-sim"))
            .args(["--log-level", "warn", "loadgen", "--probes", "3"])
            .args(["--interval", "1s", "--duration", "5s", "--warmup", "2s"])
            .args([
                "--collector",
                &format!("{},{}", a.probe_addr, b.probe_addr),
                "--ca",
            ])
            .arg(d.join("pki/ca.pem"))
            .arg("--data-dir")
            .arg(d.join("data"))
            .arg("--collector-config")
            .arg(d.join("collector.toml"))
            .arg("--inventory")
            .arg(d.join("inventory"))
            .args(["--metrics", &a.url("/metrics")])
            .args(["--metrics", &b.url("/metrics")]),
    );
    let r: Value = serde_json::from_str(&out).unwrap();
    let produced = r["batches_produced"].as_u64().unwrap();
    assert!((12..=18).contains(&produced), "{r}");
    assert_eq!(r["batches_acked"].as_u64(), Some(produced), "{r}");
    assert_eq!(r["batches_stored"].as_u64(), Some(produced), "{r}");
    // Both collectors took part: probes 0 and 2 on A, probe 1 on B.
    let (on_a, on_b) = (
        a.metric("rie_collector_probe_batches_total") as u64,
        b.metric("rie_collector_probe_batches_total") as u64,
    );
    assert_eq!(on_a + on_b, produced);
    assert!(on_a > on_b && on_b > 0, "A {on_a}, B {on_b}");
    assert_eq!(
        pg.psql("SELECT count(*), sum(last_seq) FROM probe_streams")
            .trim(),
        format!("3|{produced}")
    );
}
