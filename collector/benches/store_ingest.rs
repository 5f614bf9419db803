//! Store ingest benchmark: how many probe batches per second the commit stage (the collector's one writer) makes
//! durable (SQLite WAL, synchronous=FULL), with a national inventory of 14,000 sites and batches
//! shaped like a probe's (8 flow aggregates, 2 availability samples, 2 link states).
//!
//! Run: `cargo bench -p rie-collector --bench store_ingest` (figures in docs/performance.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rie_collector::commit::{self, BatchWrite, CommitStage, Request};
use rie_collector::metrics::Metrics;
use rie_collector::sites::SiteRegistry;
use rie_collector::sites::SiteThresholds;
use rie_collector::store::SqliteStore;
use rie_proto::Batch;
use tokio::sync::{mpsc, oneshot};

mod common;

const ROUNDS: usize = 6;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (inv, mut sims) = common::national(dir.path());
    let mut store = SqliteStore::open(&dir.path().join("rie.db")).expect("open");
    let sites = Arc::new(SiteRegistry::new(inv.clone(), SiteThresholds::default()));
    let resumed = commit::resume(&mut store, &sites).expect("state");
    let metrics = Arc::new(Metrics::new());
    let (tx, rx) = mpsc::channel(4096);
    let stage = CommitStage::new(
        Box::new(store),
        resumed.dedup,
        resumed.silence,
        sites,
        metrics.clone(),
        2048,
    );
    let handle = std::thread::spawn(move || stage.run(rx));

    let mut total = 0usize;
    let started = Instant::now();
    for round in 0..ROUNDS {
        // One round = every site's batch of one 10-second interval.
        let now_ms = 1_790_000_000_000 + round as i64 * 10_000;
        let t0 = Instant::now();
        let mut replies = Vec::with_capacity(inv.sites.len());
        for (idx, (site, sim)) in inv.sites.iter().zip(sims.iter_mut()).enumerate() {
            let c = sim.measure(now_ms, Duration::from_secs(10));
            let (reply, rx) = oneshot::channel();
            let w = BatchWrite {
                site_idx: idx,
                site: site.id.clone(),
                stream: 1,
                batch: Batch {
                    top_talkers: Vec::new(),
                    seq: round as u64 + 1,
                    created_ms: now_ms,
                    flows: c.flows,
                    samples: c.samples,
                    links: c.links,
                },
                received_ms: now_ms,
                reply,
            };
            tx.blocking_send(Request::Batch(w)).expect("writer alive");
            replies.push(rx);
        }
        for r in replies {
            r.blocking_recv().expect("reply").expect("stored");
        }
        total += inv.sites.len();
        let dt = t0.elapsed();
        println!(
            "round {round}: 14000 batches in {:.3} s = {:.0} batches/s",
            dt.as_secs_f64(),
            inv.sites.len() as f64 / dt.as_secs_f64()
        );
    }
    let dt = started.elapsed();
    drop(tx);
    handle.join().expect("writer thread");
    let commits = metrics.store_commits.get();
    println!(
        "store_ingest: {total} batches in {:.2} s = {:.0} batches/s sustained; {commits} commits ({:.0} batches/commit); national need at 10 s: 1400 batches/s",
        dt.as_secs_f64(),
        total as f64 / dt.as_secs_f64(),
        total as f64 / commits.max(1) as f64
    );
}
