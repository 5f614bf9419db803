#![allow(clippy::unwrap_used)]
//! Cost and availability indicators on a hand-made inventory (tests/data/indicators), with
//! episodes and traffic written into the running collector's database; every figure below is
//! worked out by hand in the comments and compared exactly (money to the cent). The same numbers
//! must come out of `rie-collector report` (JSON, CSV en/fr, HTML) and `GET /api/v1/indicators`.
//!
//! Inventory (October 2026 = 1 month, 31 days = 744 h):
//! | site | ministry | dép. | agents | links (Mbit/s, €/month)                  |
//! | A    | Intérieur| 35   | 100    | fibre 100 400.00 + backup 4g 50 75.00     |
//! | B    | Intérieur| 35   | 20     | xdsl 20 110.00                            |
//! | C    | Finances | 75   | 300    | fibre 1000 1600.00 + backup fibre 500 900.00 |
//! | D    | Finances | 974  | 0      | satellite 10 450.00                       |
//! | E    | Culture  | 2A   | 70     | 4g 50 0.00 (a link without a cost)        |
//!
//! Link costs (cents): A 47500 (backup 7500), B 11000, C 250000 (backup 90000), D 45000, E 0;
//! total 353500. Contracted kbit/s: A 150000, B 20000, C 1500000, D 10000, E 50000 = 1730000.
//!
//! Shared costs for one month (tests/data/indicators/costs.toml):
//! - backbone 12000 €/yr → 100000 c, per kbit/s: floors A 8670 (rem 900000), B 1156 (120000),
//!   C 86705 (350000), D 578 (60000), E 2890 (300000) = 99999; the last cent to A → A 8671.
//! - gateways 6000 €/yr → 50000 c, per byte (A 3e6, B 1e6, C 5e6 = 9e6 B in October): floors
//!   A 16666 (rem 6e6), B 5555 (5e6), C 27777 (7e6) = 49998; 2 cents to C then A →
//!   A 16667, B 5555, C 27778, D 0, E 0.
//! - noc 1200 €/yr → 10000 c per site: 2000 each.
//! - hosting 4270 €/yr → 427000/12 = 35583.33 → 35583 c, per agent (490): floors A 7261
//!   (rem 410), B 1452 (180), C 21785 (250), D 0, E 5083 (140) = 35581; 2 cents to A, C →
//!   A 7262, B 1452, C 21786, D 0, E 5083.
//! - migration 3600 € over 3 years → 360000/36 = 10000 c per site: 2000 each.
//!
//! Shared per site: A 36600, B 12163, C 140269, D 4578, E 11973 = 205583.
//! Total per site: A 84100, B 23163, C 390269, D 49578, E 11973 = 559083 (national).
//!
//! Episodes (UTC): A failover 5 Oct 10:00–12:00 (in time); A outage 10 Oct 08:00–08:30 then
//! failover 08:30–09:30 (late takeover: one failure, not in time); B outage 30 Sep 22:00 –
//! 1 Oct 02:00 (2 h in October, 2 h in September); B outage 20 Oct 14:00–16:00 with a silence
//! 13:00–17:00 (2 h of it unexplained by the outage → B measured 742 h); B outage 2 Nov
//! (outside); C failover open since 31 Oct 23:00 (1 h up to the period end); D outage 15 Oct
//! 00:00–06:00; one episode of a site not in the inventory. E has no data at all.

use std::path::Path;
use std::process::Command;

use rie_e2e::{bin, fixture, run_ok, Collector};
use serde_json::Value;

/// 2026-10-01T00:00:00Z (`date -ud 2026-10-01 +%s`).
const OCT1: i64 = 1_790_812_800_000;
const HOUR: i64 = 3_600_000;

fn t(day: i64, hour: i64) -> i64 {
    OCT1 + (day - 1) * 24 * HOUR + hour * HOUR
}

