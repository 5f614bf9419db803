//! The PostgreSQL write side: [`PgStore`] applies a [`WriteSet`] in one transaction with the
//! SQLite backend's semantics (additive upserts, `GREATEST` for `rtt_max_us`, episodes by
//! (site, kind, start), marks checked under a row lock: contract points 1 to 4 and 8).
//!
//! Owns the writer's dedicated session (reopened after it breaks, e.g. a failover to another
//! host of a multi-host URL). `Store` is synchronous and called from the commit stage's own
//! thread, so each call runs on the runtime captured at open (`Handle::block_on`; never from
//! an async task). Rows are sent as arrays (`UNNEST`), one statement per table, after summing
//! rows of one key in the group (PostgreSQL refuses an `ON CONFLICT DO UPDATE` that touches a
//! row twice in one statement).
//!
//! The COMMIT is awaited to its end: no timeout, no cancellation (a cancelled commit waiting
//! for a synchronous standby reports success while the standby lacks it). An error at COMMIT
//! is returned; the commit stage then acknowledges nothing (the group is in doubt; stream
//! marks make the redelivery harmless).

use std::collections::BTreeMap;

use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;

use super::super::config::PostgresConfig;
use super::super::{
    EpisodeChange, Loaded, SiteStateRow, Store, StoreError, StreamMark, TemplateChange, WriteSet,
};

/// `updated_ms` of a placeholder mark row, inserted inside a write transaction only so that
/// it can be locked; it is either raised in the same transaction or rolled back, so no
/// committed row carries it.
const PLACEHOLDER_MS: i64 = -1;

/// The PostgreSQL write side, owned by the commit stage's thread.
pub struct PgStore {
    cfg: PostgresConfig,
    handle: Handle,
    client: tokio_postgres::Client,
}

impl PgStore {
    /// Connects, applies the migrations (see `schema`), and keeps the session.
    ///
    /// # Errors
    /// [`StoreError::PgConnect`], [`StoreError::PgSetup`], [`StoreError::Schema`] (masked url).
    ///
    /// # Panics
    /// When called from inside an async task (`Handle::block_on`).
    pub fn open(cfg: &PostgresConfig, handle: &Handle) -> Result<Self, StoreError> {
        let client = handle.block_on(async {
            let mut client = super::connect(cfg).await?;
            super::schema::migrate(&mut client)
                .await
                .map_err(|source| StoreError::Schema {
                    path: cfg.masked_url(),
                    source,
                })?;
            Ok::<_, StoreError>(client)
        })?;
        Ok(Self {
            cfg: cfg.clone(),
            handle: handle.clone(),
            client,
        })
    }

    fn err(&self, source: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres {
            url: self.cfg.masked_url(),
            source,
        }
    }

    /// A fresh session when the last one broke (server restart, failover).
    fn session(&mut self) -> Result<(), StoreError> {
        if self.client.is_closed() {
            tracing::warn!(db = %self.cfg.masked_url(), "PostgreSQL writer session lost; reconnecting");
            self.client = self.handle.block_on(super::connect(&self.cfg))?;
        }
        Ok(())
    }
}

/// Why a write transaction did not commit.
enum Failed {
    Pg(tokio_postgres::Error),
    Stale(Vec<StreamMark>),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Self {
        Failed::Pg(e)
    }
}

/// (minute, site, exporter, protocol, direction, port class): the flow_class_minute key.
type ClassKey<'a> = (i64, &'a str, &'a str, i64, i64, &'a str);

