//! `GET /api/v1/national/traffic?window=1h|1d`: the national traffic of the status page — bytes
//! in and out per bucket over the last hour (60 one-minute buckets) or day (96 quarter-hours),
//! the top sites by traffic over that window, and the sites of current incidents ranked by
//! the agents they leave affected, with their traffic.
//!
//! Owns that route, its answer and its cache. May import `store` (reads), `sites` (live
//! states), `inventory`; only `api` imports it.
//!
//! Why a cache: the answer sums every site's stored rows of the window (a day of the national
//! inventory is tens of millions of minute rows), while each open NOC screen asks every few
//! seconds. The store part is therefore reused for [`Window::reuse_for_ms`] (10 s for the hour,
//! 60 s for the day: at most a tenth of a bucket late) and shared by every screen; the incident
//! ranking comes from the live states on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rie_proto::SiteState;
use serde::{Deserialize, Serialize};

use super::{bad_request, rfc3339_ms, ApiError, AppState};
use crate::store::DirectionBytes;
use rie_common::now_ms;

/// The windows the page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    Hour,
    Day,
}

impl Window {
    fn parse(v: &str) -> Option<Self> {
        match v {
            "1h" => Some(Self::Hour),
            "1d" => Some(Self::Day),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "1h",
            Self::Day => "1d",
        }
    }

    /// Bucket length (seconds) and number of buckets.
    fn buckets(self) -> (i64, i64) {
        match self {
            Self::Hour => (60, 60),
            Self::Day => (900, 96),
        }
    }

    fn reuse_for_ms(self) -> i64 {
        match self {
            Self::Hour => 10_000,
            Self::Day => 60_000,
        }
    }

    /// `[from, to)` in Unix seconds at `now_s`: whole buckets, the last one the current
    /// (partial) bucket.
    fn range(self, now_s: i64) -> (i64, i64) {
        let (len, n) = self.buckets();
        let to = now_s.div_euclid(len) * len + len;
        (to - n * len, to)
    }
}

/// What the store said for one window, reused by every request for a few seconds.
struct Computed {
    at_ms: i64,
    from: i64,
    to: i64,
    buckets: Vec<(i64, DirectionBytes)>,
    /// By site id.
    sites: Vec<(String, DirectionBytes)>,
}

/// The store part of the answers, per window (see the module comment).
#[derive(Default)]
pub struct TrafficCache(Mutex<HashMap<Window, Arc<Computed>>>);

#[derive(Deserialize)]
pub(super) struct TrafficQuery {
    window: Option<String>,
    limit: Option<usize>,
}

/// One bucket of the chart.
#[derive(Debug, Serialize, PartialEq)]
struct BucketOut {
    /// Bucket start, Unix seconds.
    start: i64,
    inbound_bytes: u64,
    outbound_bytes: u64,
    /// Traffic whose direction is unknown (NetFlow of a site without `site_prefixes`).
    unknown_bytes: u64,
}

#[derive(Debug, Serialize, PartialEq)]
struct TotalsOut {
    inbound_bytes: u64,
    outbound_bytes: u64,
    unknown_bytes: u64,
}

impl From<DirectionBytes> for TotalsOut {
    fn from(d: DirectionBytes) -> Self {
        Self {
            inbound_bytes: d.inbound,
            outbound_bytes: d.outbound,
            unknown_bytes: d.unknown,
        }
    }
}

/// A site of one of the two rankings.
#[derive(Debug, Serialize, PartialEq)]
struct SiteOut {
    id: String,
    /// Null for a site no longer in the inventory (its stored traffic still counts).
    name: Option<String>,
    ministry: Option<String>,
    departement: Option<String>,
    agents: u32,
    state: SiteState,
    state_since: Option<String>,
    inbound_bytes: u64,
    outbound_bytes: u64,
    unknown_bytes: u64,
}

#[derive(Debug, Serialize)]
struct NationalTraffic {
    window: &'static str,
    bucket_s: i64,
    /// `[from, to)`, Unix seconds: whole buckets, the last one still filling.
    from: i64,
    to: i64,
    /// Every bucket of the window, oldest first, zero where nothing was stored.
    buckets: Vec<BucketOut>,
    totals: TotalsOut,
    /// By bytes over the window (in + out + unknown), ties by site id.
    top_sites_by_traffic: Vec<SiteOut>,
    /// Sites degraded, on backup, down or silent now, by agents (ties: down, on backup,
    /// silent, degraded, then site id).
    top_sites_by_agents_affected: Vec<SiteOut>,
    /// Agents of every site in the incident ranking (not only the first `limit`).
    agents_affected: u64,
    incidents: usize,
}

/// Order of incidents with the same number of agents, as on the page's incident list.
fn severity(s: SiteState) -> u8 {
    match s {
        SiteState::Down => 4,
        SiteState::OnBackup => 3,
        SiteState::Silent => 2,
        SiteState::Degraded => 1,
        _ => 0,
    }
}

pub(super) async fn traffic(
    State(st): State<AppState>,
    Query(q): Query<TrafficQuery>,
) -> Result<Response, ApiError> {
    let w = q.window.as_deref().unwrap_or("1h");
    let window = Window::parse(w)
        .ok_or_else(|| bad_request(format!("window={w:?} is not one of 1h, 1d; e.g. window=1h")))?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(bad_request(format!(
            "limit={limit} is out of range; give 1 to 100, e.g. limit=10"
        )));
    }
    let now = now_ms();
    let computed = computed(&st, window, now).await?;
    let answer = answer(&st, window, &computed, now, limit);
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}

