//! The sink's backlog: a bounded memory queue in front of the SQLite outbox
//! (`influx-outbox.db`), with the disk budget that alone may drop points (oldest first), and
//! the site minutes whose traffic point is still pending.
//!
//! Order: disk always holds older lines than memory and is sent head first; a chunk leaves
//! only once acknowledged (`Queue::done`), a failed one goes back in front
//! (`Queue::failed`). Imports only [`SinkError`] from the sink; knows nothing of HTTP or
//! of line protocol (lines are opaque strings here).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::SinkError;

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
pub(super) struct Outbox {
    pub(super) conn: Connection,
    path: PathBuf,
    pub(super) points: u64,
    bytes: u64,
    budget: u64,
}

impl Outbox {
    pub(super) fn open(path: &Path, budget: u64) -> Result<Self, SinkError> {
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

    pub(super) fn mark_pending(
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

    pub(super) fn pending(&self) -> Result<Vec<(String, i64)>, SinkError> {
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

pub(super) struct Chunk {
    source: Source,
    pub(super) points: usize,
    pub(super) body: String,
}

pub(super) struct Queue {
    pub(super) memory: VecDeque<String>,
    pub(super) disk: Outbox,
    memory_limit: usize,
    batch_points: usize,
    /// Points taken from memory and not yet acknowledged or put back.
    in_flight: usize,
}

impl Queue {
    pub(super) fn new(disk: Outbox, memory_limit: usize, batch_points: usize) -> Self {
        Self {
            memory: VecDeque::new(),
            disk,
            memory_limit,
            batch_points,
            in_flight: 0,
        }
    }

    pub(super) fn buffered(&self) -> i64 {
        (self.memory.len() + self.in_flight) as i64 + self.disk.points as i64
    }

    /// Adds new lines. They go to disk whenever disk already holds a backlog (disk is older
    /// than memory, always) or memory would overflow; then memory moves to disk first.
    pub(super) fn push(&mut self, lines: Vec<String>) -> Result<u64, SinkError> {
        if self.disk.points == 0 && self.memory.len() + lines.len() <= self.memory_limit {
            self.memory.extend(lines);
            return Ok(0);
        }
        self.spill()?;
        self.disk.append(&lines, self.batch_points)?;
        self.disk.enforce_budget()
    }

    /// Moves every memory line to the end of the outbox (failure, shutdown).
    pub(super) fn spill(&mut self) -> Result<u64, SinkError> {
        if self.memory.is_empty() {
            return Ok(0);
        }
        let lines: Vec<String> = self.memory.drain(..).collect();
        self.disk.append(&lines, self.batch_points)?;
        self.disk.enforce_budget()
    }

    pub(super) fn take(&mut self) -> Result<Option<Chunk>, SinkError> {
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

    pub(super) fn done(&mut self, c: &Chunk) -> Result<(), SinkError> {
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
    pub(super) fn failed(&mut self, c: &Chunk) -> Result<u64, SinkError> {
        if let Source::Memory = c.source {
            self.in_flight -= c.points;
            self.disk.push_front(c.points, &c.body)?;
        }
        self.spill()
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
}
