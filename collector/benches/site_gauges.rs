//! Scrape cost of `/metrics` with the per-site and per-link series of the whole national
//! inventory (14,000 sites, 18,444 links), every site having reported one batch: how long a
//! scrape takes, how many series and bytes it returns.
//!
//! Run: `cargo bench -p rie-collector --bench site_gauges` (figures in docs/availability.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rie_collector::metrics::Metrics;
use rie_collector::site_gauges::SiteGauges;
use rie_collector::sites::SiteRegistry;
use rie_collector::sites::SiteThresholds;
use rie_proto::Batch;

mod common;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (inv, mut sims) = common::national(dir.path());
    let sites = Arc::new(SiteRegistry::new(inv.clone(), SiteThresholds::default()));
    let now_ms = rie_common::now_ms();
    for (idx, sim) in sims.iter_mut().enumerate() {
        let c = sim.measure(now_ms, Duration::from_secs(10));
        let batch = Batch {
            top_talkers: Vec::new(),
            seq: 1,
            created_ms: now_ms,
            flows: c.flows,
            samples: c.samples,
            links: c.links,
        };
        sites.on_hello(idx, 1, "bench", 0, now_ms);
        let (next, _) = sites.advance(idx, sites.current(idx), &batch, now_ms);
        sites.apply(idx, next);
    }
    let metrics = Metrics::new();
    metrics
        .registry
        .register(Box::new(SiteGauges::new(sites)))
        .expect("register");
    let mut times = Vec::new();
    let mut text = String::new();
    for _ in 0..10 {
        let t = Instant::now();
        text = metrics.render();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let series = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    println!(
        "site_gauges: {} sites, {} links: {} rie_site_* + {} rie_link_* series, {:.1} MiB per scrape, render median {:.0} ms (min {:.0}, max {:.0})",
        inv.sites.len(),
        inv.links.len(),
        series("rie_site_"),
        series("rie_link_"),
        text.len() as f64 / 1_048_576.0,
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
