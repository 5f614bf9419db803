//! The gate in front of every route: reads the `Authorization: Bearer` token, finds it in the
//! store (through a one-second cache, so that a revocation made on any collector of a shared
//! database takes effect everywhere within a second), and applies the route's [`Access`]:
//! 401 with `WWW-Authenticate` without a valid token, 403 for a role the route does not
//! list, 404 for a site outside a scoped role's scope (the same answer as a site that does not
//! exist). The principal goes into the request's extensions for handlers that filter lists.
//!
//! Failures are counted by reason in `rie_collector_api_auth_failures_total` and never logged
//! one by one (a flood would fill the log). Past `auth.max_failures_per_minute` failed
//! authentications from one address, that address gets 429 for the rest of the minute without
//! any store lookup (logged once, when it crosses the limit). Failed authentications and every
//! granted request of an audited route go to the audit trail (`audit`), with the client
//! address (behind a trusted proxy: the address the proxy appended to `X-Forwarded-For`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prometheus::{IntCounterVec, Opts, Registry};

use super::audit::{AuditRow, Auditor};
use super::limit::{Failure, FailureLimiter};
use super::{hash_secret, parse_token, same_digest, Access, Principal, Role};
use crate::inventory::Inventory;
use crate::store::api_tokens::{self, TokenRow};
use crate::store::Reader;

/// How long a token row read from the store is trusted: the bound on revocation delay.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// Longest `Authorization` header read (a token is 82 bytes).
const MAX_HEADER: usize = 1024;

/// Cache entries kept at most; a flood of random ids empties it rather than growing it.
const MAX_CACHED: usize = 10_000;

const CHALLENGE: &str = "Bearer realm=\"rie-collector\"";
const CHALLENGE_INVALID: &str = "Bearer realm=\"rie-collector\", error=\"invalid_token\"";

/// Authentication failures, by reason (a bounded set).
pub struct AuthMetrics {
    pub failures: IntCounterVec,
}

impl AuthMetrics {
    /// # Panics
    /// Never in practice: the name is static and unique.
    pub fn new() -> Self {
        Self {
            failures: IntCounterVec::new(
                Opts::new(
                    "rie_collector_api_auth_failures_total",
                    "API requests refused, by reason: missing, malformed, unknown, wrong_secret, expired, revoked (401), forbidden (403), out_of_scope (404), rate_limited (429).",
                ),
                &["reason"],
            )
            .expect("valid metric"),
        }
    }

    /// Registers the series in the collector's registry.
    ///
    /// # Errors
    /// A name already registered.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.failures.clone()))
    }
}

impl Default for AuthMetrics {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Gate {
    required: bool,
    reader: Arc<Reader>,
    inventory: Arc<Inventory>,
    cache: Mutex<HashMap<String, (Option<TokenRow>, Instant)>>,
    metrics: AuthMetrics,
    /// People's sessions (`rie_session` cookie), when OpenID Connect login is configured.
    sessions: Option<Arc<super::session::Sessions>>,
    auditor: Auditor,
    limiter: FailureLimiter,
    /// Behind a proxy: whose `X-Forwarded-For` names the client.
    trusted_proxies: Vec<IpAddr>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Missing,
    Malformed,
    Unknown,
    WrongSecret,
    Expired,
    Revoked,
    Forbidden,
    OutOfScope,
    /// Too many failures from this address this minute.
    RateLimited,
    /// The store did not answer: 503, not counted as a failed authentication.
    StoreDown,
}

impl Refusal {
    /// A credential was presented and was not good: what the limit and the audit count.
    fn is_failed_login(self) -> bool {
        matches!(
            self,
            Refusal::Malformed
                | Refusal::Unknown
                | Refusal::WrongSecret
                | Refusal::Expired
                | Refusal::Revoked
        )
    }

    fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Unknown => "unknown",
            Refusal::WrongSecret => "wrong_secret",
            Refusal::Expired => "expired",
            Refusal::Revoked => "revoked",
            Refusal::Forbidden => "forbidden",
            Refusal::OutOfScope => "out_of_scope",
            Refusal::RateLimited => "rate_limited",
            Refusal::StoreDown => "store_down",
        }
    }
}

impl Gate {
    pub fn new(
        required: bool,
        reader: Arc<Reader>,
        inventory: Arc<Inventory>,
        metrics: AuthMetrics,
    ) -> Self {
        Self {
            required,
            reader,
            inventory,
            cache: Mutex::new(HashMap::new()),
            metrics,
            sessions: None,
            auditor: Auditor::discard(),
            limiter: FailureLimiter::new(0, Duration::from_secs(60)),
            trusted_proxies: Vec::new(),
        }
    }

    /// With the audit trail's writer, the failure limit and the trusted proxies.
    pub fn with(
        self,
        auditor: Auditor,
        max_failures_per_minute: u32,
        trusted_proxies: Vec<IpAddr>,
    ) -> Self {
        Self {
            auditor,
            limiter: FailureLimiter::new(max_failures_per_minute, Duration::from_secs(60)),
            trusted_proxies,
            ..self
        }
    }

