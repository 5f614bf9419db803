//! Central check plans in the collector (see `docs/plans.md`): which plan each site's probe
//! should run, pushing it, and what each probe answered.
//!
//! Owns the [`PlanBook`]: the latest stored plan of every scope (read from the store's
//! `plans` table), merged per site into its effective plan (`rie-plan`: national < ministry <
//! département < site, value by value); the watcher that sees a plan stored by any collector
//! or by `rie-collector plan add` (it polls the highest version, [`WATCH_EVERY`]) and tells
//! every probe session ([`PlanBook::subscribe`]); and the [`StatusWriter`], the one task that
//! writes sites' plan statuses (`pending` when sent, `applied` or `refused` when answered,
//! `previous_protocol` for a version-1 probe) in batches, off the sessions.
//!
//! A staged rollout (`rollout`) holds a scope's newest plan back from the sites it has not
//! released yet: they keep the scope's previous plan ([`rollout::Gate`]).
//!
//! May import `store` (plans, statuses, rollouts), `inventory`, `metrics`, and `sites` (it
//! gives the registry its plans' thresholds; rollouts read site states); `ingest`, `api` and
//! `app` import it.

pub mod rollout;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rie_plan::{EffectivePlan, Layer, PlanFile, Scope};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::inventory::{Inventory, Site};
use crate::store::plans::{self, PlanRow, StatusRow};
use crate::store::{Reader, StoreError};

/// How often the watcher asks the store for a newer plan.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Status rows waiting for the writer at most; sessions wait for room (backpressure).
const QUEUE: usize = 16_384;
/// Status rows per store transaction at most.
const BATCH: usize = 4_096;

/// The stored plans and their merge per site.
pub struct PlanBook {
    inventory: Arc<Inventory>,
    reader: Arc<Reader>,
    /// What was read from the store.
    layers: RwLock<Arc<Loaded>>,
    /// Grows at every reload that changed something (a plan stored, a rollout changed);
    /// sessions wait on its changes.
    loaded: watch::Sender<u64>,
    /// The highest plan version and the rollouts' revision loaded: the watcher reloads when
    /// the store's differ.
    seen: std::sync::Mutex<(i64, i64)>,
    /// Effective plans by the versions of the layers merged (national, ministry, département,
    /// site): sites with the same layers share one merge, text and hash. Emptied at reload.
    merged: std::sync::Mutex<HashMap<[Option<u64>; 4], Arc<SitePlan>>>,
    releases: rollout::Releases,
    status: mpsc::Sender<StatusRow>,
}

/// The plans and rollouts read from the store.
#[derive(Default)]
struct Loaded {
    /// Latest layer of each scope.
    latest: HashMap<Scope, Layer>,
    /// Every layer, by version (a site a rollout has not reached keeps an older one).
    by_version: HashMap<u64, Layer>,
    /// Scopes whose latest plan a rollout holds back from some sites.
    gates: HashMap<Scope, rollout::Gate>,
}

impl Loaded {
    /// The layer of `scope` that applies to site `idx`: the latest, or the previous one while
    /// a rollout holds the latest back from the site.
    fn layer(&self, scope: &Scope, idx: usize) -> Option<&Layer> {
        let latest = self.latest.get(scope)?;
        match self.gates.get(scope) {
            Some(g) if g.holds(latest.version, idx) => self.by_version.get(&g.previous),
            _ => Some(latest),
        }
    }
}

/// One site's effective plan, ready to send.
#[derive(Debug, Clone)]
pub struct SitePlan {
    pub plan: EffectivePlan,
    pub text: String,
    pub hash: String,
    /// The scopes whose layers were merged, widest first.
    pub scopes: Vec<String>,
}

impl PlanBook {
    /// A book with no plan loaded and the queue of its status writer (start the writer with
    /// [`StatusWriter::run`] on the receiver).
    pub fn new(
        inventory: Arc<Inventory>,
        reader: Arc<Reader>,
    ) -> (Self, mpsc::Receiver<StatusRow>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (loaded, _) = watch::channel(0);
        (
            Self {
                inventory,
                reader,
                layers: RwLock::new(Arc::new(Loaded::default())),
                loaded,
                seen: std::sync::Mutex::new((0, 0)),
                merged: std::sync::Mutex::new(HashMap::new()),
                releases: rollout::Releases::default(),
                status: tx,
            },
            rx,
        )
    }

