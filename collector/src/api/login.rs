//! The login routes of people (OpenID Connect, `auth::oidc`; local accounts, `auth::local`;
//! sessions in `auth::session`): `/auth/login` (redirect to the provider), `/auth/callback`
//! (code exchange, session, redirect to the status page), `POST /auth/local` (name and
//! password of a local account, session, redirect to the status page), `/auth/logout`
//! (session revoked here, then the provider's logout for a provider's session), `/auth/me`
//! (who the request is from). All are public routes: each decides itself (a login cannot
//! require a login). Without `[auth.oidc]`, login and callback answer 404.
//!
//! `POST /auth/local` answers a browser's form (`Accept: text/html`) with redirects only — to
//! `/` with the session cookie, or to `/#login=refused|limited|unavailable` for the page to
//! say why — and a program with statuses: 303 and the cookie, 400 malformed, 401 refused (one
//! answer for an unknown name, a wrong password and a disabled account), 403 role no longer
//! valid, 429 too many failures from this address (`auth.max_failures_per_minute`, the same
//! limit as tokens), 503 store down. Each is counted in `rie_collector_local_logins_total`;
//! failures and successes are audited.
//!
//! Refusals: a callback without the browser's login in progress, with a wrong `state`, or
//! malformed: 400; a code the provider refuses, an ID token that fails a check: 401; no role
//! for this person: 403; provider down: 503 saying so. Each is counted in
//! `rie_collector_oidc_logins_total{result}`. May import `auth`, `store`.

use std::collections::HashMap;

use axum::extract::{ConnectInfo, FromRequest, Query, Request, State};
use axum::http::Uri;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json};

use super::{AppState, Route};
use crate::auth::local::{LoginRefusal, SUBJECT_PREFIX};
use crate::auth::oidc::{LoginError, Oidc};
use crate::auth::session::{self, blocking, LOGIN_COOKIE, LOGIN_TTL};
use crate::auth::{hash_secret, same_digest, Access, Principal};
use crate::store::api_sessions::{self, LoginRow};

/// The longest callback query read.
const MAX_QUERY: usize = 8192;

pub fn table() -> Vec<Route> {
    vec![
        Route::new("/auth/login", Access::PUBLIC, get(login)),
        Route::new(
            crate::auth::oidc::CALLBACK_PATH,
            Access::PUBLIC,
            get(callback),
        ),
        Route::new("/auth/local", Access::PUBLIC, post(local)),
        Route::new("/auth/logout", Access::PUBLIC, get(logout)),
        Route::new("/auth/me", Access::PUBLIC, get(me)),
    ]
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

fn not_configured() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "login with an identity provider is not configured ([auth.oidc]); use an API token",
    )
}

fn redirect(to: &str, cookies: &[HeaderValue]) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        h.append(header::SET_COOKIE, c.clone());
    }
    res
}

fn parts(st: &AppState) -> Option<(&Oidc, &session::Sessions)> {
    Some((st.login.as_deref()?, st.gate.sessions()?.as_ref()))
}

async fn login(State(st): State<AppState>) -> Response {
    let Some((oidc, sessions)) = parts(&st) else {
        return not_configured();
    };
    let count = |r: &str| oidc.metrics.logins.with_label_values(&[r]).inc();
    let started = match oidc.begin().await {
        Ok(s) => s,
        Err(e) => {
            count(e.reason());
            return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
    };
    let (value, hash) = session::new_secret();
    let row = LoginRow {
        id_sha256: hash,
        state: started.state,
        nonce: started.nonce,
        pkce_verifier: started.pkce_verifier,
        created_ms: rie_common::now_ms(),
    };
    let reader = sessions.reader().clone();
    if blocking(move || {
        // Logins abandoned long ago, and sessions ended, go at the same time.
        let now = rie_common::now_ms();
        api_sessions::purge(
            &reader,
            now - 86_400_000,
            now - LOGIN_TTL.as_millis() as i64,
        )?;
        api_sessions::insert_login(&reader, &row)
    })
    .await
    .is_err()
    {
        count("store_down");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store does not answer; logins cannot be recorded",
        );
    }
    redirect(&started.url, &[sessions.set_login_cookie(&value)])
}

