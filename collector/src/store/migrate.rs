//! `rie-collector store migrate`: copies a SQLite store (`data_dir/rie.db`) into a PostgreSQL
//! store, every table, resumably, then compares both sides' totals through the product's own
//! read path ([`Reader`]).
//!
//! Owns the table list of the copy ([`TABLES`]), the `migration_progress` table of the target
//! and the comparison report. May import `super` (the schema versions, the PostgreSQL session
//! and schema, the readers); nothing above the store.
//!
//! Design constraints:
//! - **The source is never modified**: it is opened read-only and read in one transaction (one
//!   consistent snapshot); its schema version must be this binary's [`LATEST`], and every table
//!   it holds must be in [`TABLES`] ([`MigrateError::UnknownTables`]), so that a table added by
//!   a future migration cannot be silently left behind.
//! - **Exact, resumable copy**: each table is read in chunks ordered by its primary key
//!   (keyset pagination); each chunk is inserted with plain `INSERT`s and the table's progress
//!   row (last key copied, rows copied) is updated *in the same PostgreSQL transaction*. A run
//!   interrupted at any point leaves whole chunks with their progress, and the next run resumes
//!   after the last committed key. Plain inserts, not the collector's write path: its upserts
//!   *add* to rows of the same key (contract point 4), so a chunk copied twice would count
//!   twice; nor `ON CONFLICT DO NOTHING`, which would silently keep a different row of the same
//!   key. A key conflict can only mean the target holds rows this migration did not write, and
//!   it stops the run with the error.
//! - **No silent merge**: a target holding store rows without a progress record of this same
//!   source (a fingerprint of its tables) is refused ([`MigrateError::TargetNotEmpty`]); with
//!   `force`, the target's store rows are deleted first, in one transaction with the new
//!   progress rows.
//! - One migration at a time per target (a session advisory lock).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;

use super::config::PostgresConfig;
use super::schema::LATEST;
use super::{Reader, StoreError};

/// Every table of the store schema, copied in this order (`schema_version` excepted: the
/// target's own migrations write it). A unit test checks that this is exactly the list of
/// tables a database migrated to [`LATEST`] holds.
pub const TABLES: &[&str] = &[
    "probe_credentials",
    "api_tokens",
    "audit_log",
    "api_sessions",
    "api_logins",
    "api_accounts",
    "plans",
    "plan_status",
    "plan_rollouts",
    "probe_streams",
    "site_status",
    "episodes",
    "netflow_templates",
    "netflow_sampling",
    "flow_minute",
    "flow_5min",
    "flow_hour",
    "flow_day",
    "flow_class_minute",
    "flow_class_5min",
    "flow_class_hour",
    "flow_class_day",
    "link_minute",
    "link_5min",
    "link_hour",
    "link_day",
    "top_talker_minute",
    "top_talker_5min",
    "top_talker_hour",
    "top_talker_day",
];

/// Rows per chunk unless told otherwise; always capped so that a chunk's parameters fit
/// PostgreSQL's 65,535 per statement.
pub const DEFAULT_CHUNK_ROWS: usize = 5_000;

/// Key of the advisory lock held by a migration ("rie-migr" in ASCII).
const LOCK_KEY: i64 = 0x7269_652d_6d69_6772;

