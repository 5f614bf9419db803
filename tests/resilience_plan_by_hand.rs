#![allow(clippy::unwrap_used)]
//! The resilience investment planner on a hand-made inventory (tests/data/resilience_plan) and
//! price catalogue (its backup-prices.toml: 40.00 € an agent-hour, setup over 3 years, 100
//! kbit/s per agent, only Paris dense). Episodes are written into the running collector's
//! store; every figure below is worked out by hand and compared exactly, money to the cent, in
//! `rie-collector report resilience` (JSON, CSV en/fr, HTML) and the API. A second test takes
//! its episodes from the real collector (batches sent by `rie-probe send-batch`).
//!
//! Candidates (B is dual-homed on another operator and technology: not one; D has no agents;
//! G has no data):
//! | site | dép. (zone) | agents | links | case | proposal (yearly cost, cents) |
//! | S1 | 35 | 420 | fibre Orange + 4g Orange 40.00 | same operator | 4g at B-B's 45.00 (SFR): 12 × 4500 + 24000/3 − 12 × 4000 = 14000 |
//! | A  | 35 | 100 | xdsl Orange | single | 4g at B-B's 45.00 (S1-B at 40.00 is Orange, A's operator): 54000 + 8000 = 62000 |
//! | C  | 75 dense | 600 | fibre Orange + 5g Orange 85.00 | same operator | 5g catalogue dense 80.00 (needs 60 Mbit/s: 4g is too small): 96000 + 12000 − 102000 = 6000 |
//! | E  | 2A | 20 | 4g Free 0.00 | single | 5g catalogue 90.00: 108000 + 12000 = 120000 |
//! | F  | 53 | 50 | xdsl SFR | single | 4g catalogue 60.00: 72000 + 8000 = 80000 |
//! | H  | 2A | 10 | xdsl Orange | single | 4g catalogue (E-P has no price, so is no offer): 80000 |
//!
//! Episodes in October 2026 (744 h): S1 outage 10 Oct 08:00–08:30, A 12 Oct 09:00–11:00, C 20
//! Oct 14:00–14:10, E 25 Oct 10:00–10:30, F 2 Oct 10:00–11:00 with an unexplained silence
//! 12:00–13:00 (F measured 743 h), H 28 Oct 15:00–15:05.
//!
//! Value a year = agents × outage ms × 8760 × 4000 c / measured ms, rounded half up once:
//! S1 420 × 1.8e6 → 9,890,322.58 → 9890323; A 100 × 7.2e6 → 9419354.84 → 9419355;
//! C 600 × 6e5 → 4709677.42 → 4709677; E 20 × 1.8e6 → 470967.74 → 470968;
//! F 50 × 3.6e6 over 743 h → 2358008.07 → 2358008; H 10 × 3e5 → 39247.31 → 39247.
//! Net = value − cost: S1 9876323, A 9357355, C 4703677, F 2278008, E 350968, H −40753.
//! Per euro = value / cost: C 784.9462, S1 706.4516, A 151.9251, F 29.4751, E 3.9247, H 0.4906.
//! Payback = setup × 12 / (value − recurring + saved), months: S1 24000×12/9884323 = 0.03,
//! A 24000×12/9365355 = 0.03, C 36000×12/4715677 = 0.09, F 24000×12/2286008 = 0.13,
//! E 36000×12/362968 = 1.19, H never (value below the recurring price).

use std::process::Command;

use rie_common::now_ms;
use rie_e2e::{bin, fixture, rfc3339, run_ok, s1_incident, send_ok, Collector};
use serde_json::{json, Value};

/// 2026-10-01T00:00:00Z.
const OCT1: i64 = 1_790_812_800_000;
const HOUR: i64 = 3_600_000;
const MIN: i64 = 60_000;

fn t(day: i64, hour: i64) -> i64 {
    OCT1 + (day - 1) * 24 * HOUR + hour * HOUR
}

fn start() -> Collector {
    // Inherited by the collector and by every report the tests run.
    std::env::set_var(
        "RIE_BACKUP_PRICES",
        fixture("resilience_plan/backup-prices.toml"),
    );
    Collector::start_with_inventory(&fixture("resilience_plan"))
}

