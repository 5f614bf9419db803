//! Store retention benchmark: the store's size per site and tier measured on simulated data,
//! extrapolated to 14,000 sites over one year and at steady state (5 years), the compaction
//! throughput of each step, and how long the store's commits take while compaction runs.
//!
//! Measured: a sample of `RIE_BENCH_SITES` sites (default 500, national inventory, seed 1) ×
//! `RIE_BENCH_MINUTES` minutes (default 180) of simulated probe traffic, its service-port
//! class split, the top 10 remote prefixes per site and minute, and link checks, written as the
//! store writer writes them; then one compaction pass per step (minutes → five minutes →
//! hours → days) while a writer thread keeps committing recent minutes like the store writer
//! (50 sites × their flow, class, talker and link rows per commit, synchronous=FULL).
//! Extrapolated: sizes for 14,000 sites from the measured bytes per site and bucket of each
//! tier (dbstat: pages of each table and index).
//!
//! Run: `cargo bench -p rie-collector --bench store_retention` (figures in docs/performance.md
//! and docs/storage.md); `RIE_BENCH_CHUNK` sets `chunk_rows` (default: the config's, 1000).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rie_collector::metrics::Metrics;
use rie_collector::store;
use rie_collector::store::retention::{Compactor, RetentionConfig};
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
const TALKER_UPSERT: &str =
    "INSERT INTO top_talker_minute(minute, site_id, prefix, bytes, packets) VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT(site_id, minute, prefix) DO UPDATE SET
       bytes = bytes + excluded.bytes, packets = packets + excluded.packets";

const FAMILIES: [&str; 4] = ["flow", "flow_class", "link", "top_talker"];

/// Bytes of one family's table of a tier and its index (dbstat).
fn table_bytes(conn: &rusqlite::Connection, family: &str, tier: &str) -> i64 {
    conn.query_row(
        "SELECT coalesce(SUM(pgsize), 0) FROM dbstat WHERE name IN (?1, ?2)",
        params![format!("{family}_{tier}"), format!("{family}_{tier}_site")],
        |r| r.get(0),
    )
    .expect("dbstat")
}

fn rows(conn: &rusqlite::Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

fn latency(v: &mut [f64]) -> String {
    format!(
        "n={} p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        v.len(),
        percentile(v, 0.5) * 1e3,
        percentile(v, 0.99) * 1e3,
        percentile(v, 1.0) * 1e3
    )
}

/// One site-minute of simulated measurements.
#[derive(Clone)]
struct Measured {
    flows: Vec<rie_proto::FlowAggregate>,
    samples: Vec<rie_proto::AvailabilitySample>,
}

/// Deterministic pseudo-random numbers (splitmix64) from a key.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Classes a (protocol) aggregate splits into, as the probe's meter classifies service ports.
fn classes(protocol: i64) -> &'static [&'static str] {
    match protocol {
        6 => &["web", "mail", "file", "directory", "remote", "other"],
        17 => &["dns", "voip", "directory", "other"],
        _ => &["none"],
    }
}

