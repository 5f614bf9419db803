//! NetFlow helpers for the end-to-end tests: a pcap of mixed traffic, softflowd exporting it
//! (v5, v9, IPFIX), nfcapd + nfdump as the independent oracle, sending datagrams from a
//! chosen loopback address (127.0.0.0/8 is all local on Linux, so each address is one
//! "router"), an inventory naming those addresses as exporters, and NetFlow datagrams built
//! byte by byte for the cases no exporter produces on demand.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{eth, fixture, Capture, Guard};

/// Writes a pcap of mixed traffic (TCP exchanges on many ports, UDP, ICMP, IPv6 TCP/UDP)
/// spread over three minutes starting at 2026-09-21T12:26:40Z.
pub fn mixed_pcap(path: &Path) -> Capture {
    let mut cap = Capture::new(2048);
    let t0 = 1_790_000_000_000_000u64;
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
            cap.icmp_echo(t, [10, 1, 0, 5], [192, 0, 2, 1], 1, i);
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

/// Site prefixes of the site whose traffic [`talkers_pcap`] holds (S1 in [`inventory`]).
pub const TALKER_SITE_PREFIXES: [&str; 2] = ["10.1.0.0/16", "fd00:1::/48"];

/// Writes a pcap of one site's traffic (site prefixes [`TALKER_SITE_PREFIXES`]) with many
/// remote peers for top talkers, over two minutes from 2026-09-21T12:26:40Z: TCP exchanges
/// with 9 remote IPv4 hosts in 7 /24s (two /24s holding two hosts each), started from inside
/// and from outside, IPv6 UDP with hosts in two /48s, ICMP; plus traffic that has no remote
/// side: internal (both ends in the site) and transit (neither end). Volumes differ per peer
/// so that the talker order is fixed.
pub fn talkers_pcap(path: &Path) -> Capture {
    let mut cap = Capture::new(2048);
    let mut t = 1_790_000_000_000_000u64;
    let remotes: [[u8; 4]; 9] = [
        [192, 0, 2, 9],
        [192, 0, 2, 77],
        [198, 51, 100, 1],
        [198, 51, 100, 200],
        [203, 0, 113, 5],
        [8, 8, 8, 8],
        [8, 8, 4, 4],
        [93, 184, 216, 34],
        [10, 2, 0, 1],
    ];
    for (i, remote) in remotes.iter().enumerate() {
        let i16 = i as u16;
        let local = [10, 1, 0, 5 + (i % 3) as u8];
        // Even peers are reached from inside, odd ones call in.
        let (client, server) = if i % 2 == 0 {
            (local, *remote)
        } else {
            (*remote, local)
        };
        for round in 0..(2 + i) {
            for (k, payload) in [0usize, 0, 100 * (i + 1), 700 + 50 * i, 0]
                .into_iter()
                .enumerate()
            {
                let fwd = k % 2 == 0;
                let (src, dst, sp, dp) = if fwd {
                    (client, server, 41_000 + 16 * i16 + round as u16, 443)
                } else {
                    (server, client, 443, 41_000 + 16 * i16 + round as u16)
                };
                let mut f = Vec::new();
                eth()
                    .ipv4(src, dst, 64)
                    .tcp(sp, dp, 1, 1000)
                    .write(&mut f, &vec![1u8; payload])
                    .expect("frame");
                cap.frame(t, &f, Some((6, 40 + payload as u64)));
                t += 900_000;
            }
        }
        // ICMP echo to every peer reached from inside.
        if i % 2 == 0 {
            cap.icmp_echo(t, local, *remote, 7, i16);
        }
    }
    // IPv6: the site's fd00:1::5 with 2001:db8:1:2::1 and 2001:db8:1:9::1 (one /48) and
    // 2001:db8:2::7 (another), UDP both ways.
    let site6: [u8; 16] = [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
    let peers6: [[u8; 16]; 3] = [
        [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1],
        [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1],
        [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],
    ];
    for (i, peer) in peers6.iter().enumerate() {
        for (out, len) in [(true, 120 + 300 * i), (false, 900 - 200 * i)] {
            let (src, dst) = if out { (site6, *peer) } else { (*peer, site6) };
            let (sp, dp) = if out {
                (50_000 + i as u16, 443)
            } else {
                (443, 50_000 + i as u16)
            };
            let mut f = Vec::new();
            eth()
                .ipv6(src, dst, 64)
                .udp(sp, dp)
                .write(&mut f, &vec![3u8; len])
                .expect("frame");
            cap.frame(t, &f, Some((17, 48 + len as u64)));
            t += 400_000;
        }
    }
    // No remote side: internal (both ends in the site) and transit (neither).
    for (src, dst, len) in [
        ([10, 1, 0, 5], [10, 1, 3, 9], 1400usize),
        ([172, 16, 0, 1], [172, 16, 9, 9], 1300),
    ] {
        for _ in 0..3 {
            let mut f = Vec::new();
            eth()
                .ipv4(src, dst, 64)
                .udp(5353, 5353)
                .write(&mut f, &vec![4u8; len])
                .expect("frame");
            cap.frame(t, &f, Some((17, 28 + len as u64)));
            t += 300_000;
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
    let dir = nfcapd_files(datagrams);
    nfdump_summary(dir.path(), None)
}

/// Flows, packets and bytes of `nfdump -R DIR -I` (the files' statistics: no filter), or,
/// with a filter, of the summary line of `nfdump -R DIR -N FILTER` (`-I` ignores filters).
pub fn nfdump_summary(dir: &Path, filter: Option<&str>) -> (u64, u64, u64) {
    let mut cmd = Command::new("nfdump");
    cmd.arg("-R").arg(dir);
    match filter {
        None => cmd.arg("-I"),
        Some(f) => cmd.args(["-N", "-o", "fmt:%pkt", f]),
    };
    let out = cmd
        .output()
        .expect("nfdump is needed: apt-get install nfdump");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "nfdump {filter:?}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> u64 {
        text.lines()
            .flat_map(|l| l.split(','))
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in nfdump output:\n{text}"))
    };
    match filter {
        None => (field("Flows:"), field("Packets:"), field("Bytes:")),
        Some(_) => (
            field("Summary: total flows:"),
            field("total packets:"),
            field("total bytes:"),
        ),
    }
}

/// Bytes and packets per address block of nfdump's own aggregation:
/// `nfdump -R DIR -q -N -A KEY/BITS -o 'fmt:%sa %da %pkt %byt' FILTER` (`key` is one of
/// `srcip4`, `dstip4`, `srcip6`, `dstip6`), keyed by the block as `address/bits`.
pub fn nfdump_blocks(
    dir: &Path,
    key: &str,
    bits: u8,
    filter: &str,
) -> std::collections::BTreeMap<String, (u64, u64)> {
    let out = Command::new("nfdump")
        .arg("-R")
        .arg(dir)
        .args(["-q", "-N", "-A", &format!("{key}/{bits}")])
        .args(["-o", "fmt:%sa %da %pkt %byt", filter])
        .output()
        .expect("nfdump is needed: apt-get install nfdump");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "nfdump -A {key}/{bits} {filter}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut blocks = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != "No matching flows")
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 4, "unexpected nfdump line {line:?}");
        let addr = if key.starts_with("src") { f[0] } else { f[1] };
        let ip: IpAddr = addr
            .parse()
            .unwrap_or_else(|_| panic!("nfdump address {addr:?} in {line:?}"));
        let net = ipnet::IpNet::new(ip, bits).expect("bits").trunc();
        let e: &mut (u64, u64) = blocks.entry(net.to_string()).or_default();
        e.0 += f[3].parse::<u64>().expect("bytes");
        e.1 += f[2].parse::<u64>().expect("packets");
    }
    blocks
}

/// What nfdump says of the traffic of [`talkers_pcap`]'s site in the nfcapd files of `dir`
/// (site prefixes [`TALKER_SITE_PREFIXES`]): flows, packets and bytes per direction (outbound:
/// `src net` inside and `dst net` not; inbound the reverse; unknown the rest), and bytes and
/// packets per remote block (`-A dstip4/24` of outbound plus `-A srcip4/24` of inbound, /48
/// for IPv6): the collector's `by_direction` and top talkers must equal these.
pub fn nfdump_site_view(dir: &Path) -> (Directions, Blocks) {
    let inside = |side: &str| {
        let nets: Vec<String> = TALKER_SITE_PREFIXES
            .iter()
            .map(|p| format!("{side} net {p}"))
            .collect();
        format!("({})", nets.join(" or "))
    };
    let (inside_src, inside_dst) = (inside("src"), inside("dst"));
    let outbound = format!("{inside_src} and not {inside_dst}");
    let inbound = format!("{inside_dst} and not {inside_src}");
    let all = nfdump_summary(dir, None);
    let o = nfdump_summary(dir, Some(&outbound));
    let i = nfdump_summary(dir, Some(&inbound));
    let u = (all.0 - o.0 - i.0, all.1 - o.1 - i.1, all.2 - o.2 - i.2);
    let mut dirs = Directions::new();
    for (k, v) in [("outbound", o), ("inbound", i), ("unknown", u)] {
        if v.0 > 0 {
            dirs.insert(k.to_string(), v);
        }
    }
    let mut blocks = Blocks::new();
    for (key, bits, filter) in [
        ("dstip4", 24, format!("ipv4 and {outbound}")),
        ("srcip4", 24, format!("ipv4 and {inbound}")),
        ("dstip6", 48, format!("ipv6 and {outbound}")),
        ("srcip6", 48, format!("ipv6 and {inbound}")),
    ] {
        for (net, (b, p)) in nfdump_blocks(dir, key, bits, &filter) {
            let e = blocks.entry(net).or_default();
            e.0 += b;
            e.1 += p;
        }
    }
    (dirs, blocks)
}

/// Flows, packets and bytes per direction (`inbound`, `outbound`, `unknown`).
pub type Directions = std::collections::BTreeMap<String, (u64, u64, u64)>;
/// Bytes and packets per address block (`192.0.2.0/24`).
pub type Blocks = std::collections::BTreeMap<String, (u64, u64)>;

/// `by_direction` of the site's `/api/v1/flows/totals` over all time.
pub fn api_directions(c: &crate::Collector, site: &str) -> Directions {
    let t = c.get(&format!(
        "/api/v1/flows/totals?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&site={site}"
    ));
    t["by_direction"]
        .as_object()
        .expect("by_direction in the totals")
        .iter()
        .map(|(k, v)| {
            let n = |f: &str| v[f].as_u64().unwrap_or(0);
            (k.clone(), (n("flows"), n("packets"), n("bytes")))
        })
        .collect()
}

/// The site's `/api/v1/sites/{id}/top_talkers` over all time (up to 100).
pub fn api_talkers(c: &crate::Collector, site: &str) -> Blocks {
    let v = c.get(&format!(
        "/api/v1/sites/{site}/top_talkers?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&limit=100"
    ));
    let n = |t: &serde_json::Value, f: &str| t[f].as_u64().expect("counter");
    v.as_array()
        .expect("a list of talkers")
        .iter()
        .map(|t| {
            (
                t["prefix"].as_str().expect("prefix").to_string(),
                (n(t, "bytes"), n(t, "packets")),
            )
        })
        .collect()
}

/// Runs nfcapd on a free port, sends it `datagrams` and stops it: the directory holds the
/// files nfdump reads (`-R`).
pub fn nfcapd_files(datagrams: &[Vec<u8>]) -> tempfile::TempDir {
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
    dir
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

/// Like [`inventory`], with S3 exporting from 127.0.0.5, and S1, S2 and S3 given the
/// `site_prefixes` of [`talkers_pcap`]'s site ([`TALKER_SITE_PREFIXES`]).
pub fn inventory_with_prefixes(dir: &Path) -> PathBuf {
    let inv = dir.join("inventory-netflow-prefixes");
    std::fs::create_dir_all(&inv).expect("mkdir");
    let prefixes = TALKER_SITE_PREFIXES.join(";");
    let sites = std::fs::read_to_string(fixture("inventory/sites.csv")).expect("sites");
    let sites = sites
        .replace("netflow_exporters\n", "netflow_exporters,site_prefixes\n")
        .replace(",10.0.1.1\n", &format!(",127.0.0.2,{prefixes}\n"))
        .replace(",10.0.2.1\n", &format!(",127.0.0.3,{prefixes}\n"))
        .replace(",10.0.3.1;10.0.3.2\n", &format!(",127.0.0.5,{prefixes}\n"));
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

/// (flows, packets, bytes) of a totals answer.
pub fn triple(v: &serde_json::Value) -> (u64, u64, u64) {
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
    (n("flows"), n("packets"), n("bytes"))
}

/// Waits (10 s at most) until `site`'s totals on `c` are `want`.
pub fn wait_site(c: &crate::Collector, site: &str, want: (u64, u64, u64)) {
    c.wait_until(
        &format!("{site} totals {want:?}"),
        std::time::Duration::from_secs(10),
        |c| triple(&c.totals(Some(site))) == want,
    );
}
