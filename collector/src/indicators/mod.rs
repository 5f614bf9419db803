//! Cost and resilience indicators for a period, per site and per group (ministry, département,
//! region, access technology, national). Owns the formulas; `docs/indicators.md` states them in
//! words and `reports` only formats what [`compute`] returns.
//!
//! Inputs: the inventory (agents, links with their monthly price in cents), the cost model
//! (`costs`), and three tables of the store read by [`load_inputs`]: `episodes` (outages,
//! failovers, silences; clipped to the period, open ones counted up to the period end or now),
//! `flow_minute` (bytes per site, for the `per_traffic_volume` key) and `link_minute` (proof that
//! a site was measured at all in the period).
//!
//! Money stays in integer cents from the inventory to the output; national costs are split over
//! sites by largest remainder ([`costs::allocate`]), so per-site costs sum exactly to the total.
//! Ratios (per agent, per Mbit/s) are computed once from integer sums and rounded half up to the
//! cent. Availability figures are ratios of integer milliseconds, rounded only for display.
//!
//! May import `inventory` and `store` (it reads through `store::Reader`, so reports work on
//! either backend).

pub mod costs;
pub mod period;
pub mod resilience_plan;

use std::collections::BTreeMap;

use rie_proto::LinkRole;
use serde::Serialize;

pub use costs::{allocate, AllocationKey, CostModel, CostsError, NationalShare, PeriodCost};
pub use period::{Period, PeriodError};

use crate::inventory::Inventory;

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Site,
    Ministry,
    Departement,
    Region,
    /// By the access technology of the site's primary link.
    Technology,
    National,
}

impl GroupBy {
    pub const ALL: [GroupBy; 6] = [
        Self::Site,
        Self::Ministry,
        Self::Departement,
        Self::Region,
        Self::Technology,
        Self::National,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Site => "site",
            Self::Ministry => "ministry",
            Self::Departement => "departement",
            Self::Region => "region",
            Self::Technology => "technology",
            Self::National => "national",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IndicatorError {
    #[error("reading the store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Kind of an episode, as in the `episodes` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpisodeKind {
    Outage,
    Failover,
    Degraded,
    Silent,
}

/// One episode of a site, already resolved to the site's index in the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Episode {
    pub kind: EpisodeKind,
    pub start_ms: i64,
    /// `None` while open.
    pub end_ms: Option<i64>,
}

/// What the store says about each site (indexed like `Inventory::sites`) for a period.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub episodes: Vec<Vec<Episode>>,
    pub traffic_bytes: Vec<u64>,
    /// The site has measurements (link checks, traffic or episodes) in the period.
    pub measured: Vec<bool>,
    /// Episodes whose site is not in the inventory (ignored, counted).
    pub unknown_site_episodes: u64,
}

/// Reads episodes, traffic and measurement presence for `period` from the store, through its
/// read side (either backend).
///
/// # Errors
/// [`IndicatorError::Store`].
pub fn load_inputs(
    reader: &crate::store::Reader,
    inv: &Inventory,
    period: &Period,
) -> Result<Inputs, IndicatorError> {
    let n = inv.sites.len();
    let mut inp = Inputs {
        episodes: vec![Vec::new(); n],
        traffic_bytes: vec![0; n],
        measured: vec![false; n],
        unknown_site_episodes: 0,
    };
    let by_name: std::collections::HashMap<&str, usize> = inv
        .sites
        .iter()
        .enumerate()
        .map(|(i, site)| (site.id.as_str(), i))
        .collect();
    for (site, e) in reader.episodes_touching(period.start_ms, period.end_ms)? {
        use rie_proto::EpisodeKind as K;
        let kind = match e.kind {
            K::Outage => EpisodeKind::Outage,
            K::Failover => EpisodeKind::Failover,
            K::Degraded => EpisodeKind::Degraded,
            K::Silent => EpisodeKind::Silent,
        };
        match by_name.get(site.as_str()) {
            Some(&i) => {
                inp.episodes[i].push(Episode {
                    kind,
                    start_ms: e.start_ms,
                    end_ms: e.end_ms,
                });
                if e.end_ms.is_none_or(|end| end > period.start_ms) {
                    inp.measured[i] = true;
                }
            }
            None => inp.unknown_site_episodes += 1,
        }
    }
    for eps in &mut inp.episodes {
        eps.sort_by_key(|e| (e.start_ms, e.end_ms));
    }
    // The rollup views (minute, hour and day tiers, see `retention`) hold the bucket start in
    // Unix seconds; periods are UTC months, so every bucket lies wholly inside or outside.
    let (s, e) = (period.start_ms / 1000, period.end_ms / 1000);
    reader.for_each_site_bytes(s, e, &mut |site, bytes| {
        if let Some(&i) = by_name.get(site) {
            inp.traffic_bytes[i] = inp.traffic_bytes[i].saturating_add(bytes);
            inp.measured[i] = true;
        }
    })?;
    // Any link check row proves the site was measured; stop as soon as every site is.
    let mut left = inp.measured.iter().filter(|m| !**m).count();
    if left > 0 {
        reader.for_each_link_checked_site(s, e, &mut |site| {
            if let Some(&i) = by_name.get(site) {
                if !inp.measured[i] {
                    inp.measured[i] = true;
                    left -= 1;
                }
            }
            left > 0
        })?;
    }
    Ok(inp)
}

