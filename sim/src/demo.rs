//! `rie-sim demo`: a national RIE in one process, for a newcomer's first minute. It
//! generates an inventory, a PKI and a credential per site, starts the real collector (same
//! `run` as `serve`, embedded store on disk) and one simulated probe per site that speaks the
//! real protocol over TLS on loopback, then prints where to look and a live summary line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rie_collector::config::CollectorConfig;
use rie_collector::inventory::{self, GenerateOptions};
use rie_collector::store::{self, credentials};
use rie_collector::{pki, StartError};
use rie_common::now_ms;
use rie_flow::simulate::{SimulateConfig, Simulator};
use rie_probe::runner::produce;
use rie_probe::session::{client_tls, Target};
use rie_probe::spool::{MemoryOutbox, Outbox};
use rie_probe::uplink::{self, Identity, Settings, Stats};
use rie_proto::{LinkRole, SiteId, SiteState, Technology};
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub sites: usize,
    pub seed: u64,
    pub interval: Duration,
    /// Stop by itself after this long (tests, CI); runs until Ctrl-C otherwise.
    pub duration: Option<Duration>,
    pub dir: PathBuf,
    pub api_listen: SocketAddr,
    pub incident_rate: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo directory {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("demo set-up: {0}")]
    Setup(String),
}

/// Typical RTT to the core by access technology, ms.
fn rtt_of(t: Technology) -> f64 {
    match t {
        Technology::Fibre => 12.0,
        Technology::Xdsl => 28.0,
        Technology::FourG => 45.0,
        Technology::FiveG => 25.0,
        Technology::Satellite => 600.0,
    }
}

/// Runs the demo until `shutdown` (or `opts.duration`).
///
/// # Errors
/// [`DemoError`] when set-up fails.
pub async fn run(opts: DemoOptions, shutdown: CancellationToken) -> Result<(), DemoError> {
    let io = |source| DemoError::Io {
        dir: opts.dir.display().to_string(),
        source,
    };
    let inv_dir = opts.dir.join("inventory");
    let pki_dir = opts.dir.join("pki");
    let data_dir = opts.dir.join("data");
    let summary =
        inventory::generate(&GenerateOptions::new(opts.sites, opts.seed), &inv_dir).map_err(io)?;
    pki::init(&pki_dir, &[], true)?;
    let inv = inventory::load_dir(&inv_dir).map_err(|e| DemoError::Setup(e.to_string()))?;

    // Fresh database each run: the demo is about seeing data arrive.
    let db = data_dir.join("rie.db");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    let tokens = issue_tokens(&db, &inv.sites)?;

    let mut cfg = CollectorConfig {
        data_dir,
        inventory: inv_dir,
        ..CollectorConfig::default()
    };
    cfg.tls.pki_dir = pki_dir.clone();
    cfg.probes.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.api.listen = opts.api_listen;
    // Silence shows after three missed batches.
    cfg.sites.silent_after = opts.interval * 3 + Duration::from_secs(2);
    // The collector stops after the probes, so that none of them sees it go away.
    let collector_stop = CancellationToken::new();
    let running = match rie_collector::run(cfg.clone(), collector_stop.clone()).await {
        Err(StartError::Bind {
            what: "api.listen", ..
        }) => {
            // Someone has the default port: take any free one rather than fail a first run.
            cfg.api.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            rie_collector::run(cfg, collector_stop.clone()).await?
        }
        other => other?,
    };

    let api = running.api_addr;
    println!(
        "rie-telemetry demo: {} sites, {} agents, {} links ({} sites dual-homed); collector probe listener {} (TLS)",
        summary.sites, summary.agents, summary.links, summary.dual_homed, running.probe_addr
    );
    println!("  status   http://{api}/  (NOC status page)");
    println!("  sites    http://{api}/api/v1/sites");
    println!("  one site http://{api}/api/v1/sites/S00001");
    println!("  traffic  http://{api}/api/v1/flows/totals?from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z");
    println!("  metrics  http://{api}/metrics");
    println!(
        "  files    {} (inventory/, pki/, data/rie.db)",
        opts.dir.display()
    );
    println!(
        "Simulated probes report every {:?}; stop with Ctrl-C.",
        opts.interval
    );

    let plan = ProbePlan {
        address: running.probe_addr.to_string(),
        ca_pem: pki::ca_pem(&pki_dir)?,
        interval_ms: opts.interval.as_millis() as u64,
        sites: sim_sites(&inv, &inv.sites, tokens, opts.seed, opts.incident_rate),
    };
    let mut probes = spawn_probe_process(&plan, &opts.dir).await?;

    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    let mut last_batches = running.metrics.probe_batches.get();
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let batches = running.metrics.probe_batches.get();
        let rate = (batches - last_batches) as f64 / last_at.elapsed().as_secs_f64();
        (last_batches, last_at) = (batches, Instant::now());
        let views = running.sites.views(now_ms());
        let count = |s: SiteState| views.iter().filter(|v| v.state == s).count();
        let reporting = views
            .iter()
            .filter(|v| !matches!(v.state, SiteState::Unknown | SiteState::Silent))
            .count();
        let affected: u64 = views
            .iter()
            .zip(&running.sites.inventory.sites)
            .filter(|(v, _)| {
                matches!(
                    v.state,
                    SiteState::Down | SiteState::OnBackup | SiteState::Degraded
                )
            })
            .map(|(_, s)| u64::from(s.agents))
            .sum();
        let connected = running.metrics.probe_connections.get();
        println!(
            "[{:>4}s] sites reporting {reporting}/{} (probes connected {connected}) | batches/s {rate:.1} (stored {batches}) | up {} degraded {} on_backup {} down {} silent {} | agents affected {affected}",
            started.elapsed().as_secs(),
            views.len(),
            count(SiteState::Up),
            count(SiteState::Degraded),
            count(SiteState::OnBackup),
            count(SiteState::Down),
            count(SiteState::Silent),
        );
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            shutdown.cancel();
        }
    }
    // Closing the child's stdin tells it to stop its probes; they close their connections
    // before the collector goes.
    drop(probes.stdin.take());
    match tokio::time::timeout(Duration::from_secs(10), probes.wait()).await {
        Ok(Ok(st)) if st.success() => {}
        Ok(Ok(st)) => tracing::warn!(status = %st, "simulated probes exited with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot wait for the simulated probes"),
        Err(_) => {
            tracing::warn!("simulated probes did not stop in 10 s; killing them");
            let _ = probes.kill().await;
        }
    }
    collector_stop.cancel();
    let stored = running.metrics.probe_batches.get();
    running.wait().await;
    println!(
        "demo stopped: {stored} batches stored in {}",
        opts.dir.join("data/rie.db").display()
    );
    Ok(())
}

