//! Store retention benchmark: the store's size per site and tier measured on simulated data,
//! extrapolated to 14,000 sites over one year and at steady state (5 years), the compaction
//! throughput, and how long the store's commits take while compaction runs.
//!
//! Measured: a sample of `RIE_BENCH_SITES` sites (default 1000, national inventory, seed 1) ×
//! `RIE_BENCH_MINUTES` minutes (default 180) of simulated probe traffic and link checks, written
//! as the store writer writes them; then one compaction pass (minutes → hours) while a writer
//! thread keeps committing recent minutes (50 sites × their rows per commit, synchronous=FULL),
//! then a second pass (hours → days). Extrapolated: sizes for 14,000 sites from the measured
//! bytes per site and bucket (dbstat: pages of each table and index).
//!
//! Run: `cargo bench -p rie-collector --bench store_retention` (figures in docs/performance.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rie_collector::metrics::Metrics;
use rie_collector::retention::{Compactor, RetentionConfig};
use rie_collector::store;
use rusqlite::params;
use tokio_util::sync::CancellationToken;

mod common;

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const LINK_UPSERT: &str =
    "INSERT INTO link_minute(minute, site_id, link_id, samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us)
     VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8)
     ON CONFLICT(minute, site_id, link_id) DO UPDATE SET
       samples = samples + 1, sent = sent + excluded.sent, received = received + excluded.received,
       rtt_sum_us = rtt_sum_us + excluded.rtt_sum_us, rtt_n = rtt_n + excluded.rtt_n,
       rtt_max_us = max(coalesce(rtt_max_us, 0), coalesce(excluded.rtt_max_us, 0))";

