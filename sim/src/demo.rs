//! `rie-sim demo`: a national RIE in one process, for a newcomer's first minute. It
//! generates an inventory, a PKI and a credential per site, starts the real collector (same
//! `run` as `serve`, embedded store on disk) and one simulated probe per site that speaks the
//! real protocol over TLS on loopback, then prints where to look and a live summary line.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rie_collector::config::CollectorConfig;
use rie_collector::inventory::{self, GenerateOptions};
use rie_collector::{pki, StartError};
use rie_common::now_ms;
use rie_proto::SiteState;
use tokio_util::sync::CancellationToken;

pub use crate::fleet::DemoError;
use crate::fleet::{issue_tokens, sim_sites, spawn_probe_process, ProbePlan};

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

/// An admin API token for the demo's newcomer, in the demo's store; returns the secret line.
fn demo_admin_token(data_dir: &std::path::Path) -> Result<String, DemoError> {
    let reader = rie_collector::store::Reader::open(&data_dir.join("rie.db"))?;
    let role = rie_collector::auth::Role::Admin;
    let (_, text) = rie_collector::auth::issue_token(&reader, "demo admin", &role, now_ms(), None)?;
    Ok(text)
}

/// The demo's summary: sites reporting, batch rate, states, agents affected.
fn summary_line(
    running: &rie_collector::Running,
    started: Instant,
    connected: i64,
    rate: f64,
    batches: u64,
) -> String {
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
    format!(
        "[{:>4}s] sites reporting {reporting}/{} (probes connected {connected}) | batches/s {rate:.1} (stored {batches}) | up {} degraded {} on_backup {} down {} silent {} | agents affected {affected}",
        started.elapsed().as_secs(),
        views.len(),
        count(SiteState::Up),
        count(SiteState::Degraded),
        count(SiteState::OnBackup),
        count(SiteState::Down),
        count(SiteState::Silent),
    )
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
    // The demo's store is the embedded SQLite one (no PostgreSQL call blocks this task).
    let tokens = issue_tokens(
        &rie_collector::store::StoreConfig::default(),
        &data_dir,
        &tokio::runtime::Handle::current(),
        &inv.sites,
    )?;

    // The API requires a token, as in production; the newcomer gets an admin one in a link.
    let admin_token = demo_admin_token(&data_dir)?;

    let mut cfg = CollectorConfig {
        data_dir,
        inventory: inv_dir,
        ..CollectorConfig::default()
    };
    cfg.tls.pki_dir = pki_dir.clone();
    cfg.probes.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.api.listen = opts.api_listen;
    cfg.auth.required = Some(true);
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
    println!("  status   http://{api}/#token={admin_token}  (NOC status page; this link logs you in as admin)");
    println!("  API      send the token: curl -H \"Authorization: Bearer {admin_token}\" http://{api}/api/v1/sites");
    println!("  one site http://{api}/api/v1/sites/S00001");
    println!("  traffic  http://{api}/api/v1/flows/totals?from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z");
    println!("  metrics  http://{api}/metrics");
    println!(
        "  files    {} (inventory/, pki/, data/rie.db)",
        opts.dir.display()
    );
    println!("  login    people log in with OpenID Connect once [auth.oidc] is set (docs/security.md); programs use `rie-collector token create`");
    println!(
        "Simulated probes report every {:?}; stop with Ctrl-C.",
        opts.interval
    );

    let plan = ProbePlan {
        addresses: vec![running.probe_addr.to_string()],
        ca_pem: pki::ca_pem(&pki_dir)?,
        interval_ms: opts.interval.as_millis() as u64,
        sites: sim_sites(&inv, &inv.sites, tokens, opts.seed, opts.incident_rate),
        protocol_version: rie_proto::PROTOCOL_VERSION,
        lacks_checks: Vec::new(),
    };
    let mut probes = spawn_probe_process(&plan, &opts.dir).await?;

    let started = Instant::now();
    // On a terminal the summary is one live line, redrawn every second; in a log or a pipe,
    // one line every 5 s.
    let live = std::io::stdout().is_terminal();
    let every = if live {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut next_line = started + every;
    let mut all_connected = false;
    let mut last_batches = running.metrics.probe_batches.get();
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let connected = running.metrics.probe_connections.get();
        if !all_connected && connected >= plan.sites.len() as i64 {
            all_connected = true;
            if live {
                print!("\r\x1b[2K");
            }
            println!(
                "{connected} probes connected in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            shutdown.cancel();
        }
        if Instant::now() < next_line {
            continue;
        }
        next_line += every;
        let batches = running.metrics.probe_batches.get();
        let rate = (batches - last_batches) as f64 / last_at.elapsed().as_secs_f64();
        (last_batches, last_at) = (batches, Instant::now());
        let line = summary_line(&running, started, connected, rate, batches);
        if live {
            print!("\r\x1b[2K{line}");
            let _ = std::io::stdout().flush();
        } else {
            println!("{line}");
        }
    }
    if live {
        println!();
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
