//! InfluxDB sink: turns what the store committed (site traffic per minute, link checks), the
//! live site states, episodes and the collector's own health into line protocol (schema in
//! `docs/schema.md`) and writes it to InfluxDB 2.x (`/api/v2/write` through the `influxdb2`
//! crate) or 1.x/3.x (`/write?db=`), batched and gzip-compressed.
//!
//! Design constraints:
//! - The store writer never waits on this sink: it hands each commit over an unbounded channel
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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge, Registry};
use rand::Rng;
use rie_proto::{Batch, LinkId, SiteState};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::line::{tag, Line};
use crate::metrics::Metrics;
use crate::sites::SiteRegistry;
use crate::store::{CommitHook, Committed};

// ---------------------------------------------------------------------------------------------
// Configuration

/// Which write endpoint to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InfluxApi {
    /// InfluxDB 2.x `/api/v2/write?org=&bucket=` with `Authorization: Token`.
    #[default]
    V2,
    /// InfluxDB 1.x (and 3.x compatibility) `/write?db=&rp=` with optional basic auth.
    V1,
}

/// A secret that `Debug` never prints.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// `[influx]` section of the collector configuration. The sink is off unless `url` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// Base URL of InfluxDB, e.g. `https://influx.rie.gouv.fr:8086`.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub api: InfluxApi,
    /// PEM file of the CA that signed InfluxDB's certificate (https). When set, it is the only
    /// trust anchor (the public web roots are not used): see docs/dependencies.md for why.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// v2: organisation and bucket.
    #[serde(default)]
    pub org: String,
    #[serde(default)]
    pub bucket: String,
    /// v2: API token (`Authorization: Token ...`).
    #[serde(default)]
    pub token: Secret,
    /// v1: database and optional retention policy.
    #[serde(default)]
    pub database: String,
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// v1: optional basic-auth credentials.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Secret,
    /// Value of the `instance` tag of the `collector` measurement (several collectors write
    /// to one InfluxDB).
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Most points per write request.
    #[serde(default = "default_batch_points")]
    pub batch_points: usize,
    /// A partial batch is sent after this long.
    #[serde(default = "default_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Time allowed for one write request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Lines kept in memory before overflowing to disk.
    #[serde(default = "default_memory_points")]
    pub memory_points: usize,
    /// Largest size of the disk backlog, MiB; past it the oldest points are dropped (loudly).
    #[serde(default = "default_disk_budget")]
    pub disk_budget_mb: u64,
    /// Retry delay after the first failure, doubled at each failure up to `retry_max`, with
    /// jitter (50-100 % of the delay) so that collectors do not retry in step.
    #[serde(default = "default_retry_min", with = "humantime_serde")]
    pub retry_min: Duration,
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// A minute's `site_traffic` point is written once the minute has ended and no batch has
    /// added to it for this long (one write per minute, not one per batch: servers that keep
    /// an arbitrary sample among equal timestamps, like VictoriaMetrics, then see one value).
    /// Probes deliver a minute within one batch interval after it ends: keep this above it.
    #[serde(default = "default_traffic_delay", with = "humantime_serde")]
    pub traffic_delay: Duration,
    /// Every site's state is written this often (and on every change).
    #[serde(default = "default_site_state_interval", with = "humantime_serde")]
    pub site_state_interval: Duration,
    /// Collector health point period; also how often state changes are looked for.
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub health_interval: Duration,
}

fn default_instance() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "collector".into())
}
fn default_batch_points() -> usize {
    5_000
}
fn default_flush() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_memory_points() -> usize {
    100_000
}
fn default_disk_budget() -> u64 {
    1_024
}
fn default_retry_min() -> Duration {
    Duration::from_millis(500)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(30)
}
fn default_traffic_delay() -> Duration {
    Duration::from_secs(20)
}
fn default_site_state_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_health_interval() -> Duration {
    Duration::from_secs(10)
}

impl Default for InfluxConfig {
    fn default() -> Self {
        Self {
            url: None,
            ca_cert: None,
            api: InfluxApi::default(),
            org: String::new(),
            bucket: String::new(),
            token: Secret::default(),
            database: String::new(),
            retention_policy: None,
            username: None,
            password: Secret::default(),
            instance: default_instance(),
            batch_points: default_batch_points(),
            flush_interval: default_flush(),
            timeout: default_timeout(),
            memory_points: default_memory_points(),
            disk_budget_mb: default_disk_budget(),
            retry_min: default_retry_min(),
            retry_max: default_retry_max(),
            traffic_delay: default_traffic_delay(),
            site_state_interval: default_site_state_interval(),
            health_interval: default_health_interval(),
        }
    }
}

