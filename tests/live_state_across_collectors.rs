#![allow(clippy::unwrap_used)]
//! Several collectors on one real PostgreSQL 15 show one national picture, and the duties that
//! must run once run on one of them:
//! - a probe connected to collector A takes S1 from up to on_backup, then down: collector B's
//!   `/api/v1/sites` shows each state within 5 s of A's acknowledgement (site states are
//!   notified on commit and read back by every collector; the propagation time is printed);
//! - exactly one of two collectors is the leader; the leader's silence scan opens exactly one
//!   `silent` episode for a site whose probe spoke to the follower, and closes it when the
//!   site speaks to the follower again; the leader killed with SIGKILL while a site's episode
//!   is open, the survivor takes over within 30 s (printed), carries on from the episodes in
//!   the database (the open one is not opened again, and is closed when the site speaks
//!   again) and opens exactly one episode for the next site that falls silent.

use std::time::{Duration, Instant};

use rie_e2e::*;
use rie_testpg::PgServer;
use serde_json::Value;

const STREAM: u64 = 0x5eed_0000_0000_0077;

fn config(pg: &PgServer, extra: &str) -> String {
    format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\n{extra}",
        pg.url()
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The state `c` shows for `site` in `/api/v1/sites`.
fn state(c: &Collector, site: &str) -> String {
    let sites = c.get("/api/v1/sites");
    sites
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == site)
        .map(|s| s["state"].as_str().unwrap().to_string())
        .unwrap()
}

