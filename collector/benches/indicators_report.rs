//! National report benchmark: `rie-collector report` for 14,000 sites (generated inventory,
//! seed 1) over the year 2026, on a store holding a year of data: one `flow_minute` and one
//! `link_minute` row per site per day (10.2 M rows) and ~67,000 episodes (every site has
//! outages and silences, dual-homed sites failovers).
//!
//! Run: `cargo bench -p rie-collector --bench indicators_report` (figures in docs/performance.md).

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rie_collector::indicators::{self, CostModel, GroupBy, Period};
use rie_collector::inventory::{self, GenerateOptions};
use rie_collector::reports::{self, Format, Locale, Request};
use rie_proto::LinkRole;

const ROUNDS: usize = 3;
const DAY_MS: i64 = 86_400_000;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    inventory::generate(&GenerateOptions::new(14_000, 1), &dir.path().join("inv"))
        .expect("generate");
    let inv = inventory::load_dir(&dir.path().join("inv")).expect("load");
    let conn = rie_collector::store::open(&dir.path().join("rie.db")).expect("open");
    let period = Period::parse("2026").expect("period");
    let t0 = Instant::now();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut episodes = 0u64;
    conn.execute_batch("PRAGMA synchronous=OFF; BEGIN")
        .expect("begin");
    {
        let mut flow = conn
            .prepare("INSERT INTO flow_minute VALUES (?1, ?2, 'probe', 6, 0, 10, 1000, ?3)")
            .expect("prepare");
        let mut link = conn
            .prepare("INSERT INTO link_minute VALUES (?1, ?2, ?3, 60, 60, 60, 600000, 60, 20000)")
            .expect("prepare");
        for day in 0..365 {
            let minute = (period.start_ms + day * DAY_MS) / 1000 + 12 * 3600;
            for s in &inv.sites {
                let bytes = u64::from(s.agents) * rng.gen_range(1_000_000..50_000_000u64);
                flow.execute(rusqlite::params![minute, s.id.as_str(), bytes as i64])
                    .expect("flow");
                link.execute(rusqlite::params![
                    minute,
                    s.id.as_str(),
                    format!("{}-P", s.id)
                ])
                .expect("link");
            }
        }
        let mut ep = conn
            .prepare("INSERT INTO episodes(site_id, kind, link_id, start_ms, end_ms) VALUES (?1, ?2, NULL, ?3, ?4)")
            .expect("prepare");
        for s in &inv.sites {
            let dual = inv.links_of(&s.id).any(|l| l.role == LinkRole::Backup);
            let counts = [
                rng.gen_range(0..5u32),
                rng.gen_range(0..3),
                rng.gen_range(0..3),
                if dual { rng.gen_range(0..6) } else { 0 },
            ];
            let mut add = |kind: &str, n: u32, max_min: i64| {
                for _ in 0..n {
                    let start = period.start_ms + rng.gen_range(0..365 * DAY_MS);
                    let end = start + rng.gen_range(1..=max_min) * 60_000;
                    ep.execute(rusqlite::params![s.id.as_str(), kind, start, end])
                        .expect("episode");
                    episodes += 1;
                }
            };
            add("outage", counts[0], 480);
            add("silent", counts[1], 60);
            add("degraded", counts[2], 120);
            add("failover", counts[3], 600);
        }
    }
    conn.execute_batch("COMMIT; PRAGMA synchronous=FULL; ANALYZE")
        .expect("commit");
    eprintln!(
        "store built in {:.1} s: {} sites, {} flow rows, {} link rows, {episodes} episodes",
        t0.elapsed().as_secs_f64(),
        inv.sites.len(),
        365 * inv.sites.len(),
        365 * inv.sites.len()
    );

    let reader = rie_collector::store::Reader::open(&dir.path().join("rie.db")).expect("reader");
    let model = CostModel::default();
    let now = period.end_ms + DAY_MS;
    let mut load = Vec::new();
    let mut compute = Vec::new();
    let mut json = Vec::new();
    let mut html = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let inp = indicators::load_inputs(&reader, &inv, &period).expect("inputs");
        load.push(t.elapsed());
        let t = Instant::now();
        let r = indicators::compute(&inv, &model, &period, now, &inp, GroupBy::Site);
        compute.push(t.elapsed());
        assert_eq!(r.groups.len(), 14_000);
        for (format, out) in [(Format::Json, &mut json), (Format::Html, &mut html)] {
            let t = Instant::now();
            let text = reports::build(
                &reader,
                &Request {
                    inventory: &inv,
                    model: &model,
                    period: &period,
                    now_ms: now,
                    group_by: GroupBy::Ministry,
                    format,
                    locale: Locale::Fr,
                },
                &|_| {},
            )
            .expect("report");
            out.push(t.elapsed());
            assert!(text.len() > 1_000);
        }
    }
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1000.0
    };
    println!("national report, 14,000 sites, year 2026 (median of {ROUNDS}):");
    println!(
        "  read store (episodes, traffic, measured sites): {:8.0} ms",
        med(&mut load)
    );
    println!(
        "  compute indicators, per site:                   {:8.0} ms",
        med(&mut compute)
    );
    println!(
        "  full report --by ministry --format json:        {:8.0} ms",
        med(&mut json)
    );
    println!(
        "  full report --by ministry --format html:        {:8.0} ms",
        med(&mut html)
    );
}
