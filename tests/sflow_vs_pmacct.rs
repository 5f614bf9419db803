//! sFlow against independent tools. Real traffic between two network namespaces (ping over
//! IPv4 and IPv6, HTTP with Python's server and curl, UDP datagrams) is captured by tcpdump;
//! pmacct's `pmacctd` reads the capture and exports it as sFlow v5 with its `sfprobe` plugin,
//! at sampling 1 (agent 10.0.1.1, site S1) and 1-in-10 (agent 10.0.2.1, site S2). The very
//! datagrams go to the collector's sFlow input and to two oracles: `sfacctd` (pmacct) and
//! `sfcapd` + `nfdump` (Debian `nfdump-sflow`), and the rate-1 export also to the probe of S3
//! (its `[sflow]` relay). Totals must be equal where the oracles agree,
//! and each difference (docs/sflow.md) is asserted here:
//! - bytes: both oracles count the sample's `frame_length`, the Ethernet frame with its 4 FCS
//!   bytes (pmacctd adds them and declares them stripped); the collector counts the IP length
//!   (the unit of NetFlow octets and of the probe): ours = theirs − 18 × packets, exactly (14
//!   bytes of Ethernet header, 4 of FCS; the capture has no VLAN tags);
//! - sampling 10: `sfcapd` scales every sample by the announced rate, as the collector does;
//!   `sfacctd` does not scale by default (its totals are the samples themselves), and with
//!   `sfacctd_renormalize: true` scales each sample by its sample pool's delta since the
//!   previous sample (the first by the rate), whose sum is `last pool − first pool + rate`.
//!
//! Needs root, iproute2, tcpdump, pmacct, nfdump, nfdump-sflow, iputils-ping, curl, python3.

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rie_e2e::{Collector, Guard, NetnsPair, Probe};
use serde_json::Value;

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

/// Captures real traffic between two namespaces into `pcap`; returns its packet count.
fn record(pcap: &Path) -> usize {
    let net = NetnsPair::new("sflow");
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("page.html"), "x".repeat(20_000)).unwrap();
    let _server = net.http_server(www.path());
    let tcpdump = net.tcpdump(pcap);
    let start = Instant::now();
    while !NetnsPair::exec(&net.a, "curl")
        .args(["-sf", "-o", "/dev/null", "http://10.99.0.2:8080/page.html"])
        .status()
        .unwrap()
        .success()
    {
        assert!(start.elapsed() < Duration::from_secs(10), "no HTTP server");
        std::thread::sleep(Duration::from_millis(100));
    }
    run_in(&net.a, "ping", &["-c", "150", "-i", "0.01", "10.99.0.2"]);
    run_in(&net.a, "ping", &["-6", "-c", "60", "-i", "0.01", "fd99::2"]);
    for _ in 0..5 {
        run_in(
            &net.a,
            "curl",
            &["-sf", "-o", "/dev/null", "http://10.99.0.2:8080/page.html"],
        );
    }
    let udp = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(120):
    s.sendto(bytes(100 + i * 7), ("10.99.0.2", 9999))