fn with_october_episodes() -> Collector {
    let c = start();
    let ep = |site: &str, kind: &str, s: i64, e: i64| {
        format!(
            "INSERT INTO episodes(site_id, kind, start_ms, end_ms) VALUES ('{site}', '{kind}', {s}, {e});"
        )
    };
    let mut sql = String::new();
    sql += &ep("S1", "outage", t(10, 8), t(10, 8) + 30 * MIN);
    sql += &ep("A", "outage", t(12, 9), t(12, 11));
    sql += &ep("C", "outage", t(20, 14), t(20, 14) + 10 * MIN);
    sql += &ep("E", "outage", t(25, 10), t(25, 10) + 30 * MIN);
    sql += &ep("F", "outage", t(2, 10), t(2, 11));
    sql += &ep("F", "silent", t(2, 12), t(2, 13));
    sql += &ep("H", "outage", t(28, 15), t(28, 15) + 5 * MIN);
    // B is not a candidate whatever happens to it.
    sql += &ep("B", "outage", t(3, 0), t(3, 5));
    c.sql(&sql);
    c
}

fn plan(c: &Collector, args: &[&str]) -> String {
    run_ok(
        Command::new(bin("rie-collector"))
            .args(["report", "resilience"])
            .args(c.config_args())
            .args(args),
    )
}

fn plan_json(c: &Collector, args: &[&str]) -> Value {
    let mut a = vec!["--format", "json"];
    a.extend_from_slice(args);
    serde_json::from_str(&plan(c, &a)).unwrap()
}

const OCTOBER: [&str; 4] = ["--from", "2026-10-01", "--to", "2026-11-01"];

fn sites(p: &Value) -> Vec<&str> {
    p["investments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["site"].as_str().unwrap())
        .collect()
}

fn row<'a>(p: &'a Value, site: &str) -> &'a Value {
    p["investments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["site"] == site)
        .unwrap_or_else(|| panic!("no {site} in {p}"))
}

