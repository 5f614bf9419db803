//! `rie-sim loadgen`: N simulated probes (the demo's, see `fleet::spawn_probes`) against a
//! running collector through the real TLS protocol, each sending realistic batches (8 flow
//! aggregates, one availability sample and one status per link) every interval; reports
//! batches/s, send-to-ack latency percentiles and losses (batches produced vs acknowledged vs
//! stored by the collector, from its `/metrics`).
//!
//! It runs in its own process, as real probes do: each side of 14,000 loopback connections then
//! has its own file-descriptor budget. Tokens are issued in the collector's database (the
//! collector reads credentials at each hello, so it may be running).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rie_collector::inventory;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::fleet::{self, DemoError, ProbePlan, Recorder};

#[derive(Debug, Clone)]
pub struct LoadgenOptions {
    pub probes: usize,
    pub interval: Duration,
    pub duration: Duration,
    /// Latencies of this first part of the run (the fleet connecting: 14,000 TLS handshakes)
    /// are reported apart from the steady state.
    pub warmup: Duration,
    /// Collector probe addresses, `host:port` (certificate name `localhost`): one collector,
    /// or several on one database; probe `i` starts on the `i mod n`-th and fails over to the
    /// others (see `fleet::rotated`).
    pub addresses: Vec<String>,
    /// CA certificate of the collector (`pki/ca.pem`).
    pub ca: PathBuf,
    /// The collector's data directory (tokens are issued in its `rie.db` on SQLite).
    pub data_dir: PathBuf,
    /// The collector's `[store]` (from its config file): where tokens are issued.
    pub store: rie_collector::store::StoreConfig,
    /// The collector's inventory; the first `probes` sites are simulated.
    pub inventory: PathBuf,
    /// Each collector's `/metrics` URL, to count what they stored (summed).
    pub metrics_urls: Vec<String>,
    pub seed: u64,
    pub incident_rate: f64,
    /// Sites of the inventory passed over before the `probes` simulated ones, so that several
    /// load generators (say, one of older probes) share one inventory without sharing a site.
    pub skip: usize,
    /// Protocol version the probes speak (1: one version behind, sent no plan).
    pub protocol_version: u16,
    /// Check kinds the probes cannot run (an older probe build): plans using them are refused.
    pub lacks_checks: Vec<rie_proto::CheckKind>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Demo(#[from] DemoError),
    #[error(transparent)]
    Store(#[from] rie_collector::store::StoreError),
}

/// What `loadgen` prints at the end (JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub probes: usize,
    pub interval_s: f64,
    pub duration_s: f64,
    pub batches_produced: u64,
    pub batches_acked: u64,
    /// Produced but not acknowledged when the run ended (losses, from the probes' side).
    pub batches_unacked: u64,
    /// `rie_collector_probe_batches_total` after minus before, summed over the collectors
    /// (when `--metrics` is given).
    pub batches_stored: Option<u64>,
    pub acked_per_s: f64,
    /// After the warm-up (steady state).
    pub ack_latency_ms: Latency,
    /// During the warm-up.
    pub ack_latency_ms_warmup: Latency,
    /// The worst p99 of the progress windows (5 s) that are wholly after the warm-up.
    pub worst_window_p99_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    fn of(mut us: Vec<u32>) -> Self {
        if us.is_empty() {
            return Self::default();
        }
        us.sort_unstable();
        let q = |p: f64| f64::from(us[((us.len() - 1) as f64 * p).round() as usize]) / 1000.0;
        Self {
            count: us.len(),
            p50: q(0.5),
            p99: q(0.99),
            max: q(1.0),
        }
    }
}

/// `rie_collector_probe_batches_total` summed over `urls`; `None` without any.
async fn stored(urls: &[String]) -> Result<Option<u64>, LoadgenError> {
    let mut sum = None;
    for url in urls {
        let text = reqwest::get(url)
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| LoadgenError::Setup(format!("--metrics {url}: {e}")))?
            .text()
            .await
            .map_err(|e| LoadgenError::Setup(format!("--metrics {url}: {e}")))?;
        let n = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("rie_collector_probe_batches_total ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .map(|v| v as u64)
            })
            .unwrap_or(0);
        sum = Some(sum.unwrap_or(0) + n);
    }
    Ok(sum)
}

