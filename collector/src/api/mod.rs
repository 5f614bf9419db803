//! HTTP API (JSON, described in `docs/openapi.yaml`) and the `/metrics` endpoint.
//!
//! Owns every HTTP route of the collector: the JSON API and `/metrics` (here), the status page
//! (`web`, with the national traffic in `national`), the probe fleet (`fleet`), check plans
//! (`plans`), the logins of people (`login`), and the listener that serves them (`serve`:
//! HTTPS, certificate reload, security headers). May import `store` (reads), `sites`, `fleet`,
//! `plans`, `indicators`, `inventory`, `metrics`, `pki`, `auth`; never `ingest` or `sinks`.
//! Only `app` imports it.

mod fleet;
mod login;
mod national;
mod plans;
pub mod serve;
pub mod web;

pub use serve::ApiConfig;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Json, Router};
use rie_proto::{LinkRole, SiteState};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::auth::{self, Access, Kind, Principal};
use crate::metrics::Metrics;
use crate::sites::{SiteRegistry, SiteView};
use crate::store::Reader;
use rie_common::now_ms;

#[derive(Clone)]
pub struct AppState {
    pub sites: Arc<SiteRegistry>,
    pub reader: Arc<Reader>,
    pub metrics: Arc<Metrics>,
    /// Cost model of `/api/v1/indicators`.
    pub costs: Arc<crate::indicators::CostModel>,
    /// Tokens and access rules of every route.
    pub gate: Arc<auth::gate::Gate>,
    /// Price catalogue of `/api/v1/indicators/resilience-plan`.
    pub backup_prices: Arc<crate::indicators::resilience_plan::BackupPrices>,
    /// Store part of `/api/v1/national/traffic`, shared by every screen for a few seconds.
    pub national: Arc<national::TrafficCache>,
    /// OpenID Connect login of people (`/auth/*`), when `[auth.oidc]` is set.
    pub login: Option<Arc<auth::oidc::Oidc>>,
    /// Password login of local accounts (`POST /auth/local`).
    pub local: Arc<auth::local::LocalLogins>,
    /// Check plans and each site's plan state (`/api/v1/plans`, `/api/v1/sites/{id}/plan`).
    pub plans: Arc<crate::plans::PlanBook>,
}

/// Who may read the operational views (status, sites, flows, episodes).
const OPERATIONS: &[Kind] = &[Kind::Noc, Kind::Ministry, Kind::Admin];
/// One site's status, links and episodes: the operational roles and the site's technician.
pub(crate) const SITE_VIEW: &[Kind] = &[Kind::Noc, Kind::Ministry, Kind::Technician, Kind::Admin];
/// What concerns every scope at once (the stored plans of all ministries): not for a ministry.
const NATIONAL: &[Kind] = &[Kind::Noc, Kind::Admin];
const FINANCE: &[Kind] = &[Kind::Finance, Kind::Admin];
const METRICS: &[Kind] = &[Kind::Metrics, Kind::Admin];
const ADMIN: &[Kind] = &[Kind::Admin];
/// A site's effective check plan: the NOC, the admin, and a ministry for its own sites.
const PLANS_OF_SITE: &[Kind] = &[Kind::Noc, Kind::Ministry, Kind::Admin];

/// One route: its path, its access rule and its handler. The router is built from this table
/// only, so that no route exists without a rule.
pub struct Route {
    pub path: &'static str,
    pub access: Access,
    method: MethodRouter<AppState>,
}

impl Route {
    pub(crate) fn new(path: &'static str, access: Access, method: MethodRouter<AppState>) -> Self {
        Self {
            path,
            access,
            method,
        }
    }
}

