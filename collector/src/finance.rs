//! The finance duty: every `finance.interval` the leader computes the cost and resilience
//! indicators of the current month to date (the same [`indicators::compute`] as the finance
//! report and `/api/v1/indicators`, so Grafana shows the report's figures to the cent) and
//! publishes them: InfluxDB measurements `cost` (national, per ministry, per region),
//! `cost_top_site` (the `finance.top_sites` sites with the highest cost per agent) and
//! `resilience_plan` (the planner's first `finance.top_sites` investments by net benefit over
//! the last 30 days, as `/api/v1/indicators/resilience-plan` by default), through the InfluxDB
//! sink's queue when it is on (schema in `docs/schema.md`), and Prometheus gauges
//! `rie_finance_*` by ministry and region only (no per-site label). Agent-hours are priced at
//! the planner's `agent_hour_cost_eur` (`configs/backup-prices.toml`): one value for both.
//!
//! Runs once among collectors sharing PostgreSQL: only the leader ([`Leadership`]) computes
//! and writes; a follower clears its gauges, so that a `sum` over collectors counts each figure
//! once. With SQLite the collector is alone and always the leader.
//!
//! Owns: `[finance]` ([`FinanceConfig`]), the line protocol of its measurements (built with
//! `sinks::line`), its gauges ([`FinanceMetrics`]) and the schedule. Holds no formula: every
//! figure comes from `indicators`. May import `indicators`, `inventory`, `store` (reads),
//! `sinks` (line primitives, the sink's public handle), `duties` (leadership); `app` starts it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Gauge, GaugeVec, Opts, Registry};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::duties::Leadership;
use crate::indicators::resilience_plan::{self as plan, BackupPrices, Filter, RankBy, Span};
use crate::indicators::{self, CostModel, GroupBy, GroupRow, IndicatorError, Period};
use crate::inventory::Inventory;
use crate::sinks::influx::InfluxSink;
use crate::sinks::line::Line;

/// `[finance]` section of the collector configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinanceConfig {
    /// How often the indicators of the current month are computed and written (each run reads
    /// the month's episodes and traffic: keep it in minutes on a national inventory).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Rows written to `cost_top_site` (highest cost per agent first) and to
    /// `resilience_plan` (highest net benefit first).
    #[serde(default = "default_top_sites")]
    pub top_sites: usize,
}

fn default_interval() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_top_sites() -> usize {
    20
}

impl Default for FinanceConfig {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            top_sites: default_top_sites(),
        }
    }
}

impl FinanceConfig {
    /// # Errors
    /// The key at fault and a right value.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.interval < Duration::from_secs(1) {
            return Err((
                "finance.interval",
                format!("{:?} is too short; e.g. \"15m\"", self.interval),
            ));
        }
        if !(1..=1000).contains(&self.top_sites) {
            return Err((
                "finance.top_sites",
                format!("{} is not 1 to 1000; e.g. 20", self.top_sites),
            ));
        }
        Ok(())
    }
}

/// One site of the "highest cost per agent" list.
#[derive(Debug, Clone, PartialEq)]
pub struct TopSite {
    pub rank: usize,
    pub site: String,
    pub ministry: String,
    pub region: String,
    pub agents: u64,
    pub cost_per_agent_year_cents: i64,
    pub total_cost_cents: i64,
}

/// What one run publishes: the report's rows for the current month, and the planner's.
#[derive(Debug, Clone)]
pub struct Figures {
    pub period: Period,
    pub national: GroupRow,
    pub ministries: Vec<GroupRow>,
    pub regions: Vec<GroupRow>,
    pub top_sites: Vec<TopSite>,
    /// The plan's span and its first investments by net benefit.
    pub plan_span: Span,
    pub plan: Vec<plan::Investment>,
    /// Price of an agent-hour, cents (the planner's catalogue).
    pub agent_hour_cost_cents: i64,
}

/// Span of the plan the duty publishes: the 30 days before `now_ms` (whole seconds), the
/// API's default.
pub fn plan_span(now_ms: i64) -> Span {
    let to_ms = now_ms.div_euclid(1000) * 1000;
    Span {
        from_ms: to_ms - 30 * 86_400_000,
        to_ms,
    }
}

/// The calendar month (UTC) of `now_ms`, as a report period.
pub fn current_month(now_ms: i64) -> Period {
    let t = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let label = format!("{:04}-{:02}", t.year(), u8::from(t.month()));
    // The label is built from a valid date: it always parses.
    Period::parse(&label).expect("a valid month label")
}

