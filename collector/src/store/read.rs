//! The read side of the store (SQLite): traffic totals, top talkers, link rollups, episodes,
//! credentials checks, on a connection of its own (WAL: reads never wait on the writer).
//!
//! Owns the read queries; may import `super` and `rie-proto`. Every query has its PostgreSQL
//! twin in `postgres::read` with the same answer (tested on the same data).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rie_proto::EpisodeKind;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::StoreError;

/// Counters for one protocol (or all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Counts {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// Answer of `GET /api/v1/flows/totals` .
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FlowTotals {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    #[serde(default)]
    pub by_protocol: BTreeMap<String, Counts>,
    /// The same totals split by service-port class (`unknown` for data from probes and
    /// databases that predate classes); sums exactly to the totals.
    #[serde(default)]
    pub by_port_class: BTreeMap<String, Counts>,
    /// The same totals split by direction (`inbound`, `outbound`, `unknown`); sums exactly
    /// to the totals.
    #[serde(default)]
    pub by_direction: BTreeMap<String, Counts>,
}

impl FlowTotals {
    /// Adds another part's totals (another collector's slice of the sites).
    pub fn add(&mut self, other: FlowTotals) {
        self.flows += other.flows;
        self.packets += other.packets;
        self.bytes += other.bytes;
        for (mine, theirs) in [
            (&mut self.by_protocol, other.by_protocol),
            (&mut self.by_port_class, other.by_port_class),
            (&mut self.by_direction, other.by_direction),
        ] {
            for (k, c) in theirs {
                let e = mine.entry(k).or_default();
                e.flows += c.flows;
                e.packets += c.packets;
                e.bytes += c.bytes;
            }
        }
    }
}

/// One prefix of `GET /api/v1/sites/{id}/top_talkers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TalkerTotal {
    pub prefix: String,
    pub bytes: u64,
    pub packets: u64,
}

/// One row of `link_minute` (or of `link_5min` once compacted): a link's checks summed over
/// one minute (or five).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMinute {
    pub link: String,
    /// Bucket start, Unix seconds.
    pub minute: i64,
    /// Bucket length: 60, or 300 for minutes older than `store.retention.minute_days`.
    pub bucket_s: i64,
    pub sent: i64,
    pub received: i64,
    /// Sum of the samples' average RTTs, over `rtt_n` samples that measured one.
    pub rtt_sum_us: i64,
    pub rtt_n: i64,
    pub rtt_max_us: Option<i64>,
}

