//! Cluster: a probe stream's dedup mark follows its site when the site changes owner.
//!
//! Exactly-once storage rests on the mark `(site, stream) → highest stored seq` (`store`,
//! table `probe_streams`), and each member keeps its own. When the member list changes, a
//! site moves to a member that has no mark for its stream (or an old one, if the site was
//! there before): a batch the previous owner committed but whose ack the probe never got
//! (cut at that moment) would be stored a second time. So, before answering the hello of such
//! a stream, the member asks every other member for its mark
//! (`GET /api/v1/cluster/streams/{site}/{stream}`, served here) and takes the highest; the
//! probe then learns it in `Welcome.last_stored_seq`, and a batch at or below it is
//! acknowledged as a duplicate without being stored.
//!
//! When is a local mark not trusted? When there is none, or when it was written before the
//! current member list took effect (the list is recorded in the store, table
//! `cluster_membership`, with the time it changed): only then can another member have stored
//! newer batches of the stream. A mark confirmed by every peer, or written under the current
//! list, is trusted and costs no lookup, so a restart with the same list does not ask again.
//!
//! A peer that does not answer within `cluster.mark_lookup_timeout` is skipped: the hello is
//! answered with the marks known, counted in `rie_collector_cluster_mark_lookups_total
//! {result="unreachable"}` and logged. Refusing instead would stop every moved site's data
//! (availability included) for as long as any member is down; the residual risk (documented in
//! `docs/scaling.md`) is at most `max_in_flight` batches stored twice, and only if the
//! unreachable peer is the one that held the site and had lost acks at the moment of the move.
//!
//! May import `cluster`, `commit` (the dedup index), `store`, `metrics`. Its route is
//! `api::cluster`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rie_proto::SiteId;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::cluster::ClusterConfig;
use crate::commit::DedupIndex;
use crate::metrics::Metrics;

/// Answer of `GET /api/v1/cluster/streams/{site}/{stream}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMark {
    pub site: String,
    pub stream: u64,
    /// Highest batch seq of the stream stored (or learned from a peer) by this member.
    pub last_seq: Option<u64>,
}

/// What a hello asks the peers, and which local marks it trusts.
pub struct MarkLookup {
    /// Base URLs of the other members' APIs.
    peers: Vec<String>,
    http: reqwest::Client,
    /// Streams whose local mark predates the current member list and has not been confirmed
    /// by every peer since. A std `Mutex`: held for one set operation, never across an await.
    unconfirmed: Mutex<HashSet<(SiteId, u64)>>,
    metrics: Arc<Metrics>,
}

/// Why the lookup could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum MarkLookupError {
    #[error("cluster membership record in the store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("HTTP client for cluster peers: {0}")]
    Http(#[from] reqwest::Error),
}

impl MarkLookup {
    /// Records the member list in the store (noting when it changed) and loads the streams
    /// whose marks predate it. `None` when there is no peer to ask: a single collector, or a
    /// cluster without `api_members` (its moved sites keep the gap described in
    /// `docs/scaling.md`).
    ///
    /// # Errors
    /// [`MarkLookupError`] when the store cannot be read or written.
    pub fn start(
        cfg: &ClusterConfig,
        conn: &Connection,
        metrics: Arc<Metrics>,
        now_ms: i64,
    ) -> Result<Option<Self>, MarkLookupError> {
        let Some(ring) = cfg.ring() else {
            return Ok(None);
        };
        let peers = cfg.peer_apis();
        if peers.is_empty() {
            if ring.members.len() > 1 {
                warn!("cluster.api_members is empty: a site moving between members cannot take its stream marks along (see docs/scaling.md)");
            }
            return Ok(None);
        }
        let since_ms = record_membership(conn, &ring.members, now_ms)?;
        let mut unconfirmed = HashSet::new();
        let mut stmt =
            conn.prepare("SELECT site_id, stream FROM probe_streams WHERE updated_ms < ?1")?;
        let rows = stmt.query_map(params![since_ms], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (site, stream) = row?;
            // Sites owned by another member are redirected before any lookup.
            if let (Ok(site), None) = (SiteId::new(&site), ring.redirect_for(&site)) {
                unconfirmed.insert((site, stream as u64));
            }
        }
        info!(
            peers = peers.len(),
            membership_since_ms = since_ms,
            marks_to_confirm = unconfirmed.len(),
            "cluster stream marks: peers are asked for streams without a current mark"
        );
        // HTTP/1.1 only: keeps h2 0.3 (RUSTSEC-2026-0258) unused (docs/dependencies.md).
        let http = reqwest::Client::builder()
            .http1_only()
            .timeout(cfg.mark_lookup_timeout)
            .connect_timeout(cfg.mark_lookup_timeout)
            .build()?;
        Ok(Some(Self {
            peers,
            http,
            unconfirmed: Mutex::new(unconfirmed),
            metrics,
        }))
    }

