//! The PostgreSQL text of the store's numbered migrations: the same versions, names, tables,
//! columns, indexes and views as `store::schema` (SQLite), in PostgreSQL's dialect (BIGINT,
//! BYTEA, an identity column for episode ids), with the same `schema_version` bookkeeping.
//! A test checks that both lists carry the same versions and names, so they cannot drift.
//!
//! All pending migrations run in one transaction under `pg_advisory_xact_lock`: several
//! collectors starting at once apply each migration exactly once. A database whose version is
//! newer than [`LATEST`] is refused ([`SchemaError::Newer`]) and the transaction rolled back:
//! nothing is written. PostgreSQL never held a release-0.1 layout, so version 1 is created
//! directly.

use super::super::schema::{SchemaError, LATEST};

/// Key of the advisory lock taken by migrations ("rie-schema" in ASCII, truncated to 8 bytes).
const LOCK_KEY: i64 = 0x7269_652d_7363_6865;

/// One step: version, name (the same as SQLite's), PostgreSQL text.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "release 0.1 layout: minute tables, tiers, views, NetFlow, cluster",
        V1,
    ),
    (
        2,
        "open episodes found by site, kind and start",
        "CREATE INDEX IF NOT EXISTS episodes_open_key ON episodes(site_id, kind, start_ms)
         WHERE end_ms IS NULL;",
    ),
    (
        3,
        "site states versioned for collectors sharing a database; no cluster table",
        "ALTER TABLE site_status ADD COLUMN IF NOT EXISTS updated_ms BIGINT NOT NULL DEFAULT 0;
         DROP TABLE IF EXISTS cluster_membership;",
    ),
    (
        4,
        "API tokens",
        "CREATE TABLE IF NOT EXISTS api_tokens(
            id            TEXT PRIMARY KEY,
            name          TEXT NOT NULL,
            role          TEXT NOT NULL,
            secret_sha256 TEXT NOT NULL,
            created_ms    BIGINT NOT NULL,
            expires_ms    BIGINT,
            revoked_ms    BIGINT
        );",
    ),
    (
        5,
        "audit trail",
        "CREATE TABLE IF NOT EXISTS audit_log(
            id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at_ms   BIGINT NOT NULL,
            actor   TEXT NOT NULL,
            role    TEXT NOT NULL,
            source  TEXT NOT NULL,
            action  TEXT NOT NULL,
            target  TEXT NOT NULL,
            outcome TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log(at_ms);",
    ),
    (
        6,
        "sessions of people logged in with OpenID Connect",
        "CREATE TABLE IF NOT EXISTS api_sessions(
            id_sha256    TEXT PRIMARY KEY,
            name         TEXT NOT NULL,
            role         TEXT NOT NULL,
            subject      TEXT NOT NULL,
            claims_json  TEXT NOT NULL,
            id_token     TEXT NOT NULL,
            created_ms   BIGINT NOT NULL,
            last_seen_ms BIGINT NOT NULL,
            expires_ms   BIGINT NOT NULL,
            revoked_ms   BIGINT
        );
        CREATE TABLE IF NOT EXISTS api_logins(
            id_sha256     TEXT PRIMARY KEY,
            state         TEXT NOT NULL,
            nonce         TEXT NOT NULL,
            pkce_verifier TEXT NOT NULL,
            created_ms    BIGINT NOT NULL
        );",
    ),
    (
        7,
        "local accounts of people",
        "CREATE TABLE IF NOT EXISTS api_accounts(
            name         TEXT PRIMARY KEY,
            role         TEXT NOT NULL,
            password_phc TEXT NOT NULL,
            created_ms   BIGINT NOT NULL,
            changed_ms   BIGINT NOT NULL,
            disabled_ms  BIGINT
        );",
    ),
    (
        8,
        "check plans per scope and each site's plan status",
        "CREATE TABLE IF NOT EXISTS plans(
            version     BIGINT PRIMARY KEY,
            scope_kind  TEXT NOT NULL,
            scope_value TEXT NOT NULL,
            hash        TEXT NOT NULL,
            toml        TEXT NOT NULL,
            created_ms  BIGINT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS plans_scope ON plans(scope_kind, scope_value, version);
        CREATE TABLE IF NOT EXISTS plan_status(
            site       TEXT PRIMARY KEY,
            version    BIGINT NOT NULL,
            state      TEXT NOT NULL,
            reason     TEXT NOT NULL,
            updated_ms BIGINT NOT NULL
        );",
    ),
    (
        9,
        "staged rollouts of check plans",
        "CREATE TABLE IF NOT EXISTS plan_rollouts(
            id         BIGINT PRIMARY KEY,
            rev        BIGINT NOT NULL,
            body       TEXT NOT NULL,
            updated_ms BIGINT NOT NULL
        );",
    ),
];

