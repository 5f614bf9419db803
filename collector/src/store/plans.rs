//! Check plans on either backend: the `plans` table (every plan file stored, never changed:
//! a new version per change, from one sequence over all scopes) and `plan_status` (per site,
//! the effective plan version last sent or answered, and its state: `pending`, `applied`,
//! `refused` with the probe's reason, or `previous_protocol` for a probe one version behind).
//!
//! What a plan means and how layers merge is `rie-plan`'s business, when to write a status
//! the probe sessions' (`crate::plans`); this module only stores and reads rows. Statuses
//! are written in batches by one writer task (`crate::plans::StatusWriter`), off the probe
//! sessions and outside the commit stage: they are not measurements and need no
//! acknowledgement.

use rusqlite::{params, OptionalExtension};

use super::{Reader, StoreError};

/// One stored plan file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlanRow {
    pub version: i64,
    pub scope_kind: String,
    pub scope_value: String,
    /// SHA-256 (hex) of `toml`.
    pub hash: String,
    pub toml: String,
    pub created_ms: i64,
}

/// What a site's probe did with its effective plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusRow {
    pub site: String,
    pub version: i64,
    /// `pending`, `applied`, `refused` or `previous_protocol`.
    pub state: String,
    /// The probe's reason for a refusal; empty otherwise.
    pub reason: String,
    pub updated_ms: i64,
}

const COLUMNS: &str = "version, scope_kind, scope_value, hash, toml, created_ms";

/// Stores a plan file under the next version; returns it.
///
/// # Errors
/// Database errors (a key conflict when another writer took the same version at the same
/// moment: run the command again).
pub fn insert(
    reader: &Reader,
    scope_kind: &str,
    scope_value: &str,
    hash: &str,
    toml: &str,
    created_ms: i64,
) -> Result<i64, StoreError> {
    let sql_tail = "SELECT COALESCE(MAX(version), 0) + 1";
    match reader.conn() {
        Ok(c) => Ok(c.query_row(
            &format!("INSERT INTO plans({COLUMNS}) {sql_tail}, ?1, ?2, ?3, ?4, ?5 FROM plans RETURNING version"),
            params![scope_kind, scope_value, hash, toml, created_ms],
            |r| r.get(0),
        )?),
        Err(pg) => {
            let rows = pg.query(
                &format!("INSERT INTO plans({COLUMNS}) {sql_tail}, $1, $2, $3, $4, $5 FROM plans RETURNING version"),
                &[&scope_kind, &scope_value, &hash, &toml, &created_ms],
            )?;
            match rows.first() {
                Some(r) => pg.get(r, 0),
                None => Ok(0),
            }
        }
    }
}

