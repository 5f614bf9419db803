//! The French HTML report: one file with no external asset (inline CSS and SVG), so that it can
//! be mailed or archived as is. Charts: cost per agent by ministry against the reference line,
//! distribution of site availability, outage minutes by département.

use std::fmt::Write as _;

use super::{euros, Locale};
use crate::indicators::{fr_number, GroupRow, Report};

/// Reports of the same period the HTML page draws from.
pub struct HtmlInput<'a> {
    /// The grouping the user asked for (main table).
    pub main: &'a Report,
    pub by_ministry: &'a Report,
    pub by_departement: &'a Report,
    /// Per-site rows, for the availability distribution.
    pub by_site: &'a Report,
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Groups the integer part by thousands with a no-break space, French style ("1 234 567,89").
fn group_thousands(s: &str) -> String {
    let (sign, rest) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (int, frac) = rest
        .split_once(',')
        .map_or((rest, None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push('\u{a0}');
        }
        out.push(ch);
    }
    match frac {
        Some(f) => format!("{sign}{out},{f}"),
        None => format!("{sign}{out}"),
    }
}

/// Exact euros from cents, grouped, with a no-break space before the sign.
pub(super) fn eur(c: Option<i64>) -> String {
    c.map_or("—".into(), |c| {
        format!("{}\u{a0}€", group_thousands(&euros(c, Locale::Fr)))
    })
}

/// A display number with `decimals` decimals, decimal comma, grouped thousands.
pub(super) fn fr_fixed(v: f64, decimals: usize) -> String {
    group_thousands(&format!("{v:.decimals$}").replace('.', ","))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{}\u{a0}%", fr_number(v)))
}

/// Horizontal bar chart; `reference` draws a vertical dashed line with its label.
fn bar_chart(
    title: &str,
    bars: &[(String, f64, String)],
    reference: Option<(f64, String)>,
) -> String {
    let row_h = 22.0;
    let left = 230.0;
    let width = 760.0;
    let plot_w = width - left - 90.0;
    let height = 30.0 + row_h * bars.len().max(1) as f64 + 20.0;
    let max = bars
        .iter()
        .map(|b| b.1)
        .chain(reference.as_ref().map(|r| r.0))
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg role="img" aria-label="{t}" width="{width}" height="{height}" viewBox="0 0 {width} {height}"><title>{t}</title>"#,
        t = esc(title)
    );
    if bars.is_empty() {
        let _ = write!(
            s,
            r#"<text x="10" y="40">Aucune donnée pour la période.</text>"#
        );
    }
    for (i, (label, v, shown)) in bars.iter().enumerate() {
        let y = 20.0 + row_h * i as f64;
        let w = (v / max * plot_w).max(0.0);
        let _ = write!(
            s,
            r##"<text x="{tx}" y="{ty}" text-anchor="end" font-size="12">{l}</text><rect x="{left}" y="{y}" width="{w:.1}" height="{h}" fill="#3a6ea5"/><text x="{vx:.1}" y="{ty}" font-size="12">{v}</text>"##,
            tx = left - 6.0,
            ty = y + 14.0,
            l = esc(label),
            h = row_h - 6.0,
            vx = left + w + 4.0,
            v = esc(shown),
        );
    }
    if let Some((r, label)) = reference {
        let x = left + r / max * plot_w;
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="12" x2="{x:.1}" y2="{y2}" stroke="#c0392b" stroke-width="2" stroke-dasharray="6 4"/><text x="{x:.1}" y="10" font-size="12" fill="#c0392b" text-anchor="middle">{l}</text>"##,
            y2 = height - 10.0,
            l = esc(&label)
        );
    }
    s.push_str("</svg>");
    s
}

/// Availability buckets of sites with data, and the count of sites without.
fn availability_buckets(by_site: &Report) -> Vec<(String, f64, String)> {
    let bounds: [(&str, f64); 5] = [
        ("100 %", 100.0),
        ("≥ 99,9 %", 99.9),
        ("≥ 99,5 %", 99.5),
        ("≥ 99 %", 99.0),
        ("≥ 98 %", 98.0),
    ];
    let mut counts = [0u64; 7];
    for g in &by_site.groups {
        let i = match g.availability_time_pct {
            None => 6,
            Some(a) => bounds.iter().position(|b| a >= b.1).unwrap_or(5),
        };
        counts[i] += 1;
    }
    let labels = bounds
        .iter()
        .map(|b| b.0.to_string())
        .chain(["< 98 %".to_string(), "sans données".to_string()]);
    labels
        .zip(counts)
        .map(|(l, c)| (l, c as f64, format!("{}\u{a0}sites", fr_fixed(c as f64, 0))))
        .collect()
}