fn start() -> Collector {
    // Inherited by the collector the harness spawns (every test here wants the same file).
    std::env::set_var("RIE_COSTS", fixture("indicators/costs.toml"));
    let c = Collector::start_with_inventory(&fixture("indicators"));
    let ep = |site: &str, kind: &str, s: i64, e: Option<i64>| {
        format!(
            "INSERT INTO episodes(site_id, kind, start_ms, end_ms) VALUES ('{site}', '{kind}', {s}, {});",
            e.map_or("NULL".to_string(), |e| e.to_string())
        )
    };
    let mut sql = String::new();
    sql += &ep("A", "failover", t(5, 10), Some(t(5, 12)));
    sql += &ep("A", "outage", t(10, 8), Some(t(10, 8) + HOUR / 2));
    sql += &ep(
        "A",
        "failover",
        t(10, 8) + HOUR / 2,
        Some(t(10, 9) + HOUR / 2),
    );
    sql += &ep("B", "outage", OCT1 - 2 * HOUR, Some(t(1, 2)));
    sql += &ep("B", "outage", t(20, 14), Some(t(20, 16)));
    sql += &ep("B", "silent", t(20, 13), Some(t(20, 17)));
    sql += &ep("B", "outage", t(33, 0), Some(t(33, 1)));
    sql += &ep("C", "failover", t(31, 23), None);
    sql += &ep("D", "outage", t(15, 0), Some(t(15, 6)));
    sql += &ep("ZZZ", "outage", t(3, 0), Some(t(3, 1)));
    // Traffic (minute start in Unix seconds): 3e6 B for A, 1e6 for B, 5e6 for C in October;
    // A also has September traffic and a row at exactly 1 Nov 00:00, both outside October.
    let flow = |minute_ms: i64, site: &str, bytes: u64| {
        format!(
            "INSERT INTO flow_minute(minute, site_id, exporter, protocol, direction, flows, packets, bytes) VALUES ({}, '{site}', 'probe', 6, 0, 1, 1, {bytes});",
            minute_ms / 1000
        )
    };
    sql += &flow(t(2, 0), "A", 1_000_000);
    sql += &flow(t(31, 23) + 59 * 60_000, "A", 2_000_000);
    sql += &flow(t(4, 0), "B", 1_000_000);
    sql += &flow(t(6, 0), "C", 5_000_000);
    sql += &flow(OCT1 - 15 * 24 * HOUR, "A", 7_000_000);
    sql += &flow(t(32, 0), "A", 9_000_000);
    c.sql(&sql);
    c
}

fn report(c: &Collector, args: &[&str]) -> String {
    run_ok(
        Command::new(bin("rie-collector"))
            .arg("report")
            .args(c.config_args())
            .args(args),
    )
}

fn json_report(c: &Collector, period: &str, by: &str) -> Value {
    let out = report(c, &["--period", period, "--by", by, "--format", "json"]);
    serde_json::from_str(&out).unwrap()
}

fn group<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == name)
        .unwrap_or_else(|| panic!("no group {name} in {r}"))
}

#[test]
fn costs_by_site_are_exact_and_sum_to_the_total() {
    let c = start();
    let r = json_report(&c, "2026-10", "site");
    let expect = [
        ("A", 47500, 7500, 36600, 84100),
        ("B", 11000, 0, 12163, 23163),
        ("C", 250000, 90000, 140269, 390269),
        ("D", 45000, 0, 4578, 49578),
        ("E", 0, 0, 11973, 11973),
    ];
    let mut sum = 0;
    for (site, link, backup, shared, total) in expect {
        let g = group(&r, site);
        assert_eq!(g["link_cost_cents"], link, "{site}");
        assert_eq!(g["backup_link_cost_cents"], backup, "{site}");
        assert_eq!(g["shared_cost_cents"], shared, "{site}");
        assert_eq!(g["total_cost_cents"], total, "{site}");
        sum += g["total_cost_cents"].as_i64().unwrap();
    }
    assert_eq!(sum, 559_083);
    assert_eq!(r["national"]["total_cost_cents"], 559_083);
    let items: Vec<(String, i64)> = r["cost_items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["cents"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        items,
        [
            ("backbone", 100_000),
            ("gateways", 50_000),
            ("noc", 10_000),
            ("hosting", 35_583),
            ("migration", 10_000)
        ]
        .map(|(n, c)| (n.to_string(), c))
    );
    // Site B: 4 h down out of 742 h measured; 2 outages (one crossing the period start).
    let b = group(&r, "B");
    assert_eq!(b["availability_time_pct"], 99.4609);
    assert_eq!(b["outages"], 2);
    assert_eq!(b["measured_hours"], 742.0);
    // E has no measurement: no availability, never counted as 100 %.
    assert_eq!(group(&r, "E")["availability_time_pct"], Value::Null);
    assert_eq!(group(&r, "E")["sites_with_data"], 0);
}

