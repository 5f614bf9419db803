//! Live state of every site: who is connected, when each probe last reported, which link
//! carries the traffic, and the resulting state (up, degraded, on_backup, down, silent,
//! unknown). Updated by connections (hello, heartbeat) and by the commit stage after each
//! commit; read by the API and the demo. A single `std::sync::Mutex` over a `Vec` indexed like
//! the inventory: critical sections are a few field writes, so an async lock would only add cost.
//!
//! Owns: each site's live state and its rules (`advance`), `SiteThresholds` (`[sites]`).
//! May import `inventory`; the commit stage applies what it committed, connections record
//! hellos and heartbeats, `api` and `site_gauges` read views.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use rie_proto::EpisodeKind;
use rie_proto::{Batch, LinkId, LinkRole, ProbeHealth, SiteState};
use serde::{Deserialize, Serialize};

use crate::inventory::Inventory;

/// What the collector knows of one link from the last batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkLive {
    pub link: LinkId,
    pub up: bool,
    pub active: bool,
    pub loss_ratio: Option<f64>,
    pub rtt_avg_ms: Option<f64>,
    /// Highest jitter of the last batch's samples, when the site's check plan sets a jitter
    /// threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
    /// Longest run of consecutive check intervals past a threshold, over this link's targets.
    #[serde(default)]
    pub bad_streak: u32,
    /// That run per check target (`kind:target`): a run counts intervals of one target, so
    /// that the partial intervals of several targets around a link failure or recovery do not
    /// add up to a degradation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_streaks: Vec<(String, u32)>,
}

/// Durable part of a site's live state (persisted with each batch, restored at start).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteLive {
    pub state: Option<SiteState>,
    pub state_since_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
    pub last_batch_ms: Option<i64>,
    pub protocol_version: Option<u16>,
    pub probe_version: Option<String>,
    /// Probe clock minus collector clock at the last hello or heartbeat, ms.
    pub clock_offset_ms: Option<i64>,
    pub links: Vec<LinkLive>,
    pub batches_stored: u64,
    /// The outage, failover or degraded episode in progress (row in `episodes`).
    #[serde(default)]
    pub open_episode: Option<OpenEpisode>,
    /// When the probe reported again after a silence: the end of that silent episode.
    #[serde(default)]
    pub resumed_ms: Option<i64>,
    /// When the probe last said hello (collector clock).
    #[serde(default)]
    pub hello_ms: Option<i64>,
    /// The probe's last health report (spool backlog, capture and relay losses) and when it
    /// arrived (collector clock).
    #[serde(default)]
    pub health: Option<ProbeHealth>,
    #[serde(default)]
    pub health_ms: Option<i64>,
    /// Consecutive health reports in which the spool backlog grew (0 when it shrank or held).
    #[serde(default)]
    pub backlog_growth: u32,
    /// The check plan version the probe last said it applied (`plans` keeps the details).
    #[serde(default)]
    pub plan_version: Option<u64>,
    /// Open probe connections (more than one means a duplicate probe or a reconnect race).
    #[serde(skip)]
    pub connections: u32,
    /// `updated_ms` of the stored row this state was last written as or read from (collector
    /// clock of that commit; 0: not known), to tell a newer row of another collector sharing
    /// the database from an older one ([`SiteRegistry::merge_stored`]).
    #[serde(skip)]
    pub version_ms: i64,
}

/// An episode still open, kept with the site's state so that closing it needs no lookup: it
/// is known by (site, kind, start). (Release 0.1 also persisted a row id here; it is ignored.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenEpisode {
    pub kind: EpisodeKind,
    pub start_ms: i64,
}

/// A change of site state found while storing a batch: the writer closes the open episode and
/// opens the next one in the batch's transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub to: SiteState,
    /// When it happened, collector clock (probe event time corrected by the clock offset).
    pub at_ms: i64,
    /// Link involved: the failed primary (failover), the degraded link; none when site-wide.
    pub link: Option<LinkId>,
    pub cause: String,
}

/// The state shown to users: `SiteLive` with silence applied at read time.
#[derive(Debug, Clone, Serialize)]
pub struct SiteView {
    pub state: SiteState,
    pub state_since_ms: Option<i64>,
    #[serde(flatten)]
    pub live: SiteLive,
    pub connected: bool,
    /// The probe's clock is further from the collector's than `sites.max_clock_offset`.
    pub clock_suspect: bool,
}

/// Per-role degraded thresholds from the sites' check plans (`crate::plans` implements it).
pub trait PlanThresholds: Send + Sync {
    /// The thresholds of `role` in the effective plan of the site at `site_idx`; `None`:
    /// no plan applies, the `[sites]` thresholds do.
    fn role_thresholds(&self, site_idx: usize, role: LinkRole) -> Option<rie_plan::Thresholds>;
}

pub struct SiteRegistry {
    pub inventory: Arc<Inventory>,
    thresholds: SiteThresholds,
    /// Check plans, once the collector has loaded them: their thresholds override
    /// `thresholds` per site and link role.
    plans: std::sync::OnceLock<Arc<dyn PlanThresholds>>,
    live: Mutex<Vec<SiteLive>>,
    /// Silence is counted from here at the earliest: sites cannot report while the collector
    /// itself is down, and that is not their silence.
    started_ms: i64,
}