fn table() -> Vec<Route> {
    let mut routes = vec![
        Route::new("/healthz", Access::PUBLIC, get(healthz)),
        Route::new("/metrics", Access::roles(METRICS), get(metrics)),
        Route::new("/api/v1/sites", Access::roles(SITE_VIEW), get(list_sites)),
        Route::new(
            "/api/v1/sites/{site_id}",
            Access::site(SITE_VIEW),
            get(one_site),
        ),
        Route::new(
            "/api/v1/sites/{site_id}/episodes",
            Access::site(SITE_VIEW),
            get(site_episodes),
        ),
        Route::new(
            "/api/v1/sites/{site_id}/top_talkers",
            Access::site(OPERATIONS),
            get(site_top_talkers),
        ),
        Route::new(
            "/api/v1/sites/{site_id}/plan",
            Access::site(PLANS_OF_SITE),
            get(plans::site_plan),
        ),
        Route::new("/api/v1/plans", Access::roles(NATIONAL), get(plans::list)),
        Route::new(
            "/api/v1/plans/rollouts",
            Access::roles(NATIONAL),
            get(plans::rollouts),
        ),
        Route::new(
            "/api/v1/admin/plans/rollouts",
            Access::roles(ADMIN).audited(),
            post(plans::start_rollout),
        ),
        Route::new(
            "/api/v1/admin/plans/rollouts/{rollout_id}/rollback",
            Access::roles(ADMIN).audited(),
            post(plans::rollback),
        ),
        Route::new(
            "/api/v1/flows/totals",
            Access::roles(OPERATIONS),
            get(flow_totals),
        ),
        Route::new(
            "/api/v1/national/traffic",
            Access::roles(OPERATIONS),
            get(national::traffic),
        ),
        Route::new("/api/v1/fleet", Access::roles(SITE_VIEW), get(fleet::fleet)),
        Route::new(
            "/api/v1/indicators",
            Access::roles(FINANCE).audited(),
            get(indicators),
        ),
        Route::new(
            "/api/v1/indicators/resilience-plan",
            Access::roles(FINANCE).audited(),
            get(resilience_plan),
        ),
        Route::new(
            "/api/v1/audit",
            Access::roles(ADMIN).audited(),
            get(audit_trail),
        ),
    ];
    routes.extend(web::table());
    routes.extend(login::table());
    routes
}

/// Every route's path and rule, as the router applies them.
pub fn policies() -> Vec<(&'static str, Access)> {
    table().into_iter().map(|r| (r.path, r.access)).collect()
}

pub fn router(state: AppState) -> Router {
    let gate = state.gate.clone();
    let mut router = Router::new();
    for r in table() {
        let layer =
            axum::middleware::from_fn_with_state((gate.clone(), r.access), auth::gate::check);
        router = router.route(r.path, r.method.route_layer(layer));
    }
    router.with_state(state)
}

/// The caller's principal (the gate puts it on every non-public route).
pub(crate) type Caller = Option<Extension<Principal>>;

/// Whether the caller may see `site` (unscoped roles see every site).
pub(crate) fn sees(st: &AppState, caller: &Caller, site: &str) -> bool {
    caller
        .as_ref()
        .is_none_or(|p| p.role.sees_site(&st.sites.inventory, site))
}

/// An error answer: `{"error": "..."}` with a status.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn bad_request(msg: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg)
}

