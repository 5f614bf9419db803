//! `rie-probe run`: the producer loop (close a batch every interval from the enabled sources)
//! feeding the uplink through a bounded channel, the disk spool under the uplink, and the
//! status file that `rie-probe status` reads.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rie_proto::{Batch, LinkStatus};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::checks::Checker;
use crate::config::{ProbeConfig, ProbeConfigError};
use crate::links::{Monitor, Sources};
use crate::plan::{plan_file, InForce, Plans};
use crate::sources::capture::LiveMeter;
use crate::sources::netflow::{NetflowRelay, NetflowRelayError, RelayStats};
use crate::sources::sflow::{SflowRelay, SflowRelayError};
use crate::spool::{Outbox, OutboxState, Spool, SpoolError};
use crate::uplink::{self, Identity, Settings, Stats};
use rie_common::now_ms;
use rie_flow::aggregate::Prefixes;
use rie_flow::simulate::Simulator;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ProbeConfigError),
    #[error("{0}; the data directory must exist and be writable by the probe user")]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Capture(#[from] crate::sources::capture::CaptureError),
    #[error(transparent)]
    Netflow(#[from] NetflowRelayError),
    #[error(transparent)]
    Sflow(#[from] SflowRelayError),
}

impl Settings {
    pub fn from_config(cfg: &ProbeConfig) -> Self {
        Self {
            reconnect_min: cfg.collector.reconnect_min,
            reconnect_max: cfg.collector.reconnect_max,
            heartbeat_interval: cfg.collector.heartbeat_interval,
            max_in_flight: cfg.collector.max_in_flight,
            replay_rate: cfg.spool.replay_rate,
        }
    }
}

/// The site's links and their checks: the monitor's state plus the checks' samples.
pub struct Availability {
    monitor: Monitor,
    checker: Checker,
    changed: Arc<Notify>,
}

impl Availability {
    /// The site's links with no check running yet: [`Plans::start`] starts the checks in
    /// force (the kept plan or the file's `[checks]`).
    pub fn new(cfg: &ProbeConfig) -> Self {
        Self {
            monitor: Monitor::new(cfg.links.clone(), Sources::default()),
            checker: Checker::default(),
            changed: Arc::new(Notify::new()),
        }
    }

    /// The check plans of this probe, starting into this availability's checker.
    pub fn plans(&self, cfg: &ProbeConfig, shutdown: CancellationToken) -> Plans {
        Plans::new(
            plan_file(&cfg.spool_dir()),
            cfg.links.clone(),
            Sources::default(),
            self.checker.clone(),
            self.changed.clone(),
            shutdown,
        )
    }

    /// Recomputes link states; true when one changed.
    fn poll(&mut self, now_ms: i64) -> bool {
        let reach = self
            .checker
            .reach
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.monitor.poll(now_ms, &reach)
    }
}

/// Closes a batch every `interval` from the enabled sources (simulated measurements, live
/// capture, link checks) until shutdown; the uplink's outbox numbers it. A link state change
/// (failover, failback, link lost) is sent at once in a batch of its own rather than at the
/// next interval. The first batch closes after a random part of the interval, so that probes
/// started together (a demo, a fleet after a power cut) do not send in lockstep. At shutdown
/// the capture is stopped and flushed into a last batch. The last link states are left in
/// `links` for the status file.
pub async fn produce(
    sim: Option<Simulator>,
    live: Option<LiveMeter>,
    interval: Duration,
    tx: mpsc::Sender<Batch>,
    links: Option<Arc<Mutex<Vec<LinkStatus>>>>,
    shutdown: CancellationToken,
) {
    let sources = Producers {
        sim,
        live,
        relay: None,
        sflow: None,
        avail: None,
    };
    produce_with(sources, interval, tx, links, shutdown).await;
}

/// What measures for a probe; each is optional.
pub struct Producers {
    pub sim: Option<Simulator>,
    pub live: Option<LiveMeter>,
    /// The NetFlow relay: its aggregates join each batch, and what it holds at shutdown goes
    /// into the last one.
    pub relay: Option<NetflowRelay>,
    /// The sFlow relay, the same way.
    pub sflow: Option<SflowRelay>,
    pub avail: Option<Availability>,
}

/// [`produce`] with every kind of source.
pub async fn produce_with(
    sources: Producers,
    interval: Duration,
    tx: mpsc::Sender<Batch>,
    links: Option<Arc<Mutex<Vec<LinkStatus>>>>,
    shutdown: CancellationToken,
) {
    let Producers {
        mut sim,
        live,
        relay,
        sflow,
        mut avail,
    } = sources;
    let offset = interval.mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.0..1.0));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Interface and route changes are polled; check results notify.
    let mut link_poll = tokio::time::interval(Duration::from_secs(1));
    link_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let changed = avail.as_ref().map(|a| a.changed.clone());
    loop {
        let link_event = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => false,
            _ = link_poll.tick(), if avail.is_some() => true,
            _ = async { if let Some(c) = &changed { c.notified().await } }, if changed.is_some() => true,
        };
        let now = now_ms();
        let moved = avail.as_mut().is_some_and(|a| a.poll(now));
        if link_event && !moved {
            continue;
        }
        let mut batch = Batch {
            top_talkers: Vec::new(),
            seq: 0,
            created_ms: now,
            flows: vec![],
            samples: vec![],
            links: avail
                .as_ref()
                .map(|a| a.monitor.current())
                .unwrap_or_default(),
        };
        // The check results that moved a link go with the change, so that the collector
        // judges the link on them rather than on the previous interval's.
        if let Some(a) = &avail {
            batch.samples = a.checker.take_samples();
        }
        if !link_event {
            batch.flows = live.as_ref().map(LiveMeter::take).unwrap_or_default();
            batch.top_talkers = live
                .as_ref()
                .map(LiveMeter::take_top_talkers)
                .unwrap_or_default();
            if let Some(r) = &relay {
                let (flows, talkers) = r.take();
                batch.flows.extend(flows);
                batch.top_talkers.extend(talkers);
            }
            if let Some(r) = &sflow {
                let (flows, talkers) = r.take();
                batch.flows.extend(flows);
                batch.top_talkers.extend(talkers);
            }
            if let Some(c) = sim.as_mut().map(|s| s.measure(now, interval)) {
                batch.flows.extend(c.flows);
                batch.samples.extend(c.samples);
                if avail.is_none() {
                    batch.links = c.links;
                }
            }
        }
        if batch.flows.is_empty() && batch.samples.is_empty() && batch.links.is_empty() {
            continue;
        }
        if link_event {
            info!(links = ?batch.links, "link state changed, sending now");
        }
        if let Some(l) = &links {
            *l.lock().unwrap_or_else(|p| p.into_inner()) = batch.links.clone();
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = tx.send(batch) => if r.is_err() { return },
        }
    }
    let mut flows = Vec::new();
    let mut top_talkers = Vec::new();
    if let Some(live) = live {
        (flows, top_talkers) = tokio::task::spawn_blocking(move || live.stop_and_flush())
            .await
            .unwrap_or_default();
    }
    if let Some(relay) = relay {
        let (f, t) = tokio::task::spawn_blocking(move || relay.stop_and_flush())
            .await
            .unwrap_or_default();
        flows.extend(f);
        top_talkers.extend(t);
    }
    if let Some(relay) = sflow {
        let (f, t) = tokio::task::spawn_blocking(move || relay.stop_and_flush())
            .await
            .unwrap_or_default();
        flows.extend(f);
        top_talkers.extend(t);
    }
    if !flows.is_empty() {
        let last = Batch {
            top_talkers,
            seq: 0,
            created_ms: now_ms(),
            flows,
            samples: vec![],
            links: vec![],
        };
        let _ = tx.send(last).await;
    }
}