const V1: &str = "
CREATE TABLE probe_credentials(
    credential_ref TEXT PRIMARY KEY,
    token_sha256   TEXT NOT NULL,
    issued_ms      BIGINT NOT NULL
);
-- stream ids and sequences are u64 stored bit-for-bit in BIGINT.
CREATE TABLE probe_streams(
    site_id TEXT NOT NULL, stream BIGINT NOT NULL, last_seq BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (site_id, stream)
);
CREATE TABLE flow_minute(
    minute BIGINT NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    protocol BIGINT NOT NULL, direction BIGINT NOT NULL,
    flows BIGINT NOT NULL, packets BIGINT NOT NULL, bytes BIGINT NOT NULL,
    PRIMARY KEY (minute, site_id, exporter, protocol, direction)
);
CREATE INDEX flow_minute_site ON flow_minute(site_id, minute);
CREATE TABLE link_minute(
    minute BIGINT NOT NULL, site_id TEXT NOT NULL, link_id TEXT NOT NULL,
    samples BIGINT NOT NULL, sent BIGINT NOT NULL, received BIGINT NOT NULL,
    rtt_sum_us BIGINT NOT NULL, rtt_n BIGINT NOT NULL, rtt_max_us BIGINT,
    PRIMARY KEY (minute, site_id, link_id)
);
CREATE TABLE episodes(
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id  TEXT NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('outage', 'failover', 'degraded', 'silent')),
    link_id  TEXT,
    start_ms BIGINT NOT NULL,
    end_ms   BIGINT,
    cause    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX episodes_site ON episodes(site_id, start_ms);