fn main_table(r: &Report) -> String {
    let mut s = String::from(
        "<table><thead><tr><th>Groupe</th><th>Sites</th><th>Agents</th><th>Coût total</th><th>€/agent/an</th><th>€/Mbit/s/mois</th><th>Secours €/agent/an</th><th>Agents bi-raccordés</th><th>Dispo. (temps)</th><th>Dispo. (agents)</th><th>Heures-agent perdues</th><th>Coupures</th><th>MTTR (min)</th><th>MTBF (h)</th><th>Heures sur secours</th><th>Bascules réussies</th><th>Dispo. bi-raccordés</th><th>Dispo. mono-raccordés</th></tr></thead><tbody>",
    );
    let row = |s: &mut String, g: &GroupRow, strong: bool| {
        let (o, c) = if strong {
            ("<strong>", "</strong>")
        } else {
            ("", "")
        };
        let _ = write!(
            s,
            "<tr><td>{o}{}{c}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.group),
            g.sites,
            g.agents,
            eur(Some(g.total_cost_cents)),
            eur(g.cost_per_agent_year_cents),
            eur(g.cost_per_mbps_month_cents),
            eur(g.resilience_cost_per_agent_year_cents),
            pct(g.dual_homed_agent_share_pct),
            pct(g.availability_time_pct),
            pct(g.availability_agent_pct),
            fr_fixed(g.agent_hours_lost, 1),
            g.outages,
            g.mttr_minutes.map_or("—".into(), |v| fr_fixed(v, 1)),
            g.mtbf_hours.map_or("—".into(), |v| fr_fixed(v, 1)),
            fr_fixed(g.backup_hours, 1),
            g.failover_success_pct
                .map_or("—".into(), |v| format!("{} % ({}/{})", fr_number(v), g.failovers_in_time, g.primary_failures)),
                    pct(g.availability_dual_homed_pct),
            pct(g.availability_single_homed_pct),
        );
    };
    for g in &r.groups {
        row(&mut s, g, false);
    }
    if r.groups.len() != 1 || r.groups[0].group != "national" {
        row(&mut s, &r.national, true);
    }
    s.push_str("</tbody></table>");
    s
}

