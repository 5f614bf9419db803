//! `rie-probe run`: the producer loop (close a batch every interval from the enabled sources)
//! feeding the uplink through a bounded channel.

use std::sync::Arc;
use std::time::Duration;

use rie_proto::Batch;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{ProbeConfig, ProbeConfigError};
use crate::sequence::Sequencer;
use crate::sources::simulate::Simulator;
use crate::uplink::{self, now_ms, Identity, Settings, Stats};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ProbeConfigError),
    #[error("data directory {dir}: {source}; it must exist and be writable by the probe user")]
    DataDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

impl Settings {
    pub fn from_config(cfg: &ProbeConfig) -> Self {
        Self {
            reconnect_min: cfg.collector.reconnect_min,
            reconnect_max: cfg.collector.reconnect_max,
            heartbeat_interval: cfg.collector.heartbeat_interval,
            max_in_flight: cfg.collector.max_in_flight,
            max_batches: cfg.buffer.max_batches,
        }
    }
}

/// Closes a batch every `interval` from `sim` until shutdown, numbering batches with `seq`.
/// The first batch closes after a random part of the interval, so that probes started together
/// (a demo, a fleet after a power cut) do not send in lockstep.
pub async fn produce(
    mut sim: Option<Simulator>,
    mut seq: Sequencer,
    interval: Duration,
    tx: mpsc::Sender<Batch>,
    shutdown: CancellationToken,
) {
    let offset = interval.mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.0..1.0));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = now_ms();
        let Some(content) = sim.as_mut().map(|s| s.measure(now, interval)) else {
            continue;
        };
        let seq = match seq.reserve() {
            Ok(n) => n,
            Err(e) => {
                error!(error = %e, "cannot record the batch sequence; batch not sent");
                continue;
            }
        };
        let batch = Batch {
            seq,
            created_ms: now,
            flows: content.flows,
            samples: content.samples,
            links: content.links,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tx.send(batch) => if r.is_err() { return },
        }
    }
}

/// Runs the probe until `shutdown`.
///
/// # Errors
/// [`RunError`] for configuration and data-directory problems found at start.
pub async fn run(cfg: ProbeConfig, shutdown: CancellationToken) -> Result<(), RunError> {
    let resolved = cfg.resolve()?;
    let seq = Sequencer::open(&cfg.data_dir).map_err(|source| RunError::DataDir {
        dir: cfg.data_dir.display().to_string(),
        source,
    })?;
    let id = Identity::new(cfg.site_id.clone(), resolved.token, seq.stream());
    let sim = cfg.simulate.clone().map(|s| {
        warn!("simulated measurements are enabled: this probe reports invented data");
        Simulator::new(s)
    });
    if sim.is_none() {
        info!("no measurement source enabled yet: the probe keeps its connection alive with heartbeats");
    }
    let (tx, rx) = mpsc::channel(64);
    let stats = Arc::new(Stats::default());
    info!(site = %cfg.site_id, collector = %cfg.collector.address, stream = seq.stream(), "probe starting");
    let uplink = tokio::spawn(uplink::run(
        resolved.target,
        id,
        Settings::from_config(&cfg),
        rx,
        stats,
        shutdown.clone(),
    ));
    produce(sim, seq, cfg.batch_interval, tx, shutdown).await;
    let _ = uplink.await;
    Ok(())
}
