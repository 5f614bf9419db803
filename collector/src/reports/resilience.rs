//! The resilience investment plan (`rie-collector report resilience`) as CSV (one row per
//! investment, then the national row of worthwhile ones), JSON (the [`Plan`] as is, same as
//! `GET /api/v1/indicators/resilience-plan`) or one self-contained French HTML page. Every
//! format carries the period's confidence, on every CSV row and as a banner in HTML.
//!
//! May import `indicators` only; formats what `indicators::resilience_plan::compute` returns.

use std::fmt::Write as _;

use super::html::{esc, eur, fr_fixed};
use super::{euros, Locale};
use crate::indicators::fr_number;
use crate::indicators::resilience_plan::{Investment, Plan, Source, Totals};

/// CSV columns, in order; new columns are only ever appended.
pub const PLAN_CSV_COLUMNS: &[&str] = &[
    "rank_by_net",
    "rank_by_per_euro",
    "site",
    "name",
    "ministry",
    "departement",
    "region",
    "zone",
    "agents",
    "case",
    "primary_technology",
    "primary_operator",
    "backup_technology",
    "backup_operator",
    "proposed_technology",
    "offer_source",
    "offer_link",
    "offer_monthly_eur",
    "offer_setup_eur",
    "recurring_per_year_eur",
    "setup_per_year_eur",
    "saved_backup_per_year_eur",
    "yearly_cost_eur",
    "measured_hours",
    "outage_minutes",
    "agent_hours_lost",
    "agent_hours_lost_per_year",
    "value_per_year_eur",
    "net_benefit_per_year_eur",
    "benefit_per_euro",
    "payback_months",
    "undersized",
    "from",
    "to",
    "period_days",
    "confidence",
];

fn num(v: f64, l: Locale) -> String {
    let s = format!("{v}");
    if l == Locale::Fr {
        s.replace('.', ",")
    } else {
        s
    }
}

fn row(p: &Plan, r: &Investment, l: Locale) -> Vec<String> {
    let b = r.current_backup.as_ref();
    vec![
        r.rank_by_net.to_string(),
        r.rank_by_per_euro.to_string(),
        r.site.clone(),
        r.name.clone(),
        r.ministry.clone(),
        r.departement.clone(),
        r.region.clone(),
        r.zone.as_str().to_string(),
        r.agents.to_string(),
        r.case.as_str().to_string(),
        r.primary.technology.to_string(),
        r.primary.operator.clone(),
        b.map(|b| b.technology.to_string()).unwrap_or_default(),
        b.map(|b| b.operator.clone()).unwrap_or_default(),
        r.proposal.technology.to_string(),
        match r.proposal.source {
            Source::Catalogue => "catalogue".into(),
            Source::Contracted => "contracted".into(),
        },
        r.proposal.contracted_link.clone().unwrap_or_default(),
        euros(r.proposal.monthly_cents, l),
        euros(r.proposal.setup_cents, l),
        euros(r.recurring_per_year_cents, l),
        euros(r.setup_per_year_cents, l),
        euros(r.saved_backup_per_year_cents, l),
        euros(r.yearly_cost_cents, l),
        num(r.measured_hours, l),
        num(r.outage_minutes, l),
        num(r.agent_hours_lost, l),
        num(r.agent_hours_lost_per_year, l),
        euros(r.value_per_year_cents, l),
        euros(r.net_benefit_per_year_cents, l),
        r.benefit_per_euro.map(|v| num(v, l)).unwrap_or_default(),
        r.payback_months.map(|v| num(v, l)).unwrap_or_default(),
        r.proposal.undersized.to_string(),
        p.period.from.clone(),
        p.period.to.clone(),
        num(p.period.days, l),
        p.period.confidence.as_str().to_string(),
    ]
}

