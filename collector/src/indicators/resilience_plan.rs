//! The resilience investment planner: for every single-homed site, and every dual-homed site
//! whose backup shares the primary's operator or technology, the yearly cost of adding (or
//! diversifying) a backup link against the agent-hours its outages cost a year, measured from
//! the episodes of a period and valued at a cost per agent-hour. `docs/resilience-plan.md`
//! states the formulas; `reports::resilience` only formats what [`compute`] returns.
//!
//! Owns the price catalogue (`configs/backup-prices.toml`, [`BackupPrices`]): one offer per
//! technology (bandwidth, setup fee, monthly price per access [`Zone`]), the agent-hour value and
//! the sizing rule; and the [`Span`] of a plan (`--from`/`--to`, any length, unlike the calendar
//! [`super::Period`] of cost reports).
//!
//! Money is integer cents from the file to the output: every euro figure of a row is computed
//! from integers and rounded once, half up; totals are sums of rows. Ranking compares ratios by
//! cross-multiplication, never through floats.
//!
//! May import `inventory`, `store` (through [`super::load_inputs`]) and its parent's site
//! figures ([`super::site_table`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rie_proto::{LinkRole, Technology};
use serde::{Deserialize, Serialize};

use super::rfc3339;
use super::{CostModel, IndicatorError, Inputs, Period};
use crate::inventory::{Inventory, Link};

/// A catalogue that cannot be used; names the file, the key and the fix.
pub type PricesError = rie_common::ConfigFileError;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// A year of 365 days, in hours: the annualisation base.
pub const HOURS_PER_YEAR: i64 = 8_760;
/// Below this many days of episodes, annualised figures are flagged low-confidence.
pub const LOW_CONFIDENCE_DAYS: i64 = 7;
/// From this many days on (a season), confidence is high.
pub const HIGH_CONFIDENCE_DAYS: i64 = 90;

/// Access zone of a site, from its département: what a price depends on besides technology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Zone {
    /// ARCEP's very dense areas, approximated by the catalogue's `dense_departements`.
    Dense,
    /// Every other mainland département, Corsica included.
    Mainland,
    /// The overseas départements (971, 972, 973, 974, 976).
    Overseas,
    /// The overseas collectivities (975, 977, 978, 986, 987, 988).
    Collectivity,
}

impl Zone {
    pub const ALL: [Zone; 4] = [
        Zone::Dense,
        Zone::Mainland,
        Zone::Overseas,
        Zone::Collectivity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Zone::Dense => "dense",
            Zone::Mainland => "mainland",
            Zone::Overseas => "overseas",
            Zone::Collectivity => "collectivity",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|z| z.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

const COLLECTIVITIES: [&str; 6] = ["975", "977", "978", "986", "987", "988"];

/// One backup offer of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub bandwidth_kbps: u64,
    pub setup_cents: i64,
    /// Monthly price by zone, indexed like [`Zone::ALL`].
    pub monthly_cents: [i64; 4],
}

/// The validated catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPrices {
    pub agent_hour_cost_cents: i64,
    pub recovered_share_pct: u32,
    pub setup_amortisation_years: u32,
    pub min_backup_kbps_per_agent: u32,
    pub dense_departements: Vec<String>,
    /// One offer per technology, indexed like [`Technology::ALL`].
    pub offers: Vec<Offer>,
}

/// The file as written (euros as decimals); [`BackupPrices::from_file`] checks and converts it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PricesFile {
    agent_hour_cost_eur: f64,
    #[serde(default = "default_recovered")]
    recovered_share_pct: u32,
    #[serde(default = "default_years")]
    setup_amortisation_years: u32,
    #[serde(default = "default_kbps")]
    min_backup_kbps_per_agent: u32,
    #[serde(default = "default_dense")]
    dense_departements: Vec<String>,
    prices: BTreeMap<String, OfferFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct OfferFile {
    bandwidth_mbps: f64,
    setup_eur: f64,
    monthly_eur: BTreeMap<String, f64>,
}

fn default_recovered() -> u32 {
    100
}
fn default_years() -> u32 {
    3
}
fn default_kbps() -> u32 {
    50
}
fn default_dense() -> Vec<String> {
    ["75", "92", "93", "94"].map(String::from).to_vec()
}

/// The catalogue shipped in `configs/`, built in so that the planner works without a file.
const BUILTIN: &str = include_str!("../../../configs/backup-prices.toml");

/// Euros with at most two decimals as cents; `None` for a fraction of a cent or a non-number.
fn cents_of(eur: f64) -> Option<i64> {
    if !eur.is_finite() || eur.abs() > 1e12 {
        return None;
    }
    let c = (eur * 100.0).round();
    ((eur * 100.0 - c).abs() < 1e-6).then_some(c as i64)
}

impl Default for BackupPrices {
    fn default() -> Self {
        // The shipped file is parsed and validated by `builtin_file_is_valid` below.
        let file: PricesFile = toml::from_str(BUILTIN).expect("configs/backup-prices.toml parses");
        Self::from_file(file, "configs/backup-prices.toml")
            .expect("configs/backup-prices.toml is valid")
    }
}

impl BackupPrices {
    /// Reads and validates a catalogue.
    ///
    /// # Errors
    /// [`PricesError`] naming the file and, for bad values, the key and the fix.
    pub fn load(path: &Path) -> Result<Self, PricesError> {
        let file: PricesFile = rie_common::read_toml(path)?;
        Self::from_file(file, &path.display().to_string())
    }