/// Computes the figures of the month of `now_ms` from the store (one read of the inputs).
///
/// # Errors
/// [`IndicatorError::Store`].
pub fn figures(
    reader: &crate::store::Reader,
    inv: &Inventory,
    model: &CostModel,
    prices: &BackupPrices,
    now_ms: i64,
    top: usize,
) -> Result<Figures, IndicatorError> {
    let period = current_month(now_ms);
    let inp = indicators::load_inputs(reader, inv, &period)?;
    let report = |by| indicators::compute(inv, model, &period, now_ms, &inp, by);
    let by_ministry = report(GroupBy::Ministry);
    let by_region = report(GroupBy::Region);
    let by_site = report(GroupBy::Site);
    let index: HashMap<&str, usize> = inv
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut ranked: Vec<(&GroupRow, usize)> = by_site
        .groups
        .iter()
        .filter(|g| g.cost_per_agent_year_cents.is_some())
        .filter_map(|g| index.get(g.group.as_str()).map(|&i| (g, i)))
        .collect();
    // Highest cost per agent first; ties in inventory order.
    ranked.sort_by(|a, b| {
        b.0.cost_per_agent_year_cents
            .cmp(&a.0.cost_per_agent_year_cents)
            .then(a.1.cmp(&b.1))
    });
    let top_sites = ranked
        .into_iter()
        .take(top)
        .enumerate()
        .map(|(n, (g, i))| {
            let s = &inv.sites[i];
            TopSite {
                rank: n + 1,
                site: g.group.clone(),
                ministry: s.ministry.clone(),
                region: indicators::region_of(&s.departement).to_string(),
                agents: g.agents,
                cost_per_agent_year_cents: g.cost_per_agent_year_cents.unwrap_or(0),
                total_cost_cents: g.total_cost_cents,
            }
        })
        .collect();
    // The plan measures up to the span's end, which is `now` to the second: the same figures
    // as the API asked for that span afterwards.
    let span = plan_span(now_ms);
    let mut investments = plan::report(
        reader,
        inv,
        prices,
        &span,
        span.to_ms,
        &Filter::default(),
        RankBy::Net,
    )?
    .investments;
    investments.truncate(top);
    Ok(Figures {
        period,
        national: by_ministry.national,
        ministries: by_ministry.groups,
        regions: by_region.groups,
        top_sites,
        plan_span: span,
        plan: investments,
        agent_hour_cost_cents: prices.agent_hour_cost_cents,
    })
}

