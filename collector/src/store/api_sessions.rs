//! Sessions of people logged in through OpenID Connect, and their logins in progress: the
//! `api_sessions` and `api_logins` tables on either backend, so that several collectors
//! sharing PostgreSQL see the same sessions (a login started on one may end on another, a
//! logout on one is a logout everywhere).
//!
//! A session's cookie value is 256 random bits; the table keeps its SHA-256 only. A login in
//! progress keeps the `state`, `nonce` and PKCE verifier the callback needs, for ten minutes at
//! most, and is taken (read and deleted in one statement) by the callback, so that it serves
//! once. What a session may read is `auth`'s business; this module only stores rows.

use rusqlite::{params, OptionalExtension};

use super::{Reader, StoreError};

/// One stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 (hex) of the cookie value.
    pub id_sha256: String,
    /// Who, for logs and `/auth/me`: the configured claim (e-mail by default).
    pub name: String,
    /// `auth::Role` in its text form.
    pub role: String,
    /// The provider's `sub`.
    pub subject: String,
    /// The claims shown by `/auth/me` (JSON object).
    pub claims_json: String,
    /// The ID token, sent back as `id_token_hint` at logout.
    pub id_token: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    /// The absolute end.
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
}

const COLUMNS: &str =
    "id_sha256, name, role, subject, claims_json, id_token, created_ms, last_seen_ms, expires_ms, revoked_ms";

fn sqlite_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id_sha256: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        subject: r.get(3)?,
        claims_json: r.get(4)?,
        id_token: r.get(5)?,
        created_ms: r.get(6)?,
        last_seen_ms: r.get(7)?,
        expires_ms: r.get(8)?,
        revoked_ms: r.get(9)?,
    })
}

/// Stores a new session.
///
/// # Errors
/// Database errors.
pub fn insert(reader: &Reader, s: &SessionRow) -> Result<(), StoreError> {
    match reader.conn() {
        Ok(c) => {
            c.execute(
                &format!("INSERT INTO api_sessions({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    s.id_sha256,
                    s.name,
                    s.role,
                    s.subject,
                    s.claims_json,
                    s.id_token,
                    s.created_ms,
                    s.last_seen_ms,
                    s.expires_ms,
                    s.revoked_ms
                ],
            )?;
            Ok(())
        }
        Err(pg) => pg
            .query(
                &format!("INSERT INTO api_sessions({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                &[
                    &s.id_sha256,
                    &s.name,
                    &s.role,
                    &s.subject,
                    &s.claims_json,
                    &s.id_token,
                    &s.created_ms,
                    &s.last_seen_ms,
                    &s.expires_ms,
                    &s.revoked_ms,
                ],
            )
            .map(drop),
    }
}

/// The session whose cookie hashes to `id_sha256`, revoked or not.
///
/// # Errors
/// Database errors.
pub fn get(reader: &Reader, id_sha256: &str) -> Result<Option<SessionRow>, StoreError> {
    let sql = |p: &str| format!("SELECT {COLUMNS} FROM api_sessions WHERE id_sha256 = {p}");
    match reader.conn() {
        Ok(c) => Ok(c
            .query_row(&sql("?1"), [id_sha256], sqlite_row)
            .optional()?),
        Err(pg) => {
            let rows = pg.query(&sql("$1"), &[&id_sha256])?;
            let Some(r) = rows.first() else {
                return Ok(None);
            };
            Ok(Some(SessionRow {
                id_sha256: pg.get(r, 0)?,
                name: pg.get(r, 1)?,
                role: pg.get(r, 2)?,
                subject: pg.get(r, 3)?,
                claims_json: pg.get(r, 4)?,
                id_token: pg.get(r, 5)?,
                created_ms: pg.get(r, 6)?,
                last_seen_ms: pg.get(r, 7)?,
                expires_ms: pg.get(r, 8)?,
                revoked_ms: pg.get(r, 9)?,
            }))
        }
    }
}

/// Records a use of the session (the idle timeout counts from it).
///
/// # Errors
/// Database errors.
pub fn touch(reader: &Reader, id_sha256: &str, now_ms: i64) -> Result<(), StoreError> {
    match reader.conn() {
        Ok(c) => {
            c.execute(
                "UPDATE api_sessions SET last_seen_ms = ?2 WHERE id_sha256 = ?1 AND last_seen_ms < ?2",
                params![id_sha256, now_ms],
            )?;
            Ok(())
        }
        Err(pg) => pg
            .query(
                "UPDATE api_sessions SET last_seen_ms = $2 WHERE id_sha256 = $1 AND last_seen_ms < $2",
                &[&id_sha256, &now_ms],
            )
            .map(drop),
    }
}