    /// The file at `path`, or the built-in catalogue when there is none.
    ///
    /// # Errors
    /// See [`BackupPrices::load`].
    pub fn load_or_default(path: Option<&Path>) -> Result<Self, PricesError> {
        path.map_or_else(|| Ok(Self::default()), Self::load)
    }

    /// Checks a parsed file (no I/O) and converts euros to cents.
    fn from_file(f: PricesFile, file: &str) -> Result<Self, PricesError> {
        let bad = |key: String, message: String| PricesError::invalid(file, key, message);
        let hour = cents_of(f.agent_hour_cost_eur)
            .filter(|c| (1..=1_000_000).contains(c))
            .ok_or_else(|| {
                bad(
                    "agent_hour_cost_eur".into(),
                    format!(
                        "{} is not a positive amount in euros with at most two decimals; e.g. 41.54",
                        f.agent_hour_cost_eur
                    ),
                )
            })?;
        if !(1..=100).contains(&f.recovered_share_pct) {
            return Err(bad(
                "recovered_share_pct".into(),
                format!("{} is not 1 to 100; e.g. 100", f.recovered_share_pct),
            ));
        }
        if !(1..=10).contains(&f.setup_amortisation_years) {
            return Err(bad(
                "setup_amortisation_years".into(),
                format!("{} is not 1 to 10; e.g. 3", f.setup_amortisation_years),
            ));
        }
        if f.min_backup_kbps_per_agent > 100_000 {
            return Err(bad(
                "min_backup_kbps_per_agent".into(),
                format!(
                    "{} kbit/s per agent is not plausible; e.g. 50",
                    f.min_backup_kbps_per_agent
                ),
            ));
        }
        for (i, d) in f.dense_departements.iter().enumerate() {
            if rie_proto::geo::departement(d).is_none_or(|g| g.overseas) {
                return Err(bad(
                    format!("dense_departements[{i}]"),
                    format!("{d:?} is not a mainland département code; e.g. \"75\""),
                ));
            }
        }
        let techs = Technology::ALL
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let zones = Zone::ALL.map(Zone::as_str).join(", ");
        for k in f.prices.keys() {
            if Technology::parse(k).is_none() {
                return Err(bad(
                    format!("prices.{k}"),
                    format!("{k:?} is not a technology; use one of {techs}"),
                ));
            }
        }
        let mut offers = Vec::with_capacity(Technology::ALL.len());
        for t in Technology::ALL {
            let key = format!("prices.{}", t.as_str());
            let Some(o) = f.prices.get(t.as_str()) else {
                return Err(bad(
                    key.clone(),
                    format!(
                        "technology {} has no price: every technology must be priced, since a backup of any may be proposed; add [{key}] with bandwidth_mbps, setup_eur and monthly_eur = {{ {} }}",
                        t.as_str(),
                        Zone::ALL.map(|z| format!("{} = …", z.as_str())).join(", ")
                    ),
                ));
            };
            if !(o.bandwidth_mbps.is_finite() && o.bandwidth_mbps > 0.0 && o.bandwidth_mbps <= 1e6)
            {
                return Err(bad(
                    format!("{key}.bandwidth_mbps"),
                    format!("{} is not a bandwidth in Mbit/s; e.g. 50", o.bandwidth_mbps),
                ));
            }
            let price = |k: String, v: f64| -> Result<i64, PricesError> {
                if v < 0.0 {
                    return Err(bad(
                        k,
                        format!("{v} is negative; write the price in euros excluding VAT, zero or more, e.g. 65.00"),
                    ));
                }
                cents_of(v).ok_or_else(|| {
                    bad(
                        k,
                        format!("{v} is not euros with at most two decimals; e.g. 65.00"),
                    )
                })
            };
            let setup_cents = price(format!("{key}.setup_eur"), o.setup_eur)?;
            for z in o.monthly_eur.keys() {
                if Zone::parse(z).is_none() {
                    return Err(bad(
                        format!("{key}.monthly_eur.{z}"),
                        format!("{z:?} is not an access zone; zones are {zones}"),
                    ));
                }
            }
            let mut monthly_cents = [0; 4];
            for z in Zone::ALL {
                let k = format!("{key}.monthly_eur.{}", z.as_str());
                let Some(&v) = o.monthly_eur.get(z.as_str()) else {
                    return Err(bad(
                        k,
                        format!(
                            "zone {} has no price; add {} = <monthly euros> to monthly_eur, e.g. 65.00",
                            z.as_str(),
                            z.as_str()
                        ),
                    ));
                };
                monthly_cents[z.index()] = price(k, v)?;
            }
            offers.push(Offer {
                bandwidth_kbps: (o.bandwidth_mbps * 1000.0).round() as u64,
                setup_cents,
                monthly_cents,
            });
        }
        Ok(Self {
            agent_hour_cost_cents: hour,
            recovered_share_pct: f.recovered_share_pct,
            setup_amortisation_years: f.setup_amortisation_years,
            min_backup_kbps_per_agent: f.min_backup_kbps_per_agent,
            dense_departements: f.dense_departements,
            offers,
        })
    }

