//! Staged rollout of a check plan (see `docs/plans.md`, "Staged rollout"): a new plan for a
//! scope reaches a canary first, then waves of growing share of the scope's sites; each wave
//! starts only if, among the sites released so far, refusals and sites that turned
//! degraded, down or silent after applying the plan stay within a threshold. Otherwise the
//! rollout halts by itself and says why; `rollback` then returns every site to the previous
//! plan, stored again under a new version (versions only grow: a probe never goes back).
//!
//! Owns the [`Rollout`] record (stored as JSON in `plan_rollouts`), the order in which a
//! scope's sites are released ([`order`]: the canary picked across ministries, technologies
//! and départements), the progress of each wave ([`progress`]), the decision to go on, halt
//! or finish ([`decide`]), the task that drives running rollouts ([`drive`]) and its metrics.
//! The [`super::PlanBook`] reads the rollouts to hold the new plan back from the sites not
//! released yet ([`Gate`]).
//!
//! Several collectors on one database may all drive a rollout: a change is written only over
//! the revision it was computed from (`store::plans::update_rollout`), so a wave starts once.
//!
//! May import `store` (plans, statuses, rollouts), `inventory`, `sites` (site states) and the
//! rest of `plans`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};
use rie_plan::Scope;
use rie_proto::{LinkRole, SiteState as Health};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::PlanBook;
use crate::inventory::Inventory;
use crate::sites::{SiteRegistry, SiteView};
use crate::store::plans::{self, RolloutRow, StatusRow};
use crate::store::{Reader, StoreError};

/// How often running rollouts are looked at.
pub const DRIVE_EVERY: Duration = Duration::from_secs(1);

/// Sites named in a halt reason at most (the API lists up to [`BAD_SITES_SHOWN`]).
const REASON_SITES: usize = 5;
/// Sites listed as bad in a progress report at most.
pub const BAD_SITES_SHOWN: usize = 50;

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Recorded, its plan being stored: the scope's new plan is held back from every site.
    Preparing,
    /// The released sites have the new plan; the next wave starts after the interval.
    Running,
    /// Stopped by itself (see `reason`): the released sites keep the new plan, the others
    /// the previous one, until `rollback`.
    Halted,
    /// Every site of the scope was released.
    Done,
    /// The previous plan was stored again under `rollback_version`.
    RolledBack,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preparing => "preparing",
            Self::Running => "running",
            Self::Halted => "halted",
            Self::Done => "done",
            Self::RolledBack => "rolled_back",
        }
    }

    /// A rollout in this state still holds the scope's plan back from some sites (and
    /// forbids another rollout or `plan add` on the scope).
    pub fn holds_back(self) -> bool {
        matches!(self, Self::Preparing | Self::Running | Self::Halted)
    }
}

/// One rollout, as stored (JSON) and shown by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Set from the row, not stored in the body.
    #[serde(default)]
    pub id: i64,
    /// `national`, `ministry:NAME`, `departement:NN` or `site:ID`.
    pub scope: String,
    /// The plan version rolled out (0 while preparing).
    pub version: u64,
    /// The scope's plan before it (0: none, the probes' local checks).
    pub previous_version: u64,
    /// Canary share of the scope's sites, per mille (at least one site).
    pub canary_permille: u32,
    /// Cumulative share released by each wave after the canary, per mille; the last is 1000.
    pub waves_permille: Vec<u32>,
    /// Sites always in the canary (a lab site, a volunteer site), before the picked ones.
    pub canary_sites: Vec<String>,
    pub wave_interval_ms: u64,
    /// Refused and bad sites allowed among the released ones, per mille.
    pub max_bad_permille: u32,
    pub state: RolloutState,
    /// 0: the canary; `k`: wave `k` (`waves_permille[k - 1]`).
    pub wave: usize,
    pub started_ms: i64,
    pub wave_started_ms: i64,
    /// Why it halted; empty otherwise.
    pub reason: String,
    /// The version that restored the previous plan (0: not rolled back).
    pub rollback_version: u64,
    /// Who started it, and who rolled it back.
    pub started_by: String,
    #[serde(default)]
    pub rolled_back_by: String,
}

