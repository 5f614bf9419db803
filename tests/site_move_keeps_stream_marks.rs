#![allow(clippy::unwrap_used)]
//! A site changing owner takes its stream's dedup mark along: two collectors on loopback, a
//! stream stored on the old owner (batches 1..5), the member list changed so that the other
//! member owns the site, and the stream replayed from seq 3 (as a probe whose acks were lost
//! at the move would): the new owner asks the old one for its mark before answering the hello,
//! acknowledges 3..5 as duplicates without storing them, stores 6..8, and the national total
//! is every batch once. When the old owner does not answer (SIGSTOP: it accepts connections
//! but never replies), the new owner waits `cluster.mark_lookup_timeout`, proceeds, counts
//! it, and the documented double happens exactly as documented.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rie_collector::cluster;
use rie_e2e::influx::Influxd;
use rie_e2e::*;
use serde_json::Value;

const SITE: &str = "S1";
const STREAM: u64 = 0x5eed_0000_0000_0042;
const WINDOW: &str = "from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z";

/// Acks of seq 3..=8 replayed to the new owner after 1..=5 were stored by the old one: 3..5
/// acknowledged as duplicates (not stored again), 6..8 stored.
const RESUMED_ACKS: [(u64, bool); 6] = [
    (3, true),
    (4, true),
    (5, true),
    (6, false),
    (7, false),
    (8, false),
];

/// The tests of this file take turns: one test's collectors on ephemeral ports must not grab
/// the ports [`free_ports`] released for the other's members.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Batches `seqs` of the stream; each seq's flows are distinct, so totals tell which were
/// stored and how many times.
fn batches(seqs: std::ops::RangeInclusive<u64>) -> Vec<Value> {
    seqs.map(|k| {
        batch(
            k,
            vec![
                flow(MINUTE + 60 * k as i64, 6, k, 10 * k + 1, 1_000 * k + 17),
                flow(MINUTE + 60 * k as i64, 17, 2 * k, 3 * k, 555 * k + 3),
            ],
        )
    })
    .collect()
}

/// Two cluster members, `a` first alone (owning every site), then both with `[a, b]`, where
/// `b` owns [`SITE`]. Returns (a, b, a's probe config, b's probe config) with batches 1..5
/// stored on `a` while it was alone.
struct Moved {
    a: Collector,
    b: Collector,
    cfg_b: std::path::PathBuf,
}

/// `cluster_b`: extra `[cluster]` keys for b; `tail`: what follows the `[cluster]` section of a
/// member's config, given its name ("a" or "b").
fn move_site(first: &[Value], cluster_b: &str, tail: &dyn Fn(&str) -> String) -> Moved {
    // b's address is picked so that the two-member list gives SITE to b.
    let [pa, pb, aa, ab] = loop {
        let p: [SocketAddr; 4] = free_ports();
        let members = vec![p[0].to_string(), p[1].to_string()];
        if cluster::owner(&members, SITE).unwrap() == p[1].to_string() {
            break p;
        }
    };
    let one = format!(
        "[cluster]\nmembers = [\"{pa}\"]\nself = \"{pa}\"\n{}",
        tail("a")
    );
    let two = |me: SocketAddr, extra: &str| {
        format!(
            "[cluster]\nmembers = [\"{pa}\", \"{pb}\"]\nself = \"{me}\"\n\
             api_members = [\"http://{aa}\", \"http://{ab}\"]\n{extra}"
        )
    };
    let mut a = Collector::start_member(&one, pa, aa, None);
    let cfg_a = a.probe_config(SITE);
    let acks = send_ok(&cfg_a, STREAM, first);
    assert_eq!(acks, (1..=5).map(|k| (k, false)).collect::<Vec<_>>());
    assert_eq!(a.totals(Some(SITE)), expected_totals(first));

    // b joins: a is restarted with the two-member list (it keeps its marks on disk).
    std::fs::write(
        a.dir.path().join("collector.toml"),
        two(pa, "") + &tail("a"),
    )
    .unwrap();
    a.restart_gracefully();
    let b = Collector::start_member(&(two(pb, cluster_b) + &tail("b")), pb, ab, Some(&a));
    let cfg_b = b.probe_config_sharing(SITE, &cfg_a);
    // a no longer takes the site: the probe would be redirected to b.
    let out = send_batches(&cfg_a, STREAM, &batches(6..=6));
    assert!(!out.status.success());
    assert!(a
        .log()
        .contains("site belongs to another collector: redirected"));
    Moved { a, b, cfg_b }
}