impl SiteRegistry {
    pub fn new(inventory: Arc<Inventory>, thresholds: SiteThresholds) -> Self {
        let live = Mutex::new(vec![SiteLive::default(); inventory.sites.len()]);
        Self {
            inventory,
            thresholds,
            plans: std::sync::OnceLock::new(),
            live,
            started_ms: rie_common::now_ms(),
        }
    }

    /// From now on, a site's check plan gives the degraded thresholds of its links, by role.
    pub fn use_plan_thresholds(&self, plans: Arc<dyn PlanThresholds>) {
        let _ = self.plans.set(plans);
    }

    /// The degraded thresholds of a link of `role` at the site at `idx`: its plan's, else
    /// the `[sites]` ones.
    pub fn thresholds_for(&self, idx: usize, role: LinkRole) -> SiteThresholds {
        let mut t = self.thresholds.clone();
        if let Some(p) = self.plans.get().and_then(|p| p.role_thresholds(idx, role)) {
            t.degraded_loss_ratio = p.max_loss_pct / 100.0;
            t.degraded_rtt = Duration::from_millis(u64::from(p.max_rtt_ms));
            t.degraded_jitter = Some(Duration::from_millis(u64::from(p.max_jitter_ms)));
        }
        t
    }

    /// Sets when the collector started (tests and benches replay fixed clocks).
    pub fn starting_at(mut self, started_ms: i64) -> Self {
        self.started_ms = started_ms;
        self
    }

    pub fn thresholds(&self) -> &SiteThresholds {
        &self.thresholds
    }

    fn silent_ms(&self) -> i64 {
        self.thresholds.silent_after.as_millis() as i64
    }

