//! The store: where committed data lives. One narrow interface, [`Store`] (the write side,
//! owned by the commit stage alone) and [`Reader`] (the read side: rollups, episodes, totals),
//! and two backends: SQLite (`sqlite`, `read`, `schema`) and PostgreSQL (`postgres`, with
//! `postgres::listen` for site states shared between collectors and `postgres::leader` for the
//! advisory lock), chosen by `[store] backend` and opened by [`open_backend`]; compaction
//! (`retention`) runs on both.
//!
//! Owns: the database layout (`schema`: every table, as numbered migrations), the write of a
//! group ([`Store::write`]), the loading of durable state at start-up ([`Store::load`]), the
//! reads, rollup compaction (`retention`), probe credentials (`credentials`) and the copy of
//! a SQLite store into PostgreSQL (`migrate`, `rie-collector store migrate`).
//! May import: `rie-proto` types, `crate::metrics`. It knows nothing of sites' live logic,
//! episodes' rules or inputs: the commit stage hands it plain rows ([`WriteSet`]).
//!
//! # What every backend must guarantee (the contract the acknowledgements rely on)
//! 1. **Atomic groups.** [`Store::write`] applies a whole [`WriteSet`] or nothing: traffic
//!    rows, link rows, stream marks, site states, episode changes and NetFlow templates of one
//!    group become visible together.
//! 2. **Durable on return.** When `write` returns `Ok`, the group survives a crash or power
//!    loss (SQLite: WAL with `synchronous=FULL`; PostgreSQL: a committed transaction with
//!    synchronous replication where configured; the COMMIT is never cancelled nor timed out,
//!    and an error at or after it is returned, the group then in doubt and unacknowledged).
//!    Probes are acknowledged only after that.
//! 3. **Marks move with their data.** A [`StreamMark`] is written in the same group as the
//!    batch it marks, so a batch is never stored without its mark nor marked without its
//!    rows: redelivery after a crash is recognised as a duplicate, exactly once.
//! 4. **Additive rows.** Flow, class, talker, link and sampling rows *add* to the row with
//!    the same key (upsert with sums, `max` for `rtt_max_us`): probe batches and NetFlow sum
//!    into the same minute rows, and two groups touching one minute both count.
//! 5. **Schema versioned.** The backend refuses a database written by a newer collector
//!    (`schema::SchemaError::Newer`) and upgrades an older one in order before any write.
//! 6. **Readers never block the writer** for long (SQLite: WAL readers on their own
//!    connection; PostgreSQL: MVCC readers on a pool of their own sessions) and see only
//!    committed groups.
//! 7. **Compaction keeps sums.** Background compaction (`retention`, the same statements on
//!    both backends) may move rows to coarser buckets, in its own transactions, but totals over
//!    windows aligned to the coarsest tier they reach are exactly equal before and after. Each
//!    chunk rolls up and deletes the same rows in one transaction (SQLite: `BEGIN IMMEDIATE`;
//!    PostgreSQL: `REPEATABLE READ`, rolled back and retried when a writer touched a row of
//!    the chunk). With collectors sharing PostgreSQL it runs on the leader only (`duties`).
//! 8. **Marks checked under a row lock.** Inside the write transaction, for the group's
//!    (site, stream) pairs in sorted order (no deadlock between writers), the stored mark is
//!    read under a row lock (PostgreSQL: a placeholder row inserted if missing, then
//!    `SELECT ... FOR UPDATE`; SQLite: the single write lock). If a stored seq is at or above
//!    the smallest seq of that pair in the group, the transaction is rolled back and
//!    [`StoreError::StaleMarks`] carries the stored marks: another writer stored those batches
//!    (or the caller's index is behind). Otherwise each mark is raised to the highest seq of
//!    the group. Two collectors writing one batch store it once.

pub mod api_accounts;
pub mod api_sessions;
pub mod api_tokens;
pub mod audit;
pub mod config;
#[cfg(test)]
mod contract_tests;
pub mod credentials;
pub mod migrate;
pub mod postgres;
pub mod read;
pub mod retention;
pub mod schema;
pub mod sqlite;

