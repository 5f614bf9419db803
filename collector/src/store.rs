//! The embedded store (SQLite, WAL, `synchronous=FULL`): minute rollups of traffic and link
//! checks, the per-(site, stream) high-water mark that makes redelivery idempotent, the
//! persisted live state of each site, and probe credential hashes.
//!
//! Design constraints:
//! - A batch is acknowledged only after the transaction holding it has committed, and commits
//!   are grouped: one writer thread takes every request waiting in the channel (up to
//!   `commit_max_batches`), applies them in one transaction and pays one fsync for all.
//! - Dedup is a high-water mark, not a set: a probe sends each stream's batches in order, so
//!   `seq <= last_stored` means "already stored". The mark moves in the same transaction as the
//!   data, so a crash can never store one without the other.
//! - Readers (API) use their own connection; WAL lets them read while the writer commits.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rie_proto::{Batch, SiteId};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::sites::{SiteLive, SiteRegistry};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the store writer has stopped")]
    Closed,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS probe_credentials(
    credential_ref TEXT PRIMARY KEY,
    token_sha256   TEXT NOT NULL,
    issued_ms      INTEGER NOT NULL
);
-- stream ids are u64 stored bit-for-bit in SQLite's signed 64-bit integers.
CREATE TABLE IF NOT EXISTS probe_streams(
    site_id  TEXT NOT NULL,
    stream   INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (site_id, stream)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flow_minute(
    minute    INTEGER NOT NULL,
    site_id   TEXT NOT NULL,
    exporter  TEXT NOT NULL,
    protocol  INTEGER NOT NULL,
    direction INTEGER NOT NULL,
    flows     INTEGER NOT NULL,
    packets   INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    PRIMARY KEY (minute, site_id, exporter, protocol, direction)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS flow_minute_site ON flow_minute(site_id, minute);
CREATE TABLE IF NOT EXISTS link_minute(
    minute     INTEGER NOT NULL,
    site_id    TEXT NOT NULL,
    link_id    TEXT NOT NULL,
    samples    INTEGER NOT NULL,
    sent       INTEGER NOT NULL,
    received   INTEGER NOT NULL,
    rtt_sum_us INTEGER NOT NULL,
    rtt_n      INTEGER NOT NULL,
    rtt_max_us INTEGER,
    PRIMARY KEY (minute, site_id, link_id)
) WITHOUT ROWID;
-- Outage, failover, degraded and silent episodes of a site (see `episodes`); end_ms is NULL
-- while the episode is open. link_id names the link involved (the failed primary for a
-- failover, the backup that carried it in `cause`), NULL when site-wide.
CREATE TABLE IF NOT EXISTS episodes(
    id       INTEGER PRIMARY KEY,
    site_id  TEXT NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('outage', 'failover', 'degraded', 'silent')),
    link_id  TEXT,
    start_ms INTEGER NOT NULL,
    end_ms   INTEGER,
    cause    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS episodes_site ON episodes(site_id, start_ms);
CREATE INDEX IF NOT EXISTS episodes_open ON episodes(end_ms) WHERE end_ms IS NULL;
-- Top remote prefixes per site and minute (the probe's top N by bytes; see rie_proto::talkers).
CREATE TABLE IF NOT EXISTS top_talker_minute(
    minute  INTEGER NOT NULL,
    site_id TEXT NOT NULL,
    prefix  TEXT NOT NULL,
    bytes   INTEGER NOT NULL,
    packets INTEGER NOT NULL,
    PRIMARY KEY (site_id, minute, prefix)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS site_status(
    site_id   TEXT PRIMARY KEY,
    live_json TEXT NOT NULL
);
";

/// Adds one aggregate to its minute row: probe batches and NetFlow input sum into the same rows.
pub const UPSERT_FLOW_MINUTE: &str =
    "INSERT INTO flow_minute(minute, site_id, exporter, protocol, direction, flows, packets, bytes)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
     ON CONFLICT(minute, site_id, exporter, protocol, direction) DO UPDATE SET
       flows = flows + excluded.flows, packets = packets + excluded.packets, bytes = bytes + excluded.bytes";

/// Adds one top talker to its minute row: probe batches and the NetFlow input sum into the same
/// rows (parameters: minute, site, prefix, bytes, packets).
pub const UPSERT_TOP_TALKER: &str =
    "INSERT INTO top_talker_minute(minute, site_id, prefix, bytes, packets) VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT(site_id, minute, prefix) DO UPDATE SET
       bytes = bytes + excluded.bytes, packets = packets + excluded.packets";

/// The same aggregates as `flow_minute`, split further by service-port class (see
/// `rie_proto::PortClass`). Every upsert into `flow_minute` is mirrored here in the same
/// transaction, so for any filter on minute, site and exporter the sums of both tables are equal.
/// A separate table rather than a new `flow_minute` column: SQLite cannot change a primary key
/// with ALTER TABLE, and readers of `flow_minute` stay untouched.
pub const UPSERT_FLOW_CLASS_MINUTE: &str =
    "INSERT INTO flow_class_minute(minute, site_id, exporter, protocol, direction, port_class, flows, packets, bytes)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
     ON CONFLICT(minute, site_id, exporter, protocol, direction, port_class) DO UPDATE SET
       flows = flows + excluded.flows, packets = packets + excluded.packets, bytes = bytes + excluded.bytes";

/// Creates `flow_class_minute` on a database that predates it, carrying the existing
/// `flow_minute` rows over with class `unknown` in the same transaction, so that totals by class
/// still sum to the totals on an upgraded collector.
fn migrate_port_classes(conn: &Connection) -> Result<(), rusqlite::Error> {
    let exists: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'flow_class_minute'",
        [],
        |r| r.get(0),
    )?;
    if exists > 0 {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS flow_class_minute(
            minute     INTEGER NOT NULL,
            site_id    TEXT NOT NULL,
            exporter   TEXT NOT NULL,
            protocol   INTEGER NOT NULL,
            direction  INTEGER NOT NULL,
            port_class TEXT NOT NULL,
            flows      INTEGER NOT NULL,
            packets    INTEGER NOT NULL,
            bytes      INTEGER NOT NULL,
            PRIMARY KEY (minute, site_id, exporter, protocol, direction, port_class)
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS flow_class_minute_site ON flow_class_minute(site_id, minute);
         INSERT OR IGNORE INTO flow_class_minute
            SELECT minute, site_id, exporter, protocol, direction, 'unknown', flows, packets, bytes
            FROM flow_minute;
         COMMIT;",
    )
}

/// Opens (creating if needed) the database with the durability settings the acks rely on.
///
/// # Errors
/// [`StoreError::Open`] naming the file.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let wrap = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            wrap(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("cannot create {}: {e}", dir.display())),
            ))
        })?;
    }
    let conn = Connection::open(path).map_err(wrap)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(wrap)?;
    // FULL: the WAL is fsynced at every commit, so an acknowledged batch survives power loss.
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
        .map_err(wrap)?;
    conn.execute_batch(SCHEMA).map_err(wrap)?;
    migrate_port_classes(&conn).map_err(wrap)?;
    crate::retention::migrate(&conn).map_err(wrap)?;
    Ok(conn)
}