    /// Records a sign of life; after a silence, remembers when it ended.
    fn touch(&self, s: &mut SiteLive, now_ms: i64) {
        let quiet_since = s.last_seen_ms.map(|seen| seen.max(self.started_ms));
        if quiet_since.is_some_and(|q| now_ms - q > self.silent_ms()) {
            s.resumed_ms = Some(now_ms);
        }
        s.last_seen_ms = Some(now_ms);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<SiteLive>> {
        // A panic while holding this lock leaves plain data, still consistent field by field.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Restores persisted state at start-up (connections are, by definition, zero).
    pub fn restore(&self, idx: usize, live: SiteLive) {
        if let Some(slot) = self.lock().get_mut(idx) {
            *slot = SiteLive {
                connections: 0,
                ..live
            };
        }
    }

    /// Takes a site's state as another collector sharing the database committed it (`version_ms`:
    /// its row's `updated_ms`), unless it is not newer than the state held, or a probe of the
    /// site is connected here and this collector stored a batch of it at least as recent (the
    /// fresher local state wins). Connections, and the latest sign of life and end of silence,
    /// are kept from both. Returns whether the state was taken.
    pub fn merge_stored(&self, idx: usize, stored: SiteLive, version_ms: i64) -> bool {
        let mut live = self.lock();
        let Some(cur) = live.get_mut(idx) else {
            return false;
        };
        if version_ms <= cur.version_ms
            || (cur.connections > 0 && cur.last_batch_ms >= stored.last_batch_ms)
        {
            return false;
        }
        *cur = SiteLive {
            connections: cur.connections,
            last_seen_ms: cur.last_seen_ms.max(stored.last_seen_ms),
            resumed_ms: cur.resumed_ms.max(stored.resumed_ms),
            version_ms,
            ..stored
        };
        true
    }

    /// Sites with a probe connected here and their last sign of life.
    pub fn connected_seen(&self) -> Vec<(usize, i64)> {
        self.lock()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.connections > 0)
            .filter_map(|(i, s)| Some((i, s.last_seen_ms?)))
            .collect()
    }

    pub fn on_hello(
        &self,
        idx: usize,
        version: u16,
        probe_version: &str,
        offset_ms: i64,
        now_ms: i64,
    ) {
        let mut live = self.lock();
        let s = &mut live[idx];
        s.connections += 1;
        self.touch(s, now_ms);
        s.protocol_version = Some(version);
        s.probe_version = Some(probe_version.to_string());
        s.clock_offset_ms = Some(offset_ms);
        s.hello_ms = Some(now_ms);
    }

    pub fn on_disconnect(&self, idx: usize) {
        let mut live = self.lock();
        live[idx].connections = live[idx].connections.saturating_sub(1);
    }

    pub fn on_heartbeat(
        &self,
        idx: usize,
        offset_ms: i64,
        health: Option<ProbeHealth>,
        now_ms: i64,
    ) {
        let mut live = self.lock();
        let s = &mut live[idx];
        self.touch(s, now_ms);
        s.clock_offset_ms = Some(offset_ms);
        if let Some(h) = health {
            let before = s.health.map(|p| p.spool_batches);
            s.backlog_growth = match before {
                Some(b) if h.spool_batches > b => s.backlog_growth.saturating_add(1),
                _ => 0,
            };
            s.health = Some(h);
            s.health_ms = Some(now_ms);
        }
    }

    /// The probe applied check plan `version`.
    pub fn on_plan_applied(&self, idx: usize, version: u64) {
        let mut live = self.lock();
        let s = &mut live[idx];
        s.plan_version = s.plan_version.max(Some(version));
    }

    /// What to subtract from the probe's timestamps to put them on the collector's clock.
    ///
    /// The offset measured at hello includes the network's one-way delay and the hello's
    /// handling (tens of milliseconds), so within `max_clock_offset` the probe's NTP-disciplined
    /// clock is the better source and is trusted as is; beyond it, the measured offset is
    /// applied (and the site flagged).
    pub fn clock_correction_ms(&self, idx: usize) -> i64 {
        self.correction(self.lock()[idx].clock_offset_ms)
    }

    fn correction(&self, offset_ms: Option<i64>) -> i64 {
        let max = self.thresholds.max_clock_offset.as_millis() as i64;
        offset_ms.filter(|o| o.abs() > max).unwrap_or(0)
    }

    /// A copy of the site's live state.
    pub fn current(&self, idx: usize) -> SiteLive {
        self.lock()[idx].clone()
    }

    /// The state a site will have once `batch` is stored, from `base` (the commit stage chains
    /// several batches of one site in one commit), and the state change if there is one. Pure
    /// with respect to the registry, so the writer can persist both in the batch's transaction
    /// and [`SiteRegistry::apply`] the state after.
    ///
    /// State changes are dated by the probe's own event time (the link change, else the batch's
    /// creation), corrected by the clock offset: batches replayed from the probe's spool after an
    /// outage then rebuild the outage with its real start and end, not the replay time.
    pub fn advance(
        &self,
        idx: usize,
        base: SiteLive,
        batch: &Batch,
        now_ms: i64,
    ) -> (SiteLive, Option<Transition>) {
        let mut next = base;
        let site = &self.inventory.sites[idx];
        let by_role = |role| self.thresholds_for(idx, role);
        let links = evaluate_links(
            &self.inventory,
            &site.id,
            batch,
            next.links.as_slice(),
            &by_role,
        );
        let verdict = site_state(&self.inventory, &site.id, &links, &by_role);
        let offset = self.correction(next.clock_offset_ms);
        let mut transition = None;
        if next.state != Some(verdict.state) {
            // The first link change that this batch reports, else when the batch was closed.
            let event = batch
                .links
                .iter()
                .filter(|st| {
                    next.links
                        .iter()
                        .find(|p| p.link == st.link)
                        .is_none_or(|p| p.up != st.up || p.active != st.active)
                })
                .filter_map(|st| st.changed_ms)
                .min()
                .unwrap_or(batch.created_ms);
            let floor = next.state_since_ms.unwrap_or(i64::MIN);
            let at = (event - offset).clamp(floor.min(now_ms), now_ms);
            next.state = Some(verdict.state);
            next.state_since_ms = Some(at);
            transition = Some(Transition {
                to: verdict.state,
                at_ms: at,
                link: verdict.link,
                cause: verdict.cause,
            });
        }
        next.links = links;
        self.touch(&mut next, now_ms);
        next.last_batch_ms = Some(now_ms);
        next.batches_stored += 1;
        (next, transition)
    }

    /// Installs the state computed by [`SiteRegistry::advance`], keeping live connection facts.
    pub fn apply(&self, idx: usize, next: SiteLive) {
        let mut live = self.lock();
        let cur = &mut live[idx];
        *cur = SiteLive {
            connections: cur.connections,
            clock_offset_ms: cur.clock_offset_ms.or(next.clock_offset_ms),
            protocol_version: cur.protocol_version.or(next.protocol_version),
            probe_version: cur.probe_version.clone().or(next.probe_version),
            // A hello racing with the commit may have seen the end of a silence first.
            resumed_ms: cur.resumed_ms.max(next.resumed_ms),
            // Hellos and health reports arrive beside batches: the newest wins.
            hello_ms: cur.hello_ms.max(next.hello_ms),
            health: if cur.health_ms >= next.health_ms {
                cur.health
            } else {
                next.health
            },
            health_ms: cur.health_ms.max(next.health_ms),
            // Plan versions only grow.
            plan_version: cur.plan_version.max(next.plan_version),
            backlog_growth: if cur.health_ms >= next.health_ms {
                cur.backlog_growth
            } else {
                next.backlog_growth
            },
            last_seen_ms: cur.last_seen_ms.max(next.last_seen_ms),
            ..next
        };
    }

    pub fn view(&self, idx: usize, now_ms: i64) -> SiteView {
        let live = self.lock()[idx].clone();
        self.to_view(live, now_ms)
    }

    /// Views of every site, in inventory order (one lock for all: a consistent picture).
    pub fn views(&self, now_ms: i64) -> Vec<SiteView> {
        let all = self.lock().clone();
        all.into_iter().map(|l| self.to_view(l, now_ms)).collect()
    }

    fn to_view(&self, live: SiteLive, now_ms: i64) -> SiteView {
        let (state, since) = match (live.last_seen_ms, live.state) {
            (None, _) => (SiteState::Unknown, None),
            (Some(seen), _) if now_ms - seen.max(self.started_ms) > self.silent_ms() => {
                (SiteState::Silent, Some(seen))
            }
            (Some(seen), None) => (SiteState::Up, Some(seen)),
            (Some(_), Some(s)) => (s, live.state_since_ms),
        };
        let max_offset = self.thresholds.max_clock_offset.as_millis() as i64;
        SiteView {
            state,
            state_since_ms: since,
            connected: live.connections > 0,
            clock_suspect: live
                .clock_offset_ms
                .is_some_and(|o| o.unsigned_abs() > max_offset.unsigned_abs()),
            live,
        }
    }
}

/// Per-link facts from a batch; links the batch does not mention keep their last values, and
/// links the probe has never reported (no status, no sample) are left out rather than assumed
/// up: a backup nobody measured must not turn an outage into `on_backup`.
fn evaluate_links(
    inv: &Inventory,
    site: &rie_proto::SiteId,
    batch: &Batch,
    prev: &[LinkLive],
    thresholds: &dyn Fn(LinkRole) -> SiteThresholds,
) -> Vec<LinkLive> {
    inv.links_of(site)
        .filter(|l| {
            prev.iter().any(|p| p.link == l.id)
                || batch.links.iter().any(|s| s.link == l.id)
                || batch.samples.iter().any(|s| s.link == l.id)
        })
        .map(|l| {
            let t = &thresholds(l.role);
            let mut cur = prev
                .iter()
                .find(|p| p.link == l.id)
                .cloned()
                .unwrap_or(LinkLive {
                    link: l.id.clone(),
                    up: true,
                    active: l.role == LinkRole::Primary,
                    loss_ratio: None,
                    rtt_avg_ms: None,
                    jitter_ms: None,
                    bad_streak: 0,
                    target_streaks: Vec::new(),
                });
            let reported = batch.links.iter().find(|s| s.link == l.id);
            if let Some(st) = reported {
                // Loss and latency measured while the link was down say nothing of it now.
                if st.up && !cur.up {
                    cur.loss_ratio = None;
                    cur.rtt_avg_ms = None;
                    cur.bad_streak = 0;
                    cur.target_streaks.clear();
                }
                cur.up = st.up;
                cur.active = st.active;
            }
            let samples: Vec<_> = batch.samples.iter().filter(|s| s.link == l.id).collect();
            if !samples.is_empty() {
                let sent: u64 = samples.iter().map(|s| u64::from(s.sent)).sum();
                let recv: u64 = samples
                    .iter()
                    .map(|s| u64::from(s.received.min(s.sent)))
                    .sum();
                cur.loss_ratio = Some(if sent == 0 {
                    1.0
                } else {
                    1.0 - recv as f64 / sent as f64
                });
                let (sum, n) = samples
                    .iter()
                    .filter_map(|s| {
                        s.rtt_avg_us
                            .map(|r| (f64::from(r) * f64::from(s.received), s.received))
                    })
                    .fold((0.0, 0u64), |(a, n), (x, k)| (a + x, n + u64::from(k)));
                cur.rtt_avg_ms = (n > 0).then(|| sum / n as f64 / 1000.0);
                let rtt_limit_us = t.degraded_rtt.as_micros() as f64;
                let jitter_limit_us = t.degraded_jitter.map(|j| j.as_micros() as f64);
                cur.jitter_ms = jitter_limit_us.and_then(|_| {
                    samples
                        .iter()
                        .filter_map(|s| s.jitter_us)
                        .max()
                        .map(|j| f64::from(j) / 1000.0)
                });
                for s in &samples {
                    // A target that answered nothing says the link is down, not degraded:
                    // reachability decides that, and counting it here would make a
                    // `degraded` blip ahead of every failover the checks find.
                    let bad = s.received > 0
                        && (s.loss_ratio() >= t.degraded_loss_ratio
                            || s.rtt_avg_us.is_some_and(|r| f64::from(r) >= rtt_limit_us)
                            || jitter_limit_us.is_some_and(|limit| {
                                s.jitter_us.is_some_and(|j| f64::from(j) >= limit)
                            }));
                    let key = format!("{}:{}", s.check.as_str(), s.target);
                    let i = match cur.target_streaks.iter().position(|(k, _)| *k == key) {
                        Some(i) => i,
                        None => {
                            cur.target_streaks.push((key, 0));
                            cur.target_streaks.len() - 1
                        }
                    };
                    let n = &mut cur.target_streaks[i].1;
                    *n = if bad { n.saturating_add(1) } else { 0 };
                }
                cur.bad_streak = cur
                    .target_streaks
                    .iter()
                    .map(|(_, n)| *n)
                    .max()
                    .unwrap_or(0);
                // The probe's own link status already weighs its checks (over several polls, with
                // the interface and the route); only a batch without it (an older probe, samples
                // alone) lets the collector infer: a link that answered nothing does not reach
                // the core, whatever its interface says.
                if reported.is_none() && sent > 0 && recv == 0 {
                    cur.up = false;
                }
            }
            cur
        })
        .collect()
}

/// One decimal with a decimal comma, as the NOC reads it ("12,5").
fn decimal_fr(v: f64) -> String {
    format!("{v:.1}").replace('.', ",")
}

/// A site state with what explains it (in French: the NOC's status page and reports show it).
struct Verdict {
    state: SiteState,
    link: Option<LinkId>,
    cause: String,
}

/// Site state from its links: down when no link is up; on_backup when the primary is down or
/// not carrying traffic while a backup is up; degraded when the link carrying traffic has been
/// past the loss or latency threshold for `degraded_after` check intervals in a row on one of
/// its targets (one interval alone is often the partial interval in which a link fails or
/// recovers, and would flap).
fn site_state(
    inv: &Inventory,
    site: &rie_proto::SiteId,
    links: &[LinkLive],
    thresholds: &dyn Fn(LinkRole) -> SiteThresholds,
) -> Verdict {
    let verdict = |state, link: Option<&LinkLive>, cause: String| Verdict {
        state,
        link: link.map(|l| l.link.clone()),
        cause,
    };
    if links.is_empty() {
        return verdict(SiteState::Up, None, String::new());
    }
    if !links.iter().any(|l| l.up) {
        let ids: Vec<&str> = links.iter().map(|l| l.link.as_str()).collect();
        return verdict(
            SiteState::Down,
            None,
            format!(
                "aucun lien n'atteint le cœur de réseau ({} en panne)",
                ids.join(", ")
            ),
        );
    }
    let role = |id: &LinkId| inv.links_of(site).find(|l| &l.id == id).map(|l| l.role);
    let primary = links
        .iter()
        .find(|l| role(&l.link) == Some(LinkRole::Primary));
    let carrying = links
        .iter()
        .find(|l| l.active && l.up)
        .or_else(|| links.iter().find(|l| l.up));
    if let (Some(p), Some(c)) = (primary, carrying) {
        if !(p.up && p.active) && role(&c.link) == Some(LinkRole::Backup) {
            let why = if p.up {
                "ne porte plus le trafic"
            } else {
                "en panne"
            };
            return verdict(
                SiteState::OnBackup,
                Some(p),
                format!(
                    "lien principal {} {why} ; le secours {} porte le trafic",
                    p.link, c.link
                ),
            );
        }
    }
    let Some(c) = carrying else {
        return verdict(SiteState::Up, None, String::new());
    };
    let t = &thresholds(role(&c.link).unwrap_or(LinkRole::Primary));
    let rtt_limit_ms = t.degraded_rtt.as_secs_f64() * 1000.0;
    if c.bad_streak < t.degraded_after {
        return verdict(SiteState::Up, None, String::new());
    }
    if let Some(loss) = c.loss_ratio.filter(|l| *l >= t.degraded_loss_ratio) {
        return verdict(
            SiteState::Degraded,
            Some(c),
            format!(
                "pertes {} % sur {} (seuil {} %)",
                decimal_fr(loss * 100.0),
                c.link,
                decimal_fr(t.degraded_loss_ratio * 100.0)
            ),
        );
    }
    if let Some(rtt) = c.rtt_avg_ms.filter(|r| *r >= rtt_limit_ms) {
        return verdict(
            SiteState::Degraded,
            Some(c),
            format!(
                "latence {rtt:.0} ms sur {} (seuil {rtt_limit_ms:.0} ms)",
                c.link
            ),
        );
    }
    if let (Some(limit), Some(jitter)) = (t.degraded_jitter, c.jitter_ms) {
        let limit_ms = limit.as_secs_f64() * 1000.0;
        if jitter >= limit_ms {
            return verdict(
                SiteState::Degraded,
                Some(c),
                format!(
                    "gigue {jitter:.0} ms sur {} (seuil {limit_ms:.0} ms)",
                    c.link
                ),
            );
        }
    }
    verdict(SiteState::Up, None, String::new())
}

// --- configuration (`[sites]` of the collector config file) ---

/// When a site counts as degraded or silent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteThresholds {
    /// No batch nor heartbeat for this long: the site is `silent`.
    #[serde(default = "default_silent_after", with = "humantime_serde")]
    pub silent_after: Duration,
    /// Loss on the active link at or above this ratio: `degraded`.
    #[serde(default = "default_degraded_loss")]
    pub degraded_loss_ratio: f64,
    /// Average RTT on the active link at or above this: `degraded`.
    #[serde(default = "default_degraded_rtt", with = "humantime_serde")]
    pub degraded_rtt: Duration,
    /// Check intervals in a row past a threshold (on one target) before a site is `degraded`
    /// (1: at once).
    #[serde(default = "default_degraded_after")]
    pub degraded_after: u32,
    /// A probe clock further than this from the collector's is flagged (API `clock_suspect`,
    /// log warning); timestamps are corrected by the measured offset either way.
    #[serde(default = "default_max_clock_offset", with = "humantime_serde")]
    pub max_clock_offset: Duration,
    /// Jitter at or above this on the active link: `degraded`. Not a config key: set from a
    /// site's check plan only (`thresholds_for`).
    #[serde(skip)]
    pub degraded_jitter: Option<Duration>,
}