pub use config::StoreConfig;
pub use read::{Counts, DirectionBytes, Episode, FlowTotals, LinkMinute, Reader, TalkerTotal};
pub use sqlite::{open, SqliteStore};

use rie_proto::{EpisodeKind, PortClass};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {path}: {source}")]
    Schema {
        path: String,
        #[source]
        source: schema::SchemaError,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the commit stage has stopped")]
    Closed,
    /// `[store.postgres]` cannot be used as written (password source, CA bundle, url).
    #[error("{key}: {message}")]
    PgSetup { key: &'static str, message: String },
    /// The PostgreSQL server is unreachable or refused the login; `url` is masked.
    #[error("cannot connect to PostgreSQL {url}: {source}; {fix}")]
    PgConnect {
        url: String,
        fix: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A query failed on an established session; `url` is masked.
    #[error("database {url}: {source}")]
    Postgres {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database pool: {0}")]
    Pool(String),
    /// Contract point 8: another writer stored these marks (or higher) for streams of the
    /// group; nothing of the group was stored.
    #[error("stream marks already moved by another writer: {}", .0.iter().map(|m| format!("{}/{}@{}", m.site, m.stream, m.seq)).collect::<Vec<_>>().join(", "))]
    StaleMarks(Vec<StreamMark>),
}

impl StoreError {
    /// True when the fix is in the user's hands (settings, credentials, a newer schema).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            StoreError::PgSetup { .. }
                | StoreError::PgConnect { .. }
                | StoreError::Schema {
                    source: schema::SchemaError::Newer { .. },
                    ..
                }
        )
    }
}

/// The write side of the store: only the commit stage holds one.
pub trait Store: Send {
    /// Applies `set` atomically and durably (contract points 1 to 4).
    ///
    /// # Errors
    /// Any backend error; nothing of `set` is then stored.
    fn write(&mut self, set: &WriteSet) -> Result<(), StoreError>;

    /// The durable state the collector resumes from.
    ///
    /// # Errors
    /// Backend errors.
    fn load(&mut self) -> Result<Loaded, StoreError>;

    /// Called once when the commit stage stops, after its last group (SQLite checkpoints).
    fn close(&mut self);
}

/// Everything one group commit writes, as rows the backend needs no domain logic to store.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WriteSet {
    /// Traffic by (minute, site, exporter, protocol, direction, port class): each row adds to
    /// both the per-protocol and the per-class minute tables.
    pub flows: Vec<FlowRow>,
    pub talkers: Vec<TalkerRow>,
    pub links: Vec<LinkRow>,
    /// NetFlow sampling corrections applied (rate > 1 only).
    pub sampling: Vec<SamplingRow>,
    pub marks: Vec<StreamMark>,
    /// Each site's live state after the group, serialised by the commit stage.
    pub site_states: Vec<SiteStateRow>,
    /// Episodes opened and closed, in order (a close may refer to an open of the same group).
    pub episodes: Vec<EpisodeChange>,
    pub templates: Vec<TemplateChange>,
    /// Collector clock at the commit (Unix ms), for `updated_ms` columns.
    pub now_ms: i64,
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
            && self.talkers.is_empty()
            && self.links.is_empty()
            && self.sampling.is_empty()
            && self.marks.is_empty()
            && self.site_states.is_empty()
            && self.episodes.is_empty()
            && self.templates.is_empty()
    }
}

/// Traffic of one minute bucket (Unix seconds, a multiple of 60).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRow {
    pub minute: i64,
    pub site: String,
    /// Exporter address for NetFlow, empty for the probe's own capture.
    pub exporter: String,
    pub protocol: i64,
    /// `rie_proto::Direction::as_i64`: 0 unknown, 1 inbound, 2 outbound.
    pub direction: i64,
    pub port_class: PortClass,
    pub flows: i64,
    pub packets: i64,
    pub bytes: i64,
}

/// One top remote prefix of a site and minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TalkerRow {
    pub minute: i64,
    pub site: String,
    pub prefix: String,
    pub bytes: i64,
    pub packets: i64,
}

