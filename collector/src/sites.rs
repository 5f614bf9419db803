//! Live state of every site: who is connected, when each probe last reported, which link
//! carries the traffic, and the resulting state (up, degraded, on_backup, down, silent,
//! unknown). Updated by connections (hello, heartbeat) and by the store writer after each
//! commit; read by the API and the demo. A single `std::sync::Mutex` over a `Vec` indexed like
//! the inventory: critical sections are a few field writes, so an async lock would only add cost.

use std::sync::{Arc, Mutex, MutexGuard};

use rie_proto::{Batch, LinkId, LinkRole, SiteState};
use serde::{Deserialize, Serialize};

use crate::config::SiteThresholds;
use crate::inventory::Inventory;

/// What the collector knows of one link from the last batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkLive {
    pub link: LinkId,
    pub up: bool,
    pub active: bool,
    pub loss_ratio: Option<f64>,
    pub rtt_avg_ms: Option<f64>,
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
    /// Open probe connections (more than one means a duplicate probe or a reconnect race).
    #[serde(skip)]
    pub connections: u32,
}

/// The state shown to users: `SiteLive` with silence applied at read time.
#[derive(Debug, Clone, Serialize)]
pub struct SiteView {
    pub state: SiteState,
    pub state_since_ms: Option<i64>,
    #[serde(flatten)]
    pub live: SiteLive,
    pub connected: bool,
}

pub struct SiteRegistry {
    pub inventory: Arc<Inventory>,
    thresholds: SiteThresholds,
    live: Mutex<Vec<SiteLive>>,
}

impl SiteRegistry {
    pub fn new(inventory: Arc<Inventory>, thresholds: SiteThresholds) -> Self {
        let live = Mutex::new(vec![SiteLive::default(); inventory.sites.len()]);
        Self {
            inventory,
            thresholds,
            live,
        }
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
        s.last_seen_ms = Some(now_ms);
        s.protocol_version = Some(version);
        s.probe_version = Some(probe_version.to_string());
        s.clock_offset_ms = Some(offset_ms);
    }

    pub fn on_disconnect(&self, idx: usize) {
        let mut live = self.lock();
        live[idx].connections = live[idx].connections.saturating_sub(1);
    }

    pub fn on_heartbeat(&self, idx: usize, offset_ms: i64, now_ms: i64) {
        let mut live = self.lock();
        live[idx].last_seen_ms = Some(now_ms);
        live[idx].clock_offset_ms = Some(offset_ms);
    }

    /// A copy of the site's live state.
    pub fn current(&self, idx: usize) -> SiteLive {
        self.lock()[idx].clone()
    }

    /// The state a site will have once `batch` is stored, from `base` (the store writer chains
    /// several batches of one site in one commit). Pure with respect to the registry, so the
    /// writer can persist it in the batch's transaction and [`SiteRegistry::apply`] it after.
    pub fn advance(&self, idx: usize, base: SiteLive, batch: &Batch, now_ms: i64) -> SiteLive {
        let mut next = base;
        let site = &self.inventory.sites[idx];
        let links = evaluate_links(&self.inventory, &site.id, batch, next.links.as_slice());
        let state = site_state(&self.inventory, &site.id, &links, &self.thresholds);
        if next.state != Some(state) {
            next.state = Some(state);
            next.state_since_ms = Some(now_ms);
        }
        next.links = links;
        next.last_seen_ms = Some(now_ms);
        next.last_batch_ms = Some(now_ms);
        next.batches_stored += 1;
        next
    }

    /// Installs the state computed by [`SiteRegistry::prepare`], keeping live connection facts.
    pub fn apply(&self, idx: usize, next: SiteLive) {
        let mut live = self.lock();
        let cur = &mut live[idx];
        *cur = SiteLive {
            connections: cur.connections,
            clock_offset_ms: cur.clock_offset_ms.or(next.clock_offset_ms),
            protocol_version: cur.protocol_version.or(next.protocol_version),
            probe_version: cur.probe_version.clone().or(next.probe_version),
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
        let silent_ms = self.thresholds.silent_after.as_millis() as i64;
        let (state, since) = match (live.last_seen_ms, live.state) {
            (None, _) => (SiteState::Unknown, None),
            (Some(seen), _) if now_ms - seen > silent_ms => (SiteState::Silent, Some(seen)),
            (Some(seen), None) => (SiteState::Up, Some(seen)),
            (Some(_), Some(s)) => (s, live.state_since_ms),
        };
        SiteView {
            state,
            state_since_ms: since,
            connected: live.connections > 0,
            live,
        }
    }
}

/// Per-link facts from a batch; links the batch does not mention keep their last values.
fn evaluate_links(
    inv: &Inventory,
    site: &rie_proto::SiteId,
    batch: &Batch,
    prev: &[LinkLive],
) -> Vec<LinkLive> {
    inv.links_of(site)
        .map(|l| {
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
                });
            if let Some(st) = batch.links.iter().find(|s| s.link == l.id) {
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
                // A link that answered nothing does not reach the core, whatever its interface says.
                if sent > 0 && recv == 0 {
                    cur.up = false;
                }
            }
            cur
        })
        .collect()
}

/// Site state from its links: down when no link is up; on_backup when the primary is down or
/// not carrying traffic while a backup is up; degraded when the link carrying traffic is past
/// the loss or latency threshold.
fn site_state(
    inv: &Inventory,
    site: &rie_proto::SiteId,
    links: &[LinkLive],
    t: &SiteThresholds,
) -> SiteState {
    if links.is_empty() {
        return SiteState::Up;
    }
    if !links.iter().any(|l| l.up) {
        return SiteState::Down;
    }
    let role = |id: &LinkId| inv.links_of(site).find(|l| &l.id == id).map(|l| l.role);
    let primary = links
        .iter()
        .find(|l| role(&l.link) == Some(LinkRole::Primary));
    let carrying = links
        .iter()
        .find(|l| l.active && l.up)
        .or_else(|| links.iter().find(|l| l.up));
    let on_backup = match (primary, carrying) {
        (Some(p), Some(c)) => !(p.up && p.active) && role(&c.link) == Some(LinkRole::Backup),
        _ => false,
    };
    if on_backup {
        return SiteState::OnBackup;
    }
    let bad = carrying.is_some_and(|c| {
        c.loss_ratio.is_some_and(|l| l >= t.degraded_loss_ratio)
            || c.rtt_avg_ms
                .is_some_and(|r| r >= t.degraded_rtt.as_secs_f64() * 1000.0)
    });
    if bad {
        SiteState::Degraded
    } else {
        SiteState::Up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Link, Site};
    use rie_proto::{AvailabilitySample, CheckKind, LinkStatus, SiteId, Technology};

    fn registry() -> SiteRegistry {
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
        SiteRegistry::new(Arc::new(inv), SiteThresholds::default())
    }

    fn batch(links: &[(&str, bool, bool)], loss: Option<(&str, u32, u32, u32)>) -> Batch {
        Batch {
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
        r.advance(0, r.current(0), b, now_ms)
    }

    fn state_after(b: &Batch) -> SiteState {
        let r = registry();
        let next = prepare(&r, b, 1_000);
        r.apply(0, next);
        r.view(0, 1_000).state
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
        // The primary's interface is up but nothing answers across it: the backup carries.
        assert_eq!(
            state_after(&batch(
                &[("P", true, true), ("B", true, false)],
                Some(("P", 10, 0, 0))
            )),
            SiteState::OnBackup
        );
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
}