fn eur(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// `cost` point of one row.
fn cost_line(tags: Line, g: &GroupRow, f: &Figures, model: &CostModel, at: i64) -> Option<String> {
    tags.int("sites", g.sites as i64)
        .int("agents", g.agents as i64)
        .float("total_cost_eur", eur(g.total_cost_cents))
        .float("backup_link_cost_eur", eur(g.backup_link_cost_cents))
        .opt_float(
            "cost_per_agent_year_eur",
            g.cost_per_agent_year_cents.map(eur),
        )
        .opt_float(
            "resilience_cost_per_agent_year_eur",
            g.resilience_cost_per_agent_year_cents.map(eur),
        )
        .opt_float("resilience_share_pct", g.resilience_share_pct())
        .int(
            "reference_eur_per_agent_year",
            model.reference_eur_per_agent_year,
        )
        .float("agent_hours_lost", g.agent_hours_lost)
        .float(
            "agent_hours_lost_cost_eur",
            eur(g.agent_hours_lost_cost_cents(f.agent_hour_cost_cents)),
        )
        .opt_float("availability_agent_pct", g.availability_agent_pct)
        .at(at)
}

/// Line protocol of one run, at `at` (Unix seconds): `cost` national, per ministry and per
/// region, `cost_top_site` and `resilience_plan` by rank.
pub fn lines(f: &Figures, model: &CostModel, at: i64) -> Vec<String> {
    let mut out = Vec::new();
    let cost = |scope: &str| Line::new("cost").tag("scope", scope);
    out.extend(cost_line(cost("national"), &f.national, f, model, at));
    for g in &f.ministries {
        out.extend(cost_line(
            cost("ministry").tag("ministry", &g.group),
            g,
            f,
            model,
            at,
        ));
    }
    for g in &f.regions {
        out.extend(cost_line(
            cost("region").tag("region", &g.group),
            g,
            f,
            model,
            at,
        ));
    }
    for s in &f.top_sites {
        out.extend(
            Line::new("cost_top_site")
                .tag("rank", &s.rank.to_string())
                .string("site", &s.site)
                .string("ministry", &s.ministry)
                .string("region", &s.region)
                .int("agents", s.agents as i64)
                .float("cost_per_agent_year_eur", eur(s.cost_per_agent_year_cents))
                .float("total_cost_eur", eur(s.total_cost_cents))
                .at(at),
        );
    }
    out
}

/// `resilience_plan` points of the planner's ranked investments (`rows` in rank order), at
/// `at` (Unix seconds); each carries the span it was measured over.
pub fn plan_lines(rows: &[plan::Investment], span: &Span, at: i64) -> Vec<String> {
    rows.iter()
        .enumerate()
        .filter_map(|(n, r)| {
            Line::new("resilience_plan")
                .tag("rank", &(n + 1).to_string())
                .string("site", &r.site)
                .string("ministry", &r.ministry)
                .string("region", &r.region)
                .string("technology", r.proposal.technology)
                .int("agents", r.agents as i64)
                .float("yearly_cost_eur", eur(r.yearly_cost_cents))
                .float("value_per_year_eur", eur(r.value_per_year_cents))
                .float(
                    "net_benefit_per_year_eur",
                    eur(r.net_benefit_per_year_cents),
                )
                .float("agent_hours_lost_per_year", r.agent_hours_lost_per_year)
                .int("span_from_s", span.from_ms.div_euclid(1000))
                .int("span_to_s", span.to_ms.div_euclid(1000))
                .at(at)
        })
        .collect()
}

/// The duty's Prometheus series: national, per ministry and per region (`by` and `group`
/// labels; at most 1 + 13 + 20 series per family on the national inventory).
pub struct FinanceMetrics {
    pub cost_per_agent_year: GaugeVec,
    pub resilience_share: GaugeVec,
    pub agent_hours_lost: GaugeVec,
    pub agent_hours_lost_cost: GaugeVec,
    pub reference: Gauge,
    pub last_run: Gauge,
}

impl FinanceMetrics {
    /// # Panics
    /// Only if the names were already registered (a programming error).
    pub fn register(registry: &Registry) -> Arc<Self> {
        let vec = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(name, help), &["by", "group"]).expect("valid metric")
        };
        let m = Self {
            cost_per_agent_year: vec(
                "rie_finance_cost_per_agent_year_euros",
                "Cost per agent per year of the current month (links and allocated national costs), by national, ministry or region.",
            ),
            resilience_share: vec(
                "rie_finance_resilience_share_ratio",
                "Share of backup links in the cost per agent per year, current month (0 to 1).",
            ),
            agent_hours_lost: vec(
                "rie_finance_agent_hours_lost",
                "Agent-hours lost to outages in the current month so far.",
            ),
            agent_hours_lost_cost: vec(
                "rie_finance_agent_hours_lost_cost_euros",
                "Price of the agent-hours lost in the current month so far (backup-prices.toml agent_hour_cost_eur).",
            ),
            reference: Gauge::new(
                "rie_finance_reference_cost_per_agent_year_euros",
                "Reference cost per agent per year of the cost model (DINUM: about 100 €).",
            )
            .expect("valid metric"),
            last_run: Gauge::new(
                "rie_finance_last_run_timestamp_seconds",
                "When this collector last computed the finance figures (0: not the leader).",
            )
            .expect("valid metric"),
        };
        for c in [
            Box::new(m.cost_per_agent_year.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.resilience_share.clone()),
            Box::new(m.agent_hours_lost.clone()),
            Box::new(m.agent_hours_lost_cost.clone()),
            Box::new(m.reference.clone()),
            Box::new(m.last_run.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Arc::new(m)
    }

    fn set(&self, f: &Figures, model: &CostModel, now_ms: i64) {
        let hour = f.agent_hour_cost_cents;
        self.clear();
        let rows = std::iter::once(("national", &f.national))
            .chain(f.ministries.iter().map(|g| ("ministry", g)))
            .chain(f.regions.iter().map(|g| ("region", g)));
        for (by, g) in rows {
            let l = [by, g.group.as_str()];
            if let Some(c) = g.cost_per_agent_year_cents {
                self.cost_per_agent_year.with_label_values(&l).set(eur(c));
            }
            if let Some(p) = g.resilience_share_pct() {
                self.resilience_share.with_label_values(&l).set(p / 100.0);
            }
            self.agent_hours_lost
                .with_label_values(&l)
                .set(g.agent_hours_lost);
            self.agent_hours_lost_cost
                .with_label_values(&l)
                .set(eur(g.agent_hours_lost_cost_cents(hour)));
        }
        self.reference
            .set(model.reference_eur_per_agent_year as f64);
        self.last_run.set(now_ms as f64 / 1000.0);
    }

    /// A follower shows none of the figures (the leader does).
    fn clear(&self) {
        for v in [
            &self.cost_per_agent_year,
            &self.resilience_share,
            &self.agent_hours_lost,
            &self.agent_hours_lost_cost,
        ] {
            v.reset();
        }
        self.last_run.set(0.0);
    }
}

/// What the duty needs from the running collector.
pub struct Duty {
    pub cfg: FinanceConfig,
    pub reader: Arc<crate::store::Reader>,
    pub inventory: Arc<Inventory>,
    pub model: Arc<CostModel>,
    pub prices: Arc<BackupPrices>,
    pub influx: Option<InfluxSink>,
    pub leadership: Arc<Leadership>,
    pub metrics: Arc<FinanceMetrics>,
}

/// How often a collector looks whether it is the leader and whether a run is due.
const CHECK: Duration = Duration::from_secs(1);

/// Starts the duty on `tracker`, until `shutdown`. A run happens at once when this collector
/// starts or becomes the leader, then every `finance.interval`.
pub fn start(duty: Duty, shutdown: &CancellationToken, tracker: &TaskTracker) {
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(CHECK.min(duty.cfg.interval));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let every = duty.cfg.interval.as_secs().max(1) as i64;
        // When the last run started, and in which term of leadership.
        let mut last: Option<(std::time::Instant, u64)> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !duty.leadership.is_leader() {
                if last.take().is_some() {
                    duty.metrics.clear();
                }
                continue;
            }
            let epoch = duty.leadership.epoch();
            let due = last.is_none_or(|(at, e)| e != epoch || at.elapsed() >= duty.cfg.interval);
            if !due {
                continue;
            }
            last = Some((std::time::Instant::now(), epoch));
            let now_ms = rie_common::now_ms();
            let (reader, inv, model, prices, top) = (
                duty.reader.clone(),
                duty.inventory.clone(),
                duty.model.clone(),
                duty.prices.clone(),
                duty.cfg.top_sites,
            );
            let started = std::time::Instant::now();
            let run = tokio::task::spawn_blocking(move || {
                figures(&reader, &inv, &model, &prices, now_ms, top)
            })
            .await;
            match run {
                Ok(Ok(f)) => {
                    duty.metrics.set(&f, &duty.model, now_ms);
                    // Each run sits on its interval's start: a restart rewrites, not adds.
                    let at = now_ms.div_euclid(1000).div_euclid(every) * every;
                    if let Some(sink) = &duty.influx {
                        let mut out = lines(&f, &duty.model, at);
                        out.extend(plan_lines(&f.plan, &f.plan_span, at));
                        sink.lines(out);
                    }
                    let took = started.elapsed();
                    if took > duty.cfg.interval / 2 {
                        tracing::warn!(
                            period = %f.period.label,
                            ms = took.as_millis() as u64,
                            "finance figures took more than half of finance.interval to compute; raise finance.interval"
                        );
                    } else {
                        tracing::debug!(
                            period = %f.period.label,
                            ms = took.as_millis() as u64,
                            "finance figures published"
                        );
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "finance figures not computed"),
                Err(_) => tracing::error!("the finance computation stopped"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_month_of_an_instant() {
        // 2026-12-07T09:30:00Z.
        let p = current_month(1_796_635_800_000);
        assert_eq!(p, Period::parse("2026-12").unwrap());
        // The last millisecond of November is still November.
        let nov = Period::parse("2026-11").unwrap();
        assert_eq!(current_month(nov.end_ms - 1), nov);
    }

    #[test]
    fn bad_config_names_the_key() {
        let c = FinanceConfig {
            top_sites: 0,
            ..FinanceConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "finance.top_sites");
        let c = FinanceConfig {
            interval: Duration::from_millis(10),
            ..FinanceConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "finance.interval");
        FinanceConfig::default().validate().unwrap();
    }

    /// On the fixture inventory with the default cost model and no data: the national row by
    /// hand, escaped tags, and the top list by cost per agent.
    #[test]
    fn lines_of_the_fixture_month() {
        let dir = tempfile::tempdir().unwrap();
        let inv = crate::inventory::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/inventory"),
        )
        .unwrap();
        let db = dir.path().join("rie.db");
        crate::store::open(&db).unwrap();
        let reader = crate::store::Reader::open(&db).unwrap();
        let model = CostModel::default();
        let now = Period::parse("2026-10").unwrap().start_ms + 86_400_000;
        let f = figures(&reader, &inv, &model, &BackupPrices::default(), now, 2).unwrap();
        // Links 2,872.69 €/month + the fixture's share (3 of 14,000 sites) of one month of
        // national costs, each rounded once: 17,857 + 21,429 + 16,071 + 3,571 + 5,357 = 64,285
        // cents; 351,554 cents × 12 / 575 agents = 7,336.78 → 7,337 cents. Backups 159.89 €/month
        // × 12 / 575 = 333.68 → 334 cents, 334 / 7,337 = 4.5523 %.
        assert_eq!(f.national.total_cost_cents, 351_554);
        assert_eq!(f.national.cost_per_agent_year_cents, Some(7_337));
        let l = lines(&f, &model, 1_790_900_000);
        assert_eq!(l.len(), 1 + 3 + 3 + 2, "{l:#?}");
        assert_eq!(
            l[0],
            "cost,scope=national sites=3i,agents=575i,total_cost_eur=3515.54,\
             backup_link_cost_eur=159.89,cost_per_agent_year_eur=73.37,\
             resilience_cost_per_agent_year_eur=3.34,resilience_share_pct=4.5523,\
             reference_eur_per_agent_year=100i,agent_hours_lost=0.0,\
             agent_hours_lost_cost_eur=0.0 1790900000"
        );
        assert!(
            l.iter()
                .any(|x| x.starts_with("cost,scope=ministry,ministry=Économie\\ et\\ Finances ")),
            "{l:#?}"
        );
        assert!(l
            .iter()
            .any(|x| x.starts_with("cost,scope=region,region=Corse ")));
        // S2 (35 agents) costs the most per agent, then S3 (120).
        assert!(
            l[7].starts_with(
                "cost_top_site,rank=1 site=\"S2\",ministry=\"Économie et Finances\",region=\"Guyane\",agents=35i,"
            ),
            "{}",
            l[7]
        );
        assert!(
            l[8].starts_with("cost_top_site,rank=2 site=\"S3\""),
            "{}",
            l[8]
        );
    }

    /// The planner's first investment as a `resilience_plan` point: S2 (single-homed,
    /// satellite, 35 agents) down an hour in the span.
    #[test]
    fn plan_points_of_the_fixture() {
        let dir = tempfile::tempdir().unwrap();
        let inv = crate::inventory::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/inventory"),
        )
        .unwrap();
        let db = dir.path().join("rie.db");
        let now = Period::parse("2026-10").unwrap().start_ms + 10 * 86_400_000;
        crate::store::open(&db)
            .unwrap()
            .execute_batch(&format!(
                "INSERT INTO episodes(site_id, kind, link_id, start_ms, end_ms, cause)
                 VALUES ('S2', 'outage', NULL, {}, {}, 'test')",
                now - 2 * 3_600_000,
                now - 3_600_000
            ))
            .unwrap();
        let reader = crate::store::Reader::open(&db).unwrap();
        let prices = BackupPrices::default();
        let f = figures(&reader, &inv, &CostModel::default(), &prices, now, 5).unwrap();
        assert_eq!(f.plan_span.to_ms - f.plan_span.from_ms, 30 * 86_400_000);
        assert_eq!(f.plan.len(), 1);
        let r = &f.plan[0];
        assert_eq!((r.site.as_str(), r.agents), ("S2", 35));
        let l = plan_lines(&f.plan, &f.plan_span, 60);
        assert_eq!(
            l,
            [format!(
                "resilience_plan,rank=1 site=\"S2\",ministry=\"Économie et Finances\",region=\"Guyane\",\
                 technology=\"{}\",agents=35i,yearly_cost_eur={:?},value_per_year_eur={:?},\
                 net_benefit_per_year_eur={:?},agent_hours_lost_per_year={:?},span_from_s={}i,span_to_s={}i 60",
                r.proposal.technology,
                r.yearly_cost_cents as f64 / 100.0,
                r.value_per_year_cents as f64 / 100.0,
                r.net_benefit_per_year_cents as f64 / 100.0,
                r.agent_hours_lost_per_year,
                f.plan_span.from_ms / 1000,
                now / 1000
            )]
        );
        // 35 agents × 1 h over 30 days (720 h measured) × 8760 h = 425.83 agent-hours a year.
        assert_eq!(r.agent_hours_lost_per_year, 425.83);
    }
}
