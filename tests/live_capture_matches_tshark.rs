//! The probe's live capture, end to end: collector, probe and tcpdump run inside a network
//! namespace whose veth carries real traffic (ping, HTTP, UDP) to a second namespace. The
//! probe captures on the veth, meters, and sends to the collector; after a clean stop the
//! collector's totals per protocol must equal tshark's count of tcpdump's capture, exactly.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use rie_e2e::{bin, by_protocol, fixture, run_ok, tshark_totals, wait_for, Guard, NetnsPair};

fn curl_in(ns: &str, url: &str) -> Option<String> {
    let out = NetnsPair::exec(ns, "curl")
        .args(["-sf", url])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn live_capture_through_the_collector_equals_tshark() {
    let net = NetnsPair::new("live");
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    run_ok(Command::new(bin("rie-collector")).args(["pki", "init", "--dir", &d("pki")]));
    let inventory = fixture("inventory").display().to_string();
    let common = [
        "--data-dir",
        &d("data"),
        "--inventory",
        &inventory,
        "--pki-dir",
        &d("pki"),
    ];
    let log = std::fs::File::create(d("collector.log")).unwrap();
    let _collector = Guard(
        NetnsPair::exec(&net.a, bin("rie-collector").to_str().unwrap())
            .arg("serve")
            .args(common)
            .args([
                "--probe-listen",
                "127.0.0.1:7443",
                "--api-listen",
                "127.0.0.1:8480",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for("the collector", Duration::from_secs(15), || {
        curl_in(&net.a, "http://127.0.0.1:8480/healthz").is_some()
    });

    let cfg = d("probe.toml");
    run_ok(
        Command::new(bin("rie-collector"))
            .arg("probe-config")
            .args(common)
            .args(["--site", "S1", "--address", "127.0.0.1:7443", "--out", &cfg]),
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("/var/lib/rie-probe", &d("probe-data"))
        .replace("batch_interval = \"10s\"", "batch_interval = \"1s\"");
    std::fs::write(
        &cfg,
        format!("{text}\n[capture]\ninterfaces = [\"{}\"]\n\n[meter]\nsite_prefixes = [\"10.99.0.1/32\", \"fd99::1/128\"]\n", net.veth_a),
    )
    .unwrap();

    let pcap = d("veth.pcap");
    let tcpdump = net.tcpdump(std::path::Path::new(&pcap));

    let mut probe = Guard(
        NetnsPair::exec(&net.a, bin("rie-probe").to_str().unwrap())
            .args(["run", "--config", &cfg])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d("probe.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let status = dir.path().join("probe-data/status.json");
    wait_for("the probe to capture", Duration::from_secs(15), || {
        std::fs::read(&status)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|s| s["capture_packets"].is_u64() && s["connected"] == true)
    });

    // Traffic between the namespaces.
    std::fs::write(dir.path().join("page.html"), "y".repeat(30_000)).unwrap();
    let _server = net.http_server(dir.path());
    wait_for("the HTTP server", Duration::from_secs(15), || {
        curl_in(&net.a, "http://10.99.0.2:8080/page.html").is_some()
    });
    for _ in 0..3 {
        assert!(curl_in(&net.a, "http://10.99.0.2:8080/page.html").is_some());
    }
    run_ok(NetnsPair::exec(&net.a, "ping").args(["-c", "4", "-i", "0.2", "10.99.0.2"]));
    run_ok(NetnsPair::exec(&net.a, "ping").args(["-6", "-c", "3", "-i", "0.2", "fd99::2"]));
    run_ok(NetnsPair::exec(&net.a, "python3").args([
        "-c",
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range(20):\n    s.sendto(bytes(200 + i), ('10.99.0.2', 9999))\n",
    ]));
    std::thread::sleep(Duration::from_millis(500));

    NetnsPair::stop_tcpdump(tcpdump);
    // SIGTERM: the probe stops capturing, flushes its flow table and delivers the last batch.
    Command::new("kill")
        .args(["-TERM", &probe.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(
        probe.0.wait().unwrap().code(),
        Some(0),
        "{}",
        std::fs::read_to_string(d("probe.log")).unwrap()
    );

    let expected = tshark_totals(std::path::Path::new(&pcap));
    let totals: serde_json::Value = serde_json::from_str(
        &curl_in(&net.a, "http://127.0.0.1:8480/api/v1/flows/totals?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&site=S1").unwrap(),
    )
    .unwrap();
    let got = by_protocol(&totals);
    assert_eq!(
        got,
        expected,
        "collector {totals}\ntshark {expected:?}\nprobe log:\n{}",
        std::fs::read_to_string(d("probe.log")).unwrap()
    );
    for proto in ["1", "6", "17", "58"] {
        assert!(
            expected.get(proto).is_some_and(|e| e.0 > 0),
            "no protocol {proto} in the capture: {expected:?}"
        );
    }
    // Top talkers from the live path (sent with the batches and the final flush): all IPv4
    // traffic (ICMP, TCP, UDP) is with 10.99.0.2, so 10.99.0.0/24 carries exactly the IPv4 bytes
    // tshark counted; it comes first (the IPv6 pings are smaller).
    let talkers: serde_json::Value = serde_json::from_str(
        &curl_in(&net.a, "http://127.0.0.1:8480/api/v1/sites/S1/top_talkers?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z").unwrap(),
    )
    .unwrap();
    let v4: u64 = ["1", "6", "17"].iter().map(|p| expected[*p].1).sum();
    assert_eq!(talkers[0]["prefix"], "10.99.0.0/24", "{talkers}");
    assert_eq!(
        talkers[0]["bytes"].as_u64(),
        Some(v4),
        "{talkers}\ntshark {expected:?}"
    );
    // The class split sums exactly to the totals.
    let class_bytes: u64 = totals["by_port_class"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(Some(class_bytes), totals["bytes"].as_u64(), "{totals}");
    // All TCP is HTTP on 8080: class web is exactly tshark's TCP bytes.
    assert_eq!(
        totals["by_port_class"]["web"]["bytes"].as_u64(),
        Some(expected["6"].1),
        "{totals}"
    );
    // The probe's counters for node_exporter's textfile collector agree with tshark too.
    let prom = std::fs::read_to_string(dir.path().join("probe-data/metrics.prom")).unwrap();
    let value = |name: &str| -> u64 {
        prom.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{{site=\"S1\"}} ")))
            .unwrap_or_else(|| panic!("no {name} in {prom}"))
            .parse()
            .unwrap()
    };
    let packets: u64 = expected.values().map(|(p, _)| p).sum();
    assert_eq!(value("rie_probe_capture_packets_total"), packets, "{prom}");
    assert_eq!(value("rie_probe_flow_table_evictions_total"), 0, "{prom}");
    assert_eq!(value("rie_probe_capture_kernel_drops_total"), 0, "{prom}");
    assert_eq!(value("rie_probe_up"), 0, "stopped: {prom}");
}
