//! The flow meter against an independent tool on real traffic: two network namespaces joined by
//! a veth pair exchange ping (IPv4 and IPv6), HTTP with Python's server and curl, iperf3 bulk
//! TCP and paced UDP, UDP datagrams and a burst of connections to closed ports (SYN/RST);
//! tcpdump captures it; the
//! packets and IP bytes of `rie-probe replay --summary json` must equal tshark's count of the
//! same file, per protocol, exactly.
//!
//! Needs root, iproute2, tcpdump, tshark, iputils-ping, curl, iperf3 and python3 (`.ci/run`
//! installs them).

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use rie_e2e::{by_protocol, replay_json, tshark_totals, NetnsPair};

fn need(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{tool} is missing: apt-get install {package}"
    );
}

fn run_in(ns: &str, program: &str, args: &[&str]) {
    let out = NetnsPair::exec(ns, program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn replay_equals_tshark_per_protocol_on_namespace_traffic() {
    for (tool, pkg) in [
        ("tcpdump", "tcpdump"),
        ("tshark", "tshark"),
        ("ping", "iputils-ping"),
        ("curl", "curl"),
        ("iperf3", "iperf3"),
        ("python3", "python3"),
    ] {
        need(tool, pkg);
    }
    let net = NetnsPair::new("replay");
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("veth.pcap");

    let _server = net.http_server(dir.path());
    std::fs::write(dir.path().join("page.html"), "x".repeat(20_000)).unwrap();

    let tcpdump = net.tcpdump(std::path::Path::new(&pcap));

    // Wait for the HTTP server.
    let start = Instant::now();
    while !NetnsPair::exec(&net.a, "curl")
        .args(["-sf", "-o", "/dev/null", "http://10.99.0.2:8080/page.html"])
        .status()
        .unwrap()
        .success()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "HTTP server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    run_in(&net.a, "ping", &["-c", "5", "-i", "0.2", "10.99.0.2"]);
    run_in(&net.a, "ping", &["-6", "-c", "3", "-i", "0.2", "fd99::2"]);
    for _ in 0..5 {
        run_in(
            &net.a,
            "curl",
            &["-sf", "-o", "/dev/null", "http://10.99.0.2:8080/page.html"],
        );
    }
    // iperf3: 4 MiB of TCP at 40 Mbit/s (paced, so that tcpdump keeps up; segments as large as
    // the veth offloads make them), then 1 s of
    // UDP at 20 Mbit/s, each against a one-shot server.
    for client in [
        &["-c", "10.99.0.2", "-p", "5201", "-n", "4M", "-b", "40M"][..],
        &[
            "-c",
            "10.99.0.2",
            "-p",
            "5202",
            "-u",
            "-b",
            "20M",
            "-t",
            "1",
        ][..],
    ] {
        let port = client[3];
        let mut server = rie_e2e::Guard(
            NetnsPair::exec(&net.b, "iperf3")
                .args(["-s", "-1", "-p", port])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let start = Instant::now();
        loop {
            let out = NetnsPair::exec(&net.a, "iperf3")
                .args(client)
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "iperf3 {client:?}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(server.0.wait().unwrap().success());
    }
    let udp_and_rst = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(50):
    s.sendto(bytes(100 + i * 20), ("10.99.0.2", 9999))
for port in range(20000, 20040):
    c = socket.socket()
    try:
        c.connect(("10.99.0.2", port))
    except OSError:
        pass
    c.close()
"#;
    run_in(&net.a, "python3", &["-c", udp_and_rst]);
    std::thread::sleep(Duration::from_millis(300));

    NetnsPair::stop_tcpdump(tcpdump);

    let expected = tshark_totals(&pcap);
    let (s, _) = replay_json(&pcap, &[]);
    let got = by_protocol(&s);
    assert_eq!(got, expected, "rie-probe {s}\ntshark {expected:?}");
    // The traffic really was there: every kind of it.
    for proto in ["1", "6", "17", "58"] {
        assert!(
            expected.get(proto).is_some_and(|e| e.0 > 0),
            "no protocol {proto} in the capture: {expected:?}"
        );
    }
    // 5 echo requests and 5 replies, plus the port-unreachables the closed UDP port sent back
    // (rate-limited by the kernel, so their number varies).
    assert!(expected["1"].0 >= 10, "{expected:?}");
    // iperf3's 4 MiB of TCP payload (its control connection and headers come on top).
    assert!(expected["6"].1 >= 4 << 20, "{expected:?}");
}