/// Revokes the session; true when it was live.
///
/// # Errors
/// Database errors.
pub fn revoke(reader: &Reader, id_sha256: &str, now_ms: i64) -> Result<bool, StoreError> {
    match reader.conn() {
        Ok(c) => Ok(c.execute(
            "UPDATE api_sessions SET revoked_ms = ?2 WHERE id_sha256 = ?1 AND revoked_ms IS NULL",
            params![id_sha256, now_ms],
        )? == 1),
        Err(pg) => Ok(pg
            .query(
                "UPDATE api_sessions SET revoked_ms = $2 WHERE id_sha256 = $1 AND revoked_ms IS NULL RETURNING id_sha256",
                &[&id_sha256, &now_ms],
            )?
            .len()
            == 1),
    }
}

/// Revokes every live session of `subject` (a local account disabled or changed); returns
/// how many.
///
/// # Errors
/// Database errors.
pub fn revoke_subject(reader: &Reader, subject: &str, now_ms: i64) -> Result<u64, StoreError> {
    match reader.conn() {
        Ok(c) => Ok(c.execute(
            "UPDATE api_sessions SET revoked_ms = ?2 WHERE subject = ?1 AND revoked_ms IS NULL",
            params![subject, now_ms],
        )? as u64),
        Err(pg) => Ok(pg
            .query(
                "UPDATE api_sessions SET revoked_ms = $2 WHERE subject = $1 AND revoked_ms IS NULL RETURNING id_sha256",
                &[&subject, &now_ms],
            )?
            .len() as u64),
    }
}

/// Deletes sessions ended before `before_ms` and logins started before `logins_before_ms`.
///
/// # Errors
/// Database errors.
pub fn purge(reader: &Reader, before_ms: i64, logins_before_ms: i64) -> Result<(), StoreError> {
    match reader.conn() {
        Ok(c) => {
            c.execute(
                "DELETE FROM api_sessions WHERE expires_ms < ?1 OR revoked_ms < ?1",
                [before_ms],
            )?;
            c.execute(
                "DELETE FROM api_logins WHERE created_ms < ?1",
                [logins_before_ms],
            )?;
            Ok(())
        }
        Err(pg) => {
            pg.query(
                "DELETE FROM api_sessions WHERE expires_ms < $1 OR revoked_ms < $1",
                &[&before_ms],
            )?;
            pg.query(
                "DELETE FROM api_logins WHERE created_ms < $1",
                &[&logins_before_ms],
            )
            .map(drop)
        }
    }
}

/// A login in progress: what the callback checks and needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRow {
    /// SHA-256 (hex) of the `rie_login` cookie value.
    pub id_sha256: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub created_ms: i64,
}

/// Stores a login in progress.
///
/// # Errors
/// Database errors.
pub fn insert_login(reader: &Reader, l: &LoginRow) -> Result<(), StoreError> {
    const COLS: &str = "id_sha256, state, nonce, pkce_verifier, created_ms";
    match reader.conn() {
        Ok(c) => {
            c.execute(
                &format!("INSERT INTO api_logins({COLS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
                params![l.id_sha256, l.state, l.nonce, l.pkce_verifier, l.created_ms],
            )?;
            Ok(())
        }
        Err(pg) => pg
            .query(
                &format!("INSERT INTO api_logins({COLS}) VALUES ($1, $2, $3, $4, $5)"),
                &[
                    &l.id_sha256,
                    &l.state,
                    &l.nonce,
                    &l.pkce_verifier,
                    &l.created_ms,
                ],
            )
            .map(drop),
    }
}

/// Takes (reads and deletes, in one statement) the login in progress of this cookie hash:
/// a second callback with the same cookie finds nothing.
///
/// # Errors
/// Database errors.
pub fn take_login(reader: &Reader, id_sha256: &str) -> Result<Option<LoginRow>, StoreError> {
    let sql = |p: &str| {
        format!(
            "DELETE FROM api_logins WHERE id_sha256 = {p} RETURNING id_sha256, state, nonce, pkce_verifier, created_ms"
        )
    };
    match reader.conn() {
        Ok(c) => Ok(c
            .query_row(&sql("?1"), [id_sha256], |r| {
                Ok(LoginRow {
                    id_sha256: r.get(0)?,
                    state: r.get(1)?,
                    nonce: r.get(2)?,
                    pkce_verifier: r.get(3)?,
                    created_ms: r.get(4)?,
                })
            })
            .optional()?),
        Err(pg) => {
            let rows = pg.query(&sql("$1"), &[&id_sha256])?;
            let Some(r) = rows.first() else {
                return Ok(None);
            };
            Ok(Some(LoginRow {
                id_sha256: pg.get(r, 0)?,
                state: pg.get(r, 1)?,
                nonce: pg.get(r, 2)?,
                pkce_verifier: pg.get(r, 3)?,
                created_ms: pg.get(r, 4)?,
            }))
        }
    }
}
