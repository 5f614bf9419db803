//! The collector database's one schema: every table, index and view, as ordered, numbered
//! migrations, and the `schema_version` table that says which have been applied.
//!
//! Owns all DDL of the embedded store; nothing else in the collector creates a table. May
//! import only `rusqlite` and `rie_common` (it is the SQLite backend's schema; the PostgreSQL
//! text of the same migrations is in `store::postgres::schema`, checked against this list).
//!
//! Rules:
//! - A migration is never edited once released; a change is a new migration at the end.
//! - Migrations run in one `BEGIN IMMEDIATE` transaction each, with the version re-read inside
//!   it, so two processes opening the same file (the collector, `probe-config`) never apply one
//!   twice.
//! - A database whose version is newer than [`LATEST`] is refused with [`SchemaError::Newer`]:
//!   an older collector must not write into a layout it does not know.
//! - Version 1 is the layout of release 0.1, which had no `schema_version` table. Such a
//!   database is recognised by its `probe_streams` table and brought to version 1 by the same
//!   idempotent steps release 0.1 ran at every start (tables created if missing, the port-class
//!   table filled from `flow_minute` if it predates it, the cross-tier views replaced when they
//!   lack the five-minute tier), then stamped.

use rusqlite::{Connection, OptionalExtension};

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema version {found} was written by a newer rie-collector (this one knows up to {supported}); run the newer collector, or point data_dir at another database")]
    Newer { found: i64, supported: i64 },
    #[error("migration {version} ({name}): {source}")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Sql(#[from] rusqlite::Error),
    #[error("migration {version} ({name}): {source}")]
    PgMigration {
        version: i64,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// (version, name) of every migration, for the PostgreSQL list to be checked against.
#[cfg(test)]
pub(crate) fn migration_names() -> Vec<(i64, &'static str)> {
    MIGRATIONS.iter().map(|m| (m.version, m.name)).collect()
}

/// One step of the schema.
struct Migration {
    version: i64,
    name: &'static str,
    apply: fn(&Connection) -> Result<(), rusqlite::Error>,
}

/// Every migration, in order; versions are 1, 2, 3... without gaps.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "release 0.1 layout: minute tables, tiers, views, NetFlow, cluster",
        apply: release_0_1,
    },
    Migration {
        version: 2,
        name: "open episodes found by site, kind and start",
        apply: |conn| {
            conn.execute_batch(
                "CREATE INDEX IF NOT EXISTS episodes_open_key ON episodes(site_id, kind, start_ms)
                 WHERE end_ms IS NULL;",
            )
        },
    },
    Migration {
        version: 3,
        name: "site states versioned for collectors sharing a database; no cluster table",
        apply: |conn| {
            // Idempotent, like every step (a database that lost its `schema_version` runs
            // them again): SQLite has no `ADD COLUMN IF NOT EXISTS`.
            let has: i64 = conn.query_row(
                "SELECT count(*) FROM pragma_table_info('site_status') WHERE name = 'updated_ms'",
                [],
                |r| r.get(0),
            )?;
            if has == 0 {
                conn.execute_batch(
                    "ALTER TABLE site_status ADD COLUMN updated_ms INTEGER NOT NULL DEFAULT 0;",
                )?;
            }
            conn.execute_batch("DROP TABLE IF EXISTS cluster_membership;")
        },
    },
    Migration {
        version: 4,
        name: "API tokens",
        apply: |conn| conn.execute_batch(API_TOKENS),
    },
    Migration {
        version: 5,
        name: "audit trail",
        apply: |conn| conn.execute_batch(AUDIT_LOG),
    },
    Migration {
        version: 6,
        name: "sessions of people logged in with OpenID Connect",
        apply: |conn| conn.execute_batch(API_SESSIONS),
    },
    Migration {
        version: 7,
        name: "local accounts of people",
        apply: |conn| conn.execute_batch(API_ACCOUNTS),
    },
    Migration {
        version: 8,
        name: "check plans per scope and each site's plan status",
        apply: |conn| conn.execute_batch(PLANS),
    },
    Migration {
        version: 9,
        name: "staged rollouts of check plans",
        apply: |conn| conn.execute_batch(PLAN_ROLLOUTS),
    },
];

/// Staged rollouts of check plans (`store::plans`, `crate::plans::rollout`): the rollout as
/// JSON in `body`; `rev` grows with every change (a change is written only over the revision
/// it was computed from: several collectors may drive the same rollout).
const PLAN_ROLLOUTS: &str = "CREATE TABLE IF NOT EXISTS plan_rollouts(
    id         INTEGER PRIMARY KEY,
    rev        INTEGER NOT NULL,
    body       TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);";