    /// Access zone of a département code.
    pub fn zone_of(&self, departement: &str) -> Zone {
        if self.dense_departements.iter().any(|d| d == departement) {
            Zone::Dense
        } else if COLLECTIVITIES.contains(&departement) {
            Zone::Collectivity
        } else if rie_proto::geo::departement(departement).is_some_and(|d| d.overseas) {
            Zone::Overseas
        } else {
            Zone::Mainland
        }
    }

    pub fn offer(&self, t: Technology) -> &Offer {
        let i = Technology::ALL.iter().position(|x| *x == t).unwrap_or(0);
        &self.offers[i]
    }
}

/// The interval a plan measures, `[from, to)` in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// A `--from`/`--to` pair that cannot be used; says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    #[error("{name} {value:?}: expected a date (2026-10-01, midnight UTC) or an RFC 3339 time (2026-10-01T00:00:00Z)")]
    Syntax { name: &'static str, value: String },
    #[error("from must be before to (from {from}, to {to})")]
    Order { from: String, to: String },
}

fn parse_instant(name: &'static str, v: &str) -> Result<i64, SpanError> {
    use time::format_description::well_known::Rfc3339;
    let err = || SpanError::Syntax {
        name,
        value: v.to_string(),
    };
    let v = v.trim();
    if let Ok(t) = time::OffsetDateTime::parse(v, &Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| err());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(v, &fmt).map_err(|_| err())?;
    Ok(d.midnight().assume_utc().unix_timestamp() * 1000)
}

impl Span {
    /// # Errors
    /// [`SpanError`] for an unreadable time or `from` not before `to`.
    pub fn parse(from: &str, to: &str) -> Result<Self, SpanError> {
        let (f, t) = (parse_instant("from", from)?, parse_instant("to", to)?);
        if f >= t {
            return Err(SpanError::Order {
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        Ok(Self {
            from_ms: f,
            to_ms: t,
        })
    }

    /// The span as the period the indicators' loaders take (its months are not used).
    pub fn as_period(&self) -> Period {
        Period {
            label: String::new(),
            start_ms: self.from_ms,
            end_ms: self.to_ms,
            months: 1,
        }
    }
}

/// How far annualised figures can be trusted, from the length of the measured period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Less than [`LOW_CONFIDENCE_DAYS`]: a week's outages say little about a year.
    Low,
    Medium,
    /// At least [`HIGH_CONFIDENCE_DAYS`].
    High,
}

impl Confidence {
    pub fn of(measured_ms: i64) -> Self {
        if measured_ms < LOW_CONFIDENCE_DAYS * DAY_MS {
            Self::Low
        } else if measured_ms < HIGH_CONFIDENCE_DAYS * DAY_MS {
            Self::Medium
        } else {
            Self::High
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// Which ranking orders the list (both ranks are on every row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// Net yearly benefit, largest first.
    Net,
    /// Yearly benefit per euro of yearly cost, largest first (investments that cost nothing or
    /// save money come first).
    PerEuro,
}

impl RankBy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "net" => Some(Self::Net),
            "per_euro" => Some(Self::PerEuro),
            _ => None,
        }
    }
}

/// Which sites a plan covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Filter {
    pub ministry: Option<String>,
    pub region: Option<String>,
}

/// Why a site is in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    /// No backup: add one.
    SingleHomed,
    /// The backup is of the primary's operator: replace it by another operator's.
    BackupSameOperator,
    /// The backup is of the primary's technology (same path, same failures).
    BackupSameTechnology,
    BackupSameOperatorAndTechnology,
}

impl Case {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SingleHomed => "single_homed",
            Self::BackupSameOperator => "backup_same_operator",
            Self::BackupSameTechnology => "backup_same_technology",
            Self::BackupSameOperatorAndTechnology => "backup_same_operator_and_technology",
        }
    }
}

/// A link as the plan shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkBrief {
    pub link: String,
    pub operator: String,
    pub technology: &'static str,
    pub bandwidth_mbps: f64,
    pub monthly_cost_cents: i64,
}

fn brief(l: &Link) -> LinkBrief {
    LinkBrief {
        link: l.id.to_string(),
        operator: l.operator.clone(),
        technology: l.technology.as_str(),
        bandwidth_mbps: l.bandwidth_mbps,
        monthly_cost_cents: l.monthly_cost_cents,
    }
}

/// Where the proposed price comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The catalogue's price for the technology in the site's zone.
    Catalogue,
    /// The cheapest link of that technology already contracted in the département.
    Contracted,
}

/// The proposed backup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    pub technology: &'static str,
    pub bandwidth_mbps: f64,
    pub source: Source,
    /// The contracted link whose price is used (source `contracted`).
    pub contracted_link: Option<String>,
    /// Its operator; a catalogue offer is from any operator but the primary's.
    pub operator: Option<String>,
    pub monthly_cents: i64,
    /// From the catalogue, whatever the source (a contracted link's setup fee is not known).
    pub setup_cents: i64,
    /// No offer reaches `min_backup_kbps_per_agent` × agents: the largest one is proposed.
    pub undersized: bool,
}

