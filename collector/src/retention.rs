//! Retention of the traffic and link-check rollups: the hourly and daily tables, the views that
//! read across the tiers, and the compaction job that moves old rows down a tier and deletes
//! what is past the last horizon.
//!
//! Design (see docs/storage.md):
//! - Tiers: `flow_minute`/`link_minute` (written by the store writer) kept `minute_days`,
//!   `flow_hour`/`link_hour` kept `hour_days`, `flow_day`/`link_day` kept `day_years`. Same
//!   columns; the first column is the bucket start in Unix seconds (UTC, like report periods).
//! - Every rollup is additive (sums, and a max for `rtt_max_us`), so a row rolled into a bucket
//!   that already holds data simply adds to it: late data and repeated passes are harmless.
//! - Crash safety: each chunk rolls up a few thousand source rows and deletes exactly those
//!   rows in one `BEGIN IMMEDIATE` transaction, so a crash never counts a row twice nor loses it.
//! - No stall: chunks are small and the job sleeps between them, so the store writer (which
//!   waits on SQLite's busy handler) gets the write lock between two chunks. The job never
//!   touches rows newer than the minute horizon (at least one day old), which the writer and the
//!   InfluxDB sink still update.
//! - Readers (`flow_rollup`, `link_rollup` views) count a bucket in `[from, to)` when its start
//!   is in it, so totals over hour-aligned (resp. day-aligned) windows are exactly equal before
//!   and after compaction; report periods are UTC months, always day-aligned.