/// Local accounts (`store::api_accounts`): the password's Argon2id hash only.
const API_ACCOUNTS: &str = "CREATE TABLE IF NOT EXISTS api_accounts(
    name         TEXT PRIMARY KEY,
    role         TEXT NOT NULL,
    password_phc TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    changed_ms   INTEGER NOT NULL,
    disabled_ms  INTEGER
);";

/// Check plans (`store::plans`): every plan file stored, by version (one increasing sequence
/// over all scopes), and what each site's probe answered to its effective plan.
const PLANS: &str = "CREATE TABLE IF NOT EXISTS plans(
    version     INTEGER PRIMARY KEY,
    scope_kind  TEXT NOT NULL,
    scope_value TEXT NOT NULL,
    hash        TEXT NOT NULL,
    toml        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS plans_scope ON plans(scope_kind, scope_value, version);
CREATE TABLE IF NOT EXISTS plan_status(
    site       TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    state      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);";

/// The audit trail (`store::audit`): who read finance data, exported, changed a token, failed
/// to authenticate; when, from where.
const AUDIT_LOG: &str = "CREATE TABLE IF NOT EXISTS audit_log(
    id      INTEGER PRIMARY KEY,
    at_ms   INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    role    TEXT NOT NULL,
    source  TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log(at_ms);";

/// API tokens (`store::api_tokens`): the secret's SHA-256 only, never the secret.
const API_TOKENS: &str = "CREATE TABLE IF NOT EXISTS api_tokens(
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER,
    revoked_ms    INTEGER
);";

/// Sessions and logins in progress (`store::api_sessions`): the cookie's SHA-256 only.
const API_SESSIONS: &str = "CREATE TABLE IF NOT EXISTS api_sessions(
    id_sha256    TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    subject      TEXT NOT NULL,
    claims_json  TEXT NOT NULL,
    id_token     TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    revoked_ms   INTEGER
);
CREATE TABLE IF NOT EXISTS api_logins(
    id_sha256     TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    created_ms    INTEGER NOT NULL
);";

/// The version this collector writes.
pub const LATEST: i64 = 9;

/// Applies the migrations `conn`'s database lacks.
///
/// # Errors
/// [`SchemaError::Newer`] for a database of a newer collector; SQL errors naming the migration.
pub fn migrate(conn: &Connection) -> Result<i64, SchemaError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version(
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_ms INTEGER NOT NULL
        );",
    )?;
    let current = version(conn)?;
    if current > LATEST {
        return Err(SchemaError::Newer {
            found: current,
            supported: LATEST,
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let wrap = |source| SchemaError::Migration {
            version: m.version,
            name: m.name,
            source,
        };
        conn.execute_batch("BEGIN IMMEDIATE;").map_err(wrap)?;
        let res = (|| {
            // Another process may have applied it while this one waited for the lock.
            if version(conn)? >= m.version {
                return Ok(());
            }
            (m.apply)(conn)?;
            conn.execute(
                "INSERT INTO schema_version(version, name, applied_ms) VALUES (?1, ?2, ?3)",
                rusqlite::params![m.version, m.name, rie_common::now_ms()],
            )?;
            Ok(())
        })();
        match res {
            Ok(()) => conn.execute_batch("COMMIT;").map_err(wrap)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK;");
                return Err(wrap(e));
            }
        }
    }
    Ok(version(conn)?.max(current))
}