/// What to copy where.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// The SQLite file (`data_dir/rie.db` of a stopped collector).
    pub source: PathBuf,
    /// The PostgreSQL database (URL, password source, CA bundle).
    pub target: PostgresConfig,
    /// Delete the target's store rows first when it holds some that are not a copy of this
    /// source in progress.
    pub force: bool,
    /// Rows per chunk (one PostgreSQL transaction each).
    pub chunk_rows: usize,
    /// For tests of resumption: stop (as if interrupted) after this many chunks committed.
    pub stop_after_chunks: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("--from sqlite:{path}: {message}")]
    Source { path: String, message: String },
    #[error("--from sqlite:{path}: {source}")]
    SourceSql {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("--from sqlite:{path}: table(s) {} not known to this rie-collector's migration; use the rie-collector release that wrote this database", .tables.join(", "))]
    UnknownTables { path: String, tables: Vec<String> },
    #[error("--to {url}: {message}")]
    TargetNotEmpty { url: String, message: String },
    #[error(
        "--to {url}: another `store migrate` is writing into this database; wait for it to end"
    )]
    TargetBusy { url: String },
    #[error("--to {url}: {message}")]
    TargetLayout { url: String, message: String },
    #[error("--to {url}: {source}")]
    Target {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stopped after {0} chunk(s) as asked (--stop-after-chunks); run the same command again without it to continue")]
    Stopped(u64),
    #[error("the totals of source and target differ: {0}")]
    Mismatch(String),
}

impl MigrateError {
    /// True when the fix is in the user's hands (flags, the files named, the target's content).
    pub fn is_user_error(&self) -> bool {
        match self {
            MigrateError::Source { .. }
            | MigrateError::UnknownTables { .. }
            | MigrateError::TargetNotEmpty { .. }
            | MigrateError::TargetBusy { .. } => true,
            MigrateError::Store(e) => e.is_user_error(),
            _ => false,
        }
    }
}

/// One figure of the final comparison, read on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    pub name: String,
    pub source: String,
    pub target: String,
}

impl Figure {
    pub fn equal(&self) -> bool {
        self.source == self.target
    }
}

/// What a run did and found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Rows copied by this run (a resumed run counts only its own).
    pub rows_copied: u64,
    pub chunks: u64,
    /// True when the run continued a migration interrupted earlier.
    pub resumed: bool,
    pub figures: Vec<Figure>,
}