async fn callback(State(st): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let Some((oidc, sessions)) = parts(&st) else {
        return not_configured();
    };
    let count = |r: &str| oidc.metrics.logins.with_label_values(&[r]).inc();
    let clear = sessions.clear_login_cookie();
    let bad = |r: &str, msg: &str| {
        count(r);
        let mut res = error(StatusCode::BAD_REQUEST, msg);
        res.headers_mut().append(header::SET_COOKIE, clear.clone());
        res
    };
    if uri.query().is_some_and(|q| q.len() > MAX_QUERY) {
        return bad("malformed", "callback query too long");
    }
    let Ok(Query(params)) = Query::<HashMap<String, String>>::try_from_uri(&uri) else {
        return bad("malformed", "callback query is not a form-encoded query");
    };
    let Ok(login_cookie) = session::cookie(&headers, LOGIN_COOKIE) else {
        return bad("malformed", "malformed login cookie");
    };
    let Some(login_cookie) = login_cookie else {
        return bad(
            "no_login",
            "no login in progress in this browser; start again at /auth/login",
        );
    };
    // Taken whatever follows: a login in progress serves one callback.
    let reader = sessions.reader().clone();
    let hash = hash_secret(login_cookie);
    let pending = match blocking(move || api_sessions::take_login(&reader, &hash)).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return bad(
                "no_login",
                "this login was already used or never started; start again at /auth/login",
            )
        }
        Err(_) => {
            count("store_down");
            return error(StatusCode::SERVICE_UNAVAILABLE, "the store does not answer");
        }
    };
    if rie_common::now_ms() - pending.created_ms > LOGIN_TTL.as_millis() as i64 {
        return bad(
            "login_expired",
            "this login took too long; start again at /auth/login",
        );
    }
    let state = params.get("state").map(String::as_str).unwrap_or_default();
    if !same_digest(&hash_secret(state), &hash_secret(&pending.state)) {
        return bad(
            "state_mismatch",
            "the state does not match this browser's login; start again at /auth/login",
        );
    }
    if let Some(e) = params.get("error") {
        count("provider_error");
        // The provider's code only (a bounded, URL-safe word), not its free text.
        let e: String = e
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return error(
            StatusCode::UNAUTHORIZED,
            format!("the identity provider refused the login: {e}"),
        );
    }
    let Some(code) = params.get("code").filter(|c| !c.is_empty()) else {
        return bad("malformed", "callback without code");
    };
    let id = match oidc
        .finish(code, &pending.nonce, &pending.pkce_verifier)
        .await
    {
        Ok(id) => id,
        Err(e) => {
            count(e.reason());
            let code = match e {
                LoginError::ProviderDown(_) => StatusCode::SERVICE_UNAVAILABLE,
                LoginError::NoRole => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            let mut res = error(code, e.to_string());
            res.headers_mut().append(header::SET_COOKIE, clear);
            return res;
        }
    };
    let claims = serde_json::to_string(&Oidc::shown_claims(&id.claims)).unwrap_or_default();
    let value = match sessions
        .create(id.name.clone(), &id.role, id.subject, claims, id.id_token)
        .await
    {
        Ok(v) => v,
        Err(_) => {
            count("store_down");
            return error(StatusCode::SERVICE_UNAVAILABLE, "the store does not answer");
        }
    };
    count("ok");
    tracing::info!(name = %id.name, role = %id.role, "login");
    redirect("/", &[sessions.set_cookie(&value), clear])
}

/// The form of `POST /auth/local`.
#[derive(serde::Deserialize)]
struct LocalForm {
    name: String,
    password: String,
}