/// Outcome of a stored batch, sent back to the connection that will ack it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    Duplicate,
}

/// A batch on its way to the writer.
pub struct BatchWrite {
    pub site_idx: usize,
    pub site: SiteId,
    pub stream: u64,
    pub batch: Batch,
    pub received_ms: i64,
    pub reply: oneshot::Sender<Result<Stored, String>>,
}

/// Highest stored sequence per (site, stream); shared so that a hello can tell the probe
/// where it stands without a round-trip through the writer.
#[derive(Default)]
pub struct DedupIndex(Mutex<HashMap<(SiteId, u64), u64>>);

impl DedupIndex {
    pub fn last(&self, site: &SiteId, stream: u64) -> Option<u64> {
        self.lock().get(&(site.clone(), stream)).copied()
    }

    /// Raises the mark of `(site, stream)` to at least `seq`: a mark learned from a cluster
    /// peer (`stream_marks`), so that batches up to it are acknowledged as duplicates. Held in
    /// memory only: the next batch stored persists a higher mark; a restart before that asks
    /// the peers again. Never lowers a mark.
    pub fn raise(&self, site: &SiteId, stream: u64, seq: u64) {
        let mut m = self.lock();
        let e = m.entry((site.clone(), stream)).or_insert(seq);
        if *e < seq {
            *e = seq;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(SiteId, u64), u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Loads the dedup marks and restores each site's persisted live state.
///
/// # Errors
/// Database errors.
pub fn load_state(conn: &Connection, sites: &SiteRegistry) -> Result<DedupIndex, StoreError> {
    let mut map = HashMap::new();
    let mut stmt = conn.prepare("SELECT site_id, stream, last_seq FROM probe_streams")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (site, stream, last) = row?;
        if let Ok(site) = SiteId::new(site) {
            map.insert((site, stream as u64), last as u64);
        }
    }
    let mut stmt = conn.prepare("SELECT site_id, live_json FROM site_status")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (site, json) = row?;
        let idx = SiteId::new(site)
            .ok()
            .and_then(|s| sites.inventory.site_index(&s));
        match (idx, serde_json::from_str::<SiteLive>(&json)) {
            (Some(idx), Ok(live)) => sites.restore(idx, live),
            // A site removed from the inventory keeps its rows; it is just not shown.
            (None, _) => {}
            (Some(_), Err(e)) => {
                tracing::warn!(error = %e, "unreadable persisted site state, starting fresh")
            }
        }
    }
    Ok(DedupIndex(Mutex::new(map)))
}

/// The writer: owns the write connection, runs on its own thread until every sender is gone,
/// so that shutdown drains the queue before returning.
pub struct Writer {
    conn: Connection,
    dedup: Arc<DedupIndex>,
    sites: Arc<SiteRegistry>,
    metrics: Arc<Metrics>,
    max_group: usize,
    /// Optional hook (InfluxDB sink): receives each group's newly stored batches after commit.
    /// Unbounded on purpose: the writer never waits on a sink; the sink bounds its own memory.
    on_commit: Option<CommitHook>,
}

/// Newly stored batches of one commit, with the inventory index of their site.
pub type Committed = Vec<(usize, Batch)>;
/// Where the writer sends [`Committed`] groups (see [`Writer::on_commit`]).
pub type CommitHook = mpsc::UnboundedSender<Committed>;

impl Writer {
    pub fn new(
        conn: Connection,
        dedup: Arc<DedupIndex>,
        sites: Arc<SiteRegistry>,
        metrics: Arc<Metrics>,
        max_group: usize,
    ) -> Self {
        Self {
            conn,
            dedup,
            sites,
            metrics,
            max_group,
            on_commit: None,
        }
    }