impl Rollout {
    fn from_row(row: &RolloutRow) -> Option<Self> {
        match serde_json::from_str::<Self>(&row.body) {
            Ok(mut r) => {
                r.id = row.id;
                Some(r)
            }
            Err(e) => {
                warn!(rollout = row.id, error = %e, "stored rollout unreadable by this collector; left out");
                None
            }
        }
    }

    fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn scope(&self) -> Option<Scope> {
        Scope::parse(&self.scope).ok()
    }

    /// The name of wave `k`.
    pub fn wave_name(&self, k: usize) -> String {
        match k {
            0 => "canary".into(),
            k => format!(
                "wave {k} ({})",
                percent(self.waves_permille.get(k - 1).copied().unwrap_or(1000))
            ),
        }
    }

    /// Sites released once each wave has started, cumulative, for a scope of `n` sites
    /// (`pinned` of them named as canary sites).
    pub fn counts(&self, n: usize, pinned: usize) -> Vec<usize> {
        let share = |pm: u32| (n * pm as usize).div_ceil(1000);
        let canary = share(self.canary_permille).max(pinned).max(1).min(n);
        let mut out = vec![canary];
        for &w in &self.waves_permille {
            let prev = out.last().copied().unwrap_or(0);
            out.push(share(w).max(prev).min(n));
        }
        out
    }
}

/// What a rollout is started with (the CLI's and the API's flags).
#[derive(Debug, Clone, Deserialize)]
pub struct RolloutParams {
    pub scope: String,
    /// e.g. `1%`.
    pub canary: String,
    /// e.g. `10%,50%,100%`.
    pub waves: String,
    /// e.g. `10m`.
    pub wave_interval: String,
    /// e.g. `2%`.
    pub max_bad: String,
    #[serde(default)]
    pub canary_sites: Vec<String>,
}

/// Why a rollout could not be started or rolled back.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// A flag is wrong; the message starts with its name and says the fix.
    #[error("{0}")]
    Invalid(String),
    /// The plan file is wrong; the message names the key and the fix.
    #[error("{0}")]
    PlanFile(String),
    /// Another rollout holds the scope, or there is nothing to roll back.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `1%` → 10 per mille; `0.5%` → 5.
///
/// # Errors
/// A message naming the flag and the accepted form.
pub fn parse_percent(flag: &str, s: &str) -> Result<u32, String> {
    let bad = || format!("{flag}: {s:?} is not a share; write it as a percentage, e.g. 1% or 0.5%");
    let v: f64 = s
        .trim()
        .strip_suffix('%')
        .ok_or_else(bad)?
        .trim()
        .parse()
        .map_err(|_| bad())?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("{flag}: {s} is outside 0%..100%"));
    }
    let pm = (v * 10.0).round();
    if (pm - v * 10.0).abs() > 1e-9 {
        return Err(format!("{flag}: {s} is finer than 0.1%; round it"));
    }
    Ok(pm as u32)
}

fn percent(pm: u32) -> String {
    if pm.is_multiple_of(10) {
        format!("{}%", pm / 10)
    } else {
        format!("{}.{}%", pm / 10, pm % 10)
    }
}