impl InfluxConfig {
    /// Pure checks; the error is `(key, message with a right value)`.
    ///
    /// # Errors
    /// The first key at fault.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err((
                    "influx.url",
                    format!(
                        "{url:?} is not an http(s) URL; e.g. \"https://influx.rie.gouv.fr:8086\""
                    ),
                ))
            }
        }
        match self.api {
            InfluxApi::V2 if self.org.is_empty() => {
                return Err((
                    "influx.org",
                    "required with api = \"v2\"; e.g. \"rie\"".into(),
                ))
            }
            InfluxApi::V2 if self.bucket.is_empty() => {
                return Err((
                    "influx.bucket",
                    "required with api = \"v2\"; e.g. \"telemetry\"".into(),
                ))
            }
            InfluxApi::V1 if self.database.is_empty() => {
                return Err((
                    "influx.database",
                    "required with api = \"v1\"; e.g. \"rie\"".into(),
                ))
            }
            _ => {}
        }
        if self.instance.is_empty() {
            return Err((
                "influx.instance",
                "must not be empty; e.g. \"collector-1\"".into(),
            ));
        }
        if !(1..=100_000).contains(&self.batch_points) {
            return Err((
                "influx.batch_points",
                "must be between 1 and 100000; e.g. 5000".into(),
            ));
        }
        if self.memory_points < self.batch_points {
            return Err((
                "influx.memory_points",
                format!("must be at least batch_points ({})", self.batch_points),
            ));
        }
        if self.disk_budget_mb == 0 {
            return Err((
                "influx.disk_budget_mb",
                "must be at least 1; e.g. 1024".into(),
            ));
        }
        if self.retry_min.is_zero() || self.retry_max < self.retry_min {
            return Err((
                "influx.retry_max",
                "retry_min must be > 0 and retry_max >= retry_min; e.g. \"500ms\" and \"30s\""
                    .into(),
            ));
        }
        for (key, d) in [
            ("influx.flush_interval", self.flush_interval),
            ("influx.timeout", self.timeout),
        ] {
            if d < Duration::from_millis(10) {
                return Err((key, "must be at least 10ms; e.g. \"1s\"".into()));
            }
        }
        for (key, d) in [
            ("influx.site_state_interval", self.site_state_interval),
            ("influx.health_interval", self.health_interval),
        ] {
            if d < Duration::from_secs(1) {
                return Err((key, "must be at least 1s; e.g. \"10s\"".into()));
            }
        }
        Ok(())
    }
}

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

/// Outcome of one write request.
#[derive(Debug)]
enum WriteError {
    /// Network, timeout, 5xx, 408, 429: send again later.
    Retry(String),
    /// Other 4xx: InfluxDB has written what it could and refuses the rest; not retried.
    Rejected(String),
}

// ---------------------------------------------------------------------------------------------
// Queue: memory in front of the SQLite outbox

const OUTBOX_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS influx_outbox(
    id     INTEGER PRIMARY KEY,
    points INTEGER NOT NULL,
    body   TEXT NOT NULL
);
-- Site minutes whose traffic point is not yet written (see `traffic_delay`): kept on disk so
-- that a crash before the minute is written does not lose it.
CREATE TABLE IF NOT EXISTS influx_pending_minutes(
    site_id TEXT NOT NULL,
    minute  INTEGER NOT NULL,
    PRIMARY KEY (site_id, minute)
) WITHOUT ROWID;";

/// Chunks of line protocol waiting on disk, oldest first (lowest id).
struct Outbox {
    conn: Connection,
    path: PathBuf,
    points: u64,
    bytes: u64,
    budget: u64,
}

impl Outbox {
    fn open(path: &Path, budget: u64) -> Result<Self, SinkError> {
        let err = |source| SinkError::Outbox {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        // NORMAL: the outbox survives a process crash; after a power loss InfluxDB may miss
        // the last commits' points, which the store still holds.
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(err)?;
        conn.execute_batch(OUTBOX_SCHEMA).map_err(err)?;
        let (points, bytes) = conn
            .query_row(
                "SELECT coalesce(sum(points), 0), coalesce(sum(length(body)), 0) FROM influx_outbox",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .map_err(err)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            points: points as u64,
            bytes: bytes as u64,
            budget,
        })
    }

