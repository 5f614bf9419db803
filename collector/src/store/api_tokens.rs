//! API tokens of programs (Grafana, Prometheus, scripts): the `api_tokens` table on either
//! backend. A token is `rie_<id>_<secret>`; the table keeps the id, a name, the role, and the
//! secret's SHA-256 — never the secret, which is printed once at creation. The secret is 256
//! random bits, so a fast hash is enough (nothing to brute-force, as for probe credentials).
//! Revocation is a timestamp, so that `token list` still shows what existed and when it ended.
//!
//! What a role may read is `auth`'s business; this module only stores rows.

use rusqlite::{params, OptionalExtension};

use super::{Reader, StoreError};

/// One stored token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    /// `auth::Role` in its text form (`noc`, `ministry:Intérieur`, …).
    pub role: String,
    #[serde(skip)]
    pub secret_sha256: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

const COLUMNS: &str = "id, name, role, secret_sha256, created_ms, expires_ms, revoked_ms";

fn sqlite_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        secret_sha256: r.get(3)?,
        created_ms: r.get(4)?,
        expires_ms: r.get(5)?,
        revoked_ms: r.get(6)?,
    })
}

fn pg_rows(
    pg: &super::postgres::read::PgReader,
    rows: &[tokio_postgres::Row],
) -> Result<Vec<TokenRow>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(TokenRow {
                id: pg.get(r, 0)?,
                name: pg.get(r, 1)?,
                role: pg.get(r, 2)?,
                secret_sha256: pg.get(r, 3)?,
                created_ms: pg.get(r, 4)?,
                expires_ms: pg.get(r, 5)?,
                revoked_ms: pg.get(r, 6)?,
            })
        })
        .collect()
}

/// Stores a new token.
///
/// # Errors
/// Database errors (an id already taken included).
pub fn insert(reader: &Reader, t: &TokenRow) -> Result<(), StoreError> {
    match reader.conn() {
        Ok(c) => {
            c.execute(
                &format!("INSERT INTO api_tokens({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    t.id,
                    t.name,
                    t.role,
                    t.secret_sha256,
                    t.created_ms,
                    t.expires_ms,
                    t.revoked_ms
                ],
            )?;
            Ok(())
        }
        Err(pg) => pg
            .query(
                &format!("INSERT INTO api_tokens({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &[
                    &t.id,
                    &t.name,
                    &t.role,
                    &t.secret_sha256,
                    &t.created_ms,
                    &t.expires_ms,
                    &t.revoked_ms,
                ],
            )
            .map(drop),
    }
}

/// The token with this id, revoked or not.
///
/// # Errors
/// Database errors.
pub fn get(reader: &Reader, id: &str) -> Result<Option<TokenRow>, StoreError> {
    match reader.conn() {
        Ok(c) => Ok(c
            .query_row(
                &format!("SELECT {COLUMNS} FROM api_tokens WHERE id = ?1"),
                [id],
                sqlite_row,
            )
            .optional()?),
        Err(pg) => {
            let rows = pg.query(
                &format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1"),
                &[&id],
            )?;
            Ok(pg_rows(pg, &rows)?.into_iter().next())
        }
    }
}

/// Every token, oldest first.
///
/// # Errors
/// Database errors.
pub fn list(reader: &Reader) -> Result<Vec<TokenRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM api_tokens ORDER BY created_ms, id");
    match reader.conn() {
        Ok(c) => {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([], sqlite_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        }
        Err(pg) => {
            let rows = pg.query(&sql, &[])?;
            pg_rows(pg, &rows)
        }
    }
}

/// Revokes the live tokens whose id or name is `which`; returns how many.
///
/// # Errors
/// Database errors.
pub fn revoke(reader: &Reader, which: &str, now_ms: i64) -> Result<u64, StoreError> {
    match reader.conn() {
        Ok(c) => Ok(c.execute(
            "UPDATE api_tokens SET revoked_ms = ?2 WHERE (id = ?1 OR name = ?1) AND revoked_ms IS NULL",
            params![which, now_ms],
        )? as u64),
        Err(pg) => {
            let rows = pg.query(
                "UPDATE api_tokens SET revoked_ms = $2 WHERE (id = $1 OR name = $1) AND revoked_ms IS NULL RETURNING id",
                &[&which, &now_ms],
            )?;
            Ok(rows.len() as u64)
        }
    }
}

/// A read side on the store `cfg` names, its schema migrated first: what the `token`
/// commands work with. PostgreSQL runs on `handle`: call it from a plain thread.
///
/// # Errors
/// [`StoreError`]: the database cannot be opened or migrated.
pub fn open(
    cfg: &super::StoreConfig,
    data_dir: &std::path::Path,
    handle: &tokio::runtime::Handle,
) -> Result<Reader, StoreError> {
    match cfg.backend {
        super::config::Backend::Postgres => {
            let pg = cfg.postgres.as_ref().ok_or(StoreError::PgSetup {
                key: "store.postgres.url",
                message: "store.backend = \"postgres\" needs [store.postgres] with a url".into(),
            })?;
            drop(super::postgres::PgStore::open(pg, handle)?);
            Reader::open_postgres(pg, handle)
        }
        super::config::Backend::Sqlite => Reader::open(&data_dir.join("rie.db")),
    }
}