/// Issues a fresh token for each of `sites` in the database at `db`, in one transaction
/// (replacing, and so revoking, their previous tokens).
///
/// # Errors
/// Database errors.
pub fn issue_tokens(
    db: &std::path::Path,
    sites: &[inventory::Site],
) -> Result<Vec<String>, store::StoreError> {
    let mut conn = store::open(db)?;
    let tx = conn.transaction()?;
    let now = now_ms();
    let tokens = sites
        .iter()
        .map(|s| {
            let t = credentials::new_token();
            credentials::store(&tx, &s.credential_ref, &t, now).map(|()| t)
        })
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit()?;
    Ok(tokens)
}

/// One simulated probe per site of `sites` (in order, zipped with `tokens`), its links and RTT
/// from the inventory; sites without a primary link are left out.
pub fn sim_sites(
    inv: &inventory::Inventory,
    sites: &[inventory::Site],
    tokens: Vec<String>,
    seed: u64,
    incident_rate: f64,
) -> Vec<SimSite> {
    sites
        .iter()
        .zip(tokens)
        .enumerate()
        .filter_map(|(i, (site, token))| {
            let links: Vec<_> = inv.links_of(&site.id).collect();
            let primary = links.iter().find(|l| l.role == LinkRole::Primary)?;
            Some(SimSite {
                token,
                sim: SimulateConfig {
                    seed: seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                    agents: site.agents,
                    primary_link: primary.id.clone(),
                    backup_link: links
                        .iter()
                        .find(|l| l.role == LinkRole::Backup)
                        .map(|l| l.id.clone()),
                    rtt_ms: rtt_of(primary.technology),
                    incident_rate,
                },
                site: site.id.clone(),
            })
        })
        .collect()
}

