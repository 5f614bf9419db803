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
//! last two only once measured), `rie_site_probe_spool_batches` (once the probe sent a health
//! report); and `rie_fleet_probes{probe_version, protocol_version}`, sites by probe version
//! (a few series, at most 20 versions and `other`). The count for the national inventory is in
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

const FAMILIES: [(&str, &str, bool); 10] = [
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
    (
        "rie_site_probe_spool_batches",
        "Batches waiting in the site probe's spool at its last health report (only once it sent one).",
        false,
    ),
];

/// Probes by version: a handful of series, however many sites (`fleet::FleetCounts`).
const FLEET: (&str, &str) = (
    "rie_fleet_probes",
    "Sites by the version and protocol version of their probe (none: never said hello).",
);

pub struct SiteGauges {
    sites: Arc<SiteRegistry>,
    descs: Vec<Desc>,
}

/// Versions beyond this many get the label `other`: a bounded series count even if probes
/// report odd version strings.
const MAX_VERSIONS: usize = 20;

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
            .chain(std::iter::once(
                Desc::new(
                    FLEET.0.to_string(),
                    FLEET.1.to_string(),
                    vec!["probe_version".into(), "protocol_version".into()],
                    Default::default(),
                )
                .expect("valid metric description"),
            ))
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
        let mut fleet: std::collections::BTreeMap<(String, String), u64> = Default::default();
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
            if let Some(h) = v.live.health {
                out[9].push(gauge(&labels, h.spool_batches as f64));
            }
            let version = v.live.probe_version.as_deref().unwrap_or("none");
            let proto = v
                .live
                .protocol_version
                .map_or_else(|| "none".to_string(), |p| p.to_string());
            *fleet.entry((version.to_string(), proto)).or_default() += 1;
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
        // Past MAX_VERSIONS distinct versions, the rarest ones are summed as `other`.
        let mut by_count: Vec<((String, String), u64)> = fleet.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut kept: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for (k, ((version, proto), n)) in by_count.into_iter().enumerate() {
            let version = if k < MAX_VERSIONS {
                version
            } else {
                "other".into()
            };
            *kept.entry((version, proto)).or_default() += n;
        }
        let fleet_metrics = kept
            .into_iter()
            .map(|((version, proto), n)| {
                gauge(
                    &[
                        pair("probe_version", &version),
                        pair("protocol_version", &proto),
                    ],
                    n as f64,
                )
            })
            .collect();
        let family = |name: &str, help: &str, metrics| {
            let mut f = MetricFamily::default();
            f.set_name(name.to_string());
            f.set_help(help.to_string());
            f.set_field_type(MetricType::GAUGE);
            f.set_metric(metrics);
            f
        };
        FAMILIES
            .iter()
            .zip(out)
            .map(|((name, help, _), metrics)| family(name, help, metrics))
            .chain(std::iter::once(family(FLEET.0, FLEET.1, fleet_metrics)))
            .collect()
    }
}