"#;
    run_in(&net.a, "python3", &["-c", udp]);
    std::thread::sleep(Duration::from_millis(300));
    NetnsPair::stop_tcpdump(tcpdump);
    let out = Command::new("tcpdump")
        .args(["-r"])
        .arg(pcap)
        .args(["-n", "-q"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// pmacctd reading `pcap` with the sfprobe plugin (agent `agent`, 1-in-`rate`): the sFlow
/// datagrams it sent, in order. pmacctd exits by itself once the file is read (it sleeps 2 s
/// first), without sending its last, partly filled datagram.
fn pmacctd(pcap: &Path, agent: &str, rate: u32) -> Vec<Vec<u8>> {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let port = rx.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("pmacctd.conf");
    std::fs::write(
        &conf,
        format!(
            "daemonize: false\npcap_savefile: {}\nplugins: sfprobe[s]\n\
             sfprobe_receiver[s]: 127.0.0.1:{port}\nsfprobe_agentip[s]: {agent}\n\
             sampling_rate[s]: {rate}\n",
            pcap.display()
        ),
    )
    .unwrap();
    let mut child = Guard(
        Command::new("pmacctd")
            .arg("-f")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pmacctd is needed: apt-get install pmacct"),
    );
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_from(&mut buf) {
            Ok((n, _)) => out.push(buf[..n].to_vec()),
            Err(_) => {
                if child.0.try_wait().unwrap().is_some() {
                    break;
                }
            }
        }
        assert!(Instant::now() < end, "pmacctd did not finish in 60 s");
    }
    assert!(!out.is_empty(), "pmacctd exported nothing");
    out
}

fn send(to: SocketAddr, datagrams: &[Vec<u8>]) {
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, d) in datagrams.iter().enumerate() {
        tx.send_to(d, to).unwrap();
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `port` (UDP, loopback) is bound by someone.
fn wait_bound(port: u16) {
    let end = Instant::now() + Duration::from_secs(10);
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < end, "nothing listens on UDP {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGINT/SIGTERM then wait, by process id.
fn stop(mut g: Guard, signal: &str) {
    let st = Command::new("kill")
        .args([&format!("-{signal}"), &g.0.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let _ = g.0.wait();
}

/// sfacctd's print plugin, aggregated by protocol: {protocol name: (packets, bytes)}.
fn sfacctd(datagrams: &[Vec<u8>], renormalize: bool) -> Vec<(String, u64, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let csv = dir.path().join("out.csv");
    let conf = dir.path().join("sfacctd.conf");
    std::fs::write(
        &conf,
        format!(
            "daemonize: false\nsfacctd_ip: 127.0.0.1\nsfacctd_port: {port}\n\
             sfacctd_renormalize: {renormalize}\nplugins: print[p]\nprint_output[p]: csv\n\
             print_output_file[p]: {}\nprint_refresh_time[p]: 3600\naggregate[p]: proto\n",
            csv.display()
        ),
    )
    .unwrap();
    let child = Guard(
        Command::new("sfacctd")
            .arg("-f")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sfacctd is needed: apt-get install pmacct"),
    );
    wait_bound(port);
    send(SocketAddr::from(([127, 0, 0, 1], port)), datagrams);
    // What is still in its socket buffer at the signal is lost: let it read everything (the
    // datagrams fit in the default buffer; 2 s covers a loaded machine).
    std::thread::sleep(Duration::from_secs(2));
    // SIGINT: the print plugin writes its cache out, then exits.
    stop(child, "INT");
    let text = std::fs::read_to_string(&csv).expect("sfacctd wrote no CSV");
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        out.push((
            f[0].to_string(),
            f[1].trim().parse().unwrap(),
            f[2].trim().parse().unwrap(),
        ));
    }
    out
}

/// sfcapd then `nfdump -I`: (flows, packets, bytes).
fn sfcapd(datagrams: &[Vec<u8>]) -> (u64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let child = Guard(
        Command::new("sfcapd")
            .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-w"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sfcapd is needed: apt-get install nfdump-sflow"),
    );
    wait_bound(port);
    send(SocketAddr::from(([127, 0, 0, 1], port)), datagrams);
    // What is still in its socket buffer at the signal is lost: let it read everything (the
    // datagrams fit in the default buffer; 2 s covers a loaded machine).
    std::thread::sleep(Duration::from_secs(2));
    stop(child, "TERM");
    let out = Command::new("nfdump")
        .arg("-R")
        .arg(dir.path())
        .arg("-I")
        .output()
        .expect("nfdump is needed: apt-get install nfdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in nfdump -I: {text}"))
            .trim()
            .parse()
            .unwrap()
    };
    (field("Flows"), field("Packets"), field("Bytes"))
}

/// Sample pools of the first and last flow sample (formats 1) of pmacctd's export, read from
/// the bytes (IPv4 agent: the header is 28 bytes; a flow sample's pool is its 4th word).
fn first_and_last_pool(datagrams: &[Vec<u8>]) -> (u64, u64) {
    let word = |d: &[u8], at: usize| u32::from_be_bytes(d[at..at + 4].try_into().unwrap());
    let mut pools = Vec::new();
    for d in datagrams {
        assert_eq!(word(d, 4), 1, "pmacctd sends an IPv4 agent address");
        let mut at = 28;
        while at + 8 <= d.len() {
            let (format, len) = (word(d, at), word(d, at + 4) as usize);
            if format == 1 {
                pools.push(u64::from(word(d, at + 8 + 12)));
            }
            at += 8 + len;
        }
    }
    (pools[0], *pools.last().unwrap())
}

/// Bytes per frame that the oracles count and the collector does not: the Ethernet header (14)
/// and the FCS (4) of an untagged frame.
const L2_BYTES: u64 = 18;

fn triple(v: &Value) -> (u64, u64, u64) {
    (
        v["flows"].as_u64().unwrap(),
        v["packets"].as_u64().unwrap(),
        v["bytes"].as_u64().unwrap(),
    )
}

#[test]
fn collector_totals_equal_sfcapd_and_sfacctd_at_sampling_1_and_10() {
    for (tool, pkg) in [
        ("tcpdump", "tcpdump"),
        ("pmacctd", "pmacct"),
        ("sfacctd", "pmacct"),
        ("sfcapd", "nfdump-sflow"),
        ("nfdump", "nfdump"),
        ("ping", "iputils-ping"),
        ("curl", "curl"),
        ("python3", "python3"),
    ] {
        need(tool, pkg);
    }
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("veth.pcap");
    let captured = record(&pcap);
    assert!(captured > 500, "only {captured} packets captured");

    let port = free_udp_port();
    let c = Collector::start_with_config(&format!(
        "[sflow]\nlisten = \"127.0.0.1:{port}\"\nflush_interval = \"200ms\"\n"
    ));
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    // The rate-1 export and the totals it gave, for the probe's relay below.
    let mut relayed = None;

    for (rate, agent, site) in [(1u64, "10.0.1.1", "S1"), (10, "10.0.2.1", "S2")] {
        let datagrams = pmacctd(&pcap, agent, rate as u32);
        let (nf_flows, nf_packets, nf_bytes) = sfcapd(&datagrams);
        let plain = sfacctd(&datagrams, false);
        let renorm = sfacctd(&datagrams, true);
        let sum = |rows: &[(String, u64, u64)]| {
            rows.iter().fold((0, 0), |a, (_, p, b)| (a.0 + p, a.1 + b))
        };
        let (plain_packets, plain_bytes) = sum(&plain);
        let (renorm_packets, _) = sum(&renorm);
        eprintln!(
            "rate {rate}: {} datagrams; sfcapd {nf_flows} flows {nf_packets} packets {nf_bytes} bytes; \
             sfacctd {plain:?}; renormalized {renorm:?}",
            datagrams.len()
        );
        // One flow per sample for nfdump; sfacctd without renormalisation counts the samples.
        assert_eq!(plain_packets, nf_flows, "rate {rate}");
        // sfcapd scales by the announced rate; plain sfacctd does not.
        assert_eq!(
            (nf_packets, nf_bytes),
            (plain_packets * rate, plain_bytes * rate),
            "rate {rate}"
        );
        // Renormalised sfacctd weights each sample by its pool delta (the first by the rate).
        let (first, last) = first_and_last_pool(&datagrams);
        assert_eq!(renorm_packets, last - first + rate, "rate {rate}");
        if rate == 1 {
            // At 1-in-1 every pool delta is 1: the three agree.
            assert_eq!(renorm, plain);
            // At 1-in-1 the pool counts the packets: the export is the capture's first
            // packets, none missing in between...
            assert_eq!((first, last), (1, nf_packets));
            // ... and pmacctd exits without its last, partly filled datagram: the last few
            // packets of the capture (less than a datagram's worth) are never exported.
            let unsent = captured as u64 - nf_packets;
            let most = datagrams
                .iter()
                .map(|d| u32::from_be_bytes(d[24..28].try_into().unwrap()))
                .max()
                .unwrap();
            eprintln!("{unsent} packets not exported; at most {most} samples per datagram");
            assert!(
                unsent < 2 * u64::from(most),
                "{unsent} packets not exported"
            );
        }

        send(to, &datagrams);
        // Ours: the oracles' packets and flows; IP bytes, without the frames' Ethernet bytes.
        let want = (nf_flows, nf_packets, nf_bytes - L2_BYTES * nf_packets);
        let end = Instant::now() + Duration::from_secs(10);
        while triple(&c.totals(Some(site))) != want && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            triple(&c.totals(Some(site))),
            want,
            "rate {rate}: {}",
            c.totals(Some(site))
        );
        // Per protocol, against sfacctd's rows (scaled by the rate).
        let t = c.totals(Some(site));
        for (name, packets, bytes) in &plain {
            let number = match name.as_str() {
                "icmp" => "1",
                "tcp" => "6",
                "udp" => "17",
                "ipv6-icmp" => "58",
                other => panic!("unexpected protocol {other} in sfacctd's output"),
            };
            let ours = triple(&t["by_protocol"][number]);
            assert_eq!(
                (ours.1, ours.2),
                (packets * rate, (bytes - L2_BYTES * packets) * rate),
                "rate {rate} protocol {name}: {t}"
            );
        }
        assert_eq!(t["by_protocol"].as_object().unwrap().len(), plain.len());
        if rate == 1 {
            relayed = Some((datagrams, want));
        }
    }
    // The probe of S3 relays the same export (sent to its [sflow] port): same totals, through
    // its batches.
    let (datagrams, want) = relayed.unwrap();
    let mut p = Probe::prepare(&c, "S3", "1s", None);
    let probe_port = free_udp_port();
    let mut text = std::fs::read_to_string(&p.config).unwrap();
    text.push_str(&format!(
        "\n[sflow]\nenabled = true\nlisten = \"127.0.0.1:{probe_port}\"\n"
    ));
    std::fs::write(&p.config, text).unwrap();
    p.spawn();
    wait_bound(probe_port);
    send(SocketAddr::from(([127, 0, 0, 1], probe_port)), &datagrams);
    c.wait_until(
        &format!("S3 relayed totals = {want:?}"),
        Duration::from_secs(15),
        |c| triple(&c.totals(Some("S3"))) == want,
    );
    assert_eq!(c.metric("rie_collector_sflow_non_ip_samples_total"), 0.0);
    for reason in ["sample_overrun", "record_overrun", "truncated"] {
        assert_eq!(
            c.metric(&format!(
                "rie_collector_sflow_decode_errors_total{{reason=\"{reason}\",site=\"unknown\"}}"
            )),
            0.0
        );
    }
}
