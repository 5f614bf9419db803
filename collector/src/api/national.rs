//! `GET /api/v1/national/traffic?window=1h|1d`: the national traffic of the status page — bytes
//! in and out per bucket over the last hour (60 one-minute buckets) or day (96 quarter-hours),
//! the top sites by traffic over that window, and the sites of current incidents ranked by
//! the agents they leave affected, with their traffic.
//!
//! Owns that route, its answer and its cache. May import `store` (reads), `sites` (live
//! states), `inventory`; only `api` imports it.
//!
//! Why a cache, bucket by bucket: the answer sums every site's stored rows of the window — at
//! national load (14,000 sites, 4 rows per site and minute) 3.4 million rows for the hour and 80
//! million for the day; a SQLite scan of the hour's took 2.2 s here — while every open NOC
//! screen asks every ten seconds. So each bucket is read once (one query per bucket: the
//! reader's connection is free between them) and kept, by site; a request reads only the
//! buckets it lacks, the buckets not settled when read (ending less than [`SETTLE_MS`] before
//! their read: batches still arriving), and a few of the buckets read longer ago than
//! [`Window::refresh_ms`] (late data replayed from a probe's spool shows within that time).
//! Within [`Window::reuse_for_ms`] of a read nothing is read again. The incident ranking comes
//! from the live states on every request. Memory: one entry per site with traffic per bucket
//! (32 bytes): about 27 MB for the hour and 43 MB for the day at full national load.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rie_proto::SiteState;
use serde::{Deserialize, Serialize};

