//! The real `rie-probe run` process streams batches, survives a collector SIGKILL by
//! reconnecting with backoff, and resumes; the site shows as up with its probe details, and
//! `rie-probe status` tells the technician the same story.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use rie_e2e::{bin, Collector, Probe};

fn stored(c: &Collector) -> u64 {
    c.get("/api/v1/sites/S1")["probe"]["batches_stored"]
        .as_u64()
        .unwrap_or(0)
}

fn status(p: &Probe, lang: &str) -> (Option<i32>, String) {
    let out = Command::new(bin("rie-probe"))
        .args(["status", "--lang", lang, "--config"])
        .arg(&p.config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn probe_streams_reconnects_and_resumes() {
    let mut c = Collector::start();
    let mut p = Probe::start(
        &c,
        "S1",
        "1s",
        Some("seed = 3\nagents = 420\nprimary_link = \"S1-P\"\nbackup_link = \"S1-B\"\nincident_rate = 0.0"),
    );
    c.wait_until("3 batches from the probe", Duration::from_secs(20), |c| {
        stored(c) >= 3
    });
    let site = c.get("/api/v1/sites/S1");
    assert_eq!(site["state"], "up", "{site}");
    assert_eq!(site["connected"], true);
    assert_eq!(
        site["probe"]["protocol_version"],
        rie_proto::PROTOCOL_VERSION
    );
    assert_eq!(site["links"][0]["id"], "S1-P");
    assert_eq!(site["links"][0]["active"], true);

    c.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    c.restart();
    let before = stored(&c);
    c.wait_until(
        "the probe to reconnect and send again",
        Duration::from_secs(20),
        |c| stored(c) > before + 1,
    );
    assert_eq!(c.get("/api/v1/sites/S1")["connected"], true);
    // Nothing the probe produced while the collector was down was lost on the way back.
    assert_eq!(c.metric("rie_collector_sequence_gaps_total"), 0.0);

    // The probe's own account, from its status file, agrees with the collector's.
    let st = p.wait_status("connected again", Duration::from_secs(5), |s| {
        s["connected"] == true
    });
    assert_eq!(st["site"], "S1");
    assert!(st["last_ack_seq"].as_u64().unwrap() >= before, "{st}");
    let (code, text) = status(&p, "fr");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("S1 — rie-probe") && text.contains("en marche"),
        "{text}"
    );
    assert!(
        text.contains("connecté depuis") && text.contains("Dernier acquittement"),
        "{text}"
    );
    assert!(text.contains("S1-P joignable (porte le trafic)"), "{text}");

    assert_eq!(p.terminate(), Some(0));
    let (code, text) = status(&p, "en");
    assert_eq!(code, Some(1), "a stopped probe is not OK: {text}");
    assert!(text.contains("stopped for"), "{text}");
}