/// The national row: the worthwhile investments' sums under the same columns.
fn national_row(p: &Plan, t: &Totals, l: Locale) -> Vec<String> {
    let mut v = vec![String::new(); PLAN_CSV_COLUMNS.len()];
    let at = |name: &str| {
        PLAN_CSV_COLUMNS
            .iter()
            .position(|c| *c == name)
            .unwrap_or(0)
    };
    v[at("site")] = "national".into();
    v[at("name")] = p.national.headline.clone();
    v[at("case")] = "worthwhile".into();
    v[at("agents")] = t.agents.to_string();
    v[at("yearly_cost_eur")] = euros(t.yearly_cost_cents, l);
    v[at("agent_hours_lost_per_year")] = num(t.agent_hours_per_year, l);
    v[at("value_per_year_eur")] = euros(t.value_per_year_cents, l);
    v[at("net_benefit_per_year_eur")] = euros(t.net_benefit_per_year_cents, l);
    v[at("from")] = p.period.from.clone();
    v[at("to")] = p.period.to.clone();
    v[at("period_days")] = num(p.period.days, l);
    v[at("confidence")] = p.period.confidence.as_str().to_string();
    v
}

/// # Errors
/// Only on a CSV writer failure (never for an in-memory buffer).
pub fn render_plan_csv(p: &Plan, l: Locale) -> Result<String, csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .delimiter(if l == Locale::Fr { b';' } else { b',' })
        .from_writer(Vec::new());
    w.write_record(PLAN_CSV_COLUMNS)?;
    for r in &p.investments {
        w.write_record(row(p, r, l))?;
    }
    w.write_record(national_row(p, &p.national.worthwhile, l))?;
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// # Errors
/// Serialisation errors (none expected).
pub fn render_plan_json(p: &Plan) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string_pretty(p)?;
    s.push('\n');
    Ok(s)
}

/// Rows shown in the HTML page; the CSV and JSON carry all of them.
pub const HTML_ROWS: usize = 100;

const METHOD: &str = r#"<h2 id="methodologie">Méthodologie</h2>
<table><thead><tr><th>Grandeur</th><th>Formule</th><th>Source</th></tr></thead><tbody>
<tr><td>Sites candidats</td><td>sites mono-raccordés, et sites bi-raccordés dont aucun secours n'est à la fois d'un autre opérateur et d'une autre technologie que le lien principal</td><td>Inventaire</td></tr>
<tr><td>Secours proposé</td><td>l'offre au plus faible coût annuel parmi le catalogue (technologie × zone d'accès) et le lien le moins cher déjà contracté dans le département (autre opérateur que le principal), d'une autre technologie que le principal et d'au moins <code>min_backup_kbps_per_agent</code> × agents</td><td><code>configs/backup-prices.toml</code>, <code>links.csv</code></td></tr>
<tr><td>Coût annuel</td><td>12 × prix mensuel + frais de mise en service / années d'amortissement (arrondi au centime) − 12 × prix mensuel du secours remplacé</td><td>idem</td></tr>
<tr><td>Heures-agent perdues par an</td><td>agents × durée de coupure × 8 760 / heures mesurées du site</td><td>Table <code>episodes</code></td></tr>
<tr><td>Gain annuel</td><td>heures-agent perdues par an × coût de l'heure-agent × part récupérée, arrondi une fois au centime</td><td>Coût employeur moyen d'un agent de l'État (INSEE, DGAFP) / 1 607 h</td></tr>
<tr><td>Bénéfice net annuel</td><td>gain annuel − coût annuel</td><td></td></tr>
<tr><td>Bénéfice par euro</td><td>gain annuel / coût annuel (sans objet si le coût est nul ou négatif : ces investissements sont classés en tête)</td><td></td></tr>
<tr><td>Retour sur investissement</td><td>frais de mise en service × 12 / (gain annuel − 12 × prix mensuel + secours remplacé), en mois ; « jamais » si le dénominateur n'est pas positif</td><td></td></tr>
<tr><td>Confiance</td><td>faible sous 7 jours d'épisodes, moyenne sous 90 jours, élevée au-delà</td><td></td></tr>
</tbody></table>"#;