const METHODOLOGY: &str = r#"<h2 id="methodologie">Méthodologie</h2>
<p>Période : mois, trimestre ou année civils en UTC, intervalle semi-ouvert [début, fin). Les montants sont tenus en centimes entiers de bout en bout ; les ratios sont arrondis au centime (demi vers le haut) une seule fois, à la fin.</p>
<table><thead><tr><th>Indicateur</th><th>Formule</th><th>Source des données</th></tr></thead><tbody>
<tr><td>Coût des accès</td><td>Σ prix mensuel du lien × nombre de mois de la période</td><td>Inventaire, <code>links.csv</code> (<code>monthly_cost_eur</code>)</td></tr>
<tr><td>Coûts nationaux partagés</td><td>montant annuel × mois / 12 (amortissements : montant × mois / (12 × années)), arrondi au centime, réparti sur les sites selon la clé (par agent, par site, par volume de trafic, par débit contractuel) au plus fort reste : chaque site reçoit la partie entière de sa part, les centimes restants vont un à un aux plus forts restes (à égalité, au premier site de l'inventaire). La somme des parts est exactement le total.</td><td><code>configs/costs.toml</code> ; trafic : table <code>flow_minute</code> (octets)</td></tr>
<tr><td>Coût total</td><td>coût des accès + part des coûts partagés</td><td>ci-dessus</td></tr>
<tr><td>Coût par agent et par an</td><td>(coût total des sites ayant des agents) × 12 / mois / agents ; les sites sans agent sont exclus des ratios par agent et listés</td><td>Inventaire (<code>agents</code>)</td></tr>
<tr><td>Coût par Mbit/s contractuel</td><td>coût total / mois / Σ débit contractuel des liens (Mbit/s)</td><td>Inventaire (<code>bandwidth_mbps</code>)</td></tr>
<tr><td>Coût de la résilience par agent</td><td>(coût des liens de secours des sites ayant des agents) × 12 / mois / agents</td><td>Inventaire (<code>role = backup</code>)</td></tr>
<tr><td>Temps mesuré d'un site</td><td>durée de la période jusqu'à maintenant − silences de la sonde non expliqués par une coupure ; un site sans aucune mesure dans la période est « sans données » (jamais compté disponible)</td><td>Tables <code>episodes</code> (<code>silent</code>), <code>link_minute</code>, <code>flow_minute</code></td></tr>
<tr><td>Disponibilité (temps)</td><td>1 − Σ durée de coupure / Σ temps mesuré, sur les sites avec données ; épisodes découpés exactement aux bornes de la période, épisodes ouverts comptés jusqu'à la fin de la période (ou maintenant)</td><td>Table <code>episodes</code> (<code>outage</code>)</td></tr>
<tr><td>Disponibilité pondérée par les agents</td><td>Σ agents × (1 − coupure/temps mesuré) / Σ agents, sur les sites avec données et agents</td><td><code>episodes</code>, inventaire</td></tr>
<tr><td>Heures-agent perdues</td><td>Σ agents × durée de coupure (h)</td><td><code>episodes</code>, inventaire</td></tr>
<tr><td>Nombre de coupures</td><td>épisodes <code>outage</code> chevauchant la période (une coupure à cheval sur deux périodes compte dans chacune, sa durée étant partagée exactement)</td><td><code>episodes</code></td></tr>
<tr><td>MTTR</td><td>durée de coupure / nombre de coupures (min)</td><td><code>episodes</code></td></tr>
<tr><td>MTBF</td><td>(temps mesuré − durée de coupure) / nombre de coupures (h)</td><td><code>episodes</code></td></tr>
<tr><td>Temps sur secours</td><td>Σ durée des épisodes <code>failover</code> (h)</td><td><code>episodes</code></td></tr>
<tr><td>Taux de bascule réussie</td><td>bascules à temps / pannes du lien principal sur les sites bi-raccordés ; une bascule à temps est un épisode <code>failover</code> qui ne suit pas immédiatement une coupure ; une panne = une bascule à temps ou une coupure qui ne suit pas immédiatement une bascule (sinon c'est le secours qui tombe, pas une nouvelle panne du principal) (le seuil est celui du collecteur qui classe les épisodes)</td><td><code>episodes</code></td></tr>
<tr><td>Disponibilité bi-raccordés / mono-raccordés</td><td>même formule que la disponibilité (temps), sur les seuls sites avec (resp. sans) lien de secours : ce que la résilience achète</td><td><code>episodes</code>, inventaire</td></tr>
<tr><td>Part des agents bi-raccordés</td><td>agents des sites ayant un lien de secours / agents</td><td>Inventaire</td></tr>
<tr><td>Sites à risque</td><td>sites mono-raccordés ayant des agents et (au moins le seuil d'agents ou une disponibilité sous l'objectif), classés par heures-agent perdues puis par agents</td><td>Inventaire, <code>episodes</code>, <code>configs/costs.toml</code> (<code>[risk]</code>)</td></tr>
</tbody></table>
<p>Référence : environ 100 € par agent et par an pour l'accès au réseau, résilience et accès internet sécurisé compris (feuille de route de la DINUM, « Une stratégie numérique au service de l'efficacité de l'action publique », 2023).</p>"#;

/// Renders the page.
pub fn render_html(input: &HtmlInput<'_>) -> String {
    let r = input.main;
    let n = &r.national;
    let reference = r.reference_cost_per_agent_year_cents;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>RIE — indicateurs de coût et de résilience, {p}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}td:first-child,th:first-child{{text-align:left}}.cards span{{display:inline-block;margin:0 1.5em 1em 0}}.cards b{{display:block;font-size:1.4em}}</style></head><body>
<h1>Réseau interministériel de l'État — coût et résilience</h1>
<p>Période <strong>{p}</strong> ({start} → {end}, {months} mois ; disponibilité mesurée jusqu'au {until}). Regroupement : <strong>{by}</strong>.</p>
<div class="cards"><span>Coût total<b>{total}</b></span><span>Coût par agent et par an<b>{cpa}</b></span><span>Référence DINUM<b>{refe}</b></span><span>Disponibilité pondérée par les agents<b>{aa}</b></span><span>Heures-agent perdues<b>{lost}</b></span><span>Agents bi-raccordés<b>{dual}</b></span></div>
"#,
        p = esc(&r.period.label),
        start = esc(&r.period.start),
        end = esc(&r.period.end),
        months = r.period.months,
        until = esc(&r.period.measured_until),
        by = r.group_by.as_str(),
        total = eur(Some(n.total_cost_cents)),
        cpa = eur(n.cost_per_agent_year_cents),
        refe = eur(Some(reference)),
        aa = pct(n.availability_agent_pct),
        lost = fr_fixed(n.agent_hours_lost, 1),
        dual = pct(n.dual_homed_agent_share_pct),
    );
    s.push_str("<h2>Coût par agent et par an, par ministère</h2>");
    let bars: Vec<(String, f64, String)> = input
        .by_ministry
        .groups
        .iter()
        .filter_map(|g| {
            g.cost_per_agent_year_cents.map(|c| {
                (
                    g.group.clone(),
                    c as f64 / 100.0,
                    format!("{} €", euros(c, Locale::Fr)),
                )
            })
        })
        .collect();
    s.push_str(&bar_chart(
        "Coût par agent et par an par ministère, et référence",
        &bars,
        Some((
            reference as f64 / 100.0,
            format!("référence {} €", euros(reference, Locale::Fr)),
        )),
    ));
    s.push_str("<h2>Répartition de la disponibilité des sites</h2>");
    s.push_str(&bar_chart(
        "Nombre de sites par tranche de disponibilité",
        &availability_buckets(input.by_site),
        None,
    ));
    s.push_str("<h2>Minutes de coupure par département (20 premiers)</h2>");
    let mut deps: Vec<&GroupRow> = input
        .by_departement
        .groups
        .iter()
        .filter(|g| g.outage_minutes > 0.0)
        .collect();
    deps.sort_by(|a, b| {
        b.outage_minutes
            .total_cmp(&a.outage_minutes)
            .then(a.group.cmp(&b.group))
    });
    let bars: Vec<(String, f64, String)> = deps
        .iter()
        .take(20)
        .map(|g| {
            (
                g.group.clone(),
                g.outage_minutes,
                format!("{}\u{a0}min", fr_fixed(g.outage_minutes, 0)),
            )
        })
        .collect();
    s.push_str(&bar_chart(
        "Minutes de coupure par département",
        &bars,
        None,
    ));

    s.push_str("<h2>Indicateurs</h2>");
    s.push_str(&main_table(r));
    s.push_str("<h2>Coûts nationaux partagés de la période</h2><table><thead><tr><th>Poste</th><th>Clé de répartition</th><th>Montant</th></tr></thead><tbody>");
    for c in &r.cost_items {
        let _ = write!(
            s,
            "<tr><td>{} ({})</td><td>{}</td><td>{}</td></tr>",
            esc(&c.label),
            esc(&c.name),
            c.allocation.as_str(),
            eur(Some(c.cents))
        );
    }
    s.push_str("</tbody></table>");
    s.push_str("<h2>Sites à risque</h2>");
    if r.sites_at_risk.is_empty() {
        s.push_str("<p>Aucun site mono-raccordé ne dépasse les seuils.</p>");
    } else {
        s.push_str("<table><thead><tr><th>Rang</th><th>Site</th><th>Nom</th><th>Ministère</th><th>Département</th><th>Agents</th><th>Disponibilité</th><th>Heures-agent perdues</th><th>Raison</th></tr></thead><tbody>");
        for x in &r.sites_at_risk {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                x.rank,
                esc(&x.site),
                esc(&x.name),
                esc(&x.ministry),
                esc(&x.departement),
                x.agents,
                pct(x.availability_pct),
                fr_fixed(x.agent_hours_lost, 1),
                esc(&x.reason)
            );
        }
        s.push_str("</tbody></table>");
    }
    let nt = &r.notes;
    let _ = write!(
        s,
        "<h2>Remarques sur les données</h2><ul>{}<li>Sites sans agent (exclus des ratios par agent) : {}</li><li>Liens sans coût : {}</li><li>Codes département inconnus : {}</li><li>Ministères hors de la liste du modèle de coûts : {}</li><li>Sites sans données de mesure dans la période : {}</li>{}</ul>",
        sample_note(&nt.national_share),
        list(&nt.zero_agent_sites),
        list(&nt.links_without_cost),
        list(&nt.unknown_departements),
        list(&nt.unknown_ministries),
        nt.sites_without_data,
        if nt.per_traffic_volume_fell_back_to_per_agent {
            "<li>Aucun trafic mesuré sur la période : la clé « par volume de trafic » a été remplacée par la clé « par agent ».</li>"
        } else {
            ""
        }
    );
    s.push_str(METHODOLOGY);
    s.push_str("</body></html>\n");
    s
}