/// What a running probe publishes in `data_dir/status.json` for `rie-probe status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub site: String,
    pub pid: u32,
    pub version: String,
    pub running: bool,
    pub updated_ms: i64,
    pub started_ms: i64,
    /// The collector in use: connected to, or being tried.
    pub collector: String,
    /// Every configured collector, in order of preference.
    #[serde(default)]
    pub collectors: Vec<String>,
    /// Times the probe moved to another collector of the list since start.
    #[serde(default)]
    pub failovers: u64,
    pub connected: bool,
    pub connected_since_ms: Option<i64>,
    pub last_ack_seq: Option<u64>,
    pub last_ack_ms: Option<i64>,
    pub batches_acked: u64,
    pub reconnects: u64,
    pub last_error: Option<String>,
    pub spool: OutboxState,
    pub links: Vec<LinkStatus>,
    /// IP packets captured since start, when capture is on.
    #[serde(default)]
    pub capture_packets: Option<u64>,
    /// Flows open in the capture's table, and flows reported early because it was full.
    #[serde(default)]
    pub flow_table_entries: Option<u64>,
    #[serde(default)]
    pub flow_table_evictions: Option<u64>,
    /// Frames the kernel dropped because the capture could not keep up (None: unknown).
    #[serde(default)]
    pub capture_kernel_drops: Option<u64>,
    /// NetFlow datagrams received from the router since start, when the relay is on.
    #[serde(default)]
    pub netflow_datagrams: Option<u64>,
    /// Of them, datagrams that failed to decode.
    #[serde(default)]
    pub netflow_decode_errors: Option<u64>,
    /// sFlow datagrams received from the site's switches or router, and those that failed to
    /// decode, when that relay is on.
    #[serde(default)]
    pub sflow_datagrams: Option<u64>,
    #[serde(default)]
    pub sflow_decode_errors: Option<u64>,
    /// The checks in force: the probe file's, or a plan's (when the probe has links).
    #[serde(default)]
    pub plan: Option<InForce>,
}