fn lookups(c: &Collector, result: &str) -> f64 {
    c.metric(&format!(
        "rie_collector_cluster_mark_lookups_total{{result=\"{result}\"}}"
    ))
}

#[test]
fn replayed_batches_of_a_moved_site_are_acknowledged_not_stored_again() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Moved { a, mut b, cfg_b } = move_site(&batches(1..=5), "", &|_| String::new());

    // The old owner's mark, as the new owner reads it.
    let mark = a.get(&format!("/api/v1/cluster/streams/{SITE}/{STREAM}"));
    assert_eq!(
        mark,
        serde_json::json!({ "site": SITE, "stream": STREAM, "last_seq": 5 })
    );
    assert_eq!(
        b.get(&format!("/api/v1/cluster/streams/{SITE}/{STREAM}"))["last_seq"],
        Value::Null
    );

    // The stream resumes on b from seq 3: acks of 3..5 were lost when the site moved.
    let acks = send_ok(&cfg_b, STREAM, &batches(3..=8));
    assert_eq!(acks, RESUMED_ACKS);
    // One peer asked, one mark found; nothing else.
    assert_eq!(lookups(&b, "mark"), 1.0);
    assert_eq!(lookups(&b, "no_mark"), 0.0);
    assert_eq!(lookups(&b, "unreachable"), 0.0);
    assert_eq!(lookups(&b, "bad_answer"), 0.0);
    assert_eq!(b.metric("rie_collector_duplicate_batches_total"), 3.0);
    assert_eq!(b.metric("rie_collector_probe_batches_total"), 3.0);
    // Seq 6 follows the mark taken from a: not a gap.
    assert_eq!(b.metric("rie_collector_sequence_gaps_total"), 0.0);
    assert!(b
        .log()
        .contains("stream mark taken from the previous owner"));

    // Each batch once: a holds 1..5, b holds 6..8, the national total is 1..8.
    assert_eq!(a.totals(Some(SITE)), expected_totals(&batches(1..=5)));
    assert_eq!(b.totals(Some(SITE)), expected_totals(&batches(6..=8)));
    let all = expected_totals(&batches(1..=8));
    for c in [&a, &b] {
        assert_eq!(
            c.get(&format!("/api/v1/cluster/flows/totals?{WINDOW}")),
            all
        );
    }

    // Each member reports the states of its own sites only: S1 is b's now, so a (which holds
    // the whole inventory and heard from S1 before the move) does not show it.
    let site_series = |c: &Collector, site: &str| {
        ureq::get(&c.url("/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("rie_site_state{") && l.contains(&format!("site=\"{site}\"")))
            .count()
    };
    assert_eq!(site_series(&a, SITE), 0);
    assert_eq!(site_series(&b, SITE), 1);

    // The stream is now b's: a further hello does not ask again, nor does one after a restart
    // with the same member list.
    assert_eq!(
        send_ok(&cfg_b, STREAM, &batches(8..=9)),
        vec![(8, true), (9, false)]
    );
    assert_eq!(lookups(&b, "mark"), 1.0);
    b.restart_gracefully();
    assert_eq!(
        send_ok(&cfg_b, STREAM, &batches(10..=10)),
        vec![(10, false)]
    );
    for r in ["mark", "no_mark", "unreachable", "bad_answer"] {
        assert_eq!(
            lookups(&b, r),
            0.0,
            "{r} after a restart with the same list"
        );
    }
    assert_eq!(
        b.get(&format!("/api/v1/cluster/streams/{SITE}/{STREAM}"))["last_seq"],
        10
    );
    // A new stream of the site (a probe that lost its spool) asks: a has no mark for it.
    assert_eq!(
        send_ok(&cfg_b, STREAM + 1, &batches(1..=1)),
        vec![(1, false)]
    );
    assert_eq!(lookups(&b, "no_mark"), 1.0);
    assert_eq!(
        b.get(&format!("/api/v1/cluster/flows/totals?{WINDOW}")),
        expected_totals(&[batches(1..=10), batches(1..=1)].concat())
    );

    // Bad requests to the mark endpoint are the caller's error.
    for bad in [
        format!("/api/v1/cluster/streams/{SITE}/not-a-number"),
        format!("/api/v1/cluster/streams/a%20b/{STREAM}"),
    ] {
        let e = ureq::get(&a.url(&bad)).call();
        assert!(
            matches!(e, Err(ureq::Error::Status(400, _))),
            "{bad}: {e:?}"
        );
    }
}

