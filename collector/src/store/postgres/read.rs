//! The PostgreSQL read queries: [`PgReader`], the same methods, signatures and answers as
//! `store::Reader` on SQLite, on a pool of sessions of its own (MVCC: readers never block the
//! writer). PostgreSQL's `SUM(bigint)` is NUMERIC, so every sum is cast back to BIGINT.
//!
//! Synchronous like `Reader`: each call runs on the runtime captured at open with
//! `Handle::block_on`, so callers must be plain threads or `spawn_blocking` closures, never
//! async tasks (it panics there). May import `super`, `store::read` row types, `rie-proto`.

use std::collections::BTreeMap;

use rie_proto::EpisodeKind;
use tokio::runtime::Handle;

use super::super::config::PostgresConfig;
use super::super::credentials::{hash_token, Verdict};
use super::super::read::{
    fold_directions, Counts, DirectionBytes, Episode, FlowTotals, LinkMinute, MinuteTraffic,
    TalkerTotal,
};
use super::super::StoreError;

/// Read side on PostgreSQL.
pub struct PgReader {
    cfg: PostgresConfig,
    handle: Handle,
    pool: deadpool_postgres::Pool,
}

type Row = tokio_postgres::Row;
type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

impl PgReader {
    /// A pool of `pool_size` sessions, opened on demand.
    ///
    /// # Errors
    /// [`StoreError::PgSetup`].
    pub fn open(cfg: &PostgresConfig, handle: &Handle) -> Result<Self, StoreError> {
        Ok(Self {
            cfg: cfg.clone(),
            handle: handle.clone(),
            pool: super::pool(cfg)?,
        })
    }

    pub(in crate::store) fn query(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, StoreError> {
        self.handle.block_on(async {
            let client = self
                .pool
                .get()
                .await
                .map_err(|e| super::pool_error(&self.cfg, e))?;
            let stmt = client.prepare_cached(sql).await.map_err(|e| self.err(e))?;
            client.query(&stmt, params).await.map_err(|e| self.err(e))
        })
    }

    fn err(&self, source: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres {
            url: self.cfg.masked_url(),
            source,
        }
    }

    pub(in crate::store) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        &self,
        r: &'a Row,
        i: usize,
    ) -> Result<T, StoreError> {
        r.try_get(i).map_err(|e| self.err(e))
    }