/// Runs the load, prints progress every 5 s on stderr, returns the report.
///
/// # Errors
/// [`LoadgenError`] for unusable inputs (inventory too small, CA unreadable, ...).
pub async fn run(
    opts: LoadgenOptions,
    shutdown: CancellationToken,
) -> Result<Report, LoadgenError> {
    let inv =
        inventory::load_dir(&opts.inventory).map_err(|e| LoadgenError::Setup(e.to_string()))?;
    if inv.sites.len() < opts.skip + opts.probes {
        return Err(LoadgenError::Setup(format!(
            "--probes {}{}: the inventory {} has only {} sites; generate a larger one (rie-collector inventory generate --sites {})",
            opts.probes,
            if opts.skip > 0 { format!(" after --skip {}", opts.skip) } else { String::new() },
            opts.inventory.display(),
            inv.sites.len(),
            opts.skip + opts.probes
        )));
    }
    let ca_pem = std::fs::read_to_string(&opts.ca)
        .map_err(|e| LoadgenError::Setup(format!("--ca {}: {e}", opts.ca.display())))?;
    let sites = &inv.sites[opts.skip..opts.skip + opts.probes];
    let tokens = {
        let (store, data_dir, sites) = (opts.store.clone(), opts.data_dir.clone(), sites.to_vec());
        let handle = tokio::runtime::Handle::current();
        // PostgreSQL calls block on the runtime: off the async task.
        tokio::task::spawn_blocking(move || fleet::issue_tokens(&store, &data_dir, &handle, &sites))
            .await
            .map_err(|e| LoadgenError::Setup(format!("issuing tokens: {e}")))??
    };
    let plan = ProbePlan {
        addresses: opts.addresses.clone(),
        ca_pem,
        interval_ms: opts.interval.as_millis() as u64,
        sites: fleet::sim_sites(&inv, sites, tokens, opts.seed, opts.incident_rate),
        protocol_version: opts.protocol_version,
        lacks_checks: opts.lacks_checks.clone(),
    };
    let stored_before = stored(&opts.metrics_urls).await?;
    let rec = Arc::new(Recorder::default());
    let stop_producing = CancellationToken::new();
    let stop = CancellationToken::new();
    let tasks = fleet::spawn_probes(
        plan,
        Some(rec.clone()),
        stop_producing.clone(),
        stop.clone(),
    )?;
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + opts.duration;
    {
        let (rec, warmup) = (rec.clone(), opts.warmup);
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            rec.steady.store(true, Ordering::Relaxed);
        });
    }
    let (mut steady, mut warm) = (Vec::new(), Vec::new());
    let mut worst_p99: f64 = 0.0;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    let mut last = (0u64, Instant::now());
    loop {
        let end = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep_until(deadline) => true,
            _ = tick.tick() => false,
        };
        let window = rec.take();
        let acked = rec.acked.load(Ordering::Relaxed);
        let l = Latency::of(window.iter().map(|&(us, _)| us).collect());
        eprintln!(
            "[{:>4}s] acked/s {:.0} | produced {} acked {} | ack latency ms p50 {:.1} p99 {:.1} max {:.1}",
            started.elapsed().as_secs(),
            (acked - last.0) as f64 / last.1.elapsed().as_secs_f64().max(0.001),
            rec.produced.load(Ordering::Relaxed),
            acked,
            l.p50,
            l.p99,
            l.max
        );
        last = (acked, Instant::now());
        if window.iter().all(|&(_, s)| s) && !window.is_empty() {
            worst_p99 = worst_p99.max(l.p99);
        }
        for (us, s) in window {
            if s {
                steady.push(us)
            } else {
                warm.push(us)
            }
        }
        if end {
            break;
        }
    }
    let duration = started.elapsed();
    // Stop producing, then let every probe deliver what it holds.
    stop_producing.cancel();
    let end = Instant::now() + Duration::from_secs(30);
    while rec.acked.load(Ordering::Relaxed) < rec.produced.load(Ordering::Relaxed)
        && Instant::now() < end
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), tasks.wait()).await;
    for (us, s) in rec.take() {
        if s {
            steady.push(us)
        } else {
            warm.push(us)
        }
    }
    let stored_after = stored(&opts.metrics_urls).await?;
    let produced = rec.produced.load(Ordering::Relaxed);
    let acked = rec.acked.load(Ordering::Relaxed);
    Ok(Report {
        probes: opts.probes,
        interval_s: opts.interval.as_secs_f64(),
        duration_s: duration.as_secs_f64(),
        batches_produced: produced,
        batches_acked: acked,
        batches_unacked: produced.saturating_sub(acked),
        batches_stored: stored_before.zip(stored_after).map(|(b, a)| a - b),
        acked_per_s: acked as f64 / duration.as_secs_f64(),
        ack_latency_ms: Latency::of(steady),
        ack_latency_ms_warmup: Latency::of(warm),
        worst_window_p99_ms: worst_p99,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_sorted_samples() {
        let l = Latency::of((1..=100).rev().map(|ms| ms * 1000).collect());
        assert_eq!((l.count, l.p50, l.p99, l.max), (100, 51.0, 99.0, 100.0));
    }
}