impl Report {
    /// The side-by-side table printed at the end.
    pub fn table(&self) -> String {
        let w = self.figures.iter().map(|f| f.name.len()).max().unwrap_or(0);
        let ws = self
            .figures
            .iter()
            .map(|f| f.source.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let mut out = format!("{:w$}  {:>ws$}  {:>ws$}\n", "total", "sqlite", "postgres");
        for f in &self.figures {
            out += &format!(
                "{:w$}  {:>ws$}  {:>ws$}  {}\n",
                f.name,
                f.source,
                f.target,
                if f.equal() { "equal" } else { "DIFFERENT" }
            );
        }
        out
    }

    pub fn differences(&self) -> Vec<&Figure> {
        self.figures.iter().filter(|f| !f.equal()).collect()
    }
}

/// Runs the migration; `progress` is told of each table as it completes.
///
/// # Errors
/// [`MigrateError`]: refused source or target (user errors), database errors, or totals that
/// differ at the end.
///
/// # Panics
/// When called from an async task (`handle.block_on`): call it from a plain thread.
pub fn run(
    opts: &MigrateOptions,
    handle: &tokio::runtime::Handle,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, MigrateError> {
    let src = Source::open(&opts.source)?;
    let fingerprint = src.fingerprint()?;
    let url = opts.target.masked_url();
    let t_err = |source| MigrateError::Target {
        url: url.clone(),
        source,
    };

    let mut client = handle.block_on(connect(&opts.target))?;
    handle
        .block_on(async {
            let locked: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
                .await?
                .try_get(0)?;
            Ok::<_, tokio_postgres::Error>(locked)
        })
        .map_err(t_err)
        .and_then(|locked| {
            if locked {
                Ok(())
            } else {
                Err(MigrateError::TargetBusy { url: url.clone() })
            }
        })?;
    handle
        .block_on(super::postgres::schema::migrate(&mut client))
        .map_err(|source| StoreError::Schema {
            path: url.clone(),
            source,
        })?;

    // The target's layout: columns of every table, and its identity columns.
    let mut layouts = BTreeMap::new();
    for &table in TABLES {
        let cols = src.columns(table)?;
        let target_cols: Vec<(String, String, bool)> = handle
            .block_on(async {
                let rows = client
                    .query(
                        "SELECT column_name::TEXT, data_type::TEXT, is_identity = 'YES'
                         FROM information_schema.columns
                         WHERE table_schema = current_schema() AND table_name = $1",
                        &[&table],
                    )
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                    .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            })
            .map_err(t_err)?;
        let mut types = Vec::new();
        for c in &cols.names {
            let Some((_, ty, _)) = target_cols.iter().find(|t| &t.0 == c) else {
                return Err(MigrateError::TargetLayout {
                    url: url.clone(),
                    message: format!("table {table} has no column {c}, which the source has; the PostgreSQL schema of this collector does not match its SQLite schema (a bug: report it)"),
                });
            };
            types.push(PgType::parse(ty).ok_or_else(|| MigrateError::TargetLayout {
                url: url.clone(),
                message: format!(
                    "{table}.{c}: column type {ty} is not one the migration copies into"
                ),
            })?);
        }
        let identity: Vec<String> = target_cols
            .iter()
            .filter(|t| t.2)
            .map(|t| t.0.clone())
            .collect();
        layouts.insert(table, (cols, types, identity));
    }

    let resumed = handle.block_on(prepare_target(
        &mut client,
        &url,
        &fingerprint,
        &opts.source,
        opts.force,
    ))?;

    // Copy, table by table, chunk by chunk.
    let chunk_cap = |ncols: usize| opts.chunk_rows.clamp(1, 65_535 / ncols.max(1));
    let (mut rows_copied, mut chunks) = (0u64, 0u64);
    for &table in TABLES {
        let (cols, types, identity) = &layouts[table];
        let (mut last_key, done): (Option<String>, bool) = handle
            .block_on(async {
                let r = client
                    .query_one(
                        "SELECT last_key, done FROM migration_progress WHERE table_name = $1",
                        &[&table],
                    )
                    .await?;
                Ok::<_, tokio_postgres::Error>((r.try_get(0)?, r.try_get(1)?))
            })
            .map_err(t_err)?;
        if done {
            progress(table);
            continue;
        }
        let limit = chunk_cap(cols.names.len());
        loop {
            if opts.stop_after_chunks.is_some_and(|n| chunks >= n) {
                return Err(MigrateError::Stopped(chunks));
            }
            let key = match &last_key {
                None => None,
                Some(k) => Some(serde_json::from_str::<Vec<serde_json::Value>>(k).map_err(
                    |e| MigrateError::TargetLayout {
                        url: url.clone(),
                        message: format!("migration_progress of {table}: bad last_key {k:?}: {e}; rerun with --force to copy again from the start"),
                    },
                )?),
            };
            let rows = src.chunk(table, cols, key.as_deref(), limit)?;
            let n = rows.len();
            let new_key = match rows.last() {
                Some(row) => Some(src.key_of(table, cols, row)?),
                None => last_key.clone(),
            };
            let done = n < limit;
            handle
                .block_on(insert_chunk(
                    &mut client,
                    table,
                    cols,
                    types,
                    !identity.is_empty(),
                    &rows,
                    new_key.as_deref(),
                    done,
                ))
                .map_err(t_err)?;
            rows_copied += n as u64;
            chunks += 1;
            last_key = new_key;
            if done {
                break;
            }
        }
        progress(table);
    }
    // A copied identity column (episode ids) must not hand out ids already taken. Done at the
    // end of every run, not after each table: a run killed between a table's last chunk and
    // this step leaves the table done, and the next run must still move its sequence.
    for &table in TABLES {
        for col in &layouts[table].2 {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{col}'),
                        COALESCE((SELECT max({col}) FROM {table}), 1),
                        (SELECT max({col}) FROM {table}) IS NOT NULL)"
            );
            handle
                .block_on(client.execute(sql.as_str(), &[]))
                .map_err(t_err)?;
        }
    }
    drop(client);

