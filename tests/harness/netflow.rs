//! NetFlow helpers for the end-to-end tests: a pcap of mixed traffic, softflowd exporting it
//! (v5, v9, IPFIX), nfcapd + nfdump as the independent oracle, sending datagrams from a
//! chosen loopback address (127.0.0.0/8 is all local on Linux, so each address is one
//! "router"), an inventory naming those addresses as exporters, and NetFlow datagrams built
//! byte by byte for the cases no exporter produces on demand.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;

use crate::{fixture, Capture, Guard};

/// Writes a pcap of mixed traffic (TCP exchanges on many ports, UDP, ICMP, IPv6 TCP/UDP)
/// spread over three minutes starting at 2026-09-21T12:26:40Z.
pub fn mixed_pcap(path: &Path) -> Capture {
    let mut cap = Capture::new(2048);
    let t0 = 1_790_000_000_000_000u64;
    let eth = || PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut t = t0;
    for i in 0..60u16 {
        // A short TCP exchange, both directions, on port 8000+i.
        for (k, payload) in [0usize, 0, 200, 1200, 0].into_iter().enumerate() {
            let fwd = k % 2 == 0;
            let (src, dst, sp, dp) = if fwd {
                ([10, 1, 0, 5], [192, 0, 2, 9], 40_000 + i, 8000 + i)
            } else {
                ([192, 0, 2, 9], [10, 1, 0, 5], 8000 + i, 40_000 + i)
            };
            let mut f = Vec::new();
            eth()
                .ipv4(src, dst, 64)
                .tcp(sp, dp, 1, 1000)
                .write(&mut f, &vec![1u8; payload])
                .expect("frame");
            cap.frame(t, &f, Some((6, 40 + payload as u64)));
            t += 1_500_000; // spread over three minutes
        }
        // A UDP query and answer.
        for (q, len) in [(true, 40usize), (false, 300)] {
            let (src, dst, sp, dp) = if q {
                ([10, 1, 0, 5], [10, 3, 0, 53], 5000 + i, 53)
            } else {
                ([10, 3, 0, 53], [10, 1, 0, 5], 53, 5000 + i)
            };
            let mut f = Vec::new();
            eth()
                .ipv4(src, dst, 64)
                .udp(sp, dp)
                .write(&mut f, &vec![2u8; len])
                .expect("frame");
            cap.frame(t, &f, Some((17, 28 + len as u64)));
            t += 100_000;
        }
        if i % 6 == 0 {
            // ICMP echo request.
            let mut f = Vec::new();
            eth()
                .ipv4([10, 1, 0, 5], [192, 0, 2, 1], 64)
                .icmpv4_echo_request(1, i)
                .write(&mut f, &[0u8; 56])
                .expect("frame");
            cap.frame(t, &f, Some((1, 84)));
            // IPv6 UDP.
            let mut f = Vec::new();
            eth()
                .ipv6([0xfd; 16], [0xfe; 16], 64)
                .udp(6000 + i, 443)
                .write(&mut f, &[3u8; 500])
                .expect("frame");
            cap.frame(t, &f, Some((17, 40 + 8 + 500)));
        }
    }
    std::fs::write(path, &cap.bytes).expect("write pcap");
    cap
}

/// Runs softflowd on `pcap`, exporting `version` ("5", "9", "10") to a local socket, and
/// returns the datagrams it sent, in order.
pub fn softflowd(pcap: &Path, version: &str, sampling: Option<u32>) -> Vec<Vec<u8>> {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    rx.set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    let port = rx.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tmp");
    let mut cmd = Command::new("softflowd");
    // -c none: no control socket (it can hang on it); -a: flow times from the pcap.
    cmd.args(["-r"])
        .arg(pcap)
        .args(["-n", &format!("127.0.0.1:{port}"), "-v", version])
        .args(["-c", "none", "-a", "-d", "-p"])
        .arg(dir.path().join("pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(s) = sampling {
        cmd.args(["-s", &s.to_string()]);
    }
    let mut child = Guard(
        cmd.spawn()
            .expect("softflowd is needed: apt-get install softflowd"),
    );
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match rx.recv_from(&mut buf) {
            Ok((n, _)) => out.push(buf[..n].to_vec()),
            Err(_) => {
                if child.0.try_wait().expect("wait").is_some() {
                    break;
                }
            }
        }
        assert!(Instant::now() < end, "softflowd did not finish in 30 s");
    }
    assert!(!out.is_empty(), "softflowd exported nothing");
    out
}