async fn apply(client: &mut tokio_postgres::Client, set: &WriteSet) -> Result<(), Failed> {
    let tx = client.transaction().await?;
    // Marks first: a stale group is refused before any row is sent.
    let ranges = super::super::mark_ranges(&set.marks);
    if !ranges.is_empty() {
        let sites: Vec<&str> = ranges.keys().map(|(s, _)| s.as_str()).collect();
        let streams: Vec<i64> = ranges.keys().map(|(_, st)| *st as i64).collect();
        tx.execute(
            "INSERT INTO probe_streams(site_id, stream, last_seq, updated_ms)
             SELECT s, st, 0, $3 FROM UNNEST($1::text[], $2::bigint[]) AS t(s, st) ORDER BY s, st
             ON CONFLICT (site_id, stream) DO NOTHING",
            &[&sites, &streams, &PLACEHOLDER_MS],
        )
        .await?;
        let rows = tx
            .query(
                "SELECT site_id, stream, last_seq, updated_ms FROM probe_streams
                 WHERE (site_id, stream) IN (SELECT * FROM UNNEST($1::text[], $2::bigint[]))
                 ORDER BY site_id, stream FOR UPDATE",
                &[&sites, &streams],
            )
            .await?;
        let mut stale = Vec::new();
        for r in rows {
            let m = StreamMark {
                site: r.try_get(0)?,
                stream: r.try_get::<_, i64>(1)? as u64,
                seq: r.try_get::<_, i64>(2)? as u64,
                updated_ms: r.try_get(3)?,
            };
            let placeholder = m.updated_ms == PLACEHOLDER_MS;
            if let Some((min, _, _)) = ranges.get(&(m.site.clone(), m.stream)) {
                if !placeholder && m.seq >= *min {
                    stale.push(m);
                }
            }
        }
        if !stale.is_empty() {
            tx.rollback().await?;
            return Err(Failed::Stale(stale));
        }
        let seqs: Vec<i64> = ranges.values().map(|(_, max, _)| *max as i64).collect();
        let updated: Vec<i64> = ranges.values().map(|(_, _, ms)| *ms).collect();
        tx.execute(
            "UPDATE probe_streams p SET last_seq = t.seq, updated_ms = t.ms
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS t(s, st, seq, ms)
             WHERE p.site_id = t.s AND p.stream = t.st",
            &[&sites, &streams, &seqs, &updated],
        )
        .await?;
    }

    // Traffic by the flow_minute key, and by the flow_class_minute key.
    let mut flows: BTreeMap<(i64, &str, &str, i64, i64), [i64; 3]> = BTreeMap::new();
    let mut classes: BTreeMap<ClassKey<'_>, [i64; 3]> = BTreeMap::new();
    for r in &set.flows {
        let add = |e: &mut [i64; 3]| {
            e[0] += r.flows;
            e[1] += r.packets;
            e[2] += r.bytes;
        };
        add(flows
            .entry((r.minute, &r.site, &r.exporter, r.protocol, r.direction))
            .or_default());
        add(classes
            .entry((
                r.minute,
                &r.site,
                &r.exporter,
                r.protocol,
                r.direction,
                r.port_class.as_str(),
            ))
            .or_default());
    }
    if !flows.is_empty() {
        let k =
            |f: fn(&(i64, &str, &str, i64, i64)) -> i64| flows.keys().map(f).collect::<Vec<_>>();
        let s = |f: for<'a> fn(&(i64, &'a str, &'a str, i64, i64)) -> &'a str| {
            flows.keys().map(f).collect::<Vec<_>>()
        };
        let v = |i: usize| flows.values().map(|c| c[i]).collect::<Vec<_>>();
        let (minute, site, exporter, protocol, direction) =
            (k(|t| t.0), s(|t| t.1), s(|t| t.2), k(|t| t.3), k(|t| t.4));
        let (f, p, b) = (v(0), v(1), v(2));
        tx.execute(
            "INSERT INTO flow_minute(minute, site_id, exporter, protocol, direction, flows, packets, bytes)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                                  $6::bigint[], $7::bigint[], $8::bigint[])
             ON CONFLICT (minute, site_id, exporter, protocol, direction) DO UPDATE SET
               flows = flow_minute.flows + excluded.flows, packets = flow_minute.packets + excluded.packets,
               bytes = flow_minute.bytes + excluded.bytes",
            &[&minute, &site, &exporter, &protocol, &direction, &f, &p, &b],
        )
        .await?;
        let minute: Vec<i64> = classes.keys().map(|t| t.0).collect();
        let site: Vec<&str> = classes.keys().map(|t| t.1).collect();
        let exporter: Vec<&str> = classes.keys().map(|t| t.2).collect();
        let protocol: Vec<i64> = classes.keys().map(|t| t.3).collect();
        let direction: Vec<i64> = classes.keys().map(|t| t.4).collect();
        let class: Vec<&str> = classes.keys().map(|t| t.5).collect();
        let v = |i: usize| classes.values().map(|c| c[i]).collect::<Vec<_>>();
        let (f, p, b) = (v(0), v(1), v(2));
        tx.execute(
            "INSERT INTO flow_class_minute(minute, site_id, exporter, protocol, direction, port_class, flows, packets, bytes)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[],
                                  $7::bigint[], $8::bigint[], $9::bigint[])
             ON CONFLICT (minute, site_id, exporter, protocol, direction, port_class) DO UPDATE SET
               flows = flow_class_minute.flows + excluded.flows,
               packets = flow_class_minute.packets + excluded.packets,
               bytes = flow_class_minute.bytes + excluded.bytes",
            &[&minute, &site, &exporter, &protocol, &direction, &class, &f, &p, &b],
        )
        .await?;
    }

    let mut talkers: BTreeMap<(i64, &str, &str), [i64; 2]> = BTreeMap::new();
    for t in &set.talkers {
        let e = talkers.entry((t.minute, &t.site, &t.prefix)).or_default();
        e[0] += t.bytes;
        e[1] += t.packets;
    }
    if !talkers.is_empty() {
        let minute: Vec<i64> = talkers.keys().map(|t| t.0).collect();
        let site: Vec<&str> = talkers.keys().map(|t| t.1).collect();
        let prefix: Vec<&str> = talkers.keys().map(|t| t.2).collect();
        let bytes: Vec<i64> = talkers.values().map(|v| v[0]).collect();
        let packets: Vec<i64> = talkers.values().map(|v| v[1]).collect();
        tx.execute(
            "INSERT INTO top_talker_minute(minute, site_id, prefix, bytes, packets)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
             ON CONFLICT (site_id, minute, prefix) DO UPDATE SET
               bytes = top_talker_minute.bytes + excluded.bytes,
               packets = top_talker_minute.packets + excluded.packets",
            &[&minute, &site, &prefix, &bytes, &packets],
        )
        .await?;
    }

    // Links: `samples` counts the rows; `rtt_max_us` follows SQLite's upsert exactly: a key
    // met once keeps its value (NULL stays NULL), met again takes the max with NULL as 0.
    struct LinkSum {
        samples: i64,
        sent: i64,
        received: i64,
        rtt_sum_us: i64,
        rtt_n: i64,
        rtt_max_us: Option<i64>,
    }
    let mut links: BTreeMap<(i64, &str, &str), LinkSum> = BTreeMap::new();
    for l in &set.links {
        links
            .entry((l.minute, &l.site, &l.link))
            .and_modify(|e| {
                e.samples += 1;
                e.sent += l.sent;
                e.received += l.received;
                e.rtt_sum_us += l.rtt_sum_us;
                e.rtt_n += l.rtt_n;
                e.rtt_max_us = Some(e.rtt_max_us.unwrap_or(0).max(l.rtt_max_us.unwrap_or(0)));
            })
            .or_insert(LinkSum {
                samples: 1,
                sent: l.sent,
                received: l.received,
                rtt_sum_us: l.rtt_sum_us,
                rtt_n: l.rtt_n,
                rtt_max_us: l.rtt_max_us,
            });
    }
    if !links.is_empty() {
        let minute: Vec<i64> = links.keys().map(|t| t.0).collect();
        let site: Vec<&str> = links.keys().map(|t| t.1).collect();
        let link: Vec<&str> = links.keys().map(|t| t.2).collect();
        let samples: Vec<i64> = links.values().map(|v| v.samples).collect();
        let sent: Vec<i64> = links.values().map(|v| v.sent).collect();
        let received: Vec<i64> = links.values().map(|v| v.received).collect();
        let rtt_sum: Vec<i64> = links.values().map(|v| v.rtt_sum_us).collect();
        let rtt_n: Vec<i64> = links.values().map(|v| v.rtt_n).collect();
        let rtt_max: Vec<Option<i64>> = links.values().map(|v| v.rtt_max_us).collect();
        tx.execute(
            "INSERT INTO link_minute(minute, site_id, link_id, samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                                  $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
             ON CONFLICT (minute, site_id, link_id) DO UPDATE SET
               samples = link_minute.samples + excluded.samples, sent = link_minute.sent + excluded.sent,
               received = link_minute.received + excluded.received,
               rtt_sum_us = link_minute.rtt_sum_us + excluded.rtt_sum_us,
               rtt_n = link_minute.rtt_n + excluded.rtt_n,
               rtt_max_us = GREATEST(COALESCE(link_minute.rtt_max_us, 0), COALESCE(excluded.rtt_max_us, 0))",
            &[&minute, &site, &link, &samples, &sent, &received, &rtt_sum, &rtt_n, &rtt_max],
        )
        .await?;
    }

    let mut sampling: BTreeMap<(i64, &str, &str, i64), i64> = BTreeMap::new();
    for s in &set.sampling {
        *sampling
            .entry((s.minute, &s.site, &s.exporter, s.rate))
            .or_default() += s.flows;
    }
    if !sampling.is_empty() {
        let minute: Vec<i64> = sampling.keys().map(|t| t.0).collect();
        let site: Vec<&str> = sampling.keys().map(|t| t.1).collect();
        let exporter: Vec<&str> = sampling.keys().map(|t| t.2).collect();
        let rate: Vec<i64> = sampling.keys().map(|t| t.3).collect();
        let flows: Vec<i64> = sampling.values().copied().collect();
        tx.execute(
            "INSERT INTO netflow_sampling(minute, site_id, exporter, sampling_rate, flows)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
             ON CONFLICT (minute, site_id, exporter, sampling_rate) DO UPDATE SET
               flows = netflow_sampling.flows + excluded.flows",
            &[&minute, &site, &exporter, &rate, &flows],
        )
        .await?;
    }

    // The last state of a site in the group wins, as with SQLite's row-by-row upsert.
    let mut states: BTreeMap<&str, &str> = BTreeMap::new();
    for s in &set.site_states {
        states.insert(&s.site, &s.json);
    }
    if !states.is_empty() {
        let site: Vec<&str> = states.keys().copied().collect();
        let json: Vec<&str> = states.values().copied().collect();
        // `updated_ms` is the row's version: the commit's clock, but never lower than the
        // version it replaces, so that it grows per site whatever the clocks of the
        // collectors writing it.
        tx.execute(
            "INSERT INTO site_status(site_id, live_json, updated_ms)
             SELECT s, j, $3 FROM UNNEST($1::text[], $2::text[]) AS t(s, j)
             ON CONFLICT (site_id) DO UPDATE SET
               live_json = excluded.live_json,
               updated_ms = GREATEST(excluded.updated_ms, site_status.updated_ms + 1)",
            &[&site, &json, &set.now_ms],
        )
        .await?;
        // Transactional: the other collectors hear of these sites only once the group is
        // committed, and never of a group rolled back (see `listen`).
        let payloads = super::listen::payloads(&site);
        tx.execute(
            "SELECT pg_notify($1, p) FROM UNNEST($2::text[]) AS p",
            &[&super::listen::CHANNEL, &payloads],
        )
        .await?;
    }

    // Episodes and templates are few and their order matters (a close may follow its open
    // in the same group; a template may be announced then withdrawn): one statement each.
    if !set.episodes.is_empty() {
        let open = tx
            .prepare(
                "INSERT INTO episodes(site_id, kind, link_id, start_ms, end_ms, cause)
                 VALUES ($1, $2, $3, $4, NULL, $5)",
            )
            .await?;
        let close = tx
            .prepare(
                "UPDATE episodes SET end_ms = $4
                 WHERE site_id = $1 AND kind = $2 AND start_ms = $3 AND end_ms IS NULL",
            )
            .await?;
        for e in &set.episodes {
            match e {
                EpisodeChange::Open {
                    site,
                    kind,
                    link,
                    start_ms,
                    cause,
                } => {
                    let p: [&(dyn ToSql + Sync); 5] = [site, &kind.as_str(), link, start_ms, cause];
                    tx.execute(&open, &p).await?
                }
                EpisodeChange::Close {
                    site,
                    kind,
                    start_ms,
                    end_ms,
                } => {
                    tx.execute(&close, &[site, &kind.as_str(), start_ms, end_ms])
                        .await?
                }
            };
        }
    }
    for t in &set.templates {
        match &t.body {
            Some(body) => tx
                .execute(
                    "INSERT INTO netflow_templates(scope, kind, template_id, body, updated_ms)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (scope, kind, template_id) DO UPDATE SET
                       body = excluded.body, updated_ms = excluded.updated_ms",
                    &[&t.scope, &t.kind, &t.template_id, body, &set.now_ms],
                )
                .await?,
            None => tx
                .execute(
                    "DELETE FROM netflow_templates WHERE scope = $1 AND kind = $2 AND template_id = $3",
                    &[&t.scope, &t.kind, &t.template_id],
                )
                .await?,
        };
    }
    // Awaited to the end, never cancelled (module comment).
    tx.commit().await?;
    Ok(())
}