    /// Sends every committed group's new batches to `hook` (never blocks the writer).
    pub fn on_commit(mut self, hook: CommitHook) -> Self {
        self.on_commit = Some(hook);
        self
    }

    /// Runs until the channel is closed and drained.
    pub fn run(mut self, mut rx: mpsc::Receiver<BatchWrite>) {
        let mut group = Vec::with_capacity(self.max_group);
        while let Some(first) = rx.blocking_recv() {
            group.push(first);
            while group.len() < self.max_group {
                match rx.try_recv() {
                    Ok(w) => group.push(w),
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group);
        }
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!(error = %e, "final checkpoint failed (data is safe in the WAL)");
        }
        tracing::info!("store writer stopped, queue drained");
    }

    fn commit_group(&mut self, group: &mut Vec<BatchWrite>) {
        let started = Instant::now();
        let n = group.len();
        match self.apply(group) {
            Ok(outcomes) => {
                self.metrics.store_commits.inc();
                self.metrics
                    .store_commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.store_batches_per_commit.observe(n as f64);
                let mut dedup = self.dedup.lock();
                let mut committed = Vec::new();
                for (w, outcome) in group.drain(..).zip(outcomes) {
                    let mut shift = Shift::default();
                    let stored = match outcome {
                        Outcome::New {
                            next,
                            gap,
                            flow_records,
                            shift: s,
                        } => {
                            shift = s;
                            self.metrics
                                .flow_records
                                .with_label_values(&["probe"])
                                .inc_by(flow_records);
                            dedup.insert((w.site.clone(), w.stream), w.batch.seq);
                            self.sites.apply(w.site_idx, *next);
                            self.metrics.probe_batches.inc();
                            if gap {
                                self.metrics.sequence_gaps.inc();
                            }
                            Stored::New
                        }
                        Outcome::Duplicate => {
                            self.metrics.duplicate_batches.inc();
                            Stored::Duplicate
                        }
                    };
                    let _ = w.reply.send(Ok(stored));
                    if stored == Stored::New && self.on_commit.is_some() {
                        // The sink reads back what was stored: the batch on the collector's clock.
                        let mut batch = w.batch;
                        shift.apply(&mut batch);
                        committed.push((w.site_idx, batch));
                    }
                }
                drop(dedup);
                if let (Some(hook), false) = (&self.on_commit, committed.is_empty()) {
                    // A stopped sink is not the store's problem: the data is committed.
                    let _ = hook.send(committed);
                }
            }
            Err(e) => {
                self.metrics.store_errors.inc();
                tracing::error!(error = %e, batches = n, "group commit failed; batches not acknowledged");
                for w in group.drain(..) {
                    let _ = w.reply.send(Err(e.to_string()));
                }
            }
        }
    }