pub fn status_path(data_dir: &Path) -> PathBuf {
    data_dir.join("status.json")
}

fn write_status(path: &Path, st: &Status) {
    let r = serde_json::to_vec_pretty(st)
        .map_err(std::io::Error::other)
        .and_then(|b| replace_file(path, &b))
        .and_then(|()| {
            replace_file(
                &path.with_file_name("metrics.prom"),
                st.prometheus().as_bytes(),
            )
        });
    if let Err(e) = r {
        warn!(file = %path.display(), error = %e, "cannot write the status files");
    }
}

/// Writes beside and renames, so that readers never see half a file.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

impl Status {
    /// The measurement sources' part of the health report the collector's fleet view shows.
    pub fn sources_health(&self) -> rie_proto::ProbeHealth {
        rie_proto::ProbeHealth {
            capture_kernel_drops: self.capture_kernel_drops,
            relay_datagrams: self.netflow_datagrams,
            relay_errors: self.netflow_decode_errors,
            sflow_datagrams: self.sflow_datagrams,
            sflow_errors: self.sflow_decode_errors,
            ..Default::default()
        }
    }

    /// The probe's counters in the Prometheus text format, for node_exporter's textfile
    /// collector (`data_dir/metrics.prom`): a router runs no HTTP server for the probe.
    pub fn prometheus(&self) -> String {
        let site = self.site.replace(['\\', '"'], "");
        let mut out = String::new();
        let mut put = |name: &str, kind: &str, help: &str, v: Option<u64>| {
            if let Some(v) = v {
                out.push_str(&format!(
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{site=\"{site}\"}} {v}\n"
                ));
            }
        };
        put(
            "rie_probe_up",
            "gauge",
            "1 while the probe runs.",
            Some(u64::from(self.running)),
        );
        put(
            "rie_probe_connected",
            "gauge",
            "1 while connected to the collector.",
            Some(u64::from(self.connected)),
        );
        put(
            "rie_probe_batches_acked_total",
            "counter",
            "Batches the collector acknowledged since start.",
            Some(self.batches_acked),
        );
        put(
            "rie_probe_reconnects_total",
            "counter",
            "Connections to the collector opened again since start.",
            Some(self.reconnects),
        );
        put(
            "rie_probe_collector_failovers_total",
            "counter",
            "Times the probe moved to another collector of its list since start.",
            Some(self.failovers),
        );
        put(
            "rie_probe_spool_batches",
            "gauge",
            "Batches waiting in the spool for an acknowledgement.",
            Some(self.spool.batches as u64),
        );
        put(
            "rie_probe_spool_bytes",
            "gauge",
            "Bytes of the spool.",
            Some(self.spool.bytes),
        );
        put(
            "rie_probe_spool_dropped_total",
            "counter",
            "Batches given up (spool budget exceeded, unreadable).",
            Some(self.spool.dropped),
        );
        put(
            "rie_probe_capture_packets_total",
            "counter",
            "IP packets counted by the live capture.",
            self.capture_packets,
        );
        put(
            "rie_probe_capture_kernel_drops_total",
            "counter",
            "Frames the kernel dropped because the capture socket's buffer was full.",
            self.capture_kernel_drops,
        );
        put(
            "rie_probe_flow_table_entries",
            "gauge",
            "Flows open in the capture's flow table.",
            self.flow_table_entries,
        );
        put(
            "rie_probe_flow_table_evictions_total",
            "counter",
            "Flows reported early because the flow table was full.",
            self.flow_table_evictions,
        );
        put(
            "rie_probe_netflow_datagrams_total",
            "counter",
            "NetFlow/IPFIX datagrams received from the site router.",
            self.netflow_datagrams,
        );
        out
    }
}

fn nonzero(v: i64) -> Option<i64> {
    (v != 0).then_some(v)
}

/// Runs the probe until `shutdown`.
///
/// # Errors
/// [`RunError`] for configuration and spool problems found at start.
pub async fn run(cfg: ProbeConfig, shutdown: CancellationToken) -> Result<(), RunError> {
    let resolved = cfg.resolve()?;
    cfg.warn_about_permissions();
    let spool = Spool::open(&cfg.spool_dir(), cfg.spool.budget_mb * 1024 * 1024)?;
    let id = Identity::new(cfg.site_id.clone(), resolved.token, spool.stream());
    let sim = cfg.simulate.clone().map(|s| {
        warn!("simulated measurements are enabled: this probe reports invented data");
        Simulator::new(s)
    });
    let live = if cfg.capture.interfaces.is_empty() {
        None
    } else {
        Some(LiveMeter::start(
            &cfg.capture.settings(),
            cfg.meter.table(),
            Prefixes(cfg.meter.site_prefixes.clone()),
        )?)
    };
    if let Some(l) = &live {
        l.set_top_talkers(cfg.meter.top_talkers);
    }
    let avail = (!cfg.links.is_empty()).then(|| Availability::new(&cfg));
    let plans = avail
        .as_ref()
        .map(|a| Arc::new(a.plans(&cfg, shutdown.clone())));
    if let Some(p) = &plans {
        p.start(&cfg.checks, resolved.checks.clone());
    }
    let relay = if cfg.netflow.enabled {
        Some(NetflowRelay::start(
            cfg.netflow.listen,
            Prefixes(cfg.meter.site_prefixes.clone()),
            cfg.meter.top_talkers,
        )?)
    } else {
        None
    };
    let relay_stats: Option<Arc<RelayStats>> = relay.as_ref().map(|r| r.stats.clone());
    let sflow = if cfg.sflow.enabled {
        Some(SflowRelay::start(
            cfg.sflow.listen,
            Prefixes(cfg.meter.site_prefixes.clone()),
            cfg.meter.top_talkers,
        )?)
    } else {
        None
    };
    let sflow_stats = sflow.as_ref().map(|r| r.stats.clone());
    if sim.is_none() && live.is_none() && relay.is_none() && sflow.is_none() && avail.is_none() {
        info!("no measurement source enabled: the probe keeps its connection alive and empties its spool");
    }
    let capture = live.as_ref().map(|l| l.counters.clone());
    let (tx, rx) = mpsc::channel(64);
    let stats = Arc::new(Stats::default());
    let links = Arc::new(Mutex::new(Vec::new()));
    let collectors = cfg.collector_addresses();
    info!(site = %cfg.site_id, collectors = %collectors.join(","), stream = spool.stream(), "probe starting");

    let status_file = status_path(&cfg.data_dir);
    let status_plans = plans.clone();
    let snapshot = {
        let (stats, links, site) = (stats.clone(), links.clone(), cfg.site_id.to_string());
        let started_ms = now_ms();
        move |running: bool| Status {
            site: site.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            running,
            updated_ms: now_ms(),
            started_ms,
            collector: stats.collector(),
            collectors: collectors.clone(),
            failovers: stats.failovers.load(Ordering::Relaxed),
            connected: stats.connected.load(Ordering::Relaxed),
            connected_since_ms: nonzero(stats.connected_since_ms.load(Ordering::Relaxed))
                .filter(|_| stats.connected.load(Ordering::Relaxed)),
            last_ack_seq: Some(stats.last_ack_seq.load(Ordering::Relaxed)).filter(|s| *s > 0),
            last_ack_ms: nonzero(stats.last_ack_ms.load(Ordering::Relaxed)),
            batches_acked: stats.batches_acked.load(Ordering::Relaxed),
            reconnects: stats.reconnects.load(Ordering::Relaxed),
            last_error: stats.last_error(),
            spool: stats.outbox(),
            links: links.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            capture_packets: capture.as_ref().map(|c| c.packets.load(Ordering::Relaxed)),
            flow_table_entries: capture
                .as_ref()
                .map(|c| c.table_entries.load(Ordering::Relaxed)),
            flow_table_evictions: capture
                .as_ref()
                .map(|c| c.table_evictions.load(Ordering::Relaxed)),
            capture_kernel_drops: capture.as_ref().and_then(|c| c.kernel_drops()),
            netflow_datagrams: relay_stats
                .as_ref()
                .map(|r| r.datagrams.load(Ordering::Relaxed)),
            netflow_decode_errors: relay_stats
                .as_ref()
                .map(|r| r.decode_errors.load(Ordering::Relaxed)),
            sflow_datagrams: sflow_stats
                .as_ref()
                .map(|r| r.datagrams.load(Ordering::Relaxed)),
            sflow_decode_errors: sflow_stats
                .as_ref()
                .map(|r| r.decode_errors.load(Ordering::Relaxed)),
            plan: status_plans.as_ref().map(|p| p.in_force()),
        }
    };
    let status_task = {
        let (snapshot, shutdown, file) = (snapshot.clone(), shutdown.clone(), status_file.clone());
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = every.tick() => {
                        let st = snapshot(true);
                        stats.set_sources(st.sources_health());
                        write_status(&file, &st);
                    }
                }
            }
        })
    };
    // The uplink stops after the producer, so that the last batch (the capture's flush) is
    // spooled and, if the collector answers, delivered.
    let uplink_stop = CancellationToken::new();
    let mut uplink = tokio::spawn(uplink::run(
        resolved.targets,
        id,
        Settings::from_config(&cfg),
        rx,
        spool,
        stats.clone(),
        plans.map(|p| p as Arc<dyn crate::uplink::PlanSink>),
        uplink_stop.clone(),
    ));
    produce_with(
        Producers {
            sim,
            live,
            relay,
            sflow,
            avail,
        },
        cfg.batch_interval,
        tx,
        Some(links),
        shutdown,
    )
    .await;
    if tokio::time::timeout(Duration::from_secs(5), &mut uplink)
        .await
        .is_err()
    {
        uplink_stop.cancel();
        let _ = uplink.await;
    }
    let _ = status_task.await;
    write_status(&status_file, &snapshot(false));
    Ok(())
}
