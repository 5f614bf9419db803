#![allow(clippy::unwrap_used)]
//! Two collectors on one real PostgreSQL 15 (started by the test on loopback): a probe stream
//! stored on the first (batches 1..5), the first killed with SIGKILL, the stream replayed from
//! seq 3 to the second (as a probe whose acks were lost would): the second reads the stream's
//! mark from the database at hello, acknowledges 3..5 as duplicates without storing them and
//! stores 6..8. Both collectors then answer the same national totals, equal to every batch once
//! and to what PostgreSQL itself sums. The same batch sent to both at once is stored once: the
//! (site, stream, seq) mark is checked under a row lock in the transaction of its rows.

use std::thread;

use rie_e2e::*;
use rie_testpg::PgServer;
use serde_json::Value;

const SITE: &str = "S1";
const STREAM: u64 = 0x5eed_0000_0000_0042;

/// Batches `seqs` of the stream; each seq's flows are distinct, so totals tell which were
/// stored and how many times.
fn batches(seqs: std::ops::RangeInclusive<u64>) -> Vec<Value> {
    seqs.map(|k| {
        batch(
            k,
            vec![
                flow(MINUTE + 60 * k as i64, 6, k, 10 * k + 1, 1_000 * k + 17),
                flow(MINUTE + 60 * k as i64, 17, 2 * k, 3 * k, 555 * k + 3),
            ],
        )
    })
    .collect()
}

fn config(pg: &PgServer) -> String {
    format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\n",
        pg.url()
    )
}

#[test]
fn two_collectors_on_one_database_store_each_batch_once() {
    let pg = PgServer::start();
    let cfg = config(&pg);
    let mut a = Collector::start_with_config(&cfg);
    let b = Collector::start_sharing_pki(&cfg, Some(&a));
    // One enrolment in the shared database; b's copy points at b with the same token.
    let cfg_a = a.probe_config(SITE);
    let cfg_b = b.probe_config_sharing(SITE, &cfg_a);

    let acks = send_ok(&cfg_a, STREAM, &batches(1..=5));
    assert_eq!(acks, (1..=5).map(|k| (k, false)).collect::<Vec<_>>());
    // b holds nothing of its own: it already answers a's batches.
    assert_eq!(b.totals(Some(SITE)), expected_totals(&batches(1..=5)));

    a.kill9();
    let acks = send_ok(&cfg_b, STREAM, &batches(3..=8));
    assert_eq!(
        acks,
        [
            (3, true),
            (4, true),
            (5, true),
            (6, false),
            (7, false),
            (8, false)
        ]
    );
    assert_eq!(b.metric("rie_collector_duplicate_batches_total"), 3.0);
    assert_eq!(b.metric("rie_collector_probe_batches_total"), 3.0);
    assert_eq!(b.metric("rie_collector_sequence_gaps_total"), 0.0);

    // National views from any collector: a, restarted, answers what b stored too.
    a.restart();
    let all = expected_totals(&batches(1..=8));
    assert_eq!(b.totals(Some(SITE)), all);
    assert_eq!(a.totals(Some(SITE)), all);
    assert_eq!(a.totals(None), b.totals(None));
    // PostgreSQL's own sum, independent of the collector's read path.
    let bytes: u64 = pg
        .psql("SELECT sum(bytes) FROM flow_minute WHERE site_id = 'S1'")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(Some(bytes), all["bytes"].as_u64());
    assert_eq!(
        pg.psql("SELECT last_seq FROM probe_streams WHERE site_id = 'S1'")
            .trim(),
        "8"
    );

    // The same batch 9 to both collectors at once: one stores it; the other either sees the
    // mark at hello (duplicate), or loses the row lock race (no ack: the probe resends, and
    // the resend is a duplicate). Never twice.
    let cfg_a = a.probe_config_sharing(SITE, &cfg_a);
    let nine = batches(9..=9);
    let (oa, ob) = thread::scope(|s| {
        let ta = s.spawn(|| send_batches(&cfg_a, STREAM, &nine));
        let tb = s.spawn(|| send_batches(&cfg_b, STREAM, &nine));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let mut acks = Vec::new();
    for (out, cfg) in [(oa, &cfg_a), (ob, &cfg_b)] {
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            for ack in v["acks"].as_array().unwrap() {
                acks.push((ack["seq"].as_u64().unwrap(), ack["duplicate"] == true));
            }
        } else {
            acks.extend(send_ok(cfg, STREAM, &nine));
        }
    }
    acks.sort();
    assert_eq!(acks, [(9, false), (9, true)]);
    let all = expected_totals(&batches(1..=9));
    assert_eq!(a.totals(Some(SITE)), all);
    assert_eq!(b.totals(Some(SITE)), all);
}

#[test]
fn an_unreachable_database_is_a_start_error_naming_the_masked_url() {
    let pg = PgServer::start();
    let port = pg.port();
    drop(pg);
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        std::process::Command::new(bin("rie-collector"))
            .args(["pki", "init", "--dir"])
            .arg(dir.path().join("pki")),
    );
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\nbackend = \"postgres\"\n[store.postgres]\n\
             url = \"postgresql://rie:s3cret@127.0.0.1:{port}/rie?connect_timeout=2\"\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin("rie-collector"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--inventory")
        .arg(fixture("inventory"))
        .arg("--pki-dir")
        .arg(dir.path().join("pki"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}