/// 200 while the store answers; 503 with the reason and the start of the outage when it does
/// not (a failed ping, or a failed write not yet followed by a successful one).
async fn healthz(State(st): State<AppState>) -> Response {
    let reader = st.reader.clone();
    let ping = tokio::task::spawn_blocking(move || reader.ping().map_err(|e| e.to_string()))
        .await
        .unwrap_or_else(|e| Err(format!("health check task failed: {e}")));
    match ping {
        Ok(()) => st.metrics.store_ok(false),
        Err(e) => st.metrics.store_failed(false, e, rie_common::now_ms()),
    }
    let connected = st.metrics.probe_connections.get();
    let mut body = serde_json::json!({
        "status": "ok",
        "sites": st.sites.inventory.sites.len(),
        "probes_connected": connected,
        "leader": st.metrics.leader.get() == 1,
    });
    let code = match st.metrics.store_health.down() {
        None => StatusCode::OK,
        Some(down) => {
            let since = time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(down.since_ms) * 1_000_000,
            )
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| down.since_ms.to_string());
            body["status"] = "store_unavailable".into();
            body["store_down_since"] = since.clone().into();
            body["reason"] = format!("database unreachable since {since}: {}", down.reason).into();
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    update_site_gauges(&st);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

fn update_site_gauges(st: &AppState) {
    let views = st.sites.views(now_ms());
    for s in SiteState::ALL {
        let n = views.iter().filter(|v| v.state == s).count();
        st.metrics
            .sites
            .with_label_values(&[s.as_str()])
            .set(n as i64);
    }
}

#[derive(Serialize)]
struct LinkOut {
    id: String,
    role: LinkRole,
    operator: String,
    technology: &'static str,
    bandwidth_mbps: f64,
    monthly_cost_eur: String,
    up: Option<bool>,
    active: Option<bool>,
    loss_ratio: Option<f64>,
    rtt_avg_ms: Option<f64>,
}

#[derive(Serialize)]
struct SiteOut {
    id: String,
    name: String,
    ministry: String,
    departement: String,
    agents: u32,
    latitude: f64,
    longitude: f64,
    state: SiteState,
    state_since: Option<String>,
    last_seen: Option<String>,
    connected: bool,
    links: Vec<LinkOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probe: Option<ProbeOut>,
    /// Detail only: what the NetFlow input knows of the site (inventory).
    #[serde(skip_serializing_if = "Option::is_none")]
    netflow: Option<NetflowOut>,
}

/// The inventory's NetFlow view of a site: where its router exports from, and the prefixes
/// that decide the direction of its directly exported flows (empty: `unknown`).
#[derive(Serialize)]
struct NetflowOut {
    exporters: Vec<String>,
    site_prefixes: Vec<String>,
}

#[derive(Serialize)]
pub(super) struct ProbeOut {
    probe_version: Option<String>,
    protocol_version: Option<u16>,
    last_hello: Option<String>,
    /// The check plan version the probe last said it applied.
    plan_version: Option<u64>,
    clock_offset_ms: Option<i64>,
    clock_suspect: bool,
    batches_stored: u64,
    last_batch: Option<String>,
    /// The probe's last health report (None: it never sent one, e.g. an older probe).
    health: Option<HealthOut>,
}

#[derive(Serialize)]
struct HealthOut {
    at: Option<String>,
    spool_batches: u64,
    spool_bytes: u64,
    spool_oldest: Option<String>,
    spool_dropped: u64,
    /// The backlog grew in the last `fleet::GROWING_REPORTS` reports or more.
    backlog_growing: bool,
    capture_kernel_drops: Option<u64>,
    relay_datagrams: Option<u64>,
    relay_errors: Option<u64>,
    sflow_datagrams: Option<u64>,
    sflow_errors: Option<u64>,
}

/// What the centre knows of a site's probe (site detail and fleet view).
pub(super) fn probe_out(v: &SiteView) -> ProbeOut {
    ProbeOut {
        probe_version: v.live.probe_version.clone(),
        protocol_version: v.live.protocol_version,
        last_hello: v.live.hello_ms.and_then(rfc3339_ms),
        plan_version: v.live.plan_version,
        clock_offset_ms: v.live.clock_offset_ms,
        clock_suspect: v.clock_suspect,
        batches_stored: v.live.batches_stored,
        last_batch: v.live.last_batch_ms.and_then(rfc3339_ms),
        health: v.live.health.map(|h| HealthOut {
            at: v.live.health_ms.and_then(rfc3339_ms),
            spool_batches: h.spool_batches,
            spool_bytes: h.spool_bytes,
            spool_oldest: h.spool_oldest_ms.and_then(rfc3339_ms),
            spool_dropped: h.spool_dropped,
            backlog_growing: crate::fleet::backlog_growing(v),
            capture_kernel_drops: h.capture_kernel_drops,
            relay_datagrams: h.relay_datagrams,
            relay_errors: h.relay_errors,
            sflow_datagrams: h.sflow_datagrams,
            sflow_errors: h.sflow_errors,
        }),
    }
}

fn rfc3339_ms(ms: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
}

fn site_out(sites: &SiteRegistry, idx: usize, v: SiteView, detail: bool) -> SiteOut {
    let s = &sites.inventory.sites[idx];
    let links = sites
        .inventory
        .links_of(&s.id)
        .map(|l| {
            let live = v.live.links.iter().find(|x| x.link == l.id);
            LinkOut {
                id: l.id.to_string(),
                role: l.role,
                operator: l.operator.clone(),
                technology: l.technology.as_str(),
                bandwidth_mbps: l.bandwidth_mbps,
                monthly_cost_eur: format!(
                    "{}.{:02}",
                    l.monthly_cost_cents / 100,
                    l.monthly_cost_cents % 100
                ),
                up: live.map(|x| x.up),
                active: live.map(|x| x.active),
                loss_ratio: live.and_then(|x| x.loss_ratio),
                rtt_avg_ms: live.and_then(|x| x.rtt_avg_ms),
            }
        })
        .collect();
    SiteOut {
        id: s.id.to_string(),
        name: s.name.clone(),
        ministry: s.ministry.clone(),
        departement: s.departement.clone(),
        agents: s.agents,
        latitude: s.latitude,
        longitude: s.longitude,
        state: v.state,
        state_since: v.state_since_ms.and_then(rfc3339_ms),
        last_seen: v.live.last_seen_ms.and_then(rfc3339_ms),
        connected: v.connected,
        links,
        probe: detail.then(|| probe_out(&v)),
        netflow: detail.then(|| NetflowOut {
            exporters: s.exporters.iter().map(ToString::to_string).collect(),
            site_prefixes: s.prefixes.iter().map(ToString::to_string).collect(),
        }),
    }
}

#[derive(Deserialize)]
struct SiteFilter {
    state: Option<String>,
    ministry: Option<String>,
    departement: Option<String>,
}

async fn list_sites(
    State(st): State<AppState>,
    caller: Caller,
    Query(f): Query<SiteFilter>,
) -> Result<Json<Vec<SiteOut>>, ApiError> {
    let state = match f.state.as_deref() {
        None => None,
        Some(s) => Some(SiteState::parse(s).ok_or_else(|| {
            bad_request(format!(
                "state {s:?} is not one of up, degraded, on_backup, down, silent, unknown"
            ))
        })?),
    };
    let views = st.sites.views(now_ms());
    let inv = &st.sites.inventory;
    let out = views
        .into_iter()
        .enumerate()
        .filter(|(i, v)| {
            let s = &inv.sites[*i];
            if !sees(&st, &caller, s.id.as_str()) {
                return false;
            }
            state.is_none_or(|x| v.state == x)
                && f.ministry.as_ref().is_none_or(|m| &s.ministry == m)
                && f.departement.as_ref().is_none_or(|d| &s.departement == d)
        })
        .map(|(i, v)| site_out(&st.sites, i, v, false))
        .collect();
    Ok(Json(out))
}

fn site_index(st: &AppState, id: &str) -> Result<usize, ApiError> {
    rie_proto::SiteId::new(id.to_string())
        .ok()
        .and_then(|s| st.sites.inventory.site_index(&s))
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no site {id:?} in the inventory"),
            )
        })
}