/// One investment of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Investment {
    pub rank_by_net: u64,
    pub rank_by_per_euro: u64,
    pub site: String,
    pub name: String,
    pub ministry: String,
    pub departement: String,
    pub region: String,
    pub zone: Zone,
    pub agents: u64,
    pub case: Case,
    pub primary: LinkBrief,
    pub current_backup: Option<LinkBrief>,
    pub proposal: Proposal,
    /// 12 × the proposal's monthly price.
    pub recurring_per_year_cents: i64,
    /// Setup fee / amortisation years, rounded half up.
    pub setup_per_year_cents: i64,
    /// 12 × the monthly price of the backup it replaces (diversification), else 0.
    pub saved_backup_per_year_cents: i64,
    /// recurring + setup − saved (negative: the change saves money).
    pub yearly_cost_cents: i64,
    pub measured_hours: f64,
    pub outage_minutes: f64,
    /// agents × outage hours over the period.
    pub agent_hours_lost: f64,
    /// agent-hours lost × 8760 / measured hours.
    pub agent_hours_lost_per_year: f64,
    /// agents × outage ms × 8760 × agent-hour cents × recovered % / (measured ms × 100).
    pub value_per_year_cents: i64,
    pub net_benefit_per_year_cents: i64,
    /// value / yearly cost, 4 decimals; `None` when the yearly cost is zero or negative.
    pub benefit_per_euro: Option<f64>,
    /// setup × 12 / (value − recurring + saved), months, 2 decimals; `None` when it never pays.
    pub payback_months: Option<f64>,
    /// Unrounded agent-hours lost per year, for totals.
    #[serde(skip)]
    agent_hours_year_exact: f64,
}

/// Sums over a set of investments.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub investments: u64,
    pub agents: u64,
    pub yearly_cost_cents: i64,
    pub agent_hours_per_year: f64,
    pub value_per_year_cents: i64,
    pub net_benefit_per_year_cents: i64,
}

fn totals<'a>(rows: impl Iterator<Item = &'a Investment>) -> Totals {
    let mut t = Totals::default();
    let mut hours = 0.0;
    for r in rows {
        t.investments += 1;
        t.agents += r.agents;
        t.yearly_cost_cents += r.yearly_cost_cents;
        hours += r.agent_hours_year_exact;
        t.value_per_year_cents += r.value_per_year_cents;
        t.net_benefit_per_year_cents += r.net_benefit_per_year_cents;
    }
    t.agent_hours_per_year = round_to(hours, 2);
    t
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct National {
    /// The investments whose net yearly benefit is positive: what the headline speaks of.
    pub worthwhile: Totals,
    pub all_candidates: Totals,
    /// "X M€ par an rachètent Y heures-agent de disponibilité", from `worthwhile`.
    pub headline: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanPeriod {
    pub from: String,
    pub to: String,
    /// `to`, or now when `to` is in the future.
    pub measured_until: String,
    /// Length of `[from, measured_until)`, days, 2 decimals.
    pub days: f64,
    pub confidence: Confidence,
    pub low_confidence: bool,
    /// Why figures are flagged, in French (empty when they are not).
    pub warning: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assumptions {
    pub agent_hour_cost_cents: i64,
    pub recovered_share_pct: u32,
    pub setup_amortisation_years: u32,
    pub min_backup_kbps_per_agent: u32,
    pub hours_per_year: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlanNotes {
    /// Candidate sites with agents but no measurement in the period: no evidence to value.
    pub sites_without_data: Vec<String>,
    /// Candidate sites without agents: nothing to buy back.
    pub zero_agent_sites: Vec<String>,
    pub sites_without_primary: Vec<String>,
}

/// The whole plan: what the CLI renders and the API serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub period: PlanPeriod,
    pub filter: Filter,
    pub rank_by: RankBy,
    pub assumptions: Assumptions,
    pub national: National,
    pub investments: Vec<Investment>,
    pub notes: PlanNotes,
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let k = 10f64.powi(decimals);
    (v * k).round() / k
}

/// `num / den` rounded half up, for `den > 0` and any sign of `num`.
fn div_half_up(num: i128, den: i128) -> i64 {
    let q = (2 * num + den).div_euclid(2 * den);
    i64::try_from(q).unwrap_or(if num < 0 { i64::MIN } else { i64::MAX })
}

fn same_operator(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Cheapest priced links of each (département, technology), cheapest first.
type Contracted<'a> = HashMap<(&'a str, Technology), Vec<&'a Link>>;

fn contracted_index(inv: &Inventory) -> Contracted<'_> {
    let mut m: Contracted = HashMap::new();
    for l in &inv.links {
        if l.monthly_cost_cents <= 0 {
            continue; // A link without a price is not an offer.
        }
        if let Some(s) = inv.site(&l.site) {
            m.entry((s.departement.as_str(), l.technology))
                .or_default()
                .push(l);
        }
    }
    for v in m.values_mut() {
        v.sort_by(|a, b| {
            a.monthly_cost_cents
                .cmp(&b.monthly_cost_cents)
                .then_with(|| a.id.as_str().cmp(b.id.as_str()))
        });
    }
    m
}

/// The backup to propose for a site: the cheapest yearly cost among the catalogue's offers
/// and the département's contracted links, of another technology than the primary's (and, for
/// contracted links, another operator), wide enough for its agents.
fn propose(
    prices: &BackupPrices,
    contracted: &Contracted<'_>,
    site_id: &str,
    departement: &str,
    zone: Zone,
    agents: u64,
    primary: &Link,
) -> Proposal {
    let need = agents * u64::from(prices.min_backup_kbps_per_agent);
    let years = i128::from(prices.setup_amortisation_years);
    // (yearly cost, proposal) of every candidate, in technology order, catalogue first.
    let mut all: Vec<(i64, Proposal)> = Vec::new();
    for (ti, t) in Technology::ALL.into_iter().enumerate() {
        if t == primary.technology {
            continue;
        }
        let o = &prices.offers[ti];
        let setup_year = div_half_up(i128::from(o.setup_cents), years);
        let m = o.monthly_cents[zone.index()];
        all.push((
            12 * m + setup_year,
            Proposal {
                technology: t.as_str(),
                bandwidth_mbps: o.bandwidth_kbps as f64 / 1000.0,
                source: Source::Catalogue,
                contracted_link: None,
                operator: None,
                monthly_cents: m,
                setup_cents: o.setup_cents,
                undersized: false,
            },
        ));
        let found = contracted.get(&(departement, t)).and_then(|links| {
            links.iter().find(|l| {
                l.site.as_str() != site_id && !same_operator(&l.operator, &primary.operator)
            })
        });
        if let Some(l) = found {
            all.push((
                12 * l.monthly_cost_cents + setup_year,
                Proposal {
                    technology: t.as_str(),
                    bandwidth_mbps: l.bandwidth_mbps,
                    source: Source::Contracted,
                    contracted_link: Some(l.id.to_string()),
                    operator: Some(l.operator.clone()),
                    monthly_cents: l.monthly_cost_cents,
                    setup_cents: o.setup_cents,
                    undersized: false,
                },
            ));
        }
    }
    let kbps = |p: &Proposal| (p.bandwidth_mbps * 1000.0).round() as u64;
    // `min_by_key` keeps the first of equal costs: technology order, catalogue first.
    let best = all
        .iter()
        .filter(|(_, p)| kbps(p) >= need)
        .min_by_key(|(c, _)| *c)
        .map(|(_, p)| p.clone());
    best.unwrap_or_else(|| {
        let widest = all.iter().map(|(_, p)| kbps(p)).max().unwrap_or(0);
        let mut p = all
            .iter()
            .filter(|(_, p)| kbps(p) == widest)
            .min_by_key(|(c, _)| *c)
            .map(|(_, p)| p.clone())
            .unwrap_or(Proposal {
                technology: primary.technology.as_str(),
                bandwidth_mbps: 0.0,
                source: Source::Catalogue,
                contracted_link: None,
                operator: None,
                monthly_cents: 0,
                setup_cents: 0,
                undersized: true,
            });
        p.undersized = true;
        p
    })
}

fn fr_eur(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{},{:02}", group(c / 100), c % 100)
}

/// Thousands grouped with a no-break space.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push('\u{a0}');
        }
        out.push(ch);
    }
    out
}

