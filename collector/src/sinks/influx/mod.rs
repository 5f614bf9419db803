//! InfluxDB sink: turns what the store committed (site traffic per minute, link checks), the
//! live site states, episodes and the collector's own health into line protocol (schema in
//! `docs/schema.md`) and writes it to InfluxDB 2.x (`/api/v2/write` through the `influxdb2`
//! crate) or 1.x/3.x (`/write?db=`), batched and gzip-compressed.
//!
//! Design constraints:
//! - The commit stage never waits on this sink: it hands each commit over an unbounded channel
//!   that the intake task empties at once into the sink's own bounded queue.
//! - Nothing is lost while InfluxDB is down: the queue holds at most `memory_points` lines in
//!   memory; past that, or as soon as one write fails, lines go to the `influx_outbox` table of
//!   `influx-outbox.db` beside the store (its own file and connection, so the sink never holds
//!   the store's write lock). On shutdown the memory part is written there too, so a restart
//!   resumes the backlog. Only a crash while InfluxDB is healthy can lose the lines of the
//!   current flush interval (they are still in memory, and in the store).
//! - Order and exactly-once: disk chunks are always older than memory lines and are sent head
//!   first; a chunk leaves the queue only after a 2xx. A retry after a lost answer writes the
//!   same lines again, which InfluxDB treats as the same points (same series and timestamp:
//!   the later write overwrites the earlier). Traffic points carry the store's running total
//!   of the minute, read back after each commit, so a later write of a minute is a superset.
//! - Only the configured disk budget can drop data: the oldest chunks go first, counted in
//!   `rie_collector_influx_points_dropped_total` and logged at error level.
//!
//! Layout (what each file owns; nothing outside this folder sees more than the re-exports):
//! - `mod.rs`: the public surface ([`start`], [`InfluxSink`], [`SinkError`], the metrics, and
//!   the re-exports below) and the task wiring: the intake task (commits and other inputs to
//!   queued lines, pending minutes), the periodic task (site states, episodes, health) and the
//!   `Shared` queue handed to the sender.
//! - `config.rs`: `[influx]` ([`InfluxConfig`], [`InfluxApi`], [`Secret`]), defaults and
//!   validation; errors name the config key. Imports nothing of the sink.
//! - `encode.rs`: line protocol of every measurement ([`EpisodePoint`], [`protocol_name`],
//!   [`direction_name`], tags, traffic, link checks, site states, health). Pure; imports
//!   nothing of the backlog or delivery. (The finance measurements are the exception: the
//!   `finance` duty renders them with `sinks::line` and queues them through
//!   [`InfluxSink::lines`], so the sink needs nothing of `indicators`.)
//! - `backlog.rs`: memory queue in front of the SQLite outbox, its disk budget, pending
//!   minutes. Imports only [`SinkError`]; lines are opaque to it.
//! - `delivery.rs`: HTTP write (v2/v1), classification of answers, retry with backoff, and the
//!   sender task. Imports the configuration, [`SinkError`] and `Shared`.
//!
//! From the rest of the crate the sink may import only `sinks::line` (line protocol
//! primitives), `store` (the commit hook, read connections, `StoreError`), `sites` (inventory,
//! live views), `metrics` (its registry, counters read for health) and the collector's clock
//! (`ingest::probe_stream::now_ms`). Nothing else of the collector depends on its internals.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge, Registry};
use rie_proto::SiteState;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::commit::{CommitHook, Committed};
use crate::metrics::Metrics;
use crate::sites::SiteRegistry;

mod backlog;
mod config;
mod delivery;
mod encode;

pub use config::{InfluxApi, InfluxConfig, Secret};
pub use encode::{direction_name, protocol_name, EpisodePoint};

use backlog::{Outbox, Queue};
use delivery::{sender, HttpWriter};
use encode::{episode_line, episode_lines, Tags};

// ---------------------------------------------------------------------------------------------
// Metrics

/// The sink's metrics, registered in the collector's registry whether or not the sink is on
/// (dashboards see 0 rather than no series).
pub struct InfluxMetrics {
    pub written: IntCounter,
    pub retried: IntCounter,
    pub buffered: IntGauge,
    pub dropped: IntCounter,
    pub write_errors: IntCounter,
    pub rejected: IntCounter,
}