/// Reads what [`Store::load`] returns.
async fn load(client: &tokio_postgres::Client) -> Result<Loaded, tokio_postgres::Error> {
    let mut out = Loaded::default();
    for r in client
        .query(
            "SELECT site_id, stream, last_seq, updated_ms FROM probe_streams",
            &[],
        )
        .await?
    {
        out.marks.push(StreamMark {
            site: r.try_get(0)?,
            stream: r.try_get::<_, i64>(1)? as u64,
            seq: r.try_get::<_, i64>(2)? as u64,
            updated_ms: r.try_get(3)?,
        });
    }
    for r in client
        .query("SELECT site_id, live_json FROM site_status", &[])
        .await?
    {
        out.site_states.push(SiteStateRow {
            site: r.try_get(0)?,
            json: r.try_get(1)?,
        });
    }
    for r in client
        .query(
            "SELECT site_id, start_ms FROM episodes WHERE kind = 'silent' AND end_ms IS NULL",
            &[],
        )
        .await?
    {
        out.open_silent.push((r.try_get(0)?, r.try_get(1)?));
    }
    for r in client
        .query(
            "SELECT scope, kind, template_id, body FROM netflow_templates",
            &[],
        )
        .await?
    {
        out.templates.push(TemplateChange {
            scope: r.try_get(0)?,
            kind: r.try_get(1)?,
            template_id: r.try_get(2)?,
            body: Some(r.try_get(3)?),
        });
    }
    Ok(out)
}