    fn sql_err(&self, source: rusqlite::Error) -> SinkError {
        SinkError::Outbox {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Appends `lines` in chunks of `chunk` lines, in one transaction.
    fn append(&mut self, lines: &[String], chunk: usize) -> Result<(), SinkError> {
        let path = self.path.display().to_string();
        let tx = self.conn.transaction().map_err(|e| SinkError::Outbox {
            path: path.clone(),
            source: e,
        })?;
        let mut added = (0u64, 0u64);
        {
            let mut ins = tx
                .prepare_cached("INSERT INTO influx_outbox(points, body) VALUES (?1, ?2)")
                .map_err(|e| SinkError::Outbox {
                    path: self.path.display().to_string(),
                    source: e,
                })?;
            for c in lines.chunks(chunk.max(1)) {
                let body = c.join("\n");
                ins.execute(params![c.len() as i64, body])
                    .map_err(|e| SinkError::Outbox {
                        path: self.path.display().to_string(),
                        source: e,
                    })?;
                added.0 += c.len() as u64;
                added.1 += body.len() as u64;
            }
        }
        tx.commit()
            .map_err(|e| SinkError::Outbox { path, source: e })?;
        self.points += added.0;
        self.bytes += added.1;
        Ok(())
    }

    /// Puts a chunk back in front (a failed write keeps its place in the order).
    fn push_front(&mut self, points: usize, body: &str) -> Result<(), SinkError> {
        self.conn
            .execute(
                "INSERT INTO influx_outbox(id, points, body)
                 VALUES ((SELECT coalesce(min(id), 1) - 1 FROM influx_outbox), ?1, ?2)",
                params![points as i64, body],
            )
            .map_err(|e| self.sql_err(e))?;
        self.points += points as u64;
        self.bytes += body.len() as u64;
        Ok(())
    }

    fn head(&self) -> Result<Option<(i64, usize, String)>, SinkError> {
        self.conn
            .query_row(
                "SELECT id, points, body FROM influx_outbox ORDER BY id LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.sql_err(e))
    }

    fn remove(&mut self, id: i64) -> Result<(), SinkError> {
        let row: Option<(i64, i64)> = self
            .conn
            .query_row(
                "DELETE FROM influx_outbox WHERE id = ?1 RETURNING points, length(body)",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql_err(e))?;
        if let Some((p, b)) = row {
            self.points = self.points.saturating_sub(p as u64);
            self.bytes = self.bytes.saturating_sub(b as u64);
        }
        Ok(())
    }

    fn mark_pending(
        &mut self,
        keys: &[(&str, i64)],
        done: &[(&str, i64)],
    ) -> Result<(), SinkError> {
        if keys.is_empty() && done.is_empty() {
            return Ok(());
        }
        let path = self.path.display().to_string();
        let err = |source| SinkError::Outbox {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO influx_pending_minutes(site_id, minute) VALUES (?1, ?2)",
                )
                .map_err(err)?;
            for (site, minute) in keys {
                ins.execute(params![site, minute]).map_err(err)?;
            }
            let mut del = tx
                .prepare_cached(
                    "DELETE FROM influx_pending_minutes WHERE site_id = ?1 AND minute = ?2",
                )
                .map_err(err)?;
            for (site, minute) in done {
                del.execute(params![site, minute]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    fn pending(&self) -> Result<Vec<(String, i64)>, SinkError> {
        let mut stmt = self
            .conn
            .prepare("SELECT site_id, minute FROM influx_pending_minutes")
            .map_err(|e| self.sql_err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.sql_err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql_err(e))
    }

    /// Drops the oldest chunks until the backlog fits the budget; returns the points dropped.
    fn enforce_budget(&mut self) -> Result<u64, SinkError> {
        let mut dropped = 0;
        while self.bytes > self.budget {
            let Some((id, points, _)) = self.head()? else {
                break;
            };
            self.remove(id)?;
            dropped += points as u64;
        }
        Ok(dropped)
    }
}

/// Where the chunk being sent came from, to remove or put it back.
enum Source {
    Disk(i64),
    Memory,
}

struct Chunk {
    source: Source,
    points: usize,
    body: String,
}

struct Queue {
    memory: VecDeque<String>,
    disk: Outbox,
    memory_limit: usize,
    batch_points: usize,
    /// Points taken from memory and not yet acknowledged or put back.
    in_flight: usize,
}

impl Queue {
    fn buffered(&self) -> i64 {
        (self.memory.len() + self.in_flight) as i64 + self.disk.points as i64
    }

    /// Adds new lines. They go to disk whenever disk already holds a backlog (disk is older
    /// than memory, always) or memory would overflow; then memory moves to disk first.
    fn push(&mut self, lines: Vec<String>) -> Result<u64, SinkError> {
        if self.disk.points == 0 && self.memory.len() + lines.len() <= self.memory_limit {
            self.memory.extend(lines);
            return Ok(0);
        }
        self.spill()?;
        self.disk.append(&lines, self.batch_points)?;
        self.disk.enforce_budget()
    }

    /// Moves every memory line to the end of the outbox (failure, shutdown).
    fn spill(&mut self) -> Result<u64, SinkError> {
        if self.memory.is_empty() {
            return Ok(0);
        }
        let lines: Vec<String> = self.memory.drain(..).collect();
        self.disk.append(&lines, self.batch_points)?;
        self.disk.enforce_budget()
    }

    fn take(&mut self) -> Result<Option<Chunk>, SinkError> {
        if let Some((id, points, body)) = self.disk.head()? {
            return Ok(Some(Chunk {
                source: Source::Disk(id),
                points,
                body,
            }));
        }
        if self.memory.is_empty() {
            return Ok(None);
        }
        let n = self.memory.len().min(self.batch_points);
        let lines: Vec<String> = self.memory.drain(..n).collect();
        self.in_flight += n;
        Ok(Some(Chunk {
            source: Source::Memory,
            points: n,
            body: lines.join("\n"),
        }))
    }

    fn done(&mut self, c: &Chunk) -> Result<(), SinkError> {
        match c.source {
            Source::Disk(id) => self.disk.remove(id),
            Source::Memory => {
                self.in_flight -= c.points;
                Ok(())
            }
        }
    }

    /// A failed chunk goes back in front of everything, and memory goes to disk so that a
    /// crash during the outage loses nothing.
    fn failed(&mut self, c: &Chunk) -> Result<u64, SinkError> {
        if let Source::Memory = c.source {
            self.in_flight -= c.points;
            self.disk.push_front(c.points, &c.body)?;
        }
        self.spill()
    }
}

// ---------------------------------------------------------------------------------------------
// The sink

/// Tags of each site and link, rendered once.
struct Tags {
    site: Vec<String>,
    link: HashMap<LinkId, String>,
}

impl Tags {
    fn new(sites: &SiteRegistry) -> Self {
        let inv = &sites.inventory;
        let site = inv
            .sites
            .iter()
            .map(|s| {
                let region = rie_proto::geo::departement(&s.departement).map_or("", |d| d.region);
                format!(
                    "{}{}{}{}",
                    tag("site", s.id.as_str()),
                    tag("ministry", &s.ministry),
                    tag("departement", &s.departement),
                    tag("region", region)
                )
            })
            .collect();
        let link = inv
            .links
            .iter()
            .map(|l| {
                (
                    l.id.clone(),
                    format!(
                        "{}{}{}",
                        tag("link", l.id.as_str()),
                        tag("role", l.role.as_str()),
                        tag("technology", l.technology.as_str())
                    ),
                )
            })
            .collect();
        Self { site, link }
    }
}

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

/// An episode as written to InfluxDB (see `docs/schema.md`).
#[derive(Debug, Clone, Copy)]
pub struct EpisodePoint<'a> {
    /// Inventory index of the site.
    pub site_idx: usize,
    /// `outage`, `failover`, `degraded` or `silent`.
    pub kind: &'a str,
    pub link: Option<&'a str>,
    pub start_ms: i64,
    /// `None` while open.
    pub end_ms: Option<i64>,
    pub cause: &'a str,
}

fn episode_line(tags: &Tags, e: &EpisodePoint<'_>, now_ms: i64) -> Option<String> {
    let site = tags.site.get(e.site_idx)?;
    let duration = (e.end_ms.unwrap_or(now_ms) - e.start_ms).max(0) / 1000;
    Line::new("episode")
        .tags(site)
        .tag("kind", e.kind)
        .tag("link", e.link.unwrap_or(""))
        .int("duration_s", duration)
        .int("open", i64::from(e.end_ms.is_none()))
        .string("cause", e.cause)
        .at(e.start_ms.div_euclid(1000))
}

/// `episode` points for the episodes of the store's `episodes` table that are open (their
/// duration grows) or closed at or after `closed_since_ms`. Rewriting one is harmless: same
/// series and start, the newer value wins.
fn episode_lines(
    conn: &Connection,
    tags: &Tags,
    sites: &SiteRegistry,
    closed_since_ms: i64,
    now_ms: i64,
) -> Result<Vec<String>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT site_id, kind, link_id, start_ms, end_ms, cause FROM episodes
         WHERE end_ms IS NULL OR end_ms >= ?1 ORDER BY start_ms",
    )?;
    let rows = stmt.query_map([closed_since_ms], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, Option<i64>>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (site, kind, link, start_ms, end_ms, cause) = row?;
        let Some(site_idx) = rie_proto::SiteId::new(site)
            .ok()
            .and_then(|s| sites.inventory.site_index(&s))
        else {
            continue;
        };
        let e = EpisodePoint {
            site_idx,
            kind: &kind,
            link: link.as_deref(),
            start_ms,
            end_ms,
            cause: &cause,
        };
        out.extend(episode_line(tags, &e, now_ms));
    }
    Ok(out)
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
    db: &Path,
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
    let queue = Queue {
        memory: VecDeque::new(),
        disk,
        memory_limit: cfg.memory_points,
        batch_points: cfg.batch_points,
        in_flight: 0,
    };
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
    let reader = crate::store::open(db)?;
    let stop = CancellationToken::new();
    let intake = Intake {
        shared: shared.clone(),
        tags: tags.clone(),
        sites: sites.clone(),
        conn: reader,
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
    let episodes_db = crate::store::open(db)?;
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

    /// Tells the sink that another input than the store writer (the NetFlow input) has
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

    /// Stops the sink once the store writer has stopped: the current request finishes, the
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
    /// Read connection on the store, for each touched minute's running totals.
    conn: Connection,
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
                _ = tick.tick() => self.due_traffic(&mut lines),
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
            self.link_lines(*idx, batch, out);
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
    fn due_traffic(&mut self, out: &mut Vec<String>) {
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
        for (idx, minute) in due {
            self.dirty.remove(&(idx, minute));
            self.written_pending.push((idx, minute));
            if let Err(e) = self.traffic_lines(idx, minute, out) {
                tracing::error!(error = %e, "cannot read traffic totals for InfluxDB");
            }
        }
    }

    fn traffic_lines(
        &self,
        idx: usize,
        minute: i64,
        out: &mut Vec<String>,
    ) -> Result<(), rusqlite::Error> {
        let Some(site) = self.sites.inventory.sites.get(idx) else {
            return Ok(());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT exporter <> '', protocol, direction, flows, packets, bytes
             FROM flow_minute WHERE site_id = ?1 AND minute = ?2",
        )?;
        let mut sums: BTreeMap<(bool, &'static str, &'static str), [i64; 3]> = BTreeMap::new();
        let rows = stmt.query_map(params![site.id.as_str(), minute], |r| {
            Ok((
                r.get::<_, bool>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                [
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ],
            ))
        })?;
        for row in rows {
            let (netflow, proto, dir, c) = row?;
            let s = sums
                .entry((netflow, protocol_name(proto), direction_name(dir)))
                .or_default();
            for i in 0..3 {
                s[i] = s[i].saturating_add(c[i]);
            }
        }
        for ((netflow, proto, dir), [flows, packets, bytes]) in sums {
            let mut line = Line::new("site_traffic").tags(&self.tags.site[idx]);
            if let Some(member) = self.sites.member() {
                // Cluster: a site that changes owner in the middle of a minute has part of that
                // minute on each member. Each writes its own part under its own `collector` tag
                // (its `cluster.self`, unique by validation, unlike `influx.instance`), so neither
                // overwrites the other, and sums over the tag are exact (docs/schema.md). Steady
                // state: one value per site, no extra series.
                line = line.tag("collector", member);
            }
            out.extend(
                line.tag("direction", dir)
                    .tag("protocol", proto)
                    .tag("source", if netflow { "netflow" } else { "capture" })
                    .int("bytes", bytes)
                    .int("packets", packets)
                    .int("flows", flows)
                    .at(minute),
            );
        }
        Ok(())
    }

    /// One `link_check` point per (link, check, interval start) of the batch; several targets
    /// of one check are merged (sums, weighted mean, max).
    fn link_lines(&self, idx: usize, batch: &Batch, out: &mut Vec<String>) {
        #[derive(Default)]
        struct Acc {
            sent: u64,
            received: u64,
            rtt_sum: f64,
            rtt_n: u64,
            rtt_max: Option<u32>,
            p95: Option<u32>,
            jitter_sum: f64,
            jitter_n: u64,
        }
        let mut acc: BTreeMap<(&LinkId, &'static str, i64), Acc> = BTreeMap::new();
        for s in &batch.samples {
            // Unknown links were counted and left out by the store; same here.
            if !self.tags.link.contains_key(&s.link) {
                continue;
            }
            let a = acc.entry((&s.link, s.check.as_str(), s.start)).or_default();
            let received = s.received.min(s.sent);
            a.sent += u64::from(s.sent);
            a.received += u64::from(received);
            if let Some(avg) = s.rtt_avg_us {
                a.rtt_sum += f64::from(avg) * f64::from(received);
                a.rtt_n += u64::from(received);
            }
            a.rtt_max = a.rtt_max.max(s.rtt_max_us);
            a.p95 = a.p95.max(s.rtt_p95_us);
            if let Some(j) = s.jitter_us {
                a.jitter_sum += f64::from(j);
                a.jitter_n += 1;
            }
        }
        for ((link, check, start), a) in acc {
            let Some(link_tags) = self.tags.link.get(link) else {
                continue;
            };
            // (sent - received) / sent: exact for the usual ratios (1/10 is 0.1, not 1 - 0.9).
            let loss = if a.sent == 0 {
                1.0
            } else {
                (a.sent - a.received) as f64 / a.sent as f64
            };
            let ms = |us: Option<u32>| us.map(|v| f64::from(v) / 1000.0);
            out.extend(
                Line::new("link_check")
                    .tags(&self.tags.site[idx])
                    .tags(link_tags)
                    .tag("check", check)
                    .int("sent", a.sent as i64)
                    .int("received", a.received as i64)
                    .float("loss_ratio", loss)
                    .opt_float(
                        "rtt_avg_ms",
                        (a.rtt_n > 0).then(|| a.rtt_sum / a.rtt_n as f64 / 1000.0),
                    )
                    .opt_float("rtt_max_ms", ms(a.rtt_max))
                    .opt_float("rtt_p95_ms", ms(a.p95))
                    .opt_float(
                        "jitter_ms",
                        (a.jitter_n > 0).then(|| a.jitter_sum / a.jitter_n as f64 / 1000.0),
                    )
                    .at(start),
            );
        }
    }
}

pub fn protocol_name(p: i64) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "icmpv6",
        _ => "other",
    }
}

pub fn direction_name(d: i64) -> &'static str {
    match d {
        1 => "inbound",
        2 => "outbound",
        _ => "unknown",
    }
}

// ---------------------------------------------------------------------------------------------
// Periodic points: site states and collector health

async fn periodic(
    sink: InfluxSink,
    metrics: Arc<Metrics>,
    episodes_db: Connection,
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
            // Cluster: every member holds the whole inventory, but a site's state is written by
            // its owner only; another member would write `unknown` (or `silent`, for a site that
            // moved away) on the same series and period timestamp.
            if !sink.sites.owns(idx) {
                continue;
            }
            let changed = last.get(idx).copied().flatten() != Some(v.state);
            if !full && !changed {
                continue;
            }
            if let Some(l) = last.get_mut(idx) {
                *l = Some(v.state);
            }
            // Silence is not proof of an outage: `up` keeps the last reported state.
            let reported = v.live.state;
            let up = i64::from(
                matches!(
                    reported,
                    Some(SiteState::Up | SiteState::Degraded | SiteState::OnBackup)
                ) || (reported.is_none() && v.live.last_seen_ms.is_some()),
            );
            let agents = sink.sites.inventory.sites.get(idx).map_or(0, |s| s.agents);
            // Periodic points sit on the period's start (a restart rewrites, not adds); a change
            // sits on when it happened.
            let at = if full {
                slot
            } else {
                v.state_since_ms.map_or(now, |ms| ms.div_euclid(1000))
            };
            lines.extend(
                Line::new("site_state")
                    .tags(&sink.tags.site[idx])
                    .int("state_code", i64::from(v.state.code()))
                    .int("up", up)
                    .int("on_backup", i64::from(v.state == SiteState::OnBackup))
                    .int("agents", i64::from(agents))
                    .at(at),
            );
        }
        match episode_lines(
            &episodes_db,
            &sink.tags,
            &sink.sites,
            episodes_since,
            now_ms,
        ) {
            Ok(l) => {
                lines.extend(l);
                // A minute of overlap: a close recorded just before this scan but committed
                // just after it is written by the next one.
                episodes_since = now_ms - 60_000;
            }
            Err(e) => tracing::error!(error = %e, "cannot read episodes for InfluxDB"),
        }
        let frame_errors: u64 = ["oversized", "malformed", "unexpected", "io", "tls"]
            .iter()
            .map(|r| metrics.frame_errors.with_label_values(&[r]).get())
            .sum();
        let hp = cfg.health_interval.as_secs().max(1) as i64;
        lines.extend(
            Line::new("collector")
                .tag("instance", &cfg.instance)
                .int("connections", metrics.probe_connections.get())
                .int("batches", metrics.probe_batches.get() as i64)
                .int("frame_errors", frame_errors as i64)
                .int("points_buffered", sink.shared.metrics.buffered.get())
                .at(now.div_euclid(hp) * hp),
        );
        sink.lines(lines);
    }
}

