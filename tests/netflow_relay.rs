//! The probe relays its site router's NetFlow: softflowd's v9 export of a pcap is sent to the
//! probe's `[netflow]` port; the probe decodes and aggregates it into its batches (spooled
//! and acknowledged like capture data) and the collector's totals for the site equal
//! nfdump's on the same datagrams. `rie-probe check` says ✘ with the fix when nothing arrives
//! and ✔ when the router exports.

#![allow(clippy::unwrap_used)]

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use rie_e2e::netflow::{
    api_directions, api_talkers, mixed_pcap, nfcapd_files, nfdump_site_view, nfdump_totals,
    softflowd, talkers_pcap, TALKER_SITE_PREFIXES,
};
use rie_e2e::{bin, Collector, Probe};
use serde_json::Value;

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn triple(v: &Value) -> (u64, u64, u64) {
    (
        v["flows"].as_u64().unwrap(),
        v["packets"].as_u64().unwrap(),
        v["bytes"].as_u64().unwrap(),
    )
}

fn with_netflow(p: &Probe, port: u16, wait: &str) {
    let mut text = std::fs::read_to_string(&p.config).unwrap();
    text.push_str(&format!(
        "\n[netflow]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\ncheck_wait = \"{wait}\"\n\n[meter]\nsite_prefixes = [\"10.1.0.0/16\"]\n"
    ));
    std::fs::write(&p.config, text).unwrap();
}

#[test]
fn probe_relays_the_routers_netflow_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("mixed.pcap");
    mixed_pcap(&pcap);
    let datagrams = softflowd(&pcap, "9", None);
    let oracle = nfdump_totals(&datagrams);

    let c = Collector::start();
    let mut p = Probe::prepare(&c, "S1", "1s", None);
    let port = free_udp_port();
    with_netflow(&p, port, "1s");
    p.spawn();
    p.wait_status("probe running", Duration::from_secs(10), |s| {
        s["netflow_datagrams"].as_u64() == Some(0)
    });
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in &datagrams {
        tx.send_to(d, ("127.0.0.1", port)).unwrap();
    }
    c.wait_until(
        &format!("S1 totals = nfdump {oracle:?}"),
        Duration::from_secs(15),
        |c| triple(&c.totals(Some("S1"))) == oracle,
    );
    let n = datagrams.len() as u64;
    p.wait_status("datagrams counted", Duration::from_secs(5), |s| {
        s["netflow_datagrams"].as_u64() == Some(n)
    });
    // While the probe holds the port, `check` reads what it received.
    let out = Command::new(bin("rie-probe"))
        .args(["check", "--lang", "en", "--config"])
        .arg(&p.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "✔ NetFlow datagrams arriving on the configured port — 127.0.0.1:{port} : {} datagrams received by the running probe",
            datagrams.len()
        )),
        "{text}"
    );
    assert_eq!(p.terminate(), Some(0));
}

/// The relay decides direction against `[meter] site_prefixes` and sends top talkers like the
/// capture meter: for softflowd's IPFIX export of one site's traffic, the collector's
/// `by_direction` and top talkers for the site equal nfdump's on the same datagrams.
#[test]
fn relayed_direction_and_talkers_equal_nfdump() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("talkers.pcap");
    talkers_pcap(&pcap);
    let datagrams = softflowd(&pcap, "10", None);
    let files = nfcapd_files(&datagrams);
    let (dirs, blocks) = nfdump_site_view(files.path());
    assert_eq!((dirs.len(), blocks.len()), (3, 9), "{dirs:?} {blocks:?}");

    let c = Collector::start();
    let mut p = Probe::prepare(&c, "S1", "1s", None);
    let port = free_udp_port();
    let mut text = std::fs::read_to_string(&p.config).unwrap();
    text.push_str(&format!(
        "\n[netflow]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n\n[meter]\nsite_prefixes = [\"{}\"]\n",
        TALKER_SITE_PREFIXES.join("\", \"")
    ));
    std::fs::write(&p.config, text).unwrap();
    p.spawn();
    p.wait_status("probe running", Duration::from_secs(10), |s| {
        s["netflow_datagrams"].as_u64() == Some(0)
    });
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in &datagrams {
        tx.send_to(d, ("127.0.0.1", port)).unwrap();
    }
    let want = dirs.clone();
    c.wait_until(
        &format!("S1 directions = nfdump {want:?}"),
        Duration::from_secs(15),
        |c| api_directions(c, "S1") == want,
    );
    assert_eq!(api_talkers(&c, "S1"), blocks);
    assert_eq!(p.terminate(), Some(0));
}

#[test]
fn check_says_whether_netflow_arrives() {
    let c = Collector::start();
    let p = Probe::prepare(&c, "S1", "1s", None);
    let port = free_udp_port();
    with_netflow(&p, port, "1s");
    let check = |lang: &str| {
        let out = Command::new(bin("rie-probe"))
            .args(["check", "--lang", lang, "--config"])
            .arg(&p.config)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // Nothing exported: ✘, blocking, with the fix (French by default).
    let (code, out) = check("fr");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "✘ Datagrammes NetFlow reçus sur le port configuré — 127.0.0.1:{port} : rien reçu en 1 s\n    → configurez l'export NetFlow du routeur"
        )),
        "{out}"
    );
    // A router exporting meanwhile: ✔ with its address and version.
    let sender = std::thread::spawn(move || {
        let tx = UdpSocket::bind("127.0.0.5:0").unwrap();
        let v5 = [
            0u8, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        for _ in 0..40 {
            let _ = tx.send_to(&v5, ("127.0.0.1", port));
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let (code, out) = check("en");
    sender.join().unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "✔ NetFlow datagrams arriving on the configured port — 127.0.0.1:{port} : datagram received from 127.0.0.5 (v5)"
        )),
        "{out}"
    );
}