/// The national sentence: M€ with two decimals from 1 M€ on, exact euros below. When the
/// worthwhile investments save money overall (diversified backups cheaper than the ones they
/// replace), it says so rather than printing a negative price.
pub fn headline(cost_cents: i64, agent_hours: f64) -> String {
    let abs = i64::try_from(cost_cents.unsigned_abs()).unwrap_or(i64::MAX);
    let amount = if abs >= 100_000_000 {
        format!(
            "{}\u{a0}M€",
            fr_eur(div_half_up(i128::from(abs), 1_000_000))
        )
    } else {
        format!("{}\u{a0}€", fr_eur(abs))
    };
    let h = format!("{:.2}", agent_hours.max(0.0));
    let (int, frac) = h.split_once('.').unwrap_or((&h, "00"));
    let hours = format!("{},{frac}", group(int.parse().unwrap_or(0)));
    if cost_cents < 0 {
        format!(
            "{amount} d'économie par an, et {hours} heures-agent de disponibilité rachetées par an"
        )
    } else {
        format!("{amount} par an rachètent {hours} heures-agent de disponibilité par an")
    }
}

/// Computes the plan from loaded inputs (pure: no I/O).
pub fn compute(
    inv: &Inventory,
    prices: &BackupPrices,
    span: &Span,
    now_ms: i64,
    inp: &Inputs,
    filter: &Filter,
    rank_by: RankBy,
) -> Plan {
    let period = span.as_period();
    let no_costs = CostModel {
        shared: Vec::new(),
        one_off: Vec::new(),
        ..CostModel::default()
    };
    let table = super::site_table(inv, &no_costs, &period, now_ms, inp);
    let contracted = contracted_index(inv);
    let until = period.measured_end(now_ms);
    let length = until - span.from_ms;
    let confidence = Confidence::of(length);
    let mut notes = PlanNotes::default();
    let mut rows: Vec<Investment> = Vec::new();
    for (i, s) in inv.sites.iter().enumerate() {
        let region = super::region_of(&s.departement);
        if filter.ministry.as_ref().is_some_and(|m| m != &s.ministry)
            || filter.region.as_ref().is_some_and(|r| r != region)
        {
            continue;
        }
        let links: Vec<&Link> = inv.links_of(&s.id).collect();
        let Some(primary) = links.iter().find(|l| l.role == LinkRole::Primary) else {
            notes.sites_without_primary.push(s.id.to_string());
            continue;
        };
        let backups: Vec<&&Link> = links
            .iter()
            .filter(|l| l.role == LinkRole::Backup)
            .collect();
        let diverse = |b: &Link| {
            !same_operator(&b.operator, &primary.operator) && b.technology != primary.technology
        };
        if backups.iter().any(|b| diverse(b)) {
            continue;
        }
        let current = backups.first().map(|b| **b);
        let case = match current {
            None => Case::SingleHomed,
            Some(b) => match (
                same_operator(&b.operator, &primary.operator),
                b.technology == primary.technology,
            ) {
                (true, true) => Case::BackupSameOperatorAndTechnology,
                (true, false) => Case::BackupSameOperator,
                _ => Case::BackupSameTechnology,
            },
        };
        let f = &table.sites[i];
        if f.agents == 0 {
            notes.zero_agent_sites.push(s.id.to_string());
            continue;
        }
        if !f.measured || f.measured_ms <= 0 {
            notes.sites_without_data.push(s.id.to_string());
            continue;
        }
        let zone = prices.zone_of(&s.departement);
        let proposal = propose(
            prices,
            &contracted,
            s.id.as_str(),
            &s.departement,
            zone,
            f.agents,
            primary,
        );
        let recurring = 12 * proposal.monthly_cents;
        let setup_year = div_half_up(
            i128::from(proposal.setup_cents),
            i128::from(prices.setup_amortisation_years),
        );
        let saved = current.map_or(0, |b| 12 * b.monthly_cost_cents);
        let cost = recurring + setup_year - saved;
        let agent_ms = i128::from(f.agents) * i128::from(f.down_ms);
        let value = div_half_up(
            agent_ms
                * i128::from(HOURS_PER_YEAR)
                * i128::from(prices.agent_hour_cost_cents)
                * i128::from(prices.recovered_share_pct),
            i128::from(f.measured_ms) * 100,
        );
        let net = value - cost;
        let gain = value - recurring + saved;
        let payback = (gain > 0).then(|| {
            div_half_up(i128::from(proposal.setup_cents) * 1200, i128::from(gain)) as f64 / 100.0
        });
        let per_euro = (cost > 0).then(|| round_to(value as f64 / cost as f64, 4));
        // (agent-ms / hour) × (8760 h / measured h) = agent-ms × 8760 / measured ms.
        let hours_year = agent_ms as f64 * HOURS_PER_YEAR as f64 / f.measured_ms as f64;
        rows.push(Investment {
            rank_by_net: 0,
            rank_by_per_euro: 0,
            site: s.id.to_string(),
            name: s.name.clone(),
            ministry: s.ministry.clone(),
            departement: s.departement.clone(),
            region: region.to_string(),
            zone,
            agents: f.agents,
            case,
            primary: brief(primary),
            current_backup: current.map(brief),
            proposal,
            recurring_per_year_cents: recurring,
            setup_per_year_cents: setup_year,
            saved_backup_per_year_cents: saved,
            yearly_cost_cents: cost,
            measured_hours: round_to(f.measured_ms as f64 / HOUR_MS as f64, 4),
            outage_minutes: round_to(f.down_ms as f64 / 60_000.0, 4),
            agent_hours_lost: round_to(agent_ms as f64 / HOUR_MS as f64, 4),
            agent_hours_lost_per_year: round_to(hours_year, 2),
            value_per_year_cents: value,
            net_benefit_per_year_cents: net,
            benefit_per_euro: per_euro,
            payback_months: payback,
            agent_hours_year_exact: hours_year,
        });
    }
    rank(&mut rows, rank_by);
    let worthwhile = totals(rows.iter().filter(|r| r.net_benefit_per_year_cents > 0));
    let national = National {
        headline: headline(
            worthwhile.yearly_cost_cents,
            worthwhile.agent_hours_per_year,
        ),
        worthwhile,
        all_candidates: totals(rows.iter()),
    };
    let days = round_to(length as f64 / DAY_MS as f64, 2);
    Plan {
        period: PlanPeriod {
            from: rfc3339(span.from_ms),
            to: rfc3339(span.to_ms),
            measured_until: rfc3339(until),
            days,
            confidence,
            low_confidence: confidence == Confidence::Low,
            warning: if confidence == Confidence::Low {
                format!(
                    "Faible confiance : {} jours d'épisodes seulement (moins de {LOW_CONFIDENCE_DAYS}) ; les chiffres annualisés extrapolent une période trop courte.",
                    super::fr_number(days)
                )
            } else {
                String::new()
            },
        },
        filter: filter.clone(),
        rank_by,
        assumptions: Assumptions {
            agent_hour_cost_cents: prices.agent_hour_cost_cents,
            recovered_share_pct: prices.recovered_share_pct,
            setup_amortisation_years: prices.setup_amortisation_years,
            min_backup_kbps_per_agent: prices.min_backup_kbps_per_agent,
            hours_per_year: HOURS_PER_YEAR,
        },
        national,
        investments: rows,
        notes,
    }
}