#[test]
fn ranking_and_every_euro_by_hand() {
    let c = with_october_episodes();
    let p = plan_json(&c, &OCTOBER);
    assert_eq!(sites(&p), ["S1", "A", "C", "F", "E", "H"]);
    // Per site: [rank by net, rank per euro], case, proposal [technology, source, contracted
    // link, monthly, setup], cost a year [recurring, setup, saved, total], [value a year, net a
    // year, benefit per euro, payback months].
    let got: Vec<Value> = p["investments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let o = &r["proposal"];
            json!({
                "site": r["site"],
                "ranks": [r["rank_by_net"], r["rank_by_per_euro"]],
                "case": r["case"],
                "offer": [o["technology"], o["source"], o["contracted_link"], o["monthly_cents"], o["setup_cents"]],
                "cost": [r["recurring_per_year_cents"], r["setup_per_year_cents"], r["saved_backup_per_year_cents"], r["yearly_cost_cents"]],
                "benefit": [r["value_per_year_cents"], r["net_benefit_per_year_cents"], r["benefit_per_euro"], r["payback_months"]],
            })
        })
        .collect();
    let expect = json!([
        {"site": "S1", "ranks": [1, 2], "case": "backup_same_operator", "offer": ["4g", "contracted", "B-B", 4500, 24000], "cost": [54000, 8000, 48000, 14000], "benefit": [9_890_323, 9_876_323, 706.4516, 0.03]},
        {"site": "A", "ranks": [2, 3], "case": "single_homed", "offer": ["4g", "contracted", "B-B", 4500, 24000], "cost": [54000, 8000, 0, 62000], "benefit": [9_419_355, 9_357_355, 151.9251, 0.03]},
        {"site": "C", "ranks": [3, 1], "case": "backup_same_operator", "offer": ["5g", "catalogue", null, 8000, 36000], "cost": [96000, 12000, 102_000, 6000], "benefit": [4_709_677, 4_703_677, 784.9462, 0.09]},
        {"site": "F", "ranks": [4, 4], "case": "single_homed", "offer": ["4g", "catalogue", null, 6000, 24000], "cost": [72000, 8000, 0, 80000], "benefit": [2_358_008, 2_278_008, 29.4751, 0.13]},
        {"site": "E", "ranks": [5, 5], "case": "single_homed", "offer": ["5g", "catalogue", null, 9000, 36000], "cost": [108_000, 12000, 0, 120_000], "benefit": [470_968, 350_968, 3.9247, 1.19]},
        {"site": "H", "ranks": [6, 6], "case": "single_homed", "offer": ["4g", "catalogue", null, 6000, 24000], "cost": [72000, 8000, 0, 80000], "benefit": [39_247, -40_753, 0.4906, null]}
    ]);
    assert_eq!(Value::Array(got), expect);
    for r in p["investments"].as_array().unwrap() {
        assert_eq!(r["proposal"]["undersized"], false, "{}", r["site"]);
    }
    // Agent-hours: S1 420 × 0.5 h = 210, × 8760 / 744 = 2472.58 a year; F 50 × 1 h over
    // 743 h measured = 589.50 a year.
    assert_eq!(row(&p, "S1")["agent_hours_lost"], 210.0);
    assert_eq!(row(&p, "S1")["agent_hours_lost_per_year"], 2472.58);
    assert_eq!(row(&p, "S1")["measured_hours"], 744.0);
    assert_eq!(row(&p, "F")["measured_hours"], 743.0);
    assert_eq!(row(&p, "F")["agent_hours_lost_per_year"], 589.5);
    assert_eq!(row(&p, "C")["zone"], "dense");
    assert_eq!(row(&p, "C")["region"], "Île-de-France");
    assert_eq!(row(&p, "S1")["current_backup"]["link"], "S1-B");
    // Worthwhile (net > 0): S1, A, C, F, E. Cost 14000 + 62000 + 6000 + 80000 + 120000;
    // agent-hours 2472.5806 + 2354.8387 + 1177.4194 + 589.5020 + 117.7419 = 6712.08.
    let n = &p["national"];
    assert_eq!(
        n["worthwhile"],
        json!({"investments": 5, "agents": 1190, "yearly_cost_cents": 282_000,
               "agent_hours_per_year": 6712.08, "value_per_year_cents": 26_848_331,
               "net_benefit_per_year_cents": 26_566_331})
    );
    // All candidates add H: 9.8118 agent-hours a year.
    assert_eq!(
        n["all_candidates"],
        json!({"investments": 6, "agents": 1200, "yearly_cost_cents": 362_000,
               "agent_hours_per_year": 6721.89, "value_per_year_cents": 26_887_578,
               "net_benefit_per_year_cents": 26_525_578})
    );
    assert_eq!(
        n["headline"],
        "2\u{a0}820,00\u{a0}€ par an rachètent 6\u{a0}712,08 heures-agent de disponibilité par an"
    );
    assert_eq!(p["period"]["days"], 31.0);
    assert_eq!(p["period"]["confidence"], "medium");
    assert_eq!(p["period"]["low_confidence"], false);
    assert_eq!(p["assumptions"]["agent_hour_cost_cents"], 4000);
    assert_eq!(p["notes"]["sites_without_data"], json!(["G"]));
    assert_eq!(p["notes"]["zero_agent_sites"], json!(["D"]));

    // Ranked by benefit per euro: C first; the ranks stay the same numbers.
    let q = plan_json(&c, &[&OCTOBER[..], &["--rank-by", "per_euro"]].concat());
    assert_eq!(sites(&q), ["C", "S1", "A", "F", "E", "H"]);
    assert_eq!(q["investments"][0]["rank_by_net"], 3);
    assert_eq!(q["national"], p["national"]);

    // Filters: ministry and région, with their own totals.
    let m = plan_json(&c, &[&OCTOBER[..], &["--ministry", "Intérieur"]].concat());
    assert_eq!(sites(&m), ["S1", "A"]);
    assert_eq!(m["national"]["worthwhile"]["yearly_cost_cents"], 76_000);
    assert_eq!(
        m["national"]["worthwhile"]["net_benefit_per_year_cents"],
        19_233_678
    );
    assert_eq!(m["filter"]["ministry"], "Intérieur");
    let r = plan_json(&c, &[&OCTOBER[..], &["--region", "Corse"]].concat());
    assert_eq!(sites(&r), ["E", "H"]);
    assert_eq!(r["national"]["worthwhile"]["investments"], 1);
    assert_eq!(r["investments"][1]["rank_by_net"], 2);
}