/// A rollout record from its flags, checked (scope, shares, interval, canary sites).
///
/// # Errors
/// [`RolloutError::Invalid`] naming the flag and the fix.
pub fn new_rollout(
    p: &RolloutParams,
    inv: &Inventory,
    by: &str,
    now_ms: i64,
) -> Result<(Rollout, Scope), RolloutError> {
    let invalid = RolloutError::Invalid;
    let scope = Scope::parse(&p.scope).map_err(|e| invalid(format!("scope: {e}")))?;
    let canary = parse_percent("canary", &p.canary).map_err(invalid)?;
    let mut waves = Vec::new();
    for w in p.waves.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        waves.push(parse_percent("waves", w).map_err(invalid)?);
    }
    if waves.last() != Some(&1000) {
        return Err(invalid(format!(
            "waves: {:?} must end with 100% (e.g. 10%,50%,100%), or the rollout would never finish",
            p.waves
        )));
    }
    if waves.windows(2).any(|w| w[0] >= w[1]) || waves.first().is_some_and(|&w| w <= canary) {
        return Err(invalid(format!(
            "waves: {:?} must grow, each above the canary's {}: they are cumulative shares",
            p.waves, p.canary
        )));
    }
    let interval = humantime::parse_duration(&p.wave_interval).map_err(|e| {
        invalid(format!(
            "wave-interval: {:?}: {e}; write e.g. 10m or 30s",
            p.wave_interval
        ))
    })?;
    if interval < Duration::from_secs(1) {
        return Err(invalid(
            "wave-interval: at least 1s, or the probes cannot answer before the next wave".into(),
        ));
    }
    let max_bad = parse_percent("max-bad", &p.max_bad).map_err(invalid)?;
    for s in &p.canary_sites {
        let Some(site) = inv.sites.iter().find(|x| x.id.as_str() == s) else {
            return Err(invalid(format!("canary-site: {s} is not in the inventory")));
        };
        if !PlanBook::scopes_of(site).contains(&scope) {
            return Err(invalid(format!("canary-site: {s} is not in scope {scope}")));
        }
    }
    Ok((
        Rollout {
            id: 0,
            scope: scope.to_string(),
            version: 0,
            previous_version: 0,
            canary_permille: canary,
            waves_permille: waves,
            canary_sites: p.canary_sites.clone(),
            wave_interval_ms: interval.as_millis() as u64,
            max_bad_permille: max_bad,
            state: RolloutState::Preparing,
            wave: 0,
            started_ms: now_ms,
            wave_started_ms: now_ms,
            reason: String::new(),
            rollback_version: 0,
            started_by: by.to_string(),
            rolled_back_by: String::new(),
        },
        scope,
    ))
}

/// Every stored rollout, oldest first (unreadable ones left out).
///
/// # Errors
/// Store errors.
pub fn list(reader: &Reader) -> Result<Vec<(Rollout, RolloutRow)>, StoreError> {
    Ok(plans::rollouts(reader)?
        .into_iter()
        .filter_map(|row| Rollout::from_row(&row).map(|r| (r, row)))
        .collect())
}

/// The rollout holding `scope` back, if any.
///
/// # Errors
/// Store errors.
pub fn holding(reader: &Reader, scope: &Scope) -> Result<Option<Rollout>, StoreError> {
    Ok(list(reader)?
        .into_iter()
        .map(|(r, _)| r)
        .rfind(|r| r.state.holds_back() && r.scope().as_ref() == Some(scope)))
}

/// Validates `text` for the rollout's scope, stores it as the scope's next plan and starts
/// the rollout; returns the rollout (id and version set).
///
/// The rollout is recorded (`preparing`: the new plan held back from every site) before the
/// plan is stored, so no probe can get the plan outside the rollout, even if this stops
/// half-way.
///
/// # Errors
/// [`RolloutError::PlanFile`] (key and fix), [`RolloutError::Invalid`] (a flag), [`RolloutError::Conflict`]
/// (another rollout holds the scope), store errors.
pub fn start(
    reader: &Reader,
    inv: &Inventory,
    text: &str,
    params: &RolloutParams,
    by: &str,
) -> Result<Rollout, RolloutError> {
    let now = rie_common::now_ms();
    let (mut r, scope) = new_rollout(params, inv, by, now)?;
    let stored = plans::list(reader)?;
    super::check_file(text, Some(&scope), Some(inv), &stored).map_err(RolloutError::PlanFile)?;
    if let Some(other) = holding(reader, &scope)? {
        return Err(RolloutError::Conflict(format!(
            "rollout {} of {scope} is {}: roll it back (`plan rollback --rollout {}`) before starting another",
            other.id,
            other.state.as_str(),
            other.id
        )));
    }
    r.previous_version = stored
        .iter()
        .filter(|p| Scope::from_parts(&p.scope_kind, &p.scope_value).as_ref() == Some(&scope))
        .map(|p| p.version as u64)
        .max()
        .unwrap_or(0);
    let id = plans::insert_rollout(reader, &r.body(), now)?;
    let hash = rie_plan::content_hash(text);
    let version = plans::insert(reader, scope.kind(), scope.value(), &hash, text, now)?;
    r.id = id;
    r.version = version as u64;
    r.state = RolloutState::Running;
    r.wave_started_ms = rie_common::now_ms();
    // Revision 1 is the preparing record, written above by this call only.
    plans::update_rollout(reader, id, 1, &r.body(), r.wave_started_ms)?;
    Ok(r)
}