use super::{bad_request, rfc3339_ms, ApiError, AppState, Caller};
use crate::auth::Role;
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

    /// Time within which an answer's buckets are served again without any read.
    fn reuse_for_ms(self) -> i64 {
        match self {
            Self::Hour => 10_000,
            Self::Day => 60_000,
        }
    }

    /// Age after which a settled bucket is read again (late data shows within this).
    fn refresh_ms(self) -> i64 {
        match self {
            Self::Hour => 5 * 60_000,
            Self::Day => 30 * 60_000,
        }
    }

    /// Settled buckets read again per request, at most (the oldest reads first), so that a
    /// refresh costs a few buckets' reads, not the window's.
    fn refresh_per_request(self) -> usize {
        match self {
            Self::Hour => 6,
            Self::Day => 2,
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

/// A bucket is settled when read this long after its end: probes send every 10 s, and a
/// batch's commit follows within a second or two.
const SETTLE_MS: i64 = 60_000;

/// One bucket as the store gave it.
struct Bucket {
    read_at_ms: i64,
    /// By inventory index of the site.
    sites: Vec<(u32, DirectionBytes)>,
    /// Sites the inventory does not have (e.g. NetFlow's `unknown`), by id.
    others: Vec<(String, DirectionBytes)>,
}

/// The buckets of one window and when they were last served.
#[derive(Default)]
struct WindowCache {
    buckets: BTreeMap<i64, Bucket>,
    served_at_ms: i64,
    served_to: i64,
}

/// The store part of the answers, per window (see the module comment). One computation per
/// window at a time: a second screen waits for the first and then finds the buckets read.
#[derive(Default)]
pub struct TrafficCache {
    hour: tokio::sync::Mutex<WindowCache>,
    day: tokio::sync::Mutex<WindowCache>,
}

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
    caller: Caller,
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
    let mut cache = match window {
        Window::Hour => st.national.hour.lock().await,
        Window::Day => st.national.day.lock().await,
    };
    refresh(&st, window, &mut cache, now).await?;
    let role = caller.as_ref().map(|p| &p.role);
    let answer = answer(&st, window, &cache, now, limit, role);
    drop(cache);
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}

/// Brings the cache of `window` up to date at `now` (see the module comment).
async fn refresh(
    st: &AppState,
    window: Window,
    cache: &mut WindowCache,
    now: i64,
) -> Result<(), ApiError> {
    let (from, to) = window.range(now.div_euclid(1000));
    let (len, _) = window.buckets();
    cache.buckets.retain(|&start, _| start >= from);
    if cache.served_to == to && now - cache.served_at_ms < window.reuse_for_ms() {
        return Ok(());
    }
    let mut wanted: Vec<i64> = Vec::new();
    let mut stale: Vec<(i64, i64)> = Vec::new();
    for start in (from..to).step_by(usize::try_from(len).unwrap_or(60)) {
        match cache.buckets.get(&start) {
            None => wanted.push(start),
            Some(b) if b.read_at_ms < (start + len) * 1000 + SETTLE_MS => wanted.push(start),
            Some(b) if now - b.read_at_ms > window.refresh_ms() => {
                stale.push((b.read_at_ms, start))
            }
            Some(_) => {}
        }
    }
    stale.sort_unstable();
    wanted.extend(
        stale
            .iter()
            .take(window.refresh_per_request())
            .map(|&(_, s)| s),
    );
    let reader = st.reader.clone();
    let sites = st.sites.clone();
    let read = tokio::task::spawn_blocking(move || {
        let inv = &sites.inventory;
        let mut out = Vec::with_capacity(wanted.len());
        for start in wanted {
            let mut b = Bucket {
                read_at_ms: now,
                sites: Vec::new(),
                others: Vec::new(),
            };
            for (id, d) in reader.traffic_by_site(start, start + len)? {
                let idx = rie_proto::SiteId::new(id.clone())
                    .ok()
                    .and_then(|s| inv.site_index(&s))
                    .and_then(|i| u32::try_from(i).ok());
                match idx {
                    Some(i) => b.sites.push((i, d)),
                    None => b.others.push((id, d)),
                }
            }
            out.push((start, b));
        }
        Ok::<_, crate::store::StoreError>(out)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    cache.buckets.extend(read);
    cache.served_at_ms = now;
    cache.served_to = to;
    Ok(())
}

/// The answer for `role` (None: the API is open): a scoped role's buckets, totals and
/// rankings count its sites only, and never traffic of sites outside the inventory.
fn answer(
    st: &AppState,
    window: Window,
    c: &WindowCache,
    now: i64,
    limit: usize,
    role: Option<&Role>,
) -> NationalTraffic {
    let (bucket_s, n) = window.buckets();
    let (from, to) = window.range(now.div_euclid(1000));
    let inv = &st.sites.inventory;
    let views = st.sites.views(now);
    let scoped = role.is_some_and(Role::is_scoped);
    let visible = |i: usize| role.is_none_or(|r| r.sees_site_at(inv, i));

    // Per bucket, and per site over the window.
    let mut totals = DirectionBytes::default();
    let mut per_site = vec![DirectionBytes::default(); inv.sites.len()];
    let mut others: BTreeMap<&str, DirectionBytes> = BTreeMap::new();
    let mut buckets = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for k in 0..n {
        let start = from + k * bucket_s;
        let mut d = DirectionBytes::default();
        if let Some(b) = c.buckets.get(&start) {
            for (i, v) in b.sites.iter().filter(|(i, _)| visible(*i as usize)) {
                d.add_all(v);
                if let Some(p) = per_site.get_mut(*i as usize) {
                    p.add_all(v);
                }
            }
            for (id, v) in b.others.iter().filter(|_| !scoped) {
                d.add_all(v);
                others.entry(id).or_default().add_all(v);
            }
        }
        totals.add_all(&d);
        buckets.push(BucketOut {
            start,
            inbound_bytes: d.inbound,
            outbound_bytes: d.outbound,
            unknown_bytes: d.unknown,
        });
    }

    let site_out = |idx: Option<usize>, id: &str, d: DirectionBytes| {
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

    // (total, id, inventory index) of every site with traffic; the largest first, ties by id.
    let mut ranked: Vec<(u64, &str, Option<usize>, DirectionBytes)> = per_site
        .iter()
        .enumerate()
        .filter(|(_, d)| d.total() > 0)
        .map(|(i, d)| (d.total(), inv.sites[i].id.as_str(), Some(i), *d))
        .chain(others.iter().map(|(id, d)| (d.total(), *id, None, *d)))
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let top_sites_by_traffic = ranked
        .into_iter()
        .take(limit)
        .map(|(_, id, idx, d)| site_out(idx, id, d))
        .collect();

    let mut affected: Vec<usize> = views
        .iter()
        .enumerate()
        .filter(|(i, v)| severity(v.state) > 0 && visible(*i))
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
        .map(|i| site_out(Some(i), inv.sites[i].id.as_str(), per_site[i]))
        .collect();

    NationalTraffic {
        window: window.as_str(),
        bucket_s,
        from,
        to,
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
    use std::sync::Arc;

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

    fn state(dir: &std::path::Path) -> AppState {
        let inv = crate::inventory::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/inventory"),
        )
        .unwrap();
        let inv = Arc::new(inv);
        let reader = Arc::new(crate::store::Reader::open(&dir.join("rie.db")).unwrap());
        AppState {
            sites: Arc::new(crate::sites::SiteRegistry::new(
                inv.clone(),
                Default::default(),
            )),
            reader: reader.clone(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            costs: Arc::new(Default::default()),
            gate: Arc::new(crate::auth::gate::Gate::new(
                false,
                reader,
                inv,
                Default::default(),
            )),
            backup_prices: Arc::new(Default::default()),
            national: Default::default(),
            login: None,
            local: Default::default(),
        }
    }

    fn write(dir: &std::path::Path, rows: &[(i64, &str, i64, i64)]) {
        use crate::store::{FlowRow, SqliteStore, Store, WriteSet};
        let mut store = SqliteStore::open(&dir.join("rie.db")).unwrap();
        let flows = rows
            .iter()
            .map(|&(minute, site, direction, bytes)| FlowRow {
                minute,
                site: site.into(),
                exporter: String::new(),
                protocol: 6,
                direction,
                port_class: rie_proto::PortClass::Web,
                flows: 1,
                packets: 1,
                bytes,
            })
            .collect();
        store
            .write(&WriteSet {
                flows,
                now_ms: 1,
                ..WriteSet::default()
            })
            .unwrap();
    }

    /// (inbound, outbound) of the hour, the top sites' (id, total) and the inbound bytes of
    /// the bucket starting at `bucket`, as served at `now`.
    fn hour(st: &AppState, now: i64, bucket: i64) -> ((u64, u64), Vec<(String, u64)>, u64) {
        hour_as(st, now, bucket, None)
    }

    fn hour_as(
        st: &AppState,
        now: i64,
        bucket: i64,
        role: Option<&Role>,
    ) -> ((u64, u64), Vec<(String, u64)>, u64) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut cache = rt.block_on(st.national.hour.lock());
        rt.block_on(refresh(st, Window::Hour, &mut cache, now))
            .map_err(|e| e.1)
            .unwrap();
        let a = answer(st, Window::Hour, &cache, now, 10, role);
        let second = a
            .buckets
            .iter()
            .find(|b| b.start == bucket)
            .map_or(0, |b| b.inbound_bytes);
        (
            (a.totals.inbound_bytes, a.totals.outbound_bytes),
            a.top_sites_by_traffic
                .into_iter()
                .map(|s| (s.id, s.inbound_bytes + s.outbound_bytes + s.unknown_bytes))
                .collect(),
            second,
        )
    }

    /// A ministry's answer counts its sites only, from the same cache as the nation's; sites
    /// outside the inventory (NetFlow's `unknown`) belong to no ministry.
    #[test]
    fn a_ministry_sees_its_sites_only() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_790_000_070_000;
        let (from, _) = Window::Hour.range(now / 1000);
        let m = from + 600;
        write(
            dir.path(),
            &[(m, "S1", 1, 1000), (m, "S2", 2, 300), (m, "gone", 1, 7)],
        );
        let st = state(dir.path());
        let s = |id: &str, n| (id.to_string(), n);
        let interieur = Role::Ministry("Intérieur".into());
        assert_eq!(
            hour_as(&st, now, m, Some(&interieur)),
            ((1000, 0), vec![s("S1", 1000)], 1000)
        );
        let tech = Role::Technician(rie_proto::SiteId::new("S2").unwrap());
        assert_eq!(
            hour_as(&st, now, m, Some(&tech)),
            ((0, 300), vec![s("S2", 300)], 0)
        );
        assert_eq!(
            hour_as(&st, now, m, Some(&Role::Noc)),
            (
                (1007, 300),
                vec![s("S1", 1000), s("S2", 300), s("gone", 7)],
                1007
            )
        );
    }

    /// Buckets are read once and kept: new traffic in the current minute shows after the reuse
    /// time, late traffic in a settled minute after the refresh time, and a bucket leaves the
    /// answer when the window slides past it.
    #[test]
    fn buckets_are_read_once_then_refreshed_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_790_000_070_000;
        let (from, _) = Window::Hour.range(now / 1000);
        // `early`: the second bucket of the window once it has slid by 5 minutes.
        let (early, current) = (from + 360, now / 60_000 * 60);
        write(dir.path(), &[(early, "S1", 1, 1000), (early, "gone", 2, 5)]);
        let st = state(dir.path());
        let s = |id: &str, n| (id.to_string(), n);
        assert_eq!(
            hour(&st, now, early),
            ((1000, 5), vec![s("S1", 1000), s("gone", 5)], 1000)
        );
        // Late data in the settled bucket, new data in the current minute.
        write(dir.path(), &[(early, "S1", 1, 500), (current, "S3", 2, 70)]);
        assert_eq!(
            hour(&st, now + 5_000, early).0,
            (1000, 5),
            "within the reuse time"
        );
        assert_eq!(
            hour(&st, now + 11_000, early),
            (
                (1000, 75),
                vec![s("S1", 1000), s("S3", 70), s("gone", 5)],
                1000
            ),
            "the current minute is read again, the settled one not yet"
        );
        let later = now + 5 * 60_000 + 12_000;
        assert_eq!(
            hour(&st, later, early).0,
            (1500, 75),
            "read again once older than 5 min"
        );
        assert_eq!(hour(&st, later, early).2, 1500);
        // An hour later the early bucket and the current one have left the window.
        assert_eq!(hour(&st, now + 3_600_000, early), ((0, 0), vec![], 0));
    }
}
