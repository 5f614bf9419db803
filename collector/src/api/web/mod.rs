//! The NOC status page served at `/`: one HTML page, its script and style sheet, embedded in
//! the binary (the NOC's network is closed: no CDN, nothing fetched from elsewhere), plus the
//! JSON endpoints made for it.
//!
//! Why two endpoints rather than `/api/v1/sites`: with 14,000 sites the full site list is
//! several megabytes, too much to fetch every two seconds. The page loads the inventory once
//! (`/api/v1/status/sites`: names, places, agents, with ministries and départements as
//! dictionaries) and then polls `/api/v1/status`: one digit of state per site (14 kB for the
//! national inventory) and the start of each incident. The site view uses the public API
//! (`/api/v1/sites/{id}`, `/episodes`, `/api/v1/flows/totals`) and one more endpoint served
//! here, `/api/v1/sites/{id}/links/history`: the last hour of each link's checks from the
//! store's minute rollups (RTT and loss), which no other endpoint gave. The national traffic
//! section (`assets/traffic.js`) polls `/api/v1/national/traffic` (`api::national`); the fleet
//! section (`assets/fleet.js`) polls `/api/v1/fleet`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use rie_proto::SiteState;
use serde::{Deserialize, Serialize};

use super::{AppState, Caller, Route};
use crate::auth::Access;
use crate::sites::SiteView;
use rie_common::now_ms;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const TRAFFIC_JS: &str = include_str!("assets/traffic.js");
const FLEET_JS: &str = include_str!("assets/fleet.js");

/// The page's routes: the page and its files are public (they hold no data); the data
/// endpoints follow the API's rules.
pub fn table() -> Vec<Route> {
    use super::SITE_VIEW;
    vec![
        Route::new("/", Access::PUBLIC, get(index)),
        Route::new("/assets/app.js", Access::PUBLIC, get(app_js)),
        Route::new("/assets/app.css", Access::PUBLIC, get(app_css)),
        Route::new("/assets/traffic.js", Access::PUBLIC, get(traffic_js)),
        Route::new("/assets/fleet.js", Access::PUBLIC, get(fleet_js)),
        Route::new("/api/v1/status", Access::roles(SITE_VIEW), get(status)),
        Route::new(
            "/api/v1/status/sites",
            Access::roles(SITE_VIEW),
            get(status_sites),
        ),
        Route::new(
            "/api/v1/sites/{site_id}/links/history",
            Access::site(SITE_VIEW),
            get(link_history),
        ),
    ]
}

/// Headers shared by the embedded assets: they change only with the binary, but a NOC screen
/// left open across an upgrade must pick the new page up, hence `no-cache` (revalidate).
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn fleet_js() -> Response {
    asset("text/javascript; charset=utf-8", FLEET_JS)
}