/// Figures of one site for the period; groups are sums of these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteFigures {
    pub agents: u64,
    pub dual_homed: bool,
    /// Sum of the contracted bandwidth of the site's links, kbit/s (integer so sums are exact).
    pub contracted_kbps: u64,
    pub link_cents: i64,
    pub backup_cents: i64,
    pub shared_cents: i64,
    pub measured: bool,
    /// Length of the period up to now, minus silent time that no outage explains.
    pub measured_ms: i64,
    /// Outage time clipped to the period (union of outage episodes).
    pub down_ms: i64,
    pub outages: u64,
    pub backup_ms: i64,
    pub primary_failures: u64,
    pub failovers_in_time: u64,
}

impl SiteFigures {
    pub fn total_cents(&self) -> i64 {
        self.link_cents + self.shared_cents
    }
}

/// Sorted, merged `[start, end)` intervals.
fn merge(mut v: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    v.retain(|(s, e)| e > s);
    v.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn length(v: &[(i64, i64)]) -> i64 {
    v.iter().map(|(s, e)| e - s).sum()
}

fn overlap(a: &[(i64, i64)], b: &[(i64, i64)]) -> i64 {
    let (mut i, mut j, mut total) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let s = a[i].0.max(b[j].0);
        let e = a[i].1.min(b[j].1);
        if e > s {
            total += e - s;
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    total
}

/// Availability figures of one site from its episodes, clipped to `[from, to)`.
fn site_availability(eps: &[Episode], dual_homed: bool, from: i64, to: i64, f: &mut SiteFigures) {
    let clip = |e: &Episode| (e.start_ms.max(from), e.end_ms.unwrap_or(to).min(to));
    let of = |k: EpisodeKind| -> Vec<(i64, i64)> {
        merge(eps.iter().filter(|e| e.kind == k).map(clip).collect())
    };
    let down = of(EpisodeKind::Outage);
    let silent = of(EpisodeKind::Silent);
    let backup = of(EpisodeKind::Failover);
    f.down_ms = length(&down);
    f.backup_ms = length(&backup);
    // Silence is not proof of an outage: silent time is left out of the measured time, except
    // where an outage explains it (a site that is down cannot report).
    let unexplained_silence = length(&silent) - overlap(&silent, &down);
    f.measured_ms = (to - from - unexplained_silence).max(0);
    let in_period = |e: &Episode| e.start_ms < to && e.end_ms.is_none_or(|x| x > from);
    f.outages = eps
        .iter()
        .filter(|e| e.kind == EpisodeKind::Outage && in_period(e))
        .count() as u64;
    if dual_homed {
        // A failover right after an outage is the late takeover of that failure, and an outage
        // right after a failover is the backup failing while it carried: neither is a new
        // failure of the primary. (The collector closes one episode and opens the next at the
        // same instant, so "right after" is equality.)
        let follows = |e: &Episode, prev: EpisodeKind| {
            eps.iter()
                .any(|o| o.kind == prev && o.end_ms == Some(e.start_ms))
        };
        for e in eps.iter().filter(|e| in_period(e)) {
            match e.kind {
                EpisodeKind::Outage if !follows(e, EpisodeKind::Failover) => {
                    f.primary_failures += 1;
                }
                EpisodeKind::Failover if !follows(e, EpisodeKind::Outage) => {
                    f.primary_failures += 1;
                    f.failovers_in_time += 1;
                }
                _ => {}
            }
        }
    }
}

/// Per-site figures for the whole inventory, plus the national cost items of the period.
pub struct SiteTable {
    pub sites: Vec<SiteFigures>,
    pub items: Vec<PeriodCost>,
    /// True when the `per_traffic_volume` key had no traffic to weigh and used agents instead.
    pub traffic_fallback: bool,
    /// The share of the national costs `items` are for.
    pub share: NationalShare,
}

/// Costs and availability of every site for the period.
pub fn site_table(
    inv: &Inventory,
    model: &CostModel,
    period: &Period,
    now_ms: i64,
    inp: &Inputs,
) -> SiteTable {
    let months = i64::from(period.months);
    let to = period.measured_end(now_ms);
    let mut sites: Vec<SiteFigures> = inv
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut f = SiteFigures {
                agents: u64::from(s.agents),
                ..SiteFigures::default()
            };
            let mut mbps = 0.0;
            for l in inv.links_of(&s.id) {
                f.link_cents += l.monthly_cost_cents * months;
                mbps += l.bandwidth_mbps;
                if l.role == LinkRole::Backup {
                    f.dual_homed = true;
                    f.backup_cents += l.monthly_cost_cents * months;
                }
            }
            f.contracted_kbps = (mbps * 1000.0).round().max(0.0) as u64;
            f.measured = inp.measured.get(i).copied().unwrap_or(false) && to > period.start_ms;
            if f.measured {
                let eps = inp.episodes.get(i).map_or(&[][..], Vec::as_slice);
                site_availability(eps, f.dual_homed, period.start_ms, to, &mut f);
            }
            f
        })
        .collect();
    let share = model.share(inv.sites.len());
    let items = model.period_items(period.months, &share);
    let traffic_total: u64 = inp.traffic_bytes.iter().sum();
    let traffic_fallback = traffic_total == 0
        && items
            .iter()
            .any(|c| c.allocation == AllocationKey::PerTrafficVolume);
    for item in &items {
        let weights: Vec<u128> = sites
            .iter()
            .enumerate()
            .map(|(i, f)| match item.allocation {
                AllocationKey::PerAgent => u128::from(f.agents),
                AllocationKey::PerSite => 1,
                AllocationKey::PerTrafficVolume if traffic_total == 0 => u128::from(f.agents),
                AllocationKey::PerTrafficVolume => {
                    u128::from(inp.traffic_bytes.get(i).copied().unwrap_or(0))
                }
                AllocationKey::PerContractedBandwidth => u128::from(f.contracted_kbps),
            })
            .collect();
        for (f, c) in sites.iter_mut().zip(allocate(item.cents, &weights)) {
            f.shared_cents += c;
        }
    }
    SiteTable {
        sites,
        items,
        share,
        traffic_fallback,
    }
}