/// The note of an inventory that is a sample of the nation: its share of the national costs.
fn sample_note(share: &crate::indicators::NationalShare) -> String {
    if !share.scaled {
        return String::new();
    }
    format!(
        "<li>L’inventaire est un échantillon : {} sites sur les {} du RIE. Les coûts nationaux partagés sont ramenés à sa part ({} / {}), pour que le coût par agent reste comparable au chiffre national.</li>",
        fr_fixed(f64::from(share.sites), 0),
        fr_fixed(f64::from(share.national_sites), 0),
        fr_fixed(f64::from(share.sites), 0),
        fr_fixed(f64::from(share.national_sites), 0),
    )
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        return "aucun".into();
    }
    let shown: Vec<String> = v.iter().take(50).map(|x| esc(x)).collect();
    let more = if v.len() > 50 {
        format!(" … ({} au total)", v.len())
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_number_display() {
        assert_eq!(eur(Some(832_633_264)), "8\u{a0}326\u{a0}332,64\u{a0}€");
        assert_eq!(eur(Some(-12_345)), "-123,45\u{a0}€");
        assert_eq!(fr_fixed(61_178.578_3, 0), "61\u{a0}179");
        assert_eq!(fr_fixed(130.0, 1), "130,0");
        assert_eq!(eur(None), "—");
    }
}
