//! A PostgreSQL primary killed with SIGKILL while probes stream through two collectors, its
//! synchronous standby promoted one second later: both collectors, given both servers in one
//! multi-host URL with `target_session_attrs=read-write`, find the new primary by themselves
//! (no restart), the probes redeliver what was not acknowledged, and the promoted database
//! holds exactly what the probes produced: no acknowledged batch lost (synchronous commit),
//! none stored twice (the stream marks). Prints, per collector, the time from the kill to its
//! first acknowledgement after it.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rie_e2e::pg_fleet::{assert_exact, batches_acked_by, time_to_first_ack, Fleet};
use rie_e2e::Collector;
use rie_testpg::PgServer;

#[test]
fn primary_killed_standby_promoted_nothing_lost_nothing_twice() {
    let (mut primary, standby) = PgServer::start_sync_pair();
    let url = format!(
        "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/rie?target_session_attrs=read-write",
        primary.port(),
        standby.port()
    );
    let config = format!("[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{url}\"\n");
    let c1 = Collector::start_sharing_pki(&config, None);
    let c2 = Collector::start_sharing_pki(&config, Some(&c1));
    let collectors = [&c1, &c2];
    // S1 and S3 stream to the first collector, S2 to the second.
    let mut fleet = Fleet::start_on(&[&c1, &c2, &c1]);
    c1.wait_until("batches from every probe", Duration::from_secs(30), |_| {
        fleet
            .probes
            .iter()
            .all(|(_, p)| p.status()["spool"]["last_acked"].as_u64() >= Some(10))
    });
    // Mid-stream: a group may be waiting for the standby at this very moment. The standby is
    // promoted one second later, as an HA manager would after noticing: meanwhile there is no
    // primary (the standby refuses a read-write session) and nothing may be acknowledged.
    let killed = Instant::now();
    primary.kill9();
    // Backends outlive their postmaster by a few milliseconds; a commit they finish has
    // reached the standby (synchronous): count acknowledgements from after that.
    std::thread::sleep(Duration::from_millis(300));
    let before = collectors.map(batches_acked_by);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        collectors.map(batches_acked_by),
        before,
        "acknowledged without a primary"
    );
    let spooled = fleet.spooled();
    let promote_at = killed.elapsed();
    standby.promote();
    let promote_took = killed.elapsed() - promote_at;
    println!(
        "failover: promote began {:.3} s after the kill and took {:.3} s; {spooled} batches \
         spooled at the promote",
        promote_at.as_secs_f64(),
        promote_took.as_secs_f64(),
    );
    // Polled one after the other: the second figure is an upper bound.
    for (i, c) in collectors.iter().enumerate() {
        let first_ack = time_to_first_ack(c, before[i], killed, Duration::from_secs(30));
        println!(
            "collector {i}: first acknowledgement {:.3} s after the kill ({:.3} s after the \
             promote began)",
            first_ack.as_secs_f64(),
            (first_ack - promote_at).as_secs_f64(),
        );
    }
    // Streaming goes on on the new primary, through both collectors.
    let resumed = fleet.acked();
    c1.wait_until(
        "20 more batches after the failover",
        Duration::from_secs(30),
        |_| fleet.acked() >= resumed + 20,
    );

    let produced = fleet.drain(Duration::from_secs(30));
    println!("produced per site: {produced:?}");
    assert_exact(&produced, |sql| standby.psql(sql));
    // The collectors' own view agrees, and neither saw a hole in a stream.
    rie_e2e::pg_fleet::assert_collector_agrees(&collectors, &produced);
    for c in collectors {
        let log = c.log();
        assert!(log.contains("PostgreSQL writer session lost"), "{log}");
        assert!(log.contains("group commit failed"), "{log}");
        // Back to healthy on the promoted server.
        assert_eq!(c.metric("rie_collector_store_up"), 1.0);
    }
}