CREATE INDEX episodes_open ON episodes(end_ms) WHERE end_ms IS NULL;
CREATE TABLE top_talker_minute(
    minute BIGINT NOT NULL, site_id TEXT NOT NULL, prefix TEXT NOT NULL,
    bytes BIGINT NOT NULL, packets BIGINT NOT NULL,
    PRIMARY KEY (site_id, minute, prefix)
);
CREATE TABLE site_status(site_id TEXT PRIMARY KEY, live_json TEXT NOT NULL);
CREATE TABLE flow_class_minute(
    minute BIGINT NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    protocol BIGINT NOT NULL, direction BIGINT NOT NULL, port_class TEXT NOT NULL,
    flows BIGINT NOT NULL, packets BIGINT NOT NULL, bytes BIGINT NOT NULL,
    PRIMARY KEY (minute, site_id, exporter, protocol, direction, port_class)
);
CREATE INDEX flow_class_minute_site ON flow_class_minute(site_id, minute);
CREATE TABLE flow_5min(
    five_min BIGINT NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    protocol BIGINT NOT NULL, direction BIGINT NOT NULL,
    flows BIGINT NOT NULL, packets BIGINT NOT NULL, bytes BIGINT NOT NULL,
    PRIMARY KEY (five_min, site_id, exporter, protocol, direction)
);
CREATE INDEX flow_5min_site ON flow_5min(site_id, five_min);
CREATE TABLE flow_hour(
    hour BIGINT NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    protocol BIGINT NOT NULL, direction BIGINT NOT NULL,
    flows BIGINT NOT NULL, packets BIGINT NOT NULL, bytes BIGINT NOT NULL,
    PRIMARY KEY (hour, site_id, exporter, protocol, direction)
);
CREATE TABLE flow_day(
    day BIGINT NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    protocol BIGINT NOT NULL, direction BIGINT NOT NULL,
    flows BIGINT NOT NULL, packets BIGINT NOT NULL, bytes BIGINT NOT NULL,
    PRIMARY KEY (day, site_id, exporter, protocol, direction)
);
CREATE TABLE link_5min(
    five_min BIGINT NOT NULL, site_id TEXT NOT NULL, link_id TEXT NOT NULL,
    samples BIGINT NOT NULL, sent BIGINT NOT NULL, received BIGINT NOT NULL,
    rtt_sum_us BIGINT NOT NULL, rtt_n BIGINT NOT NULL, rtt_max_us BIGINT,
    PRIMARY KEY (five_min, site_id, link_id)
);
CREATE TABLE link_hour(
    hour BIGINT NOT NULL, site_id TEXT NOT NULL, link_id TEXT NOT NULL,
    samples BIGINT NOT NULL, sent BIGINT NOT NULL, received BIGINT NOT NULL,
    rtt_sum_us BIGINT NOT NULL, rtt_n BIGINT NOT NULL, rtt_max_us BIGINT,
    PRIMARY KEY (hour, site_id, link_id)
);
CREATE TABLE link_day(
    day BIGINT NOT NULL, site_id TEXT NOT NULL, link_id TEXT NOT NULL,
    samples BIGINT NOT NULL, sent BIGINT NOT NULL, received BIGINT NOT NULL,
    rtt_sum_us BIGINT NOT NULL, rtt_n BIGINT NOT NULL, rtt_max_us BIGINT,
    PRIMARY KEY (day, site_id, link_id)
);
CREATE TABLE flow_class_5min(
    five_min BIGINT NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    protocol BIGINT NOT NULL, direction BIGINT NOT NULL, port_class TEXT NOT NULL,
    flows BIGINT NOT NULL, packets BIGINT NOT NULL, bytes BIGINT NOT NULL,
    PRIMARY KEY (five_min, site_id, exporter, protocol, direction, port_class)
);
CREATE INDEX flow_class_5min_site ON flow_class_5min(site_id, five_min);
CREATE TABLE flow_class_hour(
    hour BIGINT NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    protocol BIGINT NOT NULL, direction BIGINT NOT NULL, port_class TEXT NOT NULL,
    flows BIGINT NOT NULL, packets BIGINT NOT NULL, bytes BIGINT NOT NULL,
    PRIMARY KEY (hour, site_id, exporter, protocol, direction, port_class)
);
CREATE TABLE flow_class_day(
    day BIGINT NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    protocol BIGINT NOT NULL, direction BIGINT NOT NULL, port_class TEXT NOT NULL,
    flows BIGINT NOT NULL, packets BIGINT NOT NULL, bytes BIGINT NOT NULL,
    PRIMARY KEY (day, site_id, exporter, protocol, direction, port_class)
);
CREATE TABLE top_talker_5min(
    five_min BIGINT NOT NULL, site_id TEXT NOT NULL, prefix TEXT NOT NULL,
    bytes BIGINT NOT NULL, packets BIGINT NOT NULL,
    PRIMARY KEY (site_id, five_min, prefix)
);
CREATE TABLE top_talker_hour(
    hour BIGINT NOT NULL, site_id TEXT NOT NULL, prefix TEXT NOT NULL,
    bytes BIGINT NOT NULL, packets BIGINT NOT NULL,
    PRIMARY KEY (site_id, hour, prefix)
);
CREATE TABLE top_talker_day(
    day BIGINT NOT NULL, site_id TEXT NOT NULL, prefix TEXT NOT NULL,
    bytes BIGINT NOT NULL, packets BIGINT NOT NULL,
    PRIMARY KEY (site_id, day, prefix)
);
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
CREATE TABLE netflow_templates(
    scope TEXT NOT NULL, kind BIGINT NOT NULL, template_id BIGINT NOT NULL,
    body BYTEA NOT NULL, updated_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, kind, template_id)
);
CREATE TABLE netflow_sampling(
    minute BIGINT NOT NULL, site_id TEXT NOT NULL, exporter TEXT NOT NULL,
    sampling_rate BIGINT NOT NULL, flows BIGINT NOT NULL,
    PRIMARY KEY (minute, site_id, exporter, sampling_rate)
);
CREATE TABLE cluster_membership(
    id BIGINT PRIMARY KEY CHECK (id = 1),
    members TEXT NOT NULL,
    since_ms BIGINT NOT NULL
);
";

/// Applies the migrations the database lacks, in one transaction under the advisory lock.
///
/// # Errors
/// [`SchemaError::Newer`] (nothing written); [`SchemaError::PgMigration`] naming the step.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<i64, SchemaError> {
    let tx = client.transaction().await?;
    // Held until COMMIT or ROLLBACK: a second collector waits here, then sees the version.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version(
            version    BIGINT PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_ms BIGINT NOT NULL
        );",
    )
    .await?;
    let current: i64 = tx
        .query_one("SELECT COALESCE(max(version), 0) FROM schema_version", &[])
        .await?
        .try_get(0)?;
    if current > LATEST {
        // Dropping the transaction rolls it back: nothing of this collector is written.
        tx.rollback().await?;
        return Err(SchemaError::Newer {
            found: current,
            supported: LATEST,
        });
    }
    for &(version, name, text) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let wrap = |source| SchemaError::PgMigration {
            version,
            name,
            source,
        };
        tx.batch_execute(text).await.map_err(wrap)?;
        tx.execute(
            "INSERT INTO schema_version(version, name, applied_ms) VALUES ($1, $2, $3)",
            &[&version, &name, &rie_common::now_ms()],
        )
        .await
        .map_err(wrap)?;
    }
    tx.commit().await?;
    Ok(current.max(LATEST))
}

/// The highest applied version (0: an empty database).
///
/// # Errors
/// SQL errors.
pub async fn version(client: &tokio_postgres::Client) -> Result<i64, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    client
        .query_one("SELECT COALESCE(max(version), 0) FROM schema_version", &[])
        .await?
        .try_get(0)
}