    /// Reads every stored plan again; returns the highest version. Blocking (store reads):
    /// call it from a plain thread or `spawn_blocking`.
    ///
    /// # Errors
    /// Store errors.
    pub fn reload(&self) -> Result<u64, StoreError> {
        // Revision first: a rollout changed after it is seen at the next look.
        let revision = plans::rollouts_revision(&self.reader)?;
        let rows = plans::list(&self.reader)?;
        let rollouts = rollout::list(&self.reader)?;
        let mut loaded = Loaded::default();
        let mut highest = 0u64;
        for r in rows {
            highest = highest.max(r.version as u64);
            let Some(scope) = Scope::from_parts(&r.scope_kind, &r.scope_value) else {
                warn!(version = r.version, kind = %r.scope_kind, "stored plan with an unknown scope kind left out");
                continue;
            };
            // Validated before it was stored; a plan this build cannot read is left out.
            match PlanFile::parse(&r.toml) {
                Ok(file) => {
                    let layer = Layer {
                        scope: scope.clone(),
                        version: r.version as u64,
                        file,
                    };
                    loaded.by_version.insert(layer.version, layer.clone());
                    loaded.latest.insert(scope, layer);
                }
                Err(e) => {
                    warn!(version = r.version, scope = %scope, error = %e, "stored plan unreadable by this collector; left out")
                }
            }
        }
        for (r, _) in &rollouts {
            if let Some((scope, gate)) = rollout::Gate::of(&self.inventory, r, &self.releases) {
                loaded.gates.insert(scope, gate);
            }
        }
        *self.layers.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        self.merged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let now = (highest as i64, revision);
        let changed = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *seen, now) != now
        };
        if changed {
            self.loaded.send_modify(|g| *g += 1);
        }
        Ok(highest)
    }

    /// Whether the store's plans or rollouts differ from those loaded.
    fn stale(&self) -> Result<bool, StoreError> {
        let now = (
            plans::latest_version(&self.reader)?,
            plans::rollouts_revision(&self.reader)?,
        );
        Ok(now != *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Rollout `r`'s progress, on its release order computed once ([`rollout::Releases`]).
    pub fn progress(
        &self,
        r: &rollout::Rollout,
        statuses: &HashMap<String, StatusRow>,
        views: &[crate::sites::SiteView],
    ) -> rollout::Progress {
        match self.releases.of(&self.inventory, r) {
            Some(release) => rollout::progress(&self.inventory, r, &release, statuses, views),
            None => rollout::Progress::default(),
        }
    }

    fn loaded_now(&self) -> Arc<Loaded> {
        self.layers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes whenever a plan is stored or a rollout changes anywhere.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.loaded.subscribe()
    }

    /// The scopes that apply to `site`, widest first.
    pub fn scopes_of(site: &Site) -> [Scope; 4] {
        [
            Scope::National,
            Scope::Ministry(site.ministry.clone()),
            Scope::Departement(site.departement.clone()),
            Scope::Site(site.id.as_str().to_string()),
        ]
    }

    /// The effective plan of the site at `site_idx`; `None` when no stored plan applies.
    pub fn effective(&self, site_idx: usize) -> Option<Arc<SitePlan>> {
        let site = self.inventory.sites.get(site_idx)?;
        let loaded = self.loaded_now();
        let scopes = Self::scopes_of(site);
        let key = scopes
            .clone()
            .map(|s| loaded.layer(&s, site_idx).map(|l| l.version));
        if key.iter().all(Option::is_none) {
            return None;
        }
        if let Some(p) = self
            .merged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Some(p.clone());
        }
        let applying: Vec<&Layer> = scopes
            .iter()
            .filter_map(|s| loaded.layer(s, site_idx))
            .collect();
        let plan = EffectivePlan::merge(&applying);
        let text = plan.wire_text();
        let p = Arc::new(SitePlan {
            hash: rie_plan::content_hash(&text),
            text,
            scopes: applying.iter().map(|l| l.scope.to_string()).collect(),
            plan,
        });
        self.merged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, p.clone());
        Some(p)
    }

    /// The version of the site's effective plan (the highest of its layers'), without
    /// merging: what the fleet counts need for 14,000 sites.
    pub fn effective_version(&self, site_idx: usize) -> Option<u64> {
        let site = self.inventory.sites.get(site_idx)?;
        let loaded = self.loaded_now();
        Self::scopes_of(site)
            .iter()
            .filter_map(|s| loaded.layer(s, site_idx).map(|l| l.version))
            .max()
    }

    /// Queues a site's status for the writer, waiting for room.
    pub async fn record(&self, site: &str, version: u64, state: &str, reason: &str) {
        let row = StatusRow {
            site: site.to_string(),
            version: version as i64,
            state: state.to_string(),
            reason: reason.chars().take(1_000).collect(),
            updated_ms: rie_common::now_ms(),
        };
        let _ = self.status.send(row).await;
    }

    /// Each inventory site's plan state, for the API: its effective version and what its
    /// probe last answered.
    ///
    /// # Errors
    /// Store errors. Blocking, as [`PlanBook::reload`].
    pub fn site_states(&self) -> Result<Vec<SiteState>, StoreError> {
        let stored: HashMap<String, StatusRow> = plans::statuses(&self.reader)?
            .into_iter()
            .map(|r| (r.site.clone(), r))
            .collect();
        Ok((0..self.inventory.sites.len())
            .map(|i| self.site_state(i, stored.get(self.inventory.sites[i].id.as_str())))
            .collect())
    }

    /// One site's state, its stored status given.
    pub fn site_state(&self, site_idx: usize, status: Option<&StatusRow>) -> SiteState {
        let site = &self.inventory.sites[site_idx];
        let effective = self.effective_version(site_idx);
        let state = match (status, effective) {
            (Some(s), _) if s.state == "previous_protocol" => "previous_protocol",
            (_, None) => "no_plan",
            (None, Some(_)) => "not_sent",
            (Some(s), Some(v)) if s.version as u64 == v => match s.state.as_str() {
                "applied" => "applied",
                "refused" => "refused",
                _ => "pending",
            },
            // Answered an older plan; the newer one not yet sent (probe offline) or answered.
            (Some(_), Some(_)) => "outdated",
        };
        SiteState {
            site: site.id.as_str().to_string(),
            effective_version: effective,
            state,
            reported_version: status.map(|s| s.version as u64),
            reason: status
                .filter(|s| !s.reason.is_empty())
                .map(|s| s.reason.clone()),
            updated_ms: status.map(|s| s.updated_ms),
        }
    }

    pub fn reader(&self) -> &Arc<Reader> {
        &self.reader
    }

    pub fn inventory(&self) -> &Arc<Inventory> {
        &self.inventory
    }
}

