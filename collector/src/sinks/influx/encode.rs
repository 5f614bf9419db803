//! Line protocol of what the sink writes (schema in `docs/schema.md`): the rendered tags of
//! every site and link (`Tags`), `site_traffic` from the store's committed minutes,
//! `link_check` from a batch's samples, `episode`, `site_state` and the collector's own health
//! (`collector`), plus the tag values of protocols and directions ([`protocol_name`],
//! [`direction_name`]).
//!
//! Pure functions over the inventory, the store's rows and the metrics; imports nothing of the
//! backlog or of delivery.

use std::collections::{BTreeMap, HashMap};

use rie_proto::{Batch, LinkId, SiteState};

use super::super::line::{tag, Line};
use crate::metrics::Metrics;
use crate::sites::{SiteRegistry, SiteView};

/// Tags of each site and link, rendered once.
pub(super) struct Tags {
    pub(super) site: Vec<String>,
    pub(super) link: HashMap<LinkId, String>,
}

impl Tags {
    pub(super) fn new(sites: &SiteRegistry) -> Self {
        let inv = &sites.inventory;
        let site = inv
            .sites
            .iter()
            .map(|s| {
                let region = rie_proto::geo::departement(&s.departement).map_or("", |d| d.region);
                format!(
                    "{}{}{}{}",
                    tag("site", s.id.as_str()),
                    tag("ministry", &s.ministry),
                    tag("departement", &s.departement),
                    tag("region", region)
                )
            })
            .collect();
        let link = inv
            .links
            .iter()
            .map(|l| {
                (
                    l.id.clone(),
                    format!(
                        "{}{}{}",
                        tag("link", l.id.as_str()),
                        tag("role", l.role.as_str()),
                        tag("technology", l.technology.as_str())
                    ),
                )
            })
            .collect();
        Self { site, link }
    }
}

/// An episode as written to InfluxDB (see `docs/schema.md`).
#[derive(Debug, Clone, Copy)]
pub struct EpisodePoint<'a> {
    /// Inventory index of the site.
    pub site_idx: usize,
    /// `outage`, `failover`, `degraded` or `silent`.
    pub kind: &'a str,
    pub link: Option<&'a str>,
    pub start_ms: i64,
    /// `None` while open.
    pub end_ms: Option<i64>,
    pub cause: &'a str,
}

pub(super) fn episode_line(tags: &Tags, e: &EpisodePoint<'_>, now_ms: i64) -> Option<String> {
    let site = tags.site.get(e.site_idx)?;
    let duration = (e.end_ms.unwrap_or(now_ms) - e.start_ms).max(0) / 1000;
    Line::new("episode")
        .tags(site)
        .tag("kind", e.kind)
        .tag("link", e.link.unwrap_or(""))
        .int("duration_s", duration)
        .int("open", i64::from(e.end_ms.is_none()))
        .string("cause", e.cause)
        .at(e.start_ms.div_euclid(1000))
}

/// `episode` points for `episodes` (open ones, and those closed since the last scan, as
/// [`crate::store::Reader::episodes_open_or_closed_since`] gives them). Rewriting one is
/// harmless: same series and start, the newer value wins.
pub(super) fn episode_lines(
    episodes: &[(String, crate::store::Episode)],
    tags: &Tags,
    sites: &SiteRegistry,
    now_ms: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    for (site, e) in episodes {
        let Some(site_idx) = rie_proto::SiteId::new(site.as_str())
            .ok()
            .and_then(|s| sites.inventory.site_index(&s))
        else {
            continue;
        };
        let e = EpisodePoint {
            site_idx,
            kind: e.kind.as_str(),
            link: e.link.as_deref(),
            start_ms: e.start_ms,
            end_ms: e.end_ms,
            cause: &e.cause,
        };
        out.extend(episode_line(tags, &e, now_ms));
    }
    out
}

/// `site_traffic` points of one site minute: the store's running totals, one per source,
/// direction and protocol.
/// `rows` are `store::Reader::minute_traffic` of the site minute (read off the async task).
pub(super) fn traffic_lines(
    rows: Vec<crate::store::read::MinuteTraffic>,
    tags: &Tags,
    sites: &SiteRegistry,
    idx: usize,
    minute: i64,
    out: &mut Vec<String>,
) {
    if sites.inventory.sites.get(idx).is_none() {
        return;
    }
    let mut sums: BTreeMap<(bool, &'static str, &'static str), [i64; 3]> = BTreeMap::new();
    for row in rows {
        let (netflow, proto, dir, c) = (
            row.netflow,
            row.protocol,
            row.direction,
            [row.flows, row.packets, row.bytes],
        );
        let s = sums
            .entry((netflow, protocol_name(proto), direction_name(dir)))
            .or_default();
        for i in 0..3 {
            s[i] = s[i].saturating_add(c[i]);
        }
    }
    for ((netflow, proto, dir), [flows, packets, bytes]) in sums {
        let line = Line::new("site_traffic").tags(&tags.site[idx]);
        out.extend(
            line.tag("direction", dir)
                .tag("protocol", proto)
                .tag("source", if netflow { "netflow" } else { "capture" })
                .int("bytes", bytes)
                .int("packets", packets)
                .int("flows", flows)
                .at(minute),
        );
    }
}

