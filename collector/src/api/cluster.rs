//! Cluster routes (until the shared-database deployment replaces the home-made cluster): the
//! national fan-out (`/api/v1/cluster/flows/totals`, `/api/v1/cluster/status`) and the stream
//! mark a peer asks for when a site changes owner (`/api/v1/cluster/streams/{site}/{stream}`).
//! Who owns which site is `crate::cluster`; when a mark is trusted is `crate::stream_marks`.

use std::sync::Arc;

use rie_proto::SiteId;

use crate::commit::DedupIndex;
use crate::stream_marks::StreamMark;

/// National flow totals: `GET /api/v1/cluster/flows/totals` (same parameters as
/// `/api/v1/flows/totals`) asks every member's `/api/v1/flows/totals` and sums the answers.
/// Sites are disjoint between members, so the sum is exact. If any member does not answer, the
/// answer is 502 naming it: a partial national total would be a wrong number, not a rough one.
///
/// The national status picture: `GET /api/v1/cluster/status` asks every member's
/// `/api/v1/status` and takes each site's state from its owner (`owner_of[i]`: index in the
/// member list of inventory site `i`). A member that does not answer leaves its sites `unknown`
/// and is named in `unreachable`: the NOC sees the rest of the nation and which part is blind.
pub fn fan_out_routes(api_members: Vec<String>, owner_of: Vec<usize>) -> axum::Router {
    use axum::routing::get;
    let state = Arc::new(FanOut {
        members: api_members,
        owner_of,
        // HTTP/1.1 only: keeps h2 0.3 (RUSTSEC-2026-0258) unused (docs/dependencies.md).
        http: reqwest::Client::builder()
            .http1_only()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default(),
    });
    axum::Router::new()
        .route("/api/v1/cluster/flows/totals", get(cluster_totals))
        .route("/api/v1/cluster/status", get(cluster_status))
        .with_state(state)
}

struct FanOut {
    members: Vec<String>,
    owner_of: Vec<usize>,
    http: reqwest::Client,
}

/// Why a member's answer is missing: the caller's query (400, the same for every member) or the
/// member (502), with the member's URL.
type AskError = (axum::http::StatusCode, String);

/// Asks `path` (with its query) of every member at once, within `timeout`; answers in member
/// order.
async fn ask_all<T: serde::de::DeserializeOwned>(
    st: &FanOut,
    path: &str,
    timeout: std::time::Duration,
) -> Vec<Result<T, AskError>> {
    use axum::http::StatusCode;
    let asks = st.members.iter().map(|m| {
        let url = format!("{}{path}", m.trim_end_matches('/'));
        let http = st.http.clone();
        async move {
            let bad_gateway = |e: String| (StatusCode::BAD_GATEWAY, format!("{url}: {e}"));
            let answer = async {
                let r = http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| bad_gateway(e.to_string()))?;
                let status = r.status();
                let body = r.text().await.map_err(|e| bad_gateway(e.to_string()))?;
                if status.is_client_error() {
                    // The same query is wrong for every member: pass the member's reason on.
                    return Err((StatusCode::BAD_REQUEST, format!("{url}: {status}: {body}")));
                }
                if !status.is_success() {
                    return Err(bad_gateway(format!("{status}: {body}")));
                }
                serde_json::from_str::<T>(&body)
                    .map_err(|e| bad_gateway(format!("unexpected answer: {e}")))
            };
            tokio::time::timeout(timeout, answer)
                .await
                .unwrap_or_else(|_| Err(bad_gateway(format!("no answer in {timeout:?}"))))
        }
    });
    futures_util::future::join_all(asks).await
}

/// 404 from a collector that is not in a cluster (no `api_members` to ask).
fn no_cluster() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({
            "error": "no cluster: set [cluster] api_members to answer national queries"
        })),
    )
        .into_response()
}

async fn cluster_totals(
    axum::extract::State(st): axum::extract::State<Arc<FanOut>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::Json;
    let fail = |code: StatusCode, e: String| {
        (code, Json(serde_json::json!({ "error": e }))).into_response()
    };
    if st.members.is_empty() {
        return no_cluster();
    }
    let path = format!("/api/v1/flows/totals?{}", query.unwrap_or_default());
    let mut sum = crate::store::FlowTotals::default();
    for r in
        ask_all::<crate::store::FlowTotals>(&st, &path, std::time::Duration::from_secs(10)).await
    {
        match r {
            Ok(t) => sum.add(t),
            Err((code, e)) => {
                tracing::warn!(error = %e, "national totals: a member did not answer");
                return fail(code, e);
            }
        }
    }
    Json(sum).into_response()
}

async fn cluster_status(
    axum::extract::State(st): axum::extract::State<Arc<FanOut>>,
) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    use axum::Json;
    if st.members.is_empty() {
        return no_cluster();
    }
    let answers =
        ask_all::<super::web::Status>(&st, "/api/v1/status", std::time::Duration::from_secs(3))
            .await;
    let members: Vec<(String, Option<super::web::Status>)> = st
        .members
        .iter()
        .cloned()
        .zip(answers)
        .map(|(m, r)| {
            let r = r.map_err(
                |(_, e)| tracing::warn!(error = %e, "national status: a member did not answer"),
            );
            (m, r.ok())
        })
        .collect();
    let status = super::web::Status::merge(&members, &st.owner_of, rie_common::now_ms());
    ([(header::CACHE_CONTROL, "no-store")], Json(status)).into_response()
}

/// `GET /api/v1/cluster/streams/{site}/{stream}`: this member's mark of a probe stream, for
/// the member that now owns the site. Open like the rest of the API (it tells a site id, a
/// random stream id and a counter, no secret); members reach each other on the
/// administration network.
pub fn stream_mark_routes(dedup: Arc<DedupIndex>) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/api/v1/cluster/streams/{site}/{stream}", get(stream_mark))
        .with_state(dedup)
}

async fn stream_mark(
    axum::extract::State(dedup): axum::extract::State<Arc<DedupIndex>>,
    axum::extract::Path((site, stream)): axum::extract::Path<(String, String)>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::Json;
    let bad = |e: String| {
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": e })),
        )
    };
    let site = match SiteId::new(&site) {
        Ok(s) => s,
        Err(e) => return bad(format!("site {site:?}: {e}")).into_response(),
    };
    let Ok(stream) = stream.parse::<u64>() else {
        return bad(format!(
            "stream {stream:?} is not an unsigned 64-bit integer"
        ))
        .into_response();
    };
    Json(StreamMark {
        site: site.as_str().to_string(),
        stream,
        last_seq: dedup.last(&site, stream),
    })
    .into_response()
}