/// `num / den` rounded half up (non-negative operands), `None` when `den` is zero.
fn ratio_cents(num: i128, den: i128) -> Option<i64> {
    (den > 0).then(|| i64::try_from((2 * num + den) / (2 * den)).unwrap_or(i64::MAX))
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let k = 10f64.powi(decimals);
    (v * k).round() / k
}

/// One row of a report: a group of sites (or one site, or the nation).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRow {
    pub group: String,
    pub sites: u64,
    pub agents: u64,
    pub sites_zero_agents: u64,
    pub dual_homed_sites: u64,
    /// Agents on dual-homed sites / all agents, %.
    pub dual_homed_agent_share_pct: Option<f64>,
    pub contracted_mbps: f64,
    pub link_cost_cents: i64,
    pub backup_link_cost_cents: i64,
    pub shared_cost_cents: i64,
    pub total_cost_cents: i64,
    /// (total cost of sites with agents) × 12 / months / agents.
    pub cost_per_agent_year_cents: Option<i64>,
    /// total cost / months / contracted Mbit/s.
    pub cost_per_mbps_month_cents: Option<i64>,
    /// (backup link cost of sites with agents) × 12 / months / agents.
    pub resilience_cost_per_agent_year_cents: Option<i64>,
    pub sites_with_data: u64,
    pub measured_hours: f64,
    /// 1 − Σ down / Σ measured, over sites with data, %.
    pub availability_time_pct: Option<f64>,
    /// Σ agents × (1 − down/measured) / Σ agents, over sites with data and agents, %.
    pub availability_agent_pct: Option<f64>,
    pub agent_hours_lost: f64,
    pub outages: u64,
    pub outage_minutes: f64,
    pub mttr_minutes: Option<f64>,
    pub mtbf_hours: Option<f64>,
    pub backup_hours: f64,
    pub primary_failures: u64,
    pub failovers_in_time: u64,
    pub failover_success_pct: Option<f64>,
    /// What resilience buys: time-weighted availability of the group's dual-homed sites…
    pub availability_dual_homed_pct: Option<f64>,
    /// …and of its single-homed sites, same formula.
    pub availability_single_homed_pct: Option<f64>,
}