#[test]
fn an_unanswering_old_owner_delays_the_hello_by_the_timeout_then_is_counted() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Moved { a, b, cfg_b } =
        move_site(&batches(1..=5), "mark_lookup_timeout = \"1s\"\n", &|_| {
            String::new()
        });

    // a hangs: its kernel still accepts connections, nothing answers.
    a.signal("STOP");
    let t0 = Instant::now();
    let acks = send_ok(&cfg_b, STREAM, &batches(3..=8));
    let waited = t0.elapsed();
    a.signal("CONT");
    // As documented: the hello waited for the timeout, then b went on with the marks it
    // knew (none), so the batches a had stored and not acknowledged (3..5) are stored again.
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(acks, (3..=8).map(|k| (k, false)).collect::<Vec<_>>());
    assert_eq!(lookups(&b, "unreachable"), 1.0);
    assert_eq!(lookups(&b, "mark"), 0.0);
    assert!(b.log().contains("cluster peer gave no stream mark"));
    // The residual risk, exactly: 3..5 counted twice in the national total.
    let doubled = expected_totals(&[batches(1..=5), batches(3..=8)].concat());
    assert_eq!(
        b.get(&format!("/api/v1/cluster/flows/totals?{WINDOW}")),
        doubled
    );
    assert_ne!(doubled, expected_totals(&batches(1..=8)));
}

/// Batches `seqs`, all about the same minute: a site moving during that minute leaves part of
/// it on each member.
fn same_minute(seqs: std::ops::RangeInclusive<u64>) -> Vec<Value> {
    seqs.map(|k| {
        batch(
            k,
            vec![
                flow(MINUTE, 6, k, 10 * k + 1, 1_000 * k + 17),
                flow(MINUTE, 17, 2 * k, 3 * k, 555 * k + 3),
            ],
        )
    })
    .collect()
}

#[test]
fn a_minute_split_between_two_members_sums_exactly_in_influxdb() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let db = Influxd::start("rie");
    let url = db.url();
    // Both members run on one host with the same `influx.instance`: the `collector` tag is the
    // member's `cluster.self`, unique by construction.
    let influx = move |_member: &str| {
        format!(
            "[influx]\nurl = \"{url}\"\napi = \"v1\"\ndatabase = \"rie\"\n\
             instance = \"same-host\"\nflush_interval = \"200ms\"\nretry_min = \"100ms\"\n\
             retry_max = \"400ms\"\nhealth_interval = \"1h\"\nsite_state_interval = \"1h\"\n\
             traffic_delay = \"1s\"\n"
        )
    };
    // The site moves in the middle of MINUTE: a stored batches 1..5 of it, b gets 3..8.
    let Moved { a, b, cfg_b } = move_site(&same_minute(1..=5), "", &influx);
    let stream = STREAM;
    let acks = send_ok(&cfg_b, stream, &same_minute(3..=8));
    assert_eq!(acks, RESUMED_ACKS);
    // Each member writes its part of the minute under its own `collector` tag.
    let q = format!(
        "SELECT bytes, collector FROM site_traffic WHERE site = '{SITE}' AND protocol = 'tcp' AND time = {MINUTE}s"
    );
    b.wait_until(
        "both members wrote their part",
        Duration::from_secs(60),
        |_| db.rows("rie", &q).len() == 2,
    );
    let parts = db.rows("rie", &q);
    let mut by: Vec<(String, i64)> = parts
        .iter()
        .map(|r| {
            (
                r["collector"].as_str().unwrap().to_string(),
                r["bytes"].as_i64().unwrap(),
            )
        })
        .collect();
    by.sort_by_key(|(c, _)| (*c != a.probe_addr.to_string(), c.clone()));
    let tcp_bytes = |ks: std::ops::RangeInclusive<i64>| ks.map(|k| 1_000 * k + 17).sum::<i64>();
    assert_eq!(
        by,
        vec![
            (a.probe_addr.to_string(), tcp_bytes(1..=5)),
            (b.probe_addr.to_string(), tcp_bytes(6..=8))
        ]
    );
    // What dashboards ask (sum over every tag but the ones they group by): every batch once.
    let total = db.rows(
        "rie",
        &format!("SELECT sum(bytes) FROM site_traffic WHERE site = '{SITE}' AND time = {MINUTE}s"),
    );
    let all = expected_totals(&same_minute(1..=8));
    assert_eq!(
        total[0]["sum"].as_u64().unwrap(),
        all["bytes"].as_u64().unwrap()
    );
}