    fn apply(&mut self, group: &[BatchWrite]) -> Result<Vec<Outcome>, rusqlite::Error> {
        let tx = self.conn.transaction()?;
        let mut outcomes = Vec::with_capacity(group.len());
        // Marks moved by this group, visible to later batches of the same group.
        let mut pending: HashMap<(&SiteId, u64), u64> = HashMap::new();
        // Live state per site as it evolves through the group.
        let mut live: HashMap<usize, SiteLive> = HashMap::new();
        {
            let dedup = self.dedup.lock();
            let mut flow = tx.prepare_cached(UPSERT_FLOW_MINUTE)?;
            let mut flow_class = tx.prepare_cached(UPSERT_FLOW_CLASS_MINUTE)?;
            let mut talker = tx.prepare_cached(UPSERT_TOP_TALKER)?;
            let mut link = tx.prepare_cached(
                "INSERT INTO link_minute(minute, site_id, link_id, samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(minute, site_id, link_id) DO UPDATE SET
                   samples = samples + 1, sent = sent + excluded.sent, received = received + excluded.received,
                   rtt_sum_us = rtt_sum_us + excluded.rtt_sum_us, rtt_n = rtt_n + excluded.rtt_n,
                   rtt_max_us = max(coalesce(rtt_max_us, 0), coalesce(excluded.rtt_max_us, 0))",
            )?;
            let mut mark = tx.prepare_cached(
                "INSERT INTO probe_streams(site_id, stream, last_seq, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(site_id, stream) DO UPDATE SET last_seq = excluded.last_seq, updated_ms = excluded.updated_ms",
            )?;
            let mut status = tx.prepare_cached(
                "INSERT INTO site_status(site_id, live_json) VALUES (?1, ?2)
                 ON CONFLICT(site_id) DO UPDATE SET live_json = excluded.live_json",
            )?;
            for w in group {
                let key = (&w.site, w.stream);
                let last = pending
                    .get(&key)
                    .copied()
                    .or_else(|| dedup.get(&(w.site.clone(), w.stream)).copied());
                if last.is_some_and(|l| w.batch.seq <= l) {
                    outcomes.push(Outcome::Duplicate);
                    continue;
                }
                let gap = last.map_or(w.batch.seq > 1, |l| w.batch.seq > l + 1);
                let site = w.site.as_str();
                let mut flow_records = 0u64;
                // Probe timestamps move to the collector's clock; flow minutes by whole minutes
                // only, so that a well-synchronised probe's buckets stay exactly as counted.
                let shift = Shift::of(self.sites.clock_correction_ms(w.site_idx));
                let Shift {
                    minute_shift,
                    second_shift,
                } = shift;
                for f in &w.batch.flows {
                    let Some(rec) = crate::ingest::validate_flow(f, &self.metrics) else {
                        continue;
                    };
                    flow_records += 1;
                    flow.execute(params![
                        rec.minute - minute_shift,
                        site,
                        rec.exporter,
                        rec.protocol,
                        rec.direction,
                        rec.flows,
                        rec.packets,
                        rec.bytes
                    ])?;
                    flow_class.execute(params![
                        rec.minute - minute_shift,
                        site,
                        rec.exporter,
                        rec.protocol,
                        rec.direction,
                        rec.port_class.as_str(),
                        rec.flows,
                        rec.packets,
                        rec.bytes
                    ])?;
                }
                for t in &w.batch.top_talkers {
                    // Same checks as flow records: a usable prefix, counters that fit.
                    let (Ok(net), Ok(bytes), Ok(packets)) = (
                        t.prefix.parse::<ipnet::IpNet>(),
                        i64::try_from(t.bytes),
                        i64::try_from(t.packets),
                    ) else {
                        self.metrics
                            .invalid_records
                            .with_label_values(&["bad_top_talker"])
                            .inc();
                        continue;
                    };
                    talker.execute(params![
                        t.minute.div_euclid(60) * 60 - minute_shift,
                        site,
                        net.trunc().to_string(),
                        bytes,
                        packets
                    ])?;
                }
                for s in &w.batch.samples {
                    if self
                        .sites
                        .inventory
                        .links_of(&w.site)
                        .all(|l| l.id != s.link)
                    {
                        self.metrics
                            .invalid_records
                            .with_label_values(&["unknown_link"])
                            .inc();
                        continue;
                    }
                    let received = s.received.min(s.sent);
                    let (rtt_sum, rtt_n) = match s.rtt_avg_us {
                        Some(avg) => (i64::from(avg) * i64::from(received), i64::from(received)),
                        None => (0, 0),
                    };
                    link.execute(params![
                        (s.start - second_shift).div_euclid(60) * 60,
                        site,
                        s.link.as_str(),
                        s.sent,
                        received,
                        rtt_sum,
                        rtt_n,
                        s.rtt_max_us
                    ])?;
                }
                mark.execute(params![
                    site,
                    w.stream as i64,
                    w.batch.seq as i64,
                    w.received_ms
                ])?;
                // Several batches of one site in a group chain on the state this group built.
                let base = live
                    .remove(&w.site_idx)
                    .unwrap_or_else(|| self.sites.current(w.site_idx));
                let (mut next, transition) =
                    self.sites
                        .advance(w.site_idx, base, &w.batch, w.received_ms);
                if let Some(t) = &transition {
                    crate::episodes::record_transition(&tx, site, &mut next, t)?;
                }
                let json = serde_json::to_string(&next)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                status.execute(params![site, json])?;
                live.insert(w.site_idx, next.clone());
                pending.insert(key, w.batch.seq);
                outcomes.push(Outcome::New {
                    next: Box::new(next),
                    gap,
                    flow_records,
                    shift,
                });
            }
        }
        tx.commit()?;
        Ok(outcomes)
    }
}

/// How a batch's timestamps move to the collector's clock: flow minutes by whole minutes only
/// (so that a well-synchronised probe's buckets stay exactly as counted), samples by seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Shift {
    minute_shift: i64,
    second_shift: i64,
}