#[test]
fn national_indicators_by_hand() {
    let c = start();
    let r = json_report(&c, "2026-10", "national");
    let n = &r["national"];
    assert_eq!(n["sites"], 5);
    assert_eq!(n["agents"], 490);
    assert_eq!(n["sites_zero_agents"], 1);
    assert_eq!(n["dual_homed_sites"], 2);
    // (100 + 300) / 490 = 81.632653 %.
    assert_eq!(n["dual_homed_agent_share_pct"], 81.6327);
    assert_eq!(n["contracted_mbps"], 1730.0);
    assert_eq!(n["link_cost_cents"], 353_500);
    assert_eq!(n["backup_link_cost_cents"], 97_500);
    assert_eq!(n["shared_cost_cents"], 205_583);
    // Sites with agents (D excluded): 84100 + 23163 + 390269 + 11973 = 509505;
    // × 12 / 490 = 12477.67 → 12478 c.
    assert_eq!(n["cost_per_agent_year_cents"], 12_478);
    // 559083 × 1000 / 1730000 = 323.17 → 323 c per Mbit/s per month.
    assert_eq!(n["cost_per_mbps_month_cents"], 323);
    // Backups of A and C: 97500 × 12 / 490 = 2387.76 → 2388 c.
    assert_eq!(n["resilience_cost_per_agent_year_cents"], 2_388);
    assert_eq!(n["sites_with_data"], 4);
    // Measured: A 744, B 742, C 744, D 744 = 2974 h; down A 0.5 + B 4 + D 6 = 10.5 h.
    assert_eq!(n["measured_hours"], 2974.0);
    assert_eq!(n["outage_minutes"], 630.0);
    // 1 − 10.5 / 2974 = 99.646940 %.
    assert_eq!(n["availability_time_pct"], 99.6469);
    // Agents 100, 20, 300 (D has none, E no data): 1 − (100×0.5/744 + 20×4/742)/420 = 99.958328 %.
    assert_eq!(n["availability_agent_pct"], 99.9583);
    // 100 × 0.5 + 20 × 4 = 130 agent-hours.
    assert_eq!(n["agent_hours_lost"], 130.0);
    assert_eq!(n["outages"], 4);
    assert_eq!(n["mttr_minutes"], 157.5);
    // (2974 − 10.5) / 4 = 740.875 h.
    assert_eq!(n["mtbf_hours"], 740.875);
    // A 2 h + 1 h, C 1 h (open, counted to the period end).
    assert_eq!(n["backup_hours"], 4.0);
    // A: in-time failover + outage-then-late-failover = 2 failures, 1 in time; C: 1 in time.
    assert_eq!(n["primary_failures"], 3);
    assert_eq!(n["failovers_in_time"], 2);
    assert_eq!(n["failover_success_pct"], 66.6667);
    // What resilience buys: dual-homed A + C: 1 − 0.5 / 1488 = 99.966398 %; single-homed
    // B + D: 1 − 10 / 1486 = 99.327052 %.
    assert_eq!(n["availability_dual_homed_pct"], 99.9664);
    assert_eq!(n["availability_single_homed_pct"], 99.3271);
    assert_eq!(r["reference_cost_per_agent_year_cents"], 10_000);
    // At risk: single-homed with agents: B (99.461 % < 99.5 %, 80 agent-hours lost) first, then
    // E (70 agents ≥ 50, no data).
    let risk = r["sites_at_risk"].as_array().unwrap();
    assert_eq!(risk.len(), 2);
    assert_eq!(risk[0]["site"], "B");
    assert_eq!(risk[0]["agent_hours_lost"], 80.0);
    assert_eq!(
        risk[0]["reason"],
        "mono-raccordé ; disponibilité 99,461 % (< 99,5 %)"
    );
    assert_eq!(risk[1]["site"], "E");
    assert_eq!(risk[1]["reason"], "mono-raccordé ; 70 agents (≥ 50)");
    let notes = &r["notes"];
    assert_eq!(notes["zero_agent_sites"], serde_json::json!(["D"]));
    assert_eq!(notes["links_without_cost"], serde_json::json!(["E-P"]));
    assert_eq!(notes["unknown_ministries"], serde_json::json!(["Culture"]));
    assert_eq!(notes["sites_without_data"], 1);
    assert_eq!(notes["episodes_of_unknown_sites"], 1);
    assert_eq!(notes["per_traffic_volume_fell_back_to_per_agent"], false);
}

