//! The SQLite backend's write side: [`SqliteStore`] applies a [`WriteSet`] in one
//! transaction (WAL, `synchronous=FULL`: durable when `write` returns) and loads the state the
//! collector resumes from. See the contract in `store`.
//!
//! Owns the write connection and the upsert statements; may import `super` (contract types,
//! `schema`) and `rie-proto` only.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    EpisodeChange, Loaded, SiteStateRow, Store, StoreError, StreamMark, TemplateChange, WriteSet,
};

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

/// Upsert of one availability sample into its link minute.
const UPSERT_LINK_MINUTE: &str =
    "INSERT INTO link_minute(minute, site_id, link_id, samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us)
     VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8)
     ON CONFLICT(minute, site_id, link_id) DO UPDATE SET
       samples = samples + 1, sent = sent + excluded.sent, received = received + excluded.received,
       rtt_sum_us = rtt_sum_us + excluded.rtt_sum_us, rtt_n = rtt_n + excluded.rtt_n,
       rtt_max_us = max(coalesce(rtt_max_us, 0), coalesce(excluded.rtt_max_us, 0))";

/// Opens (creating if needed) the database with the durability settings the acks rely on.
///
/// # Errors
/// [`StoreError::Open`] naming the file; [`StoreError::Schema`] for a database of a newer
/// collector or a failed migration.
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
    super::schema::migrate(&conn).map_err(|source| StoreError::Schema {
        path: path.display().to_string(),
        source,
    })?;
    Ok(conn)
}