impl Shift {
    fn of(correction_ms: i64) -> Self {
        Self {
            minute_shift: (correction_ms as f64 / 60_000.0).round() as i64 * 60,
            second_shift: (correction_ms as f64 / 1000.0).round() as i64,
        }
    }

    /// The batch as it was stored.
    fn apply(self, batch: &mut rie_proto::Batch) {
        for f in &mut batch.flows {
            f.minute -= self.minute_shift;
        }
        for t in &mut batch.top_talkers {
            t.minute -= self.minute_shift;
        }
        for s in &mut batch.samples {
            s.start -= self.second_shift;
        }
    }
}

enum Outcome {
    New {
        next: Box<SiteLive>,
        gap: bool,
        /// Valid flow aggregates stored (counted once the commit succeeded).
        flow_records: u64,
        /// The clock correction applied to its timestamps.
        shift: Shift,
    },
    Duplicate,
}

/// Counters for one protocol (or all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Counts {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// Answer of `GET /api/v1/flows/totals` (read back by the cluster's national fan-out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FlowTotals {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    #[serde(default)]
    pub by_protocol: BTreeMap<String, Counts>,
    /// The same totals split by service-port class (`unknown` for data from probes and
    /// databases that predate classes); sums exactly to the totals.
    #[serde(default)]
    pub by_port_class: BTreeMap<String, Counts>,
    /// The same totals split by direction (`inbound`, `outbound`, `unknown`); sums exactly
    /// to the totals.
    #[serde(default)]
    pub by_direction: BTreeMap<String, Counts>,
}