/// The French page.
pub fn render_plan_html(p: &Plan) -> String {
    let mut s = String::new();
    let w = &p.national.worthwhile;
    let filter = match (&p.filter.ministry, &p.filter.region) {
        (None, None) => "tous les sites".to_string(),
        (m, r) => [
            m.as_ref().map(|m| format!("ministère {}", esc(m))),
            r.as_ref().map(|r| format!("région {}", esc(r))),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", "),
    };
    let _ = write!(
        s,
        r#"<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>RIE — plan d'investissement en résilience</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}td:nth-child(-n+4),th:nth-child(-n+4){{text-align:left}}.alerte{{background:#fde2e1;border:2px solid #b3261e;padding:.6em 1em;font-weight:bold}}.titre{{font-size:1.4em}}</style></head><body>
<h1>Réseau interministériel de l'État — plan d'investissement en résilience</h1>
<p>Épisodes du {from} au {until} ({days} jours, confiance <strong>{conf}</strong>) ; {filter}. Heure-agent valorisée à {hour}, part récupérée {share} %, mise en service amortie sur {years} ans.</p>
"#,
        from = esc(&p.period.from),
        until = esc(&p.period.measured_until),
        days = fr_number(p.period.days),
        conf = match p.period.confidence.as_str() {
            "low" => "faible",
            "medium" => "moyenne",
            _ => "élevée",
        },
        hour = eur(Some(p.assumptions.agent_hour_cost_cents)),
        share = p.assumptions.recovered_share_pct,
        years = p.assumptions.setup_amortisation_years,
    );
    if p.period.low_confidence {
        let _ = writeln!(
            s,
            r#"<p class="alerte" id="faible-confiance">{}</p>"#,
            esc(&p.period.warning)
        );
    }
    let _ = write!(
        s,
        r#"<p class="titre" id="synthese"><strong>{}</strong></p>
<p>{} investissements rentables sur {} candidats ; gain annuel {}, bénéfice net annuel {}.</p>
<h2>Investissements classés par {}</h2>
<table><thead><tr><th>Site</th><th>Nom</th><th>Ministère</th><th>Cas</th><th>Rang (net)</th><th>Rang (par euro)</th><th>Agents</th><th>Proposé</th><th>Coût annuel</th><th>Heures-agent perdues / an</th><th>Gain annuel</th><th>Bénéfice net annuel</th><th>Bénéfice par euro</th><th>Retour (mois)</th></tr></thead><tbody>
"#,
        esc(&p.national.headline),
        w.investments,
        p.national.all_candidates.investments,
        eur(Some(w.value_per_year_cents)),
        eur(Some(w.net_benefit_per_year_cents)),
        match p.rank_by {
            crate::indicators::resilience_plan::RankBy::Net => "bénéfice net annuel",
            crate::indicators::resilience_plan::RankBy::PerEuro => "bénéfice par euro",
        },
    );
    for r in p.investments.iter().take(HTML_ROWS) {
        let case = match r.case.as_str() {
            "single_homed" => "mono-raccordé",
            "backup_same_operator" => "secours du même opérateur",
            "backup_same_technology" => "secours de même technologie",
            _ => "secours du même opérateur et de même technologie",
        };
        let offer = match &r.proposal.contracted_link {
            Some(l) => format!("{} (tarif du lien {})", r.proposal.technology, esc(l)),
            None => format!("{} (catalogue)", r.proposal.technology),
        };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{case}</td><td>{}</td><td>{}</td><td>{}</td><td>{offer}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.site),
            esc(&r.name),
            esc(&r.ministry),
            r.rank_by_net,
            r.rank_by_per_euro,
            r.agents,
            if r.proposal.undersized { " — sous-dimensionné" } else { "" },
            eur(Some(r.yearly_cost_cents)),
            fr_fixed(r.agent_hours_lost_per_year, 2),
            eur(Some(r.value_per_year_cents)),
            eur(Some(r.net_benefit_per_year_cents)),
            r.benefit_per_euro.map_or("—".into(), |v| fr_fixed(v, 2)),
            r.payback_months.map_or("jamais".into(), |v| fr_fixed(v, 2)),
        );
    }
    s.push_str("</tbody></table>\n");
    if p.investments.len() > HTML_ROWS {
        let _ = writeln!(
            s,
            "<p>{} autres investissements dans l'export CSV ou JSON.</p>",
            p.investments.len() - HTML_ROWS
        );
    }
    let n = &p.notes;
    let _ = writeln!(
        s,
        "<p>Sites candidats sans données sur la période : {} ; sans agent : {}.</p>",
        n.sites_without_data.len(),
        n.zero_agent_sites.len()
    );
    s.push_str(METHOD);
    s.push_str("\n</body></html>\n");
    s
}