impl crate::sites::PlanThresholds for PlanBook {
    fn role_thresholds(
        &self,
        site_idx: usize,
        role: rie_proto::LinkRole,
    ) -> Option<rie_plan::Thresholds> {
        self.effective(site_idx)
            .map(|p| p.plan.role(role).thresholds)
    }
}

/// A site's plan state as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SiteState {
    pub site: String,
    /// The version of the site's effective plan now (None: no plan applies).
    pub effective_version: Option<u64>,
    /// `applied`, `pending` (sent, not answered), `refused`, `outdated` (an older version
    /// answered), `not_sent` (the probe has not connected since), `previous_protocol` (a
    /// version-1 probe: its local checks run), `no_plan`.
    pub state: &'static str,
    pub reported_version: Option<u64>,
    pub reason: Option<String>,
    pub updated_ms: Option<i64>,
}

/// Polls the store for a newer plan or a changed rollout every [`WATCH_EVERY`] until
/// `shutdown`, and reloads the book when there is one (subscribers are woken).
pub async fn watch(book: Arc<PlanBook>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let b = book.clone();
        let r = tokio::task::spawn_blocking(move || -> Result<Option<u64>, StoreError> {
            if !b.stale()? {
                return Ok(None);
            }
            b.reload().map(Some)
        })
        .await;
        match r {
            Ok(Ok(Some(v))) => info!(version = v, "check plans changed; pushing to the probes"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => warn!(error = %e, "check plans not read"),
            Err(e) => warn!(error = %e, "check plan watcher task failed"),
        }
    }
}

