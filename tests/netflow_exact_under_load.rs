//! NetFlow totals are exact, and loss at the socket is told apart: a known stream of v9
//! datagrams (a template of the usual field lengths, so the decoder's fast path decodes it)
//! from one declared router must be stored to the record, packet and byte, with the
//! kernel-drop metric at 0; then, with a receive buffer of a few datagrams and the collector
//! stopped (SIGSTOP) while a burst arrives, the kernel drops most of the burst, and
//! `rie_collector_netflow_kernel_drops_total` must equal the drop count `/proc/net/udp`
//! shows for the socket, with sent = stored + dropped exactly.

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use rie_e2e::netflow::{inventory, template, triple, v9, wait_site};
use rie_e2e::Collector;

const S1: [u8; 4] = [127, 0, 0, 2];
const T: u32 = 1_790_000_000;
const RECORDS: u32 = 30;

/// src, dst (IPv4), src/dst port, protocol (1 byte), bytes, packets, first, last: the
/// lengths routers use, which the fast path compiles.
fn template_300() -> Vec<u8> {
    template(
        0,
        300,
        &[
            (8, 4),
            (12, 4),
            (7, 2),
            (11, 2),
            (4, 1),
            (1, 4),
            (2, 4),
            (22, 4),
            (21, 4),
        ],
    )
}

/// Datagram `i` of the stream: 30 records of template 300; record r carries 100 + (i + r)
/// % 1000 bytes and 1 + r % 5 packets. Returns it with its (records, packets, bytes).
fn datagram(i: u32) -> (Vec<u8>, (u64, u64, u64)) {
    let mut body = Vec::new();
    let (mut packets, mut bytes) = (0u64, 0u64);
    for r in 0..RECORDS {
        let b = 100 + (i + r) % 1000;
        let p = 1 + r % 5;
        body.extend_from_slice(&[10, 0, 1, 5]); // src
        body.extend_from_slice(&[192, 0, 2, (r % 200) as u8]); // dst
        body.extend_from_slice(&(40_000 + r as u16).to_be_bytes()); // src port
        body.extend_from_slice(&443u16.to_be_bytes()); // dst port
        body.push(6); // TCP
        body.extend_from_slice(&b.to_be_bytes()); // IN_BYTES
        body.extend_from_slice(&p.to_be_bytes()); // IN_PKTS
        body.extend_from_slice(&50_000u32.to_be_bytes()); // FIRST_SWITCHED
        body.extend_from_slice(&50_000u32.to_be_bytes()); // LAST_SWITCHED
        packets += u64::from(p);
        bytes += u64::from(b);
    }
    let mut set = Vec::new();
    set.extend_from_slice(&300u16.to_be_bytes()); // flowset id = template id
    set.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes()); // length
    set.extend_from_slice(&body);
    (
        v9(0, T, 60_000, &[set]),
        (u64::from(RECORDS), packets, bytes),
    )
}

/// The kernel's drop count of the UDP socket bound to `addr` (`/proc/net/udp`, last column).
fn proc_drops(addr: SocketAddr) -> u64 {
    let port = format!(":{:04X}", addr.port());
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    table
        .lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[1].ends_with(&port)
                .then(|| f[f.len() - 1].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no socket on {addr} in /proc/net/udp"))
}

fn sender(to: SocketAddr) -> UdpSocket {
    let tx = UdpSocket::bind((std::net::IpAddr::from(S1), 0)).unwrap();
    tx.connect(to).unwrap();
    tx
}

#[test]
fn a_known_stream_is_stored_exactly_with_no_kernel_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start_netflow(&inventory(tmp.path()));
    let to = c.netflow_addr.unwrap();
    let tx = sender(to);
    tx.send(&v9(0, T, 60_000, &[template_300()])).unwrap();
    let mut want = (0, 0, 0);
    for i in 0..3_000u32 {
        let (d, (r, p, b)) = datagram(i);
        tx.send(&d).unwrap();
        want = (want.0 + r, want.1 + p, want.2 + b);
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(want.0, 90_000);
    wait_site(&c, "S1", want);
    assert_eq!(triple(&c.totals(None)), want);
    assert_eq!(
        c.metric("rie_collector_netflow_records_total{version=\"9\"}"),
        90_000.0
    );
    assert_eq!(c.metric("rie_collector_netflow_kernel_drops_total"), 0.0);
    assert_eq!(proc_drops(to), 0);
}

#[test]
fn kernel_drops_are_read_from_the_socket_and_sent_equals_stored_plus_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    // The smallest buffer the kernel grants (it rounds a request up to ~4.6 KB, doubled):
    // a handful of 1.2-KB datagrams.
    let c = Collector::start_netflow_with_config(
        &inventory(tmp.path()),
        "[netflow]\nreceive_buffer_bytes = 4096\n",
    );
    let to = c.netflow_addr.unwrap();
    let tx = sender(to);
    tx.send(&v9(0, T, 60_000, &[template_300()])).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(proc_drops(to), 0);
    // The collector stopped: the burst piles up in the socket buffer, and the kernel drops
    // what does not fit.
    c.signal("STOP");
    let burst = 500u32;
    let mut sent = (0, 0, 0);
    let mut sums = Vec::new();
    for i in 0..burst {
        let (d, s) = datagram(i);
        tx.send(&d).unwrap();
        sent = (sent.0 + s.0, sent.1 + s.1, sent.2 + s.2);
        sums.push(s);
    }
    let dropped = proc_drops(to);
    assert!(
        dropped > 400 && dropped < u64::from(burst),
        "{dropped} of {burst} dropped"
    );
    c.signal("CONT");
    // One more datagram after the collector is back: it carries the socket's drop count
    // (SO_RXQ_OVFL) to the collector.
    std::thread::sleep(Duration::from_millis(300));
    let (d, last) = datagram(burst);
    tx.send(&d).unwrap();
    sent = (sent.0 + last.0, sent.1 + last.1, sent.2 + last.2);
    c.wait_until("the kernel drops counted", Duration::from_secs(10), |c| {
        c.metric("rie_collector_netflow_kernel_drops_total") as u64 == dropped
    });
    assert_eq!(proc_drops(to), dropped, "no more drops after the burst");
    // What was received is stored exactly: the first datagrams of the burst (the kernel
    // keeps what fits and drops the rest) and the last one.
    let kept = u64::from(burst) - dropped;
    let mut want = (0, 0, 0);
    for s in sums.iter().take(kept as usize).chain([&last]) {
        want = (want.0 + s.0, want.1 + s.1, want.2 + s.2);
    }
    wait_site(&c, "S1", want);
    assert_eq!(
        want.0 + dropped * u64::from(RECORDS),
        sent.0,
        "sent = stored + dropped, to the record"
    );
    assert_eq!(
        c.metric("rie_collector_netflow_datagrams_total{version=\"9\"}") as u64,
        // The template datagram, the kept part of the burst, the last one.
        1 + kept + 1
    );
}