    let figures = compare(&src, opts, handle)?;
    let report = Report {
        rows_copied,
        chunks,
        resumed,
        figures,
    };
    let diff = report.differences();
    if !diff.is_empty() {
        return Err(MigrateError::Mismatch(format!(
            "{}\n{}",
            diff.iter()
                .map(|f| format!("{} {} vs {}", f.name, f.source, f.target))
                .collect::<Vec<_>>()
                .join(", "),
            report.table()
        )));
    }
    Ok(report)
}

/// The migration's session: the store's connection set-up, with the fix of a failed login
/// naming this command's flags, and without the server's notices (`IF NOT EXISTS` skips).
async fn connect(cfg: &PostgresConfig) -> Result<tokio_postgres::Client, MigrateError> {
    let client = super::postgres::connect(cfg).await.map_err(|e| match e {
        StoreError::PgConnect { url, source, .. } => StoreError::PgConnect {
            url,
            source,
            fix: "check the URL of --to (hosts, port, user, database) and the password in --password-file or the variable of --password-env".into(),
        },
        StoreError::PgSetup { key, message } => StoreError::PgSetup {
            key: match key {
                "store.postgres.password_file" => "--password-file",
                "store.postgres.password_env" => "--password-env",
                "store.postgres.root_cert" => "--root-cert",
                "store.postgres.url" => "--to",
                other => other,
            },
            message,
        },
        other => other,
    })?;
    client
        .batch_execute("SET client_min_messages = warning")
        .await
        .map_err(|source| MigrateError::Target {
            url: cfg.masked_url(),
            source,
        })?;
    Ok(client)
}

/// Creates `migration_progress` if needed and decides: fresh start, resume, or refusal.
/// Returns whether the run resumes an earlier one.
async fn prepare_target(
    client: &mut tokio_postgres::Client,
    url: &str,
    fingerprint: &str,
    source: &Path,
    force: bool,
) -> Result<bool, MigrateError> {
    let t_err = |source| MigrateError::Target {
        url: url.to_string(),
        source,
    };
    let tx = client.transaction().await.map_err(t_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS migration_progress(
            table_name  TEXT PRIMARY KEY,
            source      TEXT NOT NULL,      -- fingerprint of the SQLite source (see store::migrate)
            source_path TEXT NOT NULL,
            last_key    TEXT,               -- JSON array: primary key of the last row copied
            rows_copied BIGINT NOT NULL,
            done        BOOLEAN NOT NULL,
            updated_ms  BIGINT NOT NULL
        );",
    )
    .await
    .map_err(t_err)?;
    let recorded = tx
        .query(
            "SELECT source, source_path, done FROM migration_progress",
            &[],
        )
        .await
        .map_err(t_err)?;
    let mut non_empty = Vec::new();
    for &table in TABLES {
        let has: bool = tx
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(t_err)?;
        if has {
            non_empty.push(table);
        }
    }
    let same_source = !recorded.is_empty()
        && recorded
            .iter()
            .all(|r| r.get::<_, String>(0) == fingerprint);
    let all_done = same_source && recorded.iter().all(|r| r.get::<_, bool>(2));
    let refusal = if same_source && recorded.len() == TABLES.len() && all_done {
        Some("it already holds a complete copy of this source (an earlier `store migrate` finished); nothing to do. Pass --force to delete the target's store rows and copy again".to_string())
    } else if same_source && recorded.len() == TABLES.len() {
        None // resume
    } else if !recorded.is_empty() {
        let path: String = recorded[0].get(1);
        Some(format!("it holds a migration (possibly partial) from another source ({path}, different content); point --from at that database to continue it, or pass --force to delete the target's store rows and copy this one"))
    } else if !non_empty.is_empty() {
        Some(format!("it already holds store rows (in {}) that no `store migrate` of this source wrote; point --to at an empty database, or pass --force to delete those rows and copy this source", non_empty.join(", ")))
    } else {
        None
    };
    let resume = refusal.is_none() && same_source && recorded.len() == TABLES.len();
    match (refusal, force) {
        (Some(message), false) => {
            return Err(MigrateError::TargetNotEmpty {
                url: url.to_string(),
                message,
            })
        }
        (Some(_), true) => {
            // One statement, one transaction with the new progress rows below: the target is
            // never seen half emptied.
            tx.batch_execute(&format!(
                "TRUNCATE {}, migration_progress RESTART IDENTITY",
                TABLES.join(", ")
            ))
            .await
            .map_err(t_err)?;
        }
        (None, _) if resume => {
            tx.commit().await.map_err(t_err)?;
            return Ok(true);
        }
        (None, _) => {}
    }
    let path = source.display().to_string();
    for &table in TABLES {
        tx.execute(
            "INSERT INTO migration_progress(table_name, source, source_path, last_key, rows_copied, done, updated_ms)
             VALUES ($1, $2, $3, NULL, 0, FALSE, $4)",
            &[&table, &fingerprint, &path, &rie_common::now_ms()],
        )
        .await
        .map_err(t_err)?;
    }
    tx.commit().await.map_err(t_err)?;
    Ok(false)
}

