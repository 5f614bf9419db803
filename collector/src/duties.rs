//! What runs on every collector and what runs once when several collectors share one
//! PostgreSQL (docs/scaling.md, "What runs on every collector, what runs once").
//!
//! - **On every collector**: live site states of the whole country. Each collector applies
//!   what it commits itself, and [`start_shared`] applies what the others commit: the
//!   `site_status` rows they write are announced by `NOTIFY` and read back by
//!   `store::postgres::listen`, then merged into the [`SiteRegistry`] by
//!   [`SiteRegistry::merge_stored`] (newer rows only; a fresher state of a probe connected
//!   here is kept).
//! - **Once, on the leader**: the silence scan that writes `silent` episodes (the commit
//!   stage asks [`Leadership::is_leader`]), rollup compaction (`store::retention`) and the
//!   finance figures (`finance`, which asks [`Leadership::is_leader`] before each run). The
//!   leader is the holder of a PostgreSQL advisory lock (`store::postgres::leader`); with
//!   SQLite the collector is alone and always the leader.
//!
//! Owns: [`Leadership`] (the flag, its epoch and the `rie_collector_leader` gauge) and the
//! wiring of the listener and of the election. May import `sites`, `store`, `metrics`;
//! `app` starts it, the commit stage reads [`Leadership`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGauge;
use rie_proto::SiteId;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::sites::{SiteLive, SiteRegistry};
use crate::store::config::PostgresConfig;
use crate::store::postgres::{leader, listen};

/// Whether this collector runs the duties that run once.
pub struct Leadership {
    leader: AtomicBool,
    /// Incremented at each gain of the leadership: the commit stage reloads the open silent
    /// episodes from the store when it sees a new epoch (the previous leader may have opened
    /// or closed some since this collector last looked).
    epoch: AtomicU64,
    gauge: IntGauge,
}

impl Leadership {
    /// A collector alone on its database (SQLite): leader from the start, for good.
    pub fn always(gauge: IntGauge) -> Arc<Self> {
        gauge.set(1);
        Arc::new(Self {
            leader: AtomicBool::new(true),
            epoch: AtomicU64::new(1),
            gauge,
        })
    }

    /// Always the leader, with a gauge of its own that no registry shows (the commit stage's
    /// default, before `app` gives it the collector's).
    pub fn alone() -> Arc<Self> {
        // The name is a literal and valid: `new` cannot fail.
        let gauge = IntGauge::new("rie_collector_leader", "unregistered").expect("valid metric");
        Self::always(gauge)
    }

    /// A collector sharing its database: a follower until the election says otherwise.
    pub fn follower(gauge: IntGauge) -> Arc<Self> {
        gauge.set(0);
        Arc::new(Self {
            leader: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            gauge,
        })
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Changes at each gain of the leadership.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn set(&self, leader: bool) {
        if leader {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        self.leader.store(leader, Ordering::Release);
        self.gauge.set(i64::from(leader));
    }
}

/// How often every site state is read again even without a notification (a safety net:
/// notifications are lost while the listening session is down, and it is then reloaded at
/// once anyway).
const FULL_RELOAD: Duration = Duration::from_secs(60);

/// Starts the listener of the other collectors' site states and the leader election, on
/// `tracker`, until `shutdown`.
pub fn start_shared(
    pg: &PostgresConfig,
    sites: Arc<SiteRegistry>,
    leadership: Arc<Leadership>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    let deliver = move |rows: Vec<listen::SiteStatus>| {
        let mut taken = 0usize;
        for row in rows {
            let Some(idx) = SiteId::new(row.site.clone())
                .ok()
                .and_then(|s| sites.inventory.site_index(&s))
            else {
                continue;
            };
            match serde_json::from_str::<SiteLive>(&row.json) {
                Ok(live) => taken += usize::from(sites.merge_stored(idx, live, row.updated_ms)),
                Err(e) => {
                    tracing::warn!(site = %row.site, error = %e, "unreadable stored site state ignored")
                }
            }
        }
        if taken > 0 {
            tracing::debug!(sites = taken, "site states of other collectors applied");
        }
    };
    tracker.spawn(listen::run(
        pg.clone(),
        FULL_RELOAD,
        deliver,
        shutdown.clone(),
    ));
    tracker.spawn(leader::run(
        pg.clone(),
        move |now| leadership.set(now),
        shutdown.clone(),
    ));
}