/// Polls `c` until `site` shows `want`; returns how long it took.
fn until_state(c: &Collector, site: &str, want: &str, timeout: Duration) -> Duration {
    let t = Instant::now();
    loop {
        if state(c, site) == want {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < timeout,
            "{site} never showed {want} (shows {}) within {timeout:?}\n--- log ---\n{}",
            state(c, site),
            c.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_leader(c: &Collector) -> Option<bool> {
    let v: Value = ureq::get(&c.url("/healthz"))
        .call()
        .ok()?
        .into_json()
        .ok()?;
    v["leader"].as_bool()
}

/// (count, still open) of `site`'s silent episodes in the database itself.
fn silent_episodes(pg: &PgServer, site: &str) -> (u32, u32) {
    let out = pg.psql(&format!(
        "SELECT count(*), count(*) FILTER (WHERE end_ms IS NULL) FROM episodes
         WHERE site_id = '{site}' AND kind = 'silent'"
    ));
    let mut it = out.trim().split('|').map(|n| n.parse().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Waits (5 s at most) until `site`'s silent episodes are `want` (count, open).
fn until_episodes(pg: &PgServer, site: &str, want: (u32, u32)) {
    let t = Instant::now();
    while silent_episodes(pg, site) != want {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{site}: silent episodes {:?}, want {want:?}",
            silent_episodes(pg, site)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_state_stored_by_one_collector_shows_on_the_other_within_5_s() {
    let pg = PgServer::start();
    let cfg = config(&pg, "");
    let a = Collector::start_with_config(&cfg);
    let b = Collector::start_sharing_pki(&cfg, Some(&a));
    let probe = a.probe_config("S1");

    // Each step: (time from the start of the probe's send, time from A's acknowledgement)
    // until B shows the state. The first includes the probe's TLS connection and hello.
    let step = |batch: Value, seq: u64, want: &str| -> (Duration, Duration) {
        let sent = Instant::now();
        assert_eq!(send_ok(&probe, STREAM, &[batch]), [(seq, false)]);
        let acked = sent.elapsed();
        let after_ack = until_state(&b, "S1", want, Duration::from_secs(5));
        assert_eq!(state(&a, "S1"), want);
        (acked + after_ack, after_ack)
    };
    let t0 = now_ms() / 1000 * 1000 - 5_000;
    let up = step(
        s1_links(1, t0, (true, true, t0), (true, false, t0)),
        1,
        "up",
    );
    // The primary fails, the backup carries the traffic.
    let t1 = now_ms() / 1000 * 1000;
    let backup = step(
        s1_links(2, t1, (false, false, t1 - 400), (true, true, t1 - 200)),
        2,
        "on_backup",
    );
    // Both links fail.
    let t2 = now_ms() / 1000 * 1000;
    let down = step(
        s1_links(3, t2, (false, false, t1 - 400), (false, false, t2 - 100)),
        3,
        "down",
    );
    println!(
        "propagation to collector B's /api/v1/sites (from the start of the send to A; from A's \
         ack): up {:?}; {:?}, on_backup {:?}; {:?}, down {:?}; {:?}",
        up.0, up.1, backup.0, backup.1, down.0, down.1
    );
    for (from_send, _) in [up, backup, down] {
        assert!(from_send < Duration::from_secs(5), "{from_send:?}");
    }

    // B shows A's state in full: the same links, the same time of change, not connected here.
    let one = |c: &Collector| {
        let mut v = c.get("/api/v1/sites/S1");
        v.as_object_mut().unwrap().remove("connected");
        v
    };
    assert_eq!(one(&b), one(&a));
    assert_eq!(b.get("/api/v1/sites/S1")["connected"], false);
    // The episodes A stored are B's too: the failover closed at the outage, the outage open.
    let eps = |c: &Collector| {
        c.get(&format!(
            "/api/v1/sites/S1/episodes?from={}&to={}",
            rfc3339(t0 - 60_000),
            rfc3339(now_ms() + 60_000)
        ))
    };
    assert_eq!(eps(&b), eps(&a));
    assert_eq!(
        pg.psql("SELECT kind, end_ms IS NULL FROM episodes WHERE site_id = 'S1' ORDER BY start_ms"),
        "failover|f\noutage|t\n"
    );
}

#[test]
fn one_leader_scans_silence_and_the_survivor_takes_over_after_a_kill() {
    let pg = PgServer::start();
    let cfg = config(&pg, "[sites]\nsilent_after = \"3s\"\n");
    let mut a = Collector::start_with_config(&cfg);
    let mut b = Collector::start_sharing_pki(&cfg, Some(&a));

    // Exactly one leader, and it stays one.
    let t = Instant::now();
    let leaders = loop {
        let l = (is_leader(&a), is_leader(&b));
        if matches!(l, (Some(true), Some(false)) | (Some(false), Some(true))) {
            break l;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "leaders {l:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((is_leader(&a), is_leader(&b)), leaders);
    let a_leads = leaders.0 == Some(true);
    let (leader, follower) = if a_leads {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert_eq!(leader.metric("rie_collector_leader"), 1.0);
    assert_eq!(follower.metric("rie_collector_leader"), 0.0);

    // S2's probe speaks to the follower once, then stops: both show it silent, and the
    // database holds exactly one silent episode, opened by the leader's scan alone. When S2
    // speaks to the follower again, the leader closes the episode.
    let s2 = follower.probe_config("S2");
    assert_eq!(send_ok(&s2, STREAM, &[batch(1, vec![])]), [(1, false)]);
    until_state(leader, "S2", "up", Duration::from_secs(5));
    until_state(leader, "S2", "silent", Duration::from_secs(10));
    until_state(follower, "S2", "silent", Duration::from_secs(10));
    until_episodes(&pg, "S2", (1, 1));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(silent_episodes(&pg, "S2"), (1, 1));
    assert_eq!(send_ok(&s2, STREAM, &[batch(2, vec![])]), [(2, false)]);
    until_state(leader, "S2", "up", Duration::from_secs(5));
    until_episodes(&pg, "S2", (1, 0));

    // S1 falls silent the same way; its episode is open when the leader dies.
    let s1 = follower.probe_config("S1");
    assert_eq!(send_ok(&s1, STREAM, &[batch(1, vec![])]), [(1, false)]);
    until_state(leader, "S1", "silent", Duration::from_secs(10));
    until_episodes(&pg, "S1", (1, 1));

    // The leader dies without a word.
    leader.kill9();
    let killed = Instant::now();
    let survivor = &*follower;
    while is_leader(survivor) != Some(true) {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no new leader within 30 s\n--- log ---\n{}",
            survivor.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = killed.elapsed();
    println!("leadership moved to the survivor {took:?} after the leader's SIGKILL");
    assert!(took < Duration::from_secs(30));
    assert_eq!(survivor.metric("rie_collector_leader"), 1.0);

    // The survivor carries on from the database: S1's episode is not opened again...
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(silent_episodes(&pg, "S1"), (1, 1));
    // ...and is closed when S1 speaks again.
    assert_eq!(send_ok(&s1, STREAM, &[batch(2, vec![])]), [(2, false)]);
    until_state(survivor, "S1", "up", Duration::from_secs(5));
    until_episodes(&pg, "S1", (1, 0));

    // The next site to fall silent gets exactly one episode, from the survivor.
    let s3 = survivor.probe_config("S3");
    assert_eq!(send_ok(&s3, STREAM, &[batch(1, vec![])]), [(1, false)]);
    until_state(survivor, "S3", "silent", Duration::from_secs(10));
    until_episodes(&pg, "S3", (1, 1));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(silent_episodes(&pg, "S3"), (1, 1));
}