/// The writer of sites' plan statuses.
pub struct StatusWriter;

impl StatusWriter {
    /// Writes queued statuses in batches until the queue closes or `shutdown` (then what is
    /// queued is written).
    pub async fn run(
        reader: Arc<Reader>,
        mut rx: mpsc::Receiver<StatusRow>,
        shutdown: CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                r = rx.recv() => match r { Some(r) => r, None => return },
                _ = shutdown.cancelled() => {
                    rx.close();
                    match rx.recv().await { Some(r) => r, None => return }
                }
            };
            let mut rows = vec![first];
            while rows.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => rows.push(r),
                    Err(_) => break,
                }
            }
            let reader = reader.clone();
            let n = rows.len();
            match tokio::task::spawn_blocking(move || plans::set_statuses(&reader, &rows)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(rows = n, error = %e, "plan statuses not written"),
                Err(e) => warn!(rows = n, error = %e, "plan status writer task failed"),
            }
        }
    }
}

/// Parses and validates a plan file for `scope`, as `plan check` and `plan add` do: the file
/// alone, then merged over the stored layers of wider scopes for every inventory site it
/// applies to (a value it sets may clash with one it inherits).
///
/// # Errors
/// A message naming the key and the fix (the caller adds the file name).
pub fn check_file(
    text: &str,
    scope: Option<&Scope>,
    inventory: Option<&Inventory>,
    stored: &[PlanRow],
) -> Result<PlanFile, String> {
    let file = PlanFile::parse(text).map_err(|e| e.to_string())?;
    let alone = Layer {
        scope: scope.cloned().unwrap_or(Scope::National),
        version: u64::MAX,
        file: file.clone(),
    };
    EffectivePlan::merge(&[&alone])
        .validate()
        .map_err(|e| e.to_string())?;
    let (Some(scope), Some(inv)) = (scope, inventory) else {
        return Ok(file);
    };
    match scope {
        Scope::National => {}
        Scope::Ministry(m) if !inv.sites.iter().any(|s| &s.ministry == m) => {
            return Err(format!("scope {scope}: no site of the inventory has ministry {m:?}; write it as in sites.csv"));
        }
        Scope::Departement(d) if !inv.sites.iter().any(|s| &s.departement == d) => {
            return Err(format!("scope {scope}: no site of the inventory is in département {d:?}; e.g. departement:35"));
        }
        Scope::Site(id) if !inv.sites.iter().any(|s| s.id.as_str() == id) => {
            return Err(format!("scope {scope}: site {id} is not in the inventory"));
        }
        _ => {}
    }
    let mut latest: HashMap<Scope, Layer> = HashMap::new();
    for r in stored {
        if let (Some(s), Ok(f)) = (
            Scope::from_parts(&r.scope_kind, &r.scope_value),
            PlanFile::parse(&r.toml),
        ) {
            latest.insert(
                s.clone(),
                Layer {
                    scope: s,
                    version: r.version as u64,
                    file: f,
                },
            );
        }
    }
    latest.insert(scope.clone(), alone);
    for site in &inv.sites {
        let scopes = PlanBook::scopes_of(site);
        if !scopes.contains(scope) {
            continue;
        }
        let applying: Vec<&Layer> = scopes.iter().filter_map(|s| latest.get(s)).collect();
        if let Err(e) = EffectivePlan::merge(&applying).validate() {
            return Err(format!(
                "merged with the plans stored for site {}: {e}",
                site.id
            ));
        }
    }
    Ok(file)
}