/// Stores the previous plan of rollout `id` (else of the latest rollout still holding a
/// scope, else the latest) again, under a new version, and marks the rollout rolled back;
/// returns it.
///
/// # Errors
/// [`RolloutError::NotFound`], [`RolloutError::Conflict`] (already rolled back; no previous
/// plan to return to), store errors.
pub fn rollback(reader: &Reader, id: Option<i64>, by: &str) -> Result<Rollout, RolloutError> {
    let all = list(reader)?;
    let found = match id {
        Some(id) => all.iter().find(|(r, _)| r.id == id),
        None => all
            .iter()
            .rfind(|(r, _)| r.state.holds_back())
            .or_else(|| all.last()),
    };
    let Some((r, row)) = found else {
        return Err(RolloutError::NotFound(match id {
            Some(id) => format!("no rollout {id}; `plan rollouts` lists them"),
            None => "no rollout to roll back".into(),
        }));
    };
    if r.state == RolloutState::RolledBack {
        return Err(RolloutError::Conflict(format!(
            "rollout {} was already rolled back (plan version {})",
            r.id, r.rollback_version
        )));
    }
    let Some(scope) = r.scope() else {
        return Err(RolloutError::Invalid(format!(
            "rollout {} has an unreadable scope {:?}",
            r.id, r.scope
        )));
    };
    if r.previous_version == 0 {
        return Err(RolloutError::Conflict(format!(
            "rollout {} stored the first plan of {scope}: there is no previous plan to return to; store a corrected plan with `plan add --scope {scope}` (it stays held back from the sites not released until then)",
            r.id
        )));
    }
    let stored = plans::list(reader)?;
    let Some(prev) = stored
        .iter()
        .find(|p| p.version as u64 == r.previous_version)
    else {
        return Err(RolloutError::NotFound(format!(
            "plan version {} (before rollout {}) is not stored",
            r.previous_version, r.id
        )));
    };
    let now = rie_common::now_ms();
    // Held back as the rollout's own plan until the rollout is marked: the released sites
    // get it at once, the others already run the same text.
    let version = plans::insert(
        reader,
        scope.kind(),
        scope.value(),
        &prev.hash,
        &prev.toml,
        now,
    )?;
    let mut next = r.clone();
    next.state = RolloutState::RolledBack;
    next.rollback_version = version as u64;
    next.rolled_back_by = by.to_string();
    let mut rev = row.rev;
    // The drive task may write a wave meanwhile: read again and mark over its revision.
    for _ in 0..10 {
        if plans::update_rollout(reader, r.id, rev, &next.body(), now)? {
            return Ok(next);
        }
        let again = list(reader)?;
        let Some((cur, row)) = again.into_iter().find(|(x, _)| x.id == r.id) else {
            break;
        };
        next = Rollout {
            state: RolloutState::RolledBack,
            rollback_version: version as u64,
            rolled_back_by: by.to_string(),
            ..cur
        };
        rev = row.rev;
    }
    Err(RolloutError::Conflict(format!(
        "rollout {} kept changing; plan version {version} restores the previous plan, run the command again to mark it",
        r.id
    )))
}