#[test]
fn short_period_is_flagged_low_confidence_in_every_format() {
    let c = with_october_episodes();
    let four_days = ["--from", "2026-10-01", "--to", "2026-10-05"];
    let p = plan_json(&c, &four_days);
    // Only F has episodes in these 96 h (95 measured): 50 × 3.6e6 × 8760 × 4000 / 3.42e8 =
    // 18442105.26 → 18442105 c a year.
    assert_eq!(sites(&p), ["F"]);
    let f = row(&p, "F");
    assert_eq!(f["value_per_year_cents"], 18_442_105);
    assert_eq!(f["net_benefit_per_year_cents"], 18_362_105);
    assert_eq!(f["agent_hours_lost_per_year"], 4610.53);
    assert_eq!(p["period"]["days"], 4.0);
    assert_eq!(p["period"]["confidence"], "low");
    assert_eq!(p["period"]["low_confidence"], true);
    assert_eq!(
        p["period"]["warning"],
        "Faible confiance : 4 jours d'épisodes seulement (moins de 7) ; les chiffres annualisés extrapolent une période trop courte."
    );
    let csv = plan(&c, &[&four_days[..], &["--format", "csv"]].concat());
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    for l in &lines[1..] {
        assert!(
            l.ends_with(",2026-10-01T00:00:00Z,2026-10-05T00:00:00Z,4,low"),
            "{l}"
        );
    }
    let html = plan(&c, &[&four_days[..], &["--format", "html"]].concat());
    assert!(html.contains("<p class=\"alerte\" id=\"faible-confiance\">Faible confiance : 4 jours"));
    assert!(html.contains("confiance <strong>faible</strong>"));
    // A month is not flagged.
    let html = plan(&c, &[&OCTOBER[..], &["--format", "html"]].concat());
    assert!(!html.contains("faible-confiance"));
    assert!(html.contains("confiance <strong>moyenne</strong>"));
}

#[test]
fn csv_en_and_fr_and_html() {
    let c = with_october_episodes();
    let csv = plan(&c, &[&OCTOBER[..], &["--format", "csv"]].concat());
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 8, "{csv}");
    assert_eq!(lines[0], rie_collector::reports::PLAN_CSV_COLUMNS.join(","));
    assert_eq!(
        lines[1],
        "1,2,S1,Préfecture d'Ille-et-Vilaine – Rennes,Intérieur,35,Bretagne,mainland,420,backup_same_operator,fibre,Orange,4g,Orange,4g,contracted,B-B,45.00,240.00,540.00,80.00,480.00,140.00,744,30,210,2472.58,98903.23,98763.23,706.4516,0.03,false,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,31,medium"
    );
    assert_eq!(
        lines[6],
        "6,6,H,Archives de Corse-du-Sud,Culture,2A,Corse,mainland,10,single_homed,xdsl,Orange,,,4g,catalogue,,60.00,240.00,720.00,80.00,0.00,800.00,744,5,0.8333,9.81,392.47,-407.53,0.4906,,false,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,31,medium"
    );
    assert_eq!(
        lines[7],
        ",,national,\"2\u{a0}820,00\u{a0}€ par an rachètent 6\u{a0}712,08 heures-agent de disponibilité par an\",,,,,1190,worthwhile,,,,,,,,,,,,,2820.00,,,,6712.08,268483.31,265663.31,,,,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,31,medium"
    );
    let fr = plan(
        &c,
        &[&OCTOBER[..], &["--format", "csv", "--locale", "fr"]].concat(),
    );
    let l1 = fr.lines().nth(1).unwrap();
    assert!(
        l1.starts_with("1;2;S1;Préfecture d'Ille-et-Vilaine – Rennes;Intérieur;35;Bretagne;mainland;420;backup_same_operator;fibre;Orange;4g;Orange;4g;contracted;B-B;45,00;240,00;540,00;80,00;480,00;140,00;744;30;210;2472,58;98903,23;98763,23;706,4516;0,03;false;"),
        "{l1}"
    );
    let out = c.dir.path().join("plan.html");
    plan(
        &c,
        &[
            &OCTOBER[..],
            &["--format", "html", "--out", out.to_str().unwrap()],
        ]
        .concat(),
    );
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"fr\">"));
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src="));
    assert!(html.contains(
        "<strong>2\u{a0}820,00\u{a0}€ par an rachètent 6\u{a0}712,08 heures-agent de disponibilité par an</strong>"
    ));
    // Six rows; S1's figures in French.
    assert_eq!(html.matches("<tr><td>").count() - METHOD_ROWS, 6);
    assert!(html.contains("<tr><td>S1</td>"));
    assert!(html.contains("<td>98\u{a0}763,23\u{a0}€</td>"));
    assert!(html.contains("<td>jamais</td>"));
    assert!(html.contains("id=\"methodologie\""));
    assert!(html.contains("Heure-agent valorisée à 40,00\u{a0}€"));
}