impl Store for PgStore {
    fn write(&mut self, set: &WriteSet) -> Result<(), StoreError> {
        if set.is_empty() {
            return Ok(());
        }
        self.session()?;
        let client = &mut self.client;
        match self.handle.block_on(apply(client, set)) {
            Ok(()) => Ok(()),
            Err(Failed::Stale(marks)) => Err(StoreError::StaleMarks(marks)),
            Err(Failed::Pg(e)) => Err(self.err(e)),
        }
    }

    fn load(&mut self) -> Result<Loaded, StoreError> {
        self.session()?;
        let res = self.handle.block_on(load(&self.client));
        res.map_err(|e| self.err(e))
    }

    fn close(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FlowRow, LinkRow};
    use rie_proto::PortClass;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn cfg(url: String) -> PostgresConfig {
        PostgresConfig {
            url,
            password_file: None,
            password_env: None,
            root_cert: None,
            pool_size: 2,
        }
    }

    fn group(seqs: &[u64]) -> WriteSet {
        let mut set = WriteSet {
            now_ms: 5,
            ..WriteSet::default()
        };
        for &seq in seqs {
            set.flows.push(FlowRow {
                minute: 120,
                site: "S1".into(),
                exporter: String::new(),
                protocol: 6,
                direction: 1,
                port_class: PortClass::Web,
                flows: 2,
                packets: 10,
                bytes: 1000,
            });
            set.links.push(LinkRow {
                minute: 120,
                site: "S1".into(),
                link: "S1-P".into(),
                sent: 5,
                received: 4,
                rtt_sum_us: 300,
                rtt_n: 1,
                rtt_max_us: None,
            });
            set.marks.push(StreamMark {
                site: "S1".into(),
                stream: u64::MAX - 1,
                seq,
                updated_ms: seq as i64 * 10,
            });
        }
        set
    }

