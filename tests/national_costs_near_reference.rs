#![allow(clippy::unwrap_used)]
//! The default cost model (configs/costs.toml = built-in defaults) applied to the generated
//! national inventory (`inventory generate --sites 14000 --seed 1`) lands near the DINUM
//! reference of 100 €/agent/year; the exact figure is checked against an independent
//! computation over the CSV files, and per-site costs sum to the national total to the cent.
//! The demo's inventory (300 sites, a sample of the nation) bears 300/14,000 of the national
//! costs, says so in its notes, and its €/agent/year lands within 5 % of the national one.

use std::process::Command;

use rie_e2e::{bin, run_ok};
use serde_json::Value;

/// Independent: Σ monthly_cost_eur (parsed as text into cents) × 12, plus the shared national
/// costs of configs/costs.toml for a year (10 + 12 + 9 + 2 M€, and 15 M€ / 5 years), over
/// Σ agents of sites with agents.
fn by_hand(dir: &std::path::Path) -> (i64, i64, u64) {
    let mut links = csv::Reader::from_path(dir.join("links.csv")).unwrap();
    let mut cents: i64 = 0;
    for r in links.records() {
        let r = r.unwrap();
        let (e, c) = r[6].split_once('.').unwrap_or((&r[6], "0"));
        let c = format!("{c:0<2}");
        cents += e.parse::<i64>().unwrap() * 100 + c.parse::<i64>().unwrap();
    }
    let mut sites = csv::Reader::from_path(dir.join("sites.csv")).unwrap();
    let agents: u64 = sites
        .records()
        .map(|r| r.unwrap()[4].parse::<u64>().unwrap())
        .sum();
    let shared = (10_000_000 + 12_000_000 + 9_000_000 + 2_000_000 + 15_000_000 / 5) * 100;
    (cents * 12, shared, agents)
}

/// A generated inventory of `sites` sites (seed 1, as the demo's) on an empty store.
struct Generated {
    dir: tempfile::TempDir,
}

impl Generated {
    fn new(sites: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        run_ok(
            Command::new(bin("rie-collector"))
                .args(["inventory", "generate", "--sites", &sites.to_string()])
                .args(["--seed", "1", "--out"])
                .arg(dir.path().join("inv")),
        );
        rie_collector::store::open(&dir.path().join("data/rie.db")).unwrap();
        Self { dir }
    }

    fn inv(&self) -> std::path::PathBuf {
        self.dir.path().join("inv")
    }

    /// `rie-collector report` for 2026 with the default cost model.
    fn report(&self, by: &str, format: &str) -> String {
        run_ok(
            Command::new(bin("rie-collector"))
                .env_remove("RIE_COSTS")
                .env_remove("RIE_CONFIG")
                .args(["report", "--period", "2026", "--format", format, "--by", by])
                .arg("--inventory")
                .arg(self.inv())
                .arg("--data-dir")
                .arg(self.dir.path().join("data")),
        )
    }

    fn json(&self, by: &str) -> Value {
        serde_json::from_str(&self.report(by, "json")).unwrap()
    }
}

#[test]
fn generated_national_inventory_lands_near_100_euros_per_agent() {
    let nation = Generated::new(14_000);
    let inv = nation.inv();
    let report = |by: &str| nation.json(by);
    let r = report("national");
    let n = &r["national"];
    let (links, shared, agents) = by_hand(&inv);
    assert_eq!(agents, 999_902);
    assert_eq!(n["agents"], agents);
    assert_eq!(n["link_cost_cents"], links);
    assert_eq!(n["shared_cost_cents"], shared);
    let total = links + shared;
    assert_eq!(n["total_cost_cents"], total);
    assert_eq!(n["sites_zero_agents"], 0);
    // Rounded half up to the cent.
    let per_agent = (2 * i128::from(total) + i128::from(agents)) / (2 * i128::from(agents));
    assert_eq!(n["cost_per_agent_year_cents"], per_agent as i64);
    // 63,915,991.68 € of links + 36,000,000 € shared = 99,915,991.68 € / 999,902 agents.
    assert_eq!(total, 9_991_599_168);
    assert_eq!(n["cost_per_agent_year_cents"], 9_993);
    // Stated band: within ±5 % of the 100 € reference.
    let v = n["cost_per_agent_year_cents"].as_i64().unwrap();
    assert!((9_500..=10_500).contains(&v), "{v}");
    // No traffic in this empty store: the per_traffic_volume key used agents, and said so.
    assert_eq!(
        r["notes"]["per_traffic_volume_fell_back_to_per_agent"],
        true
    );
    assert_eq!(r["notes"]["sites_without_data"], 14_000);
    assert_eq!(r["notes"]["unknown_ministries"], serde_json::json!([]));
    assert_eq!(n["availability_time_pct"], Value::Null);
    // The nation bears the whole of the national costs.
    assert_eq!(
        r["notes"]["national_share"],
        serde_json::json!({"sites": 14_000, "national_sites": 14_000, "scaled": false})
    );

    let s = report("site");
    let rows = s["groups"].as_array().unwrap();
    assert_eq!(rows.len(), 14_000);
    let sum: i64 = rows
        .iter()
        .map(|g| g["total_cost_cents"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, total);
}

#[test]
fn the_demo_sample_bears_its_share_and_lands_near_the_national_figure() {
    let demo = Generated::new(300);
    let r = demo.json("national");
    let n = &r["national"];
    let (links, _, agents) = by_hand(&demo.inv());
    assert_eq!(
        r["notes"]["national_share"],
        serde_json::json!({"sites": 300, "national_sites": 14_000, "scaled": true})
    );
    // Each national cost × 300 / 14,000 for the year, rounded half up to the cent, by hand:
    // backbone 10 M€ → 214,285.71 €; internet security 12 M€ → 257,142.86 €; NOC 9 M€ →
    // 192,857.14 €; hosting 2 M€ → 42,857.14 €; modernisation 15 M€ / 5 → 64,285.71 €.
    let items: Vec<i64> = r["cost_items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cents"].as_i64().unwrap())
        .collect();
    assert_eq!(
        items,
        vec![21_428_571, 25_714_286, 19_285_714, 4_285_714, 6_428_571]
    );
    let shared: i64 = items.iter().sum();
    assert_eq!(n["shared_cost_cents"], shared);
    assert_eq!(n["link_cost_cents"], links);
    let total = links + shared;
    assert_eq!(n["total_cost_cents"], total);
    let per_agent = (2 * i128::from(total) + i128::from(agents)) / (2 * i128::from(agents));
    assert_eq!(n["cost_per_agent_year_cents"], per_agent as i64);
    // Within 5 % of the national figure on 14,000 sites (9,993 cents, checked above).
    let national = Generated::new(14_000).json("national")["national"]["cost_per_agent_year_cents"]
        .as_i64()
        .unwrap();
    let demo_figure = per_agent as i64;
    assert!(
        (demo_figure - national).abs() * 100 <= 5 * national,
        "demo {demo_figure} cents/agent/year vs national {national}"
    );
    println!("€/agent/year: demo sample {demo_figure} cents, nation {national} cents");
    // The HTML report says so.
    let html = demo.report("national", "html");
    assert!(
        html.contains("L’inventaire est un échantillon : 300 sites sur les 14\u{a0}000 du RIE"),
        "{html}"
    );
}