#[test]
fn by_ministry_region_technology() {
    let c = start();
    let r = json_report(&c, "2026-10", "ministry");
    // Intérieur: (84100 + 23163) × 12 / 120 = 10726.3 → 10726.
    assert_eq!(group(&r, "Intérieur")["cost_per_agent_year_cents"], 10_726);
    // Finances: only C has agents: 390269 × 12 / 300 = 15610.76 → 15611; total includes D.
    assert_eq!(group(&r, "Finances")["cost_per_agent_year_cents"], 15_611);
    assert_eq!(group(&r, "Finances")["total_cost_cents"], 439_847);
    // Culture: 11973 × 12 / 70 = 2052.51 → 2053.
    assert_eq!(group(&r, "Culture")["cost_per_agent_year_cents"], 2_053);
    let r = json_report(&c, "2026-10", "region");
    assert_eq!(group(&r, "Bretagne")["total_cost_cents"], 107_263);
    assert_eq!(group(&r, "La Réunion")["outage_minutes"], 360.0);
    let r = json_report(&c, "2026-10", "technology");
    // By primary link: fibre A + C, xdsl B, satellite D, 4g E.
    assert_eq!(group(&r, "fibre")["total_cost_cents"], 474_369);
    assert_eq!(group(&r, "fibre")["sites"], 2);
    assert_eq!(group(&r, "4g")["agents"], 70);
}

#[test]
fn outage_across_a_month_end_is_split_and_quarter_costs_triple() {
    let c = start();
    let r = json_report(&c, "2026-09", "national");
    // September: B's outage 30 Sep 22:00 → 24:00 only; A (traffic) and B measured, 720 h each.
    let n = &r["national"];
    assert_eq!(n["outage_minutes"], 120.0);
    assert_eq!(n["outages"], 1);
    assert_eq!(n["sites_with_data"], 2);
    // 1 − 2 / 1440 = 99.861111 %.
    assert_eq!(n["availability_time_pct"], 99.8611);
    let q = json_report(&c, "2026-Q4", "national");
    assert_eq!(q["national"]["link_cost_cents"], 3 * 353_500);
    // Quarter: backbone 300000, gateways 150000, noc 30000, hosting 427000×3/12 = 106750,
    // migration 30000 → 616750.
    assert_eq!(q["national"]["shared_cost_cents"], 616_750);
    assert_eq!(q["period"]["months"], 3);
}

#[test]
fn csv_in_french_locale() {
    let c = start();
    let out = report(
        &c,
        &[
            "--period", "2026-10", "--by", "national", "--format", "csv", "--locale", "fr",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], rie_collector::reports::CSV_COLUMNS.join(";"));
    assert_eq!(
        lines[1],
        "2026-10;national;national;5;490;1;2;81,6327;1730;3535,00;975,00;2055,83;5590,83;124,78;3,23;23,88;100,00;4;2974;99,6469;99,9583;130;4;630;157,5;740,875;4;3;2;66,6667;99,9664;99,3271"
    );
    let en = report(
        &c,
        &["--period", "2026-10", "--by", "ministry", "--format", "csv"],
    );
    let mut rd = en.lines();
    assert_eq!(
        rd.next().unwrap(),
        rie_collector::reports::CSV_COLUMNS.join(",")
    );
    let rows: Vec<&str> = rd.collect();
    // Culture, Finances, Intérieur, then the national row.
    assert_eq!(rows.len(), 4);
    assert!(
        rows[0]
            .starts_with("2026-10,ministry,Culture,1,70,0,0,0,50,0.00,0.00,119.73,119.73,20.53,"),
        "{}",
        rows[0]
    );
    assert!(
        rows[3].starts_with("2026-10,ministry,national,5,490,"),
        "{}",
        rows[3]
    );
}