/// Flows, packets and bytes that nfcapd/nfdump count in `datagrams`.
pub fn nfdump_totals(datagrams: &[Vec<u8>]) -> (u64, u64, u64) {
    let dir = tempfile::tempdir().expect("tmp");
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let nfcapd = Command::new("nfcapd")
        .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-w"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nfcapd is needed: apt-get install nfdump");
    let nfcapd = Guard(nfcapd);
    // nfcapd binds after a moment; until then the kernel refuses datagrams (ICMP
    // unreachable), which a connected socket reports: probe until it accepts.
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    tx.connect(("127.0.0.1", port)).expect("connect");
    std::thread::sleep(Duration::from_millis(500));
    send_paced(&tx, datagrams);
    std::thread::sleep(Duration::from_millis(300));
    let st = Command::new("kill")
        .args(["-TERM", &nfcapd.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let mut nfcapd = nfcapd;
    let _ = nfcapd.0.wait();
    let out = Command::new("nfdump")
        .arg("-R")
        .arg(dir.path())
        .arg("-I")
        .output()
        .expect("nfdump is needed: apt-get install nfdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in nfdump -I output:\n{text}"))
    };
    (field("Flows:"), field("Packets:"), field("Bytes:"))
}

fn send_paced(tx: &UdpSocket, datagrams: &[Vec<u8>]) {
    for (i, d) in datagrams.iter().enumerate() {
        tx.send(d).expect("send");
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Sends `datagrams` to `to` from source address `from` (one "router").
pub fn send_from(from: [u8; 4], to: SocketAddr, datagrams: &[Vec<u8>]) {
    let tx = UdpSocket::bind((IpAddr::from(from), 0)).expect("bind loopback source");
    tx.connect(to).expect("connect");
    send_paced(&tx, datagrams);
}

/// Copies the fixture inventory into `dir`, with site S1 exporting from 127.0.0.2 and S2
/// from 127.0.0.3 (127.0.0.4 and others belong to no site).
pub fn inventory(dir: &Path) -> PathBuf {
    let inv = dir.join("inventory-netflow");
    std::fs::create_dir_all(&inv).expect("mkdir");
    let sites = std::fs::read_to_string(fixture("inventory/sites.csv")).expect("sites");
    let sites = sites
        .replace(",10.0.1.1\n", ",127.0.0.2\n")
        .replace(",10.0.2.1\n", ",127.0.0.3\n");
    std::fs::write(inv.join("sites.csv"), sites).expect("write");
    std::fs::copy(fixture("inventory/links.csv"), inv.join("links.csv")).expect("copy");
    inv
}

// ---- datagrams built byte by byte ----

fn be16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_be_bytes());
}
fn be32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_be_bytes());
}

/// NetFlow v9 export packet: header (version, count, sys_up_time, unix_secs, sequence,
/// source id) then the flowsets.
pub fn v9(source_id: u32, unix_secs: u32, uptime: u32, flowsets: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    be16(&mut v, 9);
    be16(&mut v, flowsets.len() as u16);
    be32(&mut v, uptime);
    be32(&mut v, unix_secs);
    be32(&mut v, 1);
    be32(&mut v, source_id);
    for fs in flowsets {
        v.extend_from_slice(fs);
    }
    v
}

/// Template flowset (set id 0 for v9): one template `id` of (type, length) fields.
pub fn template(set_id: u16, id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
    let mut v = Vec::new();
    be16(&mut v, set_id);
    be16(&mut v, (8 + 4 * fields.len()) as u16);
    be16(&mut v, id);
    be16(&mut v, fields.len() as u16);
    for &(t, l) in fields {
        be16(&mut v, t);
        be16(&mut v, l);
    }
    v
}

/// Data flowset for template `id`, each value 4 bytes big-endian.
pub fn data(id: u16, recs: &[Vec<u32>]) -> Vec<u8> {
    let mut body = Vec::new();
    for r in recs {
        for &x in r {
            be32(&mut body, x);
        }
    }
    let mut v = Vec::new();
    be16(&mut v, id);
    be16(&mut v, (4 + body.len()) as u16);
    v.extend_from_slice(&body);
    v
}

/// v9 template 256: IN_BYTES, IN_PKTS, PROTOCOL, FIRST_SWITCHED, LAST_SWITCHED (4 bytes each).
pub fn v9_template_256() -> Vec<u8> {
    template(0, 256, &[(1, 4), (2, 4), (4, 4), (22, 4), (21, 4)])
}

/// A record of template 256: `bytes`, `packets`, UDP, started and ended at uptime 50 s.
pub fn v9_record(bytes: u32, packets: u32) -> Vec<u32> {
    vec![bytes, packets, 17, 50_000, 50_000]
}