/// The highest applied version (0: a new or release-0.1 database).
///
/// # Errors
/// SQL errors.
pub fn version(conn: &Connection) -> Result<i64, rusqlite::Error> {
    Ok(conn
        .query_row("SELECT max(version) FROM schema_version", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten()
        .unwrap_or(0))
}

/// Version 1: the tables of release 0.1, created if missing; on a database of an earlier
/// 0.1 build, the port-class table is filled and the views are replaced (both idempotent).
fn release_0_1(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(MINUTE_TABLES)?;
    carry_port_classes(conn)?;
    conn.execute_batch(TIER_TABLES)?;
    conn.execute_batch(NETFLOW_TABLES)?;
    conn.execute_batch(CLUSTER_TABLES)?;
    refresh_views(conn)
}

/// Minute tables (written by the commit stage), stream marks, site state, episodes and
/// credentials.
const MINUTE_TABLES: &str = "
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

/// Tables of the five-minute, hourly and daily tiers (see `retention`).
const TIER_TABLES: &str = "
CREATE TABLE IF NOT EXISTS flow_5min(
    five_min INTEGER NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    protocol INTEGER NOT NULL, direction INTEGER NOT NULL,
    flows INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (five_min, site_id, exporter, protocol, direction)
) WITHOUT ROWID;
-- Per-site reads of the recent weeks (API totals of one site) stay a range scan, as on flow_minute.
CREATE INDEX IF NOT EXISTS flow_5min_site ON flow_5min(site_id, five_min);
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
CREATE TABLE IF NOT EXISTS link_5min(
    five_min INTEGER NOT NULL, site_id TEXT NOT NULL, link_id TEXT NOT NULL,
    samples INTEGER NOT NULL, sent INTEGER NOT NULL, received INTEGER NOT NULL,
    rtt_sum_us INTEGER NOT NULL, rtt_n INTEGER NOT NULL, rtt_max_us INTEGER,
    PRIMARY KEY (five_min, site_id, link_id)
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
CREATE TABLE IF NOT EXISTS flow_class_5min(
    five_min INTEGER NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    protocol INTEGER NOT NULL, direction INTEGER NOT NULL, port_class TEXT NOT NULL,
    flows INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (five_min, site_id, exporter, protocol, direction, port_class)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS flow_class_5min_site ON flow_class_5min(site_id, five_min);
CREATE TABLE IF NOT EXISTS flow_class_hour(
    hour INTEGER NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    protocol INTEGER NOT NULL, direction INTEGER NOT NULL, port_class TEXT NOT NULL,
    flows INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (hour, site_id, exporter, protocol, direction, port_class)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flow_class_day(
    day INTEGER NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    protocol INTEGER NOT NULL, direction INTEGER NOT NULL, port_class TEXT NOT NULL,
    flows INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (day, site_id, exporter, protocol, direction, port_class)
) WITHOUT ROWID;
-- Top talkers: site first, as in top_talker_minute (the API reads one site at a time).
CREATE TABLE IF NOT EXISTS top_talker_5min(
    five_min INTEGER NOT NULL, site_id TEXT NOT NULL, prefix TEXT NOT NULL,
    bytes INTEGER NOT NULL, packets INTEGER NOT NULL,
    PRIMARY KEY (site_id, five_min, prefix)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS top_talker_hour(
    hour INTEGER NOT NULL, site_id TEXT NOT NULL, prefix TEXT NOT NULL,
    bytes INTEGER NOT NULL, packets INTEGER NOT NULL,
    PRIMARY KEY (site_id, hour, prefix)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS top_talker_day(
    day INTEGER NOT NULL, site_id TEXT NOT NULL, prefix TEXT NOT NULL,
    bytes INTEGER NOT NULL, packets INTEGER NOT NULL,
    PRIMARY KEY (site_id, day, prefix)
) WITHOUT ROWID;
";

/// The views over all tiers; `start` is the bucket start. SQLite pushes a WHERE on start into
/// each arm, so each arm is a range scan of its primary key (or site index).
const VIEWS: &str = "
CREATE VIEW flow_rollup(start, site_id, exporter, protocol, direction, flows, packets, bytes) AS
    SELECT minute, site_id, exporter, protocol, direction, flows, packets, bytes FROM flow_minute
    UNION ALL SELECT five_min, site_id, exporter, protocol, direction, flows, packets, bytes FROM flow_5min
    UNION ALL SELECT hour, site_id, exporter, protocol, direction, flows, packets, bytes FROM flow_hour
    UNION ALL SELECT day, site_id, exporter, protocol, direction, flows, packets, bytes FROM flow_day;
CREATE VIEW link_rollup(start, site_id, link_id, samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us) AS
    SELECT minute, site_id, link_id, samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us FROM link_minute
    UNION ALL SELECT five_min, site_id, link_id, samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us FROM link_5min
    UNION ALL SELECT hour, site_id, link_id, samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us FROM link_hour
    UNION ALL SELECT day, site_id, link_id, samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us FROM link_day;
CREATE VIEW flow_class_rollup(start, site_id, exporter, protocol, direction, port_class, flows, packets, bytes) AS
    SELECT minute, site_id, exporter, protocol, direction, port_class, flows, packets, bytes FROM flow_class_minute
    UNION ALL SELECT five_min, site_id, exporter, protocol, direction, port_class, flows, packets, bytes FROM flow_class_5min
    UNION ALL SELECT hour, site_id, exporter, protocol, direction, port_class, flows, packets, bytes FROM flow_class_hour
    UNION ALL SELECT day, site_id, exporter, protocol, direction, port_class, flows, packets, bytes FROM flow_class_day;
CREATE VIEW top_talker_rollup(start, site_id, prefix, bytes, packets) AS
    SELECT minute, site_id, prefix, bytes, packets FROM top_talker_minute
    UNION ALL SELECT five_min, site_id, prefix, bytes, packets FROM top_talker_5min
    UNION ALL SELECT hour, site_id, prefix, bytes, packets FROM top_talker_hour
    UNION ALL SELECT day, site_id, prefix, bytes, packets FROM top_talker_day;
";

/// Marks the views of this version (a database from before the five-minute tier has views
/// without the `_5min` arms, which must be replaced, not kept by `IF NOT EXISTS`).
const VIEWS_MARK: &str = "top_talker_5min";

/// NetFlow input: persisted templates and the sampling corrections applied.
const NETFLOW_TABLES: &str = "
-- Exporter templates, so that the first data after a restart decodes (ingest::netflow_templates).
CREATE TABLE IF NOT EXISTS netflow_templates(
    scope       TEXT NOT NULL,     -- exporter scope, e.g. 'v9:10.0.1.1:0/0' (address/domain)
    kind        INTEGER NOT NULL,  -- see ingest::netflow_templates::kind_code
    template_id INTEGER NOT NULL,
    body        BLOB NOT NULL,     -- netflow_parser's template wire format
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (scope, kind, template_id)
) WITHOUT ROWID;
-- Sampling corrections applied to NetFlow rows of flow_minute (rate > 1 only): which share of
-- a minute's flows of a site and exporter were scaled, and by how much.
CREATE TABLE IF NOT EXISTS netflow_sampling(
    minute        INTEGER NOT NULL,
    site_id       TEXT NOT NULL,
    exporter      TEXT NOT NULL,
    sampling_rate INTEGER NOT NULL,
    flows         INTEGER NOT NULL,
    PRIMARY KEY (minute, site_id, exporter, sampling_rate)
) WITHOUT ROWID;
";

/// Cluster: the member list this collector last ran with (see `stream_marks`).
const CLUSTER_TABLES: &str = "
CREATE TABLE IF NOT EXISTS cluster_membership(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    members TEXT NOT NULL,      -- sorted, one per line: order does not change ownership
    since_ms INTEGER NOT NULL   -- when this list took effect here
);
";

/// Creates `flow_class_minute` on a database that predates it, carrying the existing
/// `flow_minute` rows over with class `unknown` in the same transaction, so that totals by class
/// still sum to the totals on an upgraded collector.
fn carry_port_classes(conn: &Connection) -> Result<(), rusqlite::Error> {
    let exists: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'flow_class_minute'",
        [],
        |r| r.get(0),
    )?;
    if exists > 0 {
        return Ok(());
    }
    // Inside the migration's transaction: the table and its copied rows appear together.
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS flow_class_minute(
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
            FROM flow_minute;",
    )
}

/// Replaces the cross-tier views when they predate the five-minute tier.
fn refresh_views(conn: &Connection) -> Result<(), rusqlite::Error> {
    let current = |conn: &Connection| -> Result<bool, rusqlite::Error> {
        let n: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'view'
               AND name IN ('flow_rollup', 'link_rollup', 'flow_class_rollup', 'top_talker_rollup')
               AND (name <> 'top_talker_rollup' OR instr(sql, ?1) > 0)
               AND (name = 'top_talker_rollup' OR instr(sql, '_5min') > 0)",
            [VIEWS_MARK],
            |r| r.get(0),
        )?;
        Ok(n == 4)
    };
    if current(conn)? {
        return Ok(());
    }
    // Inside the migration's transaction: a reader on another connection sees the old views
    // or the new ones, never none.
    conn.execute_batch(
        "DROP VIEW IF EXISTS flow_rollup; DROP VIEW IF EXISTS link_rollup;
         DROP VIEW IF EXISTS flow_class_rollup; DROP VIEW IF EXISTS top_talker_rollup;",
    )?;
    conn.execute_batch(VIEWS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{UPSERT_FLOW_CLASS_MINUTE, UPSERT_FLOW_MINUTE};
    use crate::store::{open, Counts, Reader};

    #[test]
    fn a_database_from_before_port_classes_is_migrated_with_its_totals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // The flow_minute table as an early 0.1 collector created it, with data.
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
            assert_eq!(version(&conn).unwrap(), LATEST);
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

    #[test]
    fn migrations_are_numbered_in_order_and_recorded_once() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration {} out of order", m.name);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(LATEST));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rie.db");
        drop(open(&path).unwrap());
        // A second open (a restart) applies nothing again.
        let conn = open(&path).unwrap();
        let rows: Vec<(i64, String)> = conn
            .prepare("SELECT version, name FROM schema_version ORDER BY version")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<(i64, String)> = MIGRATIONS
            .iter()
            .map(|m| (m.version, m.name.to_string()))
            .collect();
        assert_eq!(rows, want);
    }

    #[test]
    fn a_database_of_a_newer_collector_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rie.db");
        {
            let conn = open(&path).unwrap();
            conn.execute(
                "INSERT INTO schema_version(version, name, applied_ms) VALUES (?1, 'future', 0)",
                [LATEST + 1],
            )
            .unwrap();
        }
        let err = open(&path).expect_err("a newer schema must be refused");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("schema version {}", LATEST + 1))
                && msg.contains(&format!("knows up to {LATEST}"))
                && msg.contains(&path.display().to_string()),
            "{msg}"
        );
        let conn = Connection::open(&path).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST + 1);
    }

    /// `collector/tests/data/release-0.1.sql`: the database the 0.1 collector wrote, made with
    /// `rie-collector demo --sites 8 --seed 3 --interval 5s --duration 150s
    /// --incident-rate 0.3` of that release and dumped with `sqlite3 rie.db .dump`. The 0.1 demo
    /// printed "238 batches stored".
    const RELEASE_0_1: &str = include_str!("../../tests/data/release-0.1.sql");

    /// Every figure of a database, read with plain SQL from the tables release 0.1 had.
    fn figures(conn: &Connection) -> Vec<String> {
        let q = |sql: &str| -> Vec<String> {
            let mut stmt = conn.prepare(sql).unwrap();
            let n = stmt.column_count();
            stmt.query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        [
            "SELECT * FROM flow_minute ORDER BY 1, 2, 3, 4, 5",
            "SELECT * FROM flow_class_minute ORDER BY 1, 2, 3, 4, 5, 6",
            "SELECT * FROM link_minute ORDER BY 1, 2, 3",
            "SELECT site_id, kind, link_id, start_ms, end_ms, cause FROM episodes ORDER BY 1, 4",
            "SELECT * FROM probe_streams ORDER BY 1, 2",
            "SELECT site_id, live_json FROM site_status ORDER BY 1",
            "SELECT * FROM probe_credentials ORDER BY 1",
        ]
        .iter()
        .flat_map(|sql| q(sql))
        .collect()
    }

    #[test]
    fn a_database_written_by_release_0_1_is_migrated_with_every_figure_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rie.db");
        let before = {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(RELEASE_0_1).unwrap();
            let no_version: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'schema_version'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(no_version, 0, "release 0.1 had no schema_version");
            figures(&conn)
        };
        assert_eq!(before.len(), 192 + 192 + 39 + 11 + 8 + 8 + 8);

        let conn = open(&path).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST);
        assert_eq!(figures(&conn), before, "a figure changed in the migration");
        drop(conn);

        // The read side sees the same totals as the 0.1 tables hold.
        let reader = Reader::open(&path).unwrap();
        let t = reader.flow_totals(0, 4_000_000_000, None, None).unwrap();
        assert_eq!(
            (t.flows, t.packets, t.bytes),
            (40_577, 1_978_946, 1_624_145_093)
        );
        let by_class: u64 = t.by_port_class.values().map(|c| c.bytes).sum();
        assert_eq!(by_class, 1_624_145_093);
        let episodes: usize = (1..=8)
            .map(|i| {
                reader
                    .episodes(&format!("S{i:05}"), 0, i64::MAX)
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(episodes, 11);
        let samples: i64 = (1..=8)
            .flat_map(|i| {
                reader
                    .link_minutes(&format!("S{i:05}"), 0, 4_000_000_000)
                    .unwrap()
            })
            .map(|m| m.sent)
            .sum();
        let raw_sent: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT sum(sent) FROM link_minute", [], |r| r.get(0))
            .unwrap();
        assert_eq!(samples, raw_sent);

        // What the collector resumes from: every stream mark and site state of 0.1.
        let mut store = crate::store::SqliteStore::open(&path).unwrap();
        let loaded = crate::store::Store::load(&mut store).unwrap();
        assert_eq!(loaded.marks.len(), 8);
        assert_eq!(loaded.site_states.len(), 8);
        assert!(loaded.open_silent.is_empty());
    }
}