#[test]
fn api_returns_the_cli_numbers() {
    let c = start();
    for by in [
        "ministry",
        "site",
        "national",
        "region",
        "technology",
        "departement",
    ] {
        let cli = json_report(&c, "2026-10", by);
        let api = c.get(&format!("/api/v1/indicators?period=2026-10&group_by={by}"));
        assert_eq!(api, cli, "group_by={by}");
    }
    let e = ureq::get(&c.url("/api/v1/indicators?period=2026-13"))
        .call()
        .unwrap_err();
    match e {
        ureq::Error::Status(400, r) => {
            let body: Value = r.into_json().unwrap();
            assert!(
                body["error"].as_str().unwrap().contains("2026-Q4"),
                "{body}"
            );
        }
        other => panic!("{other}"),
    }
}

#[test]
fn html_is_self_contained_french_with_charts() {
    let c = start();
    let out = c.dir.path().join("rapport.html");
    report(
        &c,
        &[
            "--period",
            "2026-10",
            "--by",
            "ministry",
            "--format",
            "html",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"fr\">"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "external reference"
    );
    assert!(
        !html.contains("src=") && !html.contains("<link"),
        "external asset"
    );
    assert_eq!(html.matches("<svg").count(), 3);
    // Reference line on the cost chart, the national cost per agent, the methodology.
    assert!(html.contains("référence 100,00 €"));
    assert!(html.contains("124,78\u{a0}€"));
    assert!(html.contains("id=\"methodologie\""));
    assert!(html.contains("DINUM"));
    // Availability distribution: B (99.46 %) in "≥ 99 %", E without data.
    assert!(html.contains("Nombre de sites par tranche de disponibilité"));
    // Outage minutes by département: 974 (360 min) and 35 (270 min).
    assert!(
        html.contains(">360\u{a0}min<") && html.contains(">270\u{a0}min<"),
        "outage bars"
    );
}

#[test]
fn bad_flags_and_files_are_named() {
    let c = start();
    let run = |args: &[&str]| {
        Command::new(bin("rie-collector"))
            .arg("report")
            .args(c.config_args())
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["--period", "2026-13"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--period"));
    let o = run(&["--period", "2026-10", "--by", "planet"]);
    assert_eq!(o.status.code(), Some(2));
    let bad = c.dir.path().join("bad-costs.toml");
    std::fs::write(&bad, "reference_eur_per_agent_year = 0\n").unwrap();
    let o = run(&["--period", "2026-10", "--costs", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad-costs.toml") && err.contains("reference_eur_per_agent_year"),
        "{err}"
    );
    assert!(Path::new(&bad).exists());
}

/// Retention (docs/storage.md): after the collector restarts (its compaction job runs a pass 5 s
/// after start; the rows are written and the "before" figures read within those 5 s), minute
/// rows older than 2 days are in the five-minute tier, those older than 35 days in the hourly
/// tier, data older than 5 years is gone, and the report, `/api/v1/flows/totals` (with its
/// port-class split) and `/api/v1/sites/{id}/top_talkers` give exactly the numbers they gave
/// before.
#[test]
fn compaction_keeps_reports_and_totals() {
    let mut c = start();
    // 2020-10-01: past the 5-year daily horizon.
    c.sql("INSERT INTO flow_minute VALUES (1601510400, 'A', 'probe', 6, 0, 1, 1, 555);");
    // Class split and top talkers of site A on 2 Oct (hour tier) and 1 Nov (five-minute tier
    // until 6 Dec 2026), 2020 (expired).
    let mut sql = String::new();
    for (ms, web, other, talker) in [(t(2, 0), 600, 400, 500), (t(32, 0), 7, 3, 300)] {
        let m = ms / 1000;
        sql += &format!(
            "INSERT INTO flow_class_minute VALUES ({m}, 'A', 'probe', 6, 0, 'web', 1, 1, {web});
             INSERT INTO flow_class_minute VALUES ({m}, 'A', 'probe', 6, 0, 'other', 0, 0, {other});
             INSERT INTO top_talker_minute VALUES ({m}, 'A', '192.0.2.0/24', {talker}, 5);
             INSERT INTO top_talker_minute VALUES ({m}, 'A', '198.51.100.0/24', 1, 1);"
        );
    }
    sql += "INSERT INTO top_talker_minute VALUES (1601510400, 'A', '203.0.113.0/24', 9999, 1);";
    c.sql(&sql);
    let talkers_path =
        "/api/v1/sites/A/top_talkers?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z";
    // Closed months only: a period reaching "now" measures hours up to the wall clock.
    let reports = |c: &Collector| -> Vec<Value> {
        ["2026-09", "2026-10"]
            .iter()
            .flat_map(|p| {
                let r = json_report(c, p, "site");
                [r["groups"].clone(), r["national"].clone()]
            })
            .collect()
    };
    let before = reports(&c);
    let totals_before: Vec<Value> = ["A", "B", "C"].iter().map(|s| c.totals(Some(s))).collect();
    let all_before = c.totals(None);
    let talkers_before = c.get(talkers_path);
    // By hand: 500 + 300 bytes for 192.0.2.0/24; the 2020 prefix first (it expires).
    assert_eq!(talkers_before[0]["prefix"], "203.0.113.0/24");
    assert_eq!(talkers_before[1]["prefix"], "192.0.2.0/24");
    assert_eq!(talkers_before[1]["bytes"], 800);
    assert_eq!(totals_before[0]["by_port_class"]["web"]["bytes"], 607);
    assert_eq!(totals_before[0]["by_port_class"]["other"]["bytes"], 403);
    // Rows the pass must move: minutes before the five-minute horizon (floor_5min(now − 2
    // days)), of which those before floor_hour(now − 35 days) go on to the hourly tier.
    let now_s = rie_common::now_ms() / 1000;
    let horizon = (now_s - 2 * 86_400) / 300 * 300;
    let fine_horizon = (now_s - 35 * 86_400) / 3600 * 3600;
    let older = |c: &Collector, h: i64| -> i64 {
        c.sql_i64(&format!(
            "SELECT COUNT(*) FROM flow_minute WHERE minute < {h}"
        ))
    };
    let (old, fine) = (
        older(&c, fine_horizon),
        older(&c, horizon) - older(&c, fine_horizon),
    );
    assert!(old >= 3, "fixture rows older than 35 days: {old}");
    c.restart_graceful();
    c.wait_until("compaction pass", std::time::Duration::from_secs(30), |c| {
        older(c, horizon) == 0 && c.sql_i64("SELECT COUNT(*) FROM top_talker_minute") == 0
    });
    // Each old row is alone in its hour (and day); the 2020 one went on to the daily tier and
    // expired. The others are alone in their five minutes.
    let count = |sql: &str| -> i64 { c.sql_i64(sql) };
    assert_eq!(
        count("SELECT (SELECT COUNT(*) FROM flow_hour) + (SELECT COUNT(*) FROM flow_day)"),
        old - 1
    );
    assert_eq!(count("SELECT COUNT(*) FROM flow_5min"), fine);
    assert_eq!(count("SELECT COUNT(*) FROM flow_class_minute"), 0);
    assert_eq!(reports(&c), before);
    let totals_after: Vec<Value> = ["A", "B", "C"].iter().map(|s| c.totals(Some(s))).collect();
    assert_eq!(totals_after[1..], totals_before[1..]);
    assert_eq!(
        totals_after[0]["bytes"].as_u64().unwrap(),
        totals_before[0]["bytes"].as_u64().unwrap() - 555
    );
    assert_eq!(
        totals_after[0]["by_port_class"],
        totals_before[0]["by_port_class"]
    );
    assert_eq!(
        c.totals(None)["bytes"].as_u64().unwrap(),
        all_before["bytes"].as_u64().unwrap() - 555
    );
    let talkers_after = c.get(talkers_path);
    assert_eq!(
        talkers_after.as_array().unwrap()[..],
        talkers_before.as_array().unwrap()[1..]
    );
}