async fn one_site(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SiteOut>, ApiError> {
    let idx = site_index(&st, &id)?;
    let v = st.sites.view(idx, now_ms());
    Ok(Json(site_out(&st.sites, idx, v, true)))
}

#[derive(Deserialize)]
struct EpisodesQuery {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Serialize)]
struct EpisodeOut {
    kind: crate::sites::EpisodeKind,
    start: Option<String>,
    end: Option<String>,
    /// Up to `end`, or up to now while the episode is open.
    duration_s: i64,
    link: Option<String>,
    cause: String,
}

/// Episodes overlapping `[from, to)`; both default to the last 30 days up to now.
async fn site_episodes(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<EpisodesQuery>,
) -> Result<Json<Vec<EpisodeOut>>, ApiError> {
    let idx = site_index(&st, &id)?;
    let now = now_ms();
    let to = match q.to.as_deref() {
        Some(t) => parse_time("to", t)? * 1000,
        None => now,
    };
    let from = match q.from.as_deref() {
        Some(f) => parse_time("from", f)? * 1000,
        None => to - 30 * 86_400_000,
    };
    if from >= to {
        return Err(bad_request("`from` must be before `to`".into()));
    }
    let site = st.sites.inventory.sites[idx].id.to_string();
    let reader = st.reader.clone();
    let rows = tokio::task::spawn_blocking(move || reader.episodes(&site, from, to))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(
        rows.into_iter()
            .map(|e| EpisodeOut {
                kind: e.kind,
                start: rfc3339_ms(e.start_ms),
                end: e.end_ms.and_then(rfc3339_ms),
                duration_s: (e.end_ms.unwrap_or(now) - e.start_ms).max(0) / 1000,
                link: e.link,
                cause: e.cause,
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct TotalsQuery {
    from: String,
    to: String,
    site: Option<String>,
    exporter: Option<String>,
}

/// Parses an RFC 3339 instant into Unix seconds.
fn parse_time(name: &str, v: &str) -> Result<i64, ApiError> {
    OffsetDateTime::parse(v, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            bad_request(format!(
                "{name}={v:?} is not an RFC 3339 time; e.g. 2026-10-01T00:00:00Z"
            ))
        })
}

#[derive(Deserialize)]
struct TalkersQuery {
    from: String,
    to: String,
    limit: Option<u32>,
}

/// The site's top remote prefixes summed over the minutes starting in `[from, to)`, by bytes.
async fn site_top_talkers(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<TalkersQuery>,
) -> Result<Json<Vec<crate::store::TalkerTotal>>, ApiError> {
    let idx = site_index(&st, &id)?;
    let from = parse_time("from", &q.from)?;
    let to = parse_time("to", &q.to)?;
    if to < from {
        return Err(bad_request("to is before from".into()));
    }
    let site = st.sites.inventory.sites[idx].id.to_string();
    let limit = q.limit.unwrap_or(10);
    let reader = st.reader.clone();
    let rows = tokio::task::spawn_blocking(move || reader.top_talkers(&site, from, to, limit))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(rows))
}

async fn flow_totals(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<TotalsQuery>,
) -> Result<Response, ApiError> {
    let from = parse_time("from", &q.from)?;
    let to = parse_time("to", &q.to)?;
    if to < from {
        return Err(bad_request("to is before from".into()));
    }
    if let Some(e) = &q.exporter {
        if e.parse::<std::net::IpAddr>().is_err() {
            return Err(bad_request(format!("exporter={e:?} is not an IP address")));
        }
    }
    // A scoped caller sees its sites only: a site (or an exporter's site) outside its scope
    // answers as unknown; without `site`, the totals are those of its sites.
    let scope: Option<Vec<String>> = match caller.as_ref().map(|p| &p.role) {
        Some(role) if role.is_scoped() => {
            let inv = &st.sites.inventory;
            let exporter_site = q
                .exporter
                .as_deref()
                .and_then(|e| e.parse::<std::net::IpAddr>().ok())
                .and_then(|a| inv.site_index_of_exporter(&a))
                .map(|i| inv.sites[i].id.to_string());
            for site in q.site.iter().chain(exporter_site.iter()) {
                if !role.sees_site(inv, site) {
                    return Err(ApiError(
                        StatusCode::NOT_FOUND,
                        format!("no site {site:?} in the inventory"),
                    ));
                }
            }
            (q.site.is_none() && q.exporter.is_none()).then(|| {
                inv.sites
                    .iter()
                    .filter(|s| role.sees_site(inv, s.id.as_str()))
                    .map(|s| s.id.to_string())
                    .collect()
            })
        }
        _ => None,
    };
    let reader = st.reader.clone();
    let totals = tokio::task::spawn_blocking(move || match scope {
        Some(sites) => {
            let mut sum = crate::store::FlowTotals::default();
            for site in &sites {
                sum.add(reader.flow_totals(from, to, Some(site), None)?);
            }
            Ok(sum)
        }
        None => reader.flow_totals(from, to, q.site.as_deref(), q.exporter.as_deref()),
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(totals).into_response())
}

#[derive(Deserialize)]
struct IndicatorsQuery {
    period: String,
    #[serde(default)]
    group_by: Option<String>,
}

/// Same document as `rie-collector report --format json` (see `indicators::Report`).
async fn indicators(
    State(st): State<AppState>,
    Query(q): Query<IndicatorsQuery>,
) -> Result<Response, ApiError> {
    use crate::indicators::{self, GroupBy, Period};
    let period = Period::parse(&q.period).map_err(|e| bad_request(e.to_string()))?;
    let by = q.group_by.as_deref().unwrap_or("national");
    let group_by = GroupBy::parse(by).ok_or_else(|| {
        bad_request(format!(
            "group_by={by:?} is not one of site, ministry, departement, region, technology, national"
        ))
    })?;
    let reader = st.reader.clone();
    let inv = st.sites.inventory.clone();
    let costs = st.costs.clone();
    let report = tokio::task::spawn_blocking(move || {
        indicators::report(&reader, &inv, &costs, &period, now_ms(), group_by)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(report).into_response())
}

#[derive(Deserialize)]
struct PlanQuery {
    from: Option<String>,
    to: Option<String>,
    ministry: Option<String>,
    region: Option<String>,
    rank_by: Option<String>,
    /// Only the first investments (the totals still cover all of them).
    limit: Option<usize>,
}

/// Same document as `rie-collector report resilience --format json`; `from`/`to` default to
/// the last 30 days up to now.
async fn resilience_plan(
    State(st): State<AppState>,
    Query(q): Query<PlanQuery>,
) -> Result<Response, ApiError> {
    use crate::indicators::resilience_plan::{self as plan, Filter, RankBy, Span};
    let now = now_ms();
    let to =
        q.to.clone()
            .unwrap_or_else(|| rfc3339_ms(now).unwrap_or_default());
    let from = q
        .from
        .clone()
        .unwrap_or_else(|| rfc3339_ms(now - 30 * 86_400_000).unwrap_or_default());
    let span = Span::parse(&from, &to).map_err(|e| bad_request(e.to_string()))?;
    let by = q.rank_by.as_deref().unwrap_or("net");
    let rank_by = RankBy::parse(by)
        .ok_or_else(|| bad_request(format!("rank_by={by:?} is not one of net, per_euro")))?;
    let filter = Filter {
        ministry: q.ministry.filter(|m| !m.is_empty()),
        region: q.region.filter(|r| !r.is_empty()),
    };
    let reader = st.reader.clone();
    let inv = st.sites.inventory.clone();
    let prices = st.backup_prices.clone();
    let mut out = tokio::task::spawn_blocking(move || {
        plan::report(&reader, &inv, &prices, &span, now, &filter, rank_by)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if let Some(n) = q.limit {
        out.investments.truncate(n);
    }
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    from: String,
    to: String,
    /// `json` (default: an array) or `jsonl` (one event per line, for a SIEM).
    format: Option<String>,
    limit: Option<i64>,
}

/// The audit trail of `[from, to)`, oldest first (admin only; reading it is audited too).
async fn audit_trail(
    State(st): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let from = parse_time("from", &q.from)? * 1_000;
    let to = parse_time("to", &q.to)? * 1_000;
    let limit = q.limit.unwrap_or(100_000);
    if !(1..=1_000_000).contains(&limit) {
        return Err(bad_request(format!("limit={limit} is not 1 to 1000000")));
    }
    let jsonl = match q.format.as_deref() {
        None | Some("json") => false,
        Some("jsonl") => true,
        Some(f) => return Err(bad_request(format!("format={f:?} is not json or jsonl"))),
    };
    let reader = st.reader.clone();
    let rows =
        tokio::task::spawn_blocking(move || crate::store::audit::query(&reader, from, to, limit))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if !jsonl {
        return Ok(Json(rows).into_response());
    }
    let mut body = String::new();
    for r in &rows {
        body.push_str(&serde_json::to_string(r).unwrap_or_default());
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