// ---------------------------------------------------------------------------------------------
// Sender: queue to InfluxDB

enum HttpWriter {
    V2 {
        client: influxdb2::Client,
        bucket: String,
    },
    V1 {
        client: reqwest::Client,
        url: String,
        query: Vec<(&'static str, String)>,
        auth: Option<(String, String)>,
    },
}

/// One request body for `influxdb2`'s writer: lines already rendered.
struct Body(String);

impl influxdb2::models::WriteDataPoint for Body {
    fn write_data_point_to<W: std::io::Write>(&self, mut w: W) -> std::io::Result<()> {
        w.write_all(self.0.as_bytes())?;
        w.write_all(b"\n")
    }
}

impl HttpWriter {
    fn new(cfg: &InfluxConfig, url: &str) -> Result<Self, SinkError> {
        // HTTP/1.1 only: InfluxDB's write API needs nothing more, and it keeps reqwest 0.11's
        // h2 0.3 (RUSTSEC-2026-0258, no 0.3 fix) out of every connection (docs/dependencies.md).
        let mut http = reqwest::ClientBuilder::new()
            .http1_only()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout);
        if let Some(path) = &cfg.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                SinkError::Client(format!("influx.ca_cert {}: {e}", path.display()))
            })?;
            let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                SinkError::Client(format!("influx.ca_cert {}: {e}", path.display()))
            })?;
            http = http.tls_built_in_root_certs(false).add_root_certificate(ca);
        }
        match cfg.api {
            InfluxApi::V2 => {
                let client = influxdb2::ClientBuilder::with_builder(
                    http,
                    url,
                    cfg.org.clone(),
                    cfg.token.0.clone(),
                )
                .gzip(true)
                .build()
                .map_err(|e| SinkError::Client(e.to_string()))?;
                Ok(Self::V2 {
                    client,
                    bucket: cfg.bucket.clone(),
                })
            }
            InfluxApi::V1 => {
                let mut query = vec![("db", cfg.database.clone()), ("precision", "s".into())];
                if let Some(rp) = &cfg.retention_policy {
                    query.push(("rp", rp.clone()));
                }
                Ok(Self::V1 {
                    client: http.build().map_err(|e| SinkError::Client(e.to_string()))?,
                    url: format!("{}/write", url.trim_end_matches('/')),
                    query,
                    auth: cfg.username.clone().map(|u| (u, cfg.password.0.clone())),
                })
            }
        }
    }

    async fn write(&self, body: String) -> Result<(), WriteError> {
        match self {
            Self::V2 { client, bucket } => {
                let points = futures_util::stream::iter([Body(body)]);
                client
                    .write_with_precision(
                        bucket,
                        points,
                        influxdb2::api::write::TimestampPrecision::Seconds,
                    )
                    .await
                    .map_err(|e| match e {
                        influxdb2::RequestError::Http { status, text } => {
                            classify(status.as_u16(), text)
                        }
                        other => WriteError::Retry(other.to_string()),
                    })
            }
            Self::V1 {
                client,
                url,
                query,
                auth,
            } => {
                use std::io::Write as _;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(body.as_bytes())
                    .and_then(|()| gz.write_all(b"\n"))
                    .map_err(|e| WriteError::Retry(e.to_string()))?;
                let gz = gz.finish().map_err(|e| WriteError::Retry(e.to_string()))?;
                let mut req = client
                    .post(url.as_str())
                    .query(query)
                    .header("Content-Encoding", "gzip")
                    .body(gz);
                if let Some((u, p)) = auth {
                    req = req.basic_auth(u, Some(p));
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| WriteError::Retry(e.to_string()))?;
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    return Ok(());
                }
                let text = resp.text().await.unwrap_or_default();
                Err(classify(status, text))
            }
        }
    }
}