    fn unconfirmed(&self) -> std::sync::MutexGuard<'_, HashSet<(SiteId, u64)>> {
        self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the hello of `(site, stream)` must ask the peers: no local mark, or one written
    /// before the current member list and not confirmed since.
    pub fn needed(&self, site: &SiteId, stream: u64, local: Option<u64>) -> bool {
        local.is_none() || self.unconfirmed().contains(&(site.clone(), stream))
    }

    /// Asks every peer for its mark of `(site, stream)` (in parallel, each bounded by
    /// `cluster.mark_lookup_timeout`), raises the local mark to the highest answer, and returns
    /// the resulting mark. Peers that did not answer are logged and counted; the stream stays
    /// unconfirmed so that its next hello asks again.
    pub async fn reconcile(&self, dedup: &DedupIndex, site: &SiteId, stream: u64) -> Option<u64> {
        let asks = self.peers.iter().map(|peer| {
            let url = format!(
                "{}/api/v1/cluster/streams/{}/{stream}",
                peer.trim_end_matches('/'),
                site.as_str()
            );
            let http = self.http.clone();
            async move {
                let answer = match http.get(&url).send().await {
                    Err(e) => Err(("unreachable", e.to_string())),
                    Ok(r) if !r.status().is_success() => {
                        Err(("bad_answer", format!("HTTP {}", r.status())))
                    }
                    Ok(r) => match r.json::<StreamMark>().await {
                        Ok(m) if m.stream == stream && m.site == site.as_str() => Ok(m.last_seq),
                        Ok(m) => Err(("bad_answer", format!("answer for another stream: {m:?}"))),
                        // A body cut by the timeout is a peer that did not answer in time.
                        Err(e) if e.is_timeout() => Err(("unreachable", e.to_string())),
                        Err(e) => Err(("bad_answer", e.to_string())),
                    },
                };
                (peer, answer)
            }
        });
        let answers = futures_util::future::join_all(asks).await;
        let mut all_answered = true;
        let mut best: Option<(u64, &str)> = None;
        for (peer, answer) in answers {
            let result = match answer {
                Ok(Some(seq)) => {
                    if best.is_none_or(|(b, _)| seq > b) {
                        best = Some((seq, peer.as_str()));
                    }
                    "mark"
                }
                Ok(None) => "no_mark",
                Err((result, error)) => {
                    all_answered = false;
                    warn!(site = %site, stream, peer = %peer, result, error = %error,
                        "cluster peer gave no stream mark; answering the probe with the marks known (a batch that member stored and never acknowledged may be stored again)");
                    result
                }
            };
            self.metrics
                .cluster_mark_lookups
                .with_label_values(&[result])
                .inc();
        }
        let local = dedup.last(site, stream);
        if let Some((seq, peer)) = best {
            if local.is_none_or(|l| seq > l) {
                dedup.raise(site, stream, seq);
                info!(site = %site, stream, last_seq = seq, local = ?local, peer = %peer,
                    "stream mark taken from the previous owner: batches up to it are acknowledged, not stored again");
            }
        }
        if all_answered {
            self.unconfirmed().remove(&(site.clone(), stream));
        }
        dedup.last(site, stream)
    }
}

