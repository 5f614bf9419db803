//! NetFlow v9 template handling and bad input, against a real collector over UDP, with
//! datagrams built byte by byte (tests/harness/netflow.rs) so that each case is exactly the
//! one named: two routers reusing a template id with different layouts, data before its
//! template, a collector restart between template and data, and garbage of every kind sent
//! while a good exporter's data must still arrive exactly.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rie_e2e::netflow::{
    data, inventory, send_from, template, triple, v9, v9_record, v9_template_256, wait_site,
};
use rie_e2e::Collector;

const S1: [u8; 4] = [127, 0, 0, 2];
const S2: [u8; 4] = [127, 0, 0, 3];
const STRANGER: [u8; 4] = [127, 0, 0, 4];
const T: u32 = 1_790_000_000;

#[test]
fn two_routers_reusing_a_template_id_do_not_mix() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start_netflow(&inventory(tmp.path()));
    let to = c.netflow_addr.unwrap();
    // Same template id 256, same source id 0; S2's layout has packets before bytes.
    let a = v9_template_256();
    let b = template(0, 256, &[(2, 4), (1, 4), (4, 4), (22, 4), (21, 4)]);
    send_from(
        S1,
        to,
        &[v9(0, T, 60_000, &[a, data(256, &[v9_record(1000, 10)])])],
    );
    send_from(
        S2,
        to,
        &[v9(
            0,
            T,
            60_000,
            &[b, data(256, &[vec![3, 300, 17, 50_000, 50_000]])],
        )],
    );
    // Data alone afterwards, interleaved: each router's own template applies.
    for _ in 0..3 {
        send_from(
            S1,
            to,
            &[v9(0, T, 60_000, &[data(256, &[v9_record(1000, 10)])])],
        );
        send_from(
            S2,
            to,
            &[v9(
                0,
                T,
                60_000,
                &[data(256, &[vec![3, 300, 17, 50_000, 50_000]])],
            )],
        );
    }
    wait_site(&c, "S1", (4, 40, 4000));
    wait_site(&c, "S2", (4, 12, 1200));
}

#[test]
fn data_before_its_template_is_held_then_counted_once() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start_netflow(&inventory(tmp.path()));
    let to = c.netflow_addr.unwrap();
    let early: Vec<Vec<u8>> = (0..3)
        .map(|i| v9(0, T, 60_000, &[data(256, &[v9_record(100 + i, 1)])]))
        .collect();
    send_from(S1, to, &early);
    c.wait_until("3 flowsets held", Duration::from_secs(10), |c| {
        c.metric("rie_collector_netflow_pending_flowsets") == 3.0
    });
    assert_eq!(triple(&c.totals(Some("S1"))), (0, 0, 0));
    // The template comes alone: the held records are replayed, once.
    send_from(S1, to, &[v9(0, T, 60_000, &[v9_template_256()])]);
    wait_site(&c, "S1", (3, 3, 303));
    c.wait_until("nothing held", Duration::from_secs(10), |c| {
        c.metric("rie_collector_netflow_pending_flowsets") == 0.0
    });
    // More data later is not confused with the replayed ones.
    send_from(
        S1,
        to,
        &[v9(0, T, 60_000, &[data(256, &[v9_record(7, 1)])])],
    );
    wait_site(&c, "S1", (4, 4, 310));
    assert_eq!(
        c.metric("rie_collector_decode_errors_total{reason=\"no_template\"}"),
        0.0
    );
}

#[test]
fn templates_survive_a_collector_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::start_netflow(&inventory(tmp.path()));
    send_from(
        S1,
        c.netflow_addr.unwrap(),
        &[v9(
            0,
            T,
            60_000,
            &[v9_template_256(), data(256, &[v9_record(500, 5)])],
        )],
    );
    wait_site(&c, "S1", (1, 5, 500));
    c.restart_graceful();
    assert_eq!(
        c.metric("rie_collector_netflow_templates_persisted"),
        1.0,
        "{}",
        c.log()
    );
    // The router does not announce again: its next data must decode straight away.
    send_from(
        S1,
        c.netflow_addr.unwrap(),
        &[v9(0, T, 61_000, &[data(256, &[v9_record(700, 7)])])],
    );
    wait_site(&c, "S1", (2, 12, 1200));
    assert_eq!(c.metric("rie_collector_netflow_pending_flowsets"), 0.0);
}