    /// The client's address: the peer, or behind a trusted proxy the last address of
    /// `X-Forwarded-For` (the one that proxy appended; earlier ones are the client's word).
    fn client(&self, req: &Request) -> Option<IpAddr> {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        self.client_of(peer, req.headers())
    }

    /// [`Self::client`] for handlers that took the request apart.
    pub(crate) fn client_of(
        &self,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Option<IpAddr> {
        let peer = peer?.ip();
        if !self.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
            .or(Some(peer))
    }

    /// For a login handler: whether `source` is refused for too many failures this minute.
    pub(crate) fn blocked(&self, source: Option<IpAddr>) -> bool {
        source.is_some_and(|ip| self.limiter.is_blocked(ip))
    }

    /// For a login handler: one failed login of `actor` from `source` (counted against the
    /// address's limit, logged once when it crosses it, and audited).
    pub(crate) fn login_failed(
        &self,
        actor: &str,
        source: Option<IpAddr>,
        target: &str,
        reason: &str,
    ) {
        if let Some(ip) = source {
            if self.limiter.failed(ip) == Failure::Crossed {
                tracing::warn!(source = %ip, "too many failed logins: address refused for a minute");
            }
        }
        let mut row = self.audit_row(None, source, "login_failed", target, reason);
        row.actor = actor.chars().take(64).collect();
        self.auditor.record_if_room(row);
    }

    /// For a login handler: a login that opened a session.
    pub(crate) async fn login_ok(&self, who: &Principal, source: Option<IpAddr>, target: &str) {
        let row = self.audit_row(Some(who), source, "login", target, "ok");
        self.auditor.record(row).await;
    }

    fn audit_row(
        &self,
        who: Option<&Principal>,
        source: Option<IpAddr>,
        action: &str,
        target: &str,
        outcome: &str,
    ) -> AuditRow {
        AuditRow {
            at_ms: rie_common::now_ms(),
            actor: who.map_or_else(|| "-".to_string(), |p| p.name.clone()),
            role: who.map_or_else(|| "-".to_string(), |p| p.role.to_string()),
            source: source.map_or_else(|| "-".to_string(), |a| a.to_string()),
            action: action.to_string(),
            target: target.chars().take(512).collect(),
            outcome: outcome.to_string(),
        }
    }

    /// Accepts session cookies too (OpenID Connect login).
    #[must_use]
    pub fn with_sessions(mut self, sessions: Arc<super::session::Sessions>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    pub fn sessions(&self) -> Option<&Arc<super::session::Sessions>> {
        self.sessions.as_ref()
    }

    /// The principal of a `rie_session` cookie: Ok(None) without one (or without sessions).
    async fn session_principal(&self, headers: &HeaderMap) -> Result<Option<Principal>, Refusal> {
        use super::session::{cookie, SessionRefusal, COOKIE};
        let Some(sessions) = &self.sessions else {
            return Ok(None);
        };
        let Some(value) = cookie(headers, COOKIE).map_err(|()| Refusal::Malformed)? else {
            return Ok(None);
        };
        match sessions.check(value).await {
            Ok((_, p)) => Ok(Some(p)),
            Err(r) => Err(match r {
                SessionRefusal::Malformed => Refusal::Malformed,
                SessionRefusal::Unknown => Refusal::Unknown,
                SessionRefusal::Expired => Refusal::Expired,
                SessionRefusal::Revoked => Refusal::Revoked,
                SessionRefusal::Forbidden => Refusal::Forbidden,
                SessionRefusal::StoreDown => Refusal::StoreDown,
            }),
        }
    }

    /// The principal of a request for handlers of public routes (`/auth/me`): token or
    /// session, None when neither.
    pub async fn identify(&self, headers: &HeaderMap) -> Option<Principal> {
        self.principal(headers).await.ok().flatten()
    }

    pub fn required(&self) -> bool {
        self.required
    }

    /// The token row for `id`, from the cache when read less than [`CACHE_TTL`] ago.
    async fn row(&self, id: &str) -> Result<Option<TokenRow>, Refusal> {
        let now = Instant::now();
        if let Some((row, at)) = self.lock().get(id) {
            if now.duration_since(*at) < CACHE_TTL {
                return Ok(row.clone());
            }
        }
        let reader = self.reader.clone();
        let key = id.to_string();
        // The PostgreSQL read side blocks: never on an async worker.
        let row = tokio::task::spawn_blocking(move || api_tokens::get(&reader, &key))
            .await
            .map_err(|_| Refusal::StoreDown)?
            .map_err(|_| Refusal::StoreDown)?;
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(id.to_string(), (row.clone(), now));
        Ok(row)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<TokenRow>, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The principal of a request: Some from a valid token, None when there is no header and
    /// the API is open.
    async fn principal(&self, headers: &HeaderMap) -> Result<Option<Principal>, Refusal> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            if let Some(p) = self.session_principal(headers).await? {
                return Ok(Some(p));
            }
            return if self.required {
                Err(Refusal::Missing)
            } else {
                Ok(None)
            };
        };
        let text = value
            .to_str()
            .ok()
            .filter(|t| t.len() <= MAX_HEADER)
            .and_then(|t| t.strip_prefix("Bearer "))
            .ok_or(Refusal::Malformed)?;
        let (id, secret) = parse_token(text.trim()).ok_or(Refusal::Malformed)?;
        let row = self.row(id).await?.ok_or(Refusal::Unknown)?;
        if !same_digest(&row.secret_sha256, &hash_secret(secret)) {
            return Err(Refusal::WrongSecret);
        }
        let now = rie_common::now_ms();
        if row.revoked_ms.is_some_and(|r| r <= now) {
            return Err(Refusal::Revoked);
        }
        if row.expires_ms.is_some_and(|e| e <= now) {
            return Err(Refusal::Expired);
        }
        // A role the inventory no longer backs (a site removed) is refused, not widened.
        let role = Role::parse(&row.role, &self.inventory).map_err(|_| Refusal::Forbidden)?;
        Ok(Some(Principal {
            name: row.name,
            role,
        }))
    }

    fn refuse(&self, r: Refusal, path: &str) -> Response {
        if r != Refusal::StoreDown {
            self.metrics.failures.with_label_values(&[r.reason()]).inc();
        }
        let body = |msg: String| Json(serde_json::json!({ "error": msg }));
        match r {
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE))],
                body("authentication required: send Authorization: Bearer <token> (rie-collector token create)".into()),
            )
                .into_response(),
            Refusal::Malformed
            | Refusal::Unknown
            | Refusal::WrongSecret
            | Refusal::Expired
            | Refusal::Revoked => (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(CHALLENGE_INVALID),
                )],
                body("invalid token".into()),
            )
                .into_response(),
            Refusal::Forbidden => {
                (StatusCode::FORBIDDEN, body("forbidden for this role".into())).into_response()
            }
            Refusal::OutOfScope => {
                let site = site_in_path(path).unwrap_or_default();
                (
                    StatusCode::NOT_FOUND,
                    body(format!("no site {site:?} in the inventory")),
                )
                    .into_response()
            }
            Refusal::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, HeaderValue::from_static("60"))],
                body("too many failed authentications from this address; wait a minute".into()),
            )
                .into_response(),
            Refusal::StoreDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                body("the store does not answer; tokens cannot be checked".into()),
            )
                .into_response(),
        }
    }
}