/// The order in which the sites of `scope` are released (inventory indices): the pinned
/// canary sites first, then sites picked one by one to spread the canary over ministries,
/// primary-link technologies and départements (each pick the site whose three values were
/// picked least so far), then every other site in an order fixed by the rollout's seed.
///
/// Deterministic for one inventory and seed, so collectors sharing a database agree on it.
pub fn order(
    inv: &Inventory,
    scope: &Scope,
    seed: u64,
    canary: usize,
    pinned: &[String],
) -> Vec<usize> {
    let in_scope = in_scope(inv, scope);
    // Small integer ids of each site's ministry, technology and département, by inventory
    // index (the picking loop below runs canary × sites times: array lookups only).
    let mut ids: [HashMap<String, usize>; 3] = Default::default();
    let mut key = |k: usize, v: String| {
        let n = ids[k].len();
        *ids[k].entry(v).or_insert(n)
    };
    let mut attrs: Vec<[usize; 3]> = vec![[0; 3]; inv.sites.len()];
    for &i in &in_scope {
        let s = &inv.sites[i];
        let tech = inv
            .links_of(&s.id)
            .find(|l| l.role == LinkRole::Primary)
            .map(|l| format!("{:?}", l.technology))
            .unwrap_or_default();
        attrs[i] = [
            key(0, s.ministry.clone()),
            key(1, tech),
            key(2, s.departement.clone()),
        ];
    }
    let mut used: [Vec<u32>; 3] = [0, 1, 2].map(|k| vec![0; ids[k].len().max(1)]);
    let mut rest: Vec<usize> = in_scope;
    rest.sort_by_key(|&i| (fnv1a(seed, inv.sites[i].id.as_str()), i));
    let mut out: Vec<usize> = Vec::with_capacity(rest.len());
    let take = |i: usize, out: &mut Vec<usize>, used: &mut [Vec<u32>; 3]| {
        for k in 0..3 {
            used[k][attrs[i][k]] += 1;
        }
        out.push(i);
    };
    for p in pinned {
        if let Some(pos) = rest.iter().position(|&i| inv.sites[i].id.as_str() == p) {
            let i = rest.remove(pos);
            take(i, &mut out, &mut used);
        }
    }
    while out.len() < canary && !rest.is_empty() {
        let score = |i: usize| {
            let a = attrs[i];
            used[0][a[0]] + used[1][a[1]] + used[2][a[2]]
        };
        // `rest` is in rank order: the first of the lowest score wins.
        let Some((pos, _)) = rest
            .iter()
            .enumerate()
            .min_by_key(|&(pos, &i)| (score(i), pos))
        else {
            break;
        };
        let i = rest.remove(pos);
        take(i, &mut out, &mut used);
    }
    out.extend(rest);
    out
}

/// The inventory indices of the sites `scope` covers.
fn in_scope(inv: &Inventory, scope: &Scope) -> Vec<usize> {
    (0..inv.sites.len())
        .filter(|&i| PlanBook::scopes_of(&inv.sites[i]).contains(scope))
        .collect()
}

/// FNV-1a over the seed and the text: a stable order (the standard hasher may change
/// between Rust releases, and collectors of two builds must agree).
fn fnv1a(seed: u64, s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A rollout's release order (inventory indexes) and the cumulative site counts per wave.
pub type Release = (Vec<usize>, Vec<usize>);

/// The release order of rollout `r` (its id is the seed) and the cumulative counts per wave.
pub fn plan_of(inv: &Inventory, r: &Rollout) -> Option<Release> {
    let scope = r.scope()?;
    let sites = in_scope(inv, &scope);
    let pinned = r
        .canary_sites
        .iter()
        .filter(|s| {
            sites
                .iter()
                .any(|&i| inv.sites[i].id.as_str() == s.as_str())
        })
        .count();
    let counts = r.counts(sites.len(), pinned);
    let order = order(inv, &scope, r.id as u64, counts[0], &r.canary_sites);
    Some((order, counts))
}

/// Release orders by rollout id, computed once per rollout and collector. An order depends
/// only on the inventory and on what a rollout fixes when it is created (scope, id, canary
/// share and sites), and costs about 10 ms at national scale: the gates, every look of
/// [`drive`] and every poll of the API reuse it. At most [`RELEASES_KEPT`] are kept (the
/// memo is emptied when full; the API lists fewer).
#[derive(Default)]
pub struct Releases(std::sync::Mutex<HashMap<i64, Option<Arc<Release>>>>);

const RELEASES_KEPT: usize = 64;

impl Releases {
    /// Rollout `r`'s release (`None`: its scope is unreadable).
    pub fn of(&self, inv: &Inventory, r: &Rollout) -> Option<Arc<Release>> {
        let mut memo = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if memo.len() >= RELEASES_KEPT && !memo.contains_key(&r.id) {
            memo.clear();
        }
        memo.entry(r.id)
            .or_insert_with(|| plan_of(inv, r).map(Arc::new))
            .clone()
    }
}

/// Which sites of a scope get the scope's latest plan while a rollout holds it back.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The plan version held back; `None`: every version after `previous` (preparing).
    pub version: Option<u64>,
    /// The version the other sites keep (0: none).
    pub previous: u64,
    /// By inventory index: released.
    pub released: Arc<Vec<bool>>,
}

