//! `rie-sim api-flood`: does a flood of unauthenticated or badly authenticated requests slow
//! the authenticated ones? One client sends `bad_rate` bad requests a second (no token, or a
//! wrong one) from one loopback address while another, from a second address, reads a route
//! with a good token every `good_every`; the good requests' latency is measured without the
//! flood first, then during it. The JSON report has both percentiles and the bad requests'
//! statuses.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// What the bad requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bad {
    /// No `Authorization` header (401, not a failed login).
    Missing,
    /// A well-formed token that does not exist (401, then 429 once the address is limited).
    Token,
}

/// The command's arguments (`rie-sim api-flood`).
#[derive(Debug, Clone, clap::Args)]
pub struct FloodOptions {
    /// The collector's API, e.g. http://127.0.0.1:8480.
    #[arg(long = "api")]
    pub base: String,
    #[arg(long, default_value = "/api/v1/sites")]
    pub path: String,
    /// A valid token for the measured requests.
    #[arg(long)]
    pub token: String,
    #[arg(long, value_enum, default_value = "missing")]
    pub bad: Bad,
    #[arg(long, default_value_t = 2_000)]
    pub bad_rate: u32,
    #[arg(long, default_value = "127.0.0.1")]
    pub bad_from: IpAddr,
    #[arg(long, default_value = "127.0.0.2")]
    pub good_from: IpAddr,
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub good_every: Duration,
    /// Length of each phase (without, then with the flood).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub phase: Duration,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub requests: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct FloodReport {
    pub path: String,
    pub bad: String,
    pub bad_rate_asked: u32,
    pub bad_rate_sent: f64,
    pub bad_statuses: BTreeMap<String, u64>,
    pub without_flood: Latency,
    pub during_flood: Latency,
}

fn latency(mut v: Vec<Duration>, errors: usize) -> Latency {
    v.sort_unstable();
    let q = |p: f64| {
        v.get(((v.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Latency {
        requests: v.len(),
        errors,
        p50_ms: q(0.50),
        p99_ms: q(0.99),
        max_ms: v.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    }
}

/// Good requests for `phase`: their latencies and the number that failed.
async fn good_phase(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    every: Duration,
    phase: Duration,
) -> (Vec<Duration>, usize) {
    let end = Instant::now() + phase;
    let mut tick = tokio::time::interval(every);
    let (mut lat, mut errors) = (Vec::new(), 0);
    while Instant::now() < end {
        tick.tick().await;
        let t = Instant::now();
        let r = client.get(url).bearer_auth(token).send().await;
        match r {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
                lat.push(t.elapsed());
            }
            _ => errors += 1,
        }
    }
    (lat, errors)
}

/// Runs both phases.
///
/// # Errors
/// The HTTP clients cannot be built.
pub async fn run(o: FloodOptions) -> Result<FloodReport, reqwest::Error> {
    let url = format!("{}{}", o.base, o.path);
    let good = reqwest::Client::builder()
        .local_address(o.good_from)
        .build()?;
    let bad = reqwest::Client::builder()
        .local_address(o.bad_from)
        .pool_max_idle_per_host(512)
        .build()?;
    let (base_lat, base_err) = good_phase(&good, &url, &o.token, o.good_every, o.phase).await;

    let statuses: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let flood = {
        let (statuses, sent, stop, url) =
            (statuses.clone(), sent.clone(), stop.clone(), url.clone());
        let wrong = format!("rie_000000000000_{}", "0".repeat(64));
        let limit = Arc::new(tokio::sync::Semaphore::new(512));
        tokio::spawn(async move {
            // Paced per millisecond: `bad_rate / 1000` requests each tick, the remainder spread.
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut due = 0u64;
            let mut k = 0u64;
            loop {
                tokio::select! {
                    _ = stop.notified() => break,
                    _ = tick.tick() => {}
                }
                k += 1;
                let target = k * u64::from(o.bad_rate) / 1000;
                while due < target {
                    due += 1;
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        statuses
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry("not_sent_client_busy".into())
                            .and_modify(|n| *n += 1)
                            .or_insert(1);
                        continue;
                    };
                    let mut req = bad.get(&url);
                    if o.bad == Bad::Token {
                        req = req.bearer_auth(&wrong);
                    }
                    let statuses = statuses.clone();
                    sent.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let s = match req.send().await {
                            Ok(r) => r.status().as_u16().to_string(),
                            Err(_) => "error".into(),
                        };
                        *statuses
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(s)
                            .or_insert(0) += 1;
                        drop(permit);
                    });
                }
            }
        })
    };
    let started = Instant::now();
    let (flood_lat, flood_err) = good_phase(&good, &url, &o.token, o.good_every, o.phase).await;
    let elapsed = started.elapsed().as_secs_f64();
    stop.notify_one();
    let _ = flood.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bad_statuses = statuses.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(FloodReport {
        path: o.path,
        bad: format!("{:?}", o.bad).to_lowercase(),
        bad_rate_asked: o.bad_rate,
        bad_rate_sent: sent.load(Ordering::Relaxed) as f64 / elapsed,
        bad_statuses,
        without_flood: latency(base_lat, base_err),
        during_flood: latency(flood_lat, flood_err),
    })
}
