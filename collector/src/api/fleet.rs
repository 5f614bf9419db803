//! `GET /api/v1/fleet`: the probes of the sites the caller sees, with their versions, plan
//! version and health (`crate::fleet` defines the counts and the growing-backlog rule; the
//! probe part of each entry is the site detail's, `super::probe_out`).
//!
//! May import `fleet`, `sites`; only `api` imports it.

use axum::extract::{Query, State};
use axum::Json;
use rie_proto::SiteState;
use serde::{Deserialize, Serialize};

use super::{bad_request, probe_out, rfc3339_ms, sees, ApiError, AppState, Caller, ProbeOut};
use crate::sites::SiteView;
use rie_common::now_ms;

#[derive(Deserialize)]
pub(super) struct FleetQuery {
    /// Only probes of this version (`none`: never said hello).
    version: Option<String>,
    protocol_version: Option<String>,
    /// Only probes that last applied this check plan version (`none`: none yet).
    plan_version: Option<String>,
    /// Only probes with more batches than this in their spool.
    backlog_over: Option<u64>,
    /// Only probes whose backlog keeps growing.
    growing: Option<bool>,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct FleetEntry {
    id: String,
    name: String,
    ministry: String,
    departement: String,
    state: SiteState,
    connected: bool,
    last_seen: Option<String>,
    #[serde(flatten)]
    probe: ProbeOut,
}

#[derive(Serialize)]
pub(super) struct FleetOut {
    /// Over every site the caller sees (the filters below do not change them).
    counts: crate::fleet::FleetCounts,
    /// Probes that pass the filters (all of them, `probes` holds the first `limit`).
    matching: usize,
    /// Largest spool backlog first, then by site id.
    probes: Vec<FleetEntry>,
}

/// `GET /api/v1/fleet`: the probes of the sites the caller sees (a technician: its own).
pub(super) async fn fleet(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<FleetQuery>,
) -> Result<Json<FleetOut>, ApiError> {
    let limit = q.limit.unwrap_or(1_000);
    if !(1..=20_000).contains(&limit) {
        return Err(bad_request(format!(
            "limit={limit} is out of range; give 1 to 20000, e.g. limit=100"
        )));
    }
    let inv = &st.sites.inventory;
    let mut counts = crate::fleet::FleetCounts::default();
    let mut rows: Vec<(u64, usize, SiteView)> = Vec::new();
    for (i, v) in st.sites.views(now_ms()).into_iter().enumerate() {
        if !sees(&st, &caller, inv.sites[i].id.as_str()) {
            continue;
        }
        counts.add(&v);
        let backlog = v.live.health.map_or(0, |h| h.spool_batches);
        let version = v.live.probe_version.as_deref().unwrap_or("none");
        let proto = v.live.protocol_version.map(|p| p.to_string());
        let keep = q.version.as_deref().is_none_or(|x| x == version)
            && q.protocol_version
                .as_deref()
                .is_none_or(|x| proto.as_deref().unwrap_or("none") == x)
            && q.plan_version
                .as_deref()
                .is_none_or(|x| crate::fleet::plan_label(&v) == x)
            && q.backlog_over.is_none_or(|n| backlog > n)
            && q.growing
                .is_none_or(|g| crate::fleet::backlog_growing(&v) == g);
        if keep {
            rows.push((backlog, i, v));
        }
    }
    rows.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| inv.sites[a.1].id.as_str().cmp(inv.sites[b.1].id.as_str()))
    });
    let matching = rows.len();
    let probes = rows
        .into_iter()
        .take(limit)
        .map(|(_, i, v)| {
            let s = &inv.sites[i];
            FleetEntry {
                id: s.id.to_string(),
                name: s.name.clone(),
                ministry: s.ministry.clone(),
                departement: s.departement.clone(),
                state: v.state,
                connected: v.connected,
                last_seen: v.live.last_seen_ms.and_then(rfc3339_ms),
                probe: probe_out(&v),
            }
        })
        .collect();
    Ok(Json(FleetOut {
        counts,
        matching,
        probes,
    }))
}
