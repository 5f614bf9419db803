//! `/api/v1/plans` (every stored plan and how far the fleet is: NOC and admin) and
//! `/api/v1/sites/{site_id}/plan` (a site's effective plan, the scope each value came from, and
//! what its probe answered: NOC, admin, and a ministry for its own sites — the gate checks the
//! scope); `/api/v1/plans/rollouts` (each staged rollout and its progress by wave: NOC and
//! admin) and, for the admin, `/api/v1/admin/plans/rollouts` (start one) and
//! `/api/v1/admin/plans/rollouts/{rollout_id}/rollback`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::{bad_request, site_index, ApiError, AppState, Caller};
use crate::indicators::rfc3339;
use crate::plans::rollout::{self, Progress, Rollout, RolloutError, RolloutParams};
use crate::plans::SiteState;

/// Every state a site's plan can be in, for the counts (all present, zeros included).
const STATES: [&str; 7] = [
    "applied",
    "pending",
    "refused",
    "outdated",
    "not_sent",
    "previous_protocol",
    "no_plan",
];

#[derive(Serialize)]
pub(super) struct PlanOut {
    version: i64,
    scope: String,
    hash: String,
    created: String,
    toml: String,
}

#[derive(Serialize)]
pub(super) struct ListOut {
    /// The highest stored version (0: none).
    latest_version: i64,
    plans: Vec<PlanOut>,
    /// Sites per state (see `SiteState::state`).
    sites: BTreeMap<&'static str, usize>,
    /// With `?state=`: every site in that state.
    #[serde(skip_serializing_if = "Option::is_none")]
    sites_in_state: Option<Vec<SiteState>>,
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    state: Option<String>,
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

pub(super) async fn list(
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ListOut>, ApiError> {
    if let Some(s) = &q.state {
        if !STATES.contains(&s.as_str()) {
            return Err(bad_request(format!(
                "state={s:?} is not one of {}",
                STATES.join(", ")
            )));
        }
    }
    let book = st.plans.clone();
    let (rows, states) = tokio::task::spawn_blocking(move || {
        let rows = crate::store::plans::list(book.reader())?;
        book.site_states().map(|s| (rows, s))
    })
    .await
    .map_err(unavailable)?
    .map_err(unavailable)?;
    let mut sites: BTreeMap<&'static str, usize> = STATES.iter().map(|s| (*s, 0)).collect();
    for s in &states {
        *sites.entry(s.state).or_default() += 1;
    }
    Ok(Json(ListOut {
        latest_version: rows.last().map_or(0, |r| r.version),
        plans: rows
            .into_iter()
            .map(|r| PlanOut {
                version: r.version,
                scope: rie_plan::Scope::from_parts(&r.scope_kind, &r.scope_value)
                    .map_or_else(|| r.scope_kind.clone(), |s| s.to_string()),
                hash: r.hash,
                created: rfc3339(r.created_ms),
                toml: r.toml,
            })
            .collect(),
        sites,
        sites_in_state: q
            .state
            .map(|want| states.into_iter().filter(|s| s.state == want).collect()),
    }))
}

#[derive(Serialize)]
pub(super) struct EffectiveOut {
    version: u64,
    hash: String,
    /// The scopes whose plans were merged, widest first.
    scopes: Vec<String>,
    primary: rie_plan::RolePlan,
    backup: rie_plan::RolePlan,
    /// `primary.interval` → the scope it came from, or `default`.
    sources: BTreeMap<String, String>,
}

#[derive(Serialize)]
pub(super) struct SitePlanOut {
    site: String,
    /// None when no stored plan applies: the probe runs its own file's checks.
    effective: Option<EffectiveOut>,
    status: SiteState,
}

pub(super) async fn site_plan(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SitePlanOut>, ApiError> {
    let idx = site_index(&st, &id)?;
    let book = st.plans.clone();
    let site = id.clone();
    let status = tokio::task::spawn_blocking(move || {
        crate::store::plans::status(book.reader(), &site).map(|s| book.site_state(idx, s.as_ref()))
    })
    .await
    .map_err(unavailable)?
    .map_err(unavailable)?;
    let effective = st.plans.effective(idx).map(|p| EffectiveOut {
        version: p.plan.version,
        hash: p.hash.clone(),
        scopes: p.scopes.clone(),
        primary: p.plan.primary.clone(),
        backup: p.plan.backup.clone(),
        sources: p.plan.sources.clone(),
    });
    Ok(Json(SitePlanOut {
        site: id,
        effective,
        status,
    }))
}

#[derive(Serialize)]
pub(super) struct RolloutOut {
    #[serde(flatten)]
    rollout: Rollout,
    started: String,
    wave_name: String,
    progress: Progress,
}

#[derive(Serialize)]
pub(super) struct RolloutsOut {
    /// Newest first, at most [`ROLLOUTS_SHOWN`].
    rollouts: Vec<RolloutOut>,
}

/// Rollouts listed by `/api/v1/plans/rollouts` at most.
const ROLLOUTS_SHOWN: usize = 20;

/// `GET /api/v1/plans/rollouts`: each rollout with its progress by wave.
pub(super) async fn rollouts(State(st): State<AppState>) -> Result<Json<RolloutsOut>, ApiError> {
    let (book, sites) = (st.plans.clone(), st.sites.clone());
    let all = tokio::task::spawn_blocking(move || rollout::views(&book, &sites, ROLLOUTS_SHOWN))
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
    Ok(Json(RolloutsOut {
        rollouts: all
            .into_iter()
            .map(|(r, progress)| RolloutOut {
                started: rfc3339(r.started_ms),
                wave_name: r.wave_name(r.wave),
                rollout: r,
                progress,
            })
            .collect(),
    }))
}

/// What `POST /api/v1/admin/plans/rollouts` takes: the plan text and the CLI's flags.
#[derive(Deserialize)]
pub(super) struct StartIn {
    toml: String,
    #[serde(default = "default_scope")]
    scope: String,
    #[serde(default = "default_canary")]
    canary: String,
    #[serde(default = "default_waves")]
    waves: String,
    #[serde(default = "default_interval")]
    wave_interval: String,
    #[serde(default = "default_max_bad")]
    max_bad: String,
    #[serde(default)]
    canary_sites: Vec<String>,
}

fn default_scope() -> String {
    "national".into()
}
fn default_canary() -> String {
    "1%".into()
}
fn default_waves() -> String {
    "10%,50%,100%".into()
}
fn default_interval() -> String {
    "10m".into()
}
fn default_max_bad() -> String {
    "2%".into()
}

fn rollout_error(e: RolloutError) -> ApiError {
    match e {
        RolloutError::Invalid(m) => bad_request(m),
        RolloutError::PlanFile(m) => bad_request(format!("toml: {m}")),
        RolloutError::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
        RolloutError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
        RolloutError::Store(e) => unavailable(e),
    }
}

fn caller_name(caller: &Caller) -> String {
    caller
        .as_ref()
        .map_or_else(|| "api".into(), |Extension(p)| format!("api:{}", p.name))
}

/// `POST /api/v1/admin/plans/rollouts` (admin): validates the plan, stores it and starts its
/// rollout, as `rie-collector plan rollout` does; 201 with the rollout.
pub(super) async fn start_rollout(
    State(st): State<AppState>,
    caller: Caller,
    Json(body): Json<StartIn>,
) -> Result<(StatusCode, Json<Rollout>), ApiError> {
    let book = st.plans.clone();
    let by = caller_name(&caller);
    let params = RolloutParams {
        scope: body.scope,
        canary: body.canary,
        waves: body.waves,
        wave_interval: body.wave_interval,
        max_bad: body.max_bad,
        canary_sites: body.canary_sites,
    };
    let r = tokio::task::spawn_blocking(move || {
        rollout::start(book.reader(), book.inventory(), &body.toml, &params, &by)
    })
    .await
    .map_err(unavailable)?
    .map_err(rollout_error)?;
    Ok((StatusCode::CREATED, Json(r)))
}

/// `POST /api/v1/admin/plans/rollouts/{rollout_id}/rollback` (admin), as `plan rollback`.
pub(super) async fn rollback(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<Rollout>, ApiError> {
    let book = st.plans.clone();
    let by = caller_name(&caller);
    let r = tokio::task::spawn_blocking(move || rollout::rollback(book.reader(), Some(id), &by))
        .await
        .map_err(unavailable)?
        .map_err(rollout_error)?;
    Ok(Json(r))
}