/// What the probe process simulates: one entry per site, with its credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbePlan {
    pub address: String,
    pub ca_pem: String,
    pub interval_ms: u64,
    pub sites: Vec<SimSite>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimSite {
    pub site: SiteId,
    pub token: String,
    pub sim: SimulateConfig,
}

/// Starts `rie-sim demo-probes` on a plan file. The probes live in their own process so
/// that each side of 14,000 connections has its own file-descriptor budget, as in real life.
async fn spawn_probe_process(
    plan: &ProbePlan,
    dir: &std::path::Path,
) -> Result<tokio::process::Child, DemoError> {
    let path = dir.join("probe-plan.json");
    let io = |source| DemoError::Io {
        dir: path.display().to_string(),
        source,
    };
    // It holds every site's token: owner-only.
    let json = serde_json::to_vec(plan).map_err(|e| DemoError::Setup(e.to_string()))?;
    pki::write_with_mode(&path, &json, 0o600).map_err(io)?;
    let exe = std::env::current_exe().map_err(io)?;
    tokio::process::Command::new(exe)
        .args(["--log-level", "warn", "demo-probes", "--plan"])
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io)
}

/// Body of `rie-sim demo-probes`: runs every simulated probe of the plan until stdin
/// closes (the demo stopping, or dying) or `shutdown`.
///
/// # Errors
/// [`DemoError::Setup`] when the plan is unusable.
pub async fn run_probes(plan: ProbePlan, shutdown: CancellationToken) -> Result<(), DemoError> {
    let stdin_closed = shutdown.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        let mut stdin = tokio::io::stdin();
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        stdin_closed.cancel();
    });
    let tasks = spawn_probes(plan, None, shutdown.clone(), shutdown.clone())?;
    shutdown.cancelled().await;
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    Ok(())
}

/// Starts one simulated probe (producer + uplink) per site of the plan, spread over the first
/// seconds as a real fleet would arrive. Producers stop on `stop_producing`, uplinks on
/// `shutdown` (after delivering what they hold, within the uplink's drain time). When
/// `recorder` is given, every batch's send-to-ack latency is recorded (load generator).
///
/// # Errors
/// [`DemoError::Setup`] when the plan is unusable.
pub fn spawn_probes(
    plan: ProbePlan,
    recorder: Option<Arc<crate::loadgen::Recorder>>,
    stop_producing: CancellationToken,
    shutdown: CancellationToken,
) -> Result<tokio_util::task::TaskTracker, DemoError> {
    let target = Target {
        address: plan.address.clone(),
        server_name: ServerName::try_from("localhost")
            .map_err(|e| DemoError::Setup(e.to_string()))?,
        tls: client_tls(plan.ca_pem.as_bytes()).map_err(DemoError::Setup)?,
        connect_timeout: Duration::from_secs(30),
    };
    let interval = Duration::from_millis(plan.interval_ms.max(100));
    let settings = Settings {
        reconnect_min: Duration::from_secs(1),
        reconnect_max: Duration::from_secs(30),
        heartbeat_interval: interval * 2,
        max_in_flight: 8,
        replay_rate: 20.0,
    };
    // Spread the connections over a few seconds, as a real fleet would arrive.
    let spread = interval.min(Duration::from_secs(5));
    let n = plan.sites.len().max(1);
    let tasks = tokio_util::task::TaskTracker::new();
    for (i, s) in plan.sites.into_iter().enumerate() {
        let out = crate::loadgen::Timed::new(MemoryOutbox::new(1_000), recorder.clone());
        let id = Identity::new(s.site, s.token, out.stream());
        let (tx, rx) = mpsc::channel(16);
        let delay = spread.mul_f64(i as f64 / n as f64);
        let (target, settings, shutdown) = (target.clone(), settings.clone(), shutdown.clone());
        let stop_producing = stop_producing.clone();
        let sim = Simulator::new(s.sim);
        let inner = tasks.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            inner.spawn(uplink::run(
                target,
                id,
                settings,
                rx,
                out,
                Arc::new(Stats::default()),
                shutdown.clone(),
            ));
            produce(Some(sim), None, interval, tx, None, stop_producing).await;
        });
    }
    Ok(tasks)
}