/// Rows of the methodology table of the HTML page.
const METHOD_ROWS: usize = 9;

#[test]
fn api_serves_the_cli_document() {
    let c = with_october_episodes();
    for (q, args) in [
        ("from=2026-10-01&to=2026-11-01", vec![]),
        (
            "from=2026-10-01T00:00:00Z&to=2026-11-01&rank_by=per_euro",
            vec!["--rank-by", "per_euro"],
        ),
        (
            "from=2026-10-01&to=2026-11-01&ministry=Culture",
            vec!["--ministry", "Culture"],
        ),
        (
            "from=2026-10-01&to=2026-11-01&region=Bretagne",
            vec!["--region", "Bretagne"],
        ),
        ("from=2026-10-01&to=2026-11-01&limit=2", vec!["--top", "2"]),
    ] {
        let api = c.get(&format!("/api/v1/indicators/resilience-plan?{q}"));
        let cli = plan_json(&c, &[&OCTOBER[..], &args[..]].concat());
        assert_eq!(api, cli, "{q}");
    }
    // The first two, with the totals of all six.
    let top = c.get("/api/v1/indicators/resilience-plan?from=2026-10-01&to=2026-11-01&limit=2");
    assert_eq!(sites(&top), ["S1", "A"]);
    assert_eq!(top["national"]["all_candidates"]["investments"], 6);
    for (q, needle) in [
        ("from=octobre&to=2026-11-01", "2026-10-01T00:00:00Z"),
        ("from=2026-11-01&to=2026-10-01", "before"),
        ("from=2026-10-01&to=2026-11-01&rank_by=price", "per_euro"),
    ] {
        match ureq::get(&c.url(&format!("/api/v1/indicators/resilience-plan?{q}"))).call() {
            Err(ureq::Error::Status(400, r)) => {
                let body: Value = r.into_json().unwrap();
                assert!(
                    body["error"].as_str().unwrap().contains(needle),
                    "{q}: {body}"
                );
            }
            other => panic!("{q}: {other:?}"),
        }
    }
}