/// Bytes of each tier (tables and their indexes) from dbstat.
fn tier_bytes(conn: &rusqlite::Connection, tier: &str) -> i64 {
    conn.query_row(
        "SELECT coalesce(SUM(pgsize), 0) FROM dbstat WHERE name IN (?1, ?2, ?3)",
        params![
            format!("flow_{tier}"),
            format!("flow_{tier}_site"),
            format!("link_{tier}")
        ],
        |r| r.get(0),
    )
    .expect("dbstat")
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// Commits recent minutes like the store writer until `stop`; returns each commit's seconds.
fn writer_load(
    db: std::path::PathBuf,
    sites: Vec<String>,
    minute: i64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<f64>> {
    std::thread::spawn(move || {
        let mut conn = store::open(&db).expect("open");
        let mut times = Vec::new();
        let mut k = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let tx = conn.transaction().expect("begin");
            {
                let mut st = tx
                    .prepare_cached(store::UPSERT_FLOW_MINUTE)
                    .expect("prepare");
                for i in 0..50 {
                    let site = &sites[(k + i) % sites.len()];
                    for p in 0..8 {
                        st.execute(params![minute, site, "", p, p % 2, 1, 2, 100])
                            .expect("upsert");
                    }
                }
            }
            tx.commit().expect("commit");
            times.push(t.elapsed().as_secs_f64());
            k += 50;
            std::thread::sleep(Duration::from_millis(5));
        }
        times
    })
}

fn main() {
    let n_sites = env("RIE_BENCH_SITES", 1000) as usize;
    let minutes = env("RIE_BENCH_MINUTES", 180);
    let dir = tempfile::tempdir().expect("temp dir");
    let (inv, mut sims) = common::national(dir.path());
    let db = dir.path().join("rie.db");
    let mut conn = store::open(&db).expect("open");
    let metrics = Metrics::new();
    let t0 = 1_790_000_000 / 86_400 * 86_400;

    // 1. Sample: one 60 s measurement per site and minute, stored as the writer stores it.
    let started = Instant::now();
    let (mut flow_rows, mut link_rows) = (0u64, 0u64);
    for m in 0..minutes {
        let minute = t0 + m * 60;
        let tx = conn.transaction().expect("begin");
        {
            let mut flow = tx
                .prepare_cached(store::UPSERT_FLOW_MINUTE)
                .expect("prepare");
            let mut link = tx.prepare_cached(LINK_UPSERT).expect("prepare");
            for (site, sim) in inv.sites.iter().zip(sims.iter_mut()).take(n_sites) {
                let c = sim.measure(minute * 1000 + 59_000, Duration::from_secs(60));
                for f in &c.flows {
                    if let Some(r) = rie_collector::ingest::validate_flow(f, &metrics) {
                        flow.execute(params![
                            minute,
                            site.id.as_str(),
                            r.exporter,
                            r.protocol,
                            r.direction,
                            r.flows,
                            r.packets,
                            r.bytes
                        ])
                        .expect("flow");
                    }
                }
                for s in &c.samples {
                    link.execute(params![
                        minute,
                        site.id.as_str(),
                        s.link.as_str(),
                        s.sent,
                        s.received.min(s.sent),
                        i64::from(s.rtt_avg_us.unwrap_or(0)),
                        i64::from(s.rtt_avg_us.is_some()),
                        s.rtt_max_us
                    ])
                    .expect("link");
                }
            }
        }
        tx.commit().expect("commit");
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
    for (t, n) in [
        ("flow_minute", &mut flow_rows),
        ("link_minute", &mut link_rows),
    ] {
        *n = conn
            .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .expect("count") as u64;
    }
    let site_minutes = (n_sites as i64 * minutes) as f64;
    let minute_b = tier_bytes(&conn, "minute") as f64 / site_minutes;
    println!(
        "sample: {n_sites} sites × {minutes} min written in {:.1} s: {flow_rows} flow rows ({:.2}/site-minute), {link_rows} link rows; minute tier {:.0} bytes/site-minute",
        started.elapsed().as_secs_f64(),
        flow_rows as f64 / site_minutes,
        minute_b
    );

    // 2. Store commits without compaction (baseline), then during the minutes → hours pass.
    let ids: Vec<String> = inv
        .sites
        .iter()
        .take(n_sites)
        .map(|s| s.id.to_string())
        .collect();
    let live_minute = t0 + 40 * 86_400;
    let stop = Arc::new(AtomicBool::new(false));
    let h = writer_load(db.clone(), ids.clone(), live_minute, stop.clone());
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let mut base = h.join().expect("writer");

    let cfg = RetentionConfig::default();
    let mut c = Compactor::new(store::open(&db).expect("open"), cfg.clone()).expect("compactor");
    let stop = Arc::new(AtomicBool::new(false));
    let h = writer_load(db.clone(), ids, live_minute, stop.clone());
    let now = t0 + minutes * 60 + 35 * 86_400 + 3600;
    let t = Instant::now();
    let pass = c.pass(now, &CancellationToken::new()).expect("pass");
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut during = h.join().expect("writer");
    println!(
        "compaction minutes→hours: {} rows in {} transactions, {secs:.1} s = {:.0} rows/s (chunk {} rows, 10 ms pause)",
        pass.rolled,
        pass.transactions,
        pass.rolled as f64 / secs,
        cfg.chunk_rows
    );
    println!(
        "store commits (50 sites × 8 rows): without compaction n={} p50 {:.1} ms p99 {:.1} ms max {:.1} ms; during compaction n={} p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        base.len(),
        percentile(&mut base, 0.5) * 1e3,
        percentile(&mut base, 0.99) * 1e3,
        percentile(&mut base, 1.0) * 1e3,
        during.len(),
        percentile(&mut during, 0.5) * 1e3,
        percentile(&mut during, 0.99) * 1e3,
        percentile(&mut during, 1.0) * 1e3,
    );
    let hours = ((t0 + minutes * 60 - 1) / 3600 - t0 / 3600 + 1) as f64;
    let hour_b = tier_bytes(&conn, "hour") as f64 / (n_sites as f64 * hours);

    // 3. Hours → days.
    let t = Instant::now();
    let pass = c
        .pass(now + 400 * 86_400, &CancellationToken::new())
        .expect("pass");
    let days = ((t0 + minutes * 60 - 1) / 86_400 - t0 / 86_400 + 1) as f64;
    let day_b = tier_bytes(&conn, "day") as f64 / (n_sites as f64 * days);
    println!(
        "compaction hours→days: {} rows in {:.2} s; hour tier {hour_b:.0} bytes/site-hour, day tier {day_b:.0} bytes/site-day",
        pass.rolled,
        t.elapsed().as_secs_f64()
    );

    // 4. Extrapolation to 14,000 sites.
    let gib = |b: f64| b * 14_000.0 / f64::from(1u32 << 30);
    let minute_tier = gib(minute_b * 1440.0 * f64::from(cfg.minute_days));
    let year_hours = gib(hour_b * 24.0 * f64::from(365 - cfg.minute_days));
    let full_hours = gib(hour_b * 24.0 * f64::from(cfg.hour_days - cfg.minute_days));
    let full_days = gib(day_b * (365.25 * f64::from(cfg.day_years) - f64::from(cfg.hour_days)));
    println!(
        "extrapolated, 14,000 sites: minute tier ({} days) {minute_tier:.1} GiB; after one year {:.1} GiB (+ hours {year_hours:.1}); steady state {:.1} GiB (hours {full_hours:.1}, days {full_days:.2}); with 5-minute fine rollups the fine tier would be ~{:.1} GiB",
        cfg.minute_days,
        minute_tier + year_hours,
        minute_tier + full_hours + full_days,
        minute_tier / 5.0
    );
}