impl FlowTotals {
    /// Adds another part's totals (another collector's slice of the sites).
    pub fn add(&mut self, other: FlowTotals) {
        self.flows += other.flows;
        self.packets += other.packets;
        self.bytes += other.bytes;
        for (mine, theirs) in [
            (&mut self.by_protocol, other.by_protocol),
            (&mut self.by_port_class, other.by_port_class),
            (&mut self.by_direction, other.by_direction),
        ] {
            for (k, c) in theirs {
                let e = mine.entry(k).or_default();
                e.flows += c.flows;
                e.packets += c.packets;
                e.bytes += c.bytes;
            }
        }
    }
}

/// One prefix of `GET /api/v1/sites/{id}/top_talkers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TalkerTotal {
    pub prefix: String,
    pub bytes: u64,
    pub packets: u64,
}

/// One row of `link_minute` (or of `link_5min` once compacted): a link's checks summed over
/// one minute (or five).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMinute {
    pub link: String,
    /// Bucket start, Unix seconds.
    pub minute: i64,
    /// Bucket length: 60, or 300 for minutes older than `store.retention.minute_days`.
    pub bucket_s: i64,
    pub sent: i64,
    pub received: i64,
    /// Sum of the samples' average RTTs, over `rtt_n` samples that measured one.
    pub rtt_sum_us: i64,
    pub rtt_n: i64,
    pub rtt_max_us: Option<i64>,
}