impl GroupRow {
    /// What resilience weighs in the cost per agent per year: resilience cost per agent per
    /// year / cost per agent per year, %. `None` without agents or cost.
    pub fn resilience_share_pct(&self) -> Option<f64> {
        match (
            self.resilience_cost_per_agent_year_cents,
            self.cost_per_agent_year_cents,
        ) {
            (Some(r), Some(t)) if t > 0 => Some(round_to(100.0 * r as f64 / t as f64, 4)),
            _ => None,
        }
    }

    /// The price of the group's agent-hours lost at `agent_hour_cost_cents` an hour (the
    /// planner's `agent_hour_cost_eur`, `configs/backup-prices.toml`), cents, rounded half up.
    pub fn agent_hours_lost_cost_cents(&self, agent_hour_cost_cents: i64) -> i64 {
        (self.agent_hours_lost * agent_hour_cost_cents as f64).round() as i64
    }
}

fn group_row(group: String, members: &[&SiteFigures], months: i64) -> GroupRow {
    let sum = |f: &dyn Fn(&SiteFigures) -> i64| members.iter().map(|s| f(s)).sum::<i64>();
    let agents: u64 = members.iter().map(|s| s.agents).sum();
    let with_agents = |f: &dyn Fn(&SiteFigures) -> i64| {
        members
            .iter()
            .filter(|s| s.agents > 0)
            .map(|s| i128::from(f(s)))
            .sum::<i128>()
    };
    let per_agent_year = |num: i128| ratio_cents(num * 12, i128::from(months) * i128::from(agents));
    let kbps: u64 = members.iter().map(|s| s.contracted_kbps).sum();
    let total = sum(&|s| s.total_cents());
    let measured: Vec<&&SiteFigures> = members.iter().filter(|s| s.measured).collect();
    let measured_ms: i64 = measured.iter().map(|s| s.measured_ms).sum();
    let down_ms: i64 = measured.iter().map(|s| s.down_ms).sum();
    let outages: u64 = measured.iter().map(|s| s.outages).sum();
    let agent_down_ms: i128 = measured
        .iter()
        .map(|s| i128::from(s.agents) * i128::from(s.down_ms))
        .sum();
    let weighted: Vec<&&&SiteFigures> = measured
        .iter()
        .filter(|s| s.agents > 0 && s.measured_ms > 0)
        .collect();
    let w_agents: u64 = weighted.iter().map(|s| s.agents).sum();
    let availability_agent = (w_agents > 0).then(|| {
        let lost: f64 = weighted
            .iter()
            .map(|s| s.agents as f64 * s.down_ms as f64 / s.measured_ms as f64)
            .sum();
        round_to(100.0 * (1.0 - lost / w_agents as f64), 4)
    });
    let failures: u64 = measured.iter().map(|s| s.primary_failures).sum();
    let in_time: u64 = measured.iter().map(|s| s.failovers_in_time).sum();
    let dual_agents: u64 = members
        .iter()
        .filter(|s| s.dual_homed)
        .map(|s| s.agents)
        .sum();
    let availability_of = |dual: bool| {
        let (m, d) = measured
            .iter()
            .filter(|s| s.dual_homed == dual)
            .fold((0i64, 0i64), |(m, d), s| (m + s.measured_ms, d + s.down_ms));
        (m > 0).then(|| round_to(100.0 * (1.0 - d as f64 / m as f64), 4))
    };
    GroupRow {
        group,
        sites: members.len() as u64,
        agents,
        sites_zero_agents: members.iter().filter(|s| s.agents == 0).count() as u64,
        dual_homed_sites: members.iter().filter(|s| s.dual_homed).count() as u64,
        dual_homed_agent_share_pct: (agents > 0)
            .then(|| round_to(100.0 * dual_agents as f64 / agents as f64, 4)),
        contracted_mbps: kbps as f64 / 1000.0,
        link_cost_cents: sum(&|s| s.link_cents),
        backup_link_cost_cents: sum(&|s| s.backup_cents),
        shared_cost_cents: sum(&|s| s.shared_cents),
        total_cost_cents: total,
        cost_per_agent_year_cents: per_agent_year(with_agents(&|s| s.total_cents())),
        cost_per_mbps_month_cents: ratio_cents(
            i128::from(total) * 1000,
            i128::from(months) * i128::from(kbps),
        ),
        resilience_cost_per_agent_year_cents: per_agent_year(with_agents(&|s| s.backup_cents)),
        sites_with_data: measured.len() as u64,
        measured_hours: round_to(measured_ms as f64 / 3_600_000.0, 4),
        availability_time_pct: (measured_ms > 0)
            .then(|| round_to(100.0 * (1.0 - down_ms as f64 / measured_ms as f64), 4)),
        availability_agent_pct: availability_agent,
        agent_hours_lost: round_to(agent_down_ms as f64 / 3_600_000.0, 4),
        outages,
        outage_minutes: round_to(down_ms as f64 / 60_000.0, 4),
        mttr_minutes: (outages > 0)
            .then(|| round_to(down_ms as f64 / 60_000.0 / outages as f64, 4)),
        mtbf_hours: (outages > 0).then(|| {
            round_to(
                (measured_ms - down_ms) as f64 / 3_600_000.0 / outages as f64,
                4,
            )
        }),
        backup_hours: round_to(
            measured.iter().map(|s| s.backup_ms).sum::<i64>() as f64 / 3_600_000.0,
            4,
        ),
        primary_failures: failures,
        failovers_in_time: in_time,
        failover_success_pct: (failures > 0)
            .then(|| round_to(100.0 * in_time as f64 / failures as f64, 4)),
        availability_dual_homed_pct: availability_of(true),
        availability_single_homed_pct: availability_of(false),
    }
}