use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Tables of the hourly and daily tiers and the views over the three tiers.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS flow_hour(
    hour INTEGER NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    protocol INTEGER NOT NULL, direction INTEGER NOT NULL,
    flows INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (hour, site_id, exporter, protocol, direction)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flow_day(
    day INTEGER NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    protocol INTEGER NOT NULL, direction INTEGER NOT NULL,
    flows INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (day, site_id, exporter, protocol, direction)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS link_hour(
    hour INTEGER NOT NULL, site_id TEXT NOT NULL, link_id TEXT NOT NULL,
    samples INTEGER NOT NULL, sent INTEGER NOT NULL, received INTEGER NOT NULL,
    rtt_sum_us INTEGER NOT NULL, rtt_n INTEGER NOT NULL, rtt_max_us INTEGER,
    PRIMARY KEY (hour, site_id, link_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS link_day(
    day INTEGER NOT NULL, site_id TEXT NOT NULL, link_id TEXT NOT NULL,
    samples INTEGER NOT NULL, sent INTEGER NOT NULL, received INTEGER NOT NULL,
    rtt_sum_us INTEGER NOT NULL, rtt_n INTEGER NOT NULL, rtt_max_us INTEGER,
    PRIMARY KEY (day, site_id, link_id)
) WITHOUT ROWID;
-- All tiers at once; `start` is the bucket start. SQLite pushes a WHERE on start into each
-- arm, so each arm is a range scan of its primary key.
CREATE VIEW IF NOT EXISTS flow_rollup(start, site_id, exporter, protocol, direction, flows, packets, bytes) AS
    SELECT minute, site_id, exporter, protocol, direction, flows, packets, bytes FROM flow_minute
    UNION ALL SELECT hour, site_id, exporter, protocol, direction, flows, packets, bytes FROM flow_hour
    UNION ALL SELECT day, site_id, exporter, protocol, direction, flows, packets, bytes FROM flow_day;
CREATE VIEW IF NOT EXISTS link_rollup(start, site_id, link_id, samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us) AS
    SELECT minute, site_id, link_id, samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us FROM link_minute
    UNION ALL SELECT hour, site_id, link_id, samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us FROM link_hour
    UNION ALL SELECT day, site_id, link_id, samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us FROM link_day;
";

/// `[store.retention]`: how long each tier is kept and how the compaction job paces itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days of per-minute rows; older minutes are rolled into hours.
    #[serde(default = "default_minute_days")]
    pub minute_days: u32,
    /// Days of hourly rows; older hours are rolled into days.
    #[serde(default = "default_hour_days")]
    pub hour_days: u32,
    /// Years of daily rows; older days are deleted.
    #[serde(default = "default_day_years")]
    pub day_years: u32,
    /// How often the compaction job runs.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Source rows per compaction transaction (bounds how long the writer may wait).
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u32,
}

fn default_minute_days() -> u32 {
    35
}
fn default_hour_days() -> u32 {
    400
}
fn default_day_years() -> u32 {
    5
}
fn default_interval() -> Duration {
    Duration::from_secs(600)
}
fn default_chunk_rows() -> u32 {
    2000
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            minute_days: default_minute_days(),
            hour_days: default_hour_days(),
            day_years: default_day_years(),
            interval: default_interval(),
            chunk_rows: default_chunk_rows(),
        }
    }
}

impl RetentionConfig {
    /// Checks the horizons are ordered; returns the offending key and the fix.
    ///
    /// # Errors
    /// `(key, message)` of the first invalid setting.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.minute_days < 1 {
            return Err((
                "store.retention.minute_days",
                "must be at least 1 (recent minutes are still being written); e.g. 35".into(),
            ));
        }
        if self.hour_days <= self.minute_days {
            return Err((
                "store.retention.hour_days",
                format!(
                    "must be more than store.retention.minute_days ({}); e.g. 400",
                    self.minute_days
                ),
            ));
        }
        if u64::from(self.day_years) * 365 <= u64::from(self.hour_days) {
            return Err((
                "store.retention.day_years",
                format!(
                    "must cover more than store.retention.hour_days ({} days); e.g. 5",
                    self.hour_days
                ),
            ));
        }
        if self.chunk_rows == 0 || self.chunk_rows > 100_000 {
            return Err((
                "store.retention.chunk_rows",
                "must be between 1 and 100000; e.g. 2000".into(),
            ));
        }
        if self.interval < Duration::from_secs(1) {
            return Err((
                "store.retention.interval",
                "must be at least 1s; e.g. \"10m\"".into(),
            ));
        }
        Ok(())
    }

    /// Bucket starts (Unix seconds) below which minute rows become hours, hour rows become days,
    /// and day rows are deleted, at `now` (Unix seconds).
    #[must_use]
    pub fn horizons(&self, now: i64) -> Horizons {
        let floor = |t: i64, b: i64| t.div_euclid(b) * b;
        Horizons {
            minute: floor(now - i64::from(self.minute_days) * 86_400, 3600),
            hour: floor(now - i64::from(self.hour_days) * 86_400, 86_400),
            // Years of 365.25 days, at a day boundary.
            day: floor(now - i64::from(self.day_years) * 31_557_600, 86_400),
        }
    }
}

/// See [`RetentionConfig::horizons`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizons {
    pub minute: i64,
    pub hour: i64,
    pub day: i64,
}

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Source rows rolled into the next tier (and deleted from theirs).
    pub rolled: u64,
    /// Daily rows deleted past the last horizon.
    pub expired: u64,
    pub transactions: u64,
}

/// One table family: key columns after the bucket, and how values combine.
struct Family {
    keys: &'static str,
    values: &'static str,
    aggs: &'static str,
    update: &'static str,
}

const FLOW: Family = Family {
    keys: "site_id, exporter, protocol, direction",
    values: "flows, packets, bytes",
    aggs: "SUM(flows), SUM(packets), SUM(bytes)",
    update: "flows = flows + excluded.flows, packets = packets + excluded.packets, bytes = bytes + excluded.bytes",
};
const LINK: Family = Family {
    keys: "site_id, link_id",
    values: "samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us",
    aggs: "SUM(samples), SUM(sent), SUM(received), SUM(rtt_sum_us), SUM(rtt_n), MAX(rtt_max_us)",
    update: "samples = samples + excluded.samples, sent = sent + excluded.sent,
             received = received + excluded.received, rtt_sum_us = rtt_sum_us + excluded.rtt_sum_us,
             rtt_n = rtt_n + excluded.rtt_n,
             rtt_max_us = CASE WHEN excluded.rtt_max_us IS NULL THEN rtt_max_us
                               WHEN rtt_max_us IS NULL THEN excluded.rtt_max_us
                               ELSE max(rtt_max_us, excluded.rtt_max_us) END",
};