fn classify(status: u16, text: String) -> WriteError {
    let msg = format!(
        "HTTP {status}: {}",
        text.chars().take(500).collect::<String>()
    );
    if (400..500).contains(&status) && status != 408 && status != 429 {
        WriteError::Rejected(msg)
    } else {
        WriteError::Retry(msg)
    }
}

/// `N` of InfluxDB's "partial write: ... dropped=N" answer.
fn partial_write_dropped(msg: &str) -> Option<usize> {
    let rest = &msg[msg.find("dropped=")? + "dropped=".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn backoff(cfg: &InfluxConfig, failures: u32) -> Duration {
    let exp = cfg
        .retry_min
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    exp.min(cfg.retry_max)
        .mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

async fn sender(shared: Arc<Shared>, writer: HttpWriter, stop: CancellationToken) {
    let cfg = shared.cfg.clone();
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.notify.notified() => {}
            _ = tokio::time::sleep(cfg.flush_interval) => {}
        }
        loop {
            let chunk = match shared.with_queue(|q| Ok((q.take()?, 0))) {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the InfluxDB backlog");
                    break;
                }
            };
            let result = writer.write(chunk.body.clone()).await;
            let m = &shared.metrics;
            let requeue = match result {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(failures, "InfluxDB reachable again; sending the backlog");
                    }
                    failures = 0;
                    m.written.inc_by(chunk.points as u64);
                    shared.with_queue(|q| Ok((q.done(&chunk)?, 0)))
                }
                Err(WriteError::Rejected(msg)) => {
                    // InfluxDB writes the valid lines of a request and reports the others
                    // ("partial write: ... dropped=N"); without that count, all were refused.
                    let refused =
                        partial_write_dropped(&msg).map_or(chunk.points, |n| n.min(chunk.points));
                    m.write_errors.inc();
                    m.rejected.inc_by(refused as u64);
                    m.written.inc_by((chunk.points - refused) as u64);
                    tracing::error!(error = %msg, refused, points = chunk.points, "InfluxDB refused points (not retried); the error quotes the offending line");
                    shared.with_queue(|q| Ok((q.done(&chunk)?, 0)))
                }
                Err(WriteError::Retry(msg)) => {
                    failures += 1;
                    m.write_errors.inc();
                    m.retried.inc_by(chunk.points as u64);
                    let wait = backoff(&cfg, failures);
                    // Logged at failures 1, 2, 4, 8...: a long outage does not flood the log.
                    if failures.is_power_of_two() {
                        tracing::warn!(error = %msg, failures, retry_in = ?wait, "InfluxDB write failed; keeping points");
                    }
                    if let Err(e) = shared.with_queue(|q| Ok(((), q.failed(&chunk)?))) {
                        tracing::error!(error = %e, "cannot keep failed InfluxDB points on disk");
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            };
            if let Err(e) = requeue {
                tracing::error!(error = %e, "cannot update the InfluxDB backlog");
            }
            if stop.is_cancelled() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(dir: &Path, memory: usize, batch: usize, budget: u64) -> Queue {
        Queue {
            memory: VecDeque::new(),
            disk: Outbox::open(&dir.join("o.db"), budget).unwrap(),
            memory_limit: memory,
            batch_points: batch,
            in_flight: 0,
        }
    }

    fn lines(r: std::ops::Range<usize>) -> Vec<String> {
        r.map(|i| format!("m v={i}i {i}")).collect()
    }

    /// Sends everything in order, returning the bodies' lines.
    fn drain(q: &mut Queue) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(c) = q.take().unwrap() {
            out.extend(c.body.lines().map(String::from));
            q.done(&c).unwrap();
        }
        out
    }

    #[test]
    fn overflow_and_failure_keep_order_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = queue(dir.path(), 10, 4, u64::MAX);
        q.push(lines(0..8)).unwrap();
        assert_eq!(q.disk.points, 0);
        // Overflow: memory moves to disk before the new lines.
        q.push(lines(8..14)).unwrap();
        assert_eq!((q.memory.len(), q.disk.points), (0, 14));
        let c = q.take().unwrap().unwrap();
        q.done(&c).unwrap();
        q.push(lines(14..16)).unwrap(); // backlog on disk: new lines go behind it
        assert_eq!(q.buffered(), 12);
        // Reopen (restart): the backlog is still there, in order.
        drop(q);
        let mut q = queue(dir.path(), 10, 4, u64::MAX);
        assert_eq!(q.buffered(), 12);
        assert_eq!(drain(&mut q), lines(4..16));
        // A failed memory chunk goes back in front, later lines after it.
        q.push(lines(16..20)).unwrap();
        let c = q.take().unwrap().unwrap();
        q.push(lines(20..22)).unwrap();
        q.failed(&c).unwrap();
        assert_eq!(q.buffered(), 6);
        assert_eq!(drain(&mut q), lines(16..22));
        assert_eq!(q.buffered(), 0);
    }

    #[test]
    fn budget_drops_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let one = lines(0..1)[0].len() as u64; // every line here is 9 or 10 bytes
        let mut q = queue(dir.path(), 1, 1, 5 * one);
        let mut dropped = 0;
        for i in 0..8 {
            dropped += q.push(lines(i..i + 1)).unwrap();
        }
        assert_eq!(dropped, 3);
        assert_eq!(drain(&mut q), lines(3..8));
    }

    #[test]
    fn config_errors_name_the_key() {
        let mut c = InfluxConfig {
            url: Some("ftp://x".into()),
            ..InfluxConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "influx.url");
        c.url = Some("http://127.0.0.1:8086".into());
        assert_eq!(c.validate().unwrap_err().0, "influx.org");
        c.api = InfluxApi::V1;
        assert_eq!(c.validate().unwrap_err().0, "influx.database");
        c.database = "rie".into();
        c.validate().unwrap();
        c.memory_points = 1;
        assert_eq!(c.validate().unwrap_err().0, "influx.memory_points");
        assert!(!format!("{:?}", Secret("hunter2".into())).contains("hunter2"));
    }

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
        let (sink, _hook) = start(&cfg, dir.path(), &db, sites, &metrics, &shutdown, &tracker)
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

    #[test]
    fn partial_write_count() {
        let msg = r#"HTTP 400: {"error":"partial write: field type conflict: input field \"bytes\" on measurement \"site_traffic\" is type integer, already exists as type float dropped=3"}"#;
        assert_eq!(partial_write_dropped(msg), Some(3));
        assert_eq!(partial_write_dropped("HTTP 400: bad"), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let c = InfluxConfig::default();
        for _ in 0..50 {
            let d = backoff(&c, 1);
            assert!(d >= c.retry_min / 2 && d <= c.retry_min, "{d:?}");
            let d = backoff(&c, 30);
            assert!(d >= c.retry_max / 2 && d <= c.retry_max, "{d:?}");
        }
    }
}
