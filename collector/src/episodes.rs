//! Outage, failover, degraded and silent episodes of each site: the durable history that the
//! NOC drills into and that availability indicators are computed from (`episodes` table).
//!
//! Two writers, each owning one kind of fact:
//! - the store writer records state changes found in batches ([`record_transition`]), in the
//!   batch's own transaction, so an episode can never disagree with the state that was acked;
//! - the [`SilenceWatcher`] opens and closes `silent` episodes, which no batch can report (a
//!   silent probe sends nothing), from the registry's view of who stopped reporting.
//!
//! Open episodes have `end_ms` NULL and survive restarts: the open outage/failover/degraded
//! episode is also kept in the site's persisted live state, the open silent ones are reloaded
//! from the table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::sites::{EpisodeKind, OpenEpisode, SiteLive, SiteRegistry, Transition};

/// Closes the site's open episode at the transition and opens the one the new state starts.
///
/// # Errors
/// Database errors (the batch's transaction then fails as a whole and is not acknowledged).
pub fn record_transition(
    conn: &Connection,
    site_id: &str,
    live: &mut SiteLive,
    t: &Transition,
) -> rusqlite::Result<()> {
    if let Some(open) = live.open_episode.take() {
        conn.prepare_cached("UPDATE episodes SET end_ms = ?2 WHERE id = ?1")?
            .execute(params![open.id, t.at_ms.max(open.start_ms)])?;
    }
    if let Some(kind) = EpisodeKind::of_state(t.to) {
        conn.prepare_cached(
            "INSERT INTO episodes(site_id, kind, link_id, start_ms, end_ms, cause)
             VALUES (?1, ?2, ?3, ?4, NULL, ?5)",
        )?
        .execute(params![
            site_id,
            kind.as_str(),
            t.link.as_ref().map(|l| l.as_str()),
            t.at_ms,
            t.cause
        ])?;
        live.open_episode = Some(OpenEpisode {
            id: conn.last_insert_rowid(),
            kind,
            start_ms: t.at_ms,
        });
    }
    Ok(())
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
pub fn query(
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

/// Turns registry silence into `silent` episodes. Runs on its own thread with its own
/// connection: SQLite serialises it with the store writer, and it writes only on changes.
pub struct SilenceWatcher {
    conn: Connection,
    sites: Arc<SiteRegistry>,
    /// Open silent episode per site index: (row id, start).
    open: HashMap<usize, (i64, i64)>,
}

impl SilenceWatcher {
    /// # Errors
    /// Database errors while loading the open silent episodes.
    pub fn new(conn: Connection, sites: Arc<SiteRegistry>) -> rusqlite::Result<Self> {
        let mut open = HashMap::new();
        {
            let mut stmt = conn.prepare(
                "SELECT id, site_id, start_ms FROM episodes WHERE kind = 'silent' AND end_ms IS NULL",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (id, site, start) = row?;
                let idx = rie_proto::SiteId::new(site)
                    .ok()
                    .and_then(|s| sites.inventory.site_index(&s));
                if let Some(idx) = idx {
                    open.insert(idx, (id, start));
                }
            }
        }
        Ok(Self { conn, sites, open })
    }

    /// Opens episodes for sites that fell silent and closes those of sites heard from again.
    ///
    /// # Errors
    /// Database errors (retried at the next scan: nothing is marked done before it commits).
    pub fn scan(&mut self, now_ms: i64) -> rusqlite::Result<()> {
        let views = self.sites.views(now_ms);
        let tx = self.conn.transaction()?;
        let mut opened = Vec::new();
        let mut closed = Vec::new();
        for (idx, v) in views.iter().enumerate() {
            // Cluster: a site owned by another member is not silent here, it reports elsewhere.
            let silent = v.state == rie_proto::SiteState::Silent && self.sites.owns(idx);
            match (silent, self.open.get(&idx)) {
                (true, None) => {
                    let start = v.state_since_ms.unwrap_or(now_ms);
                    tx.prepare_cached(
                        "INSERT INTO episodes(site_id, kind, link_id, start_ms, end_ms, cause)
                         VALUES (?1, 'silent', NULL, ?2, NULL, 'la sonde ne transmet plus')",
                    )?
                    .execute(params![self.sites.inventory.sites[idx].id.as_str(), start])?;
                    opened.push((idx, (tx.last_insert_rowid(), start)));
                }
                (false, Some(&(id, start))) => {
                    let end = v.live.resumed_ms.filter(|r| *r >= start).unwrap_or(now_ms);
                    tx.prepare_cached("UPDATE episodes SET end_ms = ?2 WHERE id = ?1")?
                        .execute(params![id, end])?;
                    closed.push(idx);
                }
                _ => {}
            }
        }
        if opened.is_empty() && closed.is_empty() {
            return Ok(());
        }
        tx.commit()?;
        for idx in closed {
            self.open.remove(&idx);
        }
        self.open.extend(opened);
        Ok(())
    }

    /// Scans every `period` until `shutdown`.
    pub fn run(mut self, period: Duration, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(e) = self.scan(rie_common::now_ms()) {
                tracing::warn!(error = %e, "silent episodes not updated, retrying");
            }
            std::thread::sleep(period);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites::tests::{link_batch, registry};

    fn db() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rie.db");
        (dir, path)
    }

    #[test]
    fn state_changes_open_and_close_episodes_in_order() {
        let (_d, path) = db();
        let conn = crate::store::open(&path).unwrap();
        let r = registry();
        let mut live = r.current(0);
        let steps = [
            (
                10_000,
                vec![("P", true, true, None), ("B", true, false, None)],
            ),
            (
                20_000,
                vec![
                    ("P", false, false, Some(19_000)),
                    ("B", true, true, Some(19_500)),
                ],
            ),
            (
                30_000,
                vec![("P", false, false, None), ("B", false, false, Some(29_000))],
            ),
            (
                40_000,
                vec![
                    ("P", true, true, Some(39_000)),
                    ("B", true, false, Some(39_000)),
                ],
            ),
        ];
        for (at, links) in steps {
            let (mut next, t) = r.advance(0, live, &link_batch(at, &links), at);
            if let Some(t) = &t {
                record_transition(&conn, "S1", &mut next, t).unwrap();
            }
            live = next;
        }
        assert_eq!(live.open_episode, None);
        let got = query(&conn, "S1", 0, 100_000).unwrap();
        let summary: Vec<_> = got
            .iter()
            .map(|e| (e.kind, e.start_ms, e.end_ms, e.link.as_deref()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (EpisodeKind::Failover, 19_000, Some(29_000), Some("P")),
                (EpisodeKind::Outage, 29_000, Some(39_000), None),
            ]
        );
        // Window filtering: only what overlaps [30 s, 35 s).
        let got = query(&conn, "S1", 30_000, 35_000).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].kind, EpisodeKind::Outage);
    }

    #[test]
    fn silent_episodes_follow_the_registry_and_survive_a_restart() {
        let (_d, path) = db();
        let sites = Arc::new(registry());
        sites.on_hello(0, 1, "0.1.0", 0, 1_000);
        let mut w = SilenceWatcher::new(crate::store::open(&path).unwrap(), sites.clone()).unwrap();
        w.scan(10_000).unwrap();
        let conn = crate::store::open(&path).unwrap();
        assert!(query(&conn, "S1", 0, i64::MAX).unwrap().is_empty());
        w.scan(40_000).unwrap();
        w.scan(41_000).unwrap();
        let open = query(&conn, "S1", 0, i64::MAX).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(
            (open[0].kind, open[0].start_ms, open[0].end_ms),
            (EpisodeKind::Silent, 1_000, None)
        );
        // A new watcher (collector restart) finds the open episode and closes it on resume.
        drop(w);
        let mut w = SilenceWatcher::new(crate::store::open(&path).unwrap(), sites.clone()).unwrap();
        sites.on_hello(0, 1, "0.1.0", 0, 50_000);
        w.scan(51_000).unwrap();
        let done = query(&conn, "S1", 0, i64::MAX).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].start_ms, done[0].end_ms), (1_000, Some(50_000)));
    }

    #[test]
    fn a_site_owned_by_another_cluster_member_is_not_silent_here() {
        let (_d, path) = db();
        // The same silence as above, on a member that does not own S1 (it moved away).
        let sites = Arc::new(registry().owning("b:7443", |site| site != "S1"));
        sites.on_hello(0, 1, "0.1.0", 0, 1_000);
        let mut w = SilenceWatcher::new(crate::store::open(&path).unwrap(), sites.clone()).unwrap();
        w.scan(40_000).unwrap();
        w.scan(41_000).unwrap();
        let conn = crate::store::open(&path).unwrap();
        assert!(query(&conn, "S1", 0, i64::MAX).unwrap().is_empty());
        assert!(!sites.owns(0));
        assert_eq!(sites.member(), Some("b:7443"));
    }
}