/// Writes one site-minute as the store writer does: flow rows, their class split (each class
/// present with a probability growing with the site's agents; bytes split exactly), the top 10
/// remote /24s of the minute (drawn from a pool of 40 per site, so coarser buckets share
/// prefixes), and link checks.
#[allow(clippy::too_many_arguments)]
fn write_site_minute(
    tx: &rusqlite::Transaction<'_>,
    minute: i64,
    site: &str,
    site_no: u64,
    agents: u32,
    content: &Measured,
    metrics: &Metrics,
) {
    let mut flow = tx
        .prepare_cached(store::sqlite::UPSERT_FLOW_MINUTE)
        .expect("prepare");
    let mut class = tx
        .prepare_cached(store::sqlite::UPSERT_FLOW_CLASS_MINUTE)
        .expect("prepare");
    let mut talker = tx.prepare_cached(TALKER_UPSERT).expect("prepare");
    let mut link = tx.prepare_cached(LINK_UPSERT).expect("prepare");
    let p_class = 0.3 + 0.7 * (f64::from(agents) / 200.0).min(1.0);
    let seed = site_no << 32 ^ minute as u64;
    for f in &content.flows {
        let Some(r) = rie_collector::commit::rows::flow_row(site, f, metrics) else {
            continue;
        };
        let (site_, exp) = (site, &r.exporter);
        flow.execute(params![
            minute,
            site_,
            exp,
            r.protocol,
            r.direction,
            r.flows,
            r.packets,
            r.bytes
        ])
        .expect("flow");
        let cs = classes(r.protocol);
        let present: Vec<&str> = cs
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                *i == 0
                    || (mix(seed ^ ((r.protocol as u64) << 8) ^ *i as u64) % 1000) as f64 / 1000.0
                        < p_class
            })
            .map(|(_, c)| *c)
            .collect();
        let n = present.len() as i64;
        for (i, c) in present.iter().enumerate() {
            // Equal shares, the remainder on the first class: sums stay exact.
            let share = |v: i64| v / n + if i == 0 { v % n } else { 0 };
            class
                .execute(params![
                    minute,
                    site_,
                    exp,
                    r.protocol,
                    r.direction,
                    c,
                    share(r.flows),
                    share(r.packets),
                    share(r.bytes)
                ])
                .expect("class");
        }
    }
    for k in 0..10u64 {
        let p = mix(seed ^ (k << 48)) % 40;
        let prefix = format!("10.{}.{}.0/24", site_no % 256, p * 6 + k % 6);
        let bytes = (mix(seed ^ k) % 5_000_000) as i64 + 1000;
        talker
            .execute(params![minute, site, prefix, bytes, bytes / 900 + 1])
            .expect("talker");
    }
    for s in &content.samples {
        link.execute(params![
            minute,
            site,
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

/// Commits recent minutes like the store writer until `stop`; returns each commit's seconds.
fn writer_load(
    db: std::path::PathBuf,
    sites: Vec<(String, u32, Measured)>,
    minute: i64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<f64>> {
    std::thread::spawn(move || {
        let mut conn = store::open(&db).expect("open");
        let metrics = Metrics::new();
        let mut times = Vec::new();
        let mut k = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let tx = conn.transaction().expect("begin");
            for i in 0..50 {
                let j = (k + i) % sites.len();
                let (site, agents, content) = &sites[j];
                write_site_minute(&tx, minute, site, j as u64, *agents, content, &metrics);
            }
            tx.commit().expect("commit");
            times.push(t.elapsed().as_secs_f64());
            k += 50;
            std::thread::sleep(Duration::from_millis(5));
        }
        times
    })
}

/// Runs one compaction pass at `now` while the writer load runs; prints and returns
/// (rows rolled, seconds, commit latencies during the pass).
fn pass_under_load(
    c: &mut Compactor,
    now: i64,
    what: &str,
    db: &std::path::Path,
    load: &[(String, u32, Measured)],
    live_minute: i64,
) -> Vec<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let h = writer_load(db.to_path_buf(), load.to_vec(), live_minute, stop.clone());
    let t = Instant::now();
    let pass = c.pass(now, &CancellationToken::new()).expect("pass");
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut during = h.join().expect("writer");
    println!(
        "compaction {what}: {} rows rolled, {} expired, {} talker rows trimmed, {} transactions, {secs:.1} s = {:.0} rows/s; store commits during it: {}",
        pass.rolled,
        pass.expired,
        pass.trimmed,
        pass.transactions,
        pass.rolled as f64 / secs,
        latency(&mut during)
    );
    during
}

fn main() {
    let n_sites = env("RIE_BENCH_SITES", 500) as usize;
    let minutes = env("RIE_BENCH_MINUTES", 180);
    let dir = tempfile::tempdir().expect("temp dir");
    let (inv, mut sims) = common::national(dir.path());
    let db = dir.path().join("rie.db");
    let mut conn = store::open(&db).expect("open");
    let metrics = Metrics::new();
    // A day boundary, so the sample's hours and its day are whole buckets.
    let t0 = 1_790_000_000 / 86_400 * 86_400;

    // 1. Sample: one 60 s measurement per site and minute, stored as the writer stores it.
    let started = Instant::now();
    let mut load = Vec::new();
    for m in 0..minutes {
        let minute = t0 + m * 60;
        let tx = conn.transaction().expect("begin");
        for (no, (site, sim)) in inv
            .sites
            .iter()
            .zip(sims.iter_mut())
            .take(n_sites)
            .enumerate()
        {
            let c = sim.measure(minute * 1000 + 59_000, Duration::from_secs(60));
            let batch = Measured {
                flows: c.flows,
                samples: c.samples,
            };
            write_site_minute(
                &tx,
                minute,
                site.id.as_str(),
                no as u64,
                site.agents,
                &batch,
                &metrics,
            );
            if m == 0 {
                load.push((site.id.to_string(), site.agents, batch));
            }
        }
        tx.commit().expect("commit");
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
    let site_minutes = (n_sites as i64 * minutes) as f64;
    let mut minute_rows = 0;
    print!(
        "sample: {n_sites} sites × {minutes} min written in {:.1} s; rows per site-minute:",
        started.elapsed().as_secs_f64()
    );
    for f in FAMILIES {
        let n = rows(&conn, &format!("{f}_minute"));
        minute_rows += n;
        print!(" {f} {:.2}", n as f64 / site_minutes);
    }
    println!();

    // Bytes per site and bucket of each family in a tier (`buckets` per site in the sample).
    let per_bucket = |conn: &rusqlite::Connection, tier: &str, buckets: f64| -> [f64; 4] {
        FAMILIES.map(|f| table_bytes(conn, f, tier) as f64 / (n_sites as f64 * buckets))
    };
    let show = |tier: &str, v: &[f64; 4]| {
        println!(
            "{tier} tier, bytes per site-{tier}: flow {:.0}, flow_class {:.0}, link {:.0}, top_talker {:.0}; total {:.0}",
            v[0],
            v[1],
            v[2],
            v[3],
            v.iter().sum::<f64>()
        );
    };
    let minute_b = per_bucket(&conn, "minute", minutes as f64);
    show("minute", &minute_b);
    let minute_index = conn
        .query_row(
            "SELECT coalesce(SUM(pgsize), 0) FROM dbstat WHERE name = 'flow_minute_site'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .expect("dbstat") as f64
        / site_minutes;

    // 2. Store commits without compaction (baseline), then during each step.
    let live_minute = t0 + 40 * 86_400;
    let stop = Arc::new(AtomicBool::new(false));
    let h = writer_load(db.clone(), load.clone(), live_minute, stop.clone());
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let mut base = h.join().expect("writer");
    println!(
        "store commits (50 sites × their rows) without compaction: {}",
        latency(&mut base)
    );

    let cfg = RetentionConfig {
        chunk_rows: env(
            "RIE_BENCH_CHUNK",
            i64::from(RetentionConfig::default().chunk_rows),
        ) as u32,
        ..RetentionConfig::default()
    };
    let mut c = Compactor::new(store::open(&db).expect("open"), cfg.clone()).expect("compactor");
    let end = t0 + minutes * 60;
    // The live minute stays after every pass: "now" moves, so the writer's minute does too.
    let mut during = pass_under_load(
        &mut c,
        end + i64::from(cfg.minute_days) * 86_400 + 300,
        "minutes→5 min",
        &db,
        &load,
        end + 2 * 86_400 + 600,
    );
    let five_buckets = ((end - 1) / 300 - t0 / 300 + 1) as f64;
    let five_b = per_bucket(&conn, "5min", five_buckets);
    show("5min", &five_b);
    // What the per-site indexes cost (included in the figures above).
    let index = |name: &str, buckets: f64| -> f64 {
        conn.query_row(
            "SELECT coalesce(SUM(pgsize), 0) FROM dbstat WHERE name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .expect("dbstat") as f64
            / (n_sites as f64 * buckets)
    };
    println!(
        "  of which per-site indexes, bytes per site-bucket: flow_minute_site {minute_index:.0}, flow_5min_site {:.0}, flow_class_5min_site {:.0}",
        index("flow_5min_site", five_buckets),
        index("flow_class_5min_site", five_buckets)
    );
    // A pass with nothing to do (every 10 minutes in steady state): the talker walk's seeks.
    let t = Instant::now();
    let idle = c
        .pass(
            end + i64::from(cfg.minute_days) * 86_400 + 300,
            &CancellationToken::new(),
        )
        .expect("pass");
    println!(
        "idle pass (nothing to roll): {:.2} s, {} transactions",
        t.elapsed().as_secs_f64(),
        idle.transactions
    );
    let fine_now = end + i64::from(cfg.fine_days) * 86_400 + 3600;
    pass_under_load(&mut c, fine_now, "5 min→hours", &db, &load, fine_now);
    let hour_b = per_bucket(&conn, "hour", ((end - 1) / 3600 - t0 / 3600 + 1) as f64);
    show("hour", &hour_b);
    let hour_now = end + i64::from(cfg.hour_days) * 86_400 + 86_400;
    pass_under_load(&mut c, hour_now, "hours→days", &db, &load, hour_now);
    let day_b = per_bucket(&conn, "day", ((end - 1) / 86_400 - t0 / 86_400 + 1) as f64);
    show("day", &day_b);
    println!(
        "store commits during minutes→5 min (the step every pass does): {}",
        latency(&mut during)
    );

    // 3. Extrapolation to 14,000 sites.
    let gib = |b: f64| b * 14_000.0 / f64::from(1u32 << 30);
    let sum = |v: &[f64; 4]| v.iter().sum::<f64>();
    let md = f64::from(cfg.minute_days);
    let fd = f64::from(cfg.fine_days);
    let minute_tier = gib(sum(&minute_b) * 1440.0 * md);
    let five_tier = gib(sum(&five_b) * 288.0 * (fd - md));
    let year_hours = gib(sum(&hour_b) * 24.0 * (365.0 - fd));
    let full_hours = gib(sum(&hour_b) * 24.0 * (f64::from(cfg.hour_days) - fd));
    let full_days =
        gib(sum(&day_b) * (365.25 * f64::from(cfg.day_years) - f64::from(cfg.hour_days)));
    let old_fine = gib(sum(&minute_b) * 1440.0 * fd);
    println!(
        "extrapolated, 14,000 sites: minute tier ({md} days) {minute_tier:.1} GiB; five-minute tier ({} days) {five_tier:.1} GiB; after one year {:.1} GiB (+ hours {year_hours:.1}); steady state {:.1} GiB (hours {full_hours:.1}, days {full_days:.1})",
        fd - md,
        minute_tier + five_tier + year_hours,
        minute_tier + five_tier + full_hours + full_days,
    );
    for (i, f) in FAMILIES.iter().enumerate() {
        println!(
            "  {f}: minute {:.1} GiB, 5 min {:.1} GiB, hours (1 year) {:.1} GiB, hours (400 d) {:.1} GiB, days {:.1} GiB",
            gib(minute_b[i] * 1440.0 * md),
            gib(five_b[i] * 288.0 * (fd - md)),
            gib(hour_b[i] * 24.0 * (365.0 - fd)),
            gib(hour_b[i] * 24.0 * (f64::from(cfg.hour_days) - fd)),
            gib(day_b[i] * (365.25 * f64::from(cfg.day_years) - f64::from(cfg.hour_days)))
        );
    }
    println!(
        "  for comparison, per-minute rows kept {fd} days (the design before): fine tier {old_fine:.1} GiB, one year {:.1} GiB",
        old_fine + year_hours
    );
    println!(
        "  minute rows per day for 14,000 sites: {:.0} M",
        minute_rows as f64 / site_minutes * 1440.0 * 14_000.0 / 1e6
    );
}
