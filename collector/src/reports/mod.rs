//! Finance reports: the indicators of one period rendered as CSV (stable columns, optional
//! French locale), JSON (the [`Report`] as is, same as `GET /api/v1/indicators`) or one
//! self-contained French HTML page with inline SVG charts and the methodology.
//!
//! May import `indicators` and `inventory`; used by the CLI (`rie-collector report`).

mod html;
mod progress;
pub mod resilience;

use std::fmt::Write as _;

use crate::indicators::{GroupRow, Report};

pub use html::{render_html, HtmlInput};
pub use progress::Progress;
pub use resilience::{render_plan_csv, render_plan_html, render_plan_json, PLAN_CSV_COLUMNS};

/// Output format of `rie-collector report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    Html,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Self::Csv),
            "json" => Some(Self::Json),
            "html" => Some(Self::Html),
            _ => None,
        }
    }
}

/// Number formatting of the CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    /// `,` separator, `.` decimal point.
    En,
    /// `;` separator, `,` decimal comma (what French spreadsheets open directly).
    Fr,
}

/// CSV columns, in order. Stable: new columns are only ever appended (docs/indicators.md).
pub const CSV_COLUMNS: &[&str] = &[
    "period",
    "group_by",
    "group",
    "sites",
    "agents",
    "sites_zero_agents",
    "dual_homed_sites",
    "dual_homed_agent_share_pct",
    "contracted_mbps",
    "link_cost_eur",
    "backup_link_cost_eur",
    "shared_cost_eur",
    "total_cost_eur",
    "cost_per_agent_year_eur",
    "cost_per_mbps_month_eur",
    "resilience_cost_per_agent_year_eur",
    "reference_cost_per_agent_year_eur",
    "sites_with_data",
    "measured_hours",
    "availability_time_pct",
    "availability_agent_pct",
    "agent_hours_lost",
    "outages",
    "outage_minutes",
    "mttr_minutes",
    "mtbf_hours",
    "backup_hours",
    "primary_failures",
    "failovers_in_time",
    "failover_success_pct",
    "availability_dual_homed_pct",
    "availability_single_homed_pct",
];

/// Cents as euros with exactly two decimals, from integers (no float on money).
pub fn euros(cents: i64, locale: Locale) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    let sep = if locale == Locale::Fr { ',' } else { '.' };
    format!("{sign}{}{sep}{:02}", c / 100, c % 100)
}

fn num(v: f64, locale: Locale) -> String {
    let s = format!("{v}");
    if locale == Locale::Fr {
        s.replace('.', ",")
    } else {
        s
    }
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_default()
}

fn csv_row(r: &Report, g: &GroupRow, l: Locale) -> Vec<String> {
    vec![
        r.period.label.clone(),
        r.group_by.as_str().to_string(),
        g.group.clone(),
        g.sites.to_string(),
        g.agents.to_string(),
        g.sites_zero_agents.to_string(),
        g.dual_homed_sites.to_string(),
        opt(g.dual_homed_agent_share_pct, |v| num(v, l)),
        num(g.contracted_mbps, l),
        euros(g.link_cost_cents, l),
        euros(g.backup_link_cost_cents, l),
        euros(g.shared_cost_cents, l),
        euros(g.total_cost_cents, l),
        opt(g.cost_per_agent_year_cents, |v| euros(v, l)),
        opt(g.cost_per_mbps_month_cents, |v| euros(v, l)),
        opt(g.resilience_cost_per_agent_year_cents, |v| euros(v, l)),
        euros(r.reference_cost_per_agent_year_cents, l),
        g.sites_with_data.to_string(),
        num(g.measured_hours, l),
        opt(g.availability_time_pct, |v| num(v, l)),
        opt(g.availability_agent_pct, |v| num(v, l)),
        num(g.agent_hours_lost, l),
        g.outages.to_string(),
        num(g.outage_minutes, l),
        opt(g.mttr_minutes, |v| num(v, l)),
        opt(g.mtbf_hours, |v| num(v, l)),
        num(g.backup_hours, l),
        g.primary_failures.to_string(),
        g.failovers_in_time.to_string(),
        opt(g.failover_success_pct, |v| num(v, l)),
        opt(g.availability_dual_homed_pct, |v| num(v, l)),
        opt(g.availability_single_homed_pct, |v| num(v, l)),
    ]
}

/// The report as CSV: a header, one row per group, then the national row (group `national`)
/// unless the grouping is already national. Empty cells mean "not defined" (no agents, no data,
/// no outage).
///
/// # Errors
/// Only on a CSV writer failure (never for an in-memory buffer).
pub fn render_csv(r: &Report, locale: Locale) -> Result<String, csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .delimiter(if locale == Locale::Fr { b';' } else { b',' })
        .from_writer(Vec::new());
    w.write_record(CSV_COLUMNS)?;
    for g in &r.groups {
        w.write_record(csv_row(r, g, locale))?;
    }
    if r.groups.len() != 1 || r.groups[0].group != "national" {
        w.write_record(csv_row(r, &r.national, locale))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The report as pretty JSON (same document as the API).
///
/// # Errors
/// Serialisation errors (none expected).
pub fn render_json(r: &Report) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string_pretty(r)?;
    let _ = writeln!(s);
    Ok(s)
}

/// Renders a resilience investment plan (`rie-collector report resilience`).
///
/// # Errors
/// [`ReportError`] on a writer failure.
pub fn render_plan(
    plan: &crate::indicators::resilience_plan::Plan,
    format: Format,
    locale: Locale,
) -> Result<String, ReportError> {
    Ok(match format {
        Format::Json => render_plan_json(plan)?,
        Format::Csv => render_plan_csv(plan, locale)?,
        Format::Html => render_plan_html(plan),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euros_are_exact() {
        assert_eq!(euros(123_456, Locale::En), "1234.56");
        assert_eq!(euros(5, Locale::Fr), "0,05");
        assert_eq!(euros(-250, Locale::En), "-2.50");
    }
}

/// Everything `rie-collector report` needs besides the store.
pub struct Request<'a> {
    pub inventory: &'a crate::inventory::Inventory,
    pub model: &'a crate::indicators::CostModel,
    pub period: &'a crate::indicators::Period,
    pub now_ms: i64,
    pub group_by: crate::indicators::GroupBy,
    pub format: Format,
    pub locale: Locale,
}

/// Why a report could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Indicators(#[from] crate::indicators::IndicatorError),
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads the store once and renders the report; `stage` is told what is being done (for a
/// progress display).
///
/// # Errors
/// [`ReportError`].
pub fn build(
    reader: &crate::store::Reader,
    req: &Request<'_>,
    stage: &dyn Fn(&'static str),
) -> Result<String, ReportError> {
    use crate::indicators::{compute, load_inputs, GroupBy};
    stage("lecture des épisodes et du trafic");
    let inp = load_inputs(reader, req.inventory, req.period)?;
    stage("calcul des indicateurs");
    let one = |g| compute(req.inventory, req.model, req.period, req.now_ms, &inp, g);
    let main = one(req.group_by);
    stage("mise en forme");
    Ok(match req.format {
        Format::Json => render_json(&main)?,
        Format::Csv => render_csv(&main, req.locale)?,
        Format::Html => {
            let by_ministry = one(GroupBy::Ministry);
            let by_departement = one(GroupBy::Departement);
            let by_site = one(GroupBy::Site);
            render_html(&html::HtmlInput {
                main: &main,
                by_ministry: &by_ministry,
                by_departement: &by_departement,
                by_site: &by_site,
            })
        }
    })
}