/// The SQLite write side, owned by the commit stage's thread.
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens `path` (see [`open`]).
    ///
    /// # Errors
    /// [`StoreError::Open`], [`StoreError::Schema`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self { conn: open(path)? })
    }

    fn apply(&mut self, set: &WriteSet) -> Result<(), StoreError> {
        // IMMEDIATE: the write lock is taken at BEGIN (waiting up to the busy timeout). A
        // deferred transaction would read the marks first and then fail at once with "database
        // is locked" when the compactor committed in between (its snapshot is then stale).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            // Contract point 8. SQLite holds one write lock for the whole transaction, so this
            // only fires when the caller's index is behind the file (another process wrote).
            let ranges = super::mark_ranges(&set.marks);
            let mut get = tx.prepare_cached(
                "SELECT last_seq, updated_ms FROM probe_streams WHERE site_id = ?1 AND stream = ?2",
            )?;
            let mut stale = Vec::new();
            for ((site, stream), (min, _, _)) in &ranges {
                let stored: Option<(i64, i64)> = get
                    .query_row(params![site, *stream as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                if let Some((seq, updated_ms)) = stored {
                    if seq as u64 >= *min {
                        stale.push(StreamMark {
                            site: site.clone(),
                            stream: *stream,
                            seq: seq as u64,
                            updated_ms,
                        });
                    }
                }
            }
            if !stale.is_empty() {
                drop(get);
                tx.rollback()?;
                return Err(StoreError::StaleMarks(stale));
            }
            let mut flow = tx.prepare_cached(UPSERT_FLOW_MINUTE)?;
            let mut flow_class = tx.prepare_cached(UPSERT_FLOW_CLASS_MINUTE)?;
            for r in &set.flows {
                flow.execute(params![
                    r.minute,
                    r.site,
                    r.exporter,
                    r.protocol,
                    r.direction,
                    r.flows,
                    r.packets,
                    r.bytes
                ])?;
                flow_class.execute(params![
                    r.minute,
                    r.site,
                    r.exporter,
                    r.protocol,
                    r.direction,
                    r.port_class.as_str(),
                    r.flows,
                    r.packets,
                    r.bytes
                ])?;
            }
            let mut talker = tx.prepare_cached(UPSERT_TOP_TALKER)?;
            for t in &set.talkers {
                talker.execute(params![t.minute, t.site, t.prefix, t.bytes, t.packets])?;
            }
            let mut link = tx.prepare_cached(UPSERT_LINK_MINUTE)?;
            for l in &set.links {
                link.execute(params![
                    l.minute,
                    l.site,
                    l.link,
                    l.sent,
                    l.received,
                    l.rtt_sum_us,
                    l.rtt_n,
                    l.rtt_max_us
                ])?;
            }
            let mut sampling = tx.prepare_cached(
                "INSERT INTO netflow_sampling(minute, site_id, exporter, sampling_rate, flows) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(minute, site_id, exporter, sampling_rate) DO UPDATE SET flows = flows + excluded.flows",
            )?;
            for s in &set.sampling {
                sampling.execute(params![s.minute, s.site, s.exporter, s.rate, s.flows])?;
            }
            let mut mark = tx.prepare_cached(
                "INSERT INTO probe_streams(site_id, stream, last_seq, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(site_id, stream) DO UPDATE SET last_seq = excluded.last_seq, updated_ms = excluded.updated_ms",
            )?;
            for m in &set.marks {
                // u64 ids and sequences, stored bit for bit in SQLite's signed integers.
                mark.execute(params![m.site, m.stream as i64, m.seq as i64, m.updated_ms])?;
            }
            let mut status = tx.prepare_cached(
                "INSERT INTO site_status(site_id, live_json) VALUES (?1, ?2)
                 ON CONFLICT(site_id) DO UPDATE SET live_json = excluded.live_json",
            )?;
            for s in &set.site_states {
                status.execute(params![s.site, s.json])?;
            }
            let mut open_ep = tx.prepare_cached(
                "INSERT INTO episodes(site_id, kind, link_id, start_ms, end_ms, cause)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5)",
            )?;
            let mut close_ep = tx.prepare_cached(
                "UPDATE episodes SET end_ms = ?4
                 WHERE site_id = ?1 AND kind = ?2 AND start_ms = ?3 AND end_ms IS NULL",
            )?;
            for e in &set.episodes {
                match e {
                    EpisodeChange::Open {
                        site,
                        kind,
                        link,
                        start_ms,
                        cause,
                    } => open_ep.execute(params![site, kind.as_str(), link, start_ms, cause])?,
                    EpisodeChange::Close {
                        site,
                        kind,
                        start_ms,
                        end_ms,
                    } => close_ep.execute(params![site, kind.as_str(), start_ms, end_ms])?,
                };
            }
            let mut put = tx.prepare_cached(
                "INSERT INTO netflow_templates(scope, kind, template_id, body, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(scope, kind, template_id) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms",
            )?;
            let mut del = tx.prepare_cached(
                "DELETE FROM netflow_templates WHERE scope = ?1 AND kind = ?2 AND template_id = ?3",
            )?;
            for t in &set.templates {
                match &t.body {
                    Some(body) => {
                        put.execute(params![t.scope, t.kind, t.template_id, body, set.now_ms])?
                    }
                    None => del.execute(params![t.scope, t.kind, t.template_id])?,
                };
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn write(&mut self, set: &WriteSet) -> Result<(), StoreError> {
        if set.is_empty() {
            return Ok(());
        }
        self.apply(set)
    }

    fn load(&mut self) -> Result<Loaded, StoreError> {
        load(&self.conn)
    }

    fn close(&mut self) {
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!(error = %e, "final checkpoint failed (data is safe in the WAL)");
        }
    }
}

/// Reads what [`Store::load`] returns from `conn`.
///
/// # Errors
/// Database errors.
pub fn load(conn: &Connection) -> Result<Loaded, StoreError> {
    let mut out = Loaded::default();
    let mut stmt =
        conn.prepare("SELECT site_id, stream, last_seq, updated_ms FROM probe_streams")?;
    let rows = stmt.query_map([], |r| {
        Ok(StreamMark {
            site: r.get(0)?,
            stream: r.get::<_, i64>(1)? as u64,
            seq: r.get::<_, i64>(2)? as u64,
            updated_ms: r.get(3)?,
        })
    })?;
    out.marks = rows.collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare("SELECT site_id, live_json FROM site_status")?;
    let rows = stmt.query_map([], |r| {
        Ok(SiteStateRow {
            site: r.get(0)?,
            json: r.get(1)?,
        })
    })?;
    out.site_states = rows.collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT site_id, start_ms FROM episodes WHERE kind = 'silent' AND end_ms IS NULL",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    out.open_silent = rows.collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare("SELECT scope, kind, template_id, body FROM netflow_templates")?;
    let rows = stmt.query_map([], |r| {
        Ok(TemplateChange {
            scope: r.get(0)?,
            kind: r.get(1)?,
            template_id: r.get(2)?,
            body: Some(r.get(3)?),
        })
    })?;
    out.templates = rows.collect::<Result<_, _>>()?;
    Ok(out)
}