/// Inserts one chunk and moves the table's progress, in one transaction.
#[allow(clippy::too_many_arguments)]
async fn insert_chunk(
    client: &mut tokio_postgres::Client,
    table: &str,
    cols: &Columns,
    types: &[PgType],
    identity: bool,
    rows: &[Vec<Cell>],
    last_key: Option<&str>,
    done: bool,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    if !rows.is_empty() {
        let ncols = cols.names.len();
        let mut sql = format!(
            "INSERT INTO {table}({}){} VALUES ",
            cols.names.join(", "),
            if identity {
                " OVERRIDING SYSTEM VALUE"
            } else {
                ""
            }
        );
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::with_capacity(rows.len() * ncols);
        for (i, row) in rows.iter().enumerate() {
            sql.push_str(if i == 0 { "(" } else { ", (" });
            for (j, cell) in row.iter().enumerate() {
                if j > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", i * ncols + j + 1));
                params.push(cell.to_pg(types[j]));
            }
            sql.push(')');
        }
        // Plain INSERT (see the module comment): a key already present is an error, never a
        // sum nor a silent skip.
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        tx.execute(sql.as_str(), &refs).await?;
    }
    tx.execute(
        "UPDATE migration_progress SET last_key = $2, rows_copied = rows_copied + $3, done = $4,
                updated_ms = $5 WHERE table_name = $1",
        &[
            &table,
            &last_key,
            &(rows.len() as i64),
            &done,
            &rie_common::now_ms(),
        ],
    )
    .await?;
    tx.commit().await
}

/// A PostgreSQL column type the copy writes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PgType {
    BigInt,
    Text,
    Bytea,
}

impl PgType {
    fn parse(data_type: &str) -> Option<Self> {
        match data_type {
            "bigint" => Some(PgType::BigInt),
            "text" => Some(PgType::Text),
            "bytea" => Some(PgType::Bytea),
            _ => None,
        }
    }
}

/// One SQLite value, owned.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    /// The parameter for a column of type `ty`: a NULL typed as the column (the driver checks
    /// types), a value as itself (a value of the wrong type fails the chunk with the driver's
    /// error naming the types).
    fn to_pg(&self, ty: PgType) -> Box<dyn ToSql + Sync + Send> {
        match (self, ty) {
            (Cell::Null, PgType::BigInt) => Box::new(None::<i64>),
            (Cell::Null, PgType::Text) => Box::new(None::<String>),
            (Cell::Null, PgType::Bytea) => Box::new(None::<Vec<u8>>),
            (Cell::Int(v), _) => Box::new(*v),
            (Cell::Text(v), _) => Box::new(v.clone()),
            (Cell::Blob(v), _) => Box::new(v.clone()),
        }
    }
}

/// A source table's columns, and which of them form its primary key, in key order.
#[derive(Debug, Clone)]
struct Columns {
    names: Vec<String>,
    /// Indexes into `names`.
    key: Vec<usize>,
}