/// Runs a `SELECT key, SUM(flows), SUM(packets), SUM(bytes) ... GROUP BY key` into counters.
fn sum_by_key(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<BTreeMap<String, Counts>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, |r| {
        Ok((
            r.get::<_, String>(0)?,
            Counts {
                flows: r.get::<_, i64>(1)? as u64,
                packets: r.get::<_, i64>(2)? as u64,
                bytes: r.get::<_, i64>(3)? as u64,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Read side for the API, on its own connection.
pub struct Reader {
    conn: Mutex<Connection>,
}

impl Reader {
    /// # Errors
    /// [`StoreError::Open`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: Mutex::new(open(path)?),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Traffic whose bucket (minute, or hour/day once compacted, see `retention`) starts in
    /// `[from, to)` (Unix seconds).
    ///
    /// # Errors
    /// Database errors.
    pub fn flow_totals(
        &self,
        from: i64,
        to: i64,
        site: Option<&str>,
        exporter: Option<&str>,
    ) -> Result<FlowTotals, StoreError> {
        let conn = self.conn();
        let by_protocol = sum_by_key(
            &conn,
            "SELECT CAST(protocol AS TEXT), SUM(flows), SUM(packets), SUM(bytes) FROM flow_rollup
             WHERE start >= ?1 AND start < ?2
               AND (?3 IS NULL OR site_id = ?3) AND (?4 IS NULL OR exporter = ?4)
             GROUP BY protocol ORDER BY protocol",
            params![from, to, site, exporter],
        )?;
        let by_port_class = sum_by_key(
            &conn,
            "SELECT port_class, SUM(flows), SUM(packets), SUM(bytes) FROM flow_class_rollup
             WHERE start >= ?1 AND start < ?2
               AND (?3 IS NULL OR site_id = ?3) AND (?4 IS NULL OR exporter = ?4)
             GROUP BY port_class ORDER BY port_class",
            params![from, to, site, exporter],
        )?;
        let by_direction = sum_by_key(
            &conn,
            "SELECT CASE direction WHEN 1 THEN 'inbound' WHEN 2 THEN 'outbound' ELSE 'unknown' END AS d,
                    SUM(flows), SUM(packets), SUM(bytes) FROM flow_rollup
             WHERE start >= ?1 AND start < ?2
               AND (?3 IS NULL OR site_id = ?3) AND (?4 IS NULL OR exporter = ?4)
             GROUP BY d ORDER BY d",
            params![from, to, site, exporter],
        )?;
        let mut out = FlowTotals {
            by_protocol,
            by_port_class,
            by_direction,
            ..FlowTotals::default()
        };
        for c in out.by_protocol.values() {
            out.flows += c.flows;
            out.packets += c.packets;
            out.bytes += c.bytes;
        }
        Ok(out)
    }

    /// A site's top talkers summed over the buckets (minutes, or coarser once compacted, see
    /// `retention`) starting in `[from, to)` (Unix seconds), by bytes (ties by prefix), at most
    /// `limit`.
    ///
    /// # Errors
    /// Database errors.
    pub fn top_talkers(
        &self,
        site: &str,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<TalkerTotal>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT prefix, SUM(bytes) AS b, SUM(packets) FROM top_talker_rollup
             WHERE site_id = ?1 AND start >= ?2 AND start < ?3
             GROUP BY prefix ORDER BY b DESC, prefix LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![site, from, to, limit], |r| {
            Ok(TalkerTotal {
                prefix: r.get(0)?,
                bytes: r.get::<_, i64>(1)? as u64,
                packets: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Episodes of a site overlapping `[from_ms, to_ms)`.
    ///
    /// # Errors
    /// Database errors.
    pub fn episodes(
        &self,
        site: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<crate::episodes::Episode>, StoreError> {
        Ok(crate::episodes::query(&self.conn(), site, from_ms, to_ms)?)
    }

    /// Rollups of a site's link checks with the bucket start in `[from, to)` (Unix seconds),
    /// ordered by link then time: the status page's recent RTT and loss. Minutes, and
    /// five-minute buckets for the part older than the live window (`retention`).
    ///
    /// # Errors
    /// Database errors.
    pub fn link_minutes(
        &self,
        site: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<LinkMinute>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT link_id, minute, 60, sent, received, rtt_sum_us, rtt_n, rtt_max_us FROM link_minute
             WHERE site_id = ?1 AND minute >= ?2 AND minute < ?3
             UNION ALL
             SELECT link_id, five_min, 300, sent, received, rtt_sum_us, rtt_n, rtt_max_us FROM link_5min
             WHERE site_id = ?1 AND five_min >= ?2 AND five_min < ?3
             ORDER BY 1, 2, 3",
        )?;
        let rows = stmt.query_map(params![site, from, to], |r| {
            Ok(LinkMinute {
                link: r.get(0)?,
                minute: r.get(1)?,
                bucket_s: r.get(2)?,
                sent: r.get(3)?,
                received: r.get(4)?,
                rtt_sum_us: r.get(5)?,
                rtt_n: r.get(6)?,
                rtt_max_us: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Runs `f` on the reader's connection (indicators read several tables in one go).
    pub fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        f(&self.conn())
    }

    /// Cheap liveness query for `/healthz`.
    ///
    /// # Errors
    /// Database errors.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn()
            .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
            .optional()?;
        Ok(())
    }

    /// Checks a probe's token (see `credentials`).
    ///
    /// # Errors
    /// Database errors.
    pub fn verify_token(
        &self,
        credential_ref: &str,
        token: &str,
    ) -> Result<crate::credentials::Verdict, StoreError> {
        Ok(crate::credentials::verify(
            &self.conn(),
            credential_ref,
            token,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_gets_batches_shifted_as_they_were_stored() {
        // Within 30 s a probe's minutes stay as counted; past it they move by whole minutes,
        // samples by seconds: the InfluxDB sink must read back the minute the store wrote.
        assert_eq!(
            Shift::of(29_000),
            Shift {
                minute_shift: 0,
                second_shift: 29
            }
        );
        assert_eq!(
            Shift::of(95_000),
            Shift {
                minute_shift: 120,
                second_shift: 95
            }
        );
        assert_eq!(
            Shift::of(-45_000),
            Shift {
                minute_shift: -60,
                second_shift: -45
            }
        );
        let mut b: rie_proto::Batch = serde_json::from_value(serde_json::json!({
            "seq": 1, "created_ms": 0,
            "flows": [{"minute": 600, "protocol": 6, "direction": "inbound", "flows": 1, "packets": 1, "bytes": 40}],
            "top_talkers": [{"minute": 600, "prefix": "10.0.0.0/24", "bytes": 40, "packets": 1}],
            "samples": [{"link": "S1-P", "check": "icmp", "target": "t", "start": 605, "interval_s": 10, "sent": 1, "received": 1}]
        }))
        .unwrap();
        Shift::of(95_000).apply(&mut b);
        assert_eq!(b.flows[0].minute, 480);
        assert_eq!(b.top_talkers[0].minute, 480);
        assert_eq!(b.samples[0].start, 510);
    }

    #[test]
    fn a_database_from_before_port_classes_is_migrated_with_its_totals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // The flow_minute table as an older collector created it, with data.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE flow_minute(
                    minute INTEGER NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
                    protocol INTEGER NOT NULL, direction INTEGER NOT NULL, flows INTEGER NOT NULL,
                    packets INTEGER NOT NULL, bytes INTEGER NOT NULL,
                    PRIMARY KEY (minute, site_id, exporter, protocol, direction)) WITHOUT ROWID;
                 INSERT INTO flow_minute VALUES (120, 'S1', '', 6, 1, 3, 10, 1000);
                 INSERT INTO flow_minute VALUES (120, 'S1', '', 17, 2, 1, 2, 300);
                 INSERT INTO flow_minute VALUES (180, 'S2', '', 6, 1, 5, 7, 700);",
            )
            .unwrap();
        }
        let reader = Reader::open(&path).unwrap();
        let t = reader.flow_totals(0, 600, Some("S1"), None).unwrap();
        assert_eq!((t.flows, t.packets, t.bytes), (4, 12, 1300));
        assert_eq!(
            t.by_port_class.into_iter().collect::<Vec<_>>(),
            vec![(
                "unknown".to_string(),
                Counts {
                    flows: 4,
                    packets: 12,
                    bytes: 1300
                }
            )]
        );

        // New data lands in both tables; reopening does not copy the old rows again.
        {
            let conn = open(&path).unwrap();
            for sql in [UPSERT_FLOW_MINUTE, UPSERT_FLOW_CLASS_MINUTE] {
                let n = sql.matches('?').count();
                let class = rusqlite::types::Value::Text("web".into());
                let mut vals: Vec<rusqlite::types::Value> = vec![
                    120.into(),
                    rusqlite::types::Value::Text("S1".into()),
                    rusqlite::types::Value::Text(String::new()),
                    6.into(),
                    1.into(),
                ];
                if n == 9 {
                    vals.push(class);
                }
                vals.extend([1.into(), 1.into(), 60.into()]);
                conn.execute(sql, rusqlite::params_from_iter(vals)).unwrap();
            }
        }
        let reader = Reader::open(&path).unwrap();
        let t = reader.flow_totals(0, 600, Some("S1"), None).unwrap();
        assert_eq!((t.flows, t.packets, t.bytes), (5, 13, 1360));
        assert_eq!(t.by_port_class["unknown"].bytes, 1300);
        assert_eq!(t.by_port_class["web"].bytes, 60);
        assert_eq!(t.by_protocol["6"].bytes, 1060);
    }
}