    fn sum_by_key(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<BTreeMap<String, Counts>, StoreError> {
        let mut out = BTreeMap::new();
        for r in self.query(sql, params)? {
            out.insert(
                self.get::<String>(&r, 0)?,
                Counts {
                    flows: self.get::<i64>(&r, 1)? as u64,
                    packets: self.get::<i64>(&r, 2)? as u64,
                    bytes: self.get::<i64>(&r, 3)? as u64,
                },
            );
        }
        Ok(out)
    }

    /// See `Reader::flow_totals`.
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
        let p: [Param<'_>; 4] = [&from, &to, &site, &exporter];
        let filter = "start >= $1 AND start < $2
               AND ($3::text IS NULL OR site_id = $3) AND ($4::text IS NULL OR exporter = $4)";
        let by_protocol = self.sum_by_key(
            &format!(
                "SELECT CAST(protocol AS TEXT), SUM(flows)::BIGINT, SUM(packets)::BIGINT, SUM(bytes)::BIGINT
                 FROM flow_rollup WHERE {filter} GROUP BY protocol ORDER BY protocol"
            ),
            &p,
        )?;
        let by_port_class = self.sum_by_key(
            &format!(
                "SELECT port_class, SUM(flows)::BIGINT, SUM(packets)::BIGINT, SUM(bytes)::BIGINT
                 FROM flow_class_rollup WHERE {filter} GROUP BY port_class ORDER BY port_class"
            ),
            &p,
        )?;
        let by_direction = self.sum_by_key(
            &format!(
                "SELECT CASE direction WHEN 1 THEN 'inbound' WHEN 2 THEN 'outbound' ELSE 'unknown' END AS d,
                        SUM(flows)::BIGINT, SUM(packets)::BIGINT, SUM(bytes)::BIGINT
                 FROM flow_rollup WHERE {filter} GROUP BY d ORDER BY d"
            ),
            &p,
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

    /// See `Reader::top_talkers`.
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
        let limit = i64::from(limit);
        self.query(
            "SELECT prefix, SUM(bytes)::BIGINT AS b, SUM(packets)::BIGINT FROM top_talker_rollup
             WHERE site_id = $1 AND start >= $2 AND start < $3
             GROUP BY prefix ORDER BY b DESC, prefix LIMIT $4",
            &[&site, &from, &to, &limit],
        )?
        .iter()
        .map(|r| {
            Ok(TalkerTotal {
                prefix: self.get(r, 0)?,
                bytes: self.get::<i64>(r, 1)? as u64,
                packets: self.get::<i64>(r, 2)? as u64,
            })
        })
        .collect()
    }

    /// See `Reader::traffic_by_site`.
    ///
    /// # Errors
    /// Database errors.
    pub fn traffic_by_site(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, DirectionBytes)>, StoreError> {
        let rows = self.query(
            "SELECT site_id, direction, SUM(bytes)::BIGINT FROM flow_rollup
             WHERE start >= $1 AND start < $2 GROUP BY site_id, direction ORDER BY site_id, direction",
            &[&from, &to],
        )?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok((
                    self.get::<String>(r, 0)?,
                    self.get::<i64>(r, 1)?,
                    u64::try_from(self.get::<i64>(r, 2)?).unwrap_or(0),
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut out = fold_directions(rows);
        // Byte order on both backends (a PostgreSQL collation may order text otherwise).
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// See `Reader::episodes`.
    ///
    /// # Errors
    /// Database errors.
    pub fn episodes(
        &self,
        site: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Episode>, StoreError> {
        let mut out = Vec::new();
        for r in self.query(
            "SELECT kind, start_ms, end_ms, link_id, cause FROM episodes
             WHERE site_id = $1 AND start_ms < $3 AND (end_ms IS NULL OR end_ms > $2)
             ORDER BY start_ms, id",
            &[&site, &from_ms, &to_ms],
        )? {
            // The CHECK constraint guarantees a known kind; a row from a newer schema is skipped.
            if let Some(kind) = EpisodeKind::parse(&self.get::<String>(&r, 0)?) {
                out.push(Episode {
                    kind,
                    start_ms: self.get(&r, 1)?,
                    end_ms: self.get(&r, 2)?,
                    link: self.get(&r, 3)?,
                    cause: self.get(&r, 4)?,
                });
            }
        }
        Ok(out)
    }

    /// See `Reader::link_minutes`.
    ///
    /// # Errors
    /// Database errors.
    pub fn link_minutes(
        &self,
        site: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<LinkMinute>, StoreError> {
        self.query(
            "SELECT link_id, minute, 60::BIGINT, sent, received, rtt_sum_us, rtt_n, rtt_max_us FROM link_minute
             WHERE site_id = $1 AND minute >= $2 AND minute < $3
             UNION ALL
             SELECT link_id, five_min, 300::BIGINT, sent, received, rtt_sum_us, rtt_n, rtt_max_us FROM link_5min
             WHERE site_id = $1 AND five_min >= $2 AND five_min < $3
             ORDER BY 1, 2, 3",
            &[&site, &from, &to],
        )?
        .iter()
        .map(|r| {
            Ok(LinkMinute {
                link: self.get(r, 0)?,
                minute: self.get(r, 1)?,
                bucket_s: self.get(r, 2)?,
                sent: self.get(r, 3)?,
                received: self.get(r, 4)?,
                rtt_sum_us: self.get(r, 5)?,
                rtt_n: self.get(r, 6)?,
                rtt_max_us: self.get(r, 7)?,
            })
        })
        .collect()
    }

    /// See `Reader::episodes_open_or_closed_since`.
    ///
    /// # Errors
    /// Database errors.
    pub fn episodes_open_or_closed_since(
        &self,
        closed_since_ms: i64,
    ) -> Result<Vec<(String, Episode)>, StoreError> {
        self.site_episodes(
            "SELECT site_id, kind, link_id, start_ms, end_ms, cause FROM episodes
             WHERE end_ms IS NULL OR end_ms >= $1 ORDER BY start_ms",
            &[&closed_since_ms],
        )
    }

    /// Episodes with their site, from `sql` selecting (site_id, kind, link_id, start_ms,
    /// end_ms, cause); a kind this collector does not know (a newer one wrote it) is skipped.
    fn site_episodes(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<(String, Episode)>, StoreError> {
        let mut out = Vec::new();
        for r in self.query(sql, params)? {
            let Some(kind) = EpisodeKind::parse(&self.get::<String>(&r, 1)?) else {
                continue;
            };
            out.push((
                self.get(&r, 0)?,
                Episode {
                    kind,
                    link: self.get(&r, 2)?,
                    start_ms: self.get(&r, 3)?,
                    end_ms: self.get(&r, 4)?,
                    cause: self.get(&r, 5)?,
                },
            ));
        }
        Ok(out)
    }

    /// See `Reader::netflow_template`.
    ///
    /// # Errors
    /// Database errors.
    pub fn netflow_template(
        &self,
        scope: &str,
        kind: i64,
        template_id: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self
            .query(
                "SELECT body FROM netflow_templates WHERE scope = $1 AND kind = $2 AND template_id = $3",
                &[&scope, &kind, &template_id],
            )?
            .first()
        {
            Some(r) => Ok(Some(self.get(r, 0)?)),
            None => Ok(None),
        }
    }

    /// See `Reader::episodes_touching`.
    ///
    /// # Errors
    /// Database errors.
    pub fn episodes_touching(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(String, Episode)>, StoreError> {
        self.site_episodes(
            "SELECT site_id, kind, link_id, start_ms, end_ms, cause FROM episodes
             WHERE start_ms < $2 AND (end_ms IS NULL OR end_ms >= $1)",
            &[&from_ms, &to_ms],
        )
    }

    /// See `Reader::for_each_site_bytes`: summed by the server, one row per site.
    ///
    /// # Errors
    /// Database errors.
    pub fn for_each_site_bytes(
        &self,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(&str, u64),
    ) -> Result<(), StoreError> {
        for r in self.query(
            "SELECT site_id, SUM(bytes)::BIGINT FROM flow_rollup
             WHERE start >= $1 AND start < $2 GROUP BY site_id",
            &[&from, &to],
        )? {
            let bytes = u64::try_from(self.get::<i64>(&r, 1)?).unwrap_or(0);
            each(&self.get::<String>(&r, 0)?, bytes);
        }
        Ok(())
    }

    /// See `Reader::for_each_link_checked_site`: one row per site.
    ///
    /// # Errors
    /// Database errors.
    pub fn for_each_link_checked_site(
        &self,
        from: i64,
        to: i64,
        seen: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), StoreError> {
        for r in self.query(
            "SELECT DISTINCT site_id FROM link_rollup WHERE start >= $1 AND start < $2",
            &[&from, &to],
        )? {
            if !seen(&self.get::<String>(&r, 0)?) {
                break;
            }
        }
        Ok(())
    }

    /// See `Reader::minute_traffic`.
    ///
    /// # Errors
    /// Database errors.
    pub fn minute_traffic(
        &self,
        site: &str,
        minute: i64,
    ) -> Result<Vec<MinuteTraffic>, StoreError> {
        self.query(
            "SELECT exporter <> '', protocol, direction, flows, packets, bytes
             FROM flow_minute WHERE site_id = $1 AND minute = $2",
            &[&site, &minute],
        )?
        .iter()
        .map(|r| {
            Ok(MinuteTraffic {
                netflow: self.get(r, 0)?,
                protocol: self.get(r, 1)?,
                direction: self.get(r, 2)?,
                flows: self.get(r, 3)?,
                packets: self.get(r, 4)?,
                bytes: self.get(r, 5)?,
            })
        })
        .collect()
    }

    /// See `Reader::ping`.
    ///
    /// # Errors
    /// Database errors.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.query("SELECT 1", &[]).map(drop)
    }

    /// See `Reader::stream_mark` (a seq-0 row is a lock placeholder: no batch stored).
    ///
    /// # Errors
    /// Database errors.
    pub fn stream_mark(&self, site: &str, stream: u64) -> Result<Option<u64>, StoreError> {
        let stream = stream as i64;
        let rows = self.query(
            "SELECT last_seq FROM probe_streams WHERE site_id = $1 AND stream = $2",
            &[&site, &stream],
        )?;
        Ok(rows
            .first()
            .map(|r| r.get::<_, i64>(0))
            .filter(|s| *s > 0)
            .map(|s| s as u64))
    }

    /// See `Reader::verify_token` and `credentials::verify`.
    ///
    /// # Errors
    /// Database errors.
    pub fn verify_token(&self, credential_ref: &str, token: &str) -> Result<Verdict, StoreError> {
        let rows = self.query(
            "SELECT token_sha256 FROM probe_credentials WHERE credential_ref = $1",
            &[&credential_ref],
        )?;
        Ok(match rows.first() {
            None => Verdict::NotEnrolled,
            // Comparing digests, not secrets: timing reveals nothing about the token.
            Some(r) if self.get::<String>(r, 0)? == hash_token(token) => Verdict::Accepted,
            Some(_) => Verdict::Mismatch,
        })
    }

    /// Stores the hashes of `tokens` (credential ref, token) in one statement, replacing
    /// earlier ones (see `credentials`). Credential refs must be distinct.
    ///
    /// # Errors
    /// Database errors.
    pub fn store_tokens(&self, tokens: &[(String, String)], now_ms: i64) -> Result<(), StoreError> {
        let refs: Vec<&str> = tokens.iter().map(|(r, _)| r.as_str()).collect();
        let hashes: Vec<String> = tokens.iter().map(|(_, t)| hash_token(t)).collect();
        self.query(
            "INSERT INTO probe_credentials(credential_ref, token_sha256, issued_ms)
             SELECT r, h, $3 FROM UNNEST($1::text[], $2::text[]) AS t(r, h)
             ON CONFLICT (credential_ref) DO UPDATE SET token_sha256 = excluded.token_sha256,
               issued_ms = excluded.issued_ms",
            &[&refs, &hashes, &now_ms],
        )
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        EpisodeChange, FlowRow, LinkRow, Reader, SqliteStore, Store, TalkerRow, WriteSet,
    };
    use rie_proto::PortClass;

    fn set() -> WriteSet {
        let flow = |exporter: &str, protocol, direction, class, bytes| FlowRow {
            minute: 120,
            site: "S1".into(),
            exporter: exporter.into(),
            protocol,
            direction,
            port_class: class,
            flows: 1,
            packets: 2,
            bytes,
        };
        WriteSet {
            flows: vec![
                flow("", 6, 1, PortClass::Web, 100),
                flow("10.0.0.1", 6, 1, PortClass::Web, 50),
                flow("", 17, 2, PortClass::Dns, 7),
                flow("", 6, 1, PortClass::Web, 1),
            ],
            talkers: vec![
                TalkerRow {
                    minute: 120,
                    site: "S1".into(),
                    prefix: "10.1.0.0/24".into(),
                    bytes: 30,
                    packets: 3,
                },
                TalkerRow {
                    minute: 120,
                    site: "S1".into(),
                    prefix: "10.2.0.0/24".into(),
                    bytes: 40,
                    packets: 1,
                },
                TalkerRow {
                    minute: 180,
                    site: "S1".into(),
                    prefix: "10.1.0.0/24".into(),
                    bytes: 15,
                    packets: 1,
                },
            ],
            links: vec![
                LinkRow {
                    minute: 120,
                    site: "S1".into(),
                    link: "S1-P".into(),
                    sent: 5,
                    received: 5,
                    rtt_sum_us: 900,
                    rtt_n: 1,
                    rtt_max_us: Some(900),
                },
                LinkRow {
                    minute: 120,
                    site: "S1".into(),
                    link: "S1-P".into(),
                    sent: 5,
                    received: 3,
                    rtt_sum_us: 1200,
                    rtt_n: 1,
                    rtt_max_us: Some(1500),
                },
            ],
            episodes: vec![
                EpisodeChange::Open {
                    site: "S1".into(),
                    kind: EpisodeKind::Outage,
                    link: None,
                    start_ms: 1000,
                    cause: "no link answers".into(),
                },
                EpisodeChange::Close {
                    site: "S1".into(),
                    kind: EpisodeKind::Outage,
                    start_ms: 1000,
                    end_ms: 4000,
                },
                EpisodeChange::Open {
                    site: "S1".into(),
                    kind: EpisodeKind::Degraded,
                    link: Some("S1-P".into()),
                    start_ms: 5000,
                    cause: "loss 40 %".into(),
                },
            ],
            now_ms: 9,
            ..WriteSet::default()
        }
    }

    /// Every read of the same data, as text, for one comparison per backend.
    fn figures(
        totals: FlowTotals,
        talkers: Vec<TalkerTotal>,
        links: Vec<LinkMinute>,
        episodes: Vec<Episode>,
        open: Vec<(String, Episode)>,
        mut minute: Vec<MinuteTraffic>,
    ) -> String {
        minute.sort_by_key(|m| (m.netflow, m.protocol, m.direction));
        format!("{totals:?}\n{talkers:?}\n{links:?}\n{episodes:?}\n{open:?}\n{minute:?}")
    }

    #[test]
    fn both_backends_read_the_same_figures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rie.db");
        let mut store = SqliteStore::open(&path).unwrap();
        store.write(&set()).unwrap();
        store.write(&set()).unwrap();
        let r = Reader::open(&path).unwrap();
        crate::store::credentials::store(&crate::store::open(&path).unwrap(), "probe-S1", "tok", 1)
            .unwrap();
        let sqlite = figures(
            r.flow_totals(0, 600, Some("S1"), None).unwrap(),
            r.top_talkers("S1", 0, 600, 10).unwrap(),
            r.link_minutes("S1", 0, 600).unwrap(),
            r.episodes("S1", 0, 10_000).unwrap(),
            r.episodes_open_or_closed_since(4500).unwrap(),
            r.minute_traffic("S1", 120).unwrap(),
        );
        assert_eq!(
            r.verify_token("probe-S1", "tok").unwrap(),
            Verdict::Accepted
        );

        let server = rie_testpg::PgServer::start();
        let rt = crate::store::postgres::test_support::runtime();
        let cfg = crate::store::postgres::test_support::config(server.url());
        let mut store = super::super::PgStore::open(&cfg, rt.handle()).unwrap();
        store.write(&set()).unwrap();
        store.write(&set()).unwrap();
        let r = PgReader::open(&cfg, rt.handle()).unwrap();
        r.ping().unwrap();
        assert_eq!(
            r.verify_token("probe-S1", "tok").unwrap(),
            Verdict::NotEnrolled
        );
        r.store_tokens(&[("probe-S1".into(), "tok".into())], 1)
            .unwrap();
        assert_eq!(
            r.verify_token("probe-S1", "tok").unwrap(),
            Verdict::Accepted
        );
        assert_eq!(
            r.verify_token("probe-S1", "other").unwrap(),
            Verdict::Mismatch
        );
        // The same reads through the backend-neutral Reader.
        let r = Reader::open_postgres(&cfg, rt.handle()).unwrap();
        assert_eq!(
            r.verify_token("probe-S1", "tok").unwrap(),
            Verdict::Accepted
        );
        let pg = figures(
            r.flow_totals(0, 600, Some("S1"), None).unwrap(),
            r.top_talkers("S1", 0, 600, 10).unwrap(),
            r.link_minutes("S1", 0, 600).unwrap(),
            r.episodes("S1", 0, 10_000).unwrap(),
            r.episodes_open_or_closed_since(4500).unwrap(),
            r.minute_traffic("S1", 120).unwrap(),
        );
        assert_eq!(pg, sqlite);
        // Exact values, on both: two groups of the same rows sum.
        let t = r.flow_totals(0, 600, None, None).unwrap();
        assert_eq!((t.flows, t.packets, t.bytes), (8, 16, 316));
        assert_eq!(t.by_port_class["web"].bytes, 302);
        assert_eq!(t.by_protocol["17"].bytes, 14);
        assert_eq!(t.by_direction["outbound"].bytes, 14);
        let top = r.top_talkers("S1", 0, 600, 1).unwrap();
        assert_eq!(
            top,
            vec![TalkerTotal {
                prefix: "10.1.0.0/24".into(),
                bytes: 90,
                packets: 8
            }]
        );
        let links = r.link_minutes("S1", 0, 600).unwrap();
        assert_eq!(
            links
                .iter()
                .map(|l| (l.sent, l.received, l.rtt_sum_us, l.rtt_n, l.rtt_max_us))
                .collect::<Vec<_>>(),
            vec![(20, 16, 4200, 4, Some(1500))]
        );
        assert_eq!(r.episodes("S1", 0, 10_000).unwrap().len(), 4);
        assert_eq!(r.episodes_open_or_closed_since(4500).unwrap().len(), 2);
    }

    /// Indicators (finance reports) read the same inputs and give the same report on both
    /// backends: episodes crossing the period start, traffic and link checks inside and just
    /// outside the period, sites unknown to the inventory.
    #[test]
    fn indicators_are_the_same_on_both_backends() {
        use crate::indicators::{self, CostModel, GroupBy, Period};
        let inv = crate::inventory::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/indicators"),
        )
        .unwrap();
        let p = Period::parse("2026-10").unwrap();
        let (s, e) = (p.start_ms / 1000, p.end_ms / 1000);
        let flow = |minute, site: &str, bytes| FlowRow {
            minute,
            site: site.into(),
            exporter: String::new(),
            protocol: 6,
            direction: 1,
            port_class: PortClass::Web,
            flows: 1,
            packets: 1,
            bytes,
        };
        let link = |minute, site: &str| LinkRow {
            minute,
            site: site.into(),
            link: format!("{site}-P"),
            sent: 1,
            received: 1,
            rtt_sum_us: 1,
            rtt_n: 1,
            rtt_max_us: Some(1),
        };
        let open = |site: &str, kind, start_ms| EpisodeChange::Open {
            site: site.into(),
            kind,
            link: None,
            start_ms,
            cause: "test".into(),
        };
        let close = |site: &str, kind, start_ms, end_ms| EpisodeChange::Close {
            site: site.into(),
            kind,
            start_ms,
            end_ms,
        };
        let set = WriteSet {
            flows: vec![
                flow(s, "A", 100),
                flow(e - 60, "A", 23),
                flow(s - 60, "A", 1000),
                flow(e, "B", 1000),
                flow(s, "nowhere", 5),
            ],
            links: vec![link(s + 60, "C"), link(e, "D")],
            episodes: vec![
                open("A", EpisodeKind::Outage, p.start_ms + 3_600_000),
                close(
                    "A",
                    EpisodeKind::Outage,
                    p.start_ms + 3_600_000,
                    p.start_ms + 5_400_000,
                ),
                open("B", EpisodeKind::Outage, p.start_ms - 60_000),
                close("B", EpisodeKind::Outage, p.start_ms - 60_000, p.start_ms),
                open("B", EpisodeKind::Failover, p.start_ms),
                close("B", EpisodeKind::Failover, p.start_ms, p.start_ms + 120_000),
                open("E", EpisodeKind::Degraded, p.end_ms - 1000),
                open("nowhere", EpisodeKind::Outage, p.start_ms + 1),
            ],
            now_ms: 9,
            ..WriteSet::default()
        };
        let model = CostModel::default();
        let now = p.end_ms + 86_400_000;
        let report = |r: &Reader| {
            let inp = indicators::load_inputs(r, &inv, &p).unwrap();
            let json = serde_json::to_string(
                &indicators::report(r, &inv, &model, &p, now, GroupBy::Site).unwrap(),
            )
            .unwrap();
            (
                inp.traffic_bytes,
                inp.measured,
                inp.unknown_site_episodes,
                inp.episodes.iter().map(Vec::len).collect::<Vec<_>>(),
                json,
            )
        };

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rie.db");
        SqliteStore::open(&path).unwrap().write(&set).unwrap();
        let sqlite = report(&Reader::open(&path).unwrap());

        let server = rie_testpg::PgServer::start();
        let rt = crate::store::postgres::test_support::runtime();
        let cfg = crate::store::postgres::test_support::config(server.url());
        super::super::PgStore::open(&cfg, rt.handle())
            .unwrap()
            .write(&set)
            .unwrap();
        let pg = report(&Reader::open_postgres(&cfg, rt.handle()).unwrap());
        // Exact inputs: A's two minutes in the period; C measured by a link check alone; B's
        // outage ending at the start still read (takeover), E's open degradation counted.
        assert_eq!(sqlite.0, vec![123, 0, 0, 0, 0]);
        assert_eq!(sqlite.1, vec![true, true, true, false, true]);
        assert_eq!(sqlite.2, 1);
        assert_eq!(sqlite.3, vec![1, 2, 0, 0, 1]);
        assert_eq!(pg, sqlite);
    }
}