/// The SQLite source: opened read-only, read inside one transaction (one snapshot).
struct Source {
    conn: Connection,
    path: PathBuf,
}

impl Source {
    fn open(path: &Path) -> Result<Self, MigrateError> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(MigrateError::Source {
                path: shown,
                message: "no such file; give the rie.db of the collector's data_dir, e.g. --from sqlite:/var/lib/rie-collector/rie.db".into(),
            });
        }
        let sql = |source| MigrateError::SourceSql {
            path: shown.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql)?;
        // One read transaction for the whole run: every chunk and the fingerprint come from
        // one snapshot, whatever happens to the file meanwhile.
        conn.execute_batch("BEGIN DEFERRED").map_err(sql)?;
        let has_version: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let version = if has_version > 0 {
            super::schema::version(&conn).map_err(sql)?
        } else {
            0
        };
        if version != LATEST {
            let fix = if version < LATEST {
                "upgrade it first: start this rie-collector on it once (`rie-collector serve` with this data_dir), stop it, then migrate"
            } else {
                "use the newer rie-collector release that wrote it"
            };
            return Err(MigrateError::Source {
                path: shown,
                message: format!(
                    "schema version {version}, but this rie-collector copies version {LATEST} only; {fix}"
                ),
            });
        }
        let src = Self {
            conn,
            path: path.to_path_buf(),
        };
        let unknown: Vec<String> = src
            .tables()?
            .into_iter()
            .filter(|t| !TABLES.contains(&t.as_str()))
            .collect();
        if !unknown.is_empty() {
            return Err(MigrateError::UnknownTables {
                path: shown,
                tables: unknown,
            });
        }
        Ok(src)
    }

    fn sql_err(&self) -> impl Fn(rusqlite::Error) -> MigrateError + '_ {
        |source| MigrateError::SourceSql {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Every table of the source but `schema_version` and SQLite's own.
    fn tables(&self) -> Result<Vec<String>, MigrateError> {
        source_tables(&self.conn).map_err(self.sql_err())
    }

    fn columns(&self, table: &str) -> Result<Columns, MigrateError> {
        let mut stmt = self
            .conn
            .prepare(&format!("PRAGMA table_info({table})"))
            .map_err(self.sql_err())?;
        let info: Vec<(String, i64)> = stmt
            .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(5)?)))
            .map_err(self.sql_err())?
            .collect::<Result<_, _>>()
            .map_err(self.sql_err())?;
        let mut key: Vec<(i64, usize)> = info
            .iter()
            .enumerate()
            .filter(|(_, c)| c.1 > 0)
            .map(|(i, c)| (c.1, i))
            .collect();
        key.sort();
        if key.is_empty() {
            return Err(MigrateError::Source {
                path: self.path.display().to_string(),
                message: format!(
                    "table {table} has no primary key; it is not a table of the collector's schema"
                ),
            });
        }
        Ok(Columns {
            names: info.into_iter().map(|c| c.0).collect(),
            key: key.into_iter().map(|k| k.1).collect(),
        })
    }

    /// Up to `limit` rows after `after` (a primary key), in key order.
    fn chunk(
        &self,
        table: &str,
        cols: &Columns,
        after: Option<&[serde_json::Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Cell>>, MigrateError> {
        let key_cols: Vec<&str> = cols.key.iter().map(|&i| cols.names[i].as_str()).collect();
        let mut sql = format!("SELECT {} FROM {table}", cols.names.join(", "));
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(after) = after {
            if after.len() != key_cols.len() {
                return Err(MigrateError::Source {
                    path: self.path.display().to_string(),
                    message: format!("table {table}: the recorded last key {after:?} does not match the primary key ({}); rerun with --force", key_cols.join(", ")),
                });
            }
            // Row-value comparison: one range seek on the primary key.
            sql += &format!(
                " WHERE ({}) > ({})",
                key_cols.join(", "),
                vec!["?"; key_cols.len()].join(", ")
            );
            for v in after {
                args.push(match v {
                    serde_json::Value::Number(n) => match n.as_i64() {
                        Some(i) => rusqlite::types::Value::Integer(i),
                        None => rusqlite::types::Value::Null,
                    },
                    serde_json::Value::String(s) => rusqlite::types::Value::Text(s.clone()),
                    _ => rusqlite::types::Value::Null,
                });
            }
        }
        sql += &format!(" ORDER BY {} LIMIT {limit}", key_cols.join(", "));
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.sql_err())?;
        let n = cols.names.len();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            ValueRef::Null => Cell::Null,
                            ValueRef::Integer(v) => Cell::Int(v),
                            // Copied as is or not at all: no lossy repair of a value.
                            ValueRef::Text(t) => Cell::Text(
                                std::str::from_utf8(t)
                                    .map_err(rusqlite::Error::Utf8Error)?
                                    .to_string(),
                            ),
                            ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                            ValueRef::Real(_) => {
                                return Err(rusqlite::Error::InvalidColumnType(
                                    i,
                                    format!("{table}.{}", cols.names[i]),
                                    rusqlite::types::Type::Real,
                                ))
                            }
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err())?;
        rows.collect::<Result<_, _>>().map_err(self.sql_err())
    }

    /// The primary key of `row`, as the JSON array `migration_progress` records.
    fn key_of(&self, table: &str, cols: &Columns, row: &[Cell]) -> Result<String, MigrateError> {
        let mut key = Vec::with_capacity(cols.key.len());
        for &i in &cols.key {
            key.push(match &row[i] {
                Cell::Int(v) => serde_json::Value::from(*v),
                Cell::Text(s) => serde_json::Value::from(s.as_str()),
                other => {
                    return Err(MigrateError::Source {
                        path: self.path.display().to_string(),
                        message: format!(
                            "table {table}: key column {} holds {other:?}; only integer and text keys are copied",
                            cols.names[i]
                        ),
                    })
                }
            });
        }
        Ok(serde_json::Value::Array(key).to_string())
    }

    /// Identifies the source's content: schema version, and per table its row count and its
    /// last row by primary key. A resumed run must find the same.
    fn fingerprint(&self) -> Result<String, MigrateError> {
        let mut h = Sha256::new();
        h.update(format!("schema {LATEST}\n"));
        for &table in TABLES {
            let cols = self.columns(table)?;
            let n: i64 = self
                .conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .map_err(self.sql_err())?;
            let key_cols: Vec<String> = cols
                .key
                .iter()
                .map(|&i| format!("{} DESC", cols.names[i]))
                .collect();
            let last: Option<String> = self
                .conn
                .query_row(
                    &format!(
                        "SELECT quote({}) FROM {table} ORDER BY {} LIMIT 1",
                        cols.names.join(") || ',' || quote("),
                        key_cols.join(", ")
                    ),
                    [],
                    |r| r.get(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .map_err(self.sql_err())?;
            h.update(format!("{table} {n} {}\n", last.unwrap_or_default()));
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Every stream mark (site, stream), for the batch totals.
    fn marks(&self) -> Result<Vec<(String, u64)>, MigrateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT site_id, stream FROM probe_streams ORDER BY site_id, stream")
            .map_err(self.sql_err())?;
        let rows = stmt
            // Stream ids are u64 stored bit for bit in signed integers.
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(self.sql_err())?;
        rows.collect::<Result<_, _>>().map_err(self.sql_err())
    }

    fn count(&self, table: &str) -> Result<i64, MigrateError> {
        self.conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .map_err(self.sql_err())
    }
}

/// Tables of a SQLite store, `schema_version` and SQLite's own excepted, sorted.
fn source_tables(conn: &Connection) -> Result<Vec<String>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table'
           AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> 'schema_version' ORDER BY name",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

/// Both sides' totals, read through each backend's [`Reader`] (the product's read path), plus
/// rows per table.
fn compare(
    src: &Source,
    opts: &MigrateOptions,
    handle: &tokio::runtime::Handle,
) -> Result<Vec<Figure>, MigrateError> {
    let source = Reader::open_read_only(&opts.source)?;
    let target = Reader::open_postgres(&opts.target, handle)?;
    // One instant for open episodes on both sides.
    let now_ms = rie_common::now_ms();
    let marks = src.marks()?;
    let totals = |r: &Reader| -> Result<Vec<(String, String)>, StoreError> {
        let t = r.flow_totals(i64::MIN, i64::MAX, None, None)?;
        let episodes = r.episodes_touching(i64::MIN, i64::MAX)?;
        let outage_ms: i64 = episodes
            .iter()
            .filter(|(_, e)| e.kind == rie_proto::EpisodeKind::Outage)
            .map(|(_, e)| e.end_ms.unwrap_or(now_ms).max(e.start_ms) - e.start_ms)
            .sum();
        let open = episodes.iter().filter(|(_, e)| e.end_ms.is_none()).count();
        let mut batches: u128 = 0;
        let mut streams = 0u64;
        for (site, stream) in &marks {
            if let Some(seq) = r.stream_mark(site, *stream)? {
                batches += u128::from(seq);
                streams += 1;
            }
        }
        Ok(vec![
            ("flows".into(), t.flows.to_string()),
            ("packets".into(), t.packets.to_string()),
            ("bytes".into(), t.bytes.to_string()),
            (
                "outage seconds".into(),
                format!("{}.{:03}", outage_ms / 1000, outage_ms % 1000),
            ),
            ("episodes".into(), episodes.len().to_string()),
            ("open episodes".into(), open.to_string()),
            ("batches (stream marks)".into(), batches.to_string()),
            ("streams".into(), streams.to_string()),
        ])
    };
    let a = totals(&source)?;
    let b = totals(&target)?;
    let mut figures: Vec<Figure> = a
        .into_iter()
        .zip(b)
        .map(|((name, source), (_, target))| Figure {
            name,
            source,
            target,
        })
        .collect();
    let client = handle.block_on(connect(&opts.target))?;
    let url = opts.target.masked_url();
    for &table in TABLES {
        let n = src.count(table)?;
        let m: i64 = handle
            .block_on(async {
                client
                    .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                    .await?
                    .try_get(0)
            })
            .map_err(|source| MigrateError::Target {
                url: url.clone(),
                source,
            })?;
        figures.push(Figure {
            name: format!("rows {table}"),
            source: n.to_string(),
            target: m.to_string(),
        });
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_knows_every_table_of_the_latest_schema() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("rie.db")).unwrap();
        let mut want: Vec<&str> = TABLES.to_vec();
        want.sort_unstable();
        assert_eq!(
            source_tables(&conn).unwrap(),
            want,
            "a migration added or removed a table: update store::migrate::TABLES"
        );
    }

    #[test]
    fn a_source_with_an_unknown_table_or_another_version_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rie.db");
        {
            let conn = crate::store::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE future_rollup(k INTEGER PRIMARY KEY);")
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Source::open(&path).err().unwrap();
        assert!(
            matches!(&err, MigrateError::UnknownTables { tables, .. } if tables == &["future_rollup".to_string()]),
            "{err}"
        );
        assert!(err.is_user_error());
        assert!(
            std::fs::read(&path).unwrap() == before,
            "the source was modified"
        );
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "DROP TABLE future_rollup; DELETE FROM schema_version WHERE version >= 2;",
            )
            .unwrap();
        }
        let err = Source::open(&path).err().unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("schema version 1") && msg.contains(&format!("copies version {LATEST}")),
            "{msg}"
        );
        assert!(err.is_user_error());
        // Read-only opens changed nothing of the file.
        let conn = Connection::open(&path).unwrap();
        assert_eq!(crate::store::schema::version(&conn).unwrap(), 1);
    }
}