async fn traffic_js() -> Response {
    asset("text/javascript; charset=utf-8", TRAFFIC_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The inventory as the page needs it, loaded once per page.
#[derive(Serialize)]
struct StatusSites {
    ministries: Vec<String>,
    /// `[code, name]`, sorted by code.
    departements: Vec<(String, String)>,
    /// `[id, name, ministry index, département index, agents, latitude, longitude]`, in
    /// inventory order (the order of `states` in [`Status`]).
    sites: Vec<(String, String, usize, usize, u32, f64, f64)>,
}

/// Indices of the inventory sites the caller sees (all for unscoped roles), in inventory
/// order: `/api/v1/status/sites` and `/api/v1/status` list the same sites in the same order,
/// so that the page's indices agree for a ministry or a technician too.
fn visible(st: &AppState, caller: &Caller) -> Vec<usize> {
    let inv = &st.sites.inventory;
    (0..inv.sites.len())
        .filter(|&i| super::sees(st, caller, inv.sites[i].id.as_str()))
        .collect()
}

async fn status_sites(State(st): State<AppState>, caller: Caller) -> Json<StatusSites> {
    Json(status_sites_of(&st.sites.inventory, &visible(&st, &caller)))
}

fn status_sites_of(inv: &crate::inventory::Inventory, shown: &[usize]) -> StatusSites {
    let mut ministries: BTreeMap<&str, usize> = BTreeMap::new();
    let mut deps: BTreeMap<&str, usize> = BTreeMap::new();
    let sites: Vec<&crate::inventory::Site> = shown.iter().map(|&i| &inv.sites[i]).collect();
    for s in &sites {
        ministries.insert(&s.ministry, 0);
        deps.insert(&s.departement, 0);
    }
    for (i, v) in ministries.values_mut().enumerate() {
        *v = i;
    }
    for (i, v) in deps.values_mut().enumerate() {
        *v = i;
    }
    StatusSites {
        ministries: ministries.keys().map(|m| m.to_string()).collect(),
        departements: deps
            .keys()
            .map(|d| {
                let name = rie_proto::geo::departement(d).map_or("", |g| g.name);
                (d.to_string(), name.to_string())
            })
            .collect(),
        sites: sites
            .iter()
            .map(|s| {
                (
                    s.id.to_string(),
                    s.name.clone(),
                    ministries[s.ministry.as_str()],
                    deps[s.departement.as_str()],
                    s.agents,
                    s.latitude,
                    s.longitude,
                )
            })
            .collect(),
    }
}

/// The live picture, polled every few seconds.
#[derive(Serialize, serde::Deserialize)]
pub struct Status {
    now_ms: i64,
    /// One digit per site, inventory order: the `rie_site_state` code (0 up, 1 degraded,
    /// 2 on_backup, 3 down, 4 silent, 5 unknown).
    states: String,
    /// `[site index, state since (Unix ms) or null]` for every site degraded, on backup, down
    /// or silent.
    incidents: Vec<(usize, Option<i64>)>,
}

async fn status(State(st): State<AppState>, caller: Caller) -> Response {
    let now = now_ms();
    let all = st.sites.views(now);
    let views: Vec<SiteView> = if caller.as_ref().is_some_and(|p| p.role.is_scoped()) {
        let mut all: Vec<Option<SiteView>> = all.into_iter().map(Some).collect();
        visible(&st, &caller)
            .into_iter()
            .filter_map(|i| all[i].take())
            .collect()
    } else {
        all
    };
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(status_of(&views, now)),
    )
        .into_response()
}

fn status_of(views: &[SiteView], now: i64) -> Status {
    let mut states = String::with_capacity(views.len());
    let mut incidents = Vec::new();
    for (i, v) in views.iter().enumerate() {
        // Codes are 0..=5: one ASCII digit each.
        let digit = char::from(b'0' + v.state.code());
        states.push(digit);
        if matches!(
            v.state,
            SiteState::Degraded | SiteState::OnBackup | SiteState::Down | SiteState::Silent
        ) {
            incidents.push((i, v.state_since_ms));
        }
    }
    Status {
        now_ms: now,
        states,
        incidents,
    }
}

/// One minute of one link's checks, as the site view charts it.
#[derive(Debug, Serialize, PartialEq)]
struct LinkMinuteOut {
    link: String,
    /// Start of the minute, Unix seconds (of the five minutes when `bucket_s` is 300).
    minute: i64,
    /// 60; 300 for the part older than the store's per-minute window (docs/storage.md).
    bucket_s: i64,
    sent: i64,
    received: i64,
    /// Share of check probes lost (0 to 1); null when nothing was sent.
    loss_ratio: Option<f64>,
    /// Mean of the samples' average RTTs; null when no sample measured one.
    rtt_avg_ms: Option<f64>,
    rtt_max_ms: Option<f64>,
}

impl From<crate::store::LinkMinute> for LinkMinuteOut {
    fn from(m: crate::store::LinkMinute) -> Self {
        Self {
            loss_ratio: (m.sent > 0).then(|| (m.sent - m.received).max(0) as f64 / m.sent as f64),
            rtt_avg_ms: (m.rtt_n > 0).then(|| m.rtt_sum_us as f64 / m.rtt_n as f64 / 1000.0),
            rtt_max_ms: m.rtt_max_us.map(|us| us as f64 / 1000.0),
            link: m.link,
            minute: m.minute,
            bucket_s: m.bucket_s,
            sent: m.sent,
            received: m.received,
        }
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    /// Minutes back from now (default 60, at most one week).
    minutes: Option<i64>,
}

/// `GET /api/v1/sites/{id}/links/history?minutes=60`: the recent RTT and loss of each link.
async fn link_history(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let err = |code: StatusCode, msg: String| {
        (code, Json(serde_json::json!({ "error": msg }))).into_response()
    };
    let minutes = q.minutes.unwrap_or(60);
    if !(1..=7 * 24 * 60).contains(&minutes) {
        return err(
            StatusCode::BAD_REQUEST,
            format!("minutes={minutes} is out of range; give 1 to 10080, e.g. minutes=60"),
        );
    }
    let known = rie_proto::SiteId::new(id.clone())
        .ok()
        .and_then(|s| st.sites.inventory.site_index(&s))
        .is_some();
    if !known {
        return err(
            StatusCode::NOT_FOUND,
            format!("no site {id:?} in the inventory"),
        );
    }
    let to = now_ms() / 1000 + 60;
    let from = to - 60 - minutes * 60;
    let reader = st.reader.clone();
    match tokio::task::spawn_blocking(move || reader.link_minutes(&id, from, to)).await {
        Ok(Ok(rows)) => Json(
            rows.into_iter()
                .map(LinkMinuteOut::from)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Ok(Err(e)) => err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_embedded_and_self_contained() {
        assert!(INDEX_HTML.contains("<html lang=\"fr\""));
        assert!(INDEX_HTML.contains("/assets/app.js"));
        // Works on a closed network: nothing loaded from another host.
        // (The SVG namespace is a name, not something fetched.)
        for a in [INDEX_HTML, APP_JS, APP_CSS, TRAFFIC_JS]
            .map(|a| a.replace("http://www.w3.org/2000/svg", ""))
        {
            assert!(
                !a.contains("http://") && !a.contains("https://"),
                "external URL in an asset"
            );
        }
    }

    fn fixture_inventory() -> crate::inventory::Inventory {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/inventory");
        crate::inventory::load_dir(&dir).unwrap()
    }

    #[test]
    fn sites_are_indexed_into_sorted_dictionaries() {
        let s = status_sites_of(&fixture_inventory(), &[0, 1, 2]);
        assert_eq!(
            s.ministries,
            ["Intérieur", "Justice", "Économie et Finances"]
        );
        let deps: Vec<(&str, &str)> = s
            .departements
            .iter()
            .map(|(c, n)| (c.as_str(), n.as_str()))
            .collect();
        assert_eq!(
            deps,
            [
                ("2A", "Corse-du-Sud"),
                ("35", "Ille-et-Vilaine"),
                ("973", "Guyane")
            ]
        );
        let ids: Vec<(&str, usize, usize, u32)> = s
            .sites
            .iter()
            .map(|x| (x.0.as_str(), x.2, x.3, x.4))
            .collect();
        assert_eq!(
            ids,
            [("S1", 0, 1, 420), ("S2", 2, 2, 35), ("S3", 1, 0, 120)]
        );
    }

    #[test]
    fn status_has_one_digit_per_site_and_lists_incidents() {
        let view = |state, since| SiteView {
            state,
            state_since_ms: since,
            live: Default::default(),
            connected: false,
            clock_suspect: false,
        };
        let views = [
            view(SiteState::Up, Some(1)),
            view(SiteState::Degraded, Some(2)),
            view(SiteState::OnBackup, Some(3)),
            view(SiteState::Down, Some(4)),
            view(SiteState::Silent, None),
            view(SiteState::Unknown, None),
        ];
        let s = status_of(&views, 99);
        assert_eq!(s.states, "012345");
        assert_eq!(
            s.incidents,
            [(1, Some(2)), (2, Some(3)), (3, Some(4)), (4, None)]
        );
        assert_eq!(s.now_ms, 99);
    }

    #[test]
    fn link_minutes_become_loss_and_rtt() {
        let m = crate::store::LinkMinute {
            link: "S1-B".into(),
            minute: 600,
            bucket_s: 60,
            sent: 20,
            received: 15,
            rtt_sum_us: 84_000,
            rtt_n: 2,
            rtt_max_us: Some(90_500),
        };
        let out = LinkMinuteOut::from(m.clone());
        assert_eq!(out.loss_ratio, Some(0.25));
        assert_eq!(out.rtt_avg_ms, Some(42.0));
        assert_eq!(out.rtt_max_ms, Some(90.5));
        let none = LinkMinuteOut::from(crate::store::LinkMinute {
            sent: 0,
            received: 0,
            rtt_n: 0,
            rtt_sum_us: 0,
            rtt_max_us: None,
            ..m
        });
        assert_eq!(
            (none.loss_ratio, none.rtt_avg_ms, none.rtt_max_ms),
            (None, None, None)
        );
    }
}