/// Every stored plan, oldest first.
///
/// # Errors
/// Database errors.
pub fn list(reader: &Reader) -> Result<Vec<PlanRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM plans ORDER BY version");
    match reader.conn() {
        Ok(c) => {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([], |r| {
                Ok(PlanRow {
                    version: r.get(0)?,
                    scope_kind: r.get(1)?,
                    scope_value: r.get(2)?,
                    hash: r.get(3)?,
                    toml: r.get(4)?,
                    created_ms: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        }
        Err(pg) => pg
            .query(&sql, &[])?
            .iter()
            .map(|r| {
                Ok(PlanRow {
                    version: pg.get(r, 0)?,
                    scope_kind: pg.get(r, 1)?,
                    scope_value: pg.get(r, 2)?,
                    hash: pg.get(r, 3)?,
                    toml: pg.get(r, 4)?,
                    created_ms: pg.get(r, 5)?,
                })
            })
            .collect(),
    }
}

/// The highest stored version (0: no plan): what the collectors poll to see a change.
///
/// # Errors
/// Database errors.
pub fn latest_version(reader: &Reader) -> Result<i64, StoreError> {
    let sql = "SELECT COALESCE(MAX(version), 0) FROM plans";
    match reader.conn() {
        Ok(c) => Ok(c.query_row(sql, [], |r| r.get(0))?),
        Err(pg) => match pg.query(sql, &[])?.first() {
            Some(r) => pg.get(r, 0),
            None => Ok(0),
        },
    }
}

/// Writes (insert or replace) each site's status, in one transaction.
///
/// # Errors
/// Database errors.
pub fn set_statuses(reader: &Reader, rows: &[StatusRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    match reader.conn() {
        Ok(mut c) => {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO plan_status(site, version, state, reason, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(site) DO UPDATE SET version = excluded.version,
                       state = excluded.state, reason = excluded.reason,
                       updated_ms = excluded.updated_ms",
                )?;
                for r in rows {
                    stmt.execute(params![r.site, r.version, r.state, r.reason, r.updated_ms])?;
                }
            }
            tx.commit()?;
            Ok(())
        }
        Err(pg) => {
            // One row per site: a later status of the same site in the batch wins.
            let mut last = std::collections::BTreeMap::new();
            for r in rows {
                last.insert(r.site.as_str(), r);
            }
            let site: Vec<&str> = last.keys().copied().collect();
            let version: Vec<i64> = last.values().map(|r| r.version).collect();
            let state: Vec<&str> = last.values().map(|r| r.state.as_str()).collect();
            let reason: Vec<&str> = last.values().map(|r| r.reason.as_str()).collect();
            let updated: Vec<i64> = last.values().map(|r| r.updated_ms).collect();
            pg.query(
                "INSERT INTO plan_status(site, version, state, reason, updated_ms)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[])
                 ON CONFLICT(site) DO UPDATE SET version = excluded.version,
                   state = excluded.state, reason = excluded.reason,
                   updated_ms = excluded.updated_ms",
                &[&site, &version, &state, &reason, &updated],
            )
            .map(drop)
        }
    }
}

/// Every site's status, by site.
///
/// # Errors
/// Database errors.
pub fn statuses(reader: &Reader) -> Result<Vec<StatusRow>, StoreError> {
    statuses_where(reader, None)
}

/// One site's status.
///
/// # Errors
/// Database errors.
pub fn status(reader: &Reader, site: &str) -> Result<Option<StatusRow>, StoreError> {
    Ok(statuses_where(reader, Some(site))?.into_iter().next())
}

fn statuses_where(reader: &Reader, site: Option<&str>) -> Result<Vec<StatusRow>, StoreError> {
    let base = "SELECT site, version, state, reason, updated_ms FROM plan_status";
    match reader.conn() {
        Ok(c) => {
            let map = |r: &rusqlite::Row<'_>| {
                Ok(StatusRow {
                    site: r.get(0)?,
                    version: r.get(1)?,
                    state: r.get(2)?,
                    reason: r.get(3)?,
                    updated_ms: r.get(4)?,
                })
            };
            match site {
                Some(s) => Ok(c
                    .query_row(&format!("{base} WHERE site = ?1"), [s], map)
                    .optional()?
                    .into_iter()
                    .collect()),
                None => {
                    let mut stmt = c.prepare(&format!("{base} ORDER BY site"))?;
                    let rows = stmt.query_map([], map)?;
                    Ok(rows.collect::<Result<_, _>>()?)
                }
            }
        }
        Err(pg) => {
            let rows = match site {
                Some(s) => pg.query(&format!("{base} WHERE site = $1"), &[&s])?,
                None => pg.query(&format!("{base} ORDER BY site"), &[])?,
            };
            rows.iter()
                .map(|r| {
                    Ok(StatusRow {
                        site: pg.get(r, 0)?,
                        version: pg.get(r, 1)?,
                        state: pg.get(r, 2)?,
                        reason: pg.get(r, 3)?,
                        updated_ms: pg.get(r, 4)?,
                    })
                })
                .collect()
        }
    }
}

/// One staged rollout as stored: `body` is `crate::plans::rollout::Rollout` as JSON (this
/// module does not read it); `rev` grows with every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRow {
    pub id: i64,
    pub rev: i64,
    pub body: String,
    pub updated_ms: i64,
}

/// Stores a new rollout (revision 1) under the next id; returns the id.
///
/// # Errors
/// Database errors.
pub fn insert_rollout(reader: &Reader, body: &str, now_ms: i64) -> Result<i64, StoreError> {
    let head =
        "INSERT INTO plan_rollouts(id, rev, body, updated_ms) SELECT COALESCE(MAX(id), 0) + 1, 1";
    match reader.conn() {
        Ok(c) => Ok(c.query_row(
            &format!("{head}, ?1, ?2 FROM plan_rollouts RETURNING id"),
            params![body, now_ms],
            |r| r.get(0),
        )?),
        Err(pg) => {
            let rows = pg.query(
                &format!("{head}, $1, $2 FROM plan_rollouts RETURNING id"),
                &[&body, &now_ms],
            )?;
            match rows.first() {
                Some(r) => pg.get(r, 0),
                None => Ok(0),
            }
        }
    }
}

/// Writes `body` over rollout `id` if it is still at revision `rev` (then `rev + 1`);
/// `false` when another writer changed it first (read it again and decide again).
///
/// # Errors
/// Database errors.
pub fn update_rollout(
    reader: &Reader,
    id: i64,
    rev: i64,
    body: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    match reader.conn() {
        Ok(c) => Ok(c.execute(
            "UPDATE plan_rollouts SET rev = rev + 1, body = ?1, updated_ms = ?2
             WHERE id = ?3 AND rev = ?4",
            params![body, now_ms, id, rev],
        )? == 1),
        Err(pg) => Ok(pg
            .query(
                "UPDATE plan_rollouts SET rev = rev + 1, body = $1, updated_ms = $2
                 WHERE id = $3 AND rev = $4 RETURNING id",
                &[&body, &now_ms, &id, &rev],
            )?
            .len()
            == 1),
    }
}

/// Every rollout, oldest first.
///
/// # Errors
/// Database errors.
pub fn rollouts(reader: &Reader) -> Result<Vec<RolloutRow>, StoreError> {
    let sql = "SELECT id, rev, body, updated_ms FROM plan_rollouts ORDER BY id";
    match reader.conn() {
        Ok(c) => {
            let mut stmt = c.prepare(sql)?;
            let rows = stmt.query_map([], |r| {
                Ok(RolloutRow {
                    id: r.get(0)?,
                    rev: r.get(1)?,
                    body: r.get(2)?,
                    updated_ms: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        }
        Err(pg) => pg
            .query(sql, &[])?
            .iter()
            .map(|r| {
                Ok(RolloutRow {
                    id: pg.get(r, 0)?,
                    rev: pg.get(r, 1)?,
                    body: pg.get(r, 2)?,
                    updated_ms: pg.get(r, 3)?,
                })
            })
            .collect(),
    }
}

/// A number that changes whenever a rollout is stored or changed (revisions only grow): what
/// the collectors poll, with [`latest_version`], to see that the plans to push changed.
///
/// # Errors
/// Database errors.
pub fn rollouts_revision(reader: &Reader) -> Result<i64, StoreError> {
    match reader.conn() {
        Ok(c) => Ok(
            c.query_row("SELECT COALESCE(SUM(rev), 0) FROM plan_rollouts", [], |r| {
                r.get(0)
            })?,
        ),
        // SUM of BIGINT is NUMERIC in PostgreSQL: cast back.
        Err(pg) => match pg
            .query(
                "SELECT COALESCE(SUM(rev), 0)::BIGINT FROM plan_rollouts",
                &[],
            )?
            .first()
        {
            Some(r) => pg.get(r, 0),
            None => Ok(0),
        },
    }
}