/// A site the report flags, with why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskRow {
    pub rank: u64,
    pub site: String,
    pub name: String,
    pub ministry: String,
    pub departement: String,
    pub agents: u64,
    pub availability_pct: Option<f64>,
    pub agent_hours_lost: f64,
    /// In French, for the finance report: e.g. "mono-raccordé ; 420 agents (≥ 100)".
    pub reason: String,
}

/// What the report could not use or had to note.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Notes {
    /// Sites with zero agents: in costs and totals, left out of every per-agent ratio.
    pub zero_agent_sites: Vec<String>,
    /// Links priced 0 in the inventory.
    pub links_without_cost: Vec<String>,
    /// Département codes not in the reference geography (their region shows as "inconnue").
    pub unknown_departements: Vec<String>,
    /// Ministry names not in the cost model's `ministries` list (their sites are still reported).
    pub unknown_ministries: Vec<String>,
    /// Sites with no measurement in the period: no availability, not counted as available.
    pub sites_without_data: u64,
    pub per_traffic_volume_fell_back_to_per_agent: bool,
    pub episodes_of_unknown_sites: u64,
    /// The share of the national costs the inventory bears; `scaled` when it is a sample
    /// (fewer sites than the nation): the cost items are then that share of the national ones.
    pub national_share: NationalShare,
}

/// The period as shown in reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodOut {
    pub label: String,
    pub start: String,
    pub end: String,
    pub months: u32,
    /// Availability is measured up to here (the period end, or now for the current period).
    pub measured_until: String,
}

/// Everything a report shows; the JSON report and the API serialise this as is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub period: PeriodOut,
    pub group_by: GroupBy,
    pub reference_cost_per_agent_year_cents: i64,
    pub cost_items: Vec<PeriodCost>,
    pub national: GroupRow,
    pub groups: Vec<GroupRow>,
    pub sites_at_risk: Vec<RiskRow>,
    pub notes: Notes,
}

/// `ms` (Unix milliseconds) as RFC 3339 UTC; empty if out of range.
pub fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Region of a département code, "inconnue" when the code is not in the reference geography.
pub fn region_of(code: &str) -> &'static str {
    rie_proto::geo::departement(code).map_or("inconnue", |d| d.region)
}

