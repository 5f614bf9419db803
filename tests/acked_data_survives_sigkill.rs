//! Data acknowledged before the collector is SIGKILLed is served after restart, exactly, and a
//! probe's redelivery of what it could not see acknowledged is counted once.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use rie_e2e::{batch, expected_totals, flow, send_ok, Collector, MINUTE};

#[test]
fn acknowledged_batches_survive_sigkill_and_redelivery_counts_once() {
    let mut c = Collector::start();
    let cfg = c.probe_config("S1");
    let sent = vec![
        batch(
            1,
            vec![
                flow(MINUTE, 6, 12, 3_400, 2_901_337),
                flow(MINUTE, 17, 5, 77, 9_001),
            ],
        ),
        batch(2, vec![flow(MINUTE + 60, 6, 3, 41, 52_008)]),
        batch(
            3,
            vec![
                flow(MINUTE + 120, 1, 1, 4, 336),
                flow(MINUTE + 120, 6, 7, 700, 811_002),
            ],
        ),
    ];
    assert_eq!(
        send_ok(&cfg, 77, &sent),
        [(1, false), (2, false), (3, false)]
    );

    c.kill9();
    c.restart();

    assert_eq!(c.totals(Some("S1")), expected_totals(&sent));
    assert_eq!(c.totals(None), expected_totals(&sent));
    // The probe never saw the ack of 3 (say): it sends 3 again, then 4.
    let more = vec![
        sent[2].clone(),
        batch(4, vec![flow(MINUTE + 180, 17, 2, 20, 1_500)]),
    ];
    assert_eq!(send_ok(&cfg, 77, &more), [(3, true), (4, false)]);
    let mut all = sent.clone();
    all.push(more[1].clone());
    assert_eq!(c.totals(Some("S1")), expected_totals(&all));
    assert_eq!(c.metric("rie_collector_duplicate_batches_total"), 1.0);
    // Counted since this process started: only batch 4 is new here.
    assert_eq!(c.metric("rie_collector_probe_batches_total"), 1.0);
    let site = c.get("/api/v1/sites/S1");
    assert_eq!(site["probe"]["batches_stored"], 4);
}

#[test]
fn sigterm_flushes_and_exits_cleanly() {
    let mut c = Collector::start();
    let cfg = c.probe_config("S3");
    let sent = vec![batch(1, vec![flow(MINUTE, 6, 1, 10, 1_000)])];
    assert_eq!(send_ok(&cfg, 5, &sent), [(1, false)]);
    assert_eq!(c.terminate(), Some(0));
    c.restart();
    assert_eq!(c.totals(Some("S3")), expected_totals(&sent));
}