    #[test]
    fn two_writers_of_one_mark_store_it_once() {
        let server = rie_testpg::PgServer::start();
        let rt = runtime();
        let c = cfg(server.url());
        let mut a = PgStore::open(&c, rt.handle()).unwrap();
        let mut b = PgStore::open(&c, rt.handle()).unwrap();
        // Two consecutive batches of one stream in one group, written by both at once.
        let set = group(&[7, 8]);
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| a.write(&set));
            let tb = s.spawn(|| b.write(&set));
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let (ok, stale): (Vec<_>, Vec<_>) = [ra, rb].into_iter().partition(Result::is_ok);
        assert_eq!(ok.len(), 1, "exactly one writer commits");
        match stale.into_iter().next() {
            Some(Err(StoreError::StaleMarks(marks))) => assert_eq!(
                marks,
                vec![StreamMark {
                    site: "S1".into(),
                    stream: u64::MAX - 1,
                    seq: 8,
                    updated_ms: 80
                }]
            ),
            other => panic!("expected StaleMarks, got {other:?}"),
        }
        assert_eq!(
            server.psql("SELECT flows, packets, bytes FROM flow_minute"),
            "4|20|2000\n"
        );
        assert_eq!(
            server.psql("SELECT port_class, flows, packets, bytes FROM flow_class_minute"),
            "web|4|20|2000\n"
        );
        // Two NULL maxima met in one group become 0, as SQLite's upsert does.
        assert_eq!(
            server.psql(
                "SELECT samples, sent, received, rtt_sum_us, rtt_n, rtt_max_us FROM link_minute"
            ),
            "2|10|8|600|2|0\n"
        );
        let loaded = a.load().unwrap();
        assert_eq!(
            loaded.marks,
            vec![StreamMark {
                site: "S1".into(),
                stream: u64::MAX - 1,
                seq: 8,
                updated_ms: 80
            }]
        );
        // The next batch of the stream goes through.
        b.write(&group(&[9])).unwrap();
        assert_eq!(server.psql("SELECT flows FROM flow_minute"), "6\n");
    }

    #[test]
    fn a_database_of_a_newer_collector_is_refused_untouched() {
        let server = rie_testpg::PgServer::start();
        let rt = runtime();
        let c = cfg(server.url());
        drop(PgStore::open(&c, rt.handle()).unwrap());
        let latest = crate::store::schema::LATEST;
        server.psql(&format!(
            "INSERT INTO schema_version VALUES ({}, 'future', 0)",
            latest + 1
        ));
        let before = server.psql("SELECT version, name, applied_ms FROM schema_version ORDER BY 1");
        let err = match PgStore::open(&c, rt.handle()) {
            Err(e) => e,
            Ok(_) => panic!("a newer schema must be refused"),
        };
        assert!(err.is_user_error());
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("schema version {}", latest + 1))
                && msg.contains(&format!("knows up to {latest}"))
                && msg.contains(&server.url()),
            "{msg}"
        );
        assert_eq!(
            server.psql("SELECT version, name, applied_ms FROM schema_version ORDER BY 1"),
            before
        );
    }

    #[test]
    fn concurrent_migrations_make_one_schema() {
        let server = rie_testpg::PgServer::start();
        let rt = runtime();
        let c = cfg(server.url());
        std::thread::scope(|s| {
            let h: Vec<_> = (0..3)
                .map(|_| s.spawn(|| PgStore::open(&c, rt.handle()).map(drop)))
                .collect();
            for t in h {
                t.join().unwrap().unwrap();
            }
        });
        let want: String = crate::store::schema::migration_names()
            .iter()
            .map(|(v, n)| format!("{v}|{n}\n"))
            .collect();
        assert_eq!(
            server.psql("SELECT version, name FROM schema_version ORDER BY 1"),
            want
        );
        assert_eq!(
            super::super::schema::MIGRATIONS
                .iter()
                .map(|m| (m.0, m.1))
                .collect::<Vec<_>>(),
            crate::store::schema::migration_names(),
            "PostgreSQL and SQLite migrations must carry the same versions and names"
        );
    }

    #[test]
    fn a_wrong_password_names_the_masked_url_and_never_the_password() {
        let server = rie_testpg::PgServer::start();
        server.psql("CREATE ROLE rie LOGIN PASSWORD 'right-one'");
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pg-password");
        std::fs::write(&file, "wrong-one\n").unwrap();
        let mut c = cfg(format!(
            "postgresql://rie:in-url-secret@127.0.0.1:{}/rie",
            server.port()
        ));
        c.password_file = Some(file.clone());
        let err = match PgStore::open(&c, rt.handle()) {
            Err(e) => e,
            Ok(_) => panic!("a wrong password must be refused"),
        };
        assert!(err.is_user_error());
        let msg = err.to_string();
        assert!(msg.contains(&c.masked_url()), "{msg}");
        assert!(msg.contains("store.postgres.password_file"), "{msg}");
        assert!(
            !msg.contains("in-url-secret") && !msg.contains("wrong-one"),
            "{msg}"
        );
        // The right password in the file logs in.
        std::fs::write(&file, "right-one\n").unwrap();
        server.psql("GRANT ALL ON SCHEMA public TO rie");
        drop(PgStore::open(&c, rt.handle()).unwrap());
    }
}
