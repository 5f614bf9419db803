//! Per-site and per-link Prometheus series for alerting on 14,000 sites (`rie_site_*`,
//! `rie_link_*`), built from the live site registry at scrape time.
//!
//! Why a custom collector rather than `GaugeVec`s updated on every batch: with 14,000 sites and
//! about 18,000 links the vectors would hold ~140,000 children whose label hashes are looked up on
//! every commit. Reading one consistent snapshot of the registry per scrape costs one pass and
//! leaves nothing stale behind when a site changes ministry or disappears from the inventory.
//!
//! Series per site: `rie_site_up`, `rie_site_on_backup`, `rie_site_state`, `rie_site_agents`,
//! `rie_site_last_report_timestamp_seconds`, `rie_site_clock_offset_seconds` (only once a probe
//! has said hello); per link: `rie_link_up`, `rie_link_rtt_seconds`, `rie_link_loss_ratio` (the
//! last two only once measured). The count for the national inventory is in
//! `docs/availability.md`.
//!
//! May import `sites` only (it reads views at scrape time).

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use rie_proto::SiteState;

use crate::sites::SiteRegistry;

const SITE_LABELS: [&str; 4] = ["site", "ministry", "departement", "region"];
const LINK_LABELS: [&str; 6] = ["site", "ministry", "departement", "region", "link", "role"];

const FAMILIES: [(&str, &str, bool); 9] = [
    (
        "rie_site_up",
        "1 when the site reaches the core (up, degraded or on backup), 0 when down; a silent site keeps its last known value.",
        false,
    ),
    ("rie_site_on_backup", "1 when the backup link carries the site's traffic.", false),
    (
        "rie_site_state",
        "Site state code: 0 up, 1 degraded, 2 on_backup, 3 down, 4 silent, 5 unknown.",
        false,
    ),
    ("rie_site_agents", "Agents working at the site (inventory).", false),
    (
        "rie_site_last_report_timestamp_seconds",
        "When the site's probe last reported (batch or heartbeat), Unix seconds.",
        false,
    ),
    (
        "rie_site_clock_offset_seconds",
        "Probe clock minus collector clock at the last hello or heartbeat.",
        false,
    ),
    ("rie_link_up", "1 when the link is up and reaches the core.", true),
    (
        "rie_link_rtt_seconds",
        "Average round-trip time of the link's checks in the last batch.",
        true,
    ),
    (
        "rie_link_loss_ratio",
        "Share of the link's check probes lost in the last batch (0 to 1).",
        true,
    ),
];

pub struct SiteGauges {
    sites: Arc<SiteRegistry>,
    descs: Vec<Desc>,
}

impl SiteGauges {
    /// # Panics
    /// Never in practice: the names and labels above are valid, which is all `Desc` checks.
    pub fn new(sites: Arc<SiteRegistry>) -> Self {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, link)| {
                let labels = if *link {
                    LINK_LABELS.to_vec()
                } else {
                    SITE_LABELS.to_vec()
                };
                Desc::new(
                    (*name).to_string(),
                    (*help).to_string(),
                    labels.into_iter().map(String::from).collect(),
                    Default::default(),
                )
                .expect("valid metric description")
            })
            .collect();
        Self { sites, descs }
    }
}

fn pair(name: &str, value: &str) -> LabelPair {
    let mut p = LabelPair::default();
    p.set_name(name.to_string());
    p.set_value(value.to_string());
    p
}

fn gauge(labels: &[LabelPair], v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    let mut m = Metric::from_gauge(g);
    m.set_label(labels.to_vec());
    m
}

impl Collector for SiteGauges {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now_ms = rie_common::now_ms();
        let views = self.sites.views(now_ms);
        let inv = &self.sites.inventory;
        let mut out: Vec<Vec<Metric>> = vec![Vec::with_capacity(views.len()); FAMILIES.len()];
        for (site, v) in inv.sites.iter().zip(&views) {
            let region = rie_proto::geo::departement(&site.departement).map_or("", |d| d.region);
            let labels = [
                pair("site", site.id.as_str()),
                pair("ministry", &site.ministry),
                pair("departement", &site.departement),
                pair("region", region),
            ];
            let reachable = match v.state {
                SiteState::Up | SiteState::Degraded | SiteState::OnBackup => Some(true),
                SiteState::Down => Some(false),
                // Silence is not proof of an outage: keep the last state the probe reported.
                SiteState::Silent => v.live.state.map(|s| s != SiteState::Down),
                SiteState::Unknown => None,
            };
            if let Some(up) = reachable {
                out[0].push(gauge(&labels, f64::from(u8::from(up))));
            }
            let on_backup = v.state == SiteState::OnBackup
                || (v.state == SiteState::Silent && v.live.state == Some(SiteState::OnBackup));
            out[1].push(gauge(&labels, f64::from(u8::from(on_backup))));
            out[2].push(gauge(&labels, f64::from(v.state.code())));
            out[3].push(gauge(&labels, f64::from(site.agents)));
            if let Some(seen) = v.live.last_seen_ms {
                out[4].push(gauge(&labels, seen as f64 / 1000.0));
            }
            if let Some(off) = v.live.clock_offset_ms {
                out[5].push(gauge(&labels, off as f64 / 1000.0));
            }
            for l in inv.links_of(&site.id) {
                let mut ll = labels.to_vec();
                ll.push(pair("link", l.id.as_str()));
                ll.push(pair("role", l.role.as_str()));
                let live = v.live.links.iter().find(|x| x.link == l.id);
                if let Some(live) = live {
                    out[6].push(gauge(&ll, f64::from(u8::from(live.up))));
                    if let Some(rtt) = live.rtt_avg_ms {
                        out[7].push(gauge(&ll, rtt / 1000.0));
                    }
                    if let Some(loss) = live.loss_ratio {
                        out[8].push(gauge(&ll, loss));
                    }
                }
            }
        }
        FAMILIES
            .iter()
            .zip(out)
            .map(|((name, help, _), metrics)| {
                let mut f = MetricFamily::default();
                f.set_name((*name).to_string());
                f.set_help((*help).to_string());
                f.set_field_type(MetricType::GAUGE);
                f.set_metric(metrics);
                f
            })
            .collect()
    }
}
