//! Outage, failover, degraded and silent episodes of each site: the durable history that the
//! NOC drills into and that availability indicators are computed from (`episodes` table).
//!
//! Owns the rules that turn state changes into episode changes; writes nothing itself: the
//! commit stage puts the [`EpisodeChange`]s in the group that carries their cause.
//! May import: `sites` (live state, transitions), `store` (the row type), `rie-proto`.
//!
//! Two sources of facts:
//! - state changes found in batches ([`record_transition`]), committed in the batch's own
//!   group, so an episode can never disagree with the state that was acked;
//! - silence ([`SilenceTracker`]), which no batch can report (a silent probe sends nothing):
//!   the commit stage scans the registry every second and opens and closes `silent` episodes.
//!
//! Open episodes have `end_ms` NULL and survive restarts: the open outage/failover/degraded
//! episode is kept in the site's persisted live state, the open silent ones are reloaded from
//! the table. An open episode is known by (site, kind, start), so nothing waits for a row id.

use std::collections::HashMap;

use crate::sites::{EpisodeKind, OpenEpisode, SiteLive, SiteRegistry, Transition};
use crate::store::EpisodeChange;

/// Closes the site's open episode at the transition and opens the one the new state starts.
pub fn record_transition(
    site_id: &str,
    live: &mut SiteLive,
    t: &Transition,
    out: &mut Vec<EpisodeChange>,
) {
    if let Some(open) = live.open_episode.take() {
        out.push(EpisodeChange::Close {
            site: site_id.to_string(),
            kind: open.kind,
            start_ms: open.start_ms,
            end_ms: t.at_ms.max(open.start_ms),
        });
    }
    if let Some(kind) = EpisodeKind::of_state(t.to) {
        out.push(EpisodeChange::Open {
            site: site_id.to_string(),
            kind,
            link: t.link.as_ref().map(|l| l.as_str().to_string()),
            start_ms: t.at_ms,
            cause: t.cause.clone(),
        });
        live.open_episode = Some(OpenEpisode {
            kind,
            start_ms: t.at_ms,
        });
    }
}

/// Open `silent` episodes by site index (their start), as committed.
#[derive(Debug, Default)]
pub struct SilenceTracker {
    open: HashMap<usize, i64>,
}

/// What one scan changed, to [`SilenceTracker::confirm`] once its group is committed.
#[derive(Debug)]
pub struct SilenceScan {
    opened: Vec<(usize, i64)>,
    closed: Vec<usize>,
}

/// Cause written on silent episodes (French: the NOC's language).
const SILENT_CAUSE: &str = "la sonde ne transmet plus";

impl SilenceTracker {
    /// Starts from the open silent episodes found in the store.
    pub fn new(open: impl IntoIterator<Item = (usize, i64)>) -> Self {
        Self {
            open: open.into_iter().collect(),
        }
    }

    /// Episodes to open for sites that fell silent and to close for sites heard from again.
    /// Nothing changes here until [`SilenceTracker::confirm`]: a failed commit is retried by
    /// the next scan.
    pub fn scan(
        &self,
        sites: &SiteRegistry,
        now_ms: i64,
        out: &mut Vec<EpisodeChange>,
    ) -> SilenceScan {
        let views = sites.views(now_ms);
        let mut scan = SilenceScan {
            opened: Vec::new(),
            closed: Vec::new(),
        };
        for (idx, v) in views.iter().enumerate() {
            let silent = v.state == rie_proto::SiteState::Silent;
            let site = || sites.inventory.sites[idx].id.as_str().to_string();
            match (silent, self.open.get(&idx)) {
                (true, None) => {
                    let start = v.state_since_ms.unwrap_or(now_ms);
                    out.push(EpisodeChange::Open {
                        site: site(),
                        kind: EpisodeKind::Silent,
                        link: None,
                        start_ms: start,
                        cause: SILENT_CAUSE.to_string(),
                    });
                    scan.opened.push((idx, start));
                }
                (false, Some(&start)) => {
                    let end = v.live.resumed_ms.filter(|r| *r >= start).unwrap_or(now_ms);
                    out.push(EpisodeChange::Close {
                        site: site(),
                        kind: EpisodeKind::Silent,
                        start_ms: start,
                        end_ms: end,
                    });
                    scan.closed.push(idx);
                }
                _ => {}
            }
        }
        scan
    }

    /// Records a scan whose changes were committed.
    pub fn confirm(&mut self, scan: SilenceScan) {
        for idx in scan.closed {
            self.open.remove(&idx);
        }
        self.open.extend(scan.opened);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites::tests::{link_batch, registry};
    use std::sync::Arc;

    use crate::store::{read::query_episodes as query, SqliteStore, Store, WriteSet};

    fn db() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rie.db");
        (dir, path)
    }

    /// Commits `episodes` through the real store, as the commit stage does.
    fn commit(path: &std::path::Path, episodes: Vec<EpisodeChange>) {
        let mut store = SqliteStore::open(path).unwrap();
        store
            .write(&WriteSet {
                episodes,
                ..WriteSet::default()
            })
            .unwrap();
    }

    /// One silence scan, committed then confirmed.
    fn scan(path: &std::path::Path, w: &mut SilenceTracker, sites: &SiteRegistry, now: i64) {
        let mut changes = Vec::new();
        let s = w.scan(sites, now, &mut changes);
        commit(path, changes);
        w.confirm(s);
    }

    /// The tracker a restarted collector builds from the store.
    fn reload(path: &std::path::Path, sites: &SiteRegistry) -> SilenceTracker {
        let loaded = SqliteStore::open(path).unwrap().load().unwrap();
        SilenceTracker::new(loaded.open_silent.into_iter().map(|(site, start)| {
            let id = rie_proto::SiteId::new(site).unwrap();
            (sites.inventory.site_index(&id).unwrap(), start)
        }))
    }

    #[test]
    fn state_changes_open_and_close_episodes_in_order() {
        let (_d, path) = db();
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
                let mut changes = Vec::new();
                record_transition("S1", &mut next, t, &mut changes);
                commit(&path, changes);
            }
            live = next;
        }
        assert_eq!(live.open_episode, None);
        let conn = crate::store::open(&path).unwrap();
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
        let mut w = reload(&path, &sites);
        scan(&path, &mut w, &sites, 10_000);
        let conn = crate::store::open(&path).unwrap();
        assert!(query(&conn, "S1", 0, i64::MAX).unwrap().is_empty());
        scan(&path, &mut w, &sites, 40_000);
        scan(&path, &mut w, &sites, 41_000);
        let open = query(&conn, "S1", 0, i64::MAX).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(
            (open[0].kind, open[0].start_ms, open[0].end_ms),
            (EpisodeKind::Silent, 1_000, None)
        );
        // A new watcher (collector restart) finds the open episode and closes it on resume.
        drop(w);
        let mut w = reload(&path, &sites);
        sites.on_hello(0, 1, "0.1.0", 0, 50_000);
        scan(&path, &mut w, &sites, 51_000);
        let done = query(&conn, "S1", 0, i64::MAX).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].start_ms, done[0].end_ms), (1_000, Some(50_000)));
    }
}