impl Gate {
    /// The gate of rollout `r`, if it holds its scope back.
    pub fn of(inv: &Inventory, r: &Rollout, releases: &Releases) -> Option<(Scope, Gate)> {
        let scope = r.scope()?;
        let mut released = vec![false; inv.sites.len()];
        let version = match r.state {
            RolloutState::Preparing => None,
            RolloutState::Running | RolloutState::Halted => {
                let release = releases.of(inv, r)?;
                let (order, counts) = &*release;
                let n = counts.get(r.wave).copied().unwrap_or(0);
                for &i in order.iter().take(n) {
                    released[i] = true;
                }
                Some(r.version)
            }
            RolloutState::Done | RolloutState::RolledBack => return None,
        };
        Some((
            scope,
            Gate {
                version,
                previous: r.previous_version,
                released: Arc::new(released),
            },
        ))
    }

    /// Whether `version`, the scope's latest, is held back from site `idx`.
    pub fn holds(&self, version: u64, idx: usize) -> bool {
        let gated = match self.version {
            None => version > self.previous,
            Some(v) => version == v,
        };
        gated && !self.released.get(idx).copied().unwrap_or(false)
    }
}

/// One wave's sites by what their probe did with the rollout's plan.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct WaveProgress {
    pub name: String,
    /// Sites of this wave (not cumulative).
    pub sites: usize,
    /// Whether the wave has started.
    pub released: bool,
    pub applied: usize,
    /// Sent or to be sent, not answered yet (probe offline included).
    pub pending: usize,
    pub refused: usize,
    /// Applied, then turned degraded, down or silent.
    pub bad: usize,
    /// Probes one protocol version behind: they run their local checks.
    pub previous_protocol: usize,
}

/// A released site that counts against the threshold.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BadSite {
    pub site: String,
    pub wave: String,
    pub why: String,
}

/// A rollout's progress.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub scope_sites: usize,
    pub released: usize,
    pub waves: Vec<WaveProgress>,
    /// Refused and bad among the released sites.
    pub refused: usize,
    pub bad: usize,
    /// The first [`BAD_SITES_SHOWN`] of them.
    pub bad_sites: Vec<BadSite>,
}

/// Each wave's sites (`release`: [`plan_of`] `r`) classified from the stored plan statuses
/// and the sites' states.
pub fn progress(
    inv: &Inventory,
    r: &Rollout,
    (order, counts): &Release,
    statuses: &HashMap<String, StatusRow>,
    views: &[SiteView],
) -> Progress {
    let released_waves = match r.state {
        RolloutState::Preparing => 0,
        RolloutState::Done => counts.len(),
        _ => r.wave + 1,
    };
    let mut p = Progress {
        scope_sites: order.len(),
        ..Progress::default()
    };
    let mut start = 0;
    for (k, &end) in counts.iter().enumerate() {
        let mut w = WaveProgress {
            name: r.wave_name(k),
            sites: end - start,
            released: k < released_waves,
            ..WaveProgress::default()
        };
        for &i in &order[start..end] {
            if !w.released {
                continue;
            }
            let site = inv.sites[i].id.as_str();
            let why = match classify(r.version, statuses.get(site), views.get(i)) {
                Class::Applied => {
                    w.applied += 1;
                    continue;
                }
                Class::Pending => {
                    w.pending += 1;
                    continue;
                }
                Class::PreviousProtocol => {
                    w.previous_protocol += 1;
                    continue;
                }
                Class::Refused(why) => {
                    w.refused += 1;
                    why
                }
                Class::Bad(why) => {
                    w.bad += 1;
                    why
                }
            };
            if p.bad_sites.len() < BAD_SITES_SHOWN {
                p.bad_sites.push(BadSite {
                    site: site.to_string(),
                    wave: w.name.clone(),
                    why,
                });
            }
        }
        if w.released {
            p.released += w.sites;
        }
        p.refused += w.refused;
        p.bad += w.bad;
        p.waves.push(w);
        start = end;
    }
    p
}

enum Class {
    Applied,
    Pending,
    PreviousProtocol,
    Refused(String),
    Bad(String),
}

