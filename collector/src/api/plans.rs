//! `/api/v1/plans` (every stored plan and how far the fleet is: NOC and admin) and
//! `/api/v1/sites/{site_id}/plan` (a site's effective plan, the scope each value came from, and
//! what its probe answered: NOC, admin, and a ministry for its own sites — the gate checks the
//! scope).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{bad_request, site_index, ApiError, AppState};
use crate::indicators::rfc3339;
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