/// The compaction job, on its own connection.
pub struct Compactor {
    conn: Connection,
    cfg: RetentionConfig,
    /// Pause between two chunks, so the store writer takes the lock in between.
    pause: Duration,
}

impl Compactor {
    /// # Errors
    /// Database errors.
    pub fn new(conn: Connection, cfg: RetentionConfig) -> Result<Self, rusqlite::Error> {
        // In WAL mode NORMAL stays consistent after a crash; a lost last chunk is redone.
        conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
        Ok(Self {
            conn,
            cfg,
            pause: Duration::from_millis(10),
        })
    }

    /// Sets the pause between chunks (the default is 10 ms).
    #[must_use]
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// Runs one pass at `now` (Unix seconds): minutes → hours → days → deleted, until no row is
    /// past its horizon or `stop` is cancelled.
    ///
    /// # Errors
    /// Database errors (the pass stops; committed chunks stay committed).
    pub fn pass(
        &mut self,
        now: i64,
        stop: &CancellationToken,
    ) -> Result<PassStats, rusqlite::Error> {
        let h = self.cfg.horizons(now);
        let mut st = PassStats::default();
        for (fam, minute, hour, day) in [
            (&FLOW, "flow_minute", "flow_hour", "flow_day"),
            (&LINK, "link_minute", "link_hour", "link_day"),
        ] {
            for (src, sk, dst, dk, bucket, horizon) in [
                (minute, "minute", hour, "hour", 3600, h.minute),
                (hour, "hour", day, "day", 86_400, h.hour),
            ] {
                let roll = format!(
                    "INSERT INTO {dst}({dk}, {k}, {v})
                     SELECT ({sk} / {bucket}) * {bucket}, {k}, {a} FROM
                       (SELECT * FROM {src} WHERE {sk} < ?1 ORDER BY {sk}, {k} LIMIT ?2)
                     WHERE true GROUP BY 1, {k}
                     ON CONFLICT({dk}, {k}) DO UPDATE SET {u}",
                    k = fam.keys,
                    v = fam.values,
                    a = fam.aggs,
                    u = fam.update,
                );
                let n = self.chunks(src, sk, fam.keys, horizon, Some(&roll), stop, &mut st)?;
                st.rolled += n;
            }
            st.expired += self.chunks(day, "day", fam.keys, h.day, None, stop, &mut st)?;
        }
        Ok(st)
    }

    /// Moves (`roll` given) or deletes rows of `table` with `key < horizon`, chunk by chunk.
    #[allow(clippy::too_many_arguments)]
    fn chunks(
        &mut self,
        table: &str,
        key: &str,
        keys: &str,
        horizon: i64,
        roll: Option<&str>,
        stop: &CancellationToken,
        st: &mut PassStats,
    ) -> Result<u64, rusqlite::Error> {
        // The same ordered LIMIT as in `roll`: inside one transaction both see the same rows.
        let delete = format!(
            "DELETE FROM {table} WHERE ({key}, {keys}) IN
               (SELECT {key}, {keys} FROM {table} WHERE {key} < ?1 ORDER BY {key}, {keys} LIMIT ?2)"
        );
        let limit = i64::from(self.cfg.chunk_rows);
        let mut total = 0u64;
        while !stop.is_cancelled() {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if let Some(roll) = roll {
                tx.prepare_cached(roll)?.execute(params![horizon, limit])?;
            }
            let n = tx
                .prepare_cached(&delete)?
                .execute(params![horizon, limit])?;
            tx.commit()?;
            st.transactions += 1;
            total += n as u64;
            if (n as i64) < limit {
                break;
            }
            std::thread::sleep(self.pause);
        }
        Ok(total)
    }