impl Default for SiteThresholds {
    fn default() -> Self {
        Self {
            silent_after: default_silent_after(),
            degraded_loss_ratio: default_degraded_loss(),
            degraded_rtt: default_degraded_rtt(),
            degraded_after: default_degraded_after(),
            max_clock_offset: default_max_clock_offset(),
            degraded_jitter: None,
        }
    }
}

fn default_silent_after() -> Duration {
    Duration::from_secs(35)
}

fn default_degraded_loss() -> f64 {
    0.05
}

fn default_degraded_rtt() -> Duration {
    Duration::from_millis(700)
}

fn default_degraded_after() -> u32 {
    2
}

fn default_max_clock_offset() -> Duration {
    Duration::from_secs(2)
}

impl SiteThresholds {
    /// Checks values that parse but cannot work; `Err((key, message))` names the key in the
    /// collector's config file and a right value.
    ///
    /// # Errors
    /// The first key at fault.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(0.0..=1.0).contains(&self.degraded_loss_ratio) || self.degraded_loss_ratio == 0.0 {
            return Err((
                "sites.degraded_loss_ratio",
                "must be in ]0, 1]; e.g. 0.05".into(),
            ));
        }
        if self.degraded_after == 0 {
            return Err((
                "sites.degraded_after",
                "must be at least 1 (batches in a row); e.g. 2".into(),
            ));
        }
        if self.silent_after < Duration::from_secs(1) {
            return Err((
                "sites.silent_after",
                "must be at least 1s; e.g. \"35s\"".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::inventory::{Link, Site};
    use rie_proto::{AvailabilitySample, CheckKind, LinkStatus, SiteId, Technology};

    /// A backlog "keeps growing" after `fleet::GROWING_REPORTS` reports in a row that each
    /// hold more batches than the one before; a report that holds as many or fewer starts over.
    #[test]
    fn backlog_growth_counts_reports_in_a_row() {
        let r = registry();
        let hb = |batches: u64, at: i64| {
            let h = ProbeHealth {
                spool_batches: batches,
                ..Default::default()
            };
            r.on_heartbeat(0, 0, Some(h), at);
            let v = r.view(0, at);
            (v.live.backlog_growth, crate::fleet::backlog_growing(&v))
        };
        assert_eq!(hb(5, 1_000), (0, false));
        assert_eq!(hb(9, 2_000), (1, false));
        assert_eq!(hb(12, 3_000), (2, false));
        assert_eq!(hb(20, 4_000), (3, true));
        assert_eq!(hb(20, 5_000), (0, false), "held: no longer growing");
        assert_eq!(hb(25, 6_000), (1, false));
        // A heartbeat of an older probe carries no health: the last report stays.
        r.on_heartbeat(0, 0, None, 7_000);
        let v = r.view(0, 7_000);
        assert_eq!(
            (v.live.health.map(|h| h.spool_batches), v.live.health_ms),
            (Some(25), Some(6_000))
        );
    }

    /// One site S1 with a primary P and a backup B, started at time 0.
    pub(crate) fn registry() -> SiteRegistry {
        let site = Site {
            id: SiteId::new("S1").unwrap(),
            name: "n".into(),
            ministry: "m".into(),
            departement: "35".into(),
            agents: 10,
            latitude: 48.0,
            longitude: -1.6,
            credential_ref: "c".into(),
            exporters: vec![],
            prefixes: Vec::new(),
        };
        let link = |id: &str, role| Link {
            id: LinkId::new(id).unwrap(),
            site: site.id.clone(),
            role,
            operator: "o".into(),
            technology: Technology::Fibre,
            bandwidth_mbps: 100.0,
            monthly_cost_cents: 100,
        };
        let inv = Inventory::index(
            vec![site.clone()],
            vec![link("P", LinkRole::Primary), link("B", LinkRole::Backup)],
        );
        SiteRegistry::new(Arc::new(inv), SiteThresholds::default()).starting_at(0)
    }

    /// Another collector's stored state is taken when newer, never when older, and never over
    /// the fresher state of a probe connected here; connections and the latest sign of life
    /// are kept.
    #[test]
    fn a_stored_state_of_another_collector_is_taken_only_when_newer() {
        let r = registry();
        let stored = |state, batch_ms, seen_ms| SiteLive {
            state: Some(state),
            state_since_ms: Some(batch_ms),
            last_seen_ms: Some(seen_ms),
            last_batch_ms: Some(batch_ms),
            ..SiteLive::default()
        };
        assert!(r.merge_stored(0, stored(SiteState::OnBackup, 1_000, 1_000), 1_005));
        assert_eq!(r.current(0).state, Some(SiteState::OnBackup));
        assert_eq!(r.current(0).version_ms, 1_005);
        // An older row (a reload racing with a notification) changes nothing.
        assert!(!r.merge_stored(0, stored(SiteState::Up, 900, 900), 1_004));
        assert!(!r.merge_stored(0, stored(SiteState::Up, 900, 900), 1_005));
        assert_eq!(r.current(0).state, Some(SiteState::OnBackup));
        // A probe connected here that stored a batch at 2,000: a row of another collector
        // about an earlier batch does not clobber it, a later one does.
        r.on_hello(0, 1, "p", 0, 2_500);
        r.apply(
            0,
            SiteLive {
                version_ms: 2_001,
                ..stored(SiteState::Down, 2_000, 2_000)
            },
        );
        assert!(!r.merge_stored(0, stored(SiteState::Up, 1_500, 1_500), 3_000));
        assert_eq!(r.current(0).state, Some(SiteState::Down));
        assert!(r.merge_stored(0, stored(SiteState::Up, 2_600, 2_600), 3_001));
        let cur = r.current(0);
        assert_eq!(
            (cur.state, cur.connections, cur.last_seen_ms),
            (Some(SiteState::Up), 1, Some(2_600))
        );
        assert_eq!(r.connected_seen(), vec![(0, 2_600)]);
        r.on_disconnect(0);
        assert_eq!(r.connected_seen(), vec![]);
    }

    fn batch(links: &[(&str, bool, bool)], loss: Option<(&str, u32, u32, u32)>) -> Batch {
        Batch {
            top_talkers: Vec::new(),
            seq: 1,
            created_ms: 0,
            flows: vec![],
            links: links
                .iter()
                .map(|(id, up, active)| LinkStatus {
                    link: LinkId::new(*id).unwrap(),
                    up: *up,
                    active: *active,
                    changed_ms: None,
                })
                .collect(),
            samples: loss
                .map(|(id, sent, received, rtt)| AvailabilitySample {
                    link: LinkId::new(id).unwrap(),
                    check: CheckKind::Icmp,
                    target: "core".into(),
                    start: 0,
                    interval_s: 10,
                    sent,
                    received,
                    rtt_min_us: None,
                    rtt_avg_us: Some(rtt),
                    rtt_max_us: None,
                    rtt_p95_us: None,
                    jitter_us: None,
                })
                .into_iter()
                .collect(),
        }
    }

    fn prepare(r: &SiteRegistry, b: &Batch, now_ms: i64) -> SiteLive {
        let b = Batch {
            top_talkers: Vec::new(),
            created_ms: now_ms,
            ..b.clone()
        };
        r.advance(0, r.current(0), &b, now_ms).0
    }

    /// The state after the same batch twice (degradation needs two batches in a row).
    fn state_after(b: &Batch) -> SiteState {
        let r = registry();
        let next = prepare(&r, b, 1_000);
        r.apply(0, next);
        let next = prepare(&r, b, 2_000);
        r.apply(0, next);
        r.view(0, 2_000).state
    }

    /// Thresholds of a check plan: primary 1 % loss, 50 ms, 5 ms jitter.
    struct Strict;
    impl PlanThresholds for Strict {
        fn role_thresholds(&self, _: usize, role: LinkRole) -> Option<rie_plan::Thresholds> {
            (role == LinkRole::Primary).then_some(rie_plan::Thresholds {
                max_loss_pct: 1.0,
                max_rtt_ms: 50,
                max_jitter_ms: 5,
            })
        }
    }

    #[test]
    fn a_site_plan_sets_the_degraded_thresholds_of_its_links_by_role() {
        let twice = |r: &SiteRegistry, b: &Batch| {
            for t in [1_000, 2_000] {
                let next = prepare(r, b, t);
                r.apply(0, next);
            }
            r.view(0, 2_000)
        };
        // 2 % loss and 60 ms: within the [sites] thresholds (5 %, 700 ms), past the plan's.
        let lossy = batch(&[("P", true, true)], Some(("P", 100, 98, 20_000)));
        let slow = batch(&[("P", true, true)], Some(("P", 100, 100, 60_000)));
        assert_eq!(state_after(&lossy), SiteState::Up);
        assert_eq!(state_after(&slow), SiteState::Up);
        let r = registry();
        r.use_plan_thresholds(Arc::new(Strict));
        assert_eq!(
            r.thresholds_for(0, LinkRole::Backup).degraded_loss_ratio,
            0.05
        );
        assert_eq!(twice(&r, &lossy).state, SiteState::Degraded);
        let r = registry();
        r.use_plan_thresholds(Arc::new(Strict));
        let v = twice(&r, &slow);
        assert_eq!(v.state, SiteState::Degraded);
        // Jitter counts only under a plan.
        let mut jittery = batch(&[("P", true, true)], Some(("P", 100, 100, 20_000)));
        jittery.samples[0].jitter_us = Some(8_000);
        assert_eq!(state_after(&jittery), SiteState::Up);
        let r = registry();
        r.use_plan_thresholds(Arc::new(Strict));
        assert_eq!(twice(&r, &jittery).state, SiteState::Degraded);
    }

    #[test]
    fn states_follow_links_and_thresholds() {
        assert_eq!(
            state_after(&batch(&[("P", true, true), ("B", true, false)], None)),
            SiteState::Up
        );
        assert_eq!(
            state_after(&batch(&[("P", false, false), ("B", true, true)], None)),
            SiteState::OnBackup
        );
        assert_eq!(
            state_after(&batch(&[("P", false, false), ("B", false, false)], None)),
            SiteState::Down
        );
        assert_eq!(
            state_after(&batch(&[("P", true, true)], Some(("P", 100, 90, 20_000)))),
            SiteState::Degraded
        );
        assert_eq!(
            state_after(&batch(&[("P", true, true)], Some(("P", 100, 100, 800_000)))),
            SiteState::Degraded
        );
        assert_eq!(
            state_after(&batch(&[("P", true, true)], Some(("P", 100, 99, 20_000)))),
            SiteState::Up
        );
        // Samples alone (no link status from the probe): nothing answers across the primary,
        // so it does not reach the core and the backup carries.
        assert_eq!(
            state_after(&batch(&[("B", true, false)], Some(("P", 10, 0, 0)))),
            SiteState::OnBackup
        );
        // With the probe's link status, the probe decides: one unanswered interval is not a
        // failure it has confirmed.
        assert_eq!(
            state_after(&batch(
                &[("P", true, true), ("B", true, false)],
                Some(("P", 10, 0, 0))
            )),
            SiteState::Up
        );
    }

    #[test]
    fn a_link_never_reported_is_not_assumed_up() {
        // Only the primary is reported, down: the unmeasured backup does not make it on_backup.
        assert_eq!(
            state_after(&batch(&[("P", false, false)], None)),
            SiteState::Down
        );
        let r = registry();
        let n = prepare(&r, &batch(&[("P", true, true)], None), 1_000);
        assert_eq!(n.links.len(), 1);
    }

    #[test]
    fn one_bad_interval_is_not_a_degradation() {
        let r = registry();
        let lossy = batch(&[("P", true, true)], Some(("P", 100, 80, 20_000)));
        let clean = batch(&[("P", true, true)], Some(("P", 100, 100, 20_000)));
        for (b, t, want) in [
            (&lossy, 1_000, SiteState::Up),
            (&clean, 2_000, SiteState::Up),
            (&lossy, 3_000, SiteState::Up),
            (&lossy, 4_000, SiteState::Degraded),
        ] {
            let n = prepare(&r, b, t);
            r.apply(0, n);
            assert_eq!(r.view(0, t).state, want, "at {t}");
        }
        assert_eq!(r.view(0, 4_000).state_since_ms, Some(4_000));
    }

    #[test]
    fn silence_and_unknown_are_read_time_overlays() {
        let r = registry();
        assert_eq!(r.view(0, 0).state, SiteState::Unknown);
        r.on_hello(0, 1, "0.1.0", 0, 1_000);
        assert_eq!(r.view(0, 1_000).state, SiteState::Up);
        let silent = 1_000 + SiteThresholds::default().silent_after.as_millis() as i64 + 1;
        let v = r.view(0, silent);
        assert_eq!(
            (v.state, v.state_since_ms),
            (SiteState::Silent, Some(1_000))
        );
    }

    #[test]
    fn state_since_changes_only_on_transition() {
        let r = registry();
        let b = batch(&[("P", true, true)], None);
        let n = prepare(&r, &b, 1_000);
        r.apply(0, n);
        let n = prepare(&r, &b, 2_000);
        r.apply(0, n);
        assert_eq!(r.view(0, 2_000).state_since_ms, Some(1_000));
        let n = prepare(
            &r,
            &batch(&[("P", false, false), ("B", true, true)], None),
            3_000,
        );
        r.apply(0, n);
        assert_eq!(r.view(0, 3_000).state_since_ms, Some(3_000));
    }

    pub(crate) fn link_batch(created_ms: i64, links: &[(&str, bool, bool, Option<i64>)]) -> Batch {
        let mut b = batch(&[], None);
        b.created_ms = created_ms;
        b.links = links
            .iter()
            .map(|(id, up, active, changed)| LinkStatus {
                link: LinkId::new(*id).unwrap(),
                up: *up,
                active: *active,
                changed_ms: *changed,
            })
            .collect();
        b
    }

    #[test]
    fn transitions_are_dated_by_the_probe_event_corrected_by_the_clock_offset() {
        let r = registry();
        // The probe's clock is 5 s ahead of the collector's.
        r.on_hello(0, 1, "0.1.0", 5_000, 100_000);
        let up = link_batch(
            105_000,
            &[("P", true, true, None), ("B", true, false, None)],
        );
        let (n, t) = r.advance(0, r.current(0), &up, 100_000);
        assert_eq!(t.map(|t| (t.to, t.at_ms)), Some((SiteState::Up, 100_000)));
        r.apply(0, n);
        // Replayed late (received at 500 s): the primary failed at 205 s probe time.
        let fail = link_batch(
            206_000,
            &[
                ("P", false, false, Some(205_000)),
                ("B", true, true, Some(205_400)),
            ],
        );
        let (n, t) = r.advance(0, r.current(0), &fail, 500_000);
        let t = t.unwrap();
        assert_eq!((t.to, t.at_ms), (SiteState::OnBackup, 200_000));
        assert_eq!(t.link.unwrap().as_str(), "P");
        assert_eq!(
            t.cause,
            "lien principal P en panne ; le secours B porte le trafic"
        );
        assert_eq!(n.state_since_ms, Some(200_000));
        r.apply(0, n);
        // Same state again: no transition.
        let (_, t) = r.advance(0, r.current(0), &fail, 510_000);
        assert_eq!(t, None);
        // Both down: an outage, site-wide.
        let down = link_batch(
            300_000,
            &[
                ("P", false, false, Some(205_000)),
                ("B", false, false, Some(299_000)),
            ],
        );
        let (_, t) = r.advance(0, r.current(0), &down, 510_000);
        let t = t.unwrap();
        assert_eq!((t.to, t.at_ms, t.link), (SiteState::Down, 294_000, None));
        assert_eq!(
            t.cause,
            "aucun lien n'atteint le cœur de réseau (P, B en panne)"
        );
    }

    #[test]
    fn a_probe_clock_in_the_future_cannot_date_a_change_after_its_arrival() {
        let r = registry();
        let b = link_batch(9_000_000, &[("P", false, false, Some(9_000_000))]);
        let (_, t) = r.advance(0, r.current(0), &b, 1_000);
        assert_eq!(t.unwrap().at_ms, 1_000);
    }

    #[test]
    fn touch_after_silence_records_the_end_of_the_silence() {
        let r = registry();
        r.on_hello(0, 1, "0.1.0", 0, 1_000);
        r.on_heartbeat(0, 0, None, 20_000);
        assert_eq!(r.current(0).resumed_ms, None);
        r.on_heartbeat(0, 0, None, 100_000);
        assert_eq!(r.current(0).resumed_ms, Some(100_000));
    }

    #[test]
    fn silence_is_not_counted_while_the_collector_was_down() {
        let r = registry().starting_at(1_000_000);
        r.on_hello(0, 1, "0.1.0", 0, 1_000);
        r.on_disconnect(0);
        assert_eq!(r.view(0, 1_010_000).state, SiteState::Up);
        assert_eq!(r.view(0, 1_036_000).state, SiteState::Silent);
    }

    #[test]
    fn clock_offsets_past_the_threshold_are_flagged() {
        let r = registry();
        r.on_hello(0, 1, "0.1.0", 1_500, 1_000);
        assert!(!r.view(0, 1_000).clock_suspect);
        r.on_heartbeat(0, -2_500, None, 2_000);
        assert!(r.view(0, 2_000).clock_suspect);
    }
}