/// The cached store part of `window`, read again when older than its reuse time or when the
/// window has moved to a new bucket.
async fn computed(st: &AppState, window: Window, now: i64) -> Result<Arc<Computed>, ApiError> {
    let (from, to) = window.range(now.div_euclid(1000));
    let cached = st
        .national
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&window)
        .cloned();
    if let Some(c) = cached {
        if c.to == to && now - c.at_ms < window.reuse_for_ms() {
            return Ok(c);
        }
    }
    let reader = st.reader.clone();
    let (bucket_s, _) = window.buckets();
    let (buckets, sites) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::store::StoreError>((
            reader.traffic_by_bucket(from, to, bucket_s)?,
            reader.traffic_by_site(from, to)?,
        ))
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let c = Arc::new(Computed {
        at_ms: now,
        from,
        to,
        buckets,
        sites,
    });
    st.national
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(window, c.clone());
    Ok(c)
}

fn answer(st: &AppState, window: Window, c: &Computed, now: i64, limit: usize) -> NationalTraffic {
    let (bucket_s, n) = window.buckets();
    let mut totals = DirectionBytes::default();
    let mut stored = c.buckets.iter().peekable();
    let mut buckets = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for k in 0..n {
        let start = c.from + k * bucket_s;
        let mut d = DirectionBytes::default();
        while let Some((s, v)) = stored.next_if(|(s, _)| *s <= start) {
            // Only `s == start` is possible: rows start inside the window and the window is
            // bucket-aligned.
            if *s == start {
                d = *v;
            }
        }
        totals.inbound += d.inbound;
        totals.outbound += d.outbound;
        totals.unknown += d.unknown;
        buckets.push(BucketOut {
            start,
            inbound_bytes: d.inbound,
            outbound_bytes: d.outbound,
            unknown_bytes: d.unknown,
        });
    }

    let inv = &st.sites.inventory;
    let views = st.sites.views(now);
    let traffic_of = |id: &str| {
        c.sites
            .binary_search_by(|(s, _)| s.as_str().cmp(id))
            .map_or_else(|_| DirectionBytes::default(), |i| c.sites[i].1)
    };
    let site_out = |id: &str, d: DirectionBytes| {
        let idx = rie_proto::SiteId::new(id.to_string())
            .ok()
            .and_then(|s| inv.site_index(&s));
        let site = idx.map(|i| &inv.sites[i]);
        let view = idx.and_then(|i| views.get(i));
        SiteOut {
            id: id.to_string(),
            name: site.map(|s| s.name.clone()),
            ministry: site.map(|s| s.ministry.clone()),
            departement: site.map(|s| s.departement.clone()),
            agents: site.map_or(0, |s| s.agents),
            state: view.map_or(SiteState::Unknown, |v| v.state),
            state_since: view.and_then(|v| v.state_since_ms).and_then(rfc3339_ms),
            inbound_bytes: d.inbound,
            outbound_bytes: d.outbound,
            unknown_bytes: d.unknown,
        }
    };

    let mut by_traffic: Vec<&(String, DirectionBytes)> = c.sites.iter().collect();
    by_traffic.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then_with(|| a.0.cmp(&b.0)));
    let top_sites_by_traffic = by_traffic
        .into_iter()
        .take(limit)
        .map(|(id, d)| site_out(id, *d))
        .collect();

    let mut affected: Vec<usize> = views
        .iter()
        .enumerate()
        .filter(|(_, v)| severity(v.state) > 0)
        .map(|(i, _)| i)
        .collect();
    let agents_affected = affected
        .iter()
        .map(|&i| u64::from(inv.sites[i].agents))
        .sum();
    let incidents = affected.len();
    affected.sort_by(|&a, &b| {
        let (sa, sb) = (&inv.sites[a], &inv.sites[b]);
        sb.agents
            .cmp(&sa.agents)
            .then_with(|| severity(views[b].state).cmp(&severity(views[a].state)))
            .then_with(|| sa.id.as_str().cmp(sb.id.as_str()))
    });
    let top_sites_by_agents_affected = affected
        .into_iter()
        .take(limit)
        .map(|i| {
            let id = inv.sites[i].id.as_str();
            site_out(id, traffic_of(id))
        })
        .collect();

    NationalTraffic {
        window: window.as_str(),
        bucket_s,
        from: c.from,
        to: c.to,
        buckets,
        totals: totals.into(),
        top_sites_by_traffic,
        top_sites_by_agents_affected,
        agents_affected,
        incidents,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_whole_buckets_ending_with_the_current_one() {
        // 2026-09-21T14:14:30Z: the hour ends at 14:15, the day at 14:15 too (a quarter-hour).
        let now = 1_790_000_070;
        assert_eq!(
            Window::Hour.range(now),
            (1_790_000_100 - 3600, 1_790_000_100)
        );
        assert_eq!(
            Window::Day.range(now),
            (1_790_000_100 - 86_400, 1_790_000_100)
        );
        assert_eq!(Window::parse("1d"), Some(Window::Day));
        assert_eq!(Window::parse("24h"), None);
        assert_eq!([severity(SiteState::Down), severity(SiteState::Up)], [4, 0]);
    }
}
