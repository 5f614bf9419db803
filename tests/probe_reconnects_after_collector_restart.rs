//! The real `rie-probe run` process streams batches, survives a collector SIGKILL by
//! reconnecting with backoff, and resumes; the site shows as up with its probe details.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use rie_e2e::{bin, Collector};

#[test]
fn probe_streams_reconnects_and_resumes() {
    let mut c = Collector::start();
    let cfg = c.probe_config("S1");
    let data = c.dir.path().join("probe-data");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text
        .replace(
            "data_dir = \"/var/lib/rie-probe\"",
            &format!("data_dir = \"{}\"", data.display()),
        )
        .replace("batch_interval = \"10s\"", "batch_interval = \"1s\"");
    text.push_str(
        "reconnect_min = \"200ms\"\nreconnect_max = \"1s\"\n\n[simulate]\nseed = 3\nagents = 420\nprimary_link = \"S1-P\"\nbackup_link = \"S1-B\"\nincident_rate = 0.0\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let mut probe = Command::new(bin("rie-probe"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let stored = |c: &Collector| {
        c.get("/api/v1/sites/S1")["probe"]["batches_stored"]
            .as_u64()
            .unwrap_or(0)
    };
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
    // The probe's own account, from its status file, agrees with the collector's.
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["site"], "S1");
    assert_eq!(status["running"], true);
    assert!(
        status["last_ack_seq"].as_u64().unwrap() >= before,
        "{status}"
    );
    // Nothing the probe produced while the collector was down was lost on the way back.
    assert_eq!(c.metric("rie_collector_sequence_gaps_total"), 0.0);

    // The technician's view of the same state.
    let out = Command::new(bin("rie-probe"))
        .args(["status", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("S1 — rie-probe") && text.contains("en marche"),
        "{text}"
    );
    assert!(
        text.contains("connecté depuis") && text.contains("Dernier acquittement"),
        "{text}"
    );
    assert!(text.contains("S1-P joignable (porte le trafic)"), "{text}");

    let st = Command::new("kill")
        .args(["-TERM", &probe.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let code = probe.wait().unwrap().code();
    assert_eq!(code, Some(0));
    let out = Command::new(bin("rie-probe"))
        .args(["status", "--lang", "en", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a stopped probe is not OK: {text}"
    );
    assert!(text.contains("stopped for"), "{text}");
}
