//! PostgreSQL unreachable for two minutes while probes stream: the server is killed with
//! SIGKILL and started again on the same data directory and port 120 s later. Meanwhile the
//! collector stays up and acknowledges nothing (the probes spool), says so on `/healthz` (503,
//! "database unreachable since …") and in `rie_collector_store_up`; once the server is back it
//! reconnects by itself (no restart) and catches up, and the database then holds exactly
//! what the probes produced, each batch once.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rie_e2e::pg_fleet::{assert_exact, batches_acked_by, time_to_first_ack, Fleet};
use rie_e2e::Collector;
use rie_testpg::PgServer;
use serde_json::Value;

const OUTAGE: Duration = Duration::from_secs(120);

/// `/healthz`: (status code, body).
fn healthz(c: &Collector) -> (u16, Value) {
    let (code, resp) = match ureq::get(&c.url("/healthz")).call() {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(code, r)) => (code, r),
        Err(e) => panic!("GET /healthz: {e}\n{}", c.log()),
    };
    (code, resp.into_json().expect("JSON body"))
}

#[test]
fn two_minutes_without_the_database_then_exact_catch_up() {
    let mut pg = PgServer::start();
    let c = Collector::start_with_config(&format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\n",
        pg.url()
    ));
    // Backlogs sent at up to 100 batches/s per probe (default 20/s): the catch-up of three
    // probes' two minutes then loads the collector at 300 batches/s.
    let mut fleet = Fleet::start_with_replay_rate(&c, 100.0);
    c.wait_until("batches from every probe", Duration::from_secs(30), |_| {
        fleet
            .probes
            .iter()
            .all(|(_, p)| p.status()["spool"]["last_acked"].as_u64() >= Some(10))
    });
    assert_eq!(healthz(&c).0, 200);
    assert_eq!(c.metric("rie_collector_store_up"), 1.0);

    let killed = Instant::now();
    let killed_unix = rie_common::now_ms() / 1000;
    pg.kill9();

    // Within seconds, the collector says the database is gone, and since when.
    c.wait_until(
        "/healthz to report the outage",
        Duration::from_secs(10),
        |c| healthz(c).0 == 503,
    );
    // Backends outlive their postmaster by a few milliseconds, and a commit they finish is
    // durable (crash recovery replays it): count acknowledgements from here.
    let before = batches_acked_by(&c);
    let (_, body) = healthz(&c);
    assert_eq!(body["status"], "store_unavailable", "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("database unreachable since "),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("127.0.0.1:{}", pg.port())),
        "{reason}"
    );
    assert_eq!(c.metric("rie_collector_store_up"), 0.0);
    let since = c.metric("rie_collector_store_down_since_seconds") as i64;
    assert!(
        (killed_unix..=killed_unix + 10).contains(&since),
        "outage start {since}, kill at {killed_unix}"
    );

    // Two minutes: the collector keeps answering, acknowledges nothing, the probes spool.
    let mut checks = 0;
    while killed.elapsed() < OUTAGE {
        std::thread::sleep(Duration::from_secs(10).min(OUTAGE.saturating_sub(killed.elapsed())));
        assert_eq!(healthz(&c).0, 503);
        assert_eq!(
            batches_acked_by(&c),
            before,
            "acknowledged without a database"
        );
        checks += 1;
    }
    assert!(checks >= 12, "{checks}");
    let spooled: Vec<u64> = fleet
        .probes
        .iter()
        .map(|(_, p)| p.status()["spool"]["batches"].as_u64().unwrap())
        .collect();
    // 120 s at one batch per 100 ms: each probe holds at least 110 s of batches.
    assert!(spooled.iter().all(|&n| n >= 1100), "spooled {spooled:?}");
    // The outage start did not move while it lasted.
    assert_eq!(
        c.metric("rie_collector_store_down_since_seconds") as i64,
        since
    );

    let back = Instant::now();
    pg.start_again();
    let first_ack = time_to_first_ack(&c, before, back, Duration::from_secs(60));
    // Redelivery runs alongside new production (the probes keep producing 10 batches/s each).
    c.wait_until("the spools to empty", Duration::from_secs(120), |_| {
        fleet.spooled() < 30
    });
    let caught_up = back.elapsed();
    let commits = c.metric("rie_collector_store_commit_seconds_count");
    println!(
        "outage {:.1} s; spooled {spooled:?}; first acknowledgement {:.3} s after the server \
         was started again; spools nearly empty {:.1} s after; {commits} commits, mean {:.1} ms",
        (back - killed).as_secs_f64(),
        first_ack.as_secs_f64(),
        caught_up.as_secs_f64(),
        1000.0 * c.metric("rie_collector_store_commit_seconds_sum") / commits
    );
    c.wait_until("/healthz to be 200 again", Duration::from_secs(10), |c| {
        healthz(c).0 == 200
    });
    assert_eq!(c.metric("rie_collector_store_up"), 1.0);
    assert_eq!(c.metric("rie_collector_store_down_since_seconds"), 0.0);

    let produced = fleet.drain(Duration::from_secs(60));
    println!("produced per site: {produced:?}");
    assert_exact(&produced, |sql| pg.psql(sql));
    rie_e2e::pg_fleet::assert_collector_agrees(&[&c], &produced);
}