/// Computes the report from already loaded inputs (pure: no I/O).
pub fn compute(
    inv: &Inventory,
    model: &CostModel,
    period: &Period,
    now_ms: i64,
    inp: &Inputs,
    group_by: GroupBy,
) -> Report {
    let table = site_table(inv, model, period, now_ms, inp);
    let months = i64::from(period.months);
    let key = |i: usize| -> String {
        let s = &inv.sites[i];
        match group_by {
            GroupBy::Site => s.id.to_string(),
            GroupBy::Ministry => s.ministry.clone(),
            GroupBy::Departement => s.departement.clone(),
            GroupBy::Region => region_of(&s.departement).to_string(),
            GroupBy::Technology => inv
                .links_of(&s.id)
                .find(|l| l.role == LinkRole::Primary)
                .map_or("inconnue", |l| l.technology.as_str())
                .to_string(),
            GroupBy::National => "national".to_string(),
        }
    };
    let mut groups: BTreeMap<String, Vec<&SiteFigures>> = BTreeMap::new();
    for (i, f) in table.sites.iter().enumerate() {
        groups.entry(key(i)).or_default().push(f);
    }
    let all: Vec<&SiteFigures> = table.sites.iter().collect();
    let national = group_row("national".into(), &all, months);
    let groups = groups
        .into_iter()
        .map(|(k, m)| group_row(k, &m, months))
        .collect();

    let mut risk: Vec<(usize, RiskRow, i128)> = Vec::new();
    for (i, f) in table.sites.iter().enumerate() {
        if f.dual_homed || f.agents == 0 {
            continue;
        }
        let avail = (f.measured && f.measured_ms > 0)
            .then(|| 100.0 * (1.0 - f.down_ms as f64 / f.measured_ms as f64));
        let mut why = vec!["mono-raccordé".to_string()];
        if f.agents >= u64::from(model.risk.min_agents) {
            why.push(format!("{} agents (≥ {})", f.agents, model.risk.min_agents));
        }
        if let Some(a) = avail.filter(|a| *a < model.risk.availability_target_pct) {
            why.push(format!(
                "disponibilité {} % (< {} %)",
                fr_number(round_to(a, 3)),
                fr_number(model.risk.availability_target_pct)
            ));
        }
        if why.len() == 1 {
            continue;
        }
        let s = &inv.sites[i];
        let lost = i128::from(f.agents) * i128::from(f.down_ms);
        risk.push((
            i,
            RiskRow {
                rank: 0,
                site: s.id.to_string(),
                name: s.name.clone(),
                ministry: s.ministry.clone(),
                departement: s.departement.clone(),
                agents: f.agents,
                availability_pct: avail.map(|a| round_to(a, 4)),
                agent_hours_lost: round_to(lost as f64 / 3_600_000.0, 4),
                reason: why.join(" ; "),
            },
            lost,
        ));
    }
    // Most agent-hours lost first, then most agents: where a second link buys the most.
    risk.sort_by(|a, b| {
        b.2.cmp(&a.2)
            .then(b.1.agents.cmp(&a.1.agents))
            .then(a.0.cmp(&b.0))
    });
    let sites_at_risk = risk
        .into_iter()
        .take(model.risk.top)
        .enumerate()
        .map(|(n, (_, mut r, _))| {
            r.rank = n as u64 + 1;
            r
        })
        .collect();

    let mut unknown: Vec<String> = inv
        .sites
        .iter()
        .filter(|s| rie_proto::geo::departement(&s.departement).is_none())
        .map(|s| s.departement.clone())
        .collect();
    unknown.sort();
    unknown.dedup();
    let mut unknown_ministries: Vec<String> = if model.ministries.is_empty() {
        Vec::new()
    } else {
        inv.sites
            .iter()
            .filter(|s| !model.ministries.contains(&s.ministry))
            .map(|s| s.ministry.clone())
            .collect()
    };
    unknown_ministries.sort();
    unknown_ministries.dedup();
    let notes = Notes {
        unknown_ministries,
        zero_agent_sites: inv
            .sites
            .iter()
            .filter(|s| s.agents == 0)
            .map(|s| s.id.to_string())
            .collect(),
        links_without_cost: inv
            .links
            .iter()
            .filter(|l| l.monthly_cost_cents == 0)
            .map(|l| l.id.to_string())
            .collect(),
        unknown_departements: unknown,
        sites_without_data: table.sites.iter().filter(|f| !f.measured).count() as u64,
        per_traffic_volume_fell_back_to_per_agent: table.traffic_fallback,
        episodes_of_unknown_sites: inp.unknown_site_episodes,
        national_share: table.share.clone(),
    };
    Report {
        period: PeriodOut {
            label: period.label.clone(),
            start: rfc3339(period.start_ms),
            end: rfc3339(period.end_ms),
            months: period.months,
            measured_until: rfc3339(period.measured_end(now_ms)),
        },
        group_by,
        reference_cost_per_agent_year_cents: model.reference_eur_per_agent_year * 100,
        cost_items: table.items,
        national,
        groups,
        sites_at_risk,
        notes,
    }
}

