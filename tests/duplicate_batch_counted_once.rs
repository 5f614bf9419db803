//! A batch delivered twice (same site, stream and sequence) is acknowledged twice and counted
//! once; the same sequence number on another stream or another site is a different batch.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use rie_e2e::{batch, expected_totals, flow, send_ok, Collector, MINUTE};

#[test]
fn duplicate_is_acked_but_counted_once() {
    let c = Collector::start();
    let s1 = c.probe_config("S1");
    let s3 = c.probe_config("S3");
    let b1 = batch(
        1,
        vec![
            flow(MINUTE, 6, 10, 1_000, 1_234_567),
            flow(MINUTE, 17, 2, 30, 4_321),
        ],
    );
    let one = std::slice::from_ref(&b1);
    assert_eq!(send_ok(&s1, 9, one), [(1, false)]);
    assert_eq!(send_ok(&s1, 9, one), [(1, true)]);
    assert_eq!(c.totals(Some("S1")), expected_totals(one));
    assert_eq!(c.metric("rie_collector_duplicate_batches_total"), 1.0);
    assert_eq!(c.metric("rie_collector_probe_batches_total"), 1.0);

    // Same seq, other stream (a reinstalled probe): new data.
    assert_eq!(send_ok(&s1, 10, one), [(1, false)]);
    // Same seq and stream, other site: new data for that site.
    assert_eq!(send_ok(&s3, 9, one), [(1, false)]);
    assert_eq!(
        c.totals(Some("S1")),
        expected_totals(&[b1.clone(), b1.clone()])
    );
    assert_eq!(c.totals(Some("S3")), expected_totals(one));
    assert_eq!(
        c.totals(None),
        expected_totals(&[b1.clone(), b1.clone(), b1])
    );
    assert_eq!(c.metric("rie_collector_probe_batches_total"), 3.0);
    assert_eq!(c.metric("rie_collector_duplicate_batches_total"), 1.0);
    // Three stored batches of two aggregates; the duplicate adds none.
    assert_eq!(
        c.metric("rie_collector_flow_records_total{source=\"probe\"}"),
        6.0
    );
    assert_eq!(
        c.metric("rie_collector_flow_records_total{source=\"netflow\"}"),
        0.0
    );
}

#[test]
fn totals_filter_by_time_window_and_exporter() {
    let c = Collector::start();
    let s3 = c.probe_config("S3");
    let mut relayed = flow(MINUTE + 60, 6, 4, 40, 4_000);
    relayed["exporter"] = "10.0.3.2".into();
    let b = batch(1, vec![flow(MINUTE, 6, 1, 10, 1_000), relayed]);
    assert_eq!(send_ok(&s3, 1, &[b]), [(1, false)]);
    // [MINUTE, MINUTE+60) holds only the first bucket.
    let t = c.get("/api/v1/flows/totals?from=2026-09-21T14:14:00Z&to=2026-09-21T14:15:00Z");
    assert_eq!(
        (t["flows"].as_u64(), t["bytes"].as_u64()),
        (Some(1), Some(1_000))
    );
    let t = c.get("/api/v1/flows/totals?from=2026-09-21T16:14:00%2B02:00&to=2100-01-01T00:00:00Z&exporter=10.0.3.2");
    assert_eq!(
        (
            t["flows"].as_u64(),
            t["packets"].as_u64(),
            t["bytes"].as_u64()
        ),
        (Some(4), Some(40), Some(4_000))
    );
    let bad = ureq::get(&c.url("/api/v1/flows/totals?from=yesterday&to=now")).call();
    match bad {
        Err(ureq::Error::Status(400, r)) => assert!(r.into_string().unwrap().contains("RFC 3339")),
        other => panic!("expected 400, got {other:?}"),
    }
}