    /// Runs a first pass 5 s after start (the start, with its reconnecting probes, is not
    /// slowed), then one every `interval`, until `stop` is cancelled.
    pub fn run(mut self, stop: CancellationToken) {
        let wait = |d: Duration| {
            let until = Instant::now() + d;
            while !stop.is_cancelled() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        wait(Duration::from_secs(5));
        while !stop.is_cancelled() {
            let started = Instant::now();
            let now = crate::ingest::probe_stream::now_ms() / 1000;
            match self.pass(now, &stop) {
                Ok(s) if s.rolled + s.expired > 0 => tracing::info!(
                    rolled = s.rolled,
                    expired = s.expired,
                    transactions = s.transactions,
                    seconds = started.elapsed().as_secs_f64(),
                    "store compaction pass"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "store compaction pass failed, retrying next interval")
                }
            }
            wait(self.cfg.interval);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        let ok = RetentionConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        let bad = |f: fn(&mut RetentionConfig)| {
            let mut c = RetentionConfig::default();
            f(&mut c);
            c.validate().unwrap_err().0
        };
        assert_eq!(bad(|c| c.minute_days = 0), "store.retention.minute_days");
        assert_eq!(bad(|c| c.hour_days = 35), "store.retention.hour_days");
        assert_eq!(bad(|c| c.day_years = 1), "store.retention.day_years");
        assert_eq!(bad(|c| c.chunk_rows = 0), "store.retention.chunk_rows");
    }

    #[test]
    fn horizons_are_aligned() {
        let c = RetentionConfig::default();
        let now = 1_790_000_123;
        let h = c.horizons(now);
        assert_eq!(h.minute, (now - 35 * 86_400) / 3600 * 3600);
        assert_eq!(h.hour, (now - 400 * 86_400) / 86_400 * 86_400);
        assert_eq!(h.day, (now - 5 * 31_557_600) / 86_400 * 86_400);
    }

    /// The key invariant: totals (API) and indicator inputs over aligned windows are exactly
    /// the same before and after compaction; rows move down the tiers, recent minutes stay,
    /// data past the daily horizon is deleted; a second pass changes nothing.
    #[test]
    fn compaction_keeps_totals_and_expires_old_days() {
        use crate::indicators::{load_inputs, Period};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("rie.db");
        let inv = crate::inventory::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/indicators"),
        )
        .unwrap();
        let conn = crate::store::open(&db).unwrap();
        let now = Period::parse("2026-11").unwrap().start_ms / 1000 + 19 * 86_400 + 1234;
        let ago_40d = now - 40 * 86_400; // 2026-10-11: hour tier
        let ago_2y = now - 730 * 86_400; // 2024-11-20: day tier
        let ago_6y = now - 6 * 365 * 86_400; // past 5 years: deleted
        let recent = now - 120; // stays a minute row
        let mut sql = String::new();
        // Per timestamp: 90 minutes (crossing hour boundaries) of sites A and C, two protocols.
        for (t0, bytes) in [(ago_40d, 100), (ago_2y, 1000), (ago_6y, 7), (recent, 3)] {
            let m0 = t0 / 60 * 60;
            for i in 0..90 {
                let m = m0 + i * 60;
                sql += &format!(
                    "INSERT INTO flow_minute VALUES ({m}, 'A', 'x', 6, 0, 1, 2, {bytes});
                     INSERT INTO flow_minute VALUES ({m}, 'A', '', 17, 1, 1, 1, {i});
                     INSERT INTO flow_minute VALUES ({m}, 'C', 'x', 6, 0, 2, 3, {bytes});
                     INSERT INTO link_minute VALUES ({m}, 'C', 'C-P', 6, 6, 5, {i}, 5, {});",
                    if i == 7 {
                        "NULL".to_string()
                    } else {
                        (i * 10).to_string()
                    }
                );
                if t0 == recent {
                    break;
                }
            }
        }
        conn.execute_batch(&sql).unwrap();
        let reader = crate::store::Reader::open(&db).unwrap();
        let p40 = Period::parse("2026-10").unwrap();
        let p2y = Period::parse("2024").unwrap();
        let p6y = Period::parse("2020").unwrap();
        let snapshot = || {
            let totals: Vec<_> = [
                (p2y.start_ms / 1000, now + 3600, None),
                (p40.start_ms / 1000, p40.end_ms / 1000, Some("A")),
                (p2y.start_ms / 1000, p2y.end_ms / 1000, None),
                (recent / 3600 * 3600, now + 3600, None),
            ]
            .into_iter()
            .map(|(f, t, site)| reader.flow_totals(f, t, site, None).unwrap())
            .collect();
            let inputs: Vec<_> = [&p40, &p2y]
                .into_iter()
                .map(|p| {
                    let i = load_inputs(&conn, &inv, p).unwrap();
                    (i.traffic_bytes, i.measured)
                })
                .collect();
            (totals, inputs)
        };
        let before = snapshot();
        // Hand-computed: 90 minutes × (A: 100 + Σi) for site A in 2026-10.
        assert_eq!(before.0[1].bytes, 90 * 100 + (0..90).sum::<u64>());
        assert_eq!(before.1[0].0, vec![90 * 100 + 4005, 0, 90 * 100, 0, 0]);

        let mut c = Compactor::new(
            crate::store::open(&db).unwrap(),
            RetentionConfig {
                chunk_rows: 7,
                ..RetentionConfig::default()
            },
        )
        .unwrap()
        .pause(Duration::ZERO);
        let stop = CancellationToken::new();
        let st = c.pass(now, &stop).unwrap();
        // Old minute rows: 3 periods × 90 × 4; then their hours (2y and 6y) into days.
        let count = |t: &str| -> i64 {
            conn.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count("flow_minute"), 3);
        assert_eq!(count("link_minute"), 1);
        // 90 minutes from ago_40d span 2 or 3 hours; 3 flow keys per hour.
        let hours_40d = (ago_40d / 60 * 60 + 89 * 60) / 3600 - ago_40d / 3600 + 1;
        assert_eq!(count("flow_hour"), 3 * hours_40d);
        assert_eq!(count("link_hour"), hours_40d);
        let days_2y = (ago_2y / 60 * 60 + 89 * 60) / 86_400 - ago_2y / 86_400 + 1;
        assert_eq!(count("flow_day"), 3 * days_2y);
        assert_eq!(count("link_day"), days_2y);
        let days_6y = (ago_6y / 60 * 60 + 89 * 60) / 86_400 - ago_6y / 86_400 + 1;
        assert_eq!(st.expired as i64, 4 * days_6y);
        // Buckets of size b touched by the 90 minutes from t.
        let span = |t: i64, b: i64| (t / 60 * 60 + 89 * 60) / b - t / 60 * 60 / b + 1;
        assert_eq!(
            st.rolled as i64,
            3 * 90 * 4 + 4 * (span(ago_2y, 3600) + span(ago_6y, 3600))
        );
        let after = snapshot();
        assert_eq!(after, before);
        // The 2026-10 hour rows keep the link max RTT (NULL ignored) and sums.
        let (max, n): (i64, i64) = conn
            .query_row(
                "SELECT MAX(rtt_max_us), SUM(rtt_n) FROM link_hour",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((max, n), (890, 450));
        // Past the daily horizon: gone.
        assert_eq!(
            reader
                .flow_totals(p6y.start_ms / 1000, p6y.end_ms / 1000, None, None)
                .unwrap()
                .bytes,
            0
        );
        // Idempotent: nothing left to do.
        let again = c.pass(now, &stop).unwrap();
        assert_eq!((again.rolled, again.expired), (0, 0));
        assert_eq!(snapshot(), before);
    }
}