/// Orders by net benefit, then by benefit per euro, numbering both, and leaves the rows in the
/// order asked for.
fn rank(rows: &mut [Investment], rank_by: RankBy) {
    use std::cmp::Ordering;
    let by_net = |a: &Investment, b: &Investment| {
        b.net_benefit_per_year_cents
            .cmp(&a.net_benefit_per_year_cents)
            .then(b.value_per_year_cents.cmp(&a.value_per_year_cents))
            .then_with(|| a.site.cmp(&b.site))
    };
    // Free or money-saving changes first; then value/cost compared by cross-multiplication.
    let by_ratio = |a: &Investment, b: &Investment| -> Ordering {
        let (ca, cb) = (a.yearly_cost_cents, b.yearly_cost_cents);
        match (ca <= 0, cb <= 0) {
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (true, true) => by_net(a, b),
            (false, false) => {
                let l = i128::from(b.value_per_year_cents) * i128::from(ca);
                let r = i128::from(a.value_per_year_cents) * i128::from(cb);
                l.cmp(&r).then_with(|| by_net(a, b))
            }
        }
    };
    rows.sort_by(by_ratio);
    for (n, r) in rows.iter_mut().enumerate() {
        r.rank_by_per_euro = n as u64 + 1;
    }
    rows.sort_by(by_net);
    for (n, r) in rows.iter_mut().enumerate() {
        r.rank_by_net = n as u64 + 1;
    }
    if rank_by == RankBy::PerEuro {
        rows.sort_by_key(|r| r.rank_by_per_euro);
    }
}

