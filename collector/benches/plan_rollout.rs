//! Cost of driving a staged rollout over the national inventory (14,000 sites): computing the
//! release order (the canary picked across ministries, technologies and départements) and one
//! look at its progress (every site's plan status and state classified), which the
//! collectors do every second while a rollout runs or stays halted.
//!
//! Run: `cargo bench -p rie-collector --bench plan_rollout` (figures in docs/performance.md).

use std::collections::HashMap;
use std::time::Instant;

use rie_collector::plans::rollout::{self, RolloutParams, RolloutState};
use rie_collector::sites::{SiteRegistry, SiteThresholds};
use rie_collector::store::plans::StatusRow;

mod common;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (inv, _) = common::national(dir.path());
    let sites = SiteRegistry::new(inv.clone(), SiteThresholds::default());
    for canary in ["1%", "10%"] {
        let p = RolloutParams {
            scope: "national".into(),
            canary: canary.into(),
            waves: "50%,100%".into(),
            wave_interval: "10m".into(),
            max_bad: "2%".into(),
            canary_sites: Vec::new(),
        };
        let (mut r, _) = rollout::new_rollout(&p, &inv, "bench", 0).expect("rollout");
        r.id = 1;
        r.version = 2;
        r.state = RolloutState::Running;
        r.wave = 1;
        let mut order_ms = Vec::new();
        let mut released = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let (_, counts) = rollout::plan_of(&inv, &r).expect("plan");
            order_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            released = counts[1];
        }
        let release = rollout::plan_of(&inv, &r).expect("plan");
        let statuses: HashMap<String, StatusRow> = inv
            .sites
            .iter()
            .map(|s| {
                let id = s.id.as_str().to_string();
                let row = StatusRow {
                    site: id.clone(),
                    version: 2,
                    state: "applied".into(),
                    reason: String::new(),
                    updated_ms: 0,
                };
                (id, row)
            })
            .collect();
        let mut look_ms = Vec::new();
        let mut applied = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let views = sites.views(rie_common::now_ms());
            let prog = rollout::progress(&inv, &r, &release, &statuses, &views);
            look_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            applied = prog.waves.iter().map(|w| w.applied).sum::<usize>();
        }
        println!(
            "plan_rollout: {} sites, canary {canary}: release order median {:.1} ms; one look at the progress (site views + classification, {applied} of {released} released applied) median {:.1} ms",
            inv.sites.len(),
            median(order_ms),
            median(look_ms),
        );
    }
}