#[test]
fn bad_catalogue_is_refused_naming_file_key_and_fix() {
    let c = start();
    let good = std::fs::read_to_string(fixture("resilience_plan/backup-prices.toml")).unwrap();
    let run = |text: &str| {
        let bad = c.dir.path().join("bad-prices.toml");
        std::fs::write(&bad, text).unwrap();
        let o = Command::new(bin("rie-collector"))
            .args(["report", "resilience"])
            .args(c.config_args())
            .args(OCTOBER)
            .arg("--backup-prices")
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let sat = good.find("[prices.satellite]").unwrap();
    let e = run(&good[..sat]);
    assert!(
        e.contains("bad-prices.toml: key `prices.satellite`: technology satellite has no price")
            && e.contains("add [prices.satellite] with bandwidth_mbps, setup_eur and monthly_eur"),
        "{e}"
    );
    let e = run(&good.replace("mainland = 60,", "mainland = -60,"));
    assert!(
        e.contains("bad-prices.toml: key `prices.4g.monthly_eur.mainland`: -60 is negative; write the price in euros excluding VAT, zero or more"),
        "{e}"
    );
    let e = run(&good.replace("overseas = 150", "outremer = 150"));
    assert!(
        e.contains("bad-prices.toml: key `prices.5g.monthly_eur.outremer`: \"outremer\" is not an access zone; zones are dense, mainland, overseas, collectivity"),
        "{e}"
    );
    // The collector refuses to start on it too (exit 2, before it opens its store).
    let bad = c.dir.path().join("bad-prices.toml");
    std::fs::write(&bad, good.replace("[prices.4g]", "[prices.4G]")).unwrap();
    let o = Command::new(bin("rie-collector"))
        .arg("serve")
        .args(c.config_args())
        .args([
            "--probe-listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .arg("--backup-prices")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("bad-prices.toml: key `prices.4G`: \"4G\" is not a technology; use one of fibre, xdsl, 4g, 5g, satellite"),
        "{e}"
    );
    let o = Command::new(bin("rie-collector"))
        .args(["report", "resilience"])
        .args(c.config_args())
        .args(["--from", "2026-10-05", "--to", "2026-10-01"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("from must be before to"));
}

/// Episodes recorded by the real collector from batches of `rie-probe send-batch`: S1's
/// same-operator backup fails while carrying (2 minutes of outage, `s1_incident`). Over the 7
/// days up to the incident's end (168 h measured): 420 × 120,000 ms × 8760 × 4000 c /
/// 604,800,000 ms = 2,920,000 c a year exactly, 730 agent-hours.
#[test]
fn plan_from_episodes_the_collector_recorded() {
    let c = start();
    let cfg = c.probe_config("S1");
    let t0 = now_ms() / 1000 * 1000 - 600_000;
    assert_eq!(send_ok(&cfg, 7, &s1_incident(t0)).len(), 6);
    let to = t0 + 600_000;
    let (from, to) = (rfc3339(to - 7 * 24 * HOUR), rfc3339(to));
    let p = plan_json(&c, &["--from", &from, "--to", &to]);
    assert_eq!(sites(&p), ["S1"]);
    let s1 = row(&p, "S1");
    assert_eq!(s1["outage_minutes"], 2.0);
    assert_eq!(s1["measured_hours"], 168.0);
    assert_eq!(s1["agent_hours_lost_per_year"], 730.0);
    assert_eq!(s1["value_per_year_cents"], 2_920_000);
    assert_eq!(s1["yearly_cost_cents"], 14_000);
    assert_eq!(s1["net_benefit_per_year_cents"], 2_906_000);
    // 2920000 / 14000 = 208.571428…; 24000 × 12 / (2920000 − 54000 + 48000) = 0.0988 month.
    assert_eq!(s1["benefit_per_euro"], 208.5714);
    assert_eq!(s1["payback_months"], 0.1);
    assert_eq!(p["period"]["confidence"], "medium");
    let api = c.get(&format!(
        "/api/v1/indicators/resilience-plan?from={}&to={}",
        from.replace('+', "%2B"),
        to.replace('+', "%2B")
    ));
    assert_eq!(api, p);
}

/// The status page's plan section, rendered by a real headless Chromium (`--dump-dom` after
/// the page's scripts ran): the headline and the first investment of the last 30 days. S1's
/// yearly cost (140.00 €) does not depend on when the page is read; its value does (the 30
/// days end now), so only the cost is compared to the cent here. Needs Debian's `chromium`.
#[test]
fn status_page_shows_the_plan() {
    let c = start();
    let cfg = c.probe_config("S1");
    let t0 = now_ms() / 1000 * 1000 - 600_000;
    assert_eq!(send_ok(&cfg, 8, &s1_incident(t0)).len(), 6);
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(c.url("/"))
        .output()
        .unwrap_or_else(|e| {
            panic!("chromium not found ({e}): install it with `apt-get install chromium`")
        });
    let dom = String::from_utf8_lossy(&out.stdout);
    let headline = dom
        .split("<p id=\"plan-headline\" class=\"plan-headline\">")
        .nth(1)
        .and_then(|s| s.split("</p>").next())
        .unwrap_or_else(|| panic!("no plan headline in the page:\n{dom}"));
    assert!(
        // The DOM serialiser writes no-break spaces as `&nbsp;`.
        headline.starts_with("140,00&nbsp;€ par an rachètent ")
            && headline.ends_with(" heures-agent de disponibilité par an"),
        "{headline}"
    );
    let row = dom
        .split("<tr data-site=\"S1\">")
        .nth(1)
        .and_then(|s| s.split("</tr>").next())
        .unwrap_or_else(|| panic!("no S1 row in the plan table:\n{dom}"));
    assert!(
        row.starts_with("<td>S1 – Préfecture d'Ille-et-Vilaine – Rennes</td><td>Intérieur</td><td>4g (tarif de B-B)</td><td class=\"num\">140,00&nbsp;€</td>"),
        "{row}"
    );
    assert!(dom.contains(
        "30 jours d'épisodes, confiance moyenne ; 1 investissements rentables sur 1 candidats."
    ));
}