/// One availability sample of a link, added to its minute (`samples` + 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    pub minute: i64,
    pub site: String,
    pub link: String,
    pub sent: i64,
    pub received: i64,
    pub rtt_sum_us: i64,
    pub rtt_n: i64,
    pub rtt_max_us: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplingRow {
    pub minute: i64,
    pub site: String,
    pub exporter: String,
    pub rate: i64,
    pub flows: i64,
}

/// The highest stored sequence of a probe stream (stream ids are u64, stored bit for bit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMark {
    pub site: String,
    pub stream: u64,
    pub seq: u64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteStateRow {
    pub site: String,
    pub json: String,
}

/// An episode opened or closed. An open episode is known by its site, kind and start, so no
/// backend-generated id has to travel back to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EpisodeChange {
    Open {
        site: String,
        kind: EpisodeKind,
        link: Option<String>,
        start_ms: i64,
        cause: String,
    },
    Close {
        site: String,
        kind: EpisodeKind,
        start_ms: i64,
        end_ms: i64,
    },
}

/// A NetFlow template announced (`body`) or withdrawn (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateChange {
    pub scope: String,
    pub kind: i64,
    pub template_id: i64,
    pub body: Option<Vec<u8>>,
}

/// What the collector resumes from at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    pub marks: Vec<StreamMark>,
    pub site_states: Vec<SiteStateRow>,
    /// Open `silent` episodes: (site, start).
    pub open_silent: Vec<(String, i64)>,
    /// Persisted NetFlow templates (`body` always set).
    pub templates: Vec<TemplateChange>,
}

/// The group's marks per (site, stream), sorted (the lock order of contract point 8): the
/// smallest seq, and the highest with its `updated_ms`.
pub(crate) fn mark_ranges(
    marks: &[StreamMark],
) -> std::collections::BTreeMap<(String, u64), (u64, u64, i64)> {
    let mut out = std::collections::BTreeMap::new();
    for m in marks {
        let e = out
            .entry((m.site.clone(), m.stream))
            .or_insert((m.seq, m.seq, m.updated_ms));
        e.0 = e.0.min(m.seq);
        if m.seq >= e.1 {
            e.1 = m.seq;
            e.2 = m.updated_ms;
        }
    }
    out
}

/// What [`open_backend`] opened: the write side for the commit stage and the shared read side.
pub struct Opened {
    pub store: Box<dyn Store>,
    pub reader: std::sync::Arc<Reader>,
    pub backend: config::Backend,
}

/// Opens the configured backend: SQLite `data_dir/rie.db`, or PostgreSQL `[store.postgres]`
/// (the writer's session connected and the schema migrated now, so that wrong credentials, an
/// unreachable server or a newer schema stop the start-up). The one opening function of the
/// collector and its commands.
///
/// # Errors
/// [`StoreError`] with the file or the masked URL and the fix.
///
/// # Panics
/// On PostgreSQL, when called from an async task (it uses `handle.block_on`): call it from a
/// thread or `spawn_blocking`.
pub fn open_backend(
    cfg: &StoreConfig,
    data_dir: &std::path::Path,
    handle: &tokio::runtime::Handle,
) -> Result<Opened, StoreError> {
    match (cfg.backend, &cfg.postgres) {
        (config::Backend::Postgres, Some(pg)) => Ok(Opened {
            store: Box::new(postgres::PgStore::open(pg, handle)?),
            reader: std::sync::Arc::new(Reader::open_postgres(pg, handle)?),
            backend: cfg.backend,
        }),
        (config::Backend::Postgres, None) => Err(StoreError::PgSetup {
            key: "store.postgres.url",
            message: "store.backend = \"postgres\" needs [store.postgres] with a url".into(),
        }),
        (config::Backend::Sqlite, _) => {
            let path = data_dir.join("rie.db");
            Ok(Opened {
                store: Box::new(SqliteStore::open(&path)?),
                reader: std::sync::Arc::new(Reader::open(&path)?),
                backend: cfg.backend,
            })
        }
    }
}
