//! The probe's disk spool in the field: data produced while the collector is away reaches it
//! once it is back, exactly once; a probe killed in the middle of spool writes (plus a torn
//! record left on disk) recovers on restart and delivers exactly what it had spooled.
//!
//! Expected totals come from the simulated source itself, replayed with the same seed: the
//! probe's n-th batch is the simulator's n-th measurement.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Duration;

use rie_e2e::{Collector, Probe};
use rie_flow::simulate::{SimulateConfig, Simulator};
use rie_proto::LinkId;

const SIM: &str =
    "seed = 11\nagents = 80\nprimary_link = \"S1-P\"\nbackup_link = \"S1-B\"\nincident_rate = 0.0";

/// (flows, packets, bytes) of the first `n` batches of the simulated source at `interval`.
fn expected(n: u64, interval: Duration) -> (u64, u64, u64) {
    let mut sim = Simulator::new(SimulateConfig {
        seed: 11,
        agents: 80,
        primary_link: LinkId::new("S1-P").unwrap(),
        backup_link: Some(LinkId::new("S1-B").unwrap()),
        rtt_ms: 15.0,
        incident_rate: 0.0,
    });
    let mut t = (0, 0, 0);
    for _ in 0..n {
        for f in sim.measure(0, interval).flows {
            t = (t.0 + f.flows, t.1 + f.packets, t.2 + f.bytes);
        }
    }
    t
}

fn totals(c: &Collector) -> (u64, u64, u64) {
    let t = c.totals(Some("S1"));
    (
        t["flows"].as_u64().unwrap(),
        t["packets"].as_u64().unwrap(),
        t["bytes"].as_u64().unwrap(),
    )
}

fn stored(c: &Collector) -> u64 {
    c.get("/api/v1/sites/S1")["probe"]["batches_stored"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn collector_outage_then_return_totals_exact_no_duplicates() {
    let mut c = Collector::start();
    let mut p = Probe::start(&c, "S1", "200ms", Some(SIM));
    c.wait_until("first batches", Duration::from_secs(15), |c| stored(c) >= 3);

    c.kill9();
    // The probe goes on producing into its spool while the collector is away.
    let st = p.wait_status("a backlog in the spool", Duration::from_secs(15), |s| {
        s["spool"]["batches"].as_u64() >= Some(8)
    });
    assert_eq!(st["connected"], false, "{st}");
    // Stop it with the backlog on disk, then bring the collector back and restart the probe
    // without a source: it only empties its spool.
    assert_eq!(p.terminate(), Some(0));
    let backlog = p.status()["spool"]["batches"].as_u64().unwrap();
    assert!(backlog >= 8, "backlog {backlog}");
    c.restart();
    p.write_config("200ms", None);
    p.spawn();
    let st = p.wait_status("the spool to empty", Duration::from_secs(30), |s| {
        s["running"] == true
            && s["spool"]["batches"] == 0
            && s["spool"]["last_acked"].as_u64() > Some(0)
    });
    let n = st["spool"]["last_acked"].as_u64().unwrap();
    assert_eq!(stored(&c), n, "every batch stored once");
    assert_eq!(totals(&c), expected(n, Duration::from_millis(200)));
    assert_eq!(c.metric("rie_collector_sequence_gaps_total"), 0.0);
    assert_eq!(st["spool"]["dropped"], 0);
}

#[test]
fn probe_sigkilled_mid_write_recovers_its_spool_exactly() {
    let mut c = Collector::start();
    let mut p = Probe::start(&c, "S1", "100ms", Some(SIM));
    c.wait_until("first batches", Duration::from_secs(15), |c| stored(c) >= 2);
    c.kill9();
    p.wait_status("a backlog in the spool", Duration::from_secs(15), |s| {
        s["spool"]["batches"].as_u64() >= Some(10)
    });
    p.kill9();

    // Leave a torn record at the end of the newest segment, as a power cut would.
    let spool = p.data_dir.join("spool");
    let mut segs: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let last = segs.last().expect("a spool segment");
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    f.write_all(&[200, 1, 0, 0, 9, 9, 9, 9, 1, 2, 3]).unwrap();
    drop(f);

    c.restart();
    p.write_config("100ms", None);
    p.spawn();
    let st = p.wait_status(
        "the recovered spool to empty",
        Duration::from_secs(30),
        |s| {
            s["running"] == true
                && s["spool"]["batches"] == 0
                && s["spool"]["last_acked"].as_u64() > Some(0)
        },
    );
    assert_eq!(st["spool"]["torn_cut"], 1, "{st}");
    assert!(p.log().contains("torn record"), "{}", p.log());
    let n = st["spool"]["last_acked"].as_u64().unwrap();
    assert_eq!(stored(&c), n, "every spooled batch stored once");
    assert_eq!(totals(&c), expected(n, Duration::from_millis(100)));
    assert_eq!(c.metric("rie_collector_sequence_gaps_total"), 0.0);
}

#[test]
fn spool_directory_deleted_under_a_running_probe() {
    let mut c = Collector::start();
    let p = Probe::start(&c, "S1", "100ms", Some(SIM));
    c.wait_until("first batches", Duration::from_secs(15), |c| stored(c) >= 2);
    c.kill9();
    p.wait_status("a backlog", Duration::from_secs(15), |s| {
        s["spool"]["batches"].as_u64() >= Some(5)
    });
    std::fs::remove_dir_all(p.data_dir.join("spool")).unwrap();
    // The probe keeps running, recreates its spool and says what it lost.
    let st = p.wait_status("the loss to be counted", Duration::from_secs(15), |s| {
        s["spool"]["dropped"].as_u64() > Some(0)
    });
    assert_eq!(st["running"], true);
    assert!(p.data_dir.join("spool").is_dir());
    c.restart();
    let before = stored(&c);
    c.wait_until(
        "new batches after the deletion",
        Duration::from_secs(20),
        |c| stored(c) > before + 3,
    );
    // The status file is rewritten every second.
    p.wait_status("connected again", Duration::from_secs(5), |s| {
        s["connected"] == true
    });
    // The lost batches are a visible gap at the collector, not silence.
    assert_eq!(c.metric("rie_collector_sequence_gaps_total"), 1.0);
}