#[test]
fn malformed_datagrams_are_counted_and_a_good_router_is_unaffected() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start_netflow(&inventory(tmp.path()));
    let to = c.netflow_addr.unwrap();
    let good_template = v9(0, T, 60_000, &[v9_template_256()]);
    send_from(S1, to, &[good_template]);

    let mut bad: Vec<(Vec<u8>, &str)> = vec![
        // An empty datagram, unknown versions, garbage.
        (vec![], "empty"),
        (vec![0, 42, 1, 2, 3], "unsupported_version"),
        (vec![0xff; 1400], "unsupported_version"),
        // A v5 header cut short.
        (vec![0, 5, 0, 1, 0, 0], "truncated"),
    ];
    // A v5 header announcing 30 records but carrying none.
    let mut v5 = vec![0, 5, 0, 30];
    v5.extend_from_slice(&[0u8; 20]);
    bad.push((v5, "truncated"));
    // v9 template with an absurd field length (65535 bytes for IN_BYTES).
    bad.push((
        v9(0, T, 1, &[template(0, 300, &[(1, 65_535)])]),
        "malformed",
    ));
    // v9 flowset whose length runs past the datagram.
    let mut runaway = v9(0, T, 1, &[data(256, &[v9_record(1, 1)])]);
    runaway[22] = 0xff;
    runaway[23] = 0xff;
    bad.push((runaway, "malformed"));
    // Oversized: a v9 header followed by 60 KB of noise.
    let mut big = v9(0, T, 1, &[]);
    big.extend((0..60_000u32).map(|i| (i * 7 + 3) as u8));
    bad.push((big, "malformed"));

    // A flood from the bad router (S2, declared in the inventory) and from an address no
    // site declares (well-formed data, with its template), interleaved with the good one's.
    let stranger = [
        v9(0, T, 60_000, &[v9_template_256()]),
        v9(0, T, 60_000, &[data(256, &[v9_record(999, 9)])]),
    ];
    for round in 0..50u32 {
        let batch: Vec<Vec<u8>> = bad.iter().map(|(d, _)| d.clone()).collect();
        send_from(S2, to, &batch);
        send_from(STRANGER, to, &stranger);
        send_from(
            S1,
            to,
            &[v9(0, T, 60_000, &[data(256, &[v9_record(100 + round, 2)])])],
        );
    }
    let bytes: u64 = (0..50u64).map(|r| 100 + r).sum();
    wait_site(&c, "S1", (50, 100, bytes));
    // Every bad datagram is counted once, under its reason; none stored anything.
    let count = |reason: &str| {
        c.metric(&format!(
            "rie_collector_decode_errors_total{{reason=\"{reason}\"}}"
        ))
    };
    for reason in ["empty", "unsupported_version", "truncated", "malformed"] {
        let sent = bad.iter().filter(|(_, r)| *r == reason).count() * 50;
        assert_eq!(count(reason), sent as f64, "{reason}");
        // ... and under the router that sent them.
        assert_eq!(
            c.metric(&format!(
                "rie_collector_netflow_malformed_datagrams_total{{exporter=\"127.0.0.3\",reason=\"{reason}\"}}"
            )),
            sent as f64,
            "{reason}"
        );
    }
    assert_eq!(triple(&c.totals(Some("S2"))), (0, 0, 0));
    // The stranger's well-formed data: counted under its address, dropped, never stored.
    c.wait_until(
        "the stranger's datagrams counted",
        Duration::from_secs(10),
        |c| {
            c.metric_opt(
                "rie_collector_netflow_unknown_source_datagrams_total{source=\"127.0.0.4\"}",
            ) == Some(100.0)
        },
    );
    assert_eq!(
        triple(&c.get(
            "/api/v1/flows/totals?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&exporter=127.0.0.4"
        )),
        (0, 0, 0)
    );
    assert_eq!(triple(&c.totals(None)), (50, 100, bytes));
    for reason in ["no_template", "output_limit", "trailing_bytes"] {
        assert_eq!(count(reason), 0.0, "{reason}");
    }
    // The empty datagram and the two of unknown versions.
    assert_eq!(
        c.metric("rie_collector_netflow_datagrams_total{version=\"other\"}"),
        150.0
    );
    assert_eq!(triple(&c.totals(Some("unknown"))), (0, 0, 0));
}

/// What "acknowledged" means for UDP: once a commit made the traffic visible, a crash
/// (SIGKILL) neither loses it nor counts it again, and the templates committed with it let
/// the router's next data decode after the restart.
#[test]
fn committed_netflow_survives_a_crash_and_is_not_counted_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::start_netflow(&inventory(tmp.path()));
    send_from(
        S2,
        c.netflow_addr.unwrap(),
        &[v9(
            7,
            T,
            60_000,
            &[
                v9_template_256(),
                data(256, &[v9_record(4000, 40), v9_record(60, 1)]),
            ],
        )],
    );
    wait_site(&c, "S2", (2, 41, 4060));
    c.restart(); // SIGKILL, then start again on the same files
    assert_eq!(triple(&c.totals(Some("S2"))), (2, 41, 4060));
    send_from(
        S2,
        c.netflow_addr.unwrap(),
        &[v9(7, T, 61_000, &[data(256, &[v9_record(1, 1)])])],
    );
    wait_site(&c, "S2", (3, 42, 4061));
}

/// Linux caps SO_RCVBUF at `net.core.rmem_max` without an error: a request no host grants
/// (1 GiB) must give the start-up warning that names the sysctl to raise, and the input
/// still works with what it got.
#[test]
fn a_clamped_receive_buffer_is_warned_about_at_start_up() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start_netflow_with_config(
        &inventory(tmp.path()),
        "[netflow]\nreceive_buffer_bytes = 1073741824\n",
    );
    let log = c.log();
    assert!(
        log.contains("instead of the 1073741824 requested (netflow.receive_buffer_bytes)"),
        "{log}"
    );
    assert!(
        log.contains("sysctl -w net.core.rmem_max=1073741824"),
        "{log}"
    );
    let to = c.netflow_addr.unwrap();
    send_from(
        S1,
        to,
        &[v9(
            0,
            T,
            60_000,
            &[v9_template_256(), data(256, &[v9_record(100, 2)])],
        )],
    );
    wait_site(&c, "S1", (1, 2, 100));
}