/// One `link_check` point per (link, check, interval start) of the batch; several targets
/// of one check are merged (sums, weighted mean, max).
pub(super) fn link_lines(tags: &Tags, idx: usize, batch: &Batch, out: &mut Vec<String>) {
    #[derive(Default)]
    struct Acc {
        sent: u64,
        received: u64,
        rtt_sum: f64,
        rtt_n: u64,
        rtt_max: Option<u32>,
        p95: Option<u32>,
        jitter_sum: f64,
        jitter_n: u64,
    }
    let mut acc: BTreeMap<(&LinkId, &'static str, i64), Acc> = BTreeMap::new();
    for s in &batch.samples {
        // Unknown links were counted and left out by the store; same here.
        if !tags.link.contains_key(&s.link) {
            continue;
        }
        let a = acc.entry((&s.link, s.check.as_str(), s.start)).or_default();
        let received = s.received.min(s.sent);
        a.sent += u64::from(s.sent);
        a.received += u64::from(received);
        if let Some(avg) = s.rtt_avg_us {
            a.rtt_sum += f64::from(avg) * f64::from(received);
            a.rtt_n += u64::from(received);
        }
        a.rtt_max = a.rtt_max.max(s.rtt_max_us);
        a.p95 = a.p95.max(s.rtt_p95_us);
        if let Some(j) = s.jitter_us {
            a.jitter_sum += f64::from(j);
            a.jitter_n += 1;
        }
    }
    for ((link, check, start), a) in acc {
        let Some(link_tags) = tags.link.get(link) else {
            continue;
        };
        // (sent - received) / sent: exact for the usual ratios (1/10 is 0.1, not 1 - 0.9).
        let loss = if a.sent == 0 {
            1.0
        } else {
            (a.sent - a.received) as f64 / a.sent as f64
        };
        let ms = |us: Option<u32>| us.map(|v| f64::from(v) / 1000.0);
        out.extend(
            Line::new("link_check")
                .tags(&tags.site[idx])
                .tags(link_tags)
                .tag("check", check)
                .int("sent", a.sent as i64)
                .int("received", a.received as i64)
                .float("loss_ratio", loss)
                .opt_float(
                    "rtt_avg_ms",
                    (a.rtt_n > 0).then(|| a.rtt_sum / a.rtt_n as f64 / 1000.0),
                )
                .opt_float("rtt_max_ms", ms(a.rtt_max))
                .opt_float("rtt_p95_ms", ms(a.p95))
                .opt_float(
                    "jitter_ms",
                    (a.jitter_n > 0).then(|| a.jitter_sum / a.jitter_n as f64 / 1000.0),
                )
                .at(start),
        );
    }
}

/// `site_state` point of the site of inventory index `idx`, at `at` (unix seconds).
pub(super) fn site_state_line(
    tags: &Tags,
    sites: &SiteRegistry,
    idx: usize,
    v: &SiteView,
    at: i64,
) -> Option<String> {
    // Silence is not proof of an outage: `up` keeps the last reported state.
    let reported = v.live.state;
    let up = i64::from(
        matches!(
            reported,
            Some(SiteState::Up | SiteState::Degraded | SiteState::OnBackup)
        ) || (reported.is_none() && v.live.last_seen_ms.is_some()),
    );
    let agents = sites.inventory.sites.get(idx).map_or(0, |s| s.agents);
    Line::new("site_state")
        .tags(&tags.site[idx])
        .int("state_code", i64::from(v.state.code()))
        .int("up", up)
        .int("on_backup", i64::from(v.state == SiteState::OnBackup))
        .int("agents", i64::from(agents))
        .at(at)
}

/// `collector` point: this collector's own health, at `at` (unix seconds).
pub(super) fn health_line(
    instance: &str,
    metrics: &Metrics,
    points_buffered: i64,
    at: i64,
) -> Option<String> {
    let frame_errors: u64 = ["oversized", "malformed", "unexpected", "io", "tls"]
        .iter()
        .map(|r| metrics.frame_errors.with_label_values(&[r]).get())
        .sum();
    Line::new("collector")
        .tag("instance", instance)
        .int("connections", metrics.probe_connections.get())
        .int("batches", metrics.probe_batches.get() as i64)
        .int("frame_errors", frame_errors as i64)
        .int("points_buffered", points_buffered)
        .at(at)
}

pub fn protocol_name(p: i64) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "icmpv6",
        _ => "other",
    }
}

pub fn direction_name(d: i64) -> &'static str {
    match d {
        1 => "inbound",
        2 => "outbound",
        _ => "unknown",
    }
}
