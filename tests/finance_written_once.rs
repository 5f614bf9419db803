#![allow(clippy::unwrap_used)]
//! The finance duty runs once among collectors sharing one PostgreSQL (started by the test):
//! two collectors write to one real InfluxDB 1.x, with finance intervals of 2 s and 3 s so that
//! each one's points are told apart by their timestamps (a run sits on its interval's start).
//! Only the leader's `cost` points reach InfluxDB and only the leader shows `rie_finance_*`
//! figures; after the leader is killed with SIGKILL the survivor takes over, and its figures
//! are the same, to the cent.

use std::time::Duration;

use rie_e2e::influx::Influxd;
use rie_e2e::{wait_for, Collector};
use rie_testpg::PgServer;

fn config(pg: &PgServer, influx: &Influxd, interval_s: i64, instance: &str) -> String {
    format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\n\
         [influx]\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"rie\"\ninstance = \"{instance}\"\n\
         flush_interval = \"200ms\"\nretry_min = \"100ms\"\nretry_max = \"400ms\"\n\
         [finance]\ninterval = \"{interval_s}s\"\n",
        pg.url(),
        influx.url()
    )
}

/// Timestamps (Unix s) of the national `cost` points since `since`.
fn national_points(influx: &Influxd, since: i64) -> Vec<i64> {
    influx
        .rows(
            "rie",
            &format!(
                "SELECT \"cost_per_agent_year_eur\" FROM \"cost\" WHERE \"scope\" = 'national' AND time >= {since}s"
            ),
        )
        .iter()
        .map(|r| {
            // The fixture's national figure (see `finance::tests::lines_of_the_fixture_month`).
            assert_eq!(r["cost_per_agent_year_eur"], 73.37, "{r:?}");
            r["time"].as_i64().unwrap()
        })
        .collect()
}

#[test]
fn only_the_leader_publishes_finance_figures_and_the_survivor_takes_over() {
    let pg = PgServer::start();
    let influx = Influxd::start("rie");
    let mut a = Collector::start_with_config(&config(&pg, &influx, 2, "a"));
    let mut b = Collector::start_sharing_pki(&config(&pg, &influx, 3, "b"), Some(&a));
    wait_for("a leader", Duration::from_secs(20), || {
        a.metric("rie_collector_leader") + b.metric("rie_collector_leader") == 1.0
    });
    let a_leads = a.metric("rie_collector_leader") == 1.0;
    let (leader_every, follower_every) = if a_leads { (2, 3) } else { (3, 2) };
    let since = rie_common::now_ms() / 1000;
    wait_for("the leader's points", Duration::from_secs(30), || {
        national_points(&influx, since).len() >= 4
    });
    let points = national_points(&influx, since);
    assert!(
        points.iter().all(|t| t % leader_every == 0),
        "the follower (every {follower_every} s) wrote too: {points:?}"
    );
    let (leader, follower) = if a_leads { (&a, &b) } else { (&b, &a) };
    assert_eq!(
        leader.metric("rie_finance_cost_per_agent_year_euros{by=\"national\",group=\"national\"}"),
        73.37
    );
    assert!(leader.metric("rie_finance_last_run_timestamp_seconds") >= since as f64);
    assert_eq!(
        follower.metric("rie_finance_last_run_timestamp_seconds"),
        0.0
    );
    let text = ureq::get(&follower.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        !text.contains("rie_finance_cost_per_agent_year_euros{"),
        "the follower shows figures"
    );

    // The leader dies; the survivor is elected and publishes on its own interval.
    let survivor_every = follower_every;
    if a_leads {
        a.kill9();
    } else {
        b.kill9();
    }
    let survivor = if a_leads { &b } else { &a };
    let killed = rie_common::now_ms() / 1000 + 1;
    wait_for("the survivor's points", Duration::from_secs(60), || {
        national_points(&influx, killed)
            .iter()
            .filter(|t| *t % leader_every != 0)
            .count()
            >= 2
    });
    let after = national_points(&influx, killed);
    assert!(after.iter().all(|t| t % survivor_every == 0), "{after:?}");
    assert_eq!(survivor.metric("rie_collector_leader"), 1.0);
    assert_eq!(
        survivor
            .metric("rie_finance_cost_per_agent_year_euros{by=\"national\",group=\"national\"}"),
        73.37
    );
}
