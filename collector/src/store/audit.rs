//! The audit trail (`audit_log`) on either backend: one row per audited event — a read of
//! finance data, an export, a token or role change, a failed authentication — with who (the
//! token's or session's name and role, or the local user for the CLI), when, from where (the
//! client address) and what (the route and query, or the command). Rows are only added and,
//! past the retention, deleted; never changed.
//!
//! What is audited is decided by `auth`; this module only stores and reads rows.

use rusqlite::params;

use super::{Reader, StoreError};

/// One audited event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRow {
    pub at_ms: i64,
    /// Token or session name; the local user for the CLI; `-` when unknown (a failed login).
    pub actor: String,
    pub role: String,
    /// Client address, or `cli`.
    pub source: String,
    /// `read`, `export`, `token_create`, `token_revoke`, `auth_failed`, …
    pub action: String,
    /// The route with its query, the command, or the token concerned.
    pub target: String,
    /// `ok`, or why it failed (`wrong_secret`, `rate_limited`…).
    pub outcome: String,
}

const COLUMNS: &str = "at_ms, actor, role, source, action, target, outcome";

/// Adds `rows` in one transaction.
///
/// # Errors
/// Database errors.
pub fn insert(reader: &Reader, rows: &[AuditRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    match reader.conn() {
        Ok(mut c) => {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(&format!(
                    "INSERT INTO audit_log({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ))?;
                for r in rows {
                    stmt.execute(params![
                        r.at_ms, r.actor, r.role, r.source, r.action, r.target, r.outcome
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        }
        Err(pg) => {
            let col = |f: fn(&AuditRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
            let at: Vec<i64> = rows.iter().map(|r| r.at_ms).collect();
            pg.query(
                &format!(
                    "INSERT INTO audit_log({COLUMNS})
                     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])"
                ),
                &[
                    &at,
                    &col(|r| &r.actor),
                    &col(|r| &r.role),
                    &col(|r| &r.source),
                    &col(|r| &r.action),
                    &col(|r| &r.target),
                    &col(|r| &r.outcome),
                ],
            )
            .map(drop)
        }
    }
}

/// Rows with `from_ms <= at_ms < to_ms`, oldest first, at most `limit`.
///
/// # Errors
/// Database errors.
pub fn query(
    reader: &Reader,
    from_ms: i64,
    to_ms: i64,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    let sql = |p: [&str; 3]| {
        format!(
            "SELECT {COLUMNS} FROM audit_log WHERE at_ms >= {} AND at_ms < {} ORDER BY at_ms, id LIMIT {}",
            p[0], p[1], p[2]
        )
    };
    match reader.conn() {
        Ok(c) => {
            let mut stmt = c.prepare(&sql(["?1", "?2", "?3"]))?;
            let rows = stmt.query_map(params![from_ms, to_ms, limit], |r| {
                Ok(AuditRow {
                    at_ms: r.get(0)?,
                    actor: r.get(1)?,
                    role: r.get(2)?,
                    source: r.get(3)?,
                    action: r.get(4)?,
                    target: r.get(5)?,
                    outcome: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        }
        Err(pg) => pg
            .query(&sql(["$1", "$2", "$3"]), &[&from_ms, &to_ms, &limit])?
            .iter()
            .map(|r| {
                Ok(AuditRow {
                    at_ms: pg.get(r, 0)?,
                    actor: pg.get(r, 1)?,
                    role: pg.get(r, 2)?,
                    source: pg.get(r, 3)?,
                    action: pg.get(r, 4)?,
                    target: pg.get(r, 5)?,
                    outcome: pg.get(r, 6)?,
                })
            })
            .collect(),
    }
}

/// Deletes rows older than `before_ms`; returns how many.
///
/// # Errors
/// Database errors.
pub fn expire(reader: &Reader, before_ms: i64) -> Result<u64, StoreError> {
    match reader.conn() {
        Ok(c) => Ok(c.execute("DELETE FROM audit_log WHERE at_ms < ?1", [before_ms])? as u64),
        Err(pg) => Ok(pg
            .query(
                "DELETE FROM audit_log WHERE at_ms < $1 RETURNING 1",
                &[&before_ms],
            )?
            .len() as u64),
    }
}