/// Records `members` as the current member list; returns since when (Unix ms, collector
/// clock) it has been the list: `now_ms` if it changed or was never recorded.
///
/// # Errors
/// Database errors.
pub fn record_membership(
    conn: &Connection,
    members: &[String],
    now_ms: i64,
) -> Result<i64, rusqlite::Error> {
    // The table is part of the store's schema (`store::schema`).
    let mut sorted = members.to_vec();
    sorted.sort();
    let list = sorted.join("\n");
    let known: Option<(String, i64)> = conn
        .query_row(
            "SELECT members, since_ms FROM cluster_membership WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    match known {
        Some((m, since)) if m == list => Ok(since),
        _ => {
            conn.execute(
                "INSERT INTO cluster_membership(id, members, since_ms) VALUES (1, ?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET members = excluded.members, since_ms = excluded.since_ms",
                params![list, now_ms],
            )?;
            Ok(now_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_since_moves_only_when_the_list_changes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("rie.db")).unwrap();
        let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            record_membership(&conn, &m(&["a:1", "b:2"]), 100).unwrap(),
            100
        );
        // Same list, any order: unchanged.
        assert_eq!(
            record_membership(&conn, &m(&["b:2", "a:1"]), 200).unwrap(),
            100
        );
        assert_eq!(
            record_membership(&conn, &m(&["a:1", "b:2", "c:3"]), 300).unwrap(),
            300
        );
        assert_eq!(
            record_membership(&conn, &m(&["a:1", "b:2"]), 400).unwrap(),
            400
        );
    }

    #[test]
    fn marks_written_before_the_member_list_are_unconfirmed() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("rie.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO probe_streams VALUES ('S1', 7, 5, 1000), ('S2', 8, 9, 1000),
               ('S3', 9, 1, 1000), ('S4', 10, 1, 1000);",
        )
        .unwrap();
        let cfg = ClusterConfig {
            members: vec!["a:1".into(), "b:2".into()],
            self_address: Some("a:1".into()),
            api_members: vec!["http://127.0.0.1:9".into(), "http://127.0.0.1:10".into()],
            ..Default::default()
        };
        let ring = cfg.ring().unwrap();
        let l = MarkLookup::start(&cfg, &conn, Arc::new(Metrics::new()), 2000)
            .unwrap()
            .unwrap();
        assert_eq!(l.peers, vec!["http://127.0.0.1:10".to_string()]);
        let rows = [("S1", 7u64), ("S2", 8), ("S3", 9), ("S4", 10)];
        let owned_here = rows
            .iter()
            .filter(|(site, _)| ring.redirect_for(site).is_none())
            .count();
        // Rendezvous hashing is deterministic: these four sites split between the two members.
        assert!(owned_here > 0 && owned_here < rows.len(), "{owned_here}");
        assert_eq!(l.unconfirmed().len(), owned_here);
        for (site, stream) in rows {
            let id = SiteId::new(site).unwrap();
            // Owned here and written before the list (at 1000 < 2000): asked again.
            let owned = ring.redirect_for(site).is_none();
            assert_eq!(l.needed(&id, stream, Some(5)), owned, "{site}");
            // No local mark: always asked.
            assert!(l.needed(&id, stream + 1, None));
        }
        // A restart with the same list keeps the old `since`: still unconfirmed, still asked.
        let again = MarkLookup::start(&cfg, &conn, Arc::new(Metrics::new()), 3000)
            .unwrap()
            .unwrap();
        assert_eq!(again.unconfirmed().len(), l.unconfirmed().len());
        // A mark written after the list took effect is trusted.
        conn.execute("UPDATE probe_streams SET updated_ms = 2500", [])
            .unwrap();
        let later = MarkLookup::start(&cfg, &conn, Arc::new(Metrics::new()), 4000)
            .unwrap()
            .unwrap();
        assert!(later.unconfirmed().is_empty());
        // No peers, no lookup.
        let alone = ClusterConfig {
            api_members: vec![],
            ..cfg.clone()
        };
        assert!(
            MarkLookup::start(&alone, &conn, Arc::new(Metrics::new()), 5000)
                .unwrap()
                .is_none()
        );
    }
}