/// Reads the store through its read side and computes the report: what the API serves and
/// the CLI's `report` prints, on either backend.
///
/// # Errors
/// [`IndicatorError::Store`].
pub fn report(
    reader: &crate::store::Reader,
    inv: &Inventory,
    model: &CostModel,
    period: &Period,
    now_ms: i64,
    group_by: GroupBy,
) -> Result<Report, IndicatorError> {
    let inp = load_inputs(reader, inv, period)?;
    Ok(compute(inv, model, period, now_ms, &inp, group_by))
}

/// A number with a decimal comma, as French readers expect ("99,5").
pub fn fr_number(v: f64) -> String {
    format!("{v}").replace('.', ",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(kind: EpisodeKind, s: i64, e: Option<i64>) -> Episode {
        Episode {
            kind,
            start_ms: s,
            end_ms: e,
        }
    }

    #[test]
    fn clipping_merging_and_silence() {
        use EpisodeKind::*;
        let mut f = SiteFigures::default();
        // Period [1000, 11000): outage 500–1500 (500 in), outage 1400–2000 overlapping (merged
        // to 1000–2000: 1000 ms down, 2 outages), silent 1800–2600 (200 explained by the
        // outage, 600 not), open failover from 10000 (1000 ms on backup, up to the end).
        let eps = [
            ep(Outage, 500, Some(1500)),
            ep(Outage, 1400, Some(2000)),
            ep(Silent, 1800, Some(2600)),
            ep(Failover, 10_000, None),
        ];
        site_availability(&eps, true, 1000, 11_000, &mut f);
        assert_eq!(f.down_ms, 1000);
        assert_eq!(f.outages, 2);
        assert_eq!(f.measured_ms, 10_000 - 600);
        assert_eq!(f.backup_ms, 1000);
        assert_eq!((f.primary_failures, f.failovers_in_time), (3, 1));
    }

    #[test]
    fn late_takeover_is_one_failure() {
        use EpisodeKind::*;
        let mut f = SiteFigures::default();
        let eps = [ep(Outage, 100, Some(200)), ep(Failover, 200, Some(900))];
        site_availability(&eps, true, 0, 1000, &mut f);
        assert_eq!((f.primary_failures, f.failovers_in_time), (1, 0));
        assert_eq!((f.down_ms, f.backup_ms), (100, 700));
        // The backup fails while carrying (failover then outage): still one primary failure,
        // taken over in time.
        let mut f = SiteFigures::default();
        let eps = [ep(Failover, 100, Some(200)), ep(Outage, 200, Some(300))];
        site_availability(&eps, true, 0, 1000, &mut f);
        assert_eq!((f.primary_failures, f.failovers_in_time), (1, 1));
        assert_eq!((f.outages, f.down_ms), (1, 100));
    }

    /// Property: for random inventories, traffic and cost models with every allocation key,
    /// per-site costs sum exactly to link costs plus national items, and every group's total
    /// is the sum of its sites.
    #[test]
    fn allocated_costs_sum_to_the_total_for_random_inventories() {
        use crate::inventory::{Inventory, Link, Site};
        use costs::{OneOffCost, SharedCost};
        use rand::{Rng, SeedableRng};
        use rie_proto::{LinkId, SiteId, Technology};
        let keys = [
            AllocationKey::PerAgent,
            AllocationKey::PerSite,
            AllocationKey::PerTrafficVolume,
            AllocationKey::PerContractedBandwidth,
        ];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for round in 0..200 {
            let n = rng.gen_range(1..60);
            let mut sites = Vec::new();
            let mut links = Vec::new();
            for i in 0..n {
                let id = SiteId::new(format!("S{i}")).unwrap();
                sites.push(Site {
                    id: id.clone(),
                    name: format!("site {i}"),
                    ministry: ["M1", "M2", "M3"][i % 3].into(),
                    departement: ["35", "75", "974", "2A"][rng.gen_range(0..4)].into(),
                    agents: if rng.gen_bool(0.1) {
                        0
                    } else {
                        rng.gen_range(1..3000)
                    },
                    latitude: 0.0,
                    longitude: 0.0,
                    credential_ref: format!("p{i}"),
                    exporters: Vec::new(),
                    prefixes: Vec::new(),
                });
                for (j, role) in [LinkRole::Primary, LinkRole::Backup]
                    .into_iter()
                    .enumerate()
                {
                    if j == 1 && rng.gen_bool(0.6) {
                        continue;
                    }
                    links.push(Link {
                        id: LinkId::new(format!("S{i}-{j}")).unwrap(),
                        site: id.clone(),
                        role,
                        operator: "X".into(),
                        technology: Technology::ALL[rng.gen_range(0..5)],
                        bandwidth_mbps: f64::from(rng.gen_range(1..2000u32)) / 4.0,
                        monthly_cost_cents: rng.gen_range(0..300_000),
                    });
                }
            }
            let inv = Inventory::index(sites, links);
            let model = CostModel {
                shared: (0..rng.gen_range(0..6))
                    .map(|k| SharedCost {
                        name: format!("s{k}"),
                        label: String::new(),
                        annual_eur: rng.gen_range(0..50_000_000),
                        allocation: keys[rng.gen_range(0..4)],
                    })
                    .collect(),
                one_off: (0..rng.gen_range(0..3))
                    .map(|k| OneOffCost {
                        name: format!("o{k}"),
                        label: String::new(),
                        amount_eur: rng.gen_range(0..90_000_000),
                        amortisation_years: rng.gen_range(1..10),
                        allocation: keys[rng.gen_range(0..4)],
                    })
                    .collect(),
                ..CostModel::default()
            };
            let inp = Inputs {
                episodes: vec![Vec::new(); n],
                traffic_bytes: (0..n)
                    .map(|_| {
                        if round % 3 == 0 {
                            0
                        } else {
                            rng.gen_range(0..1u64 << 40)
                        }
                    })
                    .collect(),
                measured: vec![false; n],
                unknown_site_episodes: 0,
            };
            let period = Period::parse(["2026-10", "2026-Q1", "2028"][round % 3]).unwrap();
            let t = site_table(&inv, &model, &period, 0, &inp);
            let links: i64 = inv.links.iter().map(|l| l.monthly_cost_cents).sum::<i64>()
                * i64::from(period.months);
            let items: i64 = t.items.iter().map(|c| c.cents).sum();
            let sites: i64 = t.sites.iter().map(SiteFigures::total_cents).sum();
            assert_eq!(sites, links + items, "round {round}");
            for g in [GroupBy::Ministry, GroupBy::Region, GroupBy::Technology] {
                let r = compute(&inv, &model, &period, 0, &inp, g);
                let sum: i64 = r.groups.iter().map(|g| g.total_cost_cents).sum();
                assert_eq!(sum, r.national.total_cost_cents);
                assert_eq!(sum, links + items);
            }
        }
    }

    /// Traffic in the period sums per site; a link check row alone marks a site measured;
    /// rows outside the period count for nothing.
    #[test]
    fn load_inputs_reads_traffic_and_link_checks_of_the_period() {
        let dir = tempfile::tempdir().unwrap();
        let inv = crate::inventory::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/indicators"),
        )
        .unwrap();
        let conn = crate::store::open(&dir.path().join("rie.db")).unwrap();
        let p = Period::parse("2026-10").unwrap();
        let (s, e) = (p.start_ms / 1000, p.end_ms / 1000);
        conn.execute_batch(&format!(
            "INSERT INTO flow_minute VALUES ({s}, 'A', 'x', 6, 0, 1, 1, 100);
             INSERT INTO flow_minute VALUES ({s}, 'A', 'x', 17, 0, 1, 1, 23);
             INSERT INTO flow_minute VALUES ({}, 'A', 'x', 6, 0, 1, 1, 1000);
             INSERT INTO flow_minute VALUES ({e}, 'B', 'x', 6, 0, 1, 1, 1000);
             INSERT INTO flow_minute VALUES ({s}, 'nowhere', 'x', 6, 0, 1, 1, 5);
             INSERT INTO link_minute VALUES ({}, 'C', 'C-P', 1, 1, 1, 1, 1, 1);
             INSERT INTO link_minute VALUES ({e}, 'D', 'D-P', 1, 1, 1, 1, 1, 1);",
            e - 60,
            s + 60,
        ))
        .unwrap();
        let reader = crate::store::Reader::open(&dir.path().join("rie.db")).unwrap();
        let inp = load_inputs(&reader, &inv, &p).unwrap();
        assert_eq!(inp.traffic_bytes, vec![1123, 0, 0, 0, 0]);
        assert_eq!(inp.measured, vec![true, false, true, false, false]);
    }

    #[test]
    fn group_by_names_round_trip() {
        for g in GroupBy::ALL {
            assert_eq!(GroupBy::parse(g.as_str()), Some(g));
        }
        assert_eq!(GroupBy::parse("planet"), None);
    }
}