/// The site of a path `/api/v1/sites/{site_id}...`.
pub fn site_in_path(path: &str) -> Option<&str> {
    path.strip_prefix("/api/v1/sites/")
        .and_then(|rest| rest.split('/').next())
        .filter(|s| !s.is_empty())
}

/// What an audit row names as the target of a request: its path and query.
fn target_of(req: &Request) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(String::new, |p| p.as_str().to_string())
}

/// The middleware of one route (`axum::middleware::from_fn_with_state`).
pub async fn check(
    State((gate, access)): State<(Arc<Gate>, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    if access.is_public() {
        return next.run(req).await;
    }
    let source = gate.client(&req);
    if gate.blocked(source) {
        return gate.refuse(Refusal::RateLimited, req.uri().path());
    }
    let principal = match gate.principal(req.headers()).await {
        Ok(p) => p.unwrap_or(Principal {
            name: "open".into(),
            role: Role::Admin,
        }),
        Err(r) => {
            if r.is_failed_login() {
                if let Some(ip) = source {
                    if gate.limiter.failed(ip) == Failure::Crossed {
                        tracing::warn!(source = %ip, "too many failed authentications: address refused for a minute");
                    }
                }
                gate.auditor.record_if_room(gate.audit_row(
                    None,
                    source,
                    "auth_failed",
                    &target_of(&req),
                    r.reason(),
                ));
            }
            return gate.refuse(r, req.uri().path());
        }
    };
    // Audited routes: reads (GET), and writes (the admin's rollouts) recorded as such.
    let action =
        if req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD {
            "read"
        } else {
            "write"
        };
    if !access.allows(&principal.role) {
        if access.audited {
            gate.auditor.record_if_room(gate.audit_row(
                Some(&principal),
                source,
                action,
                &target_of(&req),
                "forbidden",
            ));
        }
        return gate.refuse(Refusal::Forbidden, req.uri().path());
    }
    if access.site_param && principal.role.is_scoped() {
        let path = req.uri().path().to_string();
        let visible =
            site_in_path(&path).is_some_and(|site| principal.role.sees_site(&gate.inventory, site));
        if !visible {
            return gate.refuse(Refusal::OutOfScope, &path);
        }
    }
    if access.audited {
        let row = gate.audit_row(Some(&principal), source, action, &target_of(&req), "ok");
        gate.auditor.record(row).await;
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}