impl InfluxMetrics {
    /// # Panics
    /// Only if the names were already registered (a programming error).
    pub fn register(registry: &Registry) -> Arc<Self> {
        let c = |n: &str, h: &str| IntCounter::new(n, h).expect("valid metric");
        let m = Self {
            written: c(
                "rie_collector_influx_points_written_total",
                "Points InfluxDB acknowledged (2xx).",
            ),
            retried: c(
                "rie_collector_influx_points_retried_total",
                "Points whose write failed and will be sent again.",
            ),
            buffered: IntGauge::new(
                "rie_collector_influx_points_buffered",
                "Points waiting for InfluxDB, in memory and on disk.",
            )
            .expect("valid metric"),
            dropped: c(
                "rie_collector_influx_points_dropped_total",
                "Points dropped: disk budget (influx.disk_budget_mb) exhausted, or the outbox unwritable.",
            ),
            write_errors: c(
                "rie_collector_influx_write_errors_total",
                "Failed write requests (network, timeout, 5xx, 4xx).",
            ),
            rejected: c(
                "rie_collector_influx_points_rejected_total",
                "Points of requests InfluxDB refused with a 4xx (not retried; see the log).",
            ),
        };
        for col in [
            Box::new(m.written.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.retried.clone()),
            Box::new(m.buffered.clone()),
            Box::new(m.dropped.clone()),
            Box::new(m.write_errors.clone()),
            Box::new(m.rejected.clone()),
        ] {
            registry.register(col).expect("metric names are unique");
        }
        Arc::new(m)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("InfluxDB outbox {path}: {source}")]
    Outbox {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("InfluxDB client: {0}")]
    Client(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

// ---------------------------------------------------------------------------------------------
// The sink

/// What reaches the intake besides commits.
enum Input {
    Lines(Vec<String>),
    /// (site index, minute) whose traffic another input (NetFlow) has just committed.
    Minutes(Vec<(usize, i64)>),
}

struct Shared {
    queue: Mutex<Queue>,
    notify: Notify,
    metrics: Arc<InfluxMetrics>,
    cfg: InfluxConfig,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the queue, accounts drops and the buffered gauge.
    fn with_queue<T>(
        &self,
        f: impl FnOnce(&mut Queue) -> Result<(T, u64), SinkError>,
    ) -> Result<T, SinkError> {
        let mut q = self.queue();
        let r = f(&mut q);
        self.metrics.buffered.set(q.buffered());
        drop(q);
        let (t, dropped) = r?;
        if dropped > 0 {
            self.metrics.dropped.inc_by(dropped);
            tracing::error!(
                dropped,
                budget_mb = self.cfg.disk_budget_mb,
                "InfluxDB BACKLOG OVER ITS DISK BUDGET: oldest points dropped; InfluxDB has been unreachable too long or influx.disk_budget_mb is too small"
            );
        }
        Ok(t)
    }
}

/// Handle on a running sink: enqueue episodes, finish at shutdown. Cheap to clone.
#[derive(Clone)]
pub struct InfluxSink {
    shared: Arc<Shared>,
    input: mpsc::UnboundedSender<Input>,
    tags: Arc<Tags>,
    sites: Arc<SiteRegistry>,
    stop: CancellationToken,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Starts the sink if `cfg.url` is set: returns the handle and the hook to give the store
/// writer. Registers the sink's metrics in every case.
///
/// # Errors
/// [`SinkError`] when the outbox cannot be opened or the HTTP client built.
pub fn start(
    cfg: &InfluxConfig,
    data_dir: &Path,
    reader: Arc<crate::store::Reader>,
    sites: Arc<SiteRegistry>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> Result<Option<(InfluxSink, CommitHook)>, SinkError> {
    let im = InfluxMetrics::register(&metrics.registry);
    let Some(url) = cfg.url.clone() else {
        return Ok(None);
    };
    let outbox_path = data_dir.join("influx-outbox.db");
    let disk = Outbox::open(&outbox_path, cfg.disk_budget_mb * 1024 * 1024)?;
    if disk.points > 0 {
        tracing::info!(
            points = disk.points,
            "InfluxDB backlog found on disk; it is sent before new points"
        );
    }
    let queue = Queue::new(disk, cfg.memory_points, cfg.batch_points);
    im.buffered.set(queue.buffered());
    let writer = HttpWriter::new(cfg, &url)?;
    let shared = Arc::new(Shared {
        queue: Mutex::new(queue),
        notify: Notify::new(),
        metrics: im,
        cfg: cfg.clone(),
    });
    let tags = Arc::new(Tags::new(&sites));
    let (commit_tx, commit_rx) = mpsc::unbounded_channel();
    let (input_tx, input_rx) = mpsc::unbounded_channel();
    let episodes_db = reader.clone();
    let stop = CancellationToken::new();
    let intake = Intake {
        shared: shared.clone(),
        tags: tags.clone(),
        sites: sites.clone(),
        reader,
        dirty: HashMap::new(),
        newly_pending: Vec::new(),
        written_pending: Vec::new(),
    };
    let sender_task = tokio::spawn(sender(shared.clone(), writer, stop.clone()));
    let intake_task = tokio::spawn(intake.run(commit_rx, input_rx, stop.clone()));
    let sink = InfluxSink {
        shared,
        input: input_tx,
        tags,
        sites,
        stop,
        tasks: Arc::new(Mutex::new(vec![sender_task, intake_task])),
    };
    tracker.spawn(periodic(
        sink.clone(),
        metrics.clone(),
        episodes_db,
        shutdown.clone(),
    ));
    tracing::info!(url = %url, api = ?cfg.api, "InfluxDB sink started");
    Ok(Some((sink, commit_tx)))
}

impl InfluxSink {
    /// Queues an `episode` point; call it when an episode opens and again when it closes (same
    /// start: the close overwrites the open).
    pub fn episode(&self, e: &EpisodePoint<'_>, now_ms: i64) {
        if let Some(l) = episode_line(&self.tags, e, now_ms) {
            let _ = self.input.send(Input::Lines(vec![l]));
        }
    }

    /// Queues ready lines (tests, other components).
    pub fn lines(&self, lines: Vec<String>) {
        let _ = self.input.send(Input::Lines(lines));
    }

    /// Tells the sink that another input than probe batches (NetFlow, through the commit stage) has
    /// committed traffic of these (site index, minute): each minute is then written like a
    /// probe batch's, once complete, with the store's total for every source. Call it after the
    /// commit, never before (the sink reads the committed rows). Never blocks.
    pub fn minutes_committed(&self, minutes: Vec<(usize, i64)>) {
        if !minutes.is_empty() {
            let _ = self.input.send(Input::Minutes(minutes));
        }
    }

    /// Points waiting (memory and disk).
    pub fn buffered(&self) -> i64 {
        self.shared.queue().buffered()
    }

    /// Stops the sink once the commit stage has stopped: the current request finishes, the
    /// intake takes what is left, and memory goes to the outbox for the next start.
    pub async fn finish(&self) {
        self.stop.cancel();
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        if let Err(e) = self.shared.with_queue(|q| Ok(((), q.spill()?))) {
            tracing::error!(error = %e, "cannot save the InfluxDB backlog to disk at shutdown");
        }
        tracing::info!(
            backlog = self.buffered(),
            "InfluxDB sink stopped; backlog kept on disk"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Intake: commits and other inputs to lines

struct Intake {
    shared: Arc<Shared>,
    tags: Arc<Tags>,
    sites: Arc<SiteRegistry>,
    /// Read side of the store (the app's shared one), for each touched minute's running
    /// totals; read in `spawn_blocking` (a PostgreSQL reader must not run on an async task).
    reader: Arc<crate::store::Reader>,
    /// (site, minute) touched by a commit and not yet written, with when it was last touched.
    dirty: HashMap<(usize, i64), std::time::Instant>,
    /// Keys to record as pending, and keys written, at the next [`Intake::push`].
    newly_pending: Vec<(usize, i64)>,
    written_pending: Vec<(usize, i64)>,
}

impl Intake {
    async fn run(
        mut self,
        mut commits: mpsc::UnboundedReceiver<Committed>,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        stop: CancellationToken,
    ) {
        self.load_pending();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut lines = Vec::new();
            tokio::select! {
                Some(c) = commits.recv() => self.commit_lines(&c, &mut lines),
                Some(i) = inputs.recv() => self.input(i, &mut lines),
                _ = tick.tick() => self.due_traffic(&mut lines).await,
                _ = stop.cancelled() => {
                    // The writer has stopped: take what it sent; minutes not yet due stay
                    // pending on disk for the next start.
                    while let Ok(c) = commits.try_recv() { self.commit_lines(&c, &mut lines); }
                    while let Ok(i) = inputs.try_recv() { self.input(i, &mut lines); }
                    self.push(lines);
                    return;
                }
            }
            // Take everything already waiting, so that disk sees one transaction for it all.
            for _ in 0..256 {
                match commits.try_recv() {
                    Ok(c) => self.commit_lines(&c, &mut lines),
                    Err(_) => break,
                }
            }
            while let Ok(i) = inputs.try_recv() {
                self.input(i, &mut lines);
            }
            self.push(lines);
        }
    }

    fn push(&mut self, lines: Vec<String>) {
        let (new, done) = (
            std::mem::take(&mut self.newly_pending),
            std::mem::take(&mut self.written_pending),
        );
        if lines.is_empty() && new.is_empty() && done.is_empty() {
            return;
        }
        let n = lines.len();
        let site =
            |&(idx, minute): &(usize, i64)| (self.sites.inventory.sites[idx].id.as_str(), minute);
        let new: Vec<_> = new.iter().map(site).collect();
        let done: Vec<_> = done.iter().map(site).collect();
        // New pending minutes are recorded before, written ones cleared after, their lines are
        // queued (in one transaction when the lines go to disk too).
        let r = self.shared.with_queue(|q| {
            q.disk.mark_pending(&new, &[])?;
            let dropped = q.push(lines)?;
            q.disk.mark_pending(&[], &done)?;
            Ok(((), dropped))
        });
        match r {
            Ok(()) => {
                if self.shared.queue().memory.len() >= self.shared.cfg.batch_points {
                    self.shared.notify.notify_one();
                }
            }
            Err(e) => {
                self.shared.metrics.dropped.inc_by(n as u64);
                tracing::error!(error = %e, points = n, "cannot queue InfluxDB points: dropped");
            }
        }
    }

    fn commit_lines(&mut self, committed: &Committed, out: &mut Vec<String>) {
        let now = std::time::Instant::now();
        for (idx, batch) in committed {
            for f in &batch.flows {
                self.touch((*idx, f.minute.div_euclid(60) * 60), now);
            }
            encode::link_lines(&self.tags, *idx, batch, out);
        }
    }

    fn input(&mut self, input: Input, out: &mut Vec<String>) {
        match input {
            Input::Lines(l) => out.extend(l),
            Input::Minutes(keys) => {
                let now = std::time::Instant::now();
                for (idx, minute) in keys {
                    self.touch((idx, minute.div_euclid(60) * 60), now);
                }
            }
        }
    }

    /// Marks a site minute as changed: it is written once complete (`due_traffic`), one point
    /// per source, direction and protocol, whichever inputs touched it and however often.
    fn touch(&mut self, key: (usize, i64), now: std::time::Instant) {
        if self.dirty.insert(key, now).is_none() {
            self.newly_pending.push(key);
        }
    }

    /// Minutes left pending by the previous run (a crash, or a stop before they were due).
    fn load_pending(&mut self) {
        match self.shared.queue().disk.pending() {
            Ok(keys) => {
                let now = std::time::Instant::now();
                for (site, minute) in keys {
                    let idx = rie_proto::SiteId::new(site)
                        .ok()
                        .and_then(|s| self.sites.inventory.site_index(&s));
                    if let Some(idx) = idx {
                        self.dirty.insert((idx, minute), now);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read pending InfluxDB minutes"),
        }
    }

    /// Writes the minutes that are complete (ended, and untouched for `traffic_delay`).
    async fn due_traffic(&mut self, out: &mut Vec<String>) {
        if self.dirty.is_empty() {
            return;
        }
        let delay = self.shared.cfg.traffic_delay;
        let now_s = rie_common::now_ms().div_euclid(1000);
        let mut due: Vec<(usize, i64)> = self
            .dirty
            .iter()
            .filter(|((_, minute), touched)| {
                touched.elapsed() >= delay && now_s >= minute + 60 + delay.as_secs() as i64
            })
            .map(|(k, _)| *k)
            .collect();
        // Oldest minutes first, as they happened.
        due.sort_by_key(|&(idx, minute)| (minute, idx));
        let keys: Vec<(usize, i64, String)> = due
            .iter()
            .filter_map(|&(idx, minute)| {
                let site = self.sites.inventory.sites.get(idx)?;
                Some((idx, minute, site.id.as_str().to_string()))
            })
            .collect();
        for &(idx, minute) in &due {
            self.dirty.remove(&(idx, minute));
            self.written_pending.push((idx, minute));
        }
        let reader = self.reader.clone();
        let read = tokio::task::spawn_blocking(move || {
            keys.into_iter()
                .map(|(idx, minute, site)| (idx, minute, reader.minute_traffic(&site, minute)))
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(read) = read else {
            tracing::error!("the traffic totals read for InfluxDB stopped");
            return;
        };
        for (idx, minute, rows) in read {
            match rows {
                Ok(rows) => encode::traffic_lines(rows, &self.tags, &self.sites, idx, minute, out),
                Err(e) => tracing::error!(error = %e, "cannot read traffic totals for InfluxDB"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Periodic points: site states and collector health

async fn periodic(
    sink: InfluxSink,
    metrics: Arc<Metrics>,
    episodes_db: Arc<crate::store::Reader>,
    shutdown: CancellationToken,
) {
    let cfg = sink.shared.cfg.clone();
    // Episodes closed in the hour before a start are written again (idempotent), in case the
    // previous run stopped before writing their close.
    let mut episodes_since = rie_common::now_ms() - 3_600_000;
    let mut tick = tokio::time::interval(cfg.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Vec<Option<SiteState>> = vec![None; sink.tags.site.len()];
    let period = cfg.site_state_interval.as_secs().max(1) as i64;
    let mut last_full: Option<i64> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now_ms = rie_common::now_ms();
        let now = now_ms.div_euclid(1000);
        let slot = now.div_euclid(period) * period;
        let full = last_full != Some(slot);
        last_full = Some(slot);
        let views = sink.sites.views(now_ms);
        let mut lines = Vec::new();
        for (idx, v) in views.iter().enumerate() {
            let changed = last.get(idx).copied().flatten() != Some(v.state);
            if !full && !changed {
                continue;
            }
            if let Some(l) = last.get_mut(idx) {
                *l = Some(v.state);
            }
            // Periodic points sit on the period's start (a restart rewrites, not adds); a change
            // sits on when it happened.
            let at = if full {
                slot
            } else {
                v.state_since_ms.map_or(now, |ms| ms.div_euclid(1000))
            };
            lines.extend(encode::site_state_line(&sink.tags, &sink.sites, idx, v, at));
        }
        let reader = episodes_db.clone();
        let read = tokio::task::spawn_blocking(move || {
            reader.episodes_open_or_closed_since(episodes_since)
        })
        .await
        .unwrap_or_else(|_| Err(crate::store::StoreError::Closed));
        match read {
            Ok(episodes) => {
                lines.extend(episode_lines(&episodes, &sink.tags, &sink.sites, now_ms));
                // A minute of overlap: a close recorded just before this scan but committed
                // just after it is written by the next one.
                episodes_since = now_ms - 60_000;
            }
            Err(e) => tracing::error!(error = %e, "cannot read episodes for InfluxDB"),
        }
        let hp = cfg.health_interval.as_secs().max(1) as i64;
        lines.extend(encode::health_line(
            &cfg.instance,
            &metrics,
            sink.shared.metrics.buffered.get(),
            now.div_euclid(hp) * hp,
        ));
        sink.lines(lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Episode, site-state and collector points as queued (InfluxDB unreachable: they end up in
    /// the outbox at shutdown, where they are read back verbatim).
    #[tokio::test]
    async fn episode_state_and_health_lines() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Arc::new(
            crate::inventory::load_dir(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/inventory"),
            )
            .unwrap(),
        );
        let sites = Arc::new(SiteRegistry::new(inv, Default::default()));
        let metrics = Arc::new(Metrics::new());
        let cfg = InfluxConfig {
            url: Some("http://127.0.0.1:1".into()),
            api: InfluxApi::V1,
            database: "rie".into(),
            instance: "c1".into(),
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(60),
            ..InfluxConfig::default()
        };
        let shutdown = CancellationToken::new();
        let tracker = tokio_util::task::TaskTracker::new();
        let db = dir.path().join("rie.db");
        let now = rie_common::now_ms();
        crate::store::open(&db)
            .unwrap()
            .execute_batch(&format!(
                "INSERT INTO episodes(site_id, kind, link_id, start_ms, end_ms, cause) VALUES
                 ('S1', 'outage', NULL, {open_start}, NULL, 'no link answers'),
                 ('S2', 'degraded', 'S2-P', {closed_start}, {closed_end}, 'loss 12 %'),
                 ('S2', 'silent', NULL, 1000000000000, 1000000060000, 'old');",
                open_start = now - 125_000,
                closed_start = now - 600_000,
                closed_end = now - 300_000,
            ))
            .unwrap();
        let (sink, _hook) = start(
            &cfg,
            dir.path(),
            Arc::new(crate::store::Reader::open(&db).unwrap()),
            sites,
            &metrics,
            &shutdown,
            &tracker,
        )
        .unwrap()
        .unwrap();
        let open = EpisodePoint {
            site_idx: 2,
            kind: "failover",
            link: Some("S3-P"),
            start_ms: 1_790_000_040_500,
            end_ms: None,
            cause: "primary S3-P: no answer, \"backup\" took over",
        };
        sink.episode(&open, 1_790_000_100_000);
        sink.episode(
            &EpisodePoint {
                end_ms: Some(1_790_000_160_000),
                ..open
            },
            1_790_000_170_000,
        );
        // The periodic task's first tick is immediate.
        tokio::time::sleep(Duration::from_millis(300)).await;
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        sink.finish().await;
        let out = Outbox::open(&dir.path().join("influx-outbox.db"), u64::MAX).unwrap();
        let mut stmt = out
            .conn
            .prepare("SELECT body FROM influx_outbox ORDER BY id")
            .unwrap();
        let lines: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|b| b.unwrap())
            .flat_map(|b| b.lines().map(String::from).collect::<Vec<_>>())
            .collect();
        // From the store's episodes table: the open one, the one closed 5 min ago, not the old one.
        let open: Vec<_> = lines
            .iter()
            .filter(|l| l.starts_with("episode,site=S1,"))
            .collect();
        assert_eq!(open.len(), 1, "{lines:#?}");
        assert!(
            open[0].contains(",kind=outage duration_s=12"),
            "{}",
            open[0]
        );
        assert!(open[0].ends_with(&format!(
            r#",open=1i,cause="no link answers" {}"#,
            (now - 125_000).div_euclid(1000)
        )));
        let closed: Vec<_> = lines
            .iter()
            .filter(|l| l.starts_with("episode,site=S2,"))
            .collect();
        assert_eq!(
            closed,
            [&format!(
                r#"episode,site=S2,ministry=Économie\ et\ Finances,departement=973,region=Guyane,kind=degraded,link=S2-P duration_s=300i,open=0i,cause="loss 12 %" {}"#,
                (now - 600_000).div_euclid(1000)
            )],
            "{lines:#?}"
        );
        let tags = r"site=S3,ministry=Justice,departement=2A,region=Corse";
        assert!(lines.contains(&format!(
            r#"episode,{tags},kind=failover,link=S3-P duration_s=59i,open=1i,cause="primary S3-P: no answer, \"backup\" took over" 1790000040"#
        )), "{lines:#?}");
        assert!(lines.contains(&format!(
            r#"episode,{tags},kind=failover,link=S3-P duration_s=119i,open=0i,cause="primary S3-P: no answer, \"backup\" took over" 1790000040"#
        )), "{lines:#?}");
        // Never seen: unknown (5), not up; S3 has 120 agents.
        let state: Vec<_> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("site_state,{tags} ")))
            .collect();
        assert_eq!(state.len(), 1, "{lines:#?}");
        assert!(
            state[0].starts_with(&format!(
                "site_state,{tags} state_code=5i,up=0i,on_backup=0i,agents=120i "
            )),
            "{}",
            state[0]
        );
        let at: i64 = state[0].rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(at % 60, 0, "periodic points sit on the period's start");
        assert!(lines.iter().any(|l| l.starts_with(
            "collector,instance=c1 connections=0i,batches=0i,frame_errors=0i,points_buffered="
        )));
    }
}
