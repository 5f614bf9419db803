#![allow(clippy::unwrap_used)]
//! The default cost model (configs/costs.toml = built-in defaults) applied to the generated
//! national inventory (`inventory generate --sites 14000 --seed 1`) lands near the DINUM
//! reference of 100 €/agent/year; the exact figure is checked against an independent
//! computation over the CSV files, and per-site costs sum to the national total to the cent.

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

#[test]
fn generated_national_inventory_lands_near_100_euros_per_agent() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv");
    run_ok(
        Command::new(bin("rie-collector"))
            .args([
                "inventory",
                "generate",
                "--sites",
                "14000",
                "--seed",
                "1",
                "--out",
            ])
            .arg(&inv),
    );
    let data = dir.path().join("data");
    rie_collector::store::open(&data.join("rie.db")).unwrap();
    let report = |by: &str| -> Value {
        let out = run_ok(
            Command::new(bin("rie-collector"))
                .env_remove("RIE_COSTS")
                .env_remove("RIE_CONFIG")
                .args(["report", "--period", "2026", "--format", "json", "--by", by])
                .arg("--inventory")
                .arg(&inv)
                .arg("--data-dir")
                .arg(&data),
        );
        serde_json::from_str(&out).unwrap()
    };
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

    let s = report("site");
    let rows = s["groups"].as_array().unwrap();
    assert_eq!(rows.len(), 14_000);
    let sum: i64 = rows
        .iter()
        .map(|g| g["total_cost_cents"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, total);
}