/// Runs a `SELECT key, SUM(flows), SUM(packets), SUM(bytes) ... GROUP BY key` into counters.
fn sum_by_key(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<BTreeMap<String, Counts>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, |r| {
        Ok((
            r.get::<_, String>(0)?,
            Counts {
                flows: r.get::<_, i64>(1)? as u64,
                packets: r.get::<_, i64>(2)? as u64,
                bytes: r.get::<_, i64>(3)? as u64,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One row of a site minute's traffic ([`Reader::minute_traffic`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteTraffic {
    /// From a NetFlow exporter (else the probe's own capture).
    pub netflow: bool,
    pub protocol: i64,
    /// `rie_proto::Direction::as_i64`.
    pub direction: i64,
    pub flows: i64,
    pub packets: i64,
    pub bytes: i64,
}

/// Traffic bytes split by direction (`rie_proto::Direction::as_i64`: 1 inbound, 2 outbound,
/// anything else unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DirectionBytes {
    pub inbound: u64,
    pub outbound: u64,
    pub unknown: u64,
}

impl DirectionBytes {
    /// Adds `bytes` of stored direction code `direction`.
    pub fn add(&mut self, direction: i64, bytes: u64) {
        match direction {
            1 => self.inbound += bytes,
            2 => self.outbound += bytes,
            _ => self.unknown += bytes,
        }
    }

    /// Adds another count, direction by direction.
    pub fn add_all(&mut self, other: &DirectionBytes) {
        self.inbound += other.inbound;
        self.outbound += other.outbound;
        self.unknown += other.unknown;
    }

    pub fn total(&self) -> u64 {
        self.inbound + self.outbound + self.unknown
    }
}

/// Folds `(key, direction, bytes)` rows, ordered by key, into one [`DirectionBytes`] per key.
pub(crate) fn fold_directions<K: PartialEq>(
    rows: impl IntoIterator<Item = (K, i64, u64)>,
) -> Vec<(K, DirectionBytes)> {
    let mut out: Vec<(K, DirectionBytes)> = Vec::new();
    for (k, d, b) in rows {
        match out.last_mut() {
            Some((last, v)) if *last == k => v.add(d, b),
            _ => {
                let mut v = DirectionBytes::default();
                v.add(d, b);
                out.push((k, v));
            }
        }
    }
    out
}

/// Read side for the API, on its own connection (SQLite) or pool (PostgreSQL).
pub struct Reader {
    inner: Inner,
}

enum Inner {
    Sqlite(Mutex<Connection>),
    /// Calls `Handle::block_on`: callers are threads or `spawn_blocking` closures.
    Postgres(super::postgres::read::PgReader),
}

impl Reader {
    /// # Errors
    /// [`StoreError::Open`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            inner: Inner::Sqlite(Mutex::new(super::open(path)?)),
        })
    }

    /// A SQLite read side that cannot write: no migration, no journal-mode change (the source
    /// of `store migrate`, which must not be modified).
    ///
    /// # Errors
    /// [`StoreError::Open`].
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self {
            inner: Inner::Sqlite(Mutex::new(conn)),
        })
    }

    /// The PostgreSQL read side: a pool of `pool_size` sessions; each call runs on `handle`'s
    /// runtime, so it must not be made from an async task.
    ///
    /// # Errors
    /// [`StoreError::PgSetup`].
    pub fn open_postgres(
        cfg: &super::config::PostgresConfig,
        handle: &tokio::runtime::Handle,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            inner: Inner::Postgres(super::postgres::read::PgReader::open(cfg, handle)?),
        })
    }

    pub(super) fn conn(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, Connection>, &super::postgres::read::PgReader> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.lock().unwrap_or_else(|p| p.into_inner())),
            Inner::Postgres(pg) => Err(pg),
        }
    }

    /// Traffic whose bucket (minute, or hour/day once compacted, see `retention`) starts in
    /// `[from, to)` (Unix seconds).
    ///
    /// # Errors
    /// Database errors.
    pub fn flow_totals(
        &self,
        from: i64,
        to: i64,
        site: Option<&str>,
        exporter: Option<&str>,
    ) -> Result<FlowTotals, StoreError> {
        let conn = match self.conn() {
            Ok(c) => c,
            Err(pg) => return pg.flow_totals(from, to, site, exporter),
        };
        let by_protocol = sum_by_key(
            &conn,
            "SELECT CAST(protocol AS TEXT), SUM(flows), SUM(packets), SUM(bytes) FROM flow_rollup
             WHERE start >= ?1 AND start < ?2
               AND (?3 IS NULL OR site_id = ?3) AND (?4 IS NULL OR exporter = ?4)
             GROUP BY protocol ORDER BY protocol",
            params![from, to, site, exporter],
        )?;
        let by_port_class = sum_by_key(
            &conn,
            "SELECT port_class, SUM(flows), SUM(packets), SUM(bytes) FROM flow_class_rollup
             WHERE start >= ?1 AND start < ?2
               AND (?3 IS NULL OR site_id = ?3) AND (?4 IS NULL OR exporter = ?4)
             GROUP BY port_class ORDER BY port_class",
            params![from, to, site, exporter],
        )?;
        let by_direction = sum_by_key(
            &conn,
            "SELECT CASE direction WHEN 1 THEN 'inbound' WHEN 2 THEN 'outbound' ELSE 'unknown' END AS d,
                    SUM(flows), SUM(packets), SUM(bytes) FROM flow_rollup
             WHERE start >= ?1 AND start < ?2
               AND (?3 IS NULL OR site_id = ?3) AND (?4 IS NULL OR exporter = ?4)
             GROUP BY d ORDER BY d",
            params![from, to, site, exporter],
        )?;
        let mut out = FlowTotals {
            by_protocol,
            by_port_class,
            by_direction,
            ..FlowTotals::default()
        };
        for c in out.by_protocol.values() {
            out.flows += c.flows;
            out.packets += c.packets;
            out.bytes += c.bytes;
        }
        Ok(out)
    }

    /// A site's top talkers summed over the buckets (minutes, or coarser once compacted, see
    /// `retention`) starting in `[from, to)` (Unix seconds), by bytes (ties by prefix), at most
    /// `limit`.
    ///
    /// # Errors
    /// Database errors.
    pub fn top_talkers(
        &self,
        site: &str,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<TalkerTotal>, StoreError> {
        let conn = match self.conn() {
            Ok(c) => c,
            Err(pg) => return pg.top_talkers(site, from, to, limit),
        };
        let mut stmt = conn.prepare_cached(
            "SELECT prefix, SUM(bytes) AS b, SUM(packets) FROM top_talker_rollup
             WHERE site_id = ?1 AND start >= ?2 AND start < ?3
             GROUP BY prefix ORDER BY b DESC, prefix LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![site, from, to, limit], |r| {
            Ok(TalkerTotal {
                prefix: r.get(0)?,
                bytes: r.get::<_, i64>(1)? as u64,
                packets: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Traffic bytes by direction of every site with rows (any tier) starting in `[from, to)`
    /// (Unix seconds), ordered by site id: one bucket of the status page's national traffic
    /// (read bucket by bucket, so that other reads interleave on the SQLite connection).
    ///
    /// # Errors
    /// Database errors.
    pub fn traffic_by_site(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, DirectionBytes)>, StoreError> {
        let conn = match self.conn() {
            Ok(c) => c,
            Err(pg) => return pg.traffic_by_site(from, to),
        };
        let mut stmt = conn.prepare_cached(
            "SELECT site_id, direction, SUM(bytes) FROM flow_rollup
             WHERE start >= ?1 AND start < ?2 GROUP BY site_id, direction ORDER BY site_id, direction",
        )?;
        let rows = stmt
            .query_map(params![from, to], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = fold_directions(rows);
        // Byte order on both backends (a PostgreSQL collation may order text otherwise).
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Episodes of a site overlapping `[from_ms, to_ms)`.
    ///
    /// # Errors
    /// Database errors.
    pub fn episodes(
        &self,
        site: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Episode>, StoreError> {
        match self.conn() {
            Ok(c) => Ok(query_episodes(&c, site, from_ms, to_ms)?),
            Err(pg) => pg.episodes(site, from_ms, to_ms),
        }
    }

    /// Rollups of a site's link checks with the bucket start in `[from, to)` (Unix seconds),
    /// ordered by link then time: the status page's recent RTT and loss. Minutes, and
    /// five-minute buckets for the part older than the live window (`retention`).
    ///
    /// # Errors
    /// Database errors.
    pub fn link_minutes(
        &self,
        site: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<LinkMinute>, StoreError> {
        let conn = match self.conn() {
            Ok(c) => c,
            Err(pg) => return pg.link_minutes(site, from, to),
        };
        let mut stmt = conn.prepare_cached(
            "SELECT link_id, minute, 60, sent, received, rtt_sum_us, rtt_n, rtt_max_us FROM link_minute
             WHERE site_id = ?1 AND minute >= ?2 AND minute < ?3
             UNION ALL
             SELECT link_id, five_min, 300, sent, received, rtt_sum_us, rtt_n, rtt_max_us FROM link_5min
             WHERE site_id = ?1 AND five_min >= ?2 AND five_min < ?3
             ORDER BY 1, 2, 3",
        )?;
        let rows = stmt.query_map(params![site, from, to], |r| {
            Ok(LinkMinute {
                link: r.get(0)?,
                minute: r.get(1)?,
                bucket_s: r.get(2)?,
                sent: r.get(3)?,
                received: r.get(4)?,
                rtt_sum_us: r.get(5)?,
                rtt_n: r.get(6)?,
                rtt_max_us: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Episodes open now or closed at or after `closed_since_ms`, oldest first, with their
    /// site: what the InfluxDB sink rewrites (an open episode's duration grows).
    ///
    /// # Errors
    /// Database errors.
    pub fn episodes_open_or_closed_since(
        &self,
        closed_since_ms: i64,
    ) -> Result<Vec<(String, Episode)>, StoreError> {
        let conn = match self.conn() {
            Ok(c) => c,
            Err(pg) => return pg.episodes_open_or_closed_since(closed_since_ms),
        };
        site_episodes(
            &conn,
            "SELECT site_id, kind, link_id, start_ms, end_ms, cause FROM episodes
             WHERE end_ms IS NULL OR end_ms >= ?1 ORDER BY start_ms",
            params![closed_since_ms],
        )
    }

    /// The running totals of one site minute, one row per source (probe or NetFlow),
    /// protocol and direction: what the InfluxDB sink writes as `site_traffic`.
    ///
    /// # Errors
    /// Database errors.
    pub fn minute_traffic(
        &self,
        site: &str,
        minute: i64,
    ) -> Result<Vec<MinuteTraffic>, StoreError> {
        let conn = match self.conn() {
            Ok(c) => c,
            Err(pg) => return pg.minute_traffic(site, minute),
        };
        let mut stmt = conn.prepare_cached(
            "SELECT exporter <> '', protocol, direction, flows, packets, bytes
             FROM flow_minute WHERE site_id = ?1 AND minute = ?2",
        )?;
        let rows = stmt.query_map(params![site, minute], |r| {
            Ok(MinuteTraffic {
                netflow: r.get(0)?,
                protocol: r.get(1)?,
                direction: r.get(2)?,
                flows: r.get(3)?,
                packets: r.get(4)?,
                bytes: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Episodes of every site that start before `to_ms` and are open or end at or after
    /// `from_ms` (an outage ending exactly at the start of a period still tells whether a
    /// failover starting then followed a failed takeover), with their site: the indicators'
    /// availability input.
    ///
    /// # Errors
    /// Database errors.
    pub fn episodes_touching(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(String, Episode)>, StoreError> {
        let conn = match self.conn() {
            Ok(c) => c,
            Err(pg) => return pg.episodes_touching(from_ms, to_ms),
        };
        site_episodes(
            &conn,
            "SELECT site_id, kind, link_id, start_ms, end_ms, cause FROM episodes
             WHERE start_ms < ?2 AND (end_ms IS NULL OR end_ms >= ?1)",
            params![from_ms, to_ms],
        )
    }

    /// Calls `each(site, bytes)` with traffic bytes whose bucket (any tier) starts in
    /// `[from, to)` (Unix seconds); a site may come several times (SQLite: one sequential
    /// range of the primary key per tier, summed by the caller without a temporary b-tree;
    /// PostgreSQL: summed by the server, once per site).
    ///
    /// # Errors
    /// Database errors.
    pub fn for_each_site_bytes(
        &self,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(&str, u64),
    ) -> Result<(), StoreError> {
        let conn = match self.conn() {
            Ok(c) => c,
            Err(pg) => return pg.for_each_site_bytes(from, to, each),
        };
        let mut st = conn.prepare_cached(
            "SELECT site_id, bytes FROM flow_rollup WHERE start >= ?1 AND start < ?2",
        )?;
        let mut rows = st.query(params![from, to])?;
        while let Some(r) = rows.next()? {
            let site = r.get_ref(0)?.as_str().unwrap_or("");
            each(site, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0));
        }
        Ok(())
    }

    /// Calls `seen(site)` for sites with link check rows whose bucket starts in `[from, to)`
    /// (Unix seconds), possibly several times per site, until it returns `false` (every site
    /// of interest seen: SQLite then stops its scan).
    ///
    /// # Errors
    /// Database errors.
    pub fn for_each_link_checked_site(
        &self,
        from: i64,
        to: i64,
        seen: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), StoreError> {
        let conn = match self.conn() {
            Ok(c) => c,
            Err(pg) => return pg.for_each_link_checked_site(from, to, seen),
        };
        let mut st = conn
            .prepare_cached("SELECT site_id FROM link_rollup WHERE start >= ?1 AND start < ?2")?;
        let mut rows = st.query(params![from, to])?;
        while let Some(r) = rows.next()? {
            if !seen(r.get_ref(0)?.as_str().unwrap_or("")) {
                break;
            }
        }
        Ok(())
    }

    /// The stored body of one NetFlow template (see `ingest::netflow_templates`), as the last
    /// commit of any collector sharing the database left it.
    ///
    /// # Errors
    /// Database errors.
    pub fn netflow_template(
        &self,
        scope: &str,
        kind: i64,
        template_id: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self.conn() {
            Ok(c) => Ok(c
                .query_row(
                    "SELECT body FROM netflow_templates WHERE scope = ?1 AND kind = ?2 AND template_id = ?3",
                    params![scope, kind, template_id],
                    |r| r.get(0),
                )
                .optional()?),
            Err(pg) => pg.netflow_template(scope, kind, template_id),
        }
    }

    /// Cheap liveness query for `/healthz`.
    ///
    /// # Errors
    /// Database errors.
    pub fn ping(&self) -> Result<(), StoreError> {
        match self.conn() {
            Ok(c) => {
                c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                    .optional()?;
                Ok(())
            }
            Err(pg) => pg.ping(),
        }
    }

    /// The highest stored sequence of a probe stream, as committed (by any collector sharing
    /// the database): the answer of a hello, so that a probe moving between collectors learns
    /// what another one already stored.
    ///
    /// # Errors
    /// Database errors.
    pub fn stream_mark(&self, site: &str, stream: u64) -> Result<Option<u64>, StoreError> {
        match self.conn() {
            // u64 ids and sequences, stored bit for bit in signed 64-bit integers.
            Ok(c) => Ok(c
                .query_row(
                    "SELECT last_seq FROM probe_streams WHERE site_id = ?1 AND stream = ?2",
                    rusqlite::params![site, stream as i64],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
                .filter(|s| *s > 0)
                .map(|s| s as u64)),
            Err(pg) => pg.stream_mark(site, stream),
        }
    }

    /// Checks a probe's token (see `credentials`).
    ///
    /// # Errors
    /// Database errors.
    pub fn verify_token(
        &self,
        credential_ref: &str,
        token: &str,
    ) -> Result<super::credentials::Verdict, StoreError> {
        match self.conn() {
            Ok(c) => Ok(super::credentials::verify(&c, credential_ref, token)?),
            Err(pg) => pg.verify_token(credential_ref, token),
        }
    }
}

/// One episode as the API serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Episode {
    pub kind: EpisodeKind,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub link: Option<String>,
    pub cause: String,
}

/// Episodes of `site` overlapping `[from_ms, to_ms)`, oldest first.
///
/// # Errors
/// Database errors.
pub fn query_episodes(
    conn: &Connection,
    site: &str,
    from_ms: i64,
    to_ms: i64,
) -> rusqlite::Result<Vec<Episode>> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, start_ms, end_ms, link_id, cause FROM episodes
         WHERE site_id = ?1 AND start_ms < ?3 AND (end_ms IS NULL OR end_ms > ?2)
         ORDER BY start_ms, id",
    )?;
    let rows = stmt.query_map(params![site, from_ms, to_ms], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<i64>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, start_ms, end_ms, link, cause) = row?;
        // The CHECK constraint guarantees a known kind; a row from a newer schema is skipped.
        if let Some(kind) = EpisodeKind::parse(&kind) {
            out.push(Episode {
                kind,
                start_ms,
                end_ms,
                link,
                cause,
            });
        }
    }
    Ok(out)
}

/// Episodes with their site, from `sql` selecting (site_id, kind, link_id, start_ms, end_ms,
/// cause); a kind this collector does not know (written by a newer one) is skipped.
fn site_episodes(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<(String, Episode)>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        if let Some(kind) = EpisodeKind::parse(&r.get::<_, String>(1)?) {
            out.push((
                r.get(0)?,
                Episode {
                    kind,
                    link: r.get(2)?,
                    start_ms: r.get(3)?,
                    end_ms: r.get(4)?,
                    cause: r.get(5)?,
                },
            ));
        }
    }
    Ok(out)
}