/// Reads the store through its read side and computes the plan (either backend).
///
/// # Errors
/// [`IndicatorError::Store`].
pub fn report(
    reader: &crate::store::Reader,
    inv: &Inventory,
    prices: &BackupPrices,
    span: &Span,
    now_ms: i64,
    filter: &Filter,
    rank_by: RankBy,
) -> Result<Plan, IndicatorError> {
    let inp = super::load_inputs(reader, inv, &span.as_period())?;
    Ok(compute(inv, prices, span, now_ms, &inp, filter, rank_by))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_file_is_valid_and_is_the_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/backup-prices.toml");
        let p = BackupPrices::load(&path).unwrap();
        assert_eq!(p, BackupPrices::default());
        assert_eq!(p.agent_hour_cost_cents, 4154);
        assert_eq!(p.offers.len(), Technology::ALL.len());
        // 4G, mainland: 65.00 € a month, 250.00 € setup.
        assert_eq!(p.offer(Technology::FourG).monthly_cents[1], 6500);
        assert_eq!(p.offer(Technology::FourG).setup_cents, 25_000);
        assert_eq!(p.zone_of("75"), Zone::Dense);
        assert_eq!(p.zone_of("2A"), Zone::Mainland);
        assert_eq!(p.zone_of("974"), Zone::Overseas);
        assert_eq!(p.zone_of("988"), Zone::Collectivity);
    }

    fn load(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prices.toml");
        std::fs::write(&p, text).unwrap();
        BackupPrices::load(&p).unwrap_err().to_string()
    }

    #[test]
    fn bad_catalogues_name_file_key_and_fix() {
        let ok = BUILTIN;
        let e = load(&ok.replace("[prices.5g]", "[prices.6g]"));
        assert!(
            e.contains("prices.toml: key `prices.6g`: \"6g\" is not a technology; use one of fibre, xdsl, 4g, 5g, satellite"),
            "{e}"
        );
        let no_sat = &ok[..ok.find("[prices.satellite]").unwrap()];
        let e = load(no_sat);
        assert!(
            e.contains("key `prices.satellite`: technology satellite has no price"),
            "{e}"
        );
        assert!(e.contains("add [prices.satellite] with bandwidth_mbps, setup_eur and monthly_eur = { dense = …, mainland = …, overseas = …, collectivity = … }"), "{e}");
        let e = load(&ok.replace("mainland = 65.00", "mainland = -65.00"));
        assert!(
            e.contains("key `prices.4g.monthly_eur.mainland`: -65 is negative; write the price in euros excluding VAT, zero or more, e.g. 65.00"),
            "{e}"
        );
        let e = load(&ok.replace("setup_eur = 300.00", "setup_eur = -1"));
        assert!(
            e.contains("key `prices.xdsl.setup_eur`: -1 is negative"),
            "{e}"
        );
        let e = load(&ok.replace("dense = 85.00", "suburb = 85.00"));
        assert!(
            e.contains("key `prices.5g.monthly_eur.suburb`: \"suburb\" is not an access zone; zones are dense, mainland, overseas, collectivity"),
            "{e}"
        );
        let e = load(&ok.replace("collectivity = 1500.00", "collectivity = 1500.005"));
        assert!(
            e.contains("key `prices.fibre.monthly_eur.collectivity`"),
            "{e}"
        );
        let e = load(&ok.replace("agent_hour_cost_eur = 41.54", "agent_hour_cost_eur = 0"));
        assert!(e.contains("key `agent_hour_cost_eur`"), "{e}");
        let e = load(&ok.replace("\"94\"]", "\"974\"]"));
        assert!(e.contains("key `dense_departements[3]`"), "{e}");
        let e = load(&ok.replace("[prices.fibre]\n", "[prices.fibre]\ncolour = 1\n"));
        assert!(e.contains("prices.toml") && e.contains("colour"), "{e}");
    }

    #[test]
    fn spans_and_confidence() {
        let s = Span::parse("2026-10-01", "2026-10-08T00:00:00Z").unwrap();
        assert_eq!(s.from_ms, 1_790_812_800_000);
        assert_eq!(s.to_ms - s.from_ms, 7 * DAY_MS);
        assert!(Span::parse("2026-10-08", "2026-10-01").is_err());
        assert!(Span::parse("octobre", "2026-10-01").is_err());
        assert_eq!(Confidence::of(7 * DAY_MS - 1), Confidence::Low);
        assert_eq!(Confidence::of(7 * DAY_MS), Confidence::Medium);
        assert_eq!(Confidence::of(90 * DAY_MS), Confidence::High);
    }

    /// A backup that replaces a dearer one ranks first per euro whatever its net benefit; a
    /// site no offer is wide enough for gets the widest one, flagged undersized.
    #[test]
    fn money_saving_first_per_euro_and_undersized_flagged() {
        use crate::indicators::{Episode, EpisodeKind};
        use crate::inventory::Site;
        use rie_proto::{LinkId, SiteId};
        let site = |id: &str, agents: u32| Site {
            id: SiteId::new(id.to_string()).unwrap(),
            name: id.into(),
            ministry: "M".into(),
            departement: "35".into(),
            agents,
            latitude: 0.0,
            longitude: 0.0,
            credential_ref: format!("p-{id}"),
            exporters: Vec::new(),
            prefixes: Vec::new(),
        };
        let link = |id: &str, s: &str, role, op: &str, technology, mbps, cents| Link {
            id: LinkId::new(id.to_string()).unwrap(),
            site: SiteId::new(s.to_string()).unwrap(),
            role,
            operator: op.into(),
            technology,
            bandwidth_mbps: mbps,
            monthly_cost_cents: cents,
        };
        use LinkRole::{Backup, Primary};
        use Technology::{Fibre, FiveG};
        // Z elsewhere than Y: Y's fibre links would otherwise be contracted offers for it.
        let mut z = site("Z", 4000);
        z.departement = "53".into();
        let inv = Inventory::index(
            vec![site("Y", 100), z],
            vec![
                link("Y-P", "Y", Primary, "Orange", Fibre, 1000.0, 150_000),
                link("Y-B", "Y", Backup, "Orange", Fibre, 500.0, 90_000),
                link("Z-P", "Z", Primary, "SFR", FiveG, 300.0, 9_000),
            ],
        );
        let span = Span::parse("2026-10-01", "2026-11-01").unwrap();
        // Z is down 1 h; Y is measured (an episode touching the period) but never down.
        let ep = |kind, start_ms, end_ms| Episode {
            kind,
            start_ms,
            end_ms: Some(end_ms),
        };
        let inp = Inputs {
            episodes: vec![
                vec![ep(EpisodeKind::Failover, span.from_ms, span.from_ms + 1000)],
                vec![ep(
                    EpisodeKind::Outage,
                    span.from_ms,
                    span.from_ms + HOUR_MS,
                )],
            ],
            traffic_bytes: vec![0, 0],
            measured: vec![true, true],
            unknown_site_episodes: 0,
        };
        let prices = BackupPrices::default();
        let p = compute(
            &inv,
            &prices,
            &span,
            i64::MAX,
            &inp,
            &Filter::default(),
            RankBy::PerEuro,
        );
        let y = &p.investments[0];
        assert_eq!(y.site, "Y");
        assert_eq!(y.case, Case::BackupSameOperatorAndTechnology);
        // It needs 100 × 50 kbit/s = 5 Mbit/s: 4G mainland 65.00 € a month + 250.00 € / 3 −
        // the 900.00 € a month replaced: 78000 + 8333 − 1080000 = −993667 c, a saving.
        assert_eq!(y.proposal.technology, "4g");
        assert_eq!(y.yearly_cost_cents, -993_667);
        assert_eq!(y.value_per_year_cents, 0);
        assert_eq!(y.net_benefit_per_year_cents, 993_667);
        assert_eq!(y.benefit_per_euro, None);
        // Gain 0 − 78000 + 1080000 = 1002000 c a year; 25000 × 12 / 1002000 = 0.30 month.
        assert_eq!(y.payback_months, Some(0.3));
        assert_eq!((y.rank_by_per_euro, y.rank_by_net), (1, 2));
        // Z needs 4000 × 50 kbit/s = 200 Mbit/s, its primary is 5G: no other offer reaches
        // it, the widest (fibre, 100 Mbit/s) is proposed and flagged.
        let z = &p.investments[1];
        assert_eq!(z.proposal.technology, "fibre");
        assert!(z.proposal.undersized);
        // 4000 agents × 1 h × 8760 / 744 h × 4154 c = 195,640,000 c exactly.
        assert_eq!(z.value_per_year_cents, 195_640_000);
        assert_eq!((z.rank_by_per_euro, z.rank_by_net), (2, 1));
    }

    #[test]
    fn rounding_and_headline() {
        assert_eq!(div_half_up(5, 2), 3);
        assert_eq!(div_half_up(-5, 2), -2);
        assert_eq!(div_half_up(7, 3), 2);
        assert_eq!(
            headline(282_000, 6711.984),
            "2\u{a0}820,00\u{a0}€ par an rachètent 6\u{a0}711,98 heures-agent de disponibilité par an"
        );
        assert_eq!(
            headline(-109_808, 9_680_220.934),
            "1\u{a0}098,08\u{a0}€ d'économie par an, et 9\u{a0}680\u{a0}220,93 heures-agent de disponibilité rachetées par an"
        );
        assert_eq!(
            headline(1_234_567_890, 1_000_000.0),
            "12,35\u{a0}M€ par an rachètent 1\u{a0}000\u{a0}000,00 heures-agent de disponibilité par an"
        );
    }
}
