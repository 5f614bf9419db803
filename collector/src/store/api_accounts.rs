//! Local accounts of people, for sites and services without single sign-on: the
//! `api_accounts` table on either backend (several collectors sharing PostgreSQL know the
//! same accounts). A row keeps the name, the role, and the password's Argon2id hash in PHC
//! form (salt and parameters inside) — never the password, which is printed once or read from
//! standard input at creation. Disabling is a timestamp, so that `account list` still shows who
//! existed and when access ended.
//!
//! Hashing and checking passwords is `auth::local`'s business; this module only stores rows.

use rusqlite::{params, OptionalExtension};

use super::{Reader, StoreError};

/// One stored account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountRow {
    pub name: String,
    /// `auth::Role` in its text form.
    pub role: String,
    #[serde(skip)]
    pub password_phc: String,
    pub created_ms: i64,
    /// Last change of role or password.
    pub changed_ms: i64,
    pub disabled_ms: Option<i64>,
}

const COLUMNS: &str = "name, role, password_phc, created_ms, changed_ms, disabled_ms";

fn sqlite_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRow> {
    Ok(AccountRow {
        name: r.get(0)?,
        role: r.get(1)?,
        password_phc: r.get(2)?,
        created_ms: r.get(3)?,
        changed_ms: r.get(4)?,
        disabled_ms: r.get(5)?,
    })
}

fn pg_rows(
    pg: &super::postgres::read::PgReader,
    rows: &[tokio_postgres::Row],
) -> Result<Vec<AccountRow>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(AccountRow {
                name: pg.get(r, 0)?,
                role: pg.get(r, 1)?,
                password_phc: pg.get(r, 2)?,
                created_ms: pg.get(r, 3)?,
                changed_ms: pg.get(r, 4)?,
                disabled_ms: pg.get(r, 5)?,
            })
        })
        .collect()
}

/// Stores a new account.
///
/// # Errors
/// Database errors (a name already taken included).
pub fn insert(reader: &Reader, a: &AccountRow) -> Result<(), StoreError> {
    match reader.conn() {
        Ok(c) => {
            c.execute(
                &format!("INSERT INTO api_accounts({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    a.name,
                    a.role,
                    a.password_phc,
                    a.created_ms,
                    a.changed_ms,
                    a.disabled_ms
                ],
            )?;
            Ok(())
        }
        Err(pg) => pg
            .query(
                &format!("INSERT INTO api_accounts({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
                &[
                    &a.name,
                    &a.role,
                    &a.password_phc,
                    &a.created_ms,
                    &a.changed_ms,
                    &a.disabled_ms,
                ],
            )
            .map(drop),
    }
}

/// The account with this name, disabled or not.
///
/// # Errors
/// Database errors.
pub fn get(reader: &Reader, name: &str) -> Result<Option<AccountRow>, StoreError> {
    match reader.conn() {
        Ok(c) => Ok(c
            .query_row(
                &format!("SELECT {COLUMNS} FROM api_accounts WHERE name = ?1"),
                [name],
                sqlite_row,
            )
            .optional()?),
        Err(pg) => {
            let rows = pg.query(
                &format!("SELECT {COLUMNS} FROM api_accounts WHERE name = $1"),
                &[&name],
            )?;
            Ok(pg_rows(pg, &rows)?.into_iter().next())
        }
    }
}

/// Every account, by name.
///
/// # Errors
/// Database errors.
pub fn list(reader: &Reader) -> Result<Vec<AccountRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM api_accounts ORDER BY name");
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

/// A change to one live (not disabled) account.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    Role(&'a str),
    Password(&'a str),
    Disable,
}

/// Applies `change` to the live account `name`; false when there is none.
///
/// # Errors
/// Database errors.
pub fn update(
    reader: &Reader,
    name: &str,
    change: Change<'_>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let (column, value): (&str, Option<&str>) = match change {
        Change::Role(r) => ("role", Some(r)),
        Change::Password(p) => ("password_phc", Some(p)),
        Change::Disable => ("disabled_ms", None),
    };
    // The column is one of three fixed names; values are bound.
    let n = match reader.conn() {
        Ok(c) => match value {
            Some(v) => c.execute(
                &format!("UPDATE api_accounts SET {column} = ?2, changed_ms = ?3 WHERE name = ?1 AND disabled_ms IS NULL"),
                params![name, v, now_ms],
            )?,
            None => c.execute(
                "UPDATE api_accounts SET disabled_ms = ?2 WHERE name = ?1 AND disabled_ms IS NULL",
                params![name, now_ms],
            )?,
        },
        Err(pg) => match value {
            Some(v) => pg
                .query(
                    &format!("UPDATE api_accounts SET {column} = $2, changed_ms = $3 WHERE name = $1 AND disabled_ms IS NULL RETURNING name"),
                    &[&name, &v, &now_ms],
                )?
                .len(),
            None => pg
                .query(
                    "UPDATE api_accounts SET disabled_ms = $2 WHERE name = $1 AND disabled_ms IS NULL RETURNING name",
                    &[&name, &now_ms],
                )?
                .len(),
        },
    };
    Ok(n == 1)
}