fn classify(version: u64, status: Option<&StatusRow>, view: Option<&SiteView>) -> Class {
    let Some(s) = status else {
        return Class::Pending;
    };
    if s.state == "previous_protocol" {
        return Class::PreviousProtocol;
    }
    if s.version as u64 != version {
        return Class::Pending;
    }
    match s.state.as_str() {
        "refused" => Class::Refused(format!("refused plan {version}: {}", s.reason)),
        "applied" => {
            let turned = view.and_then(|v| {
                let bad = matches!(v.state, Health::Degraded | Health::Down | Health::Silent);
                let since = v.state_since_ms?;
                (bad && since >= s.updated_ms).then(|| {
                    format!(
                        "{} since {} (applied plan {version} at {})",
                        state_name(v.state),
                        crate::indicators::rfc3339(since),
                        crate::indicators::rfc3339(s.updated_ms)
                    )
                })
            });
            turned.map_or(Class::Applied, Class::Bad)
        }
        _ => Class::Pending,
    }
}

fn state_name(s: Health) -> &'static str {
    match s {
        Health::Up => "up",
        Health::Degraded => "degraded",
        Health::OnBackup => "on backup",
        Health::Down => "down",
        Health::Silent => "silent",
        Health::Unknown => "unknown",
    }
}

/// What a running rollout does next, if anything: halt when refused and bad sites exceed
/// the threshold among the released ones (checked at every look, not only at wave ends),
/// else start the next wave, or finish, once the wave interval has passed.
pub fn decide(r: &Rollout, p: &Progress, now_ms: i64) -> Option<Rollout> {
    if r.state != RolloutState::Running {
        return None;
    }
    let against = p.refused + p.bad;
    if against * 1000 > r.max_bad_permille as usize * p.released {
        let names: Vec<String> = p
            .bad_sites
            .iter()
            .take(REASON_SITES)
            .map(|b| format!("{} ({})", b.site, b.why))
            .collect();
        let more = against.saturating_sub(names.len());
        let reason = format!(
            "halted in {}: {against} of {} released sites refused the plan or turned degraded, down or silent after applying it ({} refused, {} bad), over the {} allowed: {}{}",
            r.wave_name(r.wave),
            p.released,
            p.refused,
            p.bad,
            percent(r.max_bad_permille),
            names.join("; "),
            if more > 0 { format!("; and {more} more") } else { String::new() }
        );
        return Some(Rollout {
            state: RolloutState::Halted,
            reason,
            ..r.clone()
        });
    }
    if now_ms - r.wave_started_ms < r.wave_interval_ms as i64 {
        return None;
    }
    if r.wave >= r.waves_permille.len() {
        return Some(Rollout {
            state: RolloutState::Done,
            ..r.clone()
        });
    }
    Some(Rollout {
        wave: r.wave + 1,
        wave_started_ms: now_ms,
        ..r.clone()
    })
}

/// Gauges of the latest rollout (no per-rollout or per-site label: bounded).
#[derive(Clone)]
pub struct RolloutMetrics {
    /// Sites of the latest rollout by state: applied, pending, refused, bad,
    /// previous_protocol (released), waiting (not released yet).
    pub sites: IntGaugeVec,
    /// Its current wave (0: canary).
    pub wave: IntGauge,
    /// 1 while it is halted.
    pub halted: IntGauge,
    /// Its id (0: none).
    pub id: IntGauge,
}

