#![allow(clippy::unwrap_used)]
//! Indicators computed from episodes the real collector records (not inserted by hand): link
//! states sent through the real protocol, dated by the probe's events ten minutes ago, become
//! failover/outage episodes, and the report and the API turn them into the expected outage
//! minutes, time on backup, failover success and agent-hours lost.

use std::process::Command;

use rie_common::now_ms;
use rie_e2e::{bin, run_ok, s1_incident, send_ok, Collector};
use serde_json::Value;

#[test]
fn report_counts_the_episodes_the_collector_recorded() {
    let c = Collector::start();
    let cfg = c.probe_config("S1");
    let t0 = now_ms() / 1000 * 1000 - 600_000;
    // Primary fails at +60 s (backup takes over: failover), backup fails at +180 s (outage, the
    // backup failing while it carried), both back at +300 s, primary fails again at +400 s
    // (failover), back at +500 s.
    let batches = s1_incident(t0);
    assert_eq!(send_ok(&cfg, 7, &batches).len(), 6);

    // The calendar year of the incident (10 minutes can only cross a year boundary at New Year).
    let year = time::OffsetDateTime::from_unix_timestamp(t0 / 1000)
        .unwrap()
        .year()
        .to_string();
    let out = run_ok(
        Command::new(bin("rie-collector"))
            .env_remove("RIE_COSTS")
            .args([
                "report", "--period", &year, "--by", "site", "--format", "json",
            ])
            .args(c.config_args()),
    );
    let cli: Value = serde_json::from_str(&out).unwrap();
    let s1 = cli["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "S1")
        .unwrap()
        .clone();
    assert_eq!(s1["sites_with_data"], 1);
    assert_eq!(s1["outages"], 1);
    assert_eq!(s1["outage_minutes"], 2.0);
    // 120 s + 100 s on backup = 0.061111 h.
    assert_eq!(s1["backup_hours"], 0.0611);
    // Two failures of the primary, both carried by the backup in time; the outage is the
    // backup failing afterwards.
    assert_eq!(s1["primary_failures"], 2);
    assert_eq!(s1["failovers_in_time"], 2);
    assert_eq!(s1["failover_success_pct"], 100.0);
    // 420 agents × 2 minutes = 14 agent-hours.
    assert_eq!(s1["agents"], 420);
    assert_eq!(s1["agent_hours_lost"], 14.0);

    let api = c.get(&format!("/api/v1/indicators?period={year}&group_by=site"));
    let a1 = api["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "S1")
        .unwrap();
    for k in [
        "outages",
        "outage_minutes",
        "backup_hours",
        "primary_failures",
        "failovers_in_time",
        "agent_hours_lost",
        "total_cost_cents",
    ] {
        assert_eq!(a1[k], s1[k], "{k}");
    }
}