async fn local(State(st): State<AppState>, req: Request) -> Response {
    let Some(sessions) = st.gate.sessions().cloned() else {
        return error(StatusCode::NOT_FOUND, "sessions are off on this collector");
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let source = st.gate.client_of(peer, req.headers());
    let browser = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let count = |r: &str| st.local.logins.with_label_values(&[r]).inc();
    // A browser is sent back to the page, which says why; a program gets the status.
    let refuse = |code: StatusCode, why: &str, msg: &str| {
        if browser {
            redirect(&format!("/#login={why}"), &[])
        } else {
            let mut res = error(code, msg);
            if code == StatusCode::TOO_MANY_REQUESTS {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            }
            res
        }
    };
    if st.gate.blocked(source) {
        count("rate_limited");
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "limited",
            "too many failed logins from this address; wait a minute",
        );
    }
    let Ok(Form(form)) = Form::<LocalForm>::from_request(req, &()).await else {
        count("malformed");
        st.gate
            .login_failed("-", source, "/auth/local", "malformed");
        return refuse(
            StatusCode::BAD_REQUEST,
            "refused",
            "send a form (application/x-www-form-urlencoded) with name and password",
        );
    };
    let name = form.name.trim().to_string();
    let result = st
        .local
        .authenticate(
            st.reader.clone(),
            &st.sites.inventory,
            name.clone(),
            form.password,
        )
        .await;
    let (name, role) = match result {
        Ok(v) => v,
        Err(LoginRefusal::StoreDown) => {
            count("store_down");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store does not answer; logins cannot be checked",
            );
        }
        Err(r) => {
            let (label, code, msg) = match r {
                LoginRefusal::Forbidden => (
                    "forbidden",
                    StatusCode::FORBIDDEN,
                    "this account's role is no longer valid for the inventory; ask an admin (account set-role)",
                ),
                _ => ("refused", StatusCode::UNAUTHORIZED, "wrong name or password"),
            };
            count(label);
            st.gate.login_failed(&name, source, "/auth/local", label);
            return refuse(code, "refused", msg);
        }
    };
    let value = match sessions
        .create(
            name.clone(),
            &role,
            format!("{SUBJECT_PREFIX}{name}"),
            "{\"account\":\"local\"}".into(),
            String::new(),
        )
        .await
    {
        Ok(v) => v,
        Err(_) => {
            count("store_down");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store does not answer; the session could not be recorded",
            );
        }
    };
    count("ok");
    let who = Principal { name, role };
    tracing::info!(name = %who.name, role = %who.role, "local login");
    st.gate.login_ok(&who, source, "/auth/local").await;
    redirect("/", &[sessions.set_cookie(&value)])
}

async fn logout(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(sessions) = st.gate.sessions() else {
        return redirect("/", &[]);
    };
    let mut to = "/".to_string();
    if let Ok(Some(value)) = session::cookie(&headers, session::COOKIE) {
        match sessions.revoke(value).await {
            // A provider's session ends at the provider too; a local account's here only.
            Ok(Some(row)) if !row.subject.starts_with(SUBJECT_PREFIX) => {
                if let Some(oidc) = st.login.as_deref() {
                    if let Some(url) = oidc.logout_url(&row.id_token).await {
                        to = url;
                    }
                }
            }
            Ok(_) => {}
            Err(_) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store does not answer; the session could not be revoked",
                )
            }
        }
    }
    redirect(&to, &[sessions.clear_cookie()])
}

async fn me(State(st): State<AppState>, headers: HeaderMap) -> Response {
    match st.gate.identify(&headers).await {
        Some(p) => {
            Json(serde_json::json!({ "name": p.name, "role": p.role.to_string() })).into_response()
        }
        None if !st.gate.required() => {
            Json(serde_json::json!({ "name": "open", "role": "admin" })).into_response()
        }
        None => {
            let mut res = error(StatusCode::UNAUTHORIZED, "not logged in");
            if st.login.is_some() {
                res.headers_mut()
                    .insert("x-login", HeaderValue::from_static("/auth/login"));
            }
            res
        }
    }
}