impl RolloutMetrics {
    /// # Panics
    /// When registered twice in one registry.
    #[allow(clippy::expect_used)]
    pub fn register(registry: &Registry) -> Self {
        let m = Self {
            sites: IntGaugeVec::new(
                Opts::new(
                    "rie_plan_rollout_sites",
                    "Sites of the latest check plan rollout by state (applied, pending, refused, bad, previous_protocol: released; waiting: not yet).",
                ),
                &["state"],
            )
            .expect("valid metric"),
            wave: IntGauge::new(
                "rie_plan_rollout_wave",
                "Current wave of the latest check plan rollout (0: canary).",
            )
            .expect("valid metric"),
            halted: IntGauge::new(
                "rie_plan_rollout_halted",
                "1 while the latest check plan rollout is halted (see /api/v1/plans/rollouts for why).",
            )
            .expect("valid metric"),
            id: IntGauge::new("rie_plan_rollout_id", "Id of the latest check plan rollout (0: none).")
                .expect("valid metric"),
        };
        for c in [
            Box::new(m.sites.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.wave.clone()),
            Box::new(m.halted.clone()),
            Box::new(m.id.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        m
    }

    fn show(&self, r: &Rollout, p: &Progress) {
        self.id.set(r.id);
        self.wave.set(r.wave as i64);
        self.halted.set(i64::from(r.state == RolloutState::Halted));
        let sum = |f: fn(&WaveProgress) -> usize| p.waves.iter().map(f).sum::<usize>() as i64;
        for (state, n) in [
            ("applied", sum(|w| w.applied)),
            ("pending", sum(|w| w.pending)),
            ("refused", sum(|w| w.refused)),
            ("bad", sum(|w| w.bad)),
            ("previous_protocol", sum(|w| w.previous_protocol)),
            ("waiting", (p.scope_sites - p.released) as i64),
        ] {
            self.sites.with_label_values(&[state]).set(n);
        }
    }
}

/// Every rollout with its progress, newest first (at most `limit`).
///
/// # Errors
/// Store errors. Blocking.
pub fn views(
    book: &PlanBook,
    sites: &SiteRegistry,
    limit: usize,
) -> Result<Vec<(Rollout, Progress)>, StoreError> {
    let mut all = list(book.reader())?;
    all.reverse();
    all.truncate(limit);
    if all.is_empty() {
        return Ok(Vec::new());
    }
    let statuses = statuses_by_site(book.reader())?;
    let views = sites.views(rie_common::now_ms());
    Ok(all
        .into_iter()
        .map(|(r, _)| {
            let p = book.progress(&r, &statuses, &views);
            (r, p)
        })
        .collect())
}

fn statuses_by_site(reader: &Reader) -> Result<HashMap<String, StatusRow>, StoreError> {
    Ok(plans::statuses(reader)?
        .into_iter()
        .map(|s| (s.site.clone(), s))
        .collect())
}

/// Looks at running rollouts every [`DRIVE_EVERY`] until `shutdown`: halts, starts waves,
/// finishes; keeps the gauges of the latest rollout.
pub async fn drive(
    book: Arc<PlanBook>,
    sites: Arc<SiteRegistry>,
    metrics: RolloutMetrics,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(DRIVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (b, s, m) = (book.clone(), sites.clone(), metrics.clone());
        match tokio::task::spawn_blocking(move || step(&b, &s, &m)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "check plan rollouts not read"),
            Err(e) => warn!(error = %e, "check plan rollout task failed"),
        }
    }
}

fn step(book: &PlanBook, sites: &SiteRegistry, m: &RolloutMetrics) -> Result<(), StoreError> {
    let reader = book.reader();
    let all = list(reader)?;
    let Some((latest, _)) = all.last() else {
        return Ok(());
    };
    let running = all.iter().any(|(r, _)| r.state == RolloutState::Running);
    let show_latest =
        latest.state != RolloutState::RolledBack && latest.state != RolloutState::Done;
    if !running && !show_latest {
        let p = Progress::default();
        m.show(latest, &p);
        return Ok(());
    }
    let statuses = statuses_by_site(reader)?;
    let now = rie_common::now_ms();
    let views = sites.views(now);
    let latest_id = latest.id;
    // The latest rollout's progress when this look left it unchanged (shown as is).
    let mut shown: Option<(Rollout, Progress)> = None;
    for (r, row) in &all {
        if r.state != RolloutState::Running {
            continue;
        }
        let p = book.progress(r, &statuses, &views);
        let Some(next) = decide(r, &p, now) else {
            if r.id == latest_id {
                shown = Some((r.clone(), p));
            }
            continue;
        };
        if !plans::update_rollout(reader, r.id, row.rev, &next.body(), now)? {
            continue; // Another collector moved it first; looked at again next time.
        }
        match next.state {
            RolloutState::Halted => {
                warn!(rollout = r.id, reason = %next.reason, "check plan rollout halted")
            }
            RolloutState::Done => info!(
                rollout = r.id,
                version = r.version,
                "check plan rollout done: every site released"
            ),
            _ => {
                info!(rollout = r.id, wave = %next.wave_name(next.wave), "check plan rollout: next wave started")
            }
        }
    }
    if let Some((r, p)) = &shown {
        m.show(r, p);
    } else if let Some((r, _)) = list(reader)?.last() {
        let p = book.progress(r, &statuses, &views);
        m.show(r, &p);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
